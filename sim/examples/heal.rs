//! How long a healed partition takes to merge, over many seeds:
//! `cargo run --release -p foundation-sim --example heal -- 100 1..65` (nodes, seeds).
//! Prints the median and p99 of the time from the heal until every live node agrees on the
//! live set, and whether every run passed its invariants.

use foundation_sim::report::Stats;
use foundation_sim::scenario::standard;
use foundation_sim::sweep::sweep;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let nodes = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(100);
    let seeds: foundation_sim::cli::SeedRange = args
        .get(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(foundation_sim::cli::SeedRange(1..65));
    let Some(scenario) = standard::by_name("partition-heal", nodes) else {
        return;
    };
    let runs = sweep(&scenario, seeds.0, 0, false);
    let heals: Vec<f64> = runs
        .iter()
        .flat_map(|r| &r.measurements.convergence)
        .filter(|c| c.after.contains("heal"))
        .map(|c| c.took_secs.unwrap_or(f64::INFINITY))
        .collect();
    let failed: Vec<u64> = runs.iter().filter(|r| !r.passed).map(|r| r.seed).collect();
    let stats = Stats::of(heals);
    let false_positives: u64 = runs.iter().map(|r| r.measurements.false_positives).sum();
    println!(
        "partition-heal N={nodes}, {} runs: merged after the heal median {:?} s, p99 {:?} s, max {:?} s; false positives {false_positives}; failed seeds {failed:?}",
        runs.len(),
        stats.median,
        stats.p99,
        stats.max
    );
}
