//! What agent messaging puts on the rpc channel (postcard): one request per message, and its
//! reply. Agent requests share the rpc channel with service calls; the first byte tells them
//! apart: a service call starts with its service name's length, never 0, and an agent request
//! starts with [`AGENT_REQUEST_TAG`], which is 0.

use serde::{Deserialize, Serialize};

use super::record::AgentState;

/// The first byte of every agent request.
pub const AGENT_REQUEST_TAG: u8 = 0;

/// Whether an rpc-channel request is for an agent rather than a service.
pub fn is_agent_request(payload: &[u8]) -> bool {
    payload.first() == Some(&AGENT_REQUEST_TAG)
}

/// What the sender waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Delivery {
    /// Only for the message to be queued for the agent (at most once).
    Send,
    /// For the agent's answer.
    Request,
}

/// A message to the agent `to` of the receiving node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentRequest {
    /// The agent.
    pub to: String,
    /// What the sender waits for.
    pub delivery: Delivery,
    /// The message.
    pub body: Vec<u8>,
}

impl AgentRequest {
    /// The rpc-channel payload: the tag, then the request.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![AGENT_REQUEST_TAG];
        // Plain data: encoding into a Vec cannot fail.
        out.extend(postcard::to_stdvec(self).unwrap_or_default());
        out
    }

    /// Reads an rpc-channel payload; an error for anything that is not a tagged request.
    pub fn decode(payload: &[u8]) -> Result<Self, DeliveryError> {
        match payload.split_first() {
            Some((&AGENT_REQUEST_TAG, rest)) => {
                postcard::from_bytes(rest).map_err(|e| DeliveryError::BadRequest(e.to_string()))
            }
            _ => Err(DeliveryError::BadRequest("not an agent request".into())),
        }
    }
}

/// The answer to an [`AgentRequest`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AgentReply {
    /// A sent message is queued for the agent.
    Queued,
    /// The agent's answer to a request.
    Answer(Vec<u8>),
    /// Why there is neither.
    Failed(DeliveryError),
}

impl AgentReply {
    /// The bytes of the reply.
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).unwrap_or_default()
    }

    /// Reads a reply; a malformed one is a failure of the answering node, not a panic here.
    pub fn decode(bytes: &[u8]) -> Self {
        postcard::from_bytes(bytes).unwrap_or_else(|e| {
            AgentReply::Failed(DeliveryError::BadRequest(format!("malformed reply: {e}")))
        })
    }
}

/// Why a message was not delivered or not answered, wherever the agent runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum DeliveryError {
    /// No agent of that name (in the receiving node).
    #[error("no agent named {0:?}")]
    UnknownAgent(String),
    /// The agent exists but will not run again.
    #[error("agent {name:?} is {} and takes no messages", state.name())]
    DeadAgent {
        /// The agent.
        name: String,
        /// Its state.
        state: AgentState,
    },
    /// The handler panicked while handling this message (the agent is restarted).
    #[error("agent {name:?} panicked handling the message: {message}")]
    Panicked {
        /// The agent.
        name: String,
        /// The panic's message.
        message: String,
    },
    /// The handler answered with an error.
    #[error("agent {name:?} failed: {message}")]
    Handler {
        /// The agent.
        name: String,
        /// The handler's message.
        message: String,
    },
    /// No answer before the deadline.
    #[error("no answer before the deadline")]
    DeadlineExceeded,
    /// The agent's mailbox is full: it is not keeping up.
    #[error("agent {0:?} has a full mailbox")]
    MailboxFull(String),
    /// The message is larger than the limit.
    #[error("message of {len} bytes, more than the {max} allowed")]
    TooLarge {
        /// Its size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The request did not decode.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// A typed message did not encode, or an answer did not decode as the type asked for.
    #[error("codec: {0}")]
    Codec(String),
    /// The agent's node could not be reached.
    #[error("agent's node unreachable: {0}")]
    Unreachable(String),
    /// This node has stopped.
    #[error("the node has stopped")]
    Stopped,
}

impl DeliveryError {
    /// A short name for metric labels.
    pub fn label(&self) -> &'static str {
        match self {
            DeliveryError::UnknownAgent(_) => "unknown_agent",
            DeliveryError::DeadAgent { .. } => "dead_agent",
            DeliveryError::Panicked { .. } => "panicked",
            DeliveryError::Handler { .. } => "handler_error",
            DeliveryError::DeadlineExceeded => "deadline_exceeded",
            DeliveryError::MailboxFull(_) => "mailbox_full",
            DeliveryError::TooLarge { .. } => "too_large",
            DeliveryError::BadRequest(_) => "bad_request",
            DeliveryError::Codec(_) => "codec",
            DeliveryError::Unreachable(_) => "unreachable",
            DeliveryError::Stopped => "stopped",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_are_told_apart_from_service_calls() {
        let request = AgentRequest {
            to: "bidder".into(),
            delivery: Delivery::Request,
            body: vec![1, 2, 3],
        };
        let bytes = request.encode();
        assert!(is_agent_request(&bytes));
        assert_eq!(AgentRequest::decode(&bytes), Ok(request));
        // A service call's first byte is its (non-empty) name's length.
        let service_call = postcard::to_stdvec(&("billing", 1u64)).unwrap();
        assert!(!is_agent_request(&service_call));
        assert!(!is_agent_request(&[]));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for garbage in [&[][..], &[0], &[0, 0xff, 0xff], &[7, 1, 2]] {
            assert!(matches!(
                AgentRequest::decode(garbage),
                Err(DeliveryError::BadRequest(_))
            ));
            assert!(matches!(
                AgentReply::decode(garbage),
                AgentReply::Failed(_) | AgentReply::Queued | AgentReply::Answer(_)
            ));
        }
        let reply = AgentReply::Failed(DeliveryError::DeadAgent {
            name: "a".into(),
            state: AgentState::Failed,
        });
        assert_eq!(AgentReply::decode(&reply.encode()), reply);
    }
}
