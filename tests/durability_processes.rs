//! Durable keyspaces with real `foundation node` processes on loopback: kill -9 every node in
//! the middle of a stream of writes and start them all again on their data directories; restart
//! one node alone and see it come back with its data and catch up on what it missed.
//!
//! What must survive: every `set` with a majority that was answered with success (it is on the
//! disks of a majority), and, with `sync = always`, every plain `set` that was answered (it is
//! on its writer's disk).

mod common;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{alive_peers, config_snapshot, eventually, scratch_dir, start_with, NodeProcess};
use foundation::engine::http::{percent_encode, send_json, Method};
use serde_json::Value;

/// Keys each writer cycles through, so most keys are written several times.
const KEYS_PER_WRITER: u64 = 40;
/// How long writes stream before every node is killed.
const STREAM: Duration = Duration::from_millis(2500);

/// Starts (or restarts, given its id) a node that keeps its keyspaces in `data_dir` and syncs
/// every write.
fn durable_node(
    runtime_dir: &Path,
    cluster: &str,
    name: &str,
    data_dir: &Path,
    node_id: Option<&str>,
) -> NodeProcess {
    let args = [OsStr::new("--data-dir"), data_dir.as_os_str()];
    let env = [
        ("FOUNDATION_STORAGE", "disk"),
        ("FOUNDATION_SYNC", "always"),
    ];
    start_with(runtime_dir, cluster, name, node_id, &args, &env)
}

/// `PUT /config/{key}` with `value`, waiting for a majority if `majority` is set; true once the
/// node answered with success.
fn put(
    runtime: &tokio::runtime::Runtime,
    http: SocketAddr,
    key: &str,
    value: u64,
    majority: bool,
) -> bool {
    let mut path = format!("/config/{}", percent_encode(key));
    if majority {
        path.push_str("?majority_ms=3000");
    }
    let answer = runtime.block_on(send_json(
        http,
        Method::PUT,
        &path,
        Some(&Value::from(value)),
        Duration::from_secs(5),
    ));
    answer.is_ok()
}

/// What one writer had confirmed: per key, the last value whose write returned success.
struct Confirmed {
    writer: String,
    majority: bool,
    last: BTreeMap<String, u64>,
    answered: usize,
    failed: usize,
}

