//! Snapshots: every replicated keyspace that is not ephemeral, as one versioned, checksummed
//! file ([`format`](mod@format)), and restoring one as a CRDT merge.
//!
//! A snapshot holds each keyspace's full state with what a full state on the wire carries
//! besides: which writes it includes (`seen`, `retired`). Restoring merges each keyspace's state
//! into ours as a peer's full state is merged, under our GC horizon rather than the
//! snapshot's (which replicas other than ours agreed on), so nothing newer here is lost: a value
//! newer than the snapshot's stays, and a value the snapshot saw removed (a delete newer than
//! it, here or in the snapshot) stays removed — a restore never rolls anything back. The
//! snapshot's writers are taken up as *records* (see `Keyspace::retired`), never as origins to
//! track: they are usually lives of another cluster, which no member will ever retire. The
//! merged keyspaces then spread as usual; the restoring node also sends them at once to the
//! live members (to `fanout` of them above `push_all_max`).
//!
//! Everything is checked before anything is merged (ephemeral keyspaces, room for new
//! keyspaces, clocks), so a refused restore changes nothing.

pub mod format;
#[cfg(test)]
mod tests;

use std::collections::BTreeSet;

use foundation_crdt::{HlcError, NodeId, Timestamp};

use super::keyspace::Coverage;
use super::wire::{Map, Seen};
use super::{emit, open, Replication};
use crate::effects::Outbox;
use crate::time::Instant;
use crate::NodeAddr;

/// Largest snapshot file, header included: a node's restore takes at most this in one
/// request (HTTP 413 above it), and a node refuses to save a larger one. It holds every
/// keyspace at the default limits (64 keyspaces of 2 MiB of live data, plus per-entry
/// overhead and tombstones) and is the largest full state replication sends
/// ([`super::FULL_STATE_BYTES_MAX`]).
pub const SNAPSHOT_BYTES_MAX: usize = 256 * 1024 * 1024;

/// A decoded snapshot: who took it, when, and its keyspaces in name order.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    /// The node that took it.
    pub node: NodeId,
    /// Its wall clock then, in milliseconds since the Unix epoch.
    pub taken_ms: u64,
    /// The keyspaces, sorted by name, each once.
    pub keyspaces: Vec<KeyspaceSnapshot>,
}

/// One keyspace of a snapshot.
#[derive(Clone, Debug, PartialEq)]
pub struct KeyspaceSnapshot {
    /// Its name.
    pub name: String,
    /// Its CRDT state (tombstones included).
    pub map: Map,
    /// The origins the state tracks, with the contiguous seq it includes of each.
    pub seen: Seen,
    /// Retired origins, with the seq the state includes of each.
    pub retired: Seen,
}

impl Snapshot {
    /// The file's bytes; see [`format`](mod@format).
    pub fn encode(&self) -> Result<Vec<u8>, SnapshotError> {
        format::encode(self)
    }

    /// Decodes and checks a file's bytes: all of it is valid, or it is refused.
    pub fn decode(bytes: &[u8]) -> Result<Self, SnapshotError> {
        format::decode(bytes)
    }
}

/// Why bytes are not a snapshot this build can restore. Nothing was applied.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// The bytes do not start with the snapshot magic.
    #[error(
        "not a Foundation snapshot: the file does not start with the snapshot magic \"FNDSNAP\""
    )]
    NotASnapshot,
    /// Written by a newer (or unknown) format version.
    #[error("snapshot format version {found} is not supported: this build reads version {supported} (restore with the version of foundation that saved it, or newer)")]
    UnsupportedVersion {
        /// The version in the file.
        found: u16,
        /// The one this build reads.
        supported: u16,
    },
    /// Shorter than its header says.
    #[error("truncated snapshot: {found} bytes, the header says {expected}")]
    Truncated {
        /// Bytes the header promises (or the header's own length).
        expected: u64,
        /// Bytes there are.
        found: u64,
    },
    /// Longer than its header says.
    #[error("damaged snapshot: {extra} bytes after the end the header gives")]
    TrailingBytes {
        /// Bytes past the end.
        extra: u64,
    },
    /// The body's checksum does not match: a byte changed since it was written.
    #[error(
        "corrupted snapshot: the body's checksum is {computed:016x}, the header says {stored:016x}"
    )]
    ChecksumMismatch {
        /// The checksum in the header.
        stored: u64,
        /// The body's.
        computed: u64,
    },
    /// Over [`SNAPSHOT_BYTES_MAX`].
    #[error("snapshot of {len} bytes is over the limit of {max} bytes")]
    TooLarge {
        /// Its length (or the length its header claims).
        len: u64,
        /// The limit.
        max: usize,
    },
    /// The checksum matches but the body does not decode: not written by this format.
    #[error("malformed snapshot: {reason}")]
    Malformed {
        /// What failed.
        reason: String,
    },
    /// One keyspace's entry is invalid.
    #[error("malformed snapshot: keyspace {name:?}: {reason}")]
    BadKeyspace {
        /// The keyspace.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// A state could not be encoded (not expected for replication's own types).
    #[error("the snapshot could not be encoded: {reason}")]
    Encode {
        /// What failed.
        reason: String,
    },
}

