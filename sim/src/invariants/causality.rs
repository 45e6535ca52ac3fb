//! `causal-order`: a write is never beaten by a write that causally precedes it.
//!
//! Checked on the writer, where causality is certain: every op a node had applied before it
//! writes happened before that write, so the write must win over all of them. For every write
//! the world made ([`crate::writes::WriteRecord`]):
//!
//! - **read your writes**: right after the write, the writer's own read of the key returns that
//!   write (for a delete, its tombstone), not something it had applied before;
//! - **the clock moved past every receive**: the write is stamped after the newest timestamp the
//!   writer held (tombstones included) — the hybrid logical clock advanced across every op and
//!   state the node received, whatever its own wall clock said.
//!
//! The first catches a writer whose clock runs behind a peer's and whose clock did not take the
//! peer's op into account, on the key that op wrote; the second catches the same clock fault on
//! any key. Both matter only where clocks disagree: run it with skewed and drifting clocks
//! (`skewed-writes`). Across nodes, concurrent writes are ordered by last-writer-wins and are
//! not this check's business.

use foundation_crdt::Timestamp;

use super::{Check, Invariant, Measurements};
use crate::world::World;
use crate::writes::WriteRecord;

/// Problems kept in one violation's message.
const PROBLEMS_SHOWN: usize = 4;

/// The `causal-order` invariant; see the module docs.
#[derive(Default)]
pub struct CausalOrder {
    /// Records of the world's write log checked so far.
    checked: usize,
}

impl CausalOrder {
    /// A fresh check.
    pub fn new() -> Self {
        Self::default()
    }

    fn check(&mut self, world: &World) -> Check {
        let records = world.writes();
        let problems: Vec<String> = records[self.checked..].iter().filter_map(problem).collect();
        self.checked = records.len();
        if problems.is_empty() {
            return Ok(());
        }
        let shown: Vec<&str> = problems
            .iter()
            .take(PROBLEMS_SHOWN)
            .map(String::as_str)
            .collect();
        Err(format!(
            "{} writes lose to writes their writer had already applied: {}",
            problems.len(),
            shown.join("; ")
        ))
    }
}

fn problem(w: &WriteRecord) -> Option<String> {
    let at = w.at_us as f64 / 1e6;
    let write = format!("n{}'s write w{} of {} at {at:.3}s", w.slot, w.id, w.key);
    if w.read_back != Some(w.ts) {
        let read = w.read_back.map_or_else(|| "nothing".into(), show);
        return Some(format!(
            "{write} (stamped {}) reads back {read}: an older write beat it",
            show(w.ts)
        ));
    }
    (w.ts <= w.newest_before).then(|| {
        format!(
            "{write} is stamped {}, not after {} that it had applied",
            show(w.ts),
            show(w.newest_before)
        )
    })
}

fn show(ts: Timestamp) -> String {
    format!(
        "{}.{:03}s+{}",
        ts.wall_ms / 1000,
        ts.wall_ms % 1000,
        ts.logical
    )
}

impl Invariant for CausalOrder {
    fn name(&self) -> &'static str {
        "causal-order"
    }

    fn on_tick(&mut self, world: &World) -> Check {
        self.check(world)
    }

    fn at_end(&mut self, world: &World) -> Check {
        self.check(world)
    }

    fn measure(&self, out: &mut Measurements) {
        out.causal_writes_checked += self.checked as u64;
    }
}
