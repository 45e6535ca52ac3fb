//! Every channel between real endpoints on loopback.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use foundation_transport::{Channel, PeerEvent, RequestError, SendMode, TransportConfig};

const WAIT: SendMode = SendMode::Wait(Duration::from_secs(2));

#[tokio::test]
async fn messages_arrive_in_order_on_every_streamed_channel() {
    let a = node("orders").await;
    let mut b = node("orders").await;
    let to_b = b.endpoint.local();
    for i in 0..100u32 {
        for channel in Channel::STREAMED {
            a.endpoint
                .send_message(to_b, channel, &(channel.tag(), i), WAIT)
                .await
                .unwrap();
        }
    }
    for channel in Channel::STREAMED {
        let rx = match channel {
            Channel::Coordination => &mut b.inbox.coordination,
            Channel::Replication => &mut b.inbox.replication,
            _ => &mut b.inbox.events,
        };
        for i in 0..100u32 {
            let message = next_message(rx).await;
            assert_eq!(message.from, a.endpoint.local().id);
            assert_eq!(message.channel, channel);
            assert_eq!(message.decode::<(u8, u32)>().unwrap(), (channel.tag(), i));
        }
    }
}

/// Small messages are copied into one write, large ones written as chunks of their own: mixed,
/// they still arrive whole and in order.
#[tokio::test]
async fn small_and_large_messages_arrive_whole_and_in_order() {
    let a = node("orders").await;
    let mut b = node("orders").await;
    let to_b = b.endpoint.local();
    let sizes = [3, 5000, 10, 4095, 4096, 70_000, 1, 20_000];
    let message = |i: usize| Bytes::from(vec![i as u8; sizes[i % sizes.len()]]);
    for i in 0..64 {
        a.endpoint
            .send(to_b, Channel::Events, message(i), WAIT)
            .await
            .unwrap();
    }
    for i in 0..64 {
        assert_eq!(next_message(&mut b.inbox.events).await.payload, message(i));
    }
}

#[tokio::test]
async fn datagrams_reach_the_membership_inbox() {
    let a = node("orders").await;
    let mut b = node("orders").await;
    a.endpoint.connect(b.endpoint.local().addr).await.unwrap();
    a.endpoint
        .send_datagram(b.endpoint.local(), Bytes::from_static(b"ping"))
        .unwrap();
    let message = next_message(&mut b.inbox.membership).await;
    assert_eq!(
        (message.channel, &message.payload[..]),
        (Channel::Membership, &b"ping"[..])
    );
    let too_big = Bytes::from(vec![0u8; 1200]);
    assert!(a
        .endpoint
        .send_datagram(b.endpoint.local(), too_big)
        .is_err());
}

#[tokio::test]
async fn three_endpoints_talk_pairwise_and_report_connections() {
    let mut nodes = [
        node("orders").await,
        node("orders").await,
        node("orders").await,
    ];
    let addrs: Vec<_> = nodes.iter().map(|n| n.endpoint.local()).collect();
    for (i, from) in nodes.iter().enumerate() {
        for (j, to) in addrs.iter().enumerate() {
            if i != j {
                from.endpoint
                    .send_message(*to, Channel::Events, &(i as u8), WAIT)
                    .await
                    .unwrap();
            }
        }
    }
    for (me, node) in nodes.iter_mut().enumerate() {
        let mut senders = Vec::new();
        for _ in 0..2 {
            let message = next_message(&mut node.inbox.events).await;
            senders.push(message.decode::<u8>().unwrap() as usize);
        }
        senders.sort();
        let others: Vec<usize> = (0..3).filter(|i| *i != me).collect();
        assert_eq!(senders, others);
        let mut connected = Vec::new();
        while connected.len() < 2 {
            if let PeerEvent::Connected { peer } = next_peer_event(&mut node.inbox).await {
                connected.push(peer);
            }
        }
        assert_eq!(node.endpoint.connected_peers().len(), 2);
    }
}

#[tokio::test]
async fn requests_get_responses() {
    let a = node("orders").await;
    let mut b = node("orders").await;
    let to = b.endpoint.local();
    let server = tokio::spawn(async move {
        while let Some(request) = b.inbox.requests.recv().await {
            let reply = reversed(&request.payload);
            request.respond(reply).await.unwrap();
        }
    });
    for i in 0..20u8 {
        let response = a
            .endpoint
            .request(to, Bytes::from(vec![1, 2, i]), Duration::from_secs(2))
            .await
            .unwrap();
        assert_eq!(&response[..], &[i, 2, 1]);
    }
    server.abort();
}

