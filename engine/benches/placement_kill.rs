//! Singleton failover between real processes on 127.0.0.1: five node processes (this bench's
//! own executable, started again as children) declare the same singleton; the process that
//! runs it is killed with SIGKILL, and we time how long until another process runs it, against
//! when the survivors' failure detector declared the killed node failed. Each process prints
//! its starts and stops with wall-clock timestamps (one machine, one clock), so the parent also
//! checks that no two processes ever ran the singleton at once. Akka's singleton takes ≈ 45 s
//! to fail over with its default settings (published figure, not measured here).
//!
//! `cargo bench -p foundation-engine --bench placement_kill` (`-- quick` for two rounds).
//! Prints numbers; never pass/fail.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use foundation_core::membership::{MemberState, MembershipEvent};
use foundation_core::placement::WorkloadSpec;
use foundation_engine::runtime::{Node, NodeSettings};
use foundation_transport::{ClusterName, ClusterSecret, LocalIdentity, NodeId, Trust};

const NODES: usize = 5;
const CHILD: &str = "FOUNDATION_PLACEMENT_BENCH_CHILD";
const SEED: &str = "FOUNDATION_PLACEMENT_BENCH_SEED";
/// The node id a restarted process takes up again (as a node with a data directory does):
/// a new id would leave the dead one counting in the agreed membership, and after a few kills
/// the survivors would no longer be a majority of it.
const ID: &str = "FOUNDATION_PLACEMENT_BENCH_ID";

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Prints `stop` when the singleton's future is dropped (aborted by the supervisor).
struct Running;

impl Drop for Running {
    fn drop(&mut self) {
        say(&format!("stop {}", unix_ms()));
    }
}

/// A child: one node that declares the singleton and reports what happens to it.
fn child(seed: Option<SocketAddr>, id: Option<NodeId>) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async move {
        let identity = LocalIdentity {
            id: id.unwrap_or_else(NodeId::random),
            cluster: ClusterName::new("placement-kill-bench").expect("name"),
        };
        let trust = Trust::Secret(ClusterSecret::new("placement kill bench").expect("secret"));
        let settings = NodeSettings {
            seeds: seed.into_iter().collect(),
            ..NodeSettings::new(identity, trust)
        };
        let node = Node::start(settings).await.expect("the node starts");
        say(&format!("id {}", node.id()));
        say(&format!("addr {}", node.addr()));
        let mut events = node.membership_events();
        let spec = WorkloadSpec {
            min_members: NODES / 2 + 1,
            ..WorkloadSpec::singleton()
        };
        node.placement()
            .singleton_with("bench", spec, || async {
                say(&format!("start {}", unix_ms()));
                let _running = Running;
                std::future::pending::<()>().await;
            })
            .await
            .expect("declared");
        loop {
            match events.recv().await {
                Ok(MembershipEvent::Failed(m)) => say(&format!("failed {} {}", m.id, unix_ms())),
                Ok(_) => {
                    let alive = node
                        .members()
                        .iter()
                        .filter(|m| m.state == MemberState::Alive)
                        .count();
                    say(&format!("alive {alive}"));
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(_) => return,
            }
        }
    });
}

/// One child process and what it said.
struct Proc {
    child: Child,
    id: String,
    addr: SocketAddr,
}

/// (child index, line) as the children print them.
type Lines = mpsc::Receiver<(usize, String)>;

fn spawn(
    index: usize,
    seed: Option<SocketAddr>,
    id: Option<&str>,
    tx: &mpsc::Sender<(usize, String)>,
) -> Proc {
    let exe = std::env::current_exe().expect("own path");
    let mut command = Command::new(exe);
    command
        .env(CHILD, index.to_string())
        .env("FOUNDATION_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Some(seed) = seed {
        command.env(SEED, seed.to_string());
    }
    if let Some(id) = id {
        command.env(ID, id);
    }
    let mut child = command.spawn().expect("a child process");
    let stdout = child.stdout.take().expect("piped");
    let (first_tx, first_rx) = mpsc::channel();
    let tx = tx.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = first_tx.send(line.clone());
            let _ = tx.send((index, line));
        }
    });
    let id = wait_for(&first_rx, "id ").expect("the child says who it is");
    let addr = wait_for(&first_rx, "addr ")
        .and_then(|a| a.parse().ok())
        .expect("the child says where it listens");
    Proc { child, id, addr }
}

fn wait_for(lines: &mpsc::Receiver<String>, prefix: &str) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while let Ok(line) = lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        if let Some(rest) = line.strip_prefix(prefix) {
            return Some(rest.to_owned());
        }
    }
    None
}

/// What one kill showed, in ms after the kill.
#[derive(Debug, Default)]
struct Round {
    detect_first: Option<u64>,
    detect_last: Option<u64>,
    failover: Option<u64>,
    /// Wall time two processes both ran it, ms.
    overlap_ms: u64,
}

/// Every line until `quiet` passes without one, or `limit` in all.
fn drain(lines: &Lines, quiet: Duration, limit: Duration, seen: &mut Vec<(usize, String)>) {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        match lines.recv_timeout(quiet) {
            Ok(line) => seen.push(line),
            Err(_) => return,
        }
    }
}

/// The runner now, from the start and stop lines seen so far (the last start not followed by
/// a stop, among processes still alive).
fn runner(seen: &[(usize, String)], alive: &[bool]) -> Option<usize> {
    let mut running = vec![false; alive.len()];
    for (i, line) in seen {
        if line.starts_with("start ") {
            running[*i] = true;
        } else if line.starts_with("stop ") {
            running[*i] = false;
        }
    }
    (0..alive.len()).find(|i| running[*i] && alive[*i])
}

