//! Services benchmark: the registry, pub/sub and RPC of real runtime nodes on 127.0.0.1, next to
//! NATS and distributed Erlang measured in the same run.
//!
//! ```sh
//! cargo bench -p foundation-engine --bench services            # full run
//! cargo bench -p foundation-engine --bench services -- quick   # short run, smaller counts
//! cargo bench -p foundation-engine --bench services -- quick pubsub   # one section only
//! cargo bench -p foundation-engine --bench services -- pubsub nopeers # Foundation alone
//! ```
//!
//! 1. Registry, N = 10 nodes in this process: time from `register` on one node until every
//!    node's local lookup returns the instance, over many samples (p50/p99); local `lookup` and
//!    `healthy` latency.
//! 2. Pub/sub, 64-byte messages, one publisher on one node, one subscriber on another: a
//!    flat-out burst, delivered messages per second and messages lost; then the fan-out to 8
//!    subscribers on 4 other nodes against NATS with 8 subscriber connections
//!    (`services/fanout.rs`; `-- fanout` runs it alone). NATS (`nats-server`,
//!    Debian package, installed with apt-get when absent and we are root) is driven the same
//!    way through a small client written here over TCP (the text protocol: CONNECT, SUB, PUB,
//!    PING); distributed Erlang (`erl`, when installed) sends the same burst between two nodes.
//! 3. RPC, 64-byte request/response through the registry between two nodes: p50/p99 of one
//!    caller, calls per second of 64 concurrent callers, and a same-node call; NATS
//!    request/reply and distributed Erlang (an echo process on the other node) measured the same
//!    way (`services/erlang.rs`).
//!
//! Prints numbers, ratios and targets; never fails on a missed target (timing is not a
//! pass/fail test). A peer that cannot be started is skipped with a message.

#[path = "services/erlang.rs"]
mod erlang;
#[path = "services/fanout.rs"]
mod fanout;
#[path = "common/nodes.rs"]
mod nodes;
#[path = "services/threads.rs"]
mod threads;
#[path = "common/wait.rs"]
mod wait;
use wait::wait_until;

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use foundation_engine::runtime::services::{
    Call, CallOptions, PubSubHandle, ServiceOptions, SubscribeOptions, Subscription,
};
use foundation_engine::runtime::Node;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

#[path = "../../transport/benches/common/percentiles.rs"]
mod percentiles;
use percentiles::{percentiles, Percentiles};

const SECRET: &str = "services benchmark secret, long enough";
const SMALL: usize = 64;
const TOPIC: &str = "bench.events";

/// Sizes of one run.
struct Plan {
    name: &'static str,
    registry_nodes: usize,
    registry_samples: usize,
    lookups: u32,
    burst: u64,
    burst_time_cap: Duration,
    rpc_calls: usize,
    concurrent_window: Duration,
}

impl Plan {
    fn full() -> Plan {
        Plan {
            name: "full",
            registry_nodes: 10,
            registry_samples: 40,
            lookups: 1_000_000,
            burst: 2_000_000,
            burst_time_cap: Duration::from_secs(20),
            rpc_calls: 20_000,
            concurrent_window: Duration::from_secs(4),
        }
    }

    fn quick() -> Plan {
        Plan {
            name: "quick",
            registry_nodes: 10,
            registry_samples: 10,
            lookups: 200_000,
            burst: 300_000,
            burst_time_cap: Duration::from_secs(5),
            rpc_calls: 2_000,
            concurrent_window: Duration::from_secs(1),
        }
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "quick" || a == "--quick")
        || std::env::var_os("FOUNDATION_BENCH_QUICK").is_some();
    let plan = if quick { Plan::quick() } else { Plan::full() };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    println!(
        "services benchmark ({} run; {} cores; 127.0.0.1; 1-minute load average before: {} — other work on the machine slows every figure)",
        plan.name,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_average()
    );
    // `-- registry`, `-- pubsub` or `-- rpc` runs only the sections named.
    let sections: Vec<String> = std::env::args()
        .filter(|a| ["registry", "pubsub", "fanout", "rpc"].contains(&a.as_str()))
        .collect();
    let wanted = |section: &str| sections.is_empty() || sections.iter().any(|s| s == section);
    runtime.block_on(async {
        if wanted("registry") {
            registry(&plan).await;
        }
        if wanted("pubsub") {
            pubsub(&plan).await;
        } else if wanted("fanout") {
            fanout::fanout_alone(&plan).await;
        }
        if wanted("rpc") {
            rpc(&plan).await;
        }
    });
}

// ---------------------------------------------------------------------------------------------
// Statistics and printing.

fn human(d: Duration) -> String {
    let ns = d.as_secs_f64() * 1e9;
    if ns < 10_000.0 {
        format!("{ns:.0} ns")
    } else if ns < 10_000_000.0 {
        format!("{:.1} µs", ns / 1e3)
    } else if ns < 10_000_000_000.0 {
        format!("{:.1} ms", ns / 1e6)
    } else {
        format!("{:.2} s", ns / 1e9)
    }
}

fn thousands(n: f64) -> String {
    let s = format!("{:.0}", n);
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// CPU time (user + system) used so far by process `pid` ("self" for this one), from
/// /proc/<pid>/stat at the kernel's clock-tick resolution; `None` where it cannot be read.
fn cpu_time(pid: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) start at state (field 3).
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// CPU time between two readings of [`cpu_time`] (or [`nats_cpu`]), when both were read.
fn cpu_spent(before: Option<Duration>, after: Option<Duration>) -> Option<Duration> {
    after
        .zip(before)
        .map(|(after, before)| after.saturating_sub(before))
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "n/a".into())
}

/// `-- nopeers` measures Foundation alone (for profiling).
fn skip_peers() -> bool {
    std::env::args().any(|a| a == "nopeers")
}

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "MISSED"
    }
}

// ---------------------------------------------------------------------------------------------
// Foundation nodes.

