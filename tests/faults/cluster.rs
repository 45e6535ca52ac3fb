//! Five production nodes on the test network, each keeping its keyspaces on disk so that a
//! node killed with `-9` comes back on its data directory as the same member; what the test
//! asks of them over HTTP, from inside their namespaces.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::netlab::lan::Lan;
use crate::netlab::netns;
use crate::netlab::nodes::{HostNode, Monitors};

const SECRET: &str = "faults-test-secret-0123456789abcdef";
/// How long the cluster may take to form.
const FORM_WITHIN: Duration = Duration::from_secs(40);
/// The service every node life registers an endpoint of.
pub const SERVICE: &str = "faults";

/// Field order is drop order: monitors and nodes go before the network they run in.
pub struct Cluster {
    pub monitors: Monitors,
    nodes: Vec<Option<HostNode>>,
    pub ids: Vec<String>,
    dir: PathBuf,
    pub lan: Lan,
}

impl Cluster {
    /// Starts a node on every host and waits until each sees every other alive.
    pub fn start(lan: Lan) -> Self {
        let dir = std::env::temp_dir().join(format!("foundation-faults-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut cluster = Self {
            monitors: Monitors::start(&lan, 0..0),
            nodes: Vec::new(),
            ids: Vec::new(),
            dir,
            lan,
        };
        for i in 0..cluster.lan.hosts {
            let node = HostNode::start(&cluster.lan, i, &cluster.env(i, None));
            cluster.ids.push(node.id.clone());
            cluster.nodes.push(Some(node));
        }
        let started = Instant::now();
        while !(0..cluster.lan.hosts).all(|i| cluster.alive_peers(i) == cluster.lan.hosts - 1) {
            assert!(started.elapsed() < FORM_WITHIN, "the cluster did not form");
            std::thread::sleep(Duration::from_millis(100));
        }
        for i in 0..cluster.lan.hosts {
            cluster.monitors.watch(&cluster.lan, i);
        }
        cluster
    }

    /// The production profile with a real secret and seeds, keyspaces on disk.
    fn env(&self, i: usize, id: Option<&str>) -> Vec<(String, String)> {
        let data = self.dir.join(format!("h{i}"));
        let mut env = self.lan.production_env(i, "faults", SECRET);
        env.push(("FOUNDATION_STORAGE".into(), "disk".into()));
        env.push(("FOUNDATION_DATA_DIR".into(), data.display().to_string()));
        env.push(self.lan.seeds());
        if let Some(id) = id {
            env.push(("FOUNDATION_NODE_ID".into(), id.to_owned()));
        }
        env
    }

    pub fn hosts(&self) -> usize {
        self.lan.hosts
    }

    /// `kill -9`: no goodbye, no flush.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut node) = self.nodes[i].take() {
            node.kill();
        }
    }

    /// Starts host `i`'s node again on its data directory, as the same member, and watches it.
    pub fn restart(&mut self, i: usize) {
        let node = HostNode::start(&self.lan, i, &self.env(i, Some(&self.ids[i])));
        self.nodes[i] = Some(node);
        self.monitors.watch(&self.lan, i);
    }

    /// `SIGSTOP` or `SIGCONT` to host `i`'s node.
    pub fn signal(&self, i: usize, signal: &str) {
        let node = self.nodes[i].as_ref().expect("a running node");
        assert!(node.signal(signal), "kill -{signal} h{i}");
    }

    /// `GET path` as JSON from host `i`'s node, asked inside its namespace.
    pub fn get(&self, i: usize, path: &str) -> Option<Value> {
        let addr: SocketAddr = self.lan.local_http().parse().ok()?;
        let text = netns::http_get(&self.lan.host(i), addr, path)?;
        serde_json::from_str(&text).ok()
    }

    fn alive_peers(&self, i: usize) -> usize {
        self.get(i, "/members")
            .and_then(|v| v["members"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter(|m| m["state"] == "alive")
            .count()
    }

    /// Every config key and value host `i`'s node holds.
    pub fn config(&self, i: usize) -> Option<BTreeMap<String, Value>> {
        match self.get(i, "/config")? {
            Value::Object(map) => Some(map.into_iter().collect()),
            _ => None,
        }
    }

    /// The instances of [`SERVICE`] host `i`'s node lists.
    pub fn instances(&self, i: usize) -> Option<BTreeSet<String>> {
        let services = self.get(i, "/services")?;
        let instances = services["services"][SERVICE].as_array().cloned();
        Some(
            instances
                .unwrap_or_default()
                .iter()
                .filter_map(|i| i["id"].as_str().map(str::to_owned))
                .collect(),
        )
    }

    /// Registers an endpoint of [`SERVICE`] through host `i`'s node: the instance id
    /// (`node.generation/number`, naming the node's life) as its node lists it.
    pub fn register(&self, i: usize) -> Result<String, String> {
        let addr: SocketAddr = self.lan.local_http().parse().map_err(|e| format!("{e}"))?;
        let body = format!(r#"{{"addr": "{}"}}"#, self.lan.sock(i, 9000));
        let path = format!("/services/{SERVICE}");
        let answer = netns::run_in(&self.lan.host(i), move || {
            netns::request(addr, "PUT", &path, Some(&body), Duration::from_secs(4))
        })
        .join()
        .map_err(|_| "the registering thread panicked".to_owned())??;
        let number = match answer {
            Some((200..=299, body)) => serde_json::from_str::<Value>(&body)
                .ok()
                .and_then(|v| v["id"].as_u64())
                .ok_or_else(|| format!("no id in {body}"))?,
            other => return Err(format!("registration through h{i}: {other:?}")),
        };
        let suffix = format!("/{number}");
        let listed = self.get(i, "/services").and_then(|services| {
            services["services"][SERVICE]
                .as_array()?
                .iter()
                .filter(|instance| instance["local"] == true)
                .find_map(|instance| instance["id"].as_str().filter(|id| id.ends_with(&suffix)))
                .map(str::to_owned)
        });
        listed.ok_or_else(|| format!("h{i} does not list its instance {number}"))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in self.nodes.iter_mut().flatten() {
            node.kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
