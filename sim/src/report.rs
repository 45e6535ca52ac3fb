//! What a run and a sweep report: the data (serialisable as JSON) and a readable printer.

use std::io::{self, Write};

use serde::Serialize;

use crate::invariants::registry::RegistryKind;
use crate::invariants::{Measurements, ReplicationEpisode};
use crate::network::NetStats;
use crate::scenario::sessions::SessionCounts;
use crate::storage::DiskTotals;
use crate::world::World;
use crate::writes::ReplicationTotals;

/// One violation of one invariant.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Violation {
    /// Simulated seconds.
    pub at_secs: f64,
    /// What was wrong.
    pub message: String,
}

/// One invariant's result.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct InvariantOutcome {
    /// Its name.
    pub name: String,
    /// How many times it was violated.
    pub violations: u64,
    /// The first few violations.
    pub first: Vec<Violation>,
}

/// Something that happened, for the timeline.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TimelineEntry {
    /// Simulated seconds.
    pub at_secs: f64,
    /// What.
    pub what: String,
}

/// Traffic per node, averaged over nodes and simulated time.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Traffic {
    /// Messages (datagrams and stream messages) sent per node per second.
    pub messages_per_node_per_sec: f64,
    /// Membership datagram bytes per node per second (with the transport's version byte).
    pub datagram_bytes_per_node_per_sec: f64,
    /// Stream bytes per node per second (push-pull, leave and metadata messages).
    pub stream_bytes_per_node_per_sec: f64,
    /// Everything membership sends, per node per second.
    pub membership_bytes_per_node_per_sec: f64,
    /// Sends refused for size.
    pub oversized: u64,
    /// Sends to an address with no node of that id.
    pub misaddressed: u64,
}

/// Traffic counters summed over every slot, at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrafficTotals {
    messages: u64,
    datagram_bytes: u64,
    stream_bytes: u64,
    oversized: u64,
    misaddressed: u64,
}

impl TrafficTotals {
    /// The counters of `world` now.
    pub fn of(world: &World) -> Self {
        let mut totals = Self::default();
        for t in world.nodes().iter().map(|n| n.traffic()) {
            totals.messages += t.datagrams_sent + t.stream_messages_sent;
            totals.datagram_bytes += t.datagram_bytes_sent;
            totals.stream_bytes += t.stream_bytes_sent;
            totals.oversized += t.oversized;
            totals.misaddressed += t.misaddressed;
        }
        totals
    }
}

impl Traffic {
    /// Per-node rates between two snapshots `seconds` apart, over `nodes` slots.
    pub fn between(start: TrafficTotals, end: TrafficTotals, nodes: usize, seconds: f64) -> Self {
        let per =
            |a: u64, b: u64| b.saturating_sub(a) as f64 / nodes.max(1) as f64 / seconds.max(1e-9);
        let datagram = per(start.datagram_bytes, end.datagram_bytes);
        let stream = per(start.stream_bytes, end.stream_bytes);
        Self {
            messages_per_node_per_sec: per(start.messages, end.messages),
            datagram_bytes_per_node_per_sec: datagram,
            stream_bytes_per_node_per_sec: stream,
            membership_bytes_per_node_per_sec: datagram + stream,
            oversized: end.oversized,
            misaddressed: end.misaddressed,
        }
    }
}

/// What replication did in a run that wrote to replicated keyspaces.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ReplicationReport {
    /// Writes the scenario issued.
    pub writes_issued: u64,
    /// Of them, applied by a core (the rest were refused, or their node went down first).
    pub writes_applied: u64,
    /// Applied writes that were deletes.
    pub deletes: u64,
    /// Writes a core refused.
    pub writes_refused: u64,
    /// Applied writes that asked for acknowledgements.
    pub acked_writes: u64,
    /// Of them, held by a majority of the members asked.
    pub majority_acked: u64,
    /// Anti-entropy rounds started, over every node.
    pub anti_entropy_rounds: u64,
    /// Every core's replication counters, summed over nodes and lives.
    pub totals: ReplicationTotals,
    /// Time until replicas held the same data, over this run's episodes.
    pub convergence: Stats,
    /// Episodes that did not converge.
    pub not_converged: usize,
    /// Keys where a set won over a newer delete made across a partition longer than
    /// `departed_after` (the documented exception to last-writer-wins).
    pub sets_won_after_departure: u64,
    /// Writes whose reply could be given (durable on the writer; every write without storage).
    pub writes_returned: u64,
    /// What the nodes' disks did, when they had storage.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disks: Option<DiskTotals>,
}

