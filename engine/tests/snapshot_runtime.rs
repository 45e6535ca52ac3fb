//! Snapshots through real nodes on loopback: `GET /snapshot` from one cluster, `POST
//! /snapshot` into another, replication spreading the merge, newer values kept, damaged files
//! refused with nothing changed, and a restore that survives a restart.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use common::{cluster, eventually, raw_http, settings};
use foundation_agents::variable::{Policy, VarType, VarValue};
use foundation_engine::http::{get_bytes, get_json, post_file, send_bytes, HttpError, Method};
use foundation_engine::replication::{Snapshot, SNAPSHOT_BYTES_MAX};
use foundation_engine::runtime::{Node, NodeSettings, StorageSettings};
use foundation_engine::storage::SyncPolicy;
use foundation_engine::vars::VarSpec;
use foundation_transport::NodeId;
use serde_json::json;

const SECRET: &str = "snapshot-test-secret-0123456789";
const LIMIT: Duration = Duration::from_secs(10);

/// `n` nodes of `cluster`, the first serving HTTP.
async fn nodes(name: &'static str, n: usize) -> (Vec<Node>, SocketAddr) {
    let first_http = std::sync::atomic::AtomicBool::new(true);
    let nodes = cluster(n, |seeds| NodeSettings {
        http: first_http
            .swap(false, std::sync::atomic::Ordering::SeqCst)
            .then(|| "127.0.0.1:0".parse().unwrap()),
        ..settings(name, SECRET, seeds)
    })
    .await;
    let http = nodes[0].http_addr().expect("the first node serves HTTP");
    (nodes, http)
}

async fn save(http: SocketAddr) -> Bytes {
    get_bytes(http, "/snapshot", SNAPSHOT_BYTES_MAX, LIMIT)
        .await
        .expect("GET /snapshot")
}

async fn restore(http: SocketAddr, bytes: Bytes) -> Result<serde_json::Value, HttpError> {
    post_file(http, "/snapshot", bytes, LIMIT).await
}

