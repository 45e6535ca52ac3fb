//! `/status.json` over real nodes on loopback: traffic per channel from the transport's
//! counters, keyspaces with their sizes and convergence against the other member's
//! `GET /keyspaces`, and placed workloads with their owners.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use foundation_engine::runtime::NodeSettings;
use serde_json::Value;

const SECRET: &str = "status test secret 0123456789";
const SOON: Duration = Duration::from_secs(15);

fn settings(seeds: Vec<SocketAddr>) -> NodeSettings {
    NodeSettings {
        http: Some("127.0.0.1:0".parse().expect("address")),
        ..common::settings("status-test", SECRET, seeds)
    }
}

async fn status(http: SocketAddr) -> Value {
    foundation_engine::http::get_json(http, "/status.json", Duration::from_secs(2))
        .await
        .expect("status.json")
}

/// Polls `/status.json` until `check` holds; the last document otherwise, in the panic.
async fn status_until(http: SocketAddr, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let document = status(http).await;
        if check(&document) {
            return document;
        }
        assert!(
            start.elapsed() < SOON,
            "not within {SOON:?}: {what}\n{document:#}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn keyspace<'d>(document: &'d Value, name: &str) -> Option<&'d Value> {
    document["keyspaces"]
        .as_array()?
        .iter()
        .find(|k| k["name"] == name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_document_has_traffic_keyspaces_with_convergence_and_placement() {
    let nodes = common::cluster(2, settings).await;
    let http = |i: usize| nodes[i].http_addr().expect("serving HTTP");
    nodes[0]
        .config()
        .set("status.check", 1)
        .await
        .expect("config write");
    nodes[1]
        .placement()
        .local("mine", std::future::pending::<()>)
        .await
        .expect("declared");

    // Node 1 holds the write and says so, and node 0 serves the same digest.
    let document = status_until(http(1), "config converged with the other member", |d| {
        keyspace(d, "config")
            .is_some_and(|k| k["keys"] == 1 && k["agree"] == 1 && k["converged"] == true)
    })
    .await;
    let config = keyspace(&document, "config").expect("config row");
    assert_eq!(config["peers"], 1);
    assert!(config["bytes"].as_u64() > Some(0), "{config}");
    let keyspaces =
        foundation_engine::http::get_json(http(0), "/keyspaces", Duration::from_secs(2))
            .await
            .expect("/keyspaces");
    let theirs = keyspaces["keyspaces"]
        .as_array()
        .and_then(|k| k.iter().find(|k| k["name"] == "config"))
        .expect("config on node 0");
    assert_eq!(theirs["digest"], config["digest"], "{keyspaces}");

    // Every channel is listed; membership and replication have carried bytes both ways.
    let traffic = document["traffic"].as_array().expect("traffic");
    assert_eq!(traffic.len(), 6, "{traffic:?}");
    for channel in ["membership", "replication"] {
        let row = traffic
            .iter()
            .find(|t| t["channel"] == channel)
            .expect("a row per channel");
        assert!(row["bytes_sent"].as_u64() > Some(0), "{row}");
        assert!(row["bytes_received"].as_u64() > Some(0), "{row}");
    }

    // The local workload runs on node 1, which owns it.
    let owner = nodes[1].id().to_string();
    status_until(http(1), "the placed workload runs here", |d| {
        let instance = &d["placement"]["mine"]["instances"][0];
        instance["running_here"] == true && instance["owner"] == owner.as_str()
    })
    .await;
    for node in &nodes {
        node.abort().await;
    }
}

/// What a node shows operators about itself follows `set_metadata`: its name and tags in
/// `/members`' self row, `/health` and `/status.json` (its own member row included) once
/// `set_metadata` returns. They once showed the name it started with, for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_shows_its_new_name_and_tags_once_set_metadata_returns() {
    use foundation_engine::membership::NodeMetadata;
    // Two members: a lone node's /health answers 503.
    let nodes = common::cluster(2, settings).await;
    let http = nodes[0].http_addr().expect("serving HTTP");
    let get = |path: &'static str| async move {
        foundation_engine::http::get_json(http, path, Duration::from_secs(2))
            .await
            .expect(path)
    };
    for n in 0..3 {
        let name = format!("renamed-{n}");
        let zone = format!("zone-{n}");
        let mut metadata = NodeMetadata {
            name: Some(name.clone()),
            ..Default::default()
        };
        metadata.tags.insert("zone".into(), zone.clone());
        nodes[0].set_metadata(metadata).await;
        let members = get("/members").await;
        let health = get("/health").await;
        let document = status(http).await;
        let shown = [
            ("/members self", &members["self"]),
            ("/health node", &health["details"]["node"]),
            ("/status.json node", &document["node"]),
            ("/status.json own row", &document["members"][0]["metadata"]),
        ];
        for (place, me) in shown {
            assert_eq!(me["name"], name.as_str(), "{place}: {me}");
            assert_eq!(me["tags"]["zone"], zone.as_str(), "{place}: {me}");
        }
    }
    for node in &nodes {
        node.abort().await;
    }
}

/// `set_metadata` without an HTTP address keeps the one the node advertises: the other
/// members still reach its `/keyspaces` for the status page. It once went out as none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_metadata_keeps_the_advertised_http_address() {
    use foundation_engine::membership::NodeMetadata;
    let nodes = common::cluster(2, settings).await;
    let renamed = NodeMetadata {
        name: Some("renamed".into()),
        ..Default::default()
    };
    nodes[0].set_metadata(renamed).await;
    let (id, http) = (nodes[0].id(), nodes[0].http_addr());
    let seen = |node: &foundation_engine::runtime::Node| {
        let members = node.members();
        let row = members.into_iter().find(|m| m.id == id);
        row.and_then(|m| m.metadata)
            .map(|d| (d.name.clone(), d.http))
    };
    common::eventually(SOON, "the new name reaches node 1", || {
        seen(&nodes[1]).is_some_and(|(name, _)| name.as_deref() == Some("renamed"))
    })
    .await;
    let (_, advertised) = seen(&nodes[1]).expect("node 0 known");
    assert_eq!(advertised.map(|a| a.port()), http.map(|a| a.port()));
    assert!(advertised.is_some(), "HTTP address dropped");
    for node in &nodes {
        node.abort().await;
    }
}
