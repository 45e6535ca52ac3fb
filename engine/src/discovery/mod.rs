//! Discovery: how a node finds candidate peer addresses (libcluster's idea, in Rust).
//!
//! Discovery is I/O at the edge. A strategy only *finds* addresses; the node runtime takes the
//! [`Candidate`]s it reports and joins them through SWIM. Several strategies can run at once; each
//! re-reports what it knows periodically and the consumer deduplicates.
//!
//! Strategies: [`StaticSeeds`] (addresses or host names), [`LocalDiscovery`] (a per-user runtime
//! directory, the Erlang epmd idea), [`MdnsDiscovery`] (mdns-sd on the local network),
//! [`DnsDiscovery`] (A/AAAA or SRV, e.g. a Kubernetes headless service), and `auto`
//! ([`choose_auto`]), which picks from the [`Environment`].

mod auto;
mod dns;
mod environment;
mod error;
mod handle;
mod local;
mod mdns;
mod metrics;
mod report;
mod rounds;
mod spec;
mod static_seeds;

use std::net::SocketAddr;

use foundation_transport::{ClusterName, NodeId};
use tokio::sync::mpsc;

pub use auto::{choose_auto, AutoChoice, DEFAULT_DNS_SERVICE};
pub use dns::DnsDiscovery;
pub use environment::Environment;
pub use error::DiscoveryError;
pub use handle::DiscoveryHandle;
pub use local::{default_base_dir, running_nodes, LocalDiscovery, RunningNode};
pub use mdns::{MdnsDiscovery, MDNS_SERVICE_TYPE};
pub use metrics::DiscoveryMetrics;
pub use spec::{build, DiscoverySpec};
pub(crate) use static_seeds::undialable;
pub use static_seeds::StaticSeeds;

/// The node that is discovering: what strategies advertise, and what they must never report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalNode {
    /// The cluster this node belongs to; strategies only report peers of the same cluster
    /// where they can tell.
    pub cluster: ClusterName,
    /// This node's id.
    pub id: NodeId,
    /// The QUIC address peers should dial.
    pub addr: SocketAddr,
    /// Where the node serves its HTTP API, if it does. Local discovery writes it into the
    /// node's advertisement, so `foundation` commands on the same machine find the node
    /// without being told its address.
    pub http: Option<SocketAddr>,
}

/// A possible peer: an address to try, and its node id when the strategy knows it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Candidate {
    /// Where the peer's QUIC endpoint should be reachable.
    pub addr: SocketAddr,
    /// The peer's node id, when the strategy learned it (local and mDNS do; DNS and seeds don't).
    pub id: Option<NodeId>,
    /// The strategy that found it (`"static"`, `"local"`, `"mdns"`, `"dns"`).
    pub source: &'static str,
}

/// A discovery strategy, ready to start.
pub trait Discovery: Send + 'static {
    /// The strategy's short name, used in candidates, logs and metric labels.
    fn name(&self) -> &'static str;

    /// Starts advertising `me` (where the strategy advertises) and finding peers.
    ///
    /// Candidates go to `found` and are re-reported periodically; the consumer deduplicates.
    /// A full channel drops a report rather than stalling the strategy (the next round repeats
    /// it). `me` itself is never reported. Must be called inside a tokio runtime.
    fn start(
        self: Box<Self>,
        me: LocalNode,
        found: mpsc::Sender<Candidate>,
    ) -> Result<DiscoveryHandle, DiscoveryError>;
}
