//! Small requests multiplexed on a few streams per connection: answers find their callers by id,
//! deadlines and cancellation reach the responder, the in-flight limit is enforced with a clear
//! error, and answers nobody waits for are counted and dropped.

mod common;

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::raw::RawPeer;
use common::*;
use foundation_transport::metrics::RpcEvent;
use foundation_transport::rpc::codec::MuxFrame;
use foundation_transport::wire::code;
use foundation_transport::{Channel, RequestError, TransportConfig};

/// Collects `n` requests, then answers them in the reverse order of arrival, each with its own
/// payload reversed: a caller that got another call's answer would see it.
#[tokio::test]
async fn many_concurrent_calls_on_one_connection_each_get_their_own_answer() {
    const CALLS: usize = 300;
    let a = node("orders").await;
    let mut b = node("orders").await;
    let to = b.endpoint.local();
    let server = tokio::spawn(async move {
        let mut held = Vec::new();
        while held.len() < CALLS {
            held.push(within(Duration::from_secs(10), &mut b.inbox.requests).await);
        }
        while let Some(request) = held.pop() {
            let reply = reversed(&request.payload);
            request.respond(reply).await.unwrap();
        }
        b
    });
    calls_answered_reversed(&a.endpoint, to, (0..CALLS).map(numbered)).await;
    let b = server.await.unwrap();
    assert_eq!(
        a.endpoint.metrics().messages(
            Channel::Rpc,
            foundation_transport::metrics::Direction::Received
        ),
        CALLS as u64
    );
    assert_eq!(
        b.endpoint.metrics().messages(
            Channel::Rpc,
            foundation_transport::metrics::Direction::Received
        ),
        CALLS as u64
    );
    assert_eq!(a.endpoint.metrics().rpc_events(RpcEvent::LateReply), 0);
}

/// Calls that overlap are spread over the connection's multiplexed streams, the least loaded
/// first, so no one stream's tasks carry every call; calls made one at a time all use the first
/// stream, and the others are not opened for them.
#[tokio::test]
async fn overlapping_calls_spread_over_streams_and_calls_one_at_a_time_share_the_first() {
    let (a, raw) = caller_on_two_streams().await;
    let call = |payload| spawn_call(&a, raw.addr, payload);
    let [(first, first_id, mut one), (second, second_id, mut two)] =
        a_call_on_each_stream(&raw, call).await;
    // Both streams carry one call: the tie goes to the first.
    let third = call(b"third");
    let third_id = request_id(one.next().await, b"third");
    wire_answer(&mut two, second_id, Bytes::from_static(b"2")).await;
    wire_answer(&mut one, third_id, Bytes::from_static(b"3")).await;
    wire_answer(&mut one, first_id, Bytes::from_static(b"1")).await;
    for (call, answer) in [(first, b"1"), (second, b"2"), (third, b"3")] {
        assert_eq!(&call.await.unwrap().unwrap()[..], answer);
    }
    for payload in [&b"fourth"[..], b"fifth"] {
        let answered = call(payload);
        let id = request_id(one.next().await, payload);
        let payload = Bytes::from_static(payload);
        wire_answer(&mut one, id, payload.clone()).await;
        assert_eq!(answered.await.unwrap().unwrap(), payload);
    }
}

/// A multiplexed stream the responder resets fails its own calls only: the other stream goes on
/// serving, and calls that overlap again open a new stream in its place.
#[tokio::test]
async fn a_reset_stream_fails_only_its_calls_and_is_opened_again() {
    let (a, raw) = caller_on_two_streams().await;
    let call = |payload| spawn_call(&a, raw.addr, payload);
    let [(first, first_id, mut one), (second, _, mut two)] =
        a_call_on_each_stream(&raw, call).await;
    two.send.reset(code::UNAVAILABLE.into()).unwrap();
    assert_eq!(
        second.await.unwrap(),
        Err(RequestError::Refused(code::UNAVAILABLE.into()))
    );
    wire_answer(&mut one, first_id, Bytes::from_static(b"1")).await;
    assert_eq!(&first.await.unwrap().unwrap()[..], b"1");
    let third = call(b"third");
    let third_id = request_id(one.next().await, b"third");
    let fourth = call(b"fourth");
    let mut reopened = raw.accept_mux().await;
    let fourth_id = request_id(reopened.next().await, b"fourth");
    wire_answer(&mut reopened, fourth_id, Bytes::from_static(b"4")).await;
    wire_answer(&mut one, third_id, Bytes::from_static(b"3")).await;
    assert_eq!(&fourth.await.unwrap().unwrap()[..], b"4");
    assert_eq!(&third.await.unwrap().unwrap()[..], b"3");
}

