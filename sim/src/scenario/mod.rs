//! Scenarios: what happens when, and what is checked.
//!
//! ```
//! use foundation_sim::faults::{secs, Fault, Nodes};
//! use foundation_sim::scenario::{Check, Scenario};
//!
//! let scenario = Scenario::new("partition-heal")
//!     .nodes(16)
//!     .duration(secs(60))
//!     .group("minority", Nodes::Share { from: 0.6, to: 1.0 })
//!     .group("majority", Nodes::Share { from: 0.0, to: 0.6 })
//!     .at(secs(10), Fault::Partition(Nodes::Named("minority".into()), Nodes::Named("majority".into())))
//!     .at(secs(25), Fault::Heal)
//!     .check(Check::ConvergesWithin(secs(30)));
//! let report = foundation_sim::scenario::run(&scenario, 7, &Default::default());
//! assert!(report.passed, "{:?}", report.invariants);
//! ```
//!
//! Every run starts the same way: all cores start at time zero and every node joins through
//! node 0. Faults follow at their times; checks run throughout.

pub mod chaos;
pub mod file;
mod file_sessions;
mod run;
pub mod sessions;
pub mod standard;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::time::Duration;

use foundation_core::membership::MembershipConfig;
use foundation_core::replication::ReplicationConfig;
use foundation_core::services::record::check_service_name;

use crate::cache::CacheWorkload;
use crate::faults::{Fault, Nodes};
use crate::invariants::{Bounds, Invariant, InvariantFactory};
use crate::network::LinkModel;
use crate::storage::StorageConfig;
use sessions::SessionWorkload;

pub(crate) use run::{panic_message, Runner};
pub use run::{run, RunOptions};

/// One fault at one time.
#[derive(Clone, Debug, PartialEq)]
pub struct Scheduled {
    /// When, from the start of the run.
    pub at: Duration,
    /// What.
    pub fault: Fault,
    /// The scenario file line it came from, for error messages.
    pub line: Option<usize>,
}

/// A check to turn on or tune.
#[derive(Clone, Debug, PartialEq)]
pub enum Check {
    /// Every live node agrees on the live set within this long after each disturbance.
    ConvergesWithin(Duration),
    /// Every survivor marks a crashed node failed within this long.
    DetectsWithin(Duration),
    /// Whether a false positive fails the run (always counted).
    NoFalsePositives(bool),
    /// Whether declaring a stalled node failed fails the run (always counted): for scenarios
    /// whose stalls are all shorter than the membership profile tolerates.
    StallsSurvived(bool),
    /// Whether each core's `invariants()` runs after every step.
    CoreInvariants(bool),
    /// Every live node holds the same replicated data within this long after each disturbance
    /// or burst of writes (checked only when the scenario writes).
    ReplicasConvergeWithin(Duration),
}

/// A scenario: cluster size, settings, network, faults over time, and checks.
#[derive(Clone)]
pub struct Scenario {
    /// Its name.
    pub name: String,
    /// What it exercises, one line.
    pub description: String,
    /// Node slots.
    pub nodes: usize,
    /// Simulated time the run lasts.
    pub duration: Duration,
    /// Every core's membership settings.
    pub membership: MembershipConfig,
    /// Every core's replication settings; `None` keeps the engine's defaults.
    pub replication: Option<ReplicationConfig>,
    /// Each node's simulated disk; `None`: nodes keep nothing across a crash.
    pub storage: Option<StorageConfig>,
    /// How links behave at the start.
    pub network: LinkModel,
    /// Named node groups.
    pub groups: BTreeMap<String, Nodes>,
    /// Faults, in the order they were added (the runner sorts them by time, stably).
    pub schedule: Vec<Scheduled>,
    /// Bounds of the default invariants.
    pub bounds: Bounds,
    /// Invariants beyond the defaults.
    pub extra: Vec<InvariantFactory>,
    /// How to name this scenario on a command line (`--scenario x` or `--file x.toml`).
    pub replay_source: String,
    /// Traffic is reported from this time on (to leave out the cluster forming). Default 0.
    pub traffic_from: Duration,
    /// A cache workload and its checks ([`crate::cache`]); `None`: no caches.
    pub cache: Option<CacheWorkload>,
    /// A crash kills only the node's process: its host answers datagrams to it with ICMP port
    /// unreachable, as after a `kill -9` ([`crate::world::World::set_hosts_survive_crashes`]). Default
    /// false: the host goes with it and only silence follows.
    pub hosts_survive_crashes: bool,
    /// Restarted nodes retry their seeds all their lives while they know no live member, as
    /// the runtime does ([`crate::world::World::set_join_retry`]). Default false.
    pub join_retry: bool,
    /// Ledgers and coordination sessions, carried and checked ([`sessions`]); `None`: none.
    pub sessions: Option<SessionWorkload>,
    /// Draws the schedule from each run's seed (the `chaos` scenario): a run with seed `s` runs
    /// `draw(self, s)`. `None`: the schedule is fixed and the seed varies only the world.
    pub draw: Option<Draw>,
}

