//! Helpers shared by the tests (and benchmarks) that run real `foundation node` processes on
//! loopback: start one with nothing but local discovery, ask it for its members or its config,
//! wait for a condition.
//!
//! Each test crate uses only some of them.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BINARY: &str = env!("CARGO_BIN_EXE_foundation");

/// A running `foundation node`, killed (SIGKILL) when dropped.
pub struct NodeProcess {
    pub child: Child,
    pub http: SocketAddr,
    pub id: String,
    /// The lines the node prints on stdout after its HTTP address.
    pub output: std::sync::Mutex<std::sync::mpsc::Receiver<String>>,
}

impl NodeProcess {
    /// SIGKILL: no goodbye, no flush; waits for the process to be gone.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// An empty directory under the system's temporary directory, unique to this test process.
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("foundation-proc-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Starts `foundation node` with nothing but local discovery in `runtime_dir` and reads the id
/// and HTTP address it prints.
pub fn start(runtime_dir: &Path, cluster: &str, name: &str, node_id: Option<&str>) -> NodeProcess {
    start_with(runtime_dir, cluster, name, node_id, &[], &[])
}

/// [`start`] with more command-line arguments and `FOUNDATION_*` variables (such as
/// `--data-dir DIR` and `FOUNDATION_SYNC=always`).
pub fn start_with(
    runtime_dir: &Path,
    cluster: &str,
    name: &str,
    node_id: Option<&str>,
    args: &[&std::ffi::OsStr],
    env: &[(&str, &str)],
) -> NodeProcess {
    let mut command = Command::new(BINARY);
    command
        .args(["node", "--name", name])
        .args(args)
        .env_clear()
        .env("XDG_RUNTIME_DIR", runtime_dir)
        .env("FOUNDATION_CLUSTER", cluster)
        // Zero configuration otherwise; mDNS stays off so the test never multicasts on the host.
        .env("FOUNDATION_DISCOVERY", "local")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Some(id) = node_id {
        command.env("FOUNDATION_NODE_ID", id);
    }
    let mut child = command.spawn().expect("foundation binary runs");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    // Keep draining stdout for the node's whole life: a closed pipe would kill it on its next line.
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let (mut http, mut id) = (None, None);
    while http.is_none() {
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("node prints its identity");
        if let Some(rest) = line.strip_prefix("node     ") {
            id = Some(rest.trim().to_owned());
        }
        if let Some(rest) = line.strip_prefix("members  foundation members --node ") {
            http = rest.trim().parse().ok();
        }
    }
    NodeProcess {
        child,
        http: http.expect("node printed its HTTP address"),
        id: id.expect("node printed its id"),
        output: std::sync::Mutex::new(rx),
    }
}

/// `GET path` from the node's HTTP API; `None` if it does not answer with JSON in time.
pub fn get(http: SocketAddr, path: &str) -> Option<Value> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime
        .block_on(foundation::engine::http::get_json(
            http,
            path,
            Duration::from_secs(2),
        ))
        .ok()
}

/// A counter or gauge from the node's `/metrics`; `None` if absent or the node does not answer.
pub fn metric(http: SocketAddr, name: &str) -> Option<f64> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let timeout = Duration::from_secs(2);
    let body = runtime
        .block_on(foundation::engine::http::get_bytes(
            http,
            "/metrics",
            4 << 20,
            timeout,
        ))
        .ok()?;
    String::from_utf8_lossy(&body)
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

pub fn members(node: &NodeProcess) -> Vec<Value> {
    get(node.http, "/members")
        .and_then(|v| v["members"].as_array().cloned())
        .unwrap_or_default()
}

/// How many other members `node` shows alive.
pub fn alive_peers(node: &NodeProcess) -> usize {
    members(node)
        .iter()
        .filter(|m| m["state"] == "alive")
        .count()
}

pub fn state_of(observer: &NodeProcess, id: &str) -> Option<String> {
    members(observer)
        .into_iter()
        .find(|m| m["id"] == id)
        .and_then(|m| m["state"].as_str().map(str::to_owned))
}

/// Every config key and value the node holds (`GET /config`); `None` if it does not answer.
pub fn config_snapshot(http: SocketAddr) -> Option<BTreeMap<String, Value>> {
    match get(http, "/config")? {
        Value::Object(map) => Some(map.into_iter().collect()),
        _ => None,
    }
}

pub fn eventually(limit: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(start.elapsed() < limit, "not within {limit:?}: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs `foundation config ARGS --node NODE`; its stdout, or its stderr as the error.
pub fn config_cli(node: &NodeProcess, args: &[&str]) -> Result<String, String> {
    config_cli_at(node.http, args)
}

pub fn config_cli_at(http: SocketAddr, args: &[&str]) -> Result<String, String> {
    let output = Command::new(BINARY)
        .arg("config")
        .args(args)
        .args(["--node", &http.to_string()])
        .env_clear()
        .output()
        .expect("foundation binary runs");
    let text = |b: &[u8]| String::from_utf8_lossy(b).trim().to_owned();
    if output.status.success() {
        Ok(text(&output.stdout))
    } else {
        Err(text(&output.stderr))
    }
}