fn status(result: Result<serde_json::Value, HttpError>) -> (u16, String) {
    match result {
        Err(HttpError::Status { status, body, .. }) => (status, body),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn lww_spec() -> VarSpec {
    VarSpec {
        ty: VarType::Int { min: 0, max: 100 },
        policy: Policy::Lww,
        initial: VarValue::Int(0),
        acceptors: Default::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_restored_into_another_cluster_spreads_and_keeps_newer_values() {
    let (a, a_http) = nodes("snap-a", 2).await;
    let config = a[0].config();
    config.set("limits.rps", 500).await.unwrap();
    config.set("checkout", true).await.unwrap();
    config.set("gone", 1).await.unwrap();
    config.delete("gone").await.unwrap();
    a[0].vars().declare("mode", lww_spec()).await.unwrap();
    a[0].vars().set("mode", VarValue::Int(42)).await.unwrap();
    a[0].services()
        .register(
            "billing",
            foundation_engine::runtime::services::typed(|x: u64| async move {
                Ok::<_, foundation_engine::runtime::services::HandlerError>(x)
            }),
            Default::default(),
        )
        .await
        .unwrap();
    let bytes = save(a_http).await;
    let snapshot = Snapshot::decode(&bytes).expect("the node's snapshot checks");
    let names: Vec<&str> = snapshot.keyspaces.iter().map(|k| k.name.as_str()).collect();
    assert!(
        names.contains(&"config") && names.contains(&"vars.lww"),
        "{names:?}"
    );
    assert!(
        !names.contains(&"services"),
        "ephemeral keyspaces stay out: {names:?}"
    );
    assert_eq!(snapshot.node.as_u128(), a[0].id().as_u128());

    let (b, b_http) = nodes("snap-b", 2).await;
    // Written on b after the snapshot was taken: newer, so they win over it.
    b[1].config().set("checkout", false).await.unwrap();
    b[1].config().set("only-b", "here").await.unwrap();
    let b0 = b[0].config();
    eventually(LIMIT, "b's own writes reach b0", || {
        b0.get::<String>("only-b").ok().flatten().is_some()
    })
    .await;
    let answer = restore(b_http, bytes).await.expect("POST /snapshot");
    let config_report = answer["restored"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "config")
        .cloned()
        .unwrap();
    assert_eq!(config_report["keys"], 2, "{answer}");
    assert_eq!(
        config_report["changed"], 1,
        "only limits.rps is new to b: {answer}"
    );
    assert_eq!(answer["snapshot"]["node"], a[0].id().to_string());

    // The node that did not receive the file gets the merge through replication.
    let b1 = b[1].config();
    eventually(LIMIT, "the restored values spread to b1", || {
        b1.get::<u32>("limits.rps").ok().flatten() == Some(500)
    })
    .await;
    assert_eq!(
        b1.get::<bool>("checkout").unwrap(),
        Some(false),
        "newer kept"
    );
    assert_eq!(b1.get::<String>("only-b").unwrap().as_deref(), Some("here"));
    assert_eq!(
        b1.get::<u32>("gone").unwrap(),
        None,
        "a delete stays a delete"
    );
    assert_eq!(b0.get::<bool>("checkout").unwrap(), Some(false));
    eventually(LIMIT, "the variable is declared and set on b1", || {
        b[1].vars().get("mode").map(|(_, v)| v) == Some(VarValue::Int(42))
    })
    .await;
    assert!(b[1].services().directory().instances("billing").is_empty());
    for node in a.iter().chain(&b) {
        node.leave().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_snapshots_are_refused_and_change_nothing() {
    let (a, a_http) = nodes("snap-bad", 1).await;
    a[0].config().set("k", "v").await.unwrap();
    let good = save(a_http).await.to_vec();
    let config_before = get_json(a_http, "/config", LIMIT).await.unwrap();
    let state_before = Snapshot::decode(&save(a_http).await).unwrap().keyspaces;

    let mut flipped = good.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x40;
    let mut future = good.clone();
    future[8] = 2;
    let mut foreign = good.clone();
    foreign[..8].copy_from_slice(b"PK\x03\x04zip!");
    let cases: [(&str, Vec<u8>, &str); 5] = [
        ("a flipped byte", flipped, "checksum"),
        (
            "a truncated file",
            good[..good.len() / 2].to_vec(),
            "truncated",
        ),
        ("a future version", future, "version 2"),
        ("another file type", foreign, "not a Foundation snapshot"),
        ("an empty body", Vec::new(), "truncated"),
    ];
    for (what, bytes, says) in cases {
        let (code, body) = status(restore(a_http, Bytes::from(bytes)).await);
        assert_eq!(code, 400, "{what}: {body}");
        assert!(body.contains(says), "{what}: {body}");
    }
    assert_eq!(
        get_json(a_http, "/config", LIMIT).await.unwrap(),
        config_before
    );
    let state_after = Snapshot::decode(&save(a_http).await).unwrap().keyspaces;
    assert_eq!(state_after, state_before, "nothing was applied");

    // Larger than a restore takes: refused from the head alone, 413.
    let oversized = format!(
        "POST /snapshot HTTP/1.1\r\nHost: {a_http}\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        SNAPSHOT_BYTES_MAX + 1
    );
    let answer = raw_http::send_raw(a_http, oversized.as_bytes()).await;
    assert_eq!(answer.status, 413, "{}", answer.body);
    assert!(answer.body.contains("268435456"), "{}", answer.body);
    // The route takes POST only (and GET to save); a form post is refused before the body.
    let put = send_bytes(a_http, Method::PUT, "/snapshot", Bytes::from(good), LIMIT).await;
    assert_eq!(status(put).0, 405);
    a[0].leave().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_is_durable_on_the_node_that_took_it() {
    let dir: PathBuf = std::env::temp_dir().join(format!(
        "foundation-snapshot-restart-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let (a, a_http) = nodes("snap-src", 1).await;
    a[0].config().set("kept", json!({"rps": 5})).await.unwrap();
    let bytes = save(a_http).await;
    a[0].leave().await;

    let id = NodeId::random();
    let durable = |dir: &PathBuf| {
        let mut s = settings("snap-dst", SECRET, vec![]);
        s.identity.id = id;
        s.storage = Some(StorageSettings {
            data_dir: dir.clone(),
            sync: SyncPolicy::Always,
        });
        s
    };
    let node = Node::start(durable(&dir)).await.unwrap();
    let snapshot = Snapshot::decode(&bytes).unwrap();
    let report = node.restore(snapshot).await.expect("restores");
    assert_eq!(report[0].changed, 1);
    node.abort().await;
    let node = Node::start(durable(&dir)).await.unwrap();
    assert_eq!(
        node.config().get::<serde_json::Value>("kept").unwrap(),
        Some(json!({"rps": 5})),
        "the restore survived the restart"
    );
    node.leave().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// A config key with a control character is refused for writes, yet a member of an older build
/// or a snapshot can still bring one in. Once held, it must be deletable like any other key, or
/// nothing could ever remove it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_config_key_with_a_control_character_can_be_deleted() {
    let (a, a_http) = nodes("snap-ctl", 1).await;
    a[0].config().set("limits", 1).await.unwrap();
    let mut snapshot = Snapshot::decode(&save(a_http).await).unwrap();
    let config = snapshot
        .keyspaces
        .iter_mut()
        .find(|k| k.name == "config")
        .expect("the config keyspace is in the snapshot");
    let renamed = config
        .map
        .entries()
        .map(|(key, entry)| (key.replace("limits", "lim\u{1b}its"), entry.clone()));
    config.map = foundation_engine::replication::Map::from_sorted_entries(
        config.map.horizon(),
        renamed.collect::<Vec<_>>(),
    )
    .unwrap();

    let (b, b_http) = nodes("snap-ctl-b", 1).await;
    restore(b_http, Bytes::from(snapshot.encode().unwrap()))
        .await
        .expect("the snapshot is restored");
    let odd = "lim\u{1b}its";
    assert!(b[0].config().get_raw(odd).is_some(), "the odd key is held");
    assert!(
        b[0].config().set(odd, 2).await.is_err(),
        "writes of such a key are still refused"
    );
    b[0].config()
        .delete(odd)
        .await
        .expect("a held key is deleted");
    assert_eq!(b[0].config().get_raw(odd), None);
    a[0].leave().await;
    b[0].leave().await;
}
