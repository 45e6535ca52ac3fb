//! Distributed caches: the protocol of `node.cache(name)` as a deterministic machine.
//!
//! Three modes:
//! - `local`: entries live on this node only;
//! - `replicated`: every node holds every entry; values travel through a replicated keyspace
//!   (`cache/<name>`) and carry their expiry;
//! - `partitioned`: each key has one owner, picked by the same rendezvous hashing as sharded
//!   placement (`placement::rendezvous`: the key's shard among `SHARDS`, then the highest
//!   weight among the alive members). Readers keep near copies of what they read from the
//!   owner; the owner remembers its readers and sends them an invalidation when its value for a
//!   key changes.
//!
//! `get_or_compute` is single-flight: the first caller for a missing key gets a *grant* to run
//! its function, later ones wait on the owner (the node itself in `local` and `replicated`
//! mode, the key's owner in `partitioned` mode) for the result. A grant is a lease: when its
//! runner fails, times out or dies, the next waiter is granted. The owner never has two grants
//! for one key out at a time (simulator invariant `cache-single-flight`).
//!
//! The machine holds no clock: every call takes `now`; deadlines are instants; the driver arms
//! [`Caches::poll_timeout`]. Entries live in a [`Store`] the driver supplies (the engine's is
//! `moka`, bounded by entries and bytes; the simulator's is [`MemoryStore`]).

mod handoff;
mod purge;
pub mod quorum;
mod readers;
pub mod store;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::envelope;
use crate::placement::rendezvous::{self, Candidate, Rule};
use crate::replication::Write;
use crate::time::Instant;
use crate::vars::Life;
use crate::NodeId;

pub use purge::{GRACE as PURGE_GRACE, RETRY as PURGE_RETRY};
pub use quorum::QuorumRule;
pub use store::{Entry, MemoryStore, Store};

/// The replicated keyspace of replicated cache `name` is this prefix and the name.
pub const KEYSPACE_PREFIX: &str = "cache/";
/// How many shards a partitioned cache's keys hash into before rendezvous picks each shard's
/// owner (the same two steps as a sharded workload).
pub const SHARDS: u32 = 1024;

/// How a cache spreads its entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// On this node only.
    Local,
    /// Every node holds every entry.
    Replicated,
    /// Each key on one owner, near copies on readers.
    Partitioned,
}

impl Mode {
    /// The name `/caches` shows.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Local => "local",
            Mode::Replicated => "replicated",
            Mode::Partitioned => "partitioned",
        }
    }
}

/// A cache's settings. Every node that uses a cache declares it with the same settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheSettings {
    /// Its name.
    pub name: String,
    /// How it spreads entries.
    pub mode: Mode,
    /// How long an entry lives unless its write says otherwise; `None`: until evicted.
    pub ttl: Option<Duration>,
    /// At most this many entries on a node (near copies included).
    pub max_entries: u64,
    /// At most this many bytes of keys and values on a node.
    pub max_bytes: u64,
    /// Longest key.
    pub max_key_bytes: usize,
    /// Longest value.
    pub max_value_bytes: usize,
    /// How long a reader keeps a near copy at most (partitioned mode).
    pub near_ttl: Duration,
    /// How much longer than its runner's deadline the owner holds a grant, for the grant's
    /// travel time: a runner always gives up before its owner grants anyone else.
    pub lease_margin: Duration,
    /// The quorum rule (partitioned mode; `None`: off): computations only on a side with a
    /// majority, so at most one cluster-wide at a time (see [`quorum`]).
    pub quorum: Option<QuorumRule>,
}

impl CacheSettings {
    /// A cache of `mode` with default bounds: 10,000 entries, 64 MiB, 1 KiB keys, 1 MiB values,
    /// no TTL, near copies for 30 s.
    pub fn new(name: impl Into<String>, mode: Mode) -> Self {
        Self {
            name: name.into(),
            mode,
            ttl: None,
            max_entries: 10_000,
            max_bytes: 64 << 20,
            max_key_bytes: 1024,
            max_value_bytes: 1 << 20,
            near_ttl: Duration::from_secs(30),
            lease_margin: Duration::from_secs(1),
            quorum: None,
        }
    }

    /// Turns the quorum rule on (see [`quorum`]).
    pub fn with_quorum(mut self, rule: QuorumRule) -> Self {
        self.quorum = Some(rule);
        self
    }

    /// Entries live `ttl` unless a write says otherwise.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Bounds by count and bytes.
    pub fn bounds(mut self, max_entries: u64, max_bytes: u64) -> Self {
        self.max_entries = max_entries;
        self.max_bytes = max_bytes;
        self
    }

    /// Bounds keys and values.
    pub fn limits(mut self, max_key_bytes: usize, max_value_bytes: usize) -> Self {
        self.max_key_bytes = max_key_bytes;
        self.max_value_bytes = max_value_bytes;
        self
    }

    /// How long a reader keeps a near copy of an answer with `ttl_ms` left: that, at most
    /// `near_ttl`.
    fn near_copy_life(&self, ttl_ms: Option<u64>) -> Duration {
        ttl_ms.map_or(self.near_ttl, |ms| {
            Duration::from_millis(ms).min(self.near_ttl)
        })
    }

    /// Whether a key and value of these lengths are within the limits.
    fn fits(&self, key: &[u8], value: &[u8]) -> bool {
        key.len() <= self.max_key_bytes && value.len() <= self.max_value_bytes
    }

    /// Checks the settings.
    pub fn validate(&self) -> Result<(), CacheError> {
        let bad = |why: &str| Err(CacheError::Invalid(format!("cache {:?}: {why}", self.name)));
        if self.name.is_empty() || self.name.len() > 128 {
            return bad("a name is 1 to 128 bytes");
        }
        if self.max_entries == 0 || self.max_bytes == 0 {
            return bad("max_entries and max_bytes must be at least 1");
        }
        if self.max_key_bytes == 0 || self.max_value_bytes == 0 {
            return bad("max_key_bytes and max_value_bytes must be at least 1");
        }
        if self.ttl == Some(Duration::ZERO) || self.near_ttl.is_zero() {
            return bad("a TTL must be longer than zero");
        }
        if let Some(rule) = &self.quorum {
            if self.mode != Mode::Partitioned {
                return bad("the quorum rule is for partitioned caches");
            }
            if rule.max_run.is_zero() {
                return bad("the quorum rule's max_run must be longer than zero");
            }
        }
        Ok(())
    }
}

