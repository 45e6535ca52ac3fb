//! Who a node is: its id, the cluster it belongs to, and the address peers reach it at.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A node's identifier: 128 random bits unless the operator configures a stable one.
///
/// Ordered, so that rules which must pick one of two nodes (which of two simultaneous
/// connections survives, for instance) pick the same one on both sides.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeId(u128);

impl NodeId {
    /// A node id from its 128-bit value.
    pub const fn from_u128(value: u128) -> Self {
        Self(value)
    }

    /// A fresh random id from the operating system's entropy.
    ///
    /// This is the edge of the system: protocol code receives ids, it never draws them.
    pub fn random() -> Self {
        Self(rand::random())
    }

    /// The 128-bit value.
    pub const fn as_u128(self) -> u128 {
        self.0
    }

    /// The first eight hex digits, for logs and tables where the full id is noise.
    pub fn short(self) -> String {
        format!("{:08x}", (self.0 >> 96) as u32)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
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
        u128::from_str_radix(s, 16).map(Self).map_err(|_| invalid())
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
