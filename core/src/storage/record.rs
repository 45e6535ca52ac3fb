//! How the durable state is laid out as key/value records, shared by every disk.
//!
//! Store keys (sorted, so one keyspace's records are contiguous):
//!
//! ```text
//!   0x01 name                          node metadata blob
//!   0x02 u16-be len, keyspace, name    keyspace metadata blob
//!   0x03 u16-be len, keyspace, key     entry
//! ```
//!
//! Record values: `[format = 1][xxh3-64 little-endian][payload]`. The checksum covers the store
//! key as well as the payload (it seeds the hash), so a value that ends up under another key is
//! caught as surely as a flipped bit. Every record is checked when it is loaded; one that fails
//! is dropped and reported, never returned.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

use super::error::StorageError;
use super::state::{LoadReport, StoredState};

/// Largest store key: the embedded store's own limit (fjall: 65,536 bytes).
pub const STORE_KEY_BYTES_MAX: usize = 65_536;
/// Largest value kept under one key: well under the embedded store's 4 GiB, since a whole
/// record is read into memory at start-up.
pub const VALUE_BYTES_MAX: usize = 64 << 20;

const TAG_NODE_META: u8 = 0x01;
const TAG_KEYSPACE_META: u8 = 0x02;
const TAG_ENTRY: u8 = 0x03;
const FORMAT: u8 = 1;
const HEADER_BYTES: usize = 1 + 8;

/// A change to the store's key space: what a [`super::Batch`] becomes before a disk sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RawOp {
    /// Sets a store key to a sealed record.
    Put(Vec<u8>, Vec<u8>),
    /// Removes a store key.
    Delete(Vec<u8>),
    /// Removes every key under each prefix (a keyspace's metadata and entries).
    DeleteKeyspace([Vec<u8>; 2]),
}

/// The store key of an entry.
pub fn entry_key(keyspace: &str, key: &[u8]) -> Result<Vec<u8>, StorageError> {
    let mut out = keyspace_prefix(TAG_ENTRY, keyspace)?;
    out.extend_from_slice(key);
    check_key(out)
}

/// The store key of a keyspace's metadata blob.
pub fn keyspace_meta_key(keyspace: &str, name: &str) -> Result<Vec<u8>, StorageError> {
    let mut out = keyspace_prefix(TAG_KEYSPACE_META, keyspace)?;
    out.extend_from_slice(name.as_bytes());
    check_key(out)
}

/// The store key of a node metadata blob.
pub fn node_meta_key(name: &str) -> Result<Vec<u8>, StorageError> {
    let mut out = vec![TAG_NODE_META];
    out.extend_from_slice(name.as_bytes());
    check_key(out)
}

/// The prefixes under which a keyspace's metadata and entries live.
pub fn keyspace_prefixes(keyspace: &str) -> Result<[Vec<u8>; 2], StorageError> {
    Ok([
        keyspace_prefix(TAG_KEYSPACE_META, keyspace)?,
        keyspace_prefix(TAG_ENTRY, keyspace)?,
    ])
}

fn keyspace_prefix(tag: u8, keyspace: &str) -> Result<Vec<u8>, StorageError> {
    let len = u16::try_from(keyspace.len()).map_err(|_| StorageError::TooLarge {
        what: "a keyspace name",
        bytes: keyspace.len(),
        max: u16::MAX as usize,
    })?;
    let mut out = Vec::with_capacity(3 + keyspace.len());
    out.push(tag);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(keyspace.as_bytes());
    Ok(out)
}

fn check_key(key: Vec<u8>) -> Result<Vec<u8>, StorageError> {
    if key.len() > STORE_KEY_BYTES_MAX {
        return Err(StorageError::TooLarge {
            what: "a key with its keyspace name",
            bytes: key.len(),
            max: STORE_KEY_BYTES_MAX,
        });
    }
    Ok(key)
}

