//! Variables agents coordinate on, across the cluster: typed, constrained values whose
//! concurrent changes are resolved by an enforced policy.
//!
//! This machine runs the `cas` policy: each variable is a [`CasRegister`] (single-decree Paxos
//! per version, `foundation_agents::cas`) among a fixed set of acceptors named in its
//! [`VarSpec`]. Of any writers that expect the same version exactly one wins, and only with a
//! majority of those acceptors: a majority of the *declared* set, never of whoever one side of a
//! partition still sees, so a minority side's writes end with [`CasOutcome::NoMajority`].
//!
//! Every value passes [`VarType::check`] before it can be proposed, accepted or learned: a
//! value outside its constraints that a misbehaving node sends is refused and counted
//! ([`VarsStats::invalid_values`]) and never becomes visible.
//!
//! # Declaring
//!
//! A node declares a variable once, naming its acceptors (usually every member alive then); the
//! declaration is replicated in the [`VARS_KEYSPACE`] keyspace, and every acceptor takes it up
//! as it arrives ([`Vars::adopt`]). Declaring the same spec again anywhere does nothing.
//! Messages carry the spec's fingerprint and a node refuses messages for a spec other than its
//! own, so nodes that disagree on a variable never decide together: if two nodes declare one
//! name with different specs at the same moment, each acceptor keeps the first it saw and
//! counts the other ([`VarsStats::conflicting_declarations`]) — declare from one place. The
//! acceptor set does not change once declared; a variable whose majority of acceptors is gone
//! for good can no longer be written (reads still answer). `lww` and `coordinated` variables
//! and resource counters on the cluster are not built in this machine.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bytes::Bytes;
use foundation_agents::cas::{CasMessage, CasOutcome, CasRegister, Proposal};
use foundation_agents::variable::{Policy, VarError, VarType, VarValue, NAME_BYTES_MAX};
use foundation_agents::Time;
use serde::{Deserialize, Serialize};

use crate::envelope;
use crate::time::Instant;
use crate::NodeId;

/// Most variables one node holds.
pub const VARIABLES_MAX: usize = 4096;

/// The replicated keyspace holding declarations: variable name → encoded [`VarSpec`].
pub const VARS_KEYSPACE: &str = "vars";

/// What a variable is: its type, its policy, its first value, and (for `cas`) who decides it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VarSpec {
    /// What it may hold.
    pub ty: VarType,
    /// How concurrent changes are resolved.
    pub policy: Policy,
    /// The value at version 0.
    pub initial: VarValue,
    /// The node lives whose majority decides each version.
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
    /// The declaration could not be replicated (a limit of the replicated keyspace).
    #[error("the declaration could not be replicated: {0}")]
    NotReplicated(String),
}

/// Counters of what the machine refused.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VarsStats {
    /// Messages for a variable we do not hold, under another spec, or whose sender is not who
    /// the transport says.
    pub foreign_messages: u64,
    /// Proposals carrying a value outside the variable's constraints.
    pub invalid_values: u64,
    /// Declarations of a name already declared here with another spec, or that did not
    /// decode.
    pub conflicting_declarations: u64,
    /// Compare-and-sets won here.
    pub cas_won: u64,
    /// Compare-and-sets that ended without a majority.
    pub cas_no_majority: u64,
}

struct Variable {
    spec: VarSpec,
    fingerprint: u64,
    register: CasRegister<Life, VarValue>,
    /// Our compare-and-set under way: its request number.
    request: Option<u64>,
    /// The version last reported as changed.
    reported: u64,
}

/// Messages to send: `(to, payload)`, to ourselves included.
pub type Outgoing = Vec<(NodeId, Bytes)>;

