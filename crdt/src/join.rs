//! Sorted merge-join of two `BTreeMap`s: the one loop every full-state merge needs.
//!
//! Walking both maps in key order visits each entry once, with no per-key lookups, and builds the
//! result from sorted input (which `BTreeMap` bulk-loads in linear time). That is what keeps a
//! 10k-entry merge within a few milliseconds.

use std::collections::BTreeMap;

/// Where a key was found.
pub(crate) enum Joined<'r, K, A, B> {
    /// Only in the left (owned) map.
    Left(K, A),
    /// Only in the right (borrowed) map.
    Right(&'r K, &'r B),
    /// In both.
    Both(K, A, &'r B),
}

/// Joins `left` (consumed) with `right`, keeping what `f` returns, in key order.
pub(crate) fn join<'r, K, A, B, F>(
    left: BTreeMap<K, A>,
    right: &'r BTreeMap<K, B>,
    mut f: F,
) -> BTreeMap<K, A>
where
    K: Ord,
    F: FnMut(Joined<'r, K, A, B>) -> Option<(K, A)>,
{
    let mut out = Vec::with_capacity(left.len().max(right.len()));
    let mut rights = right.iter().peekable();
    for (key, a) in left {
        while let Some((rk, rb)) = rights.next_if(|(rk, _)| *rk < &key) {
            out.extend(f(Joined::Right(rk, rb)));
        }
        let item = match rights.next_if(|(rk, _)| *rk == &key) {
            Some((_, rb)) => Joined::Both(key, a, rb),
            None => Joined::Left(key, a),
        };
        out.extend(f(item));
    }
    for (rk, rb) in rights {
        out.extend(f(Joined::Right(rk, rb)));
    }
    debug_assert!(
        out.windows(2).all(|w| w[0].0 < w[1].0),
        "join emits keys in order"
    );
    out.into_iter().collect()
}
