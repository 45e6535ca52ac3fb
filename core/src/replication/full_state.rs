//! How a keyspace's full state travels between nodes.
//!
//! The canonical encoding ([`Canonical`]) spells out every entry's timestamp in full: a
//! 16-byte node id and a wall time of about 6 bytes, plus the writer's generation — about 25
//! of the ≈ 53 bytes a small key and value take. A full state names few writers for many
//! keys, and its writes are mostly recent, so here each distinct maker of a write (its node and,
//! for a live value, the life that wrote it) is listed once and named by its index, and each
//! wall time is an age below the newest one. 10k keys written by 32 nodes: 526 → ≈ 310 kB.
//!
//! Bytes: [`PACKED_STATE_VERSION`], then postcard. The version byte has its high bit set, so it
//! never equals the canonical encoding's [`foundation_crdt::FORMAT_VERSION`]: a state from an
//! earlier release, canonical, is still read. Earlier releases cannot read this one.

use std::borrow::Cow;
use std::collections::BTreeMap;

use foundation_crdt::{
    Canonical, DecodeError, EncodeError, InvariantError, LwwEntry, NodeId, Timestamp,
    FORMAT_VERSION,
};
use serde::{Deserialize, Serialize};

use super::wire::{Map, Value};

/// The first byte of a packed full state.
pub const PACKED_STATE_VERSION: u8 = 0x81;

/// A full state as it travels.
#[derive(Serialize, Deserialize)]
struct Packed<'a> {
    horizon: Timestamp,
    /// The newest wall time among the entries: each entry's is this less its age.
    newest_ms: u64,
    makers: Vec<Maker>,
    #[serde(borrow)]
    entries: Vec<Entry<'a>>,
}

/// Who made a write: the node, and for a live value the life that wrote it (a tombstone
/// names no life).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct Maker {
    node: NodeId,
    generation: Option<u64>,
}

#[derive(Serialize, Deserialize)]
struct Entry<'a> {
    #[serde(borrow)]
    key: Cow<'a, str>,
    age_ms: u64,
    logical: u32,
    /// Index into [`Packed::makers`].
    maker: u32,
    /// The value's bytes and seq; `None` for a tombstone. (Serde borrows only a `Cow` field
    /// itself, so decoding copies these bytes out; the wire is the same either way.)
    value: Option<(Cow<'a, [u8]>, u64)>,
}

/// Encodes `map` for a [`super::ReplicationMessage::FullState`].
pub fn encode(map: &Map) -> Result<Vec<u8>, EncodeError> {
    let newest_ms = map.entries().map(|(_, e)| e.ts.wall_ms).max().unwrap_or(0);
    let mut index: BTreeMap<Maker, u32> = BTreeMap::new();
    let mut makers = Vec::new();
    let mut entries = Vec::with_capacity(map.entry_count());
    for (key, entry) in map.entries() {
        let maker = maker_of(entry);
        let next = u32::try_from(makers.len()).unwrap_or(u32::MAX);
        let maker_index = *index.entry(maker).or_insert_with(|| {
            makers.push(maker);
            next
        });
        entries.push(Entry {
            key: Cow::Borrowed(key),
            age_ms: newest_ms - entry.ts.wall_ms,
            logical: entry.ts.logical,
            maker: maker_index,
            value: entry
                .value
                .as_ref()
                .map(|v| (Cow::Borrowed(v.bytes.as_slice()), v.seq)),
        });
    }
    let packed = Packed {
        horizon: map.horizon(),
        newest_ms,
        makers,
        entries,
    };
    Ok(postcard::to_extend(&packed, vec![PACKED_STATE_VERSION])?)
}

/// Decodes a full state: packed, or canonical from an earlier release. Refuses, with a typed
/// error and never a panic, whatever no map could have encoded.
pub fn decode(bytes: &[u8]) -> Result<Map, DecodeError> {
    match bytes.first() {
        Some(&FORMAT_VERSION) => Map::decode(bytes),
        Some(&PACKED_STATE_VERSION) => unpack(&bytes[1..]),
        Some(&found) => Err(DecodeError::UnsupportedVersion {
            found,
            supported: PACKED_STATE_VERSION,
        }),
        None => Err(DecodeError::Empty),
    }
}

fn unpack(body: &[u8]) -> Result<Map, DecodeError> {
    let (packed, rest): (Packed<'_>, _) = postcard::take_from_bytes(body)?;
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes(rest.len()));
    }
    let Packed {
        horizon,
        newest_ms,
        makers,
        entries,
    } = packed;
    let mut unpacked = Vec::with_capacity(entries.len());
    for entry in entries {
        unpacked.push(unpack_entry(entry, newest_ms, &makers)?);
    }
    Ok(Map::from_sorted_entries(horizon, unpacked)?)
}

fn unpack_entry(
    entry: Entry<'_>,
    newest_ms: u64,
    makers: &[Maker],
) -> Result<(String, LwwEntry<Value>), InvariantError> {
    let maker = usize::try_from(entry.maker)
        .ok()
        .and_then(|i| makers.get(i))
        .ok_or_else(|| InvariantError(format!("maker {} of {}", entry.maker, makers.len())))?;
    let wall_ms = newest_ms
        .checked_sub(entry.age_ms)
        .ok_or_else(|| InvariantError(format!("age {} ms above the newest", entry.age_ms)))?;
    let value = match (entry.value, maker.generation) {
        (Some((bytes, seq)), Some(generation)) => Some(Value {
            bytes: bytes.into_owned(),
            generation,
            seq,
        }),
        (None, None) => None,
        _ => {
            return Err(InvariantError(
                "a value's maker names no life, or a tombstone's does".to_owned(),
            ))
        }
    };
    let ts = Timestamp {
        wall_ms,
        logical: entry.logical,
        node: maker.node,
    };
    Ok((entry.key.into_owned(), LwwEntry { ts, value }))
}

fn maker_of(entry: &LwwEntry<Value>) -> Maker {
    Maker {
        node: entry.ts.node,
        generation: entry.value.as_ref().map(|v| v.generation),
    }
}

#[cfg(test)]
mod tests;
