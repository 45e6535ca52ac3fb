//! A batch of changes to a node's durable state, applied atomically: after a crash either all
//! of a batch is there or none of it.

use super::error::StorageError;
use super::record::{self, RawOp, STORE_KEY_BYTES_MAX, VALUE_BYTES_MAX};

/// One change. Keys, values and metadata are opaque bytes the replication machine encodes; the
/// store only checksums and keeps them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Sets `key` in `keyspace` to `value` (an encoded entry), replacing what was there.
    PutEntry {
        /// The keyspace's name.
        keyspace: String,
        /// The entry's key.
        key: Vec<u8>,
        /// The encoded entry.
        value: Vec<u8>,
    },
    /// Removes `key` from `keyspace`.
    RemoveEntry {
        /// The keyspace's name.
        keyspace: String,
        /// The entry's key.
        key: Vec<u8>,
    },
    /// Sets the keyspace's metadata blob called `name` (its "seen" bookkeeping, horizon, epoch).
    PutKeyspaceMeta {
        /// The keyspace's name.
        keyspace: String,
        /// Which blob.
        name: String,
        /// Its encoded value.
        value: Vec<u8>,
    },
    /// Removes the keyspace's metadata blob called `name` (an origin no longer tracked).
    RemoveKeyspaceMeta {
        /// The keyspace's name.
        keyspace: String,
        /// Which blob.
        name: String,
    },
    /// Removes every entry and metadata blob of `keyspace` (a keyspace dropped, or about to be
    /// rewritten whole, as when it is compacted into a new epoch).
    ClearKeyspace {
        /// The keyspace's name.
        keyspace: String,
    },
    /// Sets the node-level metadata blob called `name` (identity, origin, last HLC).
    PutNodeMeta {
        /// Which blob.
        name: String,
        /// Its encoded value.
        value: Vec<u8>,
    },
}

/// Changes applied atomically, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Batch {
    ops: Vec<Op>,
    /// It rewrites the whole durable state (after a failed batch): see [`Batch::mark_rewrite`].
    rewrite: bool,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a change.
    pub fn push(&mut self, op: Op) -> &mut Self {
        self.ops.push(op);
        self
    }

    /// Sets an entry.
    pub fn put_entry(&mut self, keyspace: &str, key: &[u8], value: &[u8]) -> &mut Self {
        self.push(Op::PutEntry {
            keyspace: keyspace.to_owned(),
            key: key.to_vec(),
            value: value.to_vec(),
        })
    }

    /// Removes an entry.
    pub fn remove_entry(&mut self, keyspace: &str, key: &[u8]) -> &mut Self {
        self.push(Op::RemoveEntry {
            keyspace: keyspace.to_owned(),
            key: key.to_vec(),
        })
    }

    /// Sets a keyspace's metadata blob.
    pub fn put_keyspace_meta(&mut self, keyspace: &str, name: &str, value: &[u8]) -> &mut Self {
        self.push(Op::PutKeyspaceMeta {
            keyspace: keyspace.to_owned(),
            name: name.to_owned(),
            value: value.to_vec(),
        })
    }

    /// Removes a keyspace's metadata blob.
    pub fn remove_keyspace_meta(&mut self, keyspace: &str, name: &str) -> &mut Self {
        self.push(Op::RemoveKeyspaceMeta {
            keyspace: keyspace.to_owned(),
            name: name.to_owned(),
        })
    }

    /// Removes a keyspace's entries and metadata.
    pub fn clear_keyspace(&mut self, keyspace: &str) -> &mut Self {
        self.push(Op::ClearKeyspace {
            keyspace: keyspace.to_owned(),
        })
    }

    /// Sets a node-level metadata blob.
    pub fn put_node_meta(&mut self, name: &str, value: &[u8]) -> &mut Self {
        self.push(Op::PutNodeMeta {
            name: name.to_owned(),
            value: value.to_vec(),
        })
    }

    /// Marks the batch as writing the whole durable state again. After a batch failed, a store
    /// takes nothing else until such a batch lands: a later ordinary batch would claim (in its
    /// bookkeeping) writes that only the failed one held.
    pub fn mark_rewrite(&mut self) -> &mut Self {
        self.rewrite = true;
        self
    }

    /// Whether the batch writes the whole durable state again.
    pub fn is_rewrite(&self) -> bool {
        self.rewrite
    }

    /// The changes, in order.
    pub fn ops(&self) -> &[Op] {
        &self.ops
    }

    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Number of changes.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// The batch as changes to store keys, each value checksummed; refuses what is too large
    /// before anything is written.
    pub fn lower(&self) -> Result<Vec<RawOp>, StorageError> {
        self.ops.iter().map(lower_op).collect()
    }
}

fn lower_op(op: &Op) -> Result<RawOp, StorageError> {
    let raw = match op {
        Op::PutEntry {
            keyspace,
            key,
            value,
        } => put(record::entry_key(keyspace, key)?, value)?,
        Op::RemoveEntry { keyspace, key } => RawOp::Delete(record::entry_key(keyspace, key)?),
        Op::PutKeyspaceMeta {
            keyspace,
            name,
            value,
        } => put(record::keyspace_meta_key(keyspace, name)?, value)?,
        Op::RemoveKeyspaceMeta { keyspace, name } => {
            RawOp::Delete(record::keyspace_meta_key(keyspace, name)?)
        }
        Op::ClearKeyspace { keyspace } => {
            RawOp::DeleteKeyspace(record::keyspace_prefixes(keyspace)?)
        }
        Op::PutNodeMeta { name, value } => put(record::node_meta_key(name)?, value)?,
    };
    Ok(raw)
}

fn put(key: Vec<u8>, value: &[u8]) -> Result<RawOp, StorageError> {
    if value.len() > VALUE_BYTES_MAX {
        return Err(StorageError::TooLarge {
            what: "a value",
            bytes: value.len(),
            max: VALUE_BYTES_MAX,
        });
    }
    debug_assert!(key.len() <= STORE_KEY_BYTES_MAX);
    let sealed = record::seal(&key, value);
    Ok(RawOp::Put(key, sealed))
}
