//! What the core asks its driver to do. The driver (runtime or simulator) executes effects in
//! the order they were produced.

use std::collections::VecDeque;

use crate::{Channel, NodeAddr};
use bytes::Bytes;

use crate::membership::view::{MembershipEvent, MembershipTimer};
use crate::placement::PlacementEvent;
use crate::replication::events::{ReplicationEvent, ReplicationTimer};
use crate::storage::Batch;
use crate::time::Instant;
use crate::timers::Timers;
use crate::vars::VarsEvent;

/// One thing for the driver to do.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// Send `payload` to `to` on `channel`.
    Send {
        /// The recipient.
        to: NodeAddr,
        /// The channel.
        channel: Channel,
        /// The bytes, already encoded.
        payload: Bytes,
    },
    /// Tell the application something happened.
    Event(Event),
    /// Write `batch` to storage after every earlier batch, and report `seq` back as
    /// `Input::Persisted` once it is durable (or `Input::PersistFailed`). Reports complete in
    /// order: one for `seq` covers every batch before it.
    Persist {
        /// The batch's number, from 1, in order.
        seq: u64,
        /// The changes.
        batch: Batch,
    },
}

/// Every timer of every protocol. The core keeps them ([`crate::timers`]); drivers only see
/// the next deadline.
#[derive(Clone, Debug, PartialEq)]
pub enum Timer {
    /// A membership timer.
    Membership(MembershipTimer),
    /// A replication timer.
    Replication(ReplicationTimer),
    /// Time to reconcile ephemeral entries (see [`crate::ephemeral`]).
    EphemeralReconcile,
    /// A variable's write is due for a retry or its deadline (see [`crate::vars`]).
    Vars,
    /// A placement round or lease end is due (see [`crate::placement`]).
    Placement,
    /// A cache request's deadline or a computation's lease is due (see [`crate::cache`]).
    Cache,
}

/// Everything the core reports to the application.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// A membership change.
    Membership(MembershipEvent),
    /// A replicated key changed.
    Replication(ReplicationEvent),
    /// A variable changed, or a write of ours on one ended.
    Vars(VarsEvent),
    /// Start or stop a placed instance here.
    Placement(PlacementEvent),
    /// A cache request ended, or this node is to compute a value.
    Cache(crate::cache::CacheEvent),
}

/// Queue slots an empty [`Outbox`] keeps for reuse.
const EFFECTS_KEPT: usize = 64;

/// Effects produced while handling one input, in order, and the timers the machines armed.
#[derive(Debug, Default)]
pub struct Outbox {
    effects: VecDeque<Effect>,
    timers: Timers<Timer>,
    timers_dropped: u64,
    /// Events queued so far, by [`Kind`]: whether a kind came since a [`Mark`] without a walk
    /// over the sends queued beside them (a probe and its answer queue sends and no event).
    events: [u64; KINDS],
}

/// Which events [`Outbox::events_since`] counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Every event.
    Any,
    /// [`Event::Membership`].
    Membership,
    /// [`Event::Replication`].
    Replication,
}

const KINDS: usize = 3;

/// Where an [`Outbox`] stood: what it held and how many events it had queued.
#[derive(Clone, Copy, Debug)]
pub struct Mark {
    len: usize,
    events: [u64; KINDS],
}

impl Mark {
    /// How many effects were queued then ([`Outbox::since`] takes it).
    pub fn queued(&self) -> usize {
        self.len
    }
}

impl Outbox {
    /// Queues a send.
    pub fn send(&mut self, to: NodeAddr, channel: Channel, payload: Bytes) {
        self.effects.push_back(Effect::Send {
            to,
            channel,
            payload,
        });
    }

    /// Arms a timer. Timers are never cancelled: one that is no longer wanted is recognised as
    /// stale when it fires and ignored.
    pub fn timer(&mut self, at: Instant, timer: Timer) {
        if !self.timers.arm(at, timer) {
            self.timers_dropped += 1;
        }
    }

