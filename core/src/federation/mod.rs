//! Federation: several independent clusters that find and call each other's *exported*
//! services through gateways, the way Consul's WAN federation and NATS gateways do.
//!
//! Design:
//! - Every cluster keeps its own secret or CA. A link is configured per cluster: the remote
//!   cluster's name, its gateways' addresses, and its trust root (its secret or its CA
//!   certificate). A gateway trusts a remote root for that link only, and a remote gateway's
//!   certificate must be valid for that link's cluster name; a node of an unlinked cluster is
//!   refused in the TLS handshake (the engine counts it).
//! - Any node can be a gateway (several per cluster for failover: a link rotates to the remote's
//!   next gateway after a missed probe). Links form a mesh, and by configuration a gateway is a
//!   hub carrying calls between named clusters, or a spoke reaching clusters through its hubs
//!   ([`Routing`]: explicit on both sides, at most one transit hop).
//! - The global directory ([`GlobalDirectory`]) says which services each cluster exports; a
//!   service is exported by choice (the gateway's export list), never by default. It is a CRDT
//!   swapped on every WAN probe (each link offered only what it may take in), so after a cut
//!   heals one probe round converges it; a change is also pushed at once, rate-limited.
//! - Probes between gateways are WAN-paced ([`WanTimers`]): they give the link's state and RTT.
//! - A call to a service of a linked cluster goes to the link's current remote gateway, which
//!   calls the service inside its own cluster with the caller's remaining deadline and trace.
//!   Nothing here touches the clusters' own membership or configuration, so each keeps working
//!   alone while a link is cut.
//!
//! - Pub/sub is bridged for chosen topic patterns, one hop between linked clusters, with the
//!   publisher's trace; the rules are [`TopicBridges`]'. Each side sends back its interest (what
//!   it would deliver), and a message crosses only when it matches it ([`HeardInterest`]).
//!
//! [`Federation`] is the sans-IO machine of one gateway: time comes in as an argument, probes go
//! out as values for the driver to send.

mod bridge;
mod directory;
mod error;
mod exports;
mod interest;
mod link;
mod machine;
mod push;
mod routing;
mod served;
pub mod wire;

pub use bridge::{
    is_forwarder, BatchLimits, BatchTooLarge, BridgeConfig, BridgeConfigError, BridgeReceipt,
    BridgedMessage, TopicBridges,
};
pub use directory::{
    ClusterExports, DirectoryError, ExportedService, GlobalDirectory, MAX_CLUSTERS, MAX_SERVICES,
    MAX_SERVICE_NAME, MAX_VERSION,
};
pub use error::{FederationConfigError, FederationError};
pub use exports::exported;
pub use interest::{
    covers, intersect, BridgeInterest, HeardInterest, InterestError, InterestSender, InterestSent,
    InterestTimers, InterestToSend, MAX_HEARD_PATTERNS, MAX_SENT_PATTERNS,
};
pub use link::{LinkState, LinkStatus, ProbeOut, WanTimers};
pub use machine::{
    Federation, FederationConfig, ForwardedAttempt, LinkChange, LinkConfig, ProbeToSend,
    PushToSend, MAX_CALL_ATTEMPTS,
};
pub use routing::{Route, Routing, DEFAULT_PUSH_SPACING};
pub use served::{ServedCalls, HUB_NAMED_ORIGINS_MAX};
