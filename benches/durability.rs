//! Durable replicated keyspaces, end to end: durable `set`s per second through the engine API,
//! restart time and memory with 100k keys on disk, what a restarted node is sent to catch up,
//! and how soon a durable write is visible on all of 5 nodes (real processes, and in-process).
//! Prints figures; nothing here passes or fails.
//!
//! `cargo bench --bench durability [-- SECTION…]`, sections `fsync`, `writes`, `restart`,
//! `catchup`, `visible` (all by default). Data goes under the system's temporary directory, or
//! `FOUNDATION_BENCH_DIR` to measure another disk.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../engine/benches/common/host.rs"]
mod host;
#[path = "../transport/benches/common/percentiles.rs"]
mod percentiles;

#[path = "../engine/benches/common/wait.rs"]
mod wait;
use wait::wait_until;

use std::ffi::OsStr;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use foundation_engine::http::{percent_encode, send_json, Method};
use foundation_engine::membership::MemberState;
use foundation_engine::replication::ReplicationConfig;
use foundation_engine::runtime::{Node, NodeSettings, StorageSettings};
use foundation_engine::storage::SyncPolicy;
use foundation_transport::{ClusterName, ClusterSecret, LocalIdentity, NodeId, Trust};
use percentiles::percentiles;
use serde_json::Value;

const SECRET: &str = "durability benchmark secret, long enough";
/// Environment variable that turns this binary into a child process for one restart figure.
const CHILD: &str = "FOUNDATION_DURABILITY_BENCH_CHILD";
/// Keys on disk for the restart figures.
const RESTART_KEYS: usize = 100_000;
/// Keys written before the catch-up node goes down, and ops it misses while down.
const CATCHUP_BASE_KEYS: usize = 5_000;
const CATCHUP_MISSED_OPS: usize = 500;
/// Nodes of the visibility runs, and writes of each figure.
const VISIBLE_NODES: usize = 5;
const VISIBLE_SAMPLES: usize = 500;
const SEQUENTIAL_WRITES: usize = 2_000;

