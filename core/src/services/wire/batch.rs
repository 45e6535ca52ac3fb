//! The packed batch: the frame nodes send published messages in.
//!
//! Frame: the [`EventMessage::Batch`](super::EventMessage) variant, a format version byte
//! ([`BATCH_VERSION`]; a receiver refuses any other with [`WireError::Version`]), the message
//! count and the length of the items (postcard varints), then the items. Each item is a flags
//! byte followed by only the fields it names, in this order:
//!
//! | flag | field |
//! |---|---|
//! | `TOPIC` | the topic (length, UTF-8); without it, the previous message's topic |
//! | `TRACE` | the trace (16 + 8 + 1 bytes) |
//! | `SAME_TRACE` | none: the previous message's trace (which must exist) |
//! | `RELIABLE` | stream, place and the oldest unacknowledged place (varints) |
//! | `ORIGIN` | the origin cluster (length, UTF-8) |
//!
//! and last the payload (length, bytes). With neither trace flag the publisher had no trace.
//! So a run of messages on one topic from a publisher with no trace costs two bytes each beyond
//! its payload, where each message used to carry its topic and a trace (106 bytes on the wire
//! for a 64-byte payload on a 12-byte topic, now 66).

use std::ops::Range;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{counted, Append, Published, Raw, Sequenced, WireError};
use crate::services::trace::TraceContext;

/// The packed layout's version, the byte after the variant.
pub const BATCH_VERSION: u8 = 1;

const TOPIC: u8 = 0x01;
const TRACE: u8 = 0x02;
const SAME_TRACE: u8 = 0x04;
const RELIABLE: u8 = 0x08;
const ORIGIN: u8 = 0x10;
const KNOWN: u8 = TOPIC | TRACE | SAME_TRACE | RELIABLE | ORIGIN;

/// `count` packed messages (see this module's documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch<'a> {
    /// The layout of `items`: [`BATCH_VERSION`].
    pub version: u8,
    /// How many messages `items` holds.
    pub count: u32,
    /// The messages, packed.
    #[serde(borrow)]
    pub items: Raw<'a>,
}

impl<'a> Batch<'a> {
    /// Refuses a layout this node does not read.
    pub fn check_version(&self) -> Result<(), WireError> {
        match self.version {
            BATCH_VERSION => Ok(()),
            found => Err(WireError::Version {
                found,
                reads: BATCH_VERSION,
            }),
        }
    }

    /// The messages in order; stops at the first that does not decode (an error) or once
    /// `count` have been read. Bytes left over after `count` messages are an error, and so is
    /// every message of a batch in another version.
    pub fn messages(&self) -> impl Iterator<Item = Result<Published<'a>, WireError>> + 'a {
        let mut reader = Reader::default();
        let failed = self.check_version().err();
        counted(self.items.0, self.count, failed, move |rest| {
            reader.message(rest)
        })
    }
}

/// Reads a batch's items, remembering the previous message's topic and trace.
#[derive(Default)]
struct Reader<'a> {
    topic: Option<&'a str>,
    trace: Option<TraceContext>,
}

