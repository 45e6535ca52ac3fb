//! Shared helpers of the runtime tests.
#![allow(dead_code)]

pub mod ledgers;
pub mod promtool;
pub mod raw_http;

use std::net::SocketAddr;
use std::time::Duration;

use foundation_engine::runtime::NodeSettings;
use foundation_transport::{ClusterName, ClusterSecret, LocalIdentity, NodeId, Trust};

/// Settings for a node of `cluster` sharing `secret`, joining through `seeds`.
pub fn settings(cluster: &str, secret: &str, seeds: Vec<SocketAddr>) -> NodeSettings {
    let identity = LocalIdentity {
        id: NodeId::random(),
        cluster: ClusterName::new(cluster).unwrap(),
    };
    let trust = Trust::Secret(ClusterSecret::new(secret).unwrap());
    NodeSettings {
        seeds,
        ..NodeSettings::new(identity, trust)
    }
}

/// The value of the first sample of metric `name` on `node` (0 when absent).
pub fn metric(node: &foundation_engine::runtime::Node, name: &str) -> f64 {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, node.registry()).unwrap();
    text.lines()
        .find(|line| line.starts_with(name))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
        .unwrap_or(0.0)
}

/// Polls `condition` until it holds, failing the test after `limit`.
pub async fn eventually(limit: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let start = tokio::time::Instant::now();
    while !condition() {
        assert!(start.elapsed() < limit, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `n` started nodes that all see each other alive, in their members and in the lives their
/// variables name (published a moment after the members: a spec declared in between names
/// fewer acceptors); `settings` makes each node's settings from its seeds (none for the first,
/// the first's address for the others).
pub async fn cluster(
    n: usize,
    settings: impl Fn(Vec<SocketAddr>) -> NodeSettings,
) -> Vec<foundation_engine::runtime::Node> {
    use foundation_engine::runtime::Node;
    let seed = Node::start(settings(vec![])).await.unwrap();
    let mut nodes = vec![seed.clone()];
    for _ in 1..n {
        nodes.push(Node::start(settings(vec![seed.addr()])).await.unwrap());
    }
    for node in &nodes {
        eventually(Duration::from_secs(10), "everyone alive", || {
            node.members()
                .iter()
                .filter(|m| m.state == foundation_engine::membership::MemberState::Alive)
                .count()
                == n - 1
                && node.vars().alive_lives().len() == n
        })
        .await;
    }
    nodes
}

/// `/metrics` as text (the classic format, as a scraper that asks for nothing gets it), once
/// the driver's housekeeping has refreshed it.
pub async fn metrics_text(http: std::net::SocketAddr) -> String {
    tokio::time::sleep(Duration::from_millis(1100)).await;
    raw_http::get(http, "/metrics").await.body
}
