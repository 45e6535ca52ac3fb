//! Time as the protocols see it: a monotonic instant supplied by the driver.
//!
//! The runtime derives it from tokio's clock; the simulator from its virtual clock. Protocol code
//! never reads a clock itself.

use std::fmt;
use std::ops::{Add, Sub};
use std::time::Duration;

/// Microseconds since the driver's epoch (its start).
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, serde::Serialize, serde::Deserialize,
)]
pub struct Instant(u64);

impl Instant {
    /// The driver's epoch.
    pub const ZERO: Instant = Instant(0);

    /// An instant `elapsed` after the epoch.
    pub fn from_elapsed(elapsed: Duration) -> Instant {
        Instant(u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX))
    }

    /// Time since the epoch.
    pub fn elapsed(self) -> Duration {
        Duration::from_micros(self.0)
    }

    /// Time from `earlier` to `self`, zero if `earlier` is later.
    pub fn saturating_since(self, earlier: Instant) -> Duration {
        Duration::from_micros(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;

    fn add(self, rhs: Duration) -> Instant {
        let micros = u64::try_from(rhs.as_micros()).unwrap_or(u64::MAX);
        Instant(self.0.saturating_add(micros))
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;

    fn sub(self, rhs: Instant) -> Duration {
        self.saturating_since(rhs)
    }
}

impl fmt::Debug for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "t+{:.3}s", self.0 as f64 / 1e6)
    }
}

impl fmt::Display for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}
