//! Writes to replicated keyspaces: what a scenario asks for (a burst of [`Writes`] on some
//! nodes, or a seeded random [`Workload`]), and what the world records of each write it made
//! ([`WriteRecord`]) so the replication invariants can tell what must survive.
//!
//! Every value a scenario writes is unique in the run (`w<id>`, padded to the value size), so a
//! value read anywhere names the one write it came from.

use std::collections::BTreeSet;
use std::fmt;
use std::ops::Range;
use std::time::Duration;

use foundation_core::replication::{Origin, ReplicationStats};
use foundation_crdt::Timestamp;
use serde::Serialize;

use crate::faults::Nodes;
use crate::pace::{check_share, Pace};

/// The keyspace scenarios write to unless they name another.
pub const DEFAULT_KEYSPACE: &str = "kv";
/// How long an acknowledged write of a [`Workload`] asks for acks.
pub const ACK_DEADLINE: Duration = Duration::from_secs(10);
/// Largest value a scenario may ask for (the engine's default `value_size_max`).
pub const VALUE_SIZE_MAX: usize = 64 * 1024;
/// Longest keyspace name the engine accepts.
pub const KEYSPACE_NAME_MAX: usize = 64;

/// The key a scenario writes for index `i`.
pub fn key(i: usize) -> String {
    format!("k{i}")
}

/// One write for [`crate::world::World::write`]: the world picks the value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteRequest {
    /// The keyspace.
    pub keyspace: String,
    /// The key.
    pub key: String,
    /// Delete the key instead of setting it.
    pub delete: bool,
    /// Ask every live member to acknowledge it, retrying until this long from now.
    pub acked: Option<Duration>,
    /// Bytes of the value (at least its unique name).
    pub value_size: usize,
}

/// A burst of writes: every selected node writes (or deletes) every key of `keys`, at once.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Writes {
    /// Which nodes write; each writes every key.
    pub nodes: Nodes,
    /// The keyspace.
    pub keyspace: String,
    /// Key indexes: keys `k<start>` to `k<end - 1>`.
    pub keys: Range<usize>,
    /// Whether each write asks every live member to acknowledge it (`Core::write_acked`, with
    /// [`ACK_DEADLINE`]).
    pub acked: bool,
}

impl Writes {
    /// Sets keys `k0..k<n>` in [`DEFAULT_KEYSPACE`] on `nodes`, unacknowledged.
    pub fn new(nodes: Nodes, keys: Range<usize>) -> Self {
        Self {
            nodes,
            keyspace: DEFAULT_KEYSPACE.into(),
            keys,
            acked: false,
        }
    }

    /// Asks for acknowledgements.
    pub fn acked(mut self) -> Self {
        self.acked = true;
        self
    }

    /// Checks the keyspace name and the key range.
    pub fn validate(&self) -> Result<(), String> {
        keyspace_name(&self.keyspace)?;
        if self.keys.is_empty() {
            return Err(format!(
                "the key range {}..{} is empty",
                self.keys.start, self.keys.end
            ));
        }
        Ok(())
    }

    pub(crate) fn describe(&self, f: &mut fmt::Formatter<'_>, verb: &str) -> fmt::Result {
        write!(
            f,
            "{verb} k{}..k{} of {:?} on {}",
            self.keys.start, self.keys.end, self.keyspace, self.nodes
        )?;
        if self.acked {
            write!(f, " (acked)")?;
        }
        Ok(())
    }
}

/// A seeded random workload: writes arrive at `rate` per second (the whole selection together,
/// uniformly spaced gaps averaging `1 / rate`) for `duration`; each goes to a random running
/// node of the selection, picks a random key of `k0..k<keys>`, deletes with probability
/// `deletes` and asks for acknowledgements with probability `acked`. Every draw comes from the
/// world's seeded stream, so a seed reproduces the workload exactly.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Workload {
    /// Which nodes take writes.
    pub nodes: Nodes,
    /// The keyspace.
    pub keyspace: String,
    /// Writes per second, over the whole selection.
    pub rate: f64,
    /// The key space: keys `k0..k<keys>`.
    pub keys: usize,
    /// Share of writes that are deletes, 0–1.
    pub deletes: f64,
    /// Share of writes that ask for acknowledgements, 0–1.
    pub acked: f64,
    /// How long writes keep coming.
    pub duration: Duration,
    /// Bytes per value written (at least the value's unique name, `w<id>`).
    pub value_size: usize,
}

impl Workload {
    /// `rate` writes per second on `nodes` over `keys` keys for `duration`: no deletes, none
    /// acknowledged, 16-byte values, in [`DEFAULT_KEYSPACE`].
    pub fn new(nodes: Nodes, rate: f64, keys: usize, duration: Duration) -> Self {
        Self {
            nodes,
            keyspace: DEFAULT_KEYSPACE.into(),
            rate,
            keys,
            deletes: 0.0,
            acked: 0.0,
            duration,
            value_size: 16,
        }
    }

    /// With this share of deletes.
    pub fn deletes(mut self, share: f64) -> Self {
        self.deletes = share;
        self
    }

    /// With this share of acknowledged writes.
    pub fn acked(mut self, share: f64) -> Self {
        self.acked = share;
        self
    }

    /// With values of this many bytes.
    pub fn value_size(mut self, bytes: usize) -> Self {
        self.value_size = bytes;
        self
    }

