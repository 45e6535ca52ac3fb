//! Local (runtime directory) discovery against a real directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use foundation_engine::discovery::{
    running_nodes, Candidate, Discovery, DiscoveryHandle, DiscoveryMetrics, LocalDiscovery,
    LocalNode,
};
use foundation_transport::{ClusterName, NodeId};
use tokio::sync::mpsc;

const TICK: Duration = Duration::from_millis(50);

/// A fresh directory under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "foundation-discovery-test-{tag}-{}-{}",
            std::process::id(),
            NodeId::random().short()
        ));
        std::fs::create_dir_all(&path).expect("create temp dir");
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn node(cluster: &str, id: u128, port: u16) -> LocalNode {
    LocalNode {
        cluster: ClusterName::new(cluster).expect("cluster name"),
        id: NodeId::from_u128(id),
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        http: None,
    }
}

fn start(
    base: &Path,
    me: LocalNode,
    metrics: &DiscoveryMetrics,
) -> (DiscoveryHandle, mpsc::Receiver<Candidate>) {
    let (tx, rx) = mpsc::channel(64);
    let strategy = LocalDiscovery::new(base, metrics.clone()).with_interval(TICK);
    let handle = Box::new(strategy)
        .start(me, tx)
        .expect("start local discovery");
    (handle, rx)
}

/// Collects candidates for `wait`.
async fn collect(rx: &mut mpsc::Receiver<Candidate>, wait: Duration) -> Vec<Candidate> {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    while let Ok(Some(c)) = tokio::time::timeout_at(deadline, rx.recv()).await {
        seen.push(c);
    }
    seen
}

fn own_file(base: &Path, me: &LocalNode) -> PathBuf {
    base.join(me.cluster.as_str())
        .join(format!("{}.json", me.id))
}

#[tokio::test]
async fn two_nodes_find_each_other_and_not_themselves() {
    let dir = TempDir::new("pair");
    let metrics = DiscoveryMetrics::default();
    let (a, b) = (node("alpha", 1, 7001), node("alpha", 2, 7002));
    let (ha, mut ra) = start(&dir.0, a.clone(), &metrics);
    let (hb, mut rb) = start(&dir.0, b.clone(), &metrics);

    let seen_by_a = collect(&mut ra, Duration::from_millis(300)).await;
    let seen_by_b = collect(&mut rb, Duration::from_millis(100)).await;
    assert!(seen_by_a
        .iter()
        .any(|c| c.id == Some(b.id) && c.addr == b.addr && c.source == "local"));
    assert!(seen_by_b
        .iter()
        .any(|c| c.id == Some(a.id) && c.addr == a.addr));
    assert!(
        seen_by_a.iter().all(|c| c.id != Some(a.id)),
        "a reported itself"
    );
    assert!(
        seen_by_b.iter().all(|c| c.id != Some(b.id)),
        "b reported itself"
    );
    assert!(metrics.candidates("local") >= 2);
    ha.stop().await;
    hb.stop().await;
}

#[tokio::test]
async fn another_clusters_directory_is_not_seen() {
    let dir = TempDir::new("clusters");
    let metrics = DiscoveryMetrics::default();
    let (ha, mut ra) = start(&dir.0, node("alpha", 1, 7001), &metrics);
    let (hb, mut rb) = start(&dir.0, node("beta", 2, 7002), &metrics);
    assert!(collect(&mut ra, Duration::from_millis(300))
        .await
        .is_empty());
    assert!(collect(&mut rb, Duration::from_millis(50)).await.is_empty());
    ha.stop().await;
    hb.stop().await;
}

#[tokio::test]
async fn malformed_files_are_skipped_and_counted() {
    let dir = TempDir::new("malformed");
    let metrics = DiscoveryMetrics::default();
    let me = node("alpha", 1, 7001);
    let cluster_dir = dir.0.join("alpha");
    std::fs::create_dir_all(&cluster_dir).expect("cluster dir");
    let peer = NodeId::from_u128(3);
    let bad = [
        (format!("{peer}.json"), b"{not json".to_vec()),
        ("ffff.json".to_owned(), vec![0xff; 10_000]),
        (
            format!("{}.json", NodeId::from_u128(4)),
            format!(
                r#"{{"cluster":"alpha","id":"{}","addr":"127.0.0.1:9","pid":1,"started":0}}"#,
                NodeId::from_u128(5) // id does not match the file name
            )
            .into_bytes(),
        ),
    ];
    for (name, bytes) in &bad {
        std::fs::write(cluster_dir.join(name), bytes).expect("write bad file");
    }
    let (handle, mut rx) = start(&dir.0, me, &metrics);
    assert!(collect(&mut rx, Duration::from_millis(300))
        .await
        .is_empty());
    // Each file once, however many rounds saw it: it was counted again every round, so the
    // error count climbed for as long as the file stayed.
    assert_eq!(metrics.errors("local"), 3);
    let (name, _) = &bad[0];
    std::fs::write(cluster_dir.join(name), b"{still not json, and longer").expect("rewrite");
    collect(&mut rx, Duration::from_millis(300)).await;
    assert_eq!(
        metrics.errors("local"),
        4,
        "a file written again counts again"
    );
    handle.stop().await;
}

