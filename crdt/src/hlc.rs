//! Hybrid logical clock (Kulkarni et al., "Logical Physical Clocks", 2014).
//!
//! Timestamps stay close to wall time (so "last writer wins" means roughly what a person expects)
//! while still respecting happens-before: a receive is always stamped after the send it saw.
//! The clock never reads time itself; the caller passes the wall clock in milliseconds, which is
//! what lets the simulator drive it with virtual time.

use serde::{Deserialize, Serialize};

use crate::NodeId;

/// Default for [`HlcConfig::max_drift_ms`]: 60 s.
///
/// NTP-synchronised hosts stay within tens of milliseconds of each other; a minute also tolerates
/// an unsynchronised laptop or a VM resumed from sleep, while bounding how far one bad peer can drag
/// every clock in the cluster (and so every future LWW timestamp) ahead of real time.
pub const DEFAULT_MAX_DRIFT_MS: u64 = 60_000;

/// A point in hybrid logical time. Ordered by `wall_ms`, then `logical`, then `node`, so two
/// timestamps from different nodes never compare equal and ties between concurrent writes are
/// broken by node id deterministically everywhere.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Timestamp {
    /// Physical component, in milliseconds since the Unix epoch (or any epoch the caller uses
    /// consistently).
    pub wall_ms: u64,
    /// Orders events that share a `wall_ms`.
    pub logical: u32,
    /// The node that issued the timestamp; breaks ties between nodes.
    pub node: NodeId,
}

impl Timestamp {
    /// The smallest timestamp.
    pub const ZERO: Timestamp = Timestamp {
        wall_ms: 0,
        logical: 0,
        node: NodeId::MIN,
    };

    /// The smallest timestamp at `wall_ms`: every event at or after that millisecond sorts at or
    /// after it. Used to express horizons ("everything before this wall time").
    pub const fn at_wall(wall_ms: u64) -> Self {
        Timestamp {
            wall_ms,
            logical: 0,
            node: NodeId::MIN,
        }
    }
}

/// Configuration of a [`Hlc`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HlcConfig {
    /// How far ahead of the local wall clock a remote timestamp may be, in milliseconds, before
    /// [`Hlc::update`] rejects it. Default [`DEFAULT_MAX_DRIFT_MS`]. Smaller catches a bad clock
    /// sooner but rejects messages from peers whose clocks are merely loosely synchronised.
    pub max_drift_ms: u64,
}

impl Default for HlcConfig {
    fn default() -> Self {
        HlcConfig {
            max_drift_ms: DEFAULT_MAX_DRIFT_MS,
        }
    }
}

/// Why a remote timestamp was refused. The clock is unchanged in every case.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HlcError {
    /// The remote timestamp is further ahead of our wall clock than the configured drift allows;
    /// accepting it would drag our clock (and every later write) into the future. Check the
    /// sender's clock synchronisation, or raise `max_drift_ms`.
    #[error(
        "remote timestamp {remote_ms} ms is {ahead_ms} ms ahead of local wall clock {local_ms} ms \
         (max drift {max_drift_ms} ms); clock unchanged"
    )]
    DriftExceeded {
        /// The remote `wall_ms`.
        remote_ms: u64,
        /// The local wall clock passed in.
        local_ms: u64,
        /// `remote_ms - local_ms`.
        ahead_ms: u64,
        /// The configured bound.
        max_drift_ms: u64,
    },
}

/// A hybrid logical clock owned by one node.
///
/// Call [`Hlc::now`] to stamp a local event and [`Hlc::update`] with the timestamp of every
/// received message before acting on it. Both return a timestamp strictly greater than every
/// timestamp this clock returned or accepted before, even if the wall clock goes backwards.
#[derive(Clone, Debug)]
pub struct Hlc {
    node: NodeId,
    config: HlcConfig,
    last_wall_ms: u64,
    last_logical: u32,
}

impl Hlc {
    /// A clock for `node` that has issued nothing yet.
    pub fn new(node: NodeId, config: HlcConfig) -> Self {
        Hlc {
            node,
            config,
            last_wall_ms: 0,
            last_logical: 0,
        }
    }

    /// The node this clock stamps for.
    pub fn node(&self) -> NodeId {
        self.node
    }

    /// The last timestamp issued or accepted (with this node's id).
    pub fn last(&self) -> Timestamp {
        self.stamp()
    }

