//! The snapshot file: a fixed header, then a checksummed body.
//!
//! ```text
//!   offset  size  field
//!   0       8     magic "FNDSNAP\n"
//!   8       2     format version, little-endian (this build writes and reads 1)
//!   10      2     reserved, 0
//!   12      8     body length in bytes, little-endian
//!   20      8     xxh3-64 of the body, little-endian
//!   28      ...   body: postcard of `Body` — who took it and when, and per keyspace (sorted by
//!                 name, each once) its name, its state in the CRDT's canonical encoding (the
//!                 bytes replication's full states carry) and which writes the state includes
//! ```
//!
//! Every check runs before anything is returned, so a caller that gets a [`Snapshot`] got all
//! of it, valid: a wrong magic, a future version, a length that disagrees with the file, a
//! checksum that does not match or a body or keyspace state that does not decode is refused
//! with a [`SnapshotError`] naming what is wrong. Decoding never panics, whatever the bytes.

use foundation_crdt::{Canonical, NodeId};
use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64;

use super::super::wire::{Map, Seen};
use super::super::KEYSPACE_NAME_MAX;
use super::{KeyspaceSnapshot, Snapshot, SnapshotError, SNAPSHOT_BYTES_MAX};

/// The first bytes of every snapshot file.
pub const MAGIC: [u8; 8] = *b"FNDSNAP\n";
/// The format version this build writes, and the newest it reads.
pub const FORMAT_VERSION: u16 = 1;
/// Bytes before the body.
pub const HEADER_LEN: usize = 28;

/// What the body holds, as encoded.
#[derive(Serialize, Deserialize)]
struct Body {
    /// The node that took the snapshot.
    node: u128,
    /// Its wall clock then, in milliseconds since the Unix epoch.
    taken_ms: u64,
    keyspaces: Vec<Entry>,
}

/// One keyspace, as encoded: its state stays in the CRDT's own canonical bytes.
#[derive(Serialize, Deserialize)]
struct Entry {
    name: String,
    state: Vec<u8>,
    seen: Seen,
    retired: Seen,
}

/// Encodes a snapshot as a file's bytes.
pub fn encode(snapshot: &Snapshot) -> Result<Vec<u8>, SnapshotError> {
    let keyspaces = snapshot
        .keyspaces
        .iter()
        .map(|k| {
            let state = k.map.encode().map_err(|e| SnapshotError::Encode {
                reason: format!("keyspace {:?}: {e}", k.name),
            })?;
            Ok(Entry {
                name: k.name.clone(),
                state,
                seen: k.seen.clone(),
                retired: k.retired.clone(),
            })
        })
        .collect::<Result<Vec<_>, SnapshotError>>()?;
    let body = Body {
        node: snapshot.node.as_u128(),
        taken_ms: snapshot.taken_ms,
        keyspaces,
    };
    let body = postcard::to_stdvec(&body).map_err(|e| SnapshotError::Encode {
        reason: e.to_string(),
    })?;
    let len = HEADER_LEN + body.len();
    if len > SNAPSHOT_BYTES_MAX {
        return Err(SnapshotError::TooLarge {
            len: len as u64,
            max: SNAPSHOT_BYTES_MAX,
        });
    }
    Ok(frame(&body))
}

/// `body` behind a header of this version with its length and checksum: a file whose header
/// checks, whatever the body holds (the encoder's last step; fuzzing and tests use it to reach
/// the body's decoder).
pub fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(&xxh3_64(body).to_le_bytes());
    out.extend_from_slice(body);
    out
}

