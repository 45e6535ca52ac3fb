//! Pub/sub: a publish goes once to each node that has a subscriber whose pattern matches the
//! topic (interest is replicated, so there is no broadcast), and the receiving node fans it
//! out to its local subscribers.
//!
//! Delivery is at-most-once by default and in order per publisher and topic (one ordered
//! stream per peer). [`PublishOptions::reliable`] adds acknowledgements and resends, so a
//! message survives a lost connection (see [`foundation_core::services::reliable`]). Each subscriber has
//! a bounded queue; when it is full, [`SlowPolicy`] either drops the oldest message (counted)
//! or closes the subscription — memory never grows without bound.
//!
//! Messages to one node wait, encoded, in that node's outbox (at most 1 MiB; a publish that
//! finds it full waits up to a second, then the message is lost for that node, or kept for
//! resending if reliable). The outbox's decisions are the core's
//! ([`foundation_core::services::outbox`]), which the simulator runs too. A task per node sends the outbox as batch frames of up to 16 KiB:
//! under load many messages share one frame, one stream write and one trip through the
//! receiver's queues; a lone message goes at once in a frame of its own. What waits for a node
//! is thus at most the outbox plus the transport's stream queue of batch frames. A topic is parsed and matched once: its route (local queues, receiving nodes) is
//! cached until the local subscriptions or the directory change.
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

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use foundation_transport::{Channel, Endpoint, Message as Received, NodeAddr, NodeId, SendMode};
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant as TokioInstant;

use super::metrics::ServicesMetrics;
use super::registry::{lock, Shared};
use super::rpc::current_trace;
use crate::runtime::request::set_ephemeral;
use foundation_core::ephemeral::PUBSUB_KEYSPACE;
use foundation_core::services::directory::BRIDGE_INTEREST;
use foundation_core::services::outbox::EventOutbox;
use foundation_core::services::reliable::{Backlogged, Incoming, Outgoing, Verdict};
use foundation_core::services::topic::{Pattern, Subscriptions, Topic, TopicError};
use foundation_core::services::trace::TraceContext;
use foundation_core::services::wire::{
    decode_event, EventMessage, Published, Raw, Sequenced, WireError,
};
use foundation_core::services::Directory;
use foundation_core::time::Instant;

/// How long a publish waits for room in a node's outbox before giving up on that node.
const SEND_WAIT: Duration = Duration::from_secs(1);
/// How often unacknowledged reliable messages are checked for resending.
const RESEND_TICK: Duration = Duration::from_millis(200);
/// How long a reliable message waits for its acknowledgement before it is sent again.
const RESEND_AFTER: Duration = Duration::from_secs(1);
/// Unacknowledged reliable messages kept per receiving node.
const RELIABLE_BACKLOG: usize = 65_536;
/// Reliable streams a receiver remembers.
const INCOMING_STREAMS: usize = 4096;
/// Most event frames handled before acknowledgements go out and the task lets others run (a
/// frame holds up to [`BATCH_BYTES`](foundation_core::services::outbox::BATCH_BYTES) of messages: subscribers on this runtime get to drain
/// their queues between turns instead of finding them overflowed by one long turn).
const FRAMES_PER_TURN: usize = 8;
/// Room for a run's messages the receiving task keeps between frames (a 16 KiB frame holds about
/// 250 messages of 64 bytes).
const RUN_ROOM: usize = 1024;
/// Topics whose routes are remembered; past it the cache starts over.
const ROUTES_MAX: usize = 1024;
/// Received payloads smaller than this are copied out of their batch frame (into one buffer per
/// run, [`run_messages`]) instead of sliced from it, so a kept message does not pin the whole
/// frame.
const COPY_BELOW: usize = 4096;

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
    Refused(#[from] foundation_core::node::WriteError),
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
    /// Its topic (shared by every message of the topic, not copied per message).
    pub topic: Arc<str>,
    /// Its payload.
    pub payload: Bytes,
    /// The publishing node.
    pub publisher: NodeId,
    /// The publisher's trace, or a new one started on delivery when the publisher had none.
    pub trace: TraceContext,
    /// The cluster it was first published in, when a federation gateway bridged it into this
    /// one (then `publisher` is that gateway); `None` when published in this cluster.
    pub origin: Option<Arc<str>>,
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
    /// Queues `messages` in order under one lock, dropping the oldest or closing the queue as
    /// its policy says when it is full; wakes the subscriber once.
    fn push_all(&self, messages: impl Iterator<Item = Message>) -> Pushed {
        let mut pushed = Pushed::default();
        {
            let mut state = lock(&self.items);
            for message in messages {
                if state.closed {
                    pushed.closed += 1;
                    continue;
                }
                if state.messages.len() >= self.capacity {
                    match self.policy {
                        SlowPolicy::DropOldest => {
                            state.messages.pop_front();
                            pushed.dropped_oldest += 1;
                        }
                        SlowPolicy::Disconnect => {
                            state.closed = true;
                            pushed.disconnected += 1;
                            continue;
                        }
                    }
                }
                state.messages.push_back(message);
                pushed.queued += 1;
            }
        }
        self.ready.notify_one();
        pushed
    }

    fn close(&self) {
        lock(&self.items).closed = true;
        self.ready.notify_one();
    }
}

