use std::collections::{BTreeMap, BTreeSet};

use foundation_agents::cas::Ballot;
use proptest::prelude::*;

use super::*;

fn id(n: u128) -> NodeId {
    NodeId::from_u128(n)
}

fn life(n: u128) -> Life {
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

const SECOND: Duration = Duration::from_secs(1);

/// `n` nodes holding variable "x", and the messages between them, delivered in an order the
/// test chooses; nodes in `cut` exchange nothing with the others.
struct Net {
    nodes: BTreeMap<NodeId, Vars>,
    wire: Vec<(NodeId, NodeId, Bytes)>,
    cut: BTreeSet<NodeId>,
    now: Instant,
    done: Vec<(NodeId, u64, CasOutcome<Life>)>,
}

impl Net {
    fn new(n: u128) -> Self {
        let mut nodes = BTreeMap::new();
        for i in 1..=n {
            let mut vars = Vars::new(life(i));
            vars.declare("x", spec(n)).expect("declares");
            nodes.insert(id(i), vars);
        }
        Self {
            nodes,
            wire: Vec::new(),
            cut: BTreeSet::new(),
            now: Instant::ZERO,
            done: Vec::new(),
        }
    }

    fn cas(&mut self, who: u128, expected: u64, value: i64) -> Result<u64, VarsError> {
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

    fn queue(&mut self, from: NodeId, out: Outgoing) {
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
    fn deliver(&mut self, index: usize) {
        let (from, to, payload) = self.wire.remove(index);
        let Ok(crate::CoreMessage::Vars(message)) = postcard::from_bytes(&payload) else {
            panic!("a variables message");
        };
        let mut out = Outgoing::new();
        let node = self.nodes.get_mut(&to).expect("node");
        node.received(self.now, from, message, &mut out);
        self.queue(to, out);
    }

    fn run(&mut self) {
        while !self.wire.is_empty() {
            self.deliver(0);
        }
    }

    /// Moves time on by `by` and fires what is due everywhere.
    fn advance(&mut self, by: Duration) {
        self.now = self.now + by;
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for node in ids {
            let mut out = Outgoing::new();
            let vars = self.nodes.get_mut(&node).expect("node");
            vars.handle_timeout(self.now, &mut out);
            self.queue(node, out);
        }
    }

    fn value(&self, node: u128) -> (u64, VarValue) {
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

#[test]
fn a_value_out_of_range_from_a_misbehaving_node_is_refused_and_never_visible() {
    let mut net = Net::new(3);
    let fingerprint = spec(3).fingerprint();
    let bogus = Proposal {
        writer: life(3),
        request: 9,
        value: VarValue::Int(1_000),
    };
    let decided = VarsMessage::Cas {
        name: "x".into(),
        spec: fingerprint,
        from: life(3),
        message: CasMessage::Decided {
            slot: 1,
            proposal: bogus.clone(),
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
            let (version, _) = variable.register.current();
            for v in 1..=version {
                let p = variable.register.decided(v).expect("contiguous").clone();
                prop_assert_eq!(decided.entry(v).or_insert_with(|| p.clone()), &p);
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
    acceptor.adopt("x", &spec(3).encode());
    assert_eq!(acceptor.get("x"), Some((0, &VarValue::Int(0))));
    assert_eq!(
        acceptor.take_events(),
        vec![VarsEvent::Declared { name: "x".into() }]
    );
    acceptor.adopt("x", &spec(3).encode());
    assert_eq!(
        acceptor.stats().conflicting_declarations,
        0,
        "the same spec again"
    );
    acceptor.adopt("x", &spec(2).encode());
    acceptor.adopt("y", b"not a spec");
    assert_eq!(acceptor.stats().conflicting_declarations, 2);
    assert_eq!(acceptor.spec("x"), Some(&spec(3)), "the first spec stays");
    let mut outsider = Vars::new(life(9));
    outsider.adopt("x", &spec(3).encode());
    assert_eq!(outsider.get("x"), None);
    assert_eq!(outsider.stats().conflicting_declarations, 0);
}
