//! The world's event queue: entries ordered by time, then by push order, earliest first.
//!
//! A radix heap: the world's clock never goes back, so every entry later than the run due
//! next is bucketed by the highest bit in which its time differs from `last`, the earliest
//! time of that run. A pop takes the run's next entry; when the run is done, the next pop
//! finds the earliest entries in the lowest occupied bucket: a few become the next run,
//! sorted, and of more, those of the earliest time do while the others spread over the
//! buckets below (each bucket's earliest time is kept, for a peek between runs). An entry
//! moves down at most once per bit of its delay, in a linear pass: a pop and a push cost
//! about 100 and 45 instructions at N=100 (a run's sort or spread counted in the pops), where
//! the 4-ary heap before it took 340 and 50 walking a path of comparisons from root to leaf.
//!
//! Every bucket stays in push order (entries are appended as pushed, and a bucket is only
//! spread while the ones below it are empty), sorts are stable, and an entry goes into the
//! due run after every entry of its time, so the entries of one time come out in push order:
//! the same order as any correct priority queue's by (time, a number counting pushes), with
//! no such number kept.
//!
//! An entry earlier than the due run's end is inserted into the run, in order, wherever it
//! falls, even before `last` (the world never pushes one before its last pop). A run is
//! formed by the pop that needs it, and a push into an empty queue is bucketed against the
//! last run like any other: a run formed early, or of the first entry pushed into an empty
//! queue, would begin after what the world pushes next, which would all go in before it
//! (at N=100, the first wake-up pushed ahead of the mass join's datagrams made the run a
//! sorted array of thousands, each datagram an insert into it).

/// A queue entry: the event itself waits in the world's slab at `slot`, so the queue moves 16
/// bytes, not a whole event, on every push and pop.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Queued {
    pub at: u64,
    pub slot: usize,
}

/// A lowest bucket of at most this many entries becomes due at once, sorted (at `one 100
/// 40`, 16, 32, 64 and 128 cost 330.0, 329.3, 328.9 and 329.4 M instructions in all: sorting
/// more saves spreads, but makes longer runs to insert into).
const SORTED_AT_ONCE: usize = 64;

/// Entries by time, then push order.
#[derive(Debug)]
pub(crate) struct EventQueue {
    /// The earliest time in `due` when it was filled; the others are bucketed against it.
    last: u64,
    /// The entries due next, from `head` on, by time then push order: every entry in a
    /// bucket is later than all of them.
    due: Vec<Queued>,
    head: usize,
    /// The latest time in `due` (or `last`): a push not later goes into `due`.
    due_until: u64,
    /// `buckets[b]`: entries later than `due_until` whose time first differs from `last` at
    /// bit `b`.
    buckets: [Vec<Queued>; 64],
    /// Bit `b` set: `buckets[b]` holds entries.
    occupied: u64,
    /// `earliest[b]`: the earliest time in `buckets[b]` while it holds entries.
    earliest: [u64; 64],
}

impl Default for EventQueue {
    fn default() -> Self {
        Self {
            last: 0,
            due: Vec::new(),
            head: 0,
            due_until: 0,
            buckets: std::array::from_fn(|_| Vec::new()),
            occupied: 0,
            earliest: [u64::MAX; 64],
        }
    }
}

impl EventQueue {
    /// The earliest entry's time, if any.
    pub fn peek_at(&self) -> Option<u64> {
        match self.due.get(self.head) {
            Some(next) => Some(next.at),
            None if self.occupied == 0 => None,
            None => Some(self.earliest[self.occupied.trailing_zeros() as usize]),
        }
    }

    /// Takes the earliest entry out.
    pub fn pop(&mut self) -> Option<Queued> {
        if self.head == self.due.len() {
            self.due.clear();
            self.head = 0;
            self.spread_lowest();
        }
        let earliest = *self.due.get(self.head)?;
        self.head += 1;
        Some(earliest)
    }

    /// Adds an entry.
    #[inline]
    pub fn push(&mut self, entry: Queued) {
        if entry.at > self.due_until {
            self.bucket(entry);
        } else if entry.at == self.due_until {
            self.due.push(entry);
        } else {
            self.insert_due(entry);
        }
    }

