//! Load balancing: which of a service's instances gets the next request.
//!
//! A [`Balancer`] picks one [`Candidate`] per call according to a [`Strategy`]; the only state it
//! keeps is one round-robin cursor per service. Everything else — weights, outstanding request
//! counts, locality — comes in with the candidates, and randomness comes from the caller's RNG,
//! so a pick is a pure function of its inputs.
//!
//! Instance ids are generic: any `K: Ord + StableHash`. Consistent hashing needs a hash of the id
//! that is identical on every node and every release, which std's `Hash` does not promise; the
//! [`StableHash`] trait spells out the bytes instead.

use std::borrow::Borrow;
use std::cmp::Reverse;
use std::collections::BTreeMap;

use rand10::{Rng, RngExt};

/// One instance a request could go to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate<K> {
    /// The instance's identity (used for exclusion on retry, consistent hashing and tie-breaks).
    pub id: K,
    /// Relative share of traffic; 0 means the instance is never chosen (draining, or disabled).
    pub weight: u32,
    /// Requests this node has sent to the instance that have not completed yet.
    pub outstanding: u32,
    /// True if the instance runs on this node, so a call to it never leaves the process.
    pub is_local: bool,
}

impl<K> Candidate<K> {
    /// A remote candidate with weight 1 and nothing outstanding.
    pub fn new(id: K) -> Self {
        Candidate {
            id,
            weight: 1,
            outstanding: 0,
            is_local: false,
        }
    }
}

/// How to choose among eligible candidates (weight above zero, not yet tried).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Strategy {
    /// Each eligible candidate in turn, in slice order; weights above zero are all treated alike.
    RoundRobin,
    /// The candidate with the fewest outstanding requests; ties go to the higher weight, then to
    /// a uniformly random one of the remaining.
    LeastOutstanding,
    /// A random candidate, with probability proportional to its weight.
    Random,
    /// Rendezvous (highest random weight) hashing on the caller's key: the same key goes to the
    /// same instance, and adding or removing an instance moves only the keys it gains or had.
    /// Weights scale each instance's share of keys. Without a key, behaves as [`Strategy::Random`].
    ConsistentHash,
    /// Apply the inner strategy to local candidates if any is eligible, else to all of them.
    PreferLocal(Box<Strategy>),
}

/// Bytes that identify a value identically on every node, process and release.
///
/// Implement it by feeding the value's canonical bytes to the hasher; variable-length parts should
/// be length-prefixed (as the `str` and `[u8]` impls do) so that different values never feed the
/// same byte stream.
pub trait StableHash {
    /// Feeds this value's canonical bytes into `hasher`.
    fn stable_hash(&self, hasher: &mut StableHasher);
}

/// A hash that is a fixed function of its input bytes: FNV-1a 64, finished with the MurmurHash3
/// 64-bit finaliser so that nearby inputs give unrelated outputs (FNV alone does not avalanche).
#[derive(Debug, Clone)]
pub struct StableHasher {
    state: u64,
}

impl Default for StableHasher {
    fn default() -> Self {
        StableHasher {
            state: 0xcbf2_9ce4_8422_2325,
        }
    }
}

impl StableHasher {
    /// A hasher that has seen no bytes.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds raw bytes (not length-prefixed).
    pub fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.state ^= u64::from(b);
            self.state = self.state.wrapping_mul(0x0100_0000_01b3);
        }
    }

    /// The hash of everything fed so far.
    pub fn finish(&self) -> u64 {
        let mut h = self.state;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }

    fn write_len(&mut self, len: usize) {
        self.write(&(len as u64).to_le_bytes());
    }
}

impl StableHash for u64 {
    fn stable_hash(&self, hasher: &mut StableHasher) {
        hasher.write(&self.to_le_bytes());
    }
}

impl StableHash for u128 {
    fn stable_hash(&self, hasher: &mut StableHasher) {
        hasher.write(&self.to_le_bytes());
    }
}

impl StableHash for [u8] {
    fn stable_hash(&self, hasher: &mut StableHasher) {
        hasher.write_len(self.len());
        hasher.write(self);
    }
}

impl<const N: usize> StableHash for [u8; N] {
    fn stable_hash(&self, hasher: &mut StableHasher) {
        // Fixed length: no prefix needed.
        hasher.write(self);
    }
}

impl StableHash for Vec<u8> {
    fn stable_hash(&self, hasher: &mut StableHasher) {
        self.as_slice().stable_hash(hasher);
    }
}

