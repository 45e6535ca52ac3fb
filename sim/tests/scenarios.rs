//! The standard scenarios across several seeds at moderate size, and the determinism check.
//!
//! The large sweep is a separate command (see the crate README section in the report):
//! `cargo run --release -p foundation-sim --example sweep -- partition-heal 100 1..200`.

use foundation_sim::invariants::registry::RegistryKind;
use foundation_sim::report::RunReport;
use foundation_sim::scenario::{run, standard, RunOptions};
use foundation_sim::sweep::sweep;

const NODES: usize = 16;
const SEEDS: std::ops::Range<u64> = 1..4;

fn check_all_pass(name: &str) {
    check_all_pass_at(name, NODES, SEEDS);
}

fn check_all_pass_at(name: &str, nodes: usize, seeds: std::ops::Range<u64>) -> Vec<RunReport> {
    let scenario = standard::by_name(name, nodes).expect("a standard scenario");
    let reports = sweep(&scenario, seeds, 0, false);
    let failed: Vec<&RunReport> = reports.iter().filter(|r| !r.passed).collect();
    for r in &failed {
        eprintln!(
            "{name} seed {} failed: {:?} {:?}\nreplay: {}",
            r.seed, r.invariants, r.panic, r.replay
        );
    }
    assert!(failed.is_empty(), "{name}: {} seed(s) failed", failed.len());
    reports
}

/// The registry runs were checked, not skipped: the invariant ran, and registrations and deaths
/// were measured to completion.
fn assert_registry_measured(reports: &[RunReport]) {
    for r in reports {
        assert!(
            r.invariants.iter().any(|i| i.name == "registry-consistent"),
            "seed {}: the registry invariant did not run",
            r.seed
        );
        let done = |kind: RegistryKind| {
            r.measurements
                .registry
                .iter()
                .filter(|m| m.kind == kind && m.took_secs.is_some())
                .count()
        };
        assert!(
            done(RegistryKind::Register) >= 2,
            "seed {}: registrations were not all listed everywhere: {:?}",
            r.seed,
            r.measurements.registry
        );
        assert!(
            done(RegistryKind::Death) >= 2,
            "seed {}: no death was seen to vanish everywhere: {:?}",
            r.seed,
            r.measurements.registry
        );
        assert!(
            r.measurements.registry.iter().all(|m| matches!(
                m.kind,
                RegistryKind::Death | RegistryKind::Reaped
            ) || m.took_secs.is_some()),
            "seed {}: something never settled: {:?}",
            r.seed,
            r.measurements.registry
        );
    }
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
fn registry_partition_holds() {
    let mut reports = check_all_pass_at("registry-partition", 16, 1..3);
    reports.extend(check_all_pass_at("registry-partition", 8, 3..5));
    assert_registry_measured(&reports);
}

#[test]
fn registry_churn_holds() {
    let mut reports = check_all_pass_at("registry-churn", 12, 1..4);
    reports.extend(check_all_pass_at("registry-churn", 8, 4..7));
    reports.extend(check_all_pass_at("registry-churn", 16, 7..8));
    assert_registry_measured(&reports);
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
