//! One keyspace: its CRDT state, what it has seen from each origin, and its recent ops.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use foundation_crdt::{LwwEntry, LwwOp, Timestamp};

use super::wire::{Envelope, Map, Op, Origin, Seen, Value};

/// Retired origins whose coverage a keyspace remembers (see [`Keyspace::retire`]); beyond it the
/// records of the lowest generations (the oldest lives) go. 32 bytes each: 32 KiB per keyspace.
pub const RETIRED_RECORDS_MAX: usize = 1024;

/// What one keyspace changed since it was last written.
#[derive(Clone, Debug, Default)]
pub(super) struct Dirty {
    /// Keys whose entry changed or went.
    pub keys: BTreeSet<String>,
    /// Origins whose contiguous seq changed, or that stopped being tracked.
    pub origins: BTreeSet<Origin>,
    /// The retired records changed.
    pub retired: bool,
    /// The GC horizon moved.
    pub horizon: bool,
    /// Everything is to be written again (a batch failed: what is stored may lack some of it).
    pub all: bool,
}

impl Dirty {
    pub fn is_empty(&self) -> bool {
        !self.all
            && self.keys.is_empty()
            && self.origins.is_empty()
            && !self.retired
            && !self.horizon
    }
}

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
        // Out-of-order seqs beyond the log length are forgotten: a peer may offer them again,
        // and they are applied again, which last-writer-wins makes harmless (no tombstone newer
        // than them can have been collected while the gap below them holds the GC horizon back).
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
        // Checked: a peer's state may claim the last seq there is.
        while let Some(next) = self.contiguous.checked_add(1) {
            if !self.ahead.remove(&next) {
                break;
            }
            self.contiguous = next;
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

/// What a full state told us and what it cost us to take it.
#[derive(Debug, Default)]
pub struct Merged {
    /// Keys whose live value changed here.
    pub changes: Vec<Change>,
    /// The sender holds values we saw removed: it needs our state to drop them too.
    pub sender_stale: bool,
}

/// Which writes a full state includes: [`super::ReplicationMessage::FullState`]'s `seen` and
/// `retired`.
pub struct Coverage<'a> {
    /// Origins the sender tracks, with their contiguous seq.
    pub seen: &'a Seen,
    /// Origins the sender retired, with the seq its state includes.
    pub retired: &'a Seen,
}

impl Coverage<'_> {
    fn covers(&self, origin: &Origin, seq: u64) -> bool {
        let upto = |m: &Seen| m.get(origin).copied().unwrap_or(0);
        seq <= upto(self.seen).max(upto(self.retired))
    }
}

/// A keyspace's replica.
#[derive(Clone, Debug, Default)]
pub struct Keyspace {
    map: Map,
    origins: BTreeMap<Origin, OriginLog>,
    /// Origins we do not track (retired here or by a peer whose state we took), with the seq up
    /// to which our state reflects their ops. A value of theirs we lack is one we removed if its
    /// seq is covered here, and a write new to us otherwise — which is what keeps a replica that
    /// comes back after being taken for gone from losing the writes it made meanwhile. Bounded
    /// by [`RETIRED_RECORDS_MAX`], by a rule that depends on the records alone, so replicas that
    /// exchange them agree on which to keep.
    retired: BTreeMap<Origin, u64>,
    /// Logged ops in the order they were applied, to drop the oldest once the keyspace logs
    /// more than its limit — over all origins together, so the log's memory does not grow
    /// with the number of nodes that ever wrote. Entries already dropped by their origin's log
    /// (or retired) are skipped.
    logged: VecDeque<(Origin, u64)>,
    /// Sum of live key and value lengths, for the size limit.
    bytes: usize,
    /// What changed since the machine last wrote this keyspace to storage; `None` when the
    /// keyspace does not persist, so a node without storage pays nothing for it.
    dirty: Option<Dirty>,
}

impl Keyspace {
    /// A keyspace as stored: its entries (tombstones included), GC horizon, contiguous seq per
    /// tracked origin and retired records. The op log starts empty.
    pub fn restore(
        entries: Vec<(String, LwwEntry<Value>)>,
        horizon: Timestamp,
        seen: &Seen,
        retired: Seen,
    ) -> Self {
        let mut keyspace = Keyspace::default();
        for (key, entry) in entries {
            keyspace.map.apply(&LwwOp { key, entry });
        }
        keyspace.map.gc_tombstones(horizon);
        for (origin, &seq) in seen {
            keyspace.origins.entry(*origin).or_default().cover(seq);
        }
        keyspace.retired = retired;
        keyspace
            .retired
            .retain(|o, _| !keyspace.origins.contains_key(o));
        keyspace.bound_records();
        keyspace.bytes = keyspace.live_bytes();
        keyspace.dirty = None;
        keyspace
    }

