//! Compare-and-set on a versioned value, agreed by a majority of a set of nodes: of any
//! writers that expect the same version, exactly one wins it, cluster-wide.
//!
//! Each version is one instance of single-decree Paxos among the register's acceptors (the
//! cluster's configured or last agreed membership, never "whoever one side of a partition
//! still sees"): a writer expecting version `v` proposes its value for slot `v + 1`; a
//! majority of acceptors promising (phase 1) and then accepting (phase 2) decides it, and the
//! decision is told to everyone (commit). A minority side of a partition never gathers a
//! majority, so its writes fail with [`CasOutcome::NoMajority`] at their deadline instead of
//! forking the value.
//!
//! Every node runs one [`CasRegister`] per variable: acceptor, learner and proposer of its own
//! writes. The driver carries [`CasMessage`]s between nodes (to itself too), feeds the time, and
//! calls [`CasRegister::handle_timeout`] at [`CasRegister::poll_timeout`]. Deterministic: no
//! clock, no randomness, ordered maps only.
//!
//! # Changing the acceptors
//!
//! The acceptors may change, and the change is itself a decided version: a proposal made by
//! [`CasRegister::reconfigure`] for slot `v + 1` keeps the value of version `v` and names the
//! acceptors of every slot from `v + 2` on (Lamport's reconfigurable Paxos with a pipeline of
//! one; a "Vertical Paxos" step). The acceptor set of a slot is therefore a function of the
//! decisions before it, and the argument that it is safe is short:
//!
//! - A writer proposes for slot `s` only when it knows decision `s - 1` (its version), and
//!   every way of learning a decision carries the acceptor set that follows it (a
//!   [`CasMessage::Decided`] names it; a writer that decides a slot computes it), so every
//!   writer of slot `s` uses the same set, the one the decided chain gives. Only decisions at
//!   or after the node's version teach it anything: an older one arriving late (after a jump
//!   over versions it never heard of) is dropped, since the acceptors may have moved away and
//!   back in between and its set says nothing about the slot after the node's version
//!   (a review found a writer sending that slot to the wrong set; tested).
//! - A writer counts promises and acceptances for slot `s` only from that set, and a majority
//!   of it is needed: two majorities of one set intersect, which is all single-decree Paxos
//!   needs. No slot is ever decided by majorities of two different sets.
//! - The old set decides slot `v + 1`, the step that names the new set, so there is no joint
//!   phase: nothing is decided in slot `v + 2` before `v + 1` is, and nobody proposes there
//!   without having learnt who the acceptors are.
//!
//! An acceptor answers prepares and accepts from any writer (Paxos does not need the writer
//! to be anyone in particular: ballots are unique per writer), unless it knows it is not an
//! acceptor of that slot; it cannot know for a slot beyond its version plus one, and then it
//! answers, since only the writer's count makes an answer matter (a slot it knows decided is
//! answered with the decision, whoever asks, which is how a writer left behind catches up). A register that joins the
//! acceptors later starts from a decided version ([`CasRegister::starting_at`]) and never
//! promised anything for the slots it joins.
//!
//! A decision may also be told outside the messages ([`CasRegister::learn_decided`]: a
//! variable's declaration carries the latest decision its writer knew and the set after it,
//! so a node cut off during a change whose old acceptors are all gone still learns it). It is
//! the same statement a [`CasMessage::Decided`] makes — a decided version and the set that
//! follows it — and is learnt by the same rule, so the argument above covers it: it may move
//! a node forward to a decided version and the exact set after it, and, older than the
//! node's version, it teaches nothing.
//!
//! Faults assumed: crashes, loss, delay, duplication and reordering, not lying members. A
//! decision is taken from a slot's acceptor, from a member of the set it says comes next (a
//! node left behind a change cannot check that set yet), from a writer whose proposal this
//! node accepted in that writer's ballot (a life moved out of the set still writes), or from
//! whoever wrote it down for [`CasRegister::learn_decided`]; a member that forged decisions
//! could make nodes learn values nobody decided. A slot past [`SLOT_MAX`] is refused from
//! anyone.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;

