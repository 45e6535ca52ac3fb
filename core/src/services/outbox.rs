//! A publisher's outbox for one receiving node: its messages wait there, encoded, in batch
//! frames, until a sender takes the next frame. The decisions — whether a publish finds room,
//! which frame a message joins, which frame goes next — are made here, so the runtime and the
//! simulator make them with the same code; the runtime adds only the waiting (a publisher that
//! finds no room waits for it, a sender waits for frames).
//!
//! Bounds: what waits is at most `limit` bytes plus one message (a publish is let in while the
//! outbox is under its limit, or empty, so one message larger than the limit still goes, alone);
//! a frame holds at most `batch_bytes` of messages unless it holds a single larger message.

use std::collections::VecDeque;

use super::wire::{BatchBuilder, Published};

/// Encoded messages one batch frame carries, in bytes; a larger message goes in a frame alone.
pub const BATCH_BYTES: usize = 16 << 10;
/// Encoded messages waiting for one node, in bytes, before publishers wait for room.
pub const OUTBOX_BYTES: usize = 1 << 20;
/// A message's encoding beyond its payload (topic, trace, place), as room reserved in a frame.
const FRAME_SLACK: usize = 256;

/// Messages waiting to go to one node, in frames of up to `batch_bytes`.
#[derive(Debug)]
pub struct EventOutbox {
    batches: VecDeque<BatchBuilder>,
    /// Encoded bytes of every waiting message.
    bytes: usize,
    batch_bytes: usize,
    limit: usize,
}

impl Default for EventOutbox {
    /// The runtime's bounds: [`BATCH_BYTES`] frames, [`OUTBOX_BYTES`] waiting.
    fn default() -> Self {
        Self::new(BATCH_BYTES, OUTBOX_BYTES)
    }
}

impl EventOutbox {
    /// An empty outbox with frames of up to `batch_bytes` and room for `limit` bytes.
    pub fn new(batch_bytes: usize, limit: usize) -> Self {
        Self {
            batches: VecDeque::new(),
            bytes: 0,
            batch_bytes,
            limit,
        }
    }

    /// Whether a publish may append a message now.
    pub fn has_room(&self) -> bool {
        fault_on!(OutboxIgnoresBound) || self.bytes < self.limit || self.batches.is_empty()
    }

    /// Appends `message` to the last frame, or starts a new one if it would overflow it. On an
    /// error (a message that does not encode) nothing changes.
    pub fn append(&mut self, message: &Published<'_>) -> Result<(), postcard::Error> {
        let batch_bytes = self.batch_bytes;
        if let Some(batch) = self.batches.back_mut() {
            let before = batch.len();
            let plain = message.reliable.is_none();
            if fault_on!(OutboxDropsBatchedPlainMessages) && plain && before < batch_bytes {
                return Ok(());
            }
            if before < batch_bytes && batch.push_within(message, batch_bytes)? {
                self.bytes += batch.len() - before;
                return Ok(());
            }
        }
        // Room for a full frame plus the message that fills it.
        let room = batch_bytes + message.payload.0.len() + FRAME_SLACK;
        let mut batch = BatchBuilder::with_capacity(room);
        batch.push(message)?;
        self.bytes += batch.len();
        self.batches.push_back(batch);
        Ok(())
    }

    /// The next frame to send, oldest first.
    pub fn next_frame(&mut self) -> Option<BatchBuilder> {
        let batch = self.batches.pop_front()?;
        self.bytes -= batch.len();
        Some(batch)
    }

    /// Empties the outbox (its node is gone); returns how many messages it held.
    pub fn clear(&mut self) -> u64 {
        self.bytes = 0;
        self.batches.drain(..).map(|b| u64::from(b.count())).sum()
    }

    /// Encoded bytes waiting.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Whether no frame waits.
    pub fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }

    /// Frames waiting.
    pub fn frames(&self) -> usize {
        self.batches.len()
    }

    /// The bytes bound.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// The frame bound.
    pub fn batch_bytes(&self) -> usize {
        self.batch_bytes
    }

    /// The byte count matches the frames, no frame is empty, and only a frame of one message
    /// exceeds the frame bound.
    pub fn invariants(&self) -> Result<(), String> {
        let held: usize = self.batches.iter().map(BatchBuilder::len).sum();
        if held != self.bytes {
            return Err(format!("outbox counts {} bytes, holds {held}", self.bytes));
        }
        for batch in &self.batches {
            if batch.is_empty() {
                return Err("an empty frame waits in an outbox".into());
            }
            if batch.count() > 1 && batch.len() > self.batch_bytes {
                return Err(format!(
                    "a frame of {} messages holds {} bytes, over {}",
                    batch.count(),
                    batch.len(),
                    self.batch_bytes
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::trace::TraceContext;
    use crate::services::wire::{decode_event, EventMessage, Raw};

    fn message(payload: &[u8]) -> Published<'_> {
        use rand10::SeedableRng;
        let mut rng = rand10::rngs::StdRng::seed_from_u64(1);
        Published {
            topic: "t",
            payload: Raw(payload),
            trace: Some(TraceContext::new_root(&mut rng, false)),
            reliable: None,
            oldest: 0,
            origin: None,
        }
    }

    /// The payloads of a frame, in order.
    fn payloads(frame: BatchBuilder) -> Vec<Vec<u8>> {
        let bytes = frame.finish();
        let Ok(EventMessage::Batch(batch)) = decode_event(&bytes) else {
            panic!("not a batch frame");
        };
        batch
            .messages()
            .map(|m| m.expect("decodes").payload.0.to_vec())
            .collect()
    }

    #[test]
    fn messages_share_frames_up_to_the_bound_and_leave_in_order() {
        let mut outbox = EventOutbox::new(200, 4000);
        for i in 0..10u8 {
            outbox.append(&message(&[i; 30])).expect("appends");
            outbox.invariants().expect("holds");
        }
        // A frame's first message carries topic and trace (59 bytes), the others only their
        // payload and flags (32): five to a frame.
        assert_eq!(outbox.frames(), 2);
        let mut seen = Vec::new();
        while let Some(frame) = outbox.next_frame() {
            assert!(frame.count() == 1 || frame.len() <= 200);
            seen.extend(payloads(frame).into_iter().map(|p| p[0]));
        }
        assert_eq!(seen, (0..10).collect::<Vec<u8>>());
        assert_eq!(outbox.bytes(), 0);
    }

    #[test]
    fn a_large_message_goes_alone_and_the_bound_lets_one_in_when_empty() {
        let mut outbox = EventOutbox::new(100, 150);
        outbox.append(&message(&[1; 10])).expect("appends");
        outbox.append(&message(&[2; 500])).expect("appends");
        outbox.invariants().expect("holds");
        assert_eq!(
            outbox.frames(),
            2,
            "the large one did not join the small one's frame"
        );
        assert!(!outbox.has_room(), "over the bound");
        assert_eq!(
            payloads(outbox.next_frame().expect("first")),
            vec![vec![1; 10]]
        );
        assert!(
            !outbox.has_room(),
            "the large message alone is still over the bound"
        );
        outbox.next_frame().expect("second");
        assert!(outbox.has_room());
        outbox
            .append(&message(&[3; 500]))
            .expect("an empty outbox takes any message");
        assert_eq!(outbox.clear(), 1);
        assert!(outbox.is_empty() && outbox.has_room());
    }
}
