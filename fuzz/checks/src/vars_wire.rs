//! A node that holds variables, fed what its peers may send about them: `core_input` rarely
//! gets past a fresh core's empty variables machine, so this one starts from node 1 holding a
//! `cas` variable and a `coordinated` one decided by lives {1, 2, 3}, a counter held by the
//! same lives, and a `cas` variable node 1 decides alone. The input is read as a script of
//! steps: well-formed variables messages of every kind (compare-and-set steps, rights, escrow
//! steps, hellos, renewals) whose fields it chooses (versions and rounds near 0, near the current
//! version, near `SLOT_MAX` and `u64::MAX`; lives known and unknown; values in and out of the
//! type), replicated declarations (with seats), counter states and `lww` writes arriving from
//! node 2, raw garbage, local requests, and time passing.
//!
//! Properties: nothing panics (overflow checks are on), every machine's invariants hold after
//! each step, and at the end the node still decides alone: a compare-and-set of a variable
//! only it decides wins, and it still takes a replicated write.

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;
use foundation_agents::cas::{Ballot, CasMessage, CasOutcome, Proposal, SLOT_MAX, SLOT_WINDOW};
use foundation_agents::variable::{Policy, VarType, VarValue};
use foundation_core::replication::{Envelope, Op, Origin, ReplicationMessage};
use foundation_core::time::Instant;
use foundation_core::vars::escrow::Step as EscrowStep;
use foundation_core::vars::reconfigure::{encode_declaration, Seat};
use foundation_core::vars::{
    Life, VarSpec, VarsEvent, VarsMessage, COUNTERS_KEYSPACE, LWW_KEYSPACE, VARS_KEYSPACE,
};
use foundation_core::{envelope, Channel, Core, Effect, Event, Input, NodeId};
use foundation_crdt::{BoundedCounter, LwwEntry, Timestamp};

use crate::core_input::{assert_takes_a_write, core};

/// Most steps one input runs: enough to walk a register through a few versions.
const STEPS_MAX: usize = 64;

/// The names the input picks from: the four declared here, one a peer may declare, and one no
/// valid declaration can have.
const NAMES: [&str; 6] = ["x", "led", "pool", "solo", "other", ""];

/// The variable the end of every run writes; no step names it.
const FRESH: &str = "after";

/// Checks the properties above on one input; panics if one fails.
pub fn check(data: &[u8]) {
    drive(data).assert_decides_alone();
}

/// Runs the input's steps, checking the invariants after each.
fn drive(data: &[u8]) -> Run<'_> {
    let mut run = Run::new(data);
    for _ in 0..STEPS_MAX {
        if run.input.is_empty() {
            break;
        }
        run.step();
        drain(&mut run.core);
        if let Err(broken) = run.core.invariants() {
            panic!("an invariant broke after a step: {broken}");
        }
    }
    run
}

/// Scripts for the seed corpus, in the input's format (see `Run::step`); each reaches
/// state that random bytes reach rarely.
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("x-written", X_WRITTEN.concat()),
        ("declared-other", DECLARED_OTHER.concat()),
        ("seat-jump", SEAT_JUMP.concat()),
        ("pool-drawn", POOL_DRAWN.concat()),
        ("hello-later-life", HELLO_LATER_LIFE.concat()),
        ("crash-round-max", CRASH_ROUND_MAX.concat()),
        ("crash-counter-merge", CRASH_COUNTER_MERGE.concat()),
    ]
}

/// Found by this check: node 2 prepares `x` at round `u64::MAX`, node 1 promises, and its
/// next write's round overflowed.
const CRASH_ROUND_MAX: [&[u8]; 2] = [
    // cas step, "x", slot 1, prepare, ballot (u64::MAX, life 2.1), its fingerprint, from 2.1
    &[0, 0, 0, 5, 0, 0, 2, 1, 0, 1, 1, 0, 1],
    // local request, "x", expected 0, 1 s, compare-and-set, Int(3)
    &[6, 0, 0, 5, 100, 0, 6, 3],
];

/// Found by this check: node 2 replicates a state of `pool` in which the genesis account drew
/// its 30 units instead of handing them to the holders. Valid alone, it overdrew genesis once
/// merged with node 1's state, and the merge took it.
const CRASH_COUNTER_MERGE: [&[u8]; 1] = [
    // replicated entry, "pool", writer 2.1, a counter's key, a counter state, its fingerprint,
    // two steps of actor 0 (genesis): add 30, draw 30
    &[
        5, 2, 1, 0, 2, 2, 1, 2, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 30, 0, 0, 0, 0, 4, 0, 0, 0, 0, 0,
        0, 0, 30, 1,
    ],
];

