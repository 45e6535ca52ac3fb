//! What of a keyspace outlives the process, how changes become storage batches, and how a
//! keyspace is read back.
//!
//! A durable keyspace keeps, per key, its latest write (tombstones too, so a late older write
//! still loses after a restart), and as metadata: per tracked origin the contiguous seq its
//! state includes, its retired records and its GC horizon. The op log is not kept: a restarted
//! node answers a lagging peer with its full state until its log fills again. What a keyspace
//! changed while handling one input is collected as [`Dirty`] and written as one batch, so the
//! stored seen-sets never claim a write whose entry is not stored with them.
//!
//! The machine's persistence state ([`Persistence`]) numbers the batches and holds back what
//! must wait until they are durable: the acknowledgements of writes other nodes asked us to
//! hold. The driver reports durability with `persisted(upto)`; batches complete in order.

use std::collections::{BTreeMap, BTreeSet};

use crate::NodeAddr;
use foundation_crdt::{LwwEntry, Timestamp};

use super::keyspace::{Dirty, Keyspace};
use super::wire::{Origin, Seen, Value};
use crate::storage::{Batch, StoredKeyspace};

/// Metadata blob names of a keyspace.
const HORIZON: &str = "horizon";
const RETIRED: &str = "retired";
const SEEN_PREFIX: &str = "seen.";
/// Node metadata blob: the compaction epoch.
pub(super) const EPOCH: &str = "replication.epoch";

/// Adds what `keyspace` (named `name`) changed, as `dirty` says, to `batch`.
pub(super) fn write_changes(name: &str, keyspace: &Keyspace, dirty: &Dirty, batch: &mut Batch) {
    if dirty.all {
        return write_all(name, keyspace, batch);
    }
    for key in &dirty.keys {
        match keyspace.entry(key).map(postcard::to_stdvec) {
            Some(Ok(entry)) => batch.put_entry(name, key.as_bytes(), &entry),
            _ => batch.remove_entry(name, key.as_bytes()),
        };
    }
    for origin in &dirty.origins {
        let blob = seen_name(origin);
        match keyspace
            .contiguous(origin)
            .map(|seq| postcard::to_stdvec(&seq))
        {
            Some(Ok(seq)) => batch.put_keyspace_meta(name, &blob, &seq),
            _ => batch.remove_keyspace_meta(name, &blob),
        };
    }
    if dirty.retired {
        if let Ok(retired) = postcard::to_stdvec(&keyspace.retired()) {
            batch.put_keyspace_meta(name, RETIRED, &retired);
        }
    }
    if dirty.horizon {
        if let Ok(horizon) = postcard::to_stdvec(&keyspace.map().horizon()) {
            batch.put_keyspace_meta(name, HORIZON, &horizon);
        }
    }
}

/// Replaces whatever is stored of `keyspace` with all of it.
fn write_all(name: &str, keyspace: &Keyspace, batch: &mut Batch) {
    batch.clear_keyspace(name);
    let everything = Dirty {
        keys: keyspace.map().entries().map(|(k, _)| k.clone()).collect(),
        origins: keyspace.origins().copied().collect(),
        retired: true,
        horizon: true,
        all: false,
    };
    write_changes(name, keyspace, &everything, batch);
}

/// A keyspace as stored, with how many records did not decode (left out: anti-entropy refills
/// them from peers).
///
/// Which writes the keyspace includes is taken from storage only when every record of it is
/// there (`whole`, and nothing here fails to decode). Otherwise the seen-sets would claim
/// writes whose entries are gone, and a merge would take a peer's copy of such a write for one
/// we saw removed, and drop it — here and then everywhere. Without them the keyspace is a
/// replica that has seen nothing: its values are judged by what peers have seen, and peers
/// send it everything. Its GC horizon goes with them: it is only safe beside seen-sets that
/// tell an old write we applied and removed from one new here.
pub(super) fn read(stored: &StoredKeyspace, whole: bool) -> (Keyspace, usize) {
    let mut skipped = 0;
    let mut entries = Vec::with_capacity(stored.entries.len());
    for (key, bytes) in &stored.entries {
        let key = String::from_utf8(key.clone());
        match (key, postcard::from_bytes::<LwwEntry<Value>>(bytes)) {
            (Ok(key), Ok(entry)) if entry.value.as_ref().is_none_or(|v| v.seq > 0) => {
                entries.push((key, entry))
            }
            _ => skipped += 1,
        }
    }
    let mut seen = Seen::new();
    let mut retired = Seen::new();
    let mut horizon = Timestamp::ZERO;
    let mut meta_skipped = 0;
    for (name, bytes) in &stored.meta {
        let decoded = match name.as_str() {
            HORIZON => postcard::from_bytes(bytes).map(|h| horizon = h),
            RETIRED => postcard::from_bytes(bytes).map(|r| retired = r),
            _ => match parse_seen_name(name) {
                Some(origin) => postcard::from_bytes(bytes).map(|s| {
                    seen.insert(origin, s);
                }),
                None => Ok(()), // a blob of a later version: not ours to read
            },
        };
        meta_skipped += usize::from(decoded.is_err());
    }
    if !whole || skipped + meta_skipped > 0 {
        seen.clear();
        retired.clear();
        // Every op now counts as new here, and a new set older than the horizon takes an
        // absent key: a delete this store collected, arriving after it, would find nothing
        // to beat. Below a horizon of zero such a delete leaves its tombstone, whatever the
        // order; peers' states bring their horizons back.
        horizon = Timestamp::ZERO;
    }
    let keyspace = Keyspace::restore(entries, horizon, &seen, retired);
    (keyspace, skipped + meta_skipped)
}

fn seen_name(origin: &Origin) -> String {
    format!(
        "{SEEN_PREFIX}{:032x}.{}",
        origin.node.as_u128(),
        origin.generation
    )
}