use serde::{Deserialize, Serialize};

use crate::types::Time;

/// First delay before a writer whose ballot was beaten prepares again; it doubles with each
/// attempt (up to 16×) and is longer for members later in the member order, so two duelling
/// writers stop pre-empting each other.
pub const RETRY_MS: u64 = 2;

/// Slots ahead of the committed version an acceptor keeps state for; further ones are refused
/// until it learns the versions in between, so a peer cannot make it hold unbounded state.
pub const SLOT_WINDOW: u64 = 16;

/// The highest version a message may name: past it the arithmetic on the next versions would
/// overflow. No register gets there one write at a time; a message naming more is refused.
pub const SLOT_MAX: u64 = u64::MAX - 4 * SLOT_WINDOW;

/// The highest round a message may name: a register's next round is one above the highest it
/// saw, so a peer's round near `u64::MAX` would overflow it (and a wrapped round could reuse an
/// earlier ballot). No register gets there one attempt at a time; a message naming more is
/// refused.
pub const ROUND_MAX: u64 = u64::MAX / 2;

/// A proposal number: higher rounds win, ties broken by proposer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Ballot<P> {
    /// The round.
    pub round: u64,
    /// Who proposes.
    pub proposer: P,
}

/// A value proposed for a version, named by who proposed it and their request number, so two
/// writers of equal payloads are still told apart.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound(
    serialize = "P: Serialize, V: Serialize",
    deserialize = "P: Deserialize<'de> + Ord, V: Deserialize<'de>"
))]
pub struct Proposal<P, V> {
    /// The writer.
    pub writer: P,
    /// The writer's request number.
    pub request: u64,
    /// The value.
    pub value: V,
    /// For a change of acceptors (see the module docs): who decides every later version.
    pub acceptors: Option<BTreeSet<P>>,
}

/// What registers say to each other about slot `slot` (the version being decided).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound(
    serialize = "P: Serialize, V: Serialize",
    deserialize = "P: Deserialize<'de> + Ord, V: Deserialize<'de>"
))]
pub enum CasMessage<P, V> {
    /// Phase 1: promise to ignore lower ballots for `slot`.
    Prepare {
        /// The slot.
        slot: u64,
        /// The ballot.
        ballot: Ballot<P>,
    },
    /// Phase 1 answer, with what the acceptor already accepted for the slot.
    Promise {
        /// The slot.
        slot: u64,
        /// The ballot promised.
        ballot: Ballot<P>,
        /// The highest-ballot proposal it accepted for the slot, if any.
        accepted: Option<(Ballot<P>, Proposal<P, V>)>,
    },
    /// Phase 2: accept this proposal for `slot`.
    Accept {
        /// The slot.
        slot: u64,
        /// The ballot.
        ballot: Ballot<P>,
        /// The proposal.
        proposal: Proposal<P, V>,
    },
    /// Phase 2 answer.
    Accepted {
        /// The slot.
        slot: u64,
        /// The ballot accepted.
        ballot: Ballot<P>,
    },
    /// A higher ballot was promised for the slot: try again above it.
    Rejected {
        /// The slot.
        slot: u64,
        /// The ballot refused.
        ballot: Ballot<P>,
        /// The ballot promised instead.
        promised: Ballot<P>,
    },
    /// The slot is decided (an answer to a stale request, or the decision being spread).
    Decided {
        /// The slot: the version it decided.
        slot: u64,
        /// The winning proposal.
        proposal: Proposal<P, V>,
        /// The acceptors of the slots after it, so a learner that jumps over versions it
        /// never heard of still knows who decides the next one.
        next: BTreeSet<P>,
    },
}

