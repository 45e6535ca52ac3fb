//! Writes waiting for acknowledgements: who was asked, who answered, until when to retry.

use std::collections::BTreeMap;

use crate::{NodeAddr, NodeId};

use foundation_crdt::Timestamp;

use super::wire::{Envelope, Origin};
use crate::time::Instant;

/// Most acknowledged writes in flight at once; each holds its op until acked or expired.
pub(super) const PENDING_ACKS_MAX: usize = 4096;

/// What a local write produced: its name (origin and seq) and its stamp, so callers need not
/// read them back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Written {
    /// The keyspace written.
    pub keyspace: String,
    /// Who the write was issued as (ours, at the time).
    pub origin: Origin,
    /// The write's seq in it (ours as origin).
    pub seq: u64,
    /// Its timestamp.
    pub ts: Timestamp,
}

impl Written {
    pub(super) fn of(envelope: &Envelope) -> Self {
        Self {
            keyspace: envelope.keyspace.clone(),
            origin: envelope.origin,
            seq: envelope.seq,
            ts: envelope.op.entry.ts,
        }
    }
}

/// What a write that asked for acknowledgements was told it is waiting for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AckTicket {
    /// The keyspace written.
    pub keyspace: String,
    /// Who the write was issued as (ours, at the time).
    pub origin: Origin,
    /// The write's seq in it (ours as origin).
    pub seq: u64,
    /// Its timestamp.
    pub ts: Timestamp,
    /// The group a majority is counted in, ourselves included: the agreed membership at write
    /// time (never fewer than the live members asked).
    pub members: usize,
}

impl AckTicket {
    /// Holders needed for a majority of [`AckTicket::members`].
    pub fn majority(&self) -> usize {
        self.members / 2 + 1
    }
}

/// One write waiting for acks.
#[derive(Debug)]
pub(super) struct PendingAck {
    /// The op, re-sent to members that have not answered.
    pub envelope: Envelope,
    /// Who was asked, with whether they answered.
    pub targets: BTreeMap<NodeId, (NodeAddr, bool)>,
    /// The group a majority is counted in, ourselves included.
    pub group: usize,
    /// Retries stop after this.
    pub until: Instant,
}

impl PendingAck {
    pub fn new(envelope: Envelope, peers: &[NodeAddr], group: usize, until: Instant) -> Self {
        let targets = peers.iter().map(|p| (p.id, (*p, false))).collect();
        Self {
            envelope,
            targets,
            group,
            until,
        }
    }

    /// Records `from`'s ack; true if it is new.
    pub fn acked_by(&mut self, from: NodeId) -> bool {
        match self.targets.get_mut(&from) {
            Some((_, acked)) if !*acked => {
                *acked = true;
                true
            }
            _ => false,
        }
    }

    /// Holders of the write: ourselves plus every member that acked.
    pub fn holders(&self) -> usize {
        1 + self.targets.values().filter(|(_, acked)| *acked).count()
    }

    /// The group a majority is counted in: the agreed membership, or the members asked
    /// (ourselves included) if more.
    pub fn members(&self) -> usize {
        self.group.max(1 + self.targets.len())
    }

    /// Whether every member asked holds it: nothing more can come.
    pub fn all_answered(&self) -> bool {
        self.targets.values().all(|(_, acked)| *acked)
    }

    /// Members asked that have not answered yet.
    pub fn waiting(&self) -> impl Iterator<Item = NodeAddr> + '_ {
        self.targets
            .values()
            .filter(|(_, acked)| !*acked)
            .map(|(addr, _)| *addr)
    }
}
