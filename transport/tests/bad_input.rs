//! Malformed, oversized and truncated input from a peer with valid credentials: the offending
//! stream is closed with an error code and counted, and everyone else keeps being served.

mod common;

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use common::raw::{request, RawPeer};
use common::*;
use foundation_transport::frame::{encode_frame, StreamHeader, STREAM_MAGIC, WIRE_VERSION};
use foundation_transport::metrics::{DropReason, RpcEvent};
use foundation_transport::rpc::codec::MuxFrame;
use foundation_transport::rpc::ANSWERS_WAIT_MAX;
use foundation_transport::wire::code;
use foundation_transport::{Channel, SendMode};

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
    // The empty datagram is a caller's keep-alive, skipped, not garbage.
    eventually(Duration::from_secs(2), "the bad datagram counted", || {
        metrics.drops(Channel::Membership, DropReason::Malformed) == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(metrics.drops(Channel::Membership, DropReason::Malformed), 1);
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

/// Bad frames on a multiplexed RPC stream: a frame whose body does not parse is refused by id
/// (or only counted, when it names no id) and the calls around it on the same stream are still
/// answered; only a length prefix over the limit, which loses the framing, ends the stream.
#[tokio::test]
async fn malformed_rpc_frames_are_refused_and_the_other_calls_on_the_stream_go_on() {
    let mut member = node("orders").await;
    let raw = RawPeer::connect(&member).await;
    let server = tokio::spawn(async move {
        while let Some(request) = member.inbox.requests.recv().await {
            let mut reply = b"re:".to_vec();
            reply.extend_from_slice(&request.payload);
            request.respond(reply.into()).await.unwrap();
        }
    });
    let mut wire = raw.open_mux().await;

    wire.write(&request(1, b"first")).await;
    // An unknown kind naming request 2.
    let mut unknown = vec![42u8];
    unknown.extend_from_slice(&2u64.to_be_bytes());
    wire.write_body(&unknown).await;
    // Too short to name a request at all.
    wire.write_body(&[1, 0, 0]).await;
    // A request too short to hold its deadline.
    let mut short = vec![1u8];
    short.extend_from_slice(&3u64.to_be_bytes());
    short.push(0);
    wire.write_body(&short).await;
    wire.write(&request(4, b"after")).await;

    let mut answers = Vec::new();
    for _ in 0..4 {
        answers.push(wire.next().await);
    }
    answers.sort_by_key(MuxFrame::id);
    assert_eq!(
        answers,
        vec![
            MuxFrame::Response {
                id: 1,
                payload: Bytes::from_static(b"re:first")
            },
            MuxFrame::Refused {
                id: 2,
                code: code::MALFORMED
            },
            MuxFrame::Refused {
                id: 3,
                code: code::MALFORMED
            },
            MuxFrame::Response {
                id: 4,
                payload: Bytes::from_static(b"re:after")
            },
        ]
    );

    // A request over the multiplexed limit (64 KiB) loses the framing: the stream is stopped.
    let mut oversized = BytesMut::new();
    oversized.put_u32(1 << 20);
    wire.send.write_all(&oversized).await.unwrap();
    let stopped = tokio::time::timeout(Duration::from_secs(5), wire.send.stopped())
        .await
        .expect("receiver reacts");
    assert_eq!(
        stopped.ok().flatten().map(|c| c.into_inner()),
        Some(code::TOO_LARGE.into())
    );

    // A new stream on the same connection is served again.
    let mut again = raw.open_mux().await;
    again.write(&request(1, b"again")).await;
    assert_eq!(
        again.next().await,
        MuxFrame::Response {
            id: 1,
            payload: Bytes::from_static(b"re:again")
        }
    );
    server.abort();
}

#[tokio::test]
async fn a_request_id_already_in_flight_is_refused_and_the_first_call_stands() {
    let mut member = node("orders").await;
    let metrics = member.endpoint.metrics().clone();
    let raw = RawPeer::connect(&member).await;
    let mut wire = raw.open_mux().await;
    wire.write(&request(9, b"one")).await;
    let held = within(Duration::from_secs(5), &mut member.inbox.requests).await;
    wire.write(&request(9, b"two")).await;
    assert_eq!(
        wire.next().await,
        MuxFrame::Refused {
            id: 9,
            code: code::MALFORMED
        }
    );
    assert_eq!(metrics.rpc_events(RpcEvent::Malformed), 1);
    assert_eq!(&held.payload[..], b"one");
    held.respond(Bytes::from_static(b"ok")).await.unwrap();
    assert_eq!(
        wire.next().await,
        MuxFrame::Response {
            id: 9,
            payload: Bytes::from_static(b"ok")
        }
    );
}

/// `frames` requests of an unknown kind, with ids from 0: each refused by id, 13 bytes in and
/// 17 out.
fn unknown_kinds(frames: u64) -> BytesMut {
    let mut out = BytesMut::new();
    for id in 0..frames {
        out.put_u32(9);
        out.put_u8(42);
        out.put_u64(id);
    }
    out
}

/// A caller that sends requests and never reads the answers: the responder queues answers only
/// up to a bound, then stops reading that stream, so QUIC flow control stops the caller (before,
/// every request read queued one more answer, without end). Once the caller reads, every answer
/// comes, in order, and the stream goes on.
#[tokio::test]
async fn a_caller_that_never_reads_its_answers_is_stopped_by_flow_control() {
    // Each frame names a request of an unknown kind, which the node refuses by id: 13 bytes in,
    // 17 out. 400,000 of them (5.2 MB) fit the node's 16 MiB stream window, so they all arrive
    // without the node reading any; their refusals (6.8 MB) do not fit the raw peer's window
    // (quinn's default, 1.25 MB), so past it they wait at the node.
    const FRAMES: u64 = 400_000;
    let member = node("orders").await;
    let metrics = member.endpoint.metrics().clone();
    let raw = RawPeer::connect(&member).await;
    let mut wire = raw.open_mux().await;
    wire.send.write_all(&unknown_kinds(FRAMES)).await.unwrap();

    let paused = || metrics.rpc_events(RpcEvent::AnswersBackedUp) > 0;
    let read = || metrics.rpc_events(RpcEvent::Malformed);
    eventually(Duration::from_secs(20), "the node stops reading", || {
        paused() || read() == FRAMES
    })
    .await;
    // Stopped, it reads no more until the answers are taken.
    let read_when_stopped = read();
    assert!(
        paused() && read_when_stopped < FRAMES / 2,
        "the node read {read_when_stopped} of {FRAMES} requests while no answer was taken"
    );

    for id in 0..FRAMES {
        assert_eq!(
            wire.next().await,
            MuxFrame::Refused {
                id,
                code: code::MALFORMED
            }
        );
    }
    assert_eq!(metrics.rpc_events(RpcEvent::Malformed), FRAMES);
}

/// Paused streams hold the connection's window: a responder that waited for ever would let two
/// nodes calling each other under load stop each other's answers for good. Past
/// `ANSWERS_WAIT_MAX` the stream ends, which gives the window back.
#[tokio::test]
async fn a_caller_that_takes_no_answers_for_too_long_has_its_stream_ended() {
    const FRAMES: u64 = 400_000;
    let member = node("orders").await;
    let metrics = member.endpoint.metrics().clone();
    let raw = RawPeer::connect_pinging(&member, Some(Duration::from_millis(300))).await;
    let mut wire = raw.open_mux().await;
    wire.send.write_all(&unknown_kinds(FRAMES)).await.unwrap();
    let ended = tokio::time::timeout(ANSWERS_WAIT_MAX * 3, wire.send.stopped())
        .await
        .expect("the node ended the stream");
    assert_eq!(
        ended.clone().ok().flatten().map(|code| code.into_inner()),
        Some(u64::from(code::UNAVAILABLE)),
        "{ended:?}"
    );
    assert_eq!(metrics.rpc_events(RpcEvent::AnswersAbandoned), 1);
}
