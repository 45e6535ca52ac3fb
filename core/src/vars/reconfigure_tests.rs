//! A variable moved to other acceptors after a restart made one of them a new life.

use std::collections::BTreeSet;

use super::tests::{id, life, Net, SECOND};
use super::*;

/// Node 3's next life: what a restart of the third acceptor makes.
fn restarted() -> Life {
    Life {
        node: id(3),
        generation: 2,
    }
}

fn moved_to() -> BTreeSet<Life> {
    [life(1), life(2), restarted()].into()
}

/// Three acceptors hold "x" at version 1; node 3 restarts as a new life that holds nothing.
fn written_then_restarted() -> Net {
    let mut net = Net::new(3);
    net.cas(1, 0, 5).expect("starts");
    net.run();
    net.nodes.insert(id(3), Vars::new(restarted()));
    net
}

fn change(net: &mut Net, who: u128, to: BTreeSet<Life>) -> Result<u64, VarsError> {
    let mut out = Outgoing::new();
    let alive: BTreeSet<Life> = net.nodes.values().map(Vars::me).collect();
    let node = net.nodes.get_mut(&id(who)).expect("node");
    let result = node.change_acceptors(net.now, "x", (to, &alive), SECOND, &mut out);
    net.queue(id(who), out);
    result
}

/// The declaration node `who` wrote last (the seat that lets added lives take the variable up).
fn declaration(net: &mut Net, who: u128) -> Vec<u8> {
    let writes = net
        .nodes
        .get_mut(&id(who))
        .expect("node")
        .take_publications();
    let write = writes
        .into_iter()
        .rev()
        .find(|w| w.keyspace == VARS_KEYSPACE);
    write
        .and_then(|w| w.value)
        .expect("a declaration with a seat")
}

#[test]
fn a_variable_moved_to_a_restarted_life_keeps_its_history_and_is_written_without_the_old_life() {
    let mut net = written_then_restarted();
    // Without a move, losing node 2 as well leaves one of three old lives: nothing decides.
    net.cut.insert(id(2));
    net.cas(1, 1, 6).expect("starts");
    net.run();
    net.advance(SECOND);
    assert_eq!(net.done.last().map(|d| &d.2), Some(&CasOutcome::NoMajority));
    net.cut.clear();

    let request = change(&mut net, 1, moved_to()).expect("starts");
    net.run();
    assert_eq!(
        net.done.last(),
        Some(&(id(1), request, CasOutcome::Won { version: 2 }))
    );
    assert_eq!(
        net.value(1),
        (2, VarValue::Int(5)),
        "the change keeps the value"
    );
    assert_eq!(net.nodes[&id(2)].acceptors("x"), Some((3, moved_to())));
    // The new life takes the variable up from the declaration the mover rewrote.
    let bytes = declaration(&mut net, 1);
    net.nodes
        .get_mut(&id(3))
        .expect("node")
        .adopt(Instant::ZERO, "x", &bytes);
    assert_eq!(net.value(3), (2, VarValue::Int(5)));

    // Node 2 gone too: the new life and node 1 are a majority of the new set.
    net.cut.insert(id(2));
    net.cas(3, 2, 7).expect("starts");
    net.run();
    assert!(matches!(
        net.done.last(),
        Some((node, _, CasOutcome::Won { version: 3 })) if *node == id(3)
    ));
    assert_eq!(net.value(1), (3, VarValue::Int(7)));
    let history: Vec<(u64, VarValue, Life)> = net.nodes[&id(1)]
        .history("x")
        .expect("held")
        .map(|c| (c.version, c.value.clone(), c.writer))
        .collect();
    let expected = vec![
        (1, VarValue::Int(5), life(1)),
        (2, VarValue::Int(5), life(1)),
        (3, VarValue::Int(7), restarted()),
    ];
    assert_eq!(history, expected);
    assert!(net.nodes.values().all(|n| n.invariants().is_ok()));
}

