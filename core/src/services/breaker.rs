//! Circuit breakers: stop sending requests to an instance that keeps failing, and probe it again
//! after a while.
//!
//! The usual three states (Hystrix, resilience4j): **Closed** lets every call through and watches
//! the outcomes; it trips to **Open** after too many consecutive failures or too high a failure
//! rate over the last calls. Open rejects every call until its duration has passed (growing
//! exponentially on repeated trips, up to a cap), then **HalfOpen** lets a fixed number of trial
//! calls through: enough successes close the breaker, any failure opens it again.
//!
//! Every call gets a [`Permit`] from [`Breaker::allow`] and hands it back to [`Breaker::record`]
//! with the outcome. The permit remembers which period of the breaker it was issued in, so a slow
//! response from before a trip cannot close, or count against, the breaker after it.

use std::borrow::Borrow;
use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::time::Duration;

use crate::time::Instant;

/// The state of a breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum State {
    /// Calls flow; outcomes are counted.
    Closed,
    /// Calls are rejected until the open duration has passed.
    Open,
    /// A limited number of trial calls decide whether to close or reopen.
    HalfOpen,
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half-open",
        })
    }
}

/// A change of state, returned so the caller can log it and count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// The state before.
    pub from: State,
    /// The state after.
    pub to: State,
}

/// What happened to a call made under a [`Permit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The instance answered.
    Success,
    /// The instance failed or timed out; counts against it.
    Failure,
    /// The call ended without saying anything about the instance (the caller gave up or was
    /// cancelled). Frees a half-open trial slot; counts neither way.
    Cancelled,
}

/// Trip on the failure rate over a rolling window of the most recent calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureRate {
    /// How many of the most recent calls the rate is computed over.
    pub window: u32,
    /// No trip until at least this many calls are in the window (so two failures out of two
    /// calls at start-up do not count as a 100% failure rate).
    pub min_calls: u32,
    /// Trip when at least this percentage (1–100) of the calls in the window failed.
    pub percent: u8,
}

/// How a breaker trips, waits and recovers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Trip after this many failures in a row; `None` disables this rule.
    pub consecutive_failures: Option<u32>,
    /// Trip on the failure rate over recent calls; `None` disables this rule.
    pub failure_rate: Option<FailureRate>,
    /// How long the breaker stays open after its first trip.
    pub open_for: Duration,
    /// Each further trip without closing in between multiplies the open duration by this
    /// (1 = no backoff).
    pub backoff_factor: u32,
    /// Upper bound on the open duration with backoff.
    pub max_open_for: Duration,
    /// Trial calls let through in each half-open period.
    pub half_open_trials: u32,
    /// Successful trials needed to close (at most `half_open_trials`).
    pub successes_to_close: u32,
}

impl Default for BreakerConfig {
    /// Five consecutive failures or half of the last 20 calls (once 10 were made) trip the
    /// breaker for 5 s, doubling on each repeated trip up to 1 min; two trials, both must succeed.
    fn default() -> Self {
        BreakerConfig {
            consecutive_failures: Some(5),
            failure_rate: Some(FailureRate {
                window: 20,
                min_calls: 10,
                percent: 50,
            }),
            open_for: Duration::from_secs(5),
            backoff_factor: 2,
            max_open_for: Duration::from_secs(60),
            half_open_trials: 2,
            successes_to_close: 2,
        }
    }
}

/// Why a [`BreakerConfig`] cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BreakerConfigError {
    /// Both trip rules are disabled, so the breaker could never open.
    #[error("breaker has no trip rule; set consecutive_failures or failure_rate")]
    NoTripRule,
    /// `consecutive_failures` was `Some(0)`.
    #[error("consecutive_failures must be at least 1, or None to disable the rule")]
    ZeroConsecutive,
    /// The failure-rate window is unusable.
    #[error(
        "failure_rate needs window ≥ 1, 1 ≤ min_calls ≤ window and percent in 1..=100; got {0:?}"
    )]
    BadFailureRate(FailureRate),
    /// `open_for` was zero or above `max_open_for`.
    #[error("open_for must be above zero and at most max_open_for")]
    BadOpenDuration,
    /// `backoff_factor` was zero.
    #[error("backoff_factor must be at least 1 (1 disables backoff)")]
    ZeroBackoff,
    /// The half-open trial settings could never close the breaker.
    #[error(
        "half-open needs 1 ≤ successes_to_close ≤ half_open_trials, or the breaker never closes"
    )]
    BadTrials,
}

