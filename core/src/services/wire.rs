//! What RPC and pub/sub put on the wire (postcard): requests and replies on the rpc channel,
//! published messages and acknowledgements on the events channel.

use serde::{Deserialize, Serialize};

use super::trace::TraceContext;

mod batch;
pub use batch::{Batch, BatchBuilder, BATCH_VERSION};

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
///
/// Nodes send [`Batch`] frames and acknowledgements; the other two are the layout of earlier
/// releases, still read. An earlier release cannot read a [`Batch`] (it refuses the frame as
/// malformed), so nodes of this release and earlier ones do not exchange pub/sub: upgrade
/// them together.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventMessage<'a> {
    /// One published message, as earlier releases sent it (read, no longer sent).
    #[serde(borrow)]
    Publish(PublishedV0<'a>),
    /// The receiver has every reliable message of `stream` up to `seq`.
    Ack {
        /// The publisher's stream to the receiver.
        stream: u64,
        /// Highest contiguous sequence number received.
        seq: u64,
    },
    /// Several messages each carrying its topic and trace, as earlier releases sent them
    /// (read, no longer sent).
    #[serde(borrow)]
    BatchV0(BatchV0<'a>),
    /// Several published messages, in publish order, packed: a topic once per run of messages
    /// on it, a trace only when the publisher had one and once per run of the same trace.
    #[serde(borrow)]
    Batch(Batch<'a>),
}

/// One published message, as a receiver decodes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Published<'a> {
    /// Its topic.
    pub topic: &'a str,
    /// Its payload.
    pub payload: Raw<'a>,
    /// The publisher's trace; `None` when the publisher had none: each receiving node then
    /// starts a trace of its own, so the deliveries of one untraced publish on different
    /// nodes share no trace id (publish under a trace to follow one across nodes).
    pub trace: Option<TraceContext>,
    /// For at-least-once delivery: the publisher's stream to this receiver and the message's
    /// place in it.
    pub reliable: Option<Sequenced>,
    /// For at-least-once delivery: the publisher's oldest unacknowledged number in the stream,
    /// where a receiver that does not know the stream starts it (0 when not reliable).
    pub oldest: u64,
    /// The cluster the message was first published in, when a federation gateway bridged it
    /// into this one (gateways never forward such a message again); `None` for a message
    /// published in this cluster.
    pub origin: Option<&'a str>,
}

/// One published message in the layout of earlier releases: topic and trace in every message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedV0<'a> {
    /// Its topic.
    pub topic: &'a str,
    /// Its payload.
    #[serde(borrow)]
    pub payload: Raw<'a>,
    /// The publisher's trace.
    pub trace: TraceContext,
    /// The stream and place of a reliable message.
    pub reliable: Option<Sequenced>,
    /// The publisher's oldest unacknowledged number in the stream.
    pub oldest: u64,
    /// The cluster a bridged message came from.
    pub origin: Option<&'a str>,
}

impl<'a> From<PublishedV0<'a>> for Published<'a> {
    fn from(v0: PublishedV0<'a>) -> Self {
        Published {
            topic: v0.topic,
            payload: v0.payload,
            trace: Some(v0.trace),
            reliable: v0.reliable,
            // Only a stream has an oldest place; the packed layout cannot carry one without
            // it, so a value here would not survive the batch it is relayed in.
            oldest: v0.reliable.map_or(0, |_| v0.oldest),
            origin: v0.origin,
        }
    }
}

impl PublishedV0<'_> {
    /// Appends this message's encoding to `out`, as an item of a [`BatchV0`].
    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), postcard::Error> {
        postcard::to_extend(self, Append(out)).map(drop)
    }
}

/// Appends to a borrowed vector (postcard's writer takes its output by value).
pub(crate) struct Append<'a>(pub(crate) &'a mut Vec<u8>);

impl Extend<u8> for Append<'_> {
    fn extend<I: IntoIterator<Item = u8>>(&mut self, iter: I) {
        self.0.extend(iter);
    }
}