#[tokio::test]
async fn a_request_nobody_answers_fails_at_its_deadline() {
    let a = node("orders").await;
    let mut b = node("orders").await;
    let to = b.endpoint.local();
    let held = tokio::spawn(async move {
        let request = b.inbox.requests.recv().await.unwrap();
        let remaining = request
            .deadline
            .saturating_duration_since(tokio::time::Instant::now());
        assert!(
            remaining <= Duration::from_millis(300) && remaining > Duration::ZERO,
            "deadline carried: {remaining:?}"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
        drop(request);
        b
    });
    let started = std::time::Instant::now();
    let result = a
        .endpoint
        .request(to, Bytes::from_static(b"?"), Duration::from_millis(300))
        .await;
    assert_eq!(result, Err(RequestError::DeadlineExceeded));
    assert!(started.elapsed() < Duration::from_secs(1));
    let _ = held.await;
}

#[tokio::test]
async fn a_dropped_request_reports_no_response_and_an_oversized_one_is_refused_locally() {
    let a = node("orders").await;
    let mut b = node("orders").await;
    let to = b.endpoint.local();
    let dropper = tokio::spawn(async move {
        drop(b.inbox.requests.recv().await);
        b
    });
    let result = a
        .endpoint
        .request(to, Bytes::from_static(b"?"), Duration::from_secs(2))
        .await;
    assert_eq!(result, Err(RequestError::NoResponse));
    let huge = Bytes::from(vec![0u8; (4 << 20) + 1]);
    assert!(matches!(
        a.endpoint.request(to, huge, Duration::from_secs(2)).await,
        Err(RequestError::TooLarge { .. })
    ));
    let _ = dropper.await;
}

#[tokio::test]
async fn bulk_transfers_arrive_whole() {
    let a = node("orders").await;
    let mut b = node("orders").await;
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let expected = data.clone();
    let to = b.endpoint.local();
    let receiver = tokio::spawn(async move {
        let transfer = within(Duration::from_secs(5), &mut b.inbox.transfers).await;
        assert_eq!(transfer.len, 3_000_000);
        transfer.read_to_end().await.unwrap()
    });
    a.endpoint
        .send_bulk(to, data.into(), Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(receiver.await.unwrap(), expected);
}

#[tokio::test]
async fn bulk_transfers_go_on_a_bulk_connection_of_their_own_which_closes_when_unused() {
    let a = node("orders").await;
    let mut b = node("orders").await;
    let to = b.endpoint.local();
    let receiver = tokio::spawn(async move {
        for _ in 0..2 {
            let transfer = within(Duration::from_secs(5), &mut b.inbox.transfers).await;
            assert_eq!(transfer.read_to_end().await.unwrap().len(), 100_000);
        }
        b
    });
    for _ in 0..2 {
        let data = Bytes::from(vec![7u8; 100_000]);
        a.endpoint
            .send_bulk(to, data, Duration::from_secs(10))
            .await
            .unwrap();
    }
    let b = receiver.await.unwrap();
    let (sent, got) = (a.endpoint.metrics(), b.endpoint.metrics());
    // One bulk connection carried both transfers; the regular connection is still the only
    // peer connection on either side.
    assert_eq!((sent.bulk_connections(true), sent.bulk_fallbacks()), (1, 0));
    assert_eq!(got.bulk_connections(false), 1);
    assert_eq!(a.endpoint.connected_peers(), vec![to]);
    assert_eq!(sent.open_connections(), 1);
    assert_eq!(got.open_connections(), 1);
    // Unused for the idle timeout, the bulk connection closes; the next transfer dials again.
    tokio::time::sleep(fast_config().idle_timeout * 2).await;
    let mut b = b;
    let receiver = tokio::spawn(async move {
        let data = within(Duration::from_secs(5), &mut b.inbox.transfers)
            .await
            .read_to_end()
            .await
            .unwrap();
        (data, b)
    });
    a.endpoint
        .send_bulk(to, Bytes::from_static(b"again"), Duration::from_secs(10))
        .await
        .unwrap();
    let mut b = receiver_done(receiver, b"again").await;
    assert_eq!(a.endpoint.metrics().bulk_connections(true), 2);
    assert_eq!(a.endpoint.connected_peers(), vec![to]);
    // Disconnecting the peer closes the bulk connection too: the next transfer dials again.
    a.endpoint.disconnect(to.id);
    let receiver = tokio::spawn(async move {
        let data = within(Duration::from_secs(5), &mut b.inbox.transfers)
            .await
            .read_to_end()
            .await
            .unwrap();
        (data, b)
    });
    a.endpoint
        .send_bulk(to, Bytes::from_static(b"after"), Duration::from_secs(10))
        .await
        .unwrap();
    receiver_done(receiver, b"after").await;
    assert_eq!(a.endpoint.metrics().bulk_connections(true), 3);
}

async fn receiver_done(
    receiver: tokio::task::JoinHandle<(Vec<u8>, Node)>,
    expected: &[u8],
) -> Node {
    let (data, node) = receiver.await.unwrap();
    assert_eq!(data, expected);
    node
}

#[tokio::test]
async fn without_a_bulk_queue_target_transfers_share_the_regular_connection() {
    let config = TransportConfig {
        bulk_queue_target: None,
        ..fast_config()
    };
    let a = node_with("orders", &secret(SECRET), config).await;
    let mut b = node("orders").await;
    let to = b.endpoint.local();
    let receiver = tokio::spawn(async move {
        within(Duration::from_secs(5), &mut b.inbox.transfers)
            .await
            .read_to_end()
            .await
            .unwrap()
    });
    a.endpoint
        .send_bulk(to, Bytes::from_static(b"shared"), Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(receiver.await.unwrap(), b"shared");
    assert_eq!(a.endpoint.metrics().bulk_connections(true), 0);
}

#[tokio::test]
async fn nodes_with_and_without_a_bulk_endpoint_send_each_other_transfers_on_bulk_connections() {
    let config = TransportConfig {
        bulk_endpoint: false,
        ..fast_config()
    };
    let mut plain = node_with("orders", &secret(SECRET), config).await;
    let mut apart = node("orders").await;
    let (to_plain, to_apart) = (plain.endpoint.local(), apart.endpoint.local());
    plain.endpoint.connect(to_apart.addr).await.unwrap();
    let data = Bytes::from(
        (0..1_000_000u32)
            .map(|i| (i % 253) as u8)
            .collect::<Vec<_>>(),
    );
    let (sent_to_apart, sent_to_plain) = tokio::join!(
        plain
            .endpoint
            .send_bulk(to_apart, data.clone(), Duration::from_secs(10)),
        apart
            .endpoint
            .send_bulk(to_plain, data.clone(), Duration::from_secs(10)),
    );
    sent_to_apart.unwrap();
    sent_to_plain.unwrap();
    for inbox in [&mut plain.inbox, &mut apart.inbox] {
        let mut transfer = within(Duration::from_secs(5), &mut inbox.transfers).await;
        let mut got = Vec::new();
        while let Some(chunk) = transfer.read_chunk().await.unwrap() {
            got.extend_from_slice(&chunk);
        }
        assert_eq!(got, data);
        // The end stays the end.
        assert_eq!(transfer.read_chunk().await, Ok(None));
    }
    for endpoint in [&plain.endpoint, &apart.endpoint] {
        let metrics = endpoint.metrics();
        assert_eq!(
            (metrics.bulk_connections(true), metrics.bulk_fallbacks()),
            (1, 0)
        );
        assert_eq!(metrics.bulk_connections(false), 1);
        assert_eq!(metrics.open_connections(), 1);
    }
}

#[tokio::test]
async fn a_fixed_bulk_port_is_the_one_bound_and_a_taken_one_is_named_at_start() {
    let free = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    let config = TransportConfig {
        bulk_port: port,
        ..fast_config()
    };
    let fixed = node_with("orders", &secret(SECRET), config.clone()).await;
    assert_eq!(fixed.endpoint.bulk_addr().map(|a| a.port()), Some(port));

    let identity = foundation_transport::LocalIdentity {
        id: foundation_transport::NodeId::random(),
        cluster: foundation_transport::ClusterName::new("orders").unwrap(),
    };
    let metrics = std::sync::Arc::new(foundation_transport::TransportMetrics::unregistered());
    let started =
        foundation_transport::Endpoint::start(identity, &secret(SECRET), config, metrics).await;
    let Err(taken) = started else {
        panic!("started although the bulk port is taken");
    };
    let message = taken.to_string();
    assert!(
        message.contains(&format!("bulk transfer port 127.0.0.1:{port}")),
        "{message}"
    );
}
