//! Membership side by side: Foundation, HashiCorp Serf and chitchat, N = 10 nodes on loopback.
//!
//! ```sh
//! cargo build --release && cargo bench --bench membership_peers
//! ```
//!
//! For each system, [`RUNS`] runs of: start N nodes through one seed and time until every node
//! sees all N alive; stay idle for [`idle_window`] and count the bytes the nodes send; `kill -9`
//! one node and time until every survivor marks it failed; then another node leaves gracefully
//! (Foundation: SIGTERM, the CLI's graceful path; Serf: `serf leave`) and time until every
//! other live member shows it left, recording any member that showed it failed instead (chitchat
//! has no graceful leave). Every membership view seen along the way is checked for false
//! positives (a live node shown as anything but alive). Medians are printed with the spread, the
//! ratios to the peers and the issue's targets.
//!
//! - Foundation: real `foundation node` processes (`target/release/foundation`, or the build
//!   `FOUNDATION_BENCH_BINARY=PATH` names, e.g. `target/dist/foundation`), development
//!   profile (the default of `foundation node`: its fast timers), static discovery with the first
//!   node as seed, polled through `GET /members` and `GET /metrics`. Set
//!   `MEMBERSHIP_BENCH_PRODUCTION=1` to add the production profile's timers as a column, and
//!   `MEMBERSHIP_BENCH_CONFIG=FILE` to give every node a TOML file (say, other transport timers).
//! - Serf: real `serf agent` processes (Debian package `serf`, installed with apt-get when absent
//!   and we are root; otherwise the column is skipped with a message), default LAN profile,
//!   `-join` to the first agent, polled with `serf members -format=json`; bytes from memberlist's
//!   own `udp.sent`/`tcp.sent` counters, received over statsd.
//! - chitchat 0.13: in-process nodes, each with its own `UdpTransport` socket on 127.0.0.1
//!   (wrapped to count the bytes it sends), failure-detector defaults, 1 s gossip interval.
//!
//! When run as root the whole bench re-executes itself in a fresh network namespace
//! (`unshare -n`), so no other traffic shares its loopback and the interface's byte counter
//! gives the on-the-wire bytes (IP/UDP and QUIC overhead included) for all three systems alike.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

#[path = "support/processes.rs"]
mod processes;
use processes::{
    first_exited, foundation_binary, free_ports, http_get, start_node, start_seed, which, Killable,
    StartedNode,
};

const N: usize = 10;
const RUNS: usize = 3;
/// The idle window, 10 s unless `MEMBERSHIP_BENCH_IDLE_SECS` says otherwise.
fn idle_window() -> Duration {
    secs_from_env("MEMBERSHIP_BENCH_IDLE_SECS", 10)
}

/// The wait between all joined and the idle window, 1 s unless `MEMBERSHIP_BENCH_SETTLE_SECS`
/// says otherwise: a longer wait measures the steady state (Foundation's idle connections have
/// closed by 30 s and Serf's push-pull runs every 30 s) rather than the tail of the join.
fn settle() -> Duration {
    secs_from_env("MEMBERSHIP_BENCH_SETTLE_SECS", 1)
}

fn secs_from_env(name: &str, default: u64) -> Duration {
    let secs = std::env::var(name).ok().and_then(|v| v.parse().ok());
    Duration::from_secs(secs.unwrap_or(default))
}
const POLL: Duration = Duration::from_millis(25);
const JOIN_LIMIT: Duration = Duration::from_secs(30);
const DETECT_LIMIT: Duration = Duration::from_secs(45);
/// Index of the node that is killed (never the seed).
const VICTIM: usize = N / 2;
/// Index of the node that leaves gracefully once the killed one is marked failed by all.
const LEAVER: usize = VICTIM + 1;
/// The pause between the crash seen by all and the leave, so the failure's gossip has ended.
const LEAVE_PAUSE: Duration = Duration::from_secs(1);
const NETNS_FLAG: &str = "MEMBERSHIP_BENCH_IN_NETNS";