/// `count` [`PublishedV0`] messages encoded back to back, as earlier releases sent them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchV0<'a> {
    /// How many messages `items` holds.
    pub count: u32,
    /// The messages' encodings, concatenated.
    #[serde(borrow)]
    pub items: Raw<'a>,
}

impl<'a> BatchV0<'a> {
    /// The messages in order; stops at the first that does not decode (an error) or once
    /// `count` have been read. Bytes left over after `count` messages are an error.
    pub fn messages(&self) -> impl Iterator<Item = Result<Published<'a>, WireError>> + 'a {
        counted(self.items.0, self.count, None, |rest| {
            let (message, tail) = postcard::take_from_bytes::<PublishedV0<'a>>(rest)?;
            *rest = tail;
            Ok(message.into())
        })
    }
}

/// The messages of a batch of `count` packed back to back in `items`, each taken off the front
/// of the bytes left by `one`: the count and trailing rules of every batch layout. Stops after
/// the first error (`failed`, when given, is that error before any message is read); bytes left
/// over after `count` messages are [`WireError::Trailing`].
pub(crate) fn counted<'a>(
    items: &'a [u8],
    count: u32,
    failed: Option<WireError>,
    mut one: impl FnMut(&mut &'a [u8]) -> Result<Published<'a>, WireError> + 'a,
) -> impl Iterator<Item = Result<Published<'a>, WireError>> + 'a {
    let (mut rest, mut left, mut failed, mut done) = (items, count, failed, false);
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        if let Some(error) = failed.take() {
            done = true;
            return Some(Err(error));
        }
        if left == 0 {
            done = true;
            return (!rest.is_empty()).then_some(Err(WireError::Trailing));
        }
        left -= 1;
        let message = one(&mut rest);
        done = message.is_err();
        Some(message)
    })
}

/// Why an events-channel frame, or a message in it, was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The bytes do not decode as the format says.
    #[error("events frame does not decode: {0}")]
    Encoding(#[from] postcard::Error),
    /// A batch in a format this release does not read (a newer sender's).
    #[error("batch format version {found} is not one this node reads (it reads {reads}); upgrade this node")]
    Version {
        /// The version the frame names.
        found: u8,
        /// The version this node reads.
        reads: u8,
    },
    /// A message's flags name fields this release does not know.
    #[error("message flags {0:#04x} name fields this node does not know")]
    Flags(u8),
    /// A message says "same topic as before" with no message before it in the batch.
    #[error("the first message of a batch names no topic")]
    NoTopic,
    /// A message says "same trace as before" where the message before had none.
    #[error("a message repeats the trace of a message that had none")]
    NoTrace,
    /// Bytes follow the last message a batch counts.
    #[error("bytes left over after a batch's messages")]
    Trailing,
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

/// Decodes an events-channel frame, borrowing from it; trailing bytes, and a batch in a format
/// version this node does not read, are errors.
pub fn decode_event(frame: &[u8]) -> Result<EventMessage<'_>, WireError> {
    let (message, rest) = postcard::take_from_bytes::<EventMessage<'_>>(frame)?;
    if !rest.is_empty() {
        return Err(WireError::Trailing);
    }
    if let EventMessage::Batch(batch) = &message {
        batch.check_version()?;
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

    /// Found by the `services_wire` fuzz target: an earlier release's message with an oldest
    /// place but no stream read back with it, and packed again it read back without.
    #[test]
    fn an_oldest_place_without_a_stream_is_read_as_none() {
        let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let mut message = PublishedV0 {
            topic: "orders",
            payload: Raw(b"x"),
            trace: crate::services::trace::parse_traceparent(traceparent).expect("a trace"),
            reliable: None,
            oldest: 240,
            origin: None,
        };
        assert_eq!(Published::from(message).oldest, 0);
        message.reliable = Some(Sequenced { stream: 3, seq: 9 });
        assert_eq!(Published::from(message).oldest, 240, "a stream keeps it");
    }
}