impl<'a> Reader<'a> {
    /// Takes one message off the front of `rest`.
    fn message(&mut self, rest: &mut &'a [u8]) -> Result<Published<'a>, WireError> {
        let (&flags, tail) = rest
            .split_first()
            .ok_or(postcard::Error::DeserializeUnexpectedEnd)?;
        if flags & !KNOWN != 0 || flags & (TRACE | SAME_TRACE) == TRACE | SAME_TRACE {
            return Err(WireError::Flags(flags));
        }
        *rest = tail;
        let topic = match flags & TOPIC != 0 {
            true => take::<&str>(rest)?,
            false => self.topic.ok_or(WireError::NoTopic)?,
        };
        let trace = match flags & (TRACE | SAME_TRACE) {
            TRACE => Some(take::<TraceContext>(rest)?),
            SAME_TRACE => Some(self.trace.ok_or(WireError::NoTrace)?),
            _ => None,
        };
        let (reliable, oldest) = match flags & RELIABLE != 0 {
            true => {
                let (place, oldest) = take::<(Sequenced, u64)>(rest)?;
                (Some(place), oldest)
            }
            false => (None, 0),
        };
        let origin = match flags & ORIGIN != 0 {
            true => Some(take::<&str>(rest)?),
            false => None,
        };
        let payload = take::<Raw<'a>>(rest)?;
        self.topic = Some(topic);
        self.trace = trace;
        Ok(Published {
            topic,
            payload,
            trace,
            reliable,
            oldest,
            origin,
        })
    }
}

/// Takes one postcard value off the front of `rest`.
fn take<'a, T: Deserialize<'a>>(rest: &mut &'a [u8]) -> Result<T, WireError> {
    let (value, tail) = postcard::take_from_bytes::<T>(rest)?;
    *rest = tail;
    Ok(value)
}

/// Position of [`EventMessage::Batch`](super::EventMessage) among the variants: its first byte
/// on the wire.
const BATCH_VARIANT: u32 = 3;
/// Room kept in front of a batch's messages for its header: variant (1 byte), version (1),
/// count (at most 5) and length (at most 10), each but the version a postcard varint.
const HEADER_ROOM: usize = 17;

/// Builds a [`Batch`] frame in place: messages are encoded straight into the buffer that
/// becomes the frame, behind room for the header, so the frame is never copied.
#[derive(Debug)]
pub struct BatchBuilder {
    buffer: Vec<u8>,
    count: u32,
    /// Where the topic of the last message is in `buffer` (written by it or an earlier one).
    topic: Option<Range<usize>>,
    /// The last message's trace.
    trace: Option<TraceContext>,
}

impl Default for BatchBuilder {
    fn default() -> Self {
        Self::with_capacity(0)
    }
}

impl BatchBuilder {
    /// An empty batch with room for `bytes` of encoded messages before it grows (a batch that
    /// grows by doubling copies itself several times on the way to a full frame).
    pub fn with_capacity(bytes: usize) -> Self {
        let mut buffer = Vec::with_capacity(HEADER_ROOM + bytes);
        buffer.resize(HEADER_ROOM, 0);
        Self {
            buffer,
            count: 0,
            topic: None,
            trace: None,
        }
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
        let (len, topic, trace) = (self.buffer.len(), self.topic.clone(), self.trace);
        if let Err(error) = self.encode(message) {
            self.buffer.truncate(len);
            (self.topic, self.trace) = (topic, trace);
            return Err(error);
        }
        self.count += 1;
        Ok(())
    }

    /// Appends `message` if the batch is empty or stays within `limit` bytes with it; `false`
    /// (and nothing changed) if it would not.
    pub fn push_within(
        &mut self,
        message: &Published<'_>,
        limit: usize,
    ) -> Result<bool, postcard::Error> {
        let (len, topic, trace) = (self.buffer.len(), self.topic.clone(), self.trace);
        self.push(message)?;
        if self.count > 1 && self.len() > limit {
            self.buffer.truncate(len);
            (self.topic, self.trace) = (topic, trace);
            self.count -= 1;
            return Ok(false);
        }
        Ok(true)
    }

    fn encode(&mut self, message: &Published<'_>) -> Result<(), postcard::Error> {
        let same_topic = self
            .topic
            .as_ref()
            .is_some_and(|at| &self.buffer[at.clone()] == message.topic.as_bytes());
        let mut flags = 0;
        if !same_topic {
            flags |= TOPIC;
        }
        flags |= match message.trace {
            Some(_) if message.trace == self.trace => SAME_TRACE,
            Some(_) => TRACE,
            None => 0,
        };
        if message.reliable.is_some() {
            flags |= RELIABLE;
        }
        if message.origin.is_some() {
            flags |= ORIGIN;
        }
        self.buffer.push(flags);
        if !same_topic {
            write_bytes(&mut self.buffer, message.topic.as_bytes());
            let end = self.buffer.len();
            self.topic = Some(end - message.topic.len()..end);
        }
        if let (TRACE, Some(trace)) = (flags & TRACE, message.trace) {
            postcard::to_extend(&trace, Append(&mut self.buffer))?;
        }
        if let Some(place) = message.reliable {
            postcard::to_extend(&(place, message.oldest), Append(&mut self.buffer))?;
        }
        if let Some(origin) = message.origin {
            write_bytes(&mut self.buffer, origin.as_bytes());
        }
        write_bytes(&mut self.buffer, message.payload.0);
        self.trace = message.trace;
        Ok(())
    }

