//! How many bulk-only connections each peer may hold open to this node.
//!
//! A peer dials one bulk connection at a time (see [`crate::bulk`]), but nothing stopped a
//! member from opening more: each accepted one got a task, its streams and up to the
//! connection's receive window (64 MiB) of unread transfers. Past the quota a new one is
//! closed with [`code::TOO_MANY_CONNECTIONS`](crate::wire::code::TOO_MANY_CONNECTIONS) and
//! counted. The quota leaves room for an old connection that lingers until its idle timeout
//! after the peer restarted or redialled.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use foundation_core::identity::NodeId;

/// Bulk-only connections one peer id may hold open to this node at once.
pub(crate) const BULK_CONNECTIONS_PER_PEER: usize = 4;

/// Open accepted bulk connections per peer id; a peer with none has no entry.
#[derive(Debug, Default)]
pub(crate) struct BulkQuota {
    open: Mutex<BTreeMap<NodeId, usize>>,
}

/// One accepted bulk connection's place in the quota, given back when dropped.
#[derive(Debug)]
pub(crate) struct BulkPlace {
    quota: Arc<BulkQuota>,
    peer: NodeId,
}

impl BulkQuota {
    /// A place for one more bulk connection from `peer`; `None` if it holds its quota.
    pub fn take(self: &Arc<Self>, peer: NodeId) -> Option<BulkPlace> {
        let mut open = self.lock();
        let held = open.entry(peer).or_default();
        if *held >= BULK_CONNECTIONS_PER_PEER {
            return None;
        }
        *held += 1;
        Some(BulkPlace {
            quota: self.clone(),
            peer,
        })
    }

    /// Peers with at least one bulk connection open.
    #[cfg(test)]
    pub fn peers(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<NodeId, usize>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for BulkPlace {
    fn drop(&mut self) {
        let mut open = self.quota.lock();
        if let Some(held) = open.get_mut(&self.peer) {
            *held -= 1;
            if *held == 0 {
                open.remove(&self.peer);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_holds_its_quota_at_most_and_places_come_back() {
        let quota = Arc::new(BulkQuota::default());
        let (a, b) = (NodeId::from_u128(1), NodeId::from_u128(2));
        let mut places: Vec<_> = (0..BULK_CONNECTIONS_PER_PEER)
            .map(|_| quota.take(a).expect("within the quota"))
            .collect();
        assert!(quota.take(a).is_none());
        assert!(quota.take(b).is_some(), "another peer has its own quota");
        places.pop();
        assert!(quota.take(a).is_some());
        drop(places);
        assert_eq!(quota.peers(), 0, "no entry outlives its connections");
    }
}
