//! Replicated config across three runtime nodes over real QUIC on loopback.

mod common;

use std::time::Duration;

use common::eventually;

use foundation_engine::membership::MemberState;
use foundation_engine::replication::ReplicationError;
use foundation_engine::runtime::{ConfigError, Node, NodeSettings};
use serde::{Deserialize, Serialize};

fn settings(seeds: Vec<std::net::SocketAddr>) -> NodeSettings {
    common::settings("replication-test", "replication test secret", seeds)
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Limits {
    rps: u32,
    burst: u32,
}

async fn cluster_of_three() -> Vec<Node> {
    let seed = Node::start(settings(vec![])).await.unwrap();
    let mut nodes = vec![seed.clone()];
    for _ in 1..3 {
        nodes.push(Node::start(settings(vec![seed.addr()])).await.unwrap());
    }
    for node in &nodes {
        let node = node.clone();
        eventually(Duration::from_secs(10), "two live peers each", move || {
            let members = node.members();
            members.len() == 2 && members.iter().all(|m| m.state == MemberState::Alive)
        })
        .await;
    }
    nodes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_on_one_node_fires_watches_on_the_others() {
    let nodes = cluster_of_three().await;
    let mut watches: Vec<_> = nodes[1..]
        .iter()
        .map(|n| n.config().watch("limits."))
        .collect();
    let limits = Limits {
        rps: 100,
        burst: 20,
    };
    nodes[0].config().set("limits.api", &limits).await.unwrap();
    nodes[0]
        .config()
        .set("other", "ignored by the watch")
        .await
        .unwrap();
    // Local read right after the write sees it.
    assert_eq!(
        nodes[0].config().get::<Limits>("limits.api").unwrap(),
        Some(Limits {
            rps: 100,
            burst: 20
        })
    );
    for watch in &mut watches {
        let change = tokio::time::timeout(Duration::from_secs(10), watch.next())
            .await
            .expect("change within 10 s")
            .expect("node running");
        assert_eq!(change.key, "limits.api");
        assert_eq!(change.old, None);
        assert_eq!(
            change.new,
            Some(serde_json::json!({"rps": 100, "burst": 20}))
        );
    }
    for node in &nodes[1..] {
        assert_eq!(
            node.config().get::<Limits>("limits.api").unwrap(),
            Some(limits_value())
        );
    }
    // A change from another node replaces the value everywhere, with old and new.
    nodes[2]
        .config()
        .set("limits.api", Limits { rps: 5, burst: 1 })
        .await
        .unwrap();
    let change = tokio::time::timeout(Duration::from_secs(10), watches[0].next())
        .await
        .expect("change within 10 s")
        .expect("node running");
    assert_eq!(
        change.old,
        Some(serde_json::json!({"rps": 100, "burst": 20}))
    );
    assert_eq!(change.new, Some(serde_json::json!({"rps": 5, "burst": 1})));
    let first = nodes[0].clone();
    eventually(
        Duration::from_secs(10),
        "node 0 sees node 2's write",
        move || {
            first.config().get::<Limits>("limits.api").ok().flatten()
                == Some(Limits { rps: 5, burst: 1 })
        },
    )
    .await;
    // Deletes replicate too.
    nodes[1].config().delete("other").await.unwrap();
    let third = nodes[2].clone();
    eventually(
        Duration::from_secs(10),
        "delete reaches node 2",
        move || third.config().get_raw("other").is_none(),
    )
    .await;
    assert_eq!(nodes[0].config().snapshot().len(), 1);
    for node in &nodes {
        node.abort().await;
    }
}

fn limits_value() -> Limits {
    Limits {
        rps: 100,
        burst: 20,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_and_mistyped_values_give_typed_errors() {
    let node = Node::start(settings(vec![])).await.unwrap();
    let config = node.config();
    let big = "x".repeat(70 * 1024);
    assert!(matches!(
        config.set("big", big).await,
        Err(ConfigError::Refused(ReplicationError::ValueTooLarge { .. }))
    ));
    config.set("n", "not a number").await.unwrap();
    assert!(matches!(
        config.get::<u32>("n"),
        Err(ConfigError::Decode { .. })
    ));
    assert_eq!(config.get::<u32>("absent").unwrap(), None);
    node.abort().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_config_snapshot_is_served_as_json() {
    let node = Node::start(NodeSettings {
        http: Some("127.0.0.1:0".parse().unwrap()),
        ..settings(vec![])
    })
    .await
    .unwrap();
    node.config().set("checkout.enabled", true).await.unwrap();
    let http = node.http_addr().expect("serving HTTP");
    let config = foundation_engine::http::get_json(http, "/config", Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(config["checkout.enabled"], serde_json::json!(true));
    node.leave().await;
}
