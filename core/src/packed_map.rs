//! An ordered map that keeps its memory dense: sorted arrays.
//!
//! Every node holds a few tables with one entry per member (its view, the members' metadata,
//! placement's agreed membership and candidates): O(N²) entries in a simulation of N nodes.
//! A `BTreeMap` filled by inserts in key order — as membership deltas and push-pulls arrive,
//! in node id order — leaves its leaves about half full (a full leaf splits into 6 + 5 and the
//! left half is never filled again), so those tables took nearly twice their entries' size.
//!
//! A [`PackedMap`] holds its *packed* entries in two sorted arrays (keys, values), sized
//! exactly when built, and a small *fresh* pair of sorted arrays where new keys go. When the
//! fresh entries reach a quarter of the packed ones, the two are merged into new arrays by
//! moving each entry once: the cost is O(1) amortised per insert, and an insert among the
//! fresh entries moves only those above it, a fifth of the map at most. A key lives in
//! exactly one of the two, so lookups try both and iteration merges them, in key order.
//! Arrays rather than `BTreeMap`s (a packed one rebuilt in bulk by `BTreeMap::append`, a
//! fresh one beside it): the rebuild walked, freed and allocated every node of both trees,
//! and the fresh tree allocated nodes as it grew — the join's largest costs of the three
//! tables; a binary search finds a key as fast.

use std::cmp::Ordering;
use std::iter::{Peekable, Zip};
use std::slice;

/// Fresh entries kept apart before a merge, whatever the packed map's size: with 16, a
/// join's small maps were merged twice as often, for 1 M more instructions at N=100.
const FRESH_MIN: usize = 32;

/// An ordered map kept dense (see the module's documentation).
#[derive(Clone, Debug)]
pub struct PackedMap<K, V> {
    packed: Sorted<K, V>,
    fresh: Sorted<K, V>,
    /// Calls that could change an entry so far (see [`PackedMap::writes`]).
    writes: u64,
}

/// Entries in two arrays sorted by key: `values[i]` is `keys[i]`'s.
#[derive(Clone, Debug)]
struct Sorted<K, V> {
    keys: Vec<K>,
    values: Vec<V>,
}

impl<K, V> Default for Sorted<K, V> {
    fn default() -> Self {
        Self {
            keys: Vec::new(),
            values: Vec::new(),
        }
    }
}

impl<K: Ord, V> Sorted<K, V> {
    fn len(&self) -> usize {
        self.keys.len()
    }

    fn get(&self, key: &K) -> Option<&V> {
        let at = self.keys.binary_search(key).ok()?;
        self.values.get(at)
    }

    fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        let at = self.keys.binary_search(key).ok()?;
        self.values.get_mut(at)
    }

    fn insert(&mut self, key: K, value: V) -> Option<V> {
        match self.keys.binary_search(&key) {
            Ok(at) => Some(std::mem::replace(&mut self.values[at], value)),
            Err(at) => {
                // Room for the fewest entries a merge takes at once: growing from nothing
                // copied them three times over before every merge.
                if self.keys.capacity() == 0 {
                    self.keys.reserve_exact(FRESH_MIN);
                    self.values.reserve_exact(FRESH_MIN);
                }
                self.keys.insert(at, key);
                self.values.insert(at, value);
                None
            }
        }
    }

    fn remove(&mut self, key: &K) -> Option<V> {
        let at = self.keys.binary_search(key).ok()?;
        self.keys.remove(at);
        Some(self.values.remove(at))
    }

    /// The entries from the first key above `key` (or from the first, without one).
    fn iter_after(&self, key: Option<&K>) -> Packed<'_, K, V> {
        let from = key.map_or(0, |key| self.keys.partition_point(|k| k <= key));
        self.keys[from..].iter().zip(self.values[from..].iter())
    }

    fn iter_mut(&mut self) -> PackedMut<'_, K, V> {
        self.keys.iter().zip(self.values.iter_mut())
    }
}

