//! Observed-remove set, add-wins, with dots per (actor, counter).
//!
//! An element is present while it has a live dot. An add creates a fresh dot and also retires the
//! element's dots it observed, so an element holds only the dots of adds that were concurrent
//! with each other: memory per element does not grow with the number of actors that ever added
//! it. A remove retires exactly the dots it observed, so an add concurrent with a remove (whose
//! dot the remove could not have observed) survives: add wins.
//!
//! Ops carry the observed dots (unlike `crdts`' Orswot removes), so they are correct on their own:
//! the state after applying a set of ops, in any order with any duplicates, is "every added dot
//! that no op observed", and the causal context remembers retired dots so they never come back.

use std::collections::{BTreeMap, BTreeSet};

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::context::{CausalContext, Dot};
use crate::encoding::{Canonical, InvariantError};
use crate::join::{join, Joined};
use crate::NodeId;

/// An op on an [`OrSet`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OrSetOp<T> {
    /// Add `elem` with the fresh `dot`, retiring the `observed` dots of the same element.
    Add {
        /// The element.
        elem: T,
        /// The new dot for this add.
        dot: Dot,
        /// The element's dots the adder had seen; they are replaced by `dot`.
        observed: BTreeSet<Dot>,
    },
    /// Remove `elem` by retiring the dots the remover had seen.
    Remove {
        /// The element.
        elem: T,
        /// The element's dots the remover had seen.
        observed: BTreeSet<Dot>,
    },
}

/// An add-wins observed-remove set. See the module docs.
///
/// Each element's live dots are a sorted `Vec` rather than a set: almost always one dot, and a
/// one-element `Vec` costs 24 bytes of heap where a `BTreeSet` node costs hundreds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrSet<T: Ord> {
    entries: BTreeMap<T, Vec<Dot>>,
    context: CausalContext,
}

impl<T: Ord> Default for OrSet<T> {
    fn default() -> Self {
        OrSet {
            entries: BTreeMap::new(),
            context: CausalContext::new(),
        }
    }
}