    /// The frame: variant, version, count and length in front of the messages.
    pub fn finish(self) -> Bytes {
        // Built on the stack, then copied into the room kept for it.
        let mut header = [0u8; HEADER_ROOM];
        let mut size = 0;
        let fields = [
            varint(u64::from(BATCH_VARIANT)),
            ([BATCH_VERSION, 0, 0, 0, 0, 0, 0, 0, 0, 0], 1),
            varint(u64::from(self.count)),
            varint(self.len() as u64),
        ];
        for (bytes, used) in fields {
            header[size..size + used].copy_from_slice(&bytes[..used]);
            size += used;
        }
        let start = HEADER_ROOM - size;
        let mut buffer = self.buffer;
        buffer[start..HEADER_ROOM].copy_from_slice(&header[..size]);
        if buffer.capacity() > 2 * buffer.len() {
            // A frame that left before filling the room reserved for it: queued frames
            // (thousands wait in the transport while a node is unreachable) hold only about
            // what they carry.
            buffer.shrink_to_fit();
        }
        Bytes::from(buffer).slice(start..)
    }
}

/// `n` as a postcard varint (LEB128): the bytes, and how many of them it takes.
fn varint(mut n: u64) -> ([u8; 10], usize) {
    let (mut out, mut used) = ([0u8; 10], 0);
    while n >= 0x80 {
        out[used] = n as u8 | 0x80;
        n >>= 7;
        used += 1;
    }
    out[used] = n as u8;
    (out, used + 1)
}

/// A postcard varint appended to `out`.
fn write_varint(out: &mut Vec<u8>, n: u64) {
    let (bytes, used) = varint(n);
    out.extend_from_slice(&bytes[..used]);
}

/// Bytes as postcard encodes a byte string or `str`: length, then the bytes.
fn write_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    write_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::super::{decode_event, BatchV0, EventMessage, PublishedV0};
    use super::*;

    fn trace(seed: u64) -> TraceContext {
        use rand10::SeedableRng;
        TraceContext::new_root(&mut rand10::rngs::StdRng::seed_from_u64(seed), true)
    }

    /// A best-effort message with no trace, as a plain `publish` sends it.
    fn untraced<'a>(topic: &'a str, payload: &'a [u8]) -> Published<'a> {
        Published {
            topic,
            payload: Raw(payload),
            trace: None,
            reliable: None,
            oldest: 0,
            origin: None,
        }
    }