impl BreakerConfig {
    /// Checks that the configuration describes a breaker that can trip and recover.
    pub fn validate(&self) -> Result<(), BreakerConfigError> {
        if self.consecutive_failures.is_none() && self.failure_rate.is_none() {
            return Err(BreakerConfigError::NoTripRule);
        }
        if self.consecutive_failures == Some(0) {
            return Err(BreakerConfigError::ZeroConsecutive);
        }
        if let Some(rate) = self.failure_rate {
            let ok = rate.window >= 1
                && (1..=rate.window).contains(&rate.min_calls)
                && (1..=100).contains(&rate.percent);
            if !ok {
                return Err(BreakerConfigError::BadFailureRate(rate));
            }
        }
        if self.open_for.is_zero() || self.open_for > self.max_open_for {
            return Err(BreakerConfigError::BadOpenDuration);
        }
        if self.backoff_factor == 0 {
            return Err(BreakerConfigError::ZeroBackoff);
        }
        if self.successes_to_close == 0 || self.successes_to_close > self.half_open_trials {
            return Err(BreakerConfigError::BadTrials);
        }
        Ok(())
    }

    /// Open duration for the `trip`-th trip in a row (1-based), with backoff and cap.
    fn open_duration(&self, trip: u32) -> Duration {
        let mut duration = self.open_for;
        if self.backoff_factor > 1 {
            // Duration saturates, so this reaches the cap within ~100 doublings at most.
            for _ in 1..trip {
                if duration >= self.max_open_for {
                    break;
                }
                duration = duration.saturating_mul(self.backoff_factor);
            }
        }
        duration.min(self.max_open_for)
    }
}

/// Leave to make one call; hand it back to [`Breaker::record`] with the outcome.
#[must_use = "record the call's outcome with the permit, or the breaker learns nothing"]
#[derive(Debug, PartialEq, Eq)]
pub struct Permit {
    epoch: u64,
    trial: bool,
    transition: Option<Transition>,
}

impl Permit {
    /// True if this is a half-open trial call.
    pub fn is_trial(&self) -> bool {
        self.trial
    }

    /// The transition that granting this permit caused (Open → HalfOpen), if any.
    pub fn transition(&self) -> Option<Transition> {
        self.transition
    }
}

/// The breaker refused a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("circuit breaker is {state} for this instance; try another instance, or retry after {retry_after:?}")]
pub struct Rejected {
    /// The breaker's state.
    pub state: State,
    /// When the breaker will let a call through again at the earliest.
    pub retry_after: Duration,
}

/// Outcome counters of the closed state.
#[derive(Debug, Clone, Default)]
struct Counts {
    consecutive_failures: u32,
    /// Most recent outcomes, oldest first; `true` is a failure.
    window: VecDeque<bool>,
    window_failures: u32,
}

#[derive(Debug, Clone)]
enum Phase {
    Closed(Counts),
    Open {
        until: Instant,
    },
    HalfOpen {
        /// When this half-open round started; trials not reported by
        /// `since + open duration` are presumed lost.
        since: Instant,
        issued: u32,
        successes: u32,
    },
}

/// A circuit breaker for one instance.
#[derive(Debug, Clone)]
pub struct Breaker {
    config: BreakerConfig,
    phase: Phase,
    /// Trips since the breaker was last closed, for backoff.
    trips: u32,
    /// Incremented on every state change; permits of an older epoch are ignored.
    epoch: u64,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(config: BreakerConfig) -> Result<Breaker, BreakerConfigError> {
        config.validate()?;
        Ok(Breaker::new_unchecked(config))
    }

