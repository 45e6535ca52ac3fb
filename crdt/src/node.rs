//! The actor identity every replicated type is keyed by.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A stable node identity: the actor of every op and dot.
///
/// It must be a node's long-lived id, never an agent or request id: every type keeps at most one
/// small record per actor that ever wrote (a counter slot, a context entry), so short-lived actors
/// would grow state without bound until they are retired by epoch compaction.
///
/// Stored as 16 big-endian bytes so it encodes to a fixed 16 bytes (a `u128` would be a varint of
/// up to 19 bytes) and orders the same way as the `u128` it was built from.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeId(pub [u8; 16]);

impl NodeId {
    /// The smallest id; used as the node of horizon timestamps so they sort before any real event.
    pub const MIN: NodeId = NodeId([0; 16]);

    /// Builds an id from a `u128`, preserving its order.
    pub const fn from_u128(value: u128) -> Self {
        NodeId(value.to_be_bytes())
    }

    /// The id as a `u128`.
    pub const fn as_u128(self) -> u128 {
        u128::from_be_bytes(self.0)
    }
}

impl From<u128> for NodeId {
    fn from(value: u128) -> Self {
        NodeId::from_u128(value)
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({:x})", self.as_u128())
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.as_u128())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_matches_the_u128_it_came_from() {
        let a = NodeId::from_u128(1);
        let b = NodeId::from_u128(1 << 100);
        assert!(a < b);
        assert_eq!(b.as_u128(), 1 << 100);
    }
}
