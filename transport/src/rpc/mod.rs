//! Request/response, with the caller's deadline carried to the responder.
//!
//! Requests of at most [`MUX_REQUEST_MAX`] bytes (64 KiB) share a few long-lived bidirectional
//! streams per connection (`TransportConfig::rpc_streams`), each call with an id (`mux.rs`,
//! frames in [`codec`]): no stream to open per call, and many calls' frames leave in one write. A caller that gives up sends a cancel frame,
//! which the handler sees through [`Responder::cancelled`]. Responses may be as large as the rpc
//! limit; a large one holds up the answers queued behind it on that stream.
//!
//! Larger requests get a bidirectional stream each, so they never hold up the small ones: the
//! stream carries the stream header, the remaining deadline in milliseconds (u32), and one
//! frame; the response is one frame, then the stream finishes. A responder that drops the
//! request without answering finishes the stream empty (or, multiplexed, sends a "no response"
//! frame), which the caller reports as [`RequestError::NoResponse`].
//!
//! The multiplexed stream is new in this version: older nodes refuse it, so nodes of this
//! version do not make small calls to older ones. A node that opens several of them is served
//! by a node that opens one: each is served on its own.

pub mod codec;
pub(crate) mod mux;
mod outbox;

use std::time::Duration;

use bytes::Bytes;
use quinn::{RecvStream, SendStream};
use tokio::time::Instant;

use foundation_core::Channel;

use crate::channel::priority;
use crate::endpoint::Shared;
use crate::error::{RequestError, SendError};
use crate::frame::{decode_message, encode_frame, FrameDecoder, FrameError, StreamHeader};
use crate::inbox::RequestHandler;
use crate::metrics::{Direction, TransportMetrics};
use crate::peer::Live;
use crate::stream_io::{read_frame, read_u32, ReadError};
use crate::wire::code;
pub use codec::MUX_REQUEST_MAX;
use foundation_core::identity::NodeId;
pub use mux::ANSWERS_WAIT_MAX;

/// A request from a peer, waiting for [`respond`](IncomingRequest::respond).
#[derive(Debug)]
pub struct IncomingRequest {
    /// The caller.
    pub from: NodeId,
    /// The request payload.
    pub payload: Bytes,
    /// When the caller stops waiting: work past it is wasted.
    pub deadline: Instant,
    responder: Responder,
}

impl IncomingRequest {
    /// Decodes the payload as a typed message.
    pub fn decode<T: serde::de::DeserializeOwned>(&self) -> Result<T, FrameError> {
        decode_message(&self.payload)
    }

    /// Sends the response.
    pub async fn respond(self, response: Bytes) -> Result<(), SendError> {
        self.responder.respond(response).await
    }

    /// Splits the request from its responder, to answer from elsewhere.
    pub fn into_parts(self) -> (NodeId, Bytes, Instant, Responder) {
        (self.from, self.payload, self.deadline, self.responder)
    }
}

/// The half of a request that sends its response. Dropped without responding, it tells the
/// caller there will be no response.
#[derive(Debug)]
pub struct Responder {
    pub(crate) inner: ResponderInner,
}

#[derive(Debug)]
pub(crate) enum ResponderInner {
    /// A request that came on a stream of its own.
    Stream {
        send: SendStream,
        max: usize,
        metrics: std::sync::Arc<TransportMetrics>,
    },
    /// A request on the connection's multiplexed stream.
    Mux(mux::MuxResponder),
}

impl Responder {
    /// Sends the response. A response to a caller that already gave up is not sent.
    pub async fn respond(self, response: Bytes) -> Result<(), SendError> {
        match self.inner {
            ResponderInner::Mux(mux) => mux.respond(response),
            ResponderInner::Stream {
                mut send,
                max,
                metrics,
            } => {
                let mut out = bytes::BytesMut::new();
                encode_frame(&mut out, &response, max).map_err(|_| SendError::TooLarge {
                    len: response.len(),
                    max,
                })?;
                send.write_chunk(out.freeze())
                    .await
                    .map_err(|e| SendError::ConnectionLost(e.to_string()))?;
                let _ = send.finish();
                metrics.traffic(Channel::Rpc, Direction::Sent, 1, response.len() as u64);
                Ok(())
            }
        }
    }

    /// Resolves when the caller has given up on the request (its deadline passed, or it
    /// dropped the call) or can no longer receive a response (its connection or stream ended).
    /// A handler can race its work against it to stop early.
    pub async fn cancelled(&self) {
        match &self.inner {
            ResponderInner::Mux(mux) => mux.cancelled().await,
            ResponderInner::Stream { send, .. } => {
                let _ = send.stopped().await;
            }
        }
    }

    /// Whether the caller has been seen to give up (see [`cancelled`](Self::cancelled)); only
    /// multiplexed requests learn it before the response is written.
    pub fn is_cancelled(&self) -> bool {
        match &self.inner {
            ResponderInner::Mux(mux) => mux.is_cancelled(),
            ResponderInner::Stream { .. } => false,
        }
    }
}

/// Sends `payload` to the peer on `live` and waits for its response; the caller bounds the time
/// by `deadline` (dropping the future cancels the call).
pub(crate) async fn call(
    shared: &Shared,
    live: &Live,
    payload: &[u8],
    deadline: Instant,
) -> Result<Bytes, RequestError> {
    if payload.len() <= MUX_REQUEST_MAX {
        return mux::call(shared, &live.rpc, &live.conn, payload, deadline).await;
    }
    call_on_own_stream(shared, live, payload, deadline).await
}