#[test]
fn after_a_move_the_old_majority_decides_nothing_and_a_removed_life_writes_through_the_new_one() {
    // Lives 1, 2 and 3 move the variable to 2, 4 and 5 (two nodes that did not hold it).
    let mut net = Net::new(3);
    net.cas(1, 0, 5).expect("starts");
    net.run();
    for n in [4, 5] {
        net.nodes.insert(id(n), Vars::new(life(n)));
    }
    let to: BTreeSet<Life> = [life(2), life(4), life(5)].into();
    change(&mut net, 1, to.clone()).expect("starts");
    net.run();
    let bytes = declaration(&mut net, 1);
    for n in [4, 5] {
        net.nodes
            .get_mut(&id(n))
            .expect("node")
            .adopt(Instant::ZERO, "x", &bytes);
    }
    // 1 and 3, a majority of the old set, are cut off from the new one.
    net.cut.extend([id(1), id(3)]);
    net.cas(1, 2, 6).expect("starts");
    net.cas(5, 2, 7).expect("starts");
    net.run();
    net.advance(SECOND);
    assert_eq!(outcome_of(&net, 1), Some(CasOutcome::NoMajority));
    assert_eq!(outcome_of(&net, 5), Some(CasOutcome::Won { version: 3 }));
    assert_eq!(net.value(3), (2, VarValue::Int(5)));
    assert_eq!(net.value(4), (3, VarValue::Int(7)));

    // Healed: node 1, no longer an acceptor, still writes — it learns version 3 from the
    // acceptors it asks, then wins version 4 with the new majority.
    net.cut.clear();
    net.cas(1, 2, 8).expect("starts");
    net.run();
    let lost = CasOutcome::Lost {
        version: 3,
        winner: life(5),
    };
    assert_eq!(outcome_of(&net, 1), Some(lost));
    net.cas(1, 3, 8).expect("starts");
    net.run();
    assert_eq!(outcome_of(&net, 1), Some(CasOutcome::Won { version: 4 }));
    assert_eq!(net.value(1), (4, VarValue::Int(8)));
}

fn outcome_of(net: &Net, n: u128) -> Option<CasOutcome<Life>> {
    let last = net.done.iter().rev().find(|d| d.0 == id(n));
    last.map(|d| d.2.clone())
}

#[test]
fn a_seat_not_naming_this_life_or_holding_a_value_outside_the_type_is_not_taken_up() {
    let mut net = written_then_restarted();
    change(&mut net, 1, moved_to()).expect("starts");
    net.run();
    let bytes = declaration(&mut net, 1);
    let mut stranger = Vars::new(life(9));
    stranger.adopt(Instant::ZERO, "x", &bytes);
    assert_eq!(stranger.get("x"), None);
    let (spec, seat) = reconfigure::decode_declaration(&bytes).expect("decodes");
    let mut seat = seat.expect("a seat");
    seat.decided.value = VarValue::Int(1_000);
    let mut new_life = Vars::new(restarted());
    new_life.adopt(
        Instant::ZERO,
        "x",
        &reconfigure::encode_declaration(&spec, &seat),
    );
    assert_eq!(new_life.get("x"), None);
    assert_eq!(new_life.stats().invalid_values, 1);
    // A seat at the end of the version range: no version could follow it.
    seat.decided.value = VarValue::Int(1);
    seat.version = u64::MAX;
    new_life.adopt(
        Instant::ZERO,
        "x",
        &reconfigure::encode_declaration(&spec, &seat),
    );
    assert_eq!(new_life.get("x"), None);
    assert_eq!(new_life.stats().invalid_values, 2);
}

#[test]
fn a_change_refused_or_lost_changes_nothing() {
    let mut net = written_then_restarted();
    assert!(matches!(
        change(&mut net, 1, BTreeSet::new()),
        Err(VarsError::Reconfiguration { .. })
    ));
    assert!(matches!(
        change(&mut net, 1, [life(1), life(2), life(3)].into()),
        Err(VarsError::Reconfiguration { .. })
    ));
    // A write of version 2 and the change race: one wins, and the loser is told.
    net.cas(2, 1, 8).expect("starts");
    change(&mut net, 1, moved_to()).expect("starts");
    for _ in 0..50 {
        net.run();
        net.advance(Duration::from_millis(5));
    }
    let won = net
        .done
        .iter()
        .filter(|d| matches!(d.2, CasOutcome::Won { version: 2 }))
        .count();
    assert_eq!(won, 1, "{:?}", net.done);
    let changed = net.nodes[&id(1)].acceptors("x").expect("held").1 == moved_to();
    let wrote = net.value(1).1 == VarValue::Int(8);
    assert!(changed != wrote, "exactly one of them landed");
}