/// `n` nodes with default settings that all see each other alive.
async fn cluster(n: usize) -> Vec<Node> {
    nodes::cluster("services-bench", SECRET, n).await
}

async fn stop(nodes: &[Node]) {
    for node in nodes {
        node.abort().await;
    }
}

fn echo() -> impl foundation_engine::runtime::services::Handler {
    |call: Call| async move { Ok(call.body) }
}

// ---------------------------------------------------------------------------------------------
// 1. Registry.

async fn registry(plan: &Plan) {
    let n = plan.registry_nodes;
    println!();
    println!("== registry: {n} nodes ==");
    let nodes = cluster(n).await;
    let limit = Duration::from_secs(10);
    let mut everywhere = Vec::new();
    let mut per_node = Vec::new();
    let mut timeouts = 0;
    for sample in 0..plan.registry_samples {
        let service = format!("reg-{sample}");
        // Each node watches for the service before it is registered; the watch wakes on every
        // directory change, so the time seen is when the lookup first returns it.
        let mut waiters = Vec::new();
        for node in &nodes[1..] {
            let mut watch = node.services().watch(service.clone());
            waiters.push(tokio::spawn(async move {
                tokio::time::timeout(limit, async {
                    while let Some(instances) = watch.next().await {
                        if !instances.is_empty() {
                            return Some(Instant::now());
                        }
                    }
                    None
                })
                .await
                .ok()
                .flatten()
            }));
        }
        let t0 = Instant::now();
        let registration = nodes[0]
            .services()
            .register(&service, echo(), ServiceOptions::default())
            .await
            .expect("register");
        let mut slowest = Some(Duration::ZERO);
        for waiter in waiters {
            match waiter.await.expect("watch task") {
                Some(seen) => {
                    let took = seen - t0;
                    per_node.push(took);
                    slowest = slowest.map(|s| s.max(took));
                }
                None => slowest = None,
            }
        }
        match slowest {
            Some(slowest) => everywhere.push(slowest),
            None => timeouts += 1,
        }
        registration.deregister().await.expect("deregister");
    }
    let all = percentiles(everywhere);
    let one = percentiles(per_node);
    println!(
        "register → every node's lookup returns it: p50 {}  p99 {}  max {}  ({} samples, {} not everywhere within {:?})",
        human(all.p50),
        human(all.p99),
        human(all.max),
        all.n,
        timeouts,
        limit
    );
    println!(
        "register → one node's lookup returns it:   p50 {}  p99 {}  ({} node-samples)",
        human(one.p50),
        human(one.p99),
        one.n
    );
    println!(
        "  target p99 ≤ 50 ms (Horde syncs every 300 ms): {}",
        verdict(timeouts == 0 && all.p99 <= Duration::from_millis(50))
    );

    // Local reads: one registered instance, looked up from another node.
    let _kept = nodes[0]
        .services()
        .register("lookup-bench", echo(), ServiceOptions::default())
        .await
        .expect("register");
    let reader = nodes[1].services();
    wait_until(limit, || reader.lookup("lookup-bench").len() == 1).await;
    let lookup = time_per_op(plan.lookups, || {
        std::hint::black_box(reader.lookup(std::hint::black_box("lookup-bench")));
    });
    let healthy = time_per_op(plan.lookups, || {
        std::hint::black_box(reader.healthy(std::hint::black_box("lookup-bench")));
    });
    println!(
        "local lookup: {} per call;  healthy(): {} per call  (target ≤ 1 µs: {})",
        human(lookup),
        human(healthy),
        verdict(lookup <= Duration::from_micros(1) && healthy <= Duration::from_micros(1))
    );
    stop(&nodes).await;
}

fn time_per_op(n: u32, mut op: impl FnMut()) -> Duration {
    for _ in 0..n / 10 {
        op();
    }
    let started = Instant::now();
    for _ in 0..n {
        op();
    }
    started.elapsed() / n
}

// ---------------------------------------------------------------------------------------------
// 2. Pub/sub.

/// What one flat-out burst delivered.
struct Burst {
    sent: u64,
    delivered: u64,
    /// CPU time every process involved used during the burst, if known.
    cpu: Option<Duration>,
    /// From the first publish to the last delivery.
    elapsed: Duration,
    /// From the first publish to the last publish returning.
    publish: Duration,
}

