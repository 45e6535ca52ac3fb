//! Variables agents coordinate on, across the cluster: typed, constrained values whose
//! concurrent changes are resolved by an enforced policy, one per variable:
//!
//! - `cas`: each variable is a [`CasRegister`] (single-decree Paxos per version,
//!   `foundation_agents::cas`) among a set of acceptor lives, first those named in its
//!   [`VarSpec`]. Of any writers that expect the same version exactly one wins, and only with a
//!   majority of that version's acceptors: a majority of a *decided* set, never of whoever one
//!   side of a partition still sees, so a minority side's writes end with
//!   [`CasOutcome::NoMajority`]. The set changes only by a decided version
//!   ([`Vars::change_acceptors`], see [`reconfigure`]).
//! - `coordinated`: the same register, but written only through [`Vars::commit`], the path a
//!   coordination protocol's outcome takes (issue 14); a direct write is
//!   [`VarsError::WrongPolicy`]. A `coordinated` record can be a *ledger* that takes a
//!   session's whole [`Outcome`] (several fields and budget debits) in one majority-decided
//!   step, once per session ([`Vars::commit_outcome`], see [`outcome`]).
//! - `lww`: every node's latest write sits under its own key of the [`LWW_KEYSPACE`]
//!   replicated keyspace and the valid write with the highest HLC stamp shows (see [`lww`]).
//! - counters (`Policy::Counter`): a never-negative pool drawn from without coordination by
//!   the rights each node life holds (escrow; see [`counter`]).
//!
//! Every value passes [`VarType::check`] before it can be proposed, accepted, learned or
//! shown: a value outside its constraints that a misbehaving node sends (a Paxos step, or an
//! `lww` write under its key) is refused and counted ([`VarsStats::invalid_values`]) and never
//! becomes visible; a counter state that shows anyone overdrawn is refused whole.
//!
//! # Declaring
//!
//! A node declares a variable once; the declaration is replicated in the [`VARS_KEYSPACE`]
//! keyspace, and every node concerned takes it up as it arrives ([`Vars::adopt`]): a `cas` or
//! `coordinated` variable's acceptors, every node for `lww` variables and counters. Declaring
//! the same spec again anywhere does nothing. Messages carry the spec's fingerprint and a
//! node refuses messages for a spec other than its own, so nodes that disagree on a variable
//! never decide together: if two nodes declare one name with different specs at the same
//! moment, each node keeps the first it saw and counts the other
//! ([`VarsStats::conflicting_declarations`]) — declare from one place.
//!
//! # Changing the acceptors
//!
//! Acceptors are node *lives* (a restart is a new life that never stands in for the old one),
//! so a rolling restart of a majority of a variable's acceptors would leave it unwritable.
//! [`Vars::change_acceptors`] moves a `cas` or `coordinated` variable to other lives: the
//! current majority decides a version that keeps the value and names the new set, which
//! decides every later version; the declaration is rewritten with a seat from which added
//! lives take the variable up; the spec and its fingerprint stay those declared. Counters
//! (escrowed rights on their holders) and `lww` variables are refused. Nothing moves a
//! variable on its own: while a majority of its current acceptors is gone, it cannot be
//! written or moved (reads still answer). See [`reconfigure`] for why it is safe.
//!
//! # History and statistics
//!
//! Each variable keeps its last [`HISTORY_MAX`] changes as this node saw them (version, value,
//! writer, time) and [`VarStatistics`]. Versions of `lww` variables and counters count the
//! changes this node saw; only a register's versions are the same on every node.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bytes::Bytes;
use foundation_agents::cas::{CasMessage, CasOutcome, CasRegister, Proposal};

/// A register's messages to send.
type Sends = foundation_agents::cas::Sends<Life, VarValue>;
use foundation_agents::variable::{Policy, VarError, VarType, VarValue, NAME_BYTES_MAX};
use foundation_agents::Time;
use foundation_crdt::Timestamp;
use serde::{Deserialize, Serialize};

use crate::envelope;
use crate::replication::Write;
use crate::time::Instant;
use crate::NodeId;

pub mod counter;
pub mod escrow;
mod history;
pub mod lives;
pub mod lww;
pub mod outcome;
mod reclaim;
pub mod reconfigure;
pub mod reseat;

use counter::{CounterRecord, CounterVar};
use history::History;
pub use history::{Change, VarStatistics, HISTORY_MAX};
use lww::{LwwRecord, LwwVar};
pub use outcome::{Outcome, SessionId};

/// Most variables one node holds.
pub const VARIABLES_MAX: usize = 4096;

/// The replicated keyspace holding declarations: variable name → encoded [`VarSpec`].
pub const VARS_KEYSPACE: &str = "vars";

/// The replicated keyspace holding `lww` writes: `name`, NUL, writer node id → its latest write.
pub const LWW_KEYSPACE: &str = "vars.lww";

/// The replicated keyspace holding counter states: `name`, NUL, writer life → its whole state.
pub const COUNTERS_KEYSPACE: &str = "vars.counters";

/// A counter's state is written at most this often after local changes: a burst of draws
/// replicates as one write instead of one per draw.
pub const COUNTER_PUBLISH_EVERY: Duration = Duration::from_millis(5);

/// How long a node waits before asking for a counter's rights again: a burst of refused
/// draws asks once.
pub const RIGHTS_ASK_INTERVAL: Duration = Duration::from_millis(100);

/// What a variable is: its type, its policy, its first value, and who decides it (`cas`,
/// `coordinated`) or holds its first units (counters, in equal shares).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VarSpec {
    /// What it may hold.
    pub ty: VarType,
    /// How concurrent changes are resolved.
    pub policy: Policy,
    /// The value at version 0 (for a counter, its units).
    pub initial: VarValue,
    /// The node lives whose majority decides each version (`cas`, `coordinated`), or that
    /// hold a counter's initial units; empty for `lww`.
    pub acceptors: BTreeSet<Life>,
}

/// One life of a node: its id and the generation it started with. Acceptors are lives, not
/// ids: an acceptor keeps its promises in memory, so a node that restarts (a later generation,
/// even under the same id) must not stand in for its earlier self, which would forget what it
/// promised and could let two writers win one version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Life {
    /// The node.
    pub node: NodeId,
    /// The generation it started with.
    pub generation: u64,
}

