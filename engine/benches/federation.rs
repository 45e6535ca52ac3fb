//! Federation benchmark: two clusters of real runtime nodes on 127.0.0.1 in this process,
//! `a` (a gateway `a0` and `a1`, which serves `echo`) and `b` (a gateway `b0` and `b1`), linked
//! through their gateways.
//!
//! ```sh
//! cargo bench -p foundation-engine --bench federation            # full run
//! cargo bench -p foundation-engine --bench federation -- quick   # short run, fewer samples
//! ```
//!
//! 1. RPC, 64-byte request/response to `echo` in `a`: from `b1` (not a gateway: `b1` → `b0`'s
//!    relay → QUIC link → `a0` → `a1`), from `b0` (a gateway: no relay hop), and inside `a`
//!    from `a0` (one hop), in the same run; p50/p99 of one caller and of 64 concurrent callers,
//!    calls per second, and the cross-cluster figures as ratios of the intra-cluster ones (the
//!    gateways' overhead).
//! 2. Global directory propagation: time from `register` of an exported service on `a1` until
//!    `b0`'s directory shows it, and until `lookup_in` on `b1` (relayed through `b0`) does, at
//!    the default WAN probe interval (5 s): with export changes pushed at once (the default,
//!    coalesced 50 ms apart) and, in the same run, without (the probes alone, as before).
//! 3. Bridged pub/sub, 64-byte messages published on `a1`: to a subscriber on `b1` (bridged:
//!    `a1` → `a0` → QUIC link → `b0` → `b1`) and, in the same run, to one on `a0` inside `a`;
//!    one message at a time (publish to receipt, p50/p99) and a burst published flat out
//!    (delivered per second, and how many were lost: delivery is at most once). Then a burst
//!    on a topic `b` imports but nobody there subscribes to (`b1` subscribes to `bridged.x`
//!    only): how many messages and payload bytes `a0` kept home on `b`'s interest, and the
//!    bytes the link carried meanwhile.
//!
//! Prints numbers; never fails on a figure (timing is not a pass/fail test).

#[path = "common/nodes.rs"]
mod nodes;
#[path = "../../transport/benches/common/percentiles.rs"]
mod percentiles;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use foundation_engine::federation::{BridgeConfig, Routing, WanTimers};
use foundation_engine::runtime::federation::{FederationSettings, LinkSettings};
use foundation_engine::runtime::services::{
    Call, CallOptions, ServiceOptions, SlowPolicy, SubscribeOptions, Subscription,
};
use foundation_engine::runtime::Node;
use foundation_transport::security::RemoteRoot;
use foundation_transport::{ClusterName, ClusterSecret};
use percentiles::{percentiles, Percentiles};

const SMALL: usize = 64;
const CONCURRENT: usize = 64;
const DEADLINE: Duration = Duration::from_secs(5);

/// Sizes of one run.
struct Plan {
    name: &'static str,
    calls: usize,
    concurrent_window: Duration,
    /// Propagation samples, with pushes and without.
    samples: usize,
    /// Pub/sub: messages sent one at a time, and the burst.
    messages: usize,
    burst: usize,
}

impl Plan {
    fn full() -> Plan {
        Plan {
            name: "full",
            calls: 5_000,
            concurrent_window: Duration::from_secs(4),
            samples: 20,
            messages: 2_000,
            burst: 50_000,
        }
    }

    fn quick() -> Plan {
        Plan {
            name: "quick",
            calls: 1_000,
            concurrent_window: Duration::from_secs(2),
            samples: 6,
            messages: 500,
            burst: 10_000,
        }
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "quick" || a == "--quick")
        || std::env::var_os("FOUNDATION_BENCH_QUICK").is_some();
    let plan = if quick { Plan::quick() } else { Plan::full() };
    println!(
        "federation benchmark ({} run; {} cores; 127.0.0.1; 4 nodes in one process; 1-minute load average before: {})",
        plan.name,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_average()
    );
    nodes::runtime().block_on(async {
        let timers = WanTimers::default();
        let pushed = Routing::default();
        let clusters = Clusters::start(timers, &pushed, plan.samples).await;
        rpc(&plan, &clusters).await;
        pubsub(&plan, &clusters).await;
        let after = propagation(&clusters, timers, &pushed, plan.samples).await;
        clusters.stop().await;
        let probes_only = Routing {
            push_spacing: None,
            ..Routing::default()
        };
        let clusters = Clusters::start(timers, &probes_only, plan.samples).await;
        let before = propagation(&clusters, timers, &probes_only, plan.samples).await;
        clusters.stop().await;
        println!();
        println!(
            "directory propagation to b1, pushed against probes only: p50 x{:.3}, max x{:.3}",
            ratio(after.p50, before.p50),
            ratio(after.max, before.max)
        );
    });
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "n/a".into())
}

