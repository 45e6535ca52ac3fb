//! The directory's entries in order, in chunks that copies share.
//!
//! The runtime publishes the directory behind an `Arc` and brings it up to date after each
//! agent change by copy-on-write. With one flat vector that copy, and the drop of the copy it
//! replaces, touched every entry: spawning the ten-thousandth agent cost ten thousand pointer
//! copies and as many atomic decrements. Here a copy shares every chunk, and a change copies
//! only the chunk it lands in (at most [`CHUNK_MAX`] pointers).

use std::sync::Arc;

use super::{order, AgentEntry};

/// Most entries in one chunk; a chunk that grows past it is split in two.
#[cfg(not(test))]
const CHUNK_MAX: usize = 128;
/// Small in tests, so a handful of entries exercises splits and emptied chunks.
#[cfg(test)]
const CHUNK_MAX: usize = 4;

type Chunk = Arc<Vec<Arc<AgentEntry>>>;

/// Entries sorted by [`order`], no two with the same order (but for a directory built with
/// the fault switch that shows dead lives, which is never changed in place); no chunk is empty.
#[derive(Clone, Debug, Default)]
pub(super) struct Chunks {
    chunks: Vec<Chunk>,
    len: usize,
}

impl Chunks {
    /// `entries`, already sorted by [`order`] without repeats.
    pub fn from_sorted(entries: Vec<Arc<AgentEntry>>) -> Self {
        let len = entries.len();
        let chunks = entries
            .chunks(CHUNK_MAX / 2 + 1)
            .map(|chunk| Arc::new(chunk.to_vec()))
            .collect();
        Self { chunks, len }
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every entry, in order.
    pub fn iter(&self) -> Iter<'_> {
        Iter {
            chunks: self.chunks.iter(),
            current: [].iter(),
            remaining: self.len,
        }
    }

    /// Entries from the first whose name is not below `name`, in order.
    pub fn starting_at_name<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a Arc<AgentEntry>> {
        let at = self
            .chunks
            .partition_point(|chunk| last(chunk).name.as_str() < name);
        let skip = self.chunks.get(at).map_or(0, |chunk| {
            chunk.partition_point(|entry| entry.name.as_str() < name)
        });
        self.chunks[at..].iter().flat_map(|c| c.iter()).skip(skip)
    }

    /// Puts `entry` in its place, replacing and returning the entry of the same order.
    pub fn upsert(&mut self, entry: Arc<AgentEntry>) -> Option<Arc<AgentEntry>> {
        if self.chunks.is_empty() {
            self.chunks.push(Arc::new(vec![entry]));
            self.len = 1;
            return None;
        }
        let key = order(&entry);
        let at = self
            .chunks
            .partition_point(|chunk| order(last(chunk)) < key)
            .min(self.chunks.len() - 1);
        let chunk = Arc::make_mut(&mut self.chunks[at]);
        match chunk.binary_search_by(|e| order(e).cmp(&key)) {
            Ok(i) => return Some(std::mem::replace(&mut chunk[i], entry)),
            Err(i) => chunk.insert(i, entry),
        }
        self.len += 1;
        if chunk.len() > CHUNK_MAX {
            let upper = chunk.split_off(chunk.len() / 2);
            self.chunks.insert(at + 1, Arc::new(upper));
        }
        None
    }

    /// Takes out the entry of order `key`, if there is one.
    pub fn remove(&mut self, key: (&str, bool, crate::NodeId)) -> Option<Arc<AgentEntry>> {
        let at = self
            .chunks
            .partition_point(|chunk| order(last(chunk)) < key);
        let i = self
            .chunks
            .get(at)?
            .binary_search_by(|e| order(e).cmp(&key))
            .ok()?;
        let chunk = Arc::make_mut(&mut self.chunks[at]);
        let gone = chunk.remove(i);
        if chunk.is_empty() {
            self.chunks.remove(at);
        }
        self.len -= 1;
        Some(gone)
    }

    /// Keeps the entries `keep` says yes to (a walk of every entry: for a member's change).
    pub fn retain(&mut self, keep: impl Fn(&AgentEntry) -> bool) {
        if self.iter().all(|entry| keep(entry)) {
            return;
        }
        let kept = self.iter().filter(|entry| keep(entry)).cloned().collect();
        *self = Self::from_sorted(kept);
    }

    /// Checks the rules in the type's docs.
    #[cfg(test)]
    pub fn check(&self) -> Result<(), String> {
        if self.chunks.iter().any(|chunk| chunk.is_empty()) {
            return Err("an empty chunk".into());
        }
        if self.chunks.iter().any(|chunk| chunk.len() > CHUNK_MAX) {
            return Err("a chunk past CHUNK_MAX".into());
        }
        let entries: Vec<_> = self.chunks.iter().flat_map(|c| c.iter()).collect();
        if entries.len() != self.len {
            return Err(format!("len {} for {} entries", self.len, entries.len()));
        }
        if entries.windows(2).any(|w| order(w[0]) >= order(w[1])) {
            return Err("entries out of order".into());
        }
        Ok(())
    }
}

fn last(chunk: &Chunk) -> &AgentEntry {
    chunk.last().expect("no chunk is empty")
}

/// Every entry in order, knowing how many are left.
pub(super) struct Iter<'a> {
    chunks: std::slice::Iter<'a, Chunk>,
    current: std::slice::Iter<'a, Arc<AgentEntry>>,
    remaining: usize,
}

impl<'a> Iterator for Iter<'a> {
    type Item = &'a Arc<AgentEntry>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(entry) = self.current.next() {
                self.remaining -= 1;
                return Some(entry);
            }
            self.current = self.chunks.next()?.iter();
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl ExactSizeIterator for Iter<'_> {}
