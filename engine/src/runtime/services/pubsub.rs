//! Pub/sub: a publish goes once to each node that has a subscriber whose pattern matches the
//! topic (interest is replicated, so there is no broadcast), and the receiving node fans it
//! out to its local subscribers.
//!
//! Delivery is at-most-once by default and in order per publisher and topic (one ordered
//! stream per peer). [`PublishOptions::reliable`] adds acknowledgements and resends, so a
//! message survives a lost connection (see [`crate::services::reliable`]). Each subscriber has
//! a bounded queue; when it is full, [`SlowPolicy`] either drops the oldest message (counted)
//! or closes the subscription — memory never grows without bound.
//!
//! ```no_run
//! # async fn demo(node: foundation_engine::runtime::Node) -> Result<(), foundation_engine::runtime::services::PubSubError> {
//! let pubsub = node.pubsub();
//! let mut orders = pubsub.subscribe("orders.*.created").await?;
//! pubsub.publish("orders.eu.created", b"order 17".to_vec()).await?;
//! while let Some(message) = orders.recv().await {
//!     println!("{}: {} bytes", message.topic, message.payload.len());
//! }
//! # Ok(()) }
//! ```

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use foundation_transport::{Channel, Endpoint, Message as Received, NodeAddr, NodeId, SendMode};
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::time::Instant as TokioInstant;

use super::metrics::ServicesMetrics;
use super::registry::{lock, Shared};
use super::rpc::current_trace;
use crate::ephemeral::PUBSUB_KEYSPACE;
use crate::runtime::driver::Request;
use crate::services::reliable::{Backlogged, Incoming, Outgoing, Verdict};
use crate::services::topic::{Pattern, Subscriptions, Topic, TopicError};
use crate::services::trace::TraceContext;
use crate::services::wire::{EventMessage, Published};
use crate::time::Instant;

/// How long a publish waits for room in a peer's send queue before giving up on that peer.
const SEND_WAIT: Duration = Duration::from_secs(1);
/// How often unacknowledged reliable messages are checked for resending.
const RESEND_TICK: Duration = Duration::from_millis(200);
/// How long a reliable message waits for its acknowledgement before it is sent again.
const RESEND_AFTER: Duration = Duration::from_secs(1);
/// Unacknowledged reliable messages kept per receiving node.
const RELIABLE_BACKLOG: usize = 65_536;
/// Reliable streams a receiver remembers.
const INCOMING_STREAMS: usize = 4096;
/// Most event messages handled before acknowledgements go out.
const ACK_BATCH: usize = 256;

/// Why a pub/sub operation failed.
#[derive(Debug, thiserror::Error)]
pub enum PubSubError {
    /// The topic or pattern is not valid.
    #[error(transparent)]
    Topic(#[from] TopicError),
    /// A reliable publish found a receiving node's backlog full (it is not acknowledging).
    #[error("node {node} is not acknowledging: {source}")]
    Backlogged {
        /// The receiving node.
        node: NodeId,
        /// The backlog.
        source: Backlogged,
    },
    /// The interest could not be recorded (a replication limit).
    #[error(transparent)]
    Refused(#[from] crate::core::WriteError),
    /// The node has stopped.
    #[error("the node has stopped")]
    Stopped,
}

/// What a subscriber does when its queue is full.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SlowPolicy {
    /// Drop the oldest queued message (counted in `foundation_pubsub_dropped_total`).
    #[default]
    DropOldest,
    /// Close the subscription: [`Subscription::recv`] returns `None` after what is queued.
    Disconnect,
}

/// A subscription's queue bound and slow-consumer policy.
#[derive(Clone, Copy, Debug)]
pub struct SubscribeOptions {
    /// Messages queued at most.
    pub capacity: usize,
    /// What happens when the queue is full.
    pub policy: SlowPolicy,
}

impl Default for SubscribeOptions {
    fn default() -> Self {
        Self {
            capacity: 1024,
            policy: SlowPolicy::DropOldest,
        }
    }
}

/// How a message is published.
#[derive(Clone, Copy, Debug, Default)]
pub struct PublishOptions {
    /// At-least-once: acknowledged by each receiving node and resent until it is.
    pub reliable: bool,
}

/// A message as a subscriber receives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Its topic.
    pub topic: String,
    /// Its payload.
    pub payload: Bytes,
    /// The publishing node.
    pub publisher: NodeId,
    /// The publisher's trace.
    pub trace: TraceContext,
}

/// One subscriber's bounded queue.
struct Queue {
    items: Mutex<QueueState>,
    ready: Notify,
    capacity: usize,
    policy: SlowPolicy,
}

#[derive(Default)]
struct QueueState {
    messages: VecDeque<Message>,
    closed: bool,
}

