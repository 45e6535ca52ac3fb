//! Messages to agents anywhere: `send` (queued at most once, never retried), `request` (with a
//! deadline), and multicast to every agent with a capability. A message to an agent of this
//! node goes straight into its mailbox; one to another node's agent is one request on the rpc
//! channel (see `remote`).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use foundation_core::agents::route;
use foundation_core::agents::wire::{AgentReply, AgentRequest, Delivery};
use foundation_core::NodeAddr;
use serde::{de::DeserializeOwned, Serialize};
use tokio::sync::{mpsc::error::TrySendError, oneshot};
use tokio::time::Instant as TokioInstant;

use super::agent::Message;
use super::instance::{Envelope, Mailbox};
use super::{remote, AgentEntry, AgentState, AgentsHandle, DeliveryError};
use crate::runtime::wait::bounded;

/// Where a message goes.
enum Target {
    Local(Arc<Mailbox>),
    Remote(NodeAddr),
}

/// How one message of a multicast or broadcast went.
#[derive(Clone, Debug)]
pub struct Delivered {
    /// The agent it was for.
    pub agent: AgentEntry,
    /// Queued for it, or why not.
    pub result: Result<(), DeliveryError>,
}

/// Puts `envelope` into agent `name`'s mailbox without waiting: a full mailbox is an error.
pub(super) fn enqueue(
    name: &str,
    mailbox: &Mailbox,
    envelope: Envelope,
) -> Result<(), DeliveryError> {
    mailbox.sender.try_send(envelope).map_err(|e| match e {
        TrySendError::Full(_) => DeliveryError::MailboxFull(name.to_owned()),
        TrySendError::Closed(_) => DeliveryError::DeadAgent {
            name: name.to_owned(),
            state: AgentState::Stopped,
        },
    })
}

fn encode<T: Serialize>(value: &T) -> Result<Bytes, DeliveryError> {
    postcard::to_stdvec(value)
        .map(Bytes::from)
        .map_err(|e| DeliveryError::Codec(e.to_string()))
}

impl AgentsHandle {
    /// Queues a typed message (postcard) for agent `name`, wherever it runs: at most once,
    /// never retried. Returns once it is in the agent's mailbox.
    pub async fn send<T: Serialize>(&self, name: &str, message: &T) -> Result<(), DeliveryError> {
        self.send_bytes(name, encode(message)?).await
    }

    /// Queues raw bytes for agent `name`; see [`send`](Self::send).
    pub async fn send_bytes(&self, name: &str, body: Bytes) -> Result<(), DeliveryError> {
        let started = TokioInstant::now();
        let until = started + self.shared.config.send_timeout;
        let result = match self.resolve(name) {
            Ok(target) => {
                self.deliver(target, name, Delivery::Send, body, until)
                    .await
            }
            Err(e) => Err(e),
        };
        self.shared.metrics.message("send", started, &result);
        result.map(drop)
    }

    /// Sends a typed message to agent `name` and waits at most `deadline` for its typed answer.
    pub async fn request<T: Serialize, R: DeserializeOwned>(
        &self,
        name: &str,
        message: &T,
        deadline: Duration,
    ) -> Result<R, DeliveryError> {
        let answer = self.request_bytes(name, encode(message)?, deadline).await?;
        postcard::from_bytes(&answer).map_err(|e| DeliveryError::Codec(format!("answer: {e}")))
    }

    /// Sends raw bytes to agent `name` and waits at most `deadline` for its answer.
    pub async fn request_bytes(
        &self,
        name: &str,
        body: Bytes,
        deadline: Duration,
    ) -> Result<Bytes, DeliveryError> {
        let started = TokioInstant::now();
        let result = match self.resolve(name) {
            Ok(target) => {
                let until = started + bounded(deadline);
                self.deliver(target, name, Delivery::Request, body, until)
                    .await
            }
            Err(e) => Err(e),
        };
        self.shared.metrics.message("request", started, &result);
        result
    }

    /// Queues a typed message for every visible agent that declared `capability`, concurrently;
    /// each at most once. Agents that take no messages are reported, not skipped.
    pub async fn multicast<T: Serialize>(
        &self,
        capability: &str,
        message: &T,
    ) -> Result<Vec<Delivered>, DeliveryError> {
        let agents = self.with_capability(capability);
        Ok(self.send_each(agents, encode(message)?).await)
    }

    /// Queues a typed message for every visible agent of the cluster; see
    /// [`multicast`](Self::multicast).
    pub async fn broadcast<T: Serialize>(
        &self,
        message: &T,
    ) -> Result<Vec<Delivered>, DeliveryError> {
        let agents = self.directory().all().cloned().collect();
        Ok(self.send_each(agents, encode(message)?).await)
    }

