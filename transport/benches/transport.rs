//! Transport benchmark: two endpoints on 127.0.0.1 in one process, on a multi-threaded tokio
//! runtime, with mutual TLS from a cluster secret.
//!
//! `cargo bench -p foundation-transport --bench transport`
//!
//! 1. 64-byte messages one way on the events channel: delivered messages per second;
//! 2. 64-byte request/response round trip: p50 / p99;
//! 3. bulk throughput to one peer: MiB/s, with the default configuration (transfers on a bulk
//!    connection of their own, delay-based congestion control, on an endpoint and thread of
//!    their own), with the bulk connection on the regular endpoint (`bulk_endpoint: false`) and
//!    with bulk sharing the regular connection (`bulk_queue_target: None`, quinn's Cubic),
//!    each with the process's CPU time per MiB moved (steadier than the rate on a busy machine);
//! 4. head-of-line: latency of 64-byte coordination messages, one in flight at a time, while
//!    bulk transfers run back to back to the same peer — against our own idle latency, against
//!    the bulk connection on the regular endpoint, bulk sharing the regular connection, and
//!    against a single TCP connection carrying both (a small length-prefixed framing written
//!    here). Idle and loaded slices alternate (250 ms idle, 500 ms under bulk), so that the
//!    load other work puts on the machine falls on both alike.
//!
//! Prints a table; never fails on a missed target (timing is not a pass/fail test). Set
//! `FOUNDATION_BENCH_QUICK=1` for a short run with smaller counts, `FOUNDATION_BENCH_BULK_ONLY=1`
//! to run sections 3 and 4 only, and `FOUNDATION_BENCH_BULK_TARGET_US=<µs>` /
//! `FOUNDATION_BENCH_BULK_YIELD_US=<µs>` / `FOUNDATION_BENCH_BULK_NICE=<0-19>` /
//! `FOUNDATION_BENCH_BULK_PAYLOAD=<bytes>` to try another `bulk_queue_target` /
//! `bulk_yield_target` (0 for none) / `bulk_thread_nice` / `bulk_max_udp_payload`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc as std_mpsc, Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use foundation_transport::{
    Channel, ClusterName, ClusterSecret, Endpoint, Inbox, LocalIdentity, NodeAddr, NodeId,
    SendMode, TransportConfig, TransportMetrics, Trust,
};
use tokio::sync::mpsc;

mod common {
    pub mod percentiles;
}
use common::percentiles::{percentiles, Percentiles};

const SECRET: &str = "benchmark cluster secret, long enough";
const SMALL: usize = 64;
const MIB: f64 = (1u64 << 20) as f64;
const WAIT: SendMode = SendMode::Wait(Duration::from_secs(30));

/// Sizes of one run.
struct Plan {
    events: u64,
    events_time_cap: Duration,
    requests: usize,
    bulk_transfer: usize,
    bulk_transfers: usize,
    /// Head-of-line probes: this many idle slices, each followed by a loaded one.
    slices: u32,
}

/// One idle slice of the head-of-line probe; a loaded slice is twice as long. Idle and loaded
/// slices alternate so that both see the same load from the rest of the machine (on a shared
/// machine, minutes of back-to-back phases measure the neighbours as much as the transport).
const SLICE: Duration = Duration::from_millis(250);
/// Time for bulk to reach its rate after a pause, before a loaded slice is measured.
const RAMP: Duration = Duration::from_millis(30);
/// Size of each transfer while probing: small enough that a pause takes effect quickly.
const HOL_TRANSFER: usize = 4 << 20;

impl Plan {
    fn full() -> Plan {
        Plan {
            events: 2_000_000,
            events_time_cap: Duration::from_secs(20),
            requests: 20_000,
            bulk_transfer: 64 << 20,
            bulk_transfers: 8,
            slices: 8,
        }
    }

