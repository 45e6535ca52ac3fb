//! Token-bucket rate limiting, per caller, in bounded memory.
//!
//! A bucket holds up to `burst` tokens and refills at `tokens` per `per`; each call takes one.
//! Arithmetic is exact integers in microseconds (the resolution of [`Instant`]), so the same
//! inputs always give the same answers and no rounding drift accumulates.
//!
//! [`RateLimits`] keeps one bucket per caller. A full bucket is indistinguishable from a bucket
//! that was never created, so full buckets are forgotten by a sweep without changing any answer.
//! Memory is capped at `max_callers` buckets; callers that arrive while the cap is reached share
//! one overflow bucket (see [`RateLimits`]).

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::time::Duration;

use crate::time::Instant;

/// Why a rate limit cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RateLimitConfigError {
    /// The refill amount was zero.
    #[error("rate limit refills zero tokens; use at least 1 token per period")]
    ZeroRate,
    /// The period was shorter than a microsecond.
    #[error("rate limit period must be at least 1 µs")]
    ZeroPeriod,
    /// The burst was zero, so no call could ever pass.
    #[error("rate limit burst must be at least 1, or no call could ever pass")]
    ZeroBurst,
}

/// A refill rate and a burst size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    tokens: u32,
    /// The period in microseconds (≥ 1).
    per_micros: u64,
    burst: u32,
}

impl RateLimit {
    /// `rate` calls per second on average, up to `burst` at once.
    pub fn per_second(rate: u32, burst: u32) -> Result<RateLimit, RateLimitConfigError> {
        RateLimit::new(rate, Duration::from_secs(1), burst)
    }

    /// `tokens` calls per `per` on average (e.g. 1 per minute), up to `burst` at once. `per` is
    /// used at microsecond resolution.
    pub fn new(tokens: u32, per: Duration, burst: u32) -> Result<RateLimit, RateLimitConfigError> {
        let per_micros = u64::try_from(per.as_micros()).unwrap_or(u64::MAX);
        match (tokens, per_micros, burst) {
            (0, _, _) => Err(RateLimitConfigError::ZeroRate),
            (_, 0, _) => Err(RateLimitConfigError::ZeroPeriod),
            (_, _, 0) => Err(RateLimitConfigError::ZeroBurst),
            _ => Ok(RateLimit {
                tokens,
                per_micros,
                burst,
            }),
        }
    }

    /// The bucket level is kept in units of 1/`per_micros` token, so that refilling for `e`
    /// microseconds adds exactly `e * tokens` units.
    fn unit_per_token(&self) -> u128 {
        u128::from(self.per_micros)
    }

    fn capacity(&self) -> u128 {
        u128::from(self.burst) * self.unit_per_token()
    }

    /// Time for an empty bucket to become full again.
    fn full_refill(&self) -> Duration {
        let micros = self.capacity().div_ceil(u128::from(self.tokens));
        Duration::from_micros(u64::try_from(micros).unwrap_or(u64::MAX))
    }
}

/// A call was refused by the rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("rate limit exceeded; retry after {retry_after:?}")]
pub struct Limited {
    /// How long until a call would pass.
    pub retry_after: Duration,
    /// True if the caller was not tracked individually (the caller cap was reached) and was
    /// limited by the shared overflow bucket.
    pub overflow: bool,
}

/// One token bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenBucket {
    /// Current level in units of 1/`per_micros` token.
    level: u128,
    /// When `level` was last brought up to date (never moves backwards).
    updated: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(limit: &RateLimit, now: Instant) -> TokenBucket {
        TokenBucket {
            level: limit.capacity(),
            updated: now,
        }
    }

    /// Takes one token at `now`, or says how long until one is available.
    pub fn try_acquire(&mut self, limit: &RateLimit, now: Instant) -> Result<(), Limited> {
        self.refill(limit, now);
        let cost = limit.unit_per_token();
        if self.level >= cost {
            self.level -= cost;
            return Ok(());
        }
        let wait = (cost - self.level).div_ceil(u128::from(limit.tokens));
        Err(Limited {
            retry_after: Duration::from_micros(u64::try_from(wait).unwrap_or(u64::MAX)),
            overflow: false,
        })
    }

    /// Whole tokens available at `now` (without taking any).
    pub fn available(&self, limit: &RateLimit, now: Instant) -> u32 {
        let tokens = self.level_at(limit, now) / limit.unit_per_token();
        u32::try_from(tokens).unwrap_or(u32::MAX)
    }

    /// True if the bucket is full at `now`, so forgetting it changes nothing.
    pub fn is_full(&self, limit: &RateLimit, now: Instant) -> bool {
        self.level_at(limit, now) >= limit.capacity()
    }

    fn level_at(&self, limit: &RateLimit, now: Instant) -> u128 {
        let elapsed = now.saturating_since(self.updated).as_micros();
        let added = elapsed.saturating_mul(u128::from(limit.tokens));
        self.level.saturating_add(added).min(limit.capacity())
    }

    fn refill(&mut self, limit: &RateLimit, now: Instant) {
        self.level = self.level_at(limit, now);
        // A clock that steps back must neither refill nor make the next refill count twice.
        self.updated = self.updated.max(now);
    }
}

