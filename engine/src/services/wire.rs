//! What RPC and pub/sub put on the wire (postcard): requests and replies on the rpc channel,
//! published messages and acknowledgements on the events channel.

use serde::{Deserialize, Serialize};

use super::trace::TraceContext;

/// A call to one instance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RpcRequest {
    /// The service.
    pub service: String,
    /// The callee node's number for the instance.
    pub instance: u64,
    /// The caller's trace, continued by the handler.
    pub trace: TraceContext,
    /// The request body.
    pub body: Vec<u8>,
}

/// The answer to an [`RpcRequest`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RpcReply {
    /// The handler's response.
    Ok(Vec<u8>),
    /// Why there is none.
    Err(RemoteError),
}

/// Why an instance gave no response. The first four mean the handler never ran, so any call
/// may be retried elsewhere.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum RemoteError {
    /// The node has no such instance (it was deregistered, or the node restarted).
    #[error("no such instance")]
    NoSuchInstance,
    /// The caller is over its rate limit at this node.
    #[error("rate limited; retry after {retry_after_ms} ms")]
    RateLimited {
        /// When a token will be available.
        retry_after_ms: u64,
    },
    /// The node is running as many calls as it allows.
    #[error("overloaded")]
    Overloaded,
    /// The request did not decode.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The handler failed or refused.
    #[error("{0}")]
    Handler(String),
    /// The handler did not finish before the caller's deadline.
    #[error("handler did not finish before the deadline")]
    DeadlineExceeded,
}

impl RemoteError {
    /// Whether the handler certainly did not run.
    pub fn not_executed(&self) -> bool {
        matches!(
            self,
            RemoteError::NoSuchInstance
                | RemoteError::RateLimited { .. }
                | RemoteError::Overloaded
                | RemoteError::BadRequest(_)
        )
    }
}

/// Messages on the events channel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventMessage {
    /// A published message for the receiving node's subscribers.
    Publish(Published),
    /// The receiver has every reliable message of `stream` up to `seq`.
    Ack {
        /// The publisher's stream to the receiver.
        stream: u64,
        /// Highest contiguous sequence number received.
        seq: u64,
    },
}

/// One published message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    /// Its topic.
    pub topic: String,
    /// Its payload.
    pub payload: Vec<u8>,
    /// The publisher's trace.
    pub trace: TraceContext,
    /// For at-least-once delivery: the publisher's stream to this receiver and the message's
    /// place in it.
    pub reliable: Option<Sequenced>,
    /// For at-least-once delivery: the publisher's oldest unacknowledged number in the stream,
    /// where a receiver that does not know the stream starts it.
    pub oldest: u64,
}

/// A reliable message's place in its stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sequenced {
    /// The publisher's stream to the receiver: new for each publisher process and receiver.
    pub stream: u64,
    /// Position in the stream, from 1 without gaps.
    pub seq: u64,
}
