//! Shared helpers of the runtime tests.
#![allow(dead_code)]

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

/// Polls `condition` until it holds, failing the test after `limit`.
pub async fn eventually(limit: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let start = tokio::time::Instant::now();
    while !condition() {
        assert!(start.elapsed() < limit, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `/metrics` as text, once the driver's housekeeping has refreshed it.
pub async fn metrics_text(http: std::net::SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut stream = tokio::net::TcpStream::connect(http).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).await.unwrap();
    text
}