/// Node 1 writes 3 over version 0 of `x`; node 2 promises its ballot (round 1) and accepts:
/// with node 1's own answers, a majority of {1, 2, 3}.
const X_WRITTEN: [&[u8]; 3] = [
    // local request, "x", expected 0, 1 s, compare-and-set, Int(3)
    &[6, 0, 0, 5, 100, 0, 6, 3],
    // cas step, "x", slot 1, promise, ballot (1, life 1.1), nothing accepted, its fingerprint,
    // from life 2.1, sent by node 2
    &[0, 0, 0, 5, 1, 1, 0, 0, 0, 1, 1, 1, 0, 1],
    // cas step, "x", slot 1, accepted, ballot (1, life 1.1), its fingerprint, from 2.1
    &[0, 0, 0, 5, 3, 1, 0, 0, 0, 1, 1, 0, 1],
];

/// Node 2 declares `other` (acceptors 1, 2, 4) and node 1 takes it up, then a stranger's
/// prepare for it.
const DECLARED_OTHER: [&[u8]; 2] = [
    // declaration, "other", as declared, the spec alone
    &[4, 4, 1, 0],
    // cas step, "other", slot 1, prepare, ballot (2, life 4.1), its fingerprint, from 4.1
    &[0, 4, 0, 5, 0, 2, 0, 3, 0, 1, 3, 0, 1],
];

/// A declaration of `x` with a seat far ahead (version near `SLOT_MAX`), then a decision
/// naming unknown lives next.
const SEAT_JUMP: [&[u8]; 2] = [
    // declaration, "x", as declared, with a seat: version SLOT_MAX - 1, proposal (writer 2.1,
    // request 1, Int(5), no change), from SLOT_MAX, acceptors {2.1, 5.1}
    &[4, 0, 1, 2, 1, 3, 1, 0, 1, 5, 6, 5, 1, 2, 3, 2, 1, 0, 4, 0],
    // cas step, "x", slot 1, decided, proposal (writer 2.1, request 0, Int(4), no change),
    // next {4.1}, its fingerprint, from 2.1
    &[0, 0, 0, 5, 5, 1, 0, 0, 0, 6, 4, 1, 1, 3, 0, 1, 1, 0, 1],
];

/// Node 1 draws from `pool`, a peer asks for rights and raises, time passes.
const POOL_DRAWN: [&[u8]; 4] = [
    // local request, "pool", expected 0, 0 ms, draw 3
    &[6, 2, 0, 5, 0, 3, 3, 0],
    // counter step, "pool", its fingerprint, from 2.1, rights, wanted 2
    &[2, 2, 1, 1, 0, 0, 2, 0, 1],
    // counter step, "pool", its fingerprint, from 3.1, raise to 10, sent by node 3
    &[2, 2, 1, 2, 0, 1, 0, 5, 1],
    // time passes: 1 s
    &[7, 4],
];

/// A later life of node 2 says hello; time passes past the re-seating grace.
const HELLO_LATER_LIFE: [&[u8]; 3] = [
    // hello from life 2.2, sent by node 2
    &[3, 1, 3, 1],
    // time passes: 11 s, twice
    &[7, 5],
    &[7, 5],
];

/// One node's life as variables name it.
fn life(node: u128, generation: u64) -> Life {
    Life {
        node: NodeId::from_u128(node),
        generation,
    }
}

fn lives(nodes: &[u128]) -> BTreeSet<Life> {
    nodes.iter().map(|n| life(*n, 1)).collect()
}

/// The spec every node declares `name` with (the one a peer declares for "other" names this
/// node too, so taking it up reaches a fresh register).
fn spec_of(name: &str) -> VarSpec {
    let (ty, policy, initial, acceptors) = match name {
        "led" => (int(-50, 50), Policy::Coordinated, 0, lives(&[1, 2, 3])),
        "pool" => (int(0, i64::MAX), Policy::Counter, 30, lives(&[1, 2, 3])),
        "solo" | FRESH => (int(0, 9), Policy::Cas, 0, lives(&[1])),
        "other" => (int(0, 9), Policy::Cas, 0, lives(&[1, 2, 4])),
        _ => (int(0, 9), Policy::Cas, 0, lives(&[1, 2, 3])),
    };
    VarSpec {
        ty,
        policy,
        initial: VarValue::Int(initial),
        acceptors,
    }
}

