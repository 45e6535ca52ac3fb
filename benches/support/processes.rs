//! Helpers shared by the benches that run real processes: the `foundation` binary, nodes started
//! on ports the kernel picks, free ports for peers that need them, children killed on drop, a
//! minimal HTTP GET.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, SystemTime};

pub fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// The `foundation` binary the bench runs: `FOUNDATION_BENCH_BINARY` when set (to measure
/// another build, e.g. `target/dist/foundation` of the shipped profile), else
/// `target/release/foundation` (honouring `CARGO_TARGET_DIR`).
pub fn foundation_binary() -> Result<PathBuf, String> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let binary = match std::env::var_os("FOUNDATION_BENCH_BINARY") {
        Some(path) => PathBuf::from(path),
        None => std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| manifest.join("target"))
            .join("release")
            .join("foundation"),
    };
    if !binary.is_file() {
        return Err(format!(
            "{} is missing: build it first — `cargo build --release`, then the bench",
            binary.display()
        ));
    }
    // Warn when a source file is newer than the binary: the numbers would be of old code.
    let built = std::fs::metadata(&binary).and_then(|m| m.modified()).ok();
    let newest = ["src", "engine/src", "transport/src"]
        .iter()
        .filter_map(|dir| newest_mtime(&manifest.join(dir)))
        .max();
    if let (Some(built), Some(newest)) = (built, newest) {
        if newest > built {
            println!(
                "WARNING: {} is older than the sources: rebuild it first",
                binary.display()
            );
        }
    }
    Ok(binary)
}

fn newest_mtime(dir: &Path) -> Option<SystemTime> {
    let mut newest = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let time = if path.is_dir() {
            newest_mtime(&path)
        } else {
            entry.metadata().and_then(|m| m.modified()).ok()
        };
        newest = newest.max(time);
    }
    newest
}

/// Starts a cluster's seed: a node that must know its own QUIC address before it starts (it
/// is its own static seed), so `command_on` gets a port chosen with [`free_port`] and sets
/// `FOUNDATION_BIND` and `FOUNDATION_SEEDS` to it. That port can be taken before the seed binds
/// it; the seed then fails to start, and another port is tried, three in all.
pub fn start_seed(
    command_on: impl Fn(SocketAddr) -> Command,
    stderr_file: &Path,
) -> Result<StartedNode, String> {
    let mut failures = Vec::new();
    for _ in 0..3 {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let mut command = command_on(addr);
        command
            .env("FOUNDATION_BIND", addr.to_string())
            .env("FOUNDATION_SEEDS", addr.to_string());
        match start_node(command, stderr_file) {
            Ok(seed) => return Ok(seed),
            Err(why) => failures.push(format!("on {addr}: {why}")),
        }
    }
    Err(failures.join("; "))
}

/// A `foundation node` that started: its process and the addresses it bound.
pub struct StartedNode {
    pub child: Killable,
    pub quic: SocketAddr,
    pub http: SocketAddr,
}

/// Longest a node may take to print its addresses (a loaded 2-core machine starting 30).
const START_LIMIT: Duration = Duration::from_secs(30);

/// Starts `command` (a `foundation node` with its environment set) on ports the kernel picks —
/// QUIC and HTTP on `127.0.0.1:0` — and reads the addresses it bound from the `quic` and `http`
/// lines it prints once started. Nothing is reserved ahead and released, so no other process
/// can take a port between the bench choosing it and the node binding it. A node that exits
/// first (a bind or configuration error) or prints nothing within [`START_LIMIT`] is an error
/// carrying its exit status and the end of its stderr, which is kept in `stderr_file`.
pub fn start_node(mut command: Command, stderr_file: &Path) -> Result<StartedNode, String> {
    let stderr = std::fs::File::create(stderr_file).map_err(|e| e.to_string())?;
    let bind_given = command
        .get_envs()
        .any(|(key, value)| key == "FOUNDATION_BIND" && value.is_some());
    if !bind_given {
        command.env("FOUNDATION_BIND", "127.0.0.1:0");
    }
    command
        .env("FOUNDATION_HTTP", "127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(Stdio::from(stderr));
    let mut child = Killable(command.spawn().map_err(|e| format!("cannot start: {e}"))?);
    let stdout = child.0.stdout.take().expect("stdout is piped");
    let (addresses, found) = mpsc::channel();
    // Reads the start-up lines, then keeps draining stdout for the node's whole life (a closed
    // pipe would kill it at its next line).
    std::thread::spawn(move || {
        let (mut quic, mut http, mut told) = (None, None, false);
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if told {
                continue;
            }
            quic = quic.or_else(|| address_after(&line, "quic "));
            http = http.or_else(|| address_after(&line, "http "));
            if let (Some(quic), Some(http)) = (quic, http) {
                told = addresses.send((quic, http)).is_ok();
            }
        }
    });
    match found.recv_timeout(START_LIMIT) {
        Ok((quic, http)) => Ok(StartedNode { child, quic, http }),
        Err(_) => Err(failed_start(&mut child, stderr_file)),
    }
}