impl Burst {
    fn rate(&self) -> f64 {
        self.delivered as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn print(&self, who: &str) {
        let lost = self.sent.saturating_sub(self.delivered);
        println!(
            "{who:<22} {:>12} msg/s delivered   {:>10} sent  {:>10} lost ({:.2}%)   publish side {:>12} msg/s",
            thousands(self.rate()),
            thousands(self.sent as f64),
            thousands(lost as f64),
            100.0 * lost as f64 / self.sent.max(1) as f64,
            thousands(self.sent as f64 / self.publish.as_secs_f64().max(1e-9)),
        );
        if let Some(cpu) = self.cpu {
            println!(
                "{:<22} CPU {:.2} s in all = {:.2} µs per delivered message (robust to other load on the machine)",
                "",
                cpu.as_secs_f64(),
                cpu.as_secs_f64() * 1e6 / self.delivered.max(1) as f64
            );
        }
    }
}

/// Subscriber queue bound in the benchmark: the NATS Go client's default pending-message limit.
const SUBSCRIBER_QUEUE: usize = 65_536;
/// A receiver that saw nothing for this long after the publisher finished stops counting.
const QUIET: Duration = Duration::from_millis(500);

async fn pubsub(plan: &Plan) {
    println!();
    println!(
        "== pub/sub: {SMALL} B messages, one publisher, one subscriber on another node, flat-out burst of {}; load average {} ==",
        thousands(plan.burst as f64),
        load_average()
    );
    println!(
        "(Foundation: the subscribing node on threads of its own, as nats-server has; \
         \"1 runtime\": both nodes share the benchmark's two workers)"
    );
    let mut ours = Vec::new();
    for placement in [Placement::OwnThreads, Placement::Shared] {
        let burst = foundation_burst(plan, placement).await;
        burst.print(placement.label());
        ours.push((placement, burst));
    }
    if skip_peers() {
        return fanout::fanout(plan, None).await;
    }
    let nats = match NatsServer::start().await {
        Ok(server) => match nats_burst(&server, plan).await {
            Ok(burst) => {
                burst.print("NATS (nats-server)");
                Some((server, burst))
            }
            Err(e) => {
                println!("NATS: skipped: {e}");
                None
            }
        },
        Err(e) => {
            println!("NATS: skipped: {e}");
            None
        }
    };
    match erlang::burst(plan) {
        Ok(burst) => burst.print("distributed Erlang"),
        Err(e) => println!("distributed Erlang: skipped: {e}"),
    }
    if let Some((_, nats)) = &nats {
        for (placement, foundation) in &ours {
            let ratio = foundation.rate() / nats.rate().max(1e-9);
            println!(
                "{}/NATS delivered rate: {ratio:.2}×  (target ≥ 1× with zero loss: {})",
                placement.label(),
                verdict(ratio >= 1.0 && foundation.delivered == foundation.sent)
            );
        }
    }
    fanout::fanout(plan, nats.as_ref().map(|(server, _)| server)).await;
}

/// Where measured nodes run: on a runtime of their own (two workers, as a process of its own
/// would have) with [`Placement::OwnThreads`], else on the benchmark's.
struct Home(Option<tokio::runtime::Runtime>);

impl Home {
    fn new(placement: Placement, name: &'static str) -> Self {
        Self((placement == Placement::OwnThreads).then(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name(name)
                .enable_all()
                .build()
                .expect("a node's own runtime")
        }))
    }

    fn handle(&self) -> tokio::runtime::Handle {
        self.0
            .as_ref()
            .map_or_else(tokio::runtime::Handle::current, |own| own.handle().clone())
    }

    /// Runs `work` here to its end.
    async fn run<T: Send + 'static>(
        &self,
        work: impl std::future::Future<Output = T> + Send + 'static,
    ) -> T {
        self.handle()
            .spawn(work)
            .await
            .expect("work on a node's runtime")
    }

    /// Stops `node` here, then the runtime if it is the node's own.
    async fn stop(self, node: Node) {
        self.stop_all(vec![node]).await;
    }

    /// Stops `nodes` here, then the runtime if it is theirs.
    async fn stop_all(self, nodes: Vec<Node>) {
        self.run(async move { stop(&nodes).await }).await;
        if let Some(own) = self.0 {
            own.shutdown_background();
        }
    }
}

/// One publisher and one subscribing node, placed as `placement` says (with
/// [`Placement::OwnThreads`], the subscribing node and the task counting what it delivers run
/// on a runtime of their own).
async fn foundation_burst(plan: &Plan, placement: Placement) -> Burst {
    let home = Home::new(placement, "subscriber");
    let start_subscriber = async {
        let node = Node::start(nodes::settings("services-bench", SECRET, vec![]))
            .await
            .expect("subscribing node starts");
        let subscription = subscribe(&node).await;
        (node, subscription)
    };
    let (subscriber, mut subscription) = home.run(start_subscriber).await;
    let seeds = vec![subscriber.addr()];
    let publisher = Node::start(nodes::settings("services-bench", SECRET, seeds))
        .await
        .expect("publishing node starts");
    let directory_has_interest = || !publisher.services().directory().interest().is_empty();
    assert!(
        wait_until(Duration::from_secs(10), directory_has_interest).await,
        "interest did not reach the publisher"
    );
    let payload = Bytes::from(vec![0x5a; SMALL]);
    let pubsub = publisher.pubsub();
    warm_up(&pubsub, &payload, std::slice::from_mut(&mut subscription)).await;

    let target = Arc::new(AtomicU64::new(u64::MAX));
    let receiver = count_subscription(&home.handle(), subscription, target.clone());
    let cpu_before = cpu_time("self");
    let start = Instant::now();
    let sent = publish_burst(&pubsub, &payload, plan, start).await;
    let publish = start.elapsed();
    target.store(sent, Ordering::Release);
    let (delivered, last) = receiver.await.expect("receiver task");
    let cpu = cpu_spent(cpu_before, cpu_time("self"));
    publisher.abort().await;
    home.stop(subscriber).await;
    Burst {
        sent,
        delivered,
        cpu,
        elapsed: last.saturating_duration_since(start),
        publish,
    }
}

/// A subscription to [`TOPIC`] on `node` with the benchmark's queue bound.
async fn subscribe(node: &Node) -> Subscription {
    let options = SubscribeOptions {
        capacity: SUBSCRIBER_QUEUE,
        ..SubscribeOptions::default()
    };
    let subscription = node.pubsub().subscribe_with(TOPIC, options).await;
    subscription.expect("subscribe")
}

/// Streams open, congestion windows grown, allocator primed: publishes 20,000 messages, waits
/// for each subscription to receive them, then empties every queue.
async fn warm_up(pubsub: &PubSubHandle, payload: &Bytes, subscriptions: &mut [Subscription]) {
    let warm = 20_000;
    for _ in 0..warm {
        pubsub
            .publish(TOPIC, payload.clone())
            .await
            .expect("publish");
    }
    for subscription in subscriptions {
        for _ in 0..warm {
            let got = tokio::time::timeout(Duration::from_secs(10), subscription.recv()).await;
            if !matches!(got, Ok(Some(_))) {
                break;
            }
        }
        while subscription.try_recv().is_some() {}
    }
}