/// What [`Queue::push_all`] did.
#[derive(Default)]
struct Pushed {
    /// Messages queued (including those that pushed an older one out).
    queued: u64,
    /// Older messages dropped to make room.
    dropped_oldest: u64,
    /// Messages refused because the queue filled up and its policy closed it.
    disconnected: u64,
    /// Messages refused because the queue was already closed.
    closed: u64,
}

/// Subscriptions of this node.
#[derive(Default)]
struct Local {
    index: Subscriptions<u64>,
    queues: BTreeMap<u64, Arc<Queue>>,
    /// Subscribers per pattern, to record interest on the first, mark it as a gateway's bridge
    /// alone or not, and withdraw it after the last.
    per_pattern: BTreeMap<String, Subscribers>,
}

/// A pattern's local subscribers: all of them, and those that are a gateway's bridge.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Subscribers {
    all: usize,
    bridge: usize,
}

impl Local {
    /// The interest entry `pattern`'s subscribers call for: none without any, the bridge's
    /// mark when the bridge alone subscribes, else the plain entry.
    fn interest_value(&self, pattern: &str) -> Option<Vec<u8>> {
        let count = self.per_pattern.get(pattern)?;
        Some(if count.all == count.bridge {
            BRIDGE_INTEREST.to_vec()
        } else {
            Vec::new()
        })
    }

    /// Counts a subscriber of `pattern` in (`joined`) or out; true when the interest entry it
    /// calls for changed.
    fn count(&mut self, pattern: &str, bridge: bool, joined: bool) -> bool {
        let before = self.interest_value(pattern);
        let count = self.per_pattern.entry(pattern.to_owned()).or_default();
        let step = |n: &mut usize| {
            *n = if joined { *n + 1 } else { n.saturating_sub(1) };
        };
        step(&mut count.all);
        if bridge {
            step(&mut count.bridge);
        }
        if count.all == 0 {
            self.per_pattern.remove(pattern);
        }
        before != self.interest_value(pattern)
    }
}

/// Where messages of one topic go: the local subscribers' queues and, for a publish, the
/// outboxes of the other nodes with a matching subscriber.
struct Route {
    topic: Arc<str>,
    local: Vec<Arc<Queue>>,
    remote: Vec<Arc<Outbox>>,
}

/// Routes by topic, valid for one generation of the local subscriptions and one directory:
/// a topic is parsed and matched once, not per message.
#[derive(Default)]
struct Routes {
    generation: u64,
    directory: Option<Arc<Directory>>,
    by_topic: HashMap<Arc<str>, Arc<Route>>,
    /// The route used last: a stream of one topic skips the hash lookup.
    last: Option<Arc<Route>>,
}