impl ReplicationReport {
    /// Of `world` at the end of a run, with what the run's invariants measured.
    pub fn of(world: &World, measured: &Measurements) -> Self {
        let writes = world.writes();
        let episodes = &measured.replication;
        Self {
            writes_issued: world.writes_issued(),
            writes_applied: writes.len() as u64,
            deletes: writes.iter().filter(|w| w.value.is_none()).count() as u64,
            writes_refused: world.writes_refused(),
            acked_writes: writes.iter().filter(|w| w.acked.is_some()).count() as u64,
            majority_acked: writes.iter().filter(|w| w.majority_acked()).count() as u64,
            anti_entropy_rounds: world.anti_entropy_rounds(),
            totals: world.replication_totals(),
            convergence: Stats::of(episodes.iter().filter_map(|e| e.took_secs).collect()),
            not_converged: episodes.iter().filter(|e| e.took_secs.is_none()).count(),
            sets_won_after_departure: measured.sets_won_after_departure,
            writes_returned: writes.iter().filter(|w| w.durable_at_us.is_some()).count() as u64,
            disks: world.storage().map(|_| world.disk_totals()),
        }
    }
}

/// Everything about one run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RunReport {
    /// Scenario name.
    pub scenario: String,
    /// Seed.
    pub seed: u64,
    /// Node slots.
    pub nodes: usize,
    /// Whether every invariant held.
    pub passed: bool,
    /// Simulated seconds.
    pub simulated_secs: f64,
    /// Wall-clock seconds the run took (not part of the trace; varies between runs).
    pub wall_secs: f64,
    /// Faults and milestones in time order.
    pub timeline: Vec<TimelineEntry>,
    /// Convergence, detection and false-positive measurements.
    pub measurements: Measurements,
    /// Traffic, from the scenario's `traffic_from` time to the end.
    pub traffic: Traffic,
    /// What the network did.
    pub network: NetStats,
    /// What replication did, when the scenario wrote anything.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replication: Option<ReplicationReport>,
    /// Every invariant's result.
    pub invariants: Vec<InvariantOutcome>,
    /// A panic inside the run, if one happened.
    pub panic: Option<String>,
    /// Hash of the trace (same seed, same hash).
    pub trace_hash: String,
    /// Lines in the trace.
    pub trace_lines: u64,
    /// The trace itself, when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace: Option<Vec<String>>,
    /// Every node's view over time, when asked for (for `--html`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub views: Option<crate::views::Views>,
    /// The command that replays this run.
    pub replay: String,
}

impl RunReport {
    /// The report of a run that panicked: its panic, and nothing measured.
    pub fn of_panic(
        scenario: &str,
        seed: u64,
        nodes: usize,
        panic: String,
        replay: String,
    ) -> Self {
        Self {
            scenario: scenario.to_owned(),
            seed,
            nodes,
            passed: false,
            simulated_secs: 0.0,
            wall_secs: 0.0,
            timeline: Vec::new(),
            measurements: Measurements::default(),
            traffic: Traffic::default(),
            network: Default::default(),
            invariants: Vec::new(),
            replication: None,
            panic: Some(panic),
            trace_hash: crate::trace::Trace::new(false).hash(),
            trace_lines: 0,
            trace: None,
            views: None,
            replay,
        }
    }
}

/// Summary statistics of one measurement over many runs.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Stats {
    /// Samples.
    pub count: usize,
    /// Median.
    pub median: Option<f64>,
    /// 99th percentile (nearest rank).
    pub p99: Option<f64>,
    /// Largest.
    pub max: Option<f64>,
}