/// Two overlapping small calls would spread over two multiplexed streams, and the second cannot
/// open: it goes on the open stream instead of waiting out its deadline for room.
#[tokio::test]
async fn a_call_does_not_wait_for_a_stream_the_peer_has_no_room_for() {
    let crowded = Crowded::new().await;
    let small: Vec<_> = (0..2u8)
        .map(|i| crowded.call(Bytes::from(vec![i]), Duration::from_secs(2)))
        .collect();
    for (i, call) in small.into_iter().enumerate() {
        assert_eq!(
            call.await.unwrap(),
            Ok(Bytes::from(vec![i as u8])),
            "call {i}"
        );
    }
}

/// A caller limits its own large requests as a responder configured like it does (4 in flight),
/// so 20 of them cannot take the 21 streams such a responder allows, and the first small call
/// still opens a multiplexed stream at once.
#[tokio::test]
async fn large_requests_leave_a_like_configured_peer_room_for_the_multiplexed_streams() {
    let mut pair = Crowded::pair(4).await;
    let large: Vec<_> = (0..20)
        .map(|_| pair.call(vec![3u8; 80 << 10].into(), Duration::from_secs(30)))
        .collect();
    for _ in 0..4 {
        let request = within(Duration::from_secs(10), &mut pair.large).await;
        pair.held.push(request);
    }
    let small = pair.call(Bytes::from_static(b"small"), Duration::from_secs(2));
    assert_eq!(small.await.unwrap(), Ok(Bytes::from_static(b"small")));
    assert!(
        pair.large.try_recv().is_err(),
        "a fifth large request went out"
    );
    large.iter().for_each(|call| call.abort());
}

/// A large request that waited for a stream tells the responder the time left when it is
/// written, not the time left when it was made.
#[tokio::test]
async fn a_request_that_waits_for_a_stream_carries_the_time_left_after_the_wait() {
    let mut crowded = Crowded::new().await;
    let waiting = crowded.call(vec![2u8; 80 << 10].into(), Duration::from_secs(3));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let request = crowded.answer_until_one_arrives().await;
    assert_eq!(request.payload[0], 2);
    let remaining = request
        .deadline
        .saturating_duration_since(tokio::time::Instant::now());
    assert!(remaining <= Duration::from_millis(2100), "{remaining:?}");
    request.respond(Bytes::from_static(b"ok")).await.unwrap();
    assert_eq!(waiting.await.unwrap(), Ok(Bytes::from_static(b"ok")));
}

/// A caller, and a responder that allows 4 requests in flight and so 21 streams (the hello's
/// among them): one multiplexed stream is open, and 19 large requests on streams of their own,
/// held by the test, take every other. The responder echoes small requests and hands the large
/// ones to the test.
struct Crowded {
    a: Node,
    to: foundation_transport::NodeAddr,
    held: Vec<foundation_transport::IncomingRequest>,
    large: tokio::sync::mpsc::Receiver<foundation_transport::IncomingRequest>,
}

impl Crowded {
    /// The caller, with `caller_limit` requests in flight, and the responder, before any call.
    async fn pair(caller_limit: u32) -> Crowded {
        // Held requests send nothing, and with sealed membership nothing else keeps the
        // connection from idling out.
        let config = TransportConfig {
            idle_timeout: Duration::from_secs(20),
            ..fast_config()
        };
        let with_limit = |max_concurrent_requests| TransportConfig {
            max_concurrent_requests,
            ..config.clone()
        };
        let a = node_with("orders", &secret(SECRET), with_limit(caller_limit)).await;
        let b = node_with("orders", &secret(SECRET), with_limit(4)).await;
        let to = b.endpoint.local();
        let (tx, large) = tokio::sync::mpsc::channel(64);
        tokio::spawn(echo_small(b, tx));
        Crowded {
            a,
            to,
            held: Vec::new(),
            large,
        }
    }

    async fn new() -> Crowded {
        let mut crowded = Crowded::pair(TransportConfig::default().max_concurrent_requests).await;
        let first = crowded.call(
            Bytes::from_static(b"opens a stream"),
            Duration::from_secs(5),
        );
        assert!(first.await.unwrap().is_ok());
        for _ in 0..19 {
            crowded.call(vec![1u8; 80 << 10].into(), Duration::from_secs(30));
        }
        for _ in 0..19 {
            let request = within(Duration::from_secs(10), &mut crowded.large).await;
            crowded.held.push(request);
        }
        crowded
    }

