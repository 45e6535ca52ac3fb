//! `node.cache(name)`: the runtime side of the caches (`foundation_core::cache`). The machine
//! runs inside the node's core; here are the handles, the `moka` store the machine and the
//! handles share (a hit never leaves the caller's thread), the compute functions (run as tokio
//! tasks, so a panic or a deadline ends only the call), `foundation_cache_*` metrics and
//! `GET /caches`.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
pub use foundation_core::cache::Mode;
use foundation_core::cache::{CacheEvent, Entry, Started, Store};
use foundation_core::time::Instant;
use foundation_core::Core;
use foundation_transport::Declared;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};

pub use foundation_core::cache::{CacheError, CacheSettings, QuorumRule};

use super::metrics::advance;
use super::request::Request;
use crate::http::HttpServerBuilder;

/// A compute function, boxed for the driver.
pub(crate) type ComputeFn =
    Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = Result<Vec<u8>, String>> + Send>> + Send>;

type Reply = oneshot::Sender<Result<Option<Bytes>, CacheError>>;

/// What a cache handle asks of the driver.
pub(crate) enum CacheRequest {
    /// Declare the cache `handle` is for, with its store: answered with the handle whose
    /// store the machine writes (the first declaration's).
    Declare {
        handle: CacheHandle,
        done: oneshot::Sender<Result<CacheHandle, CacheError>>,
    },
    Get {
        name: String,
        key: Bytes,
        within: Duration,
        compute: Option<ComputeFn>,
        done: Reply,
    },
    Put {
        name: String,
        key: Bytes,
        value: Bytes,
        ttl: Option<Duration>,
        done: oneshot::Sender<Result<(), CacheError>>,
    },
    /// A compute function's outcome, from its task.
    Computed {
        req: u64,
        outcome: Result<Bytes, CacheError>,
    },
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CacheLabels {
    cache: String,
}

/// `foundation_cache_*`, registered at start.
#[derive(Clone, Debug, Default)]
pub(crate) struct CacheMetrics {
    hits: Family<CacheLabels, Counter>,
    misses: Family<CacheLabels, Counter>,
    evictions: Family<CacheLabels, Counter>,
    computes: Family<CacheLabels, Counter>,
    compute_failures: Family<CacheLabels, Counter>,
    purged: Family<CacheLabels, Counter>,
    handed_off: Family<CacheLabels, Counter>,
    taken_over: Family<CacheLabels, Counter>,
    refused: Family<CacheLabels, Counter>,
    bytes: Family<CacheLabels, Gauge>,
    entries: Family<CacheLabels, Gauge>,
}

impl CacheMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        let r = registry.sub_registry_with_prefix("foundation_cache");
        r.register(
            "hits",
            "Cache reads answered with a value on this node (owned, local, replicated or near copy, or the owner's answer), by cache",
            Declared(m.hits.clone()),
        );
        r.register(
            "misses",
            "Cache reads that found no value on this node, by cache",
            Declared(m.misses.clone()),
        );
        r.register(
            "evictions",
            "Entries evicted from this node's store for room (size bound), by cache",
            Declared(m.evictions.clone()),
        );
        r.register(
            "computes",
            "get_or_compute functions run on this node, by cache",
            Declared(m.computes.clone()),
        );
        r.register(
            "compute_failures",
            "get_or_compute functions that failed, panicked or ran out of time on this node, by cache",
            Declared(m.compute_failures.clone()),
        );
        r.register(
            "purged",
            "Expired replicated entries this node deleted from the cache's keyspace, by cache",
            Declared(m.purged.clone()),
        );
        r.register(
            "handed_off",
            "Owned entries this node handed to a key's new owner when ownership moved, by cache",
            Declared(m.handed_off.clone()),
        );
        r.register(
            "taken_over",
            "Entries this node took over from a key's previous owner, by cache",
            Declared(m.taken_over.clone()),
        );
        r.register(
            "refused",
            "Computations this node refused as a key's owner for want of a majority (the quorum rule), by cache",
            Declared(m.refused.clone()),
        );
        r.register(
            "bytes",
            "Weighted size of keys and values in this node's store, by cache",
            Declared(m.bytes.clone()),
        );
        r.register(
            "entries",
            "Entries in this node's store (near copies included), by cache",
            Declared(m.entries.clone()),
        );
        m
    }

    fn of(&self, name: &str) -> Counters {
        let l = CacheLabels {
            cache: name.to_owned(),
        };
        Counters {
            hits: self.hits.get_or_create(&l).clone(),
            misses: self.misses.get_or_create(&l).clone(),
            evictions: self.evictions.get_or_create(&l).clone(),
            computes: self.computes.get_or_create(&l).clone(),
            compute_failures: self.compute_failures.get_or_create(&l).clone(),
            purged: self.purged.get_or_create(&l).clone(),
            handed_off: self.handed_off.get_or_create(&l).clone(),
            taken_over: self.taken_over.get_or_create(&l).clone(),
            refused: self.refused.get_or_create(&l).clone(),
            bytes: self.bytes.get_or_create(&l).clone(),
            entries: self.entries.get_or_create(&l).clone(),
        }
    }
}