impl StableHash for str {
    fn stable_hash(&self, hasher: &mut StableHasher) {
        self.as_bytes().stable_hash(hasher);
    }
}

impl StableHash for String {
    fn stable_hash(&self, hasher: &mut StableHasher) {
        self.as_str().stable_hash(hasher);
    }
}

impl<T: StableHash + ?Sized> StableHash for &T {
    fn stable_hash(&self, hasher: &mut StableHasher) {
        (**self).stable_hash(hasher);
    }
}

impl<A: StableHash, B: StableHash> StableHash for (A, B) {
    fn stable_hash(&self, hasher: &mut StableHasher) {
        self.0.stable_hash(hasher);
        self.1.stable_hash(hasher);
    }
}

/// Picks instances for requests; holds one round-robin cursor per service.
///
/// Cursors are created on first use; call [`Balancer::forget`] when a service disappears so the
/// map does not grow without bound.
#[derive(Debug, Clone)]
pub struct Balancer<S> {
    cursors: BTreeMap<S, u64>,
}

impl<S> Default for Balancer<S> {
    fn default() -> Self {
        Balancer {
            cursors: BTreeMap::new(),
        }
    }
}

impl<S: Ord> Balancer<S> {
    /// A balancer with no cursors.
    pub fn new() -> Self {
        Self::default()
    }

    /// Index into `candidates` of the instance to call, or `None` if no candidate has a weight
    /// above zero. `key` is only used by [`Strategy::ConsistentHash`].
    pub fn pick<Q, K, R>(
        &mut self,
        service: &Q,
        strategy: &Strategy,
        candidates: &[Candidate<K>],
        key: Option<&[u8]>,
        rng: &mut R,
    ) -> Option<usize>
    where
        S: Borrow<Q>,
        Q: Ord + ToOwned<Owned = S> + ?Sized,
        K: Ord + StableHash,
        R: Rng + ?Sized,
    {
        self.pick_excluding(service, strategy, candidates, key, &[], rng)
    }

    /// Like [`Balancer::pick`], but never picks an instance whose id is in `tried` — for retrying
    /// on another instance. With [`Strategy::ConsistentHash`] this yields the key's next-ranked
    /// instance, so retries of one key also agree across nodes.
    pub fn pick_excluding<Q, K, R>(
        &mut self,
        service: &Q,
        strategy: &Strategy,
        candidates: &[Candidate<K>],
        key: Option<&[u8]>,
        tried: &[K],
        rng: &mut R,
    ) -> Option<usize>
    where
        S: Borrow<Q>,
        Q: Ord + ToOwned<Owned = S> + ?Sized,
        K: Ord + StableHash,
        R: Rng + ?Sized,
    {
        let eligible: Vec<usize> = (0..candidates.len())
            .filter(|&i| candidates[i].weight > 0 && !tried.contains(&candidates[i].id))
            .collect();
        if eligible.is_empty() {
            return None;
        }
        self.choose(service, strategy, candidates, &eligible, key, rng)
    }

    /// Drops the round-robin cursor of a service that no longer exists.
    pub fn forget<Q>(&mut self, service: &Q)
    where
        S: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.cursors.remove(service);
    }

    /// Keeps the round-robin cursors of the services `keep` selects and drops the others.
    pub fn retain(&mut self, mut keep: impl FnMut(&S) -> bool) {
        self.cursors.retain(|service, _| keep(service));
    }

    /// Services with a round-robin cursor.
    pub fn len(&self) -> usize {
        self.cursors.len()
    }

    /// True if no service has a cursor.
    pub fn is_empty(&self) -> bool {
        self.cursors.is_empty()
    }

    /// Applies `strategy` to the non-empty `eligible` subset of `candidates`.
    fn choose<Q, K, R>(
        &mut self,
        service: &Q,
        strategy: &Strategy,
        candidates: &[Candidate<K>],
        eligible: &[usize],
        key: Option<&[u8]>,
        rng: &mut R,
    ) -> Option<usize>
    where
        S: Borrow<Q>,
        Q: Ord + ToOwned<Owned = S> + ?Sized,
        K: Ord + StableHash,
        R: Rng + ?Sized,
    {
        match strategy {
            Strategy::RoundRobin => Some(self.round_robin(service, eligible)),
            Strategy::LeastOutstanding => least_outstanding(candidates, eligible, rng),
            Strategy::Random => weighted_random(candidates, eligible, rng),
            Strategy::ConsistentHash => match key {
                Some(key) => rendezvous(candidates, eligible, key),
                None => weighted_random(candidates, eligible, rng),
            },
            Strategy::PreferLocal(inner) => {
                let local: Vec<usize> = eligible
                    .iter()
                    .copied()
                    .filter(|&i| candidates[i].is_local)
                    .collect();
                let pool = if local.is_empty() { eligible } else { &local };
                self.choose(service, inner, candidates, pool, key, rng)
            }
        }
    }

    fn round_robin<Q>(&mut self, service: &Q, eligible: &[usize]) -> usize
    where
        S: Borrow<Q>,
        Q: Ord + ToOwned<Owned = S> + ?Sized,
    {
        // Look up before inserting so the common case does not allocate the service name.
        let cursor = match self.cursors.get_mut(service) {
            Some(cursor) => cursor,
            None => self.cursors.entry(service.to_owned()).or_insert(0),
        };
        let slot = (*cursor % eligible.len() as u64) as usize;
        *cursor = cursor.wrapping_add(1);
        eligible[slot]
    }
}