impl VarSpec {
    /// The bytes a declaration is replicated as.
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).unwrap_or_default()
    }

    /// A declaration from its bytes (types decode depth-bounded, whoever sent them).
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        postcard::from_bytes(bytes).ok()
    }

    /// A fingerprint of the whole spec, carried by every message about the variable.
    pub fn fingerprint(&self) -> u64 {
        foundation_crdt::fnv1a64(&self.encode())
    }
}

/// A message between the variables machines of two nodes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum VarsMessage {
    /// A compare-and-set step of variable `name` under the spec with fingerprint `spec`.
    Cas {
        /// The variable.
        name: String,
        /// Its spec's fingerprint.
        spec: u64,
        /// The sender's life (its id must be the one the transport authenticated).
        from: Life,
        /// The step.
        message: CasMessage<Life, VarValue>,
    },
    /// A life short of a counter's rights asks the receiver to hand it some.
    Rights {
        /// The counter.
        name: String,
        /// Its spec's fingerprint.
        spec: u64,
        /// The asking life (its id must be the one the transport authenticated).
        from: Life,
        /// How many units it wants.
        wanted: u64,
    },
    /// A step of a counter's allowances and reclaiming (see [`escrow`]).
    Escrow {
        /// The counter.
        name: String,
        /// Its spec's fingerprint.
        spec: u64,
        /// The sending life (its id must be the one the transport authenticated).
        from: Life,
        /// The step.
        step: escrow::Step,
    },
    /// The sender's life, to the acceptors of a variable that name an earlier life of its
    /// node: proof that life is over (see [`reseat`]); membership's generations are not, as a
    /// node declared failed renews its membership identity but keeps its variables' life.
    Hello {
        /// The sending life (its id must be the one the transport authenticated).
        from: Life,
    },
    /// The sender's life goes by membership generation `identity`: membership renewed its
    /// identity and the life stayed (see [`lives`]).
    Renewed {
        /// The sending life (its id must be the one the transport authenticated).
        from: Life,
        /// Its membership generation now.
        identity: u64,
    },
}

impl VarsMessage {
    /// The life that says it sent this.
    pub fn sender(&self) -> Life {
        match self {
            Self::Cas { from, .. }
            | Self::Rights { from, .. }
            | Self::Escrow { from, .. }
            | Self::Hello { from }
            | Self::Renewed { from, .. } => *from,
        }
    }
}

/// Where a declaration was made. [`VARIABLES_MAX`] bounds the variables declared here; one
/// declared on another node is held past it, as the replicated keyspaces take their peers'
/// writes past their own limits: two nodes one short of it that each declared a different
/// variable at once would otherwise each lack the other's for good — an `lww` variable or a
/// counter readable on some nodes only, or a `cas` variable missing acceptors it names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    Here,
    Replicated,
}

/// Encodes a variables message in the core's envelope.
pub fn encode(message: &VarsMessage) -> Bytes {
    envelope::encode(envelope::VARS, message)
}

/// What the machine tells the application.
#[derive(Clone, Debug, PartialEq)]
pub enum VarsEvent {
    /// A variable was declared here (by this node, or taken up from another's declaration).
    Declared {
        /// The variable.
        name: String,
    },
    /// A variable reached a new version here.
    Changed {
        /// The variable.
        name: String,
        /// Its version.
        version: u64,
        /// Its value.
        value: VarValue,
        /// The node life whose write it was.
        writer: Life,
    },
    /// A compare-and-set of ours ended.
    CasDone {
        /// The variable.
        name: String,
        /// The request, as [`Vars::compare_and_set`] returned it.
        request: u64,
        /// How it ended.
        outcome: CasOutcome<Life>,
    },
}

/// Why a request was refused. Nothing changed.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum VarsError {
    /// No variable of that name here.
    #[error("unknown variable {0:?}")]
    Unknown(String),
    /// Declared already with another spec.
    #[error("variable {0:?} is declared with another spec")]
    Conflict(String),
    /// The name is empty or too long.
    #[error("invalid variable name {0:?}: 1 to {NAME_BYTES_MAX} bytes")]
    BadName(String),
    /// The spec itself is unusable.
    #[error("invalid spec: {0}")]
    BadSpec(String),
    /// The value does not fit the variable's type.
    #[error(transparent)]
    Invalid(#[from] VarError),
    /// The variable's policy does not allow this change.
    #[error("variable {name:?} is {policy:?}: {why}")]
    WrongPolicy {
        /// The variable.
        name: String,
        /// Its policy.
        policy: Policy,
        /// What it allows instead.
        why: &'static str,
    },
    /// The variable is not at the expected version here.
    #[error("version mismatch: the variable is at version {current}")]
    VersionMismatch {
        /// Its version here.
        current: u64,
    },
    /// A compare-and-set of ours on this variable is under way.
    #[error("a compare-and-set of this node on the variable is under way")]
    Busy,
    /// Too many variables here.
    #[error("too many variables (at most {VARIABLES_MAX})")]
    Full,
    /// The declaration or write could not be replicated (a limit of the replicated keyspace).
    #[error("not replicated: {0}")]
    NotReplicated(String),
    /// This node holds too few of the counter's rights; it asked the node holding the most
    /// for the rest, so a later draw may succeed.
    #[error("this node holds {holds} of the counter's units and cannot draw {wanted}; it asked for more, retry")]
    Insufficient {
        /// The units this node may draw now.
        holds: u64,
        /// What was asked.
        wanted: u64,
    },
    /// This node holds the rights, but a majority of the counter's holders allowed it to
    /// give up only `allowed` more so far (see [`escrow`]); it asked for more, retry shortly.
    #[error("this node may give up {allowed} more of the counter's units until its holders allow more; it asked, retry")]
    Allowance {
        /// The units this node may draw now.
        allowed: u64,
        /// What was asked.
        wanted: u64,
    },
    /// The variable's acceptors cannot be changed (see [`reconfigure`]).
    #[error("variable {name:?}: {why}")]
    Reconfiguration {
        /// The variable.
        name: String,
        /// What is not built, and what to do instead.
        why: &'static str,
    },
    /// A move to acceptors of which fewer than a majority are lives this node knows alive:
    /// the variable could be left where no majority ever answers.
    #[error("variable {name:?}: {known} of the {named} acceptors named are lives this node knows alive, a majority is {needed}; name the lives of alive members (alive_lives)")]
    NotAlive {
        /// The variable.
        name: String,
        /// How many acceptors were named.
        named: usize,
        /// How many of them this node knows alive.
        known: usize,
        /// A majority of those named.
        needed: usize,
    },
    /// A counter's total would overflow.
    #[error("counter: {0}")]
    Counter(String),
    /// A session's outcome does not apply to the ledger (a field it lacks, a debit below a
    /// budget's floor, a variable that is not a ledger).
    #[error("outcome refused: {0}")]
    Outcome(String),
    /// This session's outcome is already committed: a ledger takes one per session.
    #[error("session {session:?} already committed version {version}")]
    SessionDecided {
        /// The session.
        session: SessionId,
        /// The version its outcome wrote.
        version: u64,
    },
    /// A later session already committed to the ledger, so this one can no longer (sessions
    /// commit in increasing order; it may have committed before that one).
    #[error("session {session:?} comes before the ledger's last session {last}")]
    SessionStale {
        /// The session.
        session: SessionId,
        /// The ledger's last session.
        last: u64,
    },
}