/// Counts what `subscription` receives until `target` (stored once the publisher is done) is
/// reached or nothing came for [`QUIET`] after it was stored: the count and the last arrival.
/// Takes what is queued in batches, as a real consumer would: one lock and one timer per
/// batch, not per message.
fn count_subscription(
    on: &tokio::runtime::Handle,
    mut subscription: Subscription,
    target: Arc<AtomicU64>,
) -> tokio::task::JoinHandle<(u64, Instant)> {
    on.spawn(async move {
        let mut n = 0u64;
        let mut last = Instant::now();
        let mut batch = Vec::with_capacity(4096);
        while n < target.load(Ordering::Acquire) {
            match tokio::time::timeout(QUIET, subscription.recv_many(&mut batch, 4096)).await {
                Ok(0) => break,
                Ok(got) => {
                    debug_assert!(batch.iter().all(|m| m.payload.len() == SMALL));
                    n += got as u64;
                    last = Instant::now();
                    batch.clear();
                }
                Err(_) if target.load(Ordering::Acquire) != u64::MAX => break,
                Err(_) => {}
            }
        }
        (n, last)
    })
}

/// Publishes `payload` flat out, `plan.burst` times or until the time cap; returns how many.
async fn publish_burst(pubsub: &PubSubHandle, payload: &Bytes, plan: &Plan, start: Instant) -> u64 {
    let mut sent = 0u64;
    while sent < plan.burst {
        pubsub
            .publish(TOPIC, payload.clone())
            .await
            .expect("publish");
        sent += 1;
        if sent.is_multiple_of(4096) && start.elapsed() > plan.burst_time_cap {
            break;
        }
    }
    sent
}

// ---------------------------------------------------------------------------------------------
// NATS: the server as a child process, and a minimal client over TCP.