/// Makes the scenario a run with this seed runs out of a template (see [`Scenario::draw`]).
pub type Draw = fn(&Scenario, u64) -> Scenario;

impl std::fmt::Debug for Scenario {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scenario")
            .field("name", &self.name)
            .field("nodes", &self.nodes)
            .field("duration", &self.duration)
            .field("replication", &self.replication)
            .field("storage", &self.storage)
            .field("schedule", &self.schedule)
            .field("bounds", &self.bounds)
            .field("extra", &self.extra.len())
            .field("sessions", &self.sessions)
            .finish()
    }
}

impl Scenario {
    /// An empty scenario: 16 nodes with development timers on a LAN for 30 s.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            description: String::new(),
            nodes: 16,
            duration: Duration::from_secs(30),
            membership: MembershipConfig::development(),
            replication: None,
            storage: None,
            network: LinkModel::lan(),
            groups: BTreeMap::new(),
            schedule: Vec::new(),
            bounds: Bounds::default(),
            extra: Vec::new(),
            replay_source: format!("--scenario {name}"),
            traffic_from: Duration::ZERO,
            cache: None,
            hosts_survive_crashes: false,
            join_retry: false,
            sessions: None,
            draw: None,
        }
    }

    /// The scenario the run with `seed` runs: this one, or what its draw makes of it.
    pub fn for_seed(&self, seed: u64) -> Cow<'_, Scenario> {
        match self.draw {
            Some(draw) => Cow::Owned(draw(self, seed)),
            None => Cow::Borrowed(self),
        }
    }

    /// Says what it exercises.
    pub fn describe(mut self, text: &str) -> Self {
        self.description = text.to_owned();
        self
    }

    /// Sets the cluster size.
    pub fn nodes(mut self, n: usize) -> Self {
        self.nodes = n;
        self
    }

    /// Sets how long the run lasts.
    pub fn duration(mut self, d: Duration) -> Self {
        self.duration = d;
        self
    }

    /// Sets every core's membership settings.
    pub fn membership(mut self, config: MembershipConfig) -> Self {
        self.membership = config;
        self
    }

    /// Sets every core's replication settings.
    pub fn replication(mut self, config: ReplicationConfig) -> Self {
        self.replication = Some(config);
        self
    }

    /// Gives every node a simulated disk (see [`crate::storage`]).
    pub fn storage(mut self, config: StorageConfig) -> Self {
        self.storage = Some(config);
        self
    }

    /// Whether the scenario writes to replicated keyspaces (then the replication invariants
    /// run, and the report has a replication section).
    pub fn has_writes(&self) -> bool {
        self.schedule.iter().any(|s| s.fault.writes())
    }

    /// Sets how links behave at the start.
    pub fn network(mut self, model: LinkModel) -> Self {
        self.network = model;
        self
    }

    /// Reports traffic from `from` on (to measure a steady state without the join).
    pub fn traffic_from(mut self, from: Duration) -> Self {
        self.traffic_from = from;
        self
    }

    /// Names a group of nodes.
    pub fn group(mut self, name: &str, nodes: Nodes) -> Self {
        self.groups.insert(name.to_owned(), nodes);
        self
    }

    /// Applies `fault` at `at`.
    pub fn at(mut self, at: Duration, fault: Fault) -> Self {
        self.schedule.push(Scheduled {
            at,
            fault,
            line: None,
        });
        self
    }

    /// Turns on or tunes a check.
    pub fn check(mut self, check: Check) -> Self {
        match check {
            Check::ConvergesWithin(d) => self.bounds.convergence = d,
            Check::DetectsWithin(d) => self.bounds.detection = d,
            Check::NoFalsePositives(on) => self.bounds.false_positives = on,
            Check::StallsSurvived(on) => self.bounds.stalls_survived = on,
            Check::CoreInvariants(on) => self.bounds.core_invariants = on,
            Check::ReplicasConvergeWithin(d) => self.bounds.replication = d,
        }
        self
    }

    /// Adds an invariant; `make` builds a fresh one for every run.
    pub fn invariant(
        mut self,
        make: impl Fn() -> Box<dyn Invariant> + Send + Sync + 'static,
    ) -> Self {
        self.extra.push(std::sync::Arc::new(make));
        self
    }

    /// Checks that every node selection fits the cluster and every setting is sane; the error
    /// names the scenario file line when there is one.
    pub fn validate(&self) -> Result<(), String> {
        if self.nodes == 0 {
            return Err("a scenario needs at least one node".into());
        }
        self.membership.validate().map_err(|e| e.to_string())?;
        if let Some(r) = &self.replication {
            validate_replication(r)?;
        }
        if let Some(s) = &self.storage {
            s.validate()?;
        }
        self.network.validate()?;
        for entry in &self.schedule {
            let at = |e: String| match entry.line {
                Some(line) => format!("line {line}: {e}"),
                None => format!("at {:?}: {e}", entry.at),
            };
            validate_fault(&entry.fault, self.nodes, &self.groups).map_err(at)?;
            if matches!(entry.fault, Fault::DiskFull(..)) && self.storage.is_none() {
                return Err(at("disk_full needs storage (a [storage] table)".into()));
            }
        }
        match &self.sessions {
            Some(sessions) => sessions.validate(self),
            None => Ok(()),
        }
    }
}

