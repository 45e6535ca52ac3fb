//! Real `foundation node` processes on loopback: zero-config clustering through the local
//! discovery directory, kill -9, restart with the same id, and configuration errors.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const BINARY: &str = env!("CARGO_BIN_EXE_foundation");

struct NodeProcess {
    child: Child,
    http: SocketAddr,
    id: String,
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("foundation-proc-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Starts `foundation node` with nothing but local discovery in `runtime_dir` and reads the id
/// and HTTP address it prints.
fn start(runtime_dir: &Path, cluster: &str, name: &str, node_id: Option<&str>) -> NodeProcess {
    let mut command = Command::new(BINARY);
    command
        .args(["node", "--name", name])
        .env_clear()
        .env("XDG_RUNTIME_DIR", runtime_dir)
        .env("FOUNDATION_CLUSTER", cluster)
        // Zero configuration otherwise; mDNS stays off so the test never multicasts on the host.
        .env("FOUNDATION_DISCOVERY", "local")
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
    }
}

fn members(node: &NodeProcess) -> Vec<Value> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let answer = runtime.block_on(foundation::engine::http::get_json(
        node.http,
        "/members",
        Duration::from_secs(2),
    ));
    answer
        .ok()
        .and_then(|v| v["members"].as_array().cloned())
        .unwrap_or_default()
}

fn state_of(observer: &NodeProcess, id: &str) -> Option<String> {
    members(observer)
        .into_iter()
        .find(|m| m["id"] == id)
        .and_then(|m| m["state"].as_str().map(str::to_owned))
}

fn eventually(limit: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(start.elapsed() < limit, "not within {limit:?}: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn three_zero_config_processes_cluster_detect_a_kill_and_take_the_node_back() {
    let dir = scratch_dir("cluster");
    let cluster = format!("proc-{}", std::process::id());
    let a = start(&dir, &cluster, "a", None);
    let b = start(&dir, &cluster, "b", None);
    let mut c = start(&dir, &cluster, "c", None);
    for node in [&a, &b, &c] {
        eventually(
            Duration::from_secs(15),
            "each node sees two live peers",
            || {
                members(node)
                    .iter()
                    .filter(|m| m["state"] == "alive")
                    .count()
                    == 2
            },
        );
    }
    let c_id = c.id.clone();
    c.child.kill().unwrap(); // SIGKILL: no goodbye
    let _ = c.child.wait();
    for node in [&a, &b] {
        eventually(
            Duration::from_secs(15),
            "the killed node is marked failed",
            || state_of(node, &c_id).as_deref() == Some("failed"),
        );
    }
    drop(c);
    let c_again = start(&dir, &cluster, "c", Some(&c_id));
    for node in [&a, &b] {
        eventually(
            Duration::from_secs(15),
            "the restarted node is alive again",
            || state_of(node, &c_id).as_deref() == Some("alive"),
        );
    }
    drop(c_again);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn production_without_a_secret_refuses_to_start_with_a_clear_message() {
    let output = Command::new(BINARY)
        .args([
            "node",
            "--profile",
            "production",
            "--seed",
            "127.0.0.1:7400",
        ])
        .env_clear()
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("FOUNDATION_SECRET"),
        "message names what to set: {stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "one clear line: {stderr}");
}

#[test]
fn production_without_a_data_dir_refuses_to_start_naming_the_setting() {
    let output = Command::new(BINARY)
        .args([
            "node",
            "--profile",
            "production",
            "--seed",
            "127.0.0.1:7400",
        ])
        .env_clear()
        .env("FOUNDATION_SECRET", "a-production-secret-of-32-bytes!")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--data-dir"), "names the flag: {stderr}");
    assert!(
        stderr.contains("storage = \"memory\""),
        "names the way out: {stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "one clear line: {stderr}");
}

#[test]
fn a_malformed_config_file_is_reported_with_its_line() {
    let dir = scratch_dir("badconfig");
    let file = dir.join("node.toml");
    std::fs::write(
        &file,
        "cluster = \"ok\"\n[membership]\nprobe_rtt = \"fast\"\n",
    )
    .unwrap();
    let output = Command::new(BINARY)
        .args(["node", "--config"])
        .arg(&file)
        .env_clear()
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("line 3") && stderr.contains("probe_rtt"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs `foundation config ARGS --node NODE`; its stdout, or its stderr as the error.
fn config_cli(node: &NodeProcess, args: &[&str]) -> Result<String, String> {
    config_cli_at(node.http, args)
}

fn config_cli_at(http: SocketAddr, args: &[&str]) -> Result<String, String> {
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

#[test]
fn config_set_on_one_process_is_read_on_another_and_deleted() {
    let dir = scratch_dir("config");
    let a = start(&dir, "config-cli", "a", None);
    let b = start(&dir, "config-cli", "b", None);
    eventually(Duration::from_secs(20), "a and b see each other", || {
        state_of(&a, &b.id).as_deref() == Some("alive")
    });
    config_cli(&a, &["set", "limits.api", r#"{"rps":5}"#]).expect("set");
    eventually(Duration::from_secs(10), "b reads a's write", || {
        config_cli(&b, &["get", "limits.api"]).as_deref() == Ok(r#"{"rps":5}"#)
    });
    // With two live members a majority is both: the answer waits for b's acknowledgement.
    config_cli(&b, &["set", "limits.db", "7", "--majority", "5000"]).expect("majority set");
    assert_eq!(config_cli(&a, &["get", "limits.db"]).as_deref(), Ok("7"));
    config_cli(&b, &["delete", "limits.api"]).expect("delete");
    eventually(Duration::from_secs(10), "the delete reaches a", || {
        config_cli(&a, &["get", "limits.api"]).is_err_and(|e| e.contains("no key"))
    });
    let unreachable = config_cli_at("127.0.0.1:1".parse().unwrap(), &["get"]);
    assert!(unreachable.is_err_and(|e| e.contains("127.0.0.1:1")));
}
