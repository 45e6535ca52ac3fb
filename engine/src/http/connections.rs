//! The open connections of a server, and which one gives way when they are all taken.
//!
//! A fixed number of slots that new clients wait for lets a few slow or silent clients lock out
//! `/health`, and an orchestrator that cannot reach `/health` kills a healthy node. So a full
//! table does not make the newcomer wait: the oldest connection with no request in progress
//! (silent, sending its head slowly, or idle between requests) is closed instead. Requests in
//! progress are bounded apart (write bodies and streams have their own limits and deadlines),
//! so only when every slot is busy is a newcomer turned away.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::oneshot;

/// Requests in progress on one connection; zero means the connection may give way.
#[derive(Debug, Default)]
pub(crate) struct Activity(AtomicUsize);

impl Activity {
    /// Marks a request in progress until the guard is dropped.
    pub(crate) fn begin(self: &Arc<Self>) -> Busy {
        self.0.fetch_add(1, Ordering::SeqCst);
        Busy(self.clone())
    }

    pub(crate) fn is_idle(&self) -> bool {
        self.0.load(Ordering::SeqCst) == 0
    }
}

/// A request in progress; see [`Activity::begin`].
#[derive(Debug)]
pub(crate) struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0 .0.fetch_sub(1, Ordering::SeqCst);
    }
}

struct Entry {
    activity: Arc<Activity>,
    give_way: oneshot::Sender<()>,
}

/// The server's open connections, oldest first.
pub(crate) struct Table {
    max: usize,
    next_id: u64,
    open: BTreeMap<u64, Entry>,
}

/// What a new connection gets from [`Table::admit`].
pub(crate) struct Admitted {
    pub id: u64,
    pub activity: Arc<Activity>,
    /// Fires when the connection must give way to a newer one.
    pub give_way: oneshot::Receiver<()>,
}

impl Table {
    pub(crate) fn new(max: usize) -> Self {
        Self {
            max: max.max(1),
            next_id: 0,
            open: BTreeMap::new(),
        }
    }

    /// Makes room for one more connection and records it; `None` when every open connection
    /// has a request in progress.
    pub(crate) fn admit(&mut self) -> Option<Admitted> {
        if self.open.len() >= self.max && !self.close_oldest_idle() {
            return None;
        }
        let id = self.next_id;
        self.next_id += 1;
        let activity = Arc::new(Activity::default());
        let (give_way, signal) = oneshot::channel();
        self.open.insert(
            id,
            Entry {
                activity: activity.clone(),
                give_way,
            },
        );
        Some(Admitted {
            id,
            activity,
            give_way: signal,
        })
    }

    /// Forgets a connection that ended.
    pub(crate) fn closed(&mut self, id: u64) {
        self.open.remove(&id);
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.open.len()
    }

    fn close_oldest_idle(&mut self) -> bool {
        let oldest = self
            .open
            .iter()
            .find(|(_, entry)| entry.activity.is_idle())
            .map(|(id, _)| *id);
        let Some(entry) = oldest.and_then(|id| self.open.remove(&id)) else {
            return false;
        };
        // The connection may have ended on its own meanwhile; then there is nothing to tell.
        let _ = entry.give_way.send(());
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_table_closes_the_oldest_idle_connection() {
        let mut table = Table::new(3);
        let mut first = table.admit().unwrap();
        let second = table.admit().unwrap();
        let mut third = table.admit().unwrap();
        let _busy = second.activity.begin();
        let fourth = table.admit().expect("room made");
        assert!(
            first.give_way.try_recv().is_ok(),
            "the oldest idle one gives way"
        );
        assert_eq!(table.len(), 3);
        let _busy_third = third.activity.begin();
        let _busy_fourth = fourth.activity.begin();
        assert!(table.admit().is_none(), "every connection is busy");
        assert!(third.give_way.try_recv().is_err());
        drop(_busy);
        let _fifth = table.admit().expect("the second became idle");
        assert_eq!(table.len(), 3);
    }

    #[test]
    fn closed_connections_free_their_slot() {
        let mut table = Table::new(1);
        let only = table.admit().unwrap();
        let _busy = only.activity.begin();
        assert!(table.admit().is_none());
        table.closed(only.id);
        assert!(table.admit().is_some());
    }
}
