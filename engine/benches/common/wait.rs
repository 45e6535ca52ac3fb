//! Waiting for a condition in a benchmark, shared by path between the engine's and the
//! workspace's benches.

use std::time::{Duration, Instant};

/// Waits until `check` holds, polling every millisecond; false after `limit`.
pub async fn wait_until(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    while !check() {
        if started.elapsed() > limit {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    true
}
