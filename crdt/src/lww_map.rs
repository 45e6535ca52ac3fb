//! Last-writer-wins map with HLC timestamps, tombstones and horizon-based tombstone GC.
//!
//! Each key holds the entry with the greatest timestamp ever written to it. A remove writes a
//! tombstone (an entry with no value) with its own timestamp, so a stale set delivered later
//! loses to it and the key does not come back. Memory per entry is fixed (one timestamp, one node
//! id) however many nodes have written the key, so this type needs no actor compaction.
//!
//! # Tombstone GC
//!
//! [`LwwMap::gc_tombstones`] drops tombstones older than a horizon and remembers the horizon;
//! afterwards an op or state entry older than the horizon for a key that is absent here is
//! ignored, so a late duplicate of a deleted write cannot resurrect it. This is safe — it loses
//! nothing and keeps replicas convergent — when:
//!
//! 1. every replica has applied every op with a timestamp below the horizon (in the engine: the
//!    horizon is at most the minimum, over live nodes, of the HLC time up to which each has
//!    acknowledged all origins' ops), and
//! 2. no node will issue a timestamp below the horizon again (HLCs are monotonic, and a node
//!    restarting from old state, or taking a horizon from another replica's state, must first
//!    `update` its clock past the horizon).
//!
//! Under those conditions an absent key below the horizon is indistinguishable from a collected
//! tombstone on every replica, and merge stays commutative, associative and idempotent (the
//! property tests check this). A write that broke condition 1 (never seen here, older than the
//! horizon) is dropped by [`LwwMap::apply`] and [`LwwMap::merge`] — and so lost, which is why a
//! replica that can tell which writes each side has seen should use [`LwwMap::apply_new`] and
//! [`LwwMap::merge_with`] instead: they never take a write's absence for its removal on the
//! horizon's word alone. Merge remains commutative and idempotent either way, but replicas that
//! collected at horizons some of them had not reached may disagree about such writes:
//! associativity needs the rule.

use std::collections::BTreeMap;

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::encoding::{Canonical, InvariantError};
use crate::join::{join, Joined};
use crate::Timestamp;

/// One key's latest write: a value, or a tombstone (`value: None`) recording a remove.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LwwEntry<V> {
    /// When the write happened; the greatest timestamp wins.
    pub ts: Timestamp,
    /// The value, or `None` for a remove.
    pub value: Option<V>,
}

impl<V: Ord> LwwEntry<V> {
    /// Whether `self` replaces `current`. Timestamps from correct HLCs are unique, so the
    /// tiebreak only matters for a misbehaving node; it still has to be a total order so every
    /// replica picks the same winner. On an exact tie a remove wins (the conservative choice).
    fn beats(&self, current: &LwwEntry<V>) -> bool {
        let rank = |e: &LwwEntry<V>| (e.ts, e.value.is_none());
        match rank(self).cmp(&rank(current)) {
            std::cmp::Ordering::Equal => self.value > current.value,
            order => order.is_gt(),
        }
    }
}

/// An op: the write of one key (a set, or a remove when `value` is `None`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LwwOp<K, V> {
    /// The key written.
    pub key: K,
    /// The write itself.
    pub entry: LwwEntry<V>,
}

/// A last-writer-wins map; see the module docs for removes and GC.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LwwMap<K: Ord, V> {
    entries: BTreeMap<K, LwwEntry<V>>,
    horizon: Timestamp,
}

impl<K: Ord, V> Default for LwwMap<K, V> {
    fn default() -> Self {
        LwwMap {
            entries: BTreeMap::new(),
            horizon: Timestamp::ZERO,
        }
    }
}

impl<K: Ord + Clone, V: Ord + Clone> LwwMap<K, V> {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `key` to `value` at `ts` (from the local [`crate::Hlc::now`]), applies it, and
    /// returns the op to ship to other replicas.
    pub fn set(&mut self, key: K, value: V, ts: Timestamp) -> LwwOp<K, V> {
        self.write(key, Some(value), ts)
    }

    /// Removes `key` at `ts`, leaving a tombstone, and returns the op to ship.
    pub fn remove(&mut self, key: K, ts: Timestamp) -> LwwOp<K, V> {
        self.write(key, None, ts)
    }

    fn write(&mut self, key: K, value: Option<V>, ts: Timestamp) -> LwwOp<K, V> {
        let op = LwwOp {
            key,
            entry: LwwEntry { ts, value },
        };
        self.apply(&op);
        op
    }

