//! Majority writes (`Core::write_acked`, behind `config().set_majority`) count their majority
//! in the agreed membership, placement's, not among the members visible now: three nodes, and
//! the node cut off or left alone is refused, while the side of two confirms. The planted bug
//! `MajorityOfVisible` (the old behaviour) is shown confirming a lone node's write with one copy.
//! With disks, the agreed membership outlives a restart: a node restarted alone still counts
//! the other two.

use std::collections::BTreeMap;
use std::time::Duration;

use foundation_core::fault_switch::{self, FaultSwitch};
use foundation_core::membership::MemberState;
use foundation_sim::faults::{Fault, Identity, Nodes};
use foundation_sim::storage::StorageConfig;
use foundation_sim::world::{World, WorldConfig};
use foundation_sim::writes::WriteRequest;

fn secs(s: u64) -> u64 {
    s * 1_000_000
}

fn three_nodes(seed: u64) -> World {
    formed(unjoined(seed))
}

/// [`three_nodes`] whose nodes keep their state on disks: what a restart remembers (without
/// one, a node remembers nothing, the agreed membership included).
fn three_nodes_with_disks(seed: u64) -> World {
    let mut world = unjoined(seed);
    world.set_storage(StorageConfig::new(Duration::from_millis(5)));
    formed(world)
}

fn unjoined(seed: u64) -> World {
    World::new(WorldConfig::lan(seed, 3))
}

/// `world` once its nodes joined and saw each other.
fn formed(mut world: World) -> World {
    apply(&mut world, Fault::Join(Nodes::All, 0));
    run_to(&mut world, secs(5));
    world
}

/// Steps the world until `us`.
fn run_to(world: &mut World, us: u64) {
    while world.next_time().is_some_and(|t| t <= us) {
        world.step();
    }
    world.advance_to(us);
}

fn apply(world: &mut World, fault: Fault) {
    world
        .apply(&fault, &BTreeMap::new())
        .expect("the fault applies");
}

/// How `slot`'s majority write of `key` ended a second later: `None` if it was refused,
/// else whether a majority of its group held it.
fn majority_write(world: &mut World, slot: usize, key: &str) -> Option<bool> {
    let refused = world.writes_refused();
    let id = world
        .write(
            slot,
            WriteRequest {
                keyspace: "config".into(),
                key: key.into(),
                delete: false,
                acked: Some(Duration::from_secs(1)),
                value_size: 0,
            },
        )
        .expect("the node is up");
    let until = world.now_us() + secs(1);
    run_to(world, until);
    if world.writes_refused() > refused {
        assert!(
            world.writes().iter().all(|w| w.id != id),
            "refused, not applied"
        );
        return None;
    }
    let record = world.writes().iter().find(|w| w.id == id).expect("applied");
    Some(record.majority_acked())
}

/// Whether `slot` sees every other member in `state`.
fn sees_all(world: &World, slot: usize, state: MemberState) -> bool {
    let core = world.node(slot).core().expect("up");
    core.members().count() == 2 && core.members().all(|m| m.state == state)
}

#[test]
fn a_lone_node_is_refused_once_the_other_two_are_marked_failed() {
    for seed in 1..=3 {
        let mut world = three_nodes(seed);
        assert_eq!(majority_write(&mut world, 0, "before"), Some(true));
        apply(&mut world, Fault::Crash(Nodes::List(vec![1, 2])));
        let until = world.now_us() + secs(8);
        run_to(&mut world, until);
        assert!(sees_all(&world, 0, MemberState::Failed), "seed {seed}");
        assert_eq!(majority_write(&mut world, 0, "alone"), None, "seed {seed}");
        // The others come back: majority writes go through again.
        apply(
            &mut world,
            Fault::Restart(Nodes::List(vec![1, 2]), Identity::Same),
        );
        let until = world.now_us() + secs(5);
        run_to(&mut world, until);
        assert!(sees_all(&world, 0, MemberState::Alive), "seed {seed}");
        assert_eq!(
            majority_write(&mut world, 0, "after"),
            Some(true),
            "seed {seed}"
        );
    }
}