#[test]
fn a_proposal_naming_no_acceptors_from_a_misbehaving_node_is_refused() {
    let mut net = Net::new(3);
    let fingerprint = net.nodes[&id(1)].variables["x"].fingerprint;
    let nobody = Proposal {
        writer: life(3),
        request: 1,
        value: VarValue::Int(0),
        acceptors: Some(BTreeSet::new()),
    };
    let ballot = foundation_agents::cas::Ballot {
        round: 1,
        proposer: life(3),
    };
    let accept = VarsMessage::Cas {
        name: "x".into(),
        spec: fingerprint,
        from: life(3),
        message: CasMessage::Accept {
            slot: 1,
            ballot,
            proposal: nobody,
        },
    };
    let mut out = Outgoing::new();
    let node = net.nodes.get_mut(&id(1)).expect("node");
    node.received(Instant::ZERO, id(3), accept, &mut out);
    assert!(
        out.is_empty(),
        "no answer to a proposal that would end the variable"
    );
    assert_eq!(node.stats().invalid_values, 1);
}

fn lives(n: &[u128], generation: u64) -> BTreeSet<Life> {
    n.iter()
        .map(|n| Life {
            node: id(*n),
            generation,
        })
        .collect()
}

/// Node 3 is cut off while lives 1 and 2 move "x" to 4, 5 and 6 and write version 3 there;
/// then nodes 1 and 2 restart (new lives holding nothing), so no old life can tell node 3.
/// The declaration's seat is what it learns the move from: it jumps to the seat's version and
/// acceptors and writes through the new set. An older seat read afterwards teaches nothing.
#[test]
fn a_holder_cut_off_during_a_move_whose_old_lives_restarted_learns_it_from_the_seat() {
    let mut net = Net::new(3);
    net.cas(1, 0, 5).expect("starts");
    net.run();
    for n in [4, 5, 6] {
        net.nodes.insert(id(n), Vars::new(life(n)));
    }
    net.cut.insert(id(3));
    let new = lives(&[4, 5, 6], 1);
    change(&mut net, 1, new.clone()).expect("starts");
    net.run();
    let moved = declaration(&mut net, 1);
    for n in [4, 5, 6] {
        let node = net.nodes.get_mut(&id(n)).expect("node");
        node.adopt(net.now, "x", &moved);
    }
    net.cas(4, 2, 6).expect("starts");
    net.run();
    assert_eq!(net.value(4), (3, VarValue::Int(6)));
    for n in [1, 2] {
        let restarted = Life {
            node: id(n),
            generation: 2,
        };
        net.nodes.insert(id(n), Vars::new(restarted));
    }
    net.cut.clear();
    let holder = net.nodes.get_mut(&id(3)).expect("node");
    holder.adopt(net.now, "x", &moved);
    assert_eq!(holder.acceptors("x"), Some((3, new.clone())));
    assert_eq!(net.value(3), (2, VarValue::Int(5)));
    net.cas(3, 2, 7).expect("starts");
    net.run();
    let lost = CasOutcome::Lost {
        version: 3,
        winner: life(4),
    };
    assert_eq!(outcome_of(&net, 3), Some(lost), "{:?}", net.done);
    net.cas(3, 3, 7).expect("starts");
    net.run();
    assert_eq!(outcome_of(&net, 3), Some(CasOutcome::Won { version: 4 }));

    // The declaration as first written, read late: node 3 is past it and keeps its set.
    let spec = net.nodes[&id(3)].variables["x"].spec.clone();
    let stale = reconfigure::Seat {
        version: 1,
        decided: net.nodes[&id(3)].variables["x"]
            .register()
            .and_then(|r| r.decided(1))
            .cloned()
            .expect("decided"),
        from: 2,
        acceptors: lives(&[1, 2, 3], 1),
    };
    let holder = net.nodes.get_mut(&id(3)).expect("node");
    holder.adopt(
        net.now,
        "x",
        &reconfigure::encode_declaration(&spec, &stale),
    );
    assert_eq!(holder.acceptors("x"), Some((3, new)));
    assert_eq!(net.value(3), (4, VarValue::Int(7)));
}

