//! Connection management: duplicates, dead peers, restarts, graceful close.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use foundation_transport::{Channel, LocalIdentity, PeerEvent, SendMode, TransportConfig};

const WAIT: SendMode = SendMode::Wait(Duration::from_secs(2));

#[tokio::test]
async fn simultaneous_dials_leave_one_connection_and_lose_nothing() {
    // Connections send no keep-alives while membership is sealed: an idle timeout longer than
    // the duplicate's grace keeps the survivor open to be counted.
    let config = TransportConfig {
        idle_timeout: Duration::from_secs(10),
        ..fast_config()
    };
    for _round in 0..3 {
        let mut a = node_with("orders", &secret(SECRET), config.clone()).await;
        let mut b = node_with("orders", &secret(SECRET), config.clone()).await;
        let (to_a, to_b) = (a.endpoint.local(), b.endpoint.local());
        let (ra, rb) = tokio::join!(a.endpoint.connect(to_b.addr), b.endpoint.connect(to_a.addr));
        assert_eq!((ra.unwrap(), rb.unwrap()), (to_b, to_a));
        for i in 0..200u32 {
            a.endpoint
                .send_message(to_b, Channel::Events, &i, WAIT)
                .await
                .unwrap();
            b.endpoint
                .send_message(to_a, Channel::Events, &i, WAIT)
                .await
                .unwrap();
        }
        for inbox in [&mut a.inbox.events, &mut b.inbox.events] {
            for i in 0..200u32 {
                assert_eq!(next_message(inbox).await.decode::<u32>().unwrap(), i);
            }
        }
        for node in [&a, &b] {
            let metrics = node.endpoint.metrics().clone();
            eventually(Duration::from_secs(5), "one connection left", || {
                metrics.open_connections() == 1
            })
            .await;
            assert_eq!(metrics.duplicates_closed(), 1);
        }
        // Traffic keeps flowing on the survivor.
        a.endpoint
            .send_message(to_b, Channel::Events, &7u32, WAIT)
            .await
            .unwrap();
        assert_eq!(
            next_message(&mut b.inbox.events)
                .await
                .decode::<u32>()
                .unwrap(),
            7
        );
    }
}

#[tokio::test]
async fn a_peer_that_goes_silent_is_reported_disconnected_within_the_idle_timeout() {
    let mut a = node("orders").await;
    let b = node("orders").await;
    let relay = Relay::start(b.endpoint.local().addr).await;
    a.endpoint.connect(relay.addr).await.unwrap();
    assert!(matches!(
        next_peer_event(&mut a.inbox).await,
        PeerEvent::Connected { .. }
    ));
    let cut_at = Instant::now();
    relay.cut();
    match next_peer_event(&mut a.inbox).await {
        PeerEvent::Disconnected { peer, .. } => assert_eq!(peer, b.endpoint.local().id),
        other => panic!("expected a disconnect, got {other:?}"),
    }
    let idle = fast_config().idle_timeout;
    let noticed = cut_at.elapsed();
    assert!(
        noticed >= idle / 2 && noticed < idle * 2,
        "noticed after {noticed:?}, idle timeout {idle:?}"
    );
}

#[tokio::test]
async fn a_graceful_close_is_seen_at_once() {
    let mut a = node("orders").await;
    let b = node("orders").await;
    a.endpoint.connect(b.endpoint.local().addr).await.unwrap();
    let _ = next_peer_event(&mut a.inbox).await;
    let closed_at = Instant::now();
    b.endpoint.close().await;
    assert!(matches!(
        next_peer_event(&mut a.inbox).await,
        PeerEvent::Disconnected { .. }
    ));
    assert!(
        closed_at.elapsed() < fast_config().idle_timeout,
        "a close must not wait for the idle timeout"
    );
}

#[tokio::test]
async fn a_restarted_peer_is_redialled_and_receives_what_was_queued() {
    let a = node("orders").await;
    let mut b = node("orders").await;
    let to_b = b.endpoint.local();
    a.endpoint
        .send_message(to_b, Channel::Coordination, &1u32, WAIT)
        .await
        .unwrap();
    assert_eq!(
        next_message(&mut b.inbox.coordination)
            .await
            .decode::<u32>()
            .unwrap(),
        1
    );
    b.endpoint.close().await;
    drop(b);
    // Queued while the peer is down: the dialer retries with backoff until it is back.
    a.endpoint
        .send_message(to_b, Channel::Coordination, &2u32, WAIT)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let config = foundation_transport::TransportConfig {
        bind: to_b.addr,
        ..fast_config()
    };
    let identity = LocalIdentity {
        id: to_b.id,
        cluster: a.endpoint.cluster().clone(),
    };
    let metrics = std::sync::Arc::new(foundation_transport::TransportMetrics::unregistered());
    let trust = secret(SECRET);
    let (_b2, mut inbox) = foundation_transport::Endpoint::start(identity, &trust, config, metrics)
        .await
        .unwrap();
    assert_eq!(
        next_message(&mut inbox.coordination)
            .await
            .decode::<u32>()
            .unwrap(),
        2
    );
}