impl Queue {
    /// Queues `message`; returns whether one was dropped to make room (or the queue closed).
    fn push(&self, message: Message) -> Option<&'static str> {
        let outcome = {
            let mut state = lock(&self.items);
            if state.closed {
                return Some("subscriber_closed");
            }
            let mut outcome = None;
            if state.messages.len() >= self.capacity {
                match self.policy {
                    SlowPolicy::DropOldest => {
                        state.messages.pop_front();
                        outcome = Some("slow_subscriber");
                    }
                    SlowPolicy::Disconnect => {
                        state.closed = true;
                        self.ready.notify_one();
                        return Some("subscriber_disconnected");
                    }
                }
            }
            state.messages.push_back(message);
            outcome
        };
        self.ready.notify_one();
        outcome
    }

    fn close(&self) {
        lock(&self.items).closed = true;
        self.ready.notify_one();
    }
}

/// Subscriptions of this node.
#[derive(Default)]
struct Local {
    index: Subscriptions<u64>,
    queues: BTreeMap<u64, Arc<Queue>>,
    /// Subscribers per pattern, to record interest on the first and withdraw it after the last.
    per_pattern: BTreeMap<String, usize>,
}

/// Pub/sub state shared by every clone of the handle and the receiving task.
pub(crate) struct PubSubState {
    local: Mutex<Local>,
    /// Serialises interest updates, so the last one written reflects the last subscriber count.
    interest: tokio::sync::Mutex<()>,
    next_id: AtomicU64,
    outgoing: Mutex<BTreeMap<NodeId, Outgoing<Published>>>,
    incoming: Mutex<Incoming>,
    epoch: TokioInstant,
    metrics: ServicesMetrics,
}

impl PubSubState {
    pub fn new(metrics: ServicesMetrics) -> Self {
        Self {
            local: Mutex::default(),
            interest: tokio::sync::Mutex::new(()),
            next_id: AtomicU64::new(1),
            outgoing: Mutex::default(),
            incoming: Mutex::new(Incoming::new(INCOMING_STREAMS)),
            epoch: TokioInstant::now(),
            metrics,
        }
    }

    fn now(&self) -> Instant {
        Instant::from_elapsed(self.epoch.elapsed())
    }

    /// Hands `message` to every local subscriber whose pattern matches its topic.
    fn deliver_locally(&self, topic: &Topic, message: &Message) {
        let queues: Vec<Arc<Queue>> = {
            let local = lock(&self.local);
            let ids: BTreeSet<u64> = local.index.matching(topic).copied().collect();
            ids.iter()
                .filter_map(|id| local.queues.get(id).cloned())
                .collect()
        };
        for queue in queues {
            match queue.push(message.clone()) {
                None => {
                    self.metrics.delivered.inc();
                }
                Some(reason) => {
                    self.metrics.drop_reason(reason);
                    if reason == "slow_subscriber" {
                        self.metrics.delivered.inc();
                    }
                }
            }
        }
    }
}

/// Publishes and subscribes. Cheap to clone.
#[derive(Clone)]
pub struct PubSubHandle {
    pub(crate) shared: Arc<Shared>,
    pub(crate) state: Arc<PubSubState>,
    pub(crate) endpoint: Endpoint,
}

impl PubSubHandle {
    /// Subscribes to `pattern` (`*` one segment, `>` the rest) with the default queue.
    pub async fn subscribe(&self, pattern: &str) -> Result<Subscription, PubSubError> {
        self.subscribe_with(pattern, SubscribeOptions::default())
            .await
    }

    /// Subscribes with an explicit queue bound and slow-consumer policy.
    pub async fn subscribe_with(
        &self,
        pattern: &str,
        options: SubscribeOptions,
    ) -> Result<Subscription, PubSubError> {
        let parsed = Pattern::parse(pattern)?;
        let id = self.state.next_id.fetch_add(1, Ordering::Relaxed);
        let queue = Arc::new(Queue {
            items: Mutex::default(),
            ready: Notify::new(),
            capacity: options.capacity.max(1),
            policy: options.policy,
        });
        let first = {
            let mut local = lock(&self.state.local);
            local.index.insert(&parsed, id);
            local.queues.insert(id, queue.clone());
            let count = local.per_pattern.entry(pattern.to_owned()).or_default();
            *count += 1;
            *count == 1
        };
        self.state.metrics.subscriptions.inc();
        let subscription = Subscription {
            id,
            pattern: parsed,
            queue,
            handle: self.clone(),
        };
        if first {
            self.sync_interest(pattern).await?;
        }
        Ok(subscription)
    }