/// One cache's metric handles (looked up once, at declaration).
#[derive(Clone, Debug)]
struct Counters {
    hits: Counter,
    misses: Counter,
    evictions: Counter,
    computes: Counter,
    compute_failures: Counter,
    /// The core counts these four; [`CachesRuntime::sync_metrics`] mirrors them.
    purged: Counter,
    handed_off: Counter,
    taken_over: Counter,
    refused: Counter,
    bytes: Gauge,
    entries: Gauge,
}

/// What moka holds: the entry, and the TTL it had when inserted (for moka's own expiry).
#[derive(Clone)]
struct Stored {
    entry: Entry,
    ttl: Option<Duration>,
}

struct ByEntry;

impl moka::Expiry<Bytes, Stored> for ByEntry {
    fn expire_after_create(
        &self,
        _key: &Bytes,
        value: &Stored,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        value.ttl
    }

    fn expire_after_update(
        &self,
        _key: &Bytes,
        value: &Stored,
        _updated_at: std::time::Instant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        value.ttl
    }
}

/// A cache's store on a node: `moka`, bounded by weight. Each entry weighs its key and value
/// bytes plus an overhead, and at least `max_bytes / max_entries`, so the one weight bound keeps
/// both the byte bound and the entry bound.
#[derive(Clone)]
pub struct MokaStore {
    cache: moka::sync::Cache<Bytes, Stored>,
}

/// What an entry costs besides its bytes (moka's node, our `Entry`).
const ENTRY_OVERHEAD: u64 = 96;

impl MokaStore {
    /// A store within `settings`' bounds; `evicted` counts what moka evicts for room.
    pub fn new(settings: &CacheSettings, evicted: Option<Counter>) -> Self {
        let floor = settings.max_bytes.div_ceil(settings.max_entries).max(1);
        let mut builder = moka::sync::Cache::builder()
            .max_capacity(settings.max_bytes)
            .weigher(move |k: &Bytes, v: &Stored| {
                let bytes = (k.len() + v.entry.value.len()) as u64 + ENTRY_OVERHEAD;
                u32::try_from(bytes.max(floor)).unwrap_or(u32::MAX)
            })
            .expire_after(ByEntry);
        if let Some(evicted) = evicted {
            builder = builder.eviction_listener(move |_k, _v, cause| {
                if cause == moka::notification::RemovalCause::Size {
                    evicted.inc();
                }
            });
        }
        Self {
            cache: builder.build(),
        }
    }

    /// Weighted bytes held (after moka's pending work).
    pub fn weighted_size(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.weighted_size()
    }
}

impl Store for MokaStore {
    fn get(&self, key: &[u8], now: Instant) -> Option<Entry> {
        let stored = self.cache.get(key)?;
        if stored.entry.fresh(now) {
            Some(stored.entry)
        } else {
            self.cache.invalidate(key);
            None
        }
    }

    fn insert(&self, key: Bytes, entry: Entry, now: Instant) {
        let ttl = entry.expires.map(|at| at.saturating_since(now));
        self.cache.insert(key, Stored { entry, ttl });
    }

    fn remove(&self, key: &[u8]) {
        self.cache.invalidate(key);
    }

    fn retain(&self, keep: &mut dyn FnMut(&[u8], &Entry) -> bool) {
        let gone: Vec<Arc<Bytes>> = self
            .cache
            .iter()
            .filter(|(k, v)| !keep(k, &v.entry))
            .map(|(k, _)| k)
            .collect();
        for key in gone {
            self.cache.invalidate(&*key);
        }
    }

    fn len(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.entry_count()
    }
}

/// One cache on this node. Cheap to clone.
#[derive(Clone)]
pub struct CacheHandle {
    settings: Arc<CacheSettings>,
    store: MokaStore,
    requests: mpsc::Sender<Request>,
    epoch: tokio::time::Instant,
    counters: Counters,
}

impl CacheHandle {
    /// Its name.
    pub fn name(&self) -> &str {
        &self.settings.name
    }

    /// Its settings.
    pub fn settings(&self) -> &CacheSettings {
        &self.settings
    }

