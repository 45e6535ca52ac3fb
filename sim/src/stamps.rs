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
use foundation_crdt::{NodeId, Timestamp};

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

/// The origins one life of a node writes under: the generation it started with and, if it was
/// declared failed and renewed, each one after it up to its current one. A restart under the
/// same id starts above every generation of the life before (`faults::restart`), so no other
/// life's origin falls in the range.
#[derive(Clone, Copy, Debug)]
pub struct LifeOrigins {
    /// The node.
    pub node: NodeId,
    /// The generation the life started with.
    pub first: u64,
    /// Its current one.
    pub last: u64,
}

impl LifeOrigins {
    fn holds(&self, origin: Origin) -> bool {
        origin.node == self.node && (self.first..=self.last).contains(&origin.generation)
    }
}

/// One op of the running life in a sent payload: its origin, keyspace, seq, stamp, and the
/// kind of message that carried it.
pub type OwnOp = (Origin, String, u64, Timestamp, &'static str);

/// Postcard's variant indexes of [`ReplicationMessage`] (one byte each below 128): peeked so
/// that digests and acks, most of the traffic and never an op, are not decoded.
const OPS: u8 = 0;
const FULL_STATE: u8 = 2;
const ACK_REQUEST: u8 = 3;
const REPAIR: u8 = 5;

/// The ops of `life` (the sender's running life) in a replication payload it sent. Anything
/// that does not decode yields nothing: the receiver refuses it too. A full state's tombstones
/// carry no origin, so they are left out.
pub fn own_ops(payload: &[u8], life: LifeOrigins) -> Vec<OwnOp> {
    let (Some(&envelope::REPLICATION), Some(&kind)) = (payload.first(), payload.get(1)) else {
        return Vec::new();
    };
    if !matches!(kind, OPS | FULL_STATE | ACK_REQUEST | REPAIR) {
        return Vec::new();
    }
    match postcard::from_bytes::<ReplicationMessage>(&payload[1..]) {
        Ok(ReplicationMessage::Ops(ops)) => envelopes(ops, life, "push"),
        Ok(ReplicationMessage::AckRequest(ops)) => envelopes(ops, life, "ack request"),
        Ok(ReplicationMessage::Repair(ops)) => envelopes(ops, life, "repair"),
        Ok(ReplicationMessage::FullState {
            keyspace, state, ..
        }) => state_entries(keyspace, &state, life),
        _ => Vec::new(),
    }
}

fn envelopes(ops: Vec<Envelope>, life: LifeOrigins, how: &'static str) -> Vec<OwnOp> {
    ops.into_iter()
        .filter(|e| life.holds(e.origin))
        .map(|e| (e.origin, e.keyspace, e.seq, e.op.entry.ts, how))
        .collect()
}

fn state_entries(keyspace: String, state: &[u8], life: LifeOrigins) -> Vec<OwnOp> {
    let Ok(map) = full_state::decode(state) else {
        return Vec::new();
    };
    map.entries()
        .filter_map(|(_, entry)| {
            let value = entry.value.as_ref()?;
            let origin = Origin {
                node: entry.ts.node,
                generation: value.generation,
            };
            let ours = life.holds(origin);
            ours.then(|| (origin, keyspace.clone(), value.seq, entry.ts, "full state"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use foundation_core::replication::{encode, Op};
    use foundation_crdt::LwwEntry;

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

    /// The running life started at generation 2 and renewed to 3: its ops under both are its
    /// own; the life before's (1) and another node's are not.
    #[test]
    fn only_the_running_lifes_ops_are_its_own() {
        let node = NodeId::from_u128(7);
        let origin = |generation| Origin { node, generation };
        let other = Origin {
            node: NodeId::from_u128(8),
            generation: 2,
        };
        let message = ReplicationMessage::Repair(vec![
            op(origin(1), 1, 10),
            op(origin(2), 3, 20),
            op(origin(3), 1, 25),
            op(other, 4, 30),
        ]);
        let life = LifeOrigins {
            node,
            first: 2,
            last: 3,
        };
        let found: Vec<_> = own_ops(&encode(message), life)
            .into_iter()
            .map(|(origin, _, seq, ts, how)| (origin.generation, seq, ts.wall_ms, how))
            .collect();
        assert_eq!(found, [(2, 3, 20, "repair"), (3, 1, 25, "repair")]);
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
        let life = LifeOrigins {
            node: origin.node,
            first: 1,
            last: 1,
        };
        assert!(own_ops(&encode(ack), life).is_empty());
        assert!(own_ops(&[envelope::REPLICATION, OPS, 0xff, 0xff], life).is_empty());
        assert!(own_ops(&[], life).is_empty());
    }
}