    /// The CRDT state.
    pub fn map(&self) -> &Map {
        &self.map
    }

    /// The live value of `key`.
    pub fn get(&self, key: &str) -> Option<&[u8]> {
        self.map.get(&key.to_owned()).map(|v| v.bytes.as_slice())
    }

    /// The latest write to `key`, tombstone included.
    pub fn entry(&self, key: &str) -> Option<&LwwEntry<Value>> {
        self.map.entry(&key.to_owned())
    }

    /// Live keys and values, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.map
            .iter()
            .map(|(k, v)| (k.as_str(), v.bytes.as_slice()))
    }

    /// Live keys starting with `prefix` and their values, in key order: a range read, not a
    /// walk of the whole keyspace.
    pub fn prefixed<'a, 'p>(
        &'a self,
        prefix: &'p str,
    ) -> impl Iterator<Item = (&'a str, &'a [u8])> + use<'a, 'p> {
        self.map
            .range(prefix.to_owned()..)
            .map(|(k, v)| (k.as_str(), v.bytes.as_slice()))
            .take_while(move |(k, _)| k.starts_with(prefix))
    }

    /// Number of live keys. O(n).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no key is live.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
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

    /// Retired origins we remember, with the seq our state includes.
    pub fn retired(&self) -> Seen {
        self.retired.clone()
    }

    /// A hash of [`Self::retired`] (0 when there is none). Digests carry it: two replicas of one
    /// epoch with equal seen-sets but different records hold different writes (taken from
    /// states of origins neither tracks), which nothing else in a digest would show.
    pub fn retired_fingerprint(&self) -> u64 {
        if self.retired.is_empty() {
            return 0;
        }
        let mut bytes = Vec::with_capacity(self.retired.len() * 32);
        for (origin, seq) in &self.retired {
            bytes.extend_from_slice(&origin.node.as_u128().to_be_bytes());
            bytes.extend_from_slice(&origin.generation.to_be_bytes());
            bytes.extend_from_slice(&seq.to_be_bytes());
        }
        foundation_crdt::fnv1a64(&bytes)
    }

    /// The contiguous seq of a tracked origin.
    pub fn contiguous(&self, origin: &Origin) -> Option<u64> {
        self.origins.get(origin).map(|log| log.contiguous)
    }

    /// Whether changes are tracked and some are noted.
    pub(super) fn is_dirty(&self) -> bool {
        self.dirty.as_ref().is_some_and(|dirty| !dirty.is_empty())
    }

    /// What changed since the last call (or since the keyspace was made).
    pub(super) fn take_dirty(&mut self) -> Dirty {
        self.dirty.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// Starts tracking what changes, for storage.
    pub(super) fn track_changes(&mut self) {
        self.dirty.get_or_insert_with(Dirty::default);
    }

    /// Where changes are noted, if they are tracked.
    fn noted(&mut self) -> Option<&mut Dirty> {
        self.dirty.as_mut()
    }

    /// Marks all of the keyspace to be written again.
    pub(super) fn mark_all_dirty(&mut self) {
        if let Some(dirty) = self.noted() {
            dirty.all = true;
        }
    }

    /// The next seq `origin` would use here; `None` once a state claimed it used the last one.
    pub fn next_seq(&self, origin: Origin) -> Option<u64> {
        self.origins
            .get(&origin)
            .map_or(0, |l| l.contiguous)
            .checked_add(1)
    }

    /// Whether the op in `envelope` was applied here already.
    pub fn has(&self, envelope: &Envelope) -> bool {
        self.covers(&envelope.origin, envelope.seq)
    }

    /// Whether `origin`'s op `seq` is reflected in our state (applied, or covered by a state we
    /// merged or by a retired origin's record).
    pub fn covers(&self, origin: &Origin, seq: u64) -> bool {
        covered(&self.origins, &self.retired, origin, seq)
    }

    /// Applies an op (local or remote) the keyspace has not applied before, and records it;
    /// returns the change if the live value moved.
    pub fn apply(&mut self, envelope: &Envelope, log_max: usize) -> Option<Change> {
        debug_assert!(!self.has(envelope), "ops are applied once");
        let key = &envelope.op.key;
        let old = self.get(key).map(<[u8]>::to_vec);
        let changed = self.map.apply_new(&stamped(envelope));
        if let Some(dirty) = self.dirty.as_mut() {
            if changed {
                dirty.keys.insert(key.clone());
            }
            dirty.origins.insert(envelope.origin);
        }
        self.log_mut(envelope.origin)
            .record(envelope.seq, envelope.op.clone(), log_max);
        self.logged.push_back((envelope.origin, envelope.seq));
        while self.logged.len() > log_max {
            let Some((origin, seq)) = self.logged.pop_front() else {
                break;
            };
            if let Some(log) = self.origins.get_mut(&origin) {
                log.ops.remove(&seq);
            }
        }
        let new = self.get(key).map(<[u8]>::to_vec);
        (changed && old != new).then(|| {
            self.bytes = self.bytes.saturating_sub(live_size(key, &old)) + live_size(key, &new);
            Change {
                key: key.clone(),
                old,
                new,
            }
        })
    }

    /// `origin`'s log, tracking it from its record if it was retired (its owner writes again).
    fn log_mut(&mut self, origin: Origin) -> &mut OriginLog {
        let record = self.retired.get(&origin).copied();
        if record.is_some() {
            self.retired.remove(&origin);
        }
        if let Some(dirty) = self.noted() {
            dirty.retired |= record.is_some();
            dirty.origins.insert(origin);
        }
        let log = self.origins.entry(origin).or_default();
        if let Some(seq) = record {
            log.cover(seq);
        }
        log
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
            .any(|(origin, &seq)| !self.covers(origin, seq))
    }

    /// Merges a peer's full state, which includes the writes `theirs` covers; returns what
    /// changed. A live value only one side holds stays unless the other side covers its write
    /// (it saw the write and removed it since). With `track_new`, origins the sender tracks and
    /// we do not are tracked from now on; without (we retired origins the sender still tracks),
    /// they only get a record of what our state now includes.
    pub fn merge_full(&mut self, state: &Map, theirs: &Coverage<'_>, track_new: bool) -> Merged {
        let before = self.map.clone();
        let horizon_before = self.map.horizon();
        let (origins, retired) = (&self.origins, &self.retired);
        let (_, dropped_theirs) = self.map.merge_with(
            state,
            |mine| dot(mine).is_none_or(|(o, s)| !theirs.covers(&o, s)),
            |their| dot(their).is_none_or(|(o, s)| !covered(origins, retired, &o, s)),
        );
        for (origin, &seq) in theirs.seen {
            self.cover(*origin, seq, track_new);
        }
        for (origin, &seq) in theirs.retired {
            self.cover(*origin, seq, false);
        }
        self.bytes = self.live_bytes();
        if let Some(dirty) = self.dirty.as_mut() {
            dirty.keys.extend(changed_entries(&before, &self.map));
            dirty.horizon |= self.map.horizon() != horizon_before;
        }
        Merged {
            changes: diff(&before, &self.map),
            sender_stale: dropped_theirs > 0,
        }
    }

    /// Notes that our state includes `origin`'s ops up to `seq`: in its log if tracked (or
    /// `track` asks to start), else in its record.
    fn cover(&mut self, origin: Origin, seq: u64, track: bool) {
        if track || self.origins.contains_key(&origin) {
            self.log_mut(origin).cover(seq);
        } else {
            let upto = self.retired.entry(origin).or_default();
            if seq > *upto {
                *upto = seq;
                if let Some(dirty) = self.dirty.as_mut() {
                    dirty.retired = true;
                }
            }
            self.bound_records();
        }
    }

    /// Drops the records of the lowest generations (the oldest lives) beyond
    /// [`RETIRED_RECORDS_MAX`]. A replica that comes back holding a value of such an origin
    /// that we removed would bring it back: the price of bounded memory, paid only after that
    /// many retirements. Which records stay depends on the records alone, so taking the union
    /// of two replicas' records and bounding it is a merge that converges.
    fn bound_records(&mut self) {
        while self.retired.len() > RETIRED_RECORDS_MAX {
            let oldest = self
                .retired
                .keys()
                .min_by_key(|o| (o.generation, o.node))
                .copied();
            match oldest {
                Some(origin) => self.retired.remove(&origin),
                None => break,
            };
            if let Some(dirty) = self.noted() {
                dirty.retired = true;
            }
        }
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

    /// Stops tracking `origin` (it departed and every live member holds its ops), keeping only
    /// a record of the seq our state includes. Returns whether it was tracked.
    pub fn retire(&mut self, origin: &Origin) -> bool {
        let Some(log) = self.origins.remove(origin) else {
            return false;
        };
        if let Some(dirty) = self.noted() {
            dirty.origins.insert(*origin);
        }
        self.cover(*origin, log.contiguous, false);
        true
    }

    /// Drops tombstones older than `horizon`; returns how many.
    pub fn gc(&mut self, horizon: Timestamp) -> usize {
        let below = horizon.max(self.map.horizon());
        if let Some(dirty) = self.dirty.as_mut() {
            let collected = self
                .map
                .entries()
                .filter(|(_, e)| e.value.is_none() && e.ts < below)
                .map(|(k, _)| k.clone());
            dirty.keys.extend(collected);
            dirty.horizon |= below != self.map.horizon();
        }
        self.map.gc_tombstones(horizon)
    }

    fn live_bytes(&self) -> usize {
        self.map.iter().map(|(k, v)| k.len() + v.bytes.len()).sum()
    }

    /// Checks the bookkeeping against the state.
    pub fn invariants(&self) -> Result<(), String> {
        self.map.invariants().map_err(|e| e.to_string())?;
        let bytes = self.live_bytes();
        if bytes != self.bytes {
            return Err(format!("size {} but counted {}", bytes, self.bytes));
        }
        for (origin, log) in &self.origins {
            if log
                .ahead
                .iter()
                .any(|&s| s <= log.contiguous.saturating_add(1))
            {
                return Err(format!("{origin:?}: out-of-order set not normalised"));
            }
            if self.retired.contains_key(origin) {
                return Err(format!("{origin:?}: both tracked and retired"));
            }
        }
        if self.retired.len() > RETIRED_RECORDS_MAX {
            return Err(format!("{} retired records", self.retired.len()));
        }
        Ok(())
    }
}

/// Whether a keyspace with these logs and records reflects `origin`'s op `seq`.
fn covered(
    origins: &BTreeMap<Origin, OriginLog>,
    retired: &BTreeMap<Origin, u64>,
    origin: &Origin,
    seq: u64,
) -> bool {
    origins.get(origin).is_some_and(|l| l.has(seq))
        || retired.get(origin).is_some_and(|upto| seq <= *upto)
}

/// The map op of an envelope: its write, with the write's name on the value.
fn stamped(envelope: &Envelope) -> LwwOp<String, Value> {
    let entry = &envelope.op.entry;
    LwwOp {
        key: envelope.op.key.clone(),
        entry: LwwEntry {
            ts: entry.ts,
            value: entry.value.as_ref().map(|bytes| Value {
                bytes: bytes.clone(),
                generation: envelope.origin.generation,
                seq: envelope.seq,
            }),
        },
    }
}

/// The write that made a live value: its origin and seq (`None` for a tombstone).
fn dot(entry: &LwwEntry<Value>) -> Option<(Origin, u64)> {
    entry.value.as_ref().map(|v| {
        let origin = Origin {
            node: entry.ts.node,
            generation: v.generation,
        };
        (origin, v.seq)
    })
}

fn live_size(key: &str, value: &Option<Vec<u8>>) -> usize {
    value.as_ref().map_or(0, |v| key.len() + v.len())
}

/// Keys whose latest write (tombstones included) differs between `before` and `after`.
fn changed_entries<'a>(before: &'a Map, after: &'a Map) -> impl Iterator<Item = String> + 'a {
    let mut keys: BTreeSet<&String> = before.entries().map(|(k, _)| k).collect();
    keys.extend(after.entries().map(|(k, _)| k));
    keys.into_iter()
        .filter(|key| before.entry(key) != after.entry(key))
        .cloned()
}

/// Live keys whose value differs between `before` and `after`, in key order.
fn diff(before: &Map, after: &Map) -> Vec<Change> {
    let mut keys: BTreeSet<&String> = before.iter().map(|(k, _)| k).collect();
    keys.extend(after.iter().map(|(k, _)| k));
    keys.into_iter()
        .filter_map(|key| {
            let bytes = |m: &Map| m.get(key).map(|v| v.bytes.clone());
            let (old, new) = (bytes(before), bytes(after));
            (old != new).then(|| Change {
                key: key.clone(),
                old,
                new,
            })
        })
        .collect()
}
