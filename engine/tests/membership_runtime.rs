//! Runtime nodes on loopback forming a cluster over real QUIC.

use std::time::Duration;

use foundation_engine::membership::{MemberState, MembershipConfig, MembershipEvent, NodeMetadata};
use foundation_engine::runtime::{Node, NodeSettings};
use foundation_transport::{
    ClusterName, ClusterSecret, LocalIdentity, NodeId, TransportConfig, Trust,
};

fn settings(seeds: Vec<std::net::SocketAddr>, name: &str) -> NodeSettings {
    let cluster = ClusterName::new("membership-test").unwrap();
    NodeSettings {
        identity: LocalIdentity {
            id: NodeId::random(),
            cluster,
        },
        trust: Trust::Secret(ClusterSecret::new("membership test secret").unwrap()),
        transport: TransportConfig::default(),
        membership: MembershipConfig::development(),
        metadata: NodeMetadata {
            name: Some(name.into()),
            ..Default::default()
        },
        seeds,
        discovery: Vec::new(),
        http: None,
        registry: Default::default(),
    }
}

async fn eventually(limit: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let start = tokio::time::Instant::now();
    while !condition() {
        assert!(start.elapsed() < limit, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn state_of(observer: &Node, node: NodeId) -> Option<MemberState> {
    observer
        .members()
        .into_iter()
        .find(|m| m.id == node)
        .map(|m| m.state)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_form_a_cluster_from_one_seed_and_see_leave_failure_and_metadata() {
    let seed = Node::start(settings(vec![], "seed")).await.unwrap();
    let mut nodes = vec![seed.clone()];
    for i in 1..5 {
        nodes.push(
            Node::start(settings(vec![seed.addr()], &format!("n{i}")))
                .await
                .unwrap(),
        );
    }
    for node in &nodes {
        let node = node.clone();
        eventually(
            Duration::from_secs(10),
            "everyone sees four live peers",
            move || {
                let members = node.members();
                members.len() == 4 && members.iter().all(|m| m.state == MemberState::Alive)
            },
        )
        .await;
    }
    // Metadata travels with membership.
    let names: Vec<_> = nodes[4]
        .members()
        .into_iter()
        .filter_map(|m| m.metadata.and_then(|d| d.name))
        .collect();
    assert_eq!(names.len(), 4, "metadata of every peer known: {names:?}");
    let mut events = nodes[0].membership_events();
    nodes[1]
        .set_metadata(NodeMetadata {
            name: Some("renamed".into()),
            ..Default::default()
        })
        .await;
    let renamed = nodes[1].id();
    let observer = nodes[0].clone();
    eventually(
        Duration::from_secs(5),
        "metadata change propagates",
        move || {
            observer.members().iter().any(|m| {
                m.id == renamed
                    && m.metadata.as_ref().and_then(|d| d.name.as_deref()) == Some("renamed")
            })
        },
    )
    .await;
    assert!(matches!(
        events.recv().await,
        Ok(MembershipEvent::Updated(_))
    ));

    // A graceful leave is "left".
    let leaver = nodes.remove(2);
    leaver.leave().await;
    for node in &nodes {
        let (node, id) = (node.clone(), leaver.id());
        eventually(Duration::from_secs(5), "leave seen as left", move || {
            state_of(&node, id) == Some(MemberState::Left)
        })
        .await;
    }

    // A node that vanishes without a word is "failed".
    let dropped = nodes.remove(3);
    dropped.abort().await;
    for node in &nodes {
        let (node, id) = (node.clone(), dropped.id());
        eventually(
            Duration::from_secs(15),
            "vanished node seen as failed",
            move || state_of(&node, id) == Some(MemberState::Failed),
        )
        .await;
    }
    for node in &nodes {
        assert_eq!(
            node.members()
                .iter()
                .filter(|m| m.state == MemberState::Alive)
                .count(),
            2
        );
    }
}