/// Why a cache call failed. Nothing is lost: the cache holds what it held before.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CacheError {
    /// No cache of that name is declared here.
    #[error("no cache named {0:?} is declared on this node: declare it first")]
    Unknown(String),
    /// Declared here already with other settings.
    #[error("cache {0:?} is already declared with other settings")]
    Conflict(String),
    /// Bad settings.
    #[error("{0}")]
    Invalid(String),
    /// The key is over the cache's limit.
    #[error("a key of {len} bytes is over the cache's limit of {max}")]
    KeyTooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The value is over the cache's limit.
    #[error("a value of {len} bytes is over the cache's limit of {max}")]
    ValueTooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The deadline passed first.
    #[error("the deadline passed before the cache had a value; try again or give more time")]
    Timeout,
    /// The compute function failed (returned an error or panicked).
    #[error("the compute function failed: {0}")]
    ComputeFailed(String),
    /// The node has stopped.
    #[error("the node has stopped")]
    Stopped,
    /// The key's owner sees no majority of the cluster (the cache's quorum rule): no
    /// computation is granted on this side of a partition. Reads still answer.
    #[error("the key's owner sees no majority of the cluster: no computation on this side; reads still answer")]
    NoQuorum,
}

/// A value an owner sends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Found {
    /// The value.
    pub value: Vec<u8>,
    /// Its version at the owner.
    pub version: u64,
    /// The owner's life.
    pub owner: Life,
    /// What is left of its TTL, in milliseconds.
    pub ttl_ms: Option<u64>,
}

/// The caches' messages between nodes (on the coordination channel).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CacheMessage {
    /// Read a key at its owner.
    Get {
        /// The cache.
        cache: String,
        /// The key.
        key: Vec<u8>,
        /// The asker's request.
        req: u64,
    },
    /// Read a key at its owner, or be granted (or wait for) its computation.
    Compute {
        /// The cache.
        cache: String,
        /// The key.
        key: Vec<u8>,
        /// The asker's request.
        req: u64,
        /// What is left of the asker's deadline.
        within_ms: u64,
    },
    /// The owner's answer: its value, or none.
    Value {
        /// The cache.
        cache: String,
        /// The key.
        key: Vec<u8>,
        /// The asker's request.
        req: u64,
        /// The value, if the owner has one.
        found: Option<Found>,
    },
    /// The owner grants the asker the computation of a key.
    Grant {
        /// The cache.
        cache: String,
        /// The key.
        key: Vec<u8>,
        /// The asker's request.
        req: u64,
        /// Names this grant.
        token: u64,
        /// How long the runner may take.
        within_ms: u64,
        /// Who granted.
        owner: Life,
    },
    /// A value for the owner to take: a computation's result (`token` of its grant), or a plain
    /// write (`token` 0).
    Put {
        /// The cache.
        cache: String,
        /// The key.
        key: Vec<u8>,
        /// The grant, or 0.
        token: u64,
        /// Who granted it (`None` for a plain write): a token names a grant only within the
        /// owner's life that made it.
        granted_by: Option<Life>,
        /// The value.
        value: Vec<u8>,
        /// Its TTL, if not the cache's.
        ttl_ms: Option<u64>,
    },
    /// A runner gives its grant back without a value.
    Abandon {
        /// The cache.
        cache: String,
        /// The key.
        key: Vec<u8>,
        /// The grant.
        token: u64,
        /// Who granted it.
        granted_by: Life,
    },
    /// The owner's value for a key changed: drop near copies older than `version`.
    Invalidate {
        /// The cache.
        cache: String,
        /// The key.
        key: Vec<u8>,
        /// The owner.
        owner: Life,
        /// The new version.
        version: u64,
    },
    /// The receiver does not own the key: ask again where the asker's view says.
    NotOwner {
        /// The cache.
        cache: String,
        /// The key.
        key: Vec<u8>,
        /// The asker's request.
        req: u64,
    },
    /// The sender owned the key until its view changed and the receiver owns it now: the
    /// sender's value, for the receiver to serve rather than compute again.
    Handoff {
        /// The cache.
        cache: String,
        /// The key.
        key: Vec<u8>,
        /// The value.
        value: Vec<u8>,
        /// What was left of its TTL, in milliseconds; `None`: no expiry.
        ttl_ms: Option<u64>,
    },
    /// The owner refuses a computation: it sees no majority (the quorum rule).
    NoQuorum {
        /// The cache.
        cache: String,
        /// The key.
        key: Vec<u8>,
        /// The asker's request.
        req: u64,
    },
    /// A plain write that reached a node which does not own its key, passed on to the owner in
    /// that node's view (once: the receiver takes it or drops it). Last of the variants, so
    /// the others keep their place on the wire.
    Forward {
        /// The cache.
        cache: String,
        /// The key.
        key: Vec<u8>,
        /// The value.
        value: Vec<u8>,
        /// Its TTL, if not the cache's.
        ttl_ms: Option<u64>,
    },
}

/// Encodes a message as the core's envelope carries it.
pub fn encode(message: &CacheMessage) -> Bytes {
    envelope::encode(envelope::CACHE, message)
}

/// What the machine tells its driver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CacheEvent {
    /// Request `req` ended: a value, none (a `get` miss), or an error.
    Done {
        /// The request.
        req: u64,
        /// Its outcome.
        result: Result<Option<Bytes>, CacheError>,
    },
    /// Run the compute function of request `req` now, and report with
    /// [`Caches::computed`] before `until` (it is given up then).
    Run {
        /// The request.
        req: u64,
        /// The cache.
        cache: String,
        /// The key.
        key: Bytes,
        /// Who granted it.
        granted_by: Life,
        /// Its deadline.
        until: Instant,
    },
    /// The computation of `req` is over here (done, failed or given up).
    RunEnded {
        /// The request.
        req: u64,
        /// The cache.
        cache: String,
        /// The key.
        key: Bytes,
        /// Who granted it.
        granted_by: Life,
    },
    /// A value was served to a caller here.
    Served {
        /// The cache.
        cache: String,
        /// The key.
        key: Bytes,
        /// Whose value.
        owner: Life,
        /// Its version.
        version: u64,
        /// From a near copy (rather than from the owner's answer or store).
        near: bool,
    },
    /// An owner's invalidation reached this node.
    InvalidationReached {
        /// The cache.
        cache: String,
        /// The key.
        key: Bytes,
        /// The owner.
        owner: Life,
        /// The new version.
        version: u64,
    },
}

/// How a read started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Started {
    /// Answered at once: a value, or a miss.
    Ready(Option<Bytes>),
    /// Answered later as [`CacheEvent::Done`] with this request number.
    Pending(u64),
}