    fn now(&self) -> Instant {
        Instant::from_elapsed(self.epoch.elapsed())
    }

    fn check_key(&self, key: &[u8]) -> Result<(), CacheError> {
        if key.len() > self.settings.max_key_bytes {
            return Err(CacheError::KeyTooLarge {
                len: key.len(),
                max: self.settings.max_key_bytes,
            });
        }
        Ok(())
    }

    /// The value held here for `key` (a local hit, without asking the driver), if any.
    fn local(&self, key: &[u8]) -> Option<Bytes> {
        let entry = self.store.get(key, self.now())?;
        self.counters.hits.inc();
        Some(entry.value)
    }

    /// The value under `key`: from this node (owned, local, replicated or a near copy), else
    /// from the key's owner in partitioned mode; `None` if there is none. Waits at most
    /// `within` for a remote owner.
    pub async fn get(
        &self,
        key: impl AsRef<[u8]>,
        within: Duration,
    ) -> Result<Option<Bytes>, CacheError> {
        let key = key.as_ref();
        self.check_key(key)?;
        if let Some(value) = self.local(key) {
            return Ok(Some(value));
        }
        self.ask(key, within, None).await
    }

    /// The value under `key`, or `f`'s value, computed once per key at a time (on this node in
    /// local and replicated mode, across the cluster in partitioned mode: callers elsewhere wait
    /// for the owner's result). `f` that fails, panics or takes past `within` ends this call
    /// with an error; a waiting caller is then granted its own try.
    pub async fn get_or_compute<F, Fut, E>(
        &self,
        key: impl AsRef<[u8]>,
        within: Duration,
        f: F,
    ) -> Result<Bytes, CacheError>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<Vec<u8>, E>> + Send + 'static,
        E: std::fmt::Display,
    {
        let key = key.as_ref();
        self.check_key(key)?;
        if let Some(value) = self.local(key) {
            return Ok(value);
        }
        let compute: ComputeFn =
            Box::new(move || Box::pin(async move { f().await.map_err(|e| e.to_string()) }));
        match self.ask(key, within, Some(compute)).await? {
            Some(value) => Ok(value),
            // Never expected: the machine answers a computation with a value or an error.
            None => Err(CacheError::Timeout),
        }
    }

    async fn ask(
        &self,
        key: &[u8],
        within: Duration,
        compute: Option<ComputeFn>,
    ) -> Result<Option<Bytes>, CacheError> {
        let (done, answer) = oneshot::channel();
        let request = CacheRequest::Get {
            name: self.settings.name.clone(),
            key: Bytes::copy_from_slice(key),
            within,
            compute,
            done,
        };
        self.submit(request, answer).await
    }

    /// Writes `value` under `key` (here, on every node, or at the key's owner, by mode), with
    /// `ttl` or the cache's.
    pub async fn put(
        &self,
        key: impl AsRef<[u8]>,
        value: impl Into<Bytes>,
        ttl: Option<Duration>,
    ) -> Result<(), CacheError> {
        let key = key.as_ref();
        self.check_key(key)?;
        let value = value.into();
        if value.len() > self.settings.max_value_bytes {
            return Err(CacheError::ValueTooLarge {
                len: value.len(),
                max: self.settings.max_value_bytes,
            });
        }
        let (done, answer) = oneshot::channel();
        let request = CacheRequest::Put {
            name: self.settings.name.clone(),
            key: Bytes::copy_from_slice(key),
            value,
            ttl,
            done,
        };
        self.submit(request, answer).await
    }

    /// Hands `request` to the node's driver and waits for its `answer`; a stopped node is
    /// `Stopped`.
    async fn submit<T>(
        &self,
        request: CacheRequest,
        answer: oneshot::Receiver<Result<T, CacheError>>,
    ) -> Result<T, CacheError> {
        self.requests
            .send(Request::Cache(request))
            .await
            .map_err(|_| CacheError::Stopped)?;
        let result = answer.await.map_err(|_| CacheError::Stopped)?;
        self.refresh();
        result
    }

    /// Whether this node holds a fresh entry for `key` (owned, local, replicated or a near
    /// copy), without counting a read.
    pub fn holds(&self, key: impl AsRef<[u8]>) -> bool {
        self.store.get(key.as_ref(), self.now()).is_some()
    }

    /// This cache's counters on this node: (hits, misses, evictions, computes).
    pub fn counts(&self) -> (u64, u64, u64, u64) {
        let c = &self.counters;
        (
            c.hits.get(),
            c.misses.get(),
            c.evictions.get(),
            c.computes.get(),
        )
    }

