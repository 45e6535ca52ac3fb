//! The core's timers: a min-heap by due time. The core owns them, the quinn way: a driver asks
//! [`crate::Core::poll_timeout`] when to wake and calls [`crate::Core::handle_timeout`] then, so
//! the runtime and the simulator sleep on one deadline and keep no timer state of their own.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::time::Instant;

/// Most timers pending at once. The core arms a bounded number per member; this bound only
/// guards against a bug turning into unbounded memory.
const PENDING_MAX: usize = 1 << 20;

/// A node's pending timers of type `T`, earliest first. Timers due at the same instant fire in the
/// order they were armed, so a run is reproducible; at most 2^20 are pending, so a bug
/// that arms without end shows as refused timers rather than unbounded memory.
#[derive(Debug)]
pub struct Timers<T> {
    // (due, sequence) orders equal due times by arming order, so a run is reproducible.
    heap: BinaryHeap<Reverse<(Instant, u64, TimerSlot<T>)>>,
    next_sequence: u64,
}

#[derive(Debug)]
struct TimerSlot<T>(T);

impl<T> PartialEq for TimerSlot<T> {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl<T> Eq for TimerSlot<T> {}
impl<T> PartialOrd for TimerSlot<T> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for TimerSlot<T> {
    fn cmp(&self, _: &Self) -> std::cmp::Ordering {
        std::cmp::Ordering::Equal
    }
}

impl<T> Default for Timers<T> {
    fn default() -> Self {
        Self {
            heap: BinaryHeap::new(),
            next_sequence: 0,
        }
    }
}

impl<T> Timers<T> {
    /// Arms `timer` for `at`; returns false if the bound is reached.
    pub fn arm(&mut self, at: Instant, timer: T) -> bool {
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

    /// How many timers were armed so far: a mark for [`Self::pop_due`].
    pub fn armed(&self) -> u64 {
        self.next_sequence
    }

    /// The earliest timer if it is due at `now` and was armed by `mark` (an [`Self::armed`]
    /// taken earlier): timers armed while firing wait for the next call, so a machine that
    /// re-arms at `now` cannot keep one call going forever.
    pub fn pop_due(&mut self, now: Instant, mark: u64) -> Option<(Instant, T)> {
        match self.heap.peek() {
            Some(Reverse((at, sequence, _))) if *at <= now && *sequence <= mark => {
                self.heap.pop().map(|Reverse((at, _, slot))| (at, slot.0))
            }
            _ => None,
        }
    }
}
