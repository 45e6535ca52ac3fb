//! The last changes of a variable as this node saw them, and its statistics.

use std::collections::VecDeque;

use foundation_agents::variable::VarValue;

use super::Life;
use crate::time::Instant;

/// Changes kept per variable: enough to see who moved it lately, bounded so a busy variable
/// costs the same memory as an idle one.
pub const HISTORY_MAX: usize = 32;

/// One change of a variable, as this node saw it.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    /// The version it made (for `lww` and counters, counted on this node).
    pub version: u64,
    /// The value.
    pub value: VarValue,
    /// The node life whose write it was.
    pub writer: Life,
    /// When this node saw it.
    pub at: Instant,
}

/// What happened to one variable on this node since it was declared here.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VarStatistics {
    /// Changes seen.
    pub changes: u64,
    /// Values or states for it that were refused (outside the type, or overdrawn).
    pub refused: u64,
    /// Units this node drew (counters).
    pub drawn: u64,
    /// Units this node added (counters).
    pub refilled: u64,
    /// Draws refused because this node held too few rights (counters).
    pub insufficient: u64,
    /// Units this node handed to lives that asked (counters).
    pub handed: u64,
}

/// The bounded history of one variable.
#[derive(Clone, Debug, Default)]
pub(crate) struct History {
    changes: VecDeque<Change>,
}

impl History {
    pub fn push(&mut self, change: Change) {
        if self.changes.len() == HISTORY_MAX {
            self.changes.pop_front();
        }
        self.changes.push_back(change);
    }

    /// Oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &Change> {
        self.changes.iter()
    }
}