fn int(min: i64, max: i64) -> VarType {
    VarType::Int { min, max }
}

/// The input, read a field at a time; an exhausted input reads zeros.
struct Script<'a>(&'a [u8]);

impl Script<'_> {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn byte(&mut self) -> u8 {
        let Some((&first, rest)) = self.0.split_first() else {
            return 0;
        };
        self.0 = rest;
        first
    }

    fn one_in(&mut self, n: u8) -> bool {
        self.byte().is_multiple_of(n)
    }

    fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[usize::from(self.byte()) % from.len()]
    }

    fn raw_u64(&mut self) -> u64 {
        (0..8).fold(0, |n, _| n << 8 | u64::from(self.byte()))
    }

    fn bytes(&mut self) -> Vec<u8> {
        let len = usize::from(self.byte() % 48).min(self.0.len());
        let (taken, rest) = self.0.split_at(len);
        self.0 = rest;
        taken.to_vec()
    }

    /// A version, slot or round: near 0, near `current`, near the edges arithmetic trips on,
    /// or anything.
    fn number(&mut self, current: u64) -> u64 {
        let near = u64::from(self.byte() % 4);
        match self.byte() % 6 {
            0 => near,
            1 => current.saturating_add(near).saturating_sub(1),
            2 => u64::MAX - near,
            3 => (SLOT_MAX - 2).saturating_add(near),
            4 => self.raw_u64(),
            _ => current,
        }
    }

    /// A life: this node's (1), an acceptor's (2, 3), a stranger's (4, 5), mostly first lives.
    fn life(&mut self) -> Life {
        let node = u128::from(self.byte() % 5) + 1;
        let generation = self.pick(&[1, 1, 1, 2, 0, u64::MAX]);
        life(node, generation)
    }

    /// A node other than node 1, as the transport names a sender.
    fn peer(&mut self) -> NodeId {
        NodeId::from_u128(u128::from(self.byte() % 4) + 2)
    }

    fn lives(&mut self) -> BTreeSet<Life> {
        (0..self.byte() % 4).map(|_| self.life()).collect()
    }

    /// A value for an integer variable: in its range, at or past its ends, or of another type.
    fn value(&mut self) -> VarValue {
        match self.byte() % 8 {
            0 => VarValue::Int(i64::MIN),
            1 => VarValue::Int(i64::MAX),
            2 => VarValue::Int(-1),
            3 => VarValue::Float(f64::NAN),
            4 => VarValue::Bool(true),
            5 => VarValue::Choice("z".into()),
            _ => VarValue::Int(i64::from(self.byte() % 12)),
        }
    }

    fn proposal(&mut self) -> Proposal<Life, VarValue> {
        let writer = self.life();
        let request = self.number(1);
        let value = self.value();
        let acceptors = self.one_in(3).then(|| self.lives());
        Proposal {
            writer,
            request,
            value,
            acceptors,
        }
    }

    fn ballot(&mut self) -> Ballot<Life> {
        Ballot {
            round: self.number(1),
            proposer: self.life(),
        }
    }
}

/// The node under test, its clock, and the input driving it.
struct Run<'a> {
    core: Core,
    now: Instant,
    input: Script<'a>,
    /// The seq of node 2's next replicated write.
    seq: u64,
}

impl<'a> Run<'a> {
    fn new(data: &'a [u8]) -> Self {
        let mut core = core();
        for name in ["x", "led", "pool", "solo"] {
            let declared = core.declare_var(Instant::ZERO, name, spec_of(name));
            assert_eq!(declared, Ok(()), "declaring {name}");
        }
        drain(&mut core);
        Self {
            core,
            now: Instant::ZERO,
            input: Script(data),
            seq: 0,
        }
    }

    fn step(&mut self) {
        match self.input.byte() % 9 {
            0 | 1 => self.cas_step(),
            2 => self.counter_step(),
            3 => self.hello(),
            4 => self.declaration(),
            5 => self.replicated_entry(),
            6 => self.local_request(),
            7 => self.time_passes(),
            _ => self.renewed(),
        }
    }

    /// The version of `name` here, which the input's numbers cluster around.
    fn version(&self, name: &str) -> u64 {
        self.core.vars().get(name).map_or(0, |(v, _)| v)
    }

