//! What replication puts on the wire: envelopes of ops, digests and full states.

use std::collections::BTreeMap;

use foundation_crdt::{LwwMap, LwwOp, NodeId, Timestamp};
use serde::{Deserialize, Serialize};

/// A keyspace's state: string keys, opaque byte values (JSON for config) with the write that
/// made each of them.
pub type Map = LwwMap<String, Value>;
/// One write to a keyspace, as an [`Envelope`] carries it (the envelope names the write).
pub type Op = LwwOp<String, Vec<u8>>;

/// A live value as a keyspace holds it: the bytes, and which write made them.
///
/// The writer's node is the timestamp's (a write is stamped by its origin's clock), so the
/// generation and seq complete the write's origin and dot. A full-state merge needs them to
/// tell a value the other side never saw (kept) from one it saw and removed since (dropped),
/// whatever the horizons say: see the replication module's GC rule.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Value {
    /// The value's bytes.
    pub bytes: Vec<u8>,
    /// The writer's life ([`Origin::generation`]).
    pub generation: u64,
    /// The write's seq in its origin's sequence for this keyspace.
    pub seq: u64,
}
/// Highest contiguous seq applied, per origin.
pub type Seen = BTreeMap<Origin, u64>;
/// A node's digest: [`Seen`] per keyspace.
pub type Digest = BTreeMap<String, Seen>;

/// Who issued an op: a node, in one of its lives.
///
/// The generation is part of the origin because a restarted node starts counting seqs from 1
/// again; keyed by node alone, its new ops would look like duplicates of its old ones and be
/// dropped everywhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Origin {
    /// The node.
    pub node: NodeId,
    /// Which life of the node.
    pub generation: u64,
}

/// An op in its envelope: enough for any replica to apply it and to track what it has seen.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// The keyspace written.
    pub keyspace: String,
    /// Who wrote it.
    pub origin: Origin,
    /// The origin's sequence number in this keyspace, from 1, without gaps.
    pub seq: u64,
    /// The compaction epoch the op belongs to; ops of older epochs are refused.
    pub epoch: u32,
    /// The write.
    pub op: Op,
}

/// Replication's messages, carried in [`crate::CoreMessage::Replication`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ReplicationMessage {
    /// Ops pushed eagerly after a write.
    Ops(Vec<Envelope>),
    /// Anti-entropy: what the sender has. The receiver answers with the ops the sender lacks;
    /// if `reply`, it also sends its own digest back when it lacks something the sender has.
    Digest {
        /// The sender's digest.
        digest: Digest,
        /// Whether the receiver should answer with its own digest (false on the answer itself,
        /// so an exchange never loops).
        reply: bool,
        /// The sender's compaction epoch: a receiver in another epoch answers with full states.
        epoch: u32,
        /// The sender's clock when it sent this: every op it wrote before is in `digest`, and
        /// every op it writes later is stamped after `clock`. It is what lets a receiver count
        /// the sender's unknown writes out of a GC horizon (see the module docs).
        clock: Timestamp,
        /// Per keyspace with retired records, their fingerprint
        /// ([`super::Keyspace::retired_fingerprint`]): a receiver of the same epoch whose
        /// records differ exchanges full states, since the seen-sets cannot show the difference.
        retired: BTreeMap<String, u64>,
    },
    /// A whole keyspace, for a peer behind our op-log horizon.
    FullState {
        /// Which keyspace.
        keyspace: String,
        /// The compaction epoch of the state.
        epoch: u32,
        /// The [`Map`], packed by [`super::full_state::encode`].
        state: Vec<u8>,
        /// What the state includes: every op up to these seqs.
        seen: Seen,
        /// Origins the sender retired, with the seq up to which the state includes their ops.
        retired: Seen,
    },
    /// Ops the sender wants acknowledged: the receiver applies them like [`Self::Ops`] and
    /// answers [`Self::Ack`] for each one it holds afterwards (applied now or before).
    AckRequest(Vec<Envelope>),
    /// The sender holds the op `(origin, seq)` of `keyspace`.
    Ack {
        /// The keyspace.
        keyspace: String,
        /// Who wrote the op (the receiver, or the ack is ignored).
        origin: Origin,
        /// Its seq.
        seq: u64,
    },
    /// Ops sent in answer to a digest: applied like [`Self::Ops`]; a receiver that learns
    /// something new from them passes it on at once with another exchange (see the module docs).
    Repair(Vec<Envelope>),
}
