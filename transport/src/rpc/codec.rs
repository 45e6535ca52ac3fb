//! The frames of a multiplexed RPC stream.
//!
//! A multiplexed stream opens with the stream header whose tag is
//! [`RPC_MUX_TAG`](crate::frame::RPC_MUX_TAG); after it, both directions carry length-prefixed
//! frames (the usual 4-byte big-endian length, see [`crate::frame`]) whose body is:
//!
//! ```text
//!   kind: u8 | request id: u64 (big-endian) | rest, by kind
//!   1 request      caller -> responder   deadline in ms: u32, then the payload
//!   2 response     responder -> caller   the payload
//!   3 cancel       caller -> responder   (nothing): the caller gave up
//!   4 no response  responder -> caller   (nothing): the application dropped the request
//!   5 refused      responder -> caller   code: u32 (see `crate::wire::code`)
//! ```
//!
//! A body that does not parse is an error of that one frame: the length prefix still says where
//! the next frame starts, so the stream and the other calls on it go on. Only a length prefix
//! over the limit loses the framing and ends the stream.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::frame::FrameError;

/// Largest request payload carried on the multiplexed stream; larger requests get a stream each
/// so they never hold up the small ones.
pub const MUX_REQUEST_MAX: usize = 64 << 10;

/// Bytes of a frame body before the payload, at most (kind, id, deadline).
pub const MUX_OVERHEAD: usize = 1 + 8 + 4;

const REQUEST: u8 = 1;
const RESPONSE: u8 = 2;
const CANCEL: u8 = 3;
const NO_RESPONSE: u8 = 4;
const REFUSED: u8 = 5;

/// One frame of a multiplexed RPC stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MuxFrame {
    /// A call, with the time the caller will wait for it.
    Request {
        /// Chosen by the caller, unique among its calls in flight on the stream.
        id: u64,
        /// Remaining deadline in milliseconds when the request was sent.
        deadline_ms: u32,
        /// The request.
        payload: Bytes,
    },
    /// The answer to request `id`.
    Response {
        /// The request answered.
        id: u64,
        /// The response.
        payload: Bytes,
    },
    /// The caller stopped waiting for request `id`.
    Cancel {
        /// The request given up.
        id: u64,
    },
    /// The responder's application dropped request `id` without answering.
    NoResponse {
        /// The request dropped.
        id: u64,
    },
    /// The responder refused request `id` without running it.
    Refused {
        /// The request refused.
        id: u64,
        /// Why, as a `crate::wire::code`.
        code: u32,
    },
}

impl MuxFrame {
    /// The request this frame is about.
    pub fn id(&self) -> u64 {
        match self {
            MuxFrame::Request { id, .. }
            | MuxFrame::Response { id, .. }
            | MuxFrame::Cancel { id }
            | MuxFrame::NoResponse { id }
            | MuxFrame::Refused { id, .. } => *id,
        }
    }

    /// Bytes of the frame's body (without the length prefix).
    pub fn body_len(&self) -> usize {
        1 + 8
            + match self {
                MuxFrame::Request { payload, .. } => 4 + payload.len(),
                MuxFrame::Response { payload, .. } => payload.len(),
                MuxFrame::Cancel { .. } | MuxFrame::NoResponse { .. } => 0,
                MuxFrame::Refused { .. } => 4,
            }
    }