/// Why a valid snapshot was not restored. Nothing changed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RestoreError {
    /// The snapshot holds a keyspace of ephemeral entries, which belong to live node lives and
    /// are never snapshotted.
    #[error("keyspace {keyspace:?} holds ephemeral entries here and cannot be restored")]
    Ephemeral {
        /// The keyspace.
        keyspace: String,
    },
    /// The node has no room for the snapshot's new keyspaces.
    #[error("restoring needs {needed} keyspaces, over this node's limit of {max} (keyspaces_max)")]
    TooManyKeyspaces {
        /// Keyspaces held afterwards.
        needed: usize,
        /// The limit.
        max: usize,
    },
    /// A write in the snapshot is stamped further ahead of this node's clock than the drift
    /// bound allows (the saving node's clock was ahead).
    #[error("the snapshot holds writes from the future: {0}")]
    ClockAhead(HlcError),
    /// The merge is applied and spreading, but could not be made durable here.
    #[error("the snapshot is merged but not durable here: {reason}")]
    NotDurable {
        /// What the storage reported.
        reason: String,
    },
}

/// What a restore did to one keyspace.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RestoredKeyspace {
    /// The keyspace.
    pub name: String,
    /// Live keys in the snapshot's state.
    pub keys: usize,
    /// Live keys whose value changed here.
    pub changed: usize,
    /// Live keys after the merge.
    pub keys_after: usize,
}

impl Replication {
    /// Every keyspace not in `exclude` (the ephemeral ones), as the snapshot a file holds.
    pub fn snapshot(&self, now: Instant, exclude: &BTreeSet<String>) -> Snapshot {
        let keyspaces = self
            .keyspaces
            .iter()
            .filter(|(name, _)| !exclude.contains(*name))
            .map(|(name, keyspace)| KeyspaceSnapshot {
                name: name.clone(),
                map: keyspace.map().clone(),
                seen: keyspace.seen(),
                retired: keyspace.retired(),
            })
            .collect();
        Snapshot {
            node: self.me.node,
            taken_ms: self.wall_ms(now),
            keyspaces,
        }
    }

    /// Merges every keyspace of `snapshot` into ours as a peer's full state is merged, and
    /// sends the merged keyspaces to `peers` (the live members). `exclude`: keyspaces that
    /// must not be restored (the ephemeral ones). Checks everything first: a refusal changes
    /// nothing.
    pub fn restore_snapshot(
        &mut self,
        now: Instant,
        snapshot: &Snapshot,
        exclude: &BTreeSet<String>,
        peers: &[NodeAddr],
        out: &mut Outbox,
    ) -> Result<Vec<RestoredKeyspace>, RestoreError> {
        let newest = self.check_restore(now, snapshot, exclude)?;
        if let Some(newest) = newest {
            let _ = self.hlc.update(newest, self.wall_ms(now)); // checked above
        }
        let mut restored = Vec::with_capacity(snapshot.keyspaces.len());
        for part in &snapshot.keyspaces {
            let keyspace = open(&mut self.keyspaces, &self.persistence, &part.name);
            let coverage = Coverage {
                seen: &part.seen,
                retired: &part.retired,
            };
            // The snapshot's GC horizon is its own replicas' agreement, not ours: a member of
            // ours may still lack a delete below it, and taking it would drop that delete's
            // tombstone here (and, through our state, everywhere). Merged under our horizon.
            let map = part
                .map
                .clone()
                .with_horizon_at_most(keyspace.map().horizon());
            // Never tracked: the snapshot's writers get records (see the module docs).
            let merged = keyspace.merge_full(&map, &coverage, false);
            self.stats.full_states_merged += 1;
            restored.push(RestoredKeyspace {
                name: part.name.clone(),
                keys: part.map.len(),
                changed: merged.changes.len(),
                keys_after: keyspace.len(),
            });
            for change in merged.changes {
                emit(&part.name, change, out);
            }
        }
        let targets = self.push_targets(peers);
        for to in targets {
            for part in &snapshot.keyspaces {
                self.send_full_state(to, &part.name, out);
            }
        }
        if !self.keyspaces.is_empty() {
            self.start_ticking(now, out);
        }
        Ok(restored)
    }

    /// Refuses a snapshot that must not be merged here; returns its newest timestamp.
    fn check_restore(
        &self,
        now: Instant,
        snapshot: &Snapshot,
        exclude: &BTreeSet<String>,
    ) -> Result<Option<Timestamp>, RestoreError> {
        let names: BTreeSet<&str> = snapshot.keyspaces.iter().map(|k| k.name.as_str()).collect();
        if let Some(name) = names.iter().find(|n| exclude.contains(**n)) {
            return Err(RestoreError::Ephemeral {
                keyspace: (*name).to_owned(),
            });
        }
        let new = names
            .iter()
            .filter(|n| !self.keyspaces.contains_key(**n))
            .count();
        let needed = self.keyspaces.len() + new;
        if needed > self.config.keyspaces_max {
            return Err(RestoreError::TooManyKeyspaces {
                needed,
                max: self.config.keyspaces_max,
            });
        }
        // Tombstones count: a delete in the snapshot orders our later writes after it too.
        let newest = snapshot
            .keyspaces
            .iter()
            .flat_map(|k| k.map.entries().map(|(_, e)| e.ts))
            .max();
        if let Some(newest) = newest {
            self.hlc
                .clone()
                .update(newest, self.wall_ms(now))
                .map_err(RestoreError::ClockAhead)?;
        }
        Ok(newest)
    }
}