impl Stats {
    /// Of these samples.
    pub fn of(mut samples: Vec<f64>) -> Self {
        samples.sort_by(f64::total_cmp);
        let rank = |q: f64| {
            let i = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len().max(1)) - 1;
            samples.get(i).copied()
        };
        Self {
            count: samples.len(),
            median: rank(0.5),
            p99: rank(0.99),
            max: samples.last().copied(),
        }
    }
}

/// Result of `foundation sim`: one run, or a sweep over seeds.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SimReport {
    /// Scenario name.
    pub scenario: String,
    /// Node slots.
    pub nodes: usize,
    /// Runs.
    pub runs: usize,
    /// Seeds whose run failed.
    pub failed_seeds: Vec<u64>,
    /// Each run: seed, passed, trace hash.
    pub seeds: Vec<(u64, bool, String)>,
    /// Convergence times (seconds) over every episode of every run.
    pub convergence: Stats,
    /// Time until every survivor saw a crash, over every crash of every run.
    pub detection_all: Stats,
    /// False positives over all runs.
    pub false_positives: u64,
    /// Declarations of a stalled node as failed (by any observer) over all runs, and in how many
    /// runs there was at least one: the stall a profile tolerates shows here.
    pub failed_while_stalled: u64,
    /// Runs in which a stalled node was declared failed.
    pub runs_failed_while_stalled: usize,
    /// Registration → listed by every live node (seconds), over every registration of every run.
    pub registry_listed: Stats,
    /// Death of a node life → its instances listed nowhere (seconds), over every such death.
    pub registry_gone: Stats,
    /// Death of a node life → its entries in no live keyspace (seconds).
    pub registry_reaped: Stats,
    /// Membership bytes per node per second, over runs.
    pub membership_bytes_per_node_per_sec: Stats,
    /// Time until replicas held the same data, over every episode of every run (scenarios that
    /// write).
    pub replication_convergence: Stats,
    /// What cache workloads did, over all runs (scenarios with one).
    pub cache: Option<crate::cache::CacheCounts>,
    /// What coordination sessions did, over all runs (scenarios with sessions).
    pub sessions: Option<SessionCounts>,
    /// Calls by how they ended, over all runs (scenarios that call; cross-cluster calls of a
    /// federation as `cross-cluster <ending>`).
    pub calls: std::collections::BTreeMap<String, u64>,
    /// The full report of a single-seed run, or of every failed run of a sweep.
    pub details: Vec<RunReport>,
}

impl SimReport {
    /// Summarises `runs` (sorted by seed); `details` chooses which runs are kept whole.
    pub fn of(runs: Vec<RunReport>) -> Self {
        let first = runs.first();
        let scenario = first.map(|r| r.scenario.clone()).unwrap_or_default();
        let nodes = first.map_or(0, |r| r.nodes);
        let episodes = runs.iter().flat_map(|r| {
            r.measurements
                .convergence
                .iter()
                .filter_map(|c| c.took_secs)
        });
        let detections = runs
            .iter()
            .flat_map(|r| r.measurements.detections.iter().filter_map(|d| d.all_secs));
        let bytes = runs
            .iter()
            .map(|r| r.traffic.membership_bytes_per_node_per_sec);
        let replication = runs.iter().flat_map(|r| {
            r.measurements
                .replication
                .iter()
                .filter_map(|e| e.took_secs)
        });
        let registry = |kind: RegistryKind| {
            Stats::of(
                runs.iter()
                    .flat_map(|r| r.measurements.registry.iter())
                    .filter(|m| m.kind == kind)
                    .filter_map(|m| m.took_secs)
                    .collect(),
            )
        };
        let failed_seeds: Vec<u64> = runs.iter().filter(|r| !r.passed).map(|r| r.seed).collect();
        let cache = summed(&runs, |m| m.cache.as_ref(), crate::cache::CacheCounts::add);
        let sessions = summed(&runs, |m| m.sessions.as_ref(), SessionCounts::add);
        Self {
            scenario,
            nodes,
            runs: runs.len(),
            seeds: runs
                .iter()
                .map(|r| (r.seed, r.passed, r.trace_hash.clone()))
                .collect(),
            convergence: Stats::of(episodes.collect()),
            detection_all: Stats::of(detections.collect()),
            false_positives: runs.iter().map(|r| r.measurements.false_positives).sum(),
            failed_while_stalled: runs
                .iter()
                .map(|r| r.measurements.failed_while_stalled)
                .sum(),
            runs_failed_while_stalled: runs
                .iter()
                .filter(|r| r.measurements.failed_while_stalled > 0)
                .count(),
            registry_listed: registry(RegistryKind::Register),
            registry_gone: registry(RegistryKind::Death),
            registry_reaped: registry(RegistryKind::Reaped),
            membership_bytes_per_node_per_sec: Stats::of(bytes.collect()),
            replication_convergence: Stats::of(replication.collect()),
            cache,
            sessions,
            calls: runs.iter().flat_map(|r| &r.measurements.calls).fold(
                Default::default(),
                |mut sum, (what, n)| {
                    *sum.entry(what.clone()).or_default() += n;
                    sum
                },
            ),
            details: if runs.len() == 1 {
                runs
            } else {
                runs.into_iter().filter(|r| !r.passed).collect()
            },
            failed_seeds,
        }
    }