fn main() {
    if let Ok(task) = std::env::var(CHILD) {
        return child(&task);
    }
    let wanted: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let run = |section: &str| wanted.is_empty() || wanted.iter().any(|w| w == section);
    let base = std::env::var_os("FOUNDATION_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
        .join(format!(
            "foundation-durability-bench-{}",
            std::process::id()
        ));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).expect("bench directory");
    println!(
        "durability benchmark in {} ({} cores, load {})",
        base.display(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_average()
    );
    if run("fsync") {
        host::fsync_cost(&base, 128);
    }
    if run("writes") {
        let runtime = runtime();
        for sync in [SyncPolicy::Always, SyncPolicy::Never] {
            for writers in [1, 16, 256] {
                runtime.block_on(durable_writes(&base, writers, sync));
            }
        }
    }
    if run("restart") {
        restart(&base);
    }
    if run("catchup") {
        runtime().block_on(catch_up(&base));
    }
    if run("visible") {
        for sync in [SyncPolicy::Always, SyncPolicy::Never] {
            visible_processes(&base, sync);
        }
        for (sync, replicas) in [
            (SyncPolicy::Always, SyncPolicy::Always),
            (SyncPolicy::Always, SyncPolicy::Never),
            (SyncPolicy::Never, SyncPolicy::Never),
        ] {
            runtime().block_on(visible_in_process(&base, sync, replicas));
        }
    }
    let _ = std::fs::remove_dir_all(&base);
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".to_owned())
}

// ---------------------------------------------------------------------------------------------
// In-process nodes.

fn settings(
    id: NodeId,
    data_dir: Option<&Path>,
    sync: SyncPolicy,
    seeds: Vec<SocketAddr>,
    replication: ReplicationConfig,
) -> NodeSettings {
    let identity = LocalIdentity {
        id,
        cluster: ClusterName::new("durability-bench").expect("valid cluster name"),
    };
    let trust = Trust::Secret(ClusterSecret::new(SECRET).expect("secret long enough"));
    NodeSettings {
        seeds,
        replication,
        storage: data_dir.map(|dir| StorageSettings {
            data_dir: dir.to_owned(),
            sync,
        }),
        ..NodeSettings::new(identity, trust)
    }
}

/// Limits raised so one keyspace (the config's, the one the public API writes) holds 100k keys:
/// the defaults are 10,000 keys and 2 MiB per keyspace.
fn big_keyspaces() -> ReplicationConfig {
    ReplicationConfig {
        keyspace_keys_max: 250_000,
        keyspace_bytes_max: 64 * 1024 * 1024,
        ..ReplicationConfig::default()
    }
}

/// `n` durable nodes (data in `base/name-i`) that all see each other alive; the first syncs
/// under `sync`, the others under `replicas`.
async fn cluster(
    base: &Path,
    name: &str,
    n: usize,
    sync: SyncPolicy,
    replicas: SyncPolicy,
) -> Vec<Node> {
    let dir = |i: usize| base.join(format!("{name}-{i}"));
    let seed = Node::start(settings(
        NodeId::random(),
        Some(&dir(0)),
        sync,
        vec![],
        ReplicationConfig::default(),
    ))
    .await
    .expect("seed starts");
    let mut nodes = vec![seed.clone()];
    for i in 1..n {
        let node = Node::start(settings(
            NodeId::random(),
            Some(&dir(i)),
            replicas,
            vec![seed.addr()],
            ReplicationConfig::default(),
        ))
        .await
        .expect("node starts");
        nodes.push(node);
    }
    let all_alive = || {
        nodes.iter().all(|node| {
            node.members()
                .iter()
                .filter(|m| m.state == MemberState::Alive)
                .count()
                == n - 1
        })
    };
    assert!(
        wait_until(Duration::from_secs(30), all_alive).await,
        "{n} nodes did not all see each other alive within 30 s"
    );
    nodes
}

// ---------------------------------------------------------------------------------------------
// fsync.

// ---------------------------------------------------------------------------------------------
// Durable writes through the engine API.

/// `writers` tasks each `config().set(...)` one key after another on one node whose keyspaces
/// are on disk under `sync`; each set returns once its batch is durable under the policy.
async fn durable_writes(base: &Path, writers: usize, sync: SyncPolicy) {
    let dir = base.join(format!("writes-{writers}-{}", sync.name()));
    let node = Node::start(settings(
        NodeId::random(),
        Some(&dir),
        sync,
        vec![],
        ReplicationConfig::default(),
    ))
    .await
    .expect("node starts");
    let config = node.config();
    for i in 0..200u32 {
        config
            .set(&format!("warm.{}", i % 8), i)
            .await
            .expect("set");
    }
    let total = if writers == 1 { 4_000 } else { 25_600 };
    let per_writer = total / writers;
    let started = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let config = config.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(per_writer);
                for i in 0..per_writer {
                    let key = format!("w{w:03}.{}", i % 16);
                    let begun = Instant::now();
                    config.set(&key, i).await.expect("durable set");
                    latencies.push(begun.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(total);
    for task in tasks {
        latencies.extend(task.await.expect("writer"));
    }
    let elapsed = started.elapsed();
    let p = percentiles(latencies);
    println!(
        "writes     {writers:>3} writers, sync {:<6}: {:>6.0} sets/s, p50 {:>9?} p99 {:>9?} max {:>9?} ({} sets)",
        sync.name(),
        p.n as f64 / elapsed.as_secs_f64(),
        p.p50,
        p.p99,
        p.max,
        p.n
    );
    node.abort().await;
}

// ---------------------------------------------------------------------------------------------
// Restart with 100k keys.

/// Fills a durable node with 100k keys, stops it, and times starting a node on that directory
/// in a fresh process (so the memory figure is the start's alone); an empty directory for
/// comparison.
fn restart(base: &Path) {
    let dir = base.join("restart");
    let id = NodeId::random();
    let filled = runtime().block_on(async {
        let node = Node::start(settings(
            id,
            Some(&dir),
            SyncPolicy::Always,
            vec![],
            big_keyspaces(),
        ))
        .await
        .expect("node starts");
        let started = Instant::now();
        let writers = 256;
        let tasks: Vec<_> = (0..writers)
            .map(|w| {
                let config = node.config();
                tokio::spawn(async move {
                    for i in (w..RESTART_KEYS).step_by(writers) {
                        config
                            .set(&restart_key(i), restart_value(i))
                            .await
                            .expect("set");
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("writer");
        }
        let elapsed = started.elapsed();
        let keys = node.config().snapshot().len();
        node.leave().await;
        (elapsed, keys)
    });
    println!(
        "restart    wrote {} keys ({} B values) with 256 writers, sync always, in {:.2?}; {} KiB on disk",
        filled.1,
        restart_value(0).len(),
        filled.0,
        host::dir_bytes(&dir) / 1024
    );
    println!("restart    (limits raised for this: keyspace_keys_max 250,000, keyspace_bytes_max 64 MiB; one keyspace, `config`)");
    let empty = base.join("restart-empty");
    run_child(
        &format!("start:{}:{}", id, empty.display()),
        "empty data dir",
    );
    for round in 1..=2 {
        run_child(
            &format!("start:{}:{}", id, dir.display()),
            &format!("100k keys, run {round}"),
        );
    }
}

fn restart_key(i: usize) -> String {
    format!("restart.key-{i:06}")
}

fn restart_value(i: usize) -> String {
    format!("value-{i:06}-{}", "x".repeat(40))
}

fn run_child(task: &str, label: &str) {
    let output = host::run_child(CHILD, task);
    let text = String::from_utf8_lossy(&output.stdout);
    if output.status.success() {
        println!("restart    {label}: {}", text.trim());
    } else {
        println!(
            "restart    {label}: FAILED {} {}",
            text.trim(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
}

/// In a child process: start a node on the directory, report how long `Node::start` took, the
/// keys it came back with, and the process's memory.
fn child(task: &str) {
    let Some(rest) = task.strip_prefix("start:") else {
        eprintln!("unknown child task {task:?}");
        std::process::exit(2);
    };
    let Some((id, dir)) = rest.split_once(':') else {
        std::process::exit(2);
    };
    let id: NodeId = id.parse().expect("node id");
    let rss_before = host::memory_kib("VmRSS:");
    let runtime = runtime();
    runtime.block_on(async {
        let started = Instant::now();
        let node = Node::start(settings(
            id,
            Some(Path::new(dir)),
            SyncPolicy::Always,
            vec![],
            big_keyspaces(),
        ))
        .await
        .expect("node starts");
        let took = started.elapsed();
        let rss = host::memory_kib("VmRSS:");
        let peak = host::memory_kib("VmHWM:");
        let present = (0..RESTART_KEYS)
            .filter(|&i| node.config().get_raw(&restart_key(i)).is_some())
            .count();
        println!(
            "Node::start {took:.2?}, {present} keys back, RSS {} MiB after start (peak {} MiB, {} MiB before)",
            rss / 1024,
            peak / 1024,
            rss_before / 1024
        );
        node.abort().await;
    });
}

// ---------------------------------------------------------------------------------------------
// Catch-up after a restart.

/// The value of the metric whose line starts with `prefix`, 0 if none.
fn metric(node: &Node, prefix: &str) -> u64 {
    let mut text = String::new();
    if prometheus_client::encoding::text::encode(&mut text, node.registry()).is_err() {
        return 0;
    }
    text.lines()
        .find_map(|line| line.strip_prefix(prefix)?.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

/// Payload bytes `node` received on `channel` (transport metrics).
fn received_bytes(node: &Node, channel: &str) -> u64 {
    let mut text = String::new();
    if prometheus_client::encoding::text::encode(&mut text, node.registry()).is_err() {
        return 0;
    }
    text.lines()
        .filter(|line| line.starts_with("foundation_transport_traffic_bytes_total{"))
        .filter(|line| {
            line.contains(&format!("channel=\"{channel}\""))
                && line.contains("direction=\"received\"")
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

/// Three durable nodes; C stops (as a crash) while A takes `CATCHUP_MISSED_OPS` writes, then
/// comes back with its data, and again without it: what the peers send it until it holds what
/// A holds.
async fn catch_up(base: &Path) {
    let nodes = cluster(base, "catchup", 3, SyncPolicy::Always, SyncPolicy::Always).await;
    let a = nodes[0].clone();
    let value = |i: usize, round: u32| format!("v{round}-{i:05}-{}", "y".repeat(32));
    for i in 0..CATCHUP_BASE_KEYS {
        a.config()
            .set(&format!("catchup.{i:05}"), value(i, 0))
            .await
            .expect("set");
    }
    let same_as_a = |node: &Node| node.config().snapshot() == a.config().snapshot();
    assert!(
        wait_until(Duration::from_secs(30), || nodes.iter().all(same_as_a)).await,
        "the base keys did not reach every node"
    );
    let c = nodes[2].clone();
    let c_id = c.id();
    let c_dir = base.join("catchup-2");
    c.abort().await;
    let c_gone = || {
        a.members()
            .iter()
            .any(|m| m.id == c_id && m.state != MemberState::Alive)
    };
    assert!(
        wait_until(Duration::from_secs(30), c_gone).await,
        "a never saw c down"
    );
    let mut missed_payload = 0;
    for i in 0..CATCHUP_MISSED_OPS {
        let key = format!("catchup.{i:05}");
        let v = value(i, 1);
        // The op's key and value as JSON: what a replica must at least be sent.
        missed_payload += key.len() + v.len() + 2;
        a.config().set(&key, v).await.expect("set");
    }
    let full_payload: usize = a
        .config()
        .snapshot()
        .iter()
        .map(|(k, v)| k.len() + v.to_string().len())
        .sum();
    println!(
        "catchup    3 nodes, {CATCHUP_BASE_KEYS} keys; c down while {CATCHUP_MISSED_OPS} ops happen: {:.1} kB of keys and values missed, {:.1} kB in the whole keyspace",
        missed_payload as f64 / 1e3,
        full_payload as f64 / 1e3
    );
    // What c must end up with: a's every key and value.
    let expected: Vec<(String, Vec<u8>)> = (0..CATCHUP_BASE_KEYS)
        .map(|i| {
            let key = format!("catchup.{i:05}");
            let value = a.config().get_raw(&key).expect("a holds every key");
            (key, value)
        })
        .collect();
    for (label, dir) in [
        ("with its data   ", c_dir.clone()),
        ("without its data", base.join("catchup-2-empty")),
    ] {
        let started = Instant::now();
        let c = Node::start(settings(
            c_id,
            Some(&dir),
            SyncPolicy::Always,
            vec![a.addr()],
            ReplicationConfig::default(),
        ))
        .await
        .expect("c restarts");
        let keys_at_start = c.config().snapshot().len();
        let caught_up = wait_until(Duration::from_secs(30), || {
            expected
                .iter()
                .all(|(key, value)| c.config().get_raw(key).as_ref() == Some(value))
        })
        .await;
        let took = started.elapsed();
        let replication = received_bytes(&c, "replication");
        let bulk = received_bytes(&c, "bulk");
        let membership = received_bytes(&c, "membership");
        println!(
            "catchup    c back {label}: {keys_at_start:>5} keys at start, {} in {took:.2?}; received {:.1} kB replication + {:.1} kB bulk ({:.1}× the missed ops' bytes), {:.1} kB membership",
            if caught_up { "caught up" } else { "NOT caught up" },
            replication as f64 / 1e3,
            bulk as f64 / 1e3,
            (replication + bulk) as f64 / missed_payload as f64,
            membership as f64 / 1e3
        );
        // The replication counters are refreshed once a second: read them after one refresh.
        tokio::time::sleep(Duration::from_millis(1_200)).await;
        let counter = |name: &str| metric(&c, &format!("foundation_replication_{name}_total "));
        println!(
            "catchup    c back {label}: then {} ops applied, {} duplicate ops, {} full states merged",
            counter("ops_applied"),
            counter("duplicate_ops"),
            counter("full_states_merged")
        );
        c.abort().await;
        // Let a and b see it go before the next life comes.
        assert!(wait_until(Duration::from_secs(30), c_gone).await);
    }
    for node in &nodes[..2] {
        node.abort().await;
    }
}

// ---------------------------------------------------------------------------------------------
// Write to visible on 5 nodes.

/// Five `foundation node` processes with their keyspaces on disk under `sync`; writes go to one
/// of them over HTTP (answered once durable there). After each write's answer, every node is
/// read (`GET /config`) until all hold it: the figure is from the write's start to the read
/// that found the last node holding it, an upper bound (it includes up to five reads).
fn visible_processes(base: &Path, sync: SyncPolicy) {
    let dir = base.join(format!("visible-processes-{}", sync.name()));
    std::fs::create_dir_all(&dir).expect("dir");
    let cluster = format!("durability-bench-{}-{}", std::process::id(), sync.name());
    let nodes: Vec<common::NodeProcess> = (0..VISIBLE_NODES)
        .map(|i| {
            let data = dir.join(format!("data-{i}"));
            let args = [OsStr::new("--data-dir"), data.as_os_str()];
            let env = [
                ("FOUNDATION_STORAGE", "disk"),
                ("FOUNDATION_SYNC", sync.name()),
            ];
            common::start_with(&dir, &cluster, &format!("n{i}"), None, &args, &env)
        })
        .collect();
    let limit = Instant::now() + Duration::from_secs(30);
    while !nodes
        .iter()
        .all(|n| common::alive_peers(n) == VISIBLE_NODES - 1)
    {
        assert!(Instant::now() < limit, "5 processes did not cluster");
        std::thread::sleep(Duration::from_millis(50));
    }
    let http: Vec<SocketAddr> = nodes.iter().map(|n| n.http).collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let put = |key: &str, value: u64| {
        let path = format!("/config/{}", percent_encode(key));
        runtime
            .block_on(send_json(
                http[0],
                Method::PUT,
                &path,
                Some(&Value::from(value)),
                Duration::from_secs(5),
            ))
            .expect("durable set");
    };
    let mut reads = Vec::new();
    let mut read_vis = |addr: SocketAddr| {
        let begun = Instant::now();
        let answer = runtime.block_on(foundation_engine::http::get_json(
            addr,
            "/config",
            Duration::from_secs(2),
        ));
        reads.push(begun.elapsed());
        answer.ok().and_then(|a| a["vis"].as_u64())
    };
    let mut acked = Vec::new();
    let mut visible = Vec::new();
    let mut missed = 0;
    for i in 1..=(VISIBLE_SAMPLES as u64 + 20) {
        let begun = Instant::now();
        put("vis", i);
        let answered = begun.elapsed();
        let mut pending: Vec<SocketAddr> = http.clone();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !pending.is_empty() && Instant::now() < deadline {
            pending.retain(|addr| read_vis(*addr).is_none_or(|v| v < i));
        }
        if i > 20 {
            acked.push(answered);
            if pending.is_empty() {
                visible.push(begun.elapsed());
            } else {
                missed += 1;
            }
        }
    }
    let acks = percentiles(acked);
    let read = percentiles(reads);
    let p = percentiles(visible);
    println!(
        "visible    5 processes, sync {:<6}, HTTP: set answered p50 {:?} p99 {:?}; on all 5 p50 {:?} p99 {:?} max {:?} ({} writes, {missed} not within 5 s; one read p50 {:?})",
        sync.name(), acks.p50, acks.p99, p.p50, p.p99, p.max, p.n, read.p50
    );

    // 2,000 sequential durable writes, then until every node holds all of them.
    let started = Instant::now();
    for i in 0..SEQUENTIAL_WRITES {
        put(&format!("seq.{i:05}"), i as u64);
    }
    let written = started.elapsed();
    let holds_all = |addr: SocketAddr| {
        common::config_snapshot(addr)
            .is_some_and(|s| (0..SEQUENTIAL_WRITES).all(|i| s.contains_key(&format!("seq.{i:05}"))))
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut pending: Vec<SocketAddr> = http.clone();
    while !pending.is_empty() && Instant::now() < deadline {
        pending.retain(|addr| !holds_all(*addr));
    }
    println!(
        "visible    5 processes, sync {:<6}: {SEQUENTIAL_WRITES} sequential HTTP sets answered in {written:.2?}, on all 5 in {:.2?}{}",
        sync.name(),
        started.elapsed(),
        if pending.is_empty() { "" } else { " (NOT all nodes within 30 s)" }
    );
    drop(nodes);
}

/// Five in-process nodes with their keyspaces on disk, the writer's under `sync`, the others'
/// under `replicas`: a `set` on one, and a config watch on each of the others seeing it.
/// (All five share this machine's one disk: with `replicas = never`, the writer's syncs do
/// not queue behind the replicas', as on machines with a disk each.)
async fn visible_in_process(base: &Path, sync: SyncPolicy, replicas: SyncPolicy) {
    let name = format!("visible-{}-{}", sync.name(), replicas.name());
    let nodes = cluster(base, &name, VISIBLE_NODES, sync, replicas).await;
    let label = format!("writer sync {}, replicas {}", sync.name(), replicas.name());
    let mut watches: Vec<_> = nodes[1..].iter().map(|n| n.config().watch("vis")).collect();
    let writer = nodes[0].config();
    let mut acked = Vec::new();
    let mut visible = Vec::new();
    for i in 0..(VISIBLE_SAMPLES as u64 + 20) {
        let begun = Instant::now();
        writer.set("vis", i).await.expect("durable set");
        let answered = begun.elapsed();
        for watch in &mut watches {
            loop {
                let change = tokio::time::timeout(Duration::from_secs(5), watch.next())
                    .await
                    .expect("seen within 5 s")
                    .expect("node running");
                if change.new.as_ref().and_then(Value::as_u64) == Some(i) {
                    break;
                }
            }
        }
        if i >= 20 {
            acked.push(answered);
            visible.push(begun.elapsed());
        }
    }
    let acks = percentiles(acked);
    let p = percentiles(visible);
    println!(
        "visible    5 in-process nodes, {label}, engine API: set answered p50 {:?} p99 {:?}; on all 5 p50 {:?} p99 {:?} max {:?} ({} writes)",
        acks.p50, acks.p99, p.p50, p.p99, p.max, p.n
    );
    let started = Instant::now();
    for i in 0..SEQUENTIAL_WRITES {
        writer.set(&format!("seq.{i:05}"), i).await.expect("set");
    }
    let written = started.elapsed();
    let everywhere = wait_until(Duration::from_secs(30), || {
        nodes.iter().all(|n| {
            (0..SEQUENTIAL_WRITES).all(|i| n.config().get_raw(&format!("seq.{i:05}")).is_some())
        })
    })
    .await;
    println!(
        "visible    5 in-process nodes, {label}: {SEQUENTIAL_WRITES} sequential sets answered in {written:.2?}, on all 5 in {:.2?}{}",
        started.elapsed(),
        if everywhere { "" } else { " (NOT everywhere within 30 s)" }
    );
    for node in &nodes {
        node.abort().await;
    }
}
