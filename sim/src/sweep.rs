//! Many seeds of one scenario on every core: one world per thread, one seed at a time.
//!
//! Threads take the next seed from a shared counter, so which thread runs which seed varies —
//! but each run is deterministic on its own and the results are sorted by seed, so the outcome
//! does not.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::report::RunReport;
use crate::scenario::{run, RunOptions, Scenario};

/// Runs `scenario` for every seed in `seeds` on `threads` threads (0: every core). With
/// `trace_failures`, a failed seed is run once more keeping its trace — the same seed gives the
/// same run, so that trace is the failure's.
pub fn sweep(
    scenario: &Scenario,
    seeds: Range<u64>,
    threads: usize,
    trace_failures: bool,
) -> Vec<RunReport> {
    let mut reports = sweep_with(seeds, threads, |seed| {
        run(scenario, seed, &RunOptions::default())
    });
    if trace_failures {
        for report in reports.iter_mut().filter(|r| !r.passed) {
            *report = run(
                scenario,
                report.seed,
                &RunOptions {
                    keep_trace: true,
                    ..RunOptions::default()
                },
            );
        }
    }
    reports
}

/// Runs `run_one` for every seed in `seeds` on `threads` threads (0: every core); the reports
/// sorted by seed.
pub fn sweep_with(
    seeds: Range<u64>,
    threads: usize,
    run_one: impl Fn(u64) -> RunReport + Sync,
) -> Vec<RunReport> {
    let threads = match threads {
        0 => std::thread::available_parallelism().map_or(1, usize::from),
        n => n,
    };
    let next = AtomicU64::new(seeds.start);
    let results = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..threads
            .min(seeds.end.saturating_sub(seeds.start) as usize)
            .max(1)
        {
            scope.spawn(|| loop {
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if seed >= seeds.end {
                    return;
                }
                let report = run_one(seed);
                // A poisoned lock only means another run panicked outside catch_unwind; keep going.
                results
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(report);
            });
        }
    });
    let mut reports = results.into_inner().unwrap_or_else(|e| e.into_inner());
    reports.sort_by_key(|r| r.seed);
    reports
}
