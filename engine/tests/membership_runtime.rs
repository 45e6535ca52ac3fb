//! Runtime nodes on loopback forming a cluster over real QUIC.

mod common;

use std::time::Duration;

use common::{eventually, metric};

use foundation_engine::membership::{MemberState, MembershipEvent, NodeMetadata};
use foundation_engine::runtime::{Node, NodeSettings};
use foundation_transport::{
    ClusterName, ClusterSecret, LocalIdentity, NodeId, TransportConfig, Trust,
};

fn settings(seeds: Vec<std::net::SocketAddr>, name: &str) -> NodeSettings {
    let metadata = NodeMetadata {
        name: Some(name.into()),
        ..Default::default()
    };
    NodeSettings {
        metadata,
        ..common::settings("membership-test", "membership test secret", seeds)
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
    // Metadata travels with membership: a moment after SWIM's news of a member (a push-pull
    // or an introduction, on the coordination stream).
    let last = nodes[4].clone();
    eventually(
        Duration::from_secs(5),
        "metadata of every peer known",
        move || {
            let names = last.members().into_iter().filter_map(|m| m.metadata);
            names.filter(|d| d.name.is_some()).count() == 4
        },
    )
    .await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_the_wrong_secret_never_becomes_a_member_and_garbage_is_counted() {
    let member = Node::start(settings(vec![], "member")).await.unwrap();
    let mut intruder_settings = settings(vec![member.addr()], "intruder");
    intruder_settings.trust =
        Trust::Secret(ClusterSecret::new("not the cluster's secret").unwrap());
    let intruder = Node::start(intruder_settings).await.unwrap();
    let observer = member.clone();
    eventually(
        Duration::from_secs(5),
        "the refusal is counted",
        move || metric(&observer, "foundation_transport_handshake_failures_total") >= 1.0,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        member.members().is_empty(),
        "the intruder never appears: {:?}",
        member.members()
    );
    assert!(intruder.members().is_empty());

    // A peer with the right secret that sends garbage on the membership channel is ignored.
    let (raw, _inbox) = foundation_transport::Endpoint::start(
        LocalIdentity {
            id: NodeId::random(),
            cluster: ClusterName::new("membership-test").unwrap(),
        },
        &Trust::Secret(ClusterSecret::new("membership test secret").unwrap()),
        TransportConfig::default(),
        std::sync::Arc::new(foundation_transport::TransportMetrics::unregistered()),
    )
    .await
    .unwrap();
    let target = raw.connect(member.addr()).await.unwrap();
    for garbage in [&[0u8, 1, 2, 3][..], &[1, 255, 255], &[9, 9, 9], &[]] {
        raw.send_datagram(target, bytes::Bytes::copy_from_slice(garbage))
            .unwrap();
    }
    let observer = member.clone();
    eventually(
        Duration::from_secs(5),
        "garbage datagrams are counted",
        move || metric(&observer, "foundation_membership_bad_inputs_total") >= 4.0,
    )
    .await;
    assert!(member.members().is_empty());
}

/// A node restarted under its kept id starts its metadata's version again; its peers must take
/// the new life's metadata (here its name; in production its HTTP address too) rather than keep
/// the old life's for as long as the new one has changed it fewer times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restarted_under_its_id_is_seen_with_its_new_metadata() {
    let seed = Node::start(settings(vec![], "seed")).await.unwrap();
    let first = settings(vec![seed.addr()], "before");
    let id = first.identity.id;
    let node = Node::start(first).await.unwrap();
    let name_of = |observer: &Node| {
        let member = observer.members().into_iter().find(|m| m.id == id)?;
        (member.state == MemberState::Alive).then(|| member.metadata?.name.clone())?
    };
    eventually(
        Duration::from_secs(20),
        "the seed sees the first life",
        || name_of(&seed).as_deref() == Some("before"),
    )
    .await;
    node.abort().await;
    let mut again = settings(vec![seed.addr()], "after");
    again.identity.id = id;
    let node = Node::start(again).await.unwrap();
    eventually(
        Duration::from_secs(20),
        "the seed sees the new life's name",
        || name_of(&seed).as_deref() == Some("after"),
    )
    .await;
    node.abort().await;
    seed.abort().await;
}