/// Node 3 is cut off while "x" moves from 1, 2, 3 to 1, 2, 4 and back; it learns version 3 by
/// a jump, which leaves the first version it records for the set it keeps at 1. Reading the
/// declaration the first move wrote (delayed), it writes back the later seat: seats are
/// ordered by decided version, and by `from` this one looked newer than what it knew.
#[test]
fn after_a_move_away_and_back_a_node_that_jumped_writes_the_later_seat_over_an_older_one() {
    let mut net = Net::new(3);
    net.cas(1, 0, 5).expect("starts");
    net.run();
    net.nodes.insert(id(4), Vars::new(life(4)));
    net.cut.insert(id(3));
    let away = lives(&[1, 2, 4], 1);
    change(&mut net, 1, away.clone()).expect("starts");
    net.run();
    let first = declaration(&mut net, 1);
    net.nodes
        .get_mut(&id(4))
        .expect("node")
        .adopt(net.now, "x", &first);
    change(&mut net, 1, lives(&[1, 2, 3], 1)).expect("starts");
    net.run();
    net.cut.clear();
    // A write expecting version 1 is answered with the latest decision: node 3 jumps to 3.
    net.cas(3, 1, 9).expect("starts");
    net.run();
    assert_eq!(net.value(3), (3, VarValue::Int(5)));
    let node = net.nodes.get_mut(&id(3)).expect("node");
    node.take_publications();
    node.adopt(net.now, "x", &first);
    let written = node.take_publications();
    assert_eq!(written_seat(&written), Some((3, lives(&[1, 2, 3], 1))));
    // The mover wrote that seat itself; the first one winning a race of writes to the
    // declaration afterwards is written over again.
    let mover = net.nodes.get_mut(&id(1)).expect("node");
    mover.take_publications();
    mover.adopt(net.now, "x", &first);
    let written = mover.take_publications();
    assert_eq!(written_seat(&written), Some((3, lives(&[1, 2, 3], 1))));
}

/// The version and acceptors of the last seat written among `writes`, if any.
fn written_seat(writes: &[crate::replication::Write]) -> Option<(u64, BTreeSet<Life>)> {
    let declarations = writes
        .iter()
        .filter_map(|w| reconfigure::decode_declaration(w.value.as_deref()?));
    let seat = declarations.filter_map(|(_, seat)| seat).next_back()?;
    Some((seat.version, seat.acceptors))
}

/// A move to lives this node does not know alive (here, of nodes that are not members) is
/// refused before anything is proposed: it could leave the variable where no majority ever
/// answers. A majority of known lives is enough.
#[test]
fn a_move_to_a_set_without_a_majority_of_lives_known_alive_is_refused() {
    let mut net = Net::new(3);
    let strangers = [life(1), life(7), life(8)].into();
    let refused = VarsError::NotAlive {
        name: "x".into(),
        named: 3,
        known: 1,
        needed: 2,
    };
    assert_eq!(change(&mut net, 1, strangers), Err(refused));
    assert!(net.wire.is_empty());
    assert!(change(&mut net, 1, [life(1), life(2), life(7)].into()).is_ok());
}

/// A declaration written without a seat (a late `declare` by a node the declaration had not
/// reached) can win the race of writes over one with a seat: a life added by the move could
/// then never take the variable up. The holders who read it write the seat they know back.
#[test]
fn a_declaration_without_a_seat_winning_over_one_is_written_over_by_a_holder() {
    let mut net = Net::new(3);
    net.cas(1, 0, 5).expect("starts");
    net.run();
    net.nodes.insert(id(4), Vars::new(life(4)));
    let moved = lives(&[1, 2, 4], 1);
    change(&mut net, 1, moved.clone()).expect("starts");
    net.run();
    let _seat = declaration(&mut net, 1);
    let spec_only = net.nodes[&id(1)].spec("x").expect("held").encode();
    // The seat-less declaration wins the race of writes; every node reads it.
    let mut rewritten = Vec::new();
    for n in [1, 2, 3] {
        let node = net.nodes.get_mut(&id(n)).expect("node");
        node.take_publications();
        node.adopt(net.now, "x", &spec_only);
        rewritten.extend(node.take_publications());
    }
    let added = net.nodes.get_mut(&id(4)).expect("node");
    added.adopt(net.now, "x", &spec_only);
    assert_eq!(
        added.get("x"),
        None,
        "life 4 cannot take it up from the spec alone"
    );
    assert_eq!(
        written_seat(&rewritten).map(|(_, set)| set),
        Some(moved),
        "no holder wrote the seat back"
    );
}
