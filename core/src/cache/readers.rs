//! Who may hold near copies of the keys an owner serves, so that it can invalidate them.
//!
//! A reader keeps a near copy at most the lifetime the owner's answer gave it (what was left
//! of the entry's TTL, capped at `near_ttl`). Past that, plus the travel time the cache
//! already allows a message (its `lease_margin`), no reader can still serve that answer, so
//! the owner forgets the key's readers: otherwise a key read once and then expired or
//! evicted would stay remembered for as long as the node lives, and the map would grow with
//! every key ever read remotely.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use crate::time::Instant;
use crate::NodeId;

/// Below this many keys no sweep is made.
const SWEEP_FLOOR: usize = 64;

/// The readers of one cache's keys (as owner).
#[derive(Default)]
pub(super) struct Readers {
    by_key: BTreeMap<Bytes, Held>,
    /// The next sweep of forgotten keys comes when this many are remembered: twice what the
    /// last sweep left, so sweeping costs O(1) per reader added.
    sweep_at: usize,
}

struct Held {
    nodes: BTreeSet<NodeId>,
    /// No near copy of this key handed out so far outlives this instant.
    until: Instant,
}

impl Readers {
    /// `node` may hold a near copy of `key` until `until` (owner's clock).
    pub(super) fn add(&mut self, now: Instant, key: &[u8], node: NodeId, until: Instant) {
        if self.by_key.len() >= self.sweep_at.max(SWEEP_FLOOR) {
            self.by_key.retain(|_, held| held.until > now);
            self.sweep_at = 2 * self.by_key.len();
        }
        // Looked up by slice first: a key read again is not copied again.
        let held = match self.by_key.get_mut(key) {
            Some(held) => held,
            None => self
                .by_key
                .entry(Bytes::copy_from_slice(key))
                .or_insert(Held {
                    nodes: BTreeSet::new(),
                    until,
                }),
        };
        held.nodes.insert(node);
        held.until = held.until.max(until);
    }

    /// Forgets `key`'s readers, returning them. Those whose near copies have expired are
    /// returned too: an invalidation too many costs a message, one too few a stale read.
    pub(super) fn take(&mut self, key: &[u8]) -> BTreeSet<NodeId> {
        self.by_key
            .remove(key)
            .map(|held| held.nodes)
            .unwrap_or_default()
    }

    /// Forgets `key`'s readers.
    pub(super) fn remove(&mut self, key: &[u8]) {
        self.by_key.remove(key);
    }

    /// The keys with readers remembered.
    pub(super) fn keys(&self) -> impl Iterator<Item = &Bytes> {
        self.by_key.keys()
    }

    /// How many keys have readers remembered.
    pub(super) fn len(&self) -> usize {
        self.by_key.len()
    }
}