impl<K, V> Default for PackedMap<K, V> {
    fn default() -> Self {
        Self {
            packed: Sorted::default(),
            fresh: Sorted::default(),
            writes: 0,
        }
    }
}

impl<K: Ord, V> PackedMap<K, V> {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many entries.
    pub fn len(&self) -> usize {
        self.packed.len() + self.fresh.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The value of `key`, if any.
    pub fn get(&self, key: &K) -> Option<&V> {
        self.packed.get(key).or_else(|| self.fresh.get(key))
    }

    /// How many calls so far could have changed the map (inserts, removals, mutable access):
    /// while it stays the same, so does every entry, so a value derived from them can be kept.
    pub fn writes(&self) -> u64 {
        self.writes
    }

    /// The value of `key`, if any, to change.
    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        self.writes += 1;
        match self.packed.keys.binary_search(key) {
            Ok(at) => self.packed.values.get_mut(at),
            Err(_) => self.fresh.get_mut(key),
        }
    }

    /// Whether `key` has a value.
    pub fn contains_key(&self, key: &K) -> bool {
        self.get(key).is_some()
    }

    /// Sets `key` to `value`; the value it had, if any.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        let before = self.insert_unsettled(key, value);
        self.settle();
        before
    }

    /// Sets `key` to `value`, as [`PackedMap::insert`] does, but leaves the merge to a
    /// later [`PackedMap::settle`] until the fresh entries outnumber the packed ones twice: a
    /// burst of new keys (the members one push-pull teaches) then pays a merge each time
    /// the map triples, not each time it grows by a quarter — at a mass join, where each
    /// table grows from nothing to every member in a few such bursts, those merges moved
    /// every entry five times over.
    pub fn insert_unsettled(&mut self, key: K, value: V) -> Option<V> {
        self.writes += 1;
        if let Some(held) = self.packed.get_mut(&key) {
            return Some(std::mem::replace(held, value));
        }
        let before = self.fresh.insert(key, value);
        self.merge_past(self.packed.len() * 2);
        before
    }

    /// [`PackedMap::insert_unsettled`] of a `key` the caller found in neither map (it looked
    /// it up, or walked the map past it, since the last change): the packed entries are not
    /// searched again. At a mass join every member is new to three of a node's maps.
    pub fn insert_absent_unsettled(&mut self, key: K, value: V) {
        debug_assert!(!self.contains_key(&key));
        self.writes += 1;
        self.fresh.insert(key, value);
        self.merge_past(self.packed.len() * 2);
    }

    /// Merges the fresh entries into the packed ones if they are a quarter of them or more.
    pub fn settle(&mut self) {
        self.merge_past(self.packed.len() / 4);
    }

    /// Merges the fresh entries into the packed ones if there are `most` of them or more.
    fn merge_past(&mut self, most: usize) {
        if self.fresh.len() >= most.max(FRESH_MIN) {
            self.merge();
        }
    }

    /// Moves every entry, packed and fresh, into new arrays of exactly their number, in key
    /// order: before each fresh entry, the run of packed ones below it (found by a binary
    /// search, moved as a block rather than compared one by one). The fresh arrays are freed
    /// too: kept, every map would hold room for its largest burst.
    fn merge(&mut self) {
        let total = self.len();
        let mut keys = Vec::with_capacity(total);
        let mut values = Vec::with_capacity(total);
        let packed = std::mem::take(&mut self.packed);
        let (mut old_keys, mut old_values) = (packed.keys.into_iter(), packed.values.into_iter());
        let fresh = std::mem::take(&mut self.fresh);
        for (key, value) in fresh.keys.into_iter().zip(fresh.values) {
            let below = old_keys.as_slice().partition_point(|k| *k < key);
            keys.extend(old_keys.by_ref().take(below));
            values.extend(old_values.by_ref().take(below));
            keys.push(key);
            values.push(value);
        }
        keys.extend(old_keys);
        values.extend(old_values);
        self.packed = Sorted { keys, values };
    }

    /// Removes `key`; the value it had, if any.
    pub fn remove(&mut self, key: &K) -> Option<V> {
        self.writes += 1;
        self.packed.remove(key).or_else(|| self.fresh.remove(key))
    }

    /// Removes every entry.
    pub fn clear(&mut self) {
        self.writes += 1;
        self.packed = Sorted::default();
        self.fresh = Sorted::default();
    }

    /// The `n`th entry in key order: an index while nothing is fresh, else a walk.
    pub fn nth(&self, n: usize) -> Option<(&K, &V)> {
        if self.fresh.len() == 0 {
            return self.packed.keys.get(n).zip(self.packed.values.get(n));
        }
        self.iter().nth(n)
    }

    /// The entries in key order.
    pub fn iter(&self) -> Merged<Packed<'_, K, V>, Packed<'_, K, V>> {
        Merged::new(self.packed.iter_after(None), self.fresh.iter_after(None))
    }

    /// The entries with keys above `key`, in key order.
    pub fn iter_after(&self, key: &K) -> Merged<Packed<'_, K, V>, Packed<'_, K, V>> {
        let after = Some(key);
        Merged::new(self.packed.iter_after(after), self.fresh.iter_after(after))
    }

    /// The entries in key order, their values to change.
    pub fn iter_mut(&mut self) -> Merged<PackedMut<'_, K, V>, PackedMut<'_, K, V>> {
        self.writes += 1;
        Merged::new(self.packed.iter_mut(), self.fresh.iter_mut())
    }

    /// The keys in order.
    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.iter().map(|(k, _)| k)
    }

    /// The values in key order.
    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.iter().map(|(_, v)| v)
    }
}