    fn new_unchecked(config: BreakerConfig) -> Breaker {
        Breaker {
            config,
            phase: Phase::Closed(Counts::default()),
            trips: 0,
            epoch: 0,
        }
    }

    /// The current state (an open breaker whose time is up stays `Open` until the next
    /// [`Breaker::allow`]).
    pub fn state(&self) -> State {
        match self.phase {
            Phase::Closed(_) => State::Closed,
            Phase::Open { .. } => State::Open,
            Phase::HalfOpen { .. } => State::HalfOpen,
        }
    }

    /// True if [`Breaker::allow`] at `now` would grant a permit; changes nothing. For filtering
    /// candidates before balancing.
    pub fn would_allow(&self, now: Instant) -> bool {
        match self.phase {
            Phase::Closed(_) => true,
            Phase::Open { until } => now >= until,
            Phase::HalfOpen { since, issued, .. } => {
                issued < self.config.half_open_trials || now >= since + self.current_open_for()
            }
        }
    }

    /// Asks to make a call at `now`.
    pub fn allow(&mut self, now: Instant) -> Result<Permit, Rejected> {
        match self.phase {
            Phase::Closed(_) => Ok(self.permit(false, None)),
            Phase::Open { until } if now < until => Err(self.rejected(until - now)),
            Phase::Open { .. } => {
                let transition = self.enter_half_open(now);
                self.allow_trial(now, Some(transition))
            }
            Phase::HalfOpen { .. } => self.allow_trial(now, None),
        }
    }

    /// Half-open admission: one of the round's trial slots, if any is left.
    fn allow_trial(
        &mut self,
        now: Instant,
        transition: Option<Transition>,
    ) -> Result<Permit, Rejected> {
        let timeout = self.current_open_for();
        let trials = self.config.half_open_trials;
        let Phase::HalfOpen {
            since,
            issued,
            successes,
        } = &mut self.phase
        else {
            return Err(self.rejected(timeout));
        };
        let mut restarted = false;
        if *issued >= trials && now >= *since + timeout {
            // Every trial was issued and none came back in time: presume them lost and start a
            // fresh round rather than stay half-open forever.
            (*since, *issued, *successes) = (now, 0, 0);
            restarted = true;
        }
        if *issued >= trials {
            let retry_after = (*since + timeout) - now;
            return Err(self.rejected(retry_after));
        }
        *issued += 1;
        if restarted {
            // Late reports of the lost trials must not count in the new round.
            self.epoch += 1;
        }
        Ok(self.permit(true, transition))
    }

    /// Reports the outcome of the call made under `permit`. Returns the state change it caused.
    pub fn record(&mut self, now: Instant, permit: Permit, outcome: Outcome) -> Option<Transition> {
        if permit.epoch != self.epoch {
            // Issued before the last state change: says nothing about the current period.
            return None;
        }
        match &mut self.phase {
            Phase::Closed(counts) => {
                let trip = count_outcome(&self.config, counts, outcome);
                trip.then(|| self.trip(now))
            }
            Phase::HalfOpen {
                issued, successes, ..
            } => match outcome {
                Outcome::Cancelled => {
                    *issued = issued.saturating_sub(1);
                    None
                }
                Outcome::Failure => Some(self.trip(now)),
                Outcome::Success => {
                    *successes += 1;
                    (*successes >= self.config.successes_to_close).then(|| self.close())
                }
            },
            // Unreachable with a current-epoch permit: entering Open bumps the epoch.
            Phase::Open { .. } => None,
        }
    }

    fn permit(&self, trial: bool, transition: Option<Transition>) -> Permit {
        Permit {
            epoch: self.epoch,
            trial,
            transition,
        }
    }

    fn rejected(&self, retry_after: Duration) -> Rejected {
        Rejected {
            state: self.state(),
            retry_after,
        }
    }

    /// The open duration of the current run of trips (also the half-open trial timeout).
    fn current_open_for(&self) -> Duration {
        self.config.open_duration(self.trips.max(1))
    }

    fn change(&mut self, phase: Phase) -> Transition {
        let from = self.state();
        self.phase = phase;
        self.epoch += 1;
        Transition {
            from,
            to: self.state(),
        }
    }

