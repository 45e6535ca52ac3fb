//! `cache-churn`: partitioned-cache owners move under crashes and restarts while callers on
//! every node compute, write and read skewed keys; over several seeds, no key is computed twice
//! at once under one owner (`cache-single-flight`) and no node serves a value older than an
//! invalidation that reached it (`cache-near-fresh`). The runs must also do what they are for:
//! computations, near hits and invalidations happen. `fault_switches.rs` shows each check fail.

use foundation_sim::cache::run_churn;

#[test]
fn cache_churn_keeps_single_flight_and_near_freshness_over_seeds() {
    for seed in 1..=4 {
        let report = run_churn(seed).expect("runs");
        assert!(report.passed(), "seed {seed}: {:?}", report.violations);
        assert!(report.computes > 20, "seed {seed}: {report:?}");
        assert!(report.near_served > 10, "seed {seed}: {report:?}");
        assert!(report.invalidations > 5, "seed {seed}: {report:?}");
    }
}

#[test]
fn cache_churn_is_deterministic() {
    let a = run_churn(9).expect("runs");
    let b = run_churn(9).expect("runs");
    assert_eq!(format!("{a:?}"), format!("{b:?}"));
}
