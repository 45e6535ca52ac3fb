//! Pub/sub bridged between linked clusters, the gateway's I/O; the rules (what goes where, the
//! loop rule, who forwards) are `foundation_core::federation::TopicBridges`'.
//!
//! Out: the gateway subscribes in its own cluster to every exported pattern, so a message
//! published by any node of the cluster reaches it by ordinary pub/sub. The cluster's
//! forwarding gateway puts each message on a bounded queue per link it is exported to; a task
//! per link sends the queue in batches, one request and receipt at a time (in order per link).
//! In: a batch from a linked gateway over the batch limits is refused whole (the sender keeps
//! to them, so only a gateway that ignores them meets this); the rest is checked against this
//! cluster's imports and published here with the sender's cluster as origin and the
//! publisher's trace.
//!
//! Interest back (`interest.rs`): this cluster's forwarder tells every gateway of each linked
//! cluster what this cluster would deliver from there; the forwarder of the other side sends
//! only that (with nothing heard, everything exported).
//!
//! At most once across the WAN, counted: a message is dropped when the receiving cluster's
//! interest leaves it out, its link is down, its queue is full (the oldest goes), the send
//! fails, or the receiver does not import it.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use foundation_core::federation::wire::{self, FederationReply, FederationRequest, RELAY_SERVICE};
use foundation_core::federation::{
    is_forwarder, BatchLimits, BatchTooLarge, BridgeReceipt, BridgedMessage, HeardInterest,
    InterestSender, InterestTimers, LinkState, TopicBridges,
};
use foundation_core::services::topic::{Pattern, Topic};
use foundation_core::services::Directory;
use foundation_transport::{ClusterName, NodeId};
use tokio::sync::{mpsc, Notify};

mod interest;
mod metrics;

pub(super) use interest::tell_interest;

use super::{FederationHandle, FederationSettings};
use crate::runtime::services::{
    lock, Message, PubSubHandle, PublishOptions, SlowPolicy, SubscribeOptions,
};
pub(crate) use metrics::BridgeMetrics;

/// Messages waiting per link; past it the oldest is dropped.
pub const LINK_QUEUE: usize = 8192;
/// Messages the gateway takes from one of its subscriptions at a time.
const RECEIVED_AT_ONCE: usize = 512;
/// Incoming batches waiting to be published in this cluster; past it a batch is refused.
const INBOUND_BATCHES: usize = 64;
/// The gateway's own subscriptions to exported patterns.
const SUBSCRIPTION_QUEUE: usize = 8192;

/// Why a bridged message was dropped (the `reason` label of its counter).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dropped {
    /// The linked cluster's interest left it out: it would deliver it to nobody.
    NoInterest,
    /// The link's queue was full: the oldest message went.
    QueueFull,
    /// The link was down.
    LinkDown,
    /// The request to the remote gateway failed (no answer, refused, garbage).
    SendFailed,
    /// The remote gateway did not import it, or was overloaded (its receipt says so).
    RemoteRefused,
    /// Coming in: this cluster does not import it from that cluster.
    NotImported,
    /// Coming in: this gateway's inbound queue was full.
    InboundFull,
    /// Coming in: the batch was over this gateway's batch limits, and refused whole.
    Oversized,
    /// Going out: a message larger than a whole batch may be, which the linked gateway
    /// would refuse (with limits as ours).
    TooLarge,
}

impl Dropped {
    pub(crate) const ALL: [Dropped; 9] = [
        Dropped::NoInterest,
        Dropped::QueueFull,
        Dropped::LinkDown,
        Dropped::SendFailed,
        Dropped::RemoteRefused,
        Dropped::NotImported,
        Dropped::InboundFull,
        Dropped::Oversized,
        Dropped::TooLarge,
    ];