/// The time left until `deadline`, for the responder, taken as the request is written: waiting
/// for a stream must not leave the responder thinking it has longer than the caller waits.
fn remaining_ms(deadline: Instant) -> u32 {
    let remaining = deadline.saturating_duration_since(Instant::now());
    u32::try_from(remaining.as_millis()).unwrap_or(u32::MAX)
}

/// Sends a large request on a stream of its own.
async fn call_on_own_stream(
    shared: &Shared,
    live: &Live,
    payload: &[u8],
    deadline: Instant,
) -> Result<Bytes, RequestError> {
    let max = shared.config.limits.rpc;
    live.rpc.keep_one_open(shared, &live.conn).await?;
    // The semaphore is never closed; were it, the call would go ahead uncounted.
    let _stream = live.own_streams.acquire().await;
    let (mut send, mut recv) = live
        .conn
        .open_bi()
        .await
        .map_err(|e| RequestError::Unreachable(e.to_string()))?;
    let _ = send.set_priority(priority(Channel::Rpc));
    let mut out = bytes::BytesMut::with_capacity(payload.len() + 16);
    out.extend_from_slice(&StreamHeader::for_channel(Channel::Rpc).encode());
    out.extend_from_slice(&remaining_ms(deadline).to_be_bytes());
    encode_frame(&mut out, payload, max).map_err(|_| RequestError::TooLarge {
        len: payload.len(),
        max,
    })?;
    send.write_chunk(out.freeze())
        .await
        .map_err(|e| RequestError::Unreachable(e.to_string()))?;
    let _ = send.finish();
    shared
        .metrics
        .traffic(Channel::Rpc, Direction::Sent, 1, payload.len() as u64);
    let response = read_response(&mut recv, max).await?;
    shared
        .metrics
        .traffic(Channel::Rpc, Direction::Received, 1, response.len() as u64);
    Ok(response)
}

async fn read_response(recv: &mut RecvStream, max: usize) -> Result<Bytes, RequestError> {
    let limit = max + crate::frame::FRAME_PREFIX_LEN;
    let bytes = recv.read_to_end(limit).await.map_err(|e| match e {
        quinn::ReadToEndError::TooLong => RequestError::TooLarge {
            len: limit + 1,
            max,
        },
        quinn::ReadToEndError::Read(quinn::ReadError::Reset(code)) => {
            RequestError::Refused(code.into_inner())
        }
        quinn::ReadToEndError::Read(e) => RequestError::Unreachable(e.to_string()),
    })?;
    if bytes.is_empty() {
        return Err(RequestError::NoResponse);
    }
    let mut decoder = FrameDecoder::new(max);
    decoder.extend(&bytes);
    let frame = decoder.next_frame()?.ok_or(FrameError::Truncated {
        buffered: bytes.len(),
    })?;
    decoder.finish()?;
    Ok(frame)
}

/// Reads a request off an accepted stream of its own and hands it to the application.
pub(crate) async fn serve(
    shared: &Shared,
    from: NodeId,
    send: SendStream,
    recv: &mut RecvStream,
) -> Result<(), ReadError> {
    let deadline_ms = read_u32(recv).await?;
    let deadline = Instant::now() + Duration::from_millis(deadline_ms.into());
    let payload = read_frame(recv, shared.config.limits.rpc).await?;
    shared
        .metrics
        .traffic(Channel::Rpc, Direction::Received, 1, payload.len() as u64);
    let responder = Responder {
        inner: ResponderInner::Stream {
            send,
            max: shared.config.limits.rpc,
            metrics: shared.metrics.clone(),
        },
    };
    deliver(
        shared,
        &mut None,
        IncomingRequest {
            from,
            payload,
            deadline,
            responder,
        },
    );
    Ok(())
}

/// Hands a received request to the application: to its handler in this task if it set one
/// ([`Endpoint::serve_requests`](crate::Endpoint::serve_requests)), else to the queue.
/// `handler` is the reader's copy of the handler, taken on its first request after the handler
/// was set: a stream's reader then takes no lock per request (every reader taking the same
/// lock per request made its cache line travel between cores), and drops its copy when the
/// stream ends, as the endpoint's close ends every stream.
pub(crate) fn deliver(
    shared: &Shared,
    handler: &mut Option<RequestHandler>,
    request: IncomingRequest,
) {
    if handler.is_none() {
        *handler = shared.inbox.handler();
    }
    if let Some(handler) = handler {
        return handler(request);
    }
    let refused = match shared.inbox.senders() {
        Some(inbox) => inbox
            .requests
            .try_send(request)
            .err()
            .map(|e| e.into_inner()),
        None => Some(request),
    };
    if let Some(refused) = refused {
        // The application is not keeping up or not listening: refuse rather than queue forever.
        let (.., responder) = refused.into_parts();
        match responder.inner {
            ResponderInner::Stream { mut send, .. } => {
                let _ = send.reset(code::UNAVAILABLE.into());
            }
            ResponderInner::Mux(mux) => mux.refuse(code::UNAVAILABLE),
        }
    }
}