    fn quick() -> Plan {
        Plan {
            events: 200_000,
            events_time_cap: Duration::from_secs(5),
            requests: 2_000,
            bulk_transfer: 16 << 20,
            bulk_transfers: 4,
            slices: 2,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Timestamps carried in payloads (both ends live in this process, so one clock serves both).

static BASE: OnceLock<Instant> = OnceLock::new();

fn now_ns() -> u64 {
    BASE.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

fn stamped_payload() -> [u8; SMALL] {
    let mut payload = [0u8; SMALL];
    payload[..8].copy_from_slice(&now_ns().to_le_bytes());
    payload
}

fn latency_of(payload: &[u8]) -> Duration {
    let mut ts = [0u8; 8];
    ts.copy_from_slice(&payload[..8]);
    Duration::from_nanos(now_ns().saturating_sub(u64::from_le_bytes(ts)))
}

/// Linux's system-wide count of UDP datagrams dropped because a socket's receive buffer was full
/// (`RcvbufErrors` in /proc/net/snmp); `None` where it cannot be read.
fn udp_rcvbuf_errors() -> Option<u64> {
    let snmp = std::fs::read_to_string("/proc/net/snmp").ok()?;
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let (names, values) = (udp.next()?, udp.next()?);
    let at = names.split_whitespace().position(|n| n == "RcvbufErrors")?;
    values.split_whitespace().nth(at)?.parse().ok()
}

fn udp_drops_since(before: Option<u64>) -> String {
    match (before, udp_rcvbuf_errors()) {
        (Some(before), Some(after)) => thousands(after.saturating_sub(before) as f64),
        _ => "n/a".into(),
    }
}

/// CPU time this process has used so far, all threads, user and system.
fn process_cpu() -> Duration {
    // SAFETY: getrusage only writes the struct it is given; a zeroed rusage is a valid value.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

// ---------------------------------------------------------------------------------------------
// Statistics.

fn us(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us >= 10_000.0 {
        format!("{:.1} ms", us / 1000.0)
    } else {
        format!("{us:.1} µs")
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

// ---------------------------------------------------------------------------------------------
// Endpoints.

struct Node {
    endpoint: Endpoint,
    inbox: Inbox,
}

fn trust() -> Trust {
    Trust::Secret(ClusterSecret::new(SECRET).expect("secret long enough"))
}

/// How bulk transfers travel.
#[derive(Clone, Copy, PartialEq, Eq)]
enum BulkPath {
    /// The default: a bulk-only connection with the delay-based controller, on an endpoint
    /// (UDP socket) and thread of its own.
    Own,
    /// A bulk-only connection with the delay-based controller on the regular endpoint, its
    /// packets processed on the application's tokio workers (`bulk_endpoint: false`).
    OwnConnection,
    /// Sharing the regular connection and its controller (the behaviour before issue 16).
    Shared,
}

fn config(bulk: BulkPath) -> TransportConfig {
    let default = TransportConfig::default();
    let bulk_queue_target = match bulk {
        BulkPath::Shared => None,
        BulkPath::Own | BulkPath::OwnConnection => {
            match std::env::var("FOUNDATION_BENCH_BULK_TARGET_US")
                .ok()
                .and_then(|v| v.parse::<u64>().ok())
            {
                Some(0) => None,
                Some(us) => Some(Duration::from_micros(us)),
                None => default.bulk_queue_target,
            }
        }
    };
    let bulk_yield_target = match std::env::var("FOUNDATION_BENCH_BULK_YIELD_US")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        Some(0) => None,
        Some(us) => Some(Duration::from_micros(us)),
        None => default.bulk_yield_target,
    };
    let bulk_thread_nice = std::env::var("FOUNDATION_BENCH_BULK_NICE")
        .ok()
        .and_then(|v| v.parse::<i32>().ok())
        .unwrap_or(default.bulk_thread_nice);
    let bulk_max_udp_payload = std::env::var("FOUNDATION_BENCH_BULK_PAYLOAD")
        .ok()
        .and_then(|v| v.parse::<u16>().ok())
        .unwrap_or(default.bulk_max_udp_payload);
    TransportConfig {
        // Deeper per-peer queues than the default 8192 so the sender rarely waits on the queue.
        stream_queue: 65_536,
        bulk_queue_target,
        bulk_yield_target,
        bulk_endpoint: bulk == BulkPath::Own,
        bulk_thread_nice,
        bulk_max_udp_payload,
        ..default
    }
}

async fn node(bulk: BulkPath) -> Node {
    let identity = LocalIdentity {
        id: NodeId::random(),
        cluster: ClusterName::new("bench").expect("valid cluster name"),
    };
    let metrics = Arc::new(TransportMetrics::unregistered());
    let (endpoint, inbox) = Endpoint::start(identity, &trust(), config(bulk), metrics)
        .await
        .expect("endpoint starts");
    Node { endpoint, inbox }
}

/// Two endpoints, `a` already connected to `b`.
async fn pair(bulk: BulkPath) -> (Node, Node, NodeAddr) {
    let (a, b) = (node(bulk).await, node(bulk).await);
    let to = b.endpoint.local();
    a.endpoint.connect(to.addr).await.expect("a connects to b");
    (a, b, to)
}

async fn close(a: Node, b: Node) {
    tokio::join!(a.endpoint.close(), b.endpoint.close());
}

// ---------------------------------------------------------------------------------------------
// 1. Events throughput.

struct Throughput {
    delivered: u64,
    elapsed: Duration,
    enqueue: Duration,
}

async fn events_throughput(plan: &Plan) -> Throughput {
    let (a, mut b, to) = pair(BulkPath::Own).await;
    let payload = Bytes::from(vec![0x5a; SMALL]);
    // Warm up: stream opened, congestion window grown, allocator primed.
    let warm = 20_000;
    for _ in 0..warm {
        a.endpoint
            .send(to, Channel::Events, payload.clone(), WAIT)
            .await
            .expect("send");
    }
    for _ in 0..warm {
        b.inbox.events.recv().await.expect("warm-up message");
    }

    let target = Arc::new(AtomicU64::new(u64::MAX));
    let mut events = std::mem::replace(&mut b.inbox.events, mpsc::channel(1).1);
    let receiver = {
        let target = target.clone();
        tokio::spawn(async move {
            // Drain in batches, as a real consumer would: one timer per batch, not per message.
            let mut n = 0u64;
            let mut batch = Vec::with_capacity(4096);
            while n < target.load(Ordering::Acquire) {
                let wait = Duration::from_millis(100);
                match tokio::time::timeout(wait, events.recv_many(&mut batch, 4096)).await {
                    Ok(0) => break,
                    Ok(got) => {
                        debug_assert!(batch.iter().all(|m| m.payload.len() == SMALL));
                        n += got as u64;
                        batch.clear();
                    }
                    // Sender done and nothing arrived for 100 ms: the rest is lost.
                    Err(_) if target.load(Ordering::Acquire) != u64::MAX => break,
                    Err(_) => {}
                }
            }
            (n, Instant::now())
        })
    };
    let start = Instant::now();
    let mut sent = 0u64;
    while sent < plan.events {
        a.endpoint
            .send(to, Channel::Events, payload.clone(), WAIT)
            .await
            .expect("send");
        sent += 1;
        if sent.is_multiple_of(4096) && start.elapsed() > plan.events_time_cap {
            break;
        }
    }
    let enqueue = start.elapsed();
    target.store(sent, Ordering::Release);
    let (delivered, done) = receiver.await.expect("receiver task");
    let elapsed = done - start;
    close(a, b).await;
    Throughput {
        delivered,
        elapsed,
        enqueue: enqueue.min(elapsed),
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Request/response RTT.

async fn request_rtt(plan: &Plan) -> Percentiles {
    let (a, mut b, to) = pair(BulkPath::Own).await;
    let mut requests = std::mem::replace(&mut b.inbox.requests, mpsc::channel(1).1);
    let server = tokio::spawn(async move {
        while let Some(request) = requests.recv().await {
            let echo = request.payload.clone();
            let _ = request.respond(echo).await;
        }
    });
    let payload = Bytes::from(vec![0x42; SMALL]);
    let ask = || {
        a.endpoint
            .request(to, payload.clone(), Duration::from_secs(5))
    };
    for _ in 0..1_000 {
        ask().await.expect("warm-up request");
    }
    let mut samples = Vec::with_capacity(plan.requests);
    for _ in 0..plan.requests {
        let t0 = Instant::now();
        let response = ask().await.expect("request");
        samples.push(t0.elapsed());
        debug_assert_eq!(response.len(), SMALL);
    }
    close(a, b).await;
    server.abort();
    percentiles(samples)
}

// ---------------------------------------------------------------------------------------------
// 3. Bulk throughput.

/// Reads every incoming transfer to its end, counting bytes.
fn drain_transfers(
    mut transfers: mpsc::Receiver<foundation_transport::IncomingTransfer>,
    received: Arc<AtomicU64>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(mut transfer) = transfers.recv().await {
            let received = received.clone();
            tokio::spawn(async move {
                while let Ok(Some(chunk)) = transfer.read_chunk().await {
                    received.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                }
            });
        }
    })
}

/// What one bulk throughput run measured.
struct BulkRun {
    bytes: u64,
    elapsed: Duration,
    /// CPU time of the whole process (sender and receiver) during the run: unlike the rate, it
    /// hardly depends on how much of the machine other work leaves us.
    cpu: Duration,
    drops: String,
}

impl BulkRun {
    fn mib_s(&self) -> f64 {
        self.bytes as f64 / MIB / self.elapsed.as_secs_f64()
    }

    fn cpu_ms_per_mib(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e3 / (self.bytes as f64 / MIB).max(1e-9)
    }
}

async fn bulk_throughput(plan: &Plan, bulk: BulkPath) -> BulkRun {
    let (a, mut b, to) = pair(bulk).await;
    let received = Arc::new(AtomicU64::new(0));
    let transfers = std::mem::replace(&mut b.inbox.transfers, mpsc::channel(1).1);
    let drain = drain_transfers(transfers, received.clone());
    let data = Bytes::from(vec![0xab; plan.bulk_transfer]);
    // Warm up with one transfer so the congestion window is open.
    a.endpoint
        .send_bulk(
            to,
            data.slice(..plan.bulk_transfer / 4),
            Duration::from_secs(60),
        )
        .await
        .expect("warm-up transfer");
    let base = received.load(Ordering::Relaxed);
    let total = (plan.bulk_transfer * plan.bulk_transfers) as u64;
    let drops = udp_rcvbuf_errors();
    let (start, cpu) = (Instant::now(), process_cpu());
    for _ in 0..plan.bulk_transfers {
        a.endpoint
            .send_bulk(to, data.clone(), Duration::from_secs(60))
            .await
            .expect("bulk transfer");
    }
    // Polled with short sleeps, not yield_now: a spinning worker takes a core from the bulk
    // thread on a 2-core machine.
    while received.load(Ordering::Relaxed) - base < total
        && start.elapsed() < Duration::from_secs(60)
    {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let run = BulkRun {
        elapsed: start.elapsed(),
        cpu: process_cpu() - cpu,
        bytes: received.load(Ordering::Relaxed) - base,
        drops: udp_drops_since(drops),
    };
    close(a, b).await;
    drain.abort();
    run
}

// ---------------------------------------------------------------------------------------------
// 4. Head-of-line: coordination latency, idle and under bulk, ours and TCP.

struct Loaded {
    latency: Percentiles,
    /// Bulk bytes received per second while the probe ran.
    bulk_mib_s: f64,
    /// UDP datagrams the kernel dropped for full receive buffers while the probe ran.
    udp_drops: String,
    /// How late a plain thread woke from 200 µs sleeps while the probe ran: the share of the
    /// tail that is the operating system's scheduling, not the transport.
    oversleep: Percentiles,
}

/// A thread that sleeps 200 µs at a time until `stop`, recording how late it wakes.
fn watch_wakeups(stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Percentiles> {
    std::thread::spawn(move || {
        let nap = Duration::from_micros(200);
        let mut late = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let t0 = Instant::now();
            std::thread::sleep(nap);
            late.push(t0.elapsed().saturating_sub(nap));
        }
        percentiles(late)
    })
}

/// Sends stamped 64-byte coordination messages one at a time for `window`, each after the
/// previous one arrived; returns their one-way latencies.
async fn probe_coordination(
    a: &Endpoint,
    to: NodeAddr,
    arrived: &mut mpsc::UnboundedReceiver<Duration>,
    window: Duration,
) -> Vec<Duration> {
    let mut samples = Vec::new();
    let start = Instant::now();
    while start.elapsed() < window {
        let payload = Bytes::copy_from_slice(&stamped_payload());
        a.send(to, Channel::Coordination, payload, WAIT)
            .await
            .expect("coordination send");
        match tokio::time::timeout(Duration::from_secs(5), arrived.recv()).await {
            Ok(Some(latency)) => samples.push(latency),
            _ => panic!("coordination message not delivered within 5 s"),
        }
    }
    samples
}

async fn head_of_line(plan: &Plan, bulk: BulkPath) -> (Percentiles, Loaded) {
    let (a, mut b, to) = pair(bulk).await;
    let mut coordination = std::mem::replace(&mut b.inbox.coordination, mpsc::channel(1).1);
    let (arrived_tx, mut arrived) = mpsc::unbounded_channel();
    let stamper = tokio::spawn(async move {
        while let Some(message) = coordination.recv().await {
            let _ = arrived_tx.send(latency_of(&message.payload));
        }
    });
    probe_coordination(&a.endpoint, to, &mut arrived, Duration::from_millis(200)).await;

    // Bulk transfers back to back on the same connection, same direction, paused for the idle
    // slices.
    let received = Arc::new(AtomicU64::new(0));
    let transfers = std::mem::replace(&mut b.inbox.transfers, mpsc::channel(1).1);
    let drain = drain_transfers(transfers, received.clone());
    let (stop, paused, busy) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(true)),
        Arc::new(AtomicBool::new(false)),
    );
    let flood = {
        let (endpoint, stop, paused, busy) = (
            a.endpoint.clone(),
            stop.clone(),
            paused.clone(),
            busy.clone(),
        );
        let data = Bytes::from(vec![0xcd; HOL_TRANSFER]);
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if paused.load(Ordering::Acquire) {
                    busy.store(false, Ordering::Release);
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    continue;
                }
                busy.store(true, Ordering::Release);
                if let Err(error) = endpoint
                    .send_bulk(to, data.clone(), Duration::from_secs(60))
                    .await
                {
                    eprintln!("bulk transfer failed during head-of-line probe: {error}");
                    break;
                }
            }
        })
    };
    let drops = udp_rcvbuf_errors();
    let watching = Arc::new(AtomicBool::new(false));
    let watcher = watch_wakeups(watching.clone());
    let (mut idle, mut loaded) = (Vec::new(), Vec::new());
    let (mut bulk_bytes, mut loaded_time) = (0u64, Duration::ZERO);
    for _ in 0..plan.slices {
        paused.store(true, Ordering::Release);
        while busy.load(Ordering::Acquire) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        idle.extend(probe_coordination(&a.endpoint, to, &mut arrived, SLICE).await);
        paused.store(false, Ordering::Release);
        tokio::time::sleep(RAMP).await;
        let (before, t0) = (received.load(Ordering::Relaxed), Instant::now());
        loaded.extend(probe_coordination(&a.endpoint, to, &mut arrived, 2 * SLICE).await);
        bulk_bytes += received.load(Ordering::Relaxed) - before;
        loaded_time += t0.elapsed();
    }
    watching.store(true, Ordering::Relaxed);
    let oversleep = watcher.join().expect("wake-up watcher");
    let udp_drops = udp_drops_since(drops);
    stop.store(true, Ordering::Relaxed);
    let _ = flood.await;
    close(a, b).await;
    drain.abort();
    stamper.abort();
    (
        percentiles(idle),
        Loaded {
            latency: percentiles(loaded),
            bulk_mib_s: bulk_bytes as f64 / MIB / loaded_time.as_secs_f64(),
            udp_drops,
            oversleep,
        },
    )
}

/// The TCP baseline: one connection carrying both the small messages and the bulk bytes.
///
/// Frames: kind (1 = small, 2 = bulk), length (u32 big-endian), payload. The writer sends any
/// waiting small frames before each 64 KiB bulk frame (the best a single ordered byte stream
/// can do); `TCP_NODELAY` is set. Blocking sockets on plain threads.
fn tcp_head_of_line(slices: u32) -> (Percentiles, Loaded) {
    const BULK_FRAME: usize = 64 << 10;
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind tcp");
    let addr = listener.local_addr().expect("tcp addr");
    let mut writer = TcpStream::connect(addr).expect("tcp connect");
    let (mut reader, _) = listener.accept().expect("tcp accept");
    writer.set_nodelay(true).expect("nodelay");
    reader.set_nodelay(true).expect("nodelay");

    let (small_tx, small_rx) = std_mpsc::channel::<[u8; SMALL]>();
    let (arrived_tx, arrived) = std_mpsc::channel::<Duration>();
    let bulk_on = Arc::new(AtomicBool::new(false));
    let bulk_bytes = Arc::new(AtomicU64::new(0));

    let write_thread = {
        let bulk_on = bulk_on.clone();
        std::thread::spawn(move || {
            let mut bulk = vec![0u8; 5 + BULK_FRAME];
            bulk[0] = 2;
            bulk[1..5].copy_from_slice(&(BULK_FRAME as u32).to_be_bytes());
            let mut small = [0u8; 5 + SMALL];
            small[0] = 1;
            small[1..5].copy_from_slice(&(SMALL as u32).to_be_bytes());
            loop {
                loop {
                    match small_rx.try_recv() {
                        Ok(payload) => {
                            small[5..].copy_from_slice(&payload);
                            if writer.write_all(&small).is_err() {
                                return;
                            }
                        }
                        Err(std_mpsc::TryRecvError::Empty) => break,
                        Err(std_mpsc::TryRecvError::Disconnected) => return,
                    }
                }
                if bulk_on.load(Ordering::Relaxed) {
                    if writer.write_all(&bulk).is_err() {
                        return;
                    }
                } else {
                    match small_rx.recv_timeout(Duration::from_millis(10)) {
                        Ok(payload) => {
                            small[5..].copy_from_slice(&payload);
                            if writer.write_all(&small).is_err() {
                                return;
                            }
                        }
                        Err(std_mpsc::RecvTimeoutError::Timeout) => {}
                        Err(std_mpsc::RecvTimeoutError::Disconnected) => return,
                    }
                }
            }
        })
    };
    let read_thread = {
        let bulk_bytes = bulk_bytes.clone();
        std::thread::spawn(move || {
            let mut buffer = vec![0u8; 1 << 20];
            let mut head = [0u8; 5];
            loop {
                if reader.read_exact(&mut head).is_err() {
                    return;
                }
                let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
                if len > buffer.len() || reader.read_exact(&mut buffer[..len]).is_err() {
                    return;
                }
                match head[0] {
                    1 => {
                        if arrived_tx.send(latency_of(&buffer[..len])).is_err() {
                            return;
                        }
                    }
                    _ => {
                        bulk_bytes.fetch_add(len as u64, Ordering::Relaxed);
                    }
                }
            }
        })
    };

    let probe = |window: Duration| {
        let mut samples = Vec::new();
        let start = Instant::now();
        while start.elapsed() < window {
            small_tx.send(stamped_payload()).expect("writer alive");
            samples.push(
                arrived
                    .recv_timeout(Duration::from_secs(5))
                    .expect("tcp small message delivered"),
            );
        }
        samples
    };
    probe(Duration::from_millis(200)); // warm-up
    let watching = Arc::new(AtomicBool::new(false));
    let watcher = watch_wakeups(watching.clone());
    let (mut idle, mut loaded) = (Vec::new(), Vec::new());
    let (mut bytes, mut loaded_time) = (0u64, Duration::ZERO);
    for _ in 0..slices {
        bulk_on.store(false, Ordering::Relaxed);
        // Idle once the bulk bytes already in the socket buffers have been read.
        let mut seen = u64::MAX;
        while seen != bulk_bytes.load(Ordering::Relaxed) {
            seen = bulk_bytes.load(Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(5));
        }
        idle.extend(probe(SLICE));
        bulk_on.store(true, Ordering::Relaxed);
        std::thread::sleep(RAMP);
        let (before, t0) = (bulk_bytes.load(Ordering::Relaxed), Instant::now());
        loaded.extend(probe(2 * SLICE));
        bytes += bulk_bytes.load(Ordering::Relaxed) - before;
        loaded_time += t0.elapsed();
    }
    watching.store(true, Ordering::Relaxed);
    let oversleep = watcher.join().expect("wake-up watcher");
    bulk_on.store(false, Ordering::Relaxed);
    drop(small_tx);
    let _ = write_thread.join();
    drop(arrived);
    // The writer closed its socket: the reader sees EOF once it has drained what is in flight.
    let _ = read_thread.join();
    (
        percentiles(idle),
        Loaded {
            latency: percentiles(loaded),
            bulk_mib_s: bytes as f64 / MIB / loaded_time.as_secs_f64(),
            udp_drops: String::new(),
            oversleep,
        },
    )
}

// ---------------------------------------------------------------------------------------------
// The table.

fn status(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "MISSED"
    }
}

fn row(label: &str, result: String, target: &str, status: &str) {
    println!("{label:<52} {result:>20}  {target:<16} {status}");
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "n/a".into())
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64().max(1e-9)
}

