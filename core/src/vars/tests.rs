use std::collections::{BTreeMap, BTreeSet};

use foundation_agents::cas::Ballot;
use proptest::prelude::*;

use super::*;

pub(super) fn id(n: u128) -> NodeId {
    NodeId::from_u128(n)
}

pub(super) fn life(n: u128) -> Life {
    Life {
        node: id(n),
        generation: 1,
    }
}

fn spec(acceptors: u128) -> VarSpec {
    VarSpec {
        ty: VarType::Int { min: 0, max: 100 },
        policy: Policy::Cas,
        initial: VarValue::Int(0),
        acceptors: (1..=acceptors).map(life).collect(),
    }
}

/// `n` nodes (lives 1 to `n`) that declared `name` with `spec`.
pub(super) fn declared(n: u128, name: &str, spec: &VarSpec) -> BTreeMap<NodeId, Vars> {
    let mut nodes = BTreeMap::new();
    for i in 1..=n {
        let mut vars = Vars::new(life(i));
        vars.declare(name, spec.clone()).expect("declares");
        nodes.insert(id(i), vars);
    }
    nodes
}

pub(super) const SECOND: Duration = Duration::from_secs(1);

/// `n` nodes holding variable "x", and the messages between them, delivered in an order the
/// test chooses; nodes in `cut` exchange nothing with the others.
pub(super) struct Net {
    pub(super) nodes: BTreeMap<NodeId, Vars>,
    pub(super) wire: Vec<(NodeId, NodeId, Bytes)>,
    pub(super) cut: BTreeSet<NodeId>,
    pub(super) now: Instant,
    pub(super) done: Vec<(NodeId, u64, CasOutcome<Life>)>,
}

impl Net {
    pub(super) fn new(n: u128) -> Self {
        let nodes = declared(n, "x", &spec(n));
        Self {
            nodes,
            wire: Vec::new(),
            cut: BTreeSet::new(),
            now: Instant::ZERO,
            done: Vec::new(),
        }
    }

    pub(super) fn cas(&mut self, who: u128, expected: u64, value: i64) -> Result<u64, VarsError> {
        let mut out = Outgoing::new();
        let node = self.nodes.get_mut(&id(who)).expect("node");
        let result = node.compare_and_set(
            self.now,
            "x",
            expected,
            VarValue::Int(value),
            SECOND,
            &mut out,
        );
        self.queue(id(who), out);
        result
    }

    pub(super) fn queue(&mut self, from: NodeId, out: Outgoing) {
        for (to, payload) in out {
            let crosses = self.cut.contains(&from) != self.cut.contains(&to);
            if !crosses {
                self.wire.push((from, to, payload));
            }
        }
        self.collect(from);
    }

    fn collect(&mut self, node: NodeId) {
        for event in self.nodes.get_mut(&node).expect("node").take_events() {
            if let VarsEvent::CasDone {
                request, outcome, ..
            } = event
            {
                self.done.push((node, request, outcome));
            }
        }
    }

    /// Delivers the message at `index` of the wire.
    pub(super) fn deliver(&mut self, index: usize) {
        let (from, to, payload) = self.wire.remove(index);
        let Ok(crate::CoreMessage::Vars(message)) = postcard::from_bytes(&payload) else {
            panic!("a variables message");
        };
        let mut out = Outgoing::new();
        let node = self.nodes.get_mut(&to).expect("node");
        node.received(self.now, from, message, &mut out);
        self.queue(to, out);
    }

    pub(super) fn run(&mut self) {
        while !self.wire.is_empty() {
            self.deliver(0);
        }
    }

    /// Moves time on by `by` and fires what is due everywhere.
    pub(super) fn advance(&mut self, by: Duration) {
        self.now = self.now + by;
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for node in ids {
            let mut out = Outgoing::new();
            let vars = self.nodes.get_mut(&node).expect("node");
            vars.handle_timeout(self.now, &mut out);
            self.queue(node, out);
        }
    }

    pub(super) fn value(&self, node: u128) -> (u64, VarValue) {
        let (version, value) = self.nodes[&id(node)].get("x").expect("declared");
        (version, value.clone())
    }
}