/// The address on a start-up line such as `quic     127.0.0.1:40123` or
/// `http     http://127.0.0.1:40124/ (metrics, ...)`.
fn address_after(line: &str, label: &str) -> Option<SocketAddr> {
    let rest = line.strip_prefix(label)?.trim_start();
    let rest = rest.strip_prefix("http://").unwrap_or(rest);
    rest.split(['/', ' ']).next()?.parse().ok()
}

/// Why a node did not report its addresses: its exit status (or that it still runs) and the
/// last lines of its stderr.
fn failed_start(child: &mut Killable, stderr_file: &Path) -> String {
    // Its stdout closing comes a moment before it can be reaped.
    let exited = (0..20).find_map(|_| {
        let status = child.0.try_wait().ok().flatten();
        if status.is_none() {
            std::thread::sleep(Duration::from_millis(50));
        }
        status
    });
    let status = match exited {
        Some(status) => format!("exited ({status})"),
        None => format!("printed no addresses within {START_LIMIT:?}"),
    };
    child.kill();
    let stderr = std::fs::read_to_string(stderr_file).unwrap_or_default();
    let tail: Vec<&str> = stderr.lines().rev().take(3).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    format!("{status}; stderr: {}", tail.join(" | "))
}

/// Whether any of `children` has exited, and which (for peers started on chosen ports, to stop
/// waiting for one that never came up).
pub fn first_exited<'a>(children: impl IntoIterator<Item = &'a mut Killable>) -> Option<usize> {
    children
        .into_iter()
        .position(|child| matches!(child.0.try_wait(), Ok(Some(_))))
}

/// A port free for both UDP and TCP on 127.0.0.1, for peers (serf, chitchat) that cannot be
/// told to bind port 0 and report: it is released before the peer binds it, so another process
/// can take it meanwhile — check that the peer started ([`first_exited`]).
pub fn free_port() -> u16 {
    free_ports(1)[0]
}

/// `n` distinct ports, each free for both UDP and TCP on 127.0.0.1. All are held until the last
/// is found: ports found one at a time and released in between can repeat (60 picks from the
/// kernel's ≈ 28,000 ephemeral ports repeat one about once in 15), and two peers told the same
/// port leave one that never starts.
pub fn free_ports(n: usize) -> Vec<u16> {
    let mut held = Vec::with_capacity(n);
    while held.len() < n {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
        let port = udp.local_addr().unwrap().port();
        if let Ok(tcp) = TcpListener::bind(("127.0.0.1", port)) {
            held.push((port, udp, tcp));
        }
    }
    held.into_iter().map(|(port, _, _)| port).collect()
}

/// A child process that is killed (SIGKILL) and reaped when dropped or on request.
pub struct Killable(pub Child);

impl Killable {
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Killable {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A minimal HTTP/1.1 GET (Connection: close); the body, or `None` on any failure.
pub fn http_get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n")?;
    if !head.starts_with("HTTP/1.1 2") && !head.starts_with("HTTP/1.0 2") {
        // /health answers 503 until the node has a peer: still proof that it is up.
        return (path == "/health").then(String::new);
    }
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return Some(dechunk(body));
    }
    Some(body.to_owned())
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}