/// Counters of what the machine refused.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VarsStats {
    /// Messages for a variable we do not hold, under another spec, or whose sender is not who
    /// the transport says.
    pub foreign_messages: u64,
    /// Proposals or `lww` writes carrying a value outside the variable's constraints (or a
    /// change to no acceptors), and counter states showing an actor overdrawn.
    pub invalid_values: u64,
    /// Declarations of a name already declared here with another spec, or that did not
    /// decode.
    pub conflicting_declarations: u64,
    /// Compare-and-sets won here.
    pub cas_won: u64,
    /// Compare-and-sets that ended without a majority.
    pub cas_no_majority: u64,
    /// `lww` writes made here.
    pub lww_writes: u64,
    /// Draws refused because this node held too few rights.
    pub insufficient: u64,
    /// Counter units this node handed to lives that asked.
    pub rights_handed: u64,
    /// Counter units this node took, as heir, from lives fenced dead.
    pub rights_reclaimed: u64,
    /// Moves to other acceptors this node made on its own, off gone lives, that won.
    pub reseated: u64,
}

struct Variable {
    spec: VarSpec,
    fingerprint: u64,
    kind: Kind,
    /// The version last reported as changed.
    reported: u64,
    /// The decided version of the seat the declaration carries as this node last read or
    /// wrote it, and the acceptors after it (see [`reconfigure`]); 0 and the spec's for the
    /// declared ones.
    seat: (u64, BTreeSet<Life>),
    history: History,
    statistics: VarStatistics,
}

/// How a variable's changes are decided, by policy.
enum Kind {
    /// `cas` and `coordinated`: one Paxos instance per version among the acceptors.
    Register {
        register: Box<CasRegister<Life, VarValue>>,
        /// Our write under way: its request number.
        request: Option<u64>,
    },
    /// `lww`: the valid write with the highest stamp among every writer's key.
    Lww(LwwVar),
    /// A resource counter.
    Counter(CounterVar),
}

impl Variable {
    fn current(&self) -> (u64, &VarValue) {
        match &self.kind {
            Kind::Register { register, .. } => register.current(),
            Kind::Lww(lww) => (lww.version, &lww.value),
            Kind::Counter(counter) => (counter.version, &counter.value),
        }
    }

    fn register(&self) -> Option<&CasRegister<Life, VarValue>> {
        match &self.kind {
            Kind::Register { register, .. } => Some(register.as_ref()),
            _ => None,
        }
    }

    fn wrong_policy(&self, name: &str, why: &'static str) -> VarsError {
        VarsError::WrongPolicy {
            name: name.to_owned(),
            policy: self.spec.policy,
            why,
        }
    }
}

/// Messages to send: `(to, payload)`, to ourselves included.
pub type Outgoing = Vec<(NodeId, Bytes)>;

/// One node's variables.
pub struct Vars {
    me: Life,
    variables: BTreeMap<String, Variable>,
    next_request: u64,
    events: Vec<VarsEvent>,
    /// Writes to the replicated keyspaces the core is to make (`lww` values, counter states).
    publications: Vec<Write>,
    /// Messages made outside a call that takes an [`Outgoing`] (a replicated counter state
    /// that calls for a raise, a membership change): see [`Vars::take_messages`].
    pending: Outgoing,
    /// The highest generation membership reported down, by node: its lives up to that
    /// generation are over (see [`escrow`]).
    down: BTreeMap<NodeId, u64>,
    reseating: reseat::Reseating,
    /// Membership's generation of this node, which a renewal moves past `me`'s.
    identity: u64,
    /// Which life answers for each member's generation (see [`lives`]).
    lives: lives::Lives,
    stats: VarsStats,
}

impl Vars {
    /// No variables yet, for node life `me`.
    pub fn new(me: Life) -> Self {
        Self {
            me,
            variables: BTreeMap::new(),
            next_request: 1,
            events: Vec::new(),
            publications: Vec::new(),
            pending: Outgoing::new(),
            down: BTreeMap::new(),
            reseating: reseat::Reseating {
                config: Some(reseat::ReseatConfig::default()),
                ..Default::default()
            },
            identity: me.generation,
            lives: lives::Lives::default(),
            stats: VarsStats::default(),
        }
    }

    /// Declares `name` with `spec`; declaring it again with the same spec does nothing.
    pub fn declare(&mut self, name: &str, spec: VarSpec) -> Result<(), VarsError> {
        self.declare_from(name, spec, Source::Here)
    }

    /// [`Self::declare`], of a declaration made `source`.
    fn declare_from(&mut self, name: &str, spec: VarSpec, source: Source) -> Result<(), VarsError> {
        check_name(name)?;
        check_spec(self.me, &spec)?;
        let kind = match (spec.policy, &spec.initial) {
            (Policy::Lww, _) => Kind::Lww(LwwVar::new(spec.initial.clone())),
            (Policy::Counter, VarValue::Int(units)) => {
                let units = u64::try_from(*units).unwrap_or(0);
                Kind::Counter(CounterVar::new(self.me, units, &spec.acceptors))
            }
            _ => Kind::Register {
                register: Box::new(CasRegister::new(
                    self.me,
                    spec.acceptors.clone(),
                    spec.initial.clone(),
                )),
                request: None,
            },
        };
        let seat = (0, spec.acceptors.clone());
        self.hold(name, spec, kind, seat, source)
    }