fn secret(cluster: &str) -> String {
    format!("federation benchmark secret of {cluster}")
}

/// A loopback UDP port free a moment ago: each gateway must know the other's address up front.
fn free_addr() -> SocketAddr {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket.local_addr().expect("local addr")
}

fn echo() -> impl foundation_engine::runtime::services::Handler {
    |call: Call| async move { Ok(call.body) }
}

/// The name of the `i`th service registered for a propagation sample.
fn probe_service(i: usize) -> String {
    format!("fresh-{i}")
}

struct Clusters {
    a: Vec<Node>,
    b: Vec<Node>,
}

impl Clusters {
    /// Both clusters, `echo` on `a1`, both gateways up and `echo` visible from `b1`; `a`
    /// exports `echo` and the `samples` services the propagation samples register.
    async fn start(timers: WanTimers, routing: &Routing, samples: usize) -> Clusters {
        let a = nodes::cluster("a", &secret("a"), 2).await;
        let b = nodes::cluster("b", &secret("b"), 2).await;
        a[1].services()
            .register("echo", echo(), ServiceOptions::default())
            .await
            .expect("register");
        let (a_gw, b_gw) = (free_addr(), free_addr());
        let mut exports: Vec<String> = (0..samples).map(probe_service).collect();
        exports.push("echo".into());
        let a_settings = settings(a_gw, exports, "b", b_gw, timers, bridge("b", true));
        let b_settings = settings(b_gw, vec![], "a", a_gw, timers, bridge("a", false));
        for (node, settings) in [(&a[0], a_settings), (&b[0], b_settings)] {
            let routing = routing.clone();
            let settings = FederationSettings {
                routing,
                ..settings
            };
            node.start_gateway(settings).expect("gateway starts");
        }
        let clusters = Clusters { a, b };
        let seen = clusters
            .until(Duration::from_secs(30), |c| c.b1_sees("echo"))
            .await;
        assert!(seen.is_some(), "echo did not reach b1 within 30 s");
        clusters
    }

    async fn b1_sees(&self, service: &str) -> bool {
        let found = self.b[1].services().lookup_in("a", service).await;
        matches!(found, Ok(Some(_)))
    }

    async fn b0_sees(&self, service: &str) -> bool {
        let found = self.b[0].services().lookup_in("a", service).await;
        matches!(found, Ok(Some(_)))
    }

