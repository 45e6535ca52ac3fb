//! MV register: laws, convergence, siblings for concurrent writes.

use foundation_crdt::{MvReg, MvRegOp};
use proptest::prelude::*;

use crate::common::*;

type Reg = MvReg<u8>;

fn history(steps: &[Step<u8>]) -> (Vec<MvRegOp<u8>>, Vec<Replica<Reg>>) {
    run::<Reg, u8>(steps, |me, replica, &value, _| {
        Some(me.state.write(node(replica), value))
    })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn merge_laws_hold(steps in steps(0u8..8, 30)) {
        let (_, r) = history(&steps);
        check_merge_laws(&r[0].state, &r[1].state, &r[2].state);
    }

    #[test]
    fn any_interleaving_converges(steps in steps(0u8..8, 30), seeds in any::<[u64; 2]>()) {
        let (ops, r) = history(&steps);
        check_convergence(&ops, &r, seeds);
    }

    #[test]
    fn op_path_agrees_with_state_path(steps in steps(0u8..8, 30), split in 0usize..30) {
        let (ops, _) = history(&steps);
        check_ops_commute_with_merge::<Reg>(&ops, split);
    }

    #[test]
    fn siblings_never_exceed_the_number_of_writers(steps in steps(0u8..8, 30)) {
        let (ops, _) = history(&steps);
        let state = from_ops::<Reg>(&ops);
        prop_assert!(state.read().len() <= REPLICAS);
    }
}

#[test]
fn concurrent_writes_are_siblings_until_a_later_write() {
    let mut a = Reg::new();
    let mut b = Reg::new();
    let wa = a.write(node(0), 1);
    let wb = b.write(node(1), 2);
    a.apply(&wb);
    b.apply(&wa);
    assert_eq!(a.read(), vec![&1, &2]);
    assert_eq!(a, b);
    let resolve = a.write(node(0), 3);
    b.apply(&resolve);
    assert_eq!(b.read(), vec![&3]);
}

#[test]
fn compaction_keeps_siblings() {
    let mut a = Reg::new();
    let mut b = Reg::new();
    let wa = a.write(node(5), 1);
    let wb = b.write(node(1), 2);
    a.apply(&wb);
    b.apply(&wa);
    a.compact_actor(node(5), node(99));
    b.compact_actor(node(5), node(99));
    assert_eq!(a, b);
    assert_eq!(a.read(), vec![&2, &1]);
    assert_eq!(a.context().actors(), 2);
    let w = a.write(node(1), 3);
    b.apply(&w);
    assert_eq!(b.read(), vec![&3]);
}
