//! A real Prometheus server scrapes three real `foundation node` processes with the shipped
//! scrape configuration (`deploy/prometheus/prometheus.yml`, its targets replaced by the nodes'
//! loopback addresses) and alert rules, and evaluates every query of the shipped Grafana
//! dashboard (`deploy/grafana/foundation-dashboard.json`).
//!
//! Needs `/usr/bin/prometheus` (Debian's `prometheus` package; `.ci/run` installs it). Without
//! it the test says so and passes without checking anything.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{eventually, scratch_dir, start, state_of, NodeProcess};
use serde_json::Value;

const PROMETHEUS: &str = "/usr/bin/prometheus";
const PATIENCE: Duration = Duration::from_secs(30);

/// The Prometheus server, stopped (SIGKILL) when dropped.
struct Prometheus {
    child: Child,
    http: SocketAddr,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn deploy(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(path)
}

/// The shipped scrape configuration, scraping `targets` every second, with the shipped alert
/// rules next to it (the configuration names them by a relative path).
fn write_config(dir: &Path, targets: &[SocketAddr]) -> PathBuf {
    let shipped = std::fs::read_to_string(deploy("prometheus/prometheus.yml")).unwrap();
    let mut config: serde_yaml::Value = serde_yaml::from_str(&shipped).expect("YAML");
    config["global"]["scrape_interval"] = "1s".into();
    config["global"]["evaluation_interval"] = "1s".into();
    let job = &mut config["scrape_configs"][0];
    assert_eq!(job["job_name"], "foundation");
    job["static_configs"][0]["targets"] = targets
        .iter()
        .map(|t| serde_yaml::Value::from(t.to_string()))
        .collect();
    let path = dir.join("prometheus.yml");
    std::fs::write(&path, serde_yaml::to_string(&config).unwrap()).unwrap();
    std::fs::copy(
        deploy("prometheus/foundation-alerts.yml"),
        dir.join("foundation-alerts.yml"),
    )
    .unwrap();
    path
}

fn free_port() -> u16 {
    let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    socket.local_addr().unwrap().port()
}

fn start_prometheus(dir: &Path, config: &Path) -> Prometheus {
    let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
    let child = Command::new(PROMETHEUS)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address={http}"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("prometheus runs");
    Prometheus { child, http }
}

/// Percent-encodes a query string value.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The API's answer to an instant query; `Err` carries Prometheus's error (or why there was
/// no answer).
fn query(prometheus: &Prometheus, expr: &str) -> Result<Vec<Value>, String> {
    let path = format!("/api/v1/query?query={}", encode(expr));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let answer = runtime
        .block_on(foundation::engine::http::get_json(
            prometheus.http,
            &path,
            Duration::from_secs(5),
        ))
        .map_err(|e| e.to_string())?;
    if answer["status"] != "success" {
        return Err(answer.to_string());
    }
    Ok(answer["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default())
}

fn api(prometheus: &Prometheus, path: &str) -> Option<Value> {
    common::get(prometheus.http, path)
}

/// Instances of the series in `result`.
fn instances(result: &[Value]) -> BTreeSet<String> {
    result
        .iter()
        .filter_map(|s| s["metric"]["instance"].as_str().map(str::to_owned))
        .collect()
}

/// Every PromQL expression the dashboard's panels run.
fn dashboard_queries() -> Vec<String> {
    let text = std::fs::read_to_string(deploy("grafana/foundation-dashboard.json")).unwrap();
    let dashboard: Value = serde_json::from_str(&text).expect("dashboard JSON");
    dashboard["panels"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|panel| panel["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|target| target["expr"].as_str().map(str::to_owned))
        .collect()
}

fn three_nodes(dir: &Path, cluster: &str) -> [NodeProcess; 3] {
    let nodes = ["a", "b", "c"].map(|name| start(dir, cluster, name, None));
    for observer in &nodes {
        for other in nodes.iter().filter(|n| n.id != observer.id) {
            eventually(PATIENCE, "the three nodes see each other", || {
                state_of(observer, &other.id).as_deref() == Some("alive")
            });
        }
    }
    nodes
}

#[test]
fn a_real_prometheus_scrapes_three_nodes_and_runs_every_dashboard_query() {
    if !Path::new(PROMETHEUS).exists() {
        eprintln!(
            "SKIPPED: {PROMETHEUS} is not installed (apt-get install prometheus); \
             the scrape of three nodes by a real Prometheus was not checked"
        );
        return;
    }
    let dir = scratch_dir("prometheus");
    let nodes = three_nodes(&dir, "prom-scrape");
    let targets: Vec<SocketAddr> = nodes.iter().map(|n| n.http).collect();
    let config = write_config(&dir, &targets);
    let prometheus = start_prometheus(&dir, &config);
    let expected: BTreeSet<String> = targets.iter().map(|t| t.to_string()).collect();

    // Every node is a healthy target: Prometheus parsed each /metrics.
    eventually(PATIENCE, "prometheus scrapes all three nodes", || {
        query(&prometheus, "up{job=\"foundation\"} == 1").is_ok_and(|up| instances(&up) == expected)
    });
    // Each node reports the other two alive (the members gauge counts the node's peers).
    eventually(PATIENCE, "every node's members gauge is scraped", || {
        query(
            &prometheus,
            "foundation_membership_members{state=\"alive\"} == 2",
        )
        .is_ok_and(|alive| instances(&alive) == expected)
    });
    // Every dashboard query is valid PromQL for this Prometheus, and the ones over gauges
    // already have a series from every node.
    let queries = dashboard_queries();
    assert!(queries.len() > 15, "{queries:?}");
    for expr in &queries {
        let result = query(&prometheus, expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
        if expr == "foundation_membership_local_health"
            || expr == "foundation_transport_connections"
        {
            assert_eq!(instances(&result), expected, "{expr}");
        }
    }
    // The shipped alert rules load and evaluate without error.
    let alerts = std::fs::read_to_string(deploy("prometheus/foundation-alerts.yml")).unwrap();
    let shipped = alerts.matches("- alert:").count();
    eventually(PATIENCE, "every alert rule evaluates cleanly", || {
        let Some(rules) = api(&prometheus, "/api/v1/rules") else {
            return false;
        };
        let all: Vec<&Value> = rules["data"]["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().into_iter().flatten())
            .collect();
        all.len() == shipped && all.iter().all(|r| r["health"] == "ok")
    });
    // No alert fires on a healthy cluster.
    let firing = query(&prometheus, "ALERTS{alertstate=\"firing\"}").unwrap();
    assert!(firing.is_empty(), "{firing:?}");
    drop(prometheus);
    drop(nodes);
    let _ = std::fs::remove_dir_all(&dir);
}
