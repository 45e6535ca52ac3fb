//! Sealed membership datagrams over real QUIC on loopback: after the handshake they travel
//! outside QUIC, forged and replayed packets are dropped and counted, and a peer restarted at
//! its address is re-keyed and reached.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use foundation_transport::metrics::{Direction, SealedEvent};
use foundation_transport::sealed::codec::{self, SealingKey};
use foundation_transport::{LocalIdentity, NodeAddr, NodeId, TransportConfig};
use tokio::net::UdpSocket;
use tokio::time::{timeout, Instant};

/// Longer than `sealed::KEY_SETTLE` on loopback.
const SETTLED: Duration = Duration::from_millis(250);

fn sealed_sent(node: &Node) -> u64 {
    node.endpoint.metrics().sealed_datagrams(Direction::Sent)
}

fn sealed_received(node: &Node) -> u64 {
    node.endpoint
        .metrics()
        .sealed_datagrams(Direction::Received)
}

/// `a` and `b` connected, each holding the other's keys.
async fn keyed_pair() -> (Node, Node) {
    let a = node("orders").await;
    let mut b = node("orders").await;
    let to_b = a.endpoint.connect(b.endpoint.local().addr).await.unwrap();
    // The first datagram each way may still take QUIC while the other side installs.
    a.endpoint
        .send_datagram(to_b, Bytes::from_static(b"hi"))
        .unwrap();
    assert_eq!(
        next_message(&mut b.inbox.membership).await.from,
        a.endpoint.local().id
    );
    let metrics = [a.endpoint.metrics().clone(), b.endpoint.metrics().clone()];
    eventually(Duration::from_secs(5), "both sides keyed", || {
        metrics
            .iter()
            .all(|m| m.sealed_events(SealedEvent::Keyed) >= 1)
    })
    .await;
    // A new key seals once the peer has surely taken its own (`sealed::KEY_SETTLE`).
    tokio::time::sleep(SETTLED).await;
    (a, b)
}

#[tokio::test]
async fn membership_datagrams_are_sealed_outside_quic_after_the_handshake() {
    let (mut a, mut b) = keyed_pair().await;
    let (to_a, to_b) = (a.endpoint.local(), b.endpoint.local());
    for i in 0..20u8 {
        a.endpoint
            .send_datagram(to_b, Bytes::from(vec![i; 100]))
            .unwrap();
        let got = next_message(&mut b.inbox.membership).await;
        assert_eq!((got.from, got.payload.as_ref()), (to_a.id, &[i; 100][..]));
        b.endpoint
            .send_datagram(to_a, Bytes::from(vec![i; 3]))
            .unwrap();
        let got = next_message(&mut a.inbox.membership).await;
        assert_eq!((got.from, got.payload.as_ref()), (to_b.id, &[i; 3][..]));
    }
    assert!(sealed_sent(&a) >= 20 && sealed_received(&b) >= 20);
    assert!(sealed_sent(&b) >= 20 && sealed_received(&a) >= 20);
    let sealed = b.endpoint.sealed_addr().unwrap();
    assert_ne!(sealed.port(), to_b.addr.port(), "a socket of its own");
}

