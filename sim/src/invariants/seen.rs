//! `seen-backed-by-data`: what a node's digest says it has seen is in its data.
//!
//! A digest (`Keyspace::seen`: the highest contiguous seq per origin) is a promise: peers send a
//! node only the ops above it, so an op it claims but does not hold is never offered again.
//! A node that marks ops seen without applying them is therefore caught here, on the data, the
//! moment its digest claims them — not minutes later by compaction, nor never when a full state
//! happens to paper over it.
//!
//! For every node and keyspace, every write the world recorded ([`crate::writes::WriteRecord`])
//! with an origin and seq the node claims seen must be *present or superseded*: the node's
//! entry for the key is that write or a later one in last-writer-wins order (a set or a
//! tombstone), or the key is absent and the write was a delete or a later delete of the key was
//! made (its tombstone may have been collected). Only the newly claimed ranges are checked as
//! the run goes; every claim of every running node is checked again at the end, which catches
//! data lost after it was applied.

use std::collections::BTreeMap;

use foundation_core::node::Core;
use foundation_core::replication::{Keyspace, Origin, Seen, Value};
use foundation_crdt::LwwEntry;

use super::separations::Separations;
use super::{Check, Invariant, Measurements};
use crate::faults::Fault;
use crate::world::World;
use crate::writes::WriteRecord;

/// Problems kept in one violation's message.
const PROBLEMS_SHOWN: usize = 4;

/// The `seen-backed-by-data` invariant; see the module docs.
#[derive(Default)]
pub struct SeenBackedByData {
    /// Records of the world's write log indexed so far.
    indexed: usize,
    /// Record indexes by keyspace and origin, in seq order (an origin writes in seq order).
    by_origin: BTreeMap<(String, Origin), Vec<usize>>,
    /// The newest delete of each key (its record's index), by keyspace and key.
    newest_delete: BTreeMap<(String, String), usize>,
    /// When the world kept nodes apart: a set may beat a newer delete across a long partition.
    separations: Separations,
    /// What each node life's digest claimed at the last check, per keyspace.
    claimed: BTreeMap<(usize, u64, String), Seen>,
    /// Claims checked against the data.
    checked: u64,
}

impl SeenBackedByData {
    /// A fresh check.
    pub fn new() -> Self {
        Self::default()
    }

    /// Indexes the writes recorded since the last call.
    fn index(&mut self, world: &World) {
        let records = world.writes();
        for (i, r) in records.iter().enumerate().skip(self.indexed) {
            let origin = (r.keyspace.clone(), r.origin);
            self.by_origin.entry(origin).or_default().push(i);
            if r.value.is_none() {
                let newest = self
                    .newest_delete
                    .entry((r.keyspace.clone(), r.key.clone()))
                    .or_insert(i);
                if records[*newest].ts < r.ts {
                    *newest = i;
                }
            }
        }
        self.indexed = records.len();
    }

    /// Checks every node's claims above what was checked before (`fresh`: from zero).
    fn check(&mut self, world: &World, fresh: bool) -> Check {
        self.index(world);
        let mut problems = Vec::new();
        let mut count = 0usize;
        for (slot, node) in world.nodes().iter().enumerate() {
            let Some(core) = node.core() else { continue };
            for (name, keyspace) in keyspaces(core) {
                let key = (slot, node.life(), name.to_owned());
                let seen = keyspace.seen();
                let before = match fresh {
                    true => None,
                    false => self.claimed.get(&key),
                };
                for (origin, &upto) in &seen {
                    let from = before.and_then(|b| b.get(origin)).copied().unwrap_or(0);
                    for record in self.claimed_records(world, name, *origin, from, upto) {
                        self.checked += 1;
                        let Some(why) = self.unexplained(world, keyspace, record) else {
                            continue;
                        };
                        count += 1;
                        if problems.len() < PROBLEMS_SHOWN {
                            problems.push(describe(slot, upto, record, why));
                        }
                    }
                }
                self.claimed.insert(key, seen);
            }
        }
        if count == 0 {
            return Ok(());
        }
        Err(format!(
            "{count} writes claimed seen are missing from the claimant's data: {}",
            problems.join("; ")
        ))
    }