#[test]
fn of_three_writers_expecting_the_same_version_exactly_one_wins_and_all_learn_it() {
    let mut net = Net::new(3);
    for who in 1..=3 {
        net.cas(who, 0, who as i64 * 10).expect("starts");
    }
    for _ in 0..50 {
        net.run();
        net.advance(Duration::from_millis(5));
    }
    let won: Vec<_> = net
        .done
        .iter()
        .filter(|(_, _, o)| matches!(o, CasOutcome::Won { version: 1 }))
        .collect();
    assert_eq!(won.len(), 1, "{:?}", net.done);
    assert_eq!(net.done.len(), 3, "every writer learns how its write ended");
    let winner = won[0].0;
    let expected = (1, VarValue::Int(winner.as_u128() as i64 * 10));
    for node in 1..=3 {
        assert_eq!(net.value(node), expected);
    }
}

#[test]
fn a_minority_side_fails_with_no_majority_and_the_majority_side_commits() {
    let mut net = Net::new(5);
    net.cut = [id(4), id(5)].into();
    net.cas(4, 0, 44).expect("starts");
    net.cas(1, 0, 11).expect("starts");
    for _ in 0..30 {
        net.run();
        net.advance(Duration::from_millis(50));
    }
    assert!(net.done.contains(&(id(4), 1, CasOutcome::NoMajority)));
    assert!(net
        .done
        .contains(&(id(1), 1, CasOutcome::Won { version: 1 })));
    assert_eq!(net.value(4), (0, VarValue::Int(0)), "nothing forked");
    assert_eq!(net.nodes[&id(4)].stats().cas_no_majority, 1);
}

/// The compare-and-set step a wire message carries.
fn step(payload: &Bytes) -> CasMessage<Life, VarValue> {
    match postcard::from_bytes(payload) {
        Ok(crate::CoreMessage::Vars(VarsMessage::Cas { message, .. })) => message,
        other => panic!("a compare-and-set step, not {other:?}"),
    }
}

/// A write that ended without a majority is not a write that lost: one acceptor (its own
/// node) accepted it, and the next writer of that version, hearing of it in a promise, must
/// decide it — so the writer told `NoMajority` finds its value at the version it expected.
#[test]
fn a_write_that_ended_without_a_majority_can_still_be_the_one_decided() {
    let mut net = Net::new(3);
    net.cas(1, 0, 10).expect("starts");
    // Its prepare reaches nodes 1 and 2, who promise; its accept reaches only node 1.
    while let Some((_, to, message)) = net.wire.first() {
        let accept = matches!(step(message), CasMessage::Accept { .. });
        match *to == id(3) || (accept && *to != id(1)) {
            true => drop(net.wire.remove(0)),
            false => net.deliver(0),
        }
    }
    net.advance(SECOND);
    assert_eq!(net.done, [(id(1), 1, CasOutcome::NoMajority)]);
    // Node 3 writes the same version; node 2 is cut off.
    net.cut = [id(2)].into();
    net.cas(3, 0, 30).expect("starts");
    net.run();
    assert_eq!(net.value(3), (1, VarValue::Int(10)));
    assert_eq!(
        net.nodes[&id(3)].decided("x", 1).map(|(w, _)| w),
        Some(life(1))
    );
    assert_eq!(
        net.value(1),
        (1, VarValue::Int(10)),
        "node 1's write landed"
    );
}

#[test]
fn a_value_out_of_range_from_a_misbehaving_node_is_refused_and_never_visible() {
    let mut net = Net::new(3);
    let fingerprint = spec(3).fingerprint();
    let bogus = Proposal {
        writer: life(3),
        request: 9,
        value: VarValue::Int(1_000),
        acceptors: None,
    };
    let decided = VarsMessage::Cas {
        name: "x".into(),
        spec: fingerprint,
        from: life(3),
        message: CasMessage::Decided {
            slot: 1,
            proposal: bogus.clone(),
            next: spec(3).acceptors,
        },
    };
    let accept = VarsMessage::Cas {
        name: "x".into(),
        spec: fingerprint,
        from: life(3),
        message: CasMessage::Accept {
            slot: 1,
            ballot: Ballot {
                round: 1,
                proposer: life(3),
            },
            proposal: bogus,
        },
    };
    let mut out = Outgoing::new();
    let node = net.nodes.get_mut(&id(1)).expect("node");
    node.received(Instant::ZERO, id(3), decided, &mut out);
    node.received(Instant::ZERO, id(3), accept, &mut out);
    assert!(out.is_empty(), "no answer to a refused value");
    assert_eq!(node.stats().invalid_values, 2);
    assert_eq!(net.value(1), (0, VarValue::Int(0)));
}

