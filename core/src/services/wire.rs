//! What RPC and pub/sub put on the wire (postcard): requests and replies on the rpc channel,
//! published messages and acknowledgements on the events channel.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::trace::TraceContext;

/// A call to one instance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RpcRequest {
    /// The service.
    pub service: String,
    /// The callee node's number for the instance.
    pub instance: u64,
    /// The caller's trace, continued by the handler.
    pub trace: TraceContext,
    /// The cluster a federated call came from, named by the gateway that serves it here;
    /// `None` for a call made inside this cluster.
    pub origin: Option<String>,
    /// The request body.
    pub body: Vec<u8>,
}

/// The answer to an [`RpcRequest`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RpcReply {
    /// The handler's response.
    Ok(Vec<u8>),
    /// Why there is none.
    Err(RemoteError),
}

/// Why an instance gave no response. The first four mean the handler never ran, so any call
/// may be retried elsewhere.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum RemoteError {
    /// The node has no such instance (it was deregistered, or the node restarted).
    #[error("no such instance")]
    NoSuchInstance,
    /// The caller is over its rate limit at this node.
    #[error("rate limited; retry after {retry_after_ms} ms")]
    RateLimited {
        /// When a token will be available.
        retry_after_ms: u64,
    },
    /// The node is running as many calls as it allows.
    #[error("overloaded")]
    Overloaded,
    /// The request did not decode.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The handler failed or refused.
    #[error("{0}")]
    Handler(String),
    /// The handler did not finish before the caller's deadline.
    #[error("handler did not finish before the deadline")]
    DeadlineExceeded,
}

impl RemoteError {
    /// Whether the handler certainly did not run.
    pub fn not_executed(&self) -> bool {
        matches!(
            self,
            RemoteError::NoSuchInstance
                | RemoteError::RateLimited { .. }
                | RemoteError::Overloaded
                | RemoteError::BadRequest(_)
        )
    }
}

/// Messages on the events channel, borrowed from the frame they were decoded from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventMessage<'a> {
    /// One published message for the receiving node's subscribers.
    #[serde(borrow)]
    Publish(Published<'a>),
    /// The receiver has every reliable message of `stream` up to `seq`.
    Ack {
        /// The publisher's stream to the receiver.
        stream: u64,
        /// Highest contiguous sequence number received.
        seq: u64,
    },
    /// Several published messages, in publish order: one frame instead of one per message.
    #[serde(borrow)]
    Batch(Batch<'a>),
}

/// One published message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published<'a> {
    /// Its topic.
    pub topic: &'a str,
    /// Its payload.
    #[serde(borrow)]
    pub payload: Raw<'a>,
    /// The publisher's trace.
    pub trace: TraceContext,
    /// For at-least-once delivery: the publisher's stream to this receiver and the message's
    /// place in it.
    pub reliable: Option<Sequenced>,
    /// For at-least-once delivery: the publisher's oldest unacknowledged number in the stream,
    /// where a receiver that does not know the stream starts it.
    pub oldest: u64,
    /// The cluster the message was first published in, when a federation gateway bridged it
    /// into this one (gateways never forward such a message again); `None` for a message
    /// published in this cluster.
    pub origin: Option<&'a str>,
}

impl Published<'_> {
    /// Appends this message's encoding to `out`, as an item of a [`Batch`]; on an error `out`
    /// is left as it was.
    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), postcard::Error> {
        let len = out.len();
        let result = postcard::to_extend(self, Append(out)).map(drop);
        if result.is_err() {
            out.truncate(len);
        }
        result
    }
}

/// Appends to a borrowed vector (postcard's writer takes its output by value).
struct Append<'a>(&'a mut Vec<u8>);

impl Extend<u8> for Append<'_> {
    fn extend<I: IntoIterator<Item = u8>>(&mut self, iter: I) {
        self.0.extend(iter);
    }
}

/// `count` [`Published`] messages encoded back to back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch<'a> {
    /// How many messages `items` holds.
    pub count: u32,
    /// The messages' encodings, concatenated.
    #[serde(borrow)]
    pub items: Raw<'a>,
}

impl<'a> Batch<'a> {
    /// The messages in order; stops at the first that does not decode (an error) or once
    /// `count` have been read. Bytes left over after `count` messages are an error.
    pub fn messages(&self) -> impl Iterator<Item = Result<Published<'a>, postcard::Error>> + 'a {
        let mut rest = self.items.0;
        let mut left = self.count;
        let mut failed = false;
        std::iter::from_fn(move || {
            if failed {
                return None;
            }
            if left == 0 {
                if rest.is_empty() {
                    return None;
                }
                failed = true;
                return Some(Err(postcard::Error::DeserializeUnexpectedEnd));
            }
            left -= 1;
            match postcard::take_from_bytes::<Published<'a>>(rest) {
                Ok((message, tail)) => {
                    rest = tail;
                    Some(Ok(message))
                }
                Err(e) => {
                    failed = true;
                    Some(Err(e))
                }
            }
        })
    }
}

