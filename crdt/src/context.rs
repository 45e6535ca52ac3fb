//! Dots and causal contexts: the bookkeeping that makes observed-remove types correct as ops.
//!
//! A dot `(actor, counter)` names one add or write. A causal context is the set of every dot a
//! replica has seen, whether still live or already removed; a dot in the context but not in the
//! live state has been removed, so a late or duplicated op carrying it is ignored instead of
//! resurrecting it. The context is stored compactly as a version vector plus a "cloud" of dots
//! received out of order, and always kept in normal form so equal contexts encode equally.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::encoding::InvariantError;
use crate::NodeId;

/// One event by one actor. Counters start at 1 and are dense per actor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Dot {
    /// Who made the event.
    pub actor: NodeId,
    /// The actor's event number, from 1.
    pub counter: u64,
}

impl Dot {
    /// A dot; `counter` must be at least 1 to be valid.
    pub const fn new(actor: NodeId, counter: u64) -> Self {
        Dot { actor, counter }
    }
}

/// Every dot a replica has seen, as `clock` (all dots `1..=clock[a]` of actor `a`) plus `cloud`
/// (seen dots beyond the contiguous prefix).
///
/// Normal form: no zero entries in `clock`; every cloud dot has `counter >= clock[actor] + 2`
/// (otherwise it would have been folded into the clock).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CausalContext {
    clock: BTreeMap<NodeId, u64>,
    cloud: BTreeSet<Dot>,
}

impl CausalContext {
    /// An empty context.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether `dot` has been seen.
    pub fn contains(&self, dot: &Dot) -> bool {
        dot.counter <= self.clock_of(dot.actor) || self.cloud.contains(dot)
    }

    /// The contiguous prefix of `actor`'s dots that has been seen.
    pub fn clock_of(&self, actor: NodeId) -> u64 {
        self.clock.get(&actor).copied().unwrap_or(0)
    }

    /// Number of actors with any dot in this context: the per-type memory cost of actors.
    pub fn actors(&self) -> usize {
        let mut actors: BTreeSet<NodeId> = self.clock.keys().copied().collect();
        actors.extend(self.cloud.iter().map(|d| d.actor));
        actors.len()
    }

    /// The next fresh dot for `actor`. Looks past the cloud too, so a dot is never reused even
    /// if others reported dots of ours we had not seen (e.g. after a restart from old state).
    pub fn next_dot(&self, actor: NodeId) -> Dot {
        let in_cloud = self
            .cloud
            .range(Dot::new(actor, 0)..=Dot::new(actor, u64::MAX))
            .next_back()
            .map_or(0, |d| d.counter);
        let counter = self.clock_of(actor).max(in_cloud).saturating_add(1);
        Dot::new(actor, counter)
    }

    /// Records `dot` as seen. Dots with counter 0 are not valid and are ignored.
    pub fn insert(&mut self, dot: Dot) {
        if dot.counter == 0 || self.contains(&dot) {
            return;
        }
        self.cloud.insert(dot);
        self.compact(dot.actor);
        // Per-op check stays O(dots of one actor) so debug builds of big keyspaces stay fast.
        debug_assert!(self.actor_in_normal_form(dot.actor));
    }

    /// Union with `other`.
    pub fn merge(&mut self, other: &CausalContext) {
        let mut touched = BTreeSet::new();
        for (&actor, &counter) in &other.clock {
            let mine = self.clock.entry(actor).or_insert(0);
            if counter > *mine {
                *mine = counter;
                touched.insert(actor);
            }
        }
        for dot in &other.cloud {
            if !self.contains(dot) {
                self.cloud.insert(*dot);
                touched.insert(dot.actor);
            }
        }
        for actor in touched {
            self.compact(actor);
        }
        debug_assert!(self.invariants().is_ok(), "{:?}", self.invariants());
    }

    /// Drops every dot of `actor` from the context. Only for epoch compaction, after the owning
    /// type has renamed the actor's live dots (see `compact_actor` on the types).
    pub fn remove_actor(&mut self, actor: NodeId) {
        self.clock.remove(&actor);
        let stale: Vec<Dot> = self
            .cloud
            .range(Dot::new(actor, 0)..=Dot::new(actor, u64::MAX))
            .copied()
            .collect();
        for dot in stale {
            self.cloud.remove(&dot);
        }
    }

    /// Folds cloud dots of `actor` that extend the contiguous prefix into the clock.
    fn compact(&mut self, actor: NodeId) {
        let mut clock = self.clock_of(actor);
        // The cloud is sorted, so the actor's lowest cloud dot is the only candidate each round.
        while let Some(&first) = self
            .cloud
            .range(Dot::new(actor, 0)..=Dot::new(actor, u64::MAX))
            .next()
        {
            if first.counter > clock.saturating_add(1) {
                break;
            }
            clock = clock.max(first.counter);
            self.cloud.remove(&first);
        }
        if clock > 0 {
            self.clock.insert(actor, clock);
        }
    }

    fn actor_in_normal_form(&self, actor: NodeId) -> bool {
        let floor = self.clock_of(actor).saturating_add(2);
        self.clock.get(&actor) != Some(&0)
            && self
                .cloud
                .range(Dot::new(actor, 0)..=Dot::new(actor, u64::MAX))
                .all(|d| d.counter >= floor)
    }

    /// Checks the normal form described on the type.
    pub fn invariants(&self) -> Result<(), InvariantError> {
        for (actor, &counter) in &self.clock {
            InvariantError::check(counter > 0, || format!("zero clock entry for {actor:?}"))?;
        }
        for dot in &self.cloud {
            let floor = self.clock_of(dot.actor).saturating_add(2);
            InvariantError::check(dot.counter >= floor && dot.counter > 0, || {
                format!("cloud dot {dot:?} should have been folded into the clock")
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dot(a: u128, c: u64) -> Dot {
        Dot::new(NodeId::from_u128(a), c)
    }

    #[test]
    fn out_of_order_dots_fold_into_the_clock() {
        let mut ctx = CausalContext::new();
        ctx.insert(dot(1, 3));
        ctx.insert(dot(1, 2));
        assert!(!ctx.contains(&dot(1, 1)));
        ctx.insert(dot(1, 1));
        assert_eq!(ctx.clock_of(NodeId::from_u128(1)), 3);
        assert_eq!(ctx, {
            let mut c = CausalContext::new();
            for n in 1..=3 {
                c.insert(dot(1, n));
            }
            c
        });
    }

    #[test]
    fn removing_an_actor_drops_clock_and_cloud() {
        let mut ctx = CausalContext::new();
        ctx.insert(dot(1, 1));
        ctx.insert(dot(1, 5));
        ctx.insert(dot(2, 1));
        ctx.remove_actor(NodeId::from_u128(1));
        assert_eq!(ctx.actors(), 1);
        assert!(!ctx.contains(&dot(1, 5)));
        ctx.invariants().unwrap();
    }
}