#[test]
fn messages_under_another_spec_or_for_an_unknown_variable_are_refused() {
    let mut vars = Vars::new(life(1));
    vars.declare("x", spec(3)).expect("declares");
    let mut out = Outgoing::new();
    let fingerprint = spec(3).fingerprint();
    // Another spec, an unknown variable, and a sender claiming another node's life.
    for (name, spec, claimed) in [("x", 7, 2), ("y", fingerprint, 2), ("x", fingerprint, 3)] {
        let message = VarsMessage::Cas {
            name: name.into(),
            spec,
            from: life(claimed),
            message: CasMessage::Prepare {
                slot: 1,
                ballot: Ballot {
                    round: 1,
                    proposer: life(claimed),
                },
            },
        };
        vars.received(Instant::ZERO, id(2), message, &mut out);
    }
    assert!(out.is_empty());
    assert_eq!(vars.stats().foreign_messages, 3);
}

#[test]
fn bad_requests_get_typed_errors_and_change_nothing() {
    let mut vars = Vars::new(life(1));
    let mut out = Outgoing::new();
    assert!(matches!(
        vars.declare("", spec(1)),
        Err(VarsError::BadName(_))
    ));
    let mut lww = spec(1);
    lww.policy = Policy::Lww;
    assert!(matches!(vars.declare("x", lww), Err(VarsError::BadSpec(_))));
    let mut outsider = spec(1);
    outsider.acceptors = [life(2)].into();
    assert!(matches!(
        vars.declare("x", outsider),
        Err(VarsError::BadSpec(_))
    ));
    let mut bad_initial = spec(1);
    bad_initial.initial = VarValue::Int(-1);
    assert!(matches!(
        vars.declare("x", bad_initial),
        Err(VarsError::Invalid(_))
    ));
    vars.declare("x", spec(1)).expect("declares");
    vars.declare("x", spec(1))
        .expect("the same spec again is fine");
    assert_eq!(
        vars.declare("x", spec(2)),
        Err(VarsError::Conflict("x".into()))
    );
    let mut cas = |vars: &mut Vars, name: &str, expected, value| {
        vars.compare_and_set(Instant::ZERO, name, expected, value, SECOND, &mut out)
    };
    assert!(matches!(
        cas(&mut vars, "y", 0, VarValue::Int(1)),
        Err(VarsError::Unknown(_))
    ));
    assert!(matches!(
        cas(&mut vars, "x", 0, VarValue::Bool(true)),
        Err(VarsError::Invalid(_))
    ));
    assert!(matches!(
        cas(&mut vars, "x", 0, VarValue::Int(101)),
        Err(VarsError::Invalid(_))
    ));
    assert_eq!(
        cas(&mut vars, "x", 3, VarValue::Int(1)),
        Err(VarsError::VersionMismatch { current: 0 })
    );
    cas(&mut vars, "x", 0, VarValue::Int(1)).expect("starts");
    assert_eq!(
        cas(&mut vars, "x", 0, VarValue::Int(2)),
        Err(VarsError::Busy)
    );
    assert_eq!(vars.get("x"), Some((0, &VarValue::Int(0))));
}