    /// Appends the frame, length prefix included, to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        let len = self.body_len();
        out.reserve(crate::frame::FRAME_PREFIX_LEN + len);
        out.put_u32(u32::try_from(len).unwrap_or(u32::MAX));
        let (kind, id) = match self {
            MuxFrame::Request { id, .. } => (REQUEST, id),
            MuxFrame::Response { id, .. } => (RESPONSE, id),
            MuxFrame::Cancel { id } => (CANCEL, id),
            MuxFrame::NoResponse { id } => (NO_RESPONSE, id),
            MuxFrame::Refused { id, .. } => (REFUSED, id),
        };
        out.put_u8(kind);
        out.put_u64(*id);
        match self {
            MuxFrame::Request {
                deadline_ms,
                payload,
                ..
            } => {
                out.put_u32(*deadline_ms);
                out.put_slice(payload);
            }
            MuxFrame::Response { payload, .. } => out.put_slice(payload),
            MuxFrame::Cancel { .. } | MuxFrame::NoResponse { .. } => {}
            MuxFrame::Refused { code, .. } => out.put_u32(*code),
        }
    }

    /// Parses a frame body (what [`FrameDecoder`](crate::frame::FrameDecoder) hands out).
    pub fn decode(mut body: Bytes) -> Result<MuxFrame, BadMuxFrame> {
        let malformed = |id, reason: &str| BadMuxFrame {
            id,
            error: FrameError::Payload(reason.to_owned()),
        };
        if body.len() < 1 + 8 {
            return Err(BadMuxFrame {
                id: None,
                error: FrameError::Truncated {
                    buffered: body.len(),
                },
            });
        }
        let kind = body.get_u8();
        let id = body.get_u64();
        let empty = |body: &Bytes, frame| {
            if body.is_empty() {
                Ok(frame)
            } else {
                Err(malformed(Some(id), "trailing bytes after an rpc frame"))
            }
        };
        match kind {
            REQUEST if body.len() >= 4 => {
                let deadline_ms = body.get_u32();
                Ok(MuxFrame::Request {
                    id,
                    deadline_ms,
                    payload: body,
                })
            }
            RESPONSE => Ok(MuxFrame::Response { id, payload: body }),
            CANCEL => empty(&body, MuxFrame::Cancel { id }),
            NO_RESPONSE => empty(&body, MuxFrame::NoResponse { id }),
            REFUSED if body.len() == 4 => Ok(MuxFrame::Refused {
                id,
                code: body.get_u32(),
            }),
            REQUEST | REFUSED => Err(malformed(Some(id), "rpc frame too short for its kind")),
            other => Err(malformed(
                Some(id),
                &format!("unknown rpc frame kind {other}"),
            )),
        }
    }
}

/// A frame body that does not parse. Its length prefix was fine, so the stream goes on; when
/// the request id could be read, that one call is answered with the error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed rpc frame{}: {error}", id.map(|id| format!(" for request {id}")).unwrap_or_default())]
pub struct BadMuxFrame {
    /// The request the frame named, if the body was long enough to name one.
    pub id: Option<u64>,
    /// What is wrong.
    pub error: FrameError,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::FrameDecoder;
    use proptest::prelude::*;

    fn frames() -> Vec<MuxFrame> {
        vec![
            MuxFrame::Request {
                id: 1,
                deadline_ms: 250,
                payload: Bytes::from_static(b"ping"),
            },
            MuxFrame::Response {
                id: u64::MAX,
                payload: Bytes::new(),
            },
            MuxFrame::Cancel { id: 7 },
            MuxFrame::NoResponse { id: 8 },
            MuxFrame::Refused { id: 9, code: 6 },
        ]
    }

    #[test]
    fn every_kind_round_trips_through_the_frame_decoder() {
        let mut wire = BytesMut::new();
        for frame in frames() {
            frame.encode(&mut wire);
        }
        let mut decoder = FrameDecoder::new(1024);
        decoder.extend(&wire);
        let mut got = Vec::new();
        while let Some(body) = decoder.next_frame().unwrap() {
            got.push(MuxFrame::decode(body).unwrap());
        }
        assert_eq!(got, frames());
    }

    #[test]
    fn bad_bodies_name_the_request_when_they_can() {
        let short = MuxFrame::decode(Bytes::from_static(&[1, 0, 0]));
        assert_eq!(short.unwrap_err().id, None);
        let mut unknown = vec![42u8];
        unknown.extend_from_slice(&5u64.to_be_bytes());
        assert_eq!(
            MuxFrame::decode(Bytes::from(unknown)).unwrap_err().id,
            Some(5)
        );
        let mut cancel_with_tail = vec![CANCEL];
        cancel_with_tail.extend_from_slice(&6u64.to_be_bytes());
        cancel_with_tail.push(0);
        assert_eq!(
            MuxFrame::decode(Bytes::from(cancel_with_tail))
                .unwrap_err()
                .id,
            Some(6)
        );
        let mut request_without_deadline = vec![REQUEST];
        request_without_deadline.extend_from_slice(&3u64.to_be_bytes());
        request_without_deadline.extend_from_slice(&[0, 0]);
        assert_eq!(
            MuxFrame::decode(Bytes::from(request_without_deadline))
                .unwrap_err()
                .id,
            Some(3)
        );
    }

    proptest! {
        #[test]
        fn any_body_decodes_or_errs_and_what_decodes_re_encodes(body in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(frame) = MuxFrame::decode(Bytes::from(body.clone())) {
                let mut out = BytesMut::new();
                frame.encode(&mut out);
                prop_assert_eq!(&out[crate::frame::FRAME_PREFIX_LEN..], &body[..]);
            }
        }
    }
}
