//! What a node says about itself, disseminated with membership.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::swim::IdHashing;

/// A node's self-description.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeMetadata {
    /// A human-friendly name.
    pub name: Option<String>,
    /// Capabilities and labels, e.g. `zone=eu-1`, `gpu=true`.
    pub tags: BTreeMap<String, String>,
    /// The software version the node runs.
    pub version: String,
    /// Where the node serves HTTP (`/metrics`, `/health`, `/members`).
    pub http: Option<SocketAddr>,
}

/// The version a life of a node gives its first metadata. Peers keep the highest version
/// they have seen of a node, whatever its life, so a node restarted under its kept id must
/// start above every version its earlier lives reached: its generation (its start time in
/// milliseconds, and later than every earlier life's) makes the high bits, and up to 2^16
/// changes a life fit below. Starting at 1 again, a restarted node's new name, tags and HTTP
/// address stayed unseen until it had changed them more times than its previous life had.
pub fn first_version(generation: u64) -> u64 {
    generation.saturating_mul(1 << 16).max(1)
}

/// Metadata with the version its owner gave it; the higher version wins everywhere.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Versioned {
    /// Bumped by the owner on every change.
    pub version: u64,
    /// The metadata, shared by the table, the view and the events that show it (encoded as
    /// the value itself: the wire format is that of a plain `NodeMetadata`).
    #[serde(deserialize_with = "super::decoded::shared")]
    pub metadata: Arc<NodeMetadata>,
}

/// Metadata values shared by several nodes' membership machines in one process (the
/// simulator's): a node that takes up a value equal to one another node already holds keeps
/// that one, so N nodes hold N values in all instead of N each. Only content-equal values
/// are shared, so what each machine sees, and everything it does, is unchanged.
#[derive(Clone, Debug, Default)]
pub struct SharedMetadata {
    values: Arc<Mutex<Interned>>,
}

/// Each node's metadata by version: only looked up (every node takes up every member's
/// metadata once, N² lookups at a mass join, where a tree of N entries cost a dozen cache
/// misses each), never iterated, so hash order cannot leak into behaviour.
type Interned = HashMap<(crate::NodeId, u64), Arc<NodeMetadata>, IdHashing>;

impl SharedMetadata {
    /// `node`'s metadata at `version`, as an equal value already shared if there is one.
    pub fn intern(
        &self,
        node: crate::NodeId,
        version: u64,
        value: Arc<NodeMetadata>,
    ) -> Arc<NodeMetadata> {
        let mut values = self.values.lock().unwrap_or_else(|e| e.into_inner());
        match values.get(&(node, version)) {
            // Most values come already shared (decoded into the shared one): no need to compare
            // their contents.
            Some(shared) if Arc::ptr_eq(shared, &value) || **shared == *value => shared.clone(),
            _ => {
                values.insert((node, version), value.clone());
                value
            }
        }
    }

    /// How many values are shared.
    pub fn len(&self) -> usize {
        self.values.lock().map_or(0, |v| v.len())
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Largest encoded metadata accepted, so it always fits a push-pull exchange comfortably.
pub const METADATA_MAX_BYTES: usize = 4096;

/// What [`newer_than_known`] found held for an entry's node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Tested {
    /// Nothing: the entry is new, and stays so until merged.
    Absent,
    /// An older version, still older when the entry is merged.
    Older,
    /// The entry is out of order: to test again when merged.
    Again,
}

/// The entries of a push-pull's `incoming` metadata newer than what `known` holds for their
/// node, in their order: the others would be dropped by the version test anyway. A sender
/// lists its table in node id order, so both are walked side by side — one sequential pass
/// instead of a tree lookup per entry, which at a mass join is most of the table's cost. An
/// entry out of order (another sender's doing) is looked up instead.
///
/// Each entry comes with what its test found, which still holds when it is merged for an
/// entry above every node before it in `incoming` — merging the entries before it, in order,
/// changes only their own (lower) nodes — so the merge need not look it up again. An entry
/// out of order may follow one for its node, and is tested again.
pub(crate) fn newer_than_known(
    known: &crate::packed_map::PackedMap<crate::NodeId, Versioned>,
    incoming: Vec<(crate::NodeId, Versioned)>,
) -> Vec<(crate::NodeId, Versioned, Tested)> {
    let mut walk = known.iter().peekable();
    // The walk has passed every node below the highest one seen so far.
    let mut highest: Option<crate::NodeId> = None;
    let mut newer = Vec::new();
    for (node, versioned) in incoming {
        let in_order = highest.is_none_or(|highest| node > highest);
        let held = if in_order {
            highest = Some(node);
            while walk.next_if(|(k, _)| **k < node).is_some() {}
            walk.peek().filter(|(k, _)| **k == node).map(|(_, v)| *v)
        } else {
            known.get(&node)
        };
        let tested = match held {
            _ if !in_order => Tested::Again,
            None => Tested::Absent,
            Some(_) => Tested::Older,
        };
        if held.is_none_or(|held| held.version < versioned.version) {
            newer.push((node, versioned, tested));
        }
    }
    newer
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NodeId;

    fn entry(node: u128, version: u64) -> (NodeId, Versioned) {
        let metadata = Arc::new(NodeMetadata {
            version: format!("v{version}"),
            ..NodeMetadata::default()
        });
        (NodeId::from_u128(node), Versioned { version, metadata })
    }

    /// The side-by-side walk keeps exactly the entries a lookup per entry keeps, in order,
    /// for sorted input, unsorted input and repeated nodes.
    #[test]
    fn newer_than_known_matches_a_lookup_per_entry() {
        let known: crate::packed_map::PackedMap<NodeId, Versioned> =
            [entry(2, 5), entry(4, 1), entry(7, 3), entry(9, 9)]
                .into_iter()
                .collect();
        let inputs = [
            vec![
                entry(1, 1),
                entry(2, 5),
                entry(4, 2),
                entry(7, 2),
                entry(8, 1),
                entry(9, 10),
            ],
            vec![
                entry(9, 10),
                entry(2, 6),
                entry(4, 1),
                entry(1, 1),
                entry(7, 4),
            ],
            vec![
                entry(4, 2),
                entry(4, 1),
                entry(4, 3),
                entry(3, 1),
                entry(10, 1),
            ],
            vec![],
        ];
        for incoming in inputs {
            // Kept where newer; tested at the merge again exactly where an entry does not
            // exceed every node before it, and otherwise found absent or older.
            let expected: Vec<_> = incoming
                .iter()
                .enumerate()
                .filter(|(_, (n, v))| known.get(n).is_none_or(|k| k.version < v.version))
                .map(|(at, (n, v))| {
                    let in_order = incoming[..at].iter().all(|(before, _)| before < n);
                    let tested = match known.get(n) {
                        _ if !in_order => Tested::Again,
                        None => Tested::Absent,
                        Some(_) => Tested::Older,
                    };
                    (*n, v.clone(), tested)
                })
                .collect();
            assert_eq!(newer_than_known(&known, incoming), expected);
        }
    }
}