fn parse_seen_name(name: &str) -> Option<Origin> {
    let (node, generation) = name.strip_prefix(SEEN_PREFIX)?.split_once('.')?;
    Some(Origin {
        node: foundation_crdt::NodeId::from_u128(u128::from_str_radix(node, 16).ok()?),
        generation: generation.parse().ok()?,
    })
}

/// An acknowledgement waiting for the batch that made its write durable here.
#[derive(Clone, Debug)]
pub(super) struct HeldAck {
    pub to: NodeAddr,
    pub keyspace: String,
    pub origin: Origin,
    pub seq: u64,
}

/// Batches handed out, what is durable, and what waits for it.
#[derive(Debug, Default)]
pub(super) struct Persistence {
    /// Whether anything persists (a node with storage).
    pub enabled: bool,
    /// Keyspaces that never persist: entries owned by live nodes.
    pub volatile: BTreeSet<String>,
    /// The number of the last batch handed out.
    pub last: u64,
    /// Every batch up to this one is durable.
    pub durable: u64,
    /// The epoch as last written.
    pub epoch_written: u32,
    /// Node-level records other machines keep here (placement's agreed membership), by
    /// name, as last given: written when given, and again in every rewrite.
    pub node_records: BTreeMap<String, Vec<u8>>,
    /// Records given since the last batch.
    pub node_records_due: BTreeSet<String>,
    /// A batch failed: what is stored may lack some of what later batches would claim, so
    /// nothing more is written until everything is written again in one batch.
    pub rewrite_wanted: bool,
    /// The rewrite may go in the next batch (once per anti-entropy round, so a disk that keeps
    /// failing is not handed the whole state after every input).
    pub rewrite_due: bool,
    /// Acknowledgements gathered while handling the current input.
    pub fresh: Vec<HeldAck>,
    /// Acknowledgements waiting for the rewrite's batch to be numbered.
    pub awaiting_rewrite: Vec<HeldAck>,
    /// Acknowledgements waiting, by the batch they wait for.
    pub held: BTreeMap<u64, Vec<HeldAck>>,
}

impl Persistence {
    /// Whether writes to `keyspace` persist.
    pub fn durable(&self, keyspace: &str) -> bool {
        self.enabled && !self.volatile.contains(keyspace)
    }

    /// Whether a flush with nothing dirty would do nothing: no rewrite due, no epoch or node
    /// record to write (`epoch` is the current one), no acks gathered by this input.
    pub fn idle(&self, epoch: u32) -> bool {
        let rewrite = self.rewrite_wanted && self.rewrite_due;
        let writes_epoch = self.enabled && !self.rewrite_wanted && epoch != self.epoch_written;
        !rewrite && !writes_epoch && self.fresh.is_empty() && self.node_records_due.is_empty()
    }

    /// Keeps the node-level record `name` (persistence enabled): written in the next batch.
    pub fn keep_node_record(&mut self, name: &str, value: Vec<u8>) {
        if self.enabled {
            self.node_records.insert(name.to_owned(), value);
            self.node_records_due.insert(name.to_owned());
        }
    }

    /// Adds the node records due to `batch` (all of them when it `rewrite`s everything, none
    /// while a rewrite is awaited: that rewrite will hold them).
    pub fn write_node_records(&mut self, write: bool, rewrite: bool, batch: &mut Batch) {
        let due = std::mem::take(&mut self.node_records_due);
        if !write {
            return;
        }
        for (name, value) in &self.node_records {
            if rewrite || due.contains(name) {
                batch.put_node_meta(name, value);
            }
        }
    }

    /// The batch a write made now waits for: none if every batch so far is durable.
    pub fn pending(&self) -> Option<u64> {
        (self.last > self.durable).then_some(self.last)
    }

    /// Numbers a batch (`has_batch`; a rewrite of everything, when `rewrite`), or, with none,
    /// finds the batch this input's acks wait for: the last one not durable yet (their writes
    /// may be in it), or none at all. Returns the batch's number and the acks that can go at
    /// once. While a rewrite is wanted, acks wait for it.
    pub fn number(&mut self, has_batch: bool, rewrite: bool) -> (Option<u64>, Vec<HeldAck>) {
        let mut fresh = std::mem::take(&mut self.fresh);
        if rewrite {
            self.rewrite_wanted = false;
            fresh.append(&mut self.awaiting_rewrite);
        } else if self.rewrite_wanted {
            self.awaiting_rewrite.append(&mut fresh);
        }
        let wait_for = if has_batch {
            self.last += 1;
            Some(self.last)
        } else {
            (self.last > self.durable).then_some(self.last)
        };
        match wait_for {
            Some(seq) => {
                if !fresh.is_empty() {
                    self.held.entry(seq).or_default().extend(fresh);
                }
                (has_batch.then_some(seq), Vec::new())
            }
            None => (None, fresh),
        }
    }

    /// Batches up to `upto` are durable: the acks that waited for them.
    pub fn persisted(&mut self, upto: u64) -> Vec<HeldAck> {
        self.durable = self.durable.max(upto);
        let later = self.held.split_off(&(self.durable + 1));
        let ready = std::mem::replace(&mut self.held, later);
        ready.into_values().flatten().collect()
    }

    /// A batch failed: its writes are not durable here, and batches written after it would
    /// claim writes it lacked. Nobody waiting on any batch so far is told it is durable (the
    /// writers ask again), and everything is written again once the caller allows.
    pub fn failed(&mut self, upto: u64) -> usize {
        self.durable = self.durable.max(upto);
        self.rewrite_wanted = true;
        let dropped = std::mem::take(&mut self.held);
        dropped.values().map(Vec::len).sum()
    }
}
