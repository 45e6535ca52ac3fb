//! The stateless-reset key: the same in every life of a node, so a restart ends stale connections.
//!
//! A peer that kept a connection to this node's previous process keeps sending on it; the new
//! process does not know the connection and answers with a QUIC stateless reset, whose token is
//! an HMAC of the connection id under the endpoint's reset key. quinn draws that key at random
//! per process, so the peer cannot recognise the new process's reset and its sends vanish until
//! the idle timeout. Derived from what a node keeps across restarts (its id, and the cluster
//! secret or its own private key), the token matches and the peer drops the stale connection at
//! its next packet, then dials the new process.
//!
//! Only holders of that material can forge a reset: for a secret, the cluster's members; for
//! certificate files, the node itself.

use ring::{hkdf, hmac};

use foundation_core::identity::NodeId;

/// What the reset key is derived from, besides the node id.
pub(crate) struct ResetSeed(Vec<u8>);

impl ResetSeed {
    pub(crate) fn new(material: &[u8]) -> Self {
        Self(material.to_vec())
    }

    /// The reset key of node `id`: HKDF-SHA256 of the seed, expanded for this node alone.
    pub(crate) fn key(&self, id: NodeId) -> hmac::Key {
        let mut bytes = [0u8; 32];
        self.fill(id, b"stateless-reset", &mut bytes);
        hmac::Key::new(hmac::HMAC_SHA256, &bytes)
    }

    /// The key connection ids are signed with. A process answers a packet for a connection it
    /// does not know with a reset only when the id carries its signature (so random garbage
    /// draws no answer), hence it too must be the same in every life.
    pub(crate) fn connection_id_key(&self, id: NodeId) -> u64 {
        let mut bytes = [0u8; 8];
        self.fill(id, b"connection-id", &mut bytes);
        u64::from_be_bytes(bytes)
    }

    fn fill(&self, id: NodeId, purpose: &[u8], out: &mut [u8]) {
        let id = id.as_u128().to_be_bytes();
        let info = [purpose, id.as_slice()];
        hkdf::Salt::new(hkdf::HKDF_SHA256, b"foundation/stateless-reset/v1")
            .extract(&self.0)
            .expand(&info, Len(out.len()))
            .and_then(|okm| okm.fill(out))
            // Expansion fails only past 255 hash lengths; callers ask for at most one.
            .expect("at most one hash length is a valid HKDF output length");
    }
}

struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quinn_proto::crypto::HmacKey;

    fn token(key: &hmac::Key) -> Vec<u8> {
        let mut out = vec![0; key.signature_len()];
        key.sign(b"connection id", &mut out);
        out
    }

    #[test]
    fn the_same_node_gets_the_same_key_in_every_life_and_others_differ() {
        let seed = ResetSeed::new(b"cluster secret material");
        let me = NodeId::from_u128(7);
        assert_eq!(token(&seed.key(me)), token(&seed.key(me)));
        assert_ne!(token(&seed.key(me)), token(&seed.key(NodeId::from_u128(8))));
        let other = ResetSeed::new(b"another cluster's secret");
        assert_ne!(token(&seed.key(me)), token(&other.key(me)));
        assert_eq!(seed.connection_id_key(me), seed.connection_id_key(me));
        assert_ne!(seed.connection_id_key(me), other.connection_id_key(me));
    }
}