/// Position of [`EventMessage::Batch`] among the variants: its first byte on the wire.
const BATCH_VARIANT: u32 = 2;
/// Room kept in front of a batch's messages for its header: variant (1 byte), count (at most
/// 5) and length (at most 10), each a postcard varint.
const HEADER_ROOM: usize = 16;

/// Builds an [`EventMessage::Batch`] frame in place: messages are encoded straight into the
/// buffer that becomes the frame, behind room for the header, so the frame is never copied.
#[derive(Debug)]
pub struct BatchBuilder {
    buffer: Vec<u8>,
    count: u32,
}

impl Default for BatchBuilder {
    fn default() -> Self {
        Self {
            buffer: vec![0; HEADER_ROOM],
            count: 0,
        }
    }
}

impl BatchBuilder {
    /// An empty batch with room for `bytes` of encoded messages before it grows (a batch that
    /// grows by doubling copies itself several times on the way to a full frame).
    pub fn with_capacity(bytes: usize) -> Self {
        let mut buffer = Vec::with_capacity(HEADER_ROOM + bytes);
        buffer.resize(HEADER_ROOM, 0);
        Self { buffer, count: 0 }
    }

    /// Bytes of encoded messages so far.
    pub fn len(&self) -> usize {
        self.buffer.len() - HEADER_ROOM
    }

    /// True if no message was added.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Messages so far.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Appends `message`; on an error nothing changes.
    pub fn push(&mut self, message: &Published<'_>) -> Result<(), postcard::Error> {
        message.encode_into(&mut self.buffer)?;
        self.count += 1;
        Ok(())
    }

    /// Moves the last message, which starts at byte `start` of the messages (what
    /// [`len`](Self::len) was before it was pushed), into a batch of its own.
    pub fn split_last(&mut self, start: usize) -> BatchBuilder {
        let mut alone = BatchBuilder::default();
        alone
            .buffer
            .extend_from_slice(&self.buffer[HEADER_ROOM + start..]);
        alone.count = 1;
        self.buffer.truncate(HEADER_ROOM + start);
        self.count -= 1;
        alone
    }

    /// The frame: the same bytes as encoding `EventMessage::Batch` with these messages.
    pub fn finish(self) -> Bytes {
        let items = self.len() as u64;
        let mut header = [0u8; HEADER_ROOM];
        match postcard::to_slice(&(BATCH_VARIANT, self.count, items), &mut header) {
            Ok(header) => {
                let start = HEADER_ROOM - header.len();
                let mut buffer = self.buffer;
                buffer[start..HEADER_ROOM].copy_from_slice(header);
                if buffer.capacity() > 2 * buffer.len() {
                    // A frame that left before filling the room reserved for it: queued frames
                    // (thousands wait in the transport while a node is unreachable) hold only
                    // about what they carry.
                    buffer.shrink_to_fit();
                }
                Bytes::from(buffer).slice(start..)
            }
            // Cannot happen (the header fits in its room); encode it the ordinary way.
            Err(_) => {
                let frame = EventMessage::Batch(Batch {
                    count: self.count,
                    items: Raw(&self.buffer[HEADER_ROOM..]),
                });
                postcard::to_stdvec(&frame).unwrap_or_default().into()
            }
        }
    }
}

/// Bytes encoded as one length-prefixed byte string (not a sequence of numbers), borrowed when
/// decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Raw<'a>(pub &'a [u8]);

impl Serialize for Raw<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(self.0)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Raw<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        <&'a [u8]>::deserialize(deserializer).map(Raw)
    }
}

/// Decodes an events-channel frame, borrowing from it; trailing bytes are an error.
pub fn decode_event(frame: &[u8]) -> Result<EventMessage<'_>, postcard::Error> {
    let (message, rest) = postcard::take_from_bytes::<EventMessage<'_>>(frame)?;
    if !rest.is_empty() {
        return Err(postcard::Error::DeserializeUnexpectedEnd);
    }
    Ok(message)
}

