//! Percentiles of latency samples, shared by the benchmarks that print them (this file is
//! included with `#[path]` by benchmarks in other crates of the workspace).

use std::time::Duration;

/// The median, 99th percentile and maximum of `n` samples.
pub struct Percentiles {
    pub n: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

/// Nearest-rank percentiles; all zero for no samples.
pub fn percentiles(mut samples: Vec<Duration>) -> Percentiles {
    samples.sort_unstable();
    let n = samples.len();
    if n == 0 {
        return Percentiles {
            n,
            p50: Duration::ZERO,
            p99: Duration::ZERO,
            max: Duration::ZERO,
        };
    }
    let at = |q: f64| samples[((n as f64 * q).ceil() as usize).clamp(1, n) - 1];
    Percentiles {
        n,
        p50: at(0.50),
        p99: at(0.99),
        max: samples[n - 1],
    }
}
