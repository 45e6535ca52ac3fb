//! Peer records and sealed keys of peers that are gone are forgotten, and a forgotten peer is
//! reached again, re-keyed, on the next send.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use foundation_transport::metrics::Direction;
use foundation_transport::{Channel, NodeAddr, PeerEvent, SendMode, TransportConfig};

const WAIT: SendMode = SendMode::Wait(Duration::from_secs(2));
const LONG: Duration = Duration::from_secs(10);
/// A membership touch (core's `datagram_kind::TOUCH`): never answered, so a stream of them
/// does not make the sender take the peer's silence for a dead socket and go back to QUIC.
const TOUCH: &[u8] = &[4];

fn forgetful() -> TransportConfig {
    TransportConfig {
        forget_peers_after: Duration::from_millis(300),
        idle_timeout: LONG,
        ..fast_config()
    }
}

async fn nodes() -> (Node, Node) {
    let a = node_with("orders", &secret(SECRET), forgetful()).await;
    let b = node_with("orders", &secret(SECRET), forgetful()).await;
    (a, b)
}

/// `a` sends `text` to `b` on coordination, and `b` gets it.
async fn reaches(a: &Node, b: &mut Node, text: &'static str) {
    let to_b = b.endpoint.local();
    let payload = Bytes::from_static(text.as_bytes());
    a.endpoint
        .send(to_b, Channel::Coordination, payload.clone(), WAIT)
        .await
        .unwrap();
    assert_eq!(
        next_message(&mut b.inbox.coordination).await.payload,
        payload
    );
}

