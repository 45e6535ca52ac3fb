//! What an idle member costs: resident memory and CPU of real `foundation node` processes
//! against real `serf agent`s, in one sitting.
//!
//! ```sh
//! cargo build --release && cargo bench --bench idle_footprint
//! ```
//!
//! Two measurements, each run for Foundation and then for Serf (default LAN profile), repeated
//! `IDLE_BENCH_ROUNDS` times (default 2) so that the machine's other load falls on both:
//!
//! - a 3-node cluster, development and production profiles: RSS per node once joined and idle;
//! - 30 members on this one machine, production profile: total CPU time over an idle window of
//!   `IDLE_BENCH_SECONDS` (default 30), from `/proc/PID/stat` (utime + stime), and total RSS.
//!
//! Every cluster joins through its first node; the window starts [`SETTLE`] after every member
//! sees all the others alive, and nothing polls the members during it. `MEMBERSHIP_BENCH_CONFIG=
//! FILE` gives every Foundation node a TOML file, as in `membership_peers`, and
//! `IDLE_BENCH_NODE_ENV="K=V K=V"` adds variables to their environment.
//! `FOUNDATION_BENCH_BINARY=PATH` runs another build of `foundation` than
//! `target/release/foundation`, e.g. the shipped profile's:
//!
//! ```sh
//! cargo build --profile dist --bin foundation
//! FOUNDATION_BENCH_BINARY=target/dist/foundation cargo bench --bench idle_footprint
//! ```

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

#[path = "support/processes.rs"]
mod processes;
use processes::{
    first_exited, foundation_binary, free_ports, http_get, start_node, start_seed, which, Killable,
    StartedNode,
};

const SMALL: usize = 3;
const LARGE: usize = 30;
/// Quiet time between "everyone sees everyone" and the start of a window (join traffic ends).
const SETTLE: Duration = Duration::from_secs(5);
/// The window of the 3-node RSS figure (RSS is read at its end; CPU is printed too).
const SMALL_WINDOW: Duration = Duration::from_secs(10);
const JOIN_LIMIT: Duration = Duration::from_secs(90);

#[derive(Clone, Copy, PartialEq)]
enum Profile {
    Development,
    Production,
}

/// One idle window over one cluster.
struct Sample {
    /// Resident set of each member at the end of the window, in bytes.
    rss: Vec<u64>,
    /// CPU seconds (user + system) all members used during the window.
    cpu: f64,
    window: f64,
    /// Threads of each member at the end of the window.
    threads: Vec<u64>,
    /// Proportional set of each member: pages shared with the others (the binary's) divided
    /// among them, so that the sum is what the members cost the machine together.
    pss: Vec<u64>,
    /// Anonymous resident memory of each member (heap, stacks): RSS less the mapped files.
    anon: Vec<u64>,
    /// Resident pages of each member's own executable file (its text, read-only data): the
    /// share of RSS a leaner build shrinks.
    exe: Vec<u64>,
}

impl Sample {
    fn rss_total_mb(&self) -> f64 {
        self.rss.iter().sum::<u64>() as f64 / 1e6
    }

    fn pss_total_mb(&self) -> f64 {
        self.pss.iter().sum::<u64>() as f64 / 1e6
    }

    fn anon_per_member_mb(&self) -> f64 {
        self.anon.iter().sum::<u64>() as f64 / 1e6 / self.anon.len() as f64
    }

    fn exe_per_member_mb(&self) -> f64 {
        self.exe.iter().sum::<u64>() as f64 / 1e6 / self.exe.len() as f64
    }

    fn rss_per_member_mb(&self) -> f64 {
        self.rss_total_mb() / self.rss.len() as f64
    }

    /// CPU used, as a percentage of one core.
    fn cpu_percent(&self) -> f64 {
        100.0 * self.cpu / self.window
    }
}