/// Counters of one cache on this node (reads through the machine only).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Reads answered with a value.
    pub hits: u64,
    /// Reads that found none here.
    pub misses: u64,
    /// Computations granted to this node.
    pub computes: u64,
    /// Invalidations sent (as owner).
    pub invalidations_sent: u64,
    /// Expired replicated entries this node deleted from the keyspace.
    pub purged: u64,
    /// Owned entries handed to a key's new owner when ownership moved.
    pub handed_off: u64,
    /// Entries taken over from a key's previous owner.
    pub taken_over: u64,
    /// Computations refused for want of a majority (as owner; the quorum rule).
    pub refused: u64,
}

struct Cache {
    settings: CacheSettings,
    store: Arc<dyn Store>,
    /// Keys being computed (as owner).
    flights: BTreeMap<Bytes, Flight>,
    /// Who holds near copies of our keys (as owner).
    readers: readers::Readers,
    next_version: u64,
    stats: CacheStats,
    /// Keyspace keys with an expiry, to delete once expired (replicated mode).
    purge: purge::Purge,
}

struct Flight {
    token: u64,
    lease_until: Instant,
    waiters: VecDeque<Waiter>,
}

impl Flight {
    /// Queues `waiter`, once: a caller asking again (its view renewed our generation) only
    /// moves its deadline, or a grant would go to it again after its run ended, a round trip
    /// for nothing while the callers behind wait.
    fn wait(&mut self, waiter: Waiter) {
        let queued = self
            .waiters
            .iter_mut()
            .find(|w| (w.node, w.req) == (waiter.node, waiter.req));
        match queued {
            Some(queued) => queued.until = waiter.until,
            None => self.waiters.push_back(waiter),
        }
    }
}

#[derive(Clone, Copy)]
struct Waiter {
    node: NodeId,
    req: u64,
    until: Instant,
}

#[derive(Clone, Debug)]
enum Kind {
    Get,
    Compute,
    Running { token: u64, granted_by: Life },
}

#[derive(Clone, Debug)]
struct Pending {
    cache: String,
    key: Bytes,
    kind: Kind,
    /// Whom we asked: the owner's life in our view, since a request to a life that ended is
    /// lost with it.
    asked: Life,
    until: Instant,
    /// The highest version an invalidation from the node asked told us of while waiting, with
    /// the owner life it numbers (its cache's, which a renewed membership generation keeps:
    /// an answer of another life is not compared with it).
    floor: Option<(Life, u64)>,
    /// A put of ours to this key went out after the request: the answer may be from before
    /// it, so it is served (it was asked first) but not kept as a near copy.
    overtaken: bool,
}

/// Every cache declared on one node.
pub struct Caches {
    me: Life,
    candidates: Vec<Candidate>,
    caches: BTreeMap<String, Cache>,
    pending: BTreeMap<u64, Pending>,
    next_req: u64,
    next_token: u64,
    local: VecDeque<CacheMessage>,
    messages: Vec<(NodeId, CacheMessage)>,
    events: Vec<CacheEvent>,
    publications: Vec<Write>,
    /// Wall-clock milliseconds at `Instant::ZERO`, to carry replicated expiries.
    wall_ms_at_zero: u64,
    /// Handoffs that arrived before their cache was declared here.
    early: handoff::Early,
    /// Whether this node sees a majority of the agreed membership (the quorum rule).
    majority: bool,
    /// The views held lately, while a cache has the quorum rule.
    history: quorum::History,
}

/// Where a value reaching its owner comes from.
#[derive(Clone, Copy, Debug)]
enum Source {
    /// A writer's plain put: it ends a flight the quorum rule holds (its waiters have their
    /// value), and a node that does not own the key passes it on.
    Plain,
    /// A runner's computed value, with the token of its grant if this life made it.
    Granted(Option<u64>),
    /// Passed on by the key's previous owner (`Forward`): it replaces only a value that also
    /// came from another owner, since one its writer put here since then is newer.
    PassedOn,
}

impl Caches {
    /// No caches yet, for node life `me`.
    pub fn new(me: Life, wall_ms_at_zero: u64) -> Self {
        Self {
            me,
            candidates: vec![Candidate {
                id: me.node,
                generation: me.generation,
                tags: BTreeMap::new(),
            }],
            caches: BTreeMap::new(),
            pending: BTreeMap::new(),
            next_req: 1,
            next_token: 1,
            local: VecDeque::new(),
            messages: Vec::new(),
            events: Vec::new(),
            publications: Vec::new(),
            wall_ms_at_zero,
            early: handoff::Early::default(),
            majority: true,
            history: quorum::History::default(),
        }
    }

    /// Sets the wall-clock milliseconds at `Instant::ZERO` (the replication settings').
    pub fn set_wall_ms_at_zero(&mut self, ms: u64) {
        self.wall_ms_at_zero = ms;
    }

    /// Declares a cache here with its store, at `now`. Declaring it again with the same
    /// settings keeps the first store; with other settings it is a conflict. Handoffs that
    /// arrived for it before are taken now (see `cache/handoff.rs`).
    pub fn declare(
        &mut self,
        now: Instant,
        settings: CacheSettings,
        store: Arc<dyn Store>,
    ) -> Result<(), CacheError> {
        settings.validate()?;
        if let Some(held) = self.caches.get(&settings.name) {
            return if held.settings == settings {
                Ok(())
            } else {
                Err(CacheError::Conflict(settings.name))
            };
        }
        let name = settings.name.clone();
        self.caches.insert(
            name.clone(),
            Cache {
                settings,
                store,
                flights: BTreeMap::new(),
                readers: readers::Readers::default(),
                next_version: 1,
                stats: CacheStats::default(),
                purge: purge::Purge::default(),
            },
        );
        self.take_early(now, &name);
        self.note_view(now);
        Ok(())
    }

    /// Handoffs kept for caches not declared here yet.
    pub fn early_handoffs(&self) -> usize {
        self.early.len()
    }

