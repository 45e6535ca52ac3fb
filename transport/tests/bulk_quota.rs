//! A peer may hold only a few bulk-only connections to a node at once.

mod common;

use std::time::Duration;

use common::raw::RawPeer;
use common::*;
use foundation_transport::wire::code;
use foundation_transport::NodeId;

/// How a connection ended: the application close code, if it was one.
async fn close_code(peer: &RawPeer) -> Option<u64> {
    let closed = tokio::time::timeout(Duration::from_secs(5), peer.conn.closed()).await;
    match closed.expect("the node closed the connection") {
        quinn::ConnectionError::ApplicationClosed(close) => Some(close.error_code.into_inner()),
        _ => None,
    }
}

/// Four bulk connections claiming the same node id are served; a fifth is closed with
/// `TOO_MANY_CONNECTIONS` and counted (before, every one was served, however many), another
/// id still gets its own, and a place comes back when one of the four closes.
#[tokio::test]
async fn bulk_connections_past_a_peers_quota_are_refused_and_counted() {
    let b = node("orders").await;
    let metrics = b.endpoint.metrics().clone();
    let accepted = || metrics.bulk_connections(false);
    let decided = || metrics.bulk_connections(false) + metrics.bulk_connections_refused();
    let member = NodeId::random();
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(RawPeer::connect_bulk(&b, member).await);
    }
    // b takes a connection's place just after its hello: wait until all four have one.
    eventually(Duration::from_secs(5), "b serves four", || accepted() == 4).await;
    let fifth = RawPeer::connect_bulk(&b, member).await;
    assert_eq!(
        close_code(&fifth).await,
        Some(code::TOO_MANY_CONNECTIONS.into())
    );
    assert_eq!(metrics.bulk_connections_refused(), 1);
    assert!(held.iter().all(|peer| peer.conn.close_reason().is_none()));

    let other = RawPeer::connect_bulk(&b, NodeId::random()).await;
    eventually(Duration::from_secs(5), "another id is served", || {
        accepted() == 5
    })
    .await;
    held.remove(0).conn.close(0u32.into(), b"done");
    // The close reaches b a moment later: try until the place is back.
    let mut again = None;
    for _ in 0..50 {
        let (tried, served) = (decided(), accepted());
        let peer = RawPeer::connect_bulk(&b, member).await;
        eventually(Duration::from_secs(5), "b decides", || decided() > tried).await;
        if accepted() > served {
            again = Some(peer);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        again.is_some(),
        "a place came back once a connection closed"
    );
    assert!(other.conn.close_reason().is_none());
}