fn main() {
    let binary = match foundation_binary() {
        Ok(path) => path,
        Err(message) => {
            eprintln!("{message}");
            std::process::exit(2);
        }
    };
    let serf = which("serf");
    if serf.is_none() {
        println!("SKIPPED serf: the `serf` binary is not installed (Debian package `serf`)");
    }
    let rounds = env_number("IDLE_BENCH_ROUNDS", 2);
    let large_window = Duration::from_secs(env_number("IDLE_BENCH_SECONDS", 30) as u64);
    let scratch = std::env::temp_dir().join(format!("idle-footprint-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).expect("scratch directory");
    println!(
        "idle footprint: {SMALL} nodes ({}s window) and {LARGE} members ({}s window) on this \
         machine, {rounds} round(s), settle {}s; {} cores; clock ticks {}/s",
        SMALL_WINDOW.as_secs(),
        large_window.as_secs(),
        SETTLE.as_secs(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        clock_ticks()
    );
    // The file's size: its text is most of what an idle node holds resident.
    println!(
        "foundation binary: {} ({:.1} MB file)",
        binary.display(),
        std::fs::metadata(&binary).map_or(0, |m| m.len()) as f64 / 1e6
    );

    let mut table: Vec<(String, Vec<Sample>)> = Vec::new();
    let mut record = |name: String, sample: Option<Sample>| {
        if let Some(sample) = &sample {
            print_sample(&name, sample);
        } else {
            println!(
                "  {name}: no sample (a member did not start, or not all joined in {JOIN_LIMIT:?})"
            );
        }
        let entry = match table.iter_mut().position(|(n, _)| *n == name) {
            Some(i) => &mut table[i].1,
            None => {
                table.push((name, Vec::new()));
                &mut table.last_mut().unwrap().1
            }
        };
        entry.extend(sample);
    };
    for round in 0..rounds {
        println!("round {}:", round + 1);
        for profile in [Profile::Development, Profile::Production] {
            let sample = foundation_idle(&binary, &scratch, SMALL, profile, SMALL_WINDOW);
            record(format!("foundation {} x{SMALL}", tag(profile)), sample);
        }
        if let Some(serf) = &serf {
            let sample = serf_idle(serf, &scratch, SMALL, SMALL_WINDOW);
            record(format!("serf x{SMALL}"), sample);
        }
        let sample = foundation_idle(&binary, &scratch, LARGE, Profile::Production, large_window);
        record(format!("foundation prod x{LARGE}"), sample);
        if let Some(serf) = &serf {
            let sample = serf_idle(serf, &scratch, LARGE, large_window);
            record(format!("serf x{LARGE}"), sample);
        }
    }
    summary(&table);
    let _ = std::fs::remove_dir_all(&scratch);
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(default)
}

fn tag(profile: Profile) -> &'static str {
    match profile {
        Profile::Development => "dev",
        Profile::Production => "prod",
    }
}

/// Kernel clock ticks per second, the unit of `/proc/PID/stat`'s CPU times.
fn clock_ticks() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100)
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces: fields are counted after its closing parenthesis.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // After the name: state is field 3, utime field 14, stime field 15.
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// A `kB` line of `/proc/PID/FILE`, in bytes (or a plain count, for `Threads`).
fn proc_field(pid: u32, file: &str, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/{file}")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let value: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(if line.ends_with("kB") {
        value * 1024
    } else {
        value
    })
}

/// Resident bytes of the mappings of `pid`'s own executable, summed from `/proc/PID/smaps`.
fn exe_rss(pid: u32) -> Option<u64> {
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
    let exe = exe.to_str()?;
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).ok()?;
    let (mut total, mut ours) = (0, false);
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if !first.ends_with(':') {
            // A mapping's header: "start-end perms offset dev inode path".
            ours = line.ends_with(exe);
        } else if ours && first == "Rss:" {
            total += line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024;
        }
    }
    Some(total)
}

/// Waits `window` with nothing polling the members, and measures them.
fn measure(pids: &[u32], window: Duration) -> Option<Sample> {
    std::thread::sleep(SETTLE);
    let before: Option<Vec<u64>> = pids.iter().map(|p| cpu_ticks(*p)).collect();
    let start = Instant::now();
    std::thread::sleep(window);
    let after: Option<Vec<u64>> = pids.iter().map(|p| cpu_ticks(*p)).collect();
    let elapsed = start.elapsed().as_secs_f64();
    let ticks: u64 = after?.iter().zip(before?).map(|(a, b)| a - b).sum();
    Some(Sample {
        rss: pids
            .iter()
            .map(|p| proc_field(*p, "status", "VmRSS:"))
            .collect::<Option<_>>()?,
        threads: pids
            .iter()
            .map(|p| proc_field(*p, "status", "Threads:"))
            .collect::<Option<_>>()?,
        pss: pids
            .iter()
            .map(|p| proc_field(*p, "smaps_rollup", "Pss:"))
            .collect::<Option<_>>()?,
        anon: pids
            .iter()
            .map(|p| proc_field(*p, "status", "RssAnon:"))
            .collect::<Option<_>>()?,
        exe: pids.iter().map(|p| exe_rss(*p)).collect::<Option<_>>()?,
        cpu: ticks as f64 / clock_ticks() as f64,
        window: elapsed,
    })
}