/// Writes `w{n}.k{i % KEYS}` = i, i = 1, 2, … to `http` until `stop`, one write at a time.
fn writer(
    n: usize,
    http: SocketAddr,
    majority: bool,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Confirmed> {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut confirmed = Confirmed {
            writer: format!(
                "w{n} ({} via {http})",
                if majority { "majority" } else { "plain" }
            ),
            majority,
            last: BTreeMap::new(),
            answered: 0,
            failed: 0,
        };
        let mut i = 0;
        while !stop.load(Ordering::SeqCst) {
            i += 1;
            let key = format!("w{n}.k{}", i % KEYS_PER_WRITER);
            if put(&runtime, http, &key, i, majority) {
                confirmed.last.insert(key, i);
                confirmed.answered += 1;
            } else {
                confirmed.failed += 1;
                // The node is gone (killed): nothing more will be answered.
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        confirmed
    })
}

/// The confirmed writes `snapshot` lacks: the key is absent, or holds an earlier value than the
/// last one confirmed (each key has one writer, whose values grow).
fn missing(confirmed: &[Confirmed], snapshot: &BTreeMap<String, Value>) -> Vec<String> {
    let mut missing = Vec::new();
    for writer in confirmed {
        for (key, &value) in &writer.last {
            let held = snapshot.get(key).and_then(Value::as_u64);
            if held.is_none_or(|held| held < value) {
                missing.push(format!(
                    "{key}: confirmed {value} by {}, holds {held:?}",
                    writer.writer
                ));
            }
        }
    }
    missing
}

fn wait_for_cluster(nodes: &[NodeProcess]) {
    let peers = nodes.len() - 1;
    for node in nodes {
        eventually(
            Duration::from_secs(20),
            "every node sees every other alive",
            || alive_peers(node) == peers,
        );
    }
}

#[test]
fn every_confirmed_write_survives_kill_9_of_the_whole_cluster() {
    let dir = scratch_dir("durable-all");
    let cluster = format!("durable-all-{}", std::process::id());
    let names = ["a", "b", "c", "d", "e"];
    let data = |name: &str| dir.join(format!("data-{name}"));
    let mut nodes: Vec<NodeProcess> = names
        .iter()
        .map(|name| durable_node(&dir, &cluster, name, &data(name), None))
        .collect();
    wait_for_cluster(&nodes);

    // Two writers per node: one waits for a majority, one does plain sets.
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..2 * nodes.len())
        .map(|n| writer(n, nodes[n / 2].http, n % 2 == 0, stop.clone()))
        .collect();
    std::thread::sleep(STREAM);
    // kill -9 all five, back to back, while the writers are still writing.
    for node in &mut nodes {
        let _ = node.child.kill();
    }
    stop.store(true, Ordering::SeqCst);
    for node in &mut nodes {
        node.kill();
    }
    let confirmed: Vec<Confirmed> = writers.into_iter().map(|w| w.join().unwrap()).collect();
    for writer in &confirmed {
        eprintln!(
            "{}: {} writes confirmed, {} not, {} keys",
            writer.writer,
            writer.answered,
            writer.failed,
            writer.last.len()
        );
        assert!(
            writer.answered >= 20,
            "{} confirmed only {} writes: the stream did not run",
            writer.writer,
            writer.answered
        );
    }
    assert!(confirmed.iter().any(|w| w.majority) && confirmed.iter().any(|w| !w.majority));

    let ids: Vec<String> = nodes.iter().map(|n| n.id.clone()).collect();
    drop(nodes);
    let nodes: Vec<NodeProcess> = names
        .iter()
        .zip(&ids)
        .map(|(name, id)| durable_node(&dir, &cluster, name, &data(name), Some(id)))
        .collect();
    wait_for_cluster(&nodes);
    for (node, name) in nodes.iter().zip(names) {
        let mut last = Vec::new();
        let converged = (0..150).any(|_| {
            last = config_snapshot(node.http).map_or_else(
                || vec!["no answer".to_owned()],
                |snapshot| missing(&confirmed, &snapshot),
            );
            last.is_empty() || {
                std::thread::sleep(Duration::from_millis(100));
                false
            }
        });
        assert!(
            converged,
            "node {name} lacks {} confirmed writes after the restart, e.g. {:?}",
            last.len(),
            &last[..last.len().min(5)]
        );
    }
    drop(nodes);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_node_restarted_alone_comes_back_with_its_data_and_catches_up() {
    let dir = scratch_dir("durable-one");
    let cluster = format!("durable-one-{}", std::process::id());
    let data = |name: &str| dir.join(format!("data-{name}"));
    let mut nodes: Vec<NodeProcess> = ["a", "b", "c"]
        .iter()
        .map(|name| durable_node(&dir, &cluster, name, &data(name), None))
        .collect();
    wait_for_cluster(&nodes);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let a = nodes[0].http;
    for i in 0..100 {
        assert!(
            put(&runtime, a, &format!("before.{i}"), i, true),
            "before.{i}"
        );
    }
    let holds = |snapshot: &BTreeMap<String, Value>, key: &str, value: u64| {
        snapshot.get(key).and_then(Value::as_u64) == Some(value)
    };
    let before_all = |snapshot: &BTreeMap<String, Value>, from: u64| {
        (from..100).all(|i| holds(snapshot, &format!("before.{i}"), i))
    };
    eventually(Duration::from_secs(10), "c holds the first writes", || {
        config_snapshot(nodes[2].http).is_some_and(|s| before_all(&s, 0))
    });
    // A replica shows a peer's write as soon as it applies it; only its acknowledgements wait
    // for the batch to be synced. Give c's store the moment it needs to sync what it shows
    // (under load, a kill right away caught the last batch unsynced).
    std::thread::sleep(Duration::from_secs(1));

    let mut c = nodes.pop().unwrap();
    let c_id = c.id.clone();
    c.kill();
    drop(c);
    for i in 0..100 {
        assert!(put(&runtime, a, &format!("during.{i}"), 1000 + i, false));
    }
    assert!(put(&runtime, a, "before.0", 5000, true));

    // c alone first (its discovery directory holds no one else): what it has is what its
    // disk had.
    let alone = dir.join("alone");
    std::fs::create_dir_all(&alone).unwrap();
    let c = durable_node(&alone, &cluster, "c", &data("c"), Some(&c_id));
    let snapshot = config_snapshot(c.http).expect("c answers");
    assert_eq!(alive_peers(&c), 0, "c is on its own");
    assert!(
        before_all(&snapshot, 0),
        "c came back without its data: {} keys",
        snapshot.len()
    );
    assert!(!snapshot.keys().any(|k| k.starts_with("during.")));
    drop(c);

    // Back among its peers, it catches up on what it missed.
    let c = durable_node(&dir, &cluster, "c", &data("c"), Some(&c_id));
    eventually(Duration::from_secs(20), "c catches up", || {
        config_snapshot(c.http).is_some_and(|s| {
            before_all(&s, 1)
                && holds(&s, "before.0", 5000)
                && (0..100).all(|i| holds(&s, &format!("during.{i}"), 1000 + i))
        })
    });
    // Its clock moved past what it stored and caught up on: its new write wins everywhere.
    assert!(put(&runtime, c.http, "during.0", 9000, true));
    for node in &nodes {
        eventually(Duration::from_secs(10), "c's new write spreads", || {
            config_snapshot(node.http).is_some_and(|s| holds(&s, "during.0", 9000))
        });
    }
    drop(c);
    drop(nodes);
    let _ = std::fs::remove_dir_all(&dir);
}