    /// Whether every run passed.
    pub fn passed(&self) -> bool {
        self.failed_seeds.is_empty()
    }

    /// As pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }
}

/// The sum over `runs` of the counts `of` picks, `None` when no run has them.
pub(crate) fn summed<T: Default>(
    runs: &[RunReport],
    of: impl Fn(&Measurements) -> Option<&T>,
    add: impl Fn(&mut T, &T),
) -> Option<T> {
    let mut counts = runs.iter().filter_map(|r| of(&r.measurements)).peekable();
    counts.peek()?;
    let mut sum = T::default();
    counts.for_each(|c| add(&mut sum, c));
    Some(sum)
}

fn opt(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.2}s"))
}

/// Prints a readable summary.
pub fn print_summary(report: &SimReport, out: &mut dyn Write) -> io::Result<()> {
    if report.runs == 1 {
        if let Some(run) = report.details.first() {
            return print_run(run, out);
        }
    }
    let passed = report.runs - report.failed_seeds.len();
    writeln!(
        out,
        "scenario {} · {} nodes · {} seeds: {passed} passed, {} failed",
        report.scenario,
        report.nodes,
        report.runs,
        report.failed_seeds.len()
    )?;
    let c = &report.convergence;
    writeln!(
        out,
        "  convergence     median {} p99 {} max {} ({} episodes)",
        opt(c.median),
        opt(c.p99),
        opt(c.max),
        c.count
    )?;
    let d = &report.detection_all;
    writeln!(
        out,
        "  crash seen by all  median {} p99 {} max {} ({} crashes)",
        opt(d.median),
        opt(d.p99),
        opt(d.max),
        d.count
    )?;
    let b = &report.membership_bytes_per_node_per_sec;
    writeln!(
        out,
        "  membership bytes/s per node  median {:.0}",
        b.median.unwrap_or(0.0)
    )?;
    writeln!(
        out,
        "  false positives {} · declared failed while stalled {} (in {} seeds)",
        report.false_positives, report.failed_while_stalled, report.runs_failed_while_stalled
    )?;
    if let Some(cache) = &report.cache {
        writeln!(out, "  {cache}")?;
    }
    if let Some(sessions) = &report.sessions {
        writeln!(out, "  {sessions}")?;
    }
    if !report.calls.is_empty() {
        let calls: Vec<String> = report
            .calls
            .iter()
            .map(|(w, n)| format!("{w} {n}"))
            .collect();
        writeln!(out, "  calls: {}", calls.join(" · "))?;
    }
    let r = &report.replication_convergence;
    if r.count > 0 {
        writeln!(
            out,
            "  replicas equal  median {} p99 {} max {} ({} episodes)",
            opt(r.median),
            opt(r.p99),
            opt(r.max),
            r.count
        )?;
    }
    for (what, s) in [
        ("registered -> listed everywhere", &report.registry_listed),
        ("life ended -> gone everywhere  ", &report.registry_gone),
        ("life ended -> reaped everywhere", &report.registry_reaped),
    ] {
        if s.count > 0 {
            writeln!(
                out,
                "  {what}  median {} p99 {} max {} ({})",
                opt(s.median),
                opt(s.p99),
                opt(s.max),
                s.count
            )?;
        }
    }
    for run in &report.details {
        writeln!(out)?;
        writeln!(out, "FAILED seed {} — replay: {}", run.seed, run.replay)?;
        print_invariants(run, out)?;
        print_trace(run, out)?;
    }
    Ok(())
}