proptest! {
    /// Whatever order messages arrive in, and whichever are lost: every version is decided
    /// the same on every node that knows it, and each is won by at most one writer.
    #[test]
    fn versions_are_linear_and_each_is_won_once(
        picks in proptest::collection::vec((any::<u8>(), any::<bool>()), 1..400),
        writers in proptest::collection::vec((1u128..=5, 0u64..4), 1..12),
    ) {
        let mut net = Net::new(5);
        let mut writers = writers.into_iter();
        for (pick, lose) in picks {
            if pick % 16 == 0 {
                if let Some((who, expected)) = writers.next() {
                    let _ = net.cas(who, expected, who as i64);
                }
            }
            if pick % 32 == 1 {
                net.advance(Duration::from_millis(3));
            }
            if net.wire.is_empty() {
                continue;
            }
            let index = pick as usize % net.wire.len();
            if lose {
                net.wire.remove(index);
            } else {
                net.deliver(index);
            }
        }
        for _ in 0..20 {
            net.run();
            net.advance(Duration::from_millis(100));
        }
        let mut decided: BTreeMap<u64, Proposal<Life, VarValue>> = BTreeMap::new();
        for vars in net.nodes.values() {
            let variable = &vars.variables["x"];
            let (version, _) = variable.register().expect("a register").current();
            // A node may jump to a later version whose earlier decisions never reached it
            // (`CasRegister::learn`): gaps are allowed, disagreement is not.
            for v in 1..=version {
                let Some(p) = variable.register().expect("a register").decided(v) else {
                    continue;
                };
                prop_assert_eq!(decided.entry(v).or_insert_with(|| p.clone()), p);
            }
        }
        let mut winners: BTreeMap<u64, usize> = BTreeMap::new();
        for (_, _, outcome) in &net.done {
            if let CasOutcome::Won { version } = outcome {
                *winners.entry(*version).or_default() += 1;
            }
        }
        prop_assert!(winners.values().all(|&n| n == 1), "{:?}", winners);
    }
}

#[test]
fn a_replicated_declaration_is_taken_up_by_acceptors_only_and_a_conflict_is_counted() {
    let mut acceptor = Vars::new(life(2));
    acceptor.adopt(Instant::ZERO, "x", &spec(3).encode());
    assert_eq!(acceptor.get("x"), Some((0, &VarValue::Int(0))));
    assert_eq!(
        acceptor.take_events(),
        vec![VarsEvent::Declared { name: "x".into() }]
    );
    acceptor.adopt(Instant::ZERO, "x", &spec(3).encode());
    assert_eq!(
        acceptor.stats().conflicting_declarations,
        0,
        "the same spec again"
    );
    acceptor.adopt(Instant::ZERO, "x", &spec(2).encode());
    acceptor.adopt(Instant::ZERO, "y", b"not a spec");
    assert_eq!(acceptor.stats().conflicting_declarations, 2);
    assert_eq!(acceptor.spec("x"), Some(&spec(3)), "the first spec stays");
    let mut outsider = Vars::new(life(9));
    outsider.adopt(Instant::ZERO, "x", &spec(3).encode());
    assert_eq!(outsider.get("x"), None);
    assert_eq!(outsider.stats().conflicting_declarations, 0);
}

/// Nodes whose replicated keyspaces the test plays: each publication is stamped in the order
/// the test flushes it and handed to the nodes it reaches.
struct Board {
    nodes: BTreeMap<NodeId, Vars>,
    clock: u64,
    now: Instant,
}

impl Board {
    fn new(n: u128, name: &str, spec: &VarSpec) -> Self {
        let nodes = declared(n, name, spec);
        Self {
            nodes,
            clock: 0,
            now: Instant::ZERO,
        }
    }

    fn node(&mut self, n: u128) -> &mut Vars {
        self.nodes.get_mut(&id(n)).expect("node")
    }

    /// Stamps node `from`'s publications and hands them to the nodes in `to`.
    fn flush(&mut self, from: u128, to: &[u128]) {
        // Counter states are written once their batching interval has passed.
        let mut out = Outgoing::new();
        let due = self.now + COUNTER_PUBLISH_EVERY;
        self.node(from).handle_timeout(due, &mut out);
        assert!(out.is_empty(), "no register here has anything due");
        for write in self.node(from).take_publications() {
            self.clock += 1;
            let ts = foundation_crdt::Timestamp {
                wall_ms: self.clock,
                logical: 0,
                node: foundation_crdt::NodeId::from_u128(from),
            };
            self.hand(to, &write.keyspace, &write.key, ts, write.value.as_deref());
        }
    }

