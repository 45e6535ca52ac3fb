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