fn print_run(run: &RunReport, out: &mut dyn Write) -> io::Result<()> {
    let verdict = if run.passed { "PASSED" } else { "FAILED" };
    writeln!(
        out,
        "scenario {} · {} nodes · seed {} · {:.1}s simulated in {:.2}s — {verdict}",
        run.scenario, run.nodes, run.seed, run.simulated_secs, run.wall_secs
    )?;
    writeln!(out, "\nwhat happened")?;
    for entry in &run.timeline {
        writeln!(out, "  {:>8.3}s  {}", entry.at_secs, entry.what)?;
    }
    let m = &run.measurements;
    writeln!(out, "\nconvergence")?;
    for c in &m.convergence {
        writeln!(
            out,
            "  after {} (at {:.1}s): {}",
            c.after,
            c.at_secs,
            c.took_secs
                .map_or("did not converge".into(), |t| format!("{t:.2}s"))
        )?;
    }
    writeln!(out, "\ndetection")?;
    for d in &m.detections {
        let how = if d.graceful { "stopped" } else { "crashed" };
        writeln!(
            out,
            "  n{} {how} at {:.1}s: first seen {} · seen by all {} survivors {}",
            d.node,
            d.at_secs,
            opt(d.first_secs),
            d.observers,
            opt(d.all_secs)
        )?;
    }
    writeln!(
        out,
        "  false positives {} · declared failed while stalled {} · across a partition {}",
        m.false_positives, m.failed_while_stalled, m.failed_across_partition
    )?;
    if let Some(r) = &run.replication {
        print_replication(r, &m.replication, out)?;
    }
    print_registry(m, out)?;
    print_agents(m, out)?;
    if let Some(cache) = &m.cache {
        writeln!(out, "\n{cache}")?;
    }
    if let Some(sessions) = &m.sessions {
        writeln!(out, "\n{sessions}")?;
    }
    let t = &run.traffic;
    writeln!(out, "\ntraffic per node: {:.1} msg/s · {:.0} B/s datagrams · {:.0} B/s streams · {:.0} B/s membership total", t.messages_per_node_per_sec, t.datagram_bytes_per_node_per_sec, t.stream_bytes_per_node_per_sec, t.membership_bytes_per_node_per_sec)?;
    let n = &run.network;
    writeln!(out, "network: {} lost · {} blocked · {} duplicated · {} reordered datagrams · {} stream messages dropped · {} retransmits", n.datagrams_lost, n.datagrams_blocked, n.datagrams_duplicated, n.datagrams_reordered, n.stream_messages_dropped, n.stream_retransmits)?;
    writeln!(out, "\ninvariants")?;
    print_invariants(run, out)?;
    writeln!(
        out,
        "\ntrace {} ({} lines) · replay: {}",
        run.trace_hash, run.trace_lines, run.replay
    )?;
    print_trace(run, out)
}

