//! LWW map: laws, convergence, removes that stay removed, and tombstone GC.

use foundation_crdt::{Canonical, LwwMap, LwwOp, Timestamp};
use proptest::prelude::*;

use crate::common::*;

#[derive(Clone, Debug)]
pub enum Action {
    Set(u8, u8),
    Remove(u8),
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        3 => (0u8..6, 0u8..4).prop_map(|(k, v)| Action::Set(k, v)),
        2 => (0u8..6).prop_map(Action::Remove),
    ]
}

type Map = LwwMap<u8, u8>;

fn act(me: &mut Replica<Map>, _: usize, action: &Action, wall: u64) -> Option<LwwOp<u8, u8>> {
    let ts = me.hlc.now(wall);
    Some(match *action {
        Action::Set(k, v) => me.state.set(k, v, ts),
        Action::Remove(k) => me.state.remove(k, ts),
    })
}

fn history(steps: &[Step<Action>]) -> (Vec<LwwOp<u8, u8>>, Vec<Replica<Map>>) {
    run::<Map, Action>(steps, act)
}

/// The steps moved `by_ms` later: fresh clocks then start past a horizon at `by_ms`, as the GC
/// rule's condition 2 requires.
fn shift(steps: &[Step<Action>], by_ms: u64) -> Vec<Step<Action>> {
    steps
        .iter()
        .cloned()
        .map(|mut s| {
            s.wall_ms += by_ms;
            s
        })
        .collect()
}

