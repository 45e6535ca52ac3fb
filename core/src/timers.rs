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
    // (due, sequence) orders equal due times by arming order, so a run is reproducible. The
    // heap holds where each timer waits in `slots`, not the timer: a membership timer is about
    // a hundred bytes, and a pop moved one at every level of the heap.
    heap: BinaryHeap<Reverse<(Instant, u64, u32)>>,
    slots: Vec<Option<T>>,
    free: Vec<u32>,
    next_sequence: u64,
}

impl<T> Default for Timers<T> {
    fn default() -> Self {
        Self {
            heap: BinaryHeap::new(),
            slots: Vec::new(),
            free: Vec::new(),
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
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize] = Some(timer);
                slot
            }
            None => {
                // Below PENDING_MAX (2^20) slots, so the index fits.
                self.slots.push(Some(timer));
                (self.slots.len() - 1) as u32
            }
        };
        self.next_sequence += 1;
        self.heap.push(Reverse((at, self.next_sequence, slot)));
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
                let Reverse((at, _, slot)) = self.heap.pop()?;
                self.free.push(slot);
                // Every slot in the heap holds its timer: armed with it, emptied only here.
                self.slots
                    .get_mut(slot as usize)?
                    .take()
                    .map(|timer| (at, timer))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Timers fire by due time, then in arming order, only once due and armed by the mark,
    /// and slots freed by firing are reused without mixing timers up.
    #[test]
    fn timers_fire_by_due_time_then_arming_order() {
        let at = |ms: u64| Instant::ZERO + std::time::Duration::from_millis(ms);
        let mut timers = Timers::default();
        let mut reference = Vec::new();
        let mut x: u64 = 5;
        for round in 0..200u64 {
            for _ in 0..(round % 7) {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let due = at(round + (x >> 60));
                let label = (round, x);
                assert!(timers.arm(due, label));
                reference.push((due, timers.armed(), label));
            }
            let mark = timers.armed();
            if round % 5 == 0 {
                // Armed after the mark: not fired by this call even though due.
                assert!(timers.arm(at(0), (round, 0)));
                reference.push((at(0), timers.armed(), (round, 0)));
            }
            reference.sort();
            let now = at(round);
            // The earliest first, up to the first not due yet or armed after the mark.
            let expected: Vec<_> = reference
                .iter()
                .take_while(|(due, sequence, _)| *due <= now && *sequence <= mark)
                .copied()
                .collect();
            let fired: Vec<_> = std::iter::from_fn(|| timers.pop_due(now, mark)).collect();
            let wanted: Vec<_> = expected
                .iter()
                .map(|(due, _, label)| (*due, *label))
                .collect();
            assert_eq!(fired, wanted, "round {round}");
            reference.retain(|e| !expected.contains(e));
            assert_eq!(timers.next_due(), reference.first().map(|(due, _, _)| *due));
        }
    }
}
