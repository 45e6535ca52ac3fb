//! The standard scenarios across several seeds at moderate size, and the determinism check.
//!
//! The large sweep is a separate command (see the crate README section in the report):
//! `cargo run --release -p foundation-sim --example sweep -- partition-heal 100 1..200`.

use foundation_sim::report::RunReport;
use foundation_sim::scenario::{run, standard, RunOptions};
use foundation_sim::sweep::sweep;

const NODES: usize = 16;
const SEEDS: std::ops::Range<u64> = 1..4;

fn check_all_pass(name: &str) {
    let scenario = standard::by_name(name, NODES).expect("a standard scenario");
    let failed: Vec<RunReport> = sweep(&scenario, SEEDS, 0, false)
        .into_iter()
        .filter(|r| !r.passed)
        .collect();
    for r in &failed {
        eprintln!(
            "{name} seed {} failed: {:?} {:?}\nreplay: {}",
            r.seed, r.invariants, r.panic, r.replay
        );
    }
    assert!(failed.is_empty(), "{name}: {} seed(s) failed", failed.len());
}

#[test]
fn steady_holds() {
    check_all_pass("steady");
}

#[test]
fn partition_heal_holds() {
    check_all_pass("partition-heal");
}

#[test]
fn flaky_network_holds() {
    check_all_pass("flaky-network");
}

#[test]
fn crash_restart_holds() {
    check_all_pass("crash-restart");
}

#[test]
fn slow_node_holds() {
    check_all_pass("slow-node");
}

#[test]
fn mass_join_holds() {
    check_all_pass("mass-join");
}

#[test]
fn rolling_restart_holds() {
    let scenario = standard::by_name("rolling-restart", 8).expect("a standard scenario");
    let report = run(&scenario, 1, &RunOptions::default());
    assert!(report.passed, "{:?}", report.invariants);
}

#[test]
fn the_same_seed_gives_the_same_trace_for_every_standard_scenario() {
    for name in standard::NAMES {
        let scenario = standard::by_name(name, 8).expect("a standard scenario");
        let a = run(&scenario, 42, &RunOptions::default());
        let b = run(&scenario, 42, &RunOptions { keep_trace: true });
        assert_eq!(
            a.trace_hash, b.trace_hash,
            "{name}: same seed, different trace"
        );
        assert_eq!(
            b.trace.as_ref().map(|t| t.len() as u64),
            Some(b.trace_lines)
        );
        let c = run(&scenario, 43, &RunOptions::default());
        assert_ne!(
            a.trace_hash, c.trace_hash,
            "{name}: the seed changes nothing"
        );
    }
}