fn main() {
    let quick = std::env::var_os("FOUNDATION_BENCH_QUICK").is_some();
    let bulk_only = std::env::var_os("FOUNDATION_BENCH_BULK_ONLY").is_some();
    let plan = if quick { Plan::quick() } else { Plan::full() };
    let _ = BASE.set(Instant::now());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let workers = runtime.metrics().num_workers();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());

    let load = loadavg();
    let started = Instant::now();
    let small = (!bulk_only).then(|| {
        eprintln!("running: events throughput ...");
        let events = runtime.block_on(events_throughput(&plan));
        eprintln!("running: request/response RTT ...");
        let rtt = runtime.block_on(request_rtt(&plan));
        (events, rtt)
    });
    eprintln!("running: bulk throughput (own connection) ...");
    let own_run = runtime.block_on(bulk_throughput(&plan, BulkPath::Own));
    eprintln!("running: bulk throughput (own connection, regular endpoint) ...");
    let conn_run = runtime.block_on(bulk_throughput(&plan, BulkPath::OwnConnection));
    eprintln!("running: bulk throughput (shared connection) ...");
    let shared_run = runtime.block_on(bulk_throughput(&plan, BulkPath::Shared));
    eprintln!("running: head-of-line (ours, bulk on its own connection) ...");
    let (idle, ours) = runtime.block_on(head_of_line(&plan, BulkPath::Own));
    eprintln!("running: head-of-line (ours, bulk connection on the regular endpoint) ...");
    let (conn_idle, conn) = runtime.block_on(head_of_line(&plan, BulkPath::OwnConnection));
    eprintln!("running: head-of-line (ours, bulk sharing the connection) ...");
    let (_, shared) = runtime.block_on(head_of_line(&plan, BulkPath::Shared));
    eprintln!("running: head-of-line (TCP baseline) ...");
    let (tcp_idle, tcp) = tcp_head_of_line(plan.slices);
    let total = started.elapsed();

    let bulk = own_run.mib_s();
    let hol_ratio = ratio(ours.latency.p99, idle.p99);
    let tcp_ratio = ratio(ours.latency.p99, tcp.latency.p99);
    let micros =
        |t: Option<Duration>| t.map_or("none".to_owned(), |t| format!("{} µs", t.as_micros()));
    let own = config(BulkPath::Own);
    let target = format!(
        "{}, yielding to coordination: {}, bulk thread nice {}, bulk_max_udp_payload {}",
        micros(own.bulk_queue_target),
        micros(own.bulk_yield_target),
        own.bulk_thread_nice,
        own.bulk_max_udp_payload
    );

    println!();
    println!(
        "Foundation transport benchmark{} — loopback 127.0.0.1, two endpoints in one process, \
         mutual TLS (cluster secret), tokio multi-thread ({workers} workers, {cores} cores), \
         bulk_queue_target {target}",
        if quick { " (QUICK)" } else { "" }
    );
    println!("{}", "-".repeat(104));
    row("measurement", "result".into(), "target", "status");
    println!("{}", "-".repeat(104));
    match &small {
        Some((events, rtt)) => {
            let msgs = events.delivered as f64 / events.elapsed.as_secs_f64();
            row(
                &format!(
                    "1. events, 64 B one way, delivered ({} msgs)",
                    thousands(events.delivered as f64)
                ),
                format!("{} msg/s", thousands(msgs)),
                ">= 1,000,000",
                status(msgs >= 1_000_000.0),
            );
            row(
                "   sender side: send() calls returned",
                format!(
                    "{} msg/s",
                    thousands(events.delivered as f64 / events.enqueue.as_secs_f64())
                ),
                "",
                "info",
            );
            row(
                &format!(
                    "2. request/response 64 B RTT p50 ({} sequential)",
                    thousands(rtt.n as f64)
                ),
                us(rtt.p50),
                "",
                "info",
            );
            row("   request/response 64 B RTT p99", us(rtt.p99), "", "info");
        }
        None => row("1.-2. events, request/response", "skipped".into(), "", ""),
    }
    row(
        &format!(
            "3. bulk to one peer ({} x {} MiB), own endpoint+thread",
            plan.bulk_transfers,
            plan.bulk_transfer >> 20
        ),
        format!("{bulk:.0} MiB/s"),
        ">= 300 MiB/s",
        status(bulk >= 300.0),
    );
    row(
        "   process CPU per MiB moved (sender + receiver)",
        format!("{:.2} ms", own_run.cpu_ms_per_mib()),
        "",
        "info",
    );
    row(
        "   UDP rcvbuf drops during it (system-wide)",
        own_run.drops.clone(),
        "",
        "info",
    );
    row(
        "   bulk connection on the regular endpoint; CPU/MiB",
        format!(
            "{:.0} MiB/s; {:.2} ms",
            conn_run.mib_s(),
            conn_run.cpu_ms_per_mib()
        ),
        "",
        "info",
    );
    row(
        "   bulk sharing the regular connection (Cubic); CPU/MiB",
        format!(
            "{:.0} MiB/s; {:.2} ms",
            shared_run.mib_s(),
            shared_run.cpu_ms_per_mib()
        ),
        "",
        "info",
    );
    row(
        &format!("4. coordination 64 B one-way, idle p50 (n={})", idle.n),
        us(idle.p50),
        "",
        "info",
    );
    row("   coordination idle p99", us(idle.p99), "", "info");
    row(
        &format!("   coordination under bulk p50 (n={})", ours.latency.n),
        us(ours.latency.p50),
        "",
        "info",
    );
    row(
        "   coordination under bulk p99",
        us(ours.latency.p99),
        "",
        "info",
    );
    row(
        "   coordination under bulk max",
        us(ours.latency.max),
        "",
        "info",
    );
    row(
        "   bulk rate while probing (ours)",
        format!("{:.0} MiB/s", ours.bulk_mib_s),
        "",
        "info",
    );
    row(
        "   UDP rcvbuf drops while probing (system-wide)",
        ours.udp_drops.clone(),
        "",
        "info",
    );
    row(
        "   OS wake-up lateness of a sleeping thread p50 / p99",
        format!("{} / {}", us(ours.oversleep.p50), us(ours.oversleep.p99)),
        "",
        "info",
    );
    row(
        "   ratio: under-bulk p99 / idle p99",
        format!("{hol_ratio:.2}x"),
        "<= 2x",
        status(hol_ratio <= 2.0),
    );
    row(
        &format!(
            "   bulk conn. on the regular endpoint: idle p50 / p99 (n={})",
            conn_idle.n
        ),
        format!("{} / {}", us(conn_idle.p50), us(conn_idle.p99)),
        "",
        "info",
    );
    row(
        &format!(
            "   bulk conn. on the regular endpoint: p50 / p99 (n={})",
            conn.latency.n
        ),
        format!("{} / {}", us(conn.latency.p50), us(conn.latency.p99)),
        "",
        "info",
    );
    row(
        "   bulk conn. on the regular endpoint: ratio, bulk rate",
        format!(
            "{:.2}x, {:.0} MiB/s",
            ratio(conn.latency.p99, conn_idle.p99),
            conn.bulk_mib_s
        ),
        "",
        "info",
    );
    row(
        &format!(
            "   bulk sharing the connection: p50 / p99 (n={})",
            shared.latency.n
        ),
        format!("{} / {}", us(shared.latency.p50), us(shared.latency.p99)),
        "",
        "info",
    );
    row(
        "   bulk sharing the connection: bulk rate",
        format!("{:.0} MiB/s", shared.bulk_mib_s),
        "",
        "info",
    );
    row(
        &format!("   TCP 1 conn idle p50 / p99 (n={})", tcp_idle.n),
        format!("{} / {}", us(tcp_idle.p50), us(tcp_idle.p99)),
        "",
        "info",
    );
    row(
        &format!("   TCP 1 conn under bulk p50 (n={})", tcp.latency.n),
        us(tcp.latency.p50),
        "",
        "info",
    );
    row(
        "   TCP 1 conn under bulk p99",
        us(tcp.latency.p99),
        "",
        "info",
    );
    row(
        "   bulk rate while probing (TCP)",
        format!("{:.0} MiB/s", tcp.bulk_mib_s),
        "",
        "info",
    );
    row(
        "   OS wake-up lateness during TCP p50 / p99",
        format!("{} / {}", us(tcp.oversleep.p50), us(tcp.oversleep.p99)),
        "",
        "info",
    );
    row(
        "   ratio: ours / TCP, p99 under bulk",
        format!("{tcp_ratio:.2}x"),
        "<= 1x",
        status(tcp_ratio <= 1.0),
    );
    println!("{}", "-".repeat(104));
    println!(
        "total time {:.1} s; load average (1, 5, 15 min) before the run: {load}, after: {} \
         (other work on the machine inflates the tails)",
        total.as_secs_f64(),
        loadavg()
    );
}
