//! mDNS discovery, run only inside a network namespace this test creates, so that no multicast
//! ever leaves on the host's real interfaces.
//!
//! The test re-executes itself inside `ip netns exec <ns>` (the child role is marked by an
//! environment variable); the child checks that `lo` is its only interface before starting
//! any mDNS daemon. Needs root and `ip`; otherwise it prints why it is skipped and passes.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use foundation_engine::discovery::{
    Candidate, Discovery, DiscoveryHandle, DiscoveryMetrics, LocalNode, MdnsDiscovery,
};
use foundation_transport::{ClusterName, NodeId};
use tokio::sync::mpsc;

const TEST_NAME: &str = "mdns_peers_of_one_cluster_find_each_other_in_a_namespace";
const CHILD_ENV: &str = "FOUNDATION_MDNS_TEST_CHILD";
const CHILD_TIMEOUT: Duration = Duration::from_secs(90);

#[test]
fn mdns_peers_of_one_cluster_find_each_other_in_a_namespace() {
    if std::env::var_os(CHILD_ENV).is_some() {
        child();
        return;
    }
    if let Some(reason) = cannot_run() {
        println!("SKIPPED mDNS namespace test: {reason}");
        return;
    }
    let ns = Namespace::create();
    let output = run_child(&ns.name);
    print!("{output}");
}

/// Why the namespace test cannot run here, if it cannot.
fn cannot_run() -> Option<String> {
    let uid = Command::new("id").arg("-u").output();
    let uid = uid
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    if uid.as_deref() != Some("0") {
        return Some("needs root to create a network namespace (`id -u` is not 0)".into());
    }
    let ip = Command::new("ip")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !ip.map(|s| s.success()).unwrap_or(false) {
        return Some("the `ip` command (iproute2) is not available".into());
    }
    None
}

/// A network namespace with only `lo` up and multicast-capable; deleted on drop, so also when
/// the test fails.
struct Namespace {
    name: String,
}

impl Namespace {
    fn create() -> Self {
        let name = format!(
            "fdn-mdns-{}-{}",
            std::process::id(),
            NodeId::random().short()
        );
        ip(&["netns", "add", &name]);
        let ns = Self { name };
        ip(&["-n", &ns.name, "link", "set", "lo", "up"]);
        ip(&["-n", &ns.name, "link", "set", "lo", "multicast", "on"]);
        ns
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

fn ip(args: &[&str]) {
    let status = Command::new("ip").args(args).status().expect("run ip");
    assert!(status.success(), "`ip {}` failed: {status}", args.join(" "));
}

/// Runs this test binary's test again inside the namespace; returns its output.
fn run_child(ns: &str) -> String {
    let exe = std::env::current_exe().expect("current exe");
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns])
        .arg(exe)
        .args([TEST_NAME, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn child in namespace");
    let started = Instant::now();
    while child.try_wait().expect("wait child").is_none() {
        if started.elapsed() > CHILD_TIMEOUT {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("child output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "child in namespace failed ({}):\n{text}",
        out.status
    );
    text
}

/// The child: inside the namespace, where `lo` must be the only interface.
fn child() {
    let interfaces: Vec<String> = std::fs::read_dir("/sys/class/net")
        .expect("list interfaces")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        interfaces,
        vec!["lo".to_owned()],
        "refusing to multicast outside an isolated namespace"
    );
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    ip(&["link", "set", "lo", "down"]);
    runtime.block_on(start_without_network());
    ip(&["link", "set", "lo", "up"]);
    runtime.block_on(discover());
}

/// A laptop with no network: no interface is up. mDNS on every interface (what `auto` runs)
/// still starts, so the node does, and stops.
async fn start_without_network() {
    let (tx, _rx) = mpsc::channel(16);
    let strategy = MdnsDiscovery::new(Vec::new(), DiscoveryMetrics::default());
    let handle = Box::new(strategy)
        .start(node("alpha", 0xd, 7004), tx)
        .expect("mdns starts with no interface up");
    handle.stop().await;
    println!("mDNS: started and stopped with no interface up");
}

fn node(cluster: &str, id: u128, port: u16) -> LocalNode {
    LocalNode {
        cluster: ClusterName::new(cluster).expect("cluster"),
        id: NodeId::from_u128(id),
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        http: None,
    }
}

fn start(
    me: &LocalNode,
    metrics: &DiscoveryMetrics,
) -> (DiscoveryHandle, mpsc::Receiver<Candidate>) {
    let (tx, rx) = mpsc::channel(256);
    let strategy = MdnsDiscovery::new(vec!["lo".into()], metrics.clone())
        .with_interval(Duration::from_millis(200));
    (
        Box::new(strategy)
            .start(me.clone(), tx)
            .expect("start mdns"),
        rx,
    )
}

async fn discover() {
    let metrics = DiscoveryMetrics::default();
    let (a, b, c) = (
        node("alpha", 0xa, 7001),
        node("alpha", 0xb, 7002),
        node("beta", 0xc, 7003),
    );
    let started = Instant::now();
    let (ha, mut ra) = start(&a, &metrics);
    let (hb, mut rb) = start(&b, &metrics);
    let (hc, mut rc) = start(&c, &metrics);

    let (seen_a, seen_b) = tokio::join!(
        wait_for(&mut ra, b.id, Duration::from_secs(10)),
        wait_for(&mut rb, a.id, Duration::from_secs(10)),
    );
    let elapsed = started.elapsed();
    assert!(
        seen_a
            .iter()
            .any(|x| x.id == Some(b.id) && x.addr == b.addr),
        "a did not find b: {seen_a:?}"
    );
    assert!(
        seen_b
            .iter()
            .any(|x| x.id == Some(a.id) && x.addr == a.addr),
        "b did not find a: {seen_b:?}"
    );
    println!("mDNS: two alpha nodes found each other in {elapsed:?}");

    // Let c's announcements certainly arrive, then check nobody crossed clusters or saw itself.
    let more_a = drain(&mut ra, Duration::from_secs(1)).await;
    let seen_c = drain(&mut rc, Duration::from_millis(10)).await;
    for x in seen_a.iter().chain(&more_a) {
        assert!(x.id == Some(b.id) && x.source == "mdns", "a saw {x:?}");
    }
    assert!(seen_c.is_empty(), "beta node saw alpha nodes: {seen_c:?}");

    // Stopping b unregisters it: a stops reporting it.
    hb.stop().await;
    drain(&mut ra, Duration::from_millis(1500)).await;
    let after = drain(&mut ra, Duration::from_secs(1)).await;
    assert!(
        after.is_empty(),
        "a still reports b after b stopped: {after:?}"
    );
    println!(
        "mDNS: b's unregistration was seen by a; candidates counted: {}",
        metrics.candidates("mdns")
    );
    ha.stop().await;
    hc.stop().await;
}

/// Collects candidates until one with `id` arrives (or `limit` passes).
async fn wait_for(
    rx: &mut mpsc::Receiver<Candidate>,
    id: NodeId,
    limit: Duration,
) -> Vec<Candidate> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut seen = Vec::new();
    while let Ok(Some(c)) = tokio::time::timeout_at(deadline, rx.recv()).await {
        let done = c.id == Some(id);
        seen.push(c);
        if done {
            break;
        }
    }
    seen
}

async fn drain(rx: &mut mpsc::Receiver<Candidate>, wait: Duration) -> Vec<Candidate> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut seen = Vec::new();
    while let Ok(Some(c)) = tokio::time::timeout_at(deadline, rx.recv()).await {
        seen.push(c);
    }
    seen
}
