//! Foundation's transport: one QUIC endpoint per node, mutual TLS on every connection, and
//! logical channels that never block each other.
//!
//! ```text
//!   Endpoint::start(identity, trust, config, metrics) -> (Endpoint, Inbox)
//!
//!   Endpoint (send side)                       Inbox (receive side, bounded queues)
//!   ├─ send(peer, channel, bytes, mode)        ├─ membership / coordination /
//!   ├─ send_datagram(peer, bytes)              │  replication / events: Message
//!   ├─ request(peer, bytes, deadline)          ├─ requests: IncomingRequest -> respond()
//!   ├─ send_bulk(peer, bytes, deadline)        ├─ transfers: IncomingTransfer -> read_chunk()
//!   ├─ connect(seed addr) -> NodeAddr          └─ peers: PeerEvent (connected/disconnected/port closed)
//!   └─ close()
//! ```
//!
//! Connections are dialled on first use, deduplicated when two nodes dial each other at once,
//! redialled with backoff while traffic waits, and kept alive so a dead peer is noticed within
//! the idle timeout. Every queue is bounded. See [`Channel`] for the channels, and `channel.rs` for how they map onto
//! QUIC and [`security`] for how peers are trusted.

#![warn(missing_docs)]

mod admission;
pub mod advertise;
mod budget;
pub mod bulk;
mod bulk_quota;
mod bulk_runtime;
mod channel;
pub mod config;
pub mod congestion;
mod connection;
pub mod declared;
mod endpoint;
pub mod error;
mod forget;
pub mod frame;
pub mod gateway;
mod handshake;
pub mod inbox;
mod intruders;
pub mod metrics;
mod peer;
pub mod rpc;
pub mod sealed;
pub mod security;
mod stream_io;
pub mod wire;

// The shared types live in the core, which every protocol uses without the transport.
pub use foundation_core::identity;
pub use foundation_core::{
    Channel, ChannelLimits, ClusterName, NodeAddr, NodeId, MEMBERSHIP_DATAGRAM_MAX,
};

pub use bulk::{IncomingTransfer, TransferError};
pub use config::TransportConfig;
pub use declared::Declared;
pub use endpoint::{Endpoint, LocalIdentity, SendMode};
pub use error::{ConnectError, HandshakeFailure, RequestError, SendError, StartError};
pub use inbox::{Inbox, Message, PeerEvent, RequestHandler};
pub use metrics::{ChannelTotals, PathEvents, TransportMetrics};
pub use rpc::{IncomingRequest, Responder};
pub use security::{CertificateFiles, ClusterSecret, Trust};