    /// Holds `name` as `kind` under `spec` (checked), unless held already; `seat` as in
    /// [`Variable`].
    fn hold(
        &mut self,
        name: &str,
        spec: VarSpec,
        kind: Kind,
        seat: (u64, BTreeSet<Life>),
        source: Source,
    ) -> Result<(), VarsError> {
        check_name(name)?;
        let fingerprint = spec.fingerprint();
        if let Some(existing) = self.variables.get(name) {
            return match existing.fingerprint == fingerprint {
                true => Ok(()),
                false => Err(VarsError::Conflict(name.to_owned())),
            };
        }
        if source == Source::Here && self.variables.len() >= VARIABLES_MAX {
            return Err(VarsError::Full);
        }
        let variable = Variable {
            spec,
            fingerprint,
            kind,
            reported: 0,
            seat,
            history: History::default(),
            statistics: VarStatistics::default(),
        };
        self.variables.insert(name.to_owned(), variable);
        self.events.push(VarsEvent::Declared {
            name: name.to_owned(),
        });
        Ok(())
    }

    /// Takes up another node's replicated declaration of `name`: every node holds `lww`
    /// variables and counters; `cas` and `coordinated` ones only their acceptors.
    pub fn adopt(&mut self, now: Instant, name: &str, bytes: &[u8]) {
        let Some((spec, seat)) = reconfigure::decode_declaration(bytes) else {
            self.stats.conflicting_declarations += 1;
            return;
        };
        let named = seat.as_ref().map_or(&spec.acceptors, |s| &s.acceptors);
        self.announce(name, named);
        if let Some(seat) = seat {
            return self.adopt_seat(now, name, spec, seat);
        }
        if let Some(variable) = self.variables.get_mut(name) {
            if variable.fingerprint == spec.fingerprint() {
                // The declaration holds no seat now: one written without it (a late first
                // `declare` where it had not arrived) won over a seat. Lives a move added may
                // not hold the variable yet, so a holder that knows a move writes it back.
                variable.seat = (0, spec.acceptors.clone());
                return self.publish_seat(name);
            }
        }
        let everywhere = matches!(spec.policy, Policy::Lww | Policy::Counter);
        if !everywhere && !spec.acceptors.contains(&self.me) {
            return;
        }
        if let Err(VarsError::Conflict(_)) = self.declare_from(name, spec, Source::Replicated) {
            self.stats.conflicting_declarations += 1;
        }
    }

    /// This node's life, as acceptors are named.
    pub fn me(&self) -> Life {
        self.me
    }

    /// The version and value of `name` here.
    pub fn get(&self, name: &str) -> Option<(u64, &VarValue)> {
        self.variables.get(name).map(Variable::current)
    }

    /// The writer and value decided for `version` of a `cas` or `coordinated` variable
    /// `name`, if known here.
    pub fn decided(&self, name: &str, version: u64) -> Option<(Life, &VarValue)> {
        let proposal = self.variables.get(name)?.register()?.decided(version)?;
        Some((proposal.writer, &proposal.value))
    }

    /// The spec of `name`.
    pub fn spec(&self, name: &str) -> Option<&VarSpec> {
        self.variables.get(name).map(|v| &v.spec)
    }