    fn trip(&mut self, now: Instant) -> Transition {
        self.trips = self.trips.saturating_add(1);
        let until = now + self.current_open_for();
        self.change(Phase::Open { until })
    }

    fn enter_half_open(&mut self, now: Instant) -> Transition {
        self.change(Phase::HalfOpen {
            since: now,
            issued: 0,
            successes: 0,
        })
    }

    fn close(&mut self) -> Transition {
        self.trips = 0;
        self.change(Phase::Closed(Counts::default()))
    }
}

/// Adds a closed-state outcome to the counters; true if the breaker should trip.
fn count_outcome(config: &BreakerConfig, counts: &mut Counts, outcome: Outcome) -> bool {
    let failed = match outcome {
        Outcome::Cancelled => return false,
        Outcome::Success => false,
        Outcome::Failure => true,
    };
    counts.consecutive_failures = if failed {
        counts.consecutive_failures.saturating_add(1)
    } else {
        0
    };
    let by_streak = config
        .consecutive_failures
        .is_some_and(|limit| counts.consecutive_failures >= limit);
    let by_rate = config
        .failure_rate
        .is_some_and(|rate| push_window(counts, rate, failed));
    by_streak || by_rate
}

/// Slides the window by one outcome; true if the failure rate is now at or over the limit.
fn push_window(counts: &mut Counts, rate: FailureRate, failed: bool) -> bool {
    counts.window.push_back(failed);
    counts.window_failures += u32::from(failed);
    if counts.window.len() > rate.window as usize {
        let dropped = counts.window.pop_front().unwrap_or(false);
        counts.window_failures -= u32::from(dropped);
    }
    let calls = counts.window.len() as u64;
    calls >= u64::from(rate.min_calls)
        && u64::from(counts.window_failures) * 100 >= u64::from(rate.percent) * calls
}

/// One breaker per instance, all with the same configuration.
///
/// An instance without an entry behaves as a fresh closed breaker; entries are created when the
/// first outcome other than a cancel is recorded and live until [`Breakers::remove`] (call it when
/// an instance leaves the registry).
#[derive(Debug, Clone)]
pub struct Breakers<K> {
    config: BreakerConfig,
    breakers: BTreeMap<K, Breaker>,
}

impl<K: Ord> Breakers<K> {
    /// An empty set of breakers sharing `config`.
    pub fn new(config: BreakerConfig) -> Result<Self, BreakerConfigError> {
        config.validate()?;
        Ok(Breakers {
            config,
            breakers: BTreeMap::new(),
        })
    }