impl<T: Ord + Clone> OrSet<T> {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `elem` as `actor` (this node's stable id), applies it, and returns the op to ship.
    pub fn add(&mut self, actor: NodeId, elem: T) -> OrSetOp<T> {
        let op = OrSetOp::Add {
            dot: self.context.next_dot(actor),
            observed: self.observed(&elem),
            elem,
        };
        self.apply(&op);
        op
    }

    /// Removes `elem`, applies it, and returns the op to ship, or `None` if it was not present
    /// (there is nothing observed to remove).
    pub fn remove(&mut self, elem: &T) -> Option<OrSetOp<T>> {
        if !self.entries.contains_key(elem) {
            return None;
        }
        let observed = self.observed(elem);
        let op = OrSetOp::Remove {
            elem: elem.clone(),
            observed,
        };
        self.apply(&op);
        Some(op)
    }

    fn observed(&self, elem: &T) -> BTreeSet<Dot> {
        self.entries
            .get(elem)
            .map(|dots| dots.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Applies an op from any replica. Idempotent and commutative; returns whether the set of
    /// live dots changed.
    pub fn apply(&mut self, op: &OrSetOp<T>) -> bool {
        let (elem, observed) = match op {
            OrSetOp::Add { elem, observed, .. } | OrSetOp::Remove { elem, observed } => {
                (elem, observed)
            }
        };
        let mut changed = self.retire(elem, observed);
        if let OrSetOp::Add { elem, dot, .. } = op {
            if dot.counter > 0 && !self.context.contains(dot) {
                let dots = self.entries.entry(elem.clone()).or_default();
                if let Err(at) = dots.binary_search(dot) {
                    dots.insert(at, *dot);
                }
                self.context.insert(*dot);
                changed = true;
            }
        }
        // Only the touched element: a full check per op would make debug runs quadratic.
        debug_assert!(self.element_is_valid(elem), "{:?}", self.entries.get(elem));
        changed
    }

    fn element_is_valid(&self, elem: &T) -> bool {
        self.entries.get(elem).is_none_or(|dots| {
            !dots.is_empty()
                && dots.windows(2).all(|w| w[0] < w[1])
                && dots.iter().all(|d| self.context.contains(d))
        })
    }

    /// Drops `observed` from `elem`'s live dots and records them as seen.
    fn retire(&mut self, elem: &T, observed: &BTreeSet<Dot>) -> bool {
        let mut changed = false;
        if let Some(dots) = self.entries.get_mut(elem) {
            let before = dots.len();
            dots.retain(|d| !observed.contains(d));
            changed = dots.len() != before;
            if dots.is_empty() {
                self.entries.remove(elem);
            }
        }
        for dot in observed {
            self.context.insert(*dot);
        }
        changed
    }

    /// Merges a full state from another replica: a dot survives if both sides have it live, or
    /// one side has it live and the other has never seen it.
    pub fn merge(&mut self, other: &OrSet<T>) {
        let mine = std::mem::take(&mut self.entries);
        let (my_ctx, their_ctx) = (&self.context, &other.context);
        self.entries = join(mine, &other.entries, |joined| {
            let (elem, dots) = match joined {
                Joined::Left(elem, mine) => (elem, survivors(mine, &[], their_ctx)),
                Joined::Right(elem, theirs) => (elem.clone(), unseen(theirs, my_ctx)),
                Joined::Both(elem, mine, theirs) => {
                    let mut dots = survivors(mine, theirs, their_ctx);
                    // Disjoint from the survivors: those are all in our context.
                    dots.extend(unseen(theirs, my_ctx));
                    dots.sort_unstable();
                    (elem, dots)
                }
            };
            (!dots.is_empty()).then_some((elem, dots))
        });
        self.context.merge(&other.context);
        debug_assert!(self.invariants().is_ok(), "{:?}", self.invariants());
    }

    /// Epoch compaction: renames the live dots of `departed` to fresh dots of `into` and drops
    /// `departed` from the causal context, so a node that left for good costs nothing. Elements
    /// stay present. Read the safety rule in the crate docs ("Bounded memory") first.
    pub fn compact_actor(&mut self, departed: NodeId, into: NodeId) {
        if departed == into {
            return;
        }
        let first = self.context.next_dot(into).counter;
        let mut next = first;
        // Key order is the same on every replica, so every replica picks the same new dots.
        for dots in self.entries.values_mut() {
            let mut renamed = false;
            for dot in dots.iter_mut().filter(|d| d.actor == departed) {
                *dot = Dot::new(into, next);
                next = next.saturating_add(1);
                renamed = true;
            }
            if renamed {
                dots.sort_unstable();
            }
        }
        self.context.remove_actor(departed);
        for counter in first..next {
            self.context.insert(Dot::new(into, counter));
        }
        debug_assert!(self.invariants().is_ok(), "{:?}", self.invariants());
    }
}

impl<T: Ord> OrSet<T> {
    /// The live dots of `elem` (one per concurrent add that no op has removed), sorted.
    pub fn dots(&self, elem: &T) -> &[Dot] {
        self.entries.get(elem).map_or(&[], Vec::as_slice)
    }

    /// Whether `elem` is present.
    pub fn contains(&self, elem: &T) -> bool {
        self.entries.contains_key(elem)
    }

    /// Present elements, in order.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.entries.keys()
    }

    /// Number of present elements.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The causal context (every dot seen); its actor count is the per-set cost of writers.
    pub fn context(&self) -> &CausalContext {
        &self.context
    }

    /// Checks: no element without dots, every live dot valid and in the context, no dot live
    /// under two elements, and the context in normal form.
    pub fn invariants(&self) -> Result<(), InvariantError> {
        let mut seen = BTreeSet::new();
        for dots in self.entries.values() {
            InvariantError::check(!dots.is_empty(), || "element without dots".into())?;
            InvariantError::check(dots.windows(2).all(|w| w[0] < w[1]), || {
                "element dots not sorted and unique".into()
            })?;
            for dot in dots {
                InvariantError::check(dot.counter > 0 && self.context.contains(dot), || {
                    format!("live dot {dot:?} missing from the context")
                })?;
                InvariantError::check(seen.insert(*dot), || {
                    format!("dot {dot:?} live under two elements")
                })?;
            }
        }
        self.context.invariants()
    }
}

impl<T: Ord + Serialize + DeserializeOwned> Canonical for OrSet<T> {
    fn validate(&self) -> Result<(), InvariantError> {
        self.invariants()
    }
}

impl<T: Serialize + DeserializeOwned> Canonical for OrSetOp<T> {
    fn validate(&self) -> Result<(), InvariantError> {
        let (dot, observed) = match self {
            OrSetOp::Add { dot, observed, .. } => (Some(dot), observed),
            OrSetOp::Remove { observed, .. } => (None, observed),
        };
        InvariantError::check(observed.iter().all(|d| d.counter > 0), || {
            "observed dot with counter 0".into()
        })?;
        if let Some(dot) = dot {
            InvariantError::check(dot.counter > 0 && !observed.contains(dot), || {
                format!("add dot {dot:?} is zero or observes itself")
            })?;
        }
        Ok(())
    }
}

/// `mine` without the dots the other side has seen but no longer holds (it removed them).
fn survivors(mut mine: Vec<Dot>, theirs: &[Dot], their_ctx: &CausalContext) -> Vec<Dot> {
    mine.retain(|d| theirs.binary_search(d).is_ok() || !their_ctx.contains(d));
    mine
}

/// The other side's live dots we have never seen.
fn unseen(theirs: &[Dot], my_ctx: &CausalContext) -> Vec<Dot> {
    theirs
        .iter()
        .filter(|d| !my_ctx.contains(d))
        .copied()
        .collect()
}
