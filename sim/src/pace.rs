//! How often the events of a seeded stream come (writes, calls, publications): an average
//! rate over a duration, with gaps drawn uniformly from `1..=2/rate`, and the checks of its
//! settings that every stream shares.

use std::time::Duration;

/// A stream's pace: `rate` events per second for `duration`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Pace {
    pub rate: f64,
    pub duration: Duration,
}

impl Pace {
    /// Checks the rate is positive and at most `max` per second, and the duration not zero;
    /// `what` names the stream in the error.
    pub fn check(&self, what: &str, max: f64) -> Result<(), String> {
        if !(self.rate.is_finite() && self.rate > 0.0 && self.rate <= max) {
            return Err(format!(
                "{what} rate {} must be above 0 and at most {max} per second",
                self.rate
            ));
        }
        if self.duration.is_zero() {
            return Err(format!("{what} needs a duration above zero"));
        }
        Ok(())
    }

    /// The longest gap between two events: they average `1 / rate`.
    pub fn max_gap_us(&self) -> u64 {
        ((2e6 / self.rate).round() as u64).max(1)
    }
}

/// Checks a probability-like share; `what` names it in the error.
pub(crate) fn check_share(what: &str, share: f64) -> Result<(), String> {
    if (0.0..=1.0).contains(&share) {
        Ok(())
    } else {
        Err(format!("{what} share {share} is not within 0..1"))
    }
}
