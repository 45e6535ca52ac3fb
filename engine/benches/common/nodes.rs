//! Runtime nodes on 127.0.0.1 for the engine's benchmarks. Included by path from
//! `engine/benches/services.rs`, `vars.rs` and `agents.rs`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use foundation_engine::membership::MemberState;
use foundation_engine::runtime::{Node, NodeSettings};
use foundation_transport::{ClusterName, ClusterSecret, LocalIdentity, NodeId, Trust};

/// Default settings for a node of `cluster` sharing `secret`, joining through `seeds`.
pub fn settings(cluster: &str, secret: &str, seeds: Vec<SocketAddr>) -> NodeSettings {
    let identity = LocalIdentity {
        id: NodeId::random(),
        cluster: ClusterName::new(cluster).expect("valid cluster name"),
    };
    let trust = Trust::Secret(ClusterSecret::new(secret).expect("secret long enough"));
    NodeSettings {
        seeds,
        ..NodeSettings::new(identity, trust)
    }
}

/// `n` nodes with default settings that all see each other alive.
pub async fn cluster(cluster: &str, secret: &str, n: usize) -> Vec<Node> {
    let seed = Node::start(settings(cluster, secret, vec![]))
        .await
        .expect("seed starts");
    let mut nodes = vec![seed.clone()];
    for _ in 1..n {
        let settings = settings(cluster, secret, vec![seed.addr()]);
        nodes.push(Node::start(settings).await.expect("node starts"));
    }
    all_alive(&nodes).await;
    nodes
}

/// Waits until each of `nodes` sees all the others alive (panics after 30 s).
pub async fn all_alive(nodes: &[Node]) {
    let n = nodes.len();
    let started = Instant::now();
    loop {
        let all = nodes.iter().all(|node| {
            node.members()
                .iter()
                .filter(|m| m.state == MemberState::Alive)
                .count()
                == n - 1
        });
        if all {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{n} nodes did not all see each other alive within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The runtime the benchmarks run nodes on: two workers, as the development machine has two
/// cores.
#[allow(dead_code)] // the services benchmark builds its own, with a worker per core
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}