/// Intervals each process ran the singleton, from its lines (a killed process's ends at the
/// kill, a stop line the parent adds); returns the total time two intervals of different
/// processes overlap.
fn overlap_ms(seen: &[(usize, String)], end: u64) -> u64 {
    let mut open: Vec<Option<u64>> = vec![None; NODES];
    let mut intervals: Vec<(usize, u64, u64)> = Vec::new();
    for (i, line) in seen {
        let at = line.split(' ').nth(1).and_then(|t| t.parse::<u64>().ok());
        match (line.split(' ').next(), at) {
            (Some("start"), Some(at)) => open[*i] = Some(at),
            (Some("stop"), Some(at)) => {
                if let Some(from) = open[*i].take() {
                    intervals.push((*i, from, at));
                }
            }
            _ => {}
        }
    }
    for (i, from) in open.iter().enumerate() {
        if let Some(from) = from {
            intervals.push((i, *from, end));
        }
    }
    let mut total = 0;
    for (a, x) in intervals.iter().enumerate() {
        for y in &intervals[a + 1..] {
            if x.0 != y.0 {
                total += x.2.min(y.2).saturating_sub(x.1.max(y.1));
            }
        }
    }
    total
}

fn main() {
    if std::env::var(CHILD).is_ok() {
        let seed = std::env::var(SEED).ok().and_then(|s| s.parse().ok());
        let id = std::env::var(ID).ok().and_then(|s| s.parse().ok());
        return child(seed, id);
    }
    let rounds = if std::env::args().any(|a| a == "quick") {
        2
    } else {
        5
    };
    let (tx, lines) = mpsc::channel();
    let mut procs: Vec<Proc> = Vec::new();
    let first = spawn(0, None, None, &tx);
    let seed = first.addr;
    procs.push(first);
    for i in 1..NODES {
        procs.push(spawn(i, Some(seed), None, &tx));
    }
    let mut seen = Vec::new();
    let mut alive = vec![true; NODES];
    let mut results = Vec::new();
    for round in 0..rounds {
        // Settle: the singleton runs somewhere and nothing has been said for 3 s.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            drain(
                &lines,
                Duration::from_secs(3),
                Duration::from_secs(10),
                &mut seen,
            );
            if runner(&seen, &alive).is_some() || Instant::now() > deadline {
                break;
            }
        }
        let Some(owner) = runner(&seen, &alive) else {
            println!("round {round}: the singleton never ran; stopping");
            break;
        };
        let killed_at = unix_ms();
        let _ = procs[owner].child.kill();
        let _ = procs[owner].child.wait();
        alive[owner] = false;
        // Its run ended with it (its slot is reused by the process that replaces it).
        seen.push((owner, format!("stop {killed_at}")));
        let from = seen.len();
        let wait_until = Instant::now() + Duration::from_secs(30);
        let mut r = Round::default();
        while Instant::now() < wait_until {
            let Ok((i, line)) = lines.recv_timeout(Duration::from_millis(100)) else {
                continue;
            };
            seen.push((i, line.clone()));
            let mut words = line.split(' ');
            let (kind, a, b) = (words.next(), words.next(), words.next());
            let at = |t: Option<&str>| t.and_then(|t| t.parse::<u64>().ok());
            if kind == Some("failed") && a == Some(procs[owner].id.as_str()) {
                if let Some(t) = at(b) {
                    let ms = t.saturating_sub(killed_at);
                    r.detect_first.get_or_insert(ms);
                    r.detect_last = Some(ms);
                }
            }
            if kind == Some("start") && alive[i] && r.failover.is_none() {
                r.failover = at(a).map(|t| t.saturating_sub(killed_at));
            }
            let detected_by_all = seen[from..]
                .iter()
                .filter(|(_, l)| l.starts_with(&format!("failed {}", procs[owner].id)))
                .count()
                >= NODES - 1;
            if r.failover.is_some() && detected_by_all {
                break;
            }
        }
        r.overlap_ms = overlap_ms(&seen, unix_ms());
        println!(
            "round {round}: detection first {:?} ms, last {:?} ms; failover {:?} ms; overlap {} ms",
            r.detect_first, r.detect_last, r.failover, r.overlap_ms
        );
        results.push(r);
        // The killed process comes back (same node id, a new life), joining through a survivor.
        let via = (0..NODES).find(|i| alive[*i]).map(|i| procs[i].addr);
        let id = procs[owner].id.clone();
        procs[owner] = spawn(owner, via, Some(&id), &tx);
        alive[owner] = true;
    }
    for p in &mut procs {
        let _ = p.child.kill();
        let _ = p.child.wait();
    }
    summarize(&results);
}

fn median(mut v: Vec<u64>) -> Option<u64> {
    v.sort_unstable();
    v.get(v.len() / 2).copied()
}

fn summarize(results: &[Round]) {
    let of = |f: fn(&Round) -> Option<u64>| median(results.iter().filter_map(f).collect());
    let failover = of(|r| r.failover);
    let detect = of(|r| r.detect_first);
    println!(
        "{} kills of the owner ({NODES} processes, loopback): median detection (first survivor) {:?} ms, last {:?} ms, failover {:?} ms, failover − detection {:?} ms; total overlap {} ms",
        results.len(),
        detect,
        of(|r| r.detect_last),
        failover,
        failover.zip(detect).map(|(f, d)| f as i64 - d as i64),
        results.iter().map(|r| r.overlap_ms).sum::<u64>()
    );
    println!("Akka cluster singleton, default settings (published): ≈ 45000 ms to fail over");
}
