//! At-least-once delivery for pub/sub: each publisher keeps a numbered stream per receiving
//! node and resends everything unacknowledged, oldest first, when the oldest has waited too
//! long (go-back-N); each receiver accepts only the next number of each stream, so what it
//! delivers is in order and without duplicates, and acknowledges cumulatively.
//!
//! Streams survive lost connections (the resend repairs them) and receiver restarts: a receiver
//! that does not know a stream starts it at the publisher's oldest unacknowledged message,
//! which every message carries, and one that expects less than that catches up to it.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use crate::NodeId;

use super::wire::Sequenced;
use crate::time::Instant;

/// The publisher's side of one stream to one receiving node.
#[derive(Debug)]
pub struct Outgoing<M> {
    stream: u64,
    next_seq: u64,
    /// Sent and not yet acknowledged, oldest first, with when each was last sent.
    unacked: VecDeque<(u64, M, Instant)>,
    capacity: usize,
}

/// The stream already holds as many unacknowledged messages as allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{unacked} messages await acknowledgement (the limit)")]
pub struct Backlogged {
    /// How many.
    pub unacked: usize,
}

impl<M: Clone> Outgoing<M> {
    /// A new stream numbered `stream` (random per publisher process, so a restarted publisher
    /// starts a fresh stream) holding at most `capacity` unacknowledged messages.
    pub fn new(stream: u64, capacity: usize) -> Self {
        Self {
            stream,
            next_seq: 1,
            unacked: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    /// Numbers `message` and keeps it until acknowledged; returns its place and the oldest
    /// unacknowledged number, both to go with it.
    pub fn push(&mut self, now: Instant, message: M) -> Result<(Sequenced, u64), Backlogged> {
        if self.unacked.len() >= self.capacity {
            return Err(Backlogged {
                unacked: self.unacked.len(),
            });
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.unacked.push_back((seq, message, now));
        Ok((self.place(seq), self.oldest()))
    }

    /// The receiver has everything up to `seq`.
    pub fn ack(&mut self, seq: u64) {
        while self.unacked.front().is_some_and(|(s, _, _)| *s <= seq) {
            self.unacked.pop_front();
        }
    }

    /// An acknowledgement naming a stream: ignored unless it is this one (a stale ack of a
    /// previous publisher process).
    pub fn ack_stream(&mut self, stream: u64, seq: u64) {
        if stream == self.stream {
            self.ack(seq);
        }
    }

    /// If the oldest unacknowledged message has waited `timeout`, every unacknowledged
    /// message, oldest first, to send again (each with its place and the oldest number).
    pub fn due(&mut self, now: Instant, timeout: Duration) -> Vec<(Sequenced, u64, M)> {
        let overdue = self
            .unacked
            .front()
            .is_some_and(|(_, _, sent)| now.saturating_since(*sent) >= timeout);
        if !overdue || fault_on!(ReliableNeverResends) {
            return Vec::new();
        }
        let oldest = self.oldest();
        let stream = self.stream;
        self.unacked
            .iter_mut()
            .map(|(seq, message, sent)| {
                *sent = now;
                (Sequenced { stream, seq: *seq }, oldest, message.clone())
            })
            .collect()
    }

    /// Messages awaiting acknowledgement.
    pub fn unacked(&self) -> usize {
        self.unacked.len()
    }

    fn place(&self, seq: u64) -> Sequenced {
        Sequenced {
            stream: self.stream,
            seq,
        }
    }

    fn oldest(&self) -> u64 {
        self.unacked.front().map_or(self.next_seq, |(s, _, _)| *s)
    }
}

/// What a receiver does with an arriving reliable message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The next in its stream: deliver it.
    Deliver,
    /// Seen before: drop it (and acknowledge again).
    Duplicate,
    /// Something before it is missing: drop it; the publisher will resend from the gap.
    Gap,
}

/// The receiver's side of every stream reaching this node.
#[derive(Debug)]
pub struct Incoming {
    /// Next expected number per (publisher, stream).
    expected: BTreeMap<(NodeId, u64), u64>,
    /// Streams remembered at most; beyond it the least recently started is forgotten (a
    /// forgotten stream restarts at the publisher's oldest unacknowledged message).
    capacity: usize,
    /// When each stream was last used, to forget the stalest.
    used: BTreeMap<(NodeId, u64), u64>,
    clock: u64,
}

impl Incoming {
    /// Remembers at most `capacity` streams.
    pub fn new(capacity: usize) -> Self {
        Self {
            expected: BTreeMap::new(),
            capacity: capacity.max(1),
            used: BTreeMap::new(),
            clock: 0,
        }
    }

    /// Judges message `place` from `from`, whose publisher's oldest unacknowledged number is
    /// `oldest`.
    pub fn accept(&mut self, from: NodeId, place: Sequenced, oldest: u64) -> Verdict {
        let key = (from, place.stream);
        if !self.expected.contains_key(&key) {
            self.make_room();
        }
        self.clock += 1;
        self.used.insert(key, self.clock);
        let expected = self.expected.entry(key).or_insert(1);
        // Nothing below the publisher's oldest unacknowledged number is ever sent again, so
        // expecting less (a new stream, or one learnt again from a late copy) waits for ever.
        // An oldest above the message's own number is no publisher's: not taken past it.
        *expected = (*expected).max(oldest.min(place.seq));
        match place.seq.cmp(expected) {
            // The last number leaves no next one to expect: no publisher reaches it, so it is
            // a forgery off the network, never delivered.
            std::cmp::Ordering::Equal if *expected == u64::MAX => Verdict::Gap,
            std::cmp::Ordering::Equal => {
                *expected += 1;
                Verdict::Deliver
            }
            std::cmp::Ordering::Less => Verdict::Duplicate,
            std::cmp::Ordering::Greater if fault_on!(ReliableAcceptsGaps) => {
                *expected = place.seq + 1;
                Verdict::Deliver
            }
            std::cmp::Ordering::Greater => Verdict::Gap,
        }
    }

    /// The cumulative acknowledgement for a stream: everything below the next expected.
    pub fn acked(&self, from: NodeId, stream: u64) -> Option<u64> {
        self.expected
            .get(&(from, stream))
            .map(|next| next.saturating_sub(1))
    }

    fn make_room(&mut self) {
        while self.expected.len() >= self.capacity {
            let Some((&stalest, _)) = self.used.iter().min_by_key(|(_, &t)| t) else {
                return;
            };
            self.used.remove(&stalest);
            self.expected.remove(&stalest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Instant = Instant::ZERO;
    const RTO: Duration = Duration::from_secs(1);

    fn node() -> NodeId {
        NodeId::from_u128(7)
    }

    /// Publishes `n` messages, passes them through `lossy` (which may drop, duplicate or
    /// reorder), and lets the receiver and resends run until everything is acknowledged.
    fn deliver_all(
        n: u64,
        lossy: impl Fn(u64, Vec<(Sequenced, u64, u64)>) -> Vec<(Sequenced, u64, u64)>,
    ) -> Vec<u64> {
        let mut out = Outgoing::new(42, 1000);
        let mut sent = Vec::new();
        for m in 0..n {
            let (place, oldest) = out.push(T0, m).unwrap();
            sent.push((place, oldest, m));
        }
        let mut incoming = Incoming::new(16);
        let mut delivered = Vec::new();
        let mut now = T0;
        for round in 0..50 {
            for (place, oldest, m) in lossy(round, sent) {
                if incoming.accept(node(), place, oldest) == Verdict::Deliver {
                    delivered.push(m);
                }
            }
            if let Some(acked) = incoming.acked(node(), 42) {
                out.ack(acked);
            }
            if out.unacked() == 0 {
                break;
            }
            now = now + RTO;
            sent = out.due(now, RTO);
        }
        delivered
    }

    #[test]
    fn a_clean_stream_delivers_everything_once_in_order() {
        assert_eq!(deliver_all(5, |_, batch| batch), vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn losses_duplicates_and_reordering_still_deliver_everything_once_in_order() {
        let lossy = |round: u64, batch: Vec<(Sequenced, u64, u64)>| {
            let mut kept: Vec<_> = batch
                .into_iter()
                .filter(|(p, _, _)| round > 2 || p.seq % 3 != 0)
                .collect();
            kept.extend(kept.clone()); // every message twice
            kept.reverse(); // and backwards
            kept
        };
        assert_eq!(deliver_all(10, lossy), (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn a_restarted_receiver_starts_at_the_oldest_unacknowledged() {
        let mut incoming = Incoming::new(4);
        let place = Sequenced { stream: 1, seq: 9 };
        assert_eq!(incoming.accept(node(), place, 8), Verdict::Gap);
        assert_eq!(
            incoming.accept(node(), Sequenced { seq: 8, ..place }, 8),
            Verdict::Deliver
        );
        assert_eq!(incoming.accept(node(), place, 8), Verdict::Deliver);
        assert_eq!(incoming.acked(node(), 1), Some(9));
    }

    /// Everything below a publisher's oldest unacknowledged number is acknowledged and never
    /// sent again. A receiver that knows the stream but expects less — it forgot the stream
    /// and learnt it again from a late copy, or its previous life's acknowledgement reached
    /// the publisher after this life learnt it — waited for those numbers for ever, every
    /// message and resend after them a gap.
    #[test]
    fn a_stream_learnt_again_from_a_late_copy_catches_up_with_the_publisher() {
        let mut out = Outgoing::new(1, 16);
        let mut incoming = Incoming::new(1);
        let first: Vec<_> = (0..3).map(|m| out.push(T0, m).unwrap()).collect();
        for &(place, oldest) in &first {
            assert_eq!(incoming.accept(node(), place, oldest), Verdict::Deliver);
        }
        out.ack(incoming.acked(node(), 1).unwrap());
        // Another stream takes the only place: this one is forgotten.
        incoming.accept(node(), Sequenced { stream: 2, seq: 1 }, 1);
        // A late duplicate of the second message teaches the stream again, from its oldest.
        let (late, late_oldest) = first[1];
        assert_eq!(incoming.accept(node(), late, late_oldest), Verdict::Gap);
        let (place, oldest) = out.push(T0, 3).unwrap();
        assert_eq!(incoming.accept(node(), place, oldest), Verdict::Deliver);
        assert_eq!(incoming.acked(node(), 1), Some(place.seq));
    }

    /// A publisher's oldest unacknowledged number is never above the message it comes with;
    /// one that is (a corrupt or foreign message) does not move the stream past that message.
    #[test]
    fn an_oldest_above_the_messages_own_number_skips_nothing() {
        let mut incoming = Incoming::new(4);
        let first = Sequenced { stream: 1, seq: 1 };
        assert_eq!(incoming.accept(node(), first, 100), Verdict::Deliver);
        let second = Sequenced { stream: 1, seq: 2 };
        assert_eq!(incoming.accept(node(), second, 2), Verdict::Deliver);
    }

    #[test]
    fn the_backlog_is_bounded_and_acks_free_it() {
        let mut out = Outgoing::new(1, 2);
        out.push(T0, 'a').unwrap();
        out.push(T0, 'b').unwrap();
        assert_eq!(out.push(T0, 'c'), Err(Backlogged { unacked: 2 }));
        out.ack(1);
        assert!(out.push(T0, 'c').is_ok());
        assert!(out.due(T0, RTO).is_empty(), "nothing overdue yet");
        assert_eq!(out.due(T0 + RTO, RTO).len(), 2);
    }

    /// Numbers start at 1 and grow by one, so no publisher reaches the last; one that came
    /// off the network anyway must not overflow the next expected number (a panic in a debug
    /// build; in a release build it wrapped to 0 and the stream was stuck on gaps).
    #[test]
    fn the_last_number_is_refused_not_overflowed() {
        let mut incoming = Incoming::new(4);
        let last = Sequenced {
            stream: 1,
            seq: u64::MAX,
        };
        assert_eq!(incoming.accept(node(), last, u64::MAX), Verdict::Gap);
        assert_eq!(incoming.accept(node(), last, u64::MAX), Verdict::Gap);
        assert_eq!(incoming.acked(node(), 1), Some(u64::MAX - 1));
    }

    #[test]
    fn incoming_remembers_a_bounded_number_of_streams() {
        let mut incoming = Incoming::new(2);
        for stream in 0..10 {
            incoming.accept(node(), Sequenced { stream, seq: 1 }, 1);
        }
        assert_eq!(incoming.expected.len(), 2);
        assert_eq!(incoming.acked(node(), 9), Some(1));
        assert_eq!(incoming.acked(node(), 0), None);
    }
}