    /// A map holding `entries` (keys strictly increasing) above `horizon`: for encodings other
    /// than [`Canonical`]'s, which must refuse what no map could have encoded (keys out of
    /// order or repeated, a tombstone below the horizon) as [`Canonical::decode`] does.
    pub fn from_sorted_entries(
        horizon: Timestamp,
        entries: impl IntoIterator<Item = (K, LwwEntry<V>)>,
    ) -> Result<Self, InvariantError> {
        let mut map = LwwMap {
            entries: BTreeMap::new(),
            horizon,
        };
        for (key, entry) in entries {
            let ascending = map
                .entries
                .last_key_value()
                .is_none_or(|(last, _)| *last < key);
            InvariantError::check(ascending, || "keys not strictly increasing".to_owned())?;
            map.entries.insert(key, entry);
        }
        map.invariants()?;
        Ok(map)
    }

    /// Applies an op from any replica. Idempotent and commutative; returns whether the map
    /// changed (false for a duplicate, a losing write, or a write older than the GC horizon).
    ///
    /// Before applying a remote op, pass its timestamp to the local [`crate::Hlc::update`]: that
    /// keeps later local writes ordered after it, and its drift check is the place to refuse an op
    /// stamped far in the future (such a write would win every conflict until real time caught
    /// up). This method does not check drift; it has no clock.
    pub fn apply(&mut self, op: &LwwOp<K, V>) -> bool {
        self.apply_op(op, false)
    }

    /// Applies an op the caller knows this replica never applied before (it tracks ops by
    /// their origin's sequence numbers). Unlike [`Self::apply`], a write to an absent key older
    /// than the horizon is taken: being new here, its absence is not a collected delete of it.
    /// Only a delete newer than it whose tombstone was already collected could have beaten it,
    /// and a horizon that follows the GC rule in the module docs rules that out.
    pub fn apply_new(&mut self, op: &LwwOp<K, V>) -> bool {
        self.apply_op(op, true)
    }

    /// Applies `op`; `new_here` takes a value older than the horizon for an absent key.
    fn apply_op(&mut self, op: &LwwOp<K, V>, new_here: bool) -> bool {
        let below = op.entry.ts < self.horizon;
        let changed = match self.entries.get_mut(&op.key) {
            Some(current) if op.entry.beats(current) => {
                *current = op.entry.clone();
                true
            }
            Some(_) => false,
            None if below && !(new_here && op.entry.value.is_some()) => false,
            None => {
                self.entries.insert(op.key.clone(), op.entry.clone());
                true
            }
        };
        if changed && below && op.entry.value.is_none() {
            self.entries.remove(&op.key);
        }
        debug_assert!(self
            .entries
            .get(&op.key)
            .is_none_or(|e| e.value.is_some() || e.ts >= self.horizon));
        changed
    }

    /// Merges a full state from another replica (the fallback when ops were lost).
    ///
    /// A key only one side has is kept unless it is older than the other side's horizon (the
    /// other side collected it as a tombstone); the rule is symmetric, so merge commutes.
    pub fn merge(&mut self, other: &LwwMap<K, V>) {
        let (mine_h, theirs_h) = (self.horizon, other.horizon);
        self.merge_with(other, |e| e.ts >= theirs_h, |e| e.ts >= mine_h);
    }

    /// Merges a full state from another replica, asking the caller about each live value only
    /// one side holds: `keep_mine` for ours (false: the other side saw it and removed it since),
    /// `keep_theirs` for theirs (false: we saw it and removed it since). A replica that tracks
    /// which writes each side has seen answers exactly, where [`Self::merge`] can only compare
    /// timestamps with horizons. Tombstones only one side holds are kept down to the greater
    /// horizon, and keys on both sides take the last writer. Returns how many live values of
    /// each side were dropped: `(mine, theirs)`.
    pub fn merge_with(
        &mut self,
        other: &LwwMap<K, V>,
        mut keep_mine: impl FnMut(&LwwEntry<V>) -> bool,
        mut keep_theirs: impl FnMut(&LwwEntry<V>) -> bool,
    ) -> (usize, usize) {
        let horizon = self.horizon.max(other.horizon);
        let mut dropped = (0, 0);
        let mine = std::mem::take(&mut self.entries);
        self.entries = join(mine, &other.entries, |joined| {
            let (key, entry) = match joined {
                Joined::Both(key, mine, theirs) if theirs.beats(&mine) => (key, theirs.clone()),
                Joined::Both(key, mine, _) => (key, mine),
                Joined::Left(key, mine) => {
                    if mine.value.is_some() && !keep_mine(&mine) {
                        dropped.0 += 1;
                        return None;
                    }
                    (key, mine)
                }
                Joined::Right(key, theirs) => {
                    if theirs.value.is_some() && !keep_theirs(theirs) {
                        dropped.1 += 1;
                        return None;
                    }
                    (key.clone(), theirs.clone())
                }
            };
            (entry.value.is_some() || entry.ts >= horizon).then_some((key, entry))
        });
        self.horizon = horizon;
        debug_assert!(self.invariants().is_ok(), "{:?}", self.invariants());
        dropped
    }