/// The record stored under `key` for `payload`.
pub fn seal(key: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_BYTES + payload.len());
    out.push(FORMAT);
    out.extend_from_slice(&checksum(key, payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// The payload of the record under `key`, if it is intact.
pub fn open<'a>(key: &[u8], record: &'a [u8]) -> Result<&'a [u8], &'static str> {
    let (header, payload) = record
        .split_at_checked(HEADER_BYTES)
        .ok_or("record shorter than its header")?;
    let (format, sum) = header.split_at(1);
    if format[0] != FORMAT {
        return Err("unknown record format");
    }
    let mut stored = [0u8; 8];
    stored.copy_from_slice(sum);
    if u64::from_le_bytes(stored) != checksum(key, payload) {
        return Err("checksum mismatch");
    }
    Ok(payload)
}

fn checksum(key: &[u8], payload: &[u8]) -> u64 {
    xxh3_64_with_seed(payload, xxh3_64(key))
}

/// Applies raw changes to an ordered map of store keys (the simulated disk's image, and tests).
pub fn apply(map: &mut BTreeMap<Vec<u8>, Vec<u8>>, ops: &[RawOp]) {
    for op in ops {
        match op {
            RawOp::Put(key, value) => {
                map.insert(key.clone(), value.clone());
            }
            RawOp::Delete(key) => {
                map.remove(key);
            }
            RawOp::DeleteKeyspace(prefixes) => {
                for prefix in prefixes {
                    map.retain(|key, _| !key.starts_with(prefix));
                }
            }
        }
    }
}

/// Builds the state from store records, checking every one; a record that fails is dropped
/// and noted in `report`, never returned.
pub fn decode<'a>(
    records: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
    report: &mut LoadReport,
) -> StoredState {
    let mut state = StoredState::default();
    for (key, value) in records {
        decode_into(&mut state, key, value, report);
    }
    state
}

/// Adds one record to `state` if it is intact; otherwise notes it in `report`.
pub fn decode_into(state: &mut StoredState, key: &[u8], value: &[u8], report: &mut LoadReport) {
    match decode_one(state, key, value) {
        Ok(()) => report.records += 1,
        Err(reason) => report.drop_record(describe(key), reason),
    }
}

/// The records that hold `state`, sealed: what a fresh store is written with when a damaged one
/// is rebuilt from what could be read.
pub fn encode(state: &StoredState) -> Result<Vec<RawOp>, StorageError> {
    let mut ops = Vec::new();
    let mut put = |key: Vec<u8>, payload: &[u8]| {
        let sealed = seal(&key, payload);
        ops.push(RawOp::Put(key, sealed));
    };
    for (name, value) in &state.node {
        put(node_meta_key(name)?, value);
    }
    for (keyspace, stored) in &state.keyspaces {
        for (name, value) in &stored.meta {
            put(keyspace_meta_key(keyspace, name)?, value);
        }
        for (key, value) in &stored.entries {
            put(entry_key(keyspace, key)?, value);
        }
    }
    Ok(ops)
}

fn decode_one(state: &mut StoredState, key: &[u8], value: &[u8]) -> Result<(), &'static str> {
    let payload = open(key, value)?.to_vec();
    let (&tag, rest) = key.split_first().ok_or("empty key")?;
    match tag {
        TAG_NODE_META => {
            state.node.insert(utf8(rest)?, payload);
        }
        TAG_KEYSPACE_META => {
            // The name is checked before the keyspace is looked up: a dropped record must not
            // leave an empty keyspace behind in the state.
            let (keyspace, name) = split_keyspace(rest)?;
            let name = utf8(name)?;
            let meta = &mut state.keyspaces.entry(keyspace).or_default().meta;
            meta.insert(name, payload);
        }
        TAG_ENTRY => {
            let (keyspace, key) = split_keyspace(rest)?;
            let entries = &mut state.keyspaces.entry(keyspace).or_default().entries;
            entries.insert(key.to_vec(), payload);
        }
        _ => return Err("unknown key tag"),
    }
    Ok(())
}

fn split_keyspace(rest: &[u8]) -> Result<(String, &[u8]), &'static str> {
    let (len, rest) = rest.split_at_checked(2).ok_or("truncated key")?;
    let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
    let (name, tail) = rest.split_at_checked(len).ok_or("truncated key")?;
    Ok((utf8(name)?, tail))
}

fn utf8(bytes: &[u8]) -> Result<String, &'static str> {
    String::from_utf8(bytes.to_vec()).map_err(|_| "name is not UTF-8")
}

