//! Calls that outlast the idle timeout. With sealed membership (the default) connections send
//! no QUIC keep-alives, so while a handler runs nothing else may cross the connection: the
//! caller keeps it open while it waits, and an unused connection still closes.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use foundation_transport::{PeerEvent, TransportConfig};

/// Four idle timeouts: without keep-alives the connection would be gone long before.
const HELD: Duration = Duration::from_millis(6000);

fn config() -> TransportConfig {
    let config = fast_config();
    assert!(config.sealed_membership, "the default this test is about");
    assert!(HELD > config.idle_timeout * 3);
    config
}

/// Holds each request `HELD`, then answers it with its own payload.
async fn slow_echo(mut b: Node) {
    while let Some(request) = b.inbox.requests.recv().await {
        tokio::spawn(async move {
            tokio::time::sleep(HELD).await;
            let reply = request.payload.clone();
            let _ = request.respond(reply).await;
        });
    }
}

#[tokio::test]
async fn a_call_held_past_the_idle_timeout_keeps_its_connection_and_gets_its_answer() {
    let mut a = node_with("orders", &secret(SECRET), config()).await;
    let b = node_with("orders", &secret(SECRET), config()).await;
    let to = b.endpoint.local();
    tokio::spawn(slow_echo(b));
    let large = vec![7u8; foundation_transport::rpc::MUX_REQUEST_MAX + 1];
    let deadline = HELD * 2;
    let (small, large_answer) = tokio::join!(
        a.endpoint
            .request(to, Bytes::from_static(b"small"), deadline),
        a.endpoint.request(to, large.clone().into(), deadline),
    );
    assert_eq!(small.unwrap(), Bytes::from_static(b"small"));
    assert_eq!(large_answer.unwrap(), Bytes::from(large));
    assert!(
        matches!(
            next_peer_event(&mut a.inbox).await,
            PeerEvent::Connected { .. }
        ),
        "connected once"
    );
    // Nothing waits any more: the connection goes quiet and closes after the idle timeout.
    let closed = within(config().idle_timeout * 3, &mut a.inbox.peers).await;
    assert!(
        matches!(closed, PeerEvent::Disconnected { .. }),
        "{closed:?}"
    );
}

/// `Duration::MAX` as a request's deadline ("no deadline") is answered (it overflowed the
/// clock: a panic in the caller).
#[tokio::test]
async fn a_request_without_a_practical_deadline_is_answered() {
    let a = node_with("orders", &secret(SECRET), config()).await;
    let mut b = node_with("orders", &secret(SECRET), config()).await;
    let to = b.endpoint.local();
    tokio::spawn(async move {
        while let Some(request) = b.inbox.requests.recv().await {
            let reply = request.payload.clone();
            let _ = request.respond(reply).await;
        }
    });
    let request = a
        .endpoint
        .request(to, Bytes::from_static(b"x"), Duration::MAX);
    let answer = tokio::time::timeout(HELD, request).await;
    assert_eq!(
        answer.ok().map(Result::ok),
        Some(Some(Bytes::from_static(b"x")))
    );
}