    /// Checks every field.
    pub fn validate(&self) -> Result<(), String> {
        keyspace_name(&self.keyspace)?;
        self.pace().check("workload", 1e6)?;
        if self.keys == 0 {
            return Err("a workload needs at least one key".into());
        }
        check_share("workload deletes", self.deletes)?;
        check_share("workload acked", self.acked)?;
        if self.value_size > VALUE_SIZE_MAX {
            return Err(format!(
                "value size {} is over {VALUE_SIZE_MAX} bytes",
                self.value_size
            ));
        }
        Ok(())
    }

    /// The gap between two writes is drawn uniformly from `1..=max_gap_us()` microseconds.
    pub(crate) fn max_gap_us(&self) -> u64 {
        self.pace().max_gap_us()
    }

    fn pace(&self) -> Pace {
        Pace {
            rate: self.rate,
            duration: self.duration,
        }
    }
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "workload on {}: {} writes/s over k0..k{} of {:?} for {:?}, {:.0} % deletes, {:.0} % acked, {} B values",
            self.nodes,
            self.rate,
            self.keys,
            self.keyspace,
            self.duration,
            self.deletes * 100.0,
            self.acked * 100.0,
            self.value_size
        )
    }
}

fn keyspace_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > KEYSPACE_NAME_MAX {
        return Err(format!(
            "keyspace name {name:?} must be 1 to {KEYSPACE_NAME_MAX} bytes"
        ));
    }
    Ok(())
}

/// A unique value for write `id`, padded with dots to `size` bytes.
pub(crate) fn value(id: u64, size: usize) -> Vec<u8> {
    let mut value = format!("w{id}").into_bytes();
    if value.len() < size {
        value.resize(size, b'.');
    }
    value
}

/// The progress of a write that asked for acknowledgements.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AckProgress {
    /// Members asked, the writer included (the ticket's group).
    pub members: usize,
    /// Most holders reported, the writer included.
    pub holders: usize,
    /// When a majority of `members` held it, in world microseconds.
    pub majority_at_us: Option<u64>,
    /// Node lives `(slot, life)` seen holding the op when an ack arrived: with the writer, the
    /// copies that make an acknowledged write survive the writer.
    pub holder_lives: BTreeSet<(usize, u64)>,
    /// Node lives `(slot, life)` whose ack arrived: each said it holds the op, so while one of
    /// them runs the write must not be lost, whatever the world saw it hold.
    pub acker_lives: BTreeSet<(usize, u64)>,
}

impl AckProgress {
    /// Holders needed for a majority.
    pub fn majority(&self) -> usize {
        self.members / 2 + 1
    }
}

/// One local write the world made, applied by the writer's core.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteRecord {
    /// Its number in the run (the value written is `w<id>`).
    pub id: u64,
    /// When it was applied, in world microseconds.
    pub at_us: u64,
    /// The writer's slot.
    pub slot: usize,
    /// The writer's life in that slot ([`crate::world::SimNode::life`]).
    pub life: u64,
    /// Who the op was issued as.
    pub origin: Origin,
    /// Its seq in the keyspace, for `origin`.
    pub seq: u64,
    /// The keyspace.
    pub keyspace: String,
    /// The key.
    pub key: String,
    /// The value, or `None` for a delete.
    pub value: Option<Vec<u8>>,
    /// The op's timestamp: the last-writer-wins order.
    pub ts: Timestamp,
    /// The newest timestamp in the writer's keyspaces (tombstones included) just before the
    /// write: every op the writer had applied, which causally precede the write.
    pub newest_before: Timestamp,
    /// What the writer's own read of the key returned right after the write: the timestamp of
    /// its entry (a tombstone for a delete), if any.
    pub read_back: Option<Timestamp>,
    /// For a write that asked for acknowledgements.
    pub acked: Option<AckProgress>,
    /// When its reply could be given, in world µs: once durable on the writer's disk
    /// (`Replication::durability`; at once without storage). `None`: never — not durable
    /// yet, its batch failed, or the writer went down first.
    pub durable_at_us: Option<u64>,
}

impl WriteRecord {
    /// Whether a majority of the members asked held it.
    pub fn majority_acked(&self) -> bool {
        self.acked
            .as_ref()
            .is_some_and(|a| a.majority_at_us.is_some())
    }
}

/// Replication counters summed over every node and every life of every node (a crashed core's
/// counters are kept when it goes).
pub type ReplicationTotals = ReplicationStats;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_unique_and_padded() {
        assert_eq!(value(7, 0), b"w7".to_vec());
        assert_eq!(value(7, 5), b"w7...".to_vec());
        assert_ne!(value(17, 8), value(7, 8));
    }

    #[test]
    fn bad_workloads_are_refused_with_the_reason() {
        let ok = Workload::new(Nodes::All, 10.0, 5, Duration::from_secs(1));
        assert!(ok.validate().is_ok());
        let e = Workload {
            rate: 0.0,
            ..ok.clone()
        }
        .validate()
        .unwrap_err();
        assert!(e.contains("rate"), "{e}");
        let e = ok.clone().deletes(1.5).validate().unwrap_err();
        assert!(e.contains("deletes"), "{e}");
        let e = Workload {
            keyspace: String::new(),
            ..ok
        }
        .validate()
        .unwrap_err();
        assert!(e.contains("keyspace"), "{e}");
        let e = Writes::new(Nodes::All, 3..3).validate().unwrap_err();
        assert!(e.contains("empty"), "{e}");
    }
}
