//! Re-seating (see [`reseat`](super::reseat)): who proposes, to what set, and when nothing
//! moves.

use std::collections::{BTreeMap, BTreeSet};

use super::reseat::{reseat_to, Seen};
use super::tests::{id, life, Net, SECOND};
use super::*;
use crate::membership::MemberState;

const GRACE: Duration = Duration::from_secs(10);

fn at(secs: u64) -> Instant {
    Instant::ZERO + Duration::from_secs(secs)
}

fn later(n: u128) -> Life {
    Life {
        node: id(n),
        generation: 2,
    }
}

fn set(lives: &[Life]) -> BTreeSet<Life> {
    lives.iter().copied().collect()
}

/// Membership's view: `(node, generation, state, since in seconds)`, each node's life heard
/// at that generation.
fn view(rows: &[(u128, u64, MemberState, u64)]) -> BTreeMap<NodeId, Seen> {
    rows.iter()
        .map(|(n, generation, state, since)| {
            let seen = Seen {
                generation: *generation,
                state: *state,
                since: at(*since),
                life: Some(*generation),
            };
            (id(*n), seen)
        })
        .collect()
}

/// `members` with node `n`'s life heard at `life` instead.
fn heard(
    mut members: BTreeMap<NodeId, Seen>,
    n: u128,
    life: Option<u64>,
) -> BTreeMap<NodeId, Seen> {
    if let Some(seen) = members.get_mut(&id(n)) {
        seen.life = life;
    }
    members
}

use MemberState::{Alive, Failed, Left};

#[test]
fn a_restarted_acceptor_is_replaced_by_its_later_life_at_once_and_only_the_lowest_live_acceptor_proposes(
) {
    let current = set(&[life(1), life(2), life(3)]);
    let members = view(&[(1, 1, Alive, 0), (2, 1, Alive, 0), (3, 2, Alive, 5)]);
    let moved = Some(set(&[life(1), life(2), later(3)]));
    assert_eq!(reseat_to(life(1), &current, &members, at(5), GRACE), moved);
    let members_of_2 = view(&[(1, 1, Alive, 0), (3, 2, Alive, 5)]);
    assert_eq!(
        reseat_to(life(2), &current, &members_of_2, at(5), GRACE),
        None,
        "node 2 backs off: node 1 is the proposer"
    );
    // The lowest acceptor restarted: the next live one proposes, and its own later life is
    // what it is replaced by.
    let members = view(&[(1, 2, Alive, 5), (3, 1, Alive, 0)]);
    assert_eq!(
        reseat_to(life(2), &current, &members, at(5), GRACE),
        Some(set(&[later(1), life(2), life(3)]))
    );
}

#[test]
fn a_failed_acceptor_is_replaced_by_a_spare_member_only_after_the_grace_and_one_that_left_at_once()
{
    let current = set(&[life(1), life(2), life(3)]);
    let failed = view(&[
        (2, 1, Alive, 0),
        (3, 1, Failed, 100),
        (5, 1, Alive, 0),
        (4, 1, Alive, 0),
    ]);
    assert_eq!(reseat_to(life(1), &current, &failed, at(109), GRACE), None);
    let moved = Some(set(&[life(1), life(2), life(4)]));
    assert_eq!(
        reseat_to(life(1), &current, &failed, at(110), GRACE),
        moved,
        "the lowest spare"
    );
    let left = view(&[(2, 1, Alive, 0), (3, 1, Left, 100), (4, 1, Alive, 0)]);
    assert_eq!(reseat_to(life(1), &current, &left, at(100), GRACE), moved);
    // Restarted but its later life failed too: a spare takes its place.
    let both = view(&[(2, 1, Alive, 0), (3, 2, Failed, 100), (4, 1, Alive, 0)]);
    assert_eq!(reseat_to(life(1), &current, &both, at(100), GRACE), moved);
}

#[test]
fn nothing_moves_without_a_majority_alive_without_a_gone_life_or_without_a_replacement() {
    let current = set(&[life(1), life(2), life(3)]);
    let all_alive = view(&[(2, 1, Alive, 0), (3, 1, Alive, 0), (4, 1, Alive, 0)]);
    assert_eq!(
        reseat_to(life(1), &current, &all_alive, at(100), GRACE),
        None
    );
    // The minority side of a partition: 2 and 3 failed long ago and have spares, but one
    // live life of three cannot decide a move.
    let cut_off = view(&[(2, 1, Failed, 0), (3, 1, Failed, 0), (4, 1, Alive, 0)]);
    assert_eq!(reseat_to(life(1), &current, &cut_off, at(100), GRACE), None);
    // Failed past the grace, but no member to take its place: the set keeps its size.
    let no_spare = view(&[(2, 1, Alive, 0), (3, 1, Failed, 0)]);
    assert_eq!(
        reseat_to(life(1), &current, &no_spare, at(100), GRACE),
        None
    );
    // Not in the view yet (a node that just started): it waits.
    let unknown = view(&[(2, 1, Alive, 0), (4, 1, Alive, 0)]);
    assert_eq!(reseat_to(life(1), &current, &unknown, at(100), GRACE), None);
}

