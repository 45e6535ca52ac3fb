//! What must hold during and after a run, and the trait to add a check.
//!
//! Checked by default:
//! - [`core::CoreInvariants`]: every core's own invariants after every step it takes
//!   (membership's incrementally: the members changed since the core's previous step).
//! - [`core::TransportLimits`]: no core ever sends a message its transport would refuse (a
//!   membership datagram over 1199 bytes, a stream frame over the channel's limit).
//! - [`membership::Convergence`]: after the cluster forms, and after every disturbance (heal,
//!   crash, restart, stop, stall, join), every live node agrees on the live set within a bound.
//! - [`membership::Detection`]: a crashed or stopped node is marked failed (or left) by every
//!   survivor that saw it alive, within a bound.
//! - [`membership::NoFalsePositives`]: no node is marked failed while it was up and reachable
//!   from the observer's side (defined precisely there).
//! - [`membership::NoNeedlessRenewal`]: a running node renews its generation only after some
//!   node declared its life failed or left.
//! - no panics: the runner wraps each run in `catch_unwind` and reports a panic as a failure of
//!   the `no-panics` invariant.
//!
//! Checked when the scenario registers service instances ([`crate::faults::Fault::Register`]):
//! - [`registry::RegistryConsistent`]: instances of dead node lives vanish from every directory
//!   and never come back; after every disturbance every live node lists exactly what the live
//!   nodes registered.
//!
//! Checked when the scenario makes calls ([`crate::faults::Fault::Calls`]):
//! - [`rpc::CallsEnd`]: every call ends by its deadline, a handler runs at most once for a
//!   call that is not idempotent, and calls started on a quiet cluster succeed.
//!
//! Checked when the scenario publishes ([`crate::faults::Fault::Publish`]):
//! - [`pubsub::Delivery`]: each publication reaches each subscribing application once, only
//!   where routed, in order per publisher; reliable ones despite lost connections.
//!
//! Checked when the scenario spawns agents ([`crate::faults::Fault::Agents`]):
//! - [`agents::AgentsVanish`]: a dead node life's agents vanish from every live node's
//!   directory within the failure-detection bound, and never come back.
//! - [`agents::AgentRequests`]: a message to an agent is answered at most once and ends by its
//!   deadline.
//! - [`agents::SupervisorIntensity`]: a supervisor gives up at the restart one too many within
//!   its period, never restarts afterwards, and its agents show `failed`.
//!
//! Checked by default when the scenario writes to replicated keyspaces ([`replication_defaults`]):
//! - [`replication::ReplicasConverge`]: after every disturbance, burst of writes and end of a
//!   workload, every running node holds the same live data within a bound.
//! - [`replication::AcknowledgedWritesPresent`]: at the end, no write that must have survived
//!   (its writer is still running, or a majority acknowledged it and a holder or acker is still
//!   running) is missing or beaten by an older write on any running node. With storage
//!   (`[storage]`), also every write durable on a disk a node runs on again: the writer's once
//!   its reply came, each acknowledger's — across crashes of the whole cluster.
//! - [`seen::SeenBackedByData`]: every write a node's digest claims seen is in its data, or
//!   superseded by a later write or delete.
//! - [`causality::CausalOrder`]: no write loses to a write its writer had applied before it (read
//!   your writes; the clock moves past every receive).
//! - [`stamps::StampsFollowLives`]: every stamp a node sends is above every stamp its earlier
//!   lives sent (when it runs on their disk), and within a life its stamps rise with its seqs.
//!
//! [`replication::OriginsRetired`] (departed writers' bookkeeping is compacted away) is added by
//! the scenarios that set a short `departed_after`.
//!
//! Checked over the runs of coordination sessions ([`crate::sessions`], `tests/sessions_driven.rs`):
//! [`sessions`]: one outcome per session, a committed allocation within its budget, the
//! outcome the same mechanism machine gives on one node for the acknowledged answers, and no
//! outcome committed on a minority side.
//!
//! Adding one: implement [`Invariant`] (every method has a default that checks nothing) and add
//! a factory with [`crate::scenario::Scenario::invariant`].

pub mod agents;
pub mod causality;
pub mod core;
pub mod membership;
pub mod pubsub;
mod reach;
pub mod registry;
pub mod replication;
pub mod rpc;
pub mod seen;
pub mod separations;
pub mod sessions;
pub mod stamps;

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::faults::Fault;
use crate::stamps::LetOut;
use crate::world::{Observed, World};