impl Routes {
    /// The cached route of `topic` if it is still valid for `generation` and `directory`;
    /// forgets everything when either changed.
    fn get(
        &mut self,
        topic: &str,
        generation: u64,
        directory: Option<&Arc<Directory>>,
    ) -> Option<Arc<Route>> {
        let same_directory = match (&self.directory, directory) {
            (Some(cached), Some(current)) => Arc::ptr_eq(cached, current),
            (None, None) => true,
            _ => false,
        };
        if self.generation != generation || !same_directory {
            self.by_topic.clear();
            self.last = None;
            self.generation = generation;
            self.directory = directory.cloned();
            return None;
        }
        if let Some(last) = self.last.as_ref().filter(|r| &*r.topic == topic) {
            return Some(last.clone());
        }
        let route = self.by_topic.get(topic).cloned();
        if route.is_some() {
            self.last.clone_from(&route);
        }
        route
    }

    /// Remembers `route` if it was computed for what is cached now.
    fn insert(&mut self, route: &Arc<Route>, generation: u64, directory: Option<&Arc<Directory>>) {
        let same_directory = match (&self.directory, directory) {
            (Some(cached), Some(current)) => Arc::ptr_eq(cached, current),
            (None, None) => true,
            _ => false,
        };
        if self.generation != generation || !same_directory {
            return;
        }
        if self.by_topic.len() >= ROUTES_MAX {
            self.by_topic.clear();
        }
        self.by_topic.insert(route.topic.clone(), route.clone());
        self.last = Some(route.clone());
    }
}

/// Messages waiting to go to one node, in the core's [`EventOutbox`] (which decides batching
/// and bounds), with what the tasks wait on. A task per node sends one frame per batch, so many
/// small messages cost one frame, not one each.
struct Outbox {
    node: NodeAddr,
    state: Mutex<OutboxState>,
    /// Wakes the sending task.
    queued: Notify,
    /// Wakes publishers waiting for room.
    room: Notify,
}

#[derive(Default)]
struct OutboxState {
    outbox: EventOutbox,
    closed: bool,
}

/// A reliable message due for resending: its place, the oldest unacknowledged number, itself.
type Due = (Sequenced, u64, Kept);

/// A reliable message kept until acknowledged.
#[derive(Clone)]
struct Kept {
    topic: Arc<str>,
    payload: Bytes,
    /// `None`: the publisher had no trace (each receiver starts one).
    trace: Option<TraceContext>,
    origin: Option<Arc<str>>,
}

/// Pub/sub state shared by every clone of the handle and the receiving task.
pub(crate) struct PubSubState {
    local: Mutex<Local>,
    /// Changes whenever a local subscription is added or removed (routes depend on it).
    generation: AtomicU64,
    /// Routes of published topics.
    routes: Mutex<Routes>,
    /// Outboxes of the nodes this node publishes to.
    outboxes: Mutex<BTreeMap<NodeAddr, Arc<Outbox>>>,
    /// Serialises interest updates, so the last one written reflects the last subscriber count.
    interest: tokio::sync::Mutex<()>,
    next_id: AtomicU64,
    outgoing: Mutex<BTreeMap<NodeId, Outgoing<Kept>>>,
    incoming: Mutex<Incoming>,
    epoch: TokioInstant,
    metrics: ServicesMetrics,
}