/// Sorted entries in key order.
pub type Packed<'a, K, V> = Zip<slice::Iter<'a, K>, slice::Iter<'a, V>>;

/// Sorted entries in key order, their values to change.
pub type PackedMut<'a, K, V> = Zip<slice::Iter<'a, K>, slice::IterMut<'a, V>>;

impl<K: Ord, V> FromIterator<(K, V)> for PackedMap<K, V> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(entries: I) -> Self {
        // Sorted, and each key once (the last value given), as a `BTreeMap` would hold them.
        let sorted: std::collections::BTreeMap<K, V> = entries.into_iter().collect();
        let (keys, values) = sorted.into_iter().unzip();
        Self {
            packed: Sorted { keys, values },
            fresh: Sorted::default(),
            writes: 0,
        }
    }
}

impl<K: Ord, V: PartialEq> PartialEq for PackedMap<K, V> {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl<K: Ord, V: Eq> Eq for PackedMap<K, V> {}

/// Two iterators of entries in key order, with no key in both, merged in key order.
pub struct Merged<P: Iterator, F: Iterator> {
    packed: Peekable<P>,
    fresh: Peekable<F>,
}

impl<P: Iterator, F: Iterator> Merged<P, F> {
    fn new(packed: P, fresh: F) -> Self {
        Self {
            packed: packed.peekable(),
            fresh: fresh.peekable(),
        }
    }
}

impl<P, F> Iterator for Merged<P, F>
where
    P: Iterator,
    P::Item: Entry,
    F: Iterator<Item = P::Item>,
{
    type Item = P::Item;

    fn next(&mut self) -> Option<Self::Item> {
        let order = match (self.packed.peek(), self.fresh.peek()) {
            (Some(a), Some(b)) => a.key().cmp(b.key()),
            (Some(_), None) => Ordering::Less,
            (None, _) => Ordering::Greater,
        };
        if order == Ordering::Less {
            self.packed.next()
        } else {
            self.fresh.next()
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let (a, b) = (self.packed.size_hint(), self.fresh.size_hint());
        (a.0 + b.0, a.1.zip(b.1).map(|(a, b)| a + b))
    }
}

/// An entry of a map's iterator: its key, to merge by.
pub trait Entry {
    /// The key's type.
    type Key: Ord;
    /// The entry's key.
    fn key(&self) -> &Self::Key;
}

impl<K: Ord, V> Entry for (&K, &V) {
    type Key = K;
    fn key(&self) -> &K {
        self.0
    }
}

impl<K: Ord, V> Entry for (&K, &mut V) {
    type Key = K;
    fn key(&self) -> &K {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// Whatever the mix of inserts, replacements and removals, the map holds what a
    /// `BTreeMap` given the same operations holds, in the same order.
    #[test]
    fn behaves_as_a_btree_map() {
        let mut packed = PackedMap::new();
        let mut plain = BTreeMap::new();
        let mut x: u64 = 7;
        for i in 0..20_000u64 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let key = (x >> 33) % 3000;
            match i % 7 {
                0 => assert_eq!(packed.remove(&key), plain.remove(&key)),
                1 => {
                    if let (Some(a), Some(b)) = (packed.get_mut(&key), plain.get_mut(&key)) {
                        *a += 1;
                        *b += 1;
                    }
                }
                _ => assert_eq!(packed.insert(key, i), plain.insert(key, i)),
            }
            assert_eq!(packed.get(&key), plain.get(&key));
            assert_eq!(packed.contains_key(&key), plain.contains_key(&key));
            assert_eq!(packed.len(), plain.len());
            if i % 97 == 0 {
                let after = (std::ops::Bound::Excluded(key), std::ops::Bound::Unbounded);
                assert!(packed.iter_after(&key).eq(plain.range(after)));
                let n = (x as usize) % (plain.len() + 2);
                assert_eq!(packed.nth(n), plain.iter().nth(n));
            }
        }
        assert!(packed.iter().eq(plain.iter()));
        assert!(packed.keys().eq(plain.keys()));
        for (_, v) in packed.iter_mut() {
            *v *= 2;
        }
        for v in plain.values_mut() {
            *v *= 2;
        }
        assert!(packed.values().eq(plain.values()));
        assert_eq!(packed.iter().size_hint().1, Some(plain.len()));
        packed.clear();
        assert!(packed.is_empty());
    }

    /// Every call that can change an entry counts as a write; reads do not.
    #[test]
    fn writes_count_every_possible_change() {
        let mut map = PackedMap::new();
        let start = map.writes();
        map.insert(1, 1);
        let _ = map.get(&1);
        let _ = map.iter().count();
        assert_eq!(map.writes(), start + 1);
        if let Some(v) = map.get_mut(&1) {
            *v = 2;
        }
        map.iter_mut().for_each(|(_, v)| *v = 3);
        map.remove(&1);
        map.clear();
        assert_eq!(map.writes(), start + 5);
    }

    /// Unsettled inserts hold the same entries as settled ones, and a settle packs them as
    /// the inserts would have.
    #[test]
    fn unsettled_inserts_are_packed_when_settled() {
        let mut map = PackedMap::new();
        let mut plain = BTreeMap::new();
        for key in 0..1_000u32 {
            assert_eq!(map.insert_unsettled(key, key), plain.insert(key, key));
            assert_eq!(map.get(&key), Some(&key));
            assert!(map.fresh.len() <= (map.packed.len() * 2).max(FRESH_MIN));
        }
        assert!(map.iter().eq(plain.iter()));
        map.settle();
        assert!(map.fresh.len() * 4 < map.packed.len());
        for n in [0, 1, 499, 999, 1000] {
            assert_eq!(map.nth(n), plain.iter().nth(n));
        }
        assert!(map.iter().eq(plain.iter()));
    }

    /// Keys inserted in order end up mostly in the packed map.
    #[test]
    fn most_entries_are_packed() {
        let mut map = PackedMap::new();
        for key in 0..10_000u32 {
            map.insert(key, ());
        }
        assert!(
            map.fresh.len() * 4 <= map.packed.len(),
            "{}",
            map.fresh.len()
        );
    }
}
