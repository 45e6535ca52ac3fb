//! Grow-only and positive-negative counters.
//!
//! Each actor owns one slot holding its running total. An op carries the actor's new total, not
//! the increment, so applying it is a `max`: idempotent and commutative, which an "add n" op is
//! not (a duplicated delivery would count twice).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::encoding::{Canonical, InvariantError};
use crate::NodeId;

/// An increment would overflow the actor's `u64` slot. Nothing was changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("counter slot of {actor} would overflow: {total} + {by} > u64::MAX; nothing changed")]
pub struct CounterOverflow {
    /// The actor whose slot is full.
    pub actor: NodeId,
    /// Its current total.
    pub total: u64,
    /// The increment refused.
    pub by: u64,
}

/// An op on a [`GCounter`]: `actor`'s running total is now `total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GCounterOp {
    /// Whose slot.
    pub actor: NodeId,
    /// The slot's new total.
    pub total: u64,
}

/// A grow-only counter.
///
/// Normal form: no zero slots.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GCounter {
    slots: BTreeMap<NodeId, u64>,
}

impl GCounter {
    /// A counter at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `by` as `actor`, applies it, and returns the op to ship.
    pub fn increment(&mut self, actor: NodeId, by: u64) -> Result<GCounterOp, CounterOverflow> {
        let total = self.slot(actor);
        let next = total
            .checked_add(by)
            .ok_or(CounterOverflow { actor, total, by })?;
        let op = GCounterOp { actor, total: next };
        self.apply(&op);
        Ok(op)
    }

    /// Applies an op from any replica; returns whether the counter changed.
    pub fn apply(&mut self, op: &GCounterOp) -> bool {
        if op.total <= self.slot(op.actor) {
            return false;
        }
        self.slots.insert(op.actor, op.total);
        true
    }

    /// Merges a full state: slot-wise max.
    pub fn merge(&mut self, other: &GCounter) {
        for (&actor, &total) in &other.slots {
            self.apply(&GCounterOp { actor, total });
        }
    }

    /// The counter's value. A `u128` cannot overflow: it sums at most 2^64 slots of `u64`.
    pub fn value(&self) -> u128 {
        self.slots.values().map(|&v| u128::from(v)).sum()
    }

    /// `actor`'s running total.
    pub fn slot(&self, actor: NodeId) -> u64 {
        self.slots.get(&actor).copied().unwrap_or(0)
    }

    /// Number of actor slots held.
    pub fn actors(&self) -> usize {
        self.slots.len()
    }

    /// Epoch compaction: adds `departed`'s total to `into`'s slot and frees `departed`'s slot.
    /// The value is unchanged. Read the safety rule in the crate docs ("Bounded memory") first;
    /// here, in particular, `into` must be a slot no node increments, or the max-merge would hide
    /// the folded count. Saturates at `u64::MAX` (2^64 events) rather than fail.
    pub fn compact_actor(&mut self, departed: NodeId, into: NodeId) {
        if departed == into {
            return;
        }
        if let Some(total) = self.slots.remove(&departed) {
            let folded = self.slot(into).saturating_add(total);
            self.slots.insert(into, folded);
        }
    }

    /// Checks the normal form: no zero slots.
    pub fn invariants(&self) -> Result<(), InvariantError> {
        InvariantError::check(self.slots.values().all(|&v| v > 0), || {
            "zero counter slot".into()
        })
    }
}

/// An op on a [`PnCounter`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PnCounterOp {
    /// New total of the actor's increments.
    Increment(GCounterOp),
    /// New total of the actor's decrements.
    Decrement(GCounterOp),
}

/// A counter that goes up and down: two grow-only counters, value = increments - decrements.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PnCounter {
    increments: GCounter,
    decrements: GCounter,
}

impl PnCounter {
    /// A counter at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `by` as `actor`; returns the op to ship.
    pub fn increment(&mut self, actor: NodeId, by: u64) -> Result<PnCounterOp, CounterOverflow> {
        self.increments
            .increment(actor, by)
            .map(PnCounterOp::Increment)
    }

    /// Subtracts `by` as `actor`; returns the op to ship.
    pub fn decrement(&mut self, actor: NodeId, by: u64) -> Result<PnCounterOp, CounterOverflow> {
        self.decrements
            .increment(actor, by)
            .map(PnCounterOp::Decrement)
    }

    /// Applies an op from any replica; returns whether the counter changed.
    pub fn apply(&mut self, op: &PnCounterOp) -> bool {
        match op {
            PnCounterOp::Increment(op) => self.increments.apply(op),
            PnCounterOp::Decrement(op) => self.decrements.apply(op),
        }
    }

    /// Merges a full state.
    pub fn merge(&mut self, other: &PnCounter) {
        self.increments.merge(&other.increments);
        self.decrements.merge(&other.decrements);
    }

    /// The value, saturating at the bounds of `i128` (unreachable with real counts).
    pub fn value(&self) -> i128 {
        let up = i128::try_from(self.increments.value()).unwrap_or(i128::MAX);
        let down = i128::try_from(self.decrements.value()).unwrap_or(i128::MAX);
        up.saturating_sub(down)
    }

    /// Compacts `departed` into `into` in both halves; see [`GCounter::compact_actor`].
    pub fn compact_actor(&mut self, departed: NodeId, into: NodeId) {
        self.increments.compact_actor(departed, into);
        self.decrements.compact_actor(departed, into);
    }

    /// Checks both halves.
    pub fn invariants(&self) -> Result<(), InvariantError> {
        self.increments.invariants()?;
        self.decrements.invariants()
    }
}

impl Canonical for GCounter {
    fn validate(&self) -> Result<(), InvariantError> {
        self.invariants()
    }
}

impl Canonical for PnCounter {
    fn validate(&self) -> Result<(), InvariantError> {
        self.invariants()
    }
}

impl Canonical for GCounterOp {
    fn validate(&self) -> Result<(), InvariantError> {
        Ok(())
    }
}

impl Canonical for PnCounterOp {
    fn validate(&self) -> Result<(), InvariantError> {
        Ok(())
    }
}
