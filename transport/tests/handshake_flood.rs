//! A flood of QUIC handshake starts that never finish (issue 16, target 5): the node keeps its
//! state bounded, tells the flood to prove its address with Retry, and its members keep talking.
//!
//! Alone in its own test binary so the process's memory is this test's alone.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use bytes::Bytes;
use common::flood::{assert_grown_at_most, initial, rss, wait_until};
use common::*;
use foundation_transport::security::raw_quic_configs;
use foundation_transport::{Channel, ClusterName, SendMode, TransportConfig, TransportMetrics};

/// Handshake starts sent by the flood.
const FLOOD: usize = 2_000;
/// The node's limit on handshakes in progress.
const LIMIT: usize = 16;
/// How much the process may grow during the flood. Without the limit every start would hold
/// its handshake state (≈ 100 KB) until the handshake timeout: ≈ 200 MB for this flood.
const RSS_GROWTH_MAX: u64 = 48 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_unfinished_handshakes_is_bounded_and_members_keep_talking() {
    // Connections send no keep-alives while membership is sealed: an idle timeout longer than
    // the flood keeps the member's connection open through it, to be checked afterwards.
    let quiet = TransportConfig {
        idle_timeout: Duration::from_secs(15),
        ..fast_config()
    };
    let config = TransportConfig {
        max_pending_handshakes: LIMIT,
        ..quiet.clone()
    };
    let mut seed = node_with("orders", &secret(SECRET), config).await;
    let member = node_with("orders", &secret(SECRET), quiet).await;
    let seed_addr = seed.endpoint.local();
    member.endpoint.connect(seed_addr.addr).await.unwrap();
    let send = |payload: &'static [u8]| {
        member.endpoint.send(
            seed_addr,
            Channel::Coordination,
            Bytes::from_static(payload),
            SendMode::Wait(Duration::from_secs(2)),
        )
    };
    send(b"before").await.unwrap();
    assert_eq!(
        next_message(&mut seed.inbox.coordination).await.payload,
        "before"
    );

    // The flood: fresh handshake starts from a few source ports, as fast as they can be built.
    let (_, client) = raw_quic_configs(&secret("someone without the secret"), &cluster())
        .expect("attacker's configs");
    let metrics = seed.endpoint.metrics().clone();
    let before = rss();
    flood(&client, seed_addr.addr, &metrics, 0).await;

    // Members are intact: the existing connection carries messages, and a new node can join
    // while the flood's handshakes still hold their slots (it answers the Retry).
    send(b"during").await.unwrap();
    assert_eq!(
        next_message(&mut seed.inbox.coordination).await.payload,
        "during"
    );
    let newcomer = node("orders").await;
    let found = newcomer.endpoint.connect(seed_addr.addr).await.unwrap();
    assert_eq!(found.id, seed_addr.id);
    assert_grown_at_most(before, RSS_GROWTH_MAX);

    // The flood's handshakes time out and give their slots (and memory) back.
    wait_until("the flood's handshakes time out", || {
        metrics.handshakes_in_progress() == 0
    })
    .await;
    assert!(seed
        .endpoint
        .connected_peers()
        .contains(&member.endpoint.local()));
    send(b"after").await.unwrap();
    assert_eq!(
        next_message(&mut seed.inbox.coordination).await.payload,
        "after"
    );

    // The bulk endpoint is bounded alike, and a transfer still gets its bulk connection.
    let bulk_addr = seed.endpoint.bulk_addr().expect("a bulk endpoint");
    let turned_away = metrics.incoming_retried();
    flood(&client, bulk_addr, &metrics, turned_away).await;
    member
        .endpoint
        .send_bulk(
            seed_addr,
            Bytes::from(vec![3u8; 50_000]),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    let transfer = within(Duration::from_secs(5), &mut seed.inbox.transfers).await;
    assert_eq!(transfer.read_to_end().await.unwrap().len(), 50_000);
    let sent = member.endpoint.metrics();
    assert_eq!((sent.bulk_connections(true), sent.bulk_fallbacks()), (1, 0));
}

/// Sends `FLOOD` handshake starts to `to` from a few source ports, as fast as they can be
/// built, and checks that at most `LIMIT` were ever in progress while the rest were asked to
/// retry (`retried_before`: what the metrics counted before this flood).
async fn flood(
    client: &quinn::ClientConfig,
    to: SocketAddr,
    metrics: &TransportMetrics,
    retried_before: u64,
) {
    let sockets: Vec<UdpSocket> = (0..4)
        .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    let mut most_in_progress = 0;
    for i in 0..FLOOD {
        let packet = initial(client, to);
        let _ = sockets[i % sockets.len()].send_to(&packet, to);
        if i % 64 == 0 {
            tokio::task::yield_now().await;
            most_in_progress = most_in_progress.max(metrics.handshakes_in_progress());
        }
    }
    // Everything sent has been looked at: each start either holds a slot or was turned away.
    wait_until("the flood is processed", || {
        most_in_progress = most_in_progress.max(metrics.handshakes_in_progress());
        let turned_away = metrics.incoming_retried() - retried_before + metrics.incoming_refused();
        turned_away >= (FLOOD - LIMIT) as u64 / 2
    })
    .await;
    most_in_progress = most_in_progress.max(metrics.handshakes_in_progress());
    assert!(
        most_in_progress <= LIMIT as i64,
        "{most_in_progress} handshakes in progress, limit {LIMIT}"
    );
    // Unvalidated senders were asked to retry long before the limit was reached.
    assert!(metrics.incoming_retried() > retried_before);
    assert_eq!(metrics.incoming_refused(), 0);
}

fn cluster() -> ClusterName {
    ClusterName::new("orders").unwrap()
}
