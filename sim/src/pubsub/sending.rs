//! How a publisher's messages leave its node: through one outbox per receiving node, the
//! core's [`EventOutbox`] — the same code that decides batching and bounds in the runtime.
//!
//! A publication is encoded ([`Published`]) and appended to the outbox when it has room; a
//! sender per outbox takes one frame at a time and sends it as one stream message on the events
//! channel, handing it to the link at [`BYTES_PER_US`] (the next frame goes once this one is
//! handed over, so a burst piles up and shares frames). A frame into a cut link holds the
//! sender for [`SEND_WAIT`] and is lost, as a stalled QUIC stream would. A publication that
//! finds the outbox full waits, in order, for room; after [`SEND_WAIT`] it gives up — a plain
//! one is lost for that node, a reliable one is numbered and kept, so its resend delivers it —
//! exactly the runtime's `enqueue`. Reliable resends bypass the outbox, framed the same way.
//!
//! [`Sending`] records what happened, and where a bound was broken, which `pubsub-delivery`
//! checks.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use bytes::Bytes;
use foundation_core::services::outbox::EventOutbox;
use foundation_core::services::wire::{decode_event, EventMessage, Published, Raw, Sequenced};
use foundation_core::Channel;
use serde::Serialize;

use super::PubSubEvent;
use crate::world::World;

/// How long a publish waits for room in a full outbox (the runtime's), and how long a frame
/// into a cut link holds the sender before it is lost.
pub const SEND_WAIT: Duration = Duration::from_secs(1);
/// How fast a sender hands frames to the link (1 Gbit/s).
pub const BYTES_PER_US: u64 = 125;
/// The fixed cost of a frame: the sender's turn and the stream write.
const FRAME_COST_US: u64 = 20;

/// One publisher's outbox for one receiving node, and who waits for room in it.
#[derive(Debug, Default)]
pub(crate) struct SimOutbox {
    outbox: EventOutbox,
    /// Publications waiting for room, oldest first, with when they give up (world µs).
    waiting: VecDeque<(u64, u64)>,
    /// Whether a sender turn is queued.
    sending: bool,
}

/// What the publishers' outboxes did in a run.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Sending {
    /// Frames sent (resends included).
    pub frames: u64,
    /// Messages that shared a frame with another (resends not counted).
    pub batched: u64,
    /// Publications that found an outbox full and waited.
    pub waited: u64,
    /// Plain publications lost after waiting [`SEND_WAIT`].
    pub expired: u64,
    /// Reliable publications refused because the receiver's backlog was full.
    pub backlogged: u64,
    /// The most bytes one outbox held.
    pub most_waiting_bytes: usize,
    /// The first broken bound: an append to an outbox already full, or an oversized frame.
    pub broken: Option<String>,
}

impl Sending {
    fn broke(&mut self, what: String) {
        self.broken.get_or_insert(what);
    }
}

impl World {
    /// Publication `id` of `slot` goes into its outbox for `to`, or waits for room there.
    pub(super) fn enqueue(&mut self, slot: usize, to: usize, id: u64) {
        let now = self.now_us();
        let life = self.node(slot).life();
        let out = self.node_pubsub(slot).outboxes.entry(to).or_default();
        if out.waiting.is_empty() && out.outbox.has_room() {
            return self.append(slot, to, id);
        }
        let until = now + SEND_WAIT.as_micros() as u64;
        out.waiting.push_back((id, until));
        self.pubsub.sending.waited += 1;
        let ends = PubSubEvent::WaitEnds { slot, life, to, id };
        self.push_pubsub(until, ends);
    }

    /// Appends publication `id` to `slot`'s outbox for `to` (numbered first if reliable), and
    /// wakes its sender.
    fn append(&mut self, slot: usize, to: usize, id: u64) {
        let place = if self.pubsub.publications[id as usize].reliable {
            match self.keep(slot, to, id) {
                Some(place) => Some(place),
                None => return,
            }
        } else {
            None
        };
        let (payload, topic) = self.payload_of(id);
        let trace = self.node_pubsub(slot).trace;
        let message = Published {
            topic: &topic,
            payload: Raw(&payload),
            trace: Some(trace),
            reliable: place.map(|(place, _)| place),
            oldest: place.map_or(0, |(_, oldest)| oldest),
            origin: None,
        };
        let node = self.node_pubsub(slot);
        let out = node.outboxes.entry(to).or_default();
        let before = out.outbox.bytes();
        let full = before >= out.outbox.limit() && !out.outbox.is_empty();
        let appended = out.outbox.append(&message).is_ok();
        let (held, wake) = (out.outbox.bytes(), !out.sending);
        out.sending = true;
        let life = node.life;
        let sending = &mut self.pubsub.sending;
        sending.most_waiting_bytes = sending.most_waiting_bytes.max(held);
        if full && appended {
            sending.broke(format!(
                "n{slot} appended publication #{id} to its outbox for n{to} holding {before} bytes, at its bound"
            ));
        }
        if wake {
            let at = self.now_us() + FRAME_COST_US;
            self.push_pubsub(at, PubSubEvent::Flush { slot, life, to });
        }
    }

    /// Numbers reliable publication `id` in `slot`'s stream to `to` and keeps it until
    /// acknowledged; `None` when the stream's backlog is full (the runtime refuses the publish
    /// for that node).
    fn keep(&mut self, slot: usize, to: usize, id: u64) -> Option<(Sequenced, u64)> {
        let now = self.local_now(slot);
        let node = self.node_pubsub(slot);
        let stream = node.stream_base + to as u64;
        let outgoing = node
            .outgoing
            .entry(to)
            .or_insert_with(|| super::Outgoing::new(stream, super::RELIABLE_BACKLOG));
        let Ok(place) = outgoing.push(now, id) else {
            self.pubsub.sending.backlogged += 1;
            return None;
        };
        self.arm_tick(slot);
        Some(place)
    }