#[test]
fn a_renewed_membership_generation_is_not_a_new_life_and_a_spare_never_heard_from_is_not_chosen() {
    let current = set(&[life(1), life(2), life(3)]);
    // Node 3 was declared failed and renewed its membership identity: same process, same life.
    let renewed = heard(view(&[(2, 1, Alive, 0), (3, 2, Alive, 5)]), 3, Some(1));
    assert_eq!(reseat_to(life(1), &current, &renewed, at(5), GRACE), None);
    // Restarted but not heard from yet: counted alive, nothing moves until its hello.
    let silent = heard(view(&[(2, 1, Alive, 0), (3, 2, Alive, 5)]), 3, None);
    assert_eq!(reseat_to(life(1), &current, &silent, at(5), GRACE), None);
    let failed = view(&[(2, 1, Alive, 0), (3, 1, Failed, 0), (4, 1, Alive, 0)]);
    assert_eq!(
        reseat_to(life(1), &current, &heard(failed, 4, None), at(100), GRACE),
        None
    );
}

#[test]
fn a_node_that_restarted_replaces_its_own_earlier_life() {
    // Node 1 restarted: its later life knows its earlier one is over, but is no acceptor,
    // so node 2, the lowest live acceptor, proposes it in its place.
    let current = set(&[life(1), life(2), life(3)]);
    let members = view(&[(2, 1, Alive, 0), (3, 1, Alive, 0)]);
    assert_eq!(reseat_to(later(1), &current, &members, at(1), GRACE), None);
    let members_of_2 = view(&[(1, 2, Alive, 1), (3, 1, Alive, 0)]);
    assert_eq!(
        reseat_to(life(2), &current, &members_of_2, at(1), GRACE),
        Some(set(&[later(1), life(2), life(3)]))
    );
}

/// Node 1 checks re-seating at `now` with membership `members`, and the net delivers.
fn check(net: &mut Net, members: &BTreeMap<NodeId, Seen>) {
    let mut out = Outgoing::new();
    let node = net.nodes.get_mut(&id(1)).expect("node");
    node.reseat(net.now, members, &mut out);
    net.queue(id(1), out);
    net.run();
}

/// Node 3 restarts as a later life that holds nothing; membership shows it alive.
fn restarted_and_seen(net: &mut Net) -> BTreeMap<NodeId, Seen> {
    net.nodes.insert(id(3), Vars::new(later(3)));
    view(&[(2, 1, Alive, 0), (3, 2, Alive, 0)])
}

/// The new life of node 3 reads the declaration of "x" (as replication brings it) and says
/// hello to its acceptors.
fn hello_from_3(net: &mut Net) {
    let declaration = net.nodes[&id(1)].spec("x").expect("held").encode();
    let node = net.nodes.get_mut(&id(3)).expect("node");
    node.adopt(Instant::ZERO, "x", &declaration);
    let hellos = node.take_messages();
    assert_eq!(hellos.len(), 2, "to nodes 1 and 2");
    net.queue(id(3), hellos);
    net.run();
}

#[test]
fn the_machine_moves_a_variable_off_a_restarted_life_after_its_hello_once_and_counts_it() {
    let mut net = Net::new(3);
    net.cas(1, 0, 5).expect("starts");
    net.run();
    let members = restarted_and_seen(&mut net);
    assert!(net.nodes[&id(1)].reseat_now(net.now));
    check(&mut net, &members);
    assert_eq!(
        net.nodes[&id(2)].acceptors("x").map(|a| a.0),
        Some(1),
        "membership's later generation alone moves nothing"
    );
    hello_from_3(&mut net);
    net.advance(2 * SECOND);
    check(&mut net, &members);
    let moved = set(&[life(1), life(2), later(3)]);
    assert_eq!(net.nodes[&id(2)].acceptors("x"), Some((3, moved)));
    assert_eq!(net.nodes[&id(1)].stats().reseated, 1);
    // Checked again within the interval, or after it with nothing gone: no second move.
    assert!(!net.nodes[&id(1)].reseat_now(net.now));
    net.advance(2 * SECOND);
    check(&mut net, &members);
    assert_eq!(net.nodes[&id(1)].stats().reseated, 1);
    assert_eq!(
        net.value(1),
        (2, VarValue::Int(5)),
        "the move kept the value"
    );
}

#[test]
fn re_seating_off_moves_nothing() {
    let mut net = Net::new(3);
    net.nodes.get_mut(&id(1)).expect("node").set_reseat(None);
    let members = restarted_and_seen(&mut net);
    hello_from_3(&mut net);
    assert!(!net.nodes[&id(1)].reseat_now(net.now));
    check(&mut net, &members);
    assert_eq!(net.nodes[&id(2)].acceptors("x").map(|a| a.0), Some(1));
}