/// How a compare-and-set ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CasOutcome<P> {
    /// Ours won: the value is now at `version`.
    Won {
        /// The new version.
        version: u64,
    },
    /// Another writer won the version we expected to replace.
    Lost {
        /// The version decided.
        version: u64,
        /// Its writer.
        winner: P,
    },
    /// The value was not at the expected version here.
    VersionMismatch {
        /// The version here.
        current: u64,
    },
    /// No majority answered before the deadline (a minority partition, or members down). The
    /// write may still be decided later by another writer's proposal carrying it.
    NoMajority,
    /// A write of ours is already under way.
    Busy,
    /// The value moved past the version we wrote before this node learned who won that
    /// version (it was far behind and caught up by a jump): ours may or may not be the one
    /// decided. Read the value to see.
    Superseded {
        /// The version here now.
        current: u64,
    },
}

/// Our write under way.
#[derive(Clone, Debug)]
struct Proposing<P, V> {
    slot: u64,
    ballot: Ballot<P>,
    ours: Proposal<P, V>,
    deadline: Time,
    phase: Phase<P, V>,
    /// Beaten by a higher ballot: prepare again at this time.
    retry_at: Option<Time>,
    attempts: u32,
}

#[derive(Clone, Debug)]
enum Phase<P, V> {
    /// Collecting promises, and the highest-ballot proposal they carry.
    Preparing {
        promised: BTreeSet<P>,
        highest: Option<(Ballot<P>, Proposal<P, V>)>,
    },
    /// Collecting acceptances of `proposal`.
    Accepting {
        accepted: BTreeSet<P>,
        proposal: Proposal<P, V>,
    },
}

/// An acceptor's state for one undecided slot.
#[derive(Clone, Debug)]
struct SlotState<P, V> {
    promised: Option<Ballot<P>>,
    accepted: Option<(Ballot<P>, Proposal<P, V>)>,
}

/// One node's part in one register; see the module docs.
#[derive(Clone, Debug)]
pub struct CasRegister<P, V> {
    me: P,
    /// The acceptors by the first slot they decide: those of a slot are the entry at or below
    /// it. Entries wholly below the next slot are dropped.
    configs: BTreeMap<u64, BTreeSet<P>>,
    /// The decided versions we know, by version (version 0 is the initial value).
    decided: BTreeMap<u64, Proposal<P, V>>,
    /// The highest version decided contiguously from 0: the current value.
    version: u64,
    slots: BTreeMap<u64, SlotState<P, V>>,
    proposing: Option<Proposing<P, V>>,
    /// Highest round seen, so our next ballot is above it.
    round: u64,
    next_request: u64,
}

/// Messages to send: `(to, message)`.
pub type Sends<P, V> = Vec<(P, CasMessage<P, V>)>;

