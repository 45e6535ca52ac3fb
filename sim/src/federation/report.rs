//! A federation run as `foundation sim` reports any run: one [`RunReport`] whose invariants are
//! every cluster's own (named `<cluster>: <invariant>`) and the federation checks, so a sweep
//! prints pass counts, failed checks with their seeds and replay commands like any scenario.

use std::panic::{self, AssertUnwindSafe};

use super::{run, FederationReport, FederationScenario};
use crate::invariants::Measurements;
use crate::report::{InvariantOutcome, RunReport, TimelineEntry, Traffic};

/// Runs `scenario` with `seed` and reports it as one run. A panic inside is a failure of
/// `no-panics`, as in a one-cluster run.
pub fn run_report(scenario: &FederationScenario, seed: u64) -> RunReport {
    let started = std::time::Instant::now();
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| run(scenario, seed)));
    let mut report = match outcome {
        Ok(federation) => as_run(scenario, federation),
        Err(payload) => panicked(scenario, seed, payload),
    };
    report.wall_secs = started.elapsed().as_secs_f64();
    report
}

/// The command that replays a run.
pub fn replay_command(scenario: &FederationScenario, seed: u64) -> String {
    format!("foundation sim {} --seed {seed}", scenario.replay_source)
}

fn nodes(scenario: &FederationScenario) -> usize {
    scenario.clusters.iter().map(|c| c.scenario.nodes).sum()
}

fn as_run(scenario: &FederationScenario, run: FederationReport) -> RunReport {
    let mut invariants = Vec::new();
    let mut timeline = Vec::new();
    let mut measurements = Measurements::default();
    for (spec, cluster) in scenario.clusters.iter().zip(&run.clusters) {
        let name = &spec.name;
        invariants.extend(cluster.invariants.iter().map(|i| InvariantOutcome {
            name: format!("{name}: {}", i.name),
            ..i.clone()
        }));
        timeline.extend(cluster.timeline.iter().map(|t| TimelineEntry {
            at_secs: t.at_secs,
            what: format!("{name}: {}", t.what),
        }));
        merge(&mut measurements, &cluster.measurements);
    }
    invariants.extend(run.checks.iter().cloned());
    timeline.extend(federation_timeline(scenario, &run));
    timeline.sort_by(|a, b| a.at_secs.total_cmp(&b.at_secs));
    for (what, count) in call_counts(&run) {
        *measurements.calls.entry(what).or_default() += count;
    }
    RunReport {
        scenario: scenario.name.clone(),
        seed: run.seed,
        nodes: nodes(scenario),
        passed: run.passed,
        simulated_secs: scenario.duration.as_secs_f64(),
        wall_secs: 0.0,
        timeline,
        measurements,
        traffic: traffic(&run),
        network: network(&run),
        replication: None,
        invariants,
        panic: None,
        trace_hash: format!("{:016x}", run.trace_hash),
        trace_lines: 0,
        trace: None,
        views: None,
        replay: replay_command(scenario, run.seed),
    }
}

/// The clusters' traffic per node, averaged over every node of the federation.
fn traffic(run: &FederationReport) -> Traffic {
    let nodes: usize = run.clusters.iter().map(|c| c.nodes).sum();
    let mean = |rate: fn(&Traffic) -> f64| {
        let total: f64 = run
            .clusters
            .iter()
            .map(|c| rate(&c.traffic) * c.nodes as f64)
            .sum();
        total / nodes.max(1) as f64
    };
    Traffic {
        messages_per_node_per_sec: mean(|t| t.messages_per_node_per_sec),
        datagram_bytes_per_node_per_sec: mean(|t| t.datagram_bytes_per_node_per_sec),
        stream_bytes_per_node_per_sec: mean(|t| t.stream_bytes_per_node_per_sec),
        membership_bytes_per_node_per_sec: mean(|t| t.membership_bytes_per_node_per_sec),
        oversized: run.clusters.iter().map(|c| c.traffic.oversized).sum(),
        misaddressed: run.clusters.iter().map(|c| c.traffic.misaddressed).sum(),
    }
}