/// Per-caller token buckets with a cap on how many callers are tracked.
///
/// Memory is bounded by `max_callers` buckets. When a call comes from an untracked caller and
/// the cap is reached, full buckets are swept (at most once per full-refill time, so a flood of
/// new callers does not make every call a scan); if the cap is still reached, the caller is
/// limited by one **overflow bucket shared by all untracked callers**. A flood of fresh identities
/// therefore can neither grow memory nor reset anyone's limit by evicting their bucket — at the
/// price that, during such a flood, new callers throttle one another.
#[derive(Debug, Clone)]
pub struct RateLimits<K> {
    limit: RateLimit,
    max_callers: usize,
    buckets: BTreeMap<K, TokenBucket>,
    overflow: Option<TokenBucket>,
    /// Earliest time the automatic sweep may run again.
    next_sweep: Instant,
}

impl<K: Ord> RateLimits<K> {
    /// Limits every caller to `limit`, tracking at most `max_callers` callers individually
    /// (0 makes every caller share the overflow bucket: one global limit).
    pub fn new(limit: RateLimit, max_callers: usize) -> Self {
        RateLimits {
            limit,
            max_callers,
            buckets: BTreeMap::new(),
            overflow: None,
            next_sweep: Instant::ZERO,
        }
    }

    /// Takes one token from `caller`'s bucket at `now`.
    pub fn try_acquire<Q>(&mut self, now: Instant, caller: &Q) -> Result<(), Limited>
    where
        K: Borrow<Q>,
        Q: Ord + ToOwned<Owned = K> + ?Sized,
    {
        if let Some(bucket) = self.buckets.get_mut(caller) {
            return bucket.try_acquire(&self.limit, now);
        }
        if self.buckets.len() >= self.max_callers && now >= self.next_sweep {
            self.sweep(now);
            self.next_sweep = now + self.limit.full_refill();
        }
        if self.buckets.len() < self.max_callers {
            let bucket = self
                .buckets
                .entry(caller.to_owned())
                .or_insert_with(|| TokenBucket::new(&self.limit, now));
            return bucket.try_acquire(&self.limit, now);
        }
        let limit = self.limit;
        let shared = self
            .overflow
            .get_or_insert_with(|| TokenBucket::new(&limit, now));
        shared.try_acquire(&limit, now).map_err(|limited| Limited {
            overflow: true,
            ..limited
        })
    }

    /// Forgets every bucket that is full at `now` (in key order). Returns how many were dropped.
    /// Call it from a periodic timer to release memory after bursts of callers.
    pub fn sweep(&mut self, now: Instant) -> usize {
        let before = self.buckets.len();
        let limit = self.limit;
        self.buckets
            .retain(|_, bucket| !bucket.is_full(&limit, now));
        if self
            .overflow
            .as_ref()
            .is_some_and(|b| b.is_full(&limit, now))
        {
            self.overflow = None;
        }
        before - self.buckets.len()
    }