    /// Answers held requests, freeing their streams, until another large request arrives.
    /// (The first answered does not always free a stream for the caller at once.)
    async fn answer_until_one_arrives(&mut self) -> foundation_transport::IncomingRequest {
        while let Some(held) = self.held.pop() {
            held.respond(Bytes::new()).await.unwrap();
            let next = tokio::time::timeout(Duration::from_millis(200), self.large.recv()).await;
            if let Ok(Some(request)) = next {
                return request;
            }
        }
        panic!("no large request arrived with every stream free");
    }

    fn call(
        &self,
        payload: Bytes,
        deadline: Duration,
    ) -> tokio::task::JoinHandle<Result<Bytes, RequestError>> {
        let (endpoint, to) = (self.a.endpoint.clone(), self.to);
        tokio::spawn(async move { endpoint.request(to, payload, deadline).await })
    }
}

async fn echo_small(
    mut b: Node,
    large: tokio::sync::mpsc::Sender<foundation_transport::IncomingRequest>,
) {
    while let Some(request) = b.inbox.requests.recv().await {
        if request.payload.len() > foundation_transport::rpc::MUX_REQUEST_MAX {
            let _ = large.send(request).await;
            continue;
        }
        let reply = request.payload.clone();
        let _ = request.respond(reply).await;
    }
}

/// A node that spreads its calls over 2 streams, and a hand-driven peer for it to call.
async fn caller_on_two_streams() -> (Node, RawPeer) {
    let a = node_with(
        "orders",
        &secret(SECRET),
        TransportConfig {
            rpc_streams: 2,
            ..fast_config()
        },
    )
    .await;
    let raw = RawPeer::connect(&a).await;
    (a, raw)
}

type Call = tokio::task::JoinHandle<Result<Bytes, RequestError>>;

