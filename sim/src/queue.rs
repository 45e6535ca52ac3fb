//! The world's event queue: entries ordered by (time, sequence number), earliest first.
//!
//! A 4-ary min-heap instead of `std`'s binary one: while a large cluster forms the queue holds
//! hundreds of thousands of entries, and each pop walks the heap from root to leaf. Four
//! children a node halve the depth, and the four sit next to each other in memory, so a pop
//! takes about half the cache misses. Keys are unique (the sequence number grows on every
//! push), so any correct heap pops the same entries in the same order.

/// A queue entry: the event itself waits in the world's slab at `slot`, so the heap moves 24
/// bytes, not a whole event, on every push and pop.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Queued {
    pub at: u64,
    pub seq: u64,
    pub slot: usize,
}

impl Queued {
    /// (time, sequence number) as one integer: compared in two instructions and no branch, so
    /// picking the least of four children does not stall on mispredictions.
    fn key(&self) -> u128 {
        u128::from(self.at) << 64 | u128::from(self.seq)
    }
}

/// Children per heap node.
const ARITY: usize = 4;

/// Entries by (time, sequence number).
#[derive(Debug, Default)]
pub(crate) struct EventQueue {
    heap: Vec<Queued>,
}

impl EventQueue {
    /// The earliest entry, if any.
    pub fn peek(&self) -> Option<&Queued> {
        self.heap.first()
    }

    /// Adds an entry.
    pub fn push(&mut self, entry: Queued) {
        self.heap.push(entry);
        let mut hole = self.heap.len() - 1;
        let key = entry.key();
        while hole > 0 {
            let parent = (hole - 1) / ARITY;
            if self.heap[parent].key() < key {
                break;
            }
            self.heap[hole] = self.heap[parent];
            hole = parent;
        }
        self.heap[hole] = entry;
    }

    /// Takes the earliest entry out.
    pub fn pop(&mut self) -> Option<Queued> {
        let last = self.heap.pop()?;
        let Some(&earliest) = self.heap.first() else {
            return Some(last);
        };
        // The last entry fills the root's hole and sinks below every smaller child.
        let len = self.heap.len();
        let last_key = last.key();
        let mut hole = 0;
        loop {
            let first = hole * ARITY + 1;
            if first >= len {
                break;
            }
            let (mut least, mut least_key) = (first, self.heap[first].key());
            for child in first + 1..(first + ARITY).min(len) {
                let key = self.heap[child].key();
                if key < least_key {
                    (least, least_key) = (child, key);
                }
            }
            if least_key > last_key {
                break;
            }
            self.heap[hole] = self.heap[least];
            hole = least;
        }
        self.heap[hole] = last;
        Some(earliest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;

    /// Any mix of pushes and pops comes out as a sorted binary heap gives it.
    #[test]
    fn pops_in_time_then_sequence_order() {
        let mut queue = EventQueue::default();
        let mut reference = BinaryHeap::new();
        let mut x: u64 = 11;
        for seq in 0..50_000u64 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            if x >> 62 == 0 {
                let popped = queue.pop().map(|q| (q.at, q.seq, q.slot));
                assert_eq!(popped, reference.pop().map(|Reverse(e)| e));
            } else {
                let at = (x >> 40) % 500;
                let slot = (x % 1000) as usize;
                queue.push(Queued { at, seq, slot });
                reference.push(Reverse((at, seq, slot)));
            }
            assert_eq!(
                queue.peek().map(|q| (q.at, q.seq, q.slot)),
                reference.peek().map(|Reverse(e)| *e)
            );
        }
        while let Some(Reverse(expected)) = reference.pop() {
            assert_eq!(queue.pop().map(|q| (q.at, q.seq, q.slot)), Some(expected));
        }
        assert!(queue.pop().is_none());
    }
}
