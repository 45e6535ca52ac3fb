//! Why an input was refused.
//!
//! A [`Rejection`] never changes the state of the machine that returned it: the outcome is the same
//! as if the input had never arrived.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::types::{AgentId, Money, Overflow, Time};

/// Reason an input (a bid, an order, a ballot, an offer) was refused. State is unchanged.
#[derive(Debug, Clone, PartialEq, Error, Serialize, Deserialize)]
pub enum Rejection {
    /// The amount was NaN or infinite; send a finite number.
    #[error("amount is not a finite number")]
    NotFinite,
    /// The amount was below zero; amounts are prices or values and cannot be negative.
    #[error("amount {amount} is negative")]
    Negative {
        /// The refused amount.
        amount: f64,
    },
    /// The bid exceeds the budget the agent declared when it was admitted.
    #[error("amount {amount} exceeds the budget {budget}")]
    OverBudget {
        /// The refused amount.
        amount: Money,
        /// The agent's budget.
        budget: Money,
    },
    /// The agent already submitted; protocols here accept one submission per agent and round.
    #[error("{agent} already submitted")]
    Duplicate {
        /// The agent that submitted twice.
        agent: AgentId,
    },
    /// The agent is not admitted to this protocol instance.
    #[error("{agent} is not a participant")]
    NotParticipant {
        /// The outsider.
        agent: AgentId,
    },
    /// The input arrived at or after the deadline.
    #[error("arrived at {at:?}, deadline was {deadline:?}")]
    Late {
        /// When it arrived.
        at: Time,
        /// The deadline it missed.
        deadline: Time,
    },
    /// The protocol has already decided; nothing more is accepted.
    #[error("the protocol is closed")]
    Closed,
    /// The input refers to a round, item or candidate that does not exist or is not current.
    #[error("invalid reference: {what}")]
    InvalidReference {
        /// What was wrong, for the sender's log.
        what: String,
    },
    /// The agent is no longer eligible (for example it dropped out of an English auction).
    #[error("{agent} is no longer active")]
    Inactive {
        /// The inactive agent.
        agent: AgentId,
    },
    /// A quantity or count was zero or too large.
    #[error("invalid quantity: {what}")]
    InvalidQuantity {
        /// What was wrong.
        what: String,
    },
    /// Accepting the input would make the machine's money arithmetic overflow.
    #[error("{0}")]
    Overflow(#[from] Overflow),
}

/// A configuration that cannot run; returned by constructors, before any state exists.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ConfigError {
    /// A numeric parameter is out of its allowed range.
    #[error("{name} = {value} is invalid: {why}")]
    Parameter {
        /// The parameter name.
        name: &'static str,
        /// The refused value.
        value: f64,
        /// The allowed range, in words.
        why: &'static str,
    },
    /// The protocol needs at least one participant or option.
    #[error("{what} must not be empty")]
    Empty {
        /// What was empty.
        what: &'static str,
    },
    /// The configuration's money arithmetic (a clock's last price, a sum of budgets) overflows.
    #[error("{0}")]
    Overflow(#[from] Overflow),
}