    /// Entries held on this node.
    pub fn entries(&self) -> u64 {
        self.store.len()
    }

    fn refresh(&self) {
        let size = self.store.weighted_size();
        self.counters
            .bytes
            .set(i64::try_from(size).unwrap_or(i64::MAX));
        self.counters
            .entries
            .set(i64::try_from(self.store.cache.entry_count()).unwrap_or(i64::MAX));
    }

    fn json(&self) -> Value {
        self.refresh();
        json!({
            "name": self.settings.name,
            "mode": self.settings.mode.as_str(),
            "ttl_ms": self.settings.ttl.map(|t| t.as_millis() as u64),
            "max_entries": self.settings.max_entries,
            "max_bytes": self.settings.max_bytes,
            "max_key_bytes": self.settings.max_key_bytes,
            "max_value_bytes": self.settings.max_value_bytes,
            "entries": self.store.cache.entry_count(),
            "bytes": self.store.weighted_size(),
            "hits": self.counters.hits.get(),
            "misses": self.counters.misses.get(),
            "evictions": self.counters.evictions.get(),
            "computes": self.counters.computes.get(),
            "compute_failures": self.counters.compute_failures.get(),
            "purged": self.counters.purged.get(),
            "handed_off": self.counters.handed_off.get(),
            "taken_over": self.counters.taken_over.get(),
            "refused": self.counters.refused.get(),
            "quorum": self.settings.quorum.is_some(),
        })
    }
}

/// The caches declared on a node, for `node.cache(name)` and `/caches`.
#[derive(Clone)]
pub(crate) struct CachesHandle {
    declared: Arc<Mutex<BTreeMap<String, CacheHandle>>>,
    requests: mpsc::Sender<Request>,
    epoch: tokio::time::Instant,
    metrics: CacheMetrics,
}

impl CachesHandle {
    pub fn new(
        requests: mpsc::Sender<Request>,
        epoch: tokio::time::Instant,
        metrics: CacheMetrics,
    ) -> Self {
        Self {
            declared: Arc::default(),
            requests,
            epoch,
            metrics,
        }
    }

    /// Declares a cache (again with the same settings: the same cache).
    pub async fn declare(&self, settings: CacheSettings) -> Result<CacheHandle, CacheError> {
        settings.validate()?;
        if let Some(held) = self.lock().get(&settings.name) {
            return if *held.settings == settings {
                Ok(held.clone())
            } else {
                Err(CacheError::Conflict(settings.name))
            };
        }
        let counters = self.metrics.of(&settings.name);
        let handle = CacheHandle {
            store: MokaStore::new(&settings, Some(counters.evictions.clone())),
            settings: Arc::new(settings),
            requests: self.requests.clone(),
            epoch: self.epoch,
            counters,
        };
        let (done, answer) = oneshot::channel();
        self.requests
            .send(Request::Cache(CacheRequest::Declare { handle, done }))
            .await
            .map_err(|_| CacheError::Stopped)?;
        answer.await.map_err(|_| CacheError::Stopped)?
    }

    /// The handle of `handle`'s cache: the one held, or `handle` itself if it is the first.
    fn hold(&self, handle: CacheHandle) -> CacheHandle {
        let mut declared = self.lock();
        let name = handle.settings.name.clone();
        declared.entry(name).or_insert(handle).clone()
    }