/// A reliable message's place in its stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sequenced {
    /// The publisher's stream to the receiver: new for each publisher process and receiver.
    pub stream: u64,
    /// Position in the stream, from 1 without gaps.
    pub seq: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trace() -> TraceContext {
        use rand10::SeedableRng;
        TraceContext::new_root(&mut rand10::rngs::StdRng::seed_from_u64(7), true)
    }

    /// The wire layout of a single published message, as nodes before batching sent it.
    #[derive(Serialize)]
    enum OwnedEvent {
        Publish(OwnedPublished),
    }

    #[derive(Serialize)]
    struct OwnedPublished {
        topic: String,
        payload: Vec<u8>,
        trace: TraceContext,
        reliable: Option<Sequenced>,
        oldest: u64,
        origin: Option<String>,
    }

    #[test]
    fn a_single_message_keeps_the_owned_layout() {
        let trace = trace();
        let owned = OwnedEvent::Publish(OwnedPublished {
            topic: "orders.created".into(),
            payload: vec![1, 2, 3],
            trace,
            reliable: Some(Sequenced { stream: 9, seq: 4 }),
            oldest: 2,
            origin: None,
        });
        let borrowed = EventMessage::Publish(Published {
            topic: "orders.created",
            payload: Raw(&[1, 2, 3]),
            trace,
            reliable: Some(Sequenced { stream: 9, seq: 4 }),
            oldest: 2,
            origin: None,
        });
        let bytes = postcard::to_stdvec(&owned).unwrap();
        assert_eq!(bytes, postcard::to_stdvec(&borrowed).unwrap());
        assert_eq!(decode_event(&bytes).unwrap(), borrowed);
    }

    #[test]
    fn a_batch_round_trips_in_order() {
        let trace = trace();
        let payloads: Vec<Vec<u8>> = (0..50u8).map(|i| vec![i; i as usize]).collect();
        let mut items = Vec::new();
        for (i, payload) in payloads.iter().enumerate() {
            let message = Published {
                topic: if i % 2 == 0 { "a.b" } else { "c" },
                payload: Raw(payload),
                trace,
                reliable: (i % 3 == 0).then_some(Sequenced {
                    stream: 1,
                    seq: i as u64,
                }),
                oldest: 0,
                origin: None,
            };
            message.encode_into(&mut items).unwrap();
        }
        let frame = postcard::to_stdvec(&EventMessage::Batch(Batch {
            count: payloads.len() as u32,
            items: Raw(&items),
        }))
        .unwrap();
        let EventMessage::Batch(batch) = decode_event(&frame).unwrap() else {
            panic!("not a batch");
        };
        let decoded: Vec<Published<'_>> = batch.messages().map(Result::unwrap).collect();
        assert_eq!(decoded.len(), payloads.len());
        for (i, message) in decoded.iter().enumerate() {
            assert_eq!(message.payload.0, &payloads[i][..]);
            assert_eq!(message.reliable.is_some(), i % 3 == 0);
        }
    }

    #[test]
    fn a_built_batch_is_the_encoded_batch() {
        let trace = trace();
        let payload = vec![7u8; 300];
        for n in [0usize, 1, 2, 200] {
            let mut builder = BatchBuilder::default();
            let mut items = Vec::new();
            for i in 0..n {
                let message = Published {
                    topic: "x.y",
                    payload: Raw(&payload[..i % 300]),
                    trace,
                    reliable: None,
                    oldest: 0,
                    origin: None,
                };
                builder.push(&message).unwrap();
                message.encode_into(&mut items).unwrap();
            }
            let expected = postcard::to_stdvec(&EventMessage::Batch(Batch {
                count: n as u32,
                items: Raw(&items),
            }))
            .unwrap();
            assert_eq!(builder.count(), n as u32);
            assert_eq!(&builder.finish()[..], &expected[..], "{n} messages");
        }
    }

    #[test]
    fn splitting_off_the_last_message_keeps_both_batches_valid() {
        let trace = trace();
        let small = Published {
            topic: "a",
            payload: Raw(b"small"),
            trace,
            reliable: None,
            oldest: 0,
            origin: None,
        };
        let big = vec![1u8; 5000];
        let large = Published {
            payload: Raw(&big),
            ..small
        };
        let mut builder = BatchBuilder::default();
        builder.push(&small).unwrap();
        let start = builder.len();
        builder.push(&large).unwrap();
        let alone = builder.split_last(start);
        for (built, want) in [(builder, vec![small]), (alone, vec![large])] {
            let frame = built.finish();
            let EventMessage::Batch(batch) = decode_event(&frame).unwrap() else {
                panic!("not a batch");
            };
            let got: Vec<_> = batch.messages().map(Result::unwrap).collect();
            assert_eq!(got, want);
        }
    }

    #[test]
    fn a_batch_that_lies_about_its_count_is_an_error() {
        let message = Published {
            topic: "t",
            payload: Raw(b"x"),
            trace: trace(),
            reliable: None,
            oldest: 0,
            origin: None,
        };
        let mut items = Vec::new();
        message.encode_into(&mut items).unwrap();
        message.encode_into(&mut items).unwrap();
        for (count, ok) in [(1, 1), (3, 2)] {
            let batch = Batch {
                count,
                items: Raw(&items),
            };
            let results: Vec<_> = batch.messages().collect();
            assert_eq!(results.iter().filter(|r| r.is_ok()).count(), ok);
            assert!(results.last().unwrap().is_err(), "count {count}");
        }
        assert!(decode_event(&[2, 5, 3, 0]).is_err(), "truncated");
    }
}
