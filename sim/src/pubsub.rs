//! Pub/sub in the simulator: the nodes' applications subscribe to topic patterns and publish,
//! routed by the engine's own directory and carried, when reliable, by its own resend and
//! dedupe machines.
//!
//! A subscription is the application's: an interest entry in the pub/sub keyspace, set at once
//! if the node is up and again at every start ([`Fault::Subscribe`](crate::faults::Fault)). A
//! publication goes once to each node the publisher's
//! [`Directory`](foundation_core::services::Directory) lists with a matching pattern — the route
//! `node.pubsub()` computes — through the publisher's outbox for that node, batched into frames
//! on the events channel by the core's own outbox machine ([`sending`]). Plain messages are
//! lost with their connection. Reliable ones are numbered per receiving node by [`Outgoing`],
//! accepted in order and once by the receiver's [`Incoming`], acknowledged, and resent by a tick
//! every [`RESEND_TICK_US`] once unacknowledged for [`RESEND_AFTER`], as the runtime does. A
//! receiving node hands a message to its application when one of the application's patterns
//! matches.
//!
//! Every publication is recorded ([`Publication`]) with its route and each delivery, which is
//! what [`crate::invariants::pubsub::Delivery`] checks.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use foundation_core::ephemeral::PUBSUB_KEYSPACE;
use foundation_core::services::reliable::{Incoming, Outgoing, Verdict};
use foundation_core::services::topic::{Pattern, Topic};
use foundation_core::services::trace::TraceContext;
use foundation_core::services::wire::Sequenced;
use foundation_core::Channel;
use rand10::SeedableRng;
use serde::Serialize;

use crate::faults::Nodes;
use crate::pace::{check_share, Pace};
use crate::world::{AppRequest, NodeStatus, World};

pub mod sending;

pub use sending::Sending;
use sending::SimOutbox;

/// The smallest payload: the publication's number.
const PAYLOAD_MIN: usize = 8;
/// The largest payload a load may ask for.
const PAYLOAD_MAX: usize = 1 << 20;
/// The most publications one burst may hold.
const BURST_MAX: u32 = 10_000;

/// How often a publisher looks for reliable messages to resend (the runtime's tick).
pub const RESEND_TICK_US: u64 = 200_000;
/// How long a reliable message waits for its acknowledgement before it is sent again.
pub const RESEND_AFTER: Duration = Duration::from_secs(1);
/// Unacknowledged reliable messages kept per receiving node (the runtime's backlog).
const RELIABLE_BACKLOG: usize = 65_536;
/// Reliable streams a receiver remembers (the runtime's).
const INCOMING_STREAMS: usize = 4096;

/// A seeded stream of publications: `rate` bursts per second over the selection together, for
/// `duration`, each from a random running node of the selection: `burst` publications at once,
/// each on a random topic of `topics` with a payload of `payload` bytes, reliable with
/// probability `reliable`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Publishes {
    /// Which nodes publish.
    pub nodes: Nodes,
    /// The topics drawn from.
    pub topics: Vec<String>,
    /// Publications per second, over the whole selection.
    pub rate: f64,
    /// How long they keep coming.
    pub duration: Duration,
    /// Share of reliable publications, 0–1.
    pub reliable: f64,
    /// Publications per burst (1: one at a time).
    pub burst: u32,
    /// Payload bytes per publication (at least 8: its number).
    pub payload: usize,
}

impl Publishes {
    /// `rate` publications per second from `nodes` on `topics` for `duration`, half reliable.
    pub fn new(nodes: Nodes, topics: &[&str], rate: f64, duration: Duration) -> Self {
        Self {
            nodes,
            topics: topics.iter().map(|t| (*t).to_owned()).collect(),
            rate,
            duration,
            reliable: 0.5,
            burst: 1,
            payload: PAYLOAD_MIN,
        }
    }

    /// In bursts of `burst` publications of `payload` bytes each.
    pub fn bursts(mut self, burst: u32, payload: usize) -> Self {
        self.burst = burst;
        self.payload = payload;
        self
    }

    /// Checks every field.
    pub fn validate(&self) -> Result<(), String> {
        if self.topics.is_empty() {
            return Err("publications need at least one topic".into());
        }
        for topic in &self.topics {
            Topic::parse(topic).map_err(|e| format!("topic {topic:?}: {e}"))?;
        }
        self.pace().check("publish", 1e5)?;
        if !(1..=BURST_MAX).contains(&self.burst) {
            return Err(format!("a burst holds 1 to {BURST_MAX} publications"));
        }
        if !(PAYLOAD_MIN..=PAYLOAD_MAX).contains(&self.payload) {
            return Err(format!("a payload is {PAYLOAD_MIN} to {PAYLOAD_MAX} bytes"));
        }
        check_share("reliable", self.reliable)
    }

