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

    /// Reports `addr` (with `id` when known) unless it is this node or no peer can be there.
    ///
    /// Uses `try_send`: a strategy must never stall on a slow consumer (mDNS would lose its
    /// event channel), and everything is re-reported on the next round anyway.
    pub(crate) fn report(&self, addr: SocketAddr, id: Option<NodeId>) -> Result<(), Closed> {
        if id == Some(self.me.id) || addr == self.me.addr || !dialable(addr) {
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

/// Whether a peer could be at `addr`. Addresses come from DNS answers, mDNS records and files:
/// an unspecified one or port 0 cannot be dialled, and a multicast or broadcast one would have
/// every node send its handshakes to a whole link at the word of whoever wrote the record.
/// An IPv4 address written as IPv6 (`::ffff:a.b.c.d`) is judged as the IPv4 one: a dual-stack
/// socket sends to it.
pub(crate) fn dialable(addr: SocketAddr) -> bool {
    let ip = addr.ip().to_canonical();
    let broadcast = matches!(ip, std::net::IpAddr::V4(v4) if v4.is_broadcast());
    addr.port() != 0 && !ip.is_unspecified() && !ip.is_multicast() && !broadcast
}

#[cfg(test)]
mod tests {
    use foundation_transport::ClusterName;

    use super::*;

    #[test]
    fn addresses_no_peer_can_be_at_are_not_reported() {
        let me = LocalNode {
            cluster: ClusterName::new("c").expect("cluster"),
            id: NodeId::from_u128(1),
            addr: SocketAddr::from(([127, 0, 0, 1], 7000)),
            http: None,
        };
        let (found, mut reported) = mpsc::channel(16);
        let reporter = Reporter::new("dns", me, found, DiscoveryMetrics::default());
        for addr in [
            "0.0.0.0:7000",
            "[::]:7000",
            "127.0.0.2:0",
            "224.0.0.251:7000",
            "255.255.255.255:7000",
            "[ff02::fb]:7000",
            "[::ffff:224.0.0.251]:7000",
            "[::ffff:255.255.255.255]:7000",
            "[::ffff:0.0.0.0]:7000",
            "127.0.0.2:7000",
        ] {
            reporter
                .report(addr.parse().expect("addr"), None)
                .expect("open");
        }
        let mut got = Vec::new();
        while let Ok(candidate) = reported.try_recv() {
            got.push(candidate.addr.to_string());
        }
        assert_eq!(got, ["127.0.0.2:7000"]);
    }
}