    /// A declared cache.
    pub fn get(&self, name: &str) -> Result<CacheHandle, CacheError> {
        self.lock()
            .get(name)
            .cloned()
            .ok_or_else(|| CacheError::Unknown(name.to_owned()))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, CacheHandle>> {
        self.declared.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn json(&self) -> Value {
        let caches: Vec<Value> = self.lock().values().map(CacheHandle::json).collect();
        json!({ "caches": caches })
    }

    fn counters(&self, name: &str) -> Option<Counters> {
        self.lock().get(name).map(|h| h.counters.clone())
    }

    fn all_counters(&self) -> Vec<(String, Counters)> {
        let declared = self.lock();
        declared
            .iter()
            .map(|(name, h)| (name.clone(), h.counters.clone()))
            .collect()
    }
}

/// Adds `GET /caches` to `server`.
pub(crate) fn routes(server: HttpServerBuilder, caches: CachesHandle) -> HttpServerBuilder {
    server.json("/caches", move || caches.json())
}

/// The driver's part: replies owed, compute functions waiting for their grant.
pub(crate) struct CachesRuntime {
    handle: CachesHandle,
    waiting: BTreeMap<u64, Waiting>,
}

struct Waiting {
    name: String,
    done: Reply,
    compute: Option<ComputeFn>,
    /// Its function ran here.
    ran: bool,
}

impl CachesRuntime {
    pub fn new(handle: CachesHandle) -> Self {
        Self {
            handle,
            waiting: BTreeMap::new(),
        }
    }

    pub fn request(&mut self, core: &mut Core, now: Instant, request: CacheRequest) {
        match request {
            CacheRequest::Declare { handle, done } => {
                let settings = (*handle.settings).clone();
                let store = Arc::new(handle.store.clone());
                // Held here, in the order the machine takes declarations, so that the handle
                // every caller gets has the store the machine keeps: the first one's.
                let declared = core.declare_cache(now, settings, store);
                let _ = done.send(declared.map(|()| self.handle.hold(handle)));
            }
            CacheRequest::Get {
                name,
                key,
                within,
                compute,
                done,
            } => {
                let started = if compute.is_some() {
                    core.cache_get_or_compute(now, &name, &key, within)
                } else {
                    core.cache_get(now, &name, &key, within)
                };
                let counters = self.handle.counters(&name);
                match started {
                    Ok(Started::Ready(value)) => {
                        if let Some(c) = &counters {
                            if value.is_some() { &c.hits } else { &c.misses }.inc();
                        }
                        let _ = done.send(Ok(value));
                    }
                    Ok(Started::Pending(req)) => {
                        if let Some(c) = &counters {
                            c.misses.inc();
                        }
                        self.waiting.insert(
                            req,
                            Waiting {
                                name,
                                done,
                                compute,
                                ran: false,
                            },
                        );
                    }
                    Err(e) => {
                        let _ = done.send(Err(e));
                    }
                }
            }
            CacheRequest::Put {
                name,
                key,
                value,
                ttl,
                done,
            } => {
                let _ = done.send(core.cache_put(now, &name, &key, value, ttl));
            }
            CacheRequest::Computed { req, outcome } => {
                let ttl = self
                    .waiting
                    .get(&req)
                    .and_then(|w| core.caches().settings(&w.name))
                    .and_then(|s| s.ttl);
                core.cache_computed(now, req, outcome.map(|value| (value, ttl)));
            }
        }
    }

    /// Raises the counters the core keeps (purges, handoffs, takeovers, refusals) to its totals: called
    /// on the driver's housekeeping tick, so metrics and `/caches` lag them by up to a second.
    pub fn sync_metrics(&self, core: &Core) {
        for (name, c) in self.handle.all_counters() {
            let Some(stats) = core.caches().stats(&name) else {
                continue;
            };
            advance(&c.purged, stats.purged);
            advance(&c.handed_off, stats.handed_off);
            advance(&c.taken_over, stats.taken_over);
            advance(&c.refused, stats.refused);
        }
    }

    /// Takes up one of the machine's events: replies, and compute functions to run.
    pub fn event(&mut self, epoch: tokio::time::Instant, event: CacheEvent) {
        match event {
            CacheEvent::Done { req, result } => {
                if let Some(w) = self.waiting.remove(&req) {
                    if result.is_err() && w.ran {
                        if let Some(c) = self.handle.counters(&w.name) {
                            c.compute_failures.inc();
                        }
                    }
                    let _ = w.done.send(result);
                }
            }
            CacheEvent::Run {
                req, cache, until, ..
            } => {
                let Some(w) = self.waiting.get_mut(&req) else {
                    return;
                };
                let Some(compute) = w.compute.take() else {
                    return;
                };
                w.ran = true;
                if let Some(c) = self.handle.counters(&cache) {
                    c.computes.inc();
                }
                let requests = self.handle.requests.clone();
                let deadline = epoch + until.elapsed();
                tokio::spawn(async move {
                    // Its own task: a panic ends that task only, and shows as a JoinError.
                    let task = tokio::spawn(compute());
                    let outcome = match tokio::time::timeout_at(deadline, task).await {
                        Ok(Ok(Ok(value))) => Ok(Bytes::from(value)),
                        Ok(Ok(Err(e))) => Err(CacheError::ComputeFailed(e)),
                        Ok(Err(joined)) if joined.is_panic() => {
                            Err(CacheError::ComputeFailed("the function panicked".into()))
                        }
                        Ok(Err(_)) => Err(CacheError::ComputeFailed("cancelled".into())),
                        // The machine's own deadline ends the request at the same instant.
                        Err(_) => Err(CacheError::Timeout),
                    };
                    let _ = requests
                        .send(Request::Cache(CacheRequest::Computed { req, outcome }))
                        .await;
                });
            }
            CacheEvent::RunEnded { .. }
            | CacheEvent::Served { .. }
            | CacheEvent::InvalidationReached { .. } => {}
        }
    }
}
