//! Malformed, oversized and truncated input from a peer with valid credentials: the offending
//! stream is closed with an error code and counted, and everyone else keeps being served.

mod common;

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use common::*;
use foundation_transport::frame::{
    encode_frame, encode_message, StreamHeader, STREAM_MAGIC, WIRE_VERSION,
};
use foundation_transport::metrics::DropReason;
use foundation_transport::security::raw_quic_configs;
use foundation_transport::wire::{code, Hello};
use foundation_transport::{Channel, ClusterName, NodeId, SendMode};

/// A hand-driven peer: real TLS and hello, then whatever bytes the test wants.
struct RawPeer {
    conn: quinn::Connection,
    _endpoint: quinn::Endpoint,
}

impl RawPeer {
    async fn connect(to: &Node) -> RawPeer {
        let cluster = ClusterName::new("orders").unwrap();
        let (_, client) = raw_quic_configs(&secret(SECRET), &cluster).unwrap();
        let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        let conn = endpoint
            .connect_with(
                client,
                to.endpoint.local().addr,
                &cluster.certificate_dns_name(),
            )
            .unwrap()
            .await
            .unwrap();
        let hello = Hello {
            cluster: cluster.to_string(),
            node: NodeId::random(),
            advertise: endpoint.local_addr().unwrap(),
            instance: 1,
            bulk_port: None,
        };
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        let mut out = BytesMut::from(&StreamHeader::HELLO.encode()[..]);
        encode_frame(&mut out, &encode_message(&hello).unwrap(), 512).unwrap();
        send.write_all(&out).await.unwrap();
        let mut reply = [0u8; 64];
        let _ = recv.read(&mut reply).await.unwrap();
        RawPeer {
            conn,
            _endpoint: endpoint,
        }
    }

    /// Writes `bytes` on a new unidirectional stream and returns the code the receiver stopped it with.
    async fn stopped_with(&self, bytes: &[u8], finish: bool) -> Option<u64> {
        let mut send = self.conn.open_uni().await.unwrap();
        let _ = send.write_all(bytes).await;
        if finish {
            let _ = send.finish();
        }
        let stopped = tokio::time::timeout(Duration::from_secs(5), send.stopped())
            .await
            .expect("receiver reacts");
        stopped.ok().flatten().map(|code| code.into_inner())
    }
}

fn events_stream(frames: &[u8]) -> Vec<u8> {
    let mut out = StreamHeader::for_channel(Channel::Events).encode().to_vec();
    out.extend_from_slice(frames);
    out
}

#[tokio::test]
async fn bad_streams_are_stopped_with_a_code_and_other_peers_keep_working() {
    let mut member = node("orders").await;
    let friend = node("orders").await;
    let raw = RawPeer::connect(&member).await;

    let bad_magic = raw
        .stopped_with(&[0x00, WIRE_VERSION, 4, 0, 0], false)
        .await;
    assert_eq!(bad_magic, Some(code::MALFORMED.into()));
    let future_version = raw.stopped_with(&[STREAM_MAGIC, 99, 4], false).await;
    assert_eq!(future_version, Some(code::MALFORMED.into()));
    let unknown_channel = raw
        .stopped_with(&[STREAM_MAGIC, WIRE_VERSION, 42], false)
        .await;
    assert_eq!(unknown_channel, Some(code::MALFORMED.into()));

    let mut oversized = BytesMut::new();
    oversized.put_u32(2 << 20); // events allow 1 MiB
    let stopped = raw.stopped_with(&events_stream(&oversized), false).await;
    assert_eq!(stopped, Some(code::TOO_LARGE.into()));

    // A stream that ends inside a frame: the sender already finished, so there is nobody left
    // to stop; the receiver logs and counts it.
    let truncated = events_stream(&[0, 0, 0, 10, 1, 2, 3]);
    raw.stopped_with(&truncated, true).await;
    let metrics = member.endpoint.metrics().clone();
    eventually(Duration::from_secs(2), "truncated stream counted", || {
        metrics.drops(Channel::Events, DropReason::Malformed) == 1
    })
    .await;
    assert_eq!(metrics.drops(Channel::Events, DropReason::Oversized), 1);

    // The same connection still carries well-formed traffic...
    let mut good = BytesMut::new();
    encode_frame(&mut good, b"still here", 64).unwrap();
    let mut send = raw.conn.open_uni().await.unwrap();
    send.write_all(&events_stream(&good)).await.unwrap();
    send.finish().unwrap();
    assert_eq!(
        &next_message(&mut member.inbox.events).await.payload[..],
        b"still here"
    );
    // ...and so does every other peer.
    let to_member = member.endpoint.local();
    friend
        .endpoint
        .send(
            to_member,
            Channel::Events,
            Bytes::from_static(b"hi"),
            SendMode::NoWait,
        )
        .await
        .unwrap();
    assert_eq!(
        next_message(&mut member.inbox.events).await.from,
        friend.endpoint.local().id
    );
}

#[tokio::test]
async fn garbage_datagrams_are_dropped_and_counted() {
    let mut member = node("orders").await;
    let raw = RawPeer::connect(&member).await;
    raw.conn.send_datagram(Bytes::new()).unwrap();
    raw.conn
        .send_datagram(Bytes::from_static(&[77, 1, 2, 3]))
        .unwrap();
    raw.conn
        .send_datagram(Bytes::from_static(&[WIRE_VERSION, b'o', b'k']))
        .unwrap();
    let message = next_message(&mut member.inbox.membership).await;
    assert_eq!(&message.payload[..], b"ok");
    let metrics = member.endpoint.metrics().clone();
    eventually(Duration::from_secs(2), "two bad datagrams counted", || {
        metrics.drops(Channel::Membership, DropReason::Malformed) == 2
    })
    .await;
}

#[tokio::test]
async fn a_second_hello_or_a_bad_request_stream_is_stopped() {
    let member = node("orders").await;
    let raw = RawPeer::connect(&member).await;
    let (mut send, _recv) = raw.conn.open_bi().await.unwrap();
    send.write_all(&StreamHeader::HELLO.encode()).await.unwrap();
    let stopped = tokio::time::timeout(Duration::from_secs(5), send.stopped())
        .await
        .unwrap();
    assert_eq!(
        stopped.ok().flatten().map(|c| c.into_inner()),
        Some(code::MALFORMED.into())
    );

    let (mut send, _recv) = raw.conn.open_bi().await.unwrap();
    let mut request = StreamHeader::for_channel(Channel::Rpc).encode().to_vec();
    request.extend_from_slice(&1000u32.to_be_bytes());
    request.extend_from_slice(&u32::MAX.to_be_bytes());
    send.write_all(&request).await.unwrap();
    let stopped = tokio::time::timeout(Duration::from_secs(5), send.stopped())
        .await
        .unwrap();
    assert_eq!(
        stopped.ok().flatten().map(|c| c.into_inner()),
        Some(code::TOO_LARGE.into())
    );
}