    /// The same entries under a horizon no later than `horizon`: nothing is dropped. For merging
    /// a state whose horizon replicas other than ours agreed on (a snapshot, perhaps of another
    /// cluster): merged as it is, it would drop tombstones our replicas still need.
    pub fn with_horizon_at_most(mut self, horizon: Timestamp) -> Self {
        self.horizon = self.horizon.min(horizon);
        self
    }

    /// Drops tombstones older than `horizon` and ignores older writes to absent keys from now on.
    /// Returns how many tombstones were dropped. Read the module docs for when this is safe.
    pub fn gc_tombstones(&mut self, horizon: Timestamp) -> usize {
        self.horizon = self.horizon.max(horizon);
        self.drop_tombstones_below_horizon()
    }

    fn drop_tombstones_below_horizon(&mut self) -> usize {
        let before = self.entries.len();
        let horizon = self.horizon;
        self.entries
            .retain(|_, e| e.value.is_some() || e.ts >= horizon);
        before - self.entries.len()
    }
}

impl<K: Ord, V> LwwMap<K, V> {
    /// The live value of `key`.
    pub fn get(&self, key: &K) -> Option<&V> {
        self.entries.get(key).and_then(|e| e.value.as_ref())
    }

    /// The latest write to `key`, tombstone included.
    pub fn entry(&self, key: &K) -> Option<&LwwEntry<V>> {
        self.entries.get(key)
    }

    /// Every key's latest write, tombstones included, in key order.
    pub fn entries(&self) -> impl Iterator<Item = (&K, &LwwEntry<V>)> {
        self.entries.iter()
    }

    /// Live keys and values, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.entries
            .iter()
            .filter_map(|(k, e)| e.value.as_ref().map(|v| (k, v)))
    }

    /// Live keys and values of the keys in `range`, in key order.
    pub fn range<R: std::ops::RangeBounds<K>>(&self, range: R) -> impl Iterator<Item = (&K, &V)> {
        self.entries
            .range(range)
            .filter_map(|(k, e)| e.value.as_ref().map(|v| (k, v)))
    }

    /// Number of live keys. O(n): it skips tombstones.
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// Whether no key is live.
    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }

    /// Number of keys held, tombstones included: an upper bound of [`Self::len`] in O(1).
    pub fn entry_count(&self) -> usize {
        self.entries.len()
    }

    /// Number of tombstones held (the memory GC would reclaim).
    pub fn tombstones(&self) -> usize {
        self.entries.values().filter(|e| e.value.is_none()).count()
    }

    /// The GC horizon: tombstones and absent-key writes older than this are gone for good.
    pub fn horizon(&self) -> Timestamp {
        self.horizon
    }

    /// Checks that no tombstone older than the horizon is kept (GC normal form).
    pub fn invariants(&self) -> Result<(), InvariantError> {
        for entry in self.entries.values() {
            InvariantError::check(entry.value.is_some() || entry.ts >= self.horizon, || {
                format!(
                    "tombstone at {:?} below horizon {:?}",
                    entry.ts, self.horizon
                )
            })?;
        }
        Ok(())
    }
}

impl<K, V> Canonical for LwwMap<K, V>
where
    K: Ord + Serialize + DeserializeOwned,
    V: Serialize + DeserializeOwned,
{
    fn validate(&self) -> Result<(), InvariantError> {
        self.invariants()
    }
}

impl<K, V> Canonical for LwwOp<K, V>
where
    K: Serialize + DeserializeOwned,
    V: Serialize + DeserializeOwned,
{
    fn validate(&self) -> Result<(), InvariantError> {
        Ok(())
    }
}