#[tokio::test]
async fn the_file_of_a_dead_process_is_removed() {
    let dir = TempDir::new("stale");
    let metrics = DiscoveryMetrics::default();
    let cluster_dir = dir.0.join("alpha");
    std::fs::create_dir_all(&cluster_dir).expect("cluster dir");
    let dead = NodeId::from_u128(9);
    let stale = cluster_dir.join(format!("{dead}.json"));
    // The largest pid Linux allows is 2^22, so this one cannot be running.
    let json = format!(
        r#"{{"cluster":"alpha","id":"{dead}","addr":"127.0.0.1:7009","pid":4294967294,"started":0}}"#
    );
    std::fs::write(&stale, json).expect("write stale file");

    let (handle, mut rx) = start(&dir.0, node("alpha", 1, 7001), &metrics);
    let seen = collect(&mut rx, Duration::from_millis(300)).await;
    assert!(
        seen.iter().all(|c| c.id != Some(dead)),
        "dead node reported: {seen:?}"
    );
    assert!(!stale.exists(), "stale file still present");
    handle.stop().await;
}

#[tokio::test]
async fn stop_removes_own_file_and_dir_is_private() {
    let dir = TempDir::new("stop");
    let me = node("alpha", 1, 7001);
    let (handle, _rx) = start(&dir.0, me.clone(), &DiscoveryMetrics::default());
    let file = own_file(&dir.0, &me);
    assert!(file.exists(), "own file not written");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.0.join("alpha"))
            .expect("dir")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
    }
    handle.stop().await;
    assert!(!file.exists(), "own file left after stop");
}

#[tokio::test]
async fn a_removed_own_file_is_written_again() {
    let dir = TempDir::new("rewrite");
    let me = node("alpha", 1, 7001);
    let (handle, _rx) = start(&dir.0, me.clone(), &DiscoveryMetrics::default());
    let file = own_file(&dir.0, &me);
    std::fs::remove_file(&file).expect("remove own file");
    // The rewrite comes within a few refresh periods; a loaded machine may take longer, so
    // wait up to a generous limit instead of a fixed sleep.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !file.exists() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(file.exists(), "own file not rewritten within 10 s");
    handle.stop().await;
}

#[tokio::test]
async fn running_nodes_lists_live_advertisements_with_their_http_address_and_changes_nothing() {
    let dir = TempDir::new("running");
    let alpha = ClusterName::new("alpha").expect("cluster");
    assert!(
        running_nodes(&dir.0, &alpha)
            .expect("missing dir")
            .is_empty(),
        "a cluster directory that does not exist holds no nodes"
    );
    let http = SocketAddr::from(([127, 0, 0, 1], 8123));
    let me = LocalNode {
        http: Some(http),
        ..node("alpha", 1, 7001)
    };
    let (handle, _rx) = start(&dir.0, me.clone(), &DiscoveryMetrics::default());
    let cluster_dir = dir.0.join("alpha");
    // A node of an older version (no http field), a dead process, and garbage.
    let old = NodeId::from_u128(2);
    std::fs::write(
        cluster_dir.join(format!("{old}.json")),
        format!(
            r#"{{"cluster":"alpha","id":"{old}","addr":"127.0.0.1:7002","pid":{},"started":1}}"#,
            std::process::id()
        ),
    )
    .expect("write old-style file");
    let dead = NodeId::from_u128(3);
    let stale = cluster_dir.join(format!("{dead}.json"));
    std::fs::write(
        &stale,
        format!(
            r#"{{"cluster":"alpha","id":"{dead}","addr":"127.0.0.1:7003","pid":4294967294,"started":0,"http":"127.0.0.1:8003"}}"#
        ),
    )
    .expect("write stale file");
    std::fs::write(cluster_dir.join("junk.json"), b"{not json").expect("write junk");

    let nodes = running_nodes(&dir.0, &alpha).expect("list");
    let ids: Vec<NodeId> = nodes.iter().map(|n| n.id).collect();
    assert_eq!(ids, vec![old, me.id], "live nodes, oldest first: {nodes:?}");
    assert_eq!(nodes[0].http, None, "an old-style file has no HTTP address");
    assert_eq!(nodes[1].http, Some(http));
    assert_eq!(nodes[1].addr, me.addr);
    assert_eq!(nodes[1].pid, std::process::id());
    assert!(stale.exists(), "listing removes nothing");
    let beta = ClusterName::new("beta").expect("cluster");
    assert!(running_nodes(&dir.0, &beta).expect("list").is_empty());
    handle.stop().await;
    let ids: Vec<NodeId> = running_nodes(&dir.0, &alpha)
        .expect("list")
        .iter()
        .map(|n| n.id)
        .collect();
    assert_eq!(ids, vec![old], "a stopped node is no longer listed");
}