    /// Files an entry later than `due_until` in the bucket of the highest bit where its time
    /// differs from `last`.
    #[inline]
    fn bucket(&mut self, entry: Queued) {
        let bucket = 63 - (entry.at ^ self.last).leading_zeros() as usize;
        self.buckets[bucket].push(entry);
        self.occupied |= 1 << bucket;
        self.earliest[bucket] = self.earliest[bucket].min(entry.at);
    }

    /// Inserts an entry within `due`'s span (or before it) after every entry of its time or
    /// earlier (pushed before it). Out of line: the other paths are the frequent ones, and
    /// short.
    #[inline(never)]
    fn insert_due(&mut self, entry: Queued) {
        let at = self.head + self.due[self.head..].partition_point(|q| q.at <= entry.at);
        self.due.insert(at, entry);
    }

    /// Moves on to the lowest occupied bucket, whose entries are the earliest. A few become
    /// due at once, sorted by time (stably: the bucket is in push order); of more, those
    /// of the earliest time become due and the others go to lower buckets (they differ from
    /// the new `last` below the bucket's bit; the higher buckets' entries still differ from
    /// it where they did). Sorting a few saves moving each down bucket by bucket. Not inlined:
    /// one pop in five comes here, and the others need not save what it uses.
    #[inline(never)]
    fn spread_lowest(&mut self) {
        if self.occupied == 0 {
            return;
        }
        let bucket = self.occupied.trailing_zeros() as usize;
        self.occupied &= !(1 << bucket);
        self.last = std::mem::replace(&mut self.earliest[bucket], u64::MAX);
        let mut spread = std::mem::take(&mut self.buckets[bucket]);
        if spread.len() <= SORTED_AT_ONCE {
            spread.sort_by_key(|q| q.at);
            self.due_until = spread.last().map_or(self.last, |q| q.at);
            self.due.append(&mut spread);
        } else {
            self.due_until = self.last;
            // `due` is empty: the earliest time's entries are due, in order, the rest later.
            for entry in spread.drain(..) {
                if entry.at == self.last {
                    self.due.push(entry);
                } else {
                    self.bucket(entry);
                }
            }
        }
        // Kept for its capacity: the bucket fills again.
        self.buckets[bucket] = spread;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;

    /// Runs `steps` random pushes and pops against `std`'s binary heap: every peek and pop
    /// agree. `spread(x, now)` picks a push's time from a random `x` and the last popped time.
    fn agrees_with_a_binary_heap(seed: u64, steps: u64, spread: impl Fn(u64, u64) -> u64) {
        let mut queue = EventQueue::default();
        let mut reference = BinaryHeap::new();
        let mut x = seed;
        let mut now = 0;
        for seq in 0..steps {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            if x >> 62 == 0 {
                let popped = queue.pop().map(|q| (q.at, q.slot));
                assert_eq!(popped, reference.pop().map(|Reverse(e)| e));
                now = popped.map_or(now, |(at, _)| at);
            } else {
                let at = spread(x, now);
                // The reference orders by push count: the slot says which push it was.
                let slot = seq as usize;
                queue.push(Queued { at, slot });
                reference.push(Reverse((at, slot)));
            }
            assert_eq!(
                queue.peek_at(),
                reference.peek().map(|Reverse((at, _))| *at)
            );
        }
        while let Some(Reverse(expected)) = reference.pop() {
            assert_eq!(queue.pop().map(|q| (q.at, q.slot)), Some(expected));
        }
        assert!(queue.pop().is_none());
        assert!(queue.peek_at().is_none());
    }

    /// Times anywhere, earlier than the last pop too: the late entries' path.
    #[test]
    fn pops_in_time_then_sequence_order() {
        agrees_with_a_binary_heap(11, 50_000, |x, _| (x >> 40) % 500);
    }

    /// The world's pattern: never before the last pop, many at the same time, delays from
    /// none to hours (every bucket).
    #[test]
    fn pops_in_order_when_time_only_moves_forward() {
        for seed in [1, 2, 3] {
            agrees_with_a_binary_heap(seed, 50_000, |x, now| {
                let delay = match x % 4 {
                    0 => 0,
                    1 => (x >> 20) % 8,
                    _ => (x >> 8) >> ((x >> 2) % 56),
                };
                now.saturating_add(delay)
            });
        }
    }
}