    /// The recorded writes of `origin` in keyspace `name` with seq in `(from, upto]`.
    fn claimed_records<'w>(
        &self,
        world: &'w World,
        name: &str,
        origin: Origin,
        from: u64,
        upto: u64,
    ) -> Vec<&'w WriteRecord> {
        let indexes = self
            .by_origin
            .get(&(name.to_owned(), origin))
            .map_or(&[][..], Vec::as_slice);
        let records = world.writes();
        let start = indexes.partition_point(|&i| records[i].seq <= from);
        indexes[start..]
            .iter()
            .map(|&i| &records[i])
            .take_while(|r| r.seq <= upto)
            .collect()
    }

    /// Why `record` is neither present nor superseded in `keyspace`, if it is not.
    fn unexplained(
        &self,
        world: &World,
        keyspace: &Keyspace,
        record: &WriteRecord,
    ) -> Option<&'static str> {
        let records = world.writes();
        let newest_delete = self
            .newest_delete
            .get(&(record.keyspace.clone(), record.key.clone()))
            .map(|&i| &records[i])
            .filter(|d| d.ts >= record.ts); // the claimed write itself, or a later delete
        match keyspace.map().entry(&record.key) {
            Some(entry) if entry.ts >= record.ts => None,
            Some(entry) => {
                let held = self.record_of(world, &record.keyspace, entry);
                let excused = held.zip(newest_delete).is_some_and(|(set, delete)| {
                    self.separations.set_may_beat_delete(world, set, delete)
                });
                (!excused).then_some("it holds an older write of the key")
            }
            None if newest_delete.is_some() => None,
            None => Some("the key is absent and no later delete was made"),
        }
    }

    /// The recorded write that made a live entry (its value names origin and seq).
    fn record_of<'w>(
        &self,
        world: &'w World,
        keyspace: &str,
        entry: &LwwEntry<Value>,
    ) -> Option<&'w WriteRecord> {
        let value = entry.value.as_ref()?;
        let origin = Origin {
            node: entry.ts.node,
            generation: value.generation,
        };
        let indexes = self.by_origin.get(&(keyspace.to_owned(), origin))?;
        let records = world.writes();
        let at = indexes.partition_point(|&i| records[i].seq < value.seq);
        indexes
            .get(at)
            .map(|&i| &records[i])
            .filter(|r| r.seq == value.seq)
    }
}

fn keyspaces(core: &Core) -> impl Iterator<Item = (&str, &Keyspace)> {
    let replication = core.replication();
    replication
        .keyspace_names()
        .filter_map(move |name| replication.keyspace(name).map(|k| (name, k)))
}

fn describe(slot: usize, upto: u64, record: &WriteRecord, why: &str) -> String {
    format!(
        "n{slot} claims n{}'s ops of {:?} seen up to seq {upto}, but w{} (seq {}, {} at {:.3}s) is not in its data: {why}",
        record.slot,
        record.keyspace,
        record.id,
        record.seq,
        record.key,
        record.at_us as f64 / 1e6
    )
}

impl Invariant for SeenBackedByData {
    fn name(&self) -> &'static str {
        "seen-backed-by-data"
    }

    fn on_fault(&mut self, world: &World, fault: &Fault, _slots: &[usize]) {
        self.separations.on_fault(world, fault);
    }

    fn on_tick(&mut self, world: &World) -> Check {
        self.check(world, false)
    }

    fn at_end(&mut self, world: &World) -> Check {
        self.check(world, true)
    }

    fn measure(&self, out: &mut Measurements) {
        out.claims_checked += self.checked;
    }
}