    pub(crate) fn label(self) -> &'static str {
        match self {
            Dropped::NoInterest => "no_interest",
            Dropped::QueueFull => "queue_full",
            Dropped::LinkDown => "link_down",
            Dropped::SendFailed => "send_failed",
            Dropped::RemoteRefused => "remote_refused",
            Dropped::NotImported => "not_imported",
            Dropped::InboundFull => "inbound_full",
            Dropped::Oversized => "oversized",
            Dropped::TooLarge => "too_large",
        }
    }
}

/// One link's outgoing queue.
#[derive(Default)]
struct LinkQueue {
    pending: Mutex<VecDeque<BridgedMessage>>,
    ready: Notify,
}

/// A batch from a linked gateway, checked, waiting to be published here.
type Inbound = (ClusterName, Vec<BridgedMessage>);

/// The bridge of one gateway.
pub(super) struct Bridge {
    rules: TopicBridges,
    me: NodeId,
    /// The most a batch holds, sent or received.
    batch: BatchLimits,
    queues: BTreeMap<ClusterName, LinkQueue>,
    inbound: mpsc::Sender<Inbound>,
    inbound_rx: Mutex<Option<mpsc::Receiver<Inbound>>>,
    /// What this cluster tells each linked cluster's gateways it would deliver.
    telling: Mutex<interest::Telling>,
    /// What each linked cluster said it would deliver.
    heard: Mutex<HeardInterest>,
    /// A send of interest ended: the gateway's task looks again at once, since a change made
    /// while it was out (or a withdrawal it held back) may be due now.
    pub(super) interest_answered: Notify,
    pub(super) metrics: BridgeMetrics,
}

impl Bridge {
    pub(super) fn new(
        rules: TopicBridges,
        me: NodeId,
        metrics: BridgeMetrics,
        settings: &FederationSettings,
    ) -> Self {
        let queues = rules
            .clusters()
            .map(|c| (c.clone(), LinkQueue::default()))
            .collect();
        for cluster in rules.clusters() {
            metrics.declare(cluster);
        }
        let (inbound, rx) = mpsc::channel(INBOUND_BATCHES);
        let timers = InterestTimers::from_wan(&settings.timers);
        let targets = settings.links.iter().flat_map(|link| {
            let cluster = &link.cluster;
            link.gateways.iter().map(move |gw| (cluster.clone(), *gw))
        });
        Self {
            rules,
            me,
            batch: settings.bridge_batch,
            queues,
            inbound,
            inbound_rx: Mutex::new(Some(rx)),
            telling: Mutex::new(interest::Telling::new(InterestSender::new(timers, targets))),
            heard: Mutex::new(HeardInterest::new(timers)),
            interest_answered: Notify::new(),
            metrics,
        }
    }

    /// Takes in a batch from `from`'s gateway: what this cluster imports is queued for
    /// publishing here, the rest is refused; the receipt says which. A batch over the limits
    /// is refused whole.
    pub(super) fn incoming(
        &self,
        from: &ClusterName,
        messages: Vec<BridgedMessage>,
    ) -> Result<BridgeReceipt, BatchTooLarge> {
        if let Err(oversized) = self.batch.check(&messages) {
            let n = messages.len() as u64;
            self.metrics.dropped(from, Dropped::Oversized, n);
            return Err(oversized);
        }
        let total = messages.len();
        let accepted: Vec<BridgedMessage> = messages
            .into_iter()
            .filter(|m| Topic::parse(&m.topic).is_ok_and(|t| self.rules.imports(from, &t)))
            .collect();
        let refused = total - accepted.len();
        self.metrics
            .dropped(from, Dropped::NotImported, refused as u64);
        let mut receipt = BridgeReceipt {
            refused: count(refused),
            ..BridgeReceipt::default()
        };
        let queued = accepted.len();
        match self.inbound.try_send((from.clone(), accepted)) {
            Ok(()) => receipt.accepted = count(queued),
            Err(_) => {
                self.metrics
                    .dropped(from, Dropped::InboundFull, queued as u64);
                receipt.overloaded = count(queued);
            }
        }
        Ok(receipt)
    }