/// A violation's description; the runner adds the invariant's name and the time.
pub type Check = Result<(), String>;

/// One property checked during a run. The runner calls the hooks in time order.
pub trait Invariant: Send {
    /// A short kebab-case name, used in reports.
    fn name(&self) -> &'static str;

    /// After the core in `slot` handled an input.
    fn after_step(&mut self, _world: &World, _slot: usize) -> Check {
        Ok(())
    }

    /// After a node emitted a membership event.
    fn on_event(&mut self, _world: &World, _event: &Observed) -> Check {
        Ok(())
    }

    /// For each op of its running life a node sent (a push, an ask for acknowledgements, an
    /// anti-entropy answer), in the order they were sent; handed over after the step that sent
    /// it, or after the next one for sends between steps (`op.at_us` is the send's time).
    fn on_let_out(&mut self, _world: &World, _op: &LetOut) -> Check {
        Ok(())
    }

    /// After a fault was applied to `slots` (empty for network-wide faults).
    fn on_fault(&mut self, _world: &World, _fault: &Fault, _slots: &[usize]) {}

    /// Every check interval of simulated time.
    fn on_tick(&mut self, _world: &World) -> Check {
        Ok(())
    }

    /// Once, when the run ends.
    fn at_end(&mut self, _world: &World) -> Check {
        Ok(())
    }

    /// Adds what it measured to the run's report.
    fn measure(&self, _out: &mut Measurements) {}
}

/// Builds a fresh invariant for each run (runs may happen on many threads at once).
pub type InvariantFactory = Arc<dyn Fn() -> Box<dyn Invariant> + Send + Sync>;

/// The bounds of the default invariants.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Bounds {
    /// How long after a disturbance every live node must agree on the live set.
    pub convergence: Duration,
    /// How long after a crash every survivor must see the node failed.
    pub detection: Duration,
    /// Whether false positives fail the run.
    pub false_positives: bool,
    /// Whether declaring a stalled node failed fails the run (for scenarios whose stalls are
    /// all shorter than the profile tolerates); otherwise such declarations are only counted.
    pub stalls_survived: bool,
    /// Whether each core's `invariants()` runs after every step (costs time at large N).
    pub core_invariants: bool,
    /// How often continuous checks run, in simulated time.
    pub interval: Duration,
    /// How long after a disturbance, or the end of a burst of writes, every live node must hold
    /// the same replicated data (only when the scenario writes).
    pub replication: Duration,
}

impl Default for Bounds {
    fn default() -> Self {
        Self {
            convergence: Duration::from_secs(30),
            detection: Duration::from_secs(10),
            false_positives: true,
            stalls_survived: false,
            core_invariants: true,
            interval: Duration::from_millis(100),
            replication: Duration::from_secs(30),
        }
    }
}

/// Whether the node in `slot` was stalled at some point from `from_us` to `to_us`: a stopped
/// process ends nothing on time, so deadlines are not judged across a stall.
pub(crate) fn stalled_during(world: &World, slot: usize, from_us: u64, to_us: u64) -> bool {
    world
        .node(slot)
        .stalls()
        .iter()
        .any(|&(from, to)| from <= to_us && to >= from_us)
}

/// The default invariants with these bounds.
pub fn defaults(
    bounds: &Bounds,
    probe: &foundation_core::membership::MembershipConfig,
) -> Vec<Box<dyn Invariant>> {
    let mut all: Vec<Box<dyn Invariant>> = vec![
        Box::new(core::TransportLimits),
        Box::new(membership::Convergence::new(bounds.convergence)),
        Box::new(membership::Detection::new(bounds.detection)),
        Box::new(membership::NoFalsePositives::new(probe, bounds)),
        Box::new(membership::NoNeedlessRenewal::default()),
    ];
    if bounds.core_invariants {
        all.insert(0, Box::<core::CoreInvariants>::default());
    }
    all
}

/// The replication invariants a scenario that writes gets by default.
pub fn replication_defaults(bounds: &Bounds) -> Vec<Box<dyn Invariant>> {
    vec![
        Box::new(replication::ReplicasConverge::new(bounds.replication)),
        Box::new(replication::AcknowledgedWritesPresent::new()),
        Box::new(seen::SeenBackedByData::new()),
        Box::new(causality::CausalOrder::new()),
        Box::new(stamps::StampsFollowLives::new()),
    ]
}