    /// Names of the variables held here, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.variables.keys().map(String::as_str)
    }

    /// The counters.
    pub fn stats(&self) -> &VarsStats {
        &self.stats
    }

    /// The last changes of `name` seen here (at most [`HISTORY_MAX`]), oldest first.
    pub fn history(&self, name: &str) -> Option<impl Iterator<Item = &Change>> {
        self.variables.get(name).map(|v| v.history.iter())
    }

    /// What happened to `name` here since it was declared here.
    pub fn statistics(&self, name: &str) -> Option<&VarStatistics> {
        self.variables.get(name).map(|v| &v.statistics)
    }

    /// The rights this node's life holds of counter `name`: what it may draw without asking.
    pub fn rights(&self, name: &str) -> Option<u64> {
        match &self.variables.get(name)?.kind {
            Kind::Counter(counter) => Some(counter.counter.rights(counter::actor(self.me))),
            _ => None,
        }
    }

    /// Proposes `value` to replace version `expected` of `cas` variable `name`, decided
    /// within `timeout`. Returns the request number its [`VarsEvent::CasDone`] will carry.
    pub fn compare_and_set(
        &mut self,
        now: Instant,
        name: &str,
        expected: u64,
        value: VarValue,
        timeout: Duration,
        out: &mut Outgoing,
    ) -> Result<u64, VarsError> {
        let why = "only a compare-and-set variable takes compare_and_set";
        self.propose(now, name, Policy::Cas, why, (expected, value), timeout, out)
    }

    /// Commits `value` as version `expected + 1` of `coordinated` variable `name`: the way a
    /// coordination protocol's outcome lands in a variable (issue 14). It is decided like a
    /// compare-and-set — one winner per version, and only with a majority of the acceptors
    /// — so a session that commits on a minority side ends with [`CasOutcome::NoMajority`]
    /// and two sessions never both commit over one version. A direct write of a
    /// `coordinated` variable ([`Self::compare_and_set`], [`Self::set`]) is refused.
    pub fn commit(
        &mut self,
        now: Instant,
        name: &str,
        expected: u64,
        value: VarValue,
        timeout: Duration,
        out: &mut Outgoing,
    ) -> Result<u64, VarsError> {
        let why = "only a coordination protocol's outcome commits a coordinated variable";
        self.propose(
            now,
            name,
            Policy::Coordinated,
            why,
            (expected, value),
            timeout,
            out,
        )
    }

    /// Commits session `outcome` to ledger `name` (a `coordinated` record, see [`outcome`]) as
    /// its next version, in one step decided like a compare-and-set within `timeout`: every
    /// write and debit lands together or none does, and a session commits at most once. The
    /// request's [`VarsEvent::CasDone`] says how it ended; a version mismatch (this node was
    /// behind, or another session won the version) means: apply it again to the new value.
    pub fn commit_outcome(
        &mut self,
        now: Instant,
        name: &str,
        outcome: &Outcome,
        timeout: Duration,
        out: &mut Outgoing,
    ) -> Result<u64, VarsError> {
        let variable = self
            .variables
            .get(name)
            .ok_or_else(|| VarsError::Unknown(name.to_owned()))?;
        let Kind::Register { register, .. } = &variable.kind else {
            return Err(VarsError::Outcome(format!("{name:?} is not a ledger")));
        };
        let (expected, current) = register.current();
        let session = outcome.session;
        match outcome::session_of(current) {
            // The planted bug: no look at which session wrote the record.
            _ if fault_on!(OutcomeIgnoresSessionOrder) => {}
            Some(last) if last == session.0 => {
                let version = expected;
                return Err(VarsError::SessionDecided { session, version });
            }
            Some(last) if last > session.0 => {
                return Err(VarsError::SessionStale { session, last });
            }
            _ => {}
        }
        let next = outcome::apply(&variable.spec.ty, current, outcome)?;
        self.commit(now, name, expected, next, timeout, out)
    }

    #[allow(clippy::too_many_arguments)]
    fn propose(
        &mut self,
        now: Instant,
        name: &str,
        policy: Policy,
        why: &'static str,
        (expected, value): (u64, VarValue),
        timeout: Duration,
        out: &mut Outgoing,
    ) -> Result<u64, VarsError> {
        let variable = self
            .variables
            .get_mut(name)
            .ok_or_else(|| VarsError::Unknown(name.to_owned()))?;
        if variable.spec.policy != policy {
            return Err(variable.wrong_policy(name, why));
        }
        variable.spec.ty.check(&value)?;
        if !matches!(variable.kind, Kind::Register { .. }) {
            return Err(variable.wrong_policy(name, why));
        }
        self.start_step(now, name, timeout, out, |register, now, deadline| {
            register.compare_and_set(now, expected, value, deadline)
        })
    }

    /// Starts a majority-decided step of `name`'s register (`start` gets the time and the
    /// deadline `timeout` from now): the request number its [`VarsEvent::CasDone`] will carry.
    fn start_step(
        &mut self,
        now: Instant,
        name: &str,
        timeout: Duration,
        out: &mut Outgoing,
        start: impl FnOnce(
            &mut CasRegister<Life, VarValue>,
            Time,
            Time,
        ) -> Result<Sends, CasOutcome<Life>>,
    ) -> Result<u64, VarsError> {
        let variable = self
            .variables
            .get_mut(name)
            .ok_or_else(|| VarsError::Unknown(name.to_owned()))?;
        let Kind::Register { register, request } = &mut variable.kind else {
            return Err(VarsError::Unknown(name.to_owned()));
        };
        let sends = start(register, time(now), time(now + timeout)).map_err(refusal)?;
        let number = self.next_request;
        self.next_request += 1;
        *request = Some(number);
        push_sends(out, name, variable.fingerprint, self.me, sends);
        Ok(number)
    }

    /// Writes `value` to `lww` variable `name`: shown here at once, and on every node as the
    /// write replicates, unless a write with a later stamp is there first.
    pub fn set(&mut self, name: &str, value: VarValue) -> Result<(), VarsError> {
        let variable = self
            .variables
            .get_mut(name)
            .ok_or_else(|| VarsError::Unknown(name.to_owned()))?;
        if variable.spec.policy != Policy::Lww {
            let why = match variable.spec.policy {
                Policy::Coordinated => "only a coordination protocol's outcome changes it",
                Policy::Counter => "a counter changes by draw and refill",
                _ => "a compare-and-set variable changes by compare_and_set",
            };
            return Err(variable.wrong_policy(name, why));
        }
        variable.spec.ty.check(&value)?;
        self.stats.lww_writes += 1;
        let record = LwwRecord {
            spec: variable.fingerprint,
            value,
            writer: self.me,
            seq: self.stats.lww_writes,
        };
        self.publications.push(Write {
            keyspace: LWW_KEYSPACE.to_owned(),
            key: lww::key(name, self.me.node),
            value: Some(record.encode()),
        });
        Ok(())
    }

    /// Draws `amount` units from counter `name` out of the rights this node holds, without
    /// asking anyone. With too few rights it fails with [`VarsError::Insufficient`] and asks
    /// the node that holds the most for the shortfall (at most once per
    /// [`RIGHTS_ASK_INTERVAL`]), so a later draw may succeed.
    pub fn draw(
        &mut self,
        now: Instant,
        name: &str,
        amount: u64,
        out: &mut Outgoing,
    ) -> Result<(), VarsError> {
        let me = self.me;
        let (fingerprint, counter) = self.counter_mut(name)?;
        let holds = counter.counter.rights(counter::actor(me));
        if amount > holds && fault_on!(CounterDrawsUnbacked) {
            return Ok(());
        }
        if amount > holds {
            ask_rights(now, name, fingerprint, me, counter, amount - holds, out);
            self.note_insufficient(name);
            return Err(VarsError::Insufficient {
                holds,
                wanted: amount,
            });
        }
        let allowed = counter.escrow.headroom(&counter.counter);
        out.extend(reclaim::plan_raise(now, name, fingerprint, counter, amount));
        if amount > allowed {
            return Err(VarsError::Allowance {
                allowed,
                wanted: amount,
            });
        }
        counter
            .counter
            .draw(counter::actor(me), amount)
            .map_err(|e| VarsError::Counter(e.to_string()))?;
        out.extend(reclaim::plan_raise(now, name, fingerprint, counter, 0));
        self.counter_changed(now, name, |s| s.drawn += amount);
        Ok(())
    }

    /// Adds `amount` units to counter `name`, as rights of this node.
    pub fn refill(&mut self, now: Instant, name: &str, amount: u64) -> Result<(), VarsError> {
        let me = counter::actor(self.me);
        let (_, counter) = self.counter_mut(name)?;
        let room = (i64::MAX as u128).saturating_sub(counter.counter.value());
        if u128::from(amount) > room {
            return Err(VarsError::Counter(format!(
                "refilling {amount} would take the counter past {}",
                i64::MAX
            )));
        }
        counter
            .counter
            .add(me, amount)
            .map_err(|e| VarsError::Counter(e.to_string()))?;
        self.counter_changed(now, name, |s| s.refilled += amount);
        Ok(())
    }

    /// Asks for `amount` rights of counter `name` from the node that holds the most.
    pub fn request_rights(
        &mut self,
        now: Instant,
        name: &str,
        amount: u64,
        out: &mut Outgoing,
    ) -> Result<(), VarsError> {
        let me = self.me;
        let (fingerprint, counter) = self.counter_mut(name)?;
        counter.asked = None;
        ask_rights(now, name, fingerprint, me, counter, amount, out);
        Ok(())
    }

    fn counter_mut(&mut self, name: &str) -> Result<(u64, &mut CounterVar), VarsError> {
        let variable = self
            .variables
            .get_mut(name)
            .ok_or_else(|| VarsError::Unknown(name.to_owned()))?;
        let why = "only a counter is drawn from and refilled";
        if !matches!(variable.kind, Kind::Counter(_)) {
            return Err(variable.wrong_policy(name, why));
        }
        let fingerprint = variable.fingerprint;
        match &mut variable.kind {
            Kind::Counter(counter) => Ok((fingerprint, counter)),
            _ => Err(VarsError::Unknown(name.to_owned())),
        }
    }

    fn note_insufficient(&mut self, name: &str) {
        self.stats.insufficient += 1;
        if let Some(variable) = self.variables.get_mut(name) {
            variable.statistics.insufficient += 1;
        }
    }

    /// After a local change of counter `name`: counts it, reports a new value, and has this
    /// life's state written within [`COUNTER_PUBLISH_EVERY`] (a burst of draws replicates as
    /// one write; the rights are spent here at once either way).
    fn counter_changed(
        &mut self,
        now: Instant,
        name: &str,
        count: impl FnOnce(&mut VarStatistics),
    ) {
        let me = self.me;
        let Some(variable) = self.variables.get_mut(name) else {
            return;
        };
        count(&mut variable.statistics);
        let Kind::Counter(counter) = &mut variable.kind else {
            return;
        };
        counter.unpublished.get_or_insert(now);
        if counter.refresh() {
            self.changed(now, name, me);
        }
    }

    /// Writes this life's state of counter `name` now.
    fn publish_counter(&mut self, name: &str) {
        let me = self.me;
        let Some(variable) = self.variables.get_mut(name) else {
            return;
        };
        let Kind::Counter(counter) = &mut variable.kind else {
            return;
        };
        counter.unpublished = None;
        let record = CounterRecord {
            spec: variable.fingerprint,
            state: counter.counter.clone(),
        };
        self.publications.push(Write {
            keyspace: COUNTERS_KEYSPACE.to_owned(),
            key: counter::key(name, me),
            value: Some(record.encode()),
        });
    }

    /// When counter `name`'s unpublished changes are due to be written.
    fn publish_due(variable: &Variable) -> Option<Instant> {
        match &variable.kind {
            Kind::Counter(c) => c.unpublished.map(|since| since + COUNTER_PUBLISH_EVERY),
            _ => None,
        }
    }

    /// Takes up what replicated keyspace `keyspace` now holds under `key`: its latest write's
    /// stamp and bytes (`None` bytes for a removed key). Every value is checked against its
    /// variable's type and every counter state against overdrawing before it can show; what
    /// fails is refused and counted.
    pub fn entry_changed(
        &mut self,
        now: Instant,
        keyspace: &str,
        key: &str,
        ts: Timestamp,
        bytes: Option<&[u8]>,
    ) {
        match keyspace {
            LWW_KEYSPACE => self.lww_entry(now, key, ts, bytes),
            COUNTERS_KEYSPACE => self.counter_entry(now, key, bytes),
            _ => {}
        }
    }

    fn lww_entry(&mut self, now: Instant, key: &str, ts: Timestamp, bytes: Option<&[u8]>) {
        let Some((name, node)) = lww::parse_key(key) else {
            self.stats.foreign_messages += 1;
            return;
        };
        let Some(variable) = self.variables.get_mut(name) else {
            return; // Taken up with the rest of the keyspace when it is declared here.
        };
        let Kind::Lww(lww) = &mut variable.kind else {
            self.stats.foreign_messages += 1;
            return;
        };
        if node != self.me.node && fault_on!(VarsIgnorePeersLww) {
            return;
        }
        let record = bytes.and_then(LwwRecord::decode);
        let write = match record {
            None if bytes.is_none() => None,
            Some(r) if r.spec == variable.fingerprint && r.writer.node == node => {
                let fits = variable.spec.ty.check(&r.value).is_ok();
                if fits || fault_on!(VarsTakeOutOfRange) {
                    Some((ts, r.value, r.writer))
                } else {
                    self.stats.invalid_values += 1;
                    variable.statistics.refused += 1;
                    None
                }
            }
            _ => {
                // Undecodable, another spec's, or written under another node's key.
                self.stats.foreign_messages += 1;
                variable.statistics.refused += 1;
                None
            }
        };
        if lww.take(node, write) {
            let writer = lww.shown.map_or(self.me, |(_, w)| w);
            self.changed(now, name, writer);
        }
    }

    fn counter_entry(&mut self, now: Instant, key: &str, bytes: Option<&[u8]>) {
        let Some((name, life)) = counter::parse_key(key) else {
            self.stats.foreign_messages += 1;
            return;
        };
        let Some(variable) = self.variables.get_mut(name) else {
            return; // Taken up with the rest of the keyspace when it is declared here.
        };
        let Kind::Counter(counter) = &mut variable.kind else {
            self.stats.foreign_messages += 1;
            return;
        };
        let Some(bytes) = bytes else {
            return; // A removed state takes nothing away: merges only ever raise totals.
        };
        let record = CounterRecord::decode(bytes).filter(|r| r.spec == variable.fingerprint);
        let Some(record) = record else {
            self.stats.foreign_messages += 1;
            variable.statistics.refused += 1;
            return;
        };
        counter.lives.insert(counter::actor(life), life);
        if counter.counter.merge(&record.state).is_err() {
            self.stats.invalid_values += 1;
            variable.statistics.refused += 1;
            return;
        }
        let fingerprint = variable.fingerprint;
        let raise = reclaim::plan_raise(now, name, fingerprint, counter, 0);
        self.pending.extend(raise);
        if counter.refresh() {
            self.changed(now, name, life);
        }
    }

    /// Writes to replicated keyspaces since the last call, for the core to make.
    pub fn take_publications(&mut self) -> Vec<Write> {
        std::mem::take(&mut self.publications)
    }

    /// Handles a message from `from`.
    pub fn received(
        &mut self,
        now: Instant,
        from: NodeId,
        message: VarsMessage,
        out: &mut Outgoing,
    ) {
        self.heard(from, &message);
        match message {
            VarsMessage::Cas {
                name,
                spec,
                from: life,
                message,
            } => self.cas_step(now, from, (name, spec, life), message, out),
            VarsMessage::Rights {
                name,
                spec,
                from: life,
                wanted,
            } => self.rights_asked(now, from, (name, spec, life), wanted),
            VarsMessage::Escrow {
                name,
                spec,
                from: life,
                step,
            } => self.escrow_step(now, from, (name, spec, life), step, out),
            VarsMessage::Hello { from: life } => self.hello(from, life),
            VarsMessage::Renewed {
                from: life,
                identity,
            } => self.heard_renewal(from, life, identity),
        }
    }

    fn cas_step(
        &mut self,
        now: Instant,
        from: NodeId,
        (name, spec, life): (String, u64, Life),
        message: CasMessage<Life, VarValue>,
        out: &mut Outgoing,
    ) {
        let Some(variable) = self.variables.get_mut(&name) else {
            self.stats.foreign_messages += 1;
            return;
        };
        let fingerprint = variable.fingerprint;
        let Kind::Register { register, .. } = &mut variable.kind else {
            self.stats.foreign_messages += 1;
            return;
        };
        if fingerprint != spec || life.node != from {
            self.stats.foreign_messages += 1;
            return;
        }
        if !values_fit(&variable.spec.ty, &message) {
            self.stats.invalid_values += 1;
            variable.statistics.refused += 1;
            return;
        }
        #[cfg(feature = "fault-injection")]
        if fault_on!(AcceptorForgetsPromises) {
            register.forget_promises();
        }
        let (sends, outcome) = register.handle(time(now), life, message);
        push_sends(out, &name, fingerprint, self.me, sends);
        self.settle(now, &name, outcome);
        self.publish_seat(&name);
    }

    /// Another life asked for rights of a counter: hands it what it wanted, or what this node
    /// holds if less.
    fn rights_asked(
        &mut self,
        now: Instant,
        from: NodeId,
        (name, spec, life): (String, u64, Life),
        wanted: u64,
    ) {
        let me = self.me;
        let over = reclaim::ended(&self.down, life);
        let Ok((fingerprint, counter)) = self.counter_mut(&name) else {
            self.stats.foreign_messages += 1;
            return;
        };
        if fingerprint != spec || life.node != from || life == me {
            self.stats.foreign_messages += 1;
            return;
        }
        // An ask that outlived its life: what it were handed, no heir would take back (the
        // life's fence may be over already).
        if over {
            return;
        }
        counter.lives.insert(counter::actor(life), life);
        let allowed = counter.escrow.headroom(&counter.counter);
        let given = wanted
            .min(counter.counter.rights(counter::actor(me)))
            .min(allowed);
        // Cannot fail: `given` is at most what this life holds.
        let handed = counter
            .counter
            .hand_over(counter::actor(me), counter::actor(life), given);
        // Short of allowance for the rest: ask for it, so the asker's retry finds it.
        let short = wanted - given;
        let raise = reclaim::plan_raise(now, &name, fingerprint, counter, short);
        self.pending.extend(raise);
        if given == 0 || handed.is_err() {
            return;
        }
        self.stats.rights_handed += given;
        self.counter_changed(now, &name, |s| s.handed += given);
        // The asker is waiting for these rights: no reason to batch.
        self.publish_counter(&name);
    }

    /// When [`Self::handle_timeout`] next has something to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        // Asked after every input (the core's checks ask too): most nodes hold no variable.
        if self.variables.is_empty() {
            return self.reseat_due().into_iter().chain(self.retell_due()).min();
        }
        let registers = self
            .variables
            .values()
            .filter_map(|v| v.register()?.poll_timeout())
            .map(instant);
        let counters = self.variables.values().filter_map(Self::publish_due);
        let escrows = self.variables.values().filter_map(|v| match &v.kind {
            Kind::Counter(c) => c.escrow.due(),
            _ => None,
        });
        let reseat = self.reseat_due().into_iter().chain(self.retell_due());
        registers.chain(counters).chain(escrows).chain(reseat).min()
    }

    /// Retries and deadlines of our writes, and counter states to write, that are due at
    /// `now`.
    pub fn handle_timeout(&mut self, now: Instant, out: &mut Outgoing) {
        self.retell(now);
        let publish: Vec<String> = self
            .variables
            .iter()
            .filter(|(_, v)| Self::publish_due(v).is_some_and(|at| at <= now))
            .map(|(name, _)| name.clone())
            .collect();
        for name in publish {
            self.publish_counter(&name);
        }
        self.escrow_timeouts(now, out);
        let due: Vec<String> = self
            .variables
            .iter()
            .filter(|(_, v)| {
                v.register()
                    .and_then(CasRegister::poll_timeout)
                    .is_some_and(|t| t <= time(now))
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in due {
            let Some(variable) = self.variables.get_mut(&name) else {
                continue;
            };
            let Kind::Register { register, .. } = &mut variable.kind else {
                continue;
            };
            let (sends, outcome) = register.handle_timeout(time(now));
            push_sends(out, &name, variable.fingerprint, self.me, sends);
            self.settle(now, &name, outcome);
            self.publish_seat(&name);
        }
    }

    /// Checks what must always hold: every variable's current value fits its type and was
    /// reported; a register's is decided, an `lww` variable shows its best write, a counter's
    /// state has nobody overdrawn and shows its units.
    pub fn invariants(&self) -> Result<(), String> {
        for (name, variable) in &self.variables {
            let (version, value) = variable.current();
            variable
                .spec
                .ty
                .check(value)
                .map_err(|e| format!("variable {name:?} holds a value outside its type: {e}"))?;
            let sound = match &variable.kind {
                Kind::Register { register, .. } => register.decided(version).is_some(),
                Kind::Lww(lww) => lww.consistent(),
                Kind::Counter(c) => {
                    // The counter's own words: which actor is overdrawn, by how much.
                    c.counter
                        .invariants()
                        .map_err(|e| format!("variable {name:?}: {e}"))?;
                    *value == counter::shown(&c.counter)
                }
            };
            if !sound || variable.reported > version {
                return Err(format!(
                    "variable {name:?}: version {version} not what its state holds, or reported {} ahead",
                    variable.reported
                ));
            }
        }
        Ok(())
    }

    /// Events since the last call, in order.
    pub fn take_events(&mut self) -> Vec<VarsEvent> {
        std::mem::take(&mut self.events)
    }

    /// Reports a new version of a register and the end of our write, if this step brought
    /// either.
    fn settle(&mut self, now: Instant, name: &str, outcome: Option<CasOutcome<Life>>) {
        let Some(variable) = self.variables.get_mut(name) else {
            return;
        };
        let Kind::Register { register, request } = &mut variable.kind else {
            return;
        };
        let (version, _) = register.current();
        let writer = register
            .decided(version)
            .map_or(self.me, |p: &Proposal<Life, VarValue>| p.writer);
        let request = outcome.as_ref().and_then(|_| request.take());
        self.changed(now, name, writer);
        let (Some(outcome), Some(request)) = (outcome, request) else {
            return;
        };
        self.reseat_ended(request, matches!(outcome, CasOutcome::Won { .. }));
        match outcome {
            CasOutcome::Won { .. } => self.stats.cas_won += 1,
            CasOutcome::NoMajority => self.stats.cas_no_majority += 1,
            _ => {}
        }
        self.events.push(VarsEvent::CasDone {
            name: name.to_owned(),
            request,
            outcome,
        });
    }

    /// Reports the current version of `name` as changed by `writer`, with its history, if it
    /// was not reported yet.
    fn changed(&mut self, now: Instant, name: &str, writer: Life) {
        let Some(variable) = self.variables.get_mut(name) else {
            return;
        };
        let (version, value) = variable.current();
        if version <= variable.reported {
            return;
        }
        let value = value.clone();
        variable.reported = version;
        variable.statistics.changes += 1;
        variable.history.push(Change {
            version,
            value: value.clone(),
            writer,
            at: now,
        });
        self.events.push(VarsEvent::Changed {
            name: name.to_owned(),
            version,
            value,
            writer,
        });
    }
}

/// Asks the life holding the most rights of a counter (other than `me`) for `amount`, unless
/// this node asked within [`RIGHTS_ASK_INTERVAL`].
fn ask_rights(
    now: Instant,
    name: &str,
    spec: u64,
    me: Life,
    counter: &mut CounterVar,
    amount: u64,
    out: &mut Outgoing,
) {
    let recent = counter
        .asked
        .is_some_and(|at| now.saturating_since(at) < RIGHTS_ASK_INTERVAL);
    let Some((holder, _)) = counter.richest_other(me).filter(|_| !recent) else {
        return;
    };
    counter.asked = Some(now);
    let message = VarsMessage::Rights {
        name: name.to_owned(),
        spec,
        from: me,
        wanted: amount,
    };
    out.push((holder.node, encode(&message)));
}

fn check_name(name: &str) -> Result<(), VarsError> {
    match name.is_empty() || name.len() > NAME_BYTES_MAX {
        true => Err(VarsError::BadName(name.to_owned())),
        false => Ok(()),
    }
}

fn check_spec(me: Life, spec: &VarSpec) -> Result<(), VarsError> {
    spec.ty.validate()?;
    spec.ty.check(&spec.initial)?;
    match spec.policy {
        Policy::Cas | Policy::Coordinated if !spec.acceptors.contains(&me) => Err(
            VarsError::BadSpec("this node's life must be one of the acceptors".into()),
        ),
        Policy::Lww if !spec.acceptors.is_empty() => Err(VarsError::BadSpec(
            "an lww variable has no acceptors: every node writes".into(),
        )),
        Policy::Counter => check_counter(spec),
        _ => Ok(()),
    }
}

/// A counter counts units: its type is every non-negative integer, and whoever holds its
/// initial units is named.
fn check_counter(spec: &VarSpec) -> Result<(), VarsError> {
    let units = VarType::Int {
        min: 0,
        max: i64::MAX,
    };
    if spec.ty != units {
        return Err(VarsError::BadSpec(format!(
            "a counter's type is {units:?} (its units)"
        )));
    }
    if spec.initial != VarValue::Int(0) && spec.acceptors.is_empty() {
        return Err(VarsError::BadSpec(
            "a counter's initial units need holders (the spec's acceptors)".into(),
        ));
    }
    Ok(())
}

/// Whether every value a message carries fits `ty`, and every set of acceptors it names
/// could decide.
fn values_fit(ty: &VarType, message: &CasMessage<Life, VarValue>) -> bool {
    let proposal = match message {
        CasMessage::Promise {
            accepted: Some((_, proposal)),
            ..
        }
        | CasMessage::Accept { proposal, .. } => proposal,
        // Nobody could decide after a decision naming no acceptors.
        CasMessage::Decided { next, .. } if next.is_empty() => return false,
        CasMessage::Decided { proposal, .. } => proposal,
        _ => return true,
    };
    // A change to no acceptors would leave the variable unwritable for good.
    let decidable = proposal
        .acceptors
        .as_ref()
        .is_none_or(|set| !set.is_empty());
    decidable && ty.check(&proposal.value).is_ok()
}

fn refusal(outcome: CasOutcome<Life>) -> VarsError {
    match outcome {
        CasOutcome::VersionMismatch { current } => VarsError::VersionMismatch { current },
        _ => VarsError::Busy,
    }
}

fn push_sends(
    out: &mut Outgoing,
    name: &str,
    spec: u64,
    from: Life,
    sends: Vec<(Life, CasMessage<Life, VarValue>)>,
) {
    for (to, message) in sends {
        let message = VarsMessage::Cas {
            name: name.to_owned(),
            spec,
            from,
            message,
        };
        out.push((to.node, encode(&message)));
    }
}

/// The mechanisms' clock: milliseconds since the node's epoch.
fn time(at: Instant) -> Time {
    Time(at.elapsed().as_millis() as u64)
}

fn instant(at: Time) -> Instant {
    Instant::from_elapsed(Duration::from_millis(at.0))
}

#[cfg(test)]
mod escrow_tests;
#[cfg(test)]
mod outcome_tests;
#[cfg(test)]
mod reconfigure_tests;
#[cfg(test)]
mod reseat_tests;
#[cfg(test)]
mod tests;