/// The clusters' networks' counters, summed (the WAN's are in the timeline).
fn network(run: &FederationReport) -> crate::network::NetStats {
    let mut sum = crate::network::NetStats::default();
    for n in run.clusters.iter().map(|c| &c.network) {
        sum.datagrams_lost += n.datagrams_lost;
        sum.datagrams_blocked += n.datagrams_blocked;
        sum.datagrams_duplicated += n.datagrams_duplicated;
        sum.datagrams_reordered += n.datagrams_reordered;
        sum.stream_messages_dropped += n.stream_messages_dropped;
        sum.stream_retransmits += n.stream_retransmits;
    }
    sum
}

/// Adds one cluster's measurements to the run's.
fn merge(into: &mut Measurements, from: &Measurements) {
    into.convergence.extend(from.convergence.iter().cloned());
    into.detections.extend(from.detections.iter().cloned());
    into.registry.extend(from.registry.iter().cloned());
    into.false_positives += from.false_positives;
    into.failed_while_stalled += from.failed_while_stalled;
    into.failed_across_partition += from.failed_across_partition;
    for (what, count) in &from.calls {
        *into.calls.entry(what.clone()).or_default() += count;
    }
}

fn call_counts(run: &FederationReport) -> Vec<(String, u64)> {
    let mut counts = std::collections::BTreeMap::new();
    for (_, end) in run.calls.iter().filter_map(|c| c.end) {
        *counts
            .entry(format!("cross-cluster {}", end.name()))
            .or_default() += 1;
    }
    counts.into_iter().collect()
}

/// Cuts, measured propagations and the calls' tally, for the timeline.
fn federation_timeline(
    scenario: &FederationScenario,
    run: &FederationReport,
) -> Vec<TimelineEntry> {
    let names = |side: &[usize]| {
        let names: Vec<String> = side
            .iter()
            .map(|&c| scenario.clusters[c].name.to_string())
            .collect();
        names.join("+")
    };
    let mut entries = Vec::new();
    for cut in &scenario.cuts {
        let between = format!("{} | {}", names(&cut.side), names(&cut.other));
        entries.push(TimelineEntry {
            at_secs: cut.from.as_secs_f64(),
            what: format!("WAN cut {between}"),
        });
        entries.push(TimelineEntry {
            at_secs: cut.to.as_secs_f64(),
            what: format!("WAN heal {between}"),
        });
    }
    for v in &run.visibility {
        let what = match v.after {
            "failover" => format!("moved its link to {} to a running gateway", v.exporter),
            _ => format!("saw {}'s exports", v.exporter),
        };
        entries.push(TimelineEntry {
            at_secs: v.at_secs + v.took_secs,
            what: format!(
                "federation: {} {what} {:.3}s after the {}",
                v.observer, v.took_secs, v.after
            ),
        });
    }
    let tally: Vec<String> = call_counts(run)
        .into_iter()
        .map(|(what, n)| format!("{n} {}", what.trim_start_matches("cross-cluster ")))
        .collect();
    if !tally.is_empty() {
        entries.push(TimelineEntry {
            at_secs: scenario.duration.as_secs_f64(),
            what: format!(
                "cross-cluster calls: {} · WAN {} sent, {} lost, {} cut",
                tally.join(", "),
                run.wan.sent,
                run.wan.lost,
                run.wan.cut
            ),
        });
    }
    entries
}

fn panicked(
    scenario: &FederationScenario,
    seed: u64,
    payload: Box<dyn std::any::Any + Send>,
) -> RunReport {
    let message = crate::scenario::panic_message(payload);
    let replay = replay_command(scenario, seed);
    RunReport::of_panic(&scenario.name, seed, nodes(scenario), message, replay)
}