/// No key comes back after a remove unless a write with a later timestamp set it again.
fn assert_removes_hold(ops: &[LwwOp<u8, u8>], state: &Map) {
    for op in ops.iter().filter(|op| op.entry.value.is_none()) {
        if let Some(entry) = state.entry(&op.key) {
            assert!(
                entry.value.is_none() || entry.ts > op.entry.ts,
                "{:?} resurrected past remove at {:?}",
                op.key,
                op.entry.ts
            );
        }
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn merge_laws_hold(steps in steps(action(), 40)) {
        let (_, r) = history(&steps);
        check_merge_laws(&r[0].state, &r[1].state, &r[2].state);
    }

    /// Commutativity and idempotence hold for any horizons, even ones that break the GC rule.
    #[test]
    fn merge_commutes_with_arbitrary_gc_horizons(
        steps in steps(action(), 40),
        walls in proptest::array::uniform3(proptest::option::of(0u64..2_000)),
    ) {
        let (_, mut r) = history(&steps);
        for (replica, wall) in r.iter_mut().zip(walls) {
            if let Some(wall) = wall {
                replica.state.gc_tombstones(Timestamp::at_wall(wall));
            }
        }
        check_commutative_idempotent(&r[0].state, &r[1].state);
        check_commutative_idempotent(&r[1].state, &r[2].state);
    }

    /// All three laws hold for states collected by the GC rule (each at its own horizon), which
    /// then diverge with newer writes.
    #[test]
    fn merge_laws_hold_with_valid_gc(
        before in steps(action(), 25),
        after in steps(action(), 25),
        horizons in proptest::array::uniform3(proptest::option::of(0u64..=2_001)),
    ) {
        let (old_ops, _) = history(&before);
        let limit = old_ops.iter().map(|op| op.entry.ts.wall_ms + 1).max().unwrap_or(0);
        let base = from_ops::<Map>(&old_ops);
        let initial: Vec<Map> = horizons
            .iter()
            .map(|h| {
                let mut state = base.clone();
                if let Some(h) = h {
                    state.gc_tombstones(Timestamp::at_wall((*h).min(limit)));
                }
                state
            })
            .collect();
        let (_, r) = run_from::<Map, Action>(initial, &shift(&after, limit), act);
        check_merge_laws(&r[0].state, &r[1].state, &r[2].state);
    }

    #[test]
    fn any_interleaving_converges(steps in steps(action(), 40), seeds in any::<[u64; 2]>()) {
        let (ops, r) = history(&steps);
        check_convergence(&ops, &r, seeds);
        assert_removes_hold(&ops, &from_ops::<Map>(&ops));
    }

    #[test]
    fn op_path_agrees_with_state_path(steps in steps(action(), 40), split in 0usize..40) {
        let (ops, _) = history(&steps);
        check_ops_commute_with_merge::<Map>(&ops, split);
    }

    #[test]
    fn gc_after_the_horizon_keeps_convergence(
        before in steps(action(), 30),
        after in steps(action(), 30),
        seeds in any::<[u64; 3]>(),
    ) {
        gc_scenario(&before, &after, seeds);
    }
}

/// Phase 1's ops reach everyone; the horizon is then past all of them (the safety rule). In
/// phase 2 each replica collects at a random point while receiving phase-2 ops and stale replays
/// of phase 1, shuffled and duplicated. Everyone must end equal, byte for byte, to a replica
/// that never collected until the end, and no phase-1 remove may be undone by a replay.
fn gc_scenario(before: &[Step<Action>], after: &[Step<Action>], seeds: [u64; 3]) {
    let (old_ops, _) = history(before);
    let horizon_wall = old_ops
        .iter()
        .map(|op| op.entry.ts.wall_ms + 1)
        .max()
        .unwrap_or(0);
    let horizon = Timestamp::at_wall(horizon_wall);
    let (new_ops, _) = history(&shift(after, horizon_wall));
    let base = from_ops::<Map>(&old_ops);
    let mut late: Vec<LwwOp<u8, u8>> = new_ops.clone();
    late.extend(old_ops.iter().cloned());
    let mut reference = base.clone();
    for op in &late {
        reference.apply(op);
    }
    reference.gc_tombstones(horizon);
    for seed in seeds {
        let mut rng = Rng(seed);
        let order = shuffled_with_dups(&late, seed);
        let gc_at = rng.below(order.len() + 1);
        let mut replica = base.clone();
        for (i, op) in order.iter().enumerate() {
            if i == gc_at {
                replica.gc_tombstones(horizon);
            }
            replica.apply(op);
            replica.invariants().expect("invariants");
        }
        replica.gc_tombstones(horizon);
        assert_eq!(replica, reference);
        assert_eq!(replica.encode().ok(), reference.encode().ok());
        assert_removes_hold(&old_ops, &replica);
    }
}

#[test]
fn stale_set_after_remove_does_not_resurrect() {
    let (a, b) = (node(0), node(1));
    let t = |wall_ms, node| Timestamp {
        wall_ms,
        logical: 0,
        node,
    };
    let mut writer = Map::new();
    let set = writer.set(7, 1, t(10, a));
    let remove = writer.remove(7, t(11, b));
    let mut late = Map::new();
    late.apply(&remove);
    late.apply(&set);
    late.apply(&set);
    assert_eq!(late.get(&7), None);
    assert_eq!(late, writer);
}

#[test]
fn replay_below_horizon_is_ignored_after_gc() {
    let a = node(0);
    let t = |wall_ms| Timestamp {
        wall_ms,
        logical: 0,
        node: a,
    };
    let mut map = Map::new();
    let set = map.set(1, 9, t(10));
    map.remove(1, t(20));
    assert_eq!(map.gc_tombstones(Timestamp::at_wall(30)), 1);
    assert_eq!(map.tombstones(), 0);
    assert!(
        !map.apply(&set),
        "a stale replay must not bring the key back"
    );
    assert_eq!(map.get(&1), None);
}

#[test]
fn concurrent_writes_at_the_same_millisecond_break_ties_by_node() {
    let ts = |node| Timestamp {
        wall_ms: 5,
        logical: 0,
        node,
    };
    let mut x = Map::new();
    let mut y = Map::new();
    let low = x.set(0, 1, ts(node(0)));
    let high = y.set(0, 2, ts(node(1)));
    x.apply(&high);
    y.apply(&low);
    assert_eq!(x.get(&0), Some(&2));
    assert_eq!(x, y);
}

#[test]
fn apply_new_takes_a_write_below_the_horizon_that_apply_would_drop() {
    let t = |wall_ms| Timestamp {
        wall_ms,
        logical: 0,
        node: node(0),
    };
    let mut map = Map::new();
    map.remove(2, t(20));
    map.gc_tombstones(Timestamp::at_wall(30));
    let op = LwwOp {
        key: 1,
        entry: foundation_crdt::LwwEntry {
            ts: t(10),
            value: Some(9),
        },
    };
    let mut guarded = map.clone();
    assert!(!guarded.apply(&op));
    assert!(map.apply_new(&op));
    assert_eq!(map.get(&1), Some(&9));
    // A remove below the horizon still leaves no tombstone behind.
    let remove = LwwOp {
        key: 1,
        entry: foundation_crdt::LwwEntry {
            ts: t(11),
            value: None,
        },
    };
    assert!(map.apply_new(&remove));
    assert_eq!((map.get(&1), map.tombstones()), (None, 0));
}

proptest! {
    /// `merge_with` asks about exactly the live values one side alone holds, keeps those it is
    /// told to keep whatever the horizons, and agrees with `merge` when told what `merge` decides.
    #[test]
    fn merge_with_judges_one_sided_values_by_the_callers_word(
        a in steps(action(), 20),
        b in steps(action(), 20),
        horizon in 0u64..=2_001,
    ) {
        let (_, ra) = history(&a);
        let (_, rb) = history(&b);
        let (mut mine, mut theirs) = (ra[0].state.clone(), rb[1].state.clone());
        theirs.gc_tombstones(Timestamp::at_wall(horizon));
        mine.gc_tombstones(Timestamp::at_wall(horizon / 2));
        let mut kept_all = mine.clone();
        kept_all.merge_with(&theirs, |_| true, |_| true);
        for (k, v) in mine.iter().chain(theirs.iter()) {
            let both = mine.entry(k).is_some() && theirs.entry(k).is_some();
            if !both {
                prop_assert_eq!(kept_all.get(k), Some(v));
            }
        }
        let (hm, ht) = (mine.horizon(), theirs.horizon());
        let mut by_horizon = mine.clone();
        by_horizon.merge_with(&theirs, |e| e.ts >= ht, |e| e.ts >= hm);
        mine.merge(&theirs);
        prop_assert_eq!(by_horizon, mine);
    }
}