    fn hand(
        &mut self,
        to: &[u128],
        keyspace: &str,
        key: &str,
        ts: foundation_crdt::Timestamp,
        bytes: Option<&[u8]>,
    ) {
        let now = self.now;
        for n in to {
            self.node(*n).entry_changed(now, keyspace, key, ts, bytes);
        }
    }

    fn shown(&self, n: u128, name: &str) -> VarValue {
        self.nodes[&id(n)].get(name).expect("declared").1.clone()
    }
}

fn lww_spec() -> VarSpec {
    VarSpec {
        ty: VarType::Int { min: 0, max: 100 },
        policy: Policy::Lww,
        initial: VarValue::Int(0),
        acceptors: BTreeSet::new(),
    }
}

pub(super) fn counter_spec(initial: i64, holders: u128) -> VarSpec {
    VarSpec {
        ty: VarType::Int {
            min: 0,
            max: i64::MAX,
        },
        policy: Policy::Counter,
        initial: VarValue::Int(initial),
        acceptors: (1..=holders).map(life).collect(),
    }
}

#[test]
fn lww_replicas_show_the_latest_stamp_whatever_order_writes_arrive_in() {
    let mut board = Board::new(3, "t", &lww_spec());
    board.node(1).set("t", VarValue::Int(10)).expect("writes");
    board.flush(1, &[1]);
    board.node(2).set("t", VarValue::Int(20)).expect("writes");
    board.flush(2, &[2, 3]);
    assert_eq!(
        board.shown(1, "t"),
        VarValue::Int(10),
        "2's write not here yet"
    );
    // Node 1's write reaches 2 and 3 late: its stamp is older, so 20 stays.
    let write = board.nodes[&id(1)].get("t").map(|(v, _)| v);
    assert_eq!(write, Some(1));
    let old = LwwRecord {
        spec: lww_spec().fingerprint(),
        value: VarValue::Int(10),
        writer: life(1),
        seq: 1,
    };
    let ts1 = foundation_crdt::Timestamp {
        wall_ms: 1,
        logical: 0,
        node: foundation_crdt::NodeId::from_u128(1),
    };
    board.hand(
        &[2, 3],
        LWW_KEYSPACE,
        &lww::key("t", id(1)),
        ts1,
        Some(&old.encode()),
    );
    let ts2 = foundation_crdt::Timestamp {
        wall_ms: 2,
        logical: 0,
        node: foundation_crdt::NodeId::from_u128(2),
    };
    let new = LwwRecord {
        spec: lww_spec().fingerprint(),
        value: VarValue::Int(20),
        writer: life(2),
        seq: 1,
    };
    board.hand(
        &[1],
        LWW_KEYSPACE,
        &lww::key("t", id(2)),
        ts2,
        Some(&new.encode()),
    );
    for n in 1..=3 {
        assert_eq!(board.shown(n, "t"), VarValue::Int(20), "node {n}");
    }
    let last = board.nodes[&id(1)]
        .history("t")
        .expect("declared")
        .last()
        .cloned();
    assert_eq!(
        last.map(|c| (c.value, c.writer)),
        Some((VarValue::Int(20), life(2)))
    );
    assert_eq!(
        board.nodes[&id(1)].statistics("t").map(|s| s.changes),
        Some(2)
    );
}

#[test]
fn an_out_of_range_lww_write_from_a_misbehaving_node_is_refused_and_never_shows() {
    let mut board = Board::new(2, "t", &lww_spec());
    board.node(1).set("t", VarValue::Int(5)).expect("writes");
    board.flush(1, &[1, 2]);
    assert!(matches!(
        board.node(2).set("t", VarValue::Int(101)),
        Err(VarsError::Invalid(VarError::OutOfRange { .. }))
    ));
    assert!(
        board.node(2).take_publications().is_empty(),
        "nothing written"
    );
    // Node 3 bypasses its own checks and writes 1000 under its key, with a later stamp.
    let bogus = LwwRecord {
        spec: lww_spec().fingerprint(),
        value: VarValue::Int(1_000),
        writer: life(3),
        seq: 1,
    };
    let late = foundation_crdt::Timestamp {
        wall_ms: 99,
        logical: 0,
        node: foundation_crdt::NodeId::from_u128(3),
    };
    board.hand(
        &[1, 2],
        LWW_KEYSPACE,
        &lww::key("t", id(3)),
        late,
        Some(&bogus.encode()),
    );
    for n in 1..=2 {
        assert_eq!(board.shown(n, "t"), VarValue::Int(5), "node {n}");
        assert_eq!(board.nodes[&id(n)].stats().invalid_values, 1, "node {n}");
    }
    // Under another node's key it is refused too (that key no longer holds a valid write).
    board.hand(
        &[1, 2],
        LWW_KEYSPACE,
        &lww::key("t", id(1)),
        late,
        Some(&bogus.encode()),
    );
    for n in 1..=2 {
        assert_eq!(board.shown(n, "t"), VarValue::Int(0), "node {n}");
        assert!(board.nodes[&id(n)].invariants().is_ok());
        assert_eq!(board.nodes[&id(n)].stats().foreign_messages, 1, "node {n}");
    }
}