    /// `name`'s fingerprint, or (rarely) another.
    fn fingerprint(&mut self, name: &str) -> u64 {
        match self.input.byte() % 8 {
            0 => self.input.raw_u64(),
            _ => spec_of(name).fingerprint(),
        }
    }

    /// Delivers `message` on the coordination channel as sent by its life's node, or (rarely)
    /// by another peer than the one it names; never as sent by node 1 itself, since the
    /// transport authenticates its peers and none holds node 1's identity.
    fn receive(&mut self, message: VarsMessage) {
        let named = message.sender().node;
        let sender = match self.input.byte() % 8 {
            0 => self.input.peer(),
            _ if named == NodeId::from_u128(1) => self.input.peer(),
            _ => named,
        };
        self.deliver(sender, foundation_core::vars::encode(&message));
    }

    fn deliver(&mut self, from: NodeId, payload: Bytes) {
        let channel = Channel::Coordination;
        let input = Input::Received {
            from,
            channel,
            payload,
        };
        self.core.handle(self.now, input);
    }

    fn cas_step(&mut self) {
        let name = self.input.pick(&NAMES);
        let current = self.version(name);
        let slot = self.input.number(current + 1);
        let message = match self.input.byte() % 6 {
            0 => CasMessage::Prepare {
                slot,
                ballot: self.input.ballot(),
            },
            1 => CasMessage::Promise {
                slot,
                ballot: self.input.ballot(),
                accepted: self
                    .input
                    .one_in(2)
                    .then(|| (self.input.ballot(), self.input.proposal())),
            },
            2 => CasMessage::Accept {
                slot,
                ballot: self.input.ballot(),
                proposal: self.input.proposal(),
            },
            3 => CasMessage::Accepted {
                slot,
                ballot: self.input.ballot(),
            },
            4 => CasMessage::Rejected {
                slot,
                ballot: self.input.ballot(),
                promised: self.input.ballot(),
            },
            _ => CasMessage::Decided {
                slot,
                proposal: self.input.proposal(),
                next: self.input.lives(),
            },
        };
        let message = VarsMessage::Cas {
            name: name.into(),
            spec: self.fingerprint(name),
            from: self.input.life(),
            message,
        };
        self.receive(message);
    }

    fn counter_step(&mut self) {
        let name = self.input.pick(&NAMES);
        let (spec, from) = (self.fingerprint(name), self.input.life());
        let message = match self.input.byte() % 5 {
            0 => VarsMessage::Rights {
                name: name.into(),
                spec,
                from,
                wanted: self.input.number(10),
            },
            kind => VarsMessage::Escrow {
                name: name.into(),
                spec,
                from,
                step: self.escrow_step(kind),
            },
        };
        self.receive(message);
    }

    fn escrow_step(&mut self, kind: u8) -> EscrowStep {
        match kind {
            1 => EscrowStep::Raise {
                ceiling: self.input.number(10),
            },
            2 => EscrowStep::Allowed {
                ceiling: self.input.number(10),
                fenced: self.input.one_in(2),
            },
            3 => EscrowStep::Fence {
                dead: self.input.life(),
            },
            _ => EscrowStep::Fenced {
                dead: self.input.life(),
                heir: self.input.life(),
                ceiling: self.input.number(10),
            },
        }
    }

    fn hello(&mut self) {
        let from = self.input.life();
        self.receive(VarsMessage::Hello { from });
    }

    /// A life says which membership generation it goes by since a renewal: any, below its
    /// own included.
    fn renewed(&mut self) {
        let from = self.input.life();
        let identity = self.input.number(from.generation);
        self.receive(VarsMessage::Renewed { from, identity });
    }

    /// A declaration replicated from node 2: the spec alone (as declared, or with other
    /// acceptors), with a seat the input fills, or bytes that may not decode.
    fn declaration(&mut self) {
        let name = self.input.pick(&NAMES);
        let mut spec = spec_of(name);
        if self.input.one_in(4) {
            spec.acceptors = self.input.lives();
        }
        let bytes = match self.input.byte() % 4 {
            0 => spec.encode(),
            1 => self.input.bytes(),
            _ => {
                let current = self.version(name);
                let seat = Seat {
                    version: self.input.number(current),
                    decided: self.input.proposal(),
                    from: self.input.number(current + 1),
                    acceptors: self.input.lives(),
                };
                encode_declaration(&spec, &seat)
            }
        };
        self.replicate(VARS_KEYSPACE, name.into(), Some(bytes));
    }

