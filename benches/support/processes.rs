//! Helpers shared by the benches that run real processes: the `foundation` binary, free ports,
//! children killed on drop, a minimal HTTP GET.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Child;
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

/// A port free for both UDP and TCP on 127.0.0.1 (serf and QUIC+HTTP need both kinds).
pub fn free_port() -> u16 {
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
        let port = udp.local_addr().unwrap().port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
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