    /// Publication `id`'s payload (its number, then zeros to its size) and topic.
    fn payload_of(&self, id: u64) -> (Vec<u8>, String) {
        let publication = &self.pubsub.publications[id as usize];
        let mut payload = id.to_be_bytes().to_vec();
        payload.resize(publication.payload, 0);
        (payload, publication.topic.clone())
    }

    /// `slot`'s sender for `to` sends the next frame, lets waiting publications in, and takes
    /// its next turn once the frame is handed to the link.
    pub(super) fn flush(&mut self, slot: usize, to: usize) {
        let Some(out) = self.node_pubsub(slot).outboxes.get_mut(&to) else {
            return;
        };
        let Some(frame) = out.outbox.next_frame() else {
            out.sending = false;
            return;
        };
        if cfg!(debug_assertions) {
            if let Err(broken) = out.outbox.invariants() {
                panic!("n{slot}'s outbox for n{to}: {broken}");
            }
        }
        let (count, len, bound) = (frame.count(), frame.len(), out.outbox.batch_bytes());
        if count > 1 {
            self.pubsub.sending.batched += u64::from(count);
        }
        if count > 1 && len > bound {
            self.pubsub.sending.broke(format!(
                "n{slot} sent a frame of {count} messages and {len} bytes to n{to}, over {bound}"
            ));
        }
        let sent = self.send_frame(slot, to, frame.finish());
        let pause = if sent {
            FRAME_COST_US + len as u64 / BYTES_PER_US
        } else {
            SEND_WAIT.as_micros() as u64
        };
        self.admit_waiting(slot, to);
        let life = self.node(slot).life();
        let out = self.node_pubsub(slot).outboxes.entry(to).or_default();
        if out.outbox.is_empty() {
            out.sending = false;
        } else {
            self.push_pubsub(self.now_us() + pause, PubSubEvent::Flush { slot, life, to });
        }
    }

    /// Moves waiting publications into `slot`'s outbox for `to` while it has room, in order.
    fn admit_waiting(&mut self, slot: usize, to: usize) {
        loop {
            let out = self.node_pubsub(slot).outboxes.entry(to).or_default();
            if !out.outbox.has_room() {
                return;
            }
            let Some((id, _)) = out.waiting.pop_front() else {
                return;
            };
            self.append(slot, to, id);
        }
    }

    /// Publication `id`, waiting for room in `slot`'s outbox for `to`, gives up: a plain one is
    /// lost for `to`, a reliable one is kept for its resend.
    pub(super) fn wait_ends(&mut self, slot: usize, to: usize, id: u64) {
        let out = self.node_pubsub(slot).outboxes.entry(to).or_default();
        let Some(at) = out.waiting.iter().position(|&(waiting, _)| waiting == id) else {
            return; // it got in
        };
        out.waiting.remove(at);
        if self.pubsub.publications[id as usize].reliable {
            self.keep(slot, to, id);
        } else {
            self.pubsub.sending.expired += 1;
            self.pubsub.publications[id as usize].gave_up.push(to);
            self.note(format_args!(
                "n{slot} publication #{id} to n{to} lost: its outbox stayed full"
            ));
        }
    }

    /// Sends `frame` from `from` to `to` now; whether it went (not into a cut link).
    fn send_frame(&mut self, from: usize, to: usize, frame: Bytes) -> bool {
        self.pubsub.sending.frames += 1;
        if self.node(to).core().is_none() {
            return true; // refused at once: lost, as its connection is
        }
        let lives = (self.node(from).life(), self.node(to).life());
        let Some((at, connection)) = self.stream_send(from, to, Channel::Events) else {
            return false;
        };
        let message = PubSubEvent::Frame {
            from,
            to,
            lives,
            connection,
            frame,
        };
        self.push_pubsub(at, message);
        true
    }

    /// A frame from `from` reached `to`: each message in it is taken as the runtime takes it.
    pub(super) fn receive_frame(&mut self, from: usize, to: usize, frame: &[u8]) {
        let Ok(EventMessage::Batch(batch)) = decode_event(frame) else {
            return;
        };
        for published in batch.messages() {
            let Ok(published) = published else {
                return;
            };
            let Some(id) = published.payload.0.get(..8) else {
                continue;
            };
            let id = u64::from_be_bytes(id.try_into().unwrap_or_default());
            let place = published.reliable.map(|place| (place, published.oldest));
            self.receive(from, to, id, place);
        }
    }

    /// Resends `due` reliable messages of `slot`, framed per receiving node like the runtime's
    /// resend, past the outbox.
    pub(super) fn resend_frames(&mut self, slot: usize, due: Vec<(usize, (Sequenced, u64, u64))>) {
        let mut frames: BTreeMap<usize, EventOutbox> = BTreeMap::new();
        let trace = self.node_pubsub(slot).trace;
        for (to, (place, oldest, id)) in due {
            let (payload, topic) = self.payload_of(id);
            let message = Published {
                topic: &topic,
                payload: Raw(&payload),
                trace: Some(trace),
                reliable: Some(place),
                oldest,
                origin: None,
            };
            let _ = frames.entry(to).or_default().append(&message);
        }
        for (to, mut outbox) in frames {
            while let Some(frame) = outbox.next_frame() {
                self.send_frame(slot, to, frame.finish());
            }
        }
    }
}