/// One replication convergence episode.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ReplicationEpisode {
    /// What disturbed the replicas (a fault, a burst of writes, the end of a workload).
    pub after: String,
    /// When the clock started, in simulated seconds.
    pub at_secs: f64,
    /// How long until every running node held the same live data, if it did.
    pub took_secs: Option<f64>,
    /// Anti-entropy rounds started meanwhile, per running node.
    pub rounds_per_node: f64,
}

/// One convergence episode.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ConvergenceRecord {
    /// What disturbed the cluster.
    pub after: String,
    /// When, in simulated seconds.
    pub at_secs: f64,
    /// How long until every live node agreed, if it did.
    pub took_secs: Option<f64>,
}

/// How a crashed (or stopped) node was detected.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DetectionRecord {
    /// The node's slot.
    pub node: usize,
    /// Whether it left gracefully (stop) rather than crashed.
    pub graceful: bool,
    /// When it went down, in simulated seconds.
    pub at_secs: f64,
    /// Survivors that had to notice.
    pub observers: usize,
    /// Time until the first survivor marked it.
    pub first_secs: Option<f64>,
    /// Time until every survivor had, if they all did.
    pub all_secs: Option<f64>,
}

/// What the invariants measured, for the report.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Measurements {
    /// What a cache workload did (scenarios with one).
    pub cache: Option<crate::cache::CacheCounts>,
    /// What a scenario's coordination sessions did (scenarios with some).
    pub sessions: Option<crate::scenario::sessions::SessionCounts>,
    /// Convergence episodes.
    pub convergence: Vec<ConvergenceRecord>,
    /// Crash detections.
    pub detections: Vec<DetectionRecord>,
    /// Declarations of failure about nodes that were up and reachable.
    pub false_positives: u64,
    /// Declarations about a node that was stalled in the look-back window (allowed).
    pub failed_while_stalled: u64,
    /// Declarations about a node cut off from the observer's side (allowed).
    pub failed_across_partition: u64,
    /// Replication convergence episodes (scenarios that write).
    pub replication: Vec<ReplicationEpisode>,
    /// Keys whose surviving writes were checked on every running node at the end.
    pub writes_checked: u64,
    /// Of them, keys whose newest surviving write was owed only to a disk: no life that held
    /// it in memory still runs (with storage; see [`replication::durable_on_a_running_disk`]).
    pub writes_kept_by_disks: u64,
    /// Keys where a set won over a newer delete made across a partition longer than
    /// `departed_after` (allowed; see [`replication::AcknowledgedWritesPresent`]).
    pub sets_won_after_departure: u64,
    /// Writes checked against a node's data because its digest claimed them seen.
    pub claims_checked: u64,
    /// Writes checked against what their writer had applied before them.
    pub causal_writes_checked: u64,
    /// Ops of their running lives the nodes sent, checked against their past lives' stamps.
    pub stamps_checked: u64,
    /// The service registry: registration → listed everywhere, death → gone everywhere, and
    /// convergence episodes (empty unless the scenario registers something).
    pub registry: Vec<registry::RegistryRecord>,
    /// Registry disagreements no disturbance explained (each had to settle within the bound).
    pub registry_unexplained: u64,
    /// RPC calls by how they ended (`ok`, `unavailable`, …; empty unless the scenario calls).
    pub calls: std::collections::BTreeMap<String, u64>,
    /// Publications handed to subscribing applications (zero unless the scenario publishes).
    pub publications_delivered: u64,
    /// Pub/sub frames the publishers sent, resends included.
    pub pubsub_frames: u64,
    /// Published messages that shared a frame with another.
    pub pubsub_batched: u64,
    /// Publications that found an outbox full and waited for room.
    pub pubsub_waited: u64,
    /// Agent messages by how they ended (`ok`, `deadline_exceeded`, …; empty unless the
    /// scenario sends them).
    pub agent_messages: std::collections::BTreeMap<String, u64>,
    /// Agent restarts their supervisors decided.
    pub agent_restarts: u64,
    /// Supervisors that gave up.
    pub agent_give_ups: u64,
    /// For each ended node life: seconds until no live directory listed its agents.
    pub agents_vanished: Vec<f64>,
}
