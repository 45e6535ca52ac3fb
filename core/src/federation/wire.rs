//! What gateways of two linked clusters say to each other, one request and one reply per QUIC
//! stream: a probe carrying the sender's whole global directory (answered with the receiver's),
//! or a call forwarded to a service the receiver's cluster exports. Every frame is written and
//! read with [`encode`] and [`decode`], which carry the wire version.

use serde::{Deserialize, Serialize};

use super::bridge::{BridgeReceipt, BridgedMessage};
use super::directory::GlobalDirectory;
use super::error::FederationError;
use crate::services::trace::TraceContext;

mod version;

pub use version::{decode, encode, WireError, WIRE_VERSION};

/// Largest request or reply a gateway reads: a directory at its limits stays well under it.
pub const MAX_FRAME: usize = 4 * 1024 * 1024;

/// A request from a gateway of another cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FederationRequest {
    /// A WAN probe; the directory swap rides on it (push-pull anti-entropy).
    Probe {
        /// The sender's global directory.
        directory: GlobalDirectory,
    },
    /// A call to an exported service of the receiver's cluster.
    Call {
        /// The service.
        service: String,
        /// The request body, as the caller's `call_bytes` would carry it.
        body: Vec<u8>,
        /// What is left of the caller's deadline, in microseconds.
        deadline_micros: u64,
        /// The caller's trace, continued by the call inside the receiver's cluster.
        trace: TraceContext,
        /// Whether the caller marked the call idempotent: the receiver's cluster retries it
        /// between instances after a timeout or a lost connection too.
        idempotent: bool,
    },
    /// Messages published in the sender's cluster on topics it exports to the receiver's.
    Bridge(Vec<BridgedMessage>),
    /// The sender's directory, pushed at once after it changed (answered with `Pushed`).
    Push {
        /// The sender's global directory, as offered to the receiver.
        directory: GlobalDirectory,
    },
    /// A call for `target`, a cluster linked to the receiver, which carries it as a hub: it
    /// forwards it to `target` as a [`Via`](FederationRequest::Via), never further.
    Transit {
        /// The cluster the call is for.
        target: String,
        /// The call.
        call: ForwardedCall,
    },
    /// A call that came through the sender as a hub, from a gateway of `origin`: served in the
    /// receiver's cluster, never forwarded again (so a route has at most one transit hop).
    Via {
        /// The cluster the call started in.
        origin: String,
        /// The call.
        call: ForwardedCall,
    },
    /// The topic patterns of the receiver's cluster that the sender's cluster would deliver
    /// (see `BridgeInterest`), answered with `Pushed`. Last of the kinds, so the others keep
    /// their tags; a gateway of an older release does not decode it and answers `Refused`,
    /// which leaves the link as it was.
    Interest(Vec<String>),
}

/// A call carried through a hub.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForwardedCall {
    /// The service.
    pub service: String,
    /// The request body.
    pub body: Vec<u8>,
    /// What is left of the caller's deadline when sent, in microseconds.
    pub deadline_micros: u64,
    /// The caller's trace.
    pub trace: TraceContext,
    /// Whether the caller marked the call idempotent.
    pub idempotent: bool,
}

/// The answer to a [`FederationRequest`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FederationReply {
    /// The receiver's global directory, after merging the sender's.
    Probe {
        /// The receiver's directory.
        directory: GlobalDirectory,
    },
    /// The outcome of a forwarded call.
    Call(Result<Vec<u8>, RemoteCallError>),
    /// A push or an interest was taken in.
    Pushed,
    /// The request was refused (malformed, or from a cluster that is not linked).
    Refused(String),
    /// What became of a [`FederationRequest::Bridge`] batch.
    Bridged(BridgeReceipt),
}

/// Why a forwarded call failed in the remote cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum RemoteCallError {
    /// The remote cluster does not export the service.
    #[error("not exported by the remote cluster")]
    NotExported,
    /// The call inside the remote cluster failed; the message is its error's.
    #[error("{0}")]
    Failed(String),
    /// The deadline passed inside the remote cluster.
    #[error("deadline exceeded in the remote cluster")]
    DeadlineExceeded,
    /// A hub could not carry the call: transit not allowed, its link to the target down, the
    /// target's service not exported.
    #[error("at the hub: {0}")]
    Federation(FederationError),
}

/// The service a gateway registers in its own cluster, through which the cluster's other nodes
/// call services of linked clusters (intra-cluster RPC balances and fails over between gateways).
pub const RELAY_SERVICE: &str = "foundation.federation";

/// What a node hands to a gateway of its own cluster ([`RELAY_SERVICE`]'s request), written
/// and read with [`encode`] and [`decode`] as the frames between gateways are.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RelayRequest {
    /// A call to an exported service of a linked cluster.
    Call {
        /// The linked cluster.
        cluster: String,
        /// The exported service there.
        service: String,
        /// The request body.
        body: Vec<u8>,
        /// Whether the caller marked the call idempotent: the gateway retries it on the
        /// remote's next gateway after a timeout or a lost connection too.
        idempotent: bool,
    },
    /// A look-up in the gateway's global directory; the reply's body is the postcard
    /// encoding of an `Option<ExportedService>`.
    Lookup {
        /// The cluster.
        cluster: String,
        /// The service.
        service: String,
    },
}

/// [`RELAY_SERVICE`]'s reply: the body, or why the call or look-up failed, typed.
pub type RelayReply = Result<Vec<u8>, RelayError>;

/// Why a relayed call failed, as the gateway saw it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum RelayError {
    /// Unknown or unlinked cluster, link down, service not exported.
    #[error(transparent)]
    Federation(#[from] FederationError),
    /// The call failed in the remote cluster.
    #[error("in the remote cluster: {0}")]
    Remote(#[from] RemoteCallError),
    /// The remote gateway could not be reached, refused the request, or answered garbage.
    #[error("remote gateway: {0}")]
    Gateway(String),
}