    /// Whole tokens `caller` could use at `now`: a full burst for an untracked caller, though
    /// while the caller cap is reached its next call would draw on the shared overflow bucket.
    pub fn available<Q>(&self, now: Instant, caller: &Q) -> u32
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.buckets
            .get(caller)
            .map_or(self.limit.burst, |b| b.available(&self.limit, now))
    }

    /// Number of callers tracked individually.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// True if no caller is tracked.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::{prop_assert, prop_assert_eq, proptest};

    fn ms(n: u64) -> Instant {
        Instant::ZERO + Duration::from_millis(n)
    }

    fn limits(rate: u32, burst: u32, max: usize) -> RateLimits<String> {
        RateLimits::new(RateLimit::per_second(rate, burst).unwrap(), max)
    }

    #[test]
    fn burst_then_refill() {
        let mut rl = limits(10, 3, 100);
        for _ in 0..3 {
            assert_eq!(rl.try_acquire(ms(0), "a"), Ok(()));
        }
        assert_eq!(
            rl.try_acquire(ms(0), "a"),
            Err(Limited {
                retry_after: Duration::from_millis(100),
                overflow: false
            })
        );
        assert_eq!(
            rl.try_acquire(ms(60), "a").unwrap_err().retry_after,
            Duration::from_millis(40)
        );
        assert_eq!(rl.try_acquire(ms(100), "a"), Ok(()));
        assert!(rl.try_acquire(ms(100), "a").is_err());
        // A long idle period refills to the burst, no further.
        assert_eq!(rl.available(ms(100_000), "a"), 3);
        for _ in 0..3 {
            assert_eq!(rl.try_acquire(ms(100_000), "a"), Ok(()));
        }
        assert!(rl.try_acquire(ms(100_000), "a").is_err());
    }

    #[test]
    fn retry_after_is_exact() {
        let limit = RateLimit::per_second(3, 1).unwrap();
        let mut bucket = TokenBucket::new(&limit, Instant::ZERO);
        assert_eq!(bucket.try_acquire(&limit, Instant::ZERO), Ok(()));
        let wait = bucket
            .try_acquire(&limit, Instant::ZERO)
            .unwrap_err()
            .retry_after;
        assert_eq!(wait, Duration::from_micros(333_334));
        let just_before = Instant::ZERO + (wait - Duration::from_micros(1));
        assert!(bucket.try_acquire(&limit, just_before).is_err());
        assert_eq!(bucket.try_acquire(&limit, Instant::ZERO + wait), Ok(()));
    }

    #[test]
    fn slow_rates_and_clock_steps_back() {
        let limit = RateLimit::new(1, Duration::from_secs(60), 1).unwrap();
        let mut bucket = TokenBucket::new(&limit, ms(10_000));
        assert_eq!(bucket.try_acquire(&limit, ms(10_000)), Ok(()));
        // An earlier `now` neither panics nor refills.
        let limited = bucket.try_acquire(&limit, ms(0)).unwrap_err();
        assert_eq!(limited.retry_after, Duration::from_secs(60));
        assert_eq!(bucket.try_acquire(&limit, ms(70_000)), Ok(()));
    }

    #[test]
    fn callers_are_independent() {
        let mut rl = limits(1, 1, 100);
        assert_eq!(rl.try_acquire(ms(0), "a"), Ok(()));
        assert!(rl.try_acquire(ms(0), "a").is_err());
        assert_eq!(rl.try_acquire(ms(0), "b"), Ok(()));
        assert_eq!(rl.len(), 2);
    }

    #[test]
    fn memory_is_bounded_by_sharing_an_overflow_bucket() {
        let mut rl = limits(1, 1, 2);
        assert_eq!(rl.try_acquire(ms(0), "a"), Ok(()));
        assert_eq!(rl.try_acquire(ms(0), "b"), Ok(()));
        // Cap reached, nothing full to sweep: c and d share one bucket.
        assert_eq!(rl.try_acquire(ms(10), "c"), Ok(()));
        let limited = rl.try_acquire(ms(10), "d").unwrap_err();
        assert!(limited.overflow);
        assert_eq!(rl.len(), 2);
        // a and b still limited: nobody was evicted to make room.
        assert!(rl.try_acquire(ms(10), "a").is_err());
        // Once a and b have refilled, the next new caller's sweep frees their slots.
        assert_eq!(rl.try_acquire(ms(1_500), "d"), Ok(()));
        assert_eq!(rl.len(), 1);
        assert_eq!(rl.available(ms(1_500), "d"), 0);
    }

    #[test]
    fn explicit_sweep_forgets_only_full_buckets() {
        let mut rl = limits(1, 2, 10);
        rl.try_acquire(ms(0), "a").unwrap();
        rl.try_acquire(ms(500), "b").unwrap();
        assert_eq!(rl.sweep(ms(1_000)), 1, "a is full again, b is not");
        assert_eq!(rl.available(ms(1_000), "b"), 1);
        assert_eq!(rl.sweep(ms(1_500)), 1);
        assert!(rl.is_empty());
    }

    #[test]
    fn config_validation() {
        assert_eq!(
            RateLimit::per_second(0, 1),
            Err(RateLimitConfigError::ZeroRate)
        );
        assert_eq!(
            RateLimit::per_second(1, 0),
            Err(RateLimitConfigError::ZeroBurst)
        );
        assert_eq!(
            RateLimit::new(1, Duration::from_nanos(999), 1),
            Err(RateLimitConfigError::ZeroPeriod)
        );
    }

    proptest! {
        /// Forgetting full buckets is unobservable: with sweeps interleaved anywhere, every answer
        /// equals the one from a limiter that never forgets.
        #[test]
        fn sweeping_changes_no_answer(
            calls in proptest::collection::vec((0u64..300, 0u8..4, proptest::bool::ANY), 0..200),
        ) {
            let mut swept = limits(5, 2, 1_000);
            let mut kept = limits(5, 2, 1_000);
            let mut now = ms(0);
            for (advance, caller, sweep) in calls {
                now = now + Duration::from_millis(advance);
                let caller = caller.to_string();
                if sweep {
                    swept.sweep(now);
                }
                prop_assert_eq!(swept.try_acquire(now, &caller), kept.try_acquire(now, &caller));
            }
        }

        /// However many callers arrive, at most `max_callers` are tracked.
        #[test]
        fn tracked_callers_never_exceed_the_cap(
            calls in proptest::collection::vec((0u64..50, 0u16..500), 0..300),
            cap in 0usize..20,
        ) {
            let mut rl = limits(10, 1, cap);
            let mut now = ms(0);
            for (advance, caller) in calls {
                now = now + Duration::from_millis(advance);
                let _ = rl.try_acquire(now, &caller.to_string());
                prop_assert!(rl.len() <= cap);
            }
        }
    }
}
