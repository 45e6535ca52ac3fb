//! The scenario file format (TOML). Every error names the line and the problem. A file with
//! `[[cluster]]` tables describes several federated clusters instead ([`parse_any`],
//! [`crate::federation::file`]).
//!
//! ```toml
//! name = "my-partition"
//! nodes = 50                  # --nodes overrides it
//! duration = "60s"
//! profile = "development"     # or "production": membership timers
//! hosts_survive_crashes = false # true: a crash kills the process only, and its host answers
//!                             # datagrams to it with ICMP port unreachable (as after kill -9)
//!
//! [network]                   # optional; defaults to a quiet LAN
//! latency = "1ms"
//! jitter = "500us"
//! loss = 0.01
//! duplicate = 0.0
//! reorder = 0.0
//! reorder_delay = "20ms"
//!
//! [groups]                    # node selections: "all", 3, [1, 2], "0..10", "0%..40%", a group name
//! minority = "60%..100%"
//! majority = "0%..60%"
//!
//! [[at]]
//! time = "10s"
//! partition = ["minority", "majority"]   # or partition_one_way = [from, to]
//!
//! [[at]]
//! time = "25s"
//! heal = true
//!
//! [[at]]
//! time = "30s"
//! stall = 3                   # with: for = "2s"
//! for = "2s"
//!
//! [[at]]
//! time = "35s"
//! register = "all"            # each node's application registers service instances
//! service = "billing"         # a service name: A-Z a-z 0-9 . _ -
//! instances = 2               # how many each node adds; default 1
//!
//! [[at]]
//! time = "50s"
//! deregister = [1, 2]         # removes every instance of the service on these nodes
//! service = "billing"
//!
//! # other actions: crash = sel · forge_port_closed = sel (every other node is told these
//! # nodes' membership ports are closed, as forged ICMP errors would) · stop = sel · restart = sel (identity = "same" | "new")
//! # disk_full = sel (for = "2s"; needs [storage]: the disks refuse every write meanwhile)
//! # skew = sel (offset = "250ms" or "-250ms", drift_ppm = 100) · network = { ...as above... }
//! # join = sel (via = 0)
//! # A scenario that registers anything is also checked by the `registry-consistent`
//! # invariant (see `invariants::registry`).
//!
//! [[at]]                      # seeded RPC calls from random running nodes of the selection
//! time = "5s"
//! calls = "all"
//! service = "billing"
//! rate = 100.0                # calls per second, the whole selection together
//! for = "30s"
//! deadline = "500ms"          # optional, default 500ms
//! idempotent = 0.5            # optional share of idempotent calls (default 0.5)
//! # checked by `rpc-calls` (see `invariants::rpc`); services named `slow…` answer in 20–700 ms
//!
//! [[at]]                      # each node's application subscribes (now, and at every start)
//! time = "3s"
//! subscribe = "all"
//! pattern = "orders.*.created"
//!
//! [[at]]                      # seeded publications from random running nodes
//! time = "5s"
//! publish = "all"
//! topics = ["orders.eu.created", "audit"]
//! rate = 100.0
//! for = "30s"
//! reliable = 0.5              # optional share of reliable publications (default 0.5)
//! # checked by `pubsub-delivery` (see `invariants::pubsub`)
//!
//! [[at]]                      # each node's application spawns a supervised group of agents
//! time = "3s"                 # (now, and again at every start); its agents are <agent>-<slot>-<i>
//! agents = "all"
//! agent = "worker"            # the group's name: A-Z a-z 0-9 . _ -
//! count = 3                   # optional, agents per node (default 1, at most 32)
//! capability = "worker"       # optional, default the group's name
//! strategy = "one_for_all"    # optional, default "one_for_one"
//! max_restarts = 3            # optional: more restarts than this within `period` and the
//! period = "5s"               #   supervisor gives up (defaults 3 and 5s)
//! backoff = "10ms"            # optional first restart delay (doubles up to backoff_max, 5s)
//! failure = 0.01              # optional share of handled messages that make an agent panic
//! crash_every = "2s"          # optional: each instance also fails after a seeded lifetime
//!
//! [[at]]                      # seeded sends and requests to random agents from random nodes
//! time = "5s"
//! agent_messages = "all"
//! rate = 100.0
//! for = "30s"
//! deadline = "500ms"          # optional, default 500ms
//! requests = 0.7              # optional share of requests (the rest are sends; default 0.7)
//! # agents are checked by `agents-vanish`, `agent-requests` and `supervisor-intensity`
//! # (see `invariants::agents`)
//!
//! [[at]]                      # each selected node sets every key of the range
//! time = "12s"
//! write = "minority"
//! keys = "0..20"              # or a count: keys = 20 means k0..k19
//! keyspace = "kv"             # optional, default "kv"
//! acked = true                # optional: ask every live member to acknowledge
//!
//! [[at]]                      # each selected node deletes every key of the range
//! time = "14s"
//! delete = 0
//! keys = 5
//!
//! [[at]]                      # seeded random writes on random running nodes of the selection
//! time = "5s"
//! workload = "all"
//! rate = 50.0                 # writes per second, the whole selection together
//! keys = 200                  # key space k0..k199
//! for = "20s"
//! deletes = 0.1               # optional share of deletes
//! acked = 0.2                 # optional share of acknowledged writes
//! value_size = 64             # optional bytes per value (default 16)
//!
//! [replication]               # optional; engine defaults otherwise
//! anti_entropy_interval = "1s"
//! fanout = 3
//! op_log_max = 1024
//! tombstone_ttl = "15m"
//! departed_after = "15m"
//! bulk_threshold = 65536
//!
//! [storage]                   # optional: each node keeps its keyspaces on a simulated disk
//! enabled = true              # optional, default true; false is the same as no table
//! sync_latency = "2ms"        # mean time from a write to its sync (jittered ±50 %)
//! crash_keeps_unsynced = 0.5  # optional: chance a crash keeps a prefix of unsynced writes
//! crash_tears = 0.5           # optional: chance a crash leaves the first lost write torn
//!
//! [cache]                     # optional: a partitioned cache on every node, called from `start`
//! start = "2s"                # on: get_or_compute, put and get on skewed keys from random live
//! keys = 8                    # nodes, checked by `cache-single-flight` and `cache-near-fresh`
//! ttl = "700ms"               # (see `crate::cache`)
//! quorum = false              # optional: the cache's quorum rule, checked by `cache-one-compute`
//!
//! [[ledger]]                  # a ledger for coordination sessions' outcomes, declared at
//! name = "gpu"                # `time` on node `on` (default 0); kind "auction" (holder,
//! kind = "auction"            # price, budget) or "vote" (elected, with candidates = [...])
//! budget = 3000
//! time = "3s"
//!
//! [[session]]                 # count coordination sessions, every apart, ids from id up,
//! time = "5s"                 # callers drawn from the selection; between the agents of the
//! id = 100                    # capability (an `agents` entry gives it); mechanism
//! count = 20                  # "sealed_bid", "vote" or "tatonnement" with its parameters,
//! every = "750ms"             # placed by rendezvous for a share: see `scenario::sessions`
//! caller = "all"
//! mechanism = "sealed_bid"
//! capability = "bidder"
//! commit = "gpu"
//! placed = 0.5
//!
//! [checks]
//! convergence = "30s"         # every live node agrees within this after each disturbance
//! detection = "10s"           # every survivor sees a crash within this
//! false_positives = true      # whether a false positive fails the run
//! stalls_survived = true      # whether declaring a stalled node fails the run (stalls all
//!                             # shorter than the profile tolerates)
//! replication = "30s"         # replicas hold the same data within this (scenarios that write)
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use foundation_core::agents::supervisor::Strategy;
use foundation_core::membership::MembershipConfig;
use foundation_core::replication::ReplicationConfig;
use foundation_core::services::record::check_service_name;
use serde::Deserialize;
use toml::Spanned;