    fn pace(&self) -> Pace {
        Pace {
            rate: self.rate,
            duration: self.duration,
        }
    }
}

impl fmt::Display for Publishes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "publish on {:?} from {}: {}/s for {:?}, {:.0}% reliable",
            self.topics,
            self.nodes,
            self.rate,
            self.duration,
            self.reliable * 100.0
        )?;
        if self.burst > 1 || self.payload > PAYLOAD_MIN {
            write!(f, ", bursts of {} × {} B", self.burst, self.payload)?;
        }
        Ok(())
    }
}

/// One publication and what became of it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Publication {
    /// The publishing slot and its life.
    pub slot: usize,
    /// The publisher's life.
    pub life: u64,
    /// Its topic.
    pub topic: String,
    /// Whether it was published reliably.
    pub reliable: bool,
    /// Its payload's size in bytes.
    pub payload: usize,
    /// When (world µs).
    pub published_us: u64,
    /// The slots it was routed to (the publisher's own included when it matched).
    pub route: Vec<usize>,
    /// Each hand-over to an application: slot, that slot's life, when (world µs).
    pub deliveries: Vec<(usize, u64, u64)>,
    /// Slots it was lost for after waiting too long for room in a full outbox (plain only).
    pub gave_up: Vec<usize>,
}

/// The pub/sub state of one node life: its outboxes, its reliable streams out and in.
struct NodePubSub {
    life: u64,
    /// Messages waiting for each receiving slot, batched and bounded.
    outboxes: BTreeMap<usize, SimOutbox>,
    /// The trace its messages carry.
    trace: TraceContext,
    /// Reliable streams to each receiving slot, of publication numbers.
    outgoing: BTreeMap<usize, Outgoing<u64>>,
    incoming: Incoming,
    /// Stream numbers are drawn per life, so a restarted publisher starts fresh streams.
    stream_base: u64,
    tick_armed: bool,
}

/// Where the world's pub/sub traffic stands.
#[derive(Default)]
pub(crate) struct PubSubLayer {
    /// Each slot's application's patterns (they outlive the node's lives).
    patterns: BTreeMap<usize, BTreeSet<String>>,
    nodes: BTreeMap<usize, NodePubSub>,
    publications: Vec<Publication>,
    loads: Vec<(Publishes, Vec<usize>, u64)>,
    /// What the outboxes did.
    sending: Sending,
}

/// A pub/sub event waiting in the world's queue.
#[derive(Clone, Debug)]
pub(crate) enum PubSubEvent {
    /// The next publication of load `load`.
    NextPublish { load: usize },
    /// A frame of published messages reaches `to`.
    Frame {
        from: usize,
        to: usize,
        lives: (u64, u64),
        connection: u64,
        frame: bytes::Bytes,
    },
    /// Publisher `slot`'s sender for `to` takes the next frame of its outbox.
    Flush { slot: usize, life: u64, to: usize },
    /// A publication waiting for room in `slot`'s outbox for `to` gives up.
    WaitEnds {
        slot: usize,
        life: u64,
        to: usize,
        id: u64,
    },
    /// An acknowledgement reaches publisher `to`.
    Ack {
        from: usize,
        to: usize,
        lives: (u64, u64),
        connection: u64,
        stream: u64,
        seq: u64,
    },
    /// Publisher `slot` looks for messages to resend.
    Tick { slot: usize, life: u64 },
}

impl PubSubEvent {
    /// The slot it happens on; `None` for the world's own.
    pub(crate) fn slot(&self) -> Option<usize> {
        match self {
            PubSubEvent::NextPublish { .. } => None,
            PubSubEvent::Frame { to, .. } | PubSubEvent::Ack { to, .. } => Some(*to),
            PubSubEvent::Tick { slot, .. }
            | PubSubEvent::Flush { slot, .. }
            | PubSubEvent::WaitEnds { slot, .. } => Some(*slot),
        }
    }
}

impl World {
    /// Every publication so far, by number.
    pub fn publications(&self) -> &[Publication] {
        &self.pubsub.publications
    }

    /// What the publishers' outboxes did.
    pub fn pubsub_sending(&self) -> &Sending {
        &self.pubsub.sending
    }

