//! What can go wrong serving or fetching over HTTP.

use std::net::SocketAddr;
use std::time::Duration;

/// An HTTP server or client failure.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The server's address could not be bound.
    #[error("cannot listen for HTTP on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why binding failed.
        source: std::io::Error,
    },
    /// The server was started outside a tokio runtime.
    #[error("the HTTP server must be started inside a tokio runtime")]
    NoRuntime,
    /// The client could not connect.
    #[error("cannot connect to http://{addr}: {source}")]
    Connect {
        /// The address.
        addr: SocketAddr,
        /// Why connecting failed.
        source: std::io::Error,
    },
    /// The client's request did not complete in time.
    #[error("http://{addr}{path} did not answer within {after:?}")]
    Timeout {
        /// The address.
        addr: SocketAddr,
        /// The path requested.
        path: String,
        /// The time allowed.
        after: Duration,
    },
    /// The path cannot be put in a request.
    #[error("invalid request path {0:?}: it must start with '/'")]
    InvalidPath(String),
    /// The HTTP exchange failed (connection closed, malformed response, body too large).
    #[error("HTTP exchange with {addr} failed: {reason}")]
    Protocol {
        /// The address.
        addr: SocketAddr,
        /// What went wrong.
        reason: String,
    },
    /// The server answered with a status other than 2xx; the body often says why.
    #[error("http://{addr}{path} answered {status}: {body}")]
    Status {
        /// The address.
        addr: SocketAddr,
        /// The path requested.
        path: String,
        /// The status code.
        status: u16,
        /// The response body (truncated to 1 KiB).
        body: String,
    },
    /// The response body is not JSON.
    #[error("http://{addr}{path} did not return JSON: {reason}")]
    Json {
        /// The address.
        addr: SocketAddr,
        /// The path requested.
        path: String,
        /// The parse error.
        reason: String,
    },
}