/// What one run of one system measured.
#[derive(Default)]
struct Run {
    join: Option<Duration>,
    /// When the first node saw all N alive (the spread shows where join time goes).
    join_first: Option<Duration>,
    /// When the seed answered (process start-up included in the join time).
    seed_ready: Option<Duration>,
    detect: Option<Duration>,
    /// When the first survivor marked the killed node failed.
    detect_first: Option<Duration>,
    /// Graceful leave seen as left by every other live member, and by the first of them.
    leave: Option<Duration>,
    leave_first: Option<Duration>,
    /// Members that showed the leaver as failed (a wrong result), and when.
    leave_seen_failed: Vec<(usize, Duration)>,
    /// Application-level bytes sent per node per second, by part (e.g. datagrams, push-pull).
    app: Vec<(&'static str, f64)>,
    /// Bytes per node per second on the loopback interface (only inside our own namespace).
    wire: Option<f64>,
    /// Packets per node per second on the loopback interface.
    wire_packets: Option<f64>,
    false_positives: Vec<String>,
    notes: Vec<String>,
}

impl Run {
    fn app_total(&self) -> Option<f64> {
        (!self.app.is_empty()).then(|| self.app.iter().map(|(_, v)| v).sum())
    }
}

fn main() {
    let in_netns = std::env::var_os(NETNS_FLAG).is_some();
    let serf = if in_netns {
        which("serf")
    } else {
        ensure_serf()
    };
    if !in_netns && is_root() && std::env::var_os("MEMBERSHIP_BENCH_NO_NETNS").is_none() {
        if let Some(code) = reexec_in_netns() {
            std::process::exit(code);
        }
        println!("note: could not enter a network namespace; running on the host's loopback");
    }
    let binary = match foundation_binary() {
        Ok(path) => path,
        Err(message) => {
            eprintln!("{message}");
            std::process::exit(2);
        }
    };
    let scratch = std::env::temp_dir().join(format!("membership-peers-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).expect("scratch directory");
    let started = Instant::now();
    println!(
        "membership side by side: N={N} nodes on 127.0.0.1, {RUNS} runs each, idle window {}s, \
         poll every {}ms; {}",
        idle_window().as_secs(),
        POLL.as_millis(),
        if in_netns {
            "own network namespace (wire bytes measured on its lo)"
        } else {
            "host loopback (shared: wire bytes not measured)"
        }
    );
    println!("foundation binary: {}", binary.display());

    let mut columns: Vec<(String, Vec<Run>)> = Vec::new();
    let dev = (0..RUNS)
        .map(|i| {
            let run = foundation_run(&binary, &scratch, i, Profile::Development, in_netns);
            progress("foundation/development", i, &run);
            run
        })
        .collect();
    columns.push(("foundation dev".into(), dev));
    if std::env::var_os("MEMBERSHIP_BENCH_PRODUCTION").is_some() {
        let prod = (0..RUNS)
            .map(|i| {
                let run = foundation_run(&binary, &scratch, i, Profile::Production, in_netns);
                progress("foundation/production", i, &run);
                run
            })
            .collect();
        columns.push(("foundation prod".into(), prod));
    }
    let serf_column = match &serf {
        Some(serf) => {
            let runs = (0..RUNS)
                .map(|i| {
                    let run = serf_run(serf, &scratch, i, in_netns);
                    progress("serf", i, &run);
                    run
                })
                .collect();
            Some(runs)
        }
        None => {
            println!(
                "SKIPPED serf: the `serf` binary is not installed (Debian package `serf`; \
                 `apt-get install serf` as root) — its column is left out"
            );
            None
        }
    };
    if let Some(runs) = serf_column {
        columns.push(("serf lan".into(), runs));
    }
    let chitchat = (0..RUNS)
        .map(|i| {
            let run = chitchat_run(i, in_netns);
            progress("chitchat", i, &run);
            run
        })
        .collect();
    columns.push(("chitchat 1s".into(), chitchat));

    report(&columns, in_netns);
    println!("total bench time {:.0} s", started.elapsed().as_secs_f64());
    let _ = std::fs::remove_dir_all(&scratch);
}

fn progress(system: &str, i: usize, run: &Run) {
    println!(
        "  {system} run {}: seed up {} s, join first {} / all {} s, detect first {} / all {} s, \
         leave first {} / all {} s, app {} B/s/node, wire {} B/s/node in {} packets/s/node, \
         false positives {}",
        i + 1,
        fmt_opt(run.seed_ready.map(|d| d.as_secs_f64()), 2),
        fmt_opt(run.join_first.map(|d| d.as_secs_f64()), 2),
        fmt_opt(run.join.map(|d| d.as_secs_f64()), 2),
        fmt_opt(run.detect_first.map(|d| d.as_secs_f64()), 2),
        fmt_opt(run.detect.map(|d| d.as_secs_f64()), 2),
        fmt_opt(run.leave_first.map(|d| d.as_secs_f64()), 2),
        fmt_opt(run.leave.map(|d| d.as_secs_f64()), 2),
        fmt_opt(run.app_total(), 0),
        fmt_opt(run.wire, 0),
        fmt_opt(run.wire_packets, 1),
        run.false_positives.len()
    );
    for fp in run.false_positives.iter().take(5) {
        println!("    FALSE POSITIVE: {fp}");
    }
    if run.false_positives.len() > 5 {
        println!("    ... {} more", run.false_positives.len() - 5);
    }
    for note in run.notes.iter().filter(|n| n.starts_with("WRONG")) {
        println!("    {note}");
    }
    for note in run.notes.iter().filter(|n| !n.starts_with("WRONG")) {
        println!("    note: {note}");
    }
}

// ---------------------------------------------------------------------------------------------
// Environment: root, serf, the foundation binary, the network namespace, ports.

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// The `serf` binary, installed with apt-get when missing and we may.
fn ensure_serf() -> Option<PathBuf> {
    if let Some(path) = which("serf") {
        return Some(path);
    }
    if !is_root() || which("apt-get").is_none() {
        return None;
    }
    println!("serf is not installed: apt-get install -y serf ...");
    let quiet = |args: &[&str]| {
        Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    if !quiet(&["install", "-y", "serf"]) {
        quiet(&["update"]);
        quiet(&["install", "-y", "serf"]);
    }
    which("serf")
}

/// Runs this same binary again inside `unshare -n` with `lo` up; returns its exit code, or
/// `None` when the namespace could not be made.
fn reexec_in_netns() -> Option<i32> {
    which("unshare")?;
    which("ip")?;
    let me = std::env::current_exe().ok()?;
    let probe = Command::new("unshare")
        .args(["-n", "true"])
        .stderr(Stdio::null())
        .status()
        .ok()?;
    if !probe.success() {
        return None;
    }
    let status = Command::new("unshare")
        .args(["-n", "sh", "-c", "ip link set lo up && exec \"$0\" \"$@\""])
        .arg(me)
        .args(std::env::args_os().skip(1))
        .env(NETNS_FLAG, "1")
        .status()
        .ok()?;
    Some(status.code().unwrap_or(1))
}

/// Bytes and packets sent on `lo` so far (its tx counters), from /proc/net/dev. A UDP datagram
/// counts as its payload + 28 bytes (IPv4 + UDP headers; loopback has no link header).
fn lo_tx() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/net/dev").ok()?;
    let line = text.lines().find(|l| l.trim_start().starts_with("lo:"))?;
    let fields: Vec<&str> = line.split(':').nth(1)?.split_whitespace().collect();
    Some((fields.get(8)?.parse().ok()?, fields.get(9)?.parse().ok()?))
}

// ---------------------------------------------------------------------------------------------
// Foundation: real `foundation node` processes.

#[derive(Clone, Copy, PartialEq)]
enum Profile {
    Development,
    Production,
}

struct NodeProcess {
    child: Killable,
    quic: SocketAddr,
    http: SocketAddr,
}

fn foundation_run(
    binary: &Path,
    scratch: &Path,
    run: usize,
    profile: Profile,
    in_netns: bool,
) -> Run {
    let mut result = Run::default();
    let tag = match profile {
        Profile::Development => "dev",
        Profile::Production => "prod",
    };
    let dir = scratch.join(format!("foundation-{tag}-{run}"));
    std::fs::create_dir_all(&dir).unwrap();
    let cluster = format!("bench-{tag}-{run}-{}", std::process::id());
    // Each node binds ports the kernel picks and reports them (`start_node`), but the seed,
    // which needs its address up front (`start_seed`); the others get it once it has started.
    let command = |i: usize| -> Command {
        let mut command = Command::new(binary);
        command
            .args(["node", "--name", &format!("n{i}")])
            .env_clear()
            .env("XDG_RUNTIME_DIR", &dir)
            .env("FOUNDATION_CLUSTER", &cluster)
            .env("FOUNDATION_DISCOVERY", "static")
            .env("FOUNDATION_NODE_ID", format!("{:032x}", 0xbe00 + i));
        if profile == Profile::Production {
            command
                .env("FOUNDATION_PROFILE", "production")
                .env("FOUNDATION_SECRET", "membership-bench-secret-0123456789")
                // Membership only: nothing here needs durable state.
                .env("FOUNDATION_STORAGE", "memory")
                // Ten production nodes share one host: production's fixed bulk and sealed ports
                // would clash.
                .env("FOUNDATION_BULK_PORT", "auto")
                .env("FOUNDATION_SEALED_PORT", "auto");
        }
        if let Some(file) = std::env::var_os("MEMBERSHIP_BENCH_CONFIG") {
            command.env("FOUNDATION_CONFIG", file);
        }
        command
    };
    let stderr = |i: usize| dir.join(format!("n{i}.err"));
    let process = |i: usize, started: Result<StartedNode, String>| {
        let started = started.map_err(|why| format!("n{i} did not start: {why}"))?;
        Ok::<_, String>(NodeProcess {
            child: started.child,
            quic: started.quic,
            http: started.http,
        })
    };
    let ids: Vec<String> = (0..N).map(|i| format!("{:032x}", 0xbe00 + i)).collect();

    // Join: the seed first, the others as soon as its HTTP answers (both inside the timing).
    let t0 = Instant::now();
    let seed = start_seed(|_: SocketAddr| command(0), &stderr(0));
    let mut nodes: Vec<Option<NodeProcess>> = match process(0, seed) {
        Ok(seed) => vec![Some(seed)],
        Err(why) => return failed(result, why),
    };
    let seed = nodes[0]
        .as_ref()
        .map_or(String::new(), |n| n.quic.to_string());
    while http_get(nodes[0].as_ref().unwrap().http, "/health").is_none()
        && t0.elapsed() < JOIN_LIMIT
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    result.seed_ready = Some(t0.elapsed());
    for i in 1..N {
        let mut command = command(i);
        command.env("FOUNDATION_SEEDS", &seed);
        match process(i, start_node(command, &stderr(i))) {
            Ok(node) => nodes.push(Some(node)),
            Err(why) => return failed(result, why),
        }
    }
    let view = |node: &NodeProcess| -> Option<BTreeMap<String, String>> {
        let body = http_get(node.http, "/members")?;
        let json: Value = serde_json::from_str(&body).ok()?;
        Some(
            json["members"]
                .as_array()?
                .iter()
                .filter_map(|m| Some((m["id"].as_str()?.to_owned(), m["state"].as_str()?.into())))
                .collect(),
        )
    };
    let mut joined_at: Vec<Option<Duration>> = vec![None; N];
    while joined_at.iter().any(Option::is_none) && t0.elapsed() < JOIN_LIMIT {
        if let Some(i) = first_exited(nodes.iter_mut().flatten().map(|n| &mut n.child)) {
            return failed(result, format!("n{i} exited while joining (see n{i}.err)"));
        }
        for i in 0..N {
            if joined_at[i].is_some() {
                continue;
            }
            if let Some(view) = view(nodes[i].as_ref().unwrap()) {
                let alive = view.values().filter(|s| *s == "alive").count();
                if alive == N - 1 {
                    joined_at[i] = Some(t0.elapsed());
                }
                check_foundation_view(&mut result, "join", i, &view, &ids, &[]);
            }
        }
        std::thread::sleep(POLL);
    }
    result.join = slowest(&joined_at);
    result.join_first = fastest_except(&joined_at, None);
    if result.join.is_none() {
        let missing = joined_at.iter().filter(|j| j.is_none()).count();
        result.notes.push(format!(
            "{missing} node(s) never saw all {N} alive within {JOIN_LIMIT:?}"
        ));
        return result;
    }

    // Idle bytes: metrics before and after a quiet window with no polling.
    std::thread::sleep(settle());
    let traffic = |nodes: &[Option<NodeProcess>]| -> Option<(u64, u64, u64)> {
        let mut sums = (0, 0, 0);
        for node in nodes.iter().flatten() {
            let text = http_get(node.http, "/metrics")?;
            sums.0 += metric(&text, "traffic_bytes", "membership")?;
            sums.1 += metric(&text, "traffic_bytes", "replication")?;
            sums.2 += metric(&text, "messages", "membership")?;
        }
        Some(sums)
    };
    let before = traffic(&nodes);
    let a = Instant::now();
    let lo_before = lo_tx();
    std::thread::sleep(idle_window());
    let lo_after = lo_tx();
    let after = traffic(&nodes);
    let window = a.elapsed().as_secs_f64();
    if let (Some(b), Some(a)) = (before, after) {
        let per = |x: u64| x as f64 / N as f64 / window;
        result.app = vec![
            ("membership datagrams", per(a.0 - b.0)),
            ("push-pull (replication stream)", per(a.1 - b.1)),
        ];
        result.notes.push(format!(
            "membership datagrams sent: {:.1}/s per node ({:.0} B each on average)",
            per(a.2 - b.2),
            (a.0 - b.0) as f64 / (a.2 - b.2).max(1) as f64
        ));
    }
    if let (true, Some(b), Some(a)) = (in_netns, lo_before, lo_after) {
        result.wire = Some((a.0 - b.0) as f64 / N as f64 / idle_window().as_secs_f64());
        result.wire_packets = Some((a.1 - b.1) as f64 / N as f64 / idle_window().as_secs_f64());
    }
    for (i, node) in nodes.iter().enumerate() {
        if let Some(view) = view(node.as_ref().unwrap()) {
            check_foundation_view(&mut result, "idle", i, &view, &ids, &[]);
            if view.len() != N - 1 {
                result
                    .false_positives
                    .push(format!("idle: n{i} lists {} peers", view.len()));
            }
        }
    }

    // Detection: kill -9 one node, poll the survivors.
    let mut victim = nodes[VICTIM].take().unwrap();
    let t_kill = Instant::now();
    victim.child.kill();
    let mut failed_at: Vec<Option<Duration>> = vec![None; N];
    failed_at[VICTIM] = Some(Duration::ZERO);
    while failed_at.iter().any(Option::is_none) && t_kill.elapsed() < DETECT_LIMIT {
        for i in 0..N {
            if failed_at[i].is_some() {
                continue;
            }
            if let Some(view) = view(nodes[i].as_ref().unwrap()) {
                match view.get(&ids[VICTIM]).map(String::as_str) {
                    Some("failed") => failed_at[i] = Some(t_kill.elapsed()),
                    Some("left") => result
                        .notes
                        .push(format!("n{i} shows the killed node as left, not failed")),
                    _ => {}
                }
                check_foundation_view(&mut result, "detect", i, &view, &ids, &[VICTIM]);
            }
        }
        std::thread::sleep(POLL);
    }
    result.detect = slowest(&failed_at);
    result.detect_first = fastest_except(&failed_at, Some(VICTIM));
    if result.detect.is_none() {
        result.notes.push(format!(
            "not every survivor marked the killed node failed within {DETECT_LIMIT:?}"
        ));
    } else {
        foundation_leave(&mut result, &mut nodes, &ids, view);
    }
    result.false_positives.dedup();
    result.notes.dedup();
    result
}

/// Graceful leave: SIGTERM to node [`LEAVER`] (what `foundation node` leaves on), then the
/// others' `view`s polled until each shows it left.
fn foundation_leave(
    result: &mut Run,
    nodes: &mut [Option<NodeProcess>],
    ids: &[String],
    view: impl Fn(&NodeProcess) -> Option<BTreeMap<String, String>>,
) {
    std::thread::sleep(LEAVE_PAUSE);
    let leaver = nodes[LEAVER].take().unwrap();
    let t_leave = Instant::now();
    terminate(&leaver.child);
    let mut left_at = leave_watch();
    while left_at.iter().any(Option::is_none) && t_leave.elapsed() < DETECT_LIMIT {
        for i in 0..N {
            if left_at[i].is_some() {
                continue;
            }
            if let Some(view) = view(nodes[i].as_ref().unwrap()) {
                let state = view.get(&ids[LEAVER]).map(String::as_str);
                see_leaver(result, &mut left_at[i], i, state, t_leave);
                check_foundation_view(result, "leave", i, &view, ids, &[VICTIM, LEAVER]);
            }
        }
        std::thread::sleep(POLL);
    }
    finish_leave(result, &left_at, "n");
}

/// Records a false positive: any node but the `excused` (killed, leaving) shown as not alive.
fn check_foundation_view(
    result: &mut Run,
    phase: &str,
    observer: usize,
    view: &BTreeMap<String, String>,
    ids: &[String],
    excused: &[usize],
) {
    for (id, state) in view {
        let index = ids.iter().position(|x| x == id);
        if state != "alive" && !index.is_some_and(|i| excused.contains(&i)) {
            let entry = format!(
                "{phase}: n{observer} shows {} as {state}",
                index.map_or(id.clone(), |i| format!("n{i}"))
            );
            if !result.false_positives.contains(&entry) {
                result.false_positives.push(entry);
            }
        }
    }
}

fn metric(text: &str, family: &str, channel: &str) -> Option<u64> {
    let key =
        format!("foundation_transport_{family}_total{{channel=\"{channel}\",direction=\"sent\"}}");
    text.lines()
        .find_map(|l| l.strip_prefix(&key))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
}

// ---------------------------------------------------------------------------------------------
// Graceful leave, watched alike for Foundation and Serf.

/// Sends SIGTERM, on which `foundation node` leaves the cluster gracefully and exits.
fn terminate(child: &Killable) {
    let Ok(pid) = libc::pid_t::try_from(child.0.id()) else {
        return;
    };
    // SAFETY: kill(2) takes no pointers; `pid` is our own child, not yet reaped (Killable reaps
    // on drop), so the id cannot have been reused by another process.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
}

/// When each member saw the leaver as left; the killed node and the leaver watch nothing.
fn leave_watch() -> Vec<Option<Duration>> {
    let mut at = vec![None; N];
    at[VICTIM] = Some(Duration::ZERO);
    at[LEAVER] = Some(Duration::ZERO);
    at
}

/// One observer's view of the leaver (`state`, absent when it lists no such member): left is
/// the end of its watch; failed is a wrong result, recorded once per observer.
fn see_leaver(
    result: &mut Run,
    at: &mut Option<Duration>,
    observer: usize,
    state: Option<&str>,
    since: Instant,
) {
    match state {
        Some("left") => *at = Some(since.elapsed()),
        Some("failed") if !result.leave_seen_failed.iter().any(|(o, _)| *o == observer) => {
            result.leave_seen_failed.push((observer, since.elapsed()));
        }
        _ => {}
    }
}

/// The leave's times from `at`, and a note per member that showed the leaver failed (members
/// named `prefix` + index).
fn finish_leave(result: &mut Run, at: &[Option<Duration>], prefix: &str) {
    for (observer, failed) in &result.leave_seen_failed {
        let then = at[*observer].map_or("never left".into(), |t| {
            format!("then left at {:.2} s", t.as_secs_f64())
        });
        result.notes.push(format!(
            "WRONG: {prefix}{observer} showed the gracefully leaving {prefix}{LEAVER} as failed \
             at {:.2} s, {then}",
            failed.as_secs_f64()
        ));
    }
    result.leave = slowest(at);
    result.leave_first = at
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != VICTIM && *i != LEAVER)
        .filter_map(|(_, t)| *t)
        .min();
    if result.leave.is_none() {
        result.notes.push(format!(
            "not every other member showed the leaver as left within {DETECT_LIMIT:?}"
        ));
    }
}

// ---------------------------------------------------------------------------------------------
// Serf: real `serf agent` processes.

struct SerfAgent {
    child: Killable,
    rpc: String,
}

/// memberlist's `udp.sent` and `tcp.sent` byte counters of one agent, read from its statsd
/// stream, plus what that stream itself cost on `lo` (to subtract from the wire count).
#[derive(Default)]
struct SerfCounters {
    udp: AtomicU64,
    tcp: AtomicU64,
    statsd_wire: AtomicU64,
    statsd_packets: AtomicU64,
}

fn serf_run(serf: &Path, scratch: &Path, run: usize, in_netns: bool) -> Run {
    let mut result = Run::default();
    let dir = scratch.join(format!("serf-{run}"));
    std::fs::create_dir_all(&dir).unwrap();
    let ports = free_ports(2 * N);
    let (bind, rpc) = ports.split_at(N);
    let counters: Vec<Arc<SerfCounters>> = (0..N).map(|_| Arc::default()).collect();
    let mut statsd_ports = Vec::new();
    for counter in &counters {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("statsd socket");
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        statsd_ports.push(socket.local_addr().unwrap().port());
        let counter = Arc::clone(counter);
        // Ends when the counter is the only reference left (the run is over).
        std::thread::spawn(move || {
            let mut buf = [0u8; 65536];
            while Arc::strong_count(&counter) > 1 {
                let Ok(n) = socket.recv(&mut buf) else {
                    continue;
                };
                // lo counts the IP and UDP headers too: 20 + 8 bytes.
                counter
                    .statsd_wire
                    .fetch_add(n as u64 + 28, Ordering::Relaxed);
                counter.statsd_packets.fetch_add(1, Ordering::Relaxed);
                for line in String::from_utf8_lossy(&buf[..n]).lines() {
                    let parse = |prefix: &str| {
                        line.strip_prefix(prefix)
                            .and_then(|v| v.split('|').next())
                            .and_then(|v| v.parse::<f64>().ok())
                            .map(|v| v as u64)
                    };
                    if let Some(v) = parse("serf-agent.memberlist.udp.sent:") {
                        counter.udp.fetch_add(v, Ordering::Relaxed);
                    }
                    if let Some(v) = parse("serf-agent.memberlist.tcp.sent:") {
                        counter.tcp.fetch_add(v, Ordering::Relaxed);
                    }
                }
            }
        });
    }
    let spawn = |i: usize| -> SerfAgent {
        let config = dir.join(format!("s{i}.json"));
        std::fs::write(
            &config,
            format!("{{\"statsd_addr\": \"127.0.0.1:{}\"}}", statsd_ports[i]),
        )
        .unwrap();
        let mut command = Command::new(serf);
        command
            .arg("agent")
            .arg(format!("-node=s{i}"))
            .arg(format!("-bind=127.0.0.1:{}", bind[i]))
            .arg(format!("-rpc-addr=127.0.0.1:{}", rpc[i]))
            .arg(format!("-config-file={}", config.display()))
            .arg("-log-level=warn");
        if i > 0 {
            command.arg(format!("-join=127.0.0.1:{}", bind[0]));
        }
        let log = std::fs::File::create(dir.join(format!("s{i}.log"))).unwrap();
        command
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log));
        SerfAgent {
            child: Killable(command.spawn().expect("serf agent starts")),
            rpc: format!("127.0.0.1:{}", rpc[i]),
        }
    };
    let names: Vec<String> = (0..N).map(|i| format!("s{i}")).collect();