#[test]
fn coordinated_variables_refuse_direct_writes_and_take_a_majority_commit() {
    let mut coordinated = spec(3);
    coordinated.policy = Policy::Coordinated;
    let mut net = Net::new(0);
    for i in 1..=3 {
        let mut vars = Vars::new(life(i));
        vars.declare("x", coordinated.clone()).expect("declares");
        net.nodes.insert(id(i), vars);
    }
    let refused = net.cas(1, 0, 5);
    assert!(matches!(
        refused,
        Err(VarsError::WrongPolicy {
            policy: Policy::Coordinated,
            ..
        })
    ));
    let node = net.nodes.get_mut(&id(1)).expect("node");
    assert!(matches!(
        node.set("x", VarValue::Int(5)),
        Err(VarsError::WrongPolicy { .. })
    ));
    let mut out = Outgoing::new();
    let request = node
        .commit(net.now, "x", 0, VarValue::Int(7), SECOND, &mut out)
        .expect("a protocol's outcome commits");
    net.queue(id(1), out);
    net.run();
    assert!(net
        .done
        .contains(&(id(1), request, CasOutcome::Won { version: 1 })));
    for n in 1..=3 {
        assert_eq!(net.value(n), (1, VarValue::Int(7)));
    }
    // And the commit path is refused for a cas variable.
    let mut plain = Vars::new(life(1));
    plain.declare("y", spec(1)).expect("declares");
    let mut out = Outgoing::new();
    let commit = plain.commit(Instant::ZERO, "y", 0, VarValue::Int(1), SECOND, &mut out);
    assert!(matches!(commit, Err(VarsError::WrongPolicy { .. })));
}

#[test]
fn a_counter_state_showing_someone_overdrawn_is_refused_whole() {
    let mut board = Board::new(2, "pool", &counter_spec(4, 2));
    // Node 3 refills 1 and draws it: an honest state.
    let mut honest = counter::genesis(4, &counter_spec(4, 2).acceptors);
    honest.add(counter::actor(life(3)), 1).expect("adds");
    honest.draw(counter::actor(life(3)), 1).expect("draws");
    let record = |state| counter::CounterRecord {
        spec: counter_spec(4, 2).fingerprint(),
        state,
    };
    let ts = foundation_crdt::Timestamp::at_wall(5);
    let bytes = record(honest).encode();
    board.hand(
        &[1, 2],
        COUNTERS_KEYSPACE,
        &counter::key("pool", life(3)),
        ts,
        Some(&bytes),
    );
    assert_eq!(board.shown(1, "pool"), VarValue::Int(4), "added 1, drew 1");
    // Then it claims to have drawn 9 with 1 added: a state no honest replica produces,
    // forged through its encoding.
    let overdrawn: foundation_crdt::BoundedCounter = postcard::from_bytes(&{
        // `drawn` 9 against `added` 1 for node 3's actor.
        let mut other = foundation_crdt::BoundedCounter::new();
        other.add(counter::actor(life(3)), 9).expect("adds");
        other.draw(counter::actor(life(3)), 9).expect("draws");
        let mut bytes = postcard::to_stdvec(&other).expect("encodes");
        // Postcard writes the added total before drawn: make added 1.
        let pos = bytes.iter().position(|b| *b == 9).expect("the added total");
        bytes[pos] = 1;
        bytes
    })
    .expect("decodes");
    assert!(
        overdrawn.invariants().is_err(),
        "the forged state is overdrawn"
    );
    let bad = record(overdrawn).encode();
    board.hand(
        &[1, 2],
        COUNTERS_KEYSPACE,
        &counter::key("pool", life(3)),
        ts,
        Some(&bad),
    );
    for n in 1..=2 {
        assert_eq!(board.shown(n, "pool"), VarValue::Int(4), "node {n}");
        assert_eq!(board.nodes[&id(n)].stats().invalid_values, 1);
        assert!(board.nodes[&id(n)].invariants().is_ok());
    }
}

