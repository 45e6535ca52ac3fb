//! Decoding node metadata without allocating a copy of a value already decoded.
//!
//! Every full push-pull carries every member's metadata, and nearly all of it is what the
//! receiver holds already (at a mass join, N entries per exchange, N exchanges per probe
//! period). Decoding each entry afresh allocated its strings, tag map and `Arc` only to drop
//! them after the version test: a fifth of the simulator's time at N=1000. Here an entry's
//! bytes are looked up among the encodings of values decoded recently on this thread, and an
//! equal value is shared instead of rebuilt. Equal values are indistinguishable, so what a
//! node does is unchanged; the table is only looked up, never iterated.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::Arc;

use serde::{Deserialize, Deserializer};

use super::metadata::NodeMetadata;
use super::swim::IdHashing;

/// Distinct values remembered per thread; past it the table starts over (values repeat within
/// a message and across a cluster's messages, so a small table catches nearly all).
const REMEMBERED_MAX: usize = 4096;

thread_local! {
    static RECENT: RefCell<Recent> = RefCell::default();
}

/// Values decoded lately on this thread, by a seeded xxh3 hash of their postcard encoding,
/// which is kept to compare: a push-pull's entry is then looked up by one hash of its bytes
/// and one comparison of them, without decoding it (measured: hashing a value field by field,
/// a hash call per field, cost more than reading it). A key that collides only costs a miss.
#[derive(Default)]
struct Recent {
    keys: IdHashing,
    values: HashMap<u64, Remembered, BuildHasherDefault<KeyIsHash>>,
}

/// A value and its encoding.
struct Remembered {
    value: Arc<NodeMetadata>,
    encoded: Box<[u8]>,
}

impl Recent {
    fn key(&self, encoded: &[u8]) -> u64 {
        let mut hasher = self.keys.build_hasher();
        hasher.write(encoded);
        hasher.finish()
    }
}

/// The map's keys are seeded hashes already: each is its own hash.
#[derive(Default)]
struct KeyIsHash(u64);

impl Hasher for KeyIsHash {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `u64` keys reach this hasher (through `write_u64`); kept total for the trait.
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }

    fn write_u64(&mut self, key: u64) {
        self.0 = key;
    }
}

/// The value remembered for `encoded` if `accept` takes it, or else `decode`'s, remembered
/// from now on. `decode` must not decode metadata itself (the table is borrowed meanwhile).
pub(super) fn remembered<E>(
    encoded: &[u8],
    accept: impl FnOnce(&NodeMetadata) -> bool,
    decode: impl FnOnce() -> Result<NodeMetadata, E>,
) -> Result<Arc<NodeMetadata>, E> {
    RECENT.with_borrow_mut(|recent| {
        let key = recent.key(encoded);
        if let Some(held) = recent.values.get(&key) {
            if *held.encoded == *encoded && accept(&held.value) {
                return Ok(held.value.clone());
            }
        }
        let value = Arc::new(decode()?);
        if recent.values.len() >= REMEMBERED_MAX {
            recent.values.clear();
        }
        let encoded = encoded.into();
        let held = value.clone();
        recent.values.insert(
            key,
            Remembered {
                value: held,
                encoded,
            },
        );
        Ok(value)
    })
}

/// Values decoded on this thread equal to `value` are `value` itself from now on: the one
/// shared process-wide ([`super::SharedMetadata`]), so that sharing them there finds the same
/// allocation instead of comparing contents.
pub(super) fn prefer(value: &Arc<NodeMetadata>) {
    let Ok(encoded) = postcard::to_stdvec(&**value) else {
        return;
    };
    RECENT.with_borrow_mut(|recent| {
        let key = recent.key(&encoded);
        if let Some(held) = recent.values.get_mut(&key) {
            if *held.encoded == *encoded && *held.value == **value {
                held.value = value.clone();
            }
        }
    })
}

/// Decodes a [`NodeMetadata`] exactly as its derived `Deserialize` does, sharing the value if
/// an equal one was decoded recently on this thread. For messages other than push-pulls, whose
/// entries `table_codec` looks up by their bytes before decoding them: here the value is
/// decoded first (any format), then encoded to be looked up, and shared only if equal (an
/// IPv6 scope, which postcard does not carry, may tell equal encodings apart).
pub(super) fn shared<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Arc<NodeMetadata>, D::Error> {
    let value = NodeMetadata::deserialize(deserializer)?;
    let Ok(encoded) = postcard::to_stdvec(&value) else {
        return Ok(Arc::new(value));
    };
    remembered(&encoded, |held| *held == value, || Ok(value.clone()))
}

#[cfg(test)]
mod tests {
    use super::super::metadata::Versioned;
    use super::*;

    fn metadata(name: Option<&str>, tags: &[(&str, &str)], http: bool) -> NodeMetadata {
        NodeMetadata {
            name: name.map(str::to_owned),
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            version: "1.2.3".into(),
            http: http.then(|| "127.0.0.1:8080".parse().expect("an address")),
        }
    }

    /// Every value decodes to itself through postcard and JSON, equal values decoded twice
    /// share one allocation, and values that differ in any field do not.
    #[test]
    fn decodes_as_the_derived_impl_and_shares_equal_values() {
        let values = [
            metadata(None, &[], false),
            metadata(Some("a"), &[], false),
            metadata(Some("a"), &[("zone", "eu-1")], false),
            metadata(Some("a"), &[("zone", "eu-2")], false),
            metadata(Some("a"), &[("zone", "eu-2"), ("gpu", "true")], true),
            metadata(Some("quote\"d"), &[], true),
        ];
        let mut decoded = Vec::new();
        for (i, value) in values.iter().enumerate() {
            let versioned = Versioned {
                version: i as u64,
                metadata: Arc::new(value.clone()),
            };
            let bytes = postcard::to_stdvec(&versioned).expect("encodes");
            let once: Versioned = postcard::from_bytes(&bytes).expect("decodes");
            let twice: Versioned = postcard::from_bytes(&bytes).expect("decodes");
            assert_eq!(once, versioned);
            assert!(Arc::ptr_eq(&once.metadata, &twice.metadata));
            let json = serde_json::to_string(&versioned).expect("encodes");
            let from_json: Versioned = serde_json::from_str(&json).expect("decodes");
            assert_eq!(from_json, versioned);
            decoded.push(once.metadata);
        }
        // A value preferred is what its equals decode to from then on.
        let preferred = Arc::new(values[2].clone());
        prefer(&preferred);
        let versioned = Versioned {
            version: 2,
            metadata: preferred.clone(),
        };
        let bytes = postcard::to_stdvec(&versioned).expect("encodes");
        let again: Versioned = postcard::from_bytes(&bytes).expect("decodes");
        assert!(Arc::ptr_eq(&again.metadata, &preferred));
        for (i, a) in decoded.iter().enumerate() {
            for b in &decoded[i + 1..] {
                assert!(!Arc::ptr_eq(a, b));
            }
        }
    }
}
