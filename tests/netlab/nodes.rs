//! `foundation node` processes on the test's hosts, and monitors of their events.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::lan::Lan;
use super::BINARY;

/// A node process on one host; killed (SIGKILL) when dropped.
pub struct HostNode {
    child: Child,
    pub id: String,
    /// Everything the node wrote to stderr (its logs and warnings).
    pub stderr: Arc<Mutex<String>>,
}

impl HostNode {
    /// Starts `foundation node` on host `i` with `env` (nothing else from this process's
    /// environment) and waits for it to print its id.
    pub fn start(lan: &Lan, i: usize, env: &[(String, String)]) -> Self {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &lan.host(i), BINARY, "node"])
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("foundation runs in the namespace");
        let stdout = child.stdout.take().expect("stdout");
        let stderr_pipe = child.stderr.take().expect("stderr");
        let stderr = Arc::new(Mutex::new(String::new()));
        let collected = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr_pipe).lines().map_while(Result::ok) {
                if let Ok(mut text) = collected.lock() {
                    text.push_str(&line);
                    text.push('\n');
                }
            }
        });
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let id = loop {
            let Ok(line) = rx.recv_timeout(Duration::from_secs(20)) else {
                let logs = stderr.lock().map(|s| s.clone()).unwrap_or_default();
                panic!("node on host {i} printed no id; its stderr:\n{logs}");
            };
            if let Some(id) = line.strip_prefix("node     ") {
                break id.trim().to_owned();
            }
        };
        HostNode { child, id, stderr }
    }

    /// SIGTERM, as systemd or Kubernetes stop a node: it leaves gracefully and exits.
    pub fn stop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let _ = self.child.wait();
    }

    /// The node's process id (`ip netns exec` execs the node in place).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (`KILL`, `STOP`, `CONT`, …) to the node; true if `kill` succeeded.
    pub fn signal(&self, signal: &str) -> bool {
        let pid = self.child.id().to_string();
        Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .is_ok_and(|s| s.success())
    }

    /// `kill -9` and waits for the process to be gone.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn logs(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl Drop for HostNode {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `foundation monitor` on hosts: each event line with the instant it arrived here.
pub struct Monitors {
    children: Vec<Child>,
    sender: Sender<(usize, Instant, String)>,
    lines: Receiver<(usize, Instant, String)>,
}

impl Monitors {
    pub fn start(lan: &Lan, hosts: std::ops::Range<usize>) -> Self {
        let (sender, lines) = channel();
        let mut monitors = Self {
            children: Vec::new(),
            sender,
            lines,
        };
        for i in hosts {
            monitors.watch(lan, i);
        }
        monitors
    }

    /// Starts a monitor of the node on host `i` (again, after that node restarted: a monitor
    /// ends with its node).
    pub fn watch(&mut self, lan: &Lan, i: usize) {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &lan.host(i), BINARY, "monitor"])
            .args(["--node", lan.local_http()])
            .env_clear()
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("foundation monitor runs");
        let stdout = child.stdout.take().expect("stdout");
        let tx = self.sender.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send((i, Instant::now(), line)).is_err() {
                    return;
                }
            }
        });
        self.children.push(child);
    }

    /// Every line received so far and not yet taken.
    pub fn take(&self) -> Vec<(usize, Instant, String)> {
        self.lines.try_iter().collect()
    }

    /// When each of `hosts` printed a line containing `what`, waiting at most `patience`;
    /// `None` for a host that did not.
    pub fn arrivals(&self, what: &str, hosts: usize, patience: Duration) -> Vec<Option<Instant>> {
        let mut seen = vec![None; hosts];
        let deadline = Instant::now() + patience;
        while seen.iter().any(Option::is_none) {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok((i, at, line)) = self.lines.recv_timeout(left) else {
                break;
            };
            if line.contains(what) && i < hosts && seen[i].is_none() {
                seen[i] = Some(at);
            }
        }
        seen
    }
}

impl Drop for Monitors {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