    async fn send_each(&self, agents: Vec<AgentEntry>, body: Bytes) -> Vec<Delivered> {
        let until = TokioInstant::now() + self.shared.config.send_timeout;
        let mut sends = tokio::task::JoinSet::new();
        for (i, agent) in agents.into_iter().enumerate() {
            let (handle, body) = (self.clone(), body.clone());
            sends.spawn(async move {
                let started = TokioInstant::now();
                let result = match handle.target_of(&agent) {
                    Ok(target) => handle
                        .deliver(target, &agent.name, Delivery::Send, body, until)
                        .await
                        .map(drop),
                    Err(e) => Err(e),
                };
                handle.shared.metrics.message("multicast", started, &result);
                (i, Delivered { agent, result })
            });
        }
        let mut delivered: Vec<(usize, Delivered)> = sends.join_all().await;
        delivered.sort_by_key(|(i, _)| *i);
        delivered.into_iter().map(|(_, d)| d).collect()
    }

    /// Where a message to `name` goes: this node's agent if it has one (no directory, no
    /// network), else the one the directory resolves the name to (the core's rule).
    fn resolve(&self, name: &str) -> Result<Target, DeliveryError> {
        let directory = self.directory();
        let target = route::resolve(name, self.local_state(name), &directory)?;
        self.target(name, target)
    }

    /// Where a message to the agent `entry` of the directory goes.
    fn target_of(&self, entry: &AgentEntry) -> Result<Target, DeliveryError> {
        let target = route::target_of(entry, self.local_state(&entry.name))?;
        self.target(&entry.name, target)
    }

    fn target(&self, name: &str, target: route::Target<'_>) -> Result<Target, DeliveryError> {
        match target {
            route::Target::Remote(entry) => Ok(Target::Remote(entry.node)),
            route::Target::Local => self
                .mailbox_of(name)
                .map(Target::Local)
                .ok_or_else(|| DeliveryError::UnknownAgent(name.to_owned())),
        }
    }

    /// The state of this node's agent `name`, if it has one.
    fn local_state(&self, name: &str) -> Option<AgentState> {
        self.shared.read().get(name).map(|agent| agent.state)
    }

    fn mailbox_of(&self, name: &str) -> Option<Arc<Mailbox>> {
        self.shared
            .read()
            .get(name)
            .map(|agent| agent.mailbox.clone())
    }

    async fn deliver(
        &self,
        target: Target,
        name: &str,
        delivery: Delivery,
        body: Bytes,
        until: TokioInstant,
    ) -> Result<Bytes, DeliveryError> {
        self.check_size(body.len())?;
        match target {
            Target::Local(mailbox) => {
                let message = Message {
                    from: self.node(),
                    deadline: (delivery == Delivery::Request).then_some(until),
                    body,
                };
                self.deliver_local(name, &mailbox, message, until).await
            }
            Target::Remote(node) => {
                let request = AgentRequest {
                    to: name.to_owned(),
                    delivery,
                    body: body.to_vec(),
                };
                let budget = until.saturating_duration_since(TokioInstant::now());
                match remote::call(&self.shared.endpoint, node, &request, budget).await? {
                    AgentReply::Queued => Ok(Bytes::new()),
                    AgentReply::Answer(answer) => Ok(answer.into()),
                    AgentReply::Failed(e) => Err(e),
                }
            }
        }
    }

    pub(super) fn check_size(&self, len: usize) -> Result<(), DeliveryError> {
        let max = self.shared.config.max_message_bytes;
        if len > max {
            return Err(DeliveryError::TooLarge { len, max });
        }
        Ok(())
    }

    /// Queues `message` for this node's agent `name`; for a request, waits for the answer
    /// until `until`.
    pub(super) async fn deliver_local(
        &self,
        name: &str,
        mailbox: &Mailbox,
        message: Message,
        until: TokioInstant,
    ) -> Result<Bytes, DeliveryError> {
        if !message.expects_answer() {
            enqueue(
                name,
                mailbox,
                Envelope::Message {
                    message,
                    reply: None,
                },
            )?;
            return Ok(Bytes::new());
        }
        let (reply, answer) = oneshot::channel();
        let envelope = Envelope::Message {
            message,
            reply: Some(reply),
        };
        enqueue(name, mailbox, envelope)?;
        match tokio::time::timeout_at(until, answer).await {
            Ok(Ok(result)) => result,
            // The mailbox closed with the message in it: the agent was stopped for good.
            Ok(Err(_)) => Err(self.dead(name)),
            Err(_) => Err(DeliveryError::DeadlineExceeded),
        }
    }

    /// This node's agent `name`, for a message that arrived from another node.
    pub(super) fn local_mailbox(&self, name: &str) -> Result<Arc<Mailbox>, DeliveryError> {
        route::admit(name, self.local_state(name))?;
        self.mailbox_of(name)
            .ok_or_else(|| DeliveryError::UnknownAgent(name.to_owned()))
    }
}
