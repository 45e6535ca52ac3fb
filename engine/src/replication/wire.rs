//! What replication puts on the wire: envelopes of ops, digests and full states.

use std::collections::BTreeMap;

use foundation_crdt::{LwwMap, LwwOp, NodeId};
use serde::{Deserialize, Serialize};

/// A keyspace's state: string keys, opaque byte values (JSON for config).
pub type Map = LwwMap<String, Vec<u8>>;
/// One write to a keyspace.
pub type Op = LwwOp<String, Vec<u8>>;
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
    },
    /// A whole keyspace, for a peer behind our op-log horizon.
    FullState {
        /// Which keyspace.
        keyspace: String,
        /// The compaction epoch of the state.
        epoch: u32,
        /// [`foundation_crdt::Canonical`] bytes of the [`Map`].
        state: Vec<u8>,
        /// What the state includes: every op up to these seqs.
        seen: Seen,
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
