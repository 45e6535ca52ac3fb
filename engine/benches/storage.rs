//! Durable storage on this machine's disk: what fsync costs, durable writes per second through
//! the store's group commit at 1, 16 and 256 writers, and restart time and memory with 100k
//! keys. Prints numbers; nothing here passes or fails.
//!
//! `cargo bench -p foundation-engine --bench storage`. The data goes under the system's
//! temporary directory, or `FOUNDATION_BENCH_DIR` to measure another disk.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "common/host.rs"]
mod host;
#[path = "../../transport/benches/common/percentiles.rs"]
mod percentiles;
use percentiles::percentiles;

use foundation_engine::storage::{
    Batch, DataDir, Disk, FjallDisk, Loaded, StorageError, Store, SyncPolicy,
};

/// Bytes of an encoded entry: about what a small config value with its envelope takes.
const VALUE_BYTES: usize = 128;
/// Keys on disk for the restart figures.
const RESTART_KEYS: usize = 100_000;
/// Durable writes each run aims at, split among its writers.
const WRITES_PER_RUN: usize = 12_000;
/// Environment variable that turns this binary into a child process for one restart figure.
const CHILD: &str = "FOUNDATION_STORAGE_BENCH_CHILD";

fn main() {
    if let Ok(task) = std::env::var(CHILD) {
        return child(&task);
    }
    let base = std::env::var_os("FOUNDATION_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
        .join(format!("foundation-storage-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).expect("bench directory");
    println!(
        "storage benchmark in {} (fjall, sync = always unless noted)",
        base.display()
    );
    host::fsync_cost(&base, VALUE_BYTES);
    for writers in [1, 16, 256] {
        durable_writes(&base, writers, SyncPolicy::Always);
    }
    durable_writes(
        &base,
        256,
        SyncPolicy::Interval(SyncPolicy::DEFAULT_INTERVAL),
    );
    restart(&base);
    let _ = std::fs::remove_dir_all(&base);
}

/// A disk that counts syncs, to show how many writes each one carried.
struct Counting<D> {
    inner: D,
    syncs: Arc<AtomicU64>,
}

impl<D: Disk> Disk for Counting<D> {
    fn write(&mut self, batch: &Batch) -> Result<(), StorageError> {
        self.inner.write(batch)
    }
    fn sync(&mut self) -> Result<(), StorageError> {
        self.syncs.fetch_add(1, Ordering::Relaxed);
        self.inner.sync()
    }
    fn flush(&mut self) -> Result<(), StorageError> {
        self.inner.flush()
    }
    fn load(&mut self) -> Result<Loaded, StorageError> {
        self.inner.load()
    }
}

fn entry(writer: usize, i: usize) -> Batch {
    let mut batch = Batch::new();
    let key = format!("config/writer-{writer:03}/key-{i:06}");
    batch.put_entry("config", key.as_bytes(), &[7u8; VALUE_BYTES]);
    batch
}

/// `writers` threads each submit one-entry batches and wait for each to be durable.
fn durable_writes(base: &Path, writers: usize, policy: SyncPolicy) {
    let data = DataDir::create(base.join(format!("writes-{writers}-{}", policy.name())))
        .expect("data dir");
    let syncs = Arc::new(AtomicU64::new(0));
    let disk = Counting {
        inner: data.open_disk().expect("store opens"),
        syncs: Arc::clone(&syncs),
    };
    let store = Store::new(disk, policy).expect("store starts");
    let per_writer = (WRITES_PER_RUN / writers).max(1);
    let start = Instant::now();
    let latencies: Vec<Duration> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..writers)
            .map(|w| {
                let store = &store;
                scope.spawn(move || {
                    (0..per_writer)
                        .map(|i| {
                            let begun = Instant::now();
                            let receipt = store.submit(entry(w, i)).expect("queued");
                            receipt.wait().expect("durable");
                            begun.elapsed()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("writer"))
            .collect()
    });
    let elapsed = start.elapsed();
    let p = percentiles(latencies);
    let writes = p.n;
    let syncs = syncs.load(Ordering::Relaxed).max(1);
    println!(
        "writes     {writers:>3} writers, sync {policy}: {:>7.0} writes/s, p50 {:?}, p99 {:?}, max {:?}, {:.1} writes per fdatasync",
        writes as f64 / elapsed.as_secs_f64(),
        p.p50,
        p.p99,
        p.max,
        writes as f64 / syncs as f64,
    );
    drop(store);
}

/// Fills a store with 100k keys, then times reopening it and loading everything in a fresh
/// process (so the memory figure is the load's alone), cleanly and after a kill.
fn restart(base: &Path) {
    let dir = base.join("restart");
    let data = DataDir::create(&dir).expect("data dir");
    let store = Store::new(data.open_disk().expect("opens"), SyncPolicy::Always).expect("store");
    let start = Instant::now();
    for chunk in 0..RESTART_KEYS / 1_000 {
        let mut batch = Batch::new();
        for i in 0..1_000 {
            let key = format!("config/key-{:08}", chunk * 1_000 + i);
            batch.put_entry("config", key.as_bytes(), &[7u8; VALUE_BYTES]);
        }
        store
            .submit(batch)
            .expect("queued")
            .wait()
            .expect("durable");
    }
    println!(
        "restart    wrote {RESTART_KEYS} keys in {:?}",
        start.elapsed()
    );
    store.close().expect("closes");
    run_child(&format!("reopen:{}", dir.display()), "after a clean close");
    run_child(&format!("kill:{}", dir.display()), "");
    run_child(&format!("reopen:{}", dir.display()), "after kill -9");
    let bytes = host::dir_bytes(&dir);
    println!(
        "restart    {RESTART_KEYS} keys take {} KiB on disk",
        bytes / 1024
    );
}

fn run_child(task: &str, label: &str) {
    let output = host::run_child(CHILD, task);
    let stdout = String::from_utf8_lossy(&output.stdout);
    for line in stdout.lines() {
        println!("{line} {label}");
    }
}

fn child(task: &str) {
    let Some((what, dir)) = task.split_once(':') else {
        return;
    };
    let data = DataDir::create(dir).expect("data dir");
    match what {
        "reopen" => reopen(&data),
        "kill" => kill_mid_stream(&data),
        _ => {}
    }
}

fn reopen(data: &DataDir) {
    let before = host::memory_kib("VmRSS:");
    let start = Instant::now();
    let mut disk: FjallDisk = data.open_disk().expect("opens");
    let opened = start.elapsed();
    let loaded = disk.load().expect("loads");
    let total = start.elapsed();
    println!(
        "restart    open {opened:?}, open + load {total:?} ({} entries, report: {}), RSS +{} KiB",
        loaded.state.entry_count(),
        loaded.report,
        host::memory_kib("VmRSS:").saturating_sub(before)
    );
}

/// Writes durably, then dies without closing anything, as `kill -9` would.
fn kill_mid_stream(data: &DataDir) {
    let store = Store::new(data.open_disk().expect("opens"), SyncPolicy::Always).expect("store");
    for i in 0..100 {
        store
            .submit(entry(999, i))
            .expect("queued")
            .wait()
            .expect("durable");
    }
    std::process::abort();
}