impl<P, V> CasRegister<P, V>
where
    P: Copy + Ord + Debug,
    V: Clone + PartialEq + Debug,
{
    /// A register at version 0 holding `initial`, decided among `members` (a register not
    /// among them only learns and writes, until a change of acceptors names it).
    pub fn new(me: P, members: BTreeSet<P>, initial: V) -> Self {
        let genesis = Proposal {
            writer: me,
            request: 0,
            value: initial,
            acceptors: None,
        };
        Self::starting_at(me, 0, genesis, members)
    }

    /// A register that takes up a variable at decided `version` (its proposal `decided`),
    /// whose later versions are decided among `acceptors`: how a life added to the acceptors
    /// joins. Safe because it never promised anything for those slots.
    pub fn starting_at(
        me: P,
        version: u64,
        decided: Proposal<P, V>,
        acceptors: BTreeSet<P>,
    ) -> Self {
        Self {
            me,
            configs: BTreeMap::from([(version + 1, acceptors)]),
            decided: BTreeMap::from([(version, decided)]),
            version,
            slots: BTreeMap::new(),
            proposing: None,
            round: 0,
            next_request: 1,
        }
    }

    /// Who decides the next version, as far as this node knows (exactly, since it knows the
    /// current one), and the first version they decide.
    pub fn acceptors(&self) -> (u64, BTreeSet<P>) {
        let next = self.version + 1;
        let config = self.configs.range(..=next).next_back();
        config.map_or((next, BTreeSet::new()), |(&first, set)| {
            (first, set.clone())
        })
    }

    /// The acceptors of `slot` as this node knows them: exactly up to its version plus one.
    fn set_of(&self, slot: u64) -> impl Iterator<Item = &P> {
        let config = self.configs.range(..=slot).next_back();
        config.into_iter().flat_map(|(_, set)| set.iter())
    }

    fn is_acceptor(&self, who: P, slot: u64) -> bool {
        self.set_of(slot).any(|m| *m == who)
    }

    /// The current version and value here.
    pub fn current(&self) -> (u64, &V) {
        let value = &self.decided[&self.version].value;
        (self.version, value)
    }

    /// Proposes `value` to replace version `expected`, deciding by `deadline`. Returns the
    /// messages to send, or the outcome at once (a version mismatch here, or a write of ours
    /// already under way).
    pub fn compare_and_set(
        &mut self,
        now: Time,
        expected: u64,
        value: V,
        deadline: Time,
    ) -> Result<Sends<P, V>, CasOutcome<P>> {
        self.propose(now, expected, (value, None), deadline)
    }

    /// Proposes, as version `expected + 1`, the value of version `expected` unchanged and that
    /// `acceptors` decide every later version (see the module docs). It ends like a
    /// compare-and-set: won, lost to another write of that version (nothing changed), or no
    /// majority of the current acceptors by `deadline` (then it may still be decided later,
    /// carried by another writer's proposal). An empty set is refused as
    /// [`CasOutcome::NoMajority`]: nobody could ever decide again.
    pub fn reconfigure(
        &mut self,
        now: Time,
        expected: u64,
        acceptors: BTreeSet<P>,
        deadline: Time,
    ) -> Result<Sends<P, V>, CasOutcome<P>> {
        if acceptors.is_empty() {
            return Err(CasOutcome::NoMajority);
        }
        let value = self.current().1.clone();
        self.propose(now, expected, (value, Some(acceptors)), deadline)
    }

    fn propose(
        &mut self,
        now: Time,
        expected: u64,
        (value, acceptors): (V, Option<BTreeSet<P>>),
        deadline: Time,
    ) -> Result<Sends<P, V>, CasOutcome<P>> {
        if self.proposing.is_some() {
            return Err(CasOutcome::Busy);
        }
        if expected != self.version {
            return Err(CasOutcome::VersionMismatch {
                current: self.version,
            });
        }
        let ours = Proposal {
            writer: self.me,
            request: self.next_request,
            value,
            acceptors,
        };
        self.next_request += 1;
        let slot = expected + 1;
        let ballot = self.next_ballot();
        self.proposing = Some(Proposing {
            slot,
            ballot,
            ours,
            deadline: deadline.max(now),
            phase: Phase::Preparing {
                promised: BTreeSet::new(),
                highest: None,
            },
            retry_at: None,
            attempts: 0,
        });
        Ok(self.to_all(slot, CasMessage::Prepare { slot, ballot }))
    }

    /// Handles a message from `from` at `now`: the messages to send, and the outcome of our
    /// write if this decided it.
    pub fn handle(
        &mut self,
        now: Time,
        from: P,
        message: CasMessage<P, V>,
    ) -> (Sends<P, V>, Option<CasOutcome<P>>) {
        if !self.takes(from, &message) {
            return (Vec::new(), None);
        }
        match message {
            CasMessage::Prepare { slot, ballot } => (self.on_prepare(from, slot, ballot), None),
            CasMessage::Accept {
                slot,
                ballot,
                proposal,
            } => (self.on_accept(from, slot, ballot, proposal), None),
            CasMessage::Decided {
                slot,
                proposal,
                next,
            } => {
                let next = match fault_ignores_next() {
                    true => self.set_of(slot + 1).copied().collect(),
                    false => next,
                };
                self.learn(slot, proposal, next);
                (Vec::new(), self.resolve())
            }
            CasMessage::Promise {
                slot,
                ballot,
                accepted,
            } => self.on_promise(from, slot, ballot, accepted),
            CasMessage::Accepted { slot, ballot } => self.on_accepted(from, slot, ballot),
            CasMessage::Rejected {
                slot,
                ballot,
                promised,
            } => {
                self.on_rejected(now, slot, ballot, promised);
                (Vec::new(), None)
            }
        }
    }

    /// When our write next needs [`Self::handle_timeout`]: a retry, or its deadline.
    pub fn poll_timeout(&self) -> Option<Time> {
        let p = self.proposing.as_ref()?;
        Some(p.retry_at.map_or(p.deadline, |r| r.min(p.deadline)))
    }

    /// Ends our write with [`CasOutcome::NoMajority`] if its deadline passed, or prepares it
    /// again if its retry is due.
    pub fn handle_timeout(&mut self, now: Time) -> (Sends<P, V>, Option<CasOutcome<P>>) {
        let Some(p) = &self.proposing else {
            return (Vec::new(), None);
        };
        if now >= p.deadline {
            self.proposing = None;
            return (Vec::new(), Some(CasOutcome::NoMajority));
        }
        if p.retry_at.is_none_or(|r| now < r) {
            return (Vec::new(), None);
        }
        let (slot, ballot) = (p.slot, p.ballot);
        if let Some(p) = self.proposing.as_mut() {
            p.retry_at = None;
        }
        (
            self.to_all(slot, CasMessage::Prepare { slot, ballot }),
            None,
        )
    }

    /// Learns that `version` decided `decided`, after which `next` decide, told by other means
    /// than a message: the seat of a variable's declaration, written by a node that learnt
    /// that decision (see the module docs). Like a decision message, one older than the
    /// current version teaches nothing. Returns the outcome of our write if this ended it.
    pub fn learn_decided(
        &mut self,
        version: u64,
        decided: Proposal<P, V>,
        next: BTreeSet<P>,
    ) -> Option<CasOutcome<P>> {
        if version > SLOT_MAX || next.is_empty() {
            return None; // No version could follow either.
        }
        let version = match fault_old_seats_teach() {
            true => version.max(self.version),
            false => version,
        };
        self.learn(version, decided, next);
        self.resolve()
    }

    /// Forgets every promise and acceptance this node made as an acceptor: the planted bug of
    /// `foundation-core`'s `AcceptorForgetsPromises` fault switch, for its tests only.
    #[cfg(feature = "fault-injection")]
    pub fn forget_promises(&mut self) {
        self.slots.clear();
    }

    /// The decided proposal of `version`, if known here.
    pub fn decided(&self, version: u64) -> Option<&Proposal<P, V>> {
        self.decided.get(&version)
    }

    /// Whether a message from `from` is one this register takes. Answers to a writer count
    /// only from the slot's acceptors (the safety rule: the writer knows that set exactly); a
    /// decision only from a slot's acceptor or one of the set it names next; a prepare or
    /// accept from anyone, unless this node knows it is not an acceptor of the slot (it knows
    /// for the next one; an older slot is answered with its decision, a later one with a
    /// promise that counts only if the writer, who knows, counts it).
    fn takes(&self, from: P, message: &CasMessage<P, V>) -> bool {
        if slot_of(message) > SLOT_MAX || highest_round(message) > ROUND_MAX {
            return false; // No version or round could follow it: refused before any arithmetic.
        }
        match message {
            CasMessage::Prepare { slot, .. } | CasMessage::Accept { slot, .. } => {
                *slot != self.version + 1 || self.is_acceptor(self.me, *slot)
            }
            CasMessage::Promise { slot, .. }
            | CasMessage::Accepted { slot, .. }
            | CasMessage::Rejected { slot, .. } => self.is_acceptor(from, *slot),
            CasMessage::Decided {
                slot,
                next,
                proposal,
            } => {
                self.is_acceptor(from, *slot)
                    || next.contains(&from)
                    || self.accepted_from(from, *slot, proposal)
            }
        }
    }

    /// Whether this node accepted `proposal` for `slot` in a ballot of `writer`: then the
    /// writer ran phase 2 with it, and its word that the slot is decided can be taken even if
    /// it is not an acceptor itself (a life moved out of the set still writes).
    fn accepted_from(&self, writer: P, slot: u64, proposal: &Proposal<P, V>) -> bool {
        let accepted = self.slots.get(&slot).and_then(|s| s.accepted.as_ref());
        accepted.is_some_and(|(ballot, ours)| ballot.proposer == writer && ours == proposal)
    }

    fn majority(&self, slot: u64) -> usize {
        self.set_of(slot).count() / 2 + 1
    }

    fn next_ballot(&mut self) -> Ballot<P> {
        self.round += 1;
        Ballot {
            round: self.round,
            proposer: self.me,
        }
    }

    fn to_all(&self, slot: u64, message: CasMessage<P, V>) -> Sends<P, V> {
        self.set_of(slot).map(|&m| (m, message.clone())).collect()
    }

    /// The decision of `slot` as a message, with the acceptors that follow it.
    fn decided_message(&self, slot: u64, proposal: Proposal<P, V>) -> CasMessage<P, V> {
        let next = match &proposal.acceptors {
            Some(set) => set.clone(),
            None => self.set_of(slot + 1).copied().collect(),
        };
        CasMessage::Decided {
            slot,
            proposal,
            next,
        }
    }

    /// The acceptor's state for `slot`, unless it is decided here (then the decision) or too
    /// far ahead.
    fn slot_state(&mut self, slot: u64) -> Result<&mut SlotState<P, V>, Option<CasMessage<P, V>>> {
        // The acceptors after a slot older than the last change are no longer kept here, and
        // a decision is told only with them.
        let next_known = self.configs.keys().next().is_some_and(|&f| f <= slot + 1);
        if let Some(proposal) = self.decided.get(&slot).filter(|_| next_known) {
            return Err(Some(self.decided_message(slot, proposal.clone())));
        }
        if slot <= self.version {
            // Decided, and forgotten here (older than the window or the last change): the
            // latest decision instead, so a writer that far behind jumps ahead rather than
            // deciding the slot a second time.
            let proposal = self.decided[&self.version].clone();
            return Err(Some(self.decided_message(self.version, proposal)));
        }
        if slot > self.version + SLOT_WINDOW {
            return Err(None);
        }
        Ok(self.slots.entry(slot).or_insert(SlotState {
            promised: None,
            accepted: None,
        }))
    }

    fn on_prepare(&mut self, from: P, slot: u64, ballot: Ballot<P>) -> Sends<P, V> {
        self.as_acceptor(from, slot, ballot, |state| {
            state.promised = Some(ballot);
            CasMessage::Promise {
                slot,
                ballot,
                accepted: state.accepted.clone(),
            }
        })
    }

    fn on_accept(
        &mut self,
        from: P,
        slot: u64,
        ballot: Ballot<P>,
        proposal: Proposal<P, V>,
    ) -> Sends<P, V> {
        self.as_acceptor(from, slot, ballot, |state| {
            state.promised = Some(ballot);
            state.accepted = Some((ballot, proposal));
            CasMessage::Accepted { slot, ballot }
        })
    }

    /// The acceptor's answer to a prepare or accept of `ballot` for `slot`: the decision if the
    /// slot is decided here, a rejection if a higher ballot was promised, else what `grant`
    /// does to the slot's state.
    fn as_acceptor(
        &mut self,
        from: P,
        slot: u64,
        ballot: Ballot<P>,
        grant: impl FnOnce(&mut SlotState<P, V>) -> CasMessage<P, V>,
    ) -> Sends<P, V> {
        self.round = self.round.max(ballot.round);
        let state = match self.slot_state(slot) {
            Ok(state) => state,
            Err(answer) => return answer.map(|m| vec![(from, m)]).unwrap_or_default(),
        };
        let answer = match state.promised {
            Some(promised) if promised > ballot => CasMessage::Rejected {
                slot,
                ballot,
                promised,
            },
            _ => grant(state),
        };
        vec![(from, answer)]
    }

    /// Our write under way, if it is in `slot` under `ballot` (answers to anything else are
    /// stale).
    fn proposing_in(&mut self, slot: u64, ballot: Ballot<P>) -> Option<&mut Proposing<P, V>> {
        self.proposing
            .as_mut()
            .filter(|p| p.slot == slot && p.ballot == ballot)
    }

    fn on_promise(
        &mut self,
        from: P,
        slot: u64,
        ballot: Ballot<P>,
        accepted: Option<(Ballot<P>, Proposal<P, V>)>,
    ) -> (Sends<P, V>, Option<CasOutcome<P>>) {
        let majority = self.majority(slot);
        let Some(p) = self.proposing_in(slot, ballot) else {
            return (Vec::new(), None);
        };
        let Phase::Preparing { promised, highest } = &mut p.phase else {
            return (Vec::new(), None);
        };
        promised.insert(from);
        if let Some((b, proposal)) = accepted {
            if highest.as_ref().is_none_or(|(h, _)| b > *h) {
                *highest = Some((b, proposal));
            }
        }
        if promised.len() < majority {
            return (Vec::new(), None);
        }
        // Paxos's rule: a value some acceptor may already have accepted must be proposed
        // again, so a decided value is never replaced.
        let proposal = match highest.take() {
            Some((_, proposal)) => proposal,
            None => p.ours.clone(),
        };
        p.phase = Phase::Accepting {
            accepted: BTreeSet::new(),
            proposal: proposal.clone(),
        };
        let message = CasMessage::Accept {
            slot,
            ballot,
            proposal,
        };
        (self.to_all(slot, message), None)
    }

    fn on_accepted(
        &mut self,
        from: P,
        slot: u64,
        ballot: Ballot<P>,
    ) -> (Sends<P, V>, Option<CasOutcome<P>>) {
        let majority = self.majority(slot);
        let Some(p) = self.proposing_in(slot, ballot) else {
            return (Vec::new(), None);
        };
        let Phase::Accepting { accepted, proposal } = &mut p.phase else {
            return (Vec::new(), None);
        };
        accepted.insert(from);
        if accepted.len() < majority {
            return (Vec::new(), None);
        }
        let proposal = proposal.clone();
        let message = self.decided_message(slot, proposal);
        // The acceptors of the next slot hear it too: after a change of acceptors, the new
        // ones learn at once who they are.
        let mut to: BTreeSet<P> = self.set_of(slot).copied().collect();
        if let CasMessage::Decided { proposal, next, .. } = &message {
            to.extend(next.iter().copied());
            self.learn(slot, proposal.clone(), next.clone());
        }
        let sends = to.into_iter().map(|m| (m, message.clone())).collect();
        (sends, self.resolve())
    }

    /// Our ballot was beaten: wait, then prepare again above it (see [`RETRY_MS`]); the
    /// deadline bounds it all. The new ballot is taken now, so late or duplicated answers to
    /// the beaten one are ignored: a ballot never carries two different proposals.
    fn on_rejected(&mut self, now: Time, slot: u64, ballot: Ballot<P>, promised: Ballot<P>) {
        self.round = self.round.max(promised.round);
        if self.proposing_in(slot, ballot).is_none() {
            return;
        }
        let rank = self.set_of(slot).position(|m| *m == self.me).unwrap_or(0) as u64;
        let fresh = self.next_ballot();
        if let Some(p) = self.proposing.as_mut() {
            let delay = (RETRY_MS * (1 + rank)) << p.attempts.min(4);
            p.attempts += 1;
            p.ballot = fresh;
            p.retry_at = Some(now.plus_ms(delay));
            p.phase = Phase::Preparing {
                promised: BTreeSet::new(),
                highest: None,
            };
        }
    }

    /// Records that `slot` decided `proposal`, after which `next` decide, and moves the
    /// current version over every contiguous decision.
    fn learn(&mut self, slot: u64, proposal: Proposal<P, V>, next: BTreeSet<P>) {
        // A decision older than the current version teaches nothing, and its `next` would be
        // wrong here: after a jump, the acceptors may have moved away and back in the versions
        // this node never heard of, and the set recorded for the next version is exact.
        if slot == 0 || slot < self.version {
            return;
        }
        // Only a change is recorded, so the first version of the set in force moves only
        // when the set does.
        if !self.set_of(slot + 1).eq(next.iter()) {
            self.configs.insert(slot + 1, next);
        }
        // A second, different decision for a slot can only come from a member that breaks the
        // protocol: the first one stays.
        self.decided.entry(slot).or_insert(proposal);
        // A version is proposed only by a writer that learnt the one before, so a decided
        // version means every earlier one is decided too: the value moves to the latest one
        // known, even past versions that never reached us.
        self.version = self.version.max(slot);
        let version = self.version;
        self.slots.retain(|&s, _| s > version);
        // The set in force at the next slot stays, and every later one.
        let keep = self
            .configs
            .range(..=version + 1)
            .next_back()
            .map(|(&f, _)| f);
        self.configs
            .retain(|&first, _| keep.is_none_or(|k| first >= k));
        // Older decisions are kept for one window, to answer stale requests with them.
        self.decided
            .retain(|&v, _| v + SLOT_WINDOW >= version || v == version);
    }

    /// Ends our write if its slot is decided.
    fn resolve(&mut self) -> Option<CasOutcome<P>> {
        let p = self.proposing.as_ref()?;
        let Some(decided) = self.decided.get(&p.slot) else {
            if self.version < p.slot {
                return None;
            }
            self.proposing = None;
            return Some(CasOutcome::Superseded {
                current: self.version,
            });
        };
        let outcome = if decided.writer == p.ours.writer && decided.request == p.ours.request {
            CasOutcome::Won { version: p.slot }
        } else {
            CasOutcome::Lost {
                version: p.slot,
                winner: decided.writer,
            }
        };
        self.proposing = None;
        Some(outcome)
    }
}

