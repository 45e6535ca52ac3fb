//! Multi-value register: concurrent writes are all kept, as siblings, until a later write that
//! saw them replaces them. For values where a conflict must be shown to a person rather than
//! resolved by a clock.
//!
//! It is the observed-remove set's dot machinery with one implicit element: a write retires the
//! dots it observed and adds a fresh one. Each sibling costs one dot, never a whole version vector
//! (the `crdts` MVReg-in-Map trap), and the register's context keeps one entry per actor.

use std::collections::{BTreeMap, BTreeSet};

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::context::{CausalContext, Dot};
use crate::encoding::{Canonical, InvariantError};
use crate::NodeId;

/// A write: `value` under the fresh `dot`, replacing the `observed` siblings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MvRegOp<V> {
    /// The new dot.
    pub dot: Dot,
    /// The value written.
    pub value: V,
    /// The siblings the writer had seen; they are replaced.
    pub observed: BTreeSet<Dot>,
}

/// A multi-value register. See the module docs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MvReg<V> {
    values: BTreeMap<Dot, V>,
    context: CausalContext,
}

impl<V> Default for MvReg<V> {
    fn default() -> Self {
        MvReg {
            values: BTreeMap::new(),
            context: CausalContext::new(),
        }
    }
}

impl<V: Clone> MvReg<V> {
    /// An empty register.
    pub fn new() -> Self {
        Self::default()
    }

    /// Writes `value` as `actor`, replacing every sibling seen here; returns the op to ship.
    pub fn write(&mut self, actor: NodeId, value: V) -> MvRegOp<V> {
        let op = MvRegOp {
            dot: self.context.next_dot(actor),
            value,
            observed: self.values.keys().copied().collect(),
        };
        self.apply(&op);
        op
    }

    /// Applies a write from any replica. Idempotent and commutative; returns whether the
    /// siblings changed.
    pub fn apply(&mut self, op: &MvRegOp<V>) -> bool {
        let before = self.values.len();
        self.values.retain(|d, _| !op.observed.contains(d));
        let mut changed = self.values.len() != before;
        for dot in &op.observed {
            self.context.insert(*dot);
        }
        if op.dot.counter > 0 && !self.context.contains(&op.dot) {
            self.values.insert(op.dot, op.value.clone());
            self.context.insert(op.dot);
            changed = true;
        }
        debug_assert!(self.invariants().is_ok(), "{:?}", self.invariants());
        changed
    }

    /// Merges a full state: a sibling survives if both sides have it, or one side has it and the
    /// other has never seen its dot.
    pub fn merge(&mut self, other: &MvReg<V>) {
        self.values
            .retain(|d, _| other.values.contains_key(d) || !other.context.contains(d));
        for (dot, value) in &other.values {
            if !self.context.contains(dot) {
                self.values.insert(*dot, value.clone());
            }
        }
        self.context.merge(&other.context);
        debug_assert!(self.invariants().is_ok(), "{:?}", self.invariants());
    }

    /// Epoch compaction: renames `departed`'s sibling (if any) to a fresh dot of `into` and
    /// drops `departed` from the context. Same safety rule as [`crate::OrSet::compact_actor`].
    pub fn compact_actor(&mut self, departed: NodeId, into: NodeId) {
        if departed == into {
            return;
        }
        let theirs: Vec<Dot> = self
            .values
            .keys()
            .filter(|d| d.actor == departed)
            .copied()
            .collect();
        let mut next = self.context.next_dot(into);
        for dot in theirs {
            if let Some(value) = self.values.remove(&dot) {
                self.values.insert(next, value);
                self.context.insert(next);
                next = Dot::new(into, next.counter.saturating_add(1));
            }
        }
        self.context.remove_actor(departed);
        debug_assert!(self.invariants().is_ok(), "{:?}", self.invariants());
    }
}

impl<V> MvReg<V> {
    /// The current siblings, in dot order: one value normally, several after concurrent
    /// writes, none before the first write.
    pub fn read(&self) -> Vec<&V> {
        self.values.values().collect()
    }

    /// Siblings with their dots (who wrote each).
    pub fn siblings(&self) -> impl Iterator<Item = (&Dot, &V)> {
        self.values.iter()
    }

    /// The causal context.
    pub fn context(&self) -> &CausalContext {
        &self.context
    }

    /// Checks: every sibling's dot is valid and in the context; the context is in normal form.
    pub fn invariants(&self) -> Result<(), InvariantError> {
        for dot in self.values.keys() {
            InvariantError::check(dot.counter > 0 && self.context.contains(dot), || {
                format!("sibling dot {dot:?} missing from the context")
            })?;
        }
        self.context.invariants()
    }
}

impl<V: Serialize + DeserializeOwned> Canonical for MvReg<V> {
    fn validate(&self) -> Result<(), InvariantError> {
        self.invariants()
    }
}

impl<V: Serialize + DeserializeOwned> Canonical for MvRegOp<V> {
    fn validate(&self) -> Result<(), InvariantError> {
        InvariantError::check(
            self.dot.counter > 0
                && !self.observed.contains(&self.dot)
                && self.observed.iter().all(|d| d.counter > 0),
            || "write dot is zero, observes itself, or observes a zero dot".into(),
        )
    }
}
