//! The files operators deploy with (`deploy/`), checked offline: the systemd unit by
//! `systemd-analyze verify`, the Prometheus configuration and alerts by promtool (each where
//! installed), the Kubernetes manifests and the container recipe by what they must say, every
//! `FOUNDATION_*` variable they set against the variables the node reads, and every metric the
//! dashboard and the alerts query against what a fresh node's `/metrics` lists.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use foundation::engine::config::is_known_variable;
use foundation::engine::runtime::{Node, NodeSettings};
use foundation::transport::{ClusterName, ClusterSecret, LocalIdentity, NodeId, Trust};

fn deploy(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(deploy(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every `deploy/` file, recursively.
fn deploy_files() -> Vec<PathBuf> {
    let mut pending = vec![deploy("")];
    let mut files = Vec::new();
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("deploy/ exists") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// Runs `program args`; `None` when the program is not installed.
fn run(program: &str, args: &[&str]) -> Option<std::process::Output> {
    match Command::new(program).args(args).output() {
        Ok(output) => Some(output),
        Err(_) => {
            eprintln!("{program} is not installed: that check is skipped");
            None
        }
    }
}

fn assert_success(output: &std::process::Output, what: &str) {
    assert!(
        output.status.success(),
        "{what} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The words in `text` that look like `prefix` followed by name characters.
fn words_with_prefix(text: &str, prefix: &str, upper: bool) -> BTreeSet<String> {
    let ok = |c: char| {
        c == '_'
            || c.is_ascii_digit()
            || if upper {
                c.is_ascii_uppercase()
            } else {
                c.is_ascii_lowercase()
            }
    };
    let mut found = BTreeSet::new();
    for (at, _) in text.match_indices(prefix) {
        let before = text[..at].chars().next_back();
        if before.is_some_and(|c| ok(c) || c.is_ascii_alphanumeric()) {
            continue;
        }
        let name: String = text[at..].chars().take_while(|c| ok(*c)).collect();
        found.insert(name);
    }
    found
}

#[test]
fn every_variable_the_files_set_is_one_the_node_reads() {
    for file in deploy_files() {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        for name in words_with_prefix(&text, "FOUNDATION_", true) {
            assert!(
                is_known_variable(&name),
                "{}: {name} is not a variable the node reads",
                file.display()
            );
        }
    }
}

#[test]
fn the_systemd_unit_stops_gracefully_and_verifies() {
    let unit = read("systemd/foundation.service");
    for line in [
        "ExecStart=/usr/local/bin/foundation node",
        "KillSignal=SIGTERM",
        "Restart=on-failure",
        "DynamicUser=yes",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "StateDirectory=foundation",
        "Environment=FOUNDATION_DATA_DIR=/var/lib/foundation",
    ] {
        assert!(unit.lines().any(|l| l == line), "the unit lacks {line:?}");
    }
    // systemd-analyze checks that the program exists: point it at the binary just built.
    let dir = std::env::temp_dir().join(format!("foundation-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("foundation.service");
    let built = unit.replace(
        "/usr/local/bin/foundation",
        env!("CARGO_BIN_EXE_foundation"),
    );
    std::fs::write(&path, built).expect("write unit");
    if let Some(output) = run(
        "systemd-analyze",
        &["verify", "--man=no", path.to_str().unwrap()],
    ) {
        assert_success(&output, "systemd-analyze verify");
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_image_runs_the_binary_alone_as_a_non_root_user() {
    let recipe = read("container/Containerfile");
    let final_stage = recipe
        .rsplit_once("\nFROM ")
        .map(|(_, stage)| stage)
        .expect("a build stage and a final stage");
    let user = final_stage
        .lines()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("the final stage names a user");
    assert!(
        !user.starts_with("root") && !user.starts_with("0"),
        "{user}"
    );
    let copies: Vec<&str> = final_stage
        .lines()
        .filter(|l| l.starts_with("COPY"))
        .collect();
    assert!(
        copies.iter().all(|l| l.contains("--from=build")),
        "the final stage copies only build outputs: {copies:?}"
    );
    assert!(final_stage.contains("ENTRYPOINT [\"/usr/local/bin/foundation\"]"));
    assert!(final_stage.contains("FOUNDATION_PROFILE=production"));
}

#[test]
fn the_kubernetes_manifests_discover_by_dns_and_leave_before_stopping() {
    let text = read("kubernetes/foundation.yaml");
    let documents: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).expect("valid YAML"))
        .collect();
    let kind = |k: &str| {
        documents
            .iter()
            .find(|d| d["kind"] == k)
            .unwrap_or_else(|| panic!("a {k}"))
    };
    let service = kind("Service");
    assert_eq!(service["spec"]["clusterIP"], "None", "headless");
    assert_eq!(service["spec"]["publishNotReadyAddresses"], true);
    let set = kind("StatefulSet");
    let pod = &set["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let container = &pod["containers"][0];
    let env = |name: &str| {
        container["env"]
            .as_sequence()
            .expect("env")
            .iter()
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("{name} is set"))
            .clone()
    };
    assert_eq!(env("FOUNDATION_DISCOVERY")["value"], "dns");
    assert_eq!(env("FOUNDATION_PROFILE")["value"], "production");
    assert_eq!(env("FOUNDATION_ADVERTISE")["value"], "$(POD_IP):7400");
    assert_eq!(
        env("FOUNDATION_SECRET")["valueFrom"]["secretKeyRef"]["name"],
        "foundation"
    );
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/health");
    let pre_stop = &container["lifecycle"]["preStop"]["exec"]["command"];
    assert_eq!(pre_stop[1], "leave", "{pre_stop:?}");
    let mount = &container["volumeMounts"][0]["mountPath"];
    assert_eq!(*mount, env("FOUNDATION_DATA_DIR")["value"]);
}

#[test]
fn prometheus_files_are_valid() {
    let kubernetes: serde_yaml::Value =
        serde_yaml::from_str(&read("prometheus/prometheus-kubernetes.yml")).expect("YAML");
    assert_eq!(
        kubernetes["scrape_configs"][0]["kubernetes_sd_configs"][0]["role"],
        "pod"
    );
    let config = deploy("prometheus/prometheus.yml");
    if let Some(output) = run("promtool", &["check", "config", config.to_str().unwrap()]) {
        assert_success(&output, "promtool check config");
    }
}

/// Metric names a PromQL text queries.
fn queried_metrics(text: &str) -> BTreeSet<String> {
    words_with_prefix(text, "foundation_", false)
        .into_iter()
        .filter(|name| name.len() > "foundation_".len())
        .collect()
}

/// Every metric the dashboard and the alerts query is one a fresh node lists (every family is
/// listed from the start), so neither shows "no data" because of a wrong name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_and_alerts_query_only_metrics_that_exist() {
    let identity = LocalIdentity {
        id: NodeId::random(),
        cluster: ClusterName::new("deploy-check").unwrap(),
    };
    let trust = Trust::Secret(ClusterSecret::new("deploy-check-secret-0123456789").unwrap());
    let node = Node::start(NodeSettings {
        http: Some("127.0.0.1:0".parse().unwrap()),
        ..NodeSettings::new(identity, trust)
    })
    .await
    .unwrap();
    let http = node.http_addr().expect("serving HTTP");
    let text = raw_metrics(http).await;
    let listed: BTreeSet<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    let exists = |name: &str| {
        listed.contains(name)
            || ["_bucket", "_sum", "_count"].iter().any(|s| {
                name.strip_suffix(s)
                    .is_some_and(|base| listed.contains(base))
            })
    };
    let dashboard = read("grafana/foundation-dashboard.json");
    let parsed: serde_json::Value = serde_json::from_str(&dashboard).expect("dashboard JSON");
    assert!(parsed["panels"].as_array().is_some_and(|p| p.len() > 10));
    let alerts = read("prometheus/foundation-alerts.yml");
    let queried = queried_metrics(&dashboard);
    assert!(queried.len() > 15, "{queried:?}");
    for name in queried.iter().chain(&queried_metrics(&alerts)) {
        assert!(exists(name), "{name} is queried but no node lists it");
    }
    let rules = deploy("prometheus/foundation-alerts.yml");
    if let Some(output) = run("promtool", &["check", "rules", rules.to_str().unwrap()]) {
        assert_success(&output, "promtool check rules");
    }
    node.abort().await;
}

async fn raw_metrics(http: std::net::SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(http).await.expect("connect");
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {http}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut text = String::new();
    stream.read_to_string(&mut text).await.expect("read");
    text
}