#[test]
fn across_a_partition_only_the_side_of_two_confirms() {
    for seed in 1..=3 {
        let mut world = three_nodes(seed);
        apply(
            &mut world,
            Fault::Partition(Nodes::One(0), Nodes::List(vec![1, 2])),
        );
        let until = world.now_us() + secs(8);
        run_to(&mut world, until);
        assert_eq!(majority_write(&mut world, 0, "small"), None, "seed {seed}");
        assert_eq!(
            majority_write(&mut world, 1, "big"),
            Some(true),
            "seed {seed}"
        );
    }
}

/// The dead two are removed on purpose (`force-leave`, an operator's decision): the lone node
/// is the whole agreed membership, and its majority is its own.
#[test]
fn after_a_force_leave_of_the_dead_the_survivor_is_a_majority() {
    let mut world = three_nodes(2);
    apply(&mut world, Fault::Crash(Nodes::List(vec![1, 2])));
    let until = world.now_us() + secs(8);
    run_to(&mut world, until);
    assert_eq!(majority_write(&mut world, 0, "refused"), None);
    for slot in [1, 2] {
        let id = world.node(slot).id();
        let removed = world.with_core(0, |core, now| core.force_leave(now, id));
        assert!(matches!(removed, Some(Ok(_))), "{removed:?}");
    }
    let agreed = world.node(0).core().expect("up").placement().agreed().len();
    assert_eq!(agreed, 1);
    assert_eq!(majority_write(&mut world, 0, "alone"), Some(true));
}

/// The check fails on the old behaviour: counted among the visible, the lone node's write is
/// confirmed with its own copy alone.
#[test]
fn counting_the_visible_members_confirms_a_lone_write() {
    let _on = fault_switch::engage(FaultSwitch::MajorityOfVisible);
    let mut world = three_nodes(1);
    apply(&mut world, Fault::Crash(Nodes::List(vec![1, 2])));
    let until = world.now_us() + secs(8);
    run_to(&mut world, until);
    assert_eq!(majority_write(&mut world, 0, "alone"), Some(true));
}

/// A member that restarts while cut off from the others meets nobody. Were placement's agreed
/// membership kept in memory only, it would start again with the members a life has met:
/// itself, and its majority write would be confirmed by its own copy in a cluster of three
/// (losing that one disk would lose a write `set_majority` reported held by a majority). It is
/// stored with the keyspaces, so the restarted node counts three and is refused.
#[test]
fn a_member_restarted_alone_does_not_confirm_a_majority_write_by_itself() {
    for seed in 1..=3 {
        let mut world = three_nodes_with_disks(seed);
        assert_eq!(majority_write(&mut world, 0, "before"), Some(true));
        apply(
            &mut world,
            Fault::Partition(Nodes::One(0), Nodes::List(vec![1, 2])),
        );
        apply(&mut world, Fault::Crash(Nodes::One(0)));
        apply(&mut world, Fault::Restart(Nodes::One(0), Identity::Same));
        let until = world.now_us() + secs(8);
        run_to(&mut world, until);
        assert_ne!(
            majority_write(&mut world, 0, "alone"),
            Some(true),
            "seed {seed}: confirmed by a majority with one copy of three"
        );
    }
}

/// Restarts do not cost writes: every member restarts in turn with its disk, and once all are
/// back and see each other a majority write is confirmed by a majority of the same three.
#[test]
fn after_every_member_restarted_a_majority_write_is_confirmed() {
    for seed in 1..=3 {
        let mut world = three_nodes_with_disks(seed);
        for slot in 0..3 {
            apply(&mut world, Fault::Crash(Nodes::One(slot)));
            apply(&mut world, Fault::Restart(Nodes::One(slot), Identity::Same));
            let until = world.now_us() + secs(5);
            run_to(&mut world, until);
        }
        for slot in 0..3 {
            assert!(sees_all(&world, slot, MemberState::Alive), "seed {seed}");
            let agreed = world
                .node(slot)
                .core()
                .expect("up")
                .placement()
                .agreed()
                .len();
            assert_eq!(agreed, 3, "seed {seed}, n{slot}");
        }
        assert_eq!(
            majority_write(&mut world, 2, "after"),
            Some(true),
            "seed {seed}"
        );
    }
}