    /// A counter state or an `lww` write replicated from node 2, under a well-formed key or
    /// not: a state the input builds (anyone's units, maybe overdrawn by a merge elsewhere) or
    /// raw bytes.
    fn replicated_entry(&mut self) {
        let name = self.input.pick(&NAMES);
        let writer = self.input.life();
        let (keyspace, key) = match self.input.byte() % 3 {
            0 => (LWW_KEYSPACE, format!("{name}\0{}", writer.node)),
            1 => (COUNTERS_KEYSPACE, format!("{name}\0{}", writer.node)),
            // A counter state's key: the name, NUL, the writer's life as node.generation.
            _ => (
                COUNTERS_KEYSPACE,
                format!("{name}\0{}.{}", writer.node, writer.generation),
            ),
        };
        let bytes = match self.input.byte() % 3 {
            0 => Some(self.input.bytes()),
            1 => None,
            _ => {
                let spec = self.fingerprint(name);
                Some(postcard::to_stdvec(&(spec, self.counter_state())).unwrap_or_default())
            }
        };
        self.replicate(keyspace, key, bytes);
    }

    fn counter_state(&mut self) -> BoundedCounter {
        let mut state = BoundedCounter::new();
        let actor = |n: u8| foundation_crdt::NodeId::from_u128(u128::from(n % 4));
        for _ in 0..self.input.byte() % 4 {
            let (a, b, by) = (self.input.byte(), self.input.byte(), self.input.number(5));
            // Refused steps leave the state as it was: the input just asked for too much.
            let _ = match self.input.byte() % 3 {
                0 => state.add(actor(a), by),
                1 => state.draw(actor(a), by),
                _ => state.hand_over(actor(a), actor(b), by),
            };
        }
        state
    }

    /// Applies one write of node 2 to `keyspace`, as replication's ops carry it.
    fn replicate(&mut self, keyspace: &str, key: String, value: Option<Vec<u8>>) {
        self.seq += 1;
        let node = foundation_crdt::NodeId::from_u128(2);
        let ts = Timestamp {
            wall_ms: self.now.elapsed().as_millis() as u64,
            logical: self.seq as u32,
            node,
        };
        let write = Envelope {
            keyspace: keyspace.into(),
            origin: Origin {
                node,
                generation: 1,
            },
            seq: self.seq,
            epoch: 0,
            op: Op {
                key,
                entry: LwwEntry { ts, value },
            },
        };
        let message = ReplicationMessage::Ops(vec![write]);
        let payload = envelope::encode(envelope::REPLICATION, &message);
        self.deliver(NodeId::from_u128(2), payload);
    }

    /// What the application here may ask of its variables, with arguments the input picks;
    /// refusals are expected and ignored.
    fn local_request(&mut self) {
        let (now, name) = (self.now, self.input.pick(&NAMES));
        let expected = self.input.number(self.version(name));
        let timeout = Duration::from_millis(u64::from(self.input.byte()) * 10);
        let core = &mut self.core;
        let _ = match self.input.byte() % 5 {
            0 => core.compare_and_set(now, name, expected, self.input.value(), timeout),
            1 => core.commit_var(now, name, expected, self.input.value(), timeout),
            2 => core.change_acceptors(now, name, self.input.lives(), timeout),
            3 => core.draw(now, name, self.input.number(5)).map(|()| 0),
            _ => core.refill(now, name, self.input.number(5)).map(|()| 0),
        };
    }

    /// A raw message to the variables machine: its envelope's tag, then anything.
    fn garbage(&mut self) {
        let mut payload = vec![envelope::VARS];
        payload.extend(self.input.bytes());
        let from = self.input.peer();
        self.deliver(from, payload.into());
    }

    /// Lets time pass (up to past the re-seating grace) and fires what fell due, or feeds
    /// garbage instead when the input asks.
    fn time_passes(&mut self) {
        let ms = match self.input.byte() % 6 {
            0 => return self.garbage(),
            1 => 1,
            2 => 3,
            3 => 40,
            4 => 1_000,
            _ => 11_000,
        };
        self.advance(Duration::from_millis(ms));
    }

    fn advance(&mut self, by: Duration) {
        self.now = self.now + by;
        // Bounded: a timer re-armed at `now` on every firing would otherwise spin.
        for _ in 0..64 {
            match self.core.poll_timeout() {
                Some(at) if at <= self.now => self.core.handle_timeout(self.now),
                _ => break,
            }
        }
    }

