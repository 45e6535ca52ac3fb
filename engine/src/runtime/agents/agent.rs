//! What an application writes: an [`Agent`] handles messages one at a time, with `init` before
//! the first and `terminate` after the last, and reports its health on request.

use std::future::Future;

use bytes::Bytes;
use foundation_transport::NodeId;
use serde::{de::DeserializeOwned, Serialize};

use super::AgentsHandle;
pub use crate::runtime::services::HandlerError;

/// One message to an agent.
#[derive(Clone, Debug)]
pub struct Message {
    /// The sending node (this node for a local message).
    pub from: NodeId,
    /// When the sender of a request ([`AgentsHandle::request`]) stops waiting for the answer;
    /// `None` for a sent message, whose answer is thrown away.
    pub deadline: Option<tokio::time::Instant>,
    /// The message as sent.
    pub body: Bytes,
}

impl Message {
    /// Whether the sender waits for an answer.
    pub fn expects_answer(&self) -> bool {
        self.deadline.is_some()
    }

    /// Decodes the body as a typed message (postcard, as [`AgentsHandle::send`] encodes it).
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, HandlerError> {
        postcard::from_bytes(&self.body)
            .map_err(|e| HandlerError::new(format!("message does not decode: {e}")))
    }
}

/// Encodes a typed answer (postcard, as [`AgentsHandle::request`] decodes it).
pub fn answer<T: Serialize>(value: &T) -> Result<Bytes, HandlerError> {
    postcard::to_stdvec(value)
        .map(Bytes::from)
        .map_err(|e| HandlerError::new(format!("answer does not encode: {e}")))
}

/// An agent's own account of how it is doing; replicated with its directory entry.
pub use foundation_core::agents::Health;

/// Why an agent instance is being terminated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// Its supervisor stops it: the agent or its group is stopped, the node shuts down, or a
    /// sibling failed under one-for-all.
    Stopped,
}

/// What an agent instance knows about where it runs, and its way to reach other agents.
#[derive(Clone)]
pub struct Context {
    pub(super) name: String,
    pub(super) agents: AgentsHandle,
}

impl Context {
    /// The agent's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The node it runs in.
    pub fn node(&self) -> NodeId {
        self.agents.node()
    }

    /// The node's agents: send messages, look others up.
    pub fn agents(&self) -> &AgentsHandle {
        &self.agents
    }
}

/// An agent. The runtime builds a fresh instance (from the factory given at spawn) for every
/// start, so state that must survive a restart belongs in replicated variables, not in fields.
///
/// A handler that panics takes its instance down: the caller waiting on that message gets
/// [`DeliveryError::Panicked`](foundation_core::agents::DeliveryError::Panicked), and the
/// supervisor restarts the agent by its policy. A handler's `Err` is an answer, not a crash.
pub trait Agent: Send + 'static {
    /// Runs before the first message of this instance; an error ends the instance as a
    /// failure (restarted by its policy, counted towards the restart intensity).
    fn init(&mut self, ctx: &Context) -> impl Future<Output = Result<(), HandlerError>> + Send {
        let _ = ctx;
        async { Ok(()) }
    }

    /// Handles one message; the answer goes to a caller of `request`.
    fn handle(
        &mut self,
        ctx: &Context,
        message: Message,
    ) -> impl Future<Output = Result<Bytes, HandlerError>> + Send;

    /// Runs after the last message when the instance is stopped (not after a panic).
    fn terminate(&mut self, ctx: &Context, reason: StopReason) -> impl Future<Output = ()> + Send {
        let _ = (ctx, reason);
        async {}
    }

    /// How the agent is doing; asked between messages.
    fn health(&self) -> Health {
        Health::Healthy
    }
}
