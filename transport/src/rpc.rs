//! Request/response: one bidirectional stream per request, so a slow request never blocks
//! another, with the caller's deadline carried to the responder.
//!
//! On the wire, the request stream carries the stream header, the remaining deadline in
//! milliseconds (u32), and one frame; the response is one frame, then the stream finishes.
//! A responder that drops the request without answering finishes the stream empty, which the
//! caller reports as [`RequestError::NoResponse`].

use std::time::Duration;

use bytes::Bytes;
use quinn::{RecvStream, SendStream};
use tokio::time::Instant;

use foundation_core::Channel;

use crate::channel::priority;
use crate::endpoint::Shared;
use crate::error::{RequestError, SendError};
use crate::frame::{decode_message, encode_frame, FrameDecoder, FrameError, StreamHeader};
use crate::metrics::{Direction, TransportMetrics};
use crate::peer::Live;
use crate::stream_io::{read_frame, read_u32, ReadError};
use crate::wire::code;
use foundation_core::identity::NodeId;

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

/// The half of a request that sends its response.
#[derive(Debug)]
pub struct Responder {
    send: SendStream,
    max: usize,
    metrics: std::sync::Arc<TransportMetrics>,
}

impl Responder {
    /// Sends the response and finishes the stream.
    pub async fn respond(mut self, response: Bytes) -> Result<(), SendError> {
        let mut out = bytes::BytesMut::new();
        encode_frame(&mut out, &response, self.max).map_err(|_| SendError::TooLarge {
            len: response.len(),
            max: self.max,
        })?;
        self.send
            .write_chunk(out.freeze())
            .await
            .map_err(|e| SendError::ConnectionLost(e.to_string()))?;
        let _ = self.send.finish();
        self.metrics
            .traffic(Channel::Rpc, Direction::Sent, 1, response.len() as u64);
        Ok(())
    }
}

/// Sends `payload` to the peer on `live` and waits for its response; the caller bounds the time.
pub(crate) async fn call(
    shared: &Shared,
    live: &Live,
    payload: &[u8],
    remaining: Duration,
) -> Result<Bytes, RequestError> {
    let max = shared.config.limits.rpc;
    let (mut send, mut recv) = live
        .conn
        .open_bi()
        .await
        .map_err(|e| RequestError::Unreachable(e.to_string()))?;
    let _ = send.set_priority(priority(Channel::Rpc));
    let mut out = bytes::BytesMut::with_capacity(payload.len() + 16);
    out.extend_from_slice(&StreamHeader::for_channel(Channel::Rpc).encode());
    let deadline_ms = u32::try_from(remaining.as_millis()).unwrap_or(u32::MAX);
    out.extend_from_slice(&deadline_ms.to_be_bytes());
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

/// Reads a request off an accepted stream and hands it to the application.
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
        send,
        max: shared.config.limits.rpc,
        metrics: shared.metrics.clone(),
    };
    let request = IncomingRequest {
        from,
        payload,
        deadline,
        responder,
    };
    if let Err(refused) = shared.inbox.requests.try_send(request) {
        // The application is not keeping up or not listening: refuse rather than queue forever.
        let request = refused.into_inner();
        let (.., mut responder) = request.into_parts();
        let _ = responder.send.reset(code::UNAVAILABLE.into());
    }
    Ok(())
}
