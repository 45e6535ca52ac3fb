//! What a load returns: the node's durable state, and a report of anything that had to be
//! dropped to get it.

use std::collections::BTreeMap;
use std::fmt;

/// How many dropped items a report describes one by one; beyond that it only counts them.
pub const DROPPED_DETAILS_MAX: usize = 32;

/// A node's durable state as it was last written, every record checked. Ordered maps, so
/// iterating it is deterministic.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoredState {
    /// Node-level metadata blobs by name (identity, origin, last HLC).
    pub node: BTreeMap<String, Vec<u8>>,
    /// Keyspaces by name.
    pub keyspaces: BTreeMap<String, StoredKeyspace>,
}

/// One keyspace's durable state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoredKeyspace {
    /// Metadata blobs by name ("seen" bookkeeping, horizon, epoch).
    pub meta: BTreeMap<String, Vec<u8>>,
    /// Encoded entries by key.
    pub entries: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl StoredState {
    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.node.is_empty() && self.keyspaces.is_empty()
    }

    /// Number of entries across keyspaces.
    pub fn entry_count(&self) -> usize {
        self.keyspaces.values().map(|k| k.entries.len()).sum()
    }
}

/// What a load found, including what it had to leave out. A report with nothing dropped is
/// [`clean`](Self::is_clean); otherwise the node should log it and let anti-entropy refill what
/// was lost from its peers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Records loaded intact.
    pub records: usize,
    /// Records that failed their checksum or could not be parsed, and were left out.
    pub dropped_records: usize,
    /// Bytes of a torn or damaged log tail that were cut off (writes not on disk as a whole).
    pub dropped_tail_bytes: usize,
    /// Descriptions of what was dropped and why (at most [`DROPPED_DETAILS_MAX`]).
    pub details: Vec<String>,
    /// What was loaded may not be what any prefix of the batches wrote: records went missing
    /// from the middle (a damaged record, an unreadable table, a lost journal), so bookkeeping
    /// stored beside them may claim writes whose entries are gone. A torn tail alone keeps
    /// a prefix (batches are atomic), and so does an empty store.
    pub partial: bool,
}

impl LoadReport {
    /// Whether everything on disk was loaded.
    pub fn is_clean(&self) -> bool {
        self.dropped_records == 0 && self.dropped_tail_bytes == 0 && self.details.is_empty()
    }

    /// Notes a record left out.
    pub(crate) fn drop_record(&mut self, what: String, reason: &str) {
        self.dropped_records += 1;
        self.partial = true;
        self.note(format!("dropped record {what}: {reason}"));
    }

    /// Notes a torn or damaged tail cut off.
    pub(crate) fn drop_tail(&mut self, bytes: usize, reason: String) {
        self.dropped_tail_bytes += bytes;
        self.note(reason);
    }

    /// Notes a recovery step that lost records from the middle of what was written.
    pub fn note_loss(&mut self, detail: String) {
        self.partial = true;
        self.note(detail);
    }

    /// Notes something done to recover (a file moved aside).
    pub fn note(&mut self, detail: String) {
        if self.details.len() < DROPPED_DETAILS_MAX {
            self.details.push(detail);
        }
    }
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} records loaded", self.records)?;
        if self.is_clean() {
            return Ok(());
        }
        write!(
            f,
            "; dropped {} damaged records and {} bytes of log tail",
            self.dropped_records, self.dropped_tail_bytes
        )?;
        for detail in &self.details {
            write!(f, "; {detail}")?;
        }
        Ok(())
    }
}

/// The state and its report.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Loaded {
    /// What was stored, intact.
    pub state: StoredState,
    /// What had to be dropped.
    pub report: LoadReport,
}