    /// Stamps a local event at wall time `wall_ms`.
    pub fn now(&mut self, wall_ms: u64) -> Timestamp {
        if wall_ms > self.last_wall_ms {
            self.last_wall_ms = wall_ms;
            self.last_logical = 0;
        } else {
            // The wall clock stalled or went backwards: keep physical time, count logically.
            self.advance_logical(self.last_logical);
        }
        self.stamp()
    }

    /// Merges a remote timestamp seen at local wall time `wall_ms` and stamps the receive event,
    /// which orders after both `remote` and everything this clock issued before.
    pub fn update(&mut self, remote: Timestamp, wall_ms: u64) -> Result<Timestamp, HlcError> {
        self.check_drift(remote, wall_ms)?;
        let wall = wall_ms.max(self.last_wall_ms).max(remote.wall_ms);
        let own = wall == self.last_wall_ms;
        let theirs = wall == remote.wall_ms;
        let before = self.last();
        match (own, theirs) {
            (true, true) => self.advance_logical(self.last_logical.max(remote.logical)),
            (true, false) => self.advance_logical(self.last_logical),
            (false, true) => {
                self.last_wall_ms = wall;
                self.advance_logical(remote.logical);
            }
            (false, false) => {
                self.last_wall_ms = wall;
                self.last_logical = 0;
            }
        }
        let stamped = self.stamp();
        debug_assert!(stamped > before || before.wall_ms == u64::MAX);
        Ok(stamped)
    }

    fn check_drift(&self, remote: Timestamp, wall_ms: u64) -> Result<(), HlcError> {
        let limit = wall_ms.saturating_add(self.config.max_drift_ms);
        if remote.wall_ms <= limit {
            return Ok(());
        }
        Err(HlcError::DriftExceeded {
            remote_ms: remote.wall_ms,
            local_ms: wall_ms,
            ahead_ms: remote.wall_ms - wall_ms,
            max_drift_ms: self.config.max_drift_ms,
        })
    }

    /// Sets the logical counter to `base + 1` at the current physical time. If the counter is
    /// exhausted (2^32 events in one millisecond) we borrow the next millisecond rather than fail:
    /// monotonicity matters more than staying exactly on the wall clock.
    fn advance_logical(&mut self, base: u32) {
        match base.checked_add(1) {
            Some(next) => self.last_logical = next,
            None => {
                // At u64::MAX ms (hundreds of millions of years) the clock can only stand still.
                if let Some(next_wall) = self.last_wall_ms.checked_add(1) {
                    self.last_wall_ms = next_wall;
                    self.last_logical = 0;
                }
            }
        }
    }

    fn stamp(&self) -> Timestamp {
        Timestamp {
            wall_ms: self.last_wall_ms,
            logical: self.last_logical,
            node: self.node,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clock(id: u128) -> Hlc {
        Hlc::new(NodeId::from_u128(id), HlcConfig::default())
    }

    #[test]
    fn backwards_wall_clock_still_advances() {
        let mut c = clock(1);
        let a = c.now(1_000);
        let b = c.now(500);
        assert!(b > a);
        assert_eq!(b.wall_ms, 1_000);
        assert_eq!(b.logical, 1);
    }

    #[test]
    fn receive_orders_after_send() {
        let mut a = clock(1);
        let mut b = clock(2);
        let sent = a.now(5_000);
        let got = b.update(sent, 4_000).expect("within drift");
        assert!(got > sent);
        assert!(b.now(3_000) > got);
    }

    #[test]
    fn remote_beyond_drift_is_rejected_and_does_not_poison() {
        let mut c = Hlc::new(NodeId::from_u128(1), HlcConfig { max_drift_ms: 100 });
        let before = c.now(1_000);
        let bad = Timestamp {
            wall_ms: 1_101,
            logical: 0,
            node: NodeId::from_u128(2),
        };
        let err = c.update(bad, 1_000).unwrap_err();
        assert!(matches!(err, HlcError::DriftExceeded { ahead_ms: 101, .. }));
        assert_eq!(c.last(), before);
        assert_eq!(c.now(1_000).wall_ms, 1_000);
    }

    #[test]
    fn exhausted_logical_counter_borrows_next_millisecond() {
        let mut c = clock(1);
        let remote = Timestamp {
            wall_ms: 10,
            logical: u32::MAX,
            node: NodeId::from_u128(2),
        };
        let got = c.update(remote, 10).expect("within drift");
        assert!(got > remote);
        assert_eq!((got.wall_ms, got.logical), (11, 0));
    }
}
