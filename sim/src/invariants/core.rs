//! Checks on each core and on what it sends.

use super::{Check, Invariant};
use crate::world::World;

/// Runs the core's own invariants after every step it takes. Membership's check is
/// incremental: each core is checked in full on its first step, then only for the members that
/// changed since the step before (`Core::invariants_since`), so a step costs what it changed,
/// not O(N). The other machines are checked again only when something may have changed them
/// since a check that passed (`Core::touched`): a broken one is caught at the step that broke
/// it, as when every step checked them all.
#[derive(Default)]
pub struct CoreInvariants {
    checked: Vec<Option<Checked>>,
}

/// What one slot's last check saw.
#[derive(Clone, Copy)]
struct Checked {
    life: u64,
    /// Membership's change cursor.
    cursor: u64,
    /// `Core::touched`, if the check passed.
    passed: Option<u64>,
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
            Some(last) if last.life == node.life() => {
                core.invariants_since(last.cursor, last.passed)
            }
            _ => core.invariants(),
        };
        self.checked[slot] = Some(Checked {
            life: node.life(),
            cursor: core.membership().changes(),
            passed: result.is_ok().then(|| core.touched()),
        });
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