/// The slot a message is about.
fn slot_of<P, V>(message: &CasMessage<P, V>) -> u64 {
    match message {
        CasMessage::Prepare { slot, .. }
        | CasMessage::Promise { slot, .. }
        | CasMessage::Accept { slot, .. }
        | CasMessage::Accepted { slot, .. }
        | CasMessage::Rejected { slot, .. }
        | CasMessage::Decided { slot, .. } => *slot,
    }
}

/// The highest round any ballot of `message` names.
fn highest_round<P, V>(message: &CasMessage<P, V>) -> u64 {
    match message {
        CasMessage::Prepare { ballot, .. }
        | CasMessage::Accept { ballot, .. }
        | CasMessage::Accepted { ballot, .. } => ballot.round,
        CasMessage::Promise {
            ballot, accepted, ..
        } => ballot
            .round
            .max(accepted.as_ref().map_or(0, |(b, _)| b.round)),
        CasMessage::Rejected {
            ballot, promised, ..
        } => ballot.round.max(promised.round),
        CasMessage::Decided { .. } => 0,
    }
}

/// A test-only breakage of the safety rule, to show the tests catch it (see `tests`).
#[cfg(test)]
fn fault_ignores_next() -> bool {
    tests::FAULT.with(|f| f.get() == tests::Fault::IgnoreNext)
}
#[cfg(not(test))]
fn fault_ignores_next() -> bool {
    false
}

/// A test-only breakage: a decision told outside the messages that is older than the current
/// version is taken as naming the acceptors after it.
#[cfg(test)]
fn fault_old_seats_teach() -> bool {
    tests::FAULT.with(|f| f.get() == tests::Fault::OldSeatsTeach)
}
#[cfg(not(test))]
fn fault_old_seats_teach() -> bool {
    false
}

#[cfg(test)]
mod tests;
