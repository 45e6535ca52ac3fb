//! The transport's Prometheus metrics, registered in a registry the caller owns.
//!
//! Hot-path handles (bytes and messages per channel and direction) are looked up once, at
//! registration, so counting costs one atomic add.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use quinn::PathStats;

use crate::error::HandshakeFailure;
use foundation_core::Channel;

/// Which way traffic flows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// From us to a peer.
    Sent,
    /// From a peer to us.
    Received,
}

impl Direction {
    fn name(self) -> &'static str {
        match self {
            Direction::Sent => "sent",
            Direction::Received => "received",
        }
    }
}

/// Why a message was dropped or rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// A datagram queue was full and the oldest was discarded.
    QueueFull,
    /// A message was larger than its channel allows.
    Oversized,
    /// Received bytes did not parse.
    Malformed,
    /// A connection failed with the message queued or in flight.
    ConnectionLost,
    /// The local inbox was full (datagrams only: streams push back instead).
    InboxFull,
}

impl DropReason {
    fn name(self) -> &'static str {
        match self {
            DropReason::QueueFull => "queue_full",
            DropReason::Oversized => "oversized",
            DropReason::Malformed => "malformed",
            DropReason::ConnectionLost => "connection_lost",
            DropReason::InboxFull => "inbox_full",
        }
    }
}

/// What a full inbox of a streamed channel was full of when a reader had to wait for room.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InboxBound {
    /// Messages: [`TransportConfig::inbox_capacity`](crate::TransportConfig::inbox_capacity).
    Messages,
    /// Payload bytes: [`TransportConfig::inbox_bytes`](crate::TransportConfig::inbox_bytes).
    Bytes,
}

impl InboxBound {
    fn name(self) -> &'static str {
        match self {
            InboxBound::Messages => "messages",
            InboxBound::Bytes => "bytes",
        }
    }
}

/// Events of multiplexed RPC calls that are not ordinary calls and answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RpcEvent {
    /// A response arrived for a call the caller had already given up on; it was dropped.
    LateReply,
    /// A caller gave up on a call and told the responder.
    CancelSent,
    /// A caller told us it gave up on a call.
    CancelReceived,
    /// A call was refused because the connection already had its limit of calls in flight.
    InFlightLimit,
    /// A frame of a multiplexed stream did not parse and was refused.
    Malformed,
    /// A responder stopped reading a caller's requests until the caller takes the answers
    /// already queued for it (see `rpc::mux::ANSWERS_QUEUED_MAX`).
    AnswersBackedUp,
    /// A responder ended a stream whose caller took none of its answers for
    /// `rpc::mux::ANSWERS_WAIT_MAX`.
    AnswersAbandoned,
    /// A call was refused, not sent, because its stream already queued more than all calls in
    /// flight could: the responder has stopped reading it.
    RequestsBackedUp,
}

impl RpcEvent {
    const ALL: [RpcEvent; 8] = [
        RpcEvent::LateReply,
        RpcEvent::CancelSent,
        RpcEvent::CancelReceived,
        RpcEvent::InFlightLimit,
        RpcEvent::Malformed,
        RpcEvent::AnswersBackedUp,
        RpcEvent::AnswersAbandoned,
        RpcEvent::RequestsBackedUp,
    ];

    fn name(self) -> &'static str {
        match self {
            RpcEvent::LateReply => "late_reply",
            RpcEvent::CancelSent => "cancel_sent",
            RpcEvent::CancelReceived => "cancel_received",
            RpcEvent::InFlightLimit => "in_flight_limit",
            RpcEvent::Malformed => "malformed",
            RpcEvent::AnswersBackedUp => "answers_backed_up",
            RpcEvent::AnswersAbandoned => "answers_abandoned",
            RpcEvent::RequestsBackedUp => "requests_backed_up",
        }
    }
}

/// What happened to sealed membership keys (see [`crate::sealed`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SealedEvent {
    /// A connection's keys were taken for sealing to its peer.
    Keyed,
    /// A peer sealed with a key we do not hold; we told it so.
    NoticeSent,
    /// A peer told us it does not hold our key; membership to it went back to QUIC.
    NoticeTaken,
    /// A peer's host answered a sealed datagram with ICMP port unreachable.
    PortClosed,
}

