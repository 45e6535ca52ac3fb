//! Handing a partitioned cache's entries to a key's new owner when ownership moves.
//!
//! When a node joins (or a member leaves gracefully and this node learns of it), the keys whose
//! rendezvous owner changes would start cold at their new owner and be computed again. Instead
//! the previous owner, on the view change, sends each fresh entry it owns for a moved key to
//! the new owner (at most [`MAX_PER_VIEW`] per cache and view change: best effort, bounded).
//! The new owner takes a value only while it owns the key in its own view and holds neither
//! its own value nor a computation for it, and gives it a version of its own, so near copies
//! and invalidations work as for any value it took. A node that crashes hands nothing over.

use std::time::Duration;

use bytes::Bytes;

use super::{millis, CacheMessage, Caches, Entry, Mode};
use crate::time::Instant;

/// At most this many entries handed off per cache on one view change.
pub const MAX_PER_VIEW: usize = 1024;

impl Caches {
    /// Sends the fresh entries this node owns of cache `name` whose key this (already updated)
    /// view gives to another node, to that node.
    pub(super) fn hand_off_moved(&mut self, now: Instant, name: &str) {
        let Some(cache) = self.caches.get(name) else {
            return;
        };
        let me = self.me;
        let mut moved = Vec::new();
        // A store has no iterator: a `retain` that keeps everything walks it.
        cache.store.retain(&mut |key, entry| {
            if moved.len() < MAX_PER_VIEW && entry.owner == me && entry.fresh(now) {
                let owner = self.owner(Mode::Partitioned, name, key);
                if owner != me.node {
                    moved.push((owner, Bytes::copy_from_slice(key), entry.clone()));
                }
            }
            true
        });
        if let Some(cache) = self.caches.get_mut(name) {
            cache.stats.handed_off += moved.len() as u64;
        }
        for (to, key, entry) in moved {
            let ttl_ms = entry.expires.map(|at| millis(at.saturating_since(now)));
            let message = CacheMessage::Handoff {
                cache: name.to_owned(),
                key: key.to_vec(),
                value: entry.value.to_vec(),
                ttl_ms,
            };
            self.send(to, message);
        }
    }

    /// Takes a previous owner's value for `key`, if this node owns the key and has nothing
    /// newer: no value of its own and no computation under way.
    pub(super) fn take_over(
        &mut self,
        now: Instant,
        name: String,
        key: Vec<u8>,
        value: Vec<u8>,
        ttl_ms: Option<u64>,
    ) {
        let me = self.me;
        let Some(cache) = self.caches.get(&name) else {
            return;
        };
        let settings = &cache.settings;
        if settings.mode != Mode::Partitioned
            || key.len() > settings.max_key_bytes
            || value.len() > settings.max_value_bytes
            || self.owner(Mode::Partitioned, &name, &key) != me.node
        {
            return;
        }
        let held = cache.store.get(&key, now).is_some_and(|e| e.owner == me);
        if held || cache.flights.contains_key(key.as_slice()) {
            return;
        }
        let Some(cache) = self.caches.get_mut(&name) else {
            return;
        };
        let version = cache.next_version;
        cache.next_version += 1;
        cache.stats.taken_over += 1;
        let entry = Entry {
            value: Bytes::from(value),
            version,
            owner: me,
            expires: ttl_ms.map(|ms| now + Duration::from_millis(ms)),
        };
        cache.store.insert(Bytes::from(key), entry, now);
    }
}