/// `n` real `foundation node`s through the first as seed, measured once all see all alive.
fn foundation_idle(
    binary: &Path,
    scratch: &Path,
    n: usize,
    profile: Profile,
    window: Duration,
) -> Option<Sample> {
    let dir = scratch.join(format!("foundation-{}-{n}", tag(profile)));
    std::fs::create_dir_all(&dir).ok()?;
    let cluster = format!("idle-{}-{n}-{}", tag(profile), std::process::id());
    // Ports the kernel picks, reported by each node (`start_node`); the seed's is chosen ahead
    // (`start_seed`), since it is its own seed.
    let command = |i: usize| -> Command {
        let mut command = Command::new(binary);
        command
            .args(["node", "--name", &format!("n{i}")])
            .env_clear()
            .env("XDG_RUNTIME_DIR", &dir)
            .env("FOUNDATION_CLUSTER", &cluster)
            .env("FOUNDATION_DISCOVERY", "static");
        if profile == Profile::Production {
            command
                .env("FOUNDATION_PROFILE", "production")
                .env(
                    "FOUNDATION_SECRET",
                    "idle-footprint-bench-secret-0123456789",
                )
                .env("FOUNDATION_STORAGE", "memory")
                // Many production nodes share one host: production's fixed bulk and sealed ports
                // would clash.
                .env("FOUNDATION_BULK_PORT", "auto")
                .env("FOUNDATION_SEALED_PORT", "auto");
        }
        if let Some(file) = std::env::var_os("MEMBERSHIP_BENCH_CONFIG") {
            command.env("FOUNDATION_CONFIG", file);
        }
        // Settings to compare, e.g. IDLE_BENCH_NODE_ENV="FOUNDATION_WORKER_THREADS=1".
        let extra = std::env::var("IDLE_BENCH_NODE_ENV").unwrap_or_default();
        for (key, value) in extra.split_whitespace().filter_map(|kv| kv.split_once('=')) {
            command.env(key, value);
        }
        command
    };
    let stderr = |i: usize| dir.join(format!("n{i}.err"));
    let t0 = Instant::now();
    let seed = start_seed(|_: SocketAddr| command(0), &stderr(0));
    let mut nodes = vec![started(0, seed)?];
    while http_get(nodes[0].http, "/health").is_none() && t0.elapsed() < JOIN_LIMIT {
        std::thread::sleep(Duration::from_millis(5));
    }
    let seed = nodes[0].quic.to_string();
    for i in 1..n {
        let mut command = command(i);
        command.env("FOUNDATION_SEEDS", &seed);
        nodes.push(started(i, start_node(command, &stderr(i)))?);
    }
    let http: Vec<SocketAddr> = nodes.iter().map(|node| node.http).collect();
    let joined = |addr: &SocketAddr| -> bool {
        let Some(body) = http_get(*addr, "/members") else {
            return false;
        };
        let json: Value = serde_json::from_str(&body).unwrap_or_default();
        let alive = json["members"].as_array().map_or(0, |members| {
            members.iter().filter(|m| m["state"] == "alive").count()
        });
        alive == n - 1
    };
    wait_until(t0, || {
        if let Some(i) = first_exited(nodes.iter_mut().map(|node| &mut node.child)) {
            println!(
                "  n{i} of {n} exited while joining (see {})",
                stderr(i).display()
            );
            return None;
        }
        Some(http.iter().all(joined))
    })?;
    let pids: Vec<u32> = nodes.iter().map(|node| node.child.0.id()).collect();
    measure(&pids, window)
}

/// `n` real `serf agent`s (default LAN profile) joined through the first.
fn serf_idle(serf: &Path, scratch: &Path, n: usize, window: Duration) -> Option<Sample> {
    let dir = scratch.join(format!("serf-{n}"));
    std::fs::create_dir_all(&dir).ok()?;
    let ports = free_ports(2 * n);
    let (bind, rpc) = ports.split_at(n);
    let rpc: Vec<String> = rpc.iter().map(|port| format!("127.0.0.1:{port}")).collect();
    let spawn = |i: usize| -> Killable {
        let mut command = Command::new(serf);
        command
            .arg("agent")
            .arg(format!("-node=s{i}"))
            .arg(format!("-bind=127.0.0.1:{}", bind[i]))
            .arg(format!("-rpc-addr={}", rpc[i]))
            .arg("-log-level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if i > 0 {
            command.arg(format!("-join=127.0.0.1:{}", bind[0]));
        }
        Killable(command.spawn().expect("serf agent starts"))
    };
    let t0 = Instant::now();
    let mut agents = vec![spawn(0)];
    // The others `-join` the seed at start and exit if it is not listening yet: wait for it.
    while TcpStream::connect(("127.0.0.1", bind[0])).is_err() && t0.elapsed() < JOIN_LIMIT {
        std::thread::sleep(Duration::from_millis(5));
    }
    agents.extend((1..n).map(spawn));
    let joined = |rpc: &String| -> bool {
        Command::new(serf)
            .args(["members", "-status=alive", &format!("-rpc-addr={rpc}")])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).lines().count() == n)
            .unwrap_or(false)
    };
    wait_until(t0, || {
        // An agent whose port was taken after `free_port` chose it exits at start.
        if let Some(i) = first_exited(agents.iter_mut()) {
            println!("  s{i} of {n} exited while joining");
            return None;
        }
        Some(rpc.iter().all(joined))
    })?;
    let pids: Vec<u32> = agents.iter().map(|k| k.0.id()).collect();
    measure(&pids, window)
}