fn least_outstanding<K, R: Rng + ?Sized>(
    candidates: &[Candidate<K>],
    eligible: &[usize],
    rng: &mut R,
) -> Option<usize> {
    let rank = |i: usize| (candidates[i].outstanding, Reverse(candidates[i].weight));
    let best = eligible.iter().map(|&i| rank(i)).min()?;
    let tied: Vec<usize> = eligible
        .iter()
        .copied()
        .filter(|&i| rank(i) == best)
        .collect();
    let pick = if tied.len() == 1 {
        0
    } else {
        rng.random_range(0..tied.len())
    };
    Some(tied[pick])
}

fn weighted_random<K, R: Rng + ?Sized>(
    candidates: &[Candidate<K>],
    eligible: &[usize],
    rng: &mut R,
) -> Option<usize> {
    let total: u64 = eligible
        .iter()
        .map(|&i| u64::from(candidates[i].weight))
        .sum();
    if total == 0 {
        return None;
    }
    let mut point = rng.random_range(0..total);
    for &i in eligible {
        let weight = u64::from(candidates[i].weight);
        if point < weight {
            return Some(i);
        }
        point -= weight;
    }
    // Unreachable: `point < total` and the weights sum to `total`.
    eligible.last().copied()
}

/// Highest random weight: every (key, instance) pair gets a pseudo-random score and the key goes
/// to the highest-scoring instance. Removing an instance only moves the keys it held; adding one
/// only takes the keys where it now scores highest (≈ 1/N of them).
fn rendezvous<K: Ord + StableHash>(
    candidates: &[Candidate<K>],
    eligible: &[usize],
    key: &[u8],
) -> Option<usize> {
    let mut keyed = StableHasher::new();
    key.stable_hash(&mut keyed);
    eligible
        .iter()
        .map(|&i| (rendezvous_score(&keyed, &candidates[i]), i))
        // Exact score ties are broken by the smaller id, independent of slice order.
        .max_by(|(a, i), (b, j)| {
            a.total_cmp(b)
                .then_with(|| candidates[*j].id.cmp(&candidates[*i].id))
        })
        .map(|(_, i)| i)
}