/// Decodes and checks a file's bytes; see the module docs for what is refused.
pub fn decode(bytes: &[u8]) -> Result<Snapshot, SnapshotError> {
    let body = checked_body(bytes)?;
    let body: Body = match postcard::take_from_bytes(body) {
        Ok((body, [])) => body,
        Ok((_, rest)) => {
            return Err(SnapshotError::Malformed {
                reason: format!("{} bytes after the body's end", rest.len()),
            })
        }
        Err(e) => {
            return Err(SnapshotError::Malformed {
                reason: e.to_string(),
            })
        }
    };
    let mut keyspaces = Vec::with_capacity(body.keyspaces.len());
    for entry in body.keyspaces {
        check_name(
            &entry.name,
            keyspaces.last().map(|k: &KeyspaceSnapshot| &k.name),
        )?;
        keyspaces.push(keyspace(entry)?);
    }
    Ok(Snapshot {
        node: NodeId::from_u128(body.node),
        taken_ms: body.taken_ms,
        keyspaces,
    })
}

/// The body of a file whose header is ours and whose checksum matches.
fn checked_body(bytes: &[u8]) -> Result<&[u8], SnapshotError> {
    let found = bytes.len() as u64;
    if !bytes.starts_with(&MAGIC[..bytes.len().min(MAGIC.len())]) {
        return Err(SnapshotError::NotASnapshot);
    }
    let Some(header) = bytes.get(..HEADER_LEN) else {
        return Err(SnapshotError::Truncated {
            expected: HEADER_LEN as u64,
            found,
        });
    };
    let field = |at: usize, n: usize| -> u64 {
        header[at..at + n]
            .iter()
            .rev()
            .fold(0, |acc, &b| acc << 8 | u64::from(b))
    };
    let version = field(8, 2) as u16;
    if version != FORMAT_VERSION {
        return Err(SnapshotError::UnsupportedVersion {
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    if field(10, 2) != 0 {
        return Err(SnapshotError::Malformed {
            reason: "the header's reserved field is not 0".into(),
        });
    }
    let (len, sum) = (field(12, 8), field(20, 8));
    let expected = (HEADER_LEN as u64).saturating_add(len);
    if expected > SNAPSHOT_BYTES_MAX as u64 {
        return Err(SnapshotError::TooLarge {
            len: expected,
            max: SNAPSHOT_BYTES_MAX,
        });
    }
    if found < expected {
        return Err(SnapshotError::Truncated { expected, found });
    }
    if found > expected {
        return Err(SnapshotError::TrailingBytes {
            extra: found - expected,
        });
    }
    let body = &bytes[HEADER_LEN..];
    let computed = xxh3_64(body);
    if computed != sum {
        return Err(SnapshotError::ChecksumMismatch {
            stored: sum,
            computed,
        });
    }
    Ok(body)
}

/// A keyspace name must be one replication takes, and names come sorted and once each (so one
/// snapshot has one encoding).
fn check_name(name: &str, previous: Option<&String>) -> Result<(), SnapshotError> {
    if name.is_empty() || name.len() > KEYSPACE_NAME_MAX {
        return Err(SnapshotError::BadKeyspace {
            name: name.to_owned(),
            reason: format!("a keyspace name is 1 to {KEYSPACE_NAME_MAX} bytes"),
        });
    }
    if previous.is_some_and(|p| p.as_str() >= name) {
        return Err(SnapshotError::BadKeyspace {
            name: name.to_owned(),
            reason: "keyspaces are not in strictly increasing name order".into(),
        });
    }
    Ok(())
}

fn keyspace(entry: Entry) -> Result<KeyspaceSnapshot, SnapshotError> {
    let bad = |reason: String| SnapshotError::BadKeyspace {
        name: entry.name.clone(),
        reason,
    };
    let map = Map::decode(&entry.state).map_err(|e| bad(format!("its state: {e}")))?;
    // A live value names the write that made it (seqs start at 1): one that names none would
    // pass for a write every replica has seen and removed.
    if let Some((key, _)) = map.iter().find(|(_, v)| v.seq == 0) {
        return Err(bad(format!("the value of {key:?} names no write (seq 0)")));
    }
    Ok(KeyspaceSnapshot {
        name: entry.name,
        map,
        seen: entry.seen,
        retired: entry.retired,
    })
}