    /// Records interest in `pattern` if it has local subscribers, withdraws it if not. Runs one
    /// at a time and reads the count under the lock, so a subscription dropped and another made
    /// at once leave the interest as the final count says.
    async fn sync_interest(&self, pattern: &str) -> Result<(), PubSubError> {
        let _serial = self.state.interest.lock().await;
        let wanted = lock(&self.state.local).per_pattern.contains_key(pattern);
        set_interest(&self.shared, pattern, wanted).await
    }

    /// Publishes `payload` on `topic`, at most once to each matching subscriber.
    pub async fn publish(&self, topic: &str, payload: impl Into<Bytes>) -> Result<(), PubSubError> {
        self.publish_with(topic, payload, PublishOptions::default())
            .await
    }

    /// Publishes with explicit delivery options.
    pub async fn publish_with(
        &self,
        topic: &str,
        payload: impl Into<Bytes>,
        options: PublishOptions,
    ) -> Result<(), PubSubError> {
        let parsed = Topic::parse(topic)?;
        let payload = payload.into();
        let trace =
            current_trace().unwrap_or_else(|| TraceContext::new_root(&mut rand10::rng(), true));
        let me = self.endpoint.local().id;
        self.state.metrics.published.inc();
        let message = Message {
            topic: topic.to_owned(),
            payload: payload.clone(),
            publisher: me,
            trace,
        };
        self.state.deliver_locally(&parsed, &message);
        let published = Published {
            topic: topic.to_owned(),
            payload: payload.to_vec(),
            trace,
            reliable: None,
            oldest: 0,
        };
        for node in self.interested_nodes(&parsed, me) {
            self.send(node, published.clone(), options).await?;
        }
        Ok(())
    }

    /// Nodes other than this one with a subscriber matching `topic`.
    fn interested_nodes(&self, topic: &Topic, me: NodeId) -> BTreeSet<NodeAddr> {
        let directory = self.shared.directory.borrow().clone();
        directory
            .subscribers(topic)
            .filter(|node| node.id != me)
            .collect()
    }

    async fn send(
        &self,
        node: NodeAddr,
        mut published: Published,
        options: PublishOptions,
    ) -> Result<(), PubSubError> {
        if options.reliable {
            let now = self.state.now();
            let mut outgoing = lock(&self.state.outgoing);
            let stream = outgoing
                .entry(node.id)
                .or_insert_with(|| Outgoing::new(rand::random(), RELIABLE_BACKLOG));
            let (place, oldest) =
                stream
                    .push(now, published.clone())
                    .map_err(|source| PubSubError::Backlogged {
                        node: node.id,
                        source,
                    })?;
            published.reliable = Some(place);
            published.oldest = oldest;
        }
        let message = EventMessage::Publish(published);
        let sent = self
            .endpoint
            .send_message(node, Channel::Events, &message, SendMode::Wait(SEND_WAIT))
            .await;
        if sent.is_err() {
            // At-most-once: lost. Reliable: the resend timer tries again.
            self.state.metrics.drop_reason("send_failed");
        }
        Ok(())
    }
}

/// Records or withdraws this node's interest in `pattern`.
async fn set_interest(shared: &Shared, pattern: &str, on: bool) -> Result<(), PubSubError> {
    let (done, result) = oneshot::channel();
    let request = Request::SetEphemeral {
        keyspace: PUBSUB_KEYSPACE,
        name: pattern.to_owned(),
        value: on.then(Vec::new),
        done,
    };
    shared
        .requests
        .send(request)
        .await
        .map_err(|_| PubSubError::Stopped)?;
    Ok(result.await.map_err(|_| PubSubError::Stopped)??)
}

/// A subscription; dropping it unsubscribes.
pub struct Subscription {
    id: u64,
    pattern: Pattern,
    queue: Arc<Queue>,
    handle: PubSubHandle,
}

impl Subscription {
    /// The next message, or `None` once the subscription was closed (by the
    /// [`SlowPolicy::Disconnect`] policy) and its queue is empty.
    pub async fn recv(&mut self) -> Option<Message> {
        loop {
            let notified = self.queue.ready.notified();
            {
                let mut state = lock(&self.queue.items);
                if let Some(message) = state.messages.pop_front() {
                    return Some(message);
                }
                if state.closed {
                    return None;
                }
            }
            notified.await;
        }
    }

    /// The next message if one is queued.
    pub fn try_recv(&mut self) -> Option<Message> {
        lock(&self.queue.items).messages.pop_front()
    }