/// `weight / -ln(u)` with `u` uniform in (0, 1) from the hash: the weighted rendezvous score of
/// Schindelhauer and Schomaker, under which an instance's share of keys is proportional to weight.
fn rendezvous_score<K: StableHash>(keyed: &StableHasher, candidate: &Candidate<K>) -> f64 {
    let mut hasher = keyed.clone();
    candidate.id.stable_hash(&mut hasher);
    let bits = hasher.finish() >> 11; // 53 bits: exactly representable in an f64.
    let unit = (bits as f64 + 0.5) / (1u64 << 53) as f64;
    f64::from(candidate.weight) / -unit.ln()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::{any, prop_assert, prop_assert_eq, proptest};
    use rand10::rngs::StdRng;
    use rand10::SeedableRng;

    fn rng() -> StdRng {
        StdRng::seed_from_u64(7)
    }

    fn cands(weights: &[u32]) -> Vec<Candidate<u64>> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &weight)| Candidate {
                weight,
                ..Candidate::new(i as u64)
            })
            .collect()
    }

    fn pick(b: &mut Balancer<String>, s: &Strategy, c: &[Candidate<u64>], r: &mut StdRng) -> usize {
        b.pick("svc", s, c, None, r).unwrap()
    }

    #[test]
    fn empty_or_all_zero_weight_gives_none() {
        let mut b = Balancer::<String>::new();
        let strategies = [
            Strategy::RoundRobin,
            Strategy::LeastOutstanding,
            Strategy::Random,
            Strategy::ConsistentHash,
            Strategy::PreferLocal(Box::new(Strategy::RoundRobin)),
        ];
        for s in &strategies {
            assert_eq!(b.pick("svc", s, &cands(&[]), Some(b"k"), &mut rng()), None);
            assert_eq!(
                b.pick("svc", s, &cands(&[0, 0]), Some(b"k"), &mut rng()),
                None
            );
        }
    }

    #[test]
    fn round_robin_cycles_per_service_and_skips_zero_weight() {
        let mut b = Balancer::<String>::new();
        let c = cands(&[1, 0, 5, 1]);
        let mut r = rng();
        let picks: Vec<usize> = (0..6)
            .map(|_| pick(&mut b, &Strategy::RoundRobin, &c, &mut r))
            .collect();
        assert_eq!(picks, vec![0, 2, 3, 0, 2, 3]);
        // Another service has its own cursor.
        assert_eq!(
            b.pick("other", &Strategy::RoundRobin, &c, None, &mut r),
            Some(0)
        );
        b.forget("svc");
        assert_eq!(pick(&mut b, &Strategy::RoundRobin, &c, &mut r), 0);
    }

    #[test]
    fn random_respects_weights() {
        let mut b = Balancer::<String>::new();
        let c = cands(&[1, 3, 0]);
        let mut r = rng();
        let mut counts = [0u32; 3];
        for _ in 0..10_000 {
            counts[pick(&mut b, &Strategy::Random, &c, &mut r)] += 1;
        }
        assert_eq!(counts[2], 0, "zero weight is never picked");
        assert!((2_200..2_800).contains(&counts[0]), "{counts:?}");
        assert!((7_200..7_800).contains(&counts[1]), "{counts:?}");
    }

    #[test]
    fn least_outstanding_picks_minimum_then_weight_then_random() {
        let mut b = Balancer::<String>::new();
        let mut c = cands(&[1, 1, 1, 0]);
        c[0].outstanding = 4;
        c[1].outstanding = 2;
        c[2].outstanding = 3;
        c[3].outstanding = 0; // zero weight: not eligible despite being idle
        let mut r = rng();
        assert_eq!(pick(&mut b, &Strategy::LeastOutstanding, &c, &mut r), 1);

        c[2].outstanding = 2;
        c[2].weight = 5;
        assert_eq!(pick(&mut b, &Strategy::LeastOutstanding, &c, &mut r), 2);

        c[2].weight = 1;
        let mut seen = [false; 4];
        for _ in 0..100 {
            seen[pick(&mut b, &Strategy::LeastOutstanding, &c, &mut r)] = true;
        }
        assert_eq!(seen, [false, true, true, false], "ties spread randomly");
    }

    #[test]
    fn prefer_local_uses_locals_then_falls_back() {
        let mut b = Balancer::<String>::new();
        let mut c = cands(&[1, 1, 1]);
        c[1].is_local = true;
        let s = Strategy::PreferLocal(Box::new(Strategy::RoundRobin));
        let mut r = rng();
        for _ in 0..5 {
            assert_eq!(pick(&mut b, &s, &c, &mut r), 1);
        }
        let retry = b.pick_excluding("svc", &s, &c, None, &[1], &mut r);
        assert!(matches!(retry, Some(0 | 2)), "tried local → remote");
        c[1].weight = 0;
        assert_ne!(pick(&mut b, &s, &c, &mut r), 1);
    }

    #[test]
    fn retries_exclude_tried_instances() {
        let mut b = Balancer::<String>::new();
        let c = cands(&[1, 1, 1]);
        let mut r = rng();
        for s in [
            Strategy::RoundRobin,
            Strategy::Random,
            Strategy::ConsistentHash,
        ] {
            let first = b.pick("svc", &s, &c, Some(b"k"), &mut r).unwrap();
            let mut tried = vec![c[first].id];
            let second = b
                .pick_excluding("svc", &s, &c, Some(b"k"), &tried, &mut r)
                .unwrap();
            assert_ne!(first, second);
            tried.push(c[second].id);
            let third = b
                .pick_excluding("svc", &s, &c, Some(b"k"), &tried, &mut r)
                .unwrap();
            assert!(third != first && third != second);
            tried.push(c[third].id);
            assert_eq!(
                b.pick_excluding("svc", &s, &c, Some(b"k"), &tried, &mut r),
                None
            );
        }
    }

    fn hash_owner(c: &[Candidate<u64>], key: u32) -> u64 {
        let mut b = Balancer::<String>::new();
        let i = b
            .pick(
                "svc",
                &Strategy::ConsistentHash,
                c,
                Some(&key.to_le_bytes()),
                &mut rng(),
            )
            .unwrap();
        c[i].id
    }

    #[test]
    fn consistent_hash_moves_about_one_nth_of_keys() {
        let before = cands(&[1; 8]);
        let mut after = before.clone();
        after.push(Candidate::new(100));
        let mut moved = 0;
        for key in 0..10_000u32 {
            let (old, new) = (hash_owner(&before, key), hash_owner(&after, key));
            if old != new {
                assert_eq!(new, 100, "a moved key goes to the new instance");
                moved += 1;
            }
        }
        // Expect 10_000 / 9 ≈ 1_111.
        assert!((950..1_280).contains(&moved), "moved {moved}");
    }

    #[test]
    fn consistent_hash_removal_moves_only_the_removed_instances_keys() {
        let before = cands(&[1; 8]);
        let after: Vec<_> = before.iter().filter(|c| c.id != 3).cloned().collect();
        for key in 0..2_000u32 {
            let old = hash_owner(&before, key);
            if old != 3 {
                assert_eq!(hash_owner(&after, key), old);
            }
        }
    }

    #[test]
    fn consistent_hash_ignores_order_and_respects_weight() {
        let c = cands(&[1, 3]);
        let reversed: Vec<_> = c.iter().rev().cloned().collect();
        let mut heavy = 0;
        for key in 0..10_000u32 {
            let owner = hash_owner(&c, key);
            assert_eq!(owner, hash_owner(&reversed, key));
            heavy += u32::from(owner == 1);
        }
        assert!((7_200..7_800).contains(&heavy), "heavy got {heavy}");
    }

    #[test]
    fn stable_hash_is_a_fixed_function() {
        // Pinned: a change here re-shards every consistent-hash user in a mixed-version cluster.
        let mut h = StableHasher::new();
        h.write(b"a");
        assert_eq!(h.state, 0xaf63_dc4c_8601_ec8c, "FNV-1a 64 test vector");
        let mut prefixed = StableHasher::new();
        "billing".stable_hash(&mut prefixed);
        let mut by_hand = StableHasher::new();
        by_hand.write(&7u64.to_le_bytes());
        by_hand.write(b"billing");
        assert_eq!(
            prefixed.finish(),
            by_hand.finish(),
            "str is length-prefixed"
        );
        assert_eq!(h.finish(), 0x82a2_a958_a9be_ce5b, "FNV-1a then fmix64");
    }

    proptest! {
        #[test]
        fn picks_are_always_eligible(
            weights in proptest::collection::vec(0u32..4, 0..8),
            locals in any::<u8>(),
            tried in proptest::collection::vec(0u64..8, 0..4),
            strategy in 0usize..5,
            seed in any::<u64>(),
        ) {
            let mut c = cands(&weights);
            for (i, cand) in c.iter_mut().enumerate() {
                cand.is_local = locals & (1 << i) != 0;
                cand.outstanding = (seed >> i) as u32 & 3;
            }
            let s = [
                Strategy::RoundRobin,
                Strategy::LeastOutstanding,
                Strategy::Random,
                Strategy::ConsistentHash,
                Strategy::PreferLocal(Box::new(Strategy::LeastOutstanding)),
            ][strategy].clone();
            let any_eligible = c.iter().any(|c| c.weight > 0 && !tried.contains(&c.id));
            let mut b = Balancer::<String>::new();
            let mut r = StdRng::seed_from_u64(seed);
            let got = b.pick_excluding("svc", &s, &c, Some(&seed.to_le_bytes()), &tried, &mut r);
            prop_assert_eq!(got.is_some(), any_eligible);
            if let Some(i) = got {
                prop_assert!(c[i].weight > 0);
                prop_assert!(!tried.contains(&c[i].id));
            }
        }
    }
}
