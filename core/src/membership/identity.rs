//! The identity foca gossips about: a node id, where it listens, and a generation that tells a
//! restarted node from its previous life.

use std::net::SocketAddr;

use crate::{NodeAddr, NodeId};
use serde::{Deserialize, Serialize};

/// One incarnation of a node as SWIM knows it.
///
/// `generation` grows each time the node starts (the runtime uses its start time in seconds,
/// the simulator a counter) and when the node must rejoin after being declared failed, so the
/// cluster can tell the new life from the old one.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub struct MemberId {
    /// The node.
    pub node: NodeId,
    /// Its advertised address.
    pub addr: SocketAddr,
    /// Which life of the node this is.
    pub generation: u64,
}

impl MemberId {
    /// The node's transport address.
    pub fn node_addr(&self) -> NodeAddr {
        NodeAddr {
            id: self.node,
            addr: self.addr,
        }
    }

    /// Whether `other` names a life that cannot answer: one of ours (our node id — SWIM keeps
    /// our previous life, renewed or restarted, as a down member and announces to it), or
    /// another node listed at our address, which we hold: a previous life of whoever held it.
    pub fn is_past_life(&self, other: NodeAddr) -> bool {
        other.id == self.node || other.addr == self.addr
    }
}

impl foca::Identity for MemberId {
    // Two identities with the same node id are the same node: foca keeps only the winner.
    type Addr = NodeId;

    fn renew(&self) -> Option<Self> {
        Some(MemberId {
            generation: self.generation.wrapping_add(1),
            ..*self
        })
    }

    fn addr(&self) -> NodeId {
        self.node
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        self.generation > adversary.generation
    }
}