/// Replication reports a key only when its bytes change: writing the same value again must
/// still be new bytes, or replicas would keep the earlier write's stamp for that writer.
#[test]
fn writing_the_same_lww_value_twice_publishes_different_bytes() {
    let mut vars = Vars::new(life(1));
    vars.declare("t", lww_spec()).expect("declares");
    vars.set("t", VarValue::Int(5)).expect("writes");
    vars.set("t", VarValue::Int(5)).expect("writes");
    let writes = vars.take_publications();
    assert_eq!(writes.len(), 2);
    assert_eq!(writes[0].key, writes[1].key);
    assert_ne!(writes[0].value, writes[1].value);
}

#[test]
fn a_burst_of_draws_is_written_once_when_the_batching_interval_ends() {
    let mut vars = Vars::new(life(1));
    vars.declare("pool", counter_spec(10, 1)).expect("declares");
    let mut out = Outgoing::new();
    for _ in 0..4 {
        vars.draw(Instant::ZERO, "pool", 1, &mut out)
            .expect("within rights");
    }
    assert_eq!(
        vars.get("pool"),
        Some((4, &VarValue::Int(6))),
        "shown at once"
    );
    assert!(vars.take_publications().is_empty(), "not written yet");
    assert_eq!(
        vars.poll_timeout(),
        Some(Instant::ZERO + COUNTER_PUBLISH_EVERY)
    );
    // Its allowance ran low: a raise went out, answered by itself (the only holder).
    assert_eq!(out.len(), 1);
    let Ok(crate::CoreMessage::Vars(raise)) = postcard::from_bytes(&out.remove(0).1) else {
        panic!("a variables message");
    };
    vars.received(Instant::ZERO, id(1), raise, &mut out);
    let Ok(crate::CoreMessage::Vars(allowed)) = postcard::from_bytes(&out.remove(0).1) else {
        panic!("a variables message");
    };
    vars.received(Instant::ZERO, id(1), allowed, &mut out);
    assert!(out.is_empty());
    vars.handle_timeout(Instant::ZERO + COUNTER_PUBLISH_EVERY, &mut out);
    let writes = vars.take_publications();
    assert_eq!(writes.len(), 1);
    let record = writes[0]
        .value
        .as_deref()
        .and_then(counter::CounterRecord::decode);
    assert_eq!(record.map(|r| r.state.value()), Some(6));
    assert_eq!(vars.poll_timeout(), None, "nothing left to write");
}

/// A node holding `VARIABLES_MAX` variables refuses one more declared here, but holds those
/// other nodes declare: an `lww` variable readable everywhere, and a `cas` variable naming it
/// among the acceptors (which answers for it). Refused, the node lacked them for good.
#[test]
fn a_full_node_refuses_its_own_declarations_but_holds_its_peers() {
    let mut full = Vars::new(life(1));
    for i in 0..VARIABLES_MAX {
        full.declare(&format!("v{i}"), lww_spec()).expect("room");
    }
    assert_eq!(full.declare("mine", lww_spec()), Err(VarsError::Full));
    full.adopt(Instant::ZERO, "theirs", &lww_spec().encode());
    assert_eq!(full.get("theirs"), Some((0, &VarValue::Int(0))));
    full.adopt(Instant::ZERO, "shared", &spec(3).encode());
    assert!(
        full.spec("shared").is_some(),
        "an acceptor named holds its variable"
    );
    assert_eq!(full.stats().conflicting_declarations, 0);
}