struct NatsServer {
    child: Child,
    addr: SocketAddr,
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Installs a Debian package when we are root and it is missing.
fn ensure_installed(program: &str, package: &str) -> Result<(), String> {
    if have(program) {
        return Ok(());
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0"));
    if !root {
        return Err(format!(
            "`{program}` not found (install the Debian package `{package}`)"
        ));
    }
    println!("installing `{package}` with apt-get …");
    let installed = Command::new("apt-get")
        .args(["install", "-y", "-q", package])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if installed && have(program) {
        Ok(())
    } else {
        Err(format!(
            "`{program}` not found and `apt-get install {package}` failed"
        ))
    }
}

impl NatsServer {
    async fn start() -> Result<NatsServer, String> {
        ensure_installed("nats-server", "nats-server")?;
        let port = free_port().map_err(|e| e.to_string())?;
        let child = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("nats-server did not start: {e}"))?;
        let server = NatsServer {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        };
        let started = Instant::now();
        while TcpStream::connect(server.addr).await.is_err() {
            if started.elapsed() > Duration::from_secs(10) {
                return Err("nats-server did not listen within 10 s".into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(server)
    }
}

/// One item of what a NATS server sends a client.
enum Incoming {
    /// `MSG <subject> <sid> [reply-to] <len>` and its payload: the reply-to subject, if any.
    Msg {
        reply: Option<Bytes>,
        len: usize,
    },
    Ping,
    Pong,
    Err(String),
    Other,
}

/// Incremental parser of the server's side of the NATS text protocol.
#[derive(Default)]
struct Parser {
    buffer: BytesMut,
}

impl Parser {
    fn next(&mut self) -> Option<Incoming> {
        let end = self.buffer.windows(2).position(|w| w == b"\r\n")?;
        let line = &self.buffer[..end];
        if let Some(rest) = line.strip_prefix(b"MSG ") {
            let fields: Vec<&[u8]> = rest.split(|b| *b == b' ').collect();
            let len: usize = std::str::from_utf8(fields.last()?).ok()?.parse().ok()?;
            if self.buffer.len() < end + 2 + len + 2 {
                return None;
            }
            let reply = (fields.len() == 4).then(|| Bytes::copy_from_slice(fields[2]));
            self.buffer.advance(end + 2 + len + 2);
            return Some(Incoming::Msg { reply, len });
        }
        let item = match line {
            b"PING" => Incoming::Ping,
            b"PONG" => Incoming::Pong,
            l if l.starts_with(b"-ERR") => Incoming::Err(String::from_utf8_lossy(l).into_owned()),
            _ => Incoming::Other,
        };
        self.buffer.advance(end + 2);
        Some(item)
    }
}

/// A connection that has sent CONNECT and seen the server's first PONG.
async fn nats_connect(addr: SocketAddr) -> std::io::Result<(TcpStream, Parser)> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    stream
        .write_all(b"CONNECT {\"verbose\":false,\"pedantic\":false,\"echo\":false}\r\nPING\r\n")
        .await?;
    let mut parser = Parser::default();
    loop {
        while let Some(item) = parser.next() {
            match item {
                Incoming::Pong => return Ok((stream, parser)),
                Incoming::Err(e) => return Err(std::io::Error::other(e)),
                _ => {}
            }
        }
        if stream.read_buf(&mut parser.buffer).await? == 0 {
            return Err(std::io::Error::other("nats-server closed the connection"));
        }
    }
}

/// Reads until the PONG answering a PING sent earlier.
async fn nats_pong(stream: &mut TcpStream, parser: &mut Parser) -> std::io::Result<()> {
    loop {
        while let Some(item) = parser.next() {
            if let Incoming::Pong = item {
                return Ok(());
            }
        }
        if stream.read_buf(&mut parser.buffer).await? == 0 {
            return Err(std::io::Error::other("nats-server closed the connection"));
        }
    }
}

fn nats_pub(out: &mut Vec<u8>, subject: &str, reply: Option<&[u8]>, payload: &[u8]) {
    out.extend_from_slice(b"PUB ");
    out.extend_from_slice(subject.as_bytes());
    out.push(b' ');
    if let Some(reply) = reply {
        out.extend_from_slice(reply);
        out.push(b' ');
    }
    out.extend_from_slice(payload.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(payload);
    out.extend_from_slice(b"\r\n");
}

async fn nats_burst(server: &NatsServer, plan: &Plan) -> Result<Burst, String> {
    let io = |e: std::io::Error| e.to_string();
    let (sub, sub_parser) = nats_subscribe(server.addr).await.map_err(io)?;
    let target = Arc::new(AtomicU64::new(u64::MAX));
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let receiver = count_nats_messages(sub, sub_parser, target.clone(), errors.clone());
    let mut publisher = nats_connect(server.addr).await.map_err(io)?;
    let server_pid = server.child.id().to_string();
    let cpu_before = nats_cpu(&server_pid);
    let start = Instant::now();
    let sent = nats_publish_burst(&mut publisher, plan, start)
        .await
        .map_err(io)?;
    let publish = start.elapsed();
    target.store(sent, Ordering::Release);
    let (delivered, last) = receiver.await.map_err(|e| e.to_string())?;
    let cpu = cpu_spent(cpu_before, nats_cpu(&server_pid));
    for error in errors.lock().unwrap().iter() {
        println!("  nats-server told the subscriber: {error}");
    }
    Ok(Burst {
        sent,
        delivered,
        cpu,
        elapsed: last.saturating_duration_since(start),
        publish,
    })
}

/// CPU time of this process and the NATS server together.
fn nats_cpu(server_pid: &str) -> Option<Duration> {
    cpu_time("self")
        .zip(cpu_time(server_pid))
        .map(|(me, server)| me + server)
}

/// A connection subscribed to [`TOPIC`], the subscription confirmed by a round trip.
async fn nats_subscribe(addr: SocketAddr) -> std::io::Result<(TcpStream, Parser)> {
    let (mut sub, mut parser) = nats_connect(addr).await?;
    sub.write_all(format!("SUB {TOPIC} 1\r\nPING\r\n").as_bytes())
        .await?;
    nats_pong(&mut sub, &mut parser).await?;
    Ok((sub, parser))
}

/// Counts the messages a subscribed connection receives, as [`count_subscription`] does.
fn count_nats_messages(
    mut sub: TcpStream,
    mut parser: Parser,
    target: Arc<AtomicU64>,
    errors: Arc<Mutex<Vec<String>>>,
) -> tokio::task::JoinHandle<(u64, Instant)> {
    tokio::spawn(async move {
        let mut n = 0u64;
        let mut last = Instant::now();
        'read: while n < target.load(Ordering::Acquire) {
            while let Some(item) = parser.next() {
                match item {
                    Incoming::Msg { len, .. } => {
                        debug_assert_eq!(len, SMALL);
                        n += 1;
                        last = Instant::now();
                    }
                    Incoming::Ping => {
                        let _ = sub.write_all(b"PONG\r\n").await;
                    }
                    Incoming::Err(e) => errors.lock().unwrap().push(e),
                    _ => {}
                }
            }
            match tokio::time::timeout(QUIET, sub.read_buf(&mut parser.buffer)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break 'read,
                Ok(Ok(_)) => {}
                Err(_) if target.load(Ordering::Acquire) != u64::MAX => break 'read,
                Err(_) => {}
            }
        }
        (n, last)
    })
}

/// Publishes 64-byte messages flat out on `publisher`, in buffered writes as NATS clients do,
/// with a round trip at the end so the server has read everything; returns how many.
async fn nats_publish_burst(
    (publisher, parser): &mut (TcpStream, Parser),
    plan: &Plan,
    start: Instant,
) -> std::io::Result<u64> {
    let payload = [0x5au8; SMALL];
    let mut sent = 0u64;
    let mut out = Vec::with_capacity(64 << 10);
    while sent < plan.burst {
        nats_pub(&mut out, TOPIC, None, &payload);
        sent += 1;
        if out.len() >= (64 << 10) - 128 {
            publisher.write_all(&out).await?;
            out.clear();
            if sent % 4096 < 800 && start.elapsed() > plan.burst_time_cap {
                break;
            }
        }
    }
    out.extend_from_slice(b"PING\r\n");
    publisher.write_all(&out).await?;
    nats_pong(publisher, parser).await?;
    Ok(sent)
}

// ---------------------------------------------------------------------------------------------
// 3. RPC.

const CALLERS: usize = 64;

/// Where the receiving side of an RPC, pub/sub 1 → 1 or fan-out measurement runs.
#[derive(Clone, Copy, PartialEq)]
enum Placement {
    /// Every node and the callers (or publisher and subscribers) on the benchmark's one
    /// runtime (two workers).
    Shared,
    /// The responding (or subscribing) nodes on a runtime of their own (two more threads), as
    /// nats-server runs in a process of its own next to the benchmark's runtime: the
    /// like-for-like comparison.
    OwnThreads,
}

impl Placement {
    fn label(self) -> &'static str {
        match self {
            Placement::Shared => "Foundation (1 runtime)",
            Placement::OwnThreads => "Foundation",
        }
    }
}

/// What Foundation's RPC achieved with one placement.
struct FoundationRpc {
    placement: Placement,
    remote: Percentiles,
    concurrent: Concurrent,
    local: Percentiles,
}

async fn rpc(plan: &Plan) {
    println!();
    println!("== RPC: {SMALL} B request/response through the registry ==");
    println!(
        "(Foundation: the responding node on threads of its own, as nats-server has; \
         \"1 runtime\": both nodes share the benchmark's two workers with the callers)"
    );
    let mut ours = Vec::new();
    for placement in [Placement::OwnThreads, Placement::Shared] {
        let run = foundation_rpc(plan, placement).await;
        run.print();
        ours.push(run);
    }
    if skip_peers() {
        return;
    }
    let nats = match NatsServer::start().await {
        Ok(server) => nats_rpc(&server, plan).await,
        Err(e) => Err(e),
    };
    let (latency, nats) = match nats {
        Ok(measured) => measured,
        Err(e) => return println!("NATS: skipped: {e}"),
    };
    println!(
        "{:<24} p50 {:>9}  p99 {:>9}   {CALLERS} callers: {:>9} calls/s",
        "NATS request/reply",
        human(latency.p50),
        human(latency.p99),
        thousands(nats.rate)
    );
    nats.print("NATS request/reply");
    for run in &ours {
        run.compare(&latency, &nats);
    }
    match erlang::rpc(plan) {
        Ok(erlang) => erlang.print_against(&ours[0]),
        Err(e) => println!("distributed Erlang: skipped: {e}"),
    }
}

impl FoundationRpc {
    fn print(&self) {
        let name = self.placement.label();
        println!(
            "{:<24} p50 {:>9}  p99 {:>9}   {CALLERS} callers: {:>9} calls/s",
            name,
            human(self.remote.p50),
            human(self.remote.p99),
            thousands(self.concurrent.rate)
        );
        self.concurrent.print(name);
        println!(
            "{:<24} p50 {:>9}  p99 {:>9}   (same node: no network)",
            "  same-node call",
            human(self.local.p50),
            human(self.local.p99)
        );
    }

    fn compare(&self, latency: &Percentiles, nats: &Concurrent) {
        let ratio =
            |ours: Duration, theirs: Duration| ours.as_secs_f64() / theirs.as_secs_f64().max(1e-12);
        let ours = &self.concurrent;
        println!(
            "{}/NATS: p50 {:.2}×  p99 {:.2}×  (lower is better)   {CALLERS}-caller rate {:.2}× (higher is better)",
            self.placement.label(),
            ratio(self.remote.p50, latency.p50),
            ratio(self.remote.p99, latency.p99),
            ours.rate / nats.rate.max(1e-9)
        );
        println!(
            "{}/NATS at {CALLERS} callers: p50 {:.2}×  p99 {:.2}×  CPU per call {}  (lower is better)",
            self.placement.label(),
            ratio(ours.latency.p50, nats.latency.p50),
            ratio(ours.latency.p99, nats.latency.p99),
            ours.cpu_per_call
                .zip(nats.cpu_per_call)
                .map_or("n/a".into(), |(o, t)| format!("{:.2}×", ratio(o, t)))
        );
    }
}

/// Two nodes placed as `placement` says, the responder serving `echo`; one caller's latency,
/// [`CALLERS`] callers' rate and latency, and a same-node call's latency.
async fn foundation_rpc(plan: &Plan, placement: Placement) -> FoundationRpc {
    let home = Home::new(placement, "responder");
    let start_callee = async {
        let callee = Node::start(nodes::settings("services-bench", SECRET, vec![]))
            .await
            .expect("responder starts");
        callee
            .services()
            .register("echo", echo(), ServiceOptions::default())
            .await
            .expect("register");
        callee
    };
    let callee = home.run(start_callee).await;
    let caller = Node::start(nodes::settings(
        "services-bench",
        SECRET,
        vec![callee.addr()],
    ))
    .await
    .expect("caller starts");
    caller
        .services()
        .register("echo-local", echo(), ServiceOptions::default())
        .await
        .expect("register");
    assert!(
        wait_until(Duration::from_secs(10), || caller
            .services()
            .lookup("echo")
            .len()
            == 1)
        .await,
        "the echo service did not reach the caller"
    );
    let (remote, concurrent, local) = measure_rpc(plan, &caller).await;
    caller.abort().await;
    home.stop(callee).await;
    FoundationRpc {
        placement,
        remote,
        concurrent,
        local,
    }
}

async fn measure_rpc(plan: &Plan, caller: &Node) -> (Percentiles, Concurrent, Percentiles) {
    let rpc = caller.rpc();
    let body = Bytes::from(vec![0x42; SMALL]);
    let options = CallOptions::default();
    let deadline = Duration::from_secs(5);
    let one = move |service: &'static str| {
        let (rpc, body, options) = (rpc.clone(), body.clone(), options.clone());
        async move {
            rpc.call_bytes(service, body, deadline, &options)
                .await
                .expect("call")
        }
    };
    for _ in 0..1_000 {
        one("echo").await;
    }
    let mut samples = Vec::with_capacity(plan.rpc_calls);
    for _ in 0..plan.rpc_calls {
        let t0 = Instant::now();
        one("echo").await;
        samples.push(t0.elapsed());
    }
    let remote = percentiles(samples);
    let caller = one.clone();
    let concurrent = calls_per_second(plan.concurrent_window, &["self".into()], move || {
        let call = caller.clone();
        async move {
            call("echo").await;
            true
        }
    })
    .await;
    let mut samples = Vec::with_capacity(plan.rpc_calls);
    for _ in 0..plan.rpc_calls {
        let t0 = Instant::now();
        one("echo-local").await;
        samples.push(t0.elapsed());
    }
    (remote, concurrent, percentiles(samples))
}

/// A NATS requester shared by many callers: one connection, replies routed by inbox subject.
struct NatsRequester {
    out: mpsc::UnboundedSender<Vec<u8>>,
    pending: Arc<Mutex<HashMap<u64, oneshot::Sender<()>>>>,
    next: AtomicU64,
}

impl NatsRequester {
    async fn request(&self, payload: &[u8]) -> Result<(), String> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (done, answered) = oneshot::channel();
        self.pending.lock().unwrap().insert(id, done);
        let mut message = Vec::with_capacity(payload.len() + 48);
        let inbox = format!("_INBOX.bench.{id}");
        nats_pub(&mut message, "rpc", Some(inbox.as_bytes()), payload);
        self.out.send(message).map_err(|_| "writer gone")?;
        answered.await.map_err(|_| "reader gone".into())
    }
}

