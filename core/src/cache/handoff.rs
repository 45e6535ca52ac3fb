//! Handing a partitioned cache's entries to a key's new owner when ownership moves.
//!
//! When a node joins (or a member leaves gracefully and this node learns of it), the keys whose
//! rendezvous owner changes would start cold at their new owner and be computed again. Instead
//! the previous owner, on the view change, sends each fresh entry it owns for a moved key to
//! the new owner (at most [`MAX_PER_VIEW`] per cache and view change: best effort, bounded).
//! The new owner takes a value only while it owns the key in its own view and holds neither
//! its own value nor a computation for it, and gives it a version of its own, so near copies
//! and invalidations work as for any value it took. A node that crashes hands nothing over.
//!
//! A restarted node declares its caches a little after it starts (the application does, once
//! the node runs), while the previous owners hand off as soon as they see it alive. A handoff
//! for a cache not declared here yet is kept ([`Early`]: at most [`MAX_EARLY`] entries and
//! [`MAX_EARLY_BYTES`] bytes, each for [`EARLY_HOLD`]) and taken on declare, under the same
//! rules as on arrival. The receiver keeps them rather than asking the previous owners on
//! declare because those forget the moved entries at the view change that sent them: there is
//! nothing left to ask for by the time the new owner declares.
//!
//! A put from a node whose view still names the previous owner reaches that owner after it
//! handed its (older) value over. Dropped there, it would leave the new owner serving the
//! value from before the put to everyone, the putter included. So a node passes a plain put
//! for a key it does not own on to the key's owner in its view, behind the handoff on the
//! same ordered channel, and the newer value wins there. Once only: views that disagree could
//! otherwise pass it round in a circle; a passed-on put its receiver does not own is dropped.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;

use super::{millis, CacheMessage, Caches, Entry, Mode};
use crate::time::Instant;
use crate::NodeId;

/// At most this many entries handed off per cache on one view change.
pub const MAX_PER_VIEW: usize = 1024;
/// How long a handoff for a cache not declared here yet is kept for its declaration.
pub const EARLY_HOLD: Duration = Duration::from_secs(2);
/// At most this many handoffs kept for undeclared caches (all together; the oldest go first).
pub const MAX_EARLY: usize = MAX_PER_VIEW;
/// At most this many key and value bytes kept for undeclared caches.
pub const MAX_EARLY_BYTES: usize = 8 << 20;

/// Handoffs that arrived for caches not declared here yet, oldest first.
#[derive(Default)]
pub(super) struct Early {
    held: VecDeque<Held>,
    bytes: usize,
}

struct Held {
    arrived: Instant,
    cache: String,
    key: Vec<u8>,
    value: Vec<u8>,
    expires: Option<Instant>,
}

impl Held {
    fn bytes(&self) -> usize {
        self.cache.len() + self.key.len() + self.value.len()
    }
}

impl Early {
    /// Keeps a handoff for undeclared cache `cache`, within the bounds.
    fn hold(
        &mut self,
        now: Instant,
        cache: String,
        key: Vec<u8>,
        value: Vec<u8>,
        ttl_ms: Option<u64>,
    ) {
        self.expire(now);
        let held = Held {
            arrived: now,
            cache,
            key,
            value,
            expires: ttl_ms.map(|ms| now + Duration::from_millis(ms)),
        };
        if held.bytes() > MAX_EARLY_BYTES {
            return;
        }
        self.bytes += held.bytes();
        self.held.push_back(held);
        while self.held.len() > MAX_EARLY || self.bytes > MAX_EARLY_BYTES {
            self.pop_oldest();
        }
    }

    /// Drops what was kept longer than [`EARLY_HOLD`].
    fn expire(&mut self, now: Instant) {
        while self
            .held
            .front()
            .is_some_and(|h| h.arrived + EARLY_HOLD <= now)
        {
            self.pop_oldest();
        }
    }

    fn pop_oldest(&mut self) {
        if let Some(h) = self.held.pop_front() {
            self.bytes -= h.bytes();
        }
    }

    /// Takes what is kept for `cache` and still within [`EARLY_HOLD`], oldest first.
    fn take(&mut self, now: Instant, cache: &str) -> Vec<Held> {
        self.expire(now);
        let (taken, kept): (VecDeque<Held>, VecDeque<Held>) =
            self.held.drain(..).partition(|h| h.cache == cache);
        self.held = kept;
        self.bytes = self.held.iter().map(Held::bytes).sum();
        taken.into()
    }

    /// A newer write for `key` of `cache` arrived: its kept handoff is older, drop it (a miss
    /// rather than an older value).
    pub(super) fn forget(&mut self, cache: &str, key: &[u8]) {
        let before = self.held.len();
        self.held.retain(|h| h.cache != cache || h.key != key);
        if self.held.len() != before {
            self.bytes = self.held.iter().map(Held::bytes).sum();
        }
    }

    /// How many handoffs are kept.
    pub(super) fn len(&self) -> usize {
        self.held.len()
    }
}

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
            return self.early.hold(now, name, key, value, ttl_ms);
        };
        let settings = &cache.settings;
        if settings.mode != Mode::Partitioned
            || !settings.fits(&key, &value)
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
            handed_over: true,
        };
        cache.store.insert(Bytes::from(key), entry, now);
    }

    /// Passes a plain put for a key this node does not own on to `to`, its owner here (see
    /// the module's notes).
    pub(super) fn pass_on(
        &mut self,
        to: NodeId,
        name: String,
        key: Vec<u8>,
        value: Vec<u8>,
        ttl_ms: Option<u64>,
    ) {
        let message = CacheMessage::Forward {
            cache: name,
            key,
            value,
            ttl_ms,
        };
        self.send(to, message);
    }

    /// Takes the handoffs kept for cache `name`, just declared (see [`Early`]).
    pub(super) fn take_early(&mut self, now: Instant, name: &str) {
        for held in self.early.take(now, name) {
            let ttl_ms = match held.expires {
                Some(at) if at <= now => continue,
                Some(at) => Some(millis(at.saturating_since(now))),
                None => None,
            };
            self.take_over(now, held.cache, held.key, held.value, ttl_ms);
        }
    }
}
