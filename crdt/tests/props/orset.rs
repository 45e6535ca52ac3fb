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

fn history(steps: &[Step<Action>]) -> (Vec<OrSetOp<u8>>, Vec<Replica<Set>>) {
    run::<Set, Action>(steps, |me, replica, action, _| match *action {
        Action::Add(e) => Some(me.state.add(node(replica), e)),
        Action::Remove(e) => me.state.remove(&e),
    })
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
fn forgetting_a_departed_actor_keeps_its_live_elements() {
    let mut a = Set::new();
    a.add(node(5), 1);
    a.add(node(5), 2);
    a.remove(&2);
    let mut b = a.clone();
    a.forget_actor(node(5));
    b.forget_actor(node(5));
    assert!(a.contains(&1) && !a.contains(&2));
    assert_eq!(
        a.context().actors(),
        1,
        "only the live dot of the departed actor is kept"
    );
    a.merge(&b);
    assert!(a.contains(&1));
    a.invariants().expect("invariants");
}
