//! Who a node is: its id, the cluster it belongs to, and the address peers reach it at.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A node's identifier: 128 random bits unless the operator configures a stable one.
///
/// Ordered, so that rules which must pick one of two nodes (which of two simultaneous
/// connections survives, for instance) pick the same one on both sides.
///
/// Held as two 64-bit halves, the high one first (so the derived order is the 128-bit
/// number's), rather than a `u128`: a `u128` is aligned to 16 bytes, which pads every record
/// holding an id next to 8-byte fields — and every node keeps a few such records per member.
/// It encodes, hashes and orders exactly as the `u128` does.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(from = "NodeIdWire", into = "NodeIdWire")]
pub struct NodeId {
    high: u64,
    low: u64,
}

/// How a [`NodeId`] is encoded: a newtype of its 128-bit value.
#[derive(Clone, Copy, Serialize, Deserialize)]
#[serde(rename = "NodeId")]
struct NodeIdWire(u128);

impl From<NodeIdWire> for NodeId {
    fn from(wire: NodeIdWire) -> Self {
        Self::from_u128(wire.0)
    }
}

impl From<NodeId> for NodeIdWire {
    fn from(id: NodeId) -> Self {
        Self(id.as_u128())
    }
}

impl std::hash::Hash for NodeId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_u128().hash(state);
    }
}

impl NodeId {
    /// A node id from its 128-bit value.
    pub const fn from_u128(value: u128) -> Self {
        Self {
            high: (value >> 64) as u64,
            low: value as u64,
        }
    }

    /// A fresh random id from the operating system's entropy.
    ///
    /// This is the edge of the system: protocol code receives ids, it never draws them.
    pub fn random() -> Self {
        Self::from_u128(rand::random())
    }

    /// The 128-bit value.
    pub const fn as_u128(self) -> u128 {
        ((self.high as u128) << 64) | self.low as u128
    }

    /// The first eight hex digits, for logs and tables where the full id is noise.
    pub fn short(self) -> String {
        format!("{:08x}", (self.high >> 32) as u32)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.as_u128())
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({})", self.short())
    }
}

/// Why a string is not a node id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid node id {input:?}: expected 1 to 32 hex digits")]
pub struct ParseNodeIdError {
    input: String,
}

impl FromStr for NodeId {
    type Err = ParseNodeIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || ParseNodeIdError {
            input: s.to_owned(),
        };
        if s.is_empty() || s.len() > 32 {
            return Err(invalid());
        }
        u128::from_str_radix(s, 16)
            .map(Self::from_u128)
            .map_err(|_| invalid())
    }
}

/// The name of a cluster. Nodes only ever talk to nodes of the same cluster.
///
/// It is used as a DNS label inside certificates, so it follows the DNS label rules:
/// 1 to 63 characters from `a-z`, `0-9` and `-`, not starting or ending with `-`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ClusterName(String);

/// Why a string is not a cluster name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid cluster name {input:?}: {reason}")]
pub struct ClusterNameError {
    input: String,
    reason: &'static str,
}

impl ClusterName {
    /// Longest name that fits a DNS label.
    pub const MAX_LEN: usize = 63;

    /// Validates `name` and wraps it.
    pub fn new(name: impl Into<String>) -> Result<Self, ClusterNameError> {
        let name = name.into();
        match Self::problem(&name) {
            Some(reason) => Err(ClusterNameError {
                input: name,
                reason,
            }),
            None => Ok(Self(name)),
        }
    }

    fn problem(name: &str) -> Option<&'static str> {
        if name.is_empty() {
            return Some("it is empty");
        }
        if name.len() > Self::MAX_LEN {
            return Some("it is longer than 63 characters");
        }
        let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
        if !name.chars().all(allowed) {
            return Some("only lowercase letters, digits and '-' are allowed");
        }
        if name.starts_with('-') || name.ends_with('-') {
            return Some("it must not start or end with '-'");
        }
        None
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The DNS name every certificate of this cluster carries, and that peers check.
    pub fn certificate_dns_name(&self) -> String {
        format!("{}.foundation", self.0)
    }
}

impl fmt::Display for ClusterName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ClusterName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClusterName({})", self.0)
    }
}

impl FromStr for ClusterName {
    type Err = ClusterNameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

/// A node id together with the address it can be reached at.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub struct NodeAddr {
    /// The node.
    pub id: NodeId,
    /// Its advertised UDP address.
    pub addr: SocketAddr,
}

impl fmt::Display for NodeAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.id.short(), self.addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_id_round_trips_through_text() {
        let id = NodeId::from_u128(0x0123_4567_89ab_cdef_0011_2233_4455_6677);
        assert_eq!(id.to_string().parse::<NodeId>(), Ok(id));
        assert_eq!(id.short(), "01234567");
    }

    #[test]
    fn node_id_encodes_orders_and_hashes_as_its_u128() {
        use std::hash::{DefaultHasher, Hash, Hasher};
        let hash = |value: &dyn Fn(&mut DefaultHasher)| {
            let mut hasher = DefaultHasher::new();
            value(&mut hasher);
            hasher.finish()
        };
        let values = [
            0,
            1,
            u128::from(u64::MAX),
            1 << 64,
            (1 << 64) + 1,
            u128::MAX - 1,
            u128::MAX,
        ];
        for a in values {
            let id = NodeId::from_u128(a);
            assert_eq!(id.as_u128(), a);
            let bytes = postcard::to_allocvec(&a).unwrap();
            assert_eq!(postcard::to_allocvec(&id).unwrap(), bytes);
            assert_eq!(postcard::from_bytes::<NodeId>(&bytes).unwrap(), id);
            assert_eq!(hash(&|h| id.hash(h)), hash(&|h| a.hash(h)));
            for b in values {
                assert_eq!(id.cmp(&NodeId::from_u128(b)), a.cmp(&b), "{a} vs {b}");
            }
        }
    }

    #[test]
    fn node_id_rejects_garbage() {
        assert!("".parse::<NodeId>().is_err());
        assert!("xyz".parse::<NodeId>().is_err());
        assert!("0".repeat(33).parse::<NodeId>().is_err());
    }

    #[test]
    fn cluster_names_follow_dns_label_rules() {
        assert!(ClusterName::new("orders").is_ok());
        assert!(ClusterName::new("orders-eu-1").is_ok());
        for bad in ["", "Orders", "-x", "x-", "a.b", "a b", &"a".repeat(64)] {
            assert!(ClusterName::new(bad).is_err(), "{bad:?} accepted");
        }
    }
}