    let t0 = Instant::now();
    let mut agents: Vec<Option<SerfAgent>> = vec![Some(spawn(0))];
    // The others `-join` the seed at start and exit if it is not listening yet: wait for it.
    while TcpStream::connect(("127.0.0.1", bind[0])).is_err() && t0.elapsed() < JOIN_LIMIT {
        std::thread::sleep(Duration::from_millis(5));
    }
    result.seed_ready = Some(t0.elapsed());
    agents.extend((1..N).map(|i| Some(spawn(i))));
    let mut joined_at: Vec<Option<Duration>> = vec![None; N];
    while joined_at.iter().any(Option::is_none) && t0.elapsed() < JOIN_LIMIT {
        // An agent whose port was taken after `free_port` chose it exits at start.
        if let Some(i) = first_exited(agents.iter_mut().flatten().map(|a| &mut a.child)) {
            return failed(result, format!("s{i} exited while joining (see s{i}.log)"));
        }
        let pending: Vec<usize> = (0..N).filter(|&i| joined_at[i].is_none()).collect();
        let views = serf_views(serf, &agents, &pending);
        for (i, view) in views {
            let alive = view
                .iter()
                .filter(|(name, s)| *s == "alive" && **name != names[i])
                .count();
            if alive == N - 1 {
                joined_at[i] = Some(t0.elapsed());
            }
            check_serf_view(&mut result, "join", i, &view, &[]);
        }
        std::thread::sleep(POLL);
    }
    result.join = slowest(&joined_at);
    result.join_first = fastest_except(&joined_at, None);
    if result.join.is_none() {
        result.notes.push(format!(
            "not every agent saw all {N} alive within {JOIN_LIMIT:?}"
        ));
        return result;
    }