    /// The application on `slot` subscribes to `pattern` (now if its node is up, and at every
    /// start).
    pub(crate) fn subscribe(&mut self, slot: usize, pattern: &str) -> Result<(), String> {
        Pattern::parse(pattern).map_err(|e| format!("pattern {pattern:?}: {e}"))?;
        self.pubsub
            .patterns
            .entry(slot)
            .or_default()
            .insert(pattern.to_owned());
        if self.node(slot).is_up() {
            self.set_interest(slot, pattern);
        }
        Ok(())
    }

    /// The node in `slot` just started: its application subscribes again.
    pub(crate) fn subscribe_at_start(&mut self, slot: usize) {
        let patterns: Vec<String> = self
            .pubsub
            .patterns
            .get(&slot)
            .map(|p| p.iter().cloned().collect())
            .unwrap_or_default();
        for pattern in patterns {
            self.set_interest(slot, &pattern);
        }
    }

    fn set_interest(&mut self, slot: usize, pattern: &str) {
        let request = AppRequest::Ephemeral {
            keyspace: PUBSUB_KEYSPACE.to_owned(),
            name: pattern.to_owned(),
            value: Some(Vec::new()),
        };
        self.request_after(slot, 0, request);
    }

    /// Starts a publication load now.
    pub(crate) fn start_publishes(&mut self, publishes: Publishes, slots: Vec<usize>) {
        let end = self.now_us() + publishes.duration.as_micros() as u64;
        let gap = 1 + self.random_below(publishes.pace().max_gap_us());
        let load = self.pubsub.loads.len();
        self.pubsub.loads.push((publishes, slots, end));
        if self.now_us() + gap <= end {
            self.push_pubsub(self.now_us() + gap, PubSubEvent::NextPublish { load });
        }
    }

    fn next_publish(&mut self, load: usize) {
        let (publishes, slots, end) = &self.pubsub.loads[load];
        let (publishes, end) = (publishes.clone(), *end);
        let running: Vec<usize> = slots
            .iter()
            .copied()
            .filter(|&s| self.node(s).status() == NodeStatus::Running)
            .collect();
        if !running.is_empty() {
            let slot = running[self.random_below(running.len() as u64) as usize];
            for _ in 0..publishes.burst {
                let topics = publishes.topics.len() as u64;
                let topic = &publishes.topics[self.random_below(topics) as usize];
                let reliable = self.random_below(1_000_000) < (publishes.reliable * 1e6) as u64;
                self.publish_sized(slot, topic, reliable, publishes.payload);
            }
        }
        let next = self.now_us() + 1 + self.random_below(publishes.pace().max_gap_us());
        if next <= end {
            self.push_pubsub(next, PubSubEvent::NextPublish { load });
        }
    }

    /// The application on `slot` publishes on `topic`; returns the publication's number, or
    /// `None` if the node is down or the topic is not one.
    pub fn publish(&mut self, slot: usize, topic: &str, reliable: bool) -> Option<u64> {
        self.publish_sized(slot, topic, reliable, PAYLOAD_MIN)
    }

    /// [`publish`](Self::publish) with a payload of `payload` bytes (at least 8).
    pub fn publish_sized(
        &mut self,
        slot: usize,
        topic: &str,
        reliable: bool,
        payload: usize,
    ) -> Option<u64> {
        let parsed = Topic::parse(topic).ok()?;
        let (directory, _) = self.directory(slot)?;
        // Only slots that still run the subscriber: a directory may list a replaced node's
        // subscription next to its successor's at the same address, and routing both to the
        // slot handed the successor each publication twice (`--scenario chaos --nodes 16
        // --seed 184`).
        let route: Vec<usize> = directory
            .subscribers(&parsed)
            .filter_map(|addr| self.slot_hosting(addr.id))
            .collect();
        let id = self.pubsub.publications.len() as u64;
        let life = self.node(slot).life();
        self.pubsub.publications.push(Publication {
            slot,
            life,
            topic: topic.to_owned(),
            reliable,
            payload: payload.max(PAYLOAD_MIN),
            published_us: self.now_us(),
            route: route.clone(),
            deliveries: Vec::new(),
            gave_up: Vec::new(),
        });
        self.note(format_args!(
            "n{slot} publish #{id} {topic} reliable={reliable} to {route:?}"
        ));
        for to in route {
            if to == slot {
                self.hand_over(slot, id);
            } else {
                self.enqueue(slot, to, id);
            }
        }
        Some(id)
    }

