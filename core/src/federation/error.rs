//! Why a federation configuration, a lookup, a call or a remote's input was refused: the errors
//! the machine and its routing rules share.

use super::directory::DirectoryError;
use crate::identity::ClusterName;

/// Why a federation configuration is unusable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FederationConfigError {
    /// A link to the gateway's own cluster.
    #[error("a cluster cannot link to itself ({0})")]
    SelfLink(ClusterName),
    /// Two links to one cluster.
    #[error("two links to cluster {0}")]
    DuplicateLink(ClusterName),
    /// A link without gateway addresses.
    #[error("the link to {0} names no gateway address")]
    NoGateways(ClusterName),
    /// Unusable WAN timers.
    #[error("invalid WAN timers: {0}")]
    Timers(&'static str),
    /// A hub that is not one of the links.
    #[error("the hub {0} is not linked")]
    HubNotLinked(ClusterName),
    /// A transit cluster that is not one of the links (or this cluster).
    #[error("transit cluster {0} is not linked")]
    TransitNotLinked(ClusterName),
    /// A limit that would refuse everything it bounds.
    #[error("invalid limit: {0}")]
    Limit(&'static str),
}

/// Why a lookup, a call or a remote's input was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum FederationError {
    /// Neither this cluster, nor linked, nor in the global directory.
    #[error("unknown cluster {0}")]
    UnknownCluster(String),
    /// Known from the directory, but no link or hub reaches it.
    #[error("no route to cluster {0}: neither linked nor carried by a hub")]
    NotLinked(ClusterName),
    /// The link is down: its last probes were missed.
    #[error("the link to cluster {0} is down")]
    LinkDown(ClusterName),
    /// The remote cluster does not export the service (or its export has not arrived yet).
    #[error("cluster {cluster} exports no service {service:?}")]
    NotExported {
        /// The cluster.
        cluster: ClusterName,
        /// The service.
        service: String,
    },
    /// A directory from a peer broke the limits.
    #[error(transparent)]
    BadDirectory(#[from] DirectoryError),
    /// A hub does not carry calls from `from` to `to` (or a gateway took a call through a
    /// link it does not use as a hub).
    #[error("transit from cluster {from} to cluster {to} is not allowed")]
    TransitRefused {
        /// The cluster the call came from.
        from: ClusterName,
        /// The cluster it was for.
        to: ClusterName,
    },
}
