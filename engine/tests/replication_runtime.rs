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
    // Deletes replicate too, to every node (each gets its own push: no order between them).
    nodes[1].config().delete("other").await.unwrap();
    for (i, node) in nodes.iter().enumerate() {
        let node = node.clone();
        eventually(
            Duration::from_secs(10),
            &format!("delete reaches node {i}"),
            move || node.config().get_raw("other").is_none(),
        )
        .await;
    }
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
    for bad_key in ["", "a\0b", "line\nbreak", "\u{1b}[31mred"] {
        assert!(
            matches!(
                config.set(bad_key, 1).await,
                Err(ConfigError::BadKey { .. })
            ),
            "{bad_key:?}"
        );
    }
    assert_eq!(config.snapshot().len(), 0, "nothing was written");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_majority_waits_for_a_majority_and_fails_without_one() {
    let nodes = cluster_of_three().await;
    let config = nodes[0].config();
    config
        .set_majority("quorum.key", 1, Duration::from_secs(5))
        .await
        .expect("majority of three");
    // Returned only once another node holds it: at least one of them reads it already.
    let held = nodes[1..]
        .iter()
        .filter(|n| n.config().get::<u32>("quorum.key").ok().flatten() == Some(1))
        .count();
    assert!(held >= 1, "a majority holds the write");
    for node in &nodes[1..] {
        node.abort().await;
    }
    // Membership has not noticed yet: the live set is still three, and no one else answers.
    let timeout = Duration::from_millis(300);
    let refused = config.set_majority("quorum.key", 2, timeout).await;
    match refused {
        Err(ConfigError::NoMajority {
            acked,
            needed,
            timeout: waited,
        }) => assert_eq!((acked, needed, waited), (1, 2, timeout)),
        other => panic!("expected NoMajority, got {other:?}"),
    }
    // The write still applied here; only the confirmation is missing.
    assert_eq!(config.get::<u32>("quorum.key").unwrap(), Some(2));
    // Once membership marks the other two failed, the majority is still of the three agreed
    // members: the lone node is refused at once and writes nothing.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while nodes[0]
        .members()
        .iter()
        .any(|m| m.state != MemberState::Failed)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the others never failed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let alone = config.set_majority("quorum.key", 3, timeout).await;
    assert!(
        matches!(
            alone,
            Err(ConfigError::Refused(ReplicationError::MinoritySide {
                visible: 1,
                agreed: 3,
                needed: 2
            }))
        ),
        "{alone:?}"
    );
    assert_eq!(config.get::<u32>("quorum.key").unwrap(), Some(2));
    nodes[0].abort().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_state_reaches_a_new_node_over_the_bulk_channel() {
    // A one-op log sends a newcomer the full state; above 1 KiB it goes as a bulk transfer.
    let replication = foundation_engine::replication::ReplicationConfig {
        op_log_max: 1,
        bulk_threshold: 1024,
        ..Default::default()
    };
    let seed = Node::start(NodeSettings {
        replication: replication.clone(),
        http: Some("127.0.0.1:0".parse().unwrap()),
        ..settings(vec![])
    })
    .await
    .unwrap();
    let big = "x".repeat(30 * 1024);
    for n in 0..4 {
        seed.config().set(&format!("big.{n}"), &big).await.unwrap();
    }
    let newcomer = Node::start(NodeSettings {
        replication,
        ..settings(vec![seed.addr()])
    })
    .await
    .unwrap();
    let reader = newcomer.clone();
    eventually(
        Duration::from_secs(15),
        "the newcomer holds the large keyspace",
        move || reader.config().snapshot().len() == 4,
    )
    .await;
    assert_eq!(
        newcomer.config().get::<String>("big.0").unwrap().as_deref(),
        Some(big.as_str())
    );
    let http = seed.http_addr().expect("serving HTTP");
    let metrics = common::metrics_text(http).await;
    assert!(
        metrics.contains("foundation_replication_full_states_sent_total"),
        "{metrics}"
    );
    assert!(metrics.contains("foundation_replication_keys{keyspace=\"config\"} 4"));
    // The transport counts one whole transfer per bulk message sent.
    let bulk_sent = metrics
        .lines()
        .find(|l| {
            l.starts_with("foundation_transport_messages_total")
                && l.contains("channel=\"bulk\"")
                && l.contains("direction=\"sent\"")
        })
        .unwrap_or_default()
        .to_owned();
    assert!(
        bulk_sent
            .split_whitespace()
            .last()
            .is_some_and(|n| n != "0"),
        "a bulk transfer was sent: {bulk_sent:?}"
    );
    seed.abort().await;
    newcomer.abort().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_is_written_and_deleted_over_http() {
    use foundation_engine::http::{percent_encode, send_json, HttpError, Method};
    let node = Node::start(NodeSettings {
        http: Some("127.0.0.1:0".parse().unwrap()),
        ..settings(vec![])
    })
    .await
    .unwrap();
    let http = node.http_addr().expect("serving HTTP");
    let wait = Duration::from_secs(2);
    let path = format!("/config/{}", percent_encode("limits/api"));
    let value = serde_json::json!({"rps": 7});
    send_json(http, Method::PUT, &path, Some(&value), wait)
        .await
        .unwrap();
    assert_eq!(
        node.config()
            .get::<serde_json::Value>("limits/api")
            .unwrap(),
        Some(value.clone())
    );
    // Not JSON, or over a limit: refused with the reason, nothing written.
    let garbage = send_json(http, Method::PUT, "/config/x", None, wait).await;
    assert!(
        matches!(garbage, Err(HttpError::Status { status: 400, .. })),
        "{garbage:?}"
    );
    let big = serde_json::Value::String("x".repeat(70 * 1024));
    let refused = send_json(http, Method::PUT, "/config/x", Some(&big), wait).await;
    assert!(
        matches!(refused, Err(HttpError::Status { status: 422, .. })),
        "{refused:?}"
    );
    let control = send_json(http, Method::PUT, "/config/a%00b", Some(&value), wait).await;
    assert!(
        matches!(control, Err(HttpError::Status { status: 422, .. })),
        "{control:?}"
    );
    // POST is not a documented way to write config.
    let post = send_json(http, Method::POST, "/config/x", Some(&value), wait).await;
    assert!(
        matches!(post, Err(HttpError::Status { status: 405, .. })),
        "{post:?}"
    );
    assert_eq!(node.config().get_raw("x"), None);
    assert_eq!(node.config().get_raw("a\0b"), None);
    send_json(http, Method::DELETE, &path, None, wait)
        .await
        .unwrap();
    assert_eq!(node.config().get_raw("limits/api"), None);
    node.leave().await;
}
