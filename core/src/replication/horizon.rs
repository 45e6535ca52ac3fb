//! What peers told us they have seen, and what follows from it: the tombstone GC horizon and
//! which departed origins every live member holds in full.

use std::collections::{BTreeMap, BTreeSet};

use crate::NodeId;
use foundation_crdt::Timestamp;

use super::keyspace::Keyspace;
use super::wire::{Digest, Origin, Seen};

/// A peer's last digest, with the epoch it was sent in and the sender's clock when it sent it.
#[derive(Clone, Debug)]
pub(super) struct PeerDigest {
    pub epoch: u32,
    pub digest: Digest,
    pub clock: Timestamp,
}

/// The last digest of every member not yet departed (alive, or failed recently: a failed node
/// may come back with what it had, so it still holds the horizon back).
#[derive(Debug, Default)]
pub(super) struct PeerDigests {
    by_node: BTreeMap<NodeId, PeerDigest>,
}

/// What every member not departed has told us of one keyspace: the basis of an agreement.
pub(super) struct Agreement {
    /// Each one's view of the keyspace.
    pub views: Vec<Seen>,
    /// The earliest of their clocks (`None` with no peers): none of them wrote anything before
    /// it that its view lacks.
    pub witness: Option<Timestamp>,
}

impl PeerDigests {
    pub fn record(&mut self, from: NodeId, epoch: u32, digest: Digest, clock: Timestamp) {
        let digest = PeerDigest {
            epoch,
            digest,
            clock,
        };
        self.by_node.insert(from, digest);
    }

    /// Forgets departed nodes.
    pub fn forget(&mut self, departed: &BTreeSet<NodeId>) {
        self.by_node.retain(|node, _| !departed.contains(node));
    }

    /// What every recorded peer told us of `keyspace`, if each of `members` (every member not
    /// departed) has told us its digest in `epoch`; otherwise there is no agreement to build on.
    pub fn agreement(&self, members: &[NodeId], epoch: u32, keyspace: &str) -> Option<Agreement> {
        let complete = members
            .iter()
            .all(|id| self.by_node.get(id).is_some_and(|d| d.epoch == epoch));
        if !complete || self.by_node.values().any(|d| d.epoch != epoch) {
            return None;
        }
        let views = self.by_node.values();
        Some(Agreement {
            views: views
                .clone()
                .map(|d| d.digest.get(keyspace).cloned().unwrap_or_default())
                .collect(),
            witness: views.map(|d| d.clock).min(),
        })
    }
}

/// The newest seq of each origin that any of `views` has seen.
fn known(views: &[Seen]) -> BTreeMap<Origin, u64> {
    let mut known = BTreeMap::new();
    for (origin, &seq) in views.iter().flatten() {
        let top = known.entry(*origin).or_insert(0);
        *top = seq.max(*top);
    }
    known
}

/// The latest timestamp below which every one of `views` (ours among them) holds every op we
/// know of: for each view lacking an origin's op `s + 1`, that op's timestamp bounds it, as an
/// origin's timestamps grow with its seqs. `None` if a needed op has left our log (a view is
/// too far behind to tell).
pub(super) fn stable_before(
    keyspace: &Keyspace,
    views: &[Seen],
    ceiling: Timestamp,
) -> Option<Timestamp> {
    let known = known(views);
    let mut horizon = ceiling;
    for view in views {
        for (origin, &top) in &known {
            let seen = view.get(origin).copied().unwrap_or(0);
            if seen < top {
                horizon = horizon.min(keyspace.op_ts(origin, seen + 1)?);
            }
        }
    }
    Some(horizon)
}

/// Origins of `candidates` whose seq is the same in every one of `views`: nobody among them
/// lacks an op of theirs that another has, so their bookkeeping can go without losing data.
pub(super) fn settled(candidates: &BTreeSet<Origin>, views: &[Seen]) -> BTreeSet<Origin> {
    let known = known(views);
    candidates
        .iter()
        .filter(|origin| {
            let top = known.get(origin).copied().unwrap_or(0);
            views
                .iter()
                .all(|view| view.get(origin).copied().unwrap_or(0) == top)
        })
        .copied()
        .collect()
}