async fn nats_rpc(server: &NatsServer, plan: &Plan) -> Result<(Percentiles, Concurrent), String> {
    let io = |e: std::io::Error| e.to_string();
    // The responder echoes each request to its reply subject.
    let (mut responder, mut parser) = nats_connect(server.addr).await.map_err(io)?;
    responder
        .write_all(b"SUB rpc 1\r\nPING\r\n")
        .await
        .map_err(io)?;
    nats_pong(&mut responder, &mut parser).await.map_err(io)?;
    let responder_task = tokio::spawn(async move {
        let payload = [0x42u8; SMALL];
        let mut out = Vec::with_capacity(4096);
        loop {
            while let Some(item) = parser.next() {
                match item {
                    Incoming::Msg {
                        reply: Some(reply), ..
                    } => nats_pub(
                        &mut out,
                        std::str::from_utf8(&reply).unwrap_or("x"),
                        None,
                        &payload,
                    ),
                    Incoming::Ping => out.extend_from_slice(b"PONG\r\n"),
                    _ => {}
                }
            }
            if !out.is_empty() {
                if responder.write_all(&out).await.is_err() {
                    return;
                }
                out.clear();
            }
            match responder.read_buf(&mut parser.buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    });
    // The requester: a writer task that coalesces queued requests, a reader that routes replies.
    let (stream, mut parser) = nats_connect(server.addr).await.map_err(io)?;
    let (mut read, mut write) = stream.into_split();
    write
        .write_all(b"SUB _INBOX.bench.* 2\r\nPING\r\n")
        .await
        .map_err(io)?;
    loop {
        if let Some(Incoming::Pong) = parser.next() {
            break;
        }
        if parser.buffer.windows(2).any(|w| w == b"\r\n") {
            continue;
        }
        if read.read_buf(&mut parser.buffer).await.map_err(io)? == 0 {
            return Err("nats-server closed the connection".into());
        }
    }
    let (out, mut queue) = mpsc::unbounded_channel::<Vec<u8>>();
    let writer = tokio::spawn(async move {
        let mut buffer = Vec::with_capacity(16 << 10);
        while let Some(first) = queue.recv().await {
            buffer.extend_from_slice(&first);
            while let Ok(more) = queue.try_recv() {
                buffer.extend_from_slice(&more);
            }
            if write.write_all(&buffer).await.is_err() {
                return;
            }
            buffer.clear();
        }
    });
    let pending: Arc<Mutex<HashMap<u64, oneshot::Sender<()>>>> = Arc::default();
    let reader = {
        let pending = pending.clone();
        tokio::spawn(async move {
            loop {
                route_replies(&mut parser, &pending);
                match read.read_buf(&mut parser.buffer).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
    };
    let requester = Arc::new(NatsRequester {
        out,
        pending,
        next: AtomicU64::new(0),
    });
    let payload = [0x42u8; SMALL];
    for _ in 0..1_000 {
        requester.request(&payload).await?;
    }
    let mut samples = Vec::with_capacity(plan.rpc_calls);
    for _ in 0..plan.rpc_calls {
        let t0 = Instant::now();
        requester.request(&payload).await?;
        samples.push(t0.elapsed());
    }
    let pids = ["self".to_string(), server.child.id().to_string()];
    let rate = calls_per_second(plan.concurrent_window, &pids, move || {
        let requester = requester.clone();
        async move { requester.request(&payload).await.is_ok() }
    })
    .await;
    writer.abort();
    reader.abort();
    responder_task.abort();
    Ok((percentiles(samples), rate))
}

/// What [`CALLERS`] concurrent callers achieved over the measured window.
struct Concurrent {
    /// Calls completed per second.
    rate: f64,
    /// Latency of the calls that started and ended inside the window.
    latency: Percentiles,
    /// CPU (user + system) of the processes involved over the window, per completed call.
    cpu_per_call: Option<Duration>,
    /// Time the processes' threads were runnable but waiting for a CPU over the window, per
    /// completed call: the other load's share of the latency, not the work's.
    cpu_wait_per_call: Option<Duration>,
    /// Times the processes' threads were put on a CPU over the window, per completed call: each
    /// is a wake-up (or a return after preemption), a chance to queue behind other work.
    thread_runs_per_call: Option<f64>,
    /// Calls inside the window of the least and the most served caller: a starved caller shows.
    calls_per_caller: (usize, usize),
    /// How the slow calls came.
    stalls: Stalls,
}

/// The calls slower than [`SLOW_FACTOR`] × the median, grouped into stalls: slow calls that
/// ended within [`STALL_GAP`] of each other. Stalls that hold every caller at once point at a
/// stage all calls pass through (a descheduled thread there), not at unfair handoffs.
struct Stalls {
    slow_calls: usize,
    stalls: usize,
    /// Stalls that held at least half the callers.
    of_most_callers: usize,
}

const SLOW_FACTOR: u32 = 5;
const STALL_GAP: Duration = Duration::from_millis(1);

impl Stalls {
    /// From each call's end and latency.
    fn of(mut calls: Vec<(Instant, Duration)>, p50: Duration) -> Stalls {
        calls.retain(|(_, latency)| *latency > p50 * SLOW_FACTOR);
        calls.sort_unstable_by_key(|(end, _)| *end);
        let mut sizes: Vec<usize> = Vec::new();
        let mut last: Option<Instant> = None;
        for (end, _) in &calls {
            match (last, sizes.last_mut()) {
                (Some(last), Some(size)) if end.duration_since(last) < STALL_GAP => *size += 1,
                _ => sizes.push(1),
            }
            last = Some(*end);
        }
        Stalls {
            slow_calls: calls.len(),
            stalls: sizes.len(),
            of_most_callers: sizes.iter().filter(|&&n| n >= CALLERS / 2).count(),
        }
    }
}

impl Concurrent {
    fn print(&self, name: &str) {
        let per_call = |c: Option<Duration>| {
            c.map_or("n/a".into(), |c| format!("{:.2} µs", c.as_secs_f64() * 1e6))
        };
        println!(
            "{:<24} at {CALLERS} callers: p50 {:>9}  p99 {:>9}  max {:>9}  CPU per call {}",
            name,
            human(self.latency.p50),
            human(self.latency.p99),
            human(self.latency.max),
            per_call(self.cpu_per_call)
        );
        println!(
            "{:<24} waiting for a CPU per call {}, thread runs per call {}, calls per caller {}–{}",
            "",
            per_call(self.cpu_wait_per_call),
            self.thread_runs_per_call
                .map_or("n/a".into(), |r| format!("{r:.2}")),
            self.calls_per_caller.0,
            self.calls_per_caller.1
        );
        let stalls = &self.stalls;
        println!(
            "{:<24} calls over {SLOW_FACTOR}× p50: {} in {} stalls, {} of them holding ≥ {} callers at once",
            "",
            stalls.slow_calls,
            stalls.stalls,
            stalls.of_most_callers,
            CALLERS / 2
        );
    }
}

/// Time the threads of process `pid` ("self" for this one) spent runnable but not running, from
/// the kernel's /proc/<pid>/task/*/schedstat (threads that ended are not counted).
fn cpu_wait(pid: &str) -> Option<Duration> {
    schedstat(pid, 1).map(Duration::from_nanos)
}

/// Times the threads of process `pid` were put on a CPU (schedstat's run count).
fn thread_runs(pid: &str) -> Option<u64> {
    schedstat(pid, 2)
}

/// Field `field` of /proc/<pid>/task/*/schedstat, summed over the process's threads.
fn schedstat(pid: &str, field: usize) -> Option<u64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let sum = tasks
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok())
        .filter_map(|stat| stat.split_whitespace().nth(field)?.parse::<u64>().ok())
        .sum();
    Some(sum)
}

/// Calls completed per second by [`CALLERS`] tasks calling `call` back to back over `window`,
/// after a 200 ms warm-up, with the latency of the calls inside the window and the CPU time
/// processes `pids` used during it ("self" is this process). A caller stops early when `call`
/// answers `false` (an error).
async fn calls_per_second<F, Fut>(window: Duration, pids: &[String], call: F) -> Concurrent
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let stop = Arc::new(AtomicBool::new(false));
    let measuring = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..CALLERS)
        .map(|_| {
            let (stop, measuring, calls, call) =
                (stop.clone(), measuring.clone(), calls.clone(), call.clone());
            tokio::spawn(async move {
                let mut samples = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let (t0, counted) = (Instant::now(), measuring.load(Ordering::Relaxed));
                    if !call().await {
                        break;
                    }
                    calls.fetch_add(1, Ordering::Relaxed);
                    if counted && measuring.load(Ordering::Relaxed) {
                        samples.push((Instant::now(), t0.elapsed()));
                    }
                }
                samples
            })
        })
        .collect();
    let sum = |measure: fn(&str) -> Option<Duration>| {
        pids.iter()
            .map(|pid| measure(pid))
            .sum::<Option<Duration>>()
    };
    let runs = || pids.iter().map(|pid| thread_runs(pid)).sum::<Option<u64>>();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (cpu_before, wait_before, runs_before) = (sum(cpu_time), sum(cpu_wait), runs());
    measuring.store(true, Ordering::Relaxed);
    let (start, base) = (Instant::now(), calls.load(Ordering::Relaxed));
    tokio::time::sleep(window).await;
    let done = calls.load(Ordering::Relaxed) - base;
    let elapsed = start.elapsed();
    measuring.store(false, Ordering::Relaxed);
    let (cpu_after, wait_after, runs_after) = (sum(cpu_time), sum(cpu_wait), runs());
    stop.store(true, Ordering::Relaxed);
    let mut samples = Vec::new();
    let mut calls_per_caller = (usize::MAX, 0);
    for task in tasks {
        let caller = task.await.unwrap_or_default();
        calls_per_caller.0 = calls_per_caller.0.min(caller.len());
        calls_per_caller.1 = calls_per_caller.1.max(caller.len());
        samples.extend(caller);
    }
    if samples.is_empty() {
        samples.push((Instant::now(), elapsed));
    }
    let latency = percentiles(samples.iter().map(|(_, latency)| *latency).collect());
    let per_call = |after: Option<Duration>, before: Option<Duration>| {
        cpu_spent(before, after).map(|spent| spent / done.max(1) as u32)
    };
    Concurrent {
        rate: done as f64 / elapsed.as_secs_f64(),
        stalls: Stalls::of(samples, latency.p50),
        latency,
        cpu_per_call: per_call(cpu_after, cpu_before),
        cpu_wait_per_call: per_call(wait_after, wait_before),
        thread_runs_per_call: runs_after
            .zip(runs_before)
            .map(|(after, before)| after.saturating_sub(before) as f64 / done.max(1) as f64),
        calls_per_caller,
    }
}

