//! Simulator benchmark: prints numbers, never fails.
//!
//! `cargo bench -p foundation-sim` (add `-- quick` for fewer seeds). Measures:
//! - speed: simulated seconds per wall second at N=100 and N=1000;
//! - detection at scale: 1 % loss, one node stalled for 2 s, then a crash — time until every
//!   survivor sees the crashed node failed (median and p99 over seeds);
//! - mass join through one seed at N=1000;
//! - membership bytes per node per second at N=100 and N=1000;
//! - false positives.

use std::time::Duration;

use foundation_sim::faults::{secs, Fault, Nodes};
use foundation_sim::network::LinkModel;
use foundation_sim::report::{RunReport, Stats};
use foundation_sim::scenario::{run, Check, RunOptions, Scenario};
use foundation_sim::sweep::sweep;

fn main() {
    let quick = std::env::args().any(|a| a == "quick");
    println!("{:<58} {:>14} {:>10}", "measure", "value", "target");
    speed(100, 30);
    speed(1000, if quick { 5 } else { 10 });
    let seeds_100 = if quick { 1..6 } else { 1..21 };
    let seeds_1000 = if quick { 1..2 } else { 1..4 };
    let small = detection(100, seeds_100);
    let large = detection(1000, seeds_1000);
    mass_join(1000);
    let bytes = |runs: &[RunReport]| {
        Stats::of(
            runs.iter()
                .map(|r| r.traffic.membership_bytes_per_node_per_sec)
                .collect(),
        )
    };
    row(
        "membership bytes/s per node, N=100 (median)",
        bytes(&small).median,
        "B/s",
        "≤ 5000",
    );
    row(
        "membership bytes/s per node, N=1000 (median)",
        bytes(&large).median,
        "B/s",
        "≤ 5000, flat",
    );
    for (n, runs) in [(100, &small), (1000, &large)] {
        let datagrams = Stats::of(
            runs.iter()
                .map(|r| r.traffic.datagram_bytes_per_node_per_sec)
                .collect(),
        );
        let streams = Stats::of(
            runs.iter()
                .map(|r| r.traffic.stream_bytes_per_node_per_sec)
                .collect(),
        );
        row(
            &format!("  of which SWIM datagrams, N={n}"),
            datagrams.median,
            "B/s",
            "-",
        );
        row(
            &format!("  of which push-pull and other streams, N={n}"),
            streams.median,
            "B/s",
            "-",
        );
    }
    let fp: u64 = small
        .iter()
        .chain(&large)
        .map(|r| r.measurements.false_positives)
        .sum();
    row(
        "false positives (all detection runs)",
        Some(fp as f64),
        "",
        "0",
    );
    let stalled: u64 = small
        .iter()
        .chain(&large)
        .map(|r| r.measurements.failed_while_stalled)
        .sum();
    row(
        "declarations about the stalled node (allowed)",
        Some(stalled as f64),
        "",
        "-",
    );
}

fn row(what: &str, value: Option<f64>, unit: &str, target: &str) {
    let value = value.map_or("-".to_string(), |v| format!("{v:.2} {unit}"));
    println!("{what:<58} {value:>14} {target:>10}");
}

fn speed(nodes: usize, seconds: u64) {
    let scenario = Scenario::new("speed")
        .nodes(nodes)
        .duration(secs(seconds))
        .check(Check::CoreInvariants(false));
    let report = run(&scenario, 1, &RunOptions::default());
    let ratio = report.simulated_secs / report.wall_secs.max(1e-9);
    let target = if nodes == 100 { "≥ 1000x" } else { "-" };
    row(
        &format!("speed, N={nodes} (simulated s per wall s)"),
        Some(ratio),
        "x",
        target,
    );
}

/// 1 % loss; node 1 stalls for 2 s at 15 s; the last node crashes at 20 s.
fn detection_scenario(nodes: usize) -> Scenario {
    Scenario::new("detection")
        .nodes(nodes)
        .duration(secs(35))
        .network(LinkModel {
            loss: 0.01,
            ..LinkModel::lan()
        })
        .at(
            secs(15),
            Fault::Stall(Nodes::One(1), Duration::from_secs(2)),
        )
        .at(secs(20), Fault::Crash(Nodes::One(nodes - 1)))
        .check(Check::CoreInvariants(false))
        .check(Check::ConvergesWithin(secs(30)))
        // Traffic once the cluster has formed (the window includes the stall and the crash).
        .traffic_from(secs(10))
}

fn detection(nodes: usize, seeds: std::ops::Range<u64>) -> Vec<RunReport> {
    let runs = sweep(&detection_scenario(nodes), seeds, 0, false);
    let crash_at = 20.0;
    let all: Vec<f64> = runs
        .iter()
        .flat_map(|r| {
            r.measurements
                .detections
                .iter()
                .filter(|d| d.at_secs == crash_at)
                .map(|d| d.all_secs.unwrap_or(f64::INFINITY))
        })
        .collect();
    let stats = Stats::of(all);
    let (median_target, p99_target) = if nodes == 100 {
        ("≤ 3 s", "≤ 5 s")
    } else {
        ("-", "≤ 5 s")
    };
    row(
        &format!(
            "crash seen failed by all, N={nodes}, median ({} seeds)",
            runs.len()
        ),
        stats.median,
        "s",
        median_target,
    );
    row(
        &format!("crash seen failed by all, N={nodes}, p99"),
        stats.p99,
        "s",
        p99_target,
    );
    let failed = runs.iter().filter(|r| !r.passed).count();
    row(
        &format!("runs with a failed invariant, N={nodes}"),
        Some(failed as f64),
        "",
        "0",
    );
    runs
}

fn mass_join(nodes: usize) {
    let scenario = Scenario::new("mass-join")
        .nodes(nodes)
        .duration(secs(40))
        .check(Check::CoreInvariants(false));
    let report = run(&scenario, 1, &RunOptions::default());
    let formed = report
        .measurements
        .convergence
        .first()
        .and_then(|c| c.took_secs);
    row(
        &format!("mass join of {nodes} through one seed (all agree)"),
        formed,
        "s",
        "≤ 30 s",
    );
}
