//! Decoding node metadata without allocating a copy of a value already decoded.
//!
//! Every full push-pull carries every member's metadata, and nearly all of it is what the
//! receiver holds already (at a mass join, N entries per exchange, N exchanges per probe
//! period). Decoding each entry afresh allocated its strings, tag map and `Arc` only to drop
//! them after the version test: a fifth of the simulator's time at N=1000. Here an entry is
//! read borrowing its strings from the message, and a value equal to one decoded recently on
//! this thread is shared instead of rebuilt. Equal values are indistinguishable, so what a
//! node does is unchanged; the table is only looked up, never iterated.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;

use serde::{Deserialize, Deserializer};

use super::metadata::NodeMetadata;
use super::swim::IdHashing;

/// Distinct values remembered per thread; past it the table starts over (values repeat within
/// a message and across a cluster's messages, so a small table catches nearly all).
const REMEMBERED_MAX: usize = 4096;

/// [`NodeMetadata`] as encoded, its strings borrowed where the format allows.
#[derive(Deserialize, Hash)]
pub(super) struct Borrowed<'a> {
    #[serde(borrow)]
    pub name: Option<Str<'a>>,
    #[serde(borrow)]
    pub tags: BTreeMap<Str<'a>, Str<'a>>,
    #[serde(borrow)]
    pub version: Str<'a>,
    pub http: Option<SocketAddr>,
}

/// A string borrowed from the input when the format hands one out (postcard does), copied
/// otherwise (JSON with escapes). serde's own `Cow<str>` always copies inside an `Option` or a
/// map.
#[derive(Hash, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Str<'a>(pub Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Visitor<'a> {
            type Value = Str<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: serde::de::Error>(
                self,
                s: &'de str,
            ) -> Result<Self::Value, E> {
                Ok(Str(Cow::Borrowed(s)))
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E: serde::de::Error>(self, s: String) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(s)))
            }
        }
        deserializer.deserialize_str(Visitor(std::marker::PhantomData))
    }
}

impl Borrowed<'_> {
    fn matches(&self, value: &NodeMetadata) -> bool {
        self.name.as_ref().map(|s| &*s.0) == value.name.as_deref()
            && self.version.0 == value.version
            && self.http == value.http
            && self.tags.len() == value.tags.len()
            && self
                .tags
                .iter()
                .zip(&value.tags)
                .all(|((k, v), (vk, vv))| k.0 == **vk && v.0 == **vv)
    }

    fn owned(self) -> NodeMetadata {
        NodeMetadata {
            name: self.name.map(|s| s.0.into_owned()),
            tags: self
                .tags
                .into_iter()
                .map(|(k, v)| (k.0.into_owned(), v.0.into_owned()))
                .collect(),
            version: self.version.0.into_owned(),
            http: self.http,
        }
    }

    fn key(&self, recent: &Recent) -> u64 {
        recent.keys.hash_one(self)
    }
}

/// [`Borrowed::key`] of `value` encoded: its fields hashed in the same order, each as its
/// borrowed twin hashes (a `String` as the `str` it holds).
fn key_of(value: &NodeMetadata, recent: &Recent) -> u64 {
    let fields = (&value.name, &value.tags, &value.version, &value.http);
    recent.keys.hash_one(fields)
}

/// Values decoded on this thread equal to `value` are `value` itself from now on: the one
/// shared process-wide ([`super::SharedMetadata`]), so that sharing them there finds the same
/// allocation instead of comparing contents.
pub(super) fn prefer(value: &Arc<NodeMetadata>) {
    RECENT.with_borrow_mut(|recent| {
        let key = key_of(value, recent);
        if let Some(held) = recent.values.get_mut(&key) {
            if **held == **value {
                *held = value.clone();
            }
        }
    })
}

thread_local! {
    static RECENT: RefCell<Recent> = RefCell::default();
}

/// Values decoded lately on this thread, by a hash of their contents. Hashed by seeded xxh3,
/// not SipHash, and only once: hashing every decoded entry twice (contents, then the key in the
/// map) was a twentieth of a mass join's instructions (N=300). A key that collides only costs a
/// miss.
#[derive(Default)]
struct Recent {
    keys: IdHashing,
    values: HashMap<u64, Arc<NodeMetadata>, BuildHasherDefault<KeyIsHash>>,
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

/// Decodes a [`NodeMetadata`] exactly as its derived `Deserialize` does, sharing the value if
/// an equal one was decoded recently on this thread.
pub(super) fn shared<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Arc<NodeMetadata>, D::Error> {
    Borrowed::deserialize(deserializer).map(share)
}

/// `borrowed` as an owned value, shared if an equal one was decoded recently on this thread.
pub(super) fn share(borrowed: Borrowed<'_>) -> Arc<NodeMetadata> {
    RECENT.with_borrow_mut(|recent| {
        let key = borrowed.key(recent);
        if let Some(value) = recent.values.get(&key).filter(|v| borrowed.matches(v)) {
            return value.clone();
        }
        if recent.values.len() >= REMEMBERED_MAX {
            recent.values.clear();
        }
        let value = Arc::new(borrowed.owned());
        recent.values.insert(key, value.clone());
        value
    })
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
            let encoded = postcard::to_stdvec(value).expect("encodes");
            let borrowed: Borrowed = postcard::from_bytes(&encoded).expect("decodes");
            RECENT.with_borrow(|recent| assert_eq!(borrowed.key(recent), key_of(value, recent)));
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
