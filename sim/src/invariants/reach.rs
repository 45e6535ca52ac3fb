//! What an observer could learn about a node, given the partition layouts the run went through.
//!
//! An observer's *side* is every node with a directed path of open links to it: anything those
//! nodes conclude can reach it by gossip. A node is *reachable* from the side when every link
//! between it and every live member of the side is open in both directions. Under a clean
//! partition, a node on the observer's own side stays reachable; under a one-way partition
//! anything touching the cut is not.
//!
//! The same definition judges both directions of the failure detector: a declaration of a node
//! reachable throughout is a false positive ([`super::membership::NoFalsePositives`]), and a
//! crash of a node out of reach is indistinguishable, for that observer, from the cut, so its
//! detection clock starts when the node is in reach again ([`super::membership::Detection`]).

use std::collections::BTreeMap;

use crate::network::BlockRule;
use crate::world::World;

/// Sides computed so far, by (layout index, observer): the topology history only grows, so a
/// layout's sides never change.
#[derive(Default)]
pub(crate) struct Sides {
    sides: BTreeMap<(usize, usize), Vec<bool>>,
}

impl Sides {
    /// Whether `target` was reachable from `observer`'s side under every layout in force since
    /// `from_us`.
    pub(crate) fn reachable_throughout(
        &mut self,
        world: &World,
        observer: usize,
        target: usize,
        from_us: u64,
    ) -> bool {
        let first = layout_at(world, from_us);
        (first..world.topology_history().len())
            .all(|layout| self.reachable(world, layout, observer, target))
    }

    /// Since when `target` has been reachable from `observer`'s side, counting from `from_us`:
    /// `from_us` if it was throughout, else when the last layout that cut it off ended; `None`
    /// while the layout in force cuts it off.
    pub(crate) fn reachable_since(
        &mut self,
        world: &World,
        observer: usize,
        target: usize,
        from_us: u64,
    ) -> Option<u64> {
        let history = world.topology_history();
        let first = layout_at(world, from_us);
        let last_cut = (first..history.len())
            .rev()
            .find(|&layout| !self.reachable(world, layout, observer, target));
        match last_cut {
            None => Some(from_us),
            Some(layout) => history.get(layout + 1).map(|(start, _)| *start),
        }
    }

    fn reachable(&mut self, world: &World, layout: usize, observer: usize, target: usize) -> bool {
        let rules = &world.topology_history()[layout].1;
        if rules.is_empty() {
            return true;
        }
        let side = self
            .sides
            .entry((layout, observer))
            .or_insert_with(|| side_of(world, rules, observer));
        let blocked = |a: usize, b: usize| rules.iter().any(|r| r.blocks(a, b));
        (0..side.len())
            .filter(|&m| side[m] && m != target && world.node(m).is_up())
            .all(|m| !blocked(m, target) && !blocked(target, m))
    }
}

/// The index of the layout in force at `at_us`.
fn layout_at(world: &World, at_us: u64) -> usize {
    world
        .topology_history()
        .iter()
        .rposition(|(start, _)| *start <= at_us)
        .unwrap_or(0)
}

/// Every slot with a directed path of open links to `observer` (itself included).
fn side_of(world: &World, rules: &[BlockRule], observer: usize) -> Vec<bool> {
    let n = world.nodes().len();
    let blocked = |a: usize, b: usize| rules.iter().any(|r| r.blocks(a, b));
    let mut side = vec![false; n];
    side[observer] = true;
    let mut frontier = vec![observer];
    while let Some(reached) = frontier.pop() {
        for (m, in_side) in side.iter_mut().enumerate() {
            if !*in_side && !blocked(m, reached) {
                *in_side = true;
                frontier.push(m);
            }
        }
    }
    side
}