    /// The pattern subscribed to.
    pub fn pattern(&self) -> &str {
        self.pattern.as_str()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.queue.close();
        let state = &self.handle.state;
        let last = {
            let mut local = lock(&state.local);
            local.index.remove(&self.pattern, &self.id);
            local.queues.remove(&self.id);
            let pattern = self.pattern.as_str();
            let count = local.per_pattern.get_mut(pattern).map(|c| {
                *c -= 1;
                *c
            });
            if count == Some(0) {
                local.per_pattern.remove(pattern);
            }
            count == Some(0)
        };
        state.metrics.subscriptions.dec();
        if last {
            let handle = self.handle.clone();
            let pattern = self.pattern.as_str().to_owned();
            // Withdrawing interest is a write through the driver; if the runtime is gone, so
            // is the interest.
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    let _ = handle.sync_interest(&pattern).await;
                });
            }
        }
    }
}

/// Receives event messages for this node until the endpoint closes, and resends unacknowledged
/// reliable messages.
pub(crate) async fn serve(handle: PubSubHandle, mut events: mpsc::Receiver<Received>) {
    let mut resend = tokio::time::interval(RESEND_TICK);
    loop {
        tokio::select! {
            first = events.recv() => {
                let Some(first) = first else { return };
                let mut acks = BTreeMap::new();
                handle.receive(first, &mut acks);
                for _ in 1..ACK_BATCH {
                    let Ok(next) = events.try_recv() else { break };
                    handle.receive(next, &mut acks);
                }
                handle.send_acks(acks).await;
            }
            _ = resend.tick() => handle.resend().await,
        }
    }
}

impl PubSubHandle {
    /// Handles one event message; collects the acknowledgements it calls for.
    fn receive(&self, received: Received, acks: &mut BTreeMap<(NodeId, u64), u64>) {
        let Ok(message) = received.decode::<EventMessage>() else {
            self.state.metrics.drop_reason("malformed");
            return;
        };
        match message {
            EventMessage::Publish(published) => {
                self.receive_published(received.from, published, acks)
            }
            EventMessage::Ack { stream, seq } => {
                if let Some(outgoing) = lock(&self.state.outgoing).get_mut(&received.from) {
                    outgoing.ack_stream(stream, seq);
                }
            }
        }
    }

    fn receive_published(
        &self,
        from: NodeId,
        published: Published,
        acks: &mut BTreeMap<(NodeId, u64), u64>,
    ) {
        let Ok(topic) = Topic::parse(&published.topic) else {
            self.state.metrics.drop_reason("malformed");
            return;
        };
        if let Some(place) = published.reliable {
            let mut incoming = lock(&self.state.incoming);
            let verdict = incoming.accept(from, place, published.oldest);
            if let Some(acked) = incoming.acked(from, place.stream) {
                acks.insert((from, place.stream), acked);
            }
            if verdict != Verdict::Deliver {
                return;
            }
        }
        let message = Message {
            topic: published.topic,
            payload: published.payload.into(),
            publisher: from,
            trace: published.trace,
        };
        self.state.deliver_locally(&topic, &message);
    }

    async fn send_acks(&self, acks: BTreeMap<(NodeId, u64), u64>) {
        let members = self.shared.directory.borrow().clone();
        for ((node, stream), seq) in acks {
            let Some(addr) = members.node_addr(node) else {
                continue; // not a member we can reach; its resend will ask again
            };
            let ack = EventMessage::Ack { stream, seq };
            let _ = self
                .endpoint
                .send_message(addr, Channel::Events, &ack, SendMode::NoWait)
                .await;
        }
    }

    /// Resends overdue reliable messages; forgets streams to nodes with no interest left.
    async fn resend(&self) {
        let directory = self.shared.directory.borrow().clone();
        let now = self.state.now();
        let due: Vec<(NodeAddr, Vec<Published>)> = {
            let mut outgoing = lock(&self.state.outgoing);
            outgoing.retain(|node, stream| {
                let alive = directory.node_addr(*node).is_some();
                if !alive {
                    self.state
                        .metrics
                        .dropped
                        .get_or_create(&super::metrics::Reason {
                            reason: "subscriber_gone",
                        })
                        .inc_by(stream.unacked() as u64);
                }
                alive
            });
            outgoing
                .iter_mut()
                .filter_map(|(node, stream)| {
                    let batch: Vec<Published> = stream
                        .due(now, RESEND_AFTER)
                        .into_iter()
                        .map(|(place, oldest, mut published)| {
                            published.reliable = Some(place);
                            published.oldest = oldest;
                            published
                        })
                        .collect();
                    let addr = directory.node_addr(*node)?;
                    (!batch.is_empty()).then_some((addr, batch))
                })
                .collect()
        };
        for (addr, batch) in due {
            self.state.metrics.redelivered.inc_by(batch.len() as u64);
            for published in batch {
                let message = EventMessage::Publish(published);
                let _ = self
                    .endpoint
                    .send_message(addr, Channel::Events, &message, SendMode::NoWait)
                    .await;
            }
        }
    }
}