#[tokio::test]
async fn forged_replayed_and_garbage_packets_are_dropped_and_counted() {
    let (a, mut b) = keyed_pair().await;
    let b_id = b.endpoint.local().id;
    let target = b.endpoint.sealed_addr().unwrap();
    let raw = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let genuine = a.endpoint.seal_membership_for_test(b_id, b"real").unwrap();
    let Ok(codec::Packet::Sealed { key_id, .. }) = codec::parse(&genuine) else {
        panic!("a sealed packet")
    };

    // Genuine, from anywhere: taken once (the key, not the source address, names the sender).
    raw.send_to(&genuine, target).await.unwrap();
    let got = next_message(&mut b.inbox.membership).await;
    assert_eq!(
        (got.from, got.payload.as_ref()),
        (a.endpoint.local().id, &b"real"[..])
    );
    let opened = sealed_received(&b);

    let mut tampered = a.endpoint.seal_membership_for_test(b_id, b"real").unwrap();
    let last = tampered.len() - 1;
    tampered[last - 20] ^= 0x40;
    // Under a counter not taken yet, so only the tag can refuse it.
    let mut forger = SealingKey::new(key_id, &[9; codec::KEY_LEN]);
    let wrong_key = (0..100)
        .filter_map(|_| forger.seal(b"forged"))
        .last()
        .unwrap();
    let mut unknown_id = genuine.clone();
    unknown_id[1..5].copy_from_slice(&(key_id ^ 0xFFFF_FFFF).to_be_bytes());
    for packet in [
        genuine.clone(),
        tampered,
        wrong_key,
        unknown_id,
        b"\x5a garbage".to_vec(),
        vec![0xC3; 1300],
        Vec::new(),
    ] {
        raw.send_to(&packet, target).await.unwrap();
    }
    let metrics = b.endpoint.metrics().clone();
    let counts =
        || ["replay", "bad_tag", "unknown_key", "malformed"].map(|r| metrics.sealed_refusals(r));
    let deadline = Instant::now() + Duration::from_secs(5);
    while counts() != [1, 2, 1, 3] {
        assert!(
            Instant::now() < deadline,
            "refusals counted: {:?}",
            counts()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // An unknown key id is answered with a notice, no larger than what it answers.
    let mut notice = [0u8; 64];
    let (len, from) = timeout(Duration::from_secs(2), raw.recv_from(&mut notice))
        .await
        .expect("a notice")
        .unwrap();
    assert_eq!(
        (&notice[..len], from),
        (&codec::notice(key_id ^ 0xFFFF_FFFF)[..], target)
    );
    assert!(
        timeout(Duration::from_millis(200), b.inbox.membership.recv())
            .await
            .is_err(),
        "nothing bad delivered"
    );
    assert_eq!(sealed_received(&b), opened, "no forgery opened");
}

/// A config on a fixed port for the QUIC and (optionally) the sealed socket, so a new life of
/// the node binds where the old one was.
fn at_ports(quic: SocketAddr, sealed_port: u16) -> TransportConfig {
    TransportConfig {
        bind: quic,
        sealed_port,
        // The bulk endpoint's thread outlives a dropped runtime and would keep its port bound.
        bulk_endpoint: false,
        // Long timers: only re-keying, not an idle timeout, can bring the peer back in time.
        idle_timeout: Duration::from_secs(60),
        keep_alive: Duration::from_secs(20),
        ..fast_config()
    }
}

fn free_port() -> SocketAddr {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// `a` seals to a peer that is then killed and restarted at the same address; `a` goes on
/// sending membership datagrams every 100 ms until the new life gets one and, after that, one
/// sealed under fresh keys.
async fn restarted_peer_is_rekeyed(sealed_port_of_new_life: impl Fn(u16) -> u16) -> Node {
    let a = node_with("orders", &secret(SECRET), at_ports(free_port(), 0)).await;
    let identity = || LocalIdentity {
        id: NodeId::from_u128(42),
        cluster: a.endpoint.cluster().clone(),
    };
    let (quic, sealed) = (free_port(), free_port());
    let old = Crashable::start(identity(), at_ports(quic, sealed.port()));
    let to_b: NodeAddr = loop {
        if let Ok(peer) = a.endpoint.connect(quic).await {
            break peer;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    tokio::time::sleep(SETTLED).await;
    a.endpoint
        .send_datagram(to_b, Bytes::from_static(b"old"))
        .unwrap();
    assert!(sealed_sent(&a) >= 1, "sealed to the old life");
    old.crash();

    let config = at_ports(quic, sealed_port_of_new_life(sealed.port()));
    let mut b = node_with_id("orders", identity().id, config).await;
    let started = Instant::now();
    let mut reached = false;
    for i in 0u32.. {
        a.endpoint
            .send_datagram(to_b, Bytes::from(i.to_be_bytes().to_vec()))
            .unwrap();
        if timeout(Duration::from_millis(100), b.inbox.membership.recv())
            .await
            .is_ok()
        {
            reached = true;
        }
        if reached && sealed_received(&b) >= 1 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "restarted peer reached: {reached}, sealed to it: {}",
            sealed_received(&b)
        );
    }
    a
}

async fn node_with_id(cluster: &str, id: NodeId, config: TransportConfig) -> Node {
    let identity = LocalIdentity {
        id,
        cluster: foundation_transport::ClusterName::new(cluster).unwrap(),
    };
    let metrics = std::sync::Arc::new(foundation_transport::TransportMetrics::unregistered());
    let (endpoint, inbox) =
        foundation_transport::Endpoint::start(identity, &secret(SECRET), config, metrics)
            .await
            .unwrap();
    Node { endpoint, inbox }
}

#[tokio::test]
async fn a_peer_restarted_on_its_sealed_port_tells_us_it_lost_our_key() {
    let a = restarted_peer_is_rekeyed(|same| same).await;
    assert!(a.endpoint.metrics().sealed_events(SealedEvent::NoticeTaken) >= 1);
}

#[tokio::test]
async fn a_peer_restarted_on_another_sealed_port_is_found_through_quic() {
    let a = restarted_peer_is_rekeyed(|_| 0).await;
    assert_eq!(
        a.endpoint.metrics().sealed_events(SealedEvent::NoticeTaken),
        0
    );
    assert!(
        a.endpoint.metrics().sealed_events(SealedEvent::Keyed) >= 2,
        "keyed twice"
    );
}

/// A peer whose process is gone, its host up: the one sealed datagram sent to it draws ICMP port
/// unreachable from the host, which `a` reports as that peer's port closed. While the peer
/// ran, nothing of the kind was reported.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_crashed_peer_s_closed_port_is_reported() {
    use foundation_core::membership::wire::expects_no_answer;
    use foundation_transport::PeerEvent;
    let mut a = node_with("orders", &secret(SECRET), at_ports(free_port(), 0)).await;
    let identity = LocalIdentity {
        id: NodeId::from_u128(43),
        cluster: a.endpoint.cluster().clone(),
    };
    let (quic, sealed) = (free_port(), free_port());
    let b = Crashable::start(identity.clone(), at_ports(quic, sealed.port()));
    let to_b: NodeAddr = loop {
        // The peer's thread binds its sockets: dial until it answers.
        if let Ok(peer) = a.endpoint.connect(quic).await {
            break peer;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    tokio::time::sleep(SETTLED).await;
    // Datagrams of a kind nobody answers: the peer (whose inbox nobody reads) never answers,
    // and silence after an answered kind would send `a` back to QUIC after a second, which a
    // loaded machine can spend before the crash below.
    let unanswered = |i: u8| Bytes::from(vec![3, i]);
    assert!(expects_no_answer(&unanswered(0)), "a digest check's kind");
    for i in 0..5u8 {
        a.endpoint.send_datagram(to_b, unanswered(i)).unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(sealed_sent(&a) >= 5, "sealed to the live peer");
    let closed = |event: &PeerEvent| matches!(event, PeerEvent::PortClosed { .. });
    while let Ok(event) = a.inbox.peers.try_recv() {
        assert!(!closed(&event), "a live peer's port is open: {event:?}");
    }

    b.crash();
    // One datagram: its ICMP error must be read, however the reader's wake-ups fall.
    a.endpoint.send_datagram(to_b, unanswered(5)).unwrap();
    let event = timeout(Duration::from_secs(5), async {
        loop {
            let event = a.inbox.peers.recv().await.expect("the endpoint runs");
            if closed(&event) {
                return event;
            }
        }
    })
    .await
    .expect("the closed port is reported");
    assert!(matches!(event, PeerEvent::PortClosed { peer, .. } if peer == identity.id));
    assert!(a.endpoint.metrics().sealed_events(SealedEvent::PortClosed) >= 1);
}