    /// Queues `message` for `cluster`'s link, dropping the oldest when the queue is full.
    fn enqueue(&self, cluster: &ClusterName, message: BridgedMessage) {
        let Some(queue) = self.queues.get(cluster) else {
            return;
        };
        let full = {
            let mut pending = lock(&queue.pending);
            let full = pending.len() >= LINK_QUEUE;
            if full {
                pending.pop_front();
            }
            pending.push_back(message);
            full
        };
        if full {
            self.metrics.dropped(cluster, Dropped::QueueFull, 1);
        }
        queue.ready.notify_one();
    }

    /// The next batch for `cluster`'s link, if any is queued.
    fn next_batch(&self, cluster: &ClusterName) -> Vec<BridgedMessage> {
        let Some(queue) = self.queues.get(cluster) else {
            return Vec::new();
        };
        let mut pending = lock(&queue.pending);
        let mut batch = Vec::new();
        let mut bytes = 0;
        while let Some(next) = pending.front() {
            if !self.batch.has_room(batch.len(), bytes, next.payload.len()) {
                break;
            }
            bytes += next.payload.len();
            batch.extend(pending.pop_front());
        }
        batch
    }
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn payload_bytes(messages: &[BridgedMessage]) -> u64 {
    messages.iter().map(|m| m.payload.len() as u64).sum()
}

/// Starts the bridge's tasks: one per exported pattern (the gateway's subscription), one per
/// bridged link (its sender), one publishing what comes in.
pub(super) fn spawn(handle: &FederationHandle, pubsub: PubSubHandle) {
    let bridge = &handle.inner.bridge;
    if bridge.rules.is_empty() {
        return;
    }
    if let Some(rx) = lock(&bridge.inbound_rx).take() {
        tokio::spawn(publish_incoming(handle.clone(), pubsub.clone(), rx));
    }
    for cluster in bridge.queues.keys() {
        tokio::spawn(send_link(handle.clone(), cluster.clone()));
    }
    for pattern in bridge.rules.subscriptions() {
        tokio::spawn(forward_pattern(
            handle.clone(),
            pubsub.clone(),
            pattern.clone(),
        ));
    }
}

/// Subscribes to `pattern` in this cluster and queues what it receives for the links it is
/// exported to, while this gateway is its cluster's forwarder.
async fn forward_pattern(handle: FederationHandle, pubsub: PubSubHandle, pattern: Pattern) {
    let options = SubscribeOptions {
        capacity: SUBSCRIPTION_QUEUE,
        policy: SlowPolicy::DropOldest,
    };
    let mut subscription = match pubsub.subscribe_bridge(pattern.as_str(), options).await {
        Ok(subscription) => subscription,
        Err(error) => {
            tracing::warn!(%pattern, %error, "the topic bridge could not subscribe: nothing on it is exported");
            return;
        }
    };
    let mut stop = handle.inner.stop.subscribe();
    let mut received = Vec::new();
    loop {
        tokio::select! {
            n = subscription.recv_many(&mut received, RECEIVED_AT_ONCE) => if n == 0 { return },
            _ = stop.wait_for(|stopped| *stopped) => return,
        }
        let directory = pubsub.shared.directory.borrow().clone();
        if forwarder(handle.inner.bridge.me, &directory) {
            for message in received.drain(..) {
                route(&handle, &pattern, message);
            }
        }
        received.clear();
    }
}

/// True while gateway `me` is the one of its cluster that forwards (and tells linked clusters
/// its cluster's interest).
fn forwarder(me: NodeId, directory: &Directory) -> bool {
    let gateways = directory
        .instances(RELAY_SERVICE)
        .iter()
        .filter(|i| i.record.routable())
        .map(|i| i.id.node)
        .collect::<Vec<_>>();
    is_forwarder(me, gateways)
}

/// Queues one message received through the subscription to `via` for its links.
fn route(handle: &FederationHandle, via: &Pattern, message: Message) {
    let bridge = &handle.inner.bridge;
    let Ok(topic) = Topic::parse(&message.topic) else {
        return;
    };
    let targets = bridge.rules.forward(via, &topic, message.origin.as_deref());
    let now = handle.inner.now();
    let fits = bridge.batch.fits_alone(message.payload.len());
    for cluster in targets {
        if !lock(&bridge.heard).wants(now, &cluster, &topic) {
            let bytes = message.payload.len() as u64;
            bridge.metrics.unwanted(&cluster, bytes);
            continue;
        }
        if !fits {
            bridge.metrics.dropped(&cluster, Dropped::TooLarge, 1);
            continue;
        }
        let bridged = BridgedMessage {
            topic: message.topic.to_string(),
            payload: message.payload.to_vec(),
            trace: message.trace,
        };
        bridge.enqueue(&cluster, bridged);
    }
}

/// Sends `cluster`'s queue to its current remote gateway, one batch at a time.
async fn send_link(handle: FederationHandle, cluster: ClusterName) {
    let mut stop = handle.inner.stop.subscribe();
    let Some(queue) = handle.inner.bridge.queues.get(&cluster) else {
        return;
    };
    loop {
        let ready = queue.ready.notified();
        let batch = handle.inner.bridge.next_batch(&cluster);
        if batch.is_empty() {
            tokio::select! {
                _ = ready => continue,
                _ = stop.wait_for(|stopped| *stopped) => return,
            }
        }
        send_batch(&handle, &cluster, batch).await;
    }
}

/// Sends one batch and counts what became of it.
async fn send_batch(handle: &FederationHandle, cluster: &ClusterName, batch: Vec<BridgedMessage>) {
    let metrics = &handle.inner.bridge.metrics;
    let (messages, bytes) = (batch.len() as u64, payload_bytes(&batch));
    let link = handle.links().into_iter().find(|l| &l.cluster == cluster);
    let Some(link) = link.filter(|l| l.state != LinkState::Down) else {
        metrics.dropped(cluster, Dropped::LinkDown, messages);
        return;
    };
    let timeout = handle.inner.machine().timers().probe_timeout;
    let request = FederationRequest::Bridge(batch);
    let Ok(payload) = wire::encode(&request) else {
        metrics.dropped(cluster, Dropped::SendFailed, messages);
        return;
    };
    let sent = handle
        .inner
        .endpoint
        .request(cluster, link.gateway, payload.into(), timeout)
        .await;
    match sent.as_deref().map(wire::decode::<FederationReply>) {
        Ok(Ok(FederationReply::Bridged(receipt))) => {
            metrics.carried(cluster, "out", messages, bytes);
            let refused = u64::from(receipt.refused) + u64::from(receipt.overloaded);
            metrics.dropped(cluster, Dropped::RemoteRefused, refused);
        }
        other => {
            tracing::debug!(%cluster, reply = ?other.map(|r| r.map(|_| ())), "bridged batch not taken");
            metrics.dropped(cluster, Dropped::SendFailed, messages);
        }
    }
}

/// Publishes in this cluster what linked gateways bridged in, with their cluster as origin.
async fn publish_incoming(
    handle: FederationHandle,
    pubsub: PubSubHandle,
    mut inbound: mpsc::Receiver<Inbound>,
) {
    let mut stop = handle.inner.stop.subscribe();
    loop {
        let (from, messages) = tokio::select! {
            next = inbound.recv() => match next {
                Some(next) => next,
                None => return,
            },
            _ = stop.wait_for(|stopped| *stopped) => return,
        };
        let origin: Arc<str> = Arc::from(from.as_str());
        let bytes = payload_bytes(&messages);
        let n = messages.len() as u64;
        for message in messages {
            let payload = Bytes::from(message.payload);
            let options = PublishOptions::default();
            let published = pubsub
                .publish_as(
                    &message.topic,
                    payload,
                    options,
                    Some(message.trace),
                    Some(origin.clone()),
                )
                .await;
            if let Err(error) = published {
                tracing::debug!(%from, %error, "a bridged message was not published");
            }
        }
        handle.inner.bridge.metrics.carried(&from, "in", n, bytes);
    }
}
