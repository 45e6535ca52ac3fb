//! Keys for sealed membership datagrams: exported from a connection's TLS session, one per
//! direction, and the table a receiver finds them in by id.

use std::collections::{BTreeMap, VecDeque};

use quinn::Connection;

use super::codec::{OpeningKey, SealingKey, KEY_LEN};
use foundation_core::identity::NodeId;

/// The TLS exporter label (RFC 5705 / RFC 8446 §7.5). A new label is a new key schedule.
const EXPORTER_LABEL: &[u8] = b"EXPORTER-foundation-sealed-membership-v1";

/// Receive keys kept per peer: the newest ones, so datagrams sealed under the keys of a
/// connection that was just replaced (a duplicate that lost the tie-break, a reconnect) still
/// open while the sender moves to the new keys.
const KEYS_PER_PEER: usize = 4;

/// Both directions' keys of one connection, as this side uses them.
pub(crate) struct PairKeys {
    pub send: SealingKey,
    pub receive_id: u32,
    pub receive: OpeningKey,
}

impl PairKeys {
    /// Exports the keys from `conn`'s TLS session. Both ends compute the same material; the
    /// dialler seals with the first key and opens with the second, the acceptor the other way
    /// round, so the two directions never share a key (and so never a nonce). The keys exist
    /// only for this session of two authenticated peers: a datagram that opens under them was
    /// sealed by the node that proved its identity in that handshake.
    pub fn export(conn: &Connection, we_dialled: bool) -> Option<PairKeys> {
        let mut material = [0u8; 2 * KEY_LEN + 8];
        conn.export_keying_material(&mut material, EXPORTER_LABEL, b"")
            .ok()?;
        let (keys, ids) = material.split_at(2 * KEY_LEN);
        let key = |i: usize| -> [u8; KEY_LEN] {
            let mut k = [0u8; KEY_LEN];
            k.copy_from_slice(&keys[i * KEY_LEN..(i + 1) * KEY_LEN]);
            k
        };
        let id = |i: usize| {
            u32::from_be_bytes([ids[4 * i], ids[4 * i + 1], ids[4 * i + 2], ids[4 * i + 3]])
        };
        let (out, inb) = if we_dialled { (0, 1) } else { (1, 0) };
        Some(PairKeys {
            send: SealingKey::new(id(out), &key(out)),
            receive_id: id(inb),
            receive: OpeningKey::new(&key(inb)),
        })
    }
}

/// One receive key and the peer it belongs to.
struct Entry {
    peer: NodeId,
    key: OpeningKey,
}

/// Every receive key this node holds, by id. Ids are 32 bits from the exporter, so two peers'
/// keys may share one (rarely): each id holds a list, and a packet is tried against each key
/// of its id until one opens it.
#[derive(Default)]
pub(crate) struct KeyTable {
    by_id: BTreeMap<u32, Vec<Entry>>,
    /// Each peer's key ids, oldest first, at most [`KEYS_PER_PEER`].
    by_peer: BTreeMap<NodeId, VecDeque<u32>>,
}

impl KeyTable {
    /// Adds a receive key of `peer`, forgetting its oldest beyond [`KEYS_PER_PEER`].
    pub fn insert(&mut self, peer: NodeId, id: u32, key: OpeningKey) {
        self.by_id.entry(id).or_default().push(Entry { peer, key });
        let ids = self.by_peer.entry(peer).or_default();
        ids.push_back(id);
        if ids.len() > KEYS_PER_PEER {
            if let Some(old) = ids.pop_front() {
                self.remove_oldest(old, peer);
            }
        }
    }

    /// Removes `peer`'s key of id `id` (its oldest, when called from `insert`).
    fn remove_oldest(&mut self, id: u32, peer: NodeId) {
        let Some(entries) = self.by_id.get_mut(&id) else {
            return;
        };
        if let Some(i) = entries.iter().position(|e| e.peer == peer) {
            entries.remove(i);
        }
        if entries.is_empty() {
            self.by_id.remove(&id);
        }
    }

    /// Drops `peer`'s receive key of id `id`, leaving its others.
    pub fn remove(&mut self, peer: NodeId, id: u32) {
        let Some(ids) = self.by_peer.get_mut(&peer) else {
            return;
        };
        let Some(at) = ids.iter().position(|&held| held == id) else {
            return;
        };
        ids.remove(at);
        if ids.is_empty() {
            self.by_peer.remove(&peer);
        }
        self.remove_oldest(id, peer);
    }

