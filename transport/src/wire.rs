//! Messages the transport itself exchanges.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use foundation_core::identity::NodeId;

/// Sent by both sides on the hello stream right after the TLS handshake.
///
/// The certificate already proved cluster membership; the hello says *which* node this is, so
/// connections can be keyed by node id and duplicates resolved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The sender's cluster, checked again against ours.
    pub cluster: String,
    /// The sender's node id.
    pub node: NodeId,
    /// Where the sender accepts connections.
    pub advertise: SocketAddr,
    /// Random per endpoint start: tells a restarted peer from a second connection of the same run.
    pub instance: u64,
    /// The port of the sender's bulk endpoint, on the advertised address's IP, if it has one
    /// (see [`crate::bulk`]).
    pub bulk_port: Option<u16>,
    /// The port of the sender's sealed membership socket, on the advertised address's IP, if it
    /// takes sealed membership datagrams (see [`crate::sealed`]).
    pub sealed_port: Option<u16>,
}

/// Largest hello we accept.
pub const MAX_HELLO_LEN: usize = 512;

/// Application error codes carried in CONNECTION_CLOSE and stream STOP/RESET frames.
pub mod code {
    /// Normal close: the endpoint is shutting down or leaving.
    pub const NORMAL: u32 = 0;
    /// This connection lost the duplicate-connection tie-break.
    pub const DUPLICATE: u32 = 1;
    /// The peer sent bytes that do not parse.
    pub const MALFORMED: u32 = 2;
    /// The peer sent a frame over the channel's limit.
    pub const TOO_LARGE: u32 = 3;
    /// The peer's hello was wrong: another cluster, a wire version we don't speak, or ourselves.
    pub const BAD_HELLO: u32 = 4;
    /// The receiver's inbox is closed (the application stopped reading).
    pub const UNAVAILABLE: u32 = 5;
    /// The peer already has its limit of our requests in flight on this connection.
    pub const TOO_MANY_IN_FLIGHT: u32 = 6;
    /// The peer already holds its quota of bulk-only connections to this node.
    pub const TOO_MANY_CONNECTIONS: u32 = 7;
}
