//! One keyspace: its CRDT state, what it has seen from each origin, and its recent ops.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use foundation_crdt::Timestamp;

use super::wire::{Envelope, Map, Op, Origin, Seen};

/// A key whose live value changed: `None` means absent (never set, or removed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// The key.
    pub key: String,
    /// The value before.
    pub old: Option<Vec<u8>>,
    /// The value after.
    pub new: Option<Vec<u8>>,
}

/// One origin's progress and recent ops in one keyspace.
#[derive(Clone, Debug, Default)]
struct OriginLog {
    /// Every op with seq `1..=contiguous` is reflected in the state.
    contiguous: u64,
    /// Ops applied out of order, above `contiguous`.
    ahead: BTreeSet<u64>,
    /// The newest ops by seq, at most the configured log length, to serve peers with.
    ops: BTreeMap<u64, Op>,
}

impl OriginLog {
    fn has(&self, seq: u64) -> bool {
        seq <= self.contiguous || self.ahead.contains(&seq)
    }

    /// Records that `seq` is applied and keeps `op` for peers, dropping the oldest beyond `max`.
    fn record(&mut self, seq: u64, op: Op, max: usize) {
        self.ahead.insert(seq);
        self.advance();
        self.ops.insert(seq, op);
        while self.ops.len() > max {
            self.ops.pop_first();
        }
        // Out-of-order seqs beyond the log length are forgotten: they are applied already, so
        // the worst case is a peer re-sending them, which is harmless.
        while self.ahead.len() > max {
            self.ahead.pop_last();
        }
    }

    /// Raises `contiguous` to at least `seq` (a full state covered everything up to it).
    fn cover(&mut self, seq: u64) {
        self.contiguous = self.contiguous.max(seq);
        self.advance();
    }

    fn advance(&mut self) {
        let floor = self.contiguous;
        self.ahead.retain(|&s| s > floor);
        while self.ahead.remove(&(self.contiguous + 1)) {
            self.contiguous += 1;
        }
    }

    /// Ops with seq in `(after, contiguous]`, or `None` if the log no longer holds all of them.
    fn since(&self, after: u64) -> Option<Vec<(u64, &Op)>> {
        if after >= self.contiguous {
            return Some(Vec::new());
        }
        let wanted = self.contiguous - after;
        let ops: Vec<_> = self
            .ops
            .range(after + 1..=self.contiguous)
            .map(|(s, op)| (*s, op))
            .collect();
        (ops.len() as u64 == wanted).then_some(ops)
    }
}

/// What a peer with a given digest lacks from one keyspace.
#[derive(Debug, Default)]
pub struct Missing {
    /// Ops to send.
    pub ops: Vec<Envelope>,
    /// Our log was truncated past what the peer has: send the full state instead.
    pub needs_full_state: bool,
}

/// A keyspace's replica.
#[derive(Clone, Debug, Default)]
pub struct Keyspace {
    map: Map,
    origins: BTreeMap<Origin, OriginLog>,
    /// Logged ops in the order they were applied, to drop the oldest once the keyspace logs
    /// more than its limit — over all origins together, so the log's memory does not grow
    /// with the number of nodes that ever wrote. Entries already dropped by their origin's log
    /// (or retired) are skipped.
    logged: VecDeque<(Origin, u64)>,
    /// Sum of live key and value lengths, for the size limit.
    bytes: usize,
}

impl Keyspace {
    /// The CRDT state.
    pub fn map(&self) -> &Map {
        &self.map
    }

    /// Approximate size of live keys and values, in bytes.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Highest contiguous seq per origin.
    pub fn seen(&self) -> Seen {
        self.origins
            .iter()
            .filter(|(_, log)| log.contiguous > 0)
            .map(|(origin, log)| (*origin, log.contiguous))
            .collect()
    }

    /// The next seq `origin` would use here.
    pub fn next_seq(&self, origin: Origin) -> u64 {
        self.origins.get(&origin).map_or(0, |l| l.contiguous) + 1
    }

    /// Whether the op in `envelope` was applied here already.
    pub fn has(&self, envelope: &Envelope) -> bool {
        self.origins
            .get(&envelope.origin)
            .is_some_and(|l| l.has(envelope.seq))
    }

    /// Applies an op (local or remote) and records it; returns the change if the live value
    /// moved.
    pub fn apply(&mut self, envelope: &Envelope, log_max: usize) -> Option<Change> {
        let key = &envelope.op.key;
        let old = self.map.get(key).cloned();
        let changed = self.map.apply(&envelope.op);
        self.origins.entry(envelope.origin).or_default().record(
            envelope.seq,
            envelope.op.clone(),
            log_max,
        );
        self.logged.push_back((envelope.origin, envelope.seq));
        while self.logged.len() > log_max {
            let Some((origin, seq)) = self.logged.pop_front() else {
                break;
            };
            if let Some(log) = self.origins.get_mut(&origin) {
                log.ops.remove(&seq);
            }
        }
        let new = self.map.get(key).cloned();
        (changed && old != new).then(|| {
            self.bytes = self.bytes.saturating_sub(live_size(key, &old)) + live_size(key, &new);
            Change {
                key: key.clone(),
                old,
                new,
            }
        })
    }