    std::thread::sleep(settle());
    let read = |c: &[Arc<SerfCounters>]| {
        c.iter().fold((0u64, 0u64, 0u64, 0u64), |s, c| {
            (
                s.0 + c.udp.load(Ordering::Relaxed),
                s.1 + c.tcp.load(Ordering::Relaxed),
                s.2 + c.statsd_wire.load(Ordering::Relaxed),
                s.3 + c.statsd_packets.load(Ordering::Relaxed),
            )
        })
    };
    let before = read(&counters);
    let lo_before = lo_tx();
    let a = Instant::now();
    std::thread::sleep(idle_window());
    let lo_after = lo_tx();
    let after = read(&counters);
    let window = a.elapsed().as_secs_f64();
    let per = |x: u64| x as f64 / N as f64 / window;
    result.app = vec![
        ("memberlist udp.sent", per(after.0 - before.0)),
        ("memberlist tcp.sent (push-pull)", per(after.1 - before.1)),
    ];
    if let (true, Some(b), Some(a)) = (in_netns, lo_before, lo_after) {
        let (statsd_bytes, statsd_packets) = (after.2 - before.2, after.3 - before.3);
        let bytes = (a.0 - b.0).saturating_sub(statsd_bytes);
        let packets = (a.1 - b.1).saturating_sub(statsd_packets);
        result.wire = Some(bytes as f64 / N as f64 / window);
        result.wire_packets = Some(packets as f64 / N as f64 / window);
    }
    let everyone: Vec<usize> = (0..N).collect();
    for (i, view) in serf_views(serf, &agents, &everyone) {
        check_serf_view(&mut result, "idle", i, &view, &[]);
    }

