//! Where a node keeps a cache's entries. The machine decides what goes in and out; a store only
//! holds entries within its size bounds. The engine's store is `moka` (shared with the handle's
//! fast path); [`MemoryStore`] is the deterministic one the simulator and the tests use.

use std::collections::BTreeMap;
use std::sync::Mutex;

use bytes::Bytes;

use crate::time::Instant;
use crate::vars::Life;

/// One cached value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The value.
    pub value: Bytes,
    /// The owner's version of it (grows with each value the owner takes for the key).
    pub version: u64,
    /// The node life whose value this is: this node's for an owned, local or replicated entry,
    /// the owner's for a near copy.
    pub owner: Life,
    /// When it stops being served.
    pub expires: Option<Instant>,
    /// Whether an owner's value came from another owner (a handoff, or a put the previous
    /// owner passed on) rather than straight from its writer; `false` for near copies.
    pub handed_over: bool,
}

impl Entry {
    /// Whether the entry may still be served at `now`.
    pub fn fresh(&self, now: Instant) -> bool {
        self.expires.is_none_or(|at| now < at)
    }
}

/// A size-bounded map of a cache's entries. Shared between the driver's machine and the
/// application's handle, so every method takes `&self`.
pub trait Store: Send + Sync {
    /// The entry under `key` if it is fresh at `now` (an expired one is removed).
    fn get(&self, key: &[u8], now: Instant) -> Option<Entry>;
    /// Inserts or replaces; the store may evict others to stay within its bounds.
    fn insert(&self, key: Bytes, entry: Entry, now: Instant);
    /// Removes `key`.
    fn remove(&self, key: &[u8]);
    /// Removes every entry `keep` refuses.
    fn retain(&self, keep: &mut dyn FnMut(&[u8], &Entry) -> bool);
    /// How many entries it holds.
    fn len(&self) -> u64;
    /// Whether it holds none.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A deterministic store: a sorted map bounded by entry count, evicting the entry inserted
/// longest ago.
#[derive(Debug)]
pub struct MemoryStore {
    max_entries: u64,
    inner: Mutex<MemoryInner>,
}

#[derive(Debug, Default)]
struct MemoryInner {
    entries: BTreeMap<Bytes, (u64, Entry)>,
    order: BTreeMap<u64, Bytes>,
    next: u64,
    evicted: u64,
}

impl MemoryStore {
    /// A store holding at most `max_entries` (at least one).
    pub fn new(max_entries: u64) -> Self {
        Self {
            max_entries: max_entries.max(1),
            inner: Mutex::default(),
        }
    }

    /// Entries evicted for room so far.
    pub fn evicted(&self) -> u64 {
        self.lock().evicted
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryInner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Store for MemoryStore {
    fn get(&self, key: &[u8], now: Instant) -> Option<Entry> {
        let mut inner = self.lock();
        let (seq, entry) = inner.entries.get(key)?.clone();
        if entry.fresh(now) {
            return Some(entry);
        }
        inner.entries.remove(key);
        inner.order.remove(&seq);
        None
    }

    fn insert(&self, key: Bytes, entry: Entry, _now: Instant) {
        let mut inner = self.lock();
        let seq = inner.next;
        inner.next += 1;
        if let Some((old, _)) = inner.entries.insert(key.clone(), (seq, entry)) {
            inner.order.remove(&old);
        }
        inner.order.insert(seq, key);
        while inner.entries.len() as u64 > self.max_entries {
            let Some((_, oldest)) = inner.order.pop_first() else {
                break;
            };
            inner.entries.remove(&oldest);
            inner.evicted += 1;
        }
    }

    fn remove(&self, key: &[u8]) {
        let mut inner = self.lock();
        if let Some((seq, _)) = inner.entries.remove(key) {
            inner.order.remove(&seq);
        }
    }

    fn retain(&self, keep: &mut dyn FnMut(&[u8], &Entry) -> bool) {
        let mut inner = self.lock();
        let gone: Vec<(Bytes, u64)> = inner
            .entries
            .iter()
            .filter(|(k, (_, e))| !keep(k, e))
            .map(|(k, (seq, _))| (k.clone(), *seq))
            .collect();
        for (key, seq) in gone {
            inner.entries.remove(&key);
            inner.order.remove(&seq);
        }
    }

    fn len(&self) -> u64 {
        self.lock().entries.len() as u64
    }
}