use super::file_sessions::{self, RawLedger, RawSession};
use super::sessions::SessionWorkload;
use super::{Check, Scenario, Scheduled};
use crate::agents::{AgentGroup, AgentMessages};
use crate::cache::CacheWorkload;
use crate::faults::{Fault, Identity, Nodes};
use crate::network::LinkModel;
use crate::pubsub::Publishes;
use crate::rpc::Calls;
use crate::storage::StorageConfig;
use crate::writes::{Workload, Writes, DEFAULT_KEYSPACE};

/// A disk's sync latency when the `[storage]` table names none.
const SYNC_LATENCY: Duration = Duration::from_millis(2);

/// A scenario file that could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {problem}")]
pub struct ScenarioError {
    /// 1-based line.
    pub line: usize,
    /// What is wrong.
    pub problem: String,
}

/// A whole file, or (built by `crate::federation::file`) one cluster of a federation file.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawScenario {
    pub(crate) name: Option<String>,
    pub(crate) nodes: Option<Spanned<usize>>,
    duration: Option<Spanned<String>>,
    pub(crate) profile: Option<Spanned<String>>,
    pub(crate) network: Option<Spanned<RawLink>>,
    pub(crate) hosts_survive_crashes: Option<bool>,
    #[serde(default)]
    pub(crate) groups: BTreeMap<String, Spanned<RawNodes>>,
    #[serde(default)]
    pub(crate) at: Vec<Spanned<RawAt>>,
    pub(crate) checks: Option<Spanned<RawChecks>>,
    replication: Option<Spanned<RawReplication>>,
    storage: Option<Spanned<RawStorage>>,
    cache: Option<Spanned<RawCache>>,
    #[serde(default)]
    ledger: Vec<Spanned<RawLedger>>,
    #[serde(default)]
    session: Vec<Spanned<RawSession>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCache {
    start: Option<String>,
    keys: Option<u64>,
    ttl: Option<String>,
    quorum: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStorage {
    enabled: Option<bool>,
    sync_latency: Option<String>,
    crash_keeps_unsynced: Option<f64>,
    crash_tears: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReplication {
    anti_entropy_interval: Option<String>,
    fanout: Option<usize>,
    op_log_max: Option<usize>,
    tombstone_ttl: Option<String>,
    departed_after: Option<String>,
    bulk_threshold: Option<usize>,
}

/// `keys = 20` (k0..k19) or `keys = "20..40"`.
#[derive(Deserialize, Clone)]
#[serde(untagged)]
enum RawKeys {
    Count(usize),
    Range(String),
}

/// `acked = true` on a write, `acked = 0.2` (a share) on a workload; `placed` on a session.
#[derive(Deserialize, Clone, Copy)]
#[serde(untagged)]
pub(crate) enum RawShare {
    Flag(bool),
    Share(f64),
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLink {
    latency: Option<String>,
    jitter: Option<String>,
    loss: Option<f64>,
    duplicate: Option<f64>,
    reorder: Option<f64>,
    reorder_delay: Option<String>,
}

#[derive(Deserialize, Clone)]
#[serde(untagged)]
pub(crate) enum RawNodes {
    One(usize),
    List(Vec<usize>),
    Text(String),
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAt {
    time: String,
    partition: Option<Vec<RawNodes>>,
    partition_one_way: Option<Vec<RawNodes>>,
    heal: Option<bool>,
    stall: Option<RawNodes>,
    #[serde(rename = "for")]
    stall_for: Option<String>,
    crash: Option<RawNodes>,
    forge_port_closed: Option<RawNodes>,
    stop: Option<RawNodes>,
    restart: Option<RawNodes>,
    identity: Option<String>,
    disk_full: Option<RawNodes>,
    skew: Option<RawNodes>,
    offset: Option<String>,
    drift_ppm: Option<i64>,
    network: Option<RawLink>,
    join: Option<RawNodes>,
    via: Option<usize>,
    write: Option<RawNodes>,
    delete: Option<RawNodes>,
    workload: Option<RawNodes>,
    keyspace: Option<String>,
    keys: Option<RawKeys>,
    acked: Option<RawShare>,
    rate: Option<f64>,
    deletes: Option<f64>,
    value_size: Option<usize>,
    register: Option<RawNodes>,
    deregister: Option<RawNodes>,
    service: Option<String>,
    instances: Option<u64>,
    calls: Option<RawNodes>,
    deadline: Option<String>,
    idempotent: Option<f64>,
    subscribe: Option<RawNodes>,
    pattern: Option<String>,
    publish: Option<RawNodes>,
    topics: Option<Vec<String>>,
    reliable: Option<f64>,
    agents: Option<RawNodes>,
    agent: Option<String>,
    count: Option<usize>,
    capability: Option<String>,
    strategy: Option<String>,
    max_restarts: Option<u32>,
    period: Option<String>,
    backoff: Option<String>,
    backoff_max: Option<String>,
    failure: Option<f64>,
    crash_every: Option<String>,
    agent_messages: Option<RawNodes>,
    requests: Option<f64>,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawChecks {
    convergence: Option<String>,
    detection: Option<String>,
    false_positives: Option<bool>,
    stalls_survived: Option<bool>,
    replication: Option<String>,
}

/// Parses a scenario file. `source` names it in the replay command (`--file <source>`).
pub fn parse(text: &str, source: &str) -> Result<Scenario, ScenarioError> {
    let raw: RawScenario = toml::from_str(text).map_err(|e| toml_error(text, &e))?;
    build(&raw, text, source)
}

/// A one-cluster file, or a federation file (one with `[[cluster]]` tables).
#[derive(Debug)]
pub enum ScenarioFile {
    /// One cluster.
    Cluster(Box<Scenario>),
    /// Several federated clusters ([`crate::federation::file`]).
    Federation(Box<crate::federation::FederationScenario>),
}

impl ScenarioFile {
    /// The scenario's own checks of what it asks for.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            ScenarioFile::Cluster(s) => s.validate(),
            ScenarioFile::Federation(f) => f.validate(),
        }
    }
}

/// Parses either kind of scenario file.
pub fn parse_any(text: &str, source: &str) -> Result<ScenarioFile, ScenarioError> {
    let table: toml::Table = toml::from_str(text).map_err(|e| toml_error(text, &e))?;
    match table.contains_key("cluster") {
        true => crate::federation::file::parse(text, source)
            .map(|f| ScenarioFile::Federation(Box::new(f))),
        false => parse(text, source).map(|s| ScenarioFile::Cluster(Box::new(s))),
    }
}

/// The 1-based line of a byte offset.
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// A TOML error, placed on its line.
pub(crate) fn toml_error(text: &str, e: &toml::de::Error) -> ScenarioError {
    ScenarioError {
        line: e.span().map_or(1, |span| line_of(text, span.start)),
        problem: e.message().trim().to_string(),
    }
}

/// The scenario `raw` describes (`text` is the file it was read from, for line numbers).
pub(crate) fn build(
    raw: &RawScenario,
    text: &str,
    source: &str,
) -> Result<Scenario, ScenarioError> {
    let line_of = |offset: usize| line_of(text, offset);
    let at = |span: std::ops::Range<usize>| {
        move |problem: String| ScenarioError {
            line: line_of(span.start),
            problem,
        }
    };
    let mut scenario = Scenario::new(raw.name.as_deref().unwrap_or("file"));
    scenario.replay_source = format!("--file {source}");
    if let Some(nodes) = &raw.nodes {
        scenario.nodes = *nodes.get_ref();
    }
    if let Some(d) = &raw.duration {
        scenario.duration = duration(d.get_ref()).map_err(at(d.span()))?;
    }
    if let Some(p) = &raw.profile {
        scenario.membership = profile(p.get_ref()).map_err(at(p.span()))?;
    }
    if let Some(n) = &raw.network {
        scenario.network = link(n.get_ref(), LinkModel::lan()).map_err(at(n.span()))?;
    }
    scenario.hosts_survive_crashes = raw.hosts_survive_crashes.unwrap_or(false);
    if let Some(r) = &raw.replication {
        scenario.replication = Some(replication(r.get_ref()).map_err(at(r.span()))?);
    }
    if let Some(s) = &raw.storage {
        scenario.storage = storage(s.get_ref()).map_err(at(s.span()))?;
    }
    if let Some(c) = &raw.cache {
        scenario.cache = Some(cache(c.get_ref()).map_err(at(c.span()))?);
    }
    for (name, nodes) in &raw.groups {
        let parsed = selection(nodes.get_ref()).map_err(at(nodes.span()))?;
        scenario.groups.insert(name.clone(), parsed);
    }
    for entry in &raw.at {
        let line = line_of(entry.span().start);
        let (time, fault) = action(entry.get_ref()).map_err(at(entry.span()))?;
        scenario.schedule.push(Scheduled {
            at: time,
            fault,
            line: Some(line),
        });
    }
    if let Some(c) = &raw.checks {
        scenario = checks(scenario, c.get_ref()).map_err(at(c.span()))?;
    }
    scenario.sessions = sessions(raw, text)?;
    scenario
        .validate()
        .map_err(|problem| split_line(&problem))?;
    Ok(scenario)
}

/// The `[[ledger]]` and `[[session]]` tables, if there are any.
fn sessions(raw: &RawScenario, text: &str) -> Result<Option<SessionWorkload>, ScenarioError> {
    let mut workload = SessionWorkload::default();
    let placed = |span: std::ops::Range<usize>| {
        let line = line_of(text, span.start);
        (line, move |problem| ScenarioError { line, problem })
    };
    for entry in &raw.ledger {
        let (line, at) = placed(entry.span());
        let ledger = file_sessions::ledger(entry.get_ref(), line).map_err(at)?;
        workload.ledgers.push(ledger);
    }
    for entry in &raw.session {
        let (line, at) = placed(entry.span());
        let session = file_sessions::session(entry.get_ref(), line).map_err(at)?;
        workload.sessions.push(session);
    }
    Ok((!workload.is_empty()).then_some(workload))
}

/// `validate` puts "line N: " in front of problems it can place; keep the number.
pub(crate) fn split_line(problem: &str) -> ScenarioError {
    let placed = problem
        .strip_prefix("line ")
        .and_then(|rest| rest.split_once(": "));
    match placed.and_then(|(n, p)| Some((n.parse().ok()?, p))) {
        Some((line, p)) => ScenarioError {
            line,
            problem: p.to_string(),
        },
        None => ScenarioError {
            line: 1,
            problem: problem.to_string(),
        },
    }
}

fn action(raw: &RawAt) -> Result<(Duration, Fault), String> {
    let time = duration(&raw.time)?;
    let mut found: Vec<(&str, Fault)> = Vec::new();
    if let Some(pair) = &raw.partition {
        let (a, b) = two(pair, "partition")?;
        found.push(("partition", Fault::Partition(a, b)));
    }
    if let Some(pair) = &raw.partition_one_way {
        let (a, b) = two(pair, "partition_one_way")?;
        found.push(("partition_one_way", Fault::PartitionOneWay(a, b)));
    }
    if raw.heal == Some(true) {
        found.push(("heal", Fault::Heal));
    }
    if let Some(n) = &raw.stall {
        let d = raw
            .stall_for
            .as_deref()
            .ok_or("stall needs `for = \"<duration>\"`")?;
        found.push(("stall", Fault::Stall(selection(n)?, duration(d)?)));
    }
    if let Some(n) = &raw.crash {
        found.push(("crash", Fault::Crash(selection(n)?)));
    }
    if let Some(n) = &raw.forge_port_closed {
        found.push(("forge_port_closed", Fault::ForgedPortClosed(selection(n)?)));
    }
    if let Some(n) = &raw.stop {
        found.push(("stop", Fault::Stop(selection(n)?)));
    }
    if let Some(n) = &raw.restart {
        found.push((
            "restart",
            Fault::Restart(selection(n)?, identity(raw.identity.as_deref())?),
        ));
    }
    if let Some(n) = &raw.disk_full {
        let d = raw
            .stall_for
            .as_deref()
            .ok_or("disk_full needs `for = \"<duration>\"`")?;
        found.push(("disk_full", Fault::DiskFull(selection(n)?, duration(d)?)));
    }
    if let Some(n) = &raw.skew {
        let offset_us = raw.offset.as_deref().map_or(Ok(0), signed_micros)?;
        let drift_ppm = raw.drift_ppm.unwrap_or(0);
        found.push((
            "skew",
            Fault::ClockSkew {
                nodes: selection(n)?,
                offset_us,
                drift_ppm,
            },
        ));
    }
    if let Some(l) = &raw.network {
        found.push(("network", Fault::Network(link(l, LinkModel::lan())?)));
    }
    if let Some(n) = &raw.join {
        found.push(("join", Fault::Join(selection(n)?, raw.via.unwrap_or(0))));
    }
    if let Some(n) = &raw.write {
        found.push(("write", Fault::Write(writes(raw, n, "write")?)));
    }
    if let Some(n) = &raw.delete {
        found.push(("delete", Fault::Delete(writes(raw, n, "delete")?)));
    }
    if let Some(n) = &raw.workload {
        found.push(("workload", Fault::Workload(workload(raw, n)?)));
    }
    registry_actions(raw, &mut found)?;
    services_actions(raw, &mut found)?;
    agents_actions(raw, &mut found)?;
    let writing = found.iter().any(|(_, f)| f.writes());
    if !writing && (raw.keys.is_some() || raw.keyspace.is_some() || raw.acked.is_some()) {
        return Err("keys, keyspace and acked belong to a write, delete or workload".into());
    }
    let working = found.iter().any(|(_, f)| matches!(f, Fault::Workload(_)));
    if !working && (raw.deletes.is_some() || raw.value_size.is_some()) {
        return Err("deletes and value_size belong to a workload".into());
    }
    let streaming = found.iter().any(|(_, f)| {
        matches!(
            f,
            Fault::Workload(_) | Fault::Calls(_) | Fault::Publish(_) | Fault::AgentMessages(_)
        )
    });
    if !streaming && raw.rate.is_some() {
        return Err("rate belongs to a workload, calls, publish or agent_messages".into());
    }
    match found.len() {
        1 => Ok((time, found.remove(0).1)),
        0 => Err("[[at]] entry has no action (partition, partition_one_way, heal, stall, crash, forge_port_closed, stop, restart, disk_full, skew, network, join, register, deregister, write, delete, workload, calls, subscribe, publish, agents, agent_messages)".into()),
        _ => {
            let names: Vec<&str> = found.iter().map(|(n, _)| *n).collect();
            Err(format!("[[at]] entry has {} actions ({}); give each its own [[at]]", names.len(), names.join(", ")))
        }
    }
}

/// `calls`, `subscribe` and `publish` entries.
fn services_actions(raw: &RawAt, found: &mut Vec<(&str, Fault)>) -> Result<(), String> {
    let rate = |what: &str| {
        raw.rate
            .ok_or_else(|| format!("{what} needs `rate = <per second>`"))
    };
    let lasting = |what: &str| -> Result<Duration, String> {
        let d = raw
            .stall_for
            .as_deref()
            .ok_or_else(|| format!("{what} needs `for = \"<duration>\"`"))?;
        duration(d)
    };
    if let Some(n) = &raw.calls {
        let service = raw
            .service
            .as_deref()
            .ok_or("calls needs `service = \"<name>\"`")?;
        let mut calls = Calls::new(selection(n)?, service, rate("calls")?, lasting("calls")?);
        if let Some(d) = &raw.deadline {
            calls = calls.deadline(duration(d)?);
        }
        if let Some(share) = raw.idempotent {
            calls.idempotent = share;
        }
        calls.validate()?;
        found.push(("calls", Fault::Calls(calls)));
    } else if raw.idempotent.is_some() {
        return Err("idempotent belongs to calls".into());
    } else if raw.deadline.is_some() && raw.agent_messages.is_none() {
        return Err("deadline belongs to calls or agent_messages".into());
    }
    if let Some(n) = &raw.subscribe {
        let pattern = raw
            .pattern
            .clone()
            .ok_or("subscribe needs `pattern = \"<topic pattern>\"`")?;
        let nodes = selection(n)?;
        found.push(("subscribe", Fault::Subscribe { nodes, pattern }));
    }
    if let Some(n) = &raw.publish {
        let topics = raw
            .topics
            .clone()
            .ok_or("publish needs `topics = [\"<topic>\", …]`")?;
        let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
        let mut publishes = Publishes::new(
            selection(n)?,
            &topics,
            rate("publish")?,
            lasting("publish")?,
        );
        if let Some(share) = raw.reliable {
            publishes.reliable = share;
        }
        publishes.validate()?;
        found.push(("publish", Fault::Publish(publishes)));
    } else if raw.topics.is_some() || raw.reliable.is_some() {
        return Err("topics and reliable belong to publish".into());
    }
    Ok(())
}

/// `agents` and `agent_messages` entries.
fn agents_actions(raw: &RawAt, found: &mut Vec<(&str, Fault)>) -> Result<(), String> {
    let group_fields = raw.agent.is_some()
        || raw.count.is_some()
        || raw.capability.is_some()
        || raw.strategy.is_some()
        || raw.max_restarts.is_some()
        || raw.period.is_some()
        || raw.backoff.is_some()
        || raw.backoff_max.is_some()
        || raw.failure.is_some()
        || raw.crash_every.is_some();
    if let Some(n) = &raw.agents {
        found.push(("agents", Fault::Agents(agent_group(raw, n)?)));
    } else if group_fields {
        return Err("agent, count, capability, strategy, max_restarts, period, backoff, backoff_max, failure and crash_every belong to agents".into());
    }
    if let Some(n) = &raw.agent_messages {
        let rate = raw
            .rate
            .ok_or("agent_messages needs `rate = <per second>`")?;
        let lasting = raw
            .stall_for
            .as_deref()
            .ok_or("agent_messages needs `for = \"<duration>\"`")?;
        let mut messages = AgentMessages::new(selection(n)?, rate, duration(lasting)?);
        if let Some(d) = &raw.deadline {
            messages.deadline = duration(d)?;
        }
        if let Some(share) = raw.requests {
            messages.requests = share;
        }
        messages.validate()?;
        found.push(("agent_messages", Fault::AgentMessages(messages)));
    } else if raw.requests.is_some() {
        return Err("requests belongs to agent_messages".into());
    }
    Ok(())
}

fn agent_group(raw: &RawAt, nodes: &RawNodes) -> Result<AgentGroup, String> {
    let name = raw
        .agent
        .as_deref()
        .ok_or("agents needs `agent = \"<group name>\"`")?;
    let mut group = AgentGroup::new(selection(nodes)?, name, raw.count.unwrap_or(1));
    if let Some(capability) = &raw.capability {
        group.capability = capability.clone();
    }
    let c = &mut group.supervisor;
    c.strategy = match raw.strategy.as_deref() {
        None | Some("one_for_one") => Strategy::OneForOne,
        Some("one_for_all") => Strategy::OneForAll,
        Some(other) => {
            return Err(format!(
                "strategy {other:?} is not one_for_one or one_for_all"
            ))
        }
    };
    if let Some(max) = raw.max_restarts {
        c.max_restarts = max;
    }
    let ms = |d: &str| duration(d).map(|d| d.as_millis() as u64);
    if let Some(d) = &raw.period {
        c.period_ms = ms(d)?;
    }
    if let Some(d) = &raw.backoff {
        c.backoff_initial_ms = ms(d)?;
    }
    if let Some(d) = &raw.backoff_max {
        c.backoff_max_ms = ms(d)?;
    }
    if let Some(share) = raw.failure {
        group.failure = share;
    }
    if let Some(d) = &raw.crash_every {
        group.crash_every = Some(duration(d)?);
    }
    group.validate()?;
    Ok(group)
}

/// A `write` or `delete` entry: its keys, keyspace and whether it is acknowledged.
fn writes(raw: &RawAt, nodes: &RawNodes, what: &str) -> Result<Writes, String> {
    let keys = match &raw.keys {
        None => {
            return Err(format!(
                "{what} needs `keys = <count>` or `keys = \"<first>..<end>\"`"
            ))
        }
        Some(RawKeys::Count(n)) => 0..*n,
        Some(RawKeys::Range(text)) => key_range(text)?,
    };
    let acked = match raw.acked {
        None | Some(RawShare::Flag(false)) => false,
        Some(RawShare::Flag(true)) => true,
        Some(RawShare::Share(share)) => {
            return Err(format!(
                "acked on a {what} is true or false, not {share} (a share is for a workload)"
            ))
        }
    };
    if raw.stall_for.is_some() {
        return Err(format!(
            "a {what} happens at once: `for` is for a workload or a stall"
        ));
    }
    let w = Writes {
        nodes: selection(nodes)?,
        keyspace: raw
            .keyspace
            .clone()
            .unwrap_or_else(|| DEFAULT_KEYSPACE.into()),
        keys,
        acked,
    };
    w.validate()?;
    Ok(w)
}

fn key_range(text: &str) -> Result<std::ops::Range<usize>, String> {
    let bad = || format!("bad key range {text:?} (use a count, or \"20..40\")");
    let (a, b) = text.split_once("..").ok_or_else(bad)?;
    let parse = |s: &str| s.trim().parse::<usize>().map_err(|_| bad());
    Ok(parse(a)?..parse(b)?)
}

/// A `workload` entry.
fn workload(raw: &RawAt, nodes: &RawNodes) -> Result<Workload, String> {
    let rate = raw
        .rate
        .ok_or("workload needs `rate = <writes per second>`")?;
    let keys = match &raw.keys {
        Some(RawKeys::Count(n)) => *n,
        Some(RawKeys::Range(text)) => {
            return Err(format!(
                "a workload's keys is a count (the key space k0..k<count>), not {text:?}"
            ))
        }
        None => return Err("workload needs `keys = <count>` (its key space)".into()),
    };
    let d = raw
        .stall_for
        .as_deref()
        .ok_or("workload needs `for = \"<duration>\"`")?;
    let acked = match raw.acked {
        None => 0.0,
        Some(RawShare::Flag(flag)) => f64::from(u8::from(flag)),
        Some(RawShare::Share(share)) => share,
    };
    let mut w = Workload::new(selection(nodes)?, rate, keys, duration(d)?)
        .deletes(raw.deletes.unwrap_or(0.0))
        .acked(acked);
    if let Some(keyspace) = &raw.keyspace {
        w.keyspace = keyspace.clone();
    }
    if let Some(size) = raw.value_size {
        w.value_size = size;
    }
    w.validate()?;
    Ok(w)
}

fn replication(raw: &RawReplication) -> Result<ReplicationConfig, String> {
    let mut c = ReplicationConfig::default();
    let set = |text: &Option<String>, field: &mut std::time::Duration| -> Result<(), String> {
        if let Some(text) = text {
            *field = duration(text)?;
        }
        Ok(())
    };
    set(&raw.anti_entropy_interval, &mut c.anti_entropy_interval)?;
    set(&raw.tombstone_ttl, &mut c.tombstone_ttl)?;
    set(&raw.departed_after, &mut c.departed_after)?;
    c.fanout = raw.fanout.unwrap_or(c.fanout);
    c.op_log_max = raw.op_log_max.unwrap_or(c.op_log_max);
    c.bulk_threshold = raw.bulk_threshold.unwrap_or(c.bulk_threshold);
    super::validate_replication(&c)?;
    Ok(c)
}

/// The `[cache]` table.
fn cache(raw: &RawCache) -> Result<CacheWorkload, String> {
    let mut w = CacheWorkload::default();
    if let Some(start) = &raw.start {
        w.from = duration(start)?;
    }
    if let Some(keys) = raw.keys {
        if !(1..=1_000_000).contains(&keys) {
            return Err(format!("[cache] keys = {keys}: expected 1 to 1000000"));
        }
        w.keys = keys;
    }
    if let Some(ttl) = &raw.ttl {
        w.ttl = duration(ttl)?;
        if w.ttl.is_zero() {
            return Err("[cache] ttl must be longer than zero".into());
        }
    }
    w.quorum = raw.quorum.unwrap_or(false);
    Ok(w)
}

/// The `[storage]` table: `None` when it says `enabled = false`.
fn storage(raw: &RawStorage) -> Result<Option<StorageConfig>, String> {
    if raw.enabled == Some(false) {
        return Ok(None);
    }
    let latency = raw
        .sync_latency
        .as_deref()
        .map_or(Ok(SYNC_LATENCY), duration)?;
    let mut config = StorageConfig::new(latency);
    config.faults.crash_keeps_unsynced = raw.crash_keeps_unsynced.unwrap_or(0.0);
    config.faults.crash_tears = raw.crash_tears.unwrap_or(0.0);
    config.validate()?;
    Ok(Some(config))
}

/// `register` and `deregister`, with the `service` and `instances` that go with them.
fn registry_actions(raw: &RawAt, found: &mut Vec<(&str, Fault)>) -> Result<(), String> {
    let service = || -> Result<String, String> {
        let what = if raw.register.is_some() {
            "register"
        } else {
            "deregister"
        };
        let service = raw
            .service
            .as_deref()
            .ok_or_else(|| format!("{what} needs `service = \"<name>\"`"))?;
        check_service_name(service).map_err(|e| e.to_string())?;
        Ok(service.to_owned())
    };
    if let Some(n) = &raw.register {
        let instances = raw.instances.unwrap_or(1);
        if instances == 0 {
            return Err("register needs at least one instance (`instances = 1` or more)".into());
        }
        found.push((
            "register",
            Fault::Register {
                nodes: selection(n)?,
                service: service()?,
                instances,
            },
        ));
    }
    if let Some(n) = &raw.deregister {
        if raw.instances.is_some() && raw.register.is_none() {
            return Err(
                "deregister removes every instance of the service: `instances` goes with register only"
                    .into(),
            );
        }
        found.push((
            "deregister",
            Fault::Deregister {
                nodes: selection(n)?,
                service: service()?,
            },
        ));
    }
    if raw.register.is_none() && raw.deregister.is_none() {
        if raw.service.is_some() && raw.calls.is_none() {
            return Err("`service` goes with register, deregister or calls".into());
        }
        if raw.instances.is_some() {
            return Err("`instances` goes with register".into());
        }
    }
    Ok(())
}

fn two(pair: &[RawNodes], what: &str) -> Result<(Nodes, Nodes), String> {
    match pair {
        [a, b] => Ok((selection(a)?, selection(b)?)),
        _ => Err(format!(
            "{what} needs exactly two groups, got {}",
            pair.len()
        )),
    }
}

fn identity(text: Option<&str>) -> Result<Identity, String> {
    match text.unwrap_or("same") {
        "same" => Ok(Identity::Same),
        "new" => Ok(Identity::New),
        other => Err(format!(
            "identity must be \"same\" or \"new\", got {other:?}"
        )),
    }
}

fn checks(scenario: Scenario, raw: &RawChecks) -> Result<Scenario, String> {
    let mut scenario = scenario;
    if let Some(d) = &raw.convergence {
        scenario = scenario.check(Check::ConvergesWithin(duration(d)?));
    }
    if let Some(d) = &raw.detection {
        scenario = scenario.check(Check::DetectsWithin(duration(d)?));
    }
    if let Some(on) = raw.false_positives {
        scenario = scenario.check(Check::NoFalsePositives(on));
    }
    if let Some(on) = raw.stalls_survived {
        scenario = scenario.check(Check::StallsSurvived(on));
    }
    if let Some(d) = &raw.replication {
        scenario = scenario.check(Check::ReplicasConvergeWithin(duration(d)?));
    }
    Ok(scenario)
}

fn profile(name: &str) -> Result<MembershipConfig, String> {
    match name {
        "development" => Ok(MembershipConfig::development()),
        "production" => Ok(MembershipConfig::production()),
        other => Err(format!(
            "profile must be \"development\" or \"production\", got {other:?}"
        )),
    }
}

fn link(raw: &RawLink, base: LinkModel) -> Result<LinkModel, String> {
    let or =
        |text: &Option<String>, default: Duration| text.as_deref().map_or(Ok(default), duration);
    let model = LinkModel {
        latency: or(&raw.latency, base.latency)?,
        jitter: or(&raw.jitter, base.jitter)?,
        loss: raw.loss.unwrap_or(base.loss),
        duplicate: raw.duplicate.unwrap_or(base.duplicate),
        reorder: raw.reorder.unwrap_or(base.reorder),
        reorder_delay: or(&raw.reorder_delay, base.reorder_delay)?,
    };
    model.validate()?;
    Ok(model)
}

/// A node selection: `3`, `[1, 2]`, `"all"`, `"n3"`, `"0..10"`, `"0%..40%"`, or a group name.
pub(crate) fn selection(raw: &RawNodes) -> Result<Nodes, String> {
    match raw {
        RawNodes::One(i) => Ok(Nodes::One(*i)),
        RawNodes::List(list) => Ok(Nodes::List(list.clone())),
        RawNodes::Text(text) => selection_text(text.trim()),
    }
}

fn selection_text(text: &str) -> Result<Nodes, String> {
    if text == "all" {
        return Ok(Nodes::All);
    }
    if let Some(Ok(i)) = text.strip_prefix('n').map(str::parse) {
        return Ok(Nodes::One(i));
    }
    let Some((from, to)) = text.split_once("..") else {
        return Ok(Nodes::Named(text.to_string()));
    };
    if let (Some(a), Some(b)) = (from.strip_suffix('%'), to.strip_suffix('%')) {
        let parse = |s: &str| {
            s.trim()
                .parse::<f64>()
                .map_err(|_| format!("bad percentage in {text:?}"))
        };
        return Ok(Nodes::Share {
            from: parse(a)? / 100.0,
            to: parse(b)? / 100.0,
        });
    }
    let parse = |s: &str| {
        s.trim()
            .parse::<usize>()
            .map_err(|_| format!("bad node range {text:?} (use 0..10 or 0%..40%)"))
    };
    Ok(Nodes::Range {
        start: parse(from)?,
        end: parse(to)?,
    })
}

/// A duration: `"250ms"`, `"2s"`, `"1.5s"`, `"1m"`, `"500us"`.
pub fn duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("bad duration {text:?} (use e.g. \"250ms\", \"2s\", \"1m\")"))?;
    let scale = match unit.trim() {
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        "m" | "min" => 60.0,
        other => {
            return Err(format!(
                "bad duration unit {other:?} in {text:?} (use us, ms, s or m)"
            ))
        }
    };
    let secs = value * scale;
    if !secs.is_finite() || secs > 1e9 {
        return Err(format!("duration {text:?} is too long"));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn signed_micros(text: &str) -> Result<i64, String> {
    let (sign, rest) = match text.trim().strip_prefix('-') {
        Some(rest) => (-1, rest),
        None => (1, text.trim().trim_start_matches('+')),
    };
    Ok(sign * duration(rest)?.as_micros() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::faults::secs;

    const GOOD: &str = r#"
name = "demo"
nodes = 8
duration = "20s"

[groups]
left = "0%..50%"
right = "50%..100%"

[[at]]
time = "5s"
partition = ["left", "right"]

[[at]]
time = "10s"
heal = true

[[at]]
time = "12s"
stall = "n3"
for = "1s"
"#;

    #[test]
    fn a_good_file_becomes_a_scenario() {
        let s = parse(GOOD, "demo.toml").unwrap();
        assert_eq!((s.name.as_str(), s.nodes, s.schedule.len()), ("demo", 8, 3));
        assert_eq!(
            s.schedule[2].fault,
            Fault::Stall(Nodes::One(3), Duration::from_secs(1))
        );
        // An entry's line is its `[[at]]` header.
        assert_eq!(s.schedule[1].line, Some(14));
    }

    #[test]
    fn errors_name_the_line_and_the_problem() {
        let bad_group = GOOD.replace("[\"left\", \"right\"]", "[\"left\", \"rihgt\"]");
        let e = parse(&bad_group, "x").unwrap_err();
        assert_eq!(e.line, 10);
        assert!(e.problem.contains("rihgt"), "{e}");

        let bad_duration = GOOD.replace("\"1s\"", "\"1 fortnight\"");
        let e = parse(&bad_duration, "x").unwrap_err();
        assert_eq!(e.line, 18, "{e}");

        let two_actions = GOOD.replace("heal = true", "heal = true\ncrash = 1");
        let e = parse(&two_actions, "x").unwrap_err();
        assert!(e.problem.contains("2 actions"), "{e}");

        let syntax = GOOD.replace("duration = \"20s\"", "duration = ");
        assert_eq!(parse(&syntax, "x").unwrap_err().line, 4);

        let unknown = GOOD.replace("nodes = 8", "nodez = 8");
        let e = parse(&unknown, "x").unwrap_err();
        assert_eq!(e.line, 3, "{e}");
    }

    const WRITES: &str = r#"
nodes = 4
duration = "30s"

[replication]
tombstone_ttl = "5s"
departed_after = "10s"

[[at]]
time = "2s"
write = "all"
keys = "10..20"
acked = true

[[at]]
time = "3s"
delete = 1
keys = 5
keyspace = "other"

[[at]]
time = "4s"
workload = "0..2"
rate = 50.0
keys = 100
for = "10s"
deletes = 0.1
acked = 0.25
value_size = 64

[checks]
replication = "20s"
"#;

    #[test]
    fn writes_deletes_workloads_and_replication_settings_parse() {
        let s = parse(WRITES, "w.toml").unwrap();
        assert!(s.has_writes());
        let r = s.replication.as_ref().unwrap();
        assert_eq!((r.tombstone_ttl, r.departed_after), (secs(5), secs(10)));
        assert_eq!(s.bounds.replication, secs(20));
        assert_eq!(
            s.schedule[0].fault,
            Fault::Write(Writes::new(Nodes::All, 10..20).acked())
        );
        let delete = Writes {
            keyspace: "other".into(),
            ..Writes::new(Nodes::One(1), 0..5)
        };
        assert_eq!(s.schedule[1].fault, Fault::Delete(delete));
        let workload = Workload::new(Nodes::Range { start: 0, end: 2 }, 50.0, 100, secs(10))
            .deletes(0.1)
            .acked(0.25)
            .value_size(64);
        assert_eq!(s.schedule[2].fault, Fault::Workload(workload));
        assert_eq!(
            s.schedule[2].fault.to_string(),
            "workload on n0..n2: 50 writes/s over k0..k100 of \"kv\" for 10s, 10 % deletes, 25 % acked, 64 B values"
        );
        assert_eq!(
            s.schedule[0].fault.to_string(),
            "write k10..k20 of \"kv\" on all (acked)"
        );
    }

    #[test]
    fn bad_writes_are_refused_with_their_line_and_what_to_do() {
        let cases = [
            ("keys = \"10..20\"\n", "", 9, "write needs `keys"),
            ("acked = true", "acked = 0.5", 9, "true or false"),
            ("rate = 50.0\n", "", 21, "workload needs `rate"),
            ("keys = 100", "keys = \"0..100\"", 21, "is a count"),
            ("deletes = 0.1", "deletes = 2.0", 21, "not within 0..1"),
            ("keys = 5", "keys = \"5..2\"", 15, "empty"),
            (
                "departed_after = \"10s\"",
                "departed_after = \"1s\"",
                5,
                "departed_after",
            ),
            (
                "replication = \"20s\"",
                "replication = \"20s\"\nrate = 3.0",
                33,
                "unknown field",
            ),
        ];
        for (from, to, line, problem) in cases {
            let text = WRITES.replacen(from, to, 1);
            assert_ne!(text, WRITES, "{from:?} is in the file");
            let e = parse(&text, "x").unwrap_err();
            assert!(e.problem.contains(problem), "{from:?} -> {e}");
            assert_eq!(e.line, line, "{from:?} -> {e}");
        }
        let stray = GOOD.replace("heal = true", "heal = true\nrate = 3.0");
        let e = parse(&stray, "x").unwrap_err();
        assert!(e.problem.contains("belongs to a workload"), "{e}");
    }

    const REGISTRY: &str = r#"
nodes = 6

[[at]]
time = "2s"
register = "all"
service = "billing"
instances = 2

[[at]]
time = "9s"
deregister = [1, 2]
service = "billing"
"#;

    #[test]
    fn registrations_parse_and_read_back() {
        let s = parse(REGISTRY, "r.toml").unwrap();
        assert_eq!(
            s.schedule[0].fault,
            Fault::Register {
                nodes: Nodes::All,
                service: "billing".into(),
                instances: 2
            }
        );
        assert_eq!(
            s.schedule[1].fault,
            Fault::Deregister {
                nodes: Nodes::List(vec![1, 2]),
                service: "billing".into()
            }
        );
        assert_eq!(
            s.schedule[0].fault.to_string(),
            "register 2 instance(s) of billing on all"
        );
        assert_eq!(
            s.schedule[1].fault.to_string(),
            "deregister billing on [1, 2]"
        );
        // One instance unless told otherwise.
        let one = parse(&REGISTRY.replace("instances = 2\n", ""), "r.toml").unwrap();
        assert!(matches!(
            one.schedule[0].fault,
            Fault::Register { instances: 1, .. }
        ));
    }

    #[test]
    fn registration_errors_name_the_line_and_the_problem() {
        let cases = [
            (
                REGISTRY.replace("service = \"billing\"\ninstances", "instances"),
                4,
                "register needs `service",
            ),
            (
                REGISTRY.replace("\"billing\"\ninstances", "\"bil/ling\"\ninstances"),
                4,
                "A-Z a-z 0-9",
            ),
            (
                REGISTRY.replace("instances = 2", "instances = 0"),
                4,
                "at least one instance",
            ),
            (
                REGISTRY.replace("deregister = [1, 2]", "deregister = [1, 2]\ninstances = 1"),
                10,
                "goes with register only",
            ),
            (
                REGISTRY.replace("deregister = [1, 2]", "crash = 1"),
                10,
                "`service` goes with register, deregister or calls",
            ),
            (
                REGISTRY.replace("deregister = [1, 2]", "deregister = 9"),
                10,
                "node 9 does not exist",
            ),
            (
                REGISTRY.replace("instances = 2", "instances = 2\ncrash = 1"),
                4,
                "2 actions",
            ),
        ];
        for (text, line, problem) in cases {
            let e = parse(&text, "r.toml").unwrap_err();
            assert_eq!(e.line, line, "{e}");
            assert!(e.problem.contains(problem), "{e}");
        }
    }

    #[test]
    fn a_node_that_does_not_exist_is_refused_with_its_line() {
        let e = parse(&GOOD.replace("\"n3\"", "\"n30\""), "x").unwrap_err();
        assert_eq!(e.line, 18, "{e}");
        assert!(e.problem.contains("node 30"), "{e}");
    }

    #[test]
    fn storage_parses_and_bad_settings_name_their_line() {
        let with = |table: &str| format!("{GOOD}\n[storage]\n{table}");
        let s = parse(&with("sync_latency = \"5ms\"\ncrash_tears = 0.25\n"), "s").unwrap();
        let storage = s.storage.expect("storage");
        assert_eq!(storage.sync_latency, Duration::from_millis(5));
        assert_eq!(storage.faults.crash_tears, 0.25);
        assert_eq!(storage.faults.crash_keeps_unsynced, 0.0);
        assert_eq!(
            parse(&with(""), "s").unwrap().storage.unwrap().sync_latency,
            SYNC_LATENCY
        );
        assert!(parse(&with("enabled = false\n"), "s")
            .unwrap()
            .storage
            .is_none());
        let e = parse(&with("crash_tears = 1.5\n"), "s").unwrap_err();
        assert_eq!(e.line, 23, "{e}");
        assert!(e.problem.contains("crash_tears"), "{e}");
        let e = parse(&with("sync_latency = \"5s\"\n"), "s").unwrap_err();
        assert!(e.problem.contains("sync_latency"), "{e}");
        let e = parse(&with("sync = true\n"), "s").unwrap_err();
        assert!(e.problem.contains("unknown field"), "{e}");
        let full = "\n[[at]]\ntime = \"13s\"\ndisk_full = 2\nfor = \"1s\"\n";
        let s = parse(&format!("{GOOD}{full}\n[storage]\n"), "s").unwrap();
        assert_eq!(
            s.schedule[3].fault,
            Fault::DiskFull(Nodes::One(2), Duration::from_secs(1))
        );
        let e = parse(&format!("{GOOD}{full}"), "s").unwrap_err();
        assert!(e.problem.contains("needs storage"), "{e}");
        let e = parse(
            &format!("{GOOD}{}\n[storage]\n", full.replace("for = \"1s\"\n", "")),
            "s",
        )
        .unwrap_err();
        assert!(e.problem.contains("disk_full needs `for"), "{e}");
    }
}