/// Sends membership datagrams from `a` to `b` until one arrives sealed.
async fn sealed_again(a: &Node, to_b: NodeAddr) {
    let sealed = || a.endpoint.metrics().sealed_datagrams(Direction::Sent);
    let before = sealed();
    for _ in 0..200 {
        a.endpoint
            .send_datagram(to_b, Bytes::from_static(TOUCH))
            .unwrap();
        if sealed() > before {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("membership to the peer was never sealed again");
}

/// A peer at a loopback port nothing listens on: it never answers.
fn dead_peer() -> NodeAddr {
    let nowhere = std::net::UdpSocket::bind("127.0.0.1:0").expect("a free port");
    NodeAddr {
        id: foundation_transport::NodeId::from_u128(0xdead),
        addr: nowhere.local_addr().expect("its address"),
    }
}

/// Before, both records and both sides' keys stayed until the endpoints closed.
#[tokio::test]
async fn a_peer_unused_and_unconnected_is_forgotten_and_reached_afresh_later() {
    let (a, mut b) = nodes().await;
    let to_b = b.endpoint.local();
    reaches(&a, &mut b, "one").await;
    sealed_again(&a, to_b).await;
    assert_eq!(
        (a.endpoint.peer_records(), a.endpoint.sealed_peers()),
        (1, 1)
    );

    a.endpoint.disconnect(to_b.id);
    let ends = [&a, &b].map(|n| n.endpoint.clone());
    eventually(LONG, "both forget the other", || {
        ends.iter()
            .all(|e| e.peer_records() == 0 && e.sealed_peers() == 0)
    })
    .await;
    assert!(ends.iter().all(|e| e.metrics().peers_forgotten() == 1));

    reaches(&a, &mut b, "two").await;
    sealed_again(&a, to_b).await;
    assert_eq!(
        (a.endpoint.peer_records(), a.endpoint.sealed_peers()),
        (1, 1)
    );
}

/// A peer still spoken to keeps its record and keys with no connection: sealed membership
/// datagrams need none.
#[tokio::test]
async fn a_peer_still_spoken_to_is_not_forgotten_without_a_connection() {
    let (a, mut b) = nodes().await;
    let to_b = b.endpoint.local();
    reaches(&a, &mut b, "one").await;
    sealed_again(&a, to_b).await;
    a.endpoint.disconnect(to_b.id);
    eventually(LONG, "the connection is gone", || {
        a.endpoint.connected_peers().is_empty()
    })
    .await;
    // Four times the forgetting delay, a datagram every 50 ms.
    let heard = b.endpoint.metrics().sealed_datagrams(Direction::Received);
    for _ in 0..24 {
        a.endpoint
            .send_datagram(to_b, Bytes::from_static(TOUCH))
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let b_heard = b.endpoint.metrics().sealed_datagrams(Direction::Received) - heard;
    assert!(b_heard >= 20, "b heard {b_heard} of 24 sealed");
    assert_eq!(
        (a.endpoint.peer_records(), a.endpoint.sealed_peers()),
        (1, 1)
    );
    assert_eq!(a.endpoint.metrics().peers_forgotten(), 0);
    assert!(
        a.endpoint.connected_peers().is_empty(),
        "sealed, not over QUIC"
    );
}

/// The caller's word forgets a connected peer at once, and the peer is told.
#[tokio::test]
async fn a_peer_the_caller_forgets_is_let_go_at_once() {
    let config = TransportConfig {
        idle_timeout: LONG,
        ..fast_config()
    };
    let a = node_with("orders", &secret(SECRET), config.clone()).await;
    let mut b = node_with("orders", &secret(SECRET), config).await;
    let to_b = b.endpoint.local();
    reaches(&a, &mut b, "one").await;
    sealed_again(&a, to_b).await;
    assert!(matches!(
        next_peer_event(&mut b.inbox).await,
        PeerEvent::Connected { .. }
    ));

    a.endpoint.forget(to_b.id);
    assert_eq!(
        (a.endpoint.peer_records(), a.endpoint.sealed_peers()),
        (0, 0)
    );
    assert!(matches!(
        next_peer_event(&mut b.inbox).await,
        PeerEvent::Disconnected { .. }
    ));

    reaches(&a, &mut b, "two").await;
    sealed_again(&a, to_b).await;
}

/// A request to a peer that never answers gives up at its deadline, and the peer's record is
/// then forgotten like any unused one. The wait for a connection stayed counted when the
/// deadline dropped it, so the record was kept, and redialled, for good.
#[tokio::test]
async fn a_request_given_up_on_leaves_nothing_that_keeps_the_record() {
    let a = node_with("orders", &secret(SECRET), forgetful()).await;
    let dead = dead_peer();
    let given_up = a
        .endpoint
        .request(
            dead,
            Bytes::from_static(b"anyone?"),
            Duration::from_millis(200),
        )
        .await;
    assert!(given_up.is_err(), "{given_up:?}");
    let endpoint = a.endpoint.clone();
    eventually(LONG, "the dead peer's record is forgotten", || {
        endpoint.peer_records() == 0
    })
    .await;
}

/// A peer forgotten while a dial to it is under way: the dial's connection, when it comes up,
/// is closed, and no key of it is kept. It was installed on the forgotten record, so it stayed
/// open (the peer saw us connected) and its keys stayed in the table, for a record no one held.
#[tokio::test]
async fn a_dial_that_ends_after_its_peer_is_forgotten_keeps_nothing() {
    let config = TransportConfig {
        idle_timeout: LONG,
        ..fast_config()
    };
    let a = node_with("orders", &secret(SECRET), config.clone()).await;
    let mut b = node_with("orders", &secret(SECRET), config).await;
    let relay = Relay::start(b.endpoint.local().addr).await;
    relay.cut();
    let to_b = NodeAddr {
        id: b.endpoint.local().id,
        addr: relay.addr,
    };
    a.endpoint
        .send(
            to_b,
            Channel::Coordination,
            Bytes::from_static(b"x"),
            SendMode::NoWait,
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    a.endpoint.forget(to_b.id);
    relay.heal();

    assert!(matches!(
        next_peer_event(&mut b.inbox).await,
        PeerEvent::Connected { .. }
    ));
    // At once with the fix; before it, only b's idle timeout (LONG) would have closed it.
    assert!(
        matches!(
            within(Duration::from_secs(3), &mut b.inbox.peers).await,
            PeerEvent::Disconnected { .. }
        ),
        "the forgotten record's connection is closed"
    );
    assert_eq!(
        (a.endpoint.peer_records(), a.endpoint.sealed_peers()),
        (0, 0)
    );
}

/// A request waiting for a connection to a peer that is then forgotten ends as unreachable —
/// nothing was sent, so a caller may try elsewhere — not as the endpoint shutting down.
#[tokio::test]
async fn a_request_waiting_on_a_forgotten_peer_is_told_it_is_unreachable() {
    let a = node_with("orders", &secret(SECRET), forgetful()).await;
    let dead = dead_peer();
    let endpoint = a.endpoint.clone();
    let asked = tokio::spawn(async move {
        endpoint
            .request(dead, Bytes::from_static(b"anyone?"), LONG)
            .await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    a.endpoint.forget(dead.id);
    let answer = tokio::time::timeout(Duration::from_secs(3), asked)
        .await
        .expect("ends when forgotten")
        .expect("joins");
    assert!(
        matches!(
            answer,
            Err(foundation_transport::RequestError::Unreachable(_))
        ),
        "{answer:?}"
    );
}