    /// The pub/sub state of the node in `slot`, fresh for each life.
    fn node_pubsub(&mut self, slot: usize) -> &mut NodePubSub {
        let life = self.node(slot).life();
        if self.pubsub.nodes.get(&slot).is_none_or(|n| n.life != life) {
            let stream_base = self.random_below(u64::MAX / 2) << 16;
            let mut rng = rand10::rngs::StdRng::seed_from_u64(self.random_below(u64::MAX));
            let node = NodePubSub {
                life,
                outboxes: BTreeMap::new(),
                trace: TraceContext::new_root(&mut rng, false),
                outgoing: BTreeMap::new(),
                incoming: Incoming::new(INCOMING_STREAMS),
                stream_base,
                tick_armed: false,
            };
            self.pubsub.nodes.insert(slot, node);
        }
        self.pubsub.nodes.get_mut(&slot).expect("inserted above")
    }

    fn arm_tick(&mut self, slot: usize) {
        let node = self.node_pubsub(slot);
        if node.tick_armed {
            return;
        }
        node.tick_armed = true;
        let life = node.life;
        self.push_pubsub(
            self.now_us() + RESEND_TICK_US,
            PubSubEvent::Tick { slot, life },
        );
    }

    /// Carries out a pub/sub event due now.
    pub(crate) fn pubsub_deliver(&mut self, event: PubSubEvent) {
        match event {
            PubSubEvent::NextPublish { load } => self.next_publish(load),
            PubSubEvent::Frame {
                from,
                to,
                lives,
                connection,
                frame,
            } => {
                if self.intact(from, to, lives, connection) {
                    self.receive_frame(from, to, &frame);
                }
            }
            PubSubEvent::Flush { slot, life, to } => {
                if self.node(slot).life() == life {
                    self.flush(slot, to);
                }
            }
            PubSubEvent::WaitEnds { slot, life, to, id } => {
                if self.node(slot).life() == life {
                    self.wait_ends(slot, to, id);
                }
            }
            PubSubEvent::Ack {
                from,
                to,
                lives,
                connection,
                stream,
                seq,
            } => {
                if self.intact(from, to, lives, connection) {
                    if let Some(out) = self.node_pubsub(to).outgoing.get_mut(&from) {
                        out.ack_stream(stream, seq);
                    }
                }
            }
            PubSubEvent::Tick { slot, life } => {
                if self.node(slot).life() == life {
                    self.resend(slot);
                }
            }
        }
    }

    /// Whether a message sent between these lives on this connection may still arrive.
    fn intact(&self, from: usize, to: usize, lives: (u64, u64), connection: u64) -> bool {
        (self.node(from).life(), self.node(to).life()) == lives
            && self.network().connection(from, to) == connection
    }

    fn receive(&mut self, from: usize, to: usize, id: u64, place: Option<(Sequenced, u64)>) {
        let Some((place, oldest)) = place else {
            return self.hand_over(to, id);
        };
        let publisher = self.node(from).id();
        let node = self.node_pubsub(to);
        let verdict = node.incoming.accept(publisher, place, oldest);
        let acked = node.incoming.acked(publisher, place.stream);
        if verdict == Verdict::Deliver {
            self.hand_over(to, id);
        }
        let Some(seq) = acked else {
            return;
        };
        let lives = (self.node(to).life(), self.node(from).life());
        if let Some((at, connection)) = self.stream_send(to, from, Channel::Events) {
            let ack = PubSubEvent::Ack {
                from: to,
                to: from,
                lives,
                connection,
                stream: place.stream,
                seq,
            };
            self.push_pubsub(at, ack);
        }
    }

    /// Gives publication `id` to the application on `slot` if one of its patterns matches.
    fn hand_over(&mut self, slot: usize, id: u64) {
        let topic = &self.pubsub.publications[id as usize].topic;
        let Ok(topic) = Topic::parse(topic) else {
            return;
        };
        let wanted = self.pubsub.patterns.get(&slot).is_some_and(|patterns| {
            patterns
                .iter()
                .filter_map(|p| Pattern::parse(p).ok())
                .any(|p| p.matches(&topic))
        });
        if wanted {
            let (life, now) = (self.node(slot).life(), self.now_us());
            self.pubsub.publications[id as usize]
                .deliveries
                .push((slot, life, now));
        }
    }

    /// Resends every stream's unacknowledged messages once the oldest waited too long.
    fn resend(&mut self, slot: usize) {
        let now = self.local_now(slot);
        let node = self.node_pubsub(slot);
        node.tick_armed = false;
        let mut due = Vec::new();
        let mut waiting = false;
        for (&to, out) in &mut node.outgoing {
            due.extend(out.due(now, RESEND_AFTER).into_iter().map(|m| (to, m)));
            waiting |= out.unacked() > 0;
        }
        self.resend_frames(slot, due);
        if waiting {
            self.arm_tick(slot);
        }
    }
}