    fn decoded(frame: &[u8]) -> Vec<Published<'_>> {
        let Ok(EventMessage::Batch(batch)) = decode_event(frame) else {
            panic!("not a batch");
        };
        batch.messages().map(Result::unwrap).collect()
    }

    /// Messages on two topics, traced and not, reliable and not, bridged and not.
    fn mixed(payloads: &[Vec<u8>]) -> Vec<Published<'_>> {
        let traces = [trace(1), trace(2)];
        payloads
            .iter()
            .enumerate()
            .map(|(i, payload)| Published {
                topic: if i % 5 < 3 { "a.b" } else { "c" },
                payload: Raw(payload),
                trace: (i % 4 != 0).then_some(traces[i / 7 % 2]),
                reliable: (i % 3 == 0).then_some(Sequenced {
                    stream: 1,
                    seq: i as u64,
                }),
                oldest: if i % 3 == 0 { i as u64 / 2 } else { 0 },
                origin: (i % 11 == 0).then_some("east"),
            })
            .collect()
    }

    #[test]
    fn a_batch_round_trips_in_order() {
        let payloads: Vec<Vec<u8>> = (0..60u8).map(|i| vec![i; i as usize * 3]).collect();
        let messages = mixed(&payloads);
        for n in [0, 1, 2, messages.len()] {
            let mut builder = BatchBuilder::default();
            for message in &messages[..n] {
                builder.push(message).unwrap();
            }
            assert_eq!(builder.count(), n as u32);
            assert_eq!(decoded(&builder.finish()), messages[..n], "{n} messages");
        }
    }

    #[test]
    fn a_run_on_one_topic_without_a_trace_costs_two_bytes_a_message() {
        let payload = [0x5a; 64];
        let message = untraced("bench.events", &payload);
        let mut builder = BatchBuilder::default();
        builder.push(&message).unwrap();
        let first = builder.len();
        builder.push(&message).unwrap();
        assert_eq!(first, 2 + 13 + 64);
        assert_eq!(builder.len() - first, 2 + 64);
        let traced = Published {
            trace: Some(trace(3)),
            ..message
        };
        let before = builder.len();
        builder.push(&traced).unwrap();
        builder.push(&traced).unwrap();
        assert_eq!(builder.len() - before, (2 + 25 + 64) + (2 + 64));
    }

    #[test]
    fn push_within_leaves_a_full_batch_as_it_was() {
        let (small, large) = ([1u8; 10], [2u8; 500]);
        let (small, large) = (untraced("t", &small), untraced("u", &large));
        let mut builder = BatchBuilder::default();
        assert!(
            builder.push_within(&large, 100).unwrap(),
            "an empty batch takes any"
        );
        let mut other = BatchBuilder::default();
        assert!(other.push_within(&small, 100).unwrap());
        assert!(!other.push_within(&large, 100).unwrap(), "over the limit");
        // The refused message left no trace: the next one still names its topic.
        assert!(other.push_within(&small, 100).unwrap());
        assert_eq!(decoded(&other.finish()), vec![small, small]);
        assert_eq!(decoded(&builder.finish()), vec![large]);
    }

    #[test]
    fn bad_batches_are_refused_with_their_reason() {
        let payload = [7u8; 4];
        let message = untraced("t", &payload);
        let mut builder = BatchBuilder::default();
        builder.push(&message).unwrap();
        builder.push(&message).unwrap();
        let frame = builder.finish().to_vec();
        let reason = |bytes: &[u8]| match decode_event(bytes) {
            Err(error) => error,
            Ok(EventMessage::Batch(batch)) => {
                batch.messages().find_map(Result::err).expect("an error")
            }
            Ok(other) => panic!("not a batch: {other:?}"),
        };
        // Variant 3, version 1, count 2, items length, then the first message's flags.
        assert_eq!(frame[..2], [3, BATCH_VERSION]);
        let mut newer = frame.clone();
        newer[1] = 2;
        assert_eq!(reason(&newer), WireError::Version { found: 2, reads: 1 });
        assert!(reason(&newer).to_string().contains("version 2"));
        let mut unknown = frame.clone();
        unknown[4] |= 0x80;
        assert_eq!(reason(&unknown), WireError::Flags(0x81));
        let mut topicless = frame.clone();
        topicless[4] = 0;
        assert_eq!(reason(&topicless), WireError::NoTopic);
        let mut untraced = frame.clone();
        untraced[4] |= SAME_TRACE;
        assert_eq!(reason(&untraced), WireError::NoTrace);
        let mut counted = frame.clone();
        counted[2] = 1;
        assert_eq!(reason(&counted), WireError::Trailing);
        counted[2] = 3;
        assert!(matches!(reason(&counted), WireError::Encoding(_)));
        assert!(
            decode_event(&frame[..frame.len() - 1]).is_err(),
            "truncated"
        );
    }

    #[test]
    fn frames_of_earlier_releases_are_still_read() {
        let trace = trace(9);
        let v0 = PublishedV0 {
            topic: "orders.created",
            payload: Raw(&[1, 2, 3]),
            trace,
            reliable: Some(Sequenced { stream: 9, seq: 4 }),
            oldest: 2,
            origin: None,
        };
        let single = postcard::to_stdvec(&EventMessage::Publish(v0)).unwrap();
        assert_eq!(single[0], 0, "variant 0");
        assert_eq!(decode_event(&single).unwrap(), EventMessage::Publish(v0));
        let mut items = Vec::new();
        v0.encode_into(&mut items).unwrap();
        v0.encode_into(&mut items).unwrap();
        let batch = postcard::to_stdvec(&EventMessage::BatchV0(BatchV0 {
            count: 2,
            items: Raw(&items),
        }))
        .unwrap();
        assert_eq!(batch[0], 2, "variant 2");
        let Ok(EventMessage::BatchV0(batch)) = decode_event(&batch) else {
            panic!("not a batch");
        };
        let read: Vec<_> = batch.messages().map(Result::unwrap).collect();
        assert_eq!(read, vec![Published::from(v0); 2]);
        assert_eq!(read[0].trace, Some(trace));
    }
}