#[tokio::test]
async fn sends_to_an_unreachable_peer_wait_or_fail_as_the_caller_chose() {
    let config = foundation_transport::TransportConfig {
        stream_queue: 4,
        datagram_queue: 8,
        ..fast_config()
    };
    let a = node_with("orders", &secret(SECRET), config).await;
    let nobody = {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.local_addr().unwrap()
    };
    let ghost = foundation_transport::NodeAddr {
        id: foundation_transport::NodeId::random(),
        addr: nobody,
    };
    let mut accepted = 0;
    for _ in 0..2 {
        // Twice: the second time the writer has taken the one message it holds while dialling.
        while a
            .endpoint
            .send(
                ghost,
                Channel::Events,
                Bytes::from_static(b"x"),
                SendMode::NoWait,
            )
            .await
            .is_ok()
        {
            accepted += 1;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        accepted, 5,
        "a queue of 4 plus the one message the writer holds"
    );
    let waited = a
        .endpoint
        .send(
            ghost,
            Channel::Events,
            Bytes::from_static(b"x"),
            SendMode::Wait(Duration::from_millis(100)),
        )
        .await;
    assert_eq!(
        waited,
        Err(foundation_transport::SendError::DeadlineExceeded)
    );
    for _ in 0..20 {
        a.endpoint
            .send_datagram(ghost, Bytes::from_static(b"probe"))
            .unwrap();
    }
    let dropped = a.endpoint.metrics().drops(
        Channel::Membership,
        foundation_transport::metrics::DropReason::QueueFull,
    );
    assert_eq!(
        dropped, 12,
        "20 datagrams into a queue of 8 drop the 12 oldest"
    );
}

#[tokio::test]
async fn a_receiver_that_stops_reading_pushes_back_on_the_sender() {
    let small = foundation_transport::TransportConfig {
        inbox_capacity: 4,
        stream_queue: 8,
        ..fast_config()
    };
    let a = node_with("orders", &secret(SECRET), small.clone()).await;
    let mut b = node_with("orders", &secret(SECRET), small).await;
    let to_b = b.endpoint.local();
    let payload = Bytes::from(vec![7u8; 60_000]);
    let mut sent = 0u32;
    let started = Instant::now();
    loop {
        let mut message = payload.to_vec();
        message[..4].copy_from_slice(&sent.to_be_bytes());
        match a
            .endpoint
            .send(
                to_b,
                Channel::Coordination,
                message.into(),
                SendMode::Wait(Duration::from_millis(200)),
            )
            .await
        {
            Ok(()) => sent += 1,
            Err(foundation_transport::SendError::DeadlineExceeded) => break,
            Err(other) => panic!("unexpected {other}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "sender never felt backpressure after {sent} messages"
        );
    }
    // Flow control held the rest back; all accepted messages arrive, in order, once read.
    for i in 0..sent {
        let message = next_message(&mut b.inbox.coordination).await;
        assert_eq!(
            u32::from_be_bytes(message.payload[..4].try_into().unwrap()),
            i
        );
    }
}

#[tokio::test]
async fn a_peer_restarted_at_its_address_ends_the_stale_connection_at_once() {
    // Timers far longer than the test's bound: only a recognised stateless reset can end the
    // connection to the crashed process in time.
    let config = foundation_transport::TransportConfig {
        keep_alive: Duration::from_secs(20),
        idle_timeout: Duration::from_secs(60),
        ..fast_config()
    };
    let a = node_with("orders", &secret(SECRET), config.clone()).await;
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let identity = || LocalIdentity {
        id: foundation_transport::NodeId::from_u128(42),
        cluster: a.endpoint.cluster().clone(),
    };
    let at_port = foundation_transport::TransportConfig {
        bind: port,
        // The bulk endpoint's thread outlives a dropped runtime and would keep the port bound.
        bulk_endpoint: false,
        ..config.clone()
    };
    let b = Crashable::start(identity(), at_port.clone());
    let to_b = eventually_connected(&a, port).await;
    b.crash();

    let metrics = std::sync::Arc::new(foundation_transport::TransportMetrics::unregistered());
    let (_b2, mut inbox) =
        foundation_transport::Endpoint::start(identity(), &secret(SECRET), at_port, metrics)
            .await
            .unwrap();
    let sent = Instant::now();
    for i in 0u32.. {
        // Sent on the stale connection first; the restarted process's reset ends it and the
        // next message is dialled anew.
        a.endpoint
            .send_message(to_b, Channel::Coordination, &i, WAIT)
            .await
            .unwrap();
        let got = tokio::time::timeout(Duration::from_millis(200), inbox.coordination.recv()).await;
        if got.is_ok() {
            break;
        }
        assert!(
            sent.elapsed() < Duration::from_secs(10),
            "messages to the restarted peer were lost for 10 s (the idle timeout is 60 s)"
        );
    }
}

async fn eventually_connected(
    a: &Node,
    addr: std::net::SocketAddr,
) -> foundation_transport::NodeAddr {
    for _ in 0..50 {
        if let Ok(peer) = a.endpoint.connect(addr).await {
            return peer;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no connection to {addr}")
}

#[tokio::test]
async fn packets_lost_on_the_way_are_sent_again_and_counted() {
    let a = node("orders").await;
    let mut b = node("orders").await;
    let relay = Relay::start(b.endpoint.local().addr).await;
    let to_b = a.endpoint.connect(relay.addr).await.unwrap();
    relay.lose_every(7);
    let payload = vec![0x5a_u8; 1000];
    for i in 0..400u32 {
        a.endpoint
            .send_message(to_b, Channel::Replication, &(i, &payload), WAIT)
            .await
            .unwrap();
    }
    for i in 0..400u32 {
        let message = next_message(&mut b.inbox.replication).await;
        assert_eq!(
            message.decode::<(u32, Vec<u8>)>().unwrap(),
            (i, payload.clone())
        );
    }
    // Counted when sampled or when the connection ends, on both sides.
    a.endpoint.close().await;
    let (ours, theirs) = (a.endpoint.metrics().clone(), b.endpoint.metrics().clone());
    eventually(
        Duration::from_secs(5),
        "losses counted, b's connection ended",
        || ours.path_events().lost_packets > 0 && theirs.open_connections() == 0,
    )
    .await;
    assert_eq!(
        theirs.path_events().lost_packets,
        0,
        "nothing lost towards a"
    );
}
