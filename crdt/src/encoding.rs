//! Canonical, versioned encoding and digests.
//!
//! Bytes are one format-version byte followed by postcard. Every type in this crate keeps its
//! state in sorted structures (`BTreeMap`, `BTreeSet`) in a normal form (no empty entries, no
//! zero counters, compacted causal contexts), so equal states encode to equal bytes and a digest of
//! the bytes can stand in for the state during anti-entropy.

use serde::{de::DeserializeOwned, Serialize};

/// The format version written as the first byte. Bump it when any encoded type changes shape;
/// decoders refuse other versions rather than misreading them.
pub const FORMAT_VERSION: u8 = 1;

/// A decoded value broke one of its type's invariants (so it was not produced by this crate, or
/// was corrupted on the way).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invariant violated: {0}")]
pub struct InvariantError(pub String);

impl InvariantError {
    /// Returns `Err` with `what` unless `ok`.
    pub(crate) fn check(ok: bool, what: impl FnOnce() -> String) -> Result<(), InvariantError> {
        if ok {
            Ok(())
        } else {
            Err(InvariantError(what()))
        }
    }
}

/// Why bytes could not be decoded. Decoding never panics, whatever the input.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// No bytes at all: not even a version byte.
    #[error("empty input: expected a format-version byte")]
    Empty,
    /// Written by a different format version; upgrade the older node.
    #[error("unsupported format version {found} (this build reads version {supported})")]
    UnsupportedVersion {
        /// The version byte found.
        found: u8,
        /// [`FORMAT_VERSION`].
        supported: u8,
    },
    /// The body is not a valid postcard encoding of the expected type.
    #[error("malformed encoding: {0}")]
    Malformed(#[from] postcard::Error),
    /// The value decoded but bytes were left over, so the input was not one canonical value.
    #[error("{0} trailing bytes after the encoded value")]
    TrailingBytes(usize),
    /// The value decoded but is not a state or op this crate could have produced.
    #[error(transparent)]
    Invalid(#[from] InvariantError),
}

/// Serialising failed. Only possible when a user-supplied key or value type's `Serialize` impl
/// reports an error (for example a sequence of unknown length); the types of this crate never do.
#[derive(Debug, thiserror::Error)]
#[error("encoding failed: {0}")]
pub struct EncodeError(#[from] postcard::Error);

/// Canonical, versioned bytes for a state or op, checked on the way in.
pub trait Canonical: Serialize + DeserializeOwned {
    /// Checks the invariants every value of this type must satisfy; run after decoding.
    fn validate(&self) -> Result<(), InvariantError>;

    /// The version byte followed by the postcard encoding.
    fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let mut out = vec![FORMAT_VERSION];
        out.extend_from_slice(&postcard::to_allocvec(self)?);
        Ok(out)
    }

    /// Decodes bytes produced by [`Canonical::encode`], rejecting anything else with a typed error.
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let (&version, body) = bytes.split_first().ok_or(DecodeError::Empty)?;
        if version != FORMAT_VERSION {
            return Err(DecodeError::UnsupportedVersion {
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        let (value, rest): (Self, &[u8]) = postcard::take_from_bytes(body)?;
        if !rest.is_empty() {
            return Err(DecodeError::TrailingBytes(rest.len()));
        }
        value.validate()?;
        Ok(value)
    }

    /// A 64-bit FNV-1a hash of the canonical bytes: equal states have equal digests.
    ///
    /// Not cryptographic: it detects divergence between honest replicas, it does not authenticate.
    fn digest(&self) -> Result<u64, EncodeError> {
        Ok(fnv1a64(&self.encode()?))
    }
}

/// 64-bit FNV-1a: tiny, dependency-free, and good enough to tell unequal states apart.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.iter().fold(OFFSET_BASIS, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(PRIME)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_reference_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }
}