    /// The armed timers.
    pub fn timers(&mut self) -> &mut Timers<Timer> {
        &mut self.timers
    }

    /// When the earliest armed timer is due.
    pub fn next_timer(&self) -> Option<Instant> {
        self.timers.next_due()
    }

    /// Timers refused because too many were pending (a bug's symptom, never expected).
    pub fn timers_dropped(&self) -> u64 {
        self.timers_dropped
    }

    /// Queues an event.
    pub fn event(&mut self, event: Event) {
        self.events[Kind::Any as usize] += 1;
        match event {
            Event::Membership(_) => self.events[Kind::Membership as usize] += 1,
            Event::Replication(_) => self.events[Kind::Replication as usize] += 1,
            _ => {}
        }
        self.effects.push_back(Effect::Event(event));
    }

    /// Where the outbox stands now, for [`Self::events_since`] and [`Self::since`].
    pub fn mark(&self) -> Mark {
        Mark {
            len: self.effects.len(),
            events: self.events,
        }
    }

    /// How many events of `kind` were queued after `mark` (taken with nothing popped since):
    /// what [`Self::since`] would show, counted in O(1).
    pub fn events_since(&self, mark: &Mark, kind: Kind) -> usize {
        let queued = self.events[kind as usize] - mark.events[kind as usize];
        usize::try_from(queued).unwrap_or(usize::MAX)
    }

    /// Queues a storage batch.
    pub fn persist(&mut self, seq: u64, batch: Batch) {
        self.effects.push_back(Effect::Persist { seq, batch });
    }

    /// The oldest queued effect. Once the queue is empty, a queue grown large (a push-pull
    /// that brought a whole cluster queues an event per member) gives its memory back: kept,
    /// it would hold O(N) slots on every node for good. Inlined: the driver calls it once per
    /// effect and once more per input, and the call moved each effect once more.
    #[inline]
    pub fn pop(&mut self) -> Option<Effect> {
        let effect = self.effects.pop_front();
        if effect.is_none() && self.effects.capacity() > EFFECTS_KEPT {
            self.effects.shrink_to(EFFECTS_KEPT);
        }
        effect
    }

    /// Makes room for `additional` more effects at once: a push-pull that brings a whole
    /// cluster queues an event per member, and the queue, shrunk after every drain, otherwise
    /// grew to it by doubling, copying each effect again at every step.
    pub fn reserve(&mut self, additional: usize) {
        self.effects.reserve(additional);
    }

    /// Queued effects.
    pub fn len(&self) -> usize {
        self.effects.len()
    }

    /// Effects queued after the first `mark` (a [`Mark::queued`] or [`Self::len`] taken
    /// earlier, with nothing popped since).
    pub fn since(&self, mark: usize) -> impl Iterator<Item = &Effect> {
        self.effects.range(mark.min(self.effects.len())..)
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.effects.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::view::MembershipEvent;
    use crate::NodeId;

    /// Each kind of event queued after a mark shows, and only that kind; sends show none.
    #[test]
    fn events_since_a_mark_by_kind() {
        let mut out = Outbox::default();
        out.event(Event::Membership(MembershipEvent::Joined));
        let mark = out.mark();
        assert_eq!(mark.queued(), 1);
        let to = NodeAddr {
            id: NodeId::from_u128(2),
            addr: "127.0.0.1:7000".parse().expect("address"),
        };
        out.send(to, Channel::Membership, Bytes::from_static(b"probe"));
        let kinds = [Kind::Any, Kind::Membership, Kind::Replication];
        assert!(kinds.iter().all(|&k| out.events_since(&mark, k) == 0));
        out.event(Event::Membership(MembershipEvent::Isolated));
        out.event(Event::Membership(MembershipEvent::Joined));
        assert_eq!(out.events_since(&mark, Kind::Any), 2);
        assert_eq!(out.events_since(&mark, Kind::Membership), 2);
        assert_eq!(out.events_since(&mark, Kind::Replication), 0);
        assert_eq!(out.since(mark.queued()).count(), 3);
    }
}