/// One node's variables.
pub struct Vars {
    me: Life,
    variables: BTreeMap<String, Variable>,
    next_request: u64,
    events: Vec<VarsEvent>,
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
            stats: VarsStats::default(),
        }
    }

    /// Declares `name` with `spec`; declaring it again with the same spec does nothing.
    pub fn declare(&mut self, name: &str, spec: VarSpec) -> Result<(), VarsError> {
        check_name(name)?;
        check_spec(self.me, &spec)?;
        let fingerprint = spec.fingerprint();
        if let Some(existing) = self.variables.get(name) {
            return match existing.fingerprint == fingerprint {
                true => Ok(()),
                false => Err(VarsError::Conflict(name.to_owned())),
            };
        }
        if self.variables.len() >= VARIABLES_MAX {
            return Err(VarsError::Full);
        }
        let register = CasRegister::new(self.me, spec.acceptors.clone(), spec.initial.clone());
        let variable = Variable {
            spec,
            fingerprint,
            register,
            request: None,
            reported: 0,
        };
        self.variables.insert(name.to_owned(), variable);
        self.events.push(VarsEvent::Declared {
            name: name.to_owned(),
        });
        Ok(())
    }

    /// Takes up another node's replicated declaration of `name`, if this node's life is one
    /// of its acceptors.
    pub fn adopt(&mut self, name: &str, bytes: &[u8]) {
        let Some(spec) = VarSpec::decode(bytes) else {
            self.stats.conflicting_declarations += 1;
            return;
        };
        if !spec.acceptors.contains(&self.me) {
            return;
        }
        if let Err(VarsError::Conflict(_)) = self.declare(name, spec) {
            self.stats.conflicting_declarations += 1;
        }
    }

    /// The version and value of `name` here.
    pub fn get(&self, name: &str) -> Option<(u64, &VarValue)> {
        self.variables.get(name).map(|v| v.register.current())
    }

    /// The writer and value decided for `version` of `name`, if known here.
    pub fn decided(&self, name: &str, version: u64) -> Option<(Life, &VarValue)> {
        let proposal = self.variables.get(name)?.register.decided(version)?;
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

    /// Proposes `value` to replace version `expected` of `name`, decided within `timeout`.
    /// Returns the request number its [`VarsEvent::CasDone`] will carry.
    pub fn compare_and_set(
        &mut self,
        now: Instant,
        name: &str,
        expected: u64,
        value: VarValue,
        timeout: Duration,
        out: &mut Outgoing,
    ) -> Result<u64, VarsError> {
        let variable = self
            .variables
            .get_mut(name)
            .ok_or_else(|| VarsError::Unknown(name.to_owned()))?;
        if variable.spec.policy != Policy::Cas {
            return Err(VarsError::WrongPolicy {
                name: name.to_owned(),
                policy: variable.spec.policy,
                why: "only a compare-and-set variable takes compare_and_set",
            });
        }
        variable.spec.ty.check(&value)?;
        let deadline = time(now + timeout);
        let sends = variable
            .register
            .compare_and_set(time(now), expected, value, deadline)
            .map_err(refusal)?;
        let request = self.next_request;
        self.next_request += 1;
        variable.request = Some(request);
        push_sends(out, name, variable.fingerprint, self.me, sends);
        Ok(request)
    }

    /// Handles a message from `from`.
    pub fn received(
        &mut self,
        now: Instant,
        from: NodeId,
        message: VarsMessage,
        out: &mut Outgoing,
    ) {
        let VarsMessage::Cas {
            name,
            spec,
            from: life,
            message,
        } = message;
        let Some(variable) = self.variables.get_mut(&name) else {
            self.stats.foreign_messages += 1;
            return;
        };
        if variable.fingerprint != spec || life.node != from {
            self.stats.foreign_messages += 1;
            return;
        }
        if !values_fit(&variable.spec.ty, &message) {
            self.stats.invalid_values += 1;
            return;
        }
        let (sends, outcome) = variable.register.handle(time(now), life, message);
        push_sends(out, &name, variable.fingerprint, self.me, sends);
        self.settle(&name, outcome);
    }

    /// When [`Self::handle_timeout`] next has something to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.variables
            .values()
            .filter_map(|v| v.register.poll_timeout())
            .min()
            .map(instant)
    }

    /// Retries and deadlines of our writes that are due at `now`.
    pub fn handle_timeout(&mut self, now: Instant, out: &mut Outgoing) {
        let due: Vec<String> = self
            .variables
            .iter()
            .filter(|(_, v)| v.register.poll_timeout().is_some_and(|t| t <= time(now)))
            .map(|(name, _)| name.clone())
            .collect();
        for name in due {
            let Some(variable) = self.variables.get_mut(&name) else {
                continue;
            };
            let (sends, outcome) = variable.register.handle_timeout(time(now));
            push_sends(out, &name, variable.fingerprint, self.me, sends);
            self.settle(&name, outcome);
        }
    }

    /// Checks what must always hold: every variable's current value is decided and fits its
    /// type, and it was reported.
    pub fn invariants(&self) -> Result<(), String> {
        for (name, variable) in &self.variables {
            let (version, value) = variable.register.current();
            variable
                .spec
                .ty
                .check(value)
                .map_err(|e| format!("variable {name:?} holds a value outside its type: {e}"))?;
            if variable.register.decided(version).is_none() || variable.reported > version {
                return Err(format!(
                    "variable {name:?}: version {version} not decided here, or reported {} ahead",
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

    /// Reports a new version and the end of our write, if this step brought either.
    fn settle(&mut self, name: &str, outcome: Option<CasOutcome<Life>>) {
        let Some(variable) = self.variables.get_mut(name) else {
            return;
        };
        let (version, value) = variable.register.current();
        if version > variable.reported {
            variable.reported = version;
            let writer = variable
                .register
                .decided(version)
                .map_or(self.me, |p: &Proposal<Life, VarValue>| p.writer);
            self.events.push(VarsEvent::Changed {
                name: name.to_owned(),
                version,
                value: value.clone(),
                writer,
            });
        }
        let Some(outcome) = outcome else { return };
        let Some(request) = variable.request.take() else {
            return;
        };
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
    if spec.policy != Policy::Cas {
        return Err(VarsError::BadSpec(format!(
            "{:?} variables are not built on the cluster yet; only cas",
            spec.policy
        )));
    }
    if !spec.acceptors.contains(&me) {
        return Err(VarsError::BadSpec(
            "this node's life must be one of the acceptors".into(),
        ));
    }
    Ok(())
}

/// Whether every value a message carries fits `ty`.
fn values_fit(ty: &VarType, message: &CasMessage<Life, VarValue>) -> bool {
    let value = match message {
        CasMessage::Promise {
            accepted: Some((_, proposal)),
            ..
        }
        | CasMessage::Accept { proposal, .. }
        | CasMessage::Decided { proposal, .. } => &proposal.value,
        _ => return true,
    };
    ty.check(value).is_ok()
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
mod tests;
