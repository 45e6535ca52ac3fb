//! Readings of the host the storage benchmarks share: what an fsync costs on this disk, the
//! process's memory, a directory's size. Included by path from `engine/benches/storage.rs` and
//! the workspace's `benches/durability.rs`.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use super::percentiles::percentiles;

/// Prints what one `fdatasync` costs on this disk, after a small append and with nothing to write.
pub fn fsync_cost(base: &Path, bytes: usize) {
    let path = base.join("fsync-probe");
    let mut file = std::fs::File::create(&path).expect("probe file");
    let rounds = 1_000;
    let record = vec![7u8; bytes];
    let mut appended = Vec::with_capacity(rounds);
    let mut idle = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let start = Instant::now();
        file.write_all(&record).expect("append");
        file.sync_data().expect("sync");
        appended.push(start.elapsed());
        let start = Instant::now();
        file.sync_data().expect("sync");
        idle.push(start.elapsed());
    }
    let in_a_row = rounds as f64 / appended.iter().sum::<Duration>().as_secs_f64();
    let p = percentiles(appended);
    println!(
        "fsync      append {bytes} B + fdatasync: p50 {:?} p99 {:?} ({in_a_row:.0}/s in a row)",
        p.p50, p.p99
    );
    let p = percentiles(idle);
    println!(
        "fsync      fdatasync with nothing to write: p50 {:?} p99 {:?}",
        p.p50, p.p99
    );
}

/// Runs this benchmark's own executable again with `var=task` in its environment (a fresh
/// process, for timings and memory a long-running one would blur), and returns what it did.
pub fn run_child(var: &str, task: &str) -> std::process::Output {
    let exe = std::env::current_exe().expect("own path");
    std::process::Command::new(exe)
        .env(var, task)
        .output()
        .expect("child runs")
}

/// A `/proc/self/status` field in KiB (`"VmRSS:"`, `"VmHWM:"`), or 0 where there is none.
pub fn memory_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|line| line.starts_with(field))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|kib| kib.parse().ok())
        .unwrap_or(0)
}

/// Bytes of every file below `path`.
pub fn dir_bytes(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => dir_bytes(&entry.path()),
            Ok(meta) => meta.len(),
            Err(_) => 0,
        })
        .sum()
}
