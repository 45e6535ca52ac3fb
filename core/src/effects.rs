//! What the core asks its driver to do. The driver (runtime or simulator) executes effects in
//! the order they were produced.

use std::collections::VecDeque;

use crate::{Channel, NodeAddr};
use bytes::Bytes;

use crate::membership::view::{MembershipEvent, MembershipTimer};
use crate::replication::events::{ReplicationEvent, ReplicationTimer};
use crate::storage::Batch;
use crate::time::Instant;

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
    /// Deliver `timer` back to the core at `at`. Timers are never cancelled: a timer that is no
    /// longer wanted is recognised as stale when it fires and ignored.
    Timer {
        /// When.
        at: Instant,
        /// Which.
        timer: Timer,
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

/// Every timer of every protocol, so the driver can hand them back without knowing them.
#[derive(Clone, Debug, PartialEq)]
pub enum Timer {
    /// A membership timer.
    Membership(MembershipTimer),
    /// A replication timer.
    Replication(ReplicationTimer),
    /// Time to reconcile ephemeral entries (see [`crate::ephemeral`]).
    EphemeralReconcile,
}

/// Everything the core reports to the application.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// A membership change.
    Membership(MembershipEvent),
    /// A replicated key changed.
    Replication(ReplicationEvent),
}

/// Effects produced while handling one input, in order.
#[derive(Debug, Default)]
pub struct Outbox {
    effects: VecDeque<Effect>,
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

    /// Queues a timer.
    pub fn timer(&mut self, at: Instant, timer: Timer) {
        self.effects.push_back(Effect::Timer { at, timer });
    }

    /// Queues an event.
    pub fn event(&mut self, event: Event) {
        self.effects.push_back(Effect::Event(event));
    }

    /// Queues a storage batch.
    pub fn persist(&mut self, seq: u64, batch: Batch) {
        self.effects.push_back(Effect::Persist { seq, batch });
    }

    /// The oldest queued effect.
    pub fn pop(&mut self) -> Option<Effect> {
        self.effects.pop_front()
    }

    /// Queued effects.
    pub fn len(&self) -> usize {
        self.effects.len()
    }

    /// Effects queued after the first `mark` (a [`Self::len`] taken earlier, with nothing
    /// popped since).
    pub fn since(&self, mark: usize) -> impl Iterator<Item = &Effect> {
        self.effects.range(mark.min(self.effects.len())..)
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.effects.is_empty()
    }
}