/// Checks replication settings a scenario may set.
pub(crate) fn validate_replication(r: &ReplicationConfig) -> Result<(), String> {
    // The engine's own rules, so a scenario cannot run settings a node would refuse.
    r.validate().map_err(|e| e.to_string())
}

fn validate_fault(fault: &Fault, n: usize, groups: &BTreeMap<String, Nodes>) -> Result<(), String> {
    let selections: Vec<&Nodes> = match fault {
        Fault::Partition(a, b) | Fault::PartitionOneWay(a, b) | Fault::Link(a, b, _) => vec![a, b],
        Fault::Stall(a, _) | Fault::Crash(a) | Fault::Stop(a) | Fault::Restart(a, _) => vec![a],
        Fault::ForgedPortClosed(a) => vec![a],
        Fault::DiskFull(a, _) => vec![a],
        Fault::ClockSkew { nodes, .. } => vec![nodes],
        Fault::Join(a, via) if *via >= n => {
            return Err(format!("join via node {via}, but the cluster has {n} {a}"))
        }
        Fault::Join(a, _) => vec![a],
        Fault::Write(w) | Fault::Delete(w) => {
            w.validate()?;
            vec![&w.nodes]
        }
        Fault::Workload(w) => {
            w.validate()?;
            vec![&w.nodes]
        }
        Fault::Calls(calls) => {
            calls.validate()?;
            vec![&calls.nodes]
        }
        Fault::Publish(publishes) => {
            publishes.validate()?;
            vec![&publishes.nodes]
        }
        Fault::Agents(group) => {
            group.validate()?;
            vec![&group.nodes]
        }
        Fault::AgentMessages(messages) => {
            messages.validate()?;
            vec![&messages.nodes]
        }
        Fault::Subscribe { nodes, pattern } => {
            foundation_core::services::topic::Pattern::parse(pattern)
                .map_err(|e| format!("pattern {pattern:?}: {e}"))?;
            vec![nodes]
        }
        Fault::Register {
            nodes, instances, ..
        } if *instances == 0 => {
            return Err(format!("register on {nodes} needs at least one instance"))
        }
        Fault::Register { nodes, service, .. } | Fault::Deregister { nodes, service } => {
            check_service_name(service).map_err(|e| e.to_string())?;
            vec![nodes]
        }
        Fault::Heal | Fault::Network(_) => vec![],
    };
    for nodes in selections {
        nodes.resolve(n, groups)?;
    }
    match fault {
        Fault::Network(m) | Fault::Link(_, _, m) => m.validate(),
        _ => Ok(()),
    }
}
