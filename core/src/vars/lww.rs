//! `lww` variables: the last writer by hybrid logical clock wins.
//!
//! Each node writes its latest value of a variable under its own key of the
//! [`LWW_KEYSPACE`](super::LWW_KEYSPACE) keyspace (`name`, a NUL, the node's id), so the
//! replicated keyspace keeps every writer's latest write side by side, each stamped by the
//! replication's HLC. The value a node shows is the valid write with the highest stamp among
//! those keys. Keeping writers apart, rather than one key per variable, is what lets a
//! misbehaving node's out-of-range write be dropped without hiding the valid writes it
//! superseded: the shown value is a function of the replicated state alone (valid entries,
//! highest stamp), so replicas that hold the same keyspace show the same value.

use std::collections::BTreeMap;

use foundation_agents::variable::VarValue;
use foundation_crdt::Timestamp;
use serde::{Deserialize, Serialize};

use super::Life;
use crate::NodeId;

/// What a node writes under its key for a variable (public so a test can play a misbehaving
/// node that writes one by hand).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LwwRecord {
    /// The variable's spec fingerprint: a write under another spec is not taken.
    pub spec: u64,
    /// The value.
    pub value: VarValue,
    /// The life that wrote it.
    pub writer: Life,
    /// The writer's count of its writes: it makes every write's bytes differ from the one
    /// before, since replication reports a key as changed only when its bytes change, and a
    /// write of the same value again must still move its stamp here.
    pub seq: u64,
}

impl LwwRecord {
    /// The bytes it is replicated as.
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).unwrap_or_default()
    }

    /// A record from its bytes, whoever wrote them.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        postcard::from_bytes(bytes).ok()
    }
}

/// One writer's latest valid write, as this node's replica of the keyspace holds it.
#[derive(Clone, Debug, PartialEq)]
struct Write {
    ts: Timestamp,
    value: VarValue,
    writer: Life,
}

/// One `lww` variable as this node shows it.
#[derive(Clone, Debug)]
pub(crate) struct LwwVar {
    writes: BTreeMap<NodeId, Write>,
    initial: VarValue,
    /// Changes of the shown value seen here (a local count: nodes may skip writes another saw).
    pub version: u64,
    pub value: VarValue,
    /// The stamp and writer of the shown write; `None` while the initial value shows.
    pub shown: Option<(Timestamp, Life)>,
}

impl LwwVar {
    pub fn new(initial: VarValue) -> Self {
        Self {
            writes: BTreeMap::new(),
            value: initial.clone(),
            initial,
            version: 0,
            shown: None,
        }
    }

    /// Takes up what the keyspace now holds for writer `node`: a valid write, or nothing (a
    /// removed key, or a write that was refused). Returns whether the shown value changed.
    pub fn take(&mut self, node: NodeId, write: Option<(Timestamp, VarValue, Life)>) -> bool {
        match write {
            Some((ts, value, writer)) => {
                self.writes.insert(node, Write { ts, value, writer });
            }
            None => {
                self.writes.remove(&node);
            }
        }
        self.reselect()
    }

    /// Shows the write with the highest stamp (stamps from different nodes never tie).
    fn reselect(&mut self) -> bool {
        let best = self.writes.values().max_by_key(|w| w.ts);
        let shown = best.map(|w| (w.ts, w.writer));
        if shown == self.shown {
            return false;
        }
        self.value = best.map_or_else(|| self.initial.clone(), |w| w.value.clone());
        self.shown = shown;
        self.version += 1;
        true
    }

    /// Whether the shown value is the best write's (or the initial value with none).
    pub fn consistent(&self) -> bool {
        let best = self.writes.values().max_by_key(|w| w.ts);
        match best {
            Some(w) => self.shown == Some((w.ts, w.writer)) && self.value == w.value,
            None => self.shown.is_none() && self.value == self.initial,
        }
    }
}

/// The key node `node` writes variable `name` under.
pub fn key(name: &str, node: NodeId) -> String {
    format!("{name}\0{node}")
}

/// The variable and writer node a key names, if it is well formed.
pub(crate) fn parse_key(key: &str) -> Option<(&str, NodeId)> {
    let (name, node) = key.rsplit_once('\0')?;
    Some((name, node.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(wall_ms: u64, node: u8) -> Timestamp {
        Timestamp {
            wall_ms,
            logical: 0,
            node: foundation_crdt::NodeId([node; 16]),
        }
    }

    fn life(n: u128) -> Life {
        Life {
            node: NodeId::from_u128(n),
            generation: 1,
        }
    }

    #[test]
    fn the_highest_stamp_shows_in_any_order_and_a_dropped_write_uncovers_the_next() {
        let writes = [(1, ts(10, 1), 5), (2, ts(30, 2), 7), (3, ts(20, 3), 9)];
        let mut forward = LwwVar::new(VarValue::Int(0));
        let mut backward = LwwVar::new(VarValue::Int(0));
        for &(n, t, v) in &writes {
            forward.take(NodeId::from_u128(n), Some((t, VarValue::Int(v), life(n))));
        }
        for &(n, t, v) in writes.iter().rev() {
            backward.take(NodeId::from_u128(n), Some((t, VarValue::Int(v), life(n))));
        }
        assert_eq!(forward.value, VarValue::Int(7));
        assert_eq!(backward.value, VarValue::Int(7));
        assert!(forward.consistent() && backward.consistent());
        // Writer 2's key now holds something refused: writer 3's write shows again.
        assert!(forward.take(NodeId::from_u128(2), None));
        assert_eq!(forward.value, VarValue::Int(9));
        assert!(forward.take(NodeId::from_u128(3), None));
        assert!(forward.take(NodeId::from_u128(1), None));
        assert_eq!(
            forward.value,
            VarValue::Int(0),
            "the initial value with no write"
        );
    }

    #[test]
    fn keys_name_their_variable_and_writer_even_with_a_nul_in_the_name() {
        let node = NodeId::from_u128(0xabc);
        assert_eq!(parse_key(&key("a\0b", node)), Some(("a\0b", node)));
        assert_eq!(parse_key("no-writer"), None);
        assert_eq!(parse_key("x\0not-hex"), None);
    }
}