impl SealedEvent {
    const ALL: [SealedEvent; 4] = [
        SealedEvent::Keyed,
        SealedEvent::NoticeSent,
        SealedEvent::NoticeTaken,
        SealedEvent::PortClosed,
    ];

    fn name(self) -> &'static str {
        match self {
            SealedEvent::Keyed => "keyed",
            SealedEvent::NoticeSent => "notice_sent",
            SealedEvent::NoticeTaken => "notice_taken",
            SealedEvent::PortClosed => "port_closed",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabels {
    event: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TrafficLabels {
    channel: &'static str,
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DropLabels {
    channel: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabels {
    action: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SideLabels {
    side: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InboxLabels {
    channel: &'static str,
    bound: &'static str,
}

impl InboxLabels {
    fn of(channel: Channel, bound: InboxBound) -> Self {
        Self {
            channel: channel.name(),
            bound: bound.name(),
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

/// Payload bytes and messages one channel carried, as counted so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ChannelTotals {
    /// Payload bytes sent to peers.
    pub bytes_sent: u64,
    /// Payload bytes received from peers.
    pub bytes_received: u64,
    /// Messages sent.
    pub messages_sent: u64,
    /// Messages received.
    pub messages_received: u64,
}

/// The transport's metrics, all named `foundation_transport_*`.
#[derive(Debug)]
pub struct TransportMetrics {
    bytes: [[Counter; 2]; 6],
    messages: [[Counter; 2]; 6],
    drops: Family<DropLabels, Counter>,
    /// Waits for room in a streamed channel's inbox, by channel and bound.
    inbox_waits: Family<InboxLabels, Counter>,
    handshake_failures: Family<ReasonLabels, Counter>,
    duplicate_connections: Counter,
    connections: Gauge,
    rtt: Histogram,
    /// Bulk-only connections: [dialled, accepted].
    bulk_connections: [Counter; 2],
    bulk_fallbacks: Counter,
    /// Bulk-only connections refused because their peer held its quota.
    bulk_refused: Counter,
    /// Peer records forgotten (see [`crate::forget`]).
    peers_forgotten: Counter,
    handshakes_in_progress: Gauge,
    /// Incoming handshakes turned away: [asked to retry, refused].
    turned_away: [Counter; 2],
    /// In [`RpcEvent::ALL`] order.
    rpc_events: [Counter; 8],
    /// Sealed membership datagrams: [sent, received].
    sealed_datagrams: [Counter; 2],
    sealed_refused: Family<ReasonLabels, Counter>,
    /// In [`SealedEvent::ALL`] order.
    sealed_events: [Counter; 4],
    /// What quinn's loss detection saw on our paths: [lost packets, congestion events, MTU
    /// black holes].
    path_events: [Counter; 3],
}

impl TransportMetrics {
    /// Creates the metrics and registers them under `foundation_transport_` in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let registry = registry.sub_registry_with_prefix("foundation_transport");
        let bytes = Family::<TrafficLabels, Counter>::default();
        let messages = Family::<TrafficLabels, Counter>::default();
        let bulk_connections = Family::<SideLabels, Counter>::default();
        let turned_away = Family::<ActionLabels, Counter>::default();
        let rpc_events = Family::<EventLabels, Counter>::default();
        let sealed_datagrams = Family::<SideLabels, Counter>::default();
        let sealed_events = Family::<EventLabels, Counter>::default();
        let metrics = Self {
            bytes: per_channel_and_direction(&bytes),
            messages: per_channel_and_direction(&messages),
            drops: Family::default(),
            inbox_waits: Family::default(),
            handshake_failures: Family::default(),
            duplicate_connections: Counter::default(),
            connections: Gauge::default(),
            rtt: Histogram::new([
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                1.0,
            ]),
            bulk_connections: ["dialled", "accepted"]
                .map(|side| bulk_connections.get_or_create(&SideLabels { side }).clone()),
            bulk_fallbacks: Counter::default(),
            bulk_refused: Counter::default(),
            peers_forgotten: Counter::default(),
            handshakes_in_progress: Gauge::default(),
            turned_away: ["retry", "refused"]
                .map(|action| turned_away.get_or_create(&ActionLabels { action }).clone()),
            rpc_events: RpcEvent::ALL.map(|event| {
                rpc_events
                    .get_or_create(&EventLabels {
                        event: event.name(),
                    })
                    .clone()
            }),
            sealed_datagrams: [Direction::Sent, Direction::Received].map(|d| {
                sealed_datagrams
                    .get_or_create(&SideLabels { side: d.name() })
                    .clone()
            }),
            sealed_refused: Family::default(),
            sealed_events: SealedEvent::ALL.map(|event| {
                sealed_events
                    .get_or_create(&EventLabels {
                        event: event.name(),
                    })
                    .clone()
            }),
            path_events: Default::default(),
        };
        registry.register_with_unit(
            "traffic",
            "Payload bytes by channel and direction",
            Unit::Bytes,
            bytes,
        );
        registry.register("messages", "Messages by channel and direction", messages);
        registry.register(
            "dropped",
            "Messages dropped or rejected, by channel and reason",
            metrics.drops.clone(),
        );
        registry.register(
            "inbox_waits",
            "Times a stream's reader stopped reading because its channel's inbox was full, by \
             channel and bound (messages or bytes): backpressure on the sender, nothing dropped",
            metrics.inbox_waits.clone(),
        );
        registry.register(
            "handshake_failures",
            "Refused or failed handshakes, by reason",
            metrics.handshake_failures.clone(),
        );
        registry.register(
            "duplicate_connections",
            "Connections closed by the duplicate tie-break",
            metrics.duplicate_connections.clone(),
        );
        registry.register(
            "connections",
            "Open peer connections",
            metrics.connections.clone(),
        );
        registry.register_with_unit(
            "rtt",
            "Connection round-trip time samples",
            Unit::Seconds,
            metrics.rtt.clone(),
        );
        let [lost, congestion, black_holes] = metrics.path_events.clone();
        registry.register(
            "lost_packets",
            "Packets QUIC declared lost on our connections (MTU probes apart)",
            lost,
        );
        registry.register(
            "congestion_events",
            "Congestion events (window reductions) on our connections",
            congestion,
        );
        registry.register(
            "mtu_black_holes",
            "Paths on which QUIC found its larger datagrams lost and fell back to the minimum size",
            black_holes,
        );
        registry.register(
            "bulk_connections",
            "Bulk-only connections opened, by side (dialled by us, accepted from a peer)",
            bulk_connections,
        );
        registry.register(
            "bulk_fallbacks",
            "Bulk transfers sent on the regular connection because no bulk connection could be had",
            metrics.bulk_fallbacks.clone(),
        );
        registry.register(
            "bulk_connections_refused",
            "Bulk-only connections closed at once because their peer already held its quota of \
             them (4)",
            metrics.bulk_refused.clone(),
        );
        registry.register(
            "peers_forgotten",
            "Peer records let go: unused and unconnected for forget_peers_after, or forgotten on \
             the application's word",
            metrics.peers_forgotten.clone(),
        );
        registry.register(
            "handshakes_in_progress",
            "Incoming handshakes in progress",
            metrics.handshakes_in_progress.clone(),
        );
        registry.register(
            "incoming_turned_away",
            "Incoming handshakes turned away under load: asked to prove their address with a \
             QUIC Retry, or refused at the limit",
            turned_away,
        );
        registry.register(
            "rpc_events",
            "Multiplexed RPC calls given up, answered late, refused at the in-flight limit, or \
             carried in malformed frames",
            rpc_events,
        );
        registry.register(
            "sealed_datagrams",
            "Membership datagrams sealed outside QUIC, by side (sent, received)",
            sealed_datagrams,
        );
        registry.register(
            "sealed_refused",
            "Packets on the sealed membership socket dropped, by reason (malformed, unknown_key, \
             bad_tag, replay, oversized)",
            metrics.sealed_refused.clone(),
        );
        registry.register(
            "sealed_events",
            "Sealed membership keys taken from connections, and notices of unknown keys sent and \
             taken",
            sealed_events,
        );
        metrics
    }

    /// Metrics registered nowhere, for endpoints whose owner does not scrape them.
    pub fn unregistered() -> Self {
        Self::register(&mut Registry::default())
    }

    pub(crate) fn traffic(
        &self,
        channel: Channel,
        direction: Direction,
        messages: u64,
        bytes: u64,
    ) {
        let d = direction as usize;
        self.messages[channel.index()][d].inc_by(messages);
        self.bytes[channel.index()][d].inc_by(bytes);
    }

    pub(crate) fn dropped(&self, channel: Channel, reason: DropReason, count: u64) {
        let labels = DropLabels {
            channel: channel.name(),
            reason: reason.name(),
        };
        self.drops.get_or_create(&labels).inc_by(count);
    }

    pub(crate) fn inbox_waited(&self, channel: Channel, bound: InboxBound) {
        self.inbox_waits
            .get_or_create(&InboxLabels::of(channel, bound))
            .inc();
    }

    /// Times a reader waited for room in `channel`'s inbox because of `bound`.
    pub fn inbox_waits(&self, channel: Channel, bound: InboxBound) -> u64 {
        self.inbox_waits
            .get_or_create(&InboxLabels::of(channel, bound))
            .get()
    }

    /// A rejected stream; `None` when the stream did not even name a valid channel.
    pub(crate) fn rejected(&self, channel: Option<Channel>, reason: DropReason) {
        let channel = channel.map_or("unknown", Channel::name);
        self.drops
            .get_or_create(&DropLabels {
                channel,
                reason: reason.name(),
            })
            .inc();
    }

    pub(crate) fn handshake_failed(&self, failure: &HandshakeFailure) {
        self.handshake_failures
            .get_or_create(&ReasonLabels {
                reason: failure.label(),
            })
            .inc();
    }

    pub(crate) fn duplicate_closed(&self) {
        self.duplicate_connections.inc();
    }

    pub(crate) fn connection_opened(&self) {
        self.connections.inc();
    }

    pub(crate) fn connection_closed(&self) {
        self.connections.dec();
    }

    pub(crate) fn bulk_connection_opened(&self, dialled: bool) {
        self.bulk_connections[usize::from(!dialled)].inc();
    }

    pub(crate) fn bulk_connection_refused(&self) {
        self.bulk_refused.inc();
    }

    pub(crate) fn peer_forgotten(&self) {
        self.peers_forgotten.inc();
    }

    /// Peer records forgotten so far.
    pub fn peers_forgotten(&self) -> u64 {
        self.peers_forgotten.get()
    }

    pub(crate) fn bulk_fallback(&self) {
        self.bulk_fallbacks.inc();
    }

    pub(crate) fn handshake_started(&self) {
        self.handshakes_in_progress.inc();
    }

    pub(crate) fn handshake_ended(&self) {
        self.handshakes_in_progress.dec();
    }

    pub(crate) fn retried_incoming(&self) {
        self.turned_away[0].inc();
    }

    pub(crate) fn refused_incoming(&self) {
        self.turned_away[1].inc();
    }

    pub(crate) fn observe_rtt(&self, rtt: std::time::Duration) {
        self.rtt.observe(rtt.as_secs_f64());
    }

    /// Counts what `conn`'s path statistics added since `since` (its statistics when last
    /// observed) and returns them for the next observation.
    pub(crate) fn observe_path(&self, since: PathStats, conn: &quinn::Connection) -> PathStats {
        let now = conn.stats().path;
        let added = |before: u64, after: u64| after.saturating_sub(before);
        let [lost, congestion, black_holes] = &self.path_events;
        lost.inc_by(added(since.lost_packets, now.lost_packets));
        congestion.inc_by(added(since.congestion_events, now.congestion_events));
        black_holes.inc_by(added(since.black_holes_detected, now.black_holes_detected));
        now
    }

    /// Handshake failures counted so far with `failure`'s reason.
    pub fn handshake_failures(&self, failure: &HandshakeFailure) -> u64 {
        self.handshake_failures
            .get_or_create(&ReasonLabels {
                reason: failure.label(),
            })
            .get()
    }

    /// Messages dropped so far on `channel` for `reason`.
    pub fn drops(&self, channel: Channel, reason: DropReason) -> u64 {
        self.drops
            .get_or_create(&DropLabels {
                channel: channel.name(),
                reason: reason.name(),
            })
            .get()
    }

    /// Messages counted on `channel` in `direction`.
    pub fn messages(&self, channel: Channel, direction: Direction) -> u64 {
        self.messages[channel.index()][direction as usize].get()
    }

    /// Everything counted on `channel` so far, both ways (for the status page).
    pub fn channel_totals(&self, channel: Channel) -> ChannelTotals {
        let ways = [Direction::Sent, Direction::Received];
        let [bytes_sent, bytes_received] =
            ways.map(|d| self.bytes[channel.index()][d as usize].get());
        let [messages_sent, messages_received] = ways.map(|d| self.messages(channel, d));
        ChannelTotals {
            bytes_sent,
            bytes_received,
            messages_sent,
            messages_received,
        }
    }

    pub(crate) fn rpc_event(&self, event: RpcEvent) {
        self.rpc_events[event as usize].inc();
    }

    /// How many times `event` happened so far.
    pub fn rpc_events(&self, event: RpcEvent) -> u64 {
        self.rpc_events[event as usize].get()
    }

    /// Connections closed by the duplicate tie-break.
    pub fn duplicates_closed(&self) -> u64 {
        self.duplicate_connections.get()
    }

    /// Bulk-only connections opened so far: dialled by us (`true`) or accepted (`false`).
    pub fn bulk_connections(&self, dialled: bool) -> u64 {
        self.bulk_connections[usize::from(!dialled)].get()
    }

    /// Bulk-only connections refused because their peer held its quota.
    pub fn bulk_connections_refused(&self) -> u64 {
        self.bulk_refused.get()
    }

    /// Bulk transfers sent on the regular connection for want of a bulk connection.
    pub fn bulk_fallbacks(&self) -> u64 {
        self.bulk_fallbacks.get()
    }

    /// Incoming handshakes in progress now.
    pub fn handshakes_in_progress(&self) -> i64 {
        self.handshakes_in_progress.get()
    }

    /// Incoming handshakes asked to prove their address with a QUIC Retry so far.
    pub fn incoming_retried(&self) -> u64 {
        self.turned_away[0].get()
    }

    /// Incoming handshakes refused at the limit so far.
    pub fn incoming_refused(&self) -> u64 {
        self.turned_away[1].get()
    }

    pub(crate) fn sealed_datagram(&self, direction: Direction) {
        self.sealed_datagrams[direction as usize].inc();
    }

    pub(crate) fn sealed_refused(&self, error: crate::sealed::codec::SealedError) {
        self.sealed_refused
            .get_or_create(&ReasonLabels {
                reason: error.label(),
            })
            .inc();
    }

    pub(crate) fn sealed_event(&self, event: SealedEvent) {
        self.sealed_events[event as usize].inc();
    }

    /// Sealed membership datagrams sent (`Direction::Sent`) or opened (`Received`) so far.
    pub fn sealed_datagrams(&self, direction: Direction) -> u64 {
        self.sealed_datagrams[direction as usize].get()
    }

    /// Packets on the sealed socket refused so far with this reason label (`malformed`,
    /// `unknown_key`, `bad_tag`, `replay`, `oversized`).
    pub fn sealed_refusals(&self, reason: &'static str) -> u64 {
        self.sealed_refused
            .get_or_create(&ReasonLabels { reason })
            .get()
    }

    /// How many times `event` happened so far.
    pub fn sealed_events(&self, event: SealedEvent) -> u64 {
        self.sealed_events[event as usize].get()
    }

    /// Currently open connections.
    pub fn open_connections(&self) -> i64 {
        self.connections.get()
    }

    /// Losses counted so far on our connections' paths (sampled every few seconds and when a
    /// connection ends).
    pub fn path_events(&self) -> PathEvents {
        let [lost, congestion, black_holes] = &self.path_events;
        PathEvents {
            lost_packets: lost.get(),
            congestion_events: congestion.get(),
            mtu_black_holes: black_holes.get(),
        }
    }
}

/// What QUIC's loss detection saw on a node's connections, as counted in its metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PathEvents {
    /// Packets declared lost (MTU probes apart).
    pub lost_packets: u64,
    /// Congestion window reductions.
    pub congestion_events: u64,
    /// Paths that fell back to the minimum datagram size after losing larger ones.
    pub mtu_black_holes: u64,
}

fn per_channel_and_direction(family: &Family<TrafficLabels, Counter>) -> [[Counter; 2]; 6] {
    Channel::ALL.map(|channel| {
        [Direction::Sent, Direction::Received].map(|direction| {
            let labels = TrafficLabels {
                channel: channel.name(),
                direction: direction.name(),
            };
            family.get_or_create(&labels).clone()
        })
    })
}
