//! Simulator benchmark: prints numbers, never fails.
//!
//! `cargo bench -p foundation-sim --bench sim` runs everything below (add `-- quick` for fewer
//! seeds); a mode runs one part:
//! - `-- speed`: the standard `steady` scenario at N=100 (seed 1, 40 simulated seconds):
//!   simulated seconds, wall and CPU seconds, the ratio to real time, peak RSS and membership
//!   bytes per node per second;
//! - `-- big`: the same at N=1000 (40 s) and N=5000 (20 s);
//! - `-- hashes`: the trace hash of every standard scenario at N=8, seed 42, and of `steady` at
//!   N=100, seed 1 — a change that only makes the simulator faster leaves them all equal;
//! - `-- one N SECONDS`: one `steady` run, in this process (the modes above run each size in a
//!   child process of their own, so that each peak RSS is that run's alone).
//!
//! Everything else (the default): speed at N=100 and N=1000; detection at scale (1 % loss, one
//! node stalled for 2 s, then a crash — time until every survivor sees the crashed node failed,
//! median and p99 over seeds); mass join through one seed at N=1000; membership bytes per node
//! per second at N=100 and N=1000 in that scenario; false positives.

use std::process::Command;
use std::time::{Duration, Instant};

use foundation_sim::faults::{secs, Fault, Nodes};
use foundation_sim::network::LinkModel;
use foundation_sim::report::{RunReport, Stats};
use foundation_sim::scenario::{run, standard, Check, RunOptions, Scenario};
use foundation_sim::sweep::sweep;

/// Bytes per node are measured from here to the end of a `steady` run: the cluster has formed.
const STEADY_TRAFFIC_FROM_SECS: u64 = 20;

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    match args.first().map(String::as_str) {
        Some("one") => {
            let number = |i: usize, default: u64| {
                args.get(i).and_then(|s| s.parse().ok()).unwrap_or(default)
            };
            return one(number(1, 100) as usize, number(2, 40));
        }
        Some("speed") => return speed(&[(100, 40)]),
        Some("big") => return speed(&[(1000, 40), (5000, 20)]),
        Some("hashes") => return hashes(),
        _ => {}
    }
    let quick = args.iter().any(|a| a == "quick");
    speed(&[(100, 40), (1000, 40)]);
    println!();
    println!("{:<58} {:>14} {:>10}", "measure", "value", "target");
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

/// Runs `steady` at each (nodes, simulated seconds) in a child process of its own.
fn speed(runs: &[(usize, u64)]) {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    println!("load average before: {}", load.join(" "));
    let exe = std::env::current_exe().expect("the bench's own path");
    for (nodes, seconds) in runs {
        let status = Command::new(&exe)
            .args(["one", &nodes.to_string(), &seconds.to_string()])
            .status();
        if !status.as_ref().is_ok_and(|s| s.success()) {
            println!("steady N={nodes}: the run failed ({status:?})");
        }
    }
}

/// One `steady` run at `nodes` for `seconds` simulated seconds, seed 1, in this process.
fn one(nodes: usize, seconds: u64) {
    let scenario = standard::by_name("steady", nodes)
        .expect("the steady scenario")
        .duration(secs(seconds))
        .traffic_from(secs(STEADY_TRAFFIC_FROM_SECS.min(seconds / 2)));
    let (cpu0, wall0) = (cpu_secs(), Instant::now());
    let report = run(&scenario, 1, &RunOptions::default());
    let (cpu, wall) = (cpu_secs() - cpu0, wall0.elapsed().as_secs_f64());
    let simulated = report.simulated_secs;
    let target = match nodes {
        100 => "target ≥ 1000x",
        1000 => "target ≥ 50x, ≤ 300 MB, ≤ 5000 B/s",
        _ => "target -",
    };
    let traffic = &report.traffic;
    println!(
        "steady N={nodes} seed 1: {simulated:.0} simulated s in {wall:.2} s wall, {cpu:.2} s CPU = \
         {}x real time per CPU s ({}x per wall s); peak RSS {:.0} MB; membership {:.0} B/s \
         per node from {} s ({:.0} SWIM datagrams, {:.0} streams); formed in {:?} s; passed {}; \
         trace #{} ({target})",
        ratio(simulated / cpu.max(1e-9)),
        ratio(simulated / wall.max(1e-9)),
        peak_rss_mb(),
        traffic.membership_bytes_per_node_per_sec,
        STEADY_TRAFFIC_FROM_SECS.min(seconds / 2),
        traffic.datagram_bytes_per_node_per_sec,
        traffic.stream_bytes_per_node_per_sec,
        report
            .measurements
            .convergence
            .first()
            .and_then(|c| c.took_secs),
        report.passed,
        report.trace_hash,
    );
}

/// Trace hashes that a pure optimisation must leave unchanged.
fn hashes() {
    for name in standard::NAMES {
        let scenario = standard::by_name(name, 8).expect("a standard scenario");
        let report = run(&scenario, 42, &RunOptions::default());
        println!("{name:<20} N=8 seed 42  #{}", report.trace_hash);
    }
    let steady = standard::by_name("steady", 100).expect("the steady scenario");
    let report = run(&steady, 1, &RunOptions::default());
    println!("{:<20} N=100 seed 1 #{}", "steady", report.trace_hash);
}

/// CPU time of this thread (the simulator runs on one), in seconds. The thread's CPU clock,
/// not `/proc/thread-self/schedstat`: that file shows the time as of the scheduler's last
/// update, up to a tick (4 ms) stale, a tenth of a 40 ms run at N=100.
fn cpu_secs() -> f64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec it is given.
    let read = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    if read != 0 {
        return 0.0;
    }
    now.tv_sec as f64 + now.tv_nsec as f64 / 1e9
}

/// This process's peak resident set, in MB (VmHWM).
fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
            line.split_whitespace().nth(1)?.parse::<f64>().ok()
        })
        .map_or(0.0, |kb| kb / 1024.0)
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

/// A speed ratio: whole above 10, two decimals below (N=5000 runs at a few hundredths).
fn ratio(x: f64) -> String {
    if x >= 10.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.2}")
    }
}