impl PubSubState {
    pub fn new(metrics: ServicesMetrics) -> Self {
        Self {
            local: Mutex::default(),
            generation: AtomicU64::new(0),
            routes: Mutex::default(),
            outboxes: Mutex::default(),
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

    /// The queues of the local subscribers whose pattern matches `topic`, in subscription
    /// order, each once.
    fn local_queues(&self, topic: &Topic) -> Vec<Arc<Queue>> {
        let local = lock(&self.local);
        local
            .index
            .matching(topic)
            .filter_map(|id| local.queues.get(id).cloned())
            .collect()
    }

    /// The local part of `topic`'s route, from `routes` when it is still valid.
    fn local_route(&self, routes: &mut Routes, topic: &str) -> Result<Arc<Route>, TopicError> {
        let generation = self.generation.load(Ordering::Acquire);
        if let Some(route) = routes.get(topic, generation, None) {
            return Ok(route);
        }
        let parsed = Topic::parse(topic)?;
        let route = Arc::new(Route {
            topic: Arc::from(topic),
            local: self.local_queues(&parsed),
            remote: Vec::new(),
        });
        routes.insert(&route, generation, None);
        Ok(route)
    }

    /// Hands `messages` (of one topic, in order) to every queue of `queues`, leaving it empty
    /// (its room is kept for the next run). The last queue takes the messages themselves; the
    /// others get clones.
    fn deliver(&self, queues: &[Arc<Queue>], messages: &mut Vec<Message>) {
        let Some((last, others)) = queues.split_last() else {
            messages.clear();
            return;
        };
        for queue in others {
            self.count(queue.push_all(messages.iter().cloned()));
        }
        self.count(last.push_all(messages.drain(..)));
    }

    /// Hands one message to every queue of `queues`.
    fn deliver_one(&self, queues: &[Arc<Queue>], message: Message) {
        let Some((last, others)) = queues.split_last() else {
            return;
        };
        for queue in others {
            self.count(queue.push_all(std::iter::once(message.clone())));
        }
        self.count(last.push_all(std::iter::once(message)));
    }

    fn count(&self, pushed: Pushed) {
        let metrics = &self.metrics;
        metrics.delivered.inc_by(pushed.queued);
        for (reason, n) in [
            ("slow_subscriber", pushed.dropped_oldest),
            ("subscriber_disconnected", pushed.disconnected),
            ("subscriber_closed", pushed.closed),
        ] {
            if n > 0 {
                metrics
                    .dropped
                    .get_or_create(&super::metrics::Reason { reason })
                    .inc_by(n);
            }
        }
    }

    /// A local subscription was added or removed: every cached route is stale.
    fn subscriptions_changed(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
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
        self.subscribe_as(pattern, options, false).await
    }

    /// A federation gateway's subscription to a pattern it exports: its interest entry says
    /// so while no other subscriber of this node shares the pattern.
    pub(crate) async fn subscribe_bridge(
        &self,
        pattern: &str,
        options: SubscribeOptions,
    ) -> Result<Subscription, PubSubError> {
        self.subscribe_as(pattern, options, true).await
    }

    async fn subscribe_as(
        &self,
        pattern: &str,
        options: SubscribeOptions,
        bridge: bool,
    ) -> Result<Subscription, PubSubError> {
        let parsed = Pattern::parse(pattern)?;
        let id = self.state.next_id.fetch_add(1, Ordering::Relaxed);
        let queue = Arc::new(Queue {
            items: Mutex::default(),
            ready: Notify::new(),
            capacity: options.capacity.max(1),
            policy: options.policy,
        });
        let changed = {
            let mut local = lock(&self.state.local);
            local.index.insert(&parsed, id);
            local.queues.insert(id, queue.clone());
            self.state.subscriptions_changed();
            local.count(pattern, bridge, true)
        };
        self.state.metrics.subscriptions.inc();
        let subscription = Subscription {
            id,
            pattern: parsed,
            queue,
            handle: self.clone(),
            bridge,
        };
        if changed {
            self.sync_interest(pattern).await?;
        }
        Ok(subscription)
    }

    /// Records interest in `pattern` if it has local subscribers, withdraws it if not. Runs one
    /// at a time and reads the count under the lock, so a subscription dropped and another made
    /// at once leave the interest as the final count says.
    async fn sync_interest(&self, pattern: &str) -> Result<(), PubSubError> {
        let _serial = self.state.interest.lock().await;
        let value = lock(&self.state.local).interest_value(pattern);
        set_interest(&self.shared, pattern, value).await
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
        // Without a trace of its own the message goes without one: each receiver starts a new
        // trace for it (as this node does for its own subscribers), and the wire carries 25
        // bytes less per message.
        self.publish_as(topic, payload.into(), options, current_trace(), None)
            .await
    }

    /// Publishes with a given trace (`None`: every receiver starts one) and, for a message a
    /// federation gateway bridged in from another cluster, that cluster as its origin.
    pub(crate) async fn publish_as(
        &self,
        topic: &str,
        payload: Bytes,
        options: PublishOptions,
        trace: Option<TraceContext>,
        origin: Option<Arc<str>>,
    ) -> Result<(), PubSubError> {
        let route = self.route(topic)?;
        self.state.metrics.published.inc();
        if !route.local.is_empty() {
            let message = Message {
                topic: route.topic.clone(),
                payload: payload.clone(),
                publisher: self.endpoint.local().id,
                trace: trace.unwrap_or_else(|| TraceContext::new_root(&mut rand10::rng(), true)),
                origin: origin.clone(),
            };
            self.state.deliver_one(&route.local, message);
        }
        if route.remote.is_empty() {
            return Ok(());
        }
        // One for every outbox: each encodes it, and only a reliable publish keeps a copy.
        let message = Kept {
            topic: route.topic.clone(),
            payload,
            trace,
            origin,
        };
        for outbox in &route.remote {
            self.enqueue(outbox, &message, options).await?;
        }
        Ok(())
    }

    /// Where messages on `topic` go now: cached per topic until the local subscriptions or
    /// the directory change.
    fn route(&self, topic: &str) -> Result<Arc<Route>, PubSubError> {
        let directory = self.shared.directory.borrow().clone();
        let generation = self.state.generation.load(Ordering::Acquire);
        if let Some(route) = lock(&self.state.routes).get(topic, generation, Some(&directory)) {
            return Ok(route);
        }
        let parsed = Topic::parse(topic)?;
        let me = self.endpoint.local().id;
        let remote = directory
            .subscribers(&parsed)
            .filter(|node| node.id != me)
            .map(|node| self.outbox(node))
            .collect();
        let route = Arc::new(Route {
            topic: Arc::from(topic),
            local: self.state.local_queues(&parsed),
            remote,
        });
        lock(&self.state.routes).insert(&route, generation, Some(&directory));
        Ok(route)
    }

    /// `node`'s outbox, created with its sending task on first use.
    fn outbox(&self, node: NodeAddr) -> Arc<Outbox> {
        let mut outboxes = lock(&self.state.outboxes);
        outboxes
            .entry(node)
            .or_insert_with(|| {
                let outbox = Arc::new(Outbox {
                    node,
                    state: Mutex::default(),
                    queued: Notify::new(),
                    room: Notify::new(),
                });
                tokio::spawn(send_batches(self.clone(), outbox.clone()));
                outbox
            })
            .clone()
    }

    /// Puts `message` in `outbox`, waiting up to [`SEND_WAIT`] for room. A reliable message
    /// is numbered in its stream first, so one that finds no room is still resent.
    async fn enqueue(
        &self,
        outbox: &Outbox,
        message: &Kept,
        options: PublishOptions,
    ) -> Result<(), PubSubError> {
        let mut deadline = None;
        loop {
            let mut room = pin!(outbox.room.notified());
            {
                let mut state = lock(&outbox.state);
                if state.closed {
                    self.state.metrics.drop_reason("subscriber_gone");
                    return Ok(());
                }
                if state.outbox.has_room() {
                    let (reliable, oldest) = if options.reliable {
                        let (place, oldest) = self.keep(outbox.node.id, message)?;
                        (Some(place), oldest)
                    } else {
                        (None, 0)
                    };
                    let published = Published {
                        topic: &message.topic,
                        payload: Raw(&message.payload),
                        trace: message.trace,
                        reliable,
                        oldest,
                        origin: message.origin.as_deref(),
                    };
                    if state.outbox.append(&published).is_err() {
                        self.state.metrics.drop_reason("malformed");
                        return Ok(());
                    }
                    drop(state);
                    outbox.queued.notify_one();
                    return Ok(());
                }
                room.as_mut().enable();
            }
            let until = *deadline.get_or_insert_with(|| TokioInstant::now() + SEND_WAIT);
            if tokio::time::timeout_at(until, room).await.is_err() {
                // At-most-once: lost. Reliable: kept, and the resend timer sends it.
                if options.reliable {
                    self.keep(outbox.node.id, message)?;
                }
                self.state.metrics.drop_reason("send_failed");
                return Ok(());
            }
        }
    }

    /// Numbers a reliable message in its stream to `node` and keeps it until acknowledged.
    fn keep(&self, node: NodeId, message: &Kept) -> Result<(Sequenced, u64), PubSubError> {
        let now = self.state.now();
        let mut outgoing = lock(&self.state.outgoing);
        let stream = outgoing
            .entry(node)
            .or_insert_with(|| Outgoing::new(rand::random(), RELIABLE_BACKLOG));
        stream
            .push(now, message.clone())
            .map_err(|source| PubSubError::Backlogged { node, source })
    }
}

/// Sends `outbox`'s batches to its node, one frame each, until the outbox is closed.
async fn send_batches(handle: PubSubHandle, outbox: Arc<Outbox>) {
    loop {
        let batch = loop {
            let queued = outbox.queued.notified();
            {
                let mut state = lock(&outbox.state);
                if state.closed {
                    let left = state.outbox.clear();
                    if left > 0 {
                        handle
                            .state
                            .metrics
                            .dropped
                            .get_or_create(&super::metrics::Reason {
                                reason: "subscriber_gone",
                            })
                            .inc_by(left);
                    }
                    return;
                }
                if let Some(batch) = state.outbox.next_frame() {
                    break batch;
                }
            }
            queued.await;
        };
        outbox.room.notify_waiters();
        let count = u64::from(batch.count());
        let sent = handle
            .endpoint
            .send(
                outbox.node,
                Channel::Events,
                batch.finish(),
                SendMode::Wait(SEND_WAIT),
            )
            .await;
        if sent.is_err() {
            // At-most-once: lost. Reliable: the resend timer tries again.
            handle
                .state
                .metrics
                .dropped
                .get_or_create(&super::metrics::Reason {
                    reason: "send_failed",
                })
                .inc_by(count);
        }
    }
}

/// Records (`Some`, with its value) or withdraws this node's interest in `pattern`.
async fn set_interest(
    shared: &Shared,
    pattern: &str,
    value: Option<Vec<u8>>,
) -> Result<(), PubSubError> {
    set_ephemeral(&shared.requests, PUBSUB_KEYSPACE, pattern.to_owned(), value)
        .await
        .map_err(|_| PubSubError::Stopped)?
        .map_err(PubSubError::from)
}

/// A subscription; dropping it unsubscribes.
pub struct Subscription {
    id: u64,
    pattern: Pattern,
    queue: Arc<Queue>,
    handle: PubSubHandle,
    /// A gateway's bridge subscription (see [`PubSubHandle::subscribe_bridge`]).
    bridge: bool,
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

    /// Waits for at least one message, then moves up to `limit` queued messages to the end of
    /// `buffer`, oldest first, under one lock; returns how many. 0 means the subscription was
    /// closed and its queue is empty (or `limit` is 0).
    pub async fn recv_many(&mut self, buffer: &mut Vec<Message>, limit: usize) -> usize {
        if limit == 0 {
            return 0;
        }
        loop {
            let notified = self.queue.ready.notified();
            {
                let mut state = lock(&self.queue.items);
                let n = state.messages.len().min(limit);
                if n > 0 {
                    buffer.extend(state.messages.drain(..n));
                    return n;
                }
                if state.closed {
                    return 0;
                }
            }
            notified.await;
        }
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
        let changed = {
            let mut local = lock(&state.local);
            local.index.remove(&self.pattern, &self.id);
            local.queues.remove(&self.id);
            state.subscriptions_changed();
            local.count(self.pattern.as_str(), self.bridge, false)
        };
        state.metrics.subscriptions.dec();
        if changed {
            let handle = self.handle.clone();
            let pattern = self.pattern.as_str().to_owned();
            // Changing interest is a write through the driver; if the runtime is gone, so
            // is the interest.
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    let _ = handle.sync_interest(&pattern).await;
                });
            }
        }
    }
}

