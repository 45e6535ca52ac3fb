//! Sending candidates to the consumer, shared by every strategy.

use std::net::SocketAddr;

use foundation_transport::NodeId;
use tokio::sync::mpsc::{self, error::TrySendError};

use super::{Candidate, DiscoveryMetrics, LocalNode};

/// The consumer is gone: the strategy should stop.
#[derive(Debug)]
pub(crate) struct Closed;

/// Reports candidates for one strategy, filtering out the local node and counting.
pub(crate) struct Reporter {
    strategy: &'static str,
    me: LocalNode,
    found: mpsc::Sender<Candidate>,
    metrics: DiscoveryMetrics,
}

impl Reporter {
    pub(crate) fn new(
        strategy: &'static str,
        me: LocalNode,
        found: mpsc::Sender<Candidate>,
        metrics: DiscoveryMetrics,
    ) -> Self {
        Self {
            strategy,
            me,
            found,
            metrics,
        }
    }

    /// The local node.
    pub(crate) fn me(&self) -> &LocalNode {
        &self.me
    }

    /// Counts one failure of this strategy.
    pub(crate) fn error(&self) {
        self.metrics.error(self.strategy);
    }

    /// Reports `addr` (with `id` when known) unless it is this node.
    ///
    /// Uses `try_send`: a strategy must never stall on a slow consumer (mDNS would lose its
    /// event channel), and everything is re-reported on the next round anyway.
    pub(crate) fn report(&self, addr: SocketAddr, id: Option<NodeId>) -> Result<(), Closed> {
        if id == Some(self.me.id) || addr == self.me.addr {
            return Ok(());
        }
        let candidate = Candidate {
            addr,
            id,
            source: self.strategy,
        };
        match self.found.try_send(candidate) {
            Ok(()) => {
                self.metrics.candidate(self.strategy);
                Ok(())
            }
            Err(TrySendError::Full(_)) => {
                tracing::debug!(strategy = self.strategy, %addr, "candidate channel full; dropped");
                Ok(())
            }
            Err(TrySendError::Closed(_)) => Err(Closed),
        }
    }
}
