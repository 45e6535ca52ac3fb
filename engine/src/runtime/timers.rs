//! The runtime's timer wheel: a min-heap of the core's timers by due time.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use foundation_core::effects::Timer;
use foundation_core::time::Instant;

/// Most timers pending at once. The core arms a bounded number per member; this bound only
/// guards against a bug turning into unbounded memory.
const PENDING_MAX: usize = 1 << 20;

#[derive(Debug, Default)]
pub(crate) struct Timers {
    // (due, sequence) orders equal due times by arming order, like the simulator.
    heap: BinaryHeap<Reverse<(Instant, u64, TimerSlot)>>,
    next_sequence: u64,
}

#[derive(Debug)]
struct TimerSlot(Timer);

impl PartialEq for TimerSlot {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for TimerSlot {}
impl PartialOrd for TimerSlot {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for TimerSlot {
    fn cmp(&self, _: &Self) -> std::cmp::Ordering {
        std::cmp::Ordering::Equal
    }
}

impl Timers {
    /// Arms `timer` for `at`; returns false if the bound is reached.
    pub fn arm(&mut self, at: Instant, timer: Timer) -> bool {
        if self.heap.len() >= PENDING_MAX {
            return false;
        }
        self.next_sequence += 1;
        self.heap
            .push(Reverse((at, self.next_sequence, TimerSlot(timer))));
        true
    }

    /// When the earliest timer is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _, _))| *at)
    }

    /// The earliest timer if it is due at `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<(Instant, Timer)> {
        match self.heap.peek() {
            Some(Reverse((at, _, _))) if *at <= now => {
                self.heap.pop().map(|Reverse((at, _, slot))| (at, slot.0))
            }
            _ => None,
        }
    }
}
