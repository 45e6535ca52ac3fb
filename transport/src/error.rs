//! Typed errors of the transport API.

use crate::frame::FrameError;
use crate::security::SecurityError;

/// Why the endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// Certificates or keys could not be set up.
    #[error(transparent)]
    Security(#[from] SecurityError),
    /// The UDP socket could not be bound.
    #[error("cannot bind {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The bulk endpoint's UDP socket could not be bound
    /// ([`TransportConfig::bulk_port`](crate::TransportConfig::bulk_port)).
    #[error("cannot bind the bulk transfer port {addr}: {source}")]
    BindBulk {
        /// The address.
        addr: std::net::SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The sealed membership socket could not be bound
    /// ([`TransportConfig::sealed_port`](crate::TransportConfig::sealed_port)).
    #[error("cannot bind the sealed membership port {addr}: {source}")]
    BindSealed {
        /// The address.
        addr: std::net::SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The thread of bulk transfers could not be started.
    #[error("cannot start the bulk transfer thread: {0}")]
    BulkThread(std::io::Error),
}

/// Why a TLS handshake or hello failed. Each is counted under its [`label`](Self::label).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeFailure {
    /// The peer's certificate is not signed by our cluster CA (wrong secret, or another CA).
    #[error("certificate not signed by this cluster's CA (wrong secret or CA)")]
    UntrustedCertificate,
    /// The peer presented no certificate.
    #[error("peer presented no certificate")]
    NoCertificate,
    /// The peer's certificate or hello belongs to another cluster.
    #[error("peer belongs to another cluster")]
    ForeignCluster,
    /// The peer speaks another protocol or wire version, or sent a malformed hello.
    #[error("protocol mismatch: {0}")]
    Protocol(String),
    /// The handshake did not finish in time.
    #[error("handshake timed out")]
    Timeout,
    /// Anything else: network errors, resets, our own certificate refused for another reason.
    #[error("handshake failed: {0}")]
    Other(String),
}

impl HandshakeFailure {
    /// The metric label for this kind of failure.
    pub fn label(&self) -> &'static str {
        match self {
            HandshakeFailure::UntrustedCertificate => "untrusted_certificate",
            HandshakeFailure::NoCertificate => "no_certificate",
            HandshakeFailure::ForeignCluster => "foreign_cluster",
            HandshakeFailure::Protocol(_) => "protocol",
            HandshakeFailure::Timeout => "timeout",
            HandshakeFailure::Other(_) => "other",
        }
    }
}

/// Why a connection to a peer could not be established.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    /// The handshake or hello failed.
    #[error(transparent)]
    Handshake(#[from] HandshakeFailure),
    /// The address answered with another node than the one expected.
    #[error("expected node {expected} at that address, found {found}")]
    WrongNode {
        /// Who we meant to reach.
        expected: String,
        /// Who answered.
        found: String,
    },
    /// The address is our own.
    #[error("refusing to connect to ourselves")]
    SelfConnect,
    /// The endpoint is shut down.
    #[error("endpoint is shut down")]
    ShutDown,
}

/// Why a message was not queued for sending.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The payload exceeds the channel's frame limit.
    #[error("message of {len} bytes exceeds the channel limit of {max}")]
    TooLarge {
        /// Payload size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The peer's queue for this channel is full and the caller chose not to wait.
    #[error("send queue full")]
    QueueFull,
    /// The queue stayed full, or no connection came up, until the deadline.
    #[error("deadline exceeded")]
    DeadlineExceeded,
    /// The connection failed while the transfer was under way.
    #[error("connection lost: {0}")]
    ConnectionLost(String),
    /// The message could not be encoded.
    #[error("encoding failed: {0}")]
    Encode(String),
    /// The endpoint is shut down.
    #[error("endpoint is shut down")]
    ShutDown,
}

/// Why a request got no response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// No response arrived before the deadline.
    #[error("deadline exceeded")]
    DeadlineExceeded,
    /// The request or the response exceeds the rpc frame limit.
    #[error("message of {len} bytes exceeds the rpc limit of {max}")]
    TooLarge {
        /// Size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The peer could not be reached.
    #[error("peer unreachable: {0}")]
    Unreachable(String),
    /// The peer refused the request (its application is not accepting requests, or is overloaded).
    #[error("peer refused the request (code {0})")]
    Refused(u64),
    /// The peer closed the request without responding.
    #[error("peer closed the request without a response")]
    NoResponse,
    /// The connection already carries its limit of calls in flight; the request was not sent.
    /// Retry after some calls end, or raise `TransportConfig::max_concurrent_requests` on both
    /// nodes.
    #[error("{limit} requests already in flight on the connection to this peer; request not sent")]
    InFlightLimit {
        /// The limit (`TransportConfig::max_concurrent_requests`).
        limit: usize,
    },
    /// The response was malformed.
    #[error("malformed response: {0}")]
    Malformed(#[from] FrameError),
    /// The endpoint is shut down.
    #[error("endpoint is shut down")]
    ShutDown,
}