    let mut victim = agents[VICTIM].take().unwrap();
    let t_kill = Instant::now();
    victim.child.kill();
    let mut failed_at: Vec<Option<Duration>> = vec![None; N];
    failed_at[VICTIM] = Some(Duration::ZERO);
    while failed_at.iter().any(Option::is_none) && t_kill.elapsed() < DETECT_LIMIT {
        let pending: Vec<usize> = (0..N).filter(|&i| failed_at[i].is_none()).collect();
        for (i, view) in serf_views(serf, &agents, &pending) {
            if view.get(&names[VICTIM]).map(String::as_str) == Some("failed") {
                failed_at[i] = Some(t_kill.elapsed());
            }
            check_serf_view(&mut result, "detect", i, &view, &[VICTIM]);
        }
        std::thread::sleep(POLL);
    }
    result.detect = slowest(&failed_at);
    result.detect_first = fastest_except(&failed_at, Some(VICTIM));
    if result.detect.is_none() {
        result.notes.push(format!(
            "not every survivor marked the killed agent failed within {DETECT_LIMIT:?}"
        ));
    } else {
        serf_leave(serf, &mut result, &mut agents, &names);
    }
    drop(agents);
    drop(victim);
    result
}

/// Graceful leave: `serf leave` to agent [`LEAVER`] (it leaves, then exits), then the others
/// polled until each shows it left.
fn serf_leave(serf: &Path, result: &mut Run, agents: &mut [Option<SerfAgent>], names: &[String]) {
    std::thread::sleep(LEAVE_PAUSE);
    let leaver = agents[LEAVER].take().unwrap();
    let t_leave = Instant::now();
    let leave = match Command::new(serf)
        .arg("leave")
        .arg(format!("-rpc-addr={}", leaver.rpc))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(child) => Killable(child),
        Err(e) => {
            result.notes.push(format!("serf leave did not start: {e}"));
            return;
        }
    };
    let mut left_at = leave_watch();
    while left_at.iter().any(Option::is_none) && t_leave.elapsed() < DETECT_LIMIT {
        let pending: Vec<usize> = (0..N).filter(|&i| left_at[i].is_none()).collect();
        for (i, view) in serf_views(serf, agents, &pending) {
            let state = view.get(&names[LEAVER]).map(String::as_str);
            see_leaver(result, &mut left_at[i], i, state, t_leave);
            check_serf_view(result, "leave", i, &view, &[VICTIM, LEAVER]);
        }
        std::thread::sleep(POLL);
    }
    finish_leave(result, &left_at, "s");
    drop((leaver, leave));
}