    /// How long until `check` holds, polled every millisecond; `None` after `limit`.
    async fn until<'a, F: std::future::Future<Output = bool>>(
        &'a self,
        limit: Duration,
        check: impl Fn(&'a Clusters) -> F,
    ) -> Option<Duration> {
        let started = Instant::now();
        while !check(self).await {
            if started.elapsed() > limit {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        Some(started.elapsed())
    }

    async fn stop(self) {
        for node in self.a.iter().chain(&self.b) {
            node.stop_gateway();
            node.abort().await;
        }
    }
}

fn settings(
    bind: SocketAddr,
    exports: Vec<String>,
    remote: &str,
    remote_gateway: SocketAddr,
    timers: WanTimers,
    bridge: BridgeConfig,
) -> FederationSettings {
    let link = LinkSettings {
        cluster: ClusterName::new(remote).expect("cluster name"),
        gateways: vec![remote_gateway],
        root: RemoteRoot::Secret(ClusterSecret::new(secret(remote)).expect("secret")),
    };
    FederationSettings {
        links: vec![link],
        exports,
        timers,
        bridges: vec![bridge],
        ..FederationSettings::new(bind)
    }
}

/// `bridged.>` from a to b: exported towards `remote` on a's side, imported on b's.
fn bridge(remote: &str, export: bool) -> BridgeConfig {
    let patterns = vec![BRIDGED.to_owned()];
    let (export, import) = if export {
        (patterns, vec![])
    } else {
        (vec![], patterns)
    };
    BridgeConfig {
        cluster: remote.into(),
        export,
        import,
    }
}

// ---------------------------------------------------------------------------------------------
// 1. RPC.

/// One 64-byte `call_in("a", "echo", ..)`: inside the cluster when `node` is in `a`.
async fn call(node: &Node) {
    let body = Bytes::from(vec![0x42; SMALL]);
    let reply = node
        .rpc()
        .call_in_bytes("a", "echo", body, DEADLINE, &CallOptions::default())
        .await
        .expect("call");
    assert_eq!(reply.len(), SMALL);
}

/// One caller's latencies, after a warm-up.
async fn one_caller(node: &Node, calls: usize) -> Percentiles {
    for _ in 0..calls / 10 {
        call(node).await;
    }
    let mut samples = Vec::with_capacity(calls);
    for _ in 0..calls {
        let t0 = Instant::now();
        call(node).await;
        samples.push(t0.elapsed());
    }
    percentiles(samples)
}

/// [`CONCURRENT`] callers calling flat out for `window`: their latencies and calls per second.
async fn concurrent(node: &Node, window: Duration) -> (Percentiles, f64) {
    let samples = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    let callers: Vec<_> = (0..CONCURRENT)
        .map(|_| {
            let (node, samples) = (node.clone(), samples.clone());
            tokio::spawn(async move {
                let mut mine = Vec::new();
                while started.elapsed() < window {
                    let t0 = Instant::now();
                    call(&node).await;
                    mine.push(t0.elapsed());
                }
                samples.lock().expect("samples").extend(mine);
            })
        })
        .collect();
    for caller in callers {
        caller.await.expect("caller");
    }
    let elapsed = started.elapsed().as_secs_f64();
    let samples = std::mem::take(&mut *samples.lock().expect("samples"));
    let rate = samples.len() as f64 / elapsed;
    (percentiles(samples), rate)
}

async fn rpc(plan: &Plan, clusters: &Clusters) {
    println!();
    println!("== RPC: {SMALL} B request/response to `echo` on a1 ==");
    let paths: [(&str, &Node); 3] = [
        ("intra-cluster, a0 -> a1", &clusters.a[0]),
        (
            "cross-cluster from b's gateway, b0 -> a0 -> a1",
            &clusters.b[0],
        ),
        (
            "cross-cluster from b1 (relayed), b1 -> b0 -> a0 -> a1",
            &clusters.b[1],
        ),
    ];
    let mut figures = Vec::new();
    for (label, node) in paths {
        let single = one_caller(node, plan.calls).await;
        let (many, rate) = concurrent(node, plan.concurrent_window).await;
        println!(
            "{label}:\n  1 caller:   p50 {:>8.1?}  p99 {:>8.1?}  ({} calls)\n  {CONCURRENT} callers: p50 {:>8.1?}  p99 {:>8.1?}  {:>7.0} calls/s",
            single.p50, single.p99, single.n, many.p50, many.p99, rate
        );
        figures.push((single, many, rate));
    }
    let (intra_one, intra_many, intra_rate) = &figures[0];
    for (label, (one, many, rate)) in ["from b0", "from b1"].iter().zip(&figures[1..]) {
        println!(
            "overhead {label} against intra-cluster: 1-caller p50 x{:.2}, p99 x{:.2}; {CONCURRENT}-caller p50 x{:.2}; throughput x{:.2}",
            ratio(one.p50, intra_one.p50),
            ratio(one.p99, intra_one.p99),
            ratio(many.p50, intra_many.p50),
            rate / intra_rate
        );
    }
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64().max(1e-9)
}

// ---------------------------------------------------------------------------------------------
// 2. Directory propagation.

/// Registration-to-visibility samples; returns b1's figures.
async fn propagation(
    clusters: &Clusters,
    timers: WanTimers,
    routing: &Routing,
    samples: usize,
) -> Percentiles {
    println!();
    let pushes = match routing.push_spacing {
        Some(spacing) => format!("changes pushed at once, {spacing:?} apart at most"),
        None => "probes only, no push".to_owned(),
    };
    println!(
        "== global directory propagation, WAN probe interval {:?}, {pushes} ==",
        timers.probe_interval
    );
    let limit = timers.probe_interval * 4 + Duration::from_secs(5);
    let (mut to_gateway, mut to_node) = (Vec::new(), Vec::new());
    for i in 0..samples {
        // Registrations one right after another would line up with the probe rounds (the
        // gateways' probes share a phase): each waits a different fraction of an interval
        // first (the golden-ratio sequence spreads them evenly), so the samples cover it.
        let phase = (i as f64 * 0.618_034).fract();
        tokio::time::sleep(timers.probe_interval.mul_f64(phase)).await;
        let name = probe_service(i);
        let started = Instant::now();
        clusters.a[1]
            .services()
            .register(&name, echo(), ServiceOptions::default())
            .await
            .expect("register");
        let gateway = clusters.until(limit, |c| c.b0_sees(&name)).await;
        to_gateway.extend(gateway.map(|_| started.elapsed()));
        let node = clusters.until(limit, |c| c.b1_sees(&name)).await;
        to_node.extend(node.map(|_| started.elapsed()));
        if gateway.is_none() || node.is_none() {
            println!("  sample {i}: not seen within {limit:?}");
        }
    }
    print_propagation("b's gateway (b0) sees it", &percentiles(to_gateway));
    let to_node = percentiles(to_node);
    print_propagation("b's other node (b1, lookup_in) sees it", &to_node);
    to_node
}

fn print_propagation(label: &str, p: &Percentiles) {
    println!(
        "  until {label}: p50 {:>8.1?}  p99 {:>8.1?}  max {:>8.1?}  ({} samples)",
        p.p50, p.p99, p.max, p.n
    );
}

// ---------------------------------------------------------------------------------------------
// 3. Bridged pub/sub.

/// The pattern a bridges to b.
const BRIDGED: &str = "bridged.>";
/// The one bridged topic b subscribes to: b's interest.
const WATCHED: &str = "bridged.x";

async fn pubsub(plan: &Plan, clusters: &Clusters) {
    println!();
    println!("== pub/sub: {SMALL} B messages published on a1 (at most once) ==");
    let options = SubscribeOptions {
        capacity: plan.burst * 2,
        policy: SlowPolicy::DropOldest,
    };
    let subscribe = |node: &Node, pattern: &'static str| {
        let pubsub = node.pubsub();
        async move {
            pubsub
                .subscribe_with(pattern, options)
                .await
                .expect("subscribe")
        }
    };
    let mut inside = subscribe(&clusters.a[0], "inside.>").await;
    let mut bridged = subscribe(&clusters.b[1], WATCHED).await;
    let publisher = &clusters.a[1];
    let paths: [(&str, &str, &mut Subscription); 2] = [
        ("intra-cluster, a1 -> a0", "inside.x", &mut inside),
        ("bridged, a1 -> a0 -> b0 -> b1", WATCHED, &mut bridged),
    ];
    let mut figures = Vec::new();
    for (label, topic, subscription) in paths {
        warm_up(publisher, topic, subscription).await;
        let one = one_at_a_time(publisher, topic, subscription, plan.messages).await;
        let (rate, received) = burst(publisher, topic, subscription, plan.burst).await;
        println!(
            "{label}:\n  one at a time: p50 {:>8.1?}  p99 {:>8.1?}  ({} messages)\n  burst of {}: {rate:>8.0} delivered/s, {} lost",
            one.p50, one.p99, one.n, plan.burst, plan.burst - received
        );
        figures.push((one, rate));
    }
    let ((intra, intra_rate), (across, across_rate)) = (&figures[0], &figures[1]);
    println!(
        "bridged against intra-cluster: p50 x{:.2}, p99 x{:.2}; burst rate x{:.2}",
        ratio(across.p50, intra.p50),
        ratio(across.p99, intra.p99),
        across_rate / intra_rate
    );
    kept_home(plan, clusters).await;
}

/// A burst on a topic b imports but does not subscribe to: a's forwarder keeps it home once
/// it heard b's interest.
async fn kept_home(plan: &Plan, clusters: &Clusters) {
    let gateway = clusters.a[0].federation().expect("a0 is a gateway");
    let b = ClusterName::new("b").expect("a cluster name");
    let heard = clusters
        .until(Duration::from_secs(30), |_| {
            let (gateway, b) = (&gateway, &b);
            async move { gateway.interest_heard(b) == Some(vec![WATCHED.to_owned()]) }
        })
        .await;
    assert!(heard.is_some(), "a0 never heard b's interest");
    let kept = r#"foundation_federation_bridge_dropped_total{cluster="b",reason="no_interest"}"#;
    let unsent = r#"foundation_federation_bridge_unwanted_bytes_total{cluster="b"}"#;
    let before = (
        counter(&clusters.a[0], kept),
        counter(&clusters.a[0], unsent),
    );
    let link_before = gateway.bytes(&b).sent;
    let pubsub = clusters.a[1].pubsub();
    for _ in 0..plan.burst {
        let published = pubsub.publish("bridged.unwatched", vec![0; SMALL]);
        published.await.expect("publish");
    }
    let _ = clusters
        .until(Duration::from_secs(30), |c| {
            let done = counter(&c.a[0], kept) >= before.0 + plan.burst as u64;
            async move { done }
        })
        .await;
    println!(
        "burst of {} on bridged.unwatched (b imports it, nobody there subscribes): {} kept home by a0, {} payload bytes not sent; the link carried {} bytes a -> b meanwhile",
        plan.burst,
        counter(&clusters.a[0], kept) - before.0,
        counter(&clusters.a[0], unsent) - before.1,
        gateway.bytes(&b).sent - link_before
    );
}

/// A counter's value in `node`'s metrics, 0 when absent.
fn counter(node: &Node, series: &str) -> u64 {
    let mut text = String::new();
    let encoded = prometheus_client::encoding::text::encode(&mut text, node.registry());
    encoded.expect("metrics encode");
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0)
}

