//! Identities, time and validated money amounts shared by every mechanism.

use serde::{Deserialize, Serialize};

use crate::error::Rejection;

/// Identity of an agent taking part in a protocol.
///
/// Ordered, so that ties between agents are broken the same way on every node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AgentId(pub u64);

impl std::fmt::Display for AgentId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "agent-{}", self.0)
    }
}

/// A message for one agent, produced by a machine for the driver to deliver.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outgoing<M> {
    /// The recipient.
    pub to: AgentId,
    /// The message.
    pub msg: M,
}

/// A point in time, in milliseconds since an epoch the driver chooses.
///
/// Machines never read a clock: the driver passes `now` in, so the simulator can run them on virtual
/// time and replay a run exactly.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct Time(pub u64);

impl Time {
    /// Milliseconds elapsed from `earlier` to `self`, zero if `earlier` is later.
    pub fn since(self, earlier: Time) -> u64 {
        self.0.saturating_sub(earlier.0)
    }

    /// `self` plus `ms` milliseconds, saturating at the end of time.
    pub fn plus_ms(self, ms: u64) -> Time {
        Time(self.0.saturating_add(ms))
    }
}

/// Checks that an amount of money is finite and not negative.
///
/// Every amount that comes from an agent goes through here before it can touch an outcome.
pub fn validate_amount(amount: f64) -> Result<f64, Rejection> {
    if !amount.is_finite() {
        return Err(Rejection::NotFinite);
    }
    if amount < 0.0 {
        return Err(Rejection::Negative { amount });
    }
    Ok(amount)
}

/// An amount of money or of a priced quantity in integer minor units (cents, micro-credits: the
/// deployment picks the unit), so prices and payments are exact and every node that replays the
/// same inputs computes the same figures, bit for bit. It cannot be negative, NaN or infinite by
/// construction; arithmetic that would leave `u64` is refused with [`Overflow`] instead of wrapping,
/// saturating or turning into an infinity.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Money(pub u64);

/// Arithmetic on [`Money`] left the representable range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("money arithmetic overflows: {what}")]
pub struct Overflow {
    /// The operation that overflowed, for the log.
    pub what: String,
}

impl Money {
    /// Nothing.
    pub const ZERO: Money = Money(0);
    /// The largest representable amount.
    pub const MAX: Money = Money(u64::MAX);

    /// The amount in minor units.
    pub fn minor(self) -> u64 {
        self.0
    }

    /// `self + other`, or [`Overflow`].
    pub fn checked_add(self, other: Money) -> Result<Money, Overflow> {
        self.0
            .checked_add(other.0)
            .map(Money)
            .ok_or_else(|| Overflow {
                what: format!("{self} + {other}"),
            })
    }

    /// `self - other`, or [`Overflow`] when `other` is larger (money does not go negative).
    pub fn checked_sub(self, other: Money) -> Result<Money, Overflow> {
        self.0
            .checked_sub(other.0)
            .map(Money)
            .ok_or_else(|| Overflow {
                what: format!("{self} - {other}"),
            })
    }

    /// `self · times`, or [`Overflow`].
    pub fn checked_mul(self, times: u64) -> Result<Money, Overflow> {
        self.0
            .checked_mul(times)
            .map(Money)
            .ok_or_else(|| Overflow {
                what: format!("{self} * {times}"),
            })
    }

    /// The sum of `amounts`, or [`Overflow`] as soon as it leaves the range.
    pub fn checked_sum(amounts: impl IntoIterator<Item = Money>) -> Result<Money, Overflow> {
        amounts
            .into_iter()
            .try_fold(Money::ZERO, |total, m| total.checked_add(m))
    }

    /// An approximation for telemetry and logs only; no decision reads it.
    pub fn approx_f64(self) -> f64 {
        self.0 as f64
    }
}

impl std::fmt::Display for Money {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}