/// Waits until `done` says `Some(true)`; `None` from it (a member exited) gives up at once.
fn wait_until(t0: Instant, mut done: impl FnMut() -> Option<bool>) -> Option<()> {
    while t0.elapsed() < JOIN_LIMIT {
        if done()? {
            // A slow join is a finding too (and one past JOIN_LIMIT leaves no sample).
            println!("    all joined after {:.1} s", t0.elapsed().as_secs_f64());
            return Some(());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    println!("    not all joined within {JOIN_LIMIT:?}");
    None
}

/// A started member, or `None` after saying why it did not start.
fn started(i: usize, node: Result<StartedNode, String>) -> Option<StartedNode> {
    node.map_err(|why| println!("  n{i} did not start: {why}"))
        .ok()
}

fn print_sample(name: &str, sample: &Sample) {
    let mb: Vec<String> = sample
        .rss
        .iter()
        .map(|r| format!("{:.1}", *r as f64 / 1e6))
        .collect();
    println!(
        "  {name}: RSS per member {:.2} MB [{}] (anonymous {:.2} MB, own binary {:.2} MB), total {:.1} MB (PSS {:.1} MB); CPU {:.2} s in {:.1} s = {:.2} % \
         of one core; threads per member {:?}",
        sample.rss_per_member_mb(),
        mb.join(" "),
        sample.anon_per_member_mb(),
        sample.exe_per_member_mb(),
        sample.rss_total_mb(),
        sample.pss_total_mb(),
        sample.cpu,
        sample.window,
        sample.cpu_percent(),
        sample.threads.iter().max().unwrap_or(&0)
    );
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied()
}

/// Medians over the rounds, the ratios to Serf and the issue's targets.
fn summary(table: &[(String, Vec<Sample>)]) {
    let of = |name: &str, f: fn(&Sample) -> f64| -> Option<f64> {
        let samples = &table.iter().find(|(n, _)| n == name)?.1;
        median(samples.iter().map(f).collect())
    };
    println!("\nmedians over rounds:");
    for (name, _) in table {
        println!(
            "  {name:<22} RSS/member {:>6.2} MB (anon {:>5.2}, binary {:>5.2})  total RSS {:>7.1} MB  PSS {:>7.1} MB  \
             CPU {:>6.2} % of a core",
            of(name, Sample::rss_per_member_mb).unwrap_or(f64::NAN),
            of(name, Sample::anon_per_member_mb).unwrap_or(f64::NAN),
            of(name, Sample::exe_per_member_mb).unwrap_or(f64::NAN),
            of(name, Sample::rss_total_mb).unwrap_or(f64::NAN),
            of(name, Sample::pss_total_mb).unwrap_or(f64::NAN),
            of(name, Sample::cpu_percent).unwrap_or(f64::NAN)
        );
    }
    let ratio = |ours: &str, theirs: &str, f: fn(&Sample) -> f64| -> String {
        match (of(ours, f), of(theirs, f)) {
            (Some(a), Some(b)) => format!("{:.2}x", a / b),
            _ => "n/a".into(),
        }
    };
    let small = format!("serf x{SMALL}");
    let large = format!("serf x{LARGE}");
    for profile in ["dev", "prod"] {
        let ours = format!("foundation {profile} x{SMALL}");
        println!(
            "{ours}: RSS per node {:.2} MB (target <= 10 MB), {} Serf's",
            of(&ours, Sample::rss_per_member_mb).unwrap_or(f64::NAN),
            ratio(&ours, &small, Sample::rss_per_member_mb)
        );
    }
    let ours = format!("foundation prod x{LARGE}");
    println!(
        "{ours}: CPU {} Serf's (target <= 1x), total RSS {} Serf's, total PSS {} Serf's",
        ratio(&ours, &large, Sample::cpu_percent),
        ratio(&ours, &large, Sample::rss_total_mb),
        ratio(&ours, &large, Sample::pss_total_mb)
    );
}