    /// Drops every receive key of `peer`.
    pub fn forget(&mut self, peer: NodeId) {
        for id in self.by_peer.remove(&peer).unwrap_or_default() {
            self.remove_oldest(id, peer);
        }
    }

    /// Peers we hold receive keys of.
    pub fn peers(&self) -> usize {
        self.by_peer.len()
    }

    /// Opens a sealed packet with the keys of its id: the sender and the payload.
    pub fn open(
        &mut self,
        id: u32,
        counter: u64,
        packet: &[u8],
        max: usize,
    ) -> Result<(NodeId, Vec<u8>), super::codec::SealedError> {
        use super::codec::SealedError;
        let entries = self.by_id.get_mut(&id).ok_or(SealedError::UnknownKey(id))?;
        let mut refusal = SealedError::BadTag;
        for entry in entries {
            match entry.key.open(counter, packet, max) {
                Ok(payload) => return Ok((entry.peer, payload)),
                // A replay under the right key says more than a bad tag under another.
                Err(SealedError::Replay) => refusal = SealedError::Replay,
                Err(other) if refusal != SealedError::Replay => refusal = other,
                Err(_) => {}
            }
        }
        Err(refusal)
    }

    /// Receive keys held.
    #[cfg(test)]
    pub fn keys_held(&self) -> usize {
        self.by_id.values().map(Vec::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sealed::codec::{parse, Packet};

    fn opened(
        table: &mut KeyTable,
        packet: &[u8],
    ) -> Result<NodeId, crate::sealed::codec::SealedError> {
        let Ok(Packet::Sealed {
            key_id,
            counter,
            bytes,
        }) = parse(packet)
        else {
            panic!("sealed")
        };
        table
            .open(key_id, counter, bytes, 1200)
            .map(|(peer, _)| peer)
    }

    #[test]
    fn a_shared_id_finds_the_right_peer_and_old_keys_are_forgotten() {
        let (a, b) = (NodeId::from_u128(1), NodeId::from_u128(2));
        let mut table = KeyTable::default();
        table.insert(a, 5, OpeningKey::new(&[1; KEY_LEN]));
        table.insert(b, 5, OpeningKey::new(&[2; KEY_LEN]));
        let mut from_b = SealingKey::new(5, &[2; KEY_LEN]);
        assert_eq!(opened(&mut table, &from_b.seal(b"x").unwrap()), Ok(b));
        let mut from_a = SealingKey::new(5, &[1; KEY_LEN]);
        assert_eq!(opened(&mut table, &from_a.seal(b"x").unwrap()), Ok(a));
        for id in 6..10 {
            table.insert(a, id, OpeningKey::new(&[id as u8; KEY_LEN]));
        }
        assert_eq!(table.keys_held(), 5, "a keeps its 4 newest, b its one");
        assert_eq!(opened(&mut table, &from_b.seal(b"x").unwrap()), Ok(b));
        assert!(opened(&mut table, &from_a.seal(b"x").unwrap()).is_err());
        table.forget(a);
        assert_eq!(
            (table.keys_held(), table.peers()),
            (1, 1),
            "b's key alone is left"
        );
        assert_eq!(opened(&mut table, &from_b.seal(b"x").unwrap()), Ok(b));
        table.forget(b);
        assert_eq!((table.keys_held(), table.peers()), (0, 0));
        assert!(table.by_id.is_empty(), "no empty lists are left behind");
    }

    /// One key removed leaves the peer's others, and another peer's key of the same id.
    #[test]
    fn removing_one_key_leaves_the_others() {
        let (a, b) = (NodeId::from_u128(1), NodeId::from_u128(2));
        let mut table = KeyTable::default();
        table.insert(a, 5, OpeningKey::new(&[1; KEY_LEN]));
        table.insert(a, 6, OpeningKey::new(&[3; KEY_LEN]));
        table.insert(b, 5, OpeningKey::new(&[2; KEY_LEN]));
        table.remove(a, 5);
        let mut from_b = SealingKey::new(5, &[2; KEY_LEN]);
        assert_eq!(opened(&mut table, &from_b.seal(b"x").unwrap()), Ok(b));
        let mut from_a = SealingKey::new(6, &[3; KEY_LEN]);
        assert_eq!(opened(&mut table, &from_a.seal(b"x").unwrap()), Ok(a));
        assert_eq!((table.keys_held(), table.peers()), (2, 2));
        table.remove(a, 6);
        table.remove(a, 6);
        assert_eq!(
            (table.keys_held(), table.peers()),
            (1, 1),
            "a has none left"
        );
    }
}
