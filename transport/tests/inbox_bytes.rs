//! The streamed channels' inboxes are bounded in bytes as well as in messages.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use foundation_transport::metrics::InboxBound;
use foundation_transport::{Channel, SendMode, TransportConfig};

const WAIT: SendMode = SendMode::Wait(Duration::from_secs(5));
const MIB: usize = 1 << 20;

/// A 1 MiB payload that says which it is.
fn numbered(i: u32) -> Bytes {
    let mut payload = vec![0xAB; MIB];
    payload[..4].copy_from_slice(&i.to_be_bytes());
    payload.into()
}

/// Two nodes of one cluster whose streamed channels' inboxes hold 8 MiB each.
async fn pair_with_8_mib_inboxes() -> (Node, Node) {
    let config = TransportConfig {
        inbox_bytes: 8 * MIB,
        ..TransportConfig::default()
    };
    let a = node_with("orders", &secret(SECRET), config.clone()).await;
    let b = node_with("orders", &secret(SECRET), config).await;
    (a, b)
}

/// Forty 1 MiB replication messages to a node that reads none, with 8 MiB of inbox: the
/// reader stops after eight (before, all forty were queued, and 65,536 could have been), the
/// rest wait in the sender and QUIC flow control, coordination and membership still get
/// through, and once the application reads, every message arrives in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_byte_budget_pushes_back_without_dropping_and_spares_other_channels() {
    let (a, mut b) = pair_with_8_mib_inboxes().await;
    let to_b = b.endpoint.local();
    const SENT: u32 = 40;
    for i in 0..SENT {
        let sent = a
            .endpoint
            .send(to_b, Channel::Replication, numbered(i), WAIT);
        sent.await.unwrap();
    }
    let metrics = b.endpoint.metrics().clone();
    eventually(
        Duration::from_secs(20),
        "b's replication reader waits for room in bytes",
        || metrics.inbox_waits(Channel::Replication, InboxBound::Bytes) > 0,
    )
    .await;
    assert_eq!(
        b.inbox.replication.len(),
        8,
        "8 MiB hold eight 1 MiB messages"
    );

    let urgent = Bytes::from_static(b"urgent");
    a.endpoint
        .send(to_b, Channel::Coordination, urgent.clone(), WAIT)
        .await
        .unwrap();
    assert_eq!(
        next_message(&mut b.inbox.coordination).await.payload,
        urgent
    );
    a.endpoint
        .send_datagram(to_b, Bytes::from_static(b"probe"))
        .unwrap();
    let probe = next_message(&mut b.inbox.membership).await;
    assert_eq!(&probe.payload[..], b"probe");
    assert_eq!(
        b.inbox.replication.len(),
        8,
        "still eight: nobody read them"
    );

    for i in 0..SENT {
        let message = next_message(&mut b.inbox.replication).await;
        assert!(
            message.payload == numbered(i),
            "message {i} arrived whole, in order"
        );
    }
    assert_eq!(
        metrics.inbox_waits(Channel::Replication, InboxBound::Messages),
        0,
        "the byte budget, not the count, held them back"
    );
}

/// A consumer that keeps the payloads it read (a subscriber keeping the last value of each
/// topic) holds none of the budget: forty 1 MiB messages all arrive through an 8 MiB inbox.
/// When the payloads carried the charge, the channel stopped after eight, for every peer, until
/// the consumer let go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payloads_the_consumer_keeps_hold_no_budget() {
    let (a, mut b) = pair_with_8_mib_inboxes().await;
    let to_b = b.endpoint.local();
    const SENT: u32 = 40;
    let sender = tokio::spawn(async move {
        for i in 0..SENT {
            let sent = a
                .endpoint
                .send(to_b, Channel::Replication, numbered(i), WAIT);
            sent.await.unwrap();
        }
        a
    });
    let mut kept = Vec::new();
    for i in 0..SENT {
        let message = next_message(&mut b.inbox.replication).await;
        assert!(message.payload == numbered(i), "message {i} in order");
        kept.push(message.payload.slice(..4));
    }
    assert_eq!(kept.len(), SENT as usize);
    drop(sender.await.unwrap());
}