    /// The end of every run: past every deadline, a variable only this node decides takes a
    /// compare-and-set (the one the input could reach, as long as a peer's proposal this node
    /// accepted did not move it, and one declared now), and the node takes a replicated write.
    fn assert_decides_alone(&mut self) {
        self.advance(Duration::from_secs(60));
        drain(&mut self.core);
        self.assert_writes("solo");
        let declared = self.core.declare_var(self.now, FRESH, spec_of(FRESH));
        assert_eq!(declared, Ok(()), "declaring {FRESH} after the run");
        self.assert_writes(FRESH);
        assert_takes_a_write(&mut self.core, self.now, "a node fed variables messages");
    }

    /// Whether this node's life alone decides the next version of `name`, and there is one: a
    /// peer's forged decision (lying members are not in the fault model) can take a register to
    /// `SLOT_MAX`, after which no version follows.
    fn decides_alone(&self, name: &str) -> bool {
        let alone = BTreeSet::from([self.core.vars().me()]);
        let next = self.core.vars().acceptors(name);
        next.is_some_and(|(_, set)| set == alone) && self.version(name) < SLOT_MAX
    }

    /// A compare-and-set of `name` at its current version wins while this node alone decides
    /// it: a try may instead finish a proposal a peer had this node accept for that version
    /// (Paxos's rule), which may even move the variable to other acceptors; an acceptor keeps
    /// state for at most `SLOT_WINDOW` versions ahead, so after that many such tries ours wins.
    fn assert_writes(&mut self, name: &str) {
        let mut outcomes = Vec::new();
        while self.decides_alone(name) && outcomes.len() <= SLOT_WINDOW as usize {
            let expected = self.version(name);
            let timeout = Duration::from_secs(1);
            let asked =
                self.core
                    .compare_and_set(self.now, name, expected, VarValue::Int(7), timeout);
            let request = asked.unwrap_or_else(|e| panic!("{name} refused a write: {e}"));
            let outcome = self.outcome_of(request);
            if matches!(outcome, Some(CasOutcome::Won { .. })) {
                return;
            }
            outcomes.push(outcome);
        }
        let alone = self.decides_alone(name);
        assert!(
            !alone,
            "{name}, decided by this node alone, took no write: {outcomes:?}"
        );
    }

    /// How our request `request` ended, letting time pass up to its deadline.
    fn outcome_of(&mut self, request: u64) -> Option<CasOutcome<Life>> {
        for _ in 0..12 {
            while let Some(effect) = self.core.poll_effect() {
                if let Effect::Event(Event::Vars(VarsEvent::CasDone {
                    request: done,
                    outcome,
                    ..
                })) = effect
                {
                    if done == request {
                        return Some(outcome);
                    }
                }
            }
            self.advance(Duration::from_millis(100));
        }
        None
    }
}

fn drain(core: &mut Core) {
    while core.poll_effect().is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The seeds reach what they say: a script of peers' answers decides a write of node 1.
    #[test]
    fn peers_answers_from_the_input_decide_a_write_of_node_1() {
        let written = X_WRITTEN.concat();
        let run = drive(&written);
        assert_eq!(run.core.vars().get("x"), Some((1, &VarValue::Int(3))));
        let declared = DECLARED_OTHER.concat();
        let run = drive(&declared);
        assert!(run.core.vars().get("other").is_some(), "other taken up");
    }

    /// The check on a few thousand inputs of a seeded generator (splitmix64), each a script
    /// of up to `STEPS_MAX` steps: `VARS_WIRE_CASES` for more, `VARS_WIRE_SEED` for others.
    #[test]
    fn the_check_holds_on_seeded_random_scripts() {
        let cases = std::env::var("VARS_WIRE_CASES")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(3_000);
        let mut state = std::env::var("VARS_WIRE_SEED")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0x5eed_u64);
        for case in 0..cases {
            let len = (splitmix64(&mut state) % 400) as usize;
            let data: Vec<u8> = (0..len).map(|_| splitmix64(&mut state) as u8).collect();
            let ran = std::panic::catch_unwind(|| check(&data));
            assert!(ran.is_ok(), "case {case} failed; its input: {data:?}");
        }
    }

    fn splitmix64(state: &mut u64) -> u64 {
        *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}