/// Completes the pending requests whose replies are in `parser`'s buffer
/// (`MSG _INBOX.bench.<id> 2 <len>`).
fn route_replies(parser: &mut Parser, pending: &Mutex<HashMap<u64, oneshot::Sender<()>>>) {
    loop {
        let Some(end) = parser.buffer.windows(2).position(|w| w == b"\r\n") else {
            return;
        };
        let line = &parser.buffer[..end];
        let Some(rest) = line.strip_prefix(b"MSG ") else {
            parser.buffer.advance(end + 2);
            continue;
        };
        let fields: Vec<&[u8]> = rest.split(|b| *b == b' ').collect();
        let len: usize = fields
            .last()
            .and_then(|f| std::str::from_utf8(f).ok())
            .and_then(|f| f.parse().ok())
            .unwrap_or(0);
        if parser.buffer.len() < end + 2 + len + 2 {
            return;
        }
        let id = fields
            .first()
            .and_then(|s| s.rsplit(|b| *b == b'.').next())
            .and_then(|s| std::str::from_utf8(s).ok())
            .and_then(|s| s.parse::<u64>().ok());
        parser.buffer.advance(end + 2 + len + 2);
        if let Some(done) = id.and_then(|id| pending.lock().unwrap().remove(&id)) {
            let _ = done.send(());
        }
    }
}
