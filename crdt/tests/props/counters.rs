//! Counters: laws, convergence, value equals the sum of increments.

use foundation_crdt::{GCounter, GCounterOp, PnCounter, PnCounterOp};
use proptest::prelude::*;

use crate::common::*;

fn g_history(steps: &[Step<u64>]) -> (Vec<GCounterOp>, Vec<Replica<GCounter>>) {
    run::<GCounter, u64>(steps, |me, replica, &by, _| {
        me.state.increment(node(replica), by).ok()
    })
}

fn pn_history(steps: &[Step<i64>]) -> (Vec<PnCounterOp>, Vec<Replica<PnCounter>>) {
    run::<PnCounter, i64>(steps, |me, replica, &by, _| {
        let actor = node(replica);
        match by >= 0 {
            true => me.state.increment(actor, by.unsigned_abs()).ok(),
            false => me.state.decrement(actor, by.unsigned_abs()).ok(),
        }
    })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn gcounter_merge_laws_hold(steps in steps(0u64..10, 30)) {
        let (_, r) = g_history(&steps);
        check_merge_laws(&r[0].state, &r[1].state, &r[2].state);
    }

    #[test]
    fn gcounter_converges_to_the_sum(steps in steps(0u64..10, 30), seeds in any::<[u64; 2]>()) {
        let (ops, r) = g_history(&steps);
        check_convergence(&ops, &r, seeds);
        let sum: u64 = steps.iter().map(|s| s.action).sum();
        prop_assert_eq!(from_ops::<GCounter>(&ops).value(), u128::from(sum));
    }

    #[test]
    fn pncounter_merge_laws_hold(steps in steps(-10i64..10, 30)) {
        let (_, r) = pn_history(&steps);
        check_merge_laws(&r[0].state, &r[1].state, &r[2].state);
    }

    #[test]
    fn pncounter_converges_to_the_sum(steps in steps(-10i64..10, 30), seeds in any::<[u64; 2]>()) {
        let (ops, r) = pn_history(&steps);
        check_convergence(&ops, &r, seeds);
        check_ops_commute_with_merge::<PnCounter>(&ops, ops.len() / 2);
        let sum: i64 = steps.iter().map(|s| s.action).sum();
        prop_assert_eq!(from_ops::<PnCounter>(&ops).value(), i128::from(sum));
    }
}

#[test]
fn overflow_is_refused_without_change() {
    let mut c = GCounter::new();
    c.increment(node(0), u64::MAX).expect("fits");
    let before = c.clone();
    assert!(c.increment(node(0), 1).is_err());
    assert_eq!(c, before);
}

#[test]
fn compacting_an_actor_keeps_the_value_and_frees_its_slot() {
    let mut c = PnCounter::new();
    c.increment(node(0), 5).expect("fits");
    c.decrement(node(0), 2).expect("fits");
    c.increment(node(1), 1).expect("fits");
    let mut other = c.clone();
    c.compact_actor(node(0), node(99));
    other.compact_actor(node(0), node(99));
    assert_eq!(c.value(), 4);
    other.increment(node(1), 1).expect("fits");
    c.merge(&other);
    assert_eq!(c.value(), 5);
    c.invariants().expect("invariants");
}
