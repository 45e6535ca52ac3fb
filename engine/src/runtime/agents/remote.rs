//! Agent messages between nodes, on the rpc channel: one QUIC stream per message, with the
//! caller's deadline carried to the receiver.
//!
//! Why rpc and not the coordination stream: a request needs its answer routed back to the
//! one caller waiting for it, which the rpc channel already does (stream per request,
//! deadline, size limit, "no response" when the peer drops it), and one slow handler never
//! holds up the messages behind it as it would on a single ordered stream. The coordination
//! stream is the driver's, feeding the core's protocol machines (and the variables' CAS). The
//! rpc queue is shared with service calls; a request's first byte tells which it is
//! ([`is_agent_request`]).

use std::time::Duration;

use foundation_core::agents::wire::{is_agent_request, AgentReply, AgentRequest, Delivery};
use foundation_core::NodeAddr;
use foundation_transport::{Endpoint, IncomingRequest, RequestError};
use tokio::sync::mpsc::{self, error::TrySendError};

use super::agent::Message;
use super::{AgentsHandle, DeliveryError};
use crate::runtime::wait::bounded;

/// Agent messages queued for the agents' server.
const AGENT_QUEUE: usize = 1024;

/// Takes the agent messages out of the transport's rpc requests, which the services' loop
/// reads: each goes on to the agents' own queue, so a busy agent layer never stalls service
/// calls, and a service call takes no extra hop through a task that sorts them.
#[derive(Clone, Debug)]
pub(crate) struct AgentRequests(mpsc::Sender<IncomingRequest>);

impl AgentRequests {
    /// The diverter, and the queue the agents' server reads.
    pub(crate) fn new() -> (Self, mpsc::Receiver<IncomingRequest>) {
        let (tx, rx) = mpsc::channel(AGENT_QUEUE);
        (Self(tx), rx)
    }

    /// `None` if `request` was an agent message (now on the agents' queue), else `request`.
    pub(crate) fn divert(&self, request: IncomingRequest) -> Option<IncomingRequest> {
        if !is_agent_request(&request.payload) {
            return Some(request);
        }
        match self.0.try_send(request) {
            // Closed: the node is stopping; the request's stream just closes.
            Ok(()) | Err(TrySendError::Closed(_)) => {}
            // A full queue is waited for in a task of its own, not in the services' loop.
            Err(TrySendError::Full(request)) => {
                let queue = self.0.clone();
                tokio::spawn(async move { queue.send(request).await });
            }
        }
        None
    }
}

/// Sends `request` to `node` and waits at most `budget` for its reply.
pub(super) async fn call(
    endpoint: &Endpoint,
    node: NodeAddr,
    request: &AgentRequest,
    budget: Duration,
) -> Result<AgentReply, DeliveryError> {
    let reply = endpoint
        .request(node, request.encode().into(), budget)
        .await
        .map_err(|e| match e {
            RequestError::DeadlineExceeded => DeliveryError::DeadlineExceeded,
            RequestError::TooLarge { len, max } => DeliveryError::TooLarge { len, max },
            RequestError::ShutDown => DeliveryError::Stopped,
            other => DeliveryError::Unreachable(other.to_string()),
        })?;
    Ok(AgentReply::decode(&reply))
}

/// Answers the agent messages that reach this node, until the transport closes.
pub(super) async fn serve(handle: AgentsHandle, mut requests: mpsc::Receiver<IncomingRequest>) {
    while let Some(request) = requests.recv().await {
        let handle = handle.clone();
        tokio::spawn(async move {
            let (from, payload, deadline, responder) = request.into_parts();
            let started = tokio::time::Instant::now();
            let cap = bounded(handle.shared.config.max_request_deadline);
            let deadline = deadline.min(started + cap);
            let result = receive(&handle, from, &payload, deadline).await;
            handle.shared.metrics.message("received", started, &result);
            let reply = match result {
                Ok(answer) => answer,
                Err(e) => AgentReply::Failed(e),
            };
            // The caller may have given up; nothing to do about a failed response.
            let _ = responder.respond(reply.encode().into()).await;
        });
    }
}

async fn receive(
    handle: &AgentsHandle,
    from: foundation_transport::NodeId,
    payload: &[u8],
    deadline: tokio::time::Instant,
) -> Result<AgentReply, DeliveryError> {
    let request = AgentRequest::decode(payload)?;
    handle.check_size(request.body.len())?;
    if request.to == super::sessions::COORDINATOR && request.delivery == Delivery::Request {
        let report = super::sessions::placement::serve(handle, &request.body).await?;
        return Ok(AgentReply::Answer(report));
    }
    let mailbox = handle.local_mailbox(&request.to)?;
    let message = Message {
        from,
        deadline: (request.delivery == Delivery::Request).then_some(deadline),
        body: request.body.into(),
    };
    let answer = handle
        .deliver_local(&request.to, &mailbox, message, deadline)
        .await?;
    Ok(match request.delivery {
        Delivery::Send => AgentReply::Queued,
        Delivery::Request => AgentReply::Answer(answer.to_vec()),
    })
}