/// A received message accepted for delivery, with its route.
type Accepted<'a> = (Arc<Route>, Published<'a>);

/// Appends the messages of one run (consecutive messages of one frame with the same route) to
/// `messages`, ready for its queues. Small payloads are copied into one buffer for the run — one allocation per run,
/// not per message — so a kept message pins at most its run's payloads, which went to the same
/// queues; large ones are sliced from the frame.
fn run_messages(run: &[Accepted<'_>], received: &Received, messages: &mut Vec<Message>) {
    let small = |bytes: &&[u8]| bytes.len() < COPY_BELOW;
    let payloads = || run.iter().map(|(_, published)| published.payload.0);
    let mut copied = BytesMut::with_capacity(payloads().filter(small).map(<[u8]>::len).sum());
    payloads()
        .filter(small)
        .for_each(|bytes| copied.extend_from_slice(bytes));
    let mut copied = copied.freeze();
    let mut rng = rand10::rng();
    messages.extend(run.iter().map(|(route, published)| {
        let bytes = published.payload.0;
        let payload = if small(&bytes) {
            copied.split_to(bytes.len())
        } else {
            received.payload.slice_ref(bytes)
        };
        Message {
            topic: route.topic.clone(),
            payload,
            publisher: received.from,
            // The publisher had none: a new trace starts here.
            trace: published
                .trace
                .unwrap_or_else(|| TraceContext::new_root(&mut rng, true)),
            origin: published.origin.map(Arc::from),
        }
    }));
}

/// Receives event messages for this node until the endpoint closes, and resends unacknowledged
/// reliable messages.
pub(crate) async fn serve(handle: PubSubHandle, mut events: mpsc::Receiver<Received>) {
    let mut resend = tokio::time::interval(RESEND_TICK);
    // Routes of received topics, and room for a run's messages: only this task uses them.
    let (mut routes, mut messages) = (Routes::default(), Vec::new());
    loop {
        tokio::select! {
            first = events.recv() => {
                let Some(first) = first else {
                    // The endpoint has stopped: so do the outboxes' sending tasks.
                    handle.close_outboxes(|_| true);
                    return;
                };
                let mut acks = BTreeMap::new();
                handle.receive(first, &mut acks, &mut routes, &mut messages);
                for _ in 1..FRAMES_PER_TURN {
                    let Ok(next) = events.try_recv() else { break };
                    handle.receive(next, &mut acks, &mut routes, &mut messages);
                }
                // A frame of many tiny messages leaves no large buffer behind.
                messages.shrink_to(RUN_ROOM);
                handle.send_acks(acks).await;
                tokio::task::yield_now().await;
            }
            _ = resend.tick() => {
                handle.resend().await;
                let directory = handle.shared.directory.borrow().clone();
                handle.close_outboxes(|node| directory.node_addr(node.id) != Some(*node));
            }
        }
    }
}

impl PubSubHandle {
    /// Handles one event frame; collects the acknowledgements it calls for. Consecutive
    /// messages of one route are handed to its queues together: one lock and one wake-up per
    /// queue for the run, not per message. `messages` is room for a run's messages, kept from
    /// frame to frame.
    fn receive(
        &self,
        received: Received,
        acks: &mut BTreeMap<(NodeId, u64), u64>,
        routes: &mut Routes,
        messages: &mut Vec<Message>,
    ) {
        let message = match decode_event(&received.payload) {
            Ok(message) => message,
            Err(error) => return self.refuse(&received, &error),
        };
        // Sized once (a message takes at least two bytes of the frame; a count beyond a run's
        // room, which no batch of ours reaches, grows only as its messages prove it).
        let count = match &message {
            EventMessage::Batch(batch) => batch.count as usize,
            EventMessage::BatchV0(batch) => batch.count as usize,
            _ => 1,
        };
        let presize = count.min(received.payload.len() / 2).min(RUN_ROOM);
        let mut accepted = Vec::with_capacity(presize);
        let into = &mut accepted;
        match message {
            EventMessage::Publish(published) => {
                let one = std::iter::once(Ok(Published::from(published)));
                self.accept_all(&received, one, acks, routes, into);
            }
            EventMessage::Batch(batch) => {
                self.accept_all(&received, batch.messages(), acks, routes, into)
            }
            EventMessage::BatchV0(batch) => {
                self.accept_all(&received, batch.messages(), acks, routes, into)
            }
            EventMessage::Ack { stream, seq } => {
                if let Some(outgoing) = lock(&self.state.outgoing).get_mut(&received.from) {
                    outgoing.ack_stream(stream, seq);
                }
            }
        }
        for run in accepted.chunk_by(|a, b| Arc::ptr_eq(&a.0, &b.0)) {
            run_messages(run, &received, messages);
            self.state.deliver(&run[0].0.local, messages);
        }
    }

    /// Routes the messages of one frame in order; the rest of a frame after a message that does
    /// not decode cannot be found, so it is refused.
    fn accept_all<'a>(
        &self,
        received: &Received,
        messages: impl Iterator<Item = Result<Published<'a>, WireError>>,
        acks: &mut BTreeMap<(NodeId, u64), u64>,
        routes: &mut Routes,
        accepted: &mut Vec<Accepted<'a>>,
    ) {
        for published in messages {
            match published {
                Ok(published) => self.accept(received, published, acks, routes, accepted),
                Err(error) => return self.refuse(received, &error),
            }
        }
    }

    /// Counts a frame, or the rest of one, that did not decode.
    fn refuse(&self, received: &Received, error: &WireError) {
        let reason = match error {
            WireError::Version { .. } => "unsupported_format",
            _ => "malformed",
        };
        tracing::debug!(from = %received.from, %error, "events frame refused");
        self.state.metrics.drop_reason(reason);
    }

    /// Routes one received message and, if it is to be delivered here, adds it to `accepted`.
    fn accept<'a>(
        &self,
        received: &Received,
        published: Published<'a>,
        acks: &mut BTreeMap<(NodeId, u64), u64>,
        routes: &mut Routes,
        accepted: &mut Vec<Accepted<'a>>,
    ) {
        let from = received.from;
        let Ok(route) = self.state.local_route(routes, published.topic) else {
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
        if !route.local.is_empty() {
            accepted.push((route, published));
        }
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

    /// Closes the outboxes of the nodes `gone` selects (no longer members at that address, or
    /// all when the node stops); their sending tasks end and what they held is counted as lost.
    fn close_outboxes(&self, gone: impl Fn(&NodeAddr) -> bool) {
        let mut closed = Vec::new();
        lock(&self.state.outboxes).retain(|node, outbox| {
            if gone(node) {
                closed.push(outbox.clone());
                return false;
            }
            true
        });
        for outbox in closed {
            lock(&outbox.state).closed = true;
            outbox.queued.notify_one();
            outbox.room.notify_waiters();
        }
    }

    /// Resends overdue reliable messages; forgets streams to nodes with no interest left.
    async fn resend(&self) {
        let directory = self.shared.directory.borrow().clone();
        let now = self.state.now();
        let due: Vec<(NodeAddr, Vec<Due>)> = {
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
                    let batch = stream.due(now, RESEND_AFTER);
                    let addr = directory.node_addr(*node)?;
                    (!batch.is_empty()).then_some((addr, batch))
                })
                .collect()
        };
        for (addr, messages) in due {
            self.state.metrics.redelivered.inc_by(messages.len() as u64);
            let mut frames = EventOutbox::default();
            for (place, oldest, kept) in &messages {
                let published = Published {
                    topic: &kept.topic,
                    payload: Raw(&kept.payload),
                    trace: kept.trace,
                    reliable: Some(*place),
                    oldest: *oldest,
                    origin: kept.origin.as_deref(),
                };
                let _ = frames.append(&published);
            }
            while let Some(pending) = frames.next_frame() {
                let _ = self
                    .endpoint
                    .send(addr, Channel::Events, pending.finish(), SendMode::NoWait)
                    .await;
            }
        }
    }
}