fn print_replication(
    r: &ReplicationReport,
    episodes: &[ReplicationEpisode],
    out: &mut dyn Write,
) -> io::Result<()> {
    let t = &r.totals;
    writeln!(out, "\nreplication")?;
    writeln!(
        out,
        "  writes: {} issued · {} applied ({} deletes) · {} refused · {} acked ({} by a majority)",
        r.writes_issued,
        r.writes_applied,
        r.deletes,
        r.writes_refused,
        r.acked_writes,
        r.majority_acked
    )?;
    writeln!(
        out,
        "  ops: {} sent · {} applied · {} duplicates · {} dropped · {} refused for drift",
        t.ops_sent, t.ops_applied, t.duplicate_ops, t.dropped, t.drift_rejected
    )?;
    writeln!(
        out,
        "  anti-entropy: {} rounds · {} digests · {} full states sent ({} bulk) · {} merged",
        r.anti_entropy_rounds,
        t.digests_sent,
        t.full_states_sent,
        t.bulk_states_sent,
        t.full_states_merged
    )?;
    writeln!(
        out,
        "  {} bytes sent · {} tombstones collected · {} origins retired · {} epoch changes",
        t.bytes_sent, t.tombstones_collected, t.origins_retired, t.epoch_changes
    )?;
    if let Some(d) = &r.disks {
        writeln!(
            out,
            "  disks: {} returned writes · {} batches · {} syncs · {} refused · {} crashes ({} torn, {} B unsynced lost) · {} restores",
            r.writes_returned, d.writes, d.syncs, d.refused, d.crashes, d.torn, d.lost_bytes, d.restores
        )?;
    }
    if r.sets_won_after_departure > 0 {
        writeln!(
            out,
            "  {} keys where a set won over a newer delete made across a partition longer than departed_after",
            r.sets_won_after_departure
        )?;
    }
    for e in episodes {
        writeln!(
            out,
            "  replicas equal after {} (at {:.1}s): {} · {:.1} anti-entropy rounds per node",
            e.after,
            e.at_secs,
            e.took_secs
                .map_or("did not converge".into(), |t| format!("{t:.2}s")),
            e.rounds_per_node
        )?;
    }
    Ok(())
}

fn print_registry(m: &Measurements, out: &mut dyn Write) -> io::Result<()> {
    if m.registry.is_empty() {
        return Ok(());
    }
    writeln!(out, "\nservice registry")?;
    for r in &m.registry {
        let done = match r.kind {
            RegistryKind::Register => "listed everywhere",
            RegistryKind::Deregister | RegistryKind::Death => "gone everywhere",
            RegistryKind::Reaped => "reaped everywhere",
            RegistryKind::Convergence => "converged",
        };
        writeln!(
            out,
            "  {} (at {:.1}s): {}",
            r.what,
            r.at_secs,
            r.took_secs.map_or_else(
                || format!("not {done}"),
                |t| format!("{done} after {t:.2}s")
            )
        )?;
    }
    writeln!(
        out,
        "  disagreements no disturbance explained {}",
        m.registry_unexplained
    )
}

fn print_agents(m: &Measurements, out: &mut dyn Write) -> io::Result<()> {
    if m.agent_messages.is_empty() && m.agent_restarts == 0 && m.agents_vanished.is_empty() {
        return Ok(());
    }
    writeln!(out, "\nagents")?;
    let outcomes: Vec<String> = m
        .agent_messages
        .iter()
        .map(|(outcome, n)| format!("{n} {outcome}"))
        .collect();
    writeln!(out, "  messages: {}", outcomes.join(" · "))?;
    writeln!(
        out,
        "  {} restarts · {} supervisors gave up",
        m.agent_restarts, m.agent_give_ups
    )?;
    let slowest = m
        .agents_vanished
        .iter()
        .copied()
        .fold(None, |a: Option<f64>, t| Some(a.map_or(t, |a| a.max(t))));
    if let Some(slowest) = slowest {
        writeln!(
            out,
            "  {} ended lives: their agents gone from every live directory within {slowest:.2}s",
            m.agents_vanished.len()
        )?;
    }
    Ok(())
}

fn print_invariants(run: &RunReport, out: &mut dyn Write) -> io::Result<()> {
    if let Some(panic) = &run.panic {
        writeln!(out, "  no-panics: FAILED — {panic}")?;
    }
    for inv in &run.invariants {
        if inv.violations == 0 {
            writeln!(out, "  {}: ok", inv.name)?;
            continue;
        }
        writeln!(
            out,
            "  {}: FAILED ({} violations)",
            inv.name, inv.violations
        )?;
        for v in &inv.first {
            writeln!(out, "    at {:.3}s: {}", v.at_secs, v.message)?;
        }
    }
    Ok(())
}

fn print_trace(run: &RunReport, out: &mut dyn Write) -> io::Result<()> {
    if let Some(lines) = &run.trace {
        writeln!(out, "\ntrace")?;
        for line in lines {
            writeln!(out, "{line}")?;
        }
    }
    Ok(())
}