/// `serf members -format=json` of the given agents, run concurrently; name → status.
fn serf_views(
    serf: &Path,
    agents: &[Option<SerfAgent>],
    which: &[usize],
) -> Vec<(usize, BTreeMap<String, String>)> {
    let children: Vec<(usize, Child)> = which
        .iter()
        .filter_map(|&i| {
            let agent = agents[i].as_ref()?;
            Command::new(serf)
                .args(["members", "-format=json"])
                .arg(format!("-rpc-addr={}", agent.rpc))
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .ok()
                .map(|c| (i, c))
        })
        .collect();
    children
        .into_iter()
        .filter_map(|(i, child)| {
            let output = child.wait_with_output().ok()?;
            let json: Value = serde_json::from_slice(&output.stdout).ok()?;
            let view = json["members"]
                .as_array()?
                .iter()
                .filter_map(|m| Some((m["name"].as_str()?.into(), m["status"].as_str()?.into())))
                .collect();
            Some((i, view))
        })
        .collect()
}

fn check_serf_view(
    result: &mut Run,
    phase: &str,
    observer: usize,
    view: &BTreeMap<String, String>,
    excused: &[usize],
) {
    for (name, status) in view {
        let is_excused = excused.iter().any(|v| *name == format!("s{v}"));
        if status != "alive" && !is_excused {
            let entry = format!("{phase}: s{observer} shows {name} as {status}");
            if !result.false_positives.contains(&entry) {
                result.false_positives.push(entry);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// chitchat 0.13: in-process nodes on their own UdpTransport sockets.

mod counting {
    use std::net::SocketAddr;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    use chitchat::transport::{RecvOutcome, SendOutcome, Socket, Transport, UdpSocket};
    use chitchat::ChitchatEnvelope;

    /// chitchat's own `UdpSocket` (what `UdpTransport` opens), counting the bytes it sends.
    pub struct CountingUdpTransport(pub Arc<AtomicU64>);

    #[async_trait::async_trait]
    impl Transport for CountingUdpTransport {
        async fn open(&self, listen_addr: SocketAddr) -> anyhow::Result<Box<dyn Socket>> {
            let inner = UdpSocket::open(listen_addr).await?;
            Ok(Box::new(CountingSocket {
                inner,
                sent: Arc::clone(&self.0),
            }))
        }
    }

    struct CountingSocket {
        inner: UdpSocket,
        sent: Arc<AtomicU64>,
    }

    #[async_trait::async_trait]
    impl Socket for CountingSocket {
        fn local_addr(&self) -> anyhow::Result<SocketAddr> {
            self.inner.local_addr()
        }

        async fn send(
            &mut self,
            to: SocketAddr,
            envelope: ChitchatEnvelope,
        ) -> anyhow::Result<SendOutcome> {
            let outcome = self.inner.send(to, envelope).await?;
            self.sent
                .fetch_add(outcome.num_bytes_sent as u64, Ordering::Relaxed);
            Ok(outcome)
        }

        async fn recv(&mut self) -> anyhow::Result<RecvOutcome> {
            self.inner.recv().await
        }
    }
}

fn chitchat_run(run: usize, in_netns: bool) -> Run {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(chitchat_run_async(run, in_netns))
}

async fn chitchat_run_async(run: usize, in_netns: bool) -> Run {
    use chitchat::{
        spawn_chitchat, ChitchatConfig, ChitchatHandle, ChitchatId, FailureDetectorConfig,
        ProtocolVersion,
    };
    let mut result = Run::default();
    let ports = free_ports(N);
    let addrs: Vec<SocketAddr> = ports
        .iter()
        .map(|p| SocketAddr::from(([127, 0, 0, 1], *p)))
        .collect();
    let counters: Vec<Arc<AtomicU64>> = (0..N).map(|_| Arc::default()).collect();
    let generation = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let cluster = format!("bench-{run}");
    let t0 = Instant::now();
    let mut handles: Vec<Option<ChitchatHandle>> = Vec::new();
    for i in 0..N {
        let config = ChitchatConfig {
            chitchat_id: ChitchatId::new(format!("c{i}"), generation, addrs[i]),
            cluster_id: cluster.clone(),
            gossip_interval: Duration::from_secs(1),
            listen_addr: addrs[i],
            seed_nodes: vec![addrs[0].to_string()],
            failure_detector_config: FailureDetectorConfig::default(),
            marked_for_deletion_grace_period: Duration::from_secs(3600),
            catchup_callback: None,
            extra_liveness_predicate: None,
            protocol_version: ProtocolVersion::V1,
        };
        let transport = counting::CountingUdpTransport(Arc::clone(&counters[i]));
        let handle = spawn_chitchat(config, Vec::new(), &transport)
            .await
            .expect("chitchat node starts");
        handles.push(Some(handle));
    }
    /// (live names including self, names the failure detector holds dead)
    async fn view(handle: &ChitchatHandle) -> (Vec<String>, Vec<String>) {
        let chitchat = handle.chitchat();
        let guard = chitchat.lock().await;
        (
            guard
                .live_nodes()
                .map(|id| id.node_id.to_string())
                .collect(),
            guard
                .dead_nodes()
                .map(|id| id.node_id.to_string())
                .collect(),
        )
    }
    // chitchat holds a newly learnt node dead until its failure detector has heartbeats for it:
    // that is its way of joining, not a false positive. A false positive is a node an observer
    // had already seen live and later holds dead (other than the crashed one).
    let mut seen_live: Vec<BTreeSet<String>> = vec![BTreeSet::new(); N];
    let check = |result: &mut Run,
                 seen_live: &mut [BTreeSet<String>],
                 phase: &str,
                 i: usize,
                 (live, dead): (Vec<String>, Vec<String>),
                 victim: Option<usize>| {
        for name in dead {
            let is_victim = victim.is_some_and(|v| name == format!("c{v}"));
            if !is_victim && seen_live[i].contains(&name) {
                let entry = format!("{phase}: c{i} holds {name} dead after seeing it live");
                if !result.false_positives.contains(&entry) {
                    result.false_positives.push(entry);
                }
            }
        }
        seen_live[i].extend(live);
    };
    let mut joined_at: Vec<Option<Duration>> = vec![None; N];
    while joined_at.iter().any(Option::is_none) && t0.elapsed() < JOIN_LIMIT {
        for i in 0..N {
            if joined_at[i].is_some() {
                continue;
            }
            let seen = view(handles[i].as_ref().unwrap()).await;
            if seen.0.len() == N {
                joined_at[i] = Some(t0.elapsed());
            }
            check(&mut result, &mut seen_live, "join", i, seen, None);
        }
        tokio::time::sleep(POLL).await;
    }
    result.join = slowest(&joined_at);
    result.join_first = fastest_except(&joined_at, None);
    if result.join.is_none() {
        result.notes.push(format!(
            "not every node saw all {N} alive within {JOIN_LIMIT:?}"
        ));
        return result;
    }

    tokio::time::sleep(settle()).await;
    let total = |c: &[Arc<AtomicU64>]| c.iter().map(|c| c.load(Ordering::Relaxed)).sum::<u64>();
    let before = total(&counters);
    let lo_before = lo_tx();
    let a = Instant::now();
    tokio::time::sleep(idle_window()).await;
    let lo_after = lo_tx();
    let after = total(&counters);
    let window = a.elapsed().as_secs_f64();
    result.app = vec![(
        "UdpTransport datagrams",
        (after - before) as f64 / N as f64 / window,
    )];
    if let (true, Some(b), Some(a)) = (in_netns, lo_before, lo_after) {
        result.wire = Some((a.0 - b.0) as f64 / N as f64 / window);
        result.wire_packets = Some((a.1 - b.1) as f64 / N as f64 / window);
    }
    for (i, handle) in handles.iter().enumerate() {
        let seen = view(handle.as_ref().unwrap()).await;
        let live = seen.0.len();
        check(&mut result, &mut seen_live, "idle", i, seen, None);
        if live != N {
            result
                .false_positives
                .push(format!("idle: c{i} sees {live} live of {N}"));
        }
    }

    // A crash: the node's task is aborted, its socket closes, it says nothing.
    let victim = handles[VICTIM].take().unwrap();
    let t_kill = Instant::now();
    victim.abort();
    drop(victim);
    let mut failed_at: Vec<Option<Duration>> = vec![None; N];
    failed_at[VICTIM] = Some(Duration::ZERO);
    let victim_name = format!("c{VICTIM}");
    while failed_at.iter().any(Option::is_none) && t_kill.elapsed() < DETECT_LIMIT {
        for i in 0..N {
            if failed_at[i].is_some() {
                continue;
            }
            let seen = view(handles[i].as_ref().unwrap()).await;
            if seen.1.contains(&victim_name) {
                failed_at[i] = Some(t_kill.elapsed());
            }
            check(&mut result, &mut seen_live, "detect", i, seen, Some(VICTIM));
        }
        tokio::time::sleep(POLL).await;
    }
    result.detect = slowest(&failed_at);
    result.detect_first = fastest_except(&failed_at, Some(VICTIM));
    if result.detect.is_none() {
        result.notes.push(format!(
            "not every survivor held the crashed node dead within {DETECT_LIMIT:?}"
        ));
    }
    for handle in handles.iter().flatten() {
        handle.abort();
    }
    result
}

// ---------------------------------------------------------------------------------------------
// The table.

fn max(values: Vec<Duration>) -> Duration {
    values.into_iter().max().unwrap_or_default()
}

/// Median, min and max of the values that exist; `None` when no run produced one.
fn stats(values: impl Iterator<Item = Option<f64>>) -> Option<(f64, f64, f64, usize)> {
    let mut v: Vec<f64> = values.flatten().collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let median = if v.len() % 2 == 1 {
        v[v.len() / 2]
    } else {
        (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
    };
    Some((median, v[0], v[v.len() - 1], v.len()))
}

fn fmt_opt(v: Option<f64>, decimals: usize) -> String {
    v.map_or("n/a".into(), |v| format!("{v:.decimals$}"))
}

fn report(columns: &[(String, Vec<Run>)], in_netns: bool) {
    type Getter = fn(&Run) -> Option<f64>;
    let rows: [(&str, Getter, usize); 6] = [
        (
            "join: start → all N see N alive [s]",
            |r| r.join.map(|d| d.as_secs_f64()),
            2,
        ),
        (
            "detect: kill -9 → all survivors mark failed [s]",
            |r| r.detect.map(|d| d.as_secs_f64()),
            2,
        ),
        (
            "leave: graceful leave → all others show left [s]",
            |r| r.leave.map(|d| d.as_secs_f64()),
            2,
        ),
        (
            "idle membership bytes/s per node, app-level [B/s]",
            Run::app_total,
            0,
        ),
        (
            "idle bytes/s per node on the wire (lo, all headers) [B/s]",
            |r| r.wire,
            0,
        ),
        (
            "idle packets/s per node on the wire (lo) [1/s]",
            |r| r.wire_packets,
            1,
        ),
    ];
    let width = 58;
    println!();
    print!("{:width$}", "median of runs (min–max)");
    for (name, _) in columns {
        print!(" | {name:>20}");
    }
    println!();
    let medians: Vec<Vec<Option<f64>>> = rows
        .iter()
        .map(|(label, get, decimals)| {
            print!("{label:width$}");
            let meds = columns
                .iter()
                .map(|(_, runs)| {
                    let s = stats(runs.iter().map(get));
                    let cell = s.map_or("n/a".into(), |(m, lo, hi, n)| {
                        let partial = if n < runs.len() {
                            format!(" {n}/{}", runs.len())
                        } else {
                            String::new()
                        };
                        format!("{m:.decimals$} ({lo:.decimals$}–{hi:.decimals$}){partial}")
                    });
                    print!(" | {cell:>20}");
                    s.map(|s| s.0)
                })
                .collect();
            println!();
            meds
        })
        .collect();
    print!("{:width$}", "false positives (runs with any / runs)");
    for (_, runs) in columns {
        let bad = runs
            .iter()
            .filter(|r| !r.false_positives.is_empty())
            .count();
        print!(" | {:>20}", format!("{bad}/{}", runs.len()));
    }
    println!();
    print!(
        "{:width$}",
        "leaver shown failed [members, all runs; right: 0]"
    );
    for (name, runs) in columns {
        let wrong: usize = runs.iter().map(|r| r.leave_seen_failed.len()).sum();
        let cell = if name.starts_with("chitchat") {
            "no leave".into()
        } else {
            wrong.to_string()
        };
        print!(" | {cell:>20}");
    }
    println!();
    println!();

    // App-level parts, so the push-pull share is visible.
    for (name, runs) in columns {
        let Some(first) = runs.iter().find(|r| !r.app.is_empty()) else {
            continue;
        };
        let parts: Vec<String> = first
            .app
            .iter()
            .enumerate()
            .map(|(k, (part, _))| {
                let med = stats(runs.iter().map(|r| r.app.get(k).map(|p| p.1)));
                format!("{part} {} B/s", fmt_opt(med.map(|s| s.0), 0))
            })
            .collect();
        println!("  {name}: app-level parts (medians): {}", parts.join(", "));
    }
    if !in_netns {
        println!("  wire bytes: n/a — the host loopback is shared; run as root for a namespace");
    }
    println!();

    // Ratios of each Foundation column to the peers; targets against the first column
    // (Foundation, development profile).
    let ours = 0;
    let find = |prefix: &str| columns.iter().position(|(n, _)| n.starts_with(prefix));
    let serf = find("serf");
    let chitchat = find("chitchat");
    let foundation = columns
        .iter()
        .enumerate()
        .filter(|(_, (n, _))| n.starts_with("foundation"));
    for (r, (label, _, _)) in rows.iter().enumerate() {
        let mut parts = Vec::new();
        for (f, (ours_name, _)) in foundation.clone() {
            for (other, name) in [(serf, "serf"), (chitchat, "chitchat")] {
                let Some(o) = other else { continue };
                if let (Some(a), Some(b)) = (medians[r][f], medians[r][o]) {
                    parts.push(format!("{ours_name}/{name} = {:.2}×", a / b));
                }
            }
        }
        if !parts.is_empty() {
            println!("ratio  {label}: {}", parts.join(", "));
        }
    }
    println!();
    let fp_ours = columns[ours]
        .1
        .iter()
        .filter(|r| !r.false_positives.is_empty())
        .count();
    match serf {
        Some(s) => {
            let verdict = |ok: bool| if ok { "MET" } else { "MISSED" };
            if let (Some(a), Some(b)) = (medians[0][ours], medians[0][s]) {
                println!(
                    "target join ≤ serf:                     {a:.2} s vs {b:.2} s → {}",
                    verdict(a <= b)
                );
                if a > b {
                    let first = stats(
                        columns[ours]
                            .1
                            .iter()
                            .map(|r| r.join_first.map(|d| d.as_secs_f64())),
                    );
                    let seed = stats(
                        columns[ours]
                            .1
                            .iter()
                            .map(|r| r.seed_ready.map(|d| d.as_secs_f64())),
                    );
                    println!(
                        "  limit: the seed answers after {} s and the first node sees all N after \
                         {} s (medians): the rest is the tail of spreading late joiners to the \
                         nodes that joined before them (gossip every 200 ms to 3 peers, a QUIC \
                         handshake per newly learnt peer, eager push-pull at most once per probe \
                         period); serf's synchronous -join push-pull plus 200 ms gossip closes \
                         that tail sooner",
                        fmt_opt(seed.map(|s| s.0), 2),
                        fmt_opt(first.map(|s| s.0), 2)
                    );
                }
            } else {
                println!(
                    "target join ≤ serf:                     n/a (a run did not converge) → MISSED"
                );
            }
            if let (Some(a), Some(b)) = (medians[1][ours], medians[1][s]) {
                println!(
                    "target detection ≤ serf/3:              {a:.2} s vs {:.2} s (serf {b:.2} s) → {}",
                    b / 3.0,
                    verdict(a <= b / 3.0)
                );
                let first = stats(
                    columns[ours]
                        .1
                        .iter()
                        .map(|r| r.detect_first.map(|d| d.as_secs_f64())),
                );
                println!(
                    "  where it goes: first survivor marks it failed after {} s (median); \
                     development timers: probe every 500 ms, 200 ms ack timeout then indirect \
                     probes, suspicion 2 s shrinking to 0.5 s with 3 independent confirmations, \
                     then gossip every 200 ms{}",
                    fmt_opt(first.map(|s| s.0), 2),
                    if a > b / 3.0 {
                        " — the suspicion timeout dominates: the miss is there"
                    } else {
                        ""
                    }
                );
            } else {
                println!(
                    "target detection ≤ serf/3:              n/a (a run did not detect) → MISSED"
                );
            }
        }
        None => println!("targets against serf: not evaluated (serf skipped)"),
    }
    println!(
        "target no false positives (foundation): {fp_ours} of {} runs had one → {}",
        columns[ours].1.len(),
        if fp_ours == 0 { "MET" } else { "MISSED" }
    );
    println!();
    println!(
        "how: foundation = `foundation node` processes, development profile (its default: probe \
         500 ms, suspicion 2 s scaled down by confirmations), static discovery through the first \
         node, timed from spawning the seed; /members polled every {} ms; bytes from \
         foundation_transport_traffic_bytes_total sent on the membership channel (sealed datagram \
         payloads) + replication channel (push-pull frames), excluding sealing/QUIC/UDP/IP \
         overhead, which the wire row includes. serf = `serf agent` default LAN profile, `-join` to the \
         first agent, `serf members` polled; bytes from memberlist udp.sent/tcp.sent via statsd \
         (subtracted from the wire row). chitchat = in-process, UdpTransport, gossip every 1 s, \
         failure detector defaults (phi 8), crash = task aborted; bytes = datagrams it sent. \
         Leave: once the crash is seen by all and {} s later, n{LEAVER} (foundation: SIGTERM) \
         or s{LEAVER} (`serf leave`) leaves; timed until every other live member shows it left; \
         chitchat has no graceful leave. \
         Foundation's wire row is sealed UDP datagrams (29 bytes of header and tag each) and \
         QUIC for streams (headers, tags, ACKs, handshakes of redialled connections). \
         Idle window {} s after {} s settling (MEMBERSHIP_BENCH_IDLE_SECS, \
         MEMBERSHIP_BENCH_SETTLE_SECS): periodic push-pulls (foundation 10 s in development, \
         30 s in production, serf 30 s) fall in a window or not, hence the spread.",
        POLL.as_millis(),
        LEAVE_PAUSE.as_secs(),
        idle_window().as_secs(),
        settle().as_secs()
    );
}

/// A run that could not go on: `why` in its notes, nothing measured.
fn failed(mut result: Run, why: String) -> Run {
    result.notes.push(why);
    result
}

/// When the last node got there, if every node did.
fn slowest(at: &[Option<Duration>]) -> Option<Duration> {
    at.iter().copied().collect::<Option<Vec<_>>>().map(max)
}

/// When the first node got there, leaving out `skip` (the killed node).
fn fastest_except(at: &[Option<Duration>], skip: Option<usize>) -> Option<Duration> {
    at.iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != skip)
        .filter_map(|(_, t)| *t)
        .min()
}