    /// What a peer that has seen `theirs` lacks, in envelopes of `epoch`.
    pub fn missing_for(&self, keyspace: &str, theirs: Option<&Seen>, epoch: u32) -> Missing {
        let mut missing = Missing::default();
        for (origin, log) in &self.origins {
            let seen = theirs.and_then(|t| t.get(origin)).copied().unwrap_or(0);
            let after = seen + u64::from(fault_on!(DigestAnswerOffByOne));
            match log.since(after) {
                Some(ops) => missing
                    .ops
                    .extend(ops.into_iter().map(|(seq, op)| Envelope {
                        keyspace: keyspace.to_owned(),
                        origin: *origin,
                        seq,
                        epoch,
                        op: op.clone(),
                    })),
                None => {
                    missing.needs_full_state = true;
                    missing.ops.clear();
                    return missing;
                }
            }
        }
        missing
    }

    /// Whether a peer that has seen `theirs` has ops we lack.
    pub fn lacks_from(&self, theirs: &Seen) -> bool {
        theirs
            .iter()
            .any(|(origin, &seq)| seq > self.origins.get(origin).map_or(0, |l| l.contiguous))
    }

    /// Merges a peer's full state, which covers every op up to `seen`; returns what changed.
    pub fn merge_full(&mut self, state: &Map, seen: &Seen) -> Vec<Change> {
        let before = self.map.clone();
        self.map.merge(state);
        for (origin, &seq) in seen {
            self.origins.entry(*origin).or_default().cover(seq);
        }
        self.bytes = self.map.iter().map(|(k, v)| k.len() + v.len()).sum();
        diff(&before, &self.map)
    }

    /// The timestamp of `origin`'s op `seq`, if the log still holds it.
    pub fn op_ts(&self, origin: &Origin, seq: u64) -> Option<Timestamp> {
        let log = self.origins.get(origin)?;
        log.ops.get(&seq).map(|op| op.entry.ts)
    }

    /// Origins with bookkeeping here.
    pub fn origins(&self) -> impl Iterator<Item = &Origin> {
        self.origins.keys()
    }

    /// Number of origins with bookkeeping here (memory that compaction bounds).
    pub fn origin_count(&self) -> usize {
        self.origins.len()
    }

    /// Forgets `origin`'s progress and log (it departed and every live member holds its ops).
    pub fn retire(&mut self, origin: &Origin) -> bool {
        self.origins.remove(origin).is_some()
    }

    /// Drops tombstones older than `horizon`; returns how many.
    pub fn gc(&mut self, horizon: Timestamp) -> usize {
        self.map.gc_tombstones(horizon)
    }

    /// Whether `state` holds a live entry that is absent here because it is older than our GC
    /// horizon: its holder has data we collected (or never saw in time) and needs our state.
    pub fn is_stale(&self, state: &Map) -> bool {
        let horizon = self.map.horizon();
        state.iter().any(|(key, _)| {
            self.map.entry(key).is_none() && state.entry(key).is_some_and(|e| e.ts < horizon)
        })
    }

    /// Checks the bookkeeping against the state.
    pub fn invariants(&self) -> Result<(), String> {
        self.map.invariants().map_err(|e| e.to_string())?;
        let bytes: usize = self.map.iter().map(|(k, v)| k.len() + v.len()).sum();
        if bytes != self.bytes {
            return Err(format!("size {} but counted {}", bytes, self.bytes));
        }
        for (origin, log) in &self.origins {
            if log.ahead.iter().any(|&s| s <= log.contiguous + 1) {
                return Err(format!("{origin:?}: out-of-order set not normalised"));
            }
        }
        Ok(())
    }
}

fn live_size(key: &str, value: &Option<Vec<u8>>) -> usize {
    value.as_ref().map_or(0, |v| key.len() + v.len())
}

/// Live keys whose value differs between `before` and `after`, in key order.
fn diff(before: &Map, after: &Map) -> Vec<Change> {
    let mut keys: BTreeSet<&String> = before.iter().map(|(k, _)| k).collect();
    keys.extend(after.iter().map(|(k, _)| k));
    keys.into_iter()
        .filter_map(|key| {
            let (old, new) = (before.get(key), after.get(key));
            (old != new).then(|| Change {
                key: key.clone(),
                old: old.cloned(),
                new: new.cloned(),
            })
        })
        .collect()
}
