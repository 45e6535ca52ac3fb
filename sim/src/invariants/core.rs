//! Checks on each core and on what it sends.

use super::{Check, Invariant};
use crate::world::World;

/// Runs the core's own invariants after every step it takes. Membership's check is
/// incremental: each core is checked in full on its first step, then only for the members that
/// changed since the step before (`Core::invariants_since`), so a step costs what it changed,
/// not O(N).
#[derive(Default)]
pub struct CoreInvariants {
    /// Per slot: the life last checked and membership's change cursor after that check.
    checked: Vec<Option<(u64, u64)>>,
}

impl Invariant for CoreInvariants {
    fn name(&self) -> &'static str {
        "core-invariants"
    }

    fn after_step(&mut self, world: &World, slot: usize) -> Check {
        let node = world.node(slot);
        let Some(core) = node.core() else {
            return Ok(());
        };
        if self.checked.len() <= slot {
            self.checked.resize(slot + 1, None);
        }
        let result = match self.checked[slot] {
            Some((life, cursor)) if life == node.life() => core.invariants_since(cursor),
            _ => core.invariants(),
        };
        self.checked[slot] = Some((node.life(), core.membership().changes()));
        result.map_err(|e| format!("n{slot}: {e}"))
    }
}

/// No core sends a message the transport would refuse for its size.
pub struct TransportLimits;

impl Invariant for TransportLimits {
    fn name(&self) -> &'static str {
        "transport-limits"
    }

    fn after_step(&mut self, world: &World, slot: usize) -> Check {
        let oversized = world.node(slot).traffic().oversized;
        if oversized > 0 {
            return Err(format!(
                "n{slot} sent {oversized} message(s) larger than its channel's frame limit"
            ));
        }
        Ok(())
    }
}
