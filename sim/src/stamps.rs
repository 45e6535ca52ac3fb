//! The stamps of its own writes a node lets out: read off the replication messages it sends, as
//! a peer would read them, so a check of them depends on nothing inside the engine.
//!
//! A stamp a node sent is out of its hands: a peer may keep it, and any later write of the same
//! key by that node must be stamped above it or lose to it. [`own_ops`] finds, in one sent
//! payload, the ops of the sender's running life (relayed ops of other origins and of its past
//! lives are not its to stamp now); the world hands each one to the invariants as a [`LetOut`]
//! (`invariants::stamps`).

use foundation_core::envelope;
use foundation_core::replication::{full_state, Envelope, Origin, ReplicationMessage};
use foundation_crdt::Timestamp;

/// One op of a node's running life in a message it sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LetOut {
    /// World time of the send, in µs.
    pub at_us: u64,
    /// The sender's slot.
    pub slot: usize,
    /// The sender's life ([`crate::world::SimNode::life`]).
    pub life: u64,
    /// The sender's life as its origin names it.
    pub origin: Origin,
    /// The op's keyspace.
    pub keyspace: String,
    /// The op's seq in its origin's sequence of that keyspace.
    pub seq: u64,
    /// Its stamp.
    pub ts: Timestamp,
    /// The message that carried it (`push`, `ack request`, `repair`, `full state`).
    pub how: &'static str,
}

/// Postcard's variant indexes of [`ReplicationMessage`] (one byte each below 128): peeked so
/// that digests and acks, most of the traffic and never an op, are not decoded.
const OPS: u8 = 0;
const FULL_STATE: u8 = 2;
const ACK_REQUEST: u8 = 3;
const REPAIR: u8 = 5;

/// The ops of `origin` (the sender's running life) in a replication payload it sent, as
/// `(keyspace, seq, stamp, message kind)`. Anything that does not decode yields nothing: the
/// receiver refuses it too. A full state's tombstones carry no origin, so they are left out.
pub fn own_ops(payload: &[u8], origin: Origin) -> Vec<(String, u64, Timestamp, &'static str)> {
    let (Some(&envelope::REPLICATION), Some(&kind)) = (payload.first(), payload.get(1)) else {
        return Vec::new();
    };
    if !matches!(kind, OPS | FULL_STATE | ACK_REQUEST | REPAIR) {
        return Vec::new();
    }
    match postcard::from_bytes::<ReplicationMessage>(&payload[1..]) {
        Ok(ReplicationMessage::Ops(ops)) => envelopes(ops, origin, "push"),
        Ok(ReplicationMessage::AckRequest(ops)) => envelopes(ops, origin, "ack request"),
        Ok(ReplicationMessage::Repair(ops)) => envelopes(ops, origin, "repair"),
        Ok(ReplicationMessage::FullState {
            keyspace, state, ..
        }) => state_entries(keyspace, &state, origin),
        _ => Vec::new(),
    }
}

fn envelopes(
    ops: Vec<Envelope>,
    origin: Origin,
    how: &'static str,
) -> Vec<(String, u64, Timestamp, &'static str)> {
    ops.into_iter()
        .filter(|e| e.origin == origin)
        .map(|e| (e.keyspace, e.seq, e.op.entry.ts, how))
        .collect()
}

fn state_entries(
    keyspace: String,
    state: &[u8],
    origin: Origin,
) -> Vec<(String, u64, Timestamp, &'static str)> {
    let Ok(map) = full_state::decode(state) else {
        return Vec::new();
    };
    map.entries()
        .filter_map(|(_, entry)| {
            let value = entry.value.as_ref()?;
            let ours = entry.ts.node == origin.node && value.generation == origin.generation;
            ours.then(|| (keyspace.clone(), value.seq, entry.ts, "full state"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use foundation_core::replication::{encode, Op};
    use foundation_crdt::{LwwEntry, NodeId};

    fn op(origin: Origin, seq: u64, wall_ms: u64) -> Envelope {
        let ts = Timestamp {
            wall_ms,
            logical: 0,
            node: origin.node,
        };
        Envelope {
            keyspace: "k".into(),
            origin,
            seq,
            epoch: 0,
            op: Op {
                key: format!("key{seq}"),
                entry: LwwEntry {
                    ts,
                    value: Some(vec![1]),
                },
            },
        }
    }

    #[test]
    fn only_the_running_lifes_ops_are_its_own() {
        let node = NodeId::from_u128(7);
        let now = Origin {
            node,
            generation: 2,
        };
        let past = Origin {
            node,
            generation: 1,
        };
        let other = Origin {
            node: NodeId::from_u128(8),
            generation: 2,
        };
        let message =
            ReplicationMessage::Repair(vec![op(past, 1, 10), op(now, 3, 20), op(other, 4, 30)]);
        let found = own_ops(&encode(message), now);
        assert_eq!(found.len(), 1);
        assert_eq!(
            (found[0].1, found[0].2.wall_ms, found[0].3),
            (3, 20, "repair")
        );
    }

    #[test]
    fn digests_acks_and_garbage_yield_nothing() {
        let origin = Origin {
            node: NodeId::from_u128(7),
            generation: 1,
        };
        let ack = ReplicationMessage::Ack {
            keyspace: "k".into(),
            origin,
            seq: 1,
        };
        assert!(own_ops(&encode(ack), origin).is_empty());
        assert!(own_ops(&[envelope::REPLICATION, OPS, 0xff, 0xff], origin).is_empty());
        assert!(own_ops(&[], origin).is_empty());
    }
}