/// Calls "first", which opens stream one, then "second", which overlaps it and so opens stream
/// two: each call with its id and the stream it came on.
async fn a_call_on_each_stream(
    raw: &RawPeer,
    call: impl Fn(&'static [u8]) -> Call,
) -> [(Call, u64, common::raw::MuxWire); 2] {
    let first = call(b"first");
    let mut one = raw.accept_mux().await;
    let first_id = request_id(one.next().await, b"first");
    let second = call(b"second");
    let mut two = raw.accept_mux().await;
    let second_id = request_id(two.next().await, b"second");
    [(first, first_id, one), (second, second_id, two)]
}

fn spawn_call(a: &Node, to: foundation_transport::NodeAddr, payload: &'static [u8]) -> Call {
    let endpoint = a.endpoint.clone();
    tokio::spawn(async move {
        endpoint
            .request(to, Bytes::from_static(payload), Duration::from_secs(5))
            .await
    })
}

fn request_id(frame: MuxFrame, expected: &[u8]) -> u64 {
    match frame {
        MuxFrame::Request { id, payload, .. } if payload == expected => id,
        other => panic!("expected the request {expected:?}, got {other:?}"),
    }
}

async fn wire_answer(wire: &mut common::raw::MuxWire, id: u64, payload: Bytes) {
    wire.write(&MuxFrame::Response { id, payload }).await;
}

/// Answers worth more than the stream's 16 MiB window, all queued at once: the responder's
/// writes block on flow control and a task waits for the window; every answer still arrives
/// whole at its own caller, and calls made afterwards (written directly again) are answered.
#[tokio::test]
async fn answers_past_the_stream_window_wait_for_it_and_arrive_whole() {
    const CALLS: usize = 24;
    const ANSWER: usize = 1 << 20;
    let a = node("orders").await;
    let mut b = node("orders").await;
    let to = b.endpoint.local();
    let server = tokio::spawn(async move {
        let mut held = Vec::new();
        while held.len() < CALLS {
            held.push(within(Duration::from_secs(10), &mut b.inbox.requests).await);
        }
        for request in held {
            let fill = request.payload[0];
            request.respond(vec![fill; ANSWER].into()).await.unwrap();
        }
        let small = within(Duration::from_secs(10), &mut b.inbox.requests).await;
        let payload = small.payload.clone();
        small.respond(payload).await.unwrap();
        b
    });
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..CALLS {
        let endpoint = a.endpoint.clone();
        calls.spawn(async move {
            let fill = i as u8;
            let answer = endpoint
                .request(to, vec![fill].into(), Duration::from_secs(20))
                .await
                .unwrap();
            assert_eq!(answer.len(), ANSWER, "call {i}");
            assert!(
                answer.iter().all(|b| *b == fill),
                "call {i} got other bytes"
            );
        });
    }
    while let Some(done) = calls.join_next().await {
        done.unwrap();
    }
    let echo = a
        .endpoint
        .request(to, Bytes::from_static(b"after"), Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(&echo[..], b"after");
    server.await.unwrap();
}

#[tokio::test]
async fn a_call_past_its_deadline_fails_and_its_handler_sees_the_cancellation() {
    let a = node("orders").await;
    let mut b = node("orders").await;
    let to = b.endpoint.local();
    let (a_metrics, b_metrics) = (a.endpoint.metrics().clone(), b.endpoint.metrics().clone());
    let handler = tokio::spawn(async move {
        let request = within(Duration::from_secs(5), &mut b.inbox.requests).await;
        let remaining = request
            .deadline
            .saturating_duration_since(tokio::time::Instant::now());
        assert!(
            remaining <= Duration::from_millis(200) && remaining > Duration::ZERO,
            "deadline carried: {remaining:?}"
        );
        let (.., responder) = request.into_parts();
        assert!(!responder.is_cancelled());
        tokio::time::timeout(Duration::from_secs(5), responder.cancelled())
            .await
            .expect("the handler learns the caller gave up");
        assert!(responder.is_cancelled());
        // Answering a call whose caller is gone sends nothing.
        responder
            .respond(Bytes::from_static(b"too late"))
            .await
            .unwrap();
        b
    });
    let result = a
        .endpoint
        .request(to, Bytes::from_static(b"slow"), Duration::from_millis(200))
        .await;
    assert_eq!(result, Err(RequestError::DeadlineExceeded));
    let _b = handler.await.unwrap();
    assert_eq!(a_metrics.rpc_events(RpcEvent::CancelSent), 1);
    assert_eq!(b_metrics.rpc_events(RpcEvent::CancelReceived), 1);
    assert_eq!(a_metrics.rpc_events(RpcEvent::LateReply), 0);
}

#[tokio::test]
async fn dropping_a_call_cancels_it_at_the_handler_and_the_stream_keeps_serving() {
    let a = node("orders").await;
    let mut b = node("orders").await;
    let to = b.endpoint.local();
    let endpoint = a.endpoint.clone();
    let call = tokio::spawn(async move {
        endpoint
            .request(
                to,
                Bytes::from_static(b"abandoned"),
                Duration::from_secs(30),
            )
            .await
    });
    let request = within(Duration::from_secs(5), &mut b.inbox.requests).await;
    call.abort();
    let (.., responder) = request.into_parts();
    tokio::time::timeout(Duration::from_secs(5), responder.cancelled())
        .await
        .expect("the handler learns the call was dropped");

    // The same stream carries the next call.
    let next = tokio::spawn({
        let endpoint = a.endpoint.clone();
        async move {
            endpoint
                .request(to, Bytes::from_static(b"next"), Duration::from_secs(5))
                .await
        }
    });
    let request = within(Duration::from_secs(5), &mut b.inbox.requests).await;
    assert_eq!(&request.payload[..], b"next");
    request
        .respond(Bytes::from_static(b"served"))
        .await
        .unwrap();
    assert_eq!(&next.await.unwrap().unwrap()[..], b"served");
}

#[tokio::test]
async fn a_responder_dropped_without_answering_reports_no_response() {
    let a = node("orders").await;
    let mut b = node("orders").await;
    let to = b.endpoint.local();
    let dropper = tokio::spawn(async move {
        drop(within(Duration::from_secs(5), &mut b.inbox.requests).await);
        b
    });
    let result = a
        .endpoint
        .request(to, Bytes::from_static(b"?"), Duration::from_secs(5))
        .await;
    assert_eq!(result, Err(RequestError::NoResponse));
    let _ = dropper.await;
}

#[tokio::test]
async fn a_caller_past_its_in_flight_limit_gets_a_clear_error_and_recovers() {
    let a = node_with(
        "orders",
        &secret(SECRET),
        TransportConfig {
            max_concurrent_requests: 4,
            ..fast_config()
        },
    )
    .await;
    let mut b = node("orders").await;
    let to = b.endpoint.local();
    let mut calls = Vec::new();
    for i in 0..4u8 {
        let endpoint = a.endpoint.clone();
        calls.push(tokio::spawn(async move {
            endpoint
                .request(to, Bytes::from(vec![i]), Duration::from_secs(10))
                .await
        }));
    }
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(within(Duration::from_secs(5), &mut b.inbox.requests).await);
    }
    let fifth = a
        .endpoint
        .request(to, Bytes::from_static(b"fifth"), Duration::from_secs(10))
        .await;
    assert_eq!(fifth, Err(RequestError::InFlightLimit { limit: 4 }));
    assert!(fifth
        .unwrap_err()
        .to_string()
        .contains("4 requests already in flight"));
    assert_eq!(a.endpoint.metrics().rpc_events(RpcEvent::InFlightLimit), 1);
    for request in held {
        let reply = request.payload.clone();
        request.respond(reply).await.unwrap();
    }
    for (i, call) in calls.into_iter().enumerate() {
        assert_eq!(&call.await.unwrap().unwrap()[..], &[i as u8]);
    }
    let server = tokio::spawn(async move {
        let request = within(Duration::from_secs(5), &mut b.inbox.requests).await;
        request
            .respond(Bytes::from_static(b"room again"))
            .await
            .unwrap();
        b
    });
    let sixth = a
        .endpoint
        .request(to, Bytes::from_static(b"sixth"), Duration::from_secs(5))
        .await;
    assert_eq!(&sixth.unwrap()[..], b"room again");
    let _ = server.await;
}

#[tokio::test]
async fn a_responder_refuses_calls_past_its_in_flight_limit() {
    let a = node("orders").await;
    let mut b = node_with(
        "orders",
        &secret(SECRET),
        TransportConfig {
            max_concurrent_requests: 2,
            ..fast_config()
        },
    )
    .await;
    let to = b.endpoint.local();
    let mut calls = Vec::new();
    for _ in 0..2 {
        let endpoint = a.endpoint.clone();
        calls.push(tokio::spawn(async move {
            endpoint
                .request(to, Bytes::from_static(b"held"), Duration::from_secs(10))
                .await
        }));
    }
    let first = within(Duration::from_secs(5), &mut b.inbox.requests).await;
    let second = within(Duration::from_secs(5), &mut b.inbox.requests).await;
    let third = a
        .endpoint
        .request(to, Bytes::from_static(b"third"), Duration::from_secs(10))
        .await;
    assert_eq!(
        third,
        Err(RequestError::Refused(code::TOO_MANY_IN_FLIGHT.into()))
    );
    assert_eq!(b.endpoint.metrics().rpc_events(RpcEvent::InFlightLimit), 1);
    first.respond(Bytes::new()).await.unwrap();
    second.respond(Bytes::new()).await.unwrap();
    for call in calls {
        assert_eq!(call.await.unwrap(), Ok(Bytes::new()));
    }
}

/// A hand-driven responder answers a call only after the caller gave up (it waits for the
/// cancel frame), and answers an id that was never asked: both answers are counted as late
/// and dropped, and the next call on the same stream still gets its own answer.
#[tokio::test]
async fn late_replies_are_counted_and_dropped() {
    let a = node("orders").await;
    let raw = RawPeer::connect(&a).await;
    let metrics = a.endpoint.metrics().clone();
    let to = raw.addr;
    let endpoint = a.endpoint.clone();
    let caller = tokio::spawn(async move {
        let given_up = endpoint
            .request(to, Bytes::from_static(b"first"), Duration::from_millis(150))
            .await;
        assert_eq!(given_up, Err(RequestError::DeadlineExceeded));
        endpoint
            .request(to, Bytes::from_static(b"second"), Duration::from_secs(5))
            .await
    });
    let mut wire = raw.accept_mux().await;
    let MuxFrame::Request { id: first, .. } = wire.next().await else {
        panic!("expected a request");
    };
    assert_eq!(wire.next().await, MuxFrame::Cancel { id: first });
    wire.write(&MuxFrame::Response {
        id: first,
        payload: Bytes::from_static(b"late"),
    })
    .await;
    wire.write(&MuxFrame::Response {
        id: 999_999,
        payload: Bytes::from_static(b"never asked"),
    })
    .await;
    let MuxFrame::Request {
        id: second,
        payload,
        ..
    } = wire.next().await
    else {
        panic!("expected a request");
    };
    assert_ne!(second, first);
    assert_eq!(&payload[..], b"second");
    wire.write(&MuxFrame::Response {
        id: second,
        payload: Bytes::from_static(b"on time"),
    })
    .await;
    assert_eq!(&caller.await.unwrap().unwrap()[..], b"on time");
    assert_eq!(metrics.rpc_events(RpcEvent::LateReply), 2);
}

#[tokio::test]
async fn requests_over_the_multiplexed_limit_still_go_through_on_their_own_stream() {
    let a = node("orders").await;
    let mut b = node("orders").await;
    let to = b.endpoint.local();
    let server = tokio::spawn(async move {
        let request = within(Duration::from_secs(5), &mut b.inbox.requests).await;
        let len = request.payload.len() as u32;
        request
            .respond(Bytes::from(len.to_be_bytes().to_vec()))
            .await
            .unwrap();
        b
    });
    let big = Bytes::from(vec![7u8; foundation_transport::rpc::MUX_REQUEST_MAX + 1]);
    let answer = a
        .endpoint
        .request(to, big, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(
        u32::from_be_bytes(answer[..].try_into().unwrap()) as usize,
        foundation_transport::rpc::MUX_REQUEST_MAX + 1
    );
    let _ = server.await;
}

/// A handler set with `serve_requests` takes every request in the task that read it, small
/// (multiplexed) and large (a stream of its own) alike, and nothing reaches the queue. It
/// answers the small ones before returning, while the reader holds their answers for the end
/// of its read: were they not written then, the calls would time out.
#[tokio::test]
async fn a_request_handler_takes_requests_where_they_are_read_and_its_answers_leave() {
    const CALLS: usize = 200;
    let a = node("orders").await;
    let mut b = node("orders").await;
    let to = b.endpoint.local();
    let handler: foundation_transport::RequestHandler = std::sync::Arc::new(|request| {
        let reply = reversed(&request.payload);
        let mut answer = Box::pin(request.respond(reply));
        let mut now = std::task::Context::from_waker(std::task::Waker::noop());
        if answer.as_mut().poll(&mut now).is_pending() {
            tokio::spawn(answer);
        }
    });
    assert!(b.endpoint.serve_requests(handler.clone()));
    assert!(
        !b.endpoint.serve_requests(handler),
        "a second handler is refused"
    );
    let big = vec![9u8; foundation_transport::rpc::MUX_REQUEST_MAX + 1];
    let payloads = (0..CALLS).map(numbered).chain([big]);
    calls_answered_reversed(&a.endpoint, to, payloads).await;
    assert!(
        b.inbox.requests.try_recv().is_err(),
        "a request reached the queue"
    );
}

/// Closing lets go of the request handler and ends the inbox's queues: a handler holding a
/// clone of its own endpoint (as one that calls other nodes does) would otherwise keep the
/// endpoint, its tasks and its UDP socket alive after the close, and the application's
/// readers of the queues would wait for ever.
#[tokio::test]
async fn closing_drops_the_request_handler_and_ends_the_queues() {
    let a = node("orders").await;
    let mut b = node("orders").await;
    let to = b.endpoint.local();
    let own = b.endpoint.clone();
    let handler: foundation_transport::RequestHandler = std::sync::Arc::new(move |request| {
        let reply = own.local().addr.to_string().into_bytes();
        tokio::spawn(request.respond(reply.into()));
    });
    assert!(b.endpoint.serve_requests(handler));
    let answer = a
        .endpoint
        .request(to, Bytes::from_static(b"where"), Duration::from_secs(5))
        .await
        .expect("answered");
    assert_eq!(answer, to.addr.to_string().as_bytes());
    let metrics = std::sync::Arc::downgrade(b.endpoint.metrics());
    b.endpoint.close().await;
    assert!(
        !b.endpoint.serve_requests(std::sync::Arc::new(|_| {})),
        "a closed endpoint takes no handler"
    );
    let ended = tokio::time::timeout(Duration::from_secs(5), b.inbox.events.recv()).await;
    assert!(
        matches!(ended, Ok(None)),
        "the events queue ends at the close"
    );
    drop(b);
    let start = tokio::time::Instant::now();
    while metrics.strong_count() > 0 || std::net::UdpSocket::bind(to.addr).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the closed endpoint is still held ({} strong) or its port still bound",
            metrics.strong_count()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    a.endpoint.close().await;
}

/// A caller that never pauses must not have every answer held back: the responder writes the
/// answers given during a read each time that read has taken `HELD_READ_MAX` (256 KiB) of
/// requests, not only once the stream has nothing more ready — so an answer waits behind less
/// than 256 KiB and one 64 KiB chunk of requests read after its own. Here 2.3 times the cap is
/// waiting on one stream when the responder's first handler returns (it blocks for 1.5 s, for
/// it all to arrive), so without the cap the reader takes it all in one read; the handler of
/// the last request then blocks the reader until the caller has an answer, which only a
/// write before the read's end can have brought (without the cap: 10 of 10 runs fail).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn answers_leave_every_held_read_cap_while_requests_keep_coming() {
    const SIZE: usize = 1000;
    let config = TransportConfig {
        rpc_streams: 1,
        idle_timeout: Duration::from_secs(20),
        ..fast_config()
    };
    let a = node_with("orders", &secret(SECRET), config.clone()).await;
    let b = node_with("orders", &secret(SECRET), config).await;
    let to = b.endpoint.local();
    let answered = Arc::new(AtomicUsize::new(0));
    let answer_seen = Arc::new(AtomicBool::new(false));
    let handler = first_blocks_last_waits(answered.clone(), answer_seen.clone());
    assert!(b.endpoint.serve_requests(handler));
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..HELD_CALLS {
        let (endpoint, answered) = (a.endpoint.clone(), answered.clone());
        calls.spawn(async move {
            let answer = endpoint.request(to, vec![7u8; SIZE].into(), Duration::from_secs(15));
            answer.await.expect("answered");
            answered.fetch_add(1, Ordering::SeqCst);
        });
    }
    while let Some(done) = calls.join_next().await {
        done.unwrap();
    }
    assert!(
        answer_seen.load(Ordering::SeqCst),
        "no answer left before the last of {HELD_CALLS} requests was taken"
    );
}

/// Calls of the held-read test.
const HELD_CALLS: usize = 600;

/// Answers every request where it is read (so the answer joins the read's held ones); the
/// first blocks 1.5 s, the last until an answer has reached the caller (`seen` says whether
/// one did within 5 s).
fn first_blocks_last_waits(
    answered: Arc<AtomicUsize>,
    seen: Arc<AtomicBool>,
) -> foundation_transport::RequestHandler {
    let taken = AtomicUsize::new(0);
    Arc::new(move |request| {
        // Blocking in place hands this worker's queued tasks (the connection's driver, woken
        // by the reader's writes) to another thread, so they run meanwhile.
        match taken.fetch_add(1, Ordering::SeqCst) + 1 {
            1 => tokio::task::block_in_place(|| std::thread::sleep(Duration::from_millis(1500))),
            HELD_CALLS => {
                let got = tokio::task::block_in_place(|| waited_for(&answered));
                seen.store(got, Ordering::SeqCst);
            }
            _ => {}
        }
        let mut answer = Box::pin(request.respond(Bytes::from_static(b"ok")));
        let mut now = std::task::Context::from_waker(std::task::Waker::noop());
        if answer.as_mut().poll(&mut now).is_pending() {
            tokio::spawn(answer);
        }
    })
}

/// Whether `answered` turns non-zero within 5 s, blocking this thread (the responder's reader)
/// meanwhile.
fn waited_for(answered: &AtomicUsize) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        if answered.load(Ordering::SeqCst) > 0 {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

/// A peer lets a caller open as many streams as its own `max_concurrent_requests` sizes
/// (large requests on streams of their own, plus the multiplexed ones and the hello), so a
/// caller whose own limit is higher can fill them all with large requests. Its first small
/// call must still find a multiplexed stream, not wait for one of the large requests to end:
/// here 24 large requests are held by a peer allowing 2 at its own setting (19 streams in all)
/// until the small call is answered, or 5 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_first_small_call_is_not_held_up_by_large_ones_filling_a_smaller_peers_streams() {
    const LARGE: usize = 24;
    let a = node("orders").await;
    let lower = TransportConfig {
        max_concurrent_requests: 2,
        idle_timeout: Duration::from_secs(20),
        ..fast_config()
    };
    let b = node_with("orders", &secret(SECRET), lower).await;
    let to = b.endpoint.local();
    let (release, held) = tokio::sync::watch::channel(false);
    let taken = Arc::new(AtomicUsize::new(0));
    assert!(b
        .endpoint
        .serve_requests(holding_large(held, taken.clone())));
    let mut large = tokio::task::JoinSet::new();
    for _ in 0..LARGE {
        let endpoint = a.endpoint.clone();
        let payload = vec![1u8; foundation_transport::rpc::MUX_REQUEST_MAX + 1];
        large.spawn(async move {
            let answer = endpoint.request(to, payload.into(), Duration::from_secs(20));
            answer.await.map(|_| ())
        });
    }
    let start = tokio::time::Instant::now();
    while taken.load(Ordering::SeqCst) < 17 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "large requests arrive"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let bound = tokio::spawn({
        let release = release.clone();
        async move {
            tokio::time::sleep(Duration::from_secs(5)).await;
            release.send_replace(true);
        }
    });
    let small = a
        .endpoint
        .request(to, Bytes::from_static(b"small"), Duration::from_secs(15))
        .await;
    let held_meanwhile = !release.send_replace(true);
    bound.abort();
    assert_eq!(small.expect("the small call is answered"), &b"small"[..]);
    assert!(
        held_meanwhile,
        "the small call waited for the large ones to end (answered after they were let go)"
    );
    while let Some(done) = large.join_next().await {
        done.unwrap().expect("every large request is answered");
    }
}

/// Echoes small requests at once; holds large ones (counting them in `taken`) until `held`
/// turns true.
fn holding_large(
    held: tokio::sync::watch::Receiver<bool>,
    taken: Arc<AtomicUsize>,
) -> foundation_transport::RequestHandler {
    Arc::new(move |request| {
        let large = request.payload.len() > foundation_transport::rpc::MUX_REQUEST_MAX;
        if large {
            taken.fetch_add(1, Ordering::SeqCst);
        }
        let mut held = held.clone();
        tokio::spawn(async move {
            if large {
                let _ = held.wait_for(|released| *released).await;
            }
            let payload = request.payload.clone();
            let _ = request.respond(payload).await;
        });
    })
}

fn numbered(i: usize) -> Vec<u8> {
    format!("call number {i}").into_bytes()
}

/// Makes a call with each payload at once and checks each gets its own payload reversed back:
/// a caller that got another call's answer would see it.
async fn calls_answered_reversed(
    endpoint: &foundation_transport::Endpoint,
    to: foundation_transport::NodeAddr,
    payloads: impl Iterator<Item = Vec<u8>>,
) {
    let mut calls = tokio::task::JoinSet::new();
    for (i, payload) in payloads.enumerate() {
        let endpoint = endpoint.clone();
        calls.spawn(async move {
            let answer = endpoint
                .request(to, payload.clone().into(), Duration::from_secs(10))
                .await
                .unwrap();
            let mut expected = payload;
            expected.reverse();
            assert!(answer[..] == expected[..], "call {i} got another answer");
        });
    }
    while let Some(done) = calls.join_next().await {
        done.unwrap();
    }
}

/// A responder that stops reading its multiplexed stream (its reader stuck, the connection
/// still up): each call times out and frees its place in flight, but its request stays queued
/// at the caller. Once the queue holds more than every call in flight could, the caller refuses
/// new calls on that stream at once, as not delivered, instead of queueing them without end.
#[tokio::test]
async fn calls_to_a_responder_that_stopped_reading_are_refused_once_their_queue_is_full() {
    // At most 8 calls of 64 KiB in flight: 512 KiB queued at most while the responder reads.
    // The raw peer takes 1.25 MB (quinn's default window) before it stops the node's writes.
    const CALLS: usize = 60;
    let caller = node_with(
        "orders",
        &secret(SECRET),
        TransportConfig {
            max_concurrent_requests: 8,
            ..fast_config()
        },
    )
    .await;
    let raw = RawPeer::connect(&caller).await;
    let payload = Bytes::from(vec![5u8; 64 << 10]);
    let first = caller
        .endpoint
        .request(raw.addr, payload.clone(), Duration::from_millis(20));
    let (accepted, first) = tokio::join!(raw.accept_mux(), first);
    assert_eq!(first, Err(RequestError::DeadlineExceeded));
    let _wire = accepted; // never read past its header

    let mut timed_out = 1;
    let mut refused = 0;
    for _ in 1..CALLS {
        let call = caller
            .endpoint
            .request(raw.addr, payload.clone(), Duration::from_millis(20));
        match call.await {
            Err(RequestError::DeadlineExceeded) => timed_out += 1,
            Err(RequestError::Unreachable(_)) => refused += 1,
            other => panic!("unexpected end of a call: {other:?}"),
        }
    }
    // 1.25 MB taken by the peer and 512 KiB queued: about 28 calls.
    assert!(
        timed_out < CALLS / 2 && refused == CALLS - timed_out,
        "{timed_out} calls queued and timed out, {refused} refused"
    );
    assert_eq!(
        caller
            .endpoint
            .metrics()
            .rpc_events(RpcEvent::RequestsBackedUp),
        refused as u64
    );
}
