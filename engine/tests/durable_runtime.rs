//! Durable keyspaces through the runtime: real nodes on loopback with their keyspaces in a
//! fjall store, stopped and started again on the same data directory.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{eventually, settings};
use foundation_engine::replication::ReplicationError;
use foundation_engine::runtime::{ConfigError, Node, NodeSettings, StorageSettings};
use foundation_engine::storage::SyncPolicy;
use foundation_engine::ForceLeft;
use foundation_transport::NodeId;

fn data_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("foundation-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A node of the test cluster with its keyspaces in `dir`, under `id`.
fn durable(id: NodeId, dir: &Path, seeds: Vec<std::net::SocketAddr>) -> NodeSettings {
    let mut settings = settings("durable", "durable-test-secret-0123456789", seeds);
    settings.identity.id = id;
    settings.storage = Some(StorageSettings {
        data_dir: dir.to_path_buf(),
        sync: SyncPolicy::Always,
    });
    settings
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_reads_what_it_wrote_deletes_included_before_it_meets_anyone() {
    let dir = data_dir("restart-alone");
    let id = NodeId::random();
    let node = Node::start(durable(id, &dir, vec![]))
        .await
        .expect("starts");
    let config = node.config();
    config.set("kept", 1).await.expect("set");
    config.set("removed", 2).await.expect("set");
    config.delete("removed").await.expect("delete");
    config
        .set_majority("majority", "yes", Duration::from_secs(2))
        .await
        .expect("alone, a majority of one");
    let first_life = node.node_addr();
    node.abort().await;

    let node = Node::start(durable(id, &dir, vec![]))
        .await
        .expect("starts again");
    let config = node.config();
    assert_eq!(config.get::<u32>("kept").expect("decodes"), Some(1));
    assert_eq!(config.get::<u32>("removed").expect("decodes"), None);
    assert_eq!(
        config
            .get::<String>("majority")
            .expect("decodes")
            .as_deref(),
        Some("yes")
    );
    assert_eq!(node.node_addr().id, first_life.id, "the same node");
    // A later write of a restarted node wins over what it stored.
    config.set("kept", 3).await.expect("set");
    assert_eq!(config.get::<u32>("kept").expect("decodes"), Some(3));
    node.leave().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// A node with a data directory starts on a current-thread runtime too (a plain
/// `#[tokio::test]`, or `flavor = "current_thread"`): opening the store panicked there.
#[tokio::test]
async fn a_durable_node_starts_on_a_current_thread_runtime() {
    let dir = data_dir("current-thread");
    let node = Node::start(durable(NodeId::random(), &dir, vec![]))
        .await
        .expect("starts");
    node.config().set("kept", 1).await.expect("set");
    assert_eq!(node.config().get::<u32>("kept").expect("decodes"), Some(1));
    node.abort().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Node a on `dir_a`, and node b on `dir_b` joined through it; returns b's id too, to start
/// it again under it.
async fn two_joined(dir_a: &Path, dir_b: &Path) -> (Node, Node, NodeId) {
    let a = Node::start(durable(NodeId::random(), dir_a, vec![]))
        .await
        .expect("a starts");
    let b_id = NodeId::random();
    let b = Node::start(durable(b_id, dir_b, vec![a.addr()]))
        .await
        .expect("b starts");
    eventually(Duration::from_secs(10), "b joins a", || {
        a.members().len() == 1
    })
    .await;
    (a, b, b_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restarted_with_its_data_gets_what_it_missed_from_its_peers() {
    let (dir_a, dir_b) = (data_dir("catch-up-a"), data_dir("catch-up-b"));
    let (a, b, b_id) = two_joined(&dir_a, &dir_b).await;
    a.config().set("before", 1).await.expect("set");
    let b_config = b.config();
    eventually(Duration::from_secs(10), "b has the first write", || {
        b_config.get::<u32>("before").ok().flatten() == Some(1)
    })
    .await;
    b.abort().await;
    a.config()
        .set("during", 2)
        .await
        .expect("set while b is down");

    let b = Node::start(durable(b_id, &dir_b, vec![a.addr()]))
        .await
        .expect("b starts again");
    let b_config = b.config();
    assert_eq!(b_config.get::<u32>("before").expect("decodes"), Some(1));
    eventually(Duration::from_secs(15), "b catches up", || {
        b_config.get::<u32>("during").ok().flatten() == Some(2)
    })
    .await;
    b.leave().await;
    a.leave().await;
    let _ = std::fs::remove_dir_all(&dir_a);
    let _ = std::fs::remove_dir_all(&dir_b);
}

/// The agreed membership is stored with the keyspaces: a member restarted with no way to reach
/// the other still counts it, and refuses a majority write it alone would hold (it used to
/// count 1 of 1 and confirm it with its own copy). An operator's force-leave of the other
/// there, though its members table never listed it in this life, lets it write alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_restarted_alone_still_counts_the_agreed_membership() {
    let (dir_a, dir_b) = (data_dir("agreed-a"), data_dir("agreed-b"));
    let (a, b, b_id) = two_joined(&dir_a, &dir_b).await;
    let a_id = a.id();
    b.config()
        .set_majority("both", 1, Duration::from_secs(5))
        .await
        .expect("held by both");
    b.abort().await;
    a.abort().await;

    let b = Node::start(durable(b_id, &dir_b, vec![]))
        .await
        .expect("b starts again, without seeds");
    let refused = b
        .config()
        .set_majority("alone", 1, Duration::from_secs(2))
        .await;
    assert!(
        matches!(
            refused,
            Err(ConfigError::Refused(ReplicationError::MinoritySide {
                visible: 1,
                agreed: 2,
                ..
            }))
        ),
        "{refused:?}"
    );
    let left = b.force_leave(a_id).await.expect("agreed: removed");
    assert!(
        matches!(left, ForceLeft::Agreed { id, .. } if id == a_id),
        "{left:?}"
    );
    b.config()
        .set_majority("alone", 1, Duration::from_secs(2))
        .await
        .expect("1 of 1");
    b.leave().await;
    let _ = std::fs::remove_dir_all(&dir_a);
    let _ = std::fs::remove_dir_all(&dir_b);
}