/// Publishes until the subscription sees a message (interest and the bridge take a moment),
/// then lets what is in flight arrive.
async fn warm_up(publisher: &Node, topic: &str, subscription: &mut Subscription) {
    let started = Instant::now();
    loop {
        publisher
            .pubsub()
            .publish(topic, vec![0; SMALL])
            .await
            .expect("publish");
        let got = tokio::time::timeout(Duration::from_millis(100), subscription.recv()).await;
        if matches!(got, Ok(Some(_))) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{topic} never arrived"
        );
    }
    while tokio::time::timeout(Duration::from_millis(300), subscription.recv())
        .await
        .is_ok()
    {}
}

/// Publish-to-receipt latency of `n` messages sent one after another.
async fn one_at_a_time(
    publisher: &Node,
    topic: &str,
    subscription: &mut Subscription,
    n: usize,
) -> Percentiles {
    let pubsub = publisher.pubsub();
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let t0 = Instant::now();
        pubsub
            .publish(topic, vec![0; SMALL])
            .await
            .expect("publish");
        let got = tokio::time::timeout(DEADLINE, subscription.recv()).await;
        if matches!(got, Ok(Some(_))) {
            samples.push(t0.elapsed());
        }
    }
    percentiles(samples)
}

/// Publishes `n` messages flat out; returns messages delivered per second (first publish to
/// last receipt) and how many arrived before a second passed without one.
async fn burst(
    publisher: &Node,
    topic: &str,
    subscription: &mut Subscription,
    n: usize,
) -> (f64, usize) {
    let pubsub = publisher.pubsub();
    let started = Instant::now();
    let receiving = async {
        let (mut received, mut last, mut buffer) = (0, started, Vec::new());
        loop {
            let more = subscription.recv_many(&mut buffer, 4096);
            match tokio::time::timeout(Duration::from_secs(1), more).await {
                Ok(got) if got > 0 => {
                    received += got;
                    last = Instant::now();
                    buffer.clear();
                }
                _ => return (received, last),
            }
        }
    };
    let publishing = async {
        for _ in 0..n {
            pubsub
                .publish(topic, vec![0; SMALL])
                .await
                .expect("publish");
        }
    };
    let ((received, last), ()) = tokio::join!(receiving, publishing);
    let elapsed = last.duration_since(started).as_secs_f64().max(1e-9);
    (received as f64 / elapsed, received)
}
