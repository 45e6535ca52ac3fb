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
use tokio::sync::mpsc;

use super::agent::Message;
use super::{AgentsHandle, DeliveryError};

/// Requests queued between the split and each consumer.
const SPLIT_BUFFER: usize = 1024;

/// Splits the transport's rpc requests into service calls and agent messages, each on its
/// own queue, so a busy agent layer never stalls service calls (and the reverse).
pub(crate) fn split_requests(
    mut requests: mpsc::Receiver<IncomingRequest>,
) -> (
    mpsc::Receiver<IncomingRequest>,
    mpsc::Receiver<IncomingRequest>,
) {
    let (services_tx, services) = mpsc::channel(SPLIT_BUFFER);
    let (agents_tx, agents) = mpsc::channel(SPLIT_BUFFER);
    tokio::spawn(async move {
        while let Some(request) = requests.recv().await {
            let queue = if is_agent_request(&request.payload) {
                &agents_tx
            } else {
                &services_tx
            };
            // A consumer gone means the node is stopping; the request's stream just closes.
            let _ = queue.send(request).await;
        }
    });
    (services, agents)
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