/// A short printable form of a store key for reports.
fn describe(key: &[u8]) -> String {
    const SHOWN: usize = 48;
    let shown = &key[..key.len().min(SHOWN)];
    let text: String = shown.escape_ascii().to_string();
    if key.len() > SHOWN {
        format!("{text}… ({} bytes)", key.len())
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_sealed_record_opens_to_its_payload() {
        let key = entry_key("config", b"k").unwrap();
        let sealed = seal(&key, b"payload");
        assert_eq!(open(&key, &sealed), Ok(&b"payload"[..]));
    }

    #[test]
    fn a_record_under_another_key_is_refused() {
        let key = entry_key("config", b"a").unwrap();
        let other = entry_key("config", b"b").unwrap();
        let sealed = seal(&key, b"payload");
        assert_eq!(open(&other, &sealed), Err("checksum mismatch"));
    }

    #[test]
    fn keyspaces_never_share_a_prefix() {
        // "ab" + key "c" must not collide with "a" + key "bc".
        assert_ne!(
            entry_key("ab", b"c").unwrap(),
            entry_key("a", b"bc").unwrap()
        );
    }

    #[test]
    fn oversized_names_and_keys_are_refused() {
        let long = "x".repeat(70_000);
        assert!(matches!(
            entry_key(&long, b"k"),
            Err(StorageError::TooLarge { .. })
        ));
        assert!(matches!(
            entry_key("k", &vec![0; 70_000]),
            Err(StorageError::TooLarge { .. })
        ));
    }

    /// Found by the `storage_records` fuzz target's property (a state written back loads the
    /// same): a metadata record whose name is not UTF-8 was dropped, but left its keyspace in
    /// the state, empty.
    #[test]
    fn a_dropped_record_leaves_no_empty_keyspace() {
        let mut key = keyspace_meta_key("config", "horizon").unwrap();
        let last = key.len() - 1;
        key[last] = 0xff;
        let value = seal(&key, b"payload");
        let mut report = LoadReport::default();
        let state = decode([(&key[..], &value[..])], &mut report);
        assert_eq!(report.dropped_records, 1);
        assert_eq!(state, StoredState::default());
    }

    #[test]
    fn decode_builds_the_state_and_drops_bad_records() {
        let mut map = BTreeMap::new();
        let ops = [
            RawOp::Put(
                node_meta_key("id").unwrap(),
                seal(&node_meta_key("id").unwrap(), b"n1"),
            ),
            put_entry("config", b"a", b"1"),
            put_entry("config", b"b", b"2"),
        ];
        apply(&mut map, &ops);
        let bad_key = entry_key("config", b"b").unwrap();
        if let Some(value) = map.get_mut(&bad_key) {
            let last = value.len() - 1;
            value[last] ^= 0x40;
        }
        let mut report = LoadReport::default();
        let state = decode(map.iter().map(|(k, v)| (&k[..], &v[..])), &mut report);
        assert_eq!(state.node.get("id").map(Vec::as_slice), Some(&b"n1"[..]));
        let config = &state.keyspaces["config"];
        assert_eq!(
            config.entries.get(&b"a"[..]).map(Vec::as_slice),
            Some(&b"1"[..])
        );
        assert!(!config.entries.contains_key(&b"b"[..]));
        assert_eq!((report.records, report.dropped_records), (2, 1));
    }

    #[test]
    fn encoding_a_state_and_decoding_it_gives_it_back() {
        let mut state = StoredState::default();
        state.node.insert("origin".into(), b"o".to_vec());
        let ks = state.keyspaces.entry("config".into()).or_default();
        ks.meta.insert("seen".into(), b"s".to_vec());
        ks.entries.insert(b"k".to_vec(), b"v".to_vec());
        let mut map = BTreeMap::new();
        apply(&mut map, &encode(&state).unwrap());
        let mut report = LoadReport::default();
        let decoded = decode(map.iter().map(|(k, v)| (&k[..], &v[..])), &mut report);
        assert_eq!(decoded, state);
        assert!(report.is_clean());
    }

    fn put_entry(keyspace: &str, key: &[u8], value: &[u8]) -> RawOp {
        let store_key = entry_key(keyspace, key).unwrap();
        let sealed = seal(&store_key, value);
        RawOp::Put(store_key, sealed)
    }

    proptest! {
        #[test]
        fn any_single_bit_flip_is_caught(payload in proptest::collection::vec(any::<u8>(), 0..64), bit in 0usize..1000) {
            let key = entry_key("ks", b"key").unwrap();
            let mut sealed = seal(&key, &payload);
            let bit = bit % (sealed.len() * 8);
            sealed[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(open(&key, &sealed).is_err());
        }

        #[test]
        fn decode_never_panics_on_garbage(
            records in proptest::collection::vec(
                (proptest::collection::vec(any::<u8>(), 0..12), proptest::collection::vec(any::<u8>(), 0..24)),
                0..16,
            )
        ) {
            let mut report = LoadReport::default();
            let _ = decode(records.iter().map(|(k, v)| (&k[..], &v[..])), &mut report);
            prop_assert_eq!(report.records + report.dropped_records, records.len());
        }
    }
}