    /// Asks to call `instance` at `now`. See [`Breaker::allow`].
    pub fn allow<Q>(&mut self, now: Instant, instance: &Q) -> Result<Permit, Rejected>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        match self.breakers.get_mut(instance) {
            Some(breaker) => breaker.allow(now),
            // What a fresh closed breaker would grant; no entry needed until an outcome arrives.
            None => Ok(Permit {
                epoch: 0,
                trial: false,
                transition: None,
            }),
        }
    }

    /// Reports the outcome of a call to `instance`. See [`Breaker::record`].
    pub fn record<Q>(
        &mut self,
        now: Instant,
        instance: &Q,
        permit: Permit,
        outcome: Outcome,
    ) -> Option<Transition>
    where
        K: Borrow<Q>,
        Q: Ord + ToOwned<Owned = K> + ?Sized,
    {
        let breaker = match self.breakers.get_mut(instance) {
            Some(breaker) => breaker,
            // A fresh breaker learns nothing from a cancel; an entry made for one would bring
            // back an instance the caller has just forgotten (its call ended after the removal).
            None if outcome == Outcome::Cancelled => return None,
            None => self
                .breakers
                .entry(instance.to_owned())
                .or_insert_with(|| Breaker::new_unchecked(self.config)),
        };
        breaker.record(now, permit, outcome)
    }

    /// The state of `instance`'s breaker (`Closed` if it has none).
    pub fn state<Q>(&self, instance: &Q) -> State
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.breakers
            .get(instance)
            .map_or(State::Closed, Breaker::state)
    }

    /// True if a call to `instance` at `now` would be allowed; changes nothing.
    pub fn would_allow<Q>(&self, now: Instant, instance: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.breakers
            .get(instance)
            .is_none_or(|b| b.would_allow(now))
    }

    /// Forgets `instance`'s breaker. True if it had one.
    pub fn remove<Q>(&mut self, instance: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.breakers.remove(instance).is_some()
    }

    /// Every instance with a breaker and its state, in key order (for metrics and status pages).
    pub fn states(&self) -> impl Iterator<Item = (&K, State)> {
        self.breakers.iter().map(|(k, b)| (k, b.state()))
    }

    /// Number of instances with a breaker.
    pub fn len(&self) -> usize {
        self.breakers.len()
    }

    /// True if no instance has a breaker.
    pub fn is_empty(&self) -> bool {
        self.breakers.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::{any, prop_assert, prop_oneof, proptest, Just, Strategy};

    const SEC: Duration = Duration::from_secs(1);

    fn at(secs: u64) -> Instant {
        Instant::ZERO + Duration::from_secs(secs)
    }

    fn streak(n: u32) -> BreakerConfig {
        BreakerConfig {
            consecutive_failures: Some(n),
            failure_rate: None,
            open_for: 10 * SEC,
            backoff_factor: 2,
            max_open_for: 35 * SEC,
            half_open_trials: 2,
            successes_to_close: 2,
        }
    }

    fn call(b: &mut Breaker, now: Instant, outcome: Outcome) -> Option<Transition> {
        let permit = b.allow(now).expect("allowed");
        b.record(now, permit, outcome)
    }

    const TRIP: Option<Transition> = Some(Transition {
        from: State::Closed,
        to: State::Open,
    });
    const REOPEN: Option<Transition> = Some(Transition {
        from: State::HalfOpen,
        to: State::Open,
    });
    const CLOSE: Option<Transition> = Some(Transition {
        from: State::HalfOpen,
        to: State::Closed,
    });

    #[test]
    fn opens_after_consecutive_failures_and_rejects() {
        let mut b = Breaker::new(streak(3)).unwrap();
        assert_eq!(call(&mut b, at(0), Outcome::Failure), None);
        assert_eq!(call(&mut b, at(0), Outcome::Failure), None);
        assert_eq!(call(&mut b, at(0), Outcome::Success), None, "resets streak");
        assert_eq!(call(&mut b, at(1), Outcome::Failure), None);
        assert_eq!(call(&mut b, at(1), Outcome::Failure), None);
        assert_eq!(call(&mut b, at(1), Outcome::Failure), TRIP);
        assert_eq!(b.state(), State::Open);
        assert_eq!(
            b.allow(at(5)),
            Err(Rejected {
                state: State::Open,
                retry_after: 6 * SEC
            })
        );
        assert!(!b.would_allow(at(10)));
        assert!(b.would_allow(at(11)));
    }

    fn tripped() -> Breaker {
        let mut b = Breaker::new(streak(1)).unwrap();
        assert_eq!(call(&mut b, at(0), Outcome::Failure), TRIP);
        b
    }

    #[test]
    fn half_open_allows_exactly_the_trials_then_closes() {
        let mut b = tripped();
        let first = b.allow(at(10)).unwrap();
        assert!(first.is_trial());
        assert_eq!(
            first.transition(),
            Some(Transition {
                from: State::Open,
                to: State::HalfOpen
            })
        );
        let second = b.allow(at(10)).unwrap();
        assert_eq!(second.transition(), None);
        assert_eq!(b.allow(at(10)).unwrap_err().state, State::HalfOpen);

        assert_eq!(b.record(at(11), first, Outcome::Success), None);
        assert_eq!(b.record(at(11), second, Outcome::Success), CLOSE);
        let after = b.allow(at(11)).unwrap();
        assert!(!after.is_trial());
        assert_eq!(b.record(at(11), after, Outcome::Success), None);
    }

    #[test]
    fn trial_failure_reopens_with_capped_backoff() {
        let mut b = tripped(); // open 0..10
        assert_eq!(call(&mut b, at(10), Outcome::Failure), REOPEN); // open 10..30
        assert!(b.allow(at(29)).is_err());
        assert_eq!(call(&mut b, at(30), Outcome::Failure), REOPEN); // 40 s, capped to 35
        assert_eq!(b.allow(at(30)).unwrap_err().retry_after, 35 * SEC);
        assert!(b.allow(at(64)).is_err());

        // Closing resets the backoff.
        let p1 = b.allow(at(65)).unwrap();
        let p2 = b.allow(at(65)).unwrap();
        b.record(at(65), p1, Outcome::Success);
        assert_eq!(b.record(at(65), p2, Outcome::Success), CLOSE);
        assert_eq!(call(&mut b, at(66), Outcome::Failure), TRIP);
        assert_eq!(b.allow(at(66)).unwrap_err().retry_after, 10 * SEC);
    }

    #[test]
    fn stale_permits_are_ignored() {
        let mut b = Breaker::new(streak(1)).unwrap();
        let slow = b.allow(at(0)).unwrap();
        assert_eq!(call(&mut b, at(0), Outcome::Failure), TRIP);
        let trial = b.allow(at(10)).unwrap();
        // A failure from before the trip does not reopen the half-open breaker...
        assert_eq!(b.record(at(10), slow, Outcome::Failure), None);
        assert_eq!(b.state(), State::HalfOpen);
        assert_eq!(b.record(at(10), trial, Outcome::Failure), REOPEN);
    }

    #[test]
    fn cancelled_trial_frees_its_slot() {
        let mut b = tripped();
        let p1 = b.allow(at(10)).unwrap();
        let p2 = b.allow(at(10)).unwrap();
        assert!(b.allow(at(10)).is_err());
        assert_eq!(b.record(at(10), p1, Outcome::Cancelled), None);
        let p3 = b.allow(at(10)).unwrap();
        b.record(at(10), p2, Outcome::Success);
        assert_eq!(b.record(at(10), p3, Outcome::Success), CLOSE);
    }

    #[test]
    fn lost_trials_do_not_leave_the_breaker_stuck() {
        let mut b = tripped();
        let lost1 = b.allow(at(10)).unwrap();
        let _lost2 = b.allow(at(10)).unwrap();
        assert_eq!(b.allow(at(15)).unwrap_err().retry_after, 5 * SEC);
        assert!(b.would_allow(at(20)));
        let fresh = b.allow(at(20)).unwrap();
        assert!(fresh.is_trial());
        assert_eq!(b.record(at(20), lost1, Outcome::Failure), None, "stale");
        assert_eq!(b.state(), State::HalfOpen);
        drop(fresh);
    }

    #[test]
    fn failure_rate_window() {
        let config = BreakerConfig {
            consecutive_failures: None,
            failure_rate: Some(FailureRate {
                window: 6,
                min_calls: 4,
                percent: 50,
            }),
            ..streak(1)
        };
        use Outcome::{Failure as F, Success as S};
        // Under min_calls nothing trips, even at 2 of 3 failed; at min_calls 2 of 4 is 50%.
        let mut b = Breaker::new(config).unwrap();
        for o in [F, F, S] {
            assert_eq!(call(&mut b, at(0), o), None);
        }
        assert_eq!(call(&mut b, at(0), S), TRIP);

        // Old outcomes slide out: the first failure no longer counts after six more calls.
        let mut b = Breaker::new(config).unwrap();
        for o in [F, S, S, S, S, S, S, F, F] {
            assert_eq!(call(&mut b, at(0), o), None); // ends with S S S S F F: 2 of 6
        }
        assert_eq!(call(&mut b, at(0), F), TRIP); // S S S F F F: 3 of 6
    }

    #[test]
    fn config_validation() {
        assert_eq!(BreakerConfig::default().validate(), Ok(()));
        let none = BreakerConfig {
            consecutive_failures: None,
            failure_rate: None,
            ..streak(1)
        };
        assert_eq!(none.validate(), Err(BreakerConfigError::NoTripRule));
        let never_closes = BreakerConfig {
            successes_to_close: 3,
            ..streak(1)
        };
        assert_eq!(never_closes.validate(), Err(BreakerConfigError::BadTrials));
        let bad_rate = FailureRate {
            window: 5,
            min_calls: 6,
            percent: 50,
        };
        let cfg = BreakerConfig {
            failure_rate: Some(bad_rate),
            ..streak(1)
        };
        assert_eq!(
            Breaker::new(cfg).unwrap_err(),
            BreakerConfigError::BadFailureRate(bad_rate)
        );
        let zero_open = BreakerConfig {
            open_for: Duration::ZERO,
            ..streak(1)
        };
        assert_eq!(
            zero_open.validate(),
            Err(BreakerConfigError::BadOpenDuration)
        );
    }

    #[test]
    fn breakers_are_independent_per_instance() {
        let mut all = Breakers::<String>::new(streak(1)).unwrap();
        assert_eq!(all.state("a"), State::Closed);
        let p = all.allow(at(0), "a").unwrap();
        assert_eq!(all.record(at(0), "a", p, Outcome::Failure), TRIP);
        assert!(all.allow(at(1), "a").is_err());
        assert!(!all.would_allow(at(1), "a"));
        assert!(all.would_allow(at(1), "b"));
        let p = all.allow(at(1), "b").unwrap();
        assert_eq!(all.record(at(1), "b", p, Outcome::Success), None);
        let states: Vec<_> = all.states().map(|(k, s)| (k.as_str(), s)).collect();
        assert_eq!(states, vec![("a", State::Open), ("b", State::Closed)]);
        assert!(all.remove("a"));
        assert_eq!(all.state("a"), State::Closed);
        assert_eq!(all.len(), 1);
    }

    #[test]
    fn a_cancel_for_a_forgotten_instance_makes_no_breaker() {
        let mut all = Breakers::<String>::new(streak(1)).unwrap();
        let done = all.allow(at(0), "a").unwrap();
        let dropped = all.allow(at(0), "a").unwrap();
        assert_eq!(all.record(at(0), "a", done, Outcome::Success), None);
        assert!(all.remove("a"));
        assert_eq!(all.record(at(1), "a", dropped, Outcome::Cancelled), None);
        assert!(
            all.is_empty(),
            "the cancel re-created the forgotten instance's breaker"
        );
    }

    #[derive(Debug, Clone)]
    enum Op {
        Allow,
        Finish(usize, Outcome),
        Wait(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        let outcome = prop_oneof![
            Just(Outcome::Success),
            Just(Outcome::Failure),
            Just(Outcome::Cancelled)
        ];
        prop_oneof![
            Just(Op::Allow),
            (any::<usize>(), outcome).prop_map(|(i, o)| Op::Finish(i, o)),
            (0u64..15).prop_map(Op::Wait),
        ]
    }

    proptest! {
        /// Whatever the interleaving: closed never rejects, trials in flight never exceed the
        /// configured count, and an open breaker rejects with a positive retry_after.
        #[test]
        fn invariants_hold(ops in proptest::collection::vec(op(), 0..200)) {
            let config = streak(2);
            let mut b = Breaker::new(config).unwrap();
            let mut now = at(0);
            let mut in_flight: Vec<Permit> = Vec::new();
            for op in ops {
                match op {
                    Op::Allow => {
                        let before = b.state();
                        match b.allow(now) {
                            Ok(p) => in_flight.push(p),
                            Err(r) => {
                                prop_assert!(before != State::Closed);
                                prop_assert!(!r.retry_after.is_zero());
                            }
                        }
                    }
                    Op::Finish(i, o) if !in_flight.is_empty() => {
                        let p = in_flight.remove(i % in_flight.len());
                        b.record(now, p, o);
                    }
                    Op::Finish(..) => {}
                    Op::Wait(s) => now = now + Duration::from_secs(s),
                }
                if let Phase::HalfOpen { issued, successes, .. } = b.phase {
                    prop_assert!(issued <= config.half_open_trials);
                    prop_assert!(successes < config.successes_to_close);
                }
            }
        }
    }
}