    /// The declared caches' names, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.caches.keys().map(String::as_str)
    }

    /// A cache's settings.
    pub fn settings(&self, name: &str) -> Option<&CacheSettings> {
        self.caches.get(name).map(|c| &c.settings)
    }

    /// A cache's store.
    pub fn store(&self, name: &str) -> Option<&Arc<dyn Store>> {
        self.caches.get(name).map(|c| &c.store)
    }

    /// A cache's counters.
    pub fn stats(&self, name: &str) -> Option<CacheStats> {
        self.caches.get(name).map(|c| c.stats)
    }

    /// Keys this node computes for (as owner) now, per cache.
    pub fn flights(&self, name: &str) -> usize {
        self.caches.get(name).map_or(0, |c| c.flights.len())
    }

    /// Keys whose readers this node remembers (as owner), per cache.
    pub fn readers(&self, name: &str) -> usize {
        self.caches.get(name).map_or(0, |c| c.readers.len())
    }

    /// Requests waiting here for an answer.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Which node owns `key` of cache `name` in this node's view.
    pub fn owner_of(&self, name: &str, key: &[u8]) -> Option<NodeId> {
        let cache = self.caches.get(name)?;
        Some(self.owner(cache.settings.mode, name, key))
    }

    fn owner(&self, mode: Mode, name: &str, key: &[u8]) -> NodeId {
        match mode {
            Mode::Local | Mode::Replicated => self.me.node,
            Mode::Partitioned => owner_among(name, key, &self.candidates, self.me.node),
        }
    }

    /// The life of `key`'s owner in this node's view.
    fn owner_life(&self, mode: Mode, name: &str, key: &[u8]) -> Life {
        let node = self.owner(mode, name, key);
        if node == self.me.node {
            return self.me;
        }
        // Owners are picked among the candidates, so their life is known.
        self.life_of(node).unwrap_or(Life {
            node,
            generation: 0,
        })
    }

    fn life_of(&self, node: NodeId) -> Option<Life> {
        self.candidates.iter().find(|c| c.id == node).map(|c| Life {
            node,
            generation: c.generation,
        })
    }

    fn check_key(&self, name: &str, key: &[u8]) -> Result<&Cache, CacheError> {
        let cache = self
            .caches
            .get(name)
            .ok_or_else(|| CacheError::Unknown(name.to_owned()))?;
        if key.len() > cache.settings.max_key_bytes {
            return Err(CacheError::KeyTooLarge {
                len: key.len(),
                max: cache.settings.max_key_bytes,
            });
        }
        Ok(cache)
    }

    /// Takes `candidates` as the view without acting on the change: for the first cache
    /// declared on a node, when nothing held can depend on an older view.
    pub fn adopt_view(&mut self, mut candidates: Vec<Candidate>) {
        candidates.sort_by_key(|c| c.id);
        self.candidates = candidates;
    }

    /// Whether this node sees a majority of the agreed membership: the quorum rule's input,
    /// taken up with the next [`Caches::update_view`].
    pub fn set_majority(&mut self, majority: bool) {
        self.majority = majority;
    }

    /// Takes up the members that may own keys: this node and every alive member. Near copies
    /// of keys whose owner changed are dropped (nobody would invalidate them), requests asked
    /// of an owner's life that no longer owns their key (or that ended: a restarted owner
    /// lost them) are asked again, and flights of keys this node no longer owns send their
    /// waiters on.
    pub fn update_view(&mut self, now: Instant, mut candidates: Vec<Candidate>) {
        if !candidates.iter().any(|c| c.id == self.me.node) {
            candidates.push(Candidate {
                id: self.me.node,
                generation: self.me.generation,
                tags: BTreeMap::new(),
            });
        }
        candidates.sort_by_key(|c| c.id);
        if candidates == self.candidates {
            self.note_view(now);
            self.refuse_without_quorum(now);
            return self.pump(now);
        }
        self.candidates = candidates;
        self.note_view(now);
        let names: Vec<String> = self.caches.keys().cloned().collect();
        for name in names {
            let mode = self.caches.get(&name).map(|c| c.settings.mode);
            if mode != Some(Mode::Partitioned) {
                continue;
            }
            // Before the store forgets entries whose owner changed: ours go to their new owner.
            self.hand_off_moved(now, &name);
            let Some(cache) = self.caches.get(&name) else {
                continue;
            };
            let store = cache.store.clone();
            // Ours carry our cache's life, which a renewed generation in the view keeps: the
            // owner's life is ours then, not the view's.
            store.retain(&mut |key, entry| {
                self.owner_life(Mode::Partitioned, &name, key) == entry.owner
            });
            let moved: Vec<Bytes> = cache
                .flights
                .keys()
                .chain(cache.readers.keys())
                .filter(|k| self.owner(Mode::Partitioned, &name, k) != self.me.node)
                .cloned()
                .collect();
            for key in moved {
                let Some(cache) = self.caches.get_mut(&name) else {
                    break;
                };
                cache.readers.remove(&key);
                // A granted flight stays until its runner ends it or its lease runs out, so
                // a key that comes back here is not granted twice at once; its waiters ask
                // the new owner.
                let waiters: Vec<Waiter> = match cache.flights.get_mut(&key) {
                    Some(flight) => flight.waiters.drain(..).collect(),
                    None => Vec::new(),
                };
                if cache.flights.get(&key).is_some_and(|f| f.token == 0) {
                    cache.flights.remove(&key);
                }
                for w in waiters {
                    self.send(
                        w.node,
                        CacheMessage::NotOwner {
                            cache: name.clone(),
                            key: key.to_vec(),
                            req: w.req,
                        },
                    );
                }
            }
        }
        // Requests waiting on a life that no longer owns their key: ask the new owner.
        let moved: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| !matches!(p.kind, Kind::Running { .. }))
            .filter(|(_, p)| {
                let mode = self.caches.get(&p.cache).map(|c| c.settings.mode);
                mode.is_some_and(|m| self.owner_life(m, &p.cache, &p.key) != p.asked)
            })
            .map(|(req, _)| *req)
            .collect();
        for req in moved {
            self.ask_again(now, req);
        }
        self.refuse_without_quorum(now);
        self.pump(now);
    }

    /// Reads `key`: from this node's store (owned, local, replicated or a near copy), else in
    /// partitioned mode from the key's owner.
    pub fn get(
        &mut self,
        now: Instant,
        name: &str,
        key: &[u8],
        within: Duration,
    ) -> Result<Started, CacheError> {
        self.read(now, name, key, within, false)
    }

    /// Reads `key`, or computes it: the answer is a value at once, or a request whose end comes
    /// as [`CacheEvent::Done`] — after a [`CacheEvent::Run`] if this node is granted the
    /// computation.
    pub fn get_or_compute(
        &mut self,
        now: Instant,
        name: &str,
        key: &[u8],
        within: Duration,
    ) -> Result<Started, CacheError> {
        self.read(now, name, key, within, true)
    }

    fn read(
        &mut self,
        now: Instant,
        name: &str,
        key: &[u8],
        within: Duration,
        compute: bool,
    ) -> Result<Started, CacheError> {
        let cache = self.check_key(name, key)?;
        let mode = cache.settings.mode;
        if let Some(entry) = cache.store.get(key, now) {
            let near = entry.owner.node != self.me.node;
            let event = CacheEvent::Served {
                cache: name.to_owned(),
                key: Bytes::copy_from_slice(key),
                owner: entry.owner,
                version: entry.version,
                near,
            };
            self.events.push(event);
            if let Some(cache) = self.caches.get_mut(name) {
                cache.stats.hits += 1;
            }
            return Ok(Started::Ready(Some(entry.value)));
        }
        if let Some(cache) = self.caches.get_mut(name) {
            cache.stats.misses += 1;
        }
        // Only a miss needs the owner: a hit leaves without hashing the key's shard.
        let owner = self.owner_life(mode, name, key);
        if !compute && owner == self.me {
            return Ok(Started::Ready(None));
        }
        let req = self.next_req;
        self.next_req += 1;
        self.pending.insert(
            req,
            Pending {
                cache: name.to_owned(),
                key: Bytes::copy_from_slice(key),
                kind: if compute { Kind::Compute } else { Kind::Get },
                asked: owner,
                until: now + within,
                floor: None,
                overtaken: false,
            },
        );
        self.ask(now, req);
        self.pump(now);
        Ok(Started::Pending(req))
    }

    fn ask(&mut self, now: Instant, req: u64) {
        let Some(p) = self.pending.get(&req) else {
            return;
        };
        let (cache, key) = (p.cache.clone(), p.key.to_vec());
        let message = match p.kind {
            Kind::Get => CacheMessage::Get { cache, key, req },
            Kind::Compute => CacheMessage::Compute {
                cache,
                key,
                req,
                within_ms: millis(p.until.saturating_since(now)),
            },
            Kind::Running { .. } => return,
        };
        let to = p.asked.node;
        self.send(to, message);
    }

    fn ask_again(&mut self, now: Instant, req: u64) {
        let Some(p) = self.pending.get(&req) else {
            return;
        };
        let Some(mode) = self.caches.get(&p.cache).map(|c| c.settings.mode) else {
            return;
        };
        let owner = self.owner_life(mode, &p.cache, &p.key);
        if let Some(p) = self.pending.get_mut(&req) {
            p.asked = owner;
        }
        self.ask(now, req);
    }

    /// Writes `value` under `key`: here in local and replicated mode (replicated to every node
    /// in the latter), at the key's owner in partitioned mode.
    pub fn put(
        &mut self,
        now: Instant,
        name: &str,
        key: &[u8],
        value: Bytes,
        ttl: Option<Duration>,
    ) -> Result<(), CacheError> {
        let cache = self.check_key(name, key)?;
        if value.len() > cache.settings.max_value_bytes {
            return Err(CacheError::ValueTooLarge {
                len: value.len(),
                max: cache.settings.max_value_bytes,
            });
        }
        let owner = self.owner(cache.settings.mode, name, key);
        if owner != self.me.node {
            // Our near copy is older than this put, and the owner's invalidation is a round
            // trip away: a read here right after the put asks the owner instead, behind the
            // put on the same ordered channel. Reads already asked may bring back a value from
            // before the put: none of them leaves a near copy.
            cache.store.remove(key);
            self.pending
                .values_mut()
                .filter(|p| p.cache == name && p.key == key)
                .for_each(|p| p.overtaken = true);
        }
        let message = CacheMessage::Put {
            cache: name.to_owned(),
            key: key.to_vec(),
            token: 0,
            granted_by: None,
            value: value.to_vec(),
            ttl_ms: ttl.map(millis),
        };
        self.send(owner, message);
        self.pump(now);
        Ok(())
    }

    /// The outcome of the computation this node was granted for request `req`: the value and
    /// its TTL, or why it failed. A late outcome (after its deadline) is ignored.
    pub fn computed(
        &mut self,
        now: Instant,
        req: u64,
        outcome: Result<(Bytes, Option<Duration>), CacheError>,
    ) {
        let Some(p) = self.pending.get(&req) else {
            return;
        };
        let Kind::Running { token, granted_by } = p.kind else {
            return;
        };
        let Some(p) = self.pending.remove(&req) else {
            return;
        };
        let limit = self
            .caches
            .get(&p.cache)
            .map_or(0, |c| c.settings.max_value_bytes);
        let outcome = outcome.and_then(|(value, ttl)| {
            if value.len() > limit {
                Err(CacheError::ValueTooLarge {
                    len: value.len(),
                    max: limit,
                })
            } else {
                Ok((value, ttl))
            }
        });
        let message = match &outcome {
            Ok((value, ttl)) => CacheMessage::Put {
                cache: p.cache.clone(),
                key: p.key.to_vec(),
                token,
                granted_by: Some(granted_by),
                value: value.to_vec(),
                ttl_ms: ttl.map(millis),
            },
            Err(_) => CacheMessage::Abandon {
                cache: p.cache.clone(),
                key: p.key.to_vec(),
                token,
                granted_by,
            },
        };
        self.send(granted_by.node, message);
        self.events.push(CacheEvent::RunEnded {
            req,
            cache: p.cache,
            key: p.key,
            granted_by,
        });
        self.events.push(CacheEvent::Done {
            req,
            result: outcome.map(|(value, _)| Some(value)),
        });
        self.pump(now);
    }

    /// Handles a message from `from` (this node's own are handled without the network).
    pub fn received(&mut self, now: Instant, from: NodeId, message: CacheMessage) {
        self.handle(now, from, message);
        self.pump(now);
    }

    fn pump(&mut self, now: Instant) {
        while let Some(message) = self.local.pop_front() {
            let me = self.me.node;
            self.handle(now, me, message);
        }
    }

    fn send(&mut self, to: NodeId, message: CacheMessage) {
        if to == self.me.node {
            self.local.push_back(message);
        } else {
            self.messages.push((to, message));
        }
    }

    fn handle(&mut self, now: Instant, from: NodeId, message: CacheMessage) {
        match message {
            CacheMessage::Get { cache, key, req } => self.owner_get(now, from, cache, key, req),
            CacheMessage::Compute {
                cache,
                key,
                req,
                within_ms,
            } => self.owner_compute(now, from, cache, key, req, within_ms),
            CacheMessage::Put {
                cache,
                key,
                token,
                granted_by,
                value,
                ttl_ms,
            } => {
                let source = match granted_by {
                    None => Source::Plain,
                    Some(life) => Source::Granted(self.own_token(token, life)),
                };
                self.owner_put(now, cache, key, source, value, ttl_ms)
            }
            CacheMessage::Forward {
                cache,
                key,
                value,
                ttl_ms,
            } => self.owner_put(now, cache, key, Source::PassedOn, value, ttl_ms),
            CacheMessage::Abandon {
                cache,
                key,
                token,
                granted_by,
            } => {
                let key = Bytes::from(key);
                let token = self.own_token(token, granted_by);
                let held = self
                    .caches
                    .get(&cache)
                    .and_then(|c| c.flights.get(&key))
                    .is_some_and(|f| Some(f.token) == token);
                if held {
                    self.grant_next(now, &cache, &key);
                }
            }
            CacheMessage::Value {
                cache: _,
                key: _,
                req,
                found,
            } => self.value_arrived(now, req, found),
            CacheMessage::Grant {
                cache,
                key,
                req,
                token,
                within_ms,
                owner,
            } => self.granted(now, cache, key, req, token, within_ms, owner),
            CacheMessage::Invalidate {
                cache,
                key,
                owner,
                version,
            } => self.invalidated(cache, key, owner, version),
            CacheMessage::NotOwner { req, .. } => {
                if self.pending.contains_key(&req) {
                    self.ask_again(now, req);
                }
            }
            CacheMessage::Handoff {
                cache,
                key,
                value,
                ttl_ms,
            } => self.take_over(now, cache, key, value, ttl_ms),
            CacheMessage::NoQuorum { req, .. } => {
                let computing = self
                    .pending
                    .get(&req)
                    .is_some_and(|p| matches!(p.kind, Kind::Compute));
                if computing {
                    self.pending.remove(&req);
                    let result = Err(CacheError::NoQuorum);
                    self.events.push(CacheEvent::Done { req, result });
                }
            }
        }
    }

    /// The token of a flight here that a runner's message may end: its grant's, if this life
    /// made it (a restarted owner numbers its grants from 1 again, so a grant of its previous
    /// life may bear the number of one of its own).
    fn own_token(&self, token: u64, granted_by: Life) -> Option<u64> {
        (granted_by == self.me).then_some(token)
    }

    /// Our entry for `key` as the owner would send it, if we own it and hold a fresh one.
    fn owned(&self, now: Instant, name: &str, key: &[u8]) -> Result<Option<Found>, ()> {
        let Some(cache) = self.caches.get(name) else {
            return Err(());
        };
        if self.owner(cache.settings.mode, name, key) != self.me.node {
            return Err(());
        }
        Ok(cache
            .store
            .get(key, now)
            .filter(|e| e.owner == self.me)
            .map(|e| Found {
                value: e.value.to_vec(),
                version: e.version,
                owner: e.owner,
                ttl_ms: e.expires.map(|at| millis(at.saturating_since(now))),
            }))
    }

    fn owner_get(&mut self, now: Instant, from: NodeId, name: String, key: Vec<u8>, req: u64) {
        match self.owned(now, &name, &key) {
            Err(()) => self.send(
                from,
                CacheMessage::NotOwner {
                    cache: name,
                    key,
                    req,
                },
            ),
            Ok(found) => {
                if let Some(found) = &found {
                    self.add_reader(now, &name, &key, from, found.ttl_ms);
                }
                self.send(
                    from,
                    CacheMessage::Value {
                        cache: name,
                        key,
                        req,
                        found,
                    },
                );
            }
        }
    }

    /// Remembers that `reader` (if another node) may keep a near copy of our answer for `key`,
    /// which had `ttl_ms` left, so that a new value invalidates it.
    fn add_reader(
        &mut self,
        now: Instant,
        name: &str,
        key: &[u8],
        reader: NodeId,
        ttl_ms: Option<u64>,
    ) {
        if reader == self.me.node {
            return;
        }
        let Some(cache) = self.caches.get_mut(name) else {
            return;
        };
        let settings = &cache.settings;
        if settings.mode != Mode::Partitioned {
            return;
        }
        // As long as the reader keeps it, plus its travel time.
        let until = now + settings.near_copy_life(ttl_ms) + settings.lease_margin;
        cache.readers.add(now, key, reader, until);
    }

    fn owner_compute(
        &mut self,
        now: Instant,
        from: NodeId,
        name: String,
        key: Vec<u8>,
        req: u64,
        within_ms: u64,
    ) {
        match self.owned(now, &name, &key) {
            Err(()) => {
                return self.send(
                    from,
                    CacheMessage::NotOwner {
                        cache: name,
                        key,
                        req,
                    },
                )
            }
            Ok(Some(found)) => {
                self.add_reader(now, &name, &key, from, found.ttl_ms);
                let found = Some(found);
                return self.send(
                    from,
                    CacheMessage::Value {
                        cache: name,
                        key,
                        req,
                        found,
                    },
                );
            }
            Ok(None) => {}
        }
        let waiter = Waiter {
            node: from,
            req,
            until: now + Duration::from_millis(within_ms),
        };
        let key = Bytes::from(key);
        let Some(cache) = self.caches.get_mut(&name) else {
            return;
        };
        match cache.flights.get_mut(&key) {
            Some(flight) if !fault_on!(CacheFlightAdmitsAll) => flight.wait(waiter),
            _ => {
                let flight = Flight {
                    token: 0,
                    lease_until: now,
                    waiters: VecDeque::from([waiter]),
                };
                cache.flights.insert(key.clone(), flight);
                self.grant_next(now, &name, &key);
            }
        }
    }

    /// Grants the flight of `key` to its next waiter still waiting, or ends it; under the
    /// quorum rule, refuses its waiters or holds them until the rule allows.
    fn grant_next(&mut self, now: Instant, name: &str, key: &Bytes) {
        let me = self.me;
        let token = self.next_token;
        let verdict = self.verdict(now, name, key);
        if verdict == quorum::Verdict::NoQuorum {
            return self.refuse_flight(name, key);
        }
        let Some(cache) = self.caches.get_mut(name) else {
            return;
        };
        let margin = cache.settings.lease_margin;
        let max_run = cache.settings.quorum.as_ref().map(|r| r.max_run);
        let Some(flight) = cache.flights.get_mut(key) else {
            return;
        };
        if let quorum::Verdict::WaitUntil(at) = verdict {
            flight.token = 0;
            flight.lease_until = at;
            return;
        }
        while let Some(next) = flight.waiters.pop_front() {
            if next.until <= now {
                continue;
            }
            self.next_token += 1;
            flight.token = token;
            let within = next.until.saturating_since(now);
            let within = max_run.map_or(within, |max| within.min(max));
            flight.lease_until = now + within + margin;
            self.send(
                next.node,
                CacheMessage::Grant {
                    cache: name.to_owned(),
                    key: key.to_vec(),
                    req: next.req,
                    token,
                    within_ms: millis(within),
                    owner: me,
                },
            );
            return;
        }
        cache.flights.remove(key);
    }

    fn owner_put(
        &mut self,
        now: Instant,
        name: String,
        key: Vec<u8>,
        source: Source,
        value: Vec<u8>,
        ttl_ms: Option<u64>,
    ) {
        let me = self.me;
        let token = match source {
            Source::Plain | Source::PassedOn => Some(0),
            Source::Granted(token) => token,
        };
        let Some(cache) = self.caches.get_mut(&name) else {
            return self.early.forget(&name, &key);
        };
        let settings = &cache.settings;
        if !settings.fits(&key, &value) {
            return;
        }
        let mode = settings.mode;
        let ttl = ttl_ms.map(Duration::from_millis).or(settings.ttl);
        let owner = self.owner(mode, &name, &key);
        if owner != me.node && matches!(source, Source::Plain) {
            return self.pass_on(owner, name, key, value, ttl_ms);
        }
        let key = Bytes::from(key);
        if owner != me.node {
            // Ownership moved while a computation's value travelled: its new owner computes
            // afresh. The runner's flight here is over.
            let finished = self
                .caches
                .get(&name)
                .and_then(|c| c.flights.get(&key))
                .is_some_and(|f| Some(f.token) == token);
            if finished {
                self.grant_next(now, &name, &key);
            }
            return;
        }
        let Some(cache) = self.caches.get_mut(&name) else {
            return;
        };
        let passed_on = matches!(source, Source::PassedOn);
        let from_writer = |e: &Entry| e.owner == me && !e.handed_over;
        if passed_on && cache.store.get(&key, now).is_some_and(|e| from_writer(&e)) {
            // Took two hops: the value its writer put here since is newer.
            return;
        }
        let version = cache.next_version;
        cache.next_version += 1;
        let expires = ttl.map(|ttl| now + ttl);
        let value = Bytes::from(value);
        if mode == Mode::Replicated {
            let wall = expires.map(|at| self.wall_ms_at_zero + millis(at.elapsed()));
            self.publications.push(Write {
                keyspace: format!("{KEYSPACE_PREFIX}{name}"),
                key: hex(&key),
                value: Some(encode_replicated(wall, &value)),
            });
        }
        let Some(cache) = self.caches.get_mut(&name) else {
            return;
        };
        if mode == Mode::Replicated {
            cache.purge.track(&key, expires);
        }
        let entry = Entry {
            value: value.clone(),
            version,
            owner: me,
            expires,
            handed_over: passed_on,
        };
        cache.store.insert(key.clone(), entry, now);
        let readers = cache.readers.take(&key);
        cache.stats.invalidations_sent += readers.len() as u64;
        let finished = cache
            .flights
            .get(&key)
            .is_some_and(|f| Some(f.token) == token);
        let waiters: Vec<Waiter> = match cache.flights.get_mut(&key) {
            Some(flight) if finished => {
                let w = flight.waiters.drain(..).collect();
                cache.flights.remove(&key);
                w
            }
            Some(flight) => flight.waiters.drain(..).collect(),
            None => Vec::new(),
        };
        for reader in readers {
            self.send(
                reader,
                CacheMessage::Invalidate {
                    cache: name.clone(),
                    key: key.to_vec(),
                    owner: me,
                    version,
                },
            );
        }
        let found = Found {
            value: value.to_vec(),
            version,
            owner: me,
            ttl_ms: ttl.map(millis),
        };
        for w in waiters.into_iter().filter(|w| w.until > now) {
            self.add_reader(now, &name, &key, w.node, found.ttl_ms);
            self.send(
                w.node,
                CacheMessage::Value {
                    cache: name.clone(),
                    key: key.to_vec(),
                    req: w.req,
                    found: Some(found.clone()),
                },
            );
        }
    }

    fn value_arrived(&mut self, now: Instant, req: u64, found: Option<Found>) {
        let Some(p) = self.pending.get(&req) else {
            return;
        };
        if matches!(p.kind, Kind::Running { .. }) {
            return;
        }
        let Some(found) = found else {
            let Some(p) = self.pending.remove(&req) else {
                return;
            };
            if matches!(p.kind, Kind::Compute) {
                // An owner answers a computation with a value or a grant, never with none; ask
                // again rather than end without either.
                self.pending.insert(req, p);
                return self.ask_again(now, req);
            }
            return self.events.push(CacheEvent::Done {
                req,
                result: Ok(None),
            });
        };
        let below_floor = p
            .floor
            .is_some_and(|(life, v)| found.owner == life && found.version < v);
        if below_floor {
            // An answer older than an invalidation that already reached us: ask again.
            return self.ask_again(now, req);
        }
        let Some(p) = self.pending.remove(&req) else {
            return;
        };
        let value = Bytes::from(found.value);
        if let Some(cache) = self.caches.get(&p.cache) {
            let ttl = cache.settings.near_copy_life(found.ttl_ms);
            let keep = !p.overtaken && found.owner.node != self.me.node;
            if keep && Some(found.owner) == self.life_of(p.asked.node) {
                let entry = Entry {
                    value: value.clone(),
                    version: found.version,
                    owner: found.owner,
                    expires: Some(now + ttl),
                    handed_over: false,
                };
                cache.store.insert(p.key.clone(), entry, now);
            }
        }
        self.events.push(CacheEvent::Served {
            cache: p.cache,
            key: p.key,
            owner: found.owner,
            version: found.version,
            near: false,
        });
        self.events.push(CacheEvent::Done {
            req,
            result: Ok(Some(value)),
        });
    }

    #[allow(clippy::too_many_arguments)]
    fn granted(
        &mut self,
        now: Instant,
        cache: String,
        key: Vec<u8>,
        req: u64,
        token: u64,
        within_ms: u64,
        owner: Life,
    ) {
        let waiting = self
            .pending
            .get(&req)
            .is_some_and(|p| matches!(p.kind, Kind::Compute));
        if !waiting {
            // Given up already: hand the grant back at once.
            let message = CacheMessage::Abandon {
                cache,
                key,
                token,
                granted_by: owner,
            };
            return self.send(owner.node, message);
        }
        let Some(p) = self.pending.get_mut(&req) else {
            return;
        };
        p.kind = Kind::Running {
            token,
            granted_by: owner,
        };
        p.until = p.until.min(now + Duration::from_millis(within_ms));
        let until = p.until;
        if let Some(c) = self.caches.get_mut(&cache) {
            c.stats.computes += 1;
        }
        self.events.push(CacheEvent::Run {
            req,
            cache,
            key: Bytes::from(key),
            granted_by: owner,
            until,
        });
    }

    fn invalidated(&mut self, name: String, key: Vec<u8>, owner: Life, version: u64) {
        let key = Bytes::from(key);
        self.events.push(CacheEvent::InvalidationReached {
            cache: name.clone(),
            key: key.clone(),
            owner,
            version,
        });
        for p in self.pending.values_mut() {
            if p.cache == name && p.key == key && p.asked.node == owner.node {
                p.floor = match p.floor {
                    Some((life, v)) if life == owner => Some((life, v.max(version))),
                    _ => Some((owner, version)),
                };
            }
        }
        if fault_on!(CacheNearIgnoresInvalidation) {
            return;
        }
        if let Some(cache) = self.caches.get(&name) {
            let stale = cache
                .store
                .get(&key, Instant::ZERO)
                .is_some_and(|e| e.owner == owner && e.version < version);
            if stale {
                cache.store.remove(&key);
            }
        }
    }

    /// Takes up a replicated cache's entry as its keyspace now holds it (`None`: removed).
    pub fn replicated_changed(
        &mut self,
        now: Instant,
        keyspace: &str,
        key: &str,
        new: Option<&[u8]>,
    ) {
        let Some(name) = keyspace.strip_prefix(KEYSPACE_PREFIX) else {
            return;
        };
        let me = self.me;
        let wall_zero = self.wall_ms_at_zero;
        let Some(cache) = self.caches.get_mut(name) else {
            return;
        };
        if cache.settings.mode != Mode::Replicated {
            return;
        }
        let Some(raw_key) = unhex(key) else {
            return;
        };
        let raw_key = Bytes::from(raw_key);
        match new.and_then(decode_replicated) {
            Some((wall, value)) => {
                let expires = wall.map(|ms| {
                    Instant::from_elapsed(Duration::from_millis(ms.saturating_sub(wall_zero)))
                });
                cache.purge.track(&raw_key, expires);
                let version = cache.next_version;
                cache.next_version += 1;
                let entry = Entry {
                    value: Bytes::from(value),
                    version,
                    owner: me,
                    expires,
                    handed_over: false,
                };
                if entry.fresh(now) {
                    cache.store.insert(raw_key, entry, now);
                }
            }
            None => {
                cache.purge.track(&raw_key, None);
                cache.store.remove(&raw_key);
            }
        }
    }

    /// When [`Caches::handle_timeout`] next has something to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let pending = self.pending.values().map(|p| p.until);
        // A granted flight's lease, or when the quorum rule lets a held one be granted.
        let leases = self
            .caches
            .values()
            .flat_map(|c| c.flights.values())
            .map(|f| f.lease_until);
        let purges = self.caches.values().filter_map(|c| c.purge.next());
        pending.chain(leases).chain(purges).min()
    }

    /// Ends requests whose deadline passed (a computation under way is given up and its grant
    /// handed back) and grants flights whose lease ran out to their next waiter.
    pub fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| p.until <= now)
            .map(|(req, _)| *req)
            .collect();
        for req in due {
            let Some(p) = self.pending.remove(&req) else {
                continue;
            };
            if let Kind::Running { token, granted_by } = p.kind {
                self.send(
                    granted_by.node,
                    CacheMessage::Abandon {
                        cache: p.cache.clone(),
                        key: p.key.to_vec(),
                        token,
                        granted_by,
                    },
                );
                self.events.push(CacheEvent::RunEnded {
                    req,
                    cache: p.cache,
                    key: p.key,
                    granted_by,
                });
            }
            self.events.push(CacheEvent::Done {
                req,
                result: Err(CacheError::Timeout),
            });
        }
        let expired: Vec<(String, Bytes)> = self
            .caches
            .iter()
            .flat_map(|(name, c)| {
                c.flights
                    .iter()
                    .filter(|(_, f)| f.lease_until <= now)
                    .map(move |(k, _)| (name.clone(), k.clone()))
            })
            .collect();
        for (name, key) in expired {
            self.grant_next(now, &name, &key);
        }
        self.purge_expired(now);
        self.pump(now);
    }

    /// Deletes from replicated caches' keyspaces the expired entries due here (see
    /// [`purge`]): the key's purger in this node's view deletes it first, anyone later.
    fn purge_expired(&mut self, now: Instant) {
        let me = self.me.node;
        for (name, cache) in &mut self.caches {
            for (key, turn) in cache.purge.take_due(now) {
                let purger = rendezvous::owner(
                    Rule::Rendezvous,
                    name,
                    rendezvous::shard_of(&key, SHARDS),
                    &self.candidates,
                );
                if turn == purge::Turn::Purger && purger != Some(me) {
                    continue;
                }
                cache.stats.purged += 1;
                self.publications.push(Write {
                    keyspace: format!("{KEYSPACE_PREFIX}{name}"),
                    key: hex(&key),
                    value: None,
                });
            }
        }
    }

    /// How many keyspace keys of replicated cache `name` this node tracks for deletion once
    /// expired.
    pub fn purge_tracked(&self, name: &str) -> usize {
        self.caches.get(name).map_or(0, |c| c.purge.len())
    }

    /// Messages for other nodes, in order.
    pub fn take_messages(&mut self) -> Vec<(NodeId, CacheMessage)> {
        std::mem::take(&mut self.messages)
    }

    /// Events for the driver, in order.
    pub fn take_events(&mut self) -> Vec<CacheEvent> {
        std::mem::take(&mut self.events)
    }

    /// Writes to replicated caches' keyspaces.
    pub fn take_publications(&mut self) -> Vec<Write> {
        std::mem::take(&mut self.publications)
    }

    /// The machine's invariants: a flight's lease is armed while granted, and no request waits
    /// on an unknown cache.
    pub fn invariants(&self) -> Result<(), String> {
        for p in self.pending.values() {
            if !self.caches.contains_key(&p.cache) {
                return Err(format!("a request waits on unknown cache {:?}", p.cache));
            }
        }
        Ok(())
    }
}

/// The owner of `key` of partitioned cache `name` among `candidates` (`fallback` if none).
fn owner_among(name: &str, key: &[u8], candidates: &[Candidate], fallback: NodeId) -> NodeId {
    let shard = rendezvous::shard_of(key, SHARDS);
    rendezvous::owner(Rule::Rendezvous, name, shard, candidates).unwrap_or(fallback)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn hex(key: &[u8]) -> String {
    key.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

fn encode_replicated(expires_wall_ms: Option<u64>, value: &[u8]) -> Vec<u8> {
    postcard::to_stdvec(&(expires_wall_ms, value)).unwrap_or_default()
}

fn decode_replicated(bytes: &[u8]) -> Option<(Option<u64>, Vec<u8>)> {
    postcard::from_bytes(bytes).ok()
}
