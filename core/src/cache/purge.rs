//! Removing expired entries of a replicated cache from its keyspace.
//!
//! A replicated entry carries its expiry; reads hide it once expired and stores evict it, but
//! the keyspace would keep it until overwritten. Each node tracks the keyspace keys that have
//! an expiry and, driven by its own clock through the machine's timer, deletes the ones that
//! expired: the key's purger (one node, by rendezvous over the view) deletes it `GRACE` after
//! its expiry, so that one delete travels rather than one per node; any node deletes it
//! `RETRY` later if it is still there (the purger died, or views differed).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bytes::Bytes;

use crate::time::Instant;

/// How long after its expiry the purger deletes an entry: room for clock skew between the
/// writer and the purger, so a writer's just-expired entry is not deleted before the writer
/// itself hides it.
pub const GRACE: Duration = Duration::from_secs(1);
/// How long after the purger's turn any node deletes an entry still in the keyspace.
pub const RETRY: Duration = Duration::from_secs(5);

/// The keyspace keys of one replicated cache that have an expiry, by when each is due.
#[derive(Default)]
pub(super) struct Purge {
    due: BTreeMap<Bytes, (Instant, Turn)>,
    queue: BTreeSet<(Instant, Bytes)>,
}

/// Whose turn it is to delete a due key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Turn {
    /// The key's purger only.
    Purger,
    /// Any node.
    Anyone,
}

impl Purge {
    /// The keyspace now holds `key` expiring at `expires` (`None`: no expiry, or removed).
    pub(super) fn track(&mut self, key: &Bytes, expires: Option<Instant>) {
        self.forget(key);
        if let Some(at) = expires {
            self.schedule(key.clone(), at + GRACE, Turn::Purger);
        }
    }

    /// When the next key is due.
    pub(super) fn next(&self) -> Option<Instant> {
        self.queue.first().map(|(at, _)| *at)
    }

    /// Takes the keys due by `now`, with whose turn it is; each is scheduled again `RETRY`
    /// later for anyone (its delete, when it arrives, forgets it).
    pub(super) fn take_due(&mut self, now: Instant) -> Vec<(Bytes, Turn)> {
        let mut due = Vec::new();
        while let Some((at, key)) = self.queue.first().cloned() {
            if at > now {
                break;
            }
            let turn = self.due.get(&key).map_or(Turn::Anyone, |(_, turn)| *turn);
            self.forget(&key);
            self.schedule(key.clone(), now + RETRY, Turn::Anyone);
            due.push((key, turn));
        }
        due
    }

    /// How many keys are tracked.
    pub(super) fn len(&self) -> usize {
        self.due.len()
    }

    fn forget(&mut self, key: &Bytes) {
        if let Some((at, _)) = self.due.remove(key) {
            self.queue.remove(&(at, key.clone()));
        }
    }

    fn schedule(&mut self, key: Bytes, at: Instant, turn: Turn) {
        self.queue.insert((at, key.clone()));
        self.due.insert(key, (at, turn));
    }
}
