//! OR-set: laws, convergence, add-wins, removes that stay removed, and bounded dots per element.

use std::collections::BTreeSet;

use foundation_crdt::{Dot, OrSet, OrSetOp};
use proptest::prelude::*;

use crate::common::*;

#[derive(Clone, Debug)]
pub enum Action {
    Add(u8),
    Remove(u8),
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        3 => (0u8..6).prop_map(Action::Add),
        2 => (0u8..6).prop_map(Action::Remove),
    ]
}

type Set = OrSet<u8>;

fn act(me: &mut Replica<Set>, replica: usize, action: &Action, _: u64) -> Option<OrSetOp<u8>> {
    match *action {
        Action::Add(e) => Some(me.state.add(node(replica), e)),
        Action::Remove(e) => me.state.remove(&e),
    }
}

fn history(steps: &[Step<Action>]) -> (Vec<OrSetOp<u8>>, Vec<Replica<Set>>) {
    run::<Set, Action>(steps, act)
}

/// The specification: an element is present iff some add's dot was observed by no op.
fn expected(ops: &[OrSetOp<u8>]) -> BTreeSet<u8> {
    let observed: BTreeSet<Dot> = ops
        .iter()
        .flat_map(|op| match op {
            OrSetOp::Add { observed, .. } | OrSetOp::Remove { observed, .. } => observed.iter(),
        })
        .copied()
        .collect();
    ops.iter()
        .filter_map(|op| match op {
            OrSetOp::Add { elem, dot, .. } if !observed.contains(dot) => Some(*elem),
            _ => None,
        })
        .collect()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn merge_laws_hold(steps in steps(action(), 40)) {
        let (_, r) = history(&steps);
        check_merge_laws(&r[0].state, &r[1].state, &r[2].state);
    }

    #[test]
    fn any_interleaving_converges(steps in steps(action(), 40), seeds in any::<[u64; 2]>()) {
        let (ops, r) = history(&steps);
        check_convergence(&ops, &r, seeds);
    }

    #[test]
    fn removes_do_not_resurrect_in_any_order(
        steps in steps(action(), 40),
        seed in any::<u64>(),
    ) {
        let (ops, _) = history(&steps);
        let state = from_ops::<Set>(&shuffled_with_dups(&ops, seed));
        let present: BTreeSet<u8> = state.iter().copied().collect();
        prop_assert_eq!(present, expected(&ops));
    }

    #[test]
    fn op_path_agrees_with_state_path(steps in steps(action(), 40), split in 0usize..40) {
        let (ops, _) = history(&steps);
        check_ops_commute_with_merge::<Set>(&ops, split);
    }

    /// Epoch compaction of a departed node (replica 2), done identically everywhere, keeps the
    /// set's elements, and the survivors' later ops still converge in any order.
    #[test]
    fn compaction_keeps_elements_and_convergence(
        before in steps(action(), 30),
        after in steps(action(), 30),
        seeds in any::<[u64; 2]>(),
    ) {
        let (old_ops, _) = history(&before);
        let mut base = from_ops::<Set>(&old_ops);
        let present: Vec<u8> = base.iter().copied().collect();
        base.compact_actor(node(2), node(99));
        prop_assert_eq!(base.iter().copied().collect::<Vec<u8>>(), present);
        prop_assert!(base.context().actors() <= 3);
        let survivors: Vec<Step<Action>> = after
            .into_iter()
            .filter(|s| s.replica != 2 && s.sync_from != Some(2))
            .collect();
        let (new_ops, r) = run_from::<Set, Action>(vec![base.clone(); REPLICAS], &survivors, act);
        let mut reference = base.clone();
        for op in &new_ops {
            reference.apply(op);
        }
        for seed in seeds {
            let mut other = base.clone();
            for op in shuffled_with_dups(&new_ops, seed) {
                other.apply(&op);
            }
            prop_assert_eq!(&other, &reference);
        }
        check_merge_laws(&r[0].state, &r[1].state, &reference);
    }
}

#[test]
fn concurrent_add_wins_over_remove() {
    let mut a = Set::new();
    a.add(node(0), 1);
    let mut b = a.clone();
    let remove = a.remove(&1).expect("present");
    let add = b.add(node(1), 1);
    a.apply(&add);
    b.apply(&remove);
    assert!(a.contains(&1));
    assert_eq!(a, b);
}

#[test]
fn remove_delivered_before_its_add_still_wins() {
    let mut a = Set::new();
    let add = a.add(node(0), 4);
    let remove = a.remove(&4).expect("present");
    let mut late = Set::new();
    late.apply(&remove);
    late.apply(&add);
    late.apply(&add);
    assert!(!late.contains(&4));
    assert_eq!(late, a);
}

#[test]
fn re_adds_by_many_actors_keep_one_dot_per_element() {
    let mut set = Set::new();
    for actor in 0..100 {
        set.add(node(actor), 0);
    }
    let op = set.add(node(7), 0);
    match op {
        OrSetOp::Add { observed, .. } => assert_eq!(observed.len(), 1),
        OrSetOp::Remove { .. } => unreachable!("add returns an add"),
    }
    assert_eq!(set.len(), 1);
}

#[test]
fn compacting_a_departed_actor_keeps_its_elements_and_drops_its_record() {
    let epoch = node(99);
    let mut a = Set::new();
    a.add(node(5), 1);
    a.add(node(5), 2);
    a.add(node(6), 3);
    a.remove(&2);
    let mut b = a.clone();
    a.compact_actor(node(5), epoch);
    b.compact_actor(node(5), epoch);
    assert_eq!(a, b, "compaction is deterministic");
    assert!(a.contains(&1) && !a.contains(&2) && a.contains(&3));
    assert_eq!(a.context().actors(), 2, "node 6 and the epoch actor");
    let remove = a.remove(&1).expect("present");
    let add = b.add(node(6), 4);
    a.apply(&add);
    b.apply(&remove);
    assert_eq!(a, b);
    a.invariants().expect("invariants");
}
