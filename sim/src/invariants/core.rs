//! Checks on each core and on what it sends.

use super::{Check, Invariant};
use crate::world::World;

/// Runs the core's own `invariants()` after every step it takes.
pub struct CoreInvariants;

impl Invariant for CoreInvariants {
    fn name(&self) -> &'static str {
        "core-invariants"
    }

    fn after_step(&mut self, world: &World, slot: usize) -> Check {
        match world.node(slot).core() {
            Some(core) => core.invariants().map_err(|e| format!("n{slot}: {e}")),
            None => Ok(()),
        }
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
