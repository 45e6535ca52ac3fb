//! What several simulator test files share.

use foundation_sim::report::RunReport;
use foundation_sim::scenario::standard;
use foundation_sim::sweep::sweep;

/// Runs the standard scenario `name` at `nodes` over `seeds` on every core; every run must
/// pass (a failure prints its invariants and the replay command).
pub fn check_all_pass_at(name: &str, nodes: usize, seeds: std::ops::Range<u64>) -> Vec<RunReport> {
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
