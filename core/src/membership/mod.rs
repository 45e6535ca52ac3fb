//! Membership: SWIM (foca) over the membership channel, plus what foca lacks — push-pull
//! exchange of the full membership and metadata, Lifeguard-style local health and dynamic
//! suspicion, and a graceful leave that others see as "left", not "failed".
//!
//! A deterministic machine: every method takes `now` and writes effects to an [`Outbox`];
//! randomness comes from a seeded RNG.

mod checks;
mod closed_port;
pub mod config;
mod declarations;
mod decoded;
pub mod identity;
mod introductions;
mod lifeguard;
pub mod metadata;
mod swim;
mod swim_codec;
mod table_codec;
pub mod view;
pub mod wire;

use std::collections::{BTreeMap, BTreeSet};

use crate::{Channel, NodeAddr, NodeId};
use bytes::Bytes;
use foca::{Foca, Member, NoCustomBroadcast, OwnedNotification, State};
use rand10::rngs::StdRng;
use rand10::{RngExt, SeedableRng};

pub use config::{MembershipConfig, MembershipConfigError};
pub use identity::MemberId;
pub use metadata::{NodeMetadata, SharedMetadata, Versioned};
pub use table_codec::decode_push_pull;
pub use view::{ForceLeaveError, MemberState, MemberView, MembershipEvent, MembershipTimer};
pub use wire::{DeclaredNotice, MembershipMessage, SuspectReport};

use crate::effects::{self, Event, Outbox};
use crate::packed_map::PackedMap;
use crate::time::Instant;
use lifeguard::{LocalHealth, SuspicionPolicy, Suspicions};
use metadata::Tested;
use swim::SwimIo;
use swim_codec::SwimCodec;
use wire::{datagram_kind, tagged, DigestDatagram};

/// Capacity of foca's notification vector kept between calls: a datagram's few notifications.
const NOTES_KEPT: usize = 8;

/// Most members or metadata entries accepted in one push-pull message.
const PUSH_PULL_ENTRIES_MAX: usize = 16_384;
/// Member changes remembered for [`Membership::invariants_since`]; a checker that falls further
/// behind gets the full check.
const CHANGES_KEPT: usize = 256;
/// How late (as a share of `probe_rtt`) a timer may fire before we take it as a sign that this
/// node is stalled or overloaded.
const LATE_TIMER_FRACTION: u32 = 2;
/// Eager gossip ([`Membership::spread_news`]) goes out at most this many times per
/// `gossip_interval`: news arriving closer together shares one round of datagrams.
const EAGER_GOSSIP_PER_INTERVAL: u32 = 10;

type Swim = Foca<MemberId, SwimCodec, StdRng, NoCustomBroadcast>;

/// Counters the node exports as metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MembershipStats {
    /// Membership datagrams that could not be decoded or were refused by foca.
    pub bad_datagrams: u64,
    /// Probes of ours that failed (a suspicion started).
    pub probe_failures: u64,
    /// Independent suspicion reports received.
    pub suspect_reports: u64,
    /// Push-pull exchanges received.
    pub push_pulls: u64,
    /// Push-pull digests received (each costs a full exchange only when views differ).
    pub digests: u64,
    /// Timers that fired late enough to count against our local health.
    pub late_timers: u64,
    /// Suspicion timers dropped because the member refuted the suspicion before they fired.
    pub refuted_suspicion_timers: u64,
    /// Suspects we checked directly because we ranked among a suspicion's checkers.
    pub suspect_checks: u64,
    /// Of those, checks the suspect did not answer in time: each became our confirmation.
    pub suspect_checks_unanswered: u64,
    /// Times we told a member we suspect, again, that it is suspected (once per probe period
    /// while our suspicion runs, until its last call).
    pub suspects_retold: u64,
    /// Members we checked because their host said their membership port was closed.
    pub closed_port_checks: u64,
    /// Of those, members that did not refute in time and were declared failed.
    pub closed_port_declarations: u64,
    /// Declarations of ours told directly to every live member (`declarations`).
    pub declarations_told: u64,
    /// Declarations we learnt from such a notice before SWIM's gossip brought them.
    pub declarations_heard: u64,
    /// Our declarations told a second time, a probe period after the first (`declarations`).
    pub declarations_retold: u64,
    /// Declaration notices that taught us nothing: we held the life down already, the member
    /// had refuted the declared incarnation since, or we did not hold that life.
    pub declarations_stale: u64,
    /// Declaration notices refused: the declarer was not a member we hold alive in the life it
    /// sent from (or was us, or the declared member itself).
    pub declarations_refused: u64,
}

/// One node's membership machine.
pub struct Membership {
    swim: Swim,
    me: MemberId,
    config: MembershipConfig,
    rng: StdRng,
    health: LocalHealth,
    suspicions: Suspicions,
    /// We left on purpose ([`Self::leave`]): from then on we take in nothing and run no timer
    /// but the gossip of our departure (what the runtime still asks of us — new metadata, a
    /// force-leave — is still sent).
    left: bool,
    // One entry per member on every node (O(N²) in a simulation): packed maps keep them dense.
    view: view::View,
    metadata: PackedMap<NodeId, Versioned>,
    /// Where equal metadata values are shared with other machines, if anywhere.
    shared: Option<SharedMetadata>,
    leaving: BTreeSet<MemberId>,
    /// Members whose leave notice we had lately, and when: relayed ahead of our SWIM packets
    /// for [`DEPARTURE_RELAY`], so nobody takes SWIM's bare "down" for a failure first.
    departures: Vec<Departure>,
    /// Members checked because their port was reported closed, until the check ends.
    closed_checks: BTreeSet<MemberId>,
    /// Members removed from the table (reaped or forced out) and the life removed:
    /// replication counts them as departed until it holds none of their writes.
    removed: BTreeMap<NodeId, u64>,
    notes: Vec<OwnedNotification<MemberId>>,
    stats: MembershipStats,
    /// Earliest time for the next push-pull triggered by a newly seen member.
    eager_push_pull_after: Instant,
    /// Earliest time for the next eager gossip, and whether a [`MembershipTimer::Gossip`] is
    /// armed for then.
    eager_gossip_after: Instant,
    gossip_armed: bool,
    /// Members listed alive in `view`, kept so that agreement with SWIM's count costs O(1).
    alive_count: usize,
    /// Whether a [`MembershipTimer::Reconcile`] is armed.
    reconcile_armed: bool,
    /// The last members whose view entry or SWIM state changed, and how many changes there
    /// were in all: the checker's cursor into them.
    changes: std::collections::VecDeque<NodeId>,
    changes_total: u64,
    /// The last [`Membership::digest`] and what it was computed from (the view's and the
    /// metadata's write counts, and our identity): most digests are sent or compared while
    /// neither table changed, and each costs a pass over both.
    digest_cache: Option<((u64, u64, MemberId), u64)>,
    /// Our metadata encoded for one member at a time ([`Membership::own_message`]).
    own_messages: Option<OwnMessages>,
    /// Members learnt without their metadata, to introduce ourselves to unless it comes.
    introductions: introductions::Introductions,
    /// Which of SWIM's periodic timers are live (see [`swim::PeriodicTimers`]).
    periodic: swim::PeriodicTimers,
    /// SWIM's gossip timer, held back while there is nothing to gossip, and when foca would
    /// have had it fire next (see [`Membership::resume_gossip`]).
    parked_gossip: Option<(foca::Timer<MemberId>, Instant)>,
    /// The next alive member after us and what it was found from (the view's write count and
    /// our node): see `touch_successor`.
    successor_cache: Option<((u64, NodeId), Option<crate::NodeAddr>)>,
}

/// Our metadata as the two messages that carry it to one member: a `Metadata` answer and an
/// `Introduce`, for the identity they were encoded for (dropped when our metadata changes). At
/// a mass join a node sends one of them to, or answers one from, nearly every member — the
/// same bytes each time.
struct OwnMessages {
    me: MemberId,
    metadata: Bytes,
    introduce: Bytes,
}

/// How long a leave notice is relayed ahead of our SWIM packets: longer than SWIM takes to
/// spread the departure through the cluster.
const DEPARTURE_RELAY: std::time::Duration = std::time::Duration::from_secs(2);

/// At most this many recent departures are relayed, so a mass leave does not multiply every
/// SWIM packet.
const DEPARTURES_RELAYED: usize = 4;

/// A member whose leave we heard of lately, with its notice ready to relay.
pub(crate) struct Departure {
    member: MemberId,
    since: Instant,
    notice: Bytes,
}

impl Membership {
    /// A machine for `me`, not yet part of any cluster; `seed` drives every random choice.
    pub fn new(
        me: MemberId,
        config: MembershipConfig,
        metadata: NodeMetadata,
        seed: u64,
        now: Instant,
        out: &mut Outbox,
    ) -> Self {
        let swim = Foca::new(
            me,
            swim_config(&config),
            StdRng::seed_from_u64(seed),
            SwimCodec::default(),
        );
        let policy = SuspicionPolicy {
            max: config.suspect_to_down_after,
            min: config.suspect_to_down_min,
            confirmations: config.suspicion_confirmations,
            retell_every: config.probe_period,
        };
        let machine = Self {
            swim,
            me,
            health: LocalHealth::new(config.local_health_max),
            suspicions: Suspicions::new(policy),
            left: false,
            rng: StdRng::seed_from_u64(seed ^ 0x9E37_79B9_7F4A_7C15),
            config,
            view: view::View::default(),
            metadata: PackedMap::from_iter([(
                me.node,
                Versioned {
                    version: metadata::first_version(me.generation),
                    metadata: std::sync::Arc::new(metadata),
                },
            )]),
            shared: None,
            leaving: BTreeSet::new(),
            departures: Vec::new(),
            closed_checks: BTreeSet::new(),
            removed: BTreeMap::new(),
            notes: Vec::new(),
            stats: MembershipStats::default(),
            eager_push_pull_after: Instant::ZERO,
            eager_gossip_after: Instant::ZERO,
            gossip_armed: false,
            alive_count: 0,
            reconcile_armed: false,
            changes: std::collections::VecDeque::new(),
            changes_total: 0,
            digest_cache: None,
            own_messages: None,
            introductions: introductions::Introductions::default(),
            periodic: swim::PeriodicTimers::default(),
            parked_gossip: None,
            successor_cache: None,
        };
        machine.arm(
            now,
            out,
            MembershipTimer::PushPull,
            machine.config.push_pull_interval,
        );
        machine.arm(
            now,
            out,
            MembershipTimer::Prune,
            machine.config.suspect_to_down_after,
        );
        machine
    }

    /// Our current identity.
    pub fn me(&self) -> MemberId {
        self.me
    }

    /// Every member we know of (except ourselves), in node id order.
    pub fn members(&self) -> impl Iterator<Item = MemberView> + '_ {
        self.view.values()
    }

    /// What we know of `node`, if anything (never ourselves).
    pub fn member(&self, node: NodeId) -> Option<MemberView> {
        self.view.get(&node)
    }

    /// Members currently alive.
    pub fn alive(&self) -> impl Iterator<Item = MemberView> + '_ {
        self.view.values().filter(|m| m.state == MemberState::Alive)
    }

    /// How many members are alive, in O(1).
    pub fn alive_count(&self) -> usize {
        self.alive_count
    }

    /// Members SWIM suspects now: listed alive until they are declared failed or refute.
    pub fn suspects(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.swim
            .iter_membership_state()
            .filter(|m| m.state() == State::Suspect)
            .map(|m| m.id().node)
    }

    /// A node's metadata, ours included.
    pub fn metadata_of(&self, node: NodeId) -> Option<&NodeMetadata> {
        self.metadata.get(&node).map(|v| &*v.metadata)
    }

    /// Shares equal metadata values with the other machines that use `shared` (see
    /// [`SharedMetadata`]); ours first.
    pub fn share_metadata(&mut self, shared: SharedMetadata) {
        for (node, v) in self.metadata.iter_mut() {
            v.metadata = shared.intern(*node, v.version, v.metadata.clone());
        }
        self.shared = Some(shared);
    }

    /// Counters for metrics.
    pub fn stats(&self) -> &MembershipStats {
        &self.stats
    }

    /// The local-health multiplier (1 = healthy).
    pub fn local_health(&self) -> u32 {
        self.health.multiplier()
    }

    /// Asks the node at `seed` to let us in, and exchanges full state with it.
    pub fn join(&mut self, now: Instant, seed: NodeAddr, out: &mut Outbox) {
        if seed.id == self.me.node || self.left {
            return;
        }
        let dst = MemberId {
            node: seed.id,
            addr: seed.addr,
            generation: 0,
        };
        self.drive(now, out, |swim, io| swim.announce(dst, io));
        self.send_push_pull(seed, true, out);
    }

    /// Leaves on purpose: tells every live member directly (so they record "left" at once),
    /// then lets SWIM gossip our departure.
    pub fn leave(&mut self, now: Instant, out: &mut Outbox) {
        // Both ways: the stream is reliable, the datagram races SWIM's own gossip of our departure.
        let message = encode(MembershipMessage::Leaving(self.me));
        let datagram =
            postcard::to_stdvec(&self.me).map(|body| tagged(datagram_kind::LEAVING, &body));
        // Every member we know, not only those we believe alive: one we saw leave or fail may
        // already be back with a new generation we have not heard of (a rolling restart), and
        // without this notice it learns our departure from SWIM alone and records a failure.
        for member in self.view.values() {
            send(
                self.me,
                out,
                member.node_addr(),
                Channel::Coordination,
                message.clone(),
            );
            if let Ok(datagram) = &datagram {
                send(
                    self.me,
                    out,
                    member.node_addr(),
                    Channel::Membership,
                    datagram.clone(),
                );
            }
        }
        self.drive(now, out, |swim, io| swim.leave_cluster(io));
        // A node that left stays left for the rest of its run (the runtime's stop grace): any
        // news of our departure — a push-pull's answer, SWIM gossip, a suspicion to refute —
        // would make SWIM renew our identity and rejoin as a new life, which then stops
        // without a word and is recorded as failed.
        self.left = true;
    }

    /// Changes our metadata and tells every live member.
    pub fn set_metadata(&mut self, metadata: NodeMetadata, out: &mut Outbox) {
        let version = self
            .metadata
            .get(&self.me.node)
            .map_or(metadata::first_version(self.me.generation), |v| {
                v.version.saturating_add(1)
            });
        let mut metadata = std::sync::Arc::new(metadata);
        if let Some(shared) = &self.shared {
            metadata = shared.intern(self.me.node, version, metadata);
        }
        let versioned = Versioned { version, metadata };
        self.metadata.insert(self.me.node, versioned);
        self.own_messages = None;
        let Some(message) = self.own_message(false) else {
            return;
        };
        for member in self.view.values().filter(|m| m.state == MemberState::Alive) {
            send(
                self.me,
                out,
                member.node_addr(),
                Channel::Coordination,
                message.clone(),
            );
        }
    }

    /// A membership datagram arrived.
    pub fn handle_datagram(&mut self, now: Instant, payload: &[u8], out: &mut Outbox) {
        if self.left {
            return;
        }
        match payload.split_first() {
            Some((&datagram_kind::SWIM, packet)) => {
                self.drive(now, out, |swim, io| swim.handle_data(packet, io));
            }
            Some((&datagram_kind::SUSPECT_REPORT, body)) => {
                match postcard::from_bytes::<SuspectReport>(body) {
                    Ok(report) => self.handle_suspect_report(now, report, out),
                    Err(_) => self.stats.bad_datagrams += 1,
                }
            }
            Some((&datagram_kind::LEAVING, body)) => match postcard::from_bytes::<MemberId>(body) {
                Ok(member) => self.member_leaving(now, member, out),
                Err(_) => self.stats.bad_datagrams += 1,
            },
            Some((&datagram_kind::DIGEST, body)) => {
                match postcard::from_bytes::<DigestDatagram>(body) {
                    Ok(check) => self.handle_digest(check.from, check.digest, out),
                    Err(_) => self.stats.bad_datagrams += 1,
                }
            }
            Some((&datagram_kind::TOUCH, [])) => {}
            Some((&datagram_kind::DECLARED, body)) => {
                match postcard::from_bytes::<DeclaredNotice>(body) {
                    Ok(notice) => self.handle_declared(now, notice, out),
                    Err(_) => self.stats.bad_datagrams += 1,
                }
            }
            _ => self.stats.bad_datagrams += 1,
        }
    }

    /// A membership message arrived on a stream.
    pub fn handle_message(
        &mut self,
        now: Instant,
        from: NodeId,
        message: MembershipMessage,
        out: &mut Outbox,
    ) {
        if self.left {
            return;
        }
        match message {
            MembershipMessage::PushPull {
                members,
                metadata,
                reply,
            } => self.handle_push_pull(now, from, members, metadata, reply, out),
            MembershipMessage::Metadata { node, metadata } => {
                self.merge_metadata(node, metadata, out)
            }
            MembershipMessage::Leaving(member) if member.node == from => {
                self.member_leaving(now, member, out)
            }
            MembershipMessage::Leaving(_) => self.stats.bad_datagrams += 1,
            MembershipMessage::Introduce { member, metadata } if member.node == from => {
                self.merge_metadata(member.node, metadata, out);
                self.send_own(member.node_addr(), false, out);
            }
            MembershipMessage::Introduce { .. } => self.stats.bad_datagrams += 1,
            MembershipMessage::Digest {
                from: sender,
                digest,
            } if sender.node == from => self.handle_digest(sender, digest, out),
            MembershipMessage::Digest { .. } => self.stats.bad_datagrams += 1,
            MembershipMessage::Forget(member) => {
                let older_or_same = |m: &MemberView| m.generation <= member.generation;
                if self
                    .view
                    .get(&member.node)
                    .as_ref()
                    .is_some_and(older_or_same)
                {
                    self.remove(member.node, out);
                }
            }
        }
        self.metadata.settle();
    }

    /// One of our timers fired; `scheduled` is when it was due.
    pub fn handle_timer(
        &mut self,
        now: Instant,
        scheduled: Instant,
        timer: MembershipTimer,
        out: &mut Outbox,
    ) {
        self.observe_lateness(now, scheduled, &timer);
        if self.left && timer != MembershipTimer::Gossip {
            return;
        }
        match timer {
            MembershipTimer::Swim(timer) if self.refuted(&timer) => {
                self.stats.refuted_suspicion_timers += 1;
            }
            MembershipTimer::Swim(timer) if self.last_call(now, scheduled, &timer, out) => {}
            MembershipTimer::Swim(timer @ foca::Timer::PeriodicAnnounceDown(_))
                if self.periodic.live(&timer) && self.nobody_down() =>
            {
                // All foca would do: re-arm it (see `swim::PeriodicTimers`).
                let timer = MembershipTimer::Swim(timer);
                self.arm(now, out, timer, announce_down_every(&self.config));
            }
            MembershipTimer::Swim(timer @ foca::Timer::PeriodicGossip(_))
                if self.periodic.live(&timer) && self.nothing_to_gossip() =>
            {
                self.parked_gossip = Some((timer, now + gossip_every(&self.config)));
            }
            MembershipTimer::Swim(timer) => match suspect_of(&timer) {
                Some((member, _)) => {
                    self.declaring(now, member, out, |swim, io| swim.handle_timer(timer, io));
                }
                None => {
                    let probe = matches!(timer, foca::Timer::ProbeRandomMember(_));
                    self.drive(now, out, |swim, io| swim.handle_timer(timer, io));
                    if probe {
                        self.touch_successor(out);
                    }
                }
            },
            MembershipTimer::Check(suspect, incarnation) => {
                self.check_expired(now, suspect, incarnation, out);
            }
            MembershipTimer::Retell(suspect, incarnation) => {
                self.retell(now, suspect, incarnation, out);
            }
            MembershipTimer::ClosedPort(member, incarnation) => {
                self.closed_check_expired(now, member, incarnation, out);
            }
            MembershipTimer::RetellDeclared(member, incarnation) => {
                self.retell_declared(member, incarnation, out);
            }
            MembershipTimer::Gossip => {
                self.gossip_armed = false;
                self.gossip(now, out);
            }
            MembershipTimer::Reconcile => {
                self.reconcile_armed = false;
                self.send_digest(out);
            }
            MembershipTimer::Introduce => self.introduce_due(now, out),
            MembershipTimer::PushPull => {
                self.send_digest(out);
                let interval = self
                    .config
                    .push_pull_interval
                    .mul_f64(0.9 + 0.2 * self.rng.random::<f64>());
                self.arm(now, out, MembershipTimer::PushPull, interval);
            }
            MembershipTimer::Prune => {
                self.suspicions.prune(now);
                self.reap(now, out);
                self.arm(
                    now,
                    out,
                    MembershipTimer::Prune,
                    self.config.suspect_to_down_after,
                );
            }
        }
    }

    /// Removes a failed or departed member from the table now, and tells every live member to
    /// do the same (an operator's `force-leave`). Members that miss the message remove it
    /// after `reap_after` anyway.
    pub fn force_leave(
        &mut self,
        node: NodeId,
        out: &mut Outbox,
    ) -> Result<MemberView, ForceLeaveError> {
        if node == self.me.node {
            return Err(ForceLeaveError::Myself(node));
        }
        let view = self.view.get(&node).ok_or(ForceLeaveError::Unknown(node))?;
        if view.state == MemberState::Alive {
            return Err(ForceLeaveError::Alive(node));
        }
        self.tell_forget(view.member_id(), out);
        self.remove(node, out).ok_or(ForceLeaveError::Unknown(node))
    }

    /// Tells every live member to remove `member` (a force-leave's message). Receivers match
    /// on its node and generation only, so a caller that no longer knows its address (the
    /// core, for a member only placement's agreed membership still counts) may leave it
    /// unspecified.
    pub fn tell_forget(&self, member: MemberId, out: &mut Outbox) {
        let forget = encode(MembershipMessage::Forget(member));
        for alive in self.alive() {
            send(
                self.me,
                out,
                alive.node_addr(),
                Channel::Coordination,
                forget.clone(),
            );
        }
    }

    /// Nodes removed from the table (reaped or forced out) whose writes replication may still
    /// hold: it takes them as departed.
    pub fn removed(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.removed.keys().copied()
    }

    /// Forgets removed nodes for which `still_needed` is false (replication holds nothing of
    /// theirs any more), so the record does not grow with every node that ever existed.
    pub fn retain_removed(&mut self, still_needed: impl Fn(NodeId) -> bool) {
        self.removed.retain(|node, _| still_needed(*node));
    }

    /// Removes members failed or departed for `reap_after` or longer.
    fn reap(&mut self, now: Instant, out: &mut Outbox) {
        if self.alive_count == self.view.len() {
            return; // nobody failed or left: no pass over the whole view at every prune
        }
        let after = self.config.reap_after;
        let due: Vec<NodeId> = self
            .view
            .values()
            .filter(|m| m.state != MemberState::Alive && now.saturating_since(m.since) >= after)
            .map(|m| m.id)
            .collect();
        for node in due {
            self.remove(node, out);
        }
    }

    /// Takes a member that is not alive out of the table, and says so.
    fn remove(&mut self, node: NodeId, out: &mut Outbox) -> Option<MemberView> {
        if self.view.state(&node)? == MemberState::Alive {
            return None;
        }
        let view = self.view.remove(&node)?;
        self.changed(node);
        self.removed.insert(node, view.generation);
        out.event(Event::Membership(MembershipEvent::Removed(view.clone())));
        Some(view)
    }

    /// Checks internal consistency; the simulator calls it after every step.
    pub fn invariants(&self) -> Result<(), String> {
        if self.view.contains_key(&self.me.node) {
            return Err("our own node is in the member view".into());
        }
        if let Some(node) = self.removed.keys().find(|n| self.view.contains_key(n)) {
            return Err(format!("{} is both removed and in the view", node.short()));
        }
        // A sorted vector, not a set: this full check follows every step that changed more
        // members than `changes` keeps (a mass join's push-pulls), and a tree of the whole
        // cluster was built, node by node, for each.
        let mut active: Vec<NodeId> = self.swim.iter_members().map(|m| m.id().node).collect();
        active.sort_unstable();
        let mut counted = 0;
        for (node, state) in self.view.states() {
            let alive = state == MemberState::Alive;
            if alive != active.binary_search(&node).is_ok() {
                return Err(self
                    .view
                    .get(&node)
                    .map_or_else(String::new, |m| disagrees(&m)));
            }
            counted += usize::from(alive);
        }
        if counted != self.alive_count {
            return Err(format!(
                "{counted} members alive but {} counted",
                self.alive_count
            ));
        }
        self.counts_agree()
    }

    /// How many member changes there were so far: a cursor for [`Self::invariants_since`].
    pub fn changes(&self) -> u64 {
        self.changes_total
    }

    /// [`Self::invariants`], for a checker that already checked up to change `cursor`: only
    /// members changed since are looked at (the others cannot have diverged: the view changes
    /// only where a change is recorded, and SWIM's liveness changes come with a notification,
    /// which records one), plus the O(1) count of live members on both sides. A cursor older
    /// than the changes kept gets the full check.
    #[inline]
    pub fn invariants_since(&self, cursor: u64) -> Result<(), String> {
        // Nothing changed, as after nearly every step of a formed cluster: the tables were
        // checked as they are (the lookups below are cache misses in every node's tables),
        // and this is inlined where the simulator's checker calls it.
        if cursor == self.changes_total {
            return self.counts_agree();
        }
        self.changed_invariants(cursor)
    }

    /// [`Self::invariants_since`] once something may have changed since `cursor`.
    fn changed_invariants(&self, cursor: u64) -> Result<(), String> {
        let kept_from = self.changes_total - self.changes.len() as u64;
        if cursor < kept_from {
            return self.invariants();
        }
        let skip = usize::try_from(cursor - kept_from).unwrap_or(usize::MAX);
        if skip >= self.changes.len() {
            // A cursor past ours: nothing recorded to look at.
            return self.counts_agree();
        }
        // A sorted vector, not a set: a step changes a handful of members, and building a
        // tree for them cost more than the checks on them.
        let mut changed: Vec<NodeId> = self.changes.range(skip..).copied().collect();
        changed.sort_unstable();
        changed.dedup();
        // Our own node can enter the view only as a recorded change.
        if changed.binary_search(&self.me.node).is_ok() && self.view.contains_key(&self.me.node) {
            return Err("our own node is in the member view".into());
        }
        // One pass over SWIM's members for all changed nodes (foca has no lookup by id). At a
        // join a step changes a fifth of them: a filter of the changed ids' low bytes spares
        // most of the others the search.
        let low_byte = |node: &NodeId| node.as_u128() as u8;
        let mut filter = [0u64; 4];
        for node in &changed {
            let bit = low_byte(node);
            filter[usize::from(bit >> 6)] |= 1 << (bit & 63);
        }
        let mut active = vec![false; changed.len()];
        for member in self.swim.iter_members() {
            let node = &member.id().node;
            let bit = low_byte(node);
            if filter[usize::from(bit >> 6)] & (1 << (bit & 63)) == 0 {
                continue;
            }
            if let Ok(at) = changed.binary_search(node) {
                active[at] = true;
            }
        }
        for (node, active) in changed.iter().zip(active) {
            if self.removed.contains_key(node) && self.view.contains_key(node) {
                return Err(format!("{} is both removed and in the view", node.short()));
            }
            let alive = self.view.state(node).map(|s| s == MemberState::Alive);
            if alive.unwrap_or(false) != active {
                return match self.view.get(node) {
                    Some(member) => Err(disagrees(&member)),
                    None => Err(format!(
                        "SWIM has {} active, the view lacks it",
                        node.short()
                    )),
                };
            }
        }
        self.counts_agree()
    }

    #[inline]
    fn counts_agree(&self) -> Result<(), String> {
        if self.alive_count != self.swim.num_members() {
            return Err(format!(
                "{} members alive in the view but {} in SWIM",
                self.alive_count,
                self.swim.num_members()
            ));
        }
        Ok(())
    }

    /// Notes that `node`'s entry or SWIM state changed, for [`Self::invariants_since`].
    fn changed(&mut self, node: NodeId) {
        if self.changes.len() == CHANGES_KEPT {
            self.changes.pop_front();
        }
        self.changes.push_back(node);
        self.changes_total += 1;
    }

    /// Whether `timer` would declare down a member that has refuted that suspicion since. foca
    /// (2.0) checks the incarnation before marking it down, but still sends it `TurnUndead`
    /// when the check fails — making a healthy node renew its identity for nothing.
    fn refuted(&self, timer: &foca::Timer<MemberId>) -> bool {
        let Some((member, incarnation)) = suspect_of(timer) else {
            return false;
        };
        self.swim_entry(member)
            .is_some_and(|m| m.incarnation() != incarnation)
    }

    /// What SWIM holds about this life of a member (a walk of its list: foca keeps no index).
    fn swim_entry(&self, member: MemberId) -> Option<&Member<MemberId>> {
        self.swim
            .iter_membership_state()
            .find(|m| *m.id() == member)
    }

    /// Before a suspicion becomes a declaration, tells the suspect directly, once, and waits a
    /// probe round trip for its refutation ([`Self::refute`]); true if the declaration waits.
    ///
    /// A suspicion that started during a short partition can outlive it: its gossip was spent on
    /// links that were cut, so nobody tells the suspect, which cannot refute. Declared anyway, a
    /// member that was reachable again (and never cut off from its own side) would be taken for
    /// failed by everyone who hears the news, and would have to renew its identity. A member
    /// that is really gone costs one round trip more to declare. A timer that fires late (see
    /// [`is_late`]) finds us back from a stall through which the suspect's answer could not be
    /// heard: the call is made again, once per suspicion.
    fn last_call(
        &mut self,
        now: Instant,
        scheduled: Instant,
        timer: &foca::Timer<MemberId>,
        out: &mut Outbox,
    ) -> bool {
        let Some((member, incarnation)) = suspect_of(timer) else {
            return false;
        };
        let wait = self.refute_wait();
        if fault_on!(SuspectNeverToldAgain) {
            return false;
        }
        let late = is_late(now, scheduled, self.config.probe_rtt);
        let Some(at) = self
            .suspicions
            .last_call(now, member.node, timer, wait, late)
        else {
            return false;
        };
        self.tell_suspect(member, incarnation, out);
        let timer = effects::Timer::Membership(MembershipTimer::Swim(timer.clone()));
        out.timer(at, timer);
        true
    }

    /// Someone is about to declare us failed ([`Self::last_call`]): refute at once — foca raises
    /// our incarnation and gossips it — and answer the caller directly, since gossip may not
    /// reach it before its deadline.
    fn refute(&mut self, now: Instant, report: &SuspectReport, out: &mut Outbox) {
        let caller = self.view.get(&report.reporter).map(|m| MemberId {
            node: m.id,
            addr: m.addr,
            generation: m.generation,
        });
        let state = if fault_on!(RenewWhenSuspected) {
            State::Down
        } else {
            State::Suspect
        };
        let suspected = Member::new(self.me, report.incarnation, state);
        self.drive(now, out, |swim, mut io| {
            swim.apply_many(std::iter::once(suspected), true, &mut io)?;
            match caller {
                Some(caller) => swim.announce(caller, io),
                None => Ok(()),
            }
        });
    }

    /// Runs one foca call with our adapter, then acts on what it reported.
    fn drive(
        &mut self,
        now: Instant,
        out: &mut Outbox,
        call: impl FnOnce(&mut Swim, SwimIo<'_>) -> Result<(), foca::Error>,
    ) {
        self.departures
            .retain(|d| now.saturating_since(d.since) < DEPARTURE_RELAY);
        let io = SwimIo {
            me: self.me,
            now,
            out,
            notes: &mut self.notes,
            health: &self.health,
            suspicions: &mut self.suspicions,
            departures: &self.departures,
            periodic: &mut self.periodic,
        };
        if call(&mut self.swim, io).is_err() {
            // foca refuses malformed, oversized, stale or self-addressed packets; none of them
            // changed its state (foca's errors say so), so counting is all there is to do.
            self.stats.bad_datagrams += 1;
        }
        // Acks and learnt members bring notifications: the vector is taken and handed back,
        // not freed and grown again each time. A nested drive (from a notification's handling)
        // takes and hands back the empty one meanwhile. One grown by a burst (a
        // push-pull's members coming up) is freed: kept on every node, bursts at N=1000 held
        // 150 MB.
        let mut notes = std::mem::take(&mut self.notes);
        for note in notes.drain(..) {
            self.on_notification(now, note, out);
        }
        if self.notes.is_empty() && notes.capacity() <= NOTES_KEPT {
            self.notes = notes;
        }
        self.view.settle();
        self.resume_gossip(now, out);
    }

    /// Re-arms SWIM's parked gossip timer once there is something to gossip, for the first
    /// instant at or after now on the cadence foca kept it on: gossip leaves when it would
    /// have, but a node with nothing to say is not woken every `gossip_interval` for it (foca
    /// only re-arms then, taking nothing from its random source). Dropped if foca moved on to
    /// another timer, or stopped being connected: it would have dropped this one too.
    fn resume_gossip(&mut self, now: Instant, out: &mut Outbox) {
        let Some((timer, next)) = &self.parked_gossip else {
            return;
        };
        if self.nothing_to_gossip() {
            return;
        }
        let (timer, next) = (timer.clone(), *next);
        self.parked_gossip = None;
        if self.periodic.live(&timer) {
            let interval = gossip_every(&self.config).as_micros().max(1);
            let periods = now.saturating_since(next).as_micros().div_ceil(interval);
            let late = u64::try_from(periods.saturating_mul(interval)).unwrap_or(u64::MAX);
            let at = next + std::time::Duration::from_micros(late);
            out.timer(at, effects::Timer::Membership(MembershipTimer::Swim(timer)));
        }
    }

    fn nothing_to_gossip(&self) -> bool {
        self.swim.updates_backlog() == 0 && self.swim.custom_broadcast_backlog() == 0
    }

    fn on_notification(
        &mut self,
        now: Instant,
        note: OwnedNotification<MemberId>,
        out: &mut Outbox,
    ) {
        if let OwnedNotification::MemberUp(member)
        | OwnedNotification::MemberDown(member)
        | OwnedNotification::Rename(_, member) = &note
        {
            self.changed(member.node);
        }
        let is_live_set_change = matches!(
            note,
            OwnedNotification::MemberUp(_) | OwnedNotification::MemberDown(_)
        );
        match note {
            OwnedNotification::MemberUp(member) => self.member_up(now, member, out),
            OwnedNotification::MemberDown(member) => self.member_down(now, member, out),
            OwnedNotification::Rename(_, new) => self.renamed(now, new, out),
            OwnedNotification::Rejoin(new) => self.rejoined(now, new, out),
            OwnedNotification::Active => out.event(Event::Membership(MembershipEvent::Joined)),
            OwnedNotification::Idle => out.event(Event::Membership(MembershipEvent::Isolated)),
            OwnedNotification::Defunct => {}
            OwnedNotification::DataReceived(header) => {
                if header.dst == self.me
                    && matches!(
                        header.message,
                        foca::Message::Ack(_) | foca::Message::ForwardedAck { .. }
                    )
                {
                    self.health.probe_answered();
                }
            }
            OwnedNotification::DataSent(_) => {}
            OwnedNotification::ProbeFailed(_, member) => self.probe_failed(member, out),
        }
        if is_live_set_change {
            self.spread_news(now, out);
        }
    }

    /// Sends SWIM's pending updates now rather than at its next periodic gossip, after the
    /// live set changed. foca gossips every `gossip_interval` to a few random members, so news
    /// took up to an interval per hop: a member that joined early learnt of one that joined
    /// after it only after several intervals (measured with 10 processes: the slowest node saw
    /// everyone 0.4 s after the seed did). Sent on arrival, each node that learns the news
    /// passes it on within a network round trip. It costs no more update transmissions (foca
    /// sends each update a fixed number of times, sooner now), only smaller datagrams while
    /// news flows, and nothing when nothing changes. At most [`EAGER_GOSSIP_PER_INTERVAL`]
    /// rounds per interval: news within the gap waits for the gap's end, together.
    fn spread_news(&mut self, now: Instant, out: &mut Outbox) {
        if now >= self.eager_gossip_after {
            self.gossip(now, out);
        } else if !self.gossip_armed {
            self.gossip_armed = true;
            let timer = effects::Timer::Membership(MembershipTimer::Gossip);
            out.timer(self.eager_gossip_after, timer);
        }
    }

    /// One round of foca's gossip (to `indirect_probes` random live members), if it has
    /// updates to send.
    fn gossip(&mut self, now: Instant, out: &mut Outbox) {
        if self.swim.updates_backlog() == 0 {
            return;
        }
        self.eager_gossip_after = now + self.config.gossip_interval / EAGER_GOSSIP_PER_INTERVAL;
        self.drive(now, out, |swim, io| swim.gossip(io));
    }

    /// We renewed our identity, having been declared failed: nobody knows the new life yet,
    /// and SWIM gossips it at its own pace. A push-pull hands it, and everything we know, to a
    /// live member and to one we hold failed at once. After a partition heals, the one held
    /// failed is likely across the former cut, where our side is held failed too: it learns
    /// that, renews, and does the same — so renewals and views cross the cut in a chain
    /// instead of a datagram at a time.
    fn rejoined(&mut self, now: Instant, new: MemberId, out: &mut Outbox) {
        self.me = new;
        self.arm_reconcile(now, out);
        let failed: Vec<NodeAddr> = self
            .view
            .values()
            .filter(|m| m.state == MemberState::Failed)
            .map(|m| m.node_addr())
            .collect();
        let across = (!failed.is_empty()).then(|| failed[self.rng.random_range(0..failed.len())]);
        for target in self.random_alive().into_iter().chain(across) {
            self.send_push_pull(target, true, out);
        }
    }

    fn member_up(&mut self, now: Instant, member: MemberId, out: &mut Outbox) {
        self.suspicions.clear(member.node);
        self.leaving.retain(|m| m.node != member.node);
        self.removed.remove(&member.node);
        let mut view = MemberView::new(&member, MemberState::Alive, now);
        view.metadata = self.metadata.get(&member.node).map(|v| v.metadata.clone());
        // Recorded as changed by `on_notification`, its only caller.
        let before = self.view.put(member.node, &view);
        let new_member = before.is_none();
        // A member we held failed or departed that is back — after a partition heals, every
        // node of the other side, each in a renewed life — knows what its side learnt
        // meanwhile, which SWIM's gossip would trickle over at a dozen updates a datagram.
        let returning = before.is_some_and(|state| state != MemberState::Alive);
        // A new member may know others we do not (a joiner met through its seed, while a mass
        // join spreads): the same check finds them in a couple of probe periods rather than
        // at the next periodic push-pull.
        if returning || new_member {
            self.arm_reconcile(now, out);
        }
        if (new_member || returning) && now >= self.eager_push_pull_after {
            // A member new to us means our views differ: exchange them now rather than at the
            // next periodic push-pull — at most once per probe period, so N nodes joining at
            // once cost O(N) full exchanges per period, not one per newly seen member (O(N³)
            // bytes).
            self.eager_push_pull_after = now + self.config.probe_period;
            self.send_push_pull(member.node_addr(), true, out);
        } else if view.metadata.is_none() {
            // Ask for its metadata with ours, unless a push-pull brings it first.
            let due = now + self.config.probe_period;
            if let Some(at) = self.introductions.defer(due, member.node) {
                out.timer(at, effects::Timer::Membership(MembershipTimer::Introduce));
            }
        }
        if before != Some(MemberState::Alive) {
            self.alive_count += 1;
        }
        out.event(Event::Membership(MembershipEvent::Up(view)));
    }

    /// foca kept a newer identity of a member. It says so alone when liveness did not change
    /// (both identities active, or both down) and follows with `MemberUp`/`MemberDown` when
    /// it did, so a rename of a member we hold down only records the new identity: taking it
    /// as "up" would list a crashed node alive that SWIM holds down. A member no longer in
    /// the view (removed) stays out unless SWIM holds it active.
    fn renamed(&mut self, now: Instant, member: MemberId, out: &mut Outbox) {
        match self.view.get(&member.node) {
            Some(mut view) if view.state != MemberState::Alive => {
                view.generation = view.generation.max(member.generation);
                view.addr = member.addr;
                self.view.insert(member.node, view);
                self.changed(member.node);
            }
            Some(_) => self.member_up(now, member, out),
            None if self.swim.iter_members().any(|m| *m.id() == member) => {
                self.member_up(now, member, out)
            }
            None => {}
        }
    }

    fn member_down(&mut self, now: Instant, member: MemberId, out: &mut Outbox) {
        self.suspicions.clear(member.node);
        if fault_on!(ViewKeepsDownMembers) {
            return;
        }
        let Some(mut view) = self.view.get(&member.node) else {
            return;
        };
        if view.generation > member.generation {
            return; // news about a previous life of a node that has since come back
        }
        let left = self.leaving.remove(&member);
        if view.state == MemberState::Alive {
            self.alive_count -= 1;
        }
        view.state = if left {
            MemberState::Left
        } else {
            MemberState::Failed
        };
        view.generation = member.generation;
        view.since = now;
        // Recorded as changed by `on_notification`, its only caller.
        self.view.put(member.node, &view);
        if left {
            self.note_departure(now, member);
        }
        let event = if left {
            MembershipEvent::Left(view)
        } else {
            MembershipEvent::Failed(view)
        };
        out.event(Event::Membership(event));
    }

    /// `member` announced it is leaving. If SWIM's gossip of its departure beat the notice and
    /// we already recorded a failure of that same life, correct it to "left".
    fn member_leaving(&mut self, now: Instant, member: MemberId, out: &mut Outbox) {
        if let Some(mut view) = self.view.get(&member.node) {
            let repeated = view.state == MemberState::Left && view.generation == member.generation;
            assert!(!(repeated && fault_on!(PanicOnRepeatedLeave)), "left twice");
            if repeated {
                return;
            }
            let failed = view.state == MemberState::Failed && view.generation == member.generation;
            if failed && !fault_on!(LeaveNeverCorrectsFailure) {
                view.state = MemberState::Left;
                view.since = now;
                self.view.insert(member.node, view.clone());
                out.event(Event::Membership(MembershipEvent::Left(view)));
                self.changed(member.node);
                self.note_departure(now, member);
                return;
            }
        }
        self.leaving.insert(member);
        self.drive(now, out, |swim, io| {
            swim.apply_many(std::iter::once(Member::down(member)), true, io)
        });
    }

    /// Remembers a leave notice to relay ahead of our SWIM packets. The leaver tells everyone,
    /// but a member that heard it first gossips the departure at once, and that gossip can
    /// reach a third member before the leaver's own notice does: without the relay it would
    /// record a failure until the notice came.
    fn note_departure(&mut self, now: Instant, member: MemberId) {
        if self.departures.iter().any(|d| d.member == member) {
            return;
        }
        let Ok(body) = postcard::to_stdvec(&member) else {
            return;
        };
        if self.departures.len() == DEPARTURES_RELAYED {
            self.departures.remove(0);
        }
        self.departures.push(Departure {
            member,
            since: now,
            notice: tagged(datagram_kind::LEAVING, &body),
        });
    }

    fn probe_failed(&mut self, member: MemberId, out: &mut Outbox) {
        self.stats.probe_failures += 1;
        let Some(incarnation) = self.swim_entry(member).map(Member::incarnation) else {
            return;
        };
        self.report_to_everyone(member, incarnation, out);
    }

    /// Tells every live member (but the suspect) that our probe or check of `member` failed.
    fn report_to_everyone(
        &mut self,
        member: MemberId,
        incarnation: foca::Incarnation,
        out: &mut Outbox,
    ) {
        let Some(payload) = self.suspect_report(member, incarnation) else {
            return;
        };
        self.send_to_alive_but(member.node, &payload, out);
    }

    /// Sends the membership datagram `payload` to every live member but `except`; returns to
    /// how many.
    fn send_to_alive_but(&self, except: NodeId, payload: &Bytes, out: &mut Outbox) -> usize {
        let mut sent = 0;
        for peer in self
            .view
            .values()
            .filter(|m| m.state == MemberState::Alive && m.id != except)
        {
            send(
                self.me,
                out,
                peer.node_addr(),
                Channel::Membership,
                payload.clone(),
            );
            sent += 1;
        }
        sent
    }

    /// "Our probe of `member` at `incarnation` failed", as a datagram.
    fn suspect_report(&self, member: MemberId, incarnation: foca::Incarnation) -> Option<Bytes> {
        let report = SuspectReport {
            reporter: self.me.node,
            member,
            incarnation,
        };
        let body = postcard::to_stdvec(&report).ok()?;
        Some(tagged(datagram_kind::SUSPECT_REPORT, &body))
    }

    fn handle_suspect_report(&mut self, now: Instant, report: SuspectReport, out: &mut Outbox) {
        self.stats.suspect_reports += 1;
        if report.member == self.me && report.reporter != self.me.node {
            return self.refute(now, &report, out);
        }
        if report.reporter == self.me.node || report.member.node == self.me.node {
            return;
        }
        self.learn_refutation(now, &report, out);
        if let Some((at, timer)) =
            self.suspicions
                .confirm(now, &report.member, report.incarnation, report.reporter)
        {
            out.timer(at, effects::Timer::Membership(MembershipTimer::Swim(timer)));
        }
        self.check_if_chosen(now, &report, out);
    }

    /// A report about `report.member` at a higher incarnation than SWIM holds proves the member
    /// refuted a suspicion we never heard of, and is suspected again. Our record of the
    /// suspicion moves to the report's incarnation, so a timer we armed for the older one would
    /// otherwise declare the member with no last call — and a declaration wins over any
    /// incarnation. SWIM learns what the report says (not gossiped: the reporter spreads it),
    /// which voids that timer, and if we ran one, a timer of ours starts for the new
    /// incarnation: a member that crashed after refuting is still declared by us, not only by
    /// the reporter. It runs the full timeout, as after a failed probe of our own: the member
    /// proved itself alive since, and a shorter one would take a brief stall for a crash.
    fn learn_refutation(&mut self, now: Instant, report: &SuspectReport, out: &mut Outbox) {
        let held = self
            .swim_entry(report.member)
            .filter(|m| m.state() != State::Down)
            .map(Member::incarnation);
        if held.is_none_or(|held| held >= report.incarnation) {
            return;
        }
        let carried = self
            .suspicions
            .carried_to(&report.member, report.incarnation);
        let timeout = self.config.suspect_to_down_after;
        let suspected = Member::new(report.member, report.incarnation, State::Suspect);
        self.drive(now, out, |swim, mut io| {
            swim.apply_many(std::iter::once(suspected), false, &mut io)?;
            if let Some(timer) = carried {
                foca::Runtime::submit_after(&mut io, timer, timeout);
            }
            Ok(())
        });
    }

    fn handle_push_pull(
        &mut self,
        now: Instant,
        from: NodeId,
        members: Vec<Member<MemberId>>,
        metadata: Vec<(NodeId, Versioned)>,
        reply: bool,
        out: &mut Outbox,
    ) {
        if members.len() > PUSH_PULL_ENTRIES_MAX || metadata.len() > PUSH_PULL_ENTRIES_MAX {
            self.stats.bad_datagrams += 1;
            return;
        }
        self.stats.push_pulls += 1;
        let sender = members
            .iter()
            .find(|m| m.id().node == from && m.state() != State::Down)
            .map(|m| m.id().node_addr());
        // What the sender holds, to answer with only what it lacks (taken before the merge
        // consumes the lists).
        let theirs = match (reply, sender) {
            (true, Some(sender)) => Some((sender, swim::Held::of(&members, &metadata))),
            _ => None,
        };
        // Metadata first: a member that comes up below then already has its metadata, instead
        // of asking for it with a push-pull of its own — one per new member, which at a mass
        // join is N² full-state exchanges.
        for (node, versioned, tested) in metadata::newer_than_known(&self.metadata, metadata) {
            match tested {
                Tested::Absent => self.take_metadata(node, versioned, true, out),
                Tested::Older => self.take_metadata(node, versioned, false, out),
                Tested::Again => self.merge_metadata(node, versioned, out),
            }
        }
        // What a push-pull teaches us is already known to the sender's side of the cluster:
        // learn it without re-gossiping it. Only entries that change something go to foca,
        // whose every lookup scans its member list: a push-pull between nodes that mostly
        // agree would otherwise cost N² comparisons for nothing.
        let news = swim::news(self.swim.iter_membership_state(), self.me, members);
        // Except the sender's own entry: a joiner's push-pull to its seed races its SWIM
        // announcement, and when it wins, the seed learnt the joiner here, quietly, and the
        // announcement that follows changes nothing, so nobody gossiped the joiner: the
        // others met it only when it probed or gossiped to them itself (measured: up to a
        // second after the seed). The sender's side may not know it either (a renewed life).
        let (own, others): (Vec<_>, Vec<_>) = news.into_iter().partition(|m| m.id().node == from);
        // Each member new to us brings a notification and an event: room for them at once
        // rather than by doubling, which copied a mass join's every note and event again.
        let learnt = own.len() + others.len();
        self.notes.reserve(learnt);
        out.reserve(learnt);
        self.drive(now, out, |swim, mut io| {
            swim.apply_many(own.into_iter(), true, &mut io)?;
            swim.apply_many(others.into_iter(), false, io)
        });
        if let Some((sender, theirs)) = theirs {
            self.send_table(sender, Some(&theirs), false, out);
        }
    }

    fn merge_metadata(&mut self, node: NodeId, incoming: Versioned, out: &mut Outbox) {
        // The version test first: it is cheap and rejects nearly every entry of a push-pull,
        // while the size test encodes the metadata.
        let known = self.metadata.get(&node).map(|known| known.version);
        if known.is_some_and(|version| version >= incoming.version) {
            return;
        }
        self.take_metadata(node, incoming, known.is_none(), out);
    }

    /// Takes up `incoming`, known to be newer than what we hold for `node` (nothing, if
    /// `absent`), unless it is about us or too large.
    fn take_metadata(
        &mut self,
        node: NodeId,
        mut incoming: Versioned,
        absent: bool,
        out: &mut Outbox,
    ) {
        if node == self.me.node {
            return;
        }
        if encoded_len(&incoming) > metadata::METADATA_MAX_BYTES {
            return;
        }
        if let Some(shared) = &self.shared {
            let value = shared.intern(node, incoming.version, incoming.metadata.clone());
            if !std::sync::Arc::ptr_eq(&value, &incoming.metadata) {
                decoded::prefer(&value);
            }
            incoming.metadata = value;
        }
        let metadata = incoming.metadata.clone();
        // Settled by `handle_message`, this one's only way in.
        if absent {
            self.metadata.insert_absent_unsettled(node, incoming);
        } else {
            self.metadata.insert_unsettled(node, incoming);
        }
        if let Some(view) = self.view.set_metadata(&node, metadata) {
            out.event(Event::Membership(MembershipEvent::Updated(view)));
        }
    }

    /// Introduces us, asking for their metadata, to the members whose wait ended with their
    /// metadata still missing and who are still alive.
    fn introduce_due(&mut self, now: Instant, out: &mut Outbox) {
        let (due, next) = self.introductions.due(now);
        if let Some(at) = next {
            out.timer(at, effects::Timer::Membership(MembershipTimer::Introduce));
        }
        // The metadata first: nearly every due member's has come by now (see
        // `introductions`), and the view's entry would be looked up and built for nothing.
        for node in due {
            if self.metadata.contains_key(&node) {
                continue;
            }
            match self.view.get(&node) {
                Some(member) if member.state == MemberState::Alive => {
                    self.send_own(member.node_addr(), true, out)
                }
                _ => {}
            }
        }
    }

    /// Sends `to` our metadata; with `introduce`, introducing us (asking for theirs).
    fn send_own(&mut self, to: NodeAddr, introduce: bool, out: &mut Outbox) {
        if let Some(message) = self.own_message(introduce) {
            send(self.me, out, to, Channel::Coordination, message);
        }
    }

    /// Our metadata as a [`MembershipMessage::Metadata`] message, or with `introduce` as a
    /// [`MembershipMessage::Introduce`]: encoded once per identity and metadata version.
    fn own_message(&mut self, introduce: bool) -> Option<Bytes> {
        // Our entry changes only in `set_metadata`, which drops the messages (sharing the
        // value elsewhere keeps its contents): no lookup of it while they are kept.
        if self
            .own_messages
            .as_ref()
            .is_none_or(|own| own.me != self.me)
        {
            let versioned = self.metadata.get(&self.me.node)?.clone();
            self.own_messages = Some(OwnMessages {
                me: self.me,
                metadata: encode(MembershipMessage::Metadata {
                    node: self.me.node,
                    metadata: versioned.clone(),
                }),
                introduce: encode(MembershipMessage::Introduce {
                    member: self.me,
                    metadata: versioned,
                }),
            });
        }
        let own = self.own_messages.as_ref()?;
        Some(
            if introduce {
                &own.introduce
            } else {
                &own.metadata
            }
            .clone(),
        )
    }

    /// Our whole table to `to`, asking for its own back.
    fn send_push_pull(&mut self, to: NodeAddr, reply: bool, out: &mut Outbox) {
        self.send_table(to, None, reply, out);
    }

    /// Our table, or with `theirs` (what a push-pull we answer says its sender holds) only the
    /// entries that would change something there (our own always): the sender has just told
    /// us everything it knows and we merged it, so the rest would be decoded and dropped at
    /// the other end — at a mass join, where views mostly agree, most of the table.
    fn send_table(
        &mut self,
        to: NodeAddr,
        theirs: Option<&swim::Held>,
        reply: bool,
        out: &mut Outbox,
    ) {
        let own = Member::alive(self.me);
        let members: Vec<&Member<MemberId>> = self
            .swim
            .iter_membership_state()
            .filter(|m| theirs.is_none_or(|theirs| theirs.lacks_member(m)))
            .chain([&own])
            .collect();
        let metadata: Vec<(NodeId, &Versioned)> = self
            .metadata
            .iter()
            .filter(|(node, v)| {
                theirs.is_none_or(|theirs| theirs.lacks_metadata(**node, v.version))
            })
            .map(|(node, v)| (*node, v))
            .collect();
        let payload = table_codec::encode(&members, &metadata, reply);
        send(self.me, out, to, Channel::Replication, payload);
    }

    /// A digest of what a push-pull would tell: every live member (ourselves included) with
    /// its generation and metadata version. Two nodes with the same digest agree on who is
    /// alive, in which life, with which metadata. Order-independent (a sum of per-member
    /// hashes), so nothing is sorted or allocated.
    pub fn digest(&self) -> u64 {
        let entry = |node: NodeId, generation: u64, version: u64| {
            let mut bytes = [0u8; 32];
            bytes[..16].copy_from_slice(&node.as_u128().to_le_bytes());
            bytes[16..24].copy_from_slice(&generation.to_le_bytes());
            bytes[24..].copy_from_slice(&version.to_le_bytes());
            xxhash_rust::xxh3::xxh3_64(&bytes)
        };
        // Both tables are in node id order: one walk of each instead of a lookup per member.
        let mut versions = self.metadata.iter().peekable();
        let mut version_of = |node: NodeId| {
            while versions.next_if(|(n, _)| **n < node).is_some() {}
            versions
                .peek()
                .filter(|(n, _)| **n == node)
                .map_or(0, |(_, v)| v.version)
        };
        let me = self.metadata.get(&self.me.node).map_or(0, |v| v.version);
        self.alive()
            .map(|m| entry(m.id, m.generation, version_of(m.id)))
            .fold(
                entry(self.me.node, self.me.generation, me),
                u64::wrapping_add,
            )
    }

    /// [`Self::digest`], recomputed only when the view, the metadata or our identity changed.
    fn cached_digest(&mut self) -> u64 {
        let key = (self.view.writes(), self.metadata.writes(), self.me);
        match self.digest_cache {
            Some((cached, digest)) if cached == key => digest,
            _ => {
                let digest = self.digest();
                self.digest_cache = Some((key, digest));
                digest
            }
        }
    }

    /// Sends our digest to a random live member, as a datagram: it fits one, and on a stream
    /// it would redial a connection that went idle every interval.
    fn send_digest(&mut self, out: &mut Outbox) {
        if let Some(target) = self.random_alive() {
            let check = DigestDatagram {
                from: self.me,
                digest: self.cached_digest(),
            };
            let Ok(body) = postcard::to_allocvec(&check) else {
                return;
            };
            let datagram = tagged(datagram_kind::DIGEST, &body);
            send(self.me, out, target, Channel::Membership, datagram);
        }
    }

    /// A member's digest: a full push-pull back when ours differs.
    fn handle_digest(&mut self, sender: MemberId, digest: u64, out: &mut Outbox) {
        self.stats.digests += 1;
        if digest != self.cached_digest() {
            self.send_push_pull(sender.node_addr(), true, out);
        }
    }

    /// Arms one digest check a couple of probe periods from now, unless one is armed: after a
    /// heal, a node that missed a renewal (its gossip ran out while the node was renewing
    /// itself) learns it then, not at the next periodic push-pull. Each check that brings a
    /// member back, or a new one, arms the next, so checks stop once views agree.
    fn arm_reconcile(&mut self, now: Instant, out: &mut Outbox) {
        if !self.reconcile_armed {
            self.reconcile_armed = true;
            let after = self.config.probe_period * 2;
            self.arm(now, out, MembershipTimer::Reconcile, after);
        }
    }

    /// Whether SWIM holds no member down, in O(1): its list less its active members.
    fn nobody_down(&self) -> bool {
        self.swim.iter_membership_state().len() == self.swim.num_members()
    }

    fn random_alive(&mut self) -> Option<NodeAddr> {
        // `alive_count` is how many `alive()` yields (the invariants check it): the same draw
        // as over a list of them, without building one on every digest.
        if self.alive_count == 0 {
            return None;
        }
        let chosen = self.rng.random_range(0..self.alive_count);
        let all_alive = self.alive_count == self.view.len();
        self.view
            .nth_alive(chosen, all_alive)
            .map(|m| m.node_addr())
    }

    fn observe_lateness(&mut self, now: Instant, scheduled: Instant, timer: &MembershipTimer) {
        if !matches!(
            timer,
            MembershipTimer::Swim(foca::Timer::ProbeRandomMember(_))
        ) {
            return;
        }
        if is_late(now, scheduled, self.config.probe_rtt) {
            self.stats.late_timers += 1;
            self.health.probe_failed();
        }
    }

    fn arm(
        &self,
        now: Instant,
        out: &mut Outbox,
        timer: MembershipTimer,
        after: std::time::Duration,
    ) {
        out.timer(now + after, effects::Timer::Membership(timer));
    }
}

/// Whether a timer due at `scheduled` fired so long after (`now`) that this node was stalled
/// or starved meanwhile, judged against a probe's round trip.
fn is_late(now: Instant, scheduled: Instant, probe_rtt: std::time::Duration) -> bool {
    now.saturating_since(scheduled) > probe_rtt / LATE_TIMER_FRACTION
}

fn disagrees(member: &MemberView) -> String {
    format!(
        "view says {:?} for {} but SWIM disagrees",
        member.state,
        member.id.short()
    )
}

/// The member and incarnation a suspicion timer would declare down, if it is one.
fn suspect_of(timer: &foca::Timer<MemberId>) -> Option<(MemberId, foca::Incarnation)> {
    match timer {
        foca::Timer::ChangeSuspectToDown {
            member_id,
            incarnation,
            ..
        } => Some((*member_id, *incarnation)),
        _ => None,
    }
}

fn swim_config(config: &MembershipConfig) -> foca::Config {
    use std::num::{NonZeroU8, NonZeroUsize};
    let fanout = NonZeroUsize::new(config.gossip_fanout).unwrap_or(NonZeroUsize::MIN);
    let framing = if fault_on!(PacketSizeWithoutFraming) {
        0
    } else {
        2
    };
    foca::Config {
        probe_period: config.probe_period,
        probe_rtt: config.probe_rtt,
        num_indirect_probes: NonZeroUsize::new(config.indirect_probes).unwrap_or(NonZeroUsize::MIN),
        // Enough retransmissions for an update to reach ~all of 1000 nodes with high probability.
        max_transmissions: NonZeroU8::new(12).unwrap_or(NonZeroU8::MIN),
        suspect_to_down_after: config.suspect_to_down_after,
        remove_down_after: Some(config.remember_down_for),
        // Our datagrams carry one kind byte, and the transport adds one version byte.
        max_packet_size: NonZeroUsize::new(config.max_packet_size - framing)
            .unwrap_or(NonZeroUsize::MIN),
        notify_down_members: true,
        periodic_announce: Some(foca::PeriodicParams {
            frequency: config.push_pull_interval * 3,
            num_members: NonZeroUsize::MIN,
        }),
        // Re-contacting members we declared down is what heals a partition: the first answer
        // across the former cut starts the push-pulls that merge the sides (`rejoined`,
        // `member_up`). One small datagram to one down member per probe period: with every
        // node doing it, the first contact comes a fraction of a period after the heal, not
        // up to a whole suspicion timeout (2 s) later, and a cluster with no down members
        // sends nothing.
        periodic_announce_to_down_members: (!fault_on!(NoAnnounceToDownMembers)).then_some(
            foca::PeriodicParams {
                frequency: announce_down_every(config),
                num_members: NonZeroUsize::MIN,
            },
        ),
        periodic_gossip: Some(foca::PeriodicParams {
            frequency: gossip_every(config),
            num_members: fanout,
        }),
    }
}

/// How often foca announces itself to a down member: set in foca's config, and where the
/// membership re-arms that timer for foca (foca has no getter for its config).
fn announce_down_every(config: &MembershipConfig) -> std::time::Duration {
    config.probe_period
}

/// How often foca gossips: set in foca's config, and where a parked gossip timer resumes.
fn gossip_every(config: &MembershipConfig) -> std::time::Duration {
    config.gossip_interval
}

/// Encodes a membership message for a stream channel, in the core's envelope.
pub fn encode(message: MembershipMessage) -> Bytes {
    crate::envelope::encode(crate::envelope::MEMBERSHIP, &message)
}

/// Counted, not encoded: a push-pull checks the size of every newer entry it takes up.
fn encoded_len(value: &Versioned) -> usize {
    postcard::serialize_with_flavor(value, postcard::ser_flavors::Size::default())
        .unwrap_or(usize::MAX)
}

/// Sends `payload` to `to`, unless `to` is a past life ([`MemberId::is_past_life`]): another
/// node at our own address (ours, after a restart under a new id) or our own node id. Sending
/// would reach ourselves — a dial that fails and counts a handshake failure, or a datagram
/// foca drops as its own — each time, until that life is reaped (foca's announce to down
/// members picks our own down life as any other; the turn is spent, but nothing is sent).
/// foca takes the silence as any other failed probe.
fn send(me: MemberId, out: &mut Outbox, to: NodeAddr, channel: Channel, payload: Bytes) {
    if me.is_past_life(to) {
        return;
    }
    out.send(to, channel, payload);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::effects::Effect;
    use std::time::Duration;

    pub(super) fn member(node: u128, generation: u64) -> MemberId {
        MemberId {
            node: NodeId::from_u128(node),
            addr: std::net::SocketAddr::from(([127, 0, 0, 1], 7000 + node as u16)),
            generation,
        }
    }

    fn machine(config: MembershipConfig, out: &mut Outbox) -> Membership {
        let me = member(1, 1);
        Membership::new(me, config, NodeMetadata::default(), 7, Instant::ZERO, out)
    }

    fn removed_events(out: &mut Outbox) -> Vec<NodeId> {
        let mut removed = Vec::new();
        while let Some(effect) = out.pop() {
            if let Effect::Event(Event::Membership(MembershipEvent::Removed(view))) = effect {
                removed.push(view.id);
            }
        }
        removed
    }

    /// A member failed for `reap_after` is removed at the next prune, said with an event and
    /// kept for replication as removed; the same node coming back is listed again. A rename of
    /// the removed life (foca still holds it down) does not bring it back.
    #[test]
    fn failed_members_are_reaped_and_listed_again_when_they_come_back() {
        let mut out = Outbox::default();
        let config = MembershipConfig {
            reap_after: Duration::from_secs(30),
            ..MembershipConfig::development()
        };
        let mut m = machine(config, &mut out);
        let t0 = Instant::ZERO;
        m.on_notification(t0, OwnedNotification::MemberUp(member(4, 10)), &mut out);
        m.on_notification(t0, OwnedNotification::MemberDown(member(4, 10)), &mut out);
        let prune = |m: &mut Membership, at: Instant, out: &mut Outbox| {
            m.handle_timer(at, at, MembershipTimer::Prune, out)
        };
        prune(&mut m, t0 + Duration::from_secs(29), &mut out);
        assert!(m.member(NodeId::from_u128(4)).is_some(), "not yet");
        let _ = removed_events(&mut out);

        prune(&mut m, t0 + Duration::from_secs(30), &mut out);
        assert_eq!(m.member(NodeId::from_u128(4)), None);
        assert_eq!(removed_events(&mut out), vec![NodeId::from_u128(4)]);
        assert_eq!(m.removed().collect::<Vec<_>>(), vec![NodeId::from_u128(4)]);
        assert_eq!(m.invariants(), Ok(()));

        let renamed = OwnedNotification::Rename(member(4, 10), member(4, 11));
        m.on_notification(t0, renamed, &mut out);
        assert_eq!(
            m.member(NodeId::from_u128(4)),
            None,
            "a rename of a down life"
        );

        m.on_notification(t0, OwnedNotification::MemberUp(member(4, 12)), &mut out);
        let back = m.member(NodeId::from_u128(4)).expect("listed again");
        assert_eq!((back.state, back.generation), (MemberState::Alive, 12));
        assert_eq!(m.removed().count(), 0);
        m.retain_removed(|_| true);
    }

    /// A node never sends to a previous life: another id at its own address (a restart under
    /// a new id; that would dial itself) or its own id elsewhere (an old address); over SWIM or
    /// push-pull; another member is sent to.
    #[test]
    fn nothing_is_sent_to_a_previous_life() {
        let mut out = Outbox::default();
        let mut m = machine(MembershipConfig::development(), &mut out);
        let at_our_address = NodeAddr {
            id: NodeId::from_u128(2),
            addr: m.me().addr,
        };
        let our_id_elsewhere = NodeAddr {
            id: m.me().node,
            addr: member(4, 1).addr,
        };
        let other = member(3, 1).node_addr();
        while out.pop().is_some() {}
        for seed in [at_our_address, our_id_elsewhere, other] {
            m.join(Instant::ZERO, seed, &mut out);
        }
        let mut sent_to = Vec::new();
        while let Some(effect) = out.pop() {
            if let Effect::Send { to, .. } = effect {
                sent_to.push(to);
            }
        }
        assert!(!sent_to.contains(&at_our_address), "{sent_to:?}");
        assert!(!sent_to.contains(&our_id_elsewhere), "{sent_to:?}");
        assert!(sent_to.contains(&other), "{sent_to:?}");
    }

    /// SWIM keeps our previous life (our id, an older generation) as a down member, and its
    /// periodic announce to down members picked it: every such turn sent a datagram to
    /// ourselves, which foca dropped.
    #[test]
    fn our_previous_life_is_never_announced_to() {
        let mut out = Outbox::default();
        let mut m = machine(MembershipConfig::development(), &mut out);
        let previous = MemberId {
            generation: 0,
            ..m.me()
        };
        let peer = member(3, 1);
        let now = Instant::ZERO;
        let table = vec![Member::alive(peer), Member::alive(previous)];
        m.handle_push_pull(now, peer.node, table, Vec::new(), false, &mut out);
        assert!(!m.nobody_down(), "the previous life is held down");
        let mut sent_to = Vec::new();
        let later = now + std::time::Duration::from_secs(10);
        let mut at = now;
        while at < later {
            at = at + std::time::Duration::from_millis(100);
            let mark = out.timers().armed();
            while let Some((due, timer)) = out.timers().pop_due(at, mark) {
                if let effects::Timer::Membership(timer) = timer {
                    m.handle_timer(at, due, timer, &mut out);
                }
            }
            while let Some(effect) = out.pop() {
                if let Effect::Send { to, .. } = effect {
                    sent_to.push(to.id);
                }
            }
        }
        assert!(sent_to.contains(&peer.node), "{sent_to:?}");
        assert!(!sent_to.contains(&m.me().node), "{sent_to:?}");
    }

    /// force-leave removes a failed member at once and tells live members, who remove it too
    /// unless they hold it alive; alive, unknown and our own node are refused.
    #[test]
    fn force_leave_removes_a_failed_member_everywhere_and_refuses_the_rest() {
        let mut out = Outbox::default();
        let mut m = machine(MembershipConfig::development(), &mut out);
        let (now, failed, peer) = (Instant::ZERO, member(4, 10), member(5, 1));
        let peer = MemberId {
            addr: "127.0.0.1:7005".parse().expect("address"),
            ..peer
        };
        for note in [
            OwnedNotification::MemberUp(failed),
            OwnedNotification::MemberUp(peer),
            OwnedNotification::MemberDown(failed),
        ] {
            m.on_notification(now, note, &mut out);
        }
        let _ = removed_events(&mut out);
        let err = |r: Result<MemberView, ForceLeaveError>| r.expect_err("refused");
        assert_eq!(
            err(m.force_leave(peer.node, &mut out)),
            ForceLeaveError::Alive(peer.node)
        );
        let unknown = NodeId::from_u128(9);
        assert_eq!(
            err(m.force_leave(unknown, &mut out)),
            ForceLeaveError::Unknown(unknown)
        );
        let me = m.me().node;
        assert_eq!(
            err(m.force_leave(me, &mut out)),
            ForceLeaveError::Myself(me)
        );

        let gone = m.force_leave(failed.node, &mut out).expect("removed");
        assert_eq!((gone.id, gone.state), (failed.node, MemberState::Failed));
        assert_eq!(m.member(failed.node), None);
        let mut told_peer = false;
        while let Some(effect) = out.pop() {
            if let Effect::Send { to, channel, .. } = effect {
                told_peer |= to.addr == peer.addr && channel == Channel::Coordination;
            }
        }
        assert!(told_peer, "the live member is told");

        // A peer that holds the member failed removes it; one that holds it alive does not.
        let mut other = machine(MembershipConfig::development(), &mut out);
        other.on_notification(now, OwnedNotification::MemberUp(failed), &mut out);
        other.handle_message(now, peer.node, MembershipMessage::Forget(failed), &mut out);
        assert!(other.member(failed.node).is_some(), "alive there: kept");
        other.on_notification(now, OwnedNotification::MemberDown(failed), &mut out);
        other.handle_message(now, peer.node, MembershipMessage::Forget(failed), &mut out);
        assert_eq!(other.member(failed.node), None);
    }

    /// The incremental check catches a view that disagrees with SWIM: on the member that
    /// changed, and by the live counts when the checker is already past the change.
    #[test]
    fn the_incremental_check_catches_a_view_swim_disagrees_with() {
        let mut out = Outbox::default();
        let mut m = machine(MembershipConfig::development(), &mut out);
        let before = m.changes();
        assert_eq!(m.invariants_since(before), Ok(()));
        // SWIM never heard of this member: listing it alive is the bug.
        m.on_notification(
            Instant::ZERO,
            OwnedNotification::MemberUp(member(4, 10)),
            &mut out,
        );
        assert!(m.invariants_since(before).is_err(), "the changed member");
        assert!(m.invariants_since(m.changes()).is_err(), "the live counts");
        assert!(m.invariants().is_err(), "the full check agrees");
    }

    /// Nodes that agree on the live members, their lives and metadata versions have the same
    /// digest whatever order they learnt them in; a renewed life changes it.
    #[test]
    fn digests_match_exactly_when_live_views_do() {
        let mut out = Outbox::default();
        let (mut a, mut b) = (
            machine(MembershipConfig::development(), &mut out),
            machine(MembershipConfig::development(), &mut out),
        );
        let up = |m: &mut Membership, id: MemberId, out: &mut Outbox| {
            m.on_notification(Instant::ZERO, OwnedNotification::MemberUp(id), out)
        };
        up(&mut a, member(4, 10), &mut out);
        up(&mut a, member(5, 3), &mut out);
        up(&mut b, member(5, 3), &mut out);
        assert_ne!(a.digest(), b.digest());
        up(&mut b, member(4, 10), &mut out);
        assert_eq!(a.digest(), b.digest());
        up(&mut b, member(4, 11), &mut out);
        assert_ne!(a.digest(), b.digest(), "a renewed life");
    }

    /// The periodic digest check goes as a membership datagram, which needs no connection; a
    /// member whose digest differs answers with a push-pull on the replication stream.
    #[test]
    fn the_digest_check_is_a_datagram_answered_by_a_push_pull_on_a_difference() {
        let mut out = Outbox::default();
        let mut a = machine(MembershipConfig::development(), &mut out);
        let t = Instant::ZERO;
        a.on_notification(t, OwnedNotification::MemberUp(member(2, 1)), &mut out);
        while out.pop().is_some() {}
        a.handle_timer(t, t, MembershipTimer::PushPull, &mut out);
        let mut digest = None;
        while let Some(effect) = out.pop() {
            if let Effect::Send {
                channel, payload, ..
            } = effect
            {
                assert_ne!(channel, Channel::Coordination, "no stream for the digest");
                if channel == Channel::Membership && payload[0] == datagram_kind::DIGEST {
                    digest = Some(payload);
                }
            }
        }
        let digest = digest.expect("a digest datagram");
        assert!(wire::expects_no_answer(&digest));

        let config = MembershipConfig::development();
        let meta = NodeMetadata::default();
        let mut b = Membership::new(member(2, 1), config, meta, 8, t, &mut out);
        while out.pop().is_some() {}
        b.handle_datagram(t, &digest, &mut out);
        let mut pushed_to = Vec::new();
        while let Some(effect) = out.pop() {
            if let Effect::Send { to, channel, .. } = effect {
                if channel == Channel::Replication {
                    pushed_to.push(to.id);
                }
            }
        }
        assert_eq!(
            pushed_to,
            vec![NodeId::from_u128(1)],
            "b knew less: push-pull"
        );
        assert_eq!(b.stats().digests, 1);
        b.handle_datagram(t, &digest[..digest.len() - 1], &mut out);
        assert_eq!(b.stats().bad_datagrams, 1, "a cut digest is refused");
    }

    #[test]
    fn a_reap_interval_shorter_than_suspicion_is_refused() {
        let config = MembershipConfig {
            reap_after: Duration::from_secs(1),
            ..MembershipConfig::development()
        };
        assert_eq!(config.validate().expect_err("refused").field, "reap_after");
    }

    /// foca renames a member without a liveness change when both identities are down: the
    /// view records the newer identity and keeps the member down (seed 287 of the variables
    /// sweep listed a crashed node alive this way). A rename of a live member stays up.
    #[test]
    fn a_rename_of_a_member_held_down_keeps_it_down() {
        let mut out = Outbox::default();
        let me = member(1, 1);
        let config = MembershipConfig::development();
        let mut m = Membership::new(
            me,
            config,
            NodeMetadata::default(),
            7,
            Instant::ZERO,
            &mut out,
        );
        let now = Instant::ZERO;
        m.on_notification(now, OwnedNotification::MemberUp(member(4, 10)), &mut out);
        m.on_notification(now, OwnedNotification::MemberDown(member(4, 10)), &mut out);
        let renamed = OwnedNotification::Rename(member(4, 10), member(4, 11));
        m.on_notification(now, renamed, &mut out);
        let view = m.member(NodeId::from_u128(4)).expect("known");
        assert_eq!((view.state, view.generation), (MemberState::Failed, 11));

        m.on_notification(now, OwnedNotification::MemberUp(member(5, 1)), &mut out);
        let renamed = OwnedNotification::Rename(member(5, 1), member(5, 2));
        m.on_notification(now, renamed, &mut out);
        let view = m.member(NodeId::from_u128(5)).expect("known");
        assert_eq!((view.state, view.generation), (MemberState::Alive, 2));
    }

    /// A machine that knows members 2, 3 and 4 alive at incarnation 0 through SWIM, with its
    /// effects so far drained.
    pub(super) fn machine_with_three_peers(out: &mut Outbox) -> Membership {
        let mut m = machine(MembershipConfig::development(), out);
        let peers = [2, 3, 4].map(|n| Member::alive(member(n, 1)));
        m.drive(Instant::ZERO, out, |swim, io| {
            swim.apply_many(peers.into_iter(), true, io)
        });
        drain(out);
        m
    }

    /// Sends and timers queued so far (timers up to an hour ahead), then nothing is left.
    pub(super) fn drain(out: &mut Outbox) -> (Vec<(NodeAddr, Channel)>, Vec<MembershipTimer>) {
        let mut sends = Vec::new();
        while let Some(effect) = out.pop() {
            if let Effect::Send { to, channel, .. } = effect {
                sends.push((to, channel));
            }
        }
        let (horizon, mark) = (
            Instant::ZERO + Duration::from_secs(3600),
            out.timers().armed(),
        );
        let mut timers = Vec::new();
        while let Some((_, timer)) = out.timers().pop_due(horizon, mark) {
            if let effects::Timer::Membership(timer) = timer {
                timers.push(timer);
            }
        }
        (sends, timers)
    }

    fn report_datagram(reporter: u128, suspect: MemberId) -> Vec<u8> {
        report_at(reporter, suspect, 0)
    }

    /// `reporter`'s probe of `suspect` at `incarnation` failed, as a datagram.
    pub(super) fn report_at(
        reporter: u128,
        suspect: MemberId,
        incarnation: foca::Incarnation,
    ) -> Vec<u8> {
        let report = SuspectReport {
            reporter: NodeId::from_u128(reporter),
            member: suspect,
            incarnation,
        };
        tagged(
            datagram_kind::SUSPECT_REPORT,
            &postcard::to_stdvec(&report).unwrap(),
        )
        .to_vec()
    }

    /// With three confirmations wanted and three candidates, we are a checker: the first report
    /// makes us ask the suspect directly and look again a probe round trip later; silence then
    /// becomes our own report to every live member but the suspect. Later reports of the same
    /// suspicion start no second check.
    #[test]
    fn a_chosen_checker_asks_the_suspect_and_confirms_its_silence() {
        let mut out = Outbox::default();
        let mut m = machine_with_three_peers(&mut out);
        let (now, suspect) = (Instant::ZERO, member(4, 1));
        m.handle_datagram(now, &report_datagram(2, suspect), &mut out);
        let (sends, timers) = drain(&mut out);
        assert_eq!(sends, vec![(suspect.node_addr(), Channel::Membership)]);
        assert!(
            timers.contains(&MembershipTimer::Check(suspect, 0)),
            "{timers:?}"
        );

        m.handle_datagram(now, &report_datagram(3, suspect), &mut out);
        assert_eq!(m.stats().suspect_checks, 1, "one check per suspicion");
        let _ = drain(&mut out);

        let later = now + m.config.probe_rtt;
        m.handle_timer(later, later, MembershipTimer::Check(suspect, 0), &mut out);
        let (sends, _) = drain(&mut out);
        let told: BTreeSet<NodeId> = sends.iter().map(|(to, _)| to.id).collect();
        let others = BTreeSet::from([2, 3].map(NodeId::from_u128));
        assert_eq!(told, others, "everyone but the suspect");
        assert_eq!(m.stats().suspect_checks_unanswered, 1);
    }

    /// [`machine_with_three_peers`] a second after the held-back gossip round their arrival
    /// armed went out (so the next news is gossiped at once), and that moment.
    fn machine_past_its_first_gossip(out: &mut Outbox) -> (Membership, Instant) {
        let mut m = machine_with_three_peers(out);
        let earlier = Instant::ZERO + Duration::from_secs(1);
        m.handle_timer(earlier, earlier, MembershipTimer::Gossip, out);
        let _ = drain(out);
        (m, earlier + Duration::from_secs(1))
    }

    /// SWIM's gossip timers armed so far, with their instants (other effects are dropped).
    fn gossip_timers(out: &mut Outbox) -> Vec<(Instant, foca::Timer<MemberId>)> {
        swim_timers(out, |timer| matches!(timer, foca::Timer::PeriodicGossip(_)))
    }

    /// SWIM's timers armed so far that `wanted` picks, with their instants (other effects are
    /// dropped).
    fn swim_timers(
        out: &mut Outbox,
        wanted: impl Fn(&foca::Timer<MemberId>) -> bool,
    ) -> Vec<(Instant, foca::Timer<MemberId>)> {
        while out.pop().is_some() {}
        let (horizon, mark) = (
            Instant::ZERO + Duration::from_secs(3600),
            out.timers().armed(),
        );
        let mut timers = Vec::new();
        while let Some((at, timer)) = out.timers().pop_due(horizon, mark) {
            match timer {
                effects::Timer::Membership(MembershipTimer::Swim(timer)) if wanted(&timer) => {
                    timers.push((at, timer))
                }
                _ => {}
            }
        }
        timers
    }

    /// With nothing to gossip, SWIM's gossip timer is not re-armed (the node is not woken
    /// for nothing); news re-arms it for the next instant on its old cadence, where foca
    /// gossips it and goes on re-arming.
    #[test]
    fn the_gossip_timer_waits_for_something_to_gossip() {
        let mut out = Outbox::default();
        let mut m = machine(MembershipConfig::development(), &mut out);
        let peers = [2, 3, 4].map(|n| Member::alive(member(n, 1)));
        m.drive(Instant::ZERO, &mut out, |swim, io| {
            swim.apply_many(peers.into_iter(), false, io)
        });
        let at = |ms| Instant::ZERO + Duration::from_millis(ms);
        let armed = gossip_timers(&mut out);
        let [(first, timer)] = armed.as_slice() else {
            panic!("one gossip timer on joining, not {armed:?}");
        };
        assert_eq!((*first, m.swim.updates_backlog()), (at(200), 0));
        let fire = |m: &mut Membership, ms, out: &mut Outbox| {
            let timer = MembershipTimer::Swim(timer.clone());
            m.handle_timer(at(ms), at(ms), timer, out);
        };
        fire(&mut m, 200, &mut out);
        assert_eq!(gossip_timers(&mut out), vec![], "nothing to gossip");
        learn_alive(&mut m, at(450), 5, &mut out);
        assert_eq!(gossip_timers(&mut out), vec![(at(600), timer.clone())]);
        fire(&mut m, 600, &mut out);
        assert!(m.swim.updates_backlog() > 0, "sent, not yet spent");
        assert_eq!(gossip_timers(&mut out), vec![(at(800), timer.clone())]);
    }

    /// SWIM learns at `now` that `node` (generation 1) is alive.
    fn learn_alive(m: &mut Membership, now: Instant, node: u128, out: &mut Outbox) {
        swim_learns(m, now, Member::alive(member(node, 1)), out);
    }

    /// SWIM takes in `update` at `now`, as gossip would bring it.
    pub(super) fn swim_learns(
        m: &mut Membership,
        now: Instant,
        update: Member<MemberId>,
        out: &mut Outbox,
    ) {
        m.drive(now, out, |swim, io| {
            swim.apply_many(std::iter::once(update), true, io)
        });
    }

    /// Membership datagrams among `sends`.
    fn datagrams(sends: &[(NodeAddr, Channel)]) -> usize {
        sends
            .iter()
            .filter(|(_, c)| *c == Channel::Membership)
            .count()
    }

    /// A member new to us is gossiped at once to three members, not at foca's next periodic
    /// gossip; a second one moments later waits for the end of the rate limit's gap, and
    /// goes out then.
    #[test]
    fn news_of_the_live_set_is_gossiped_at_once_then_at_the_gap_s_end() {
        let mut out = Outbox::default();
        let (mut m, now) = machine_past_its_first_gossip(&mut out);
        learn_alive(&mut m, now, 5, &mut out);
        let (sends, _) = drain(&mut out);
        assert_eq!(datagrams(&sends), 3, "{sends:?}");

        learn_alive(&mut m, now, 6, &mut out);
        let (sends, timers) = drain(&mut out);
        assert_eq!(datagrams(&sends), 0, "{sends:?}");
        assert!(timers.contains(&MembershipTimer::Gossip), "{timers:?}");
        let gap = m.config.gossip_interval / EAGER_GOSSIP_PER_INTERVAL;
        m.handle_timer(now + gap, now + gap, MembershipTimer::Gossip, &mut out);
        let (sends, _) = drain(&mut out);
        assert_eq!(datagrams(&sends), 3, "{sends:?}");
    }

    /// A leave notice heard from the leaver goes ahead of each SWIM packet we send in the
    /// next seconds (the gossip of that departure among them), to everyone but the leaver;
    /// relayed notices are taken like the leaver's own, and after the relay window SWIM
    /// packets travel alone.
    #[test]
    fn a_leave_notice_is_relayed_ahead_of_swim_packets_for_a_while() {
        let mut out = Outbox::default();
        let (mut m, now) = machine_past_its_first_gossip(&mut out);
        let leaver = member(4, 1);
        let notice = tagged(
            datagram_kind::LEAVING,
            &postcard::to_stdvec(&leaver).unwrap(),
        );
        m.handle_datagram(now, &notice, &mut out);
        assert_eq!(
            m.member(leaver.node).map(|v| v.state),
            Some(MemberState::Left)
        );
        let kinds = |out: &mut Outbox| {
            let mut sent = Vec::new();
            while let Some(effect) = out.pop() {
                if let Effect::Send { to, payload, .. } = effect {
                    sent.push((to.id, payload[0]));
                }
            }
            sent
        };
        let sent = kinds(&mut out);
        let swim: Vec<_> = sent
            .iter()
            .filter(|(_, k)| *k == datagram_kind::SWIM)
            .collect();
        assert!(!swim.is_empty(), "the departure is gossiped: {sent:?}");
        for (i, (to, kind)) in sent.iter().enumerate() {
            if *kind == datagram_kind::SWIM {
                assert_ne!(*to, leaver.node);
                let before = i.checked_sub(1).map(|j| sent[j]);
                assert_eq!(before, Some((*to, datagram_kind::LEAVING)), "{sent:?}");
            }
        }
        let late = now + DEPARTURE_RELAY;
        m.handle_timer(late, late, MembershipTimer::Gossip, &mut out);
        learn_alive(&mut m, late, 5, &mut out);
        let sent = kinds(&mut out);
        assert!(
            sent.iter().any(|(_, k)| *k == datagram_kind::SWIM),
            "{sent:?}"
        );
        assert!(
            sent.iter().all(|(_, k)| *k != datagram_kind::LEAVING),
            "{sent:?}"
        );
    }

    /// A push-pull's entry about its sender goes into SWIM's gossip (a joiner whose push-pull
    /// beat its announcement would otherwise never be gossiped); its other entries do not.
    #[test]
    fn a_push_pull_gossips_its_sender_and_only_its_sender() {
        let mut out = Outbox::default();
        let mut m = machine_with_three_peers(&mut out);
        let before = m.swim.updates_backlog();
        let (sender, other) = (member(5, 1), member(6, 1));
        let members = vec![Member::alive(sender), Member::alive(other)];
        let message = MembershipMessage::PushPull {
            members,
            metadata: Vec::new(),
            reply: false,
        };
        m.handle_message(Instant::ZERO, sender.node, message, &mut out);
        assert_eq!(m.alive_count(), 5, "both learnt");
        assert_eq!(m.swim.updates_backlog(), before + 1, "the sender alone");
    }

    /// A member new to us arms one digest check, as a returning one does (whatever the
    /// newcomer knows and we do not is found then), and a second newcomer arms no second.
    #[test]
    fn a_new_member_arms_one_digest_check() {
        let mut out = Outbox::default();
        let (mut m, now) = machine_past_its_first_gossip(&mut out);
        m.handle_timer(now, now, MembershipTimer::Reconcile, &mut out); // the peers' own
        let _ = drain(&mut out);
        learn_alive(&mut m, now, 5, &mut out);
        learn_alive(&mut m, now, 6, &mut out);
        let (_, timers) = drain(&mut out);
        let checks = timers
            .iter()
            .filter(|t| **t == MembershipTimer::Reconcile)
            .count();
        assert_eq!(checks, 1, "{timers:?}");
    }

    /// The membership messages `m` sent on `channel`, decoded, with whom to (the outbox is
    /// emptied).
    fn sent_on(out: &mut Outbox, channel: Channel) -> Vec<(NodeAddr, MembershipMessage)> {
        let mut sent = Vec::new();
        while let Some(effect) = out.pop() {
            if let Effect::Send {
                to,
                channel: on,
                payload,
            } = effect
            {
                if on == channel {
                    let message =
                        postcard::from_bytes(&payload[1..]).expect("a membership message");
                    sent.push((to, message));
                }
            }
        }
        sent
    }

    /// A member learnt without its metadata while our eager push-pull waits out its gap is
    /// introduced to a probe period later, not at once, and only if its metadata did not come
    /// meanwhile.
    #[test]
    fn introductions_wait_a_probe_period_for_the_metadata() {
        let mut out = Outbox::default();
        let (mut m, now) = machine_past_its_first_gossip(&mut out);
        // The peers met at once were queued too: their introductions go out first.
        m.handle_timer(now, now, MembershipTimer::Introduce, &mut out);
        let _ = drain(&mut out);
        learn_alive(&mut m, now, 5, &mut out); // the eager push-pull goes to it
        learn_alive(&mut m, now, 6, &mut out);
        learn_alive(&mut m, now, 7, &mut out);
        let (sends, timers) = drain(&mut out);
        let coordination = |sends: &[(NodeAddr, Channel)]| -> Vec<NodeId> {
            sends
                .iter()
                .filter(|(_, c)| *c == Channel::Coordination)
                .map(|(to, _)| to.id)
                .collect()
        };
        assert_eq!(coordination(&sends), [], "nobody introduced at once");
        assert_eq!(
            timers
                .iter()
                .filter(|t| **t == MembershipTimer::Introduce)
                .count(),
            1,
            "{timers:?}"
        );
        let metadata = Versioned {
            version: 1,
            metadata: std::sync::Arc::new(NodeMetadata::default()),
        };
        let node = member(7, 1).node;
        m.handle_message(
            now,
            node,
            MembershipMessage::Metadata { node, metadata },
            &mut out,
        );
        let _ = drain(&mut out);

        let due = now + m.config.probe_period;
        m.handle_timer(due, due, MembershipTimer::Introduce, &mut out);
        let (sends, _) = drain(&mut out);
        assert_eq!(
            coordination(&sends),
            [member(6, 1).node],
            "7's metadata came"
        );
    }

    /// An `Introduce` is answered with our metadata as it is now: the encoded answer is kept
    /// between answers, and replaced when our metadata changes.
    #[test]
    fn an_introduce_is_answered_with_our_current_metadata() {
        let mut out = Outbox::default();
        let mut m = machine_with_three_peers(&mut out);
        let peer = member(2, 1);
        let answer = |m: &mut Membership, out: &mut Outbox| {
            let metadata = Versioned {
                version: 1,
                metadata: std::sync::Arc::new(NodeMetadata::default()),
            };
            let introduce = MembershipMessage::Introduce {
                member: peer,
                metadata,
            };
            m.handle_message(Instant::ZERO, peer.node, introduce, out);
            let sent = sent_on(out, Channel::Coordination);
            assert!(sent.iter().all(|(to, _)| *to == peer.node_addr()));
            sent.into_iter()
                .map(|(_, message)| message)
                .collect::<Vec<_>>()
        };
        let ours = |version: u64, name: Option<&str>| MembershipMessage::Metadata {
            node: member(1, 1).node,
            metadata: Versioned {
                version,
                metadata: std::sync::Arc::new(NodeMetadata {
                    name: name.map(str::to_owned),
                    ..NodeMetadata::default()
                }),
            },
        };
        let first = metadata::first_version(member(1, 1).generation);
        assert_eq!(answer(&mut m, &mut out), [ours(first, None)]);
        assert_eq!(answer(&mut m, &mut out), [ours(first, None)]);
        let renamed = NodeMetadata {
            name: Some("renamed".into()),
            ..NodeMetadata::default()
        };
        m.set_metadata(renamed, &mut out);
        drain(&mut out);
        assert_eq!(answer(&mut m, &mut out), [ours(first + 1, Some("renamed"))]);
    }

    /// A push-pull is answered with what its sender lacks (and the answerer's own entry), not
    /// with the answerer's whole table.
    #[test]
    fn a_push_pull_is_answered_with_only_what_its_sender_lacks() {
        let mut out = Outbox::default();
        let mut m = machine_with_three_peers(&mut out);
        let (sender, later) = (member(5, 1), Instant::ZERO + Duration::from_secs(5));
        let members = vec![
            Member::alive(sender),
            Member::alive(member(2, 1)),
            Member::alive(member(3, 0)), // an older life of 3
        ];
        let metadata = vec![(m.me.node, m.metadata.get(&m.me.node).cloned().unwrap())];
        let message = MembershipMessage::PushPull {
            members,
            metadata,
            reply: true,
        };
        m.handle_message(later, sender.node, message, &mut out);
        let sent = sent_on(&mut out, Channel::Replication);
        // (the other push-pull is the eager one to 5, a member new to us)
        let is_answer = |message: &MembershipMessage| {
            matches!(message, MembershipMessage::PushPull { reply: false, .. })
        };
        let answers: Vec<_> = sent.iter().filter(|(_, m)| is_answer(m)).collect();
        let [(
            to,
            MembershipMessage::PushPull {
                members,
                metadata,
                reply: false,
            },
        )] = answers.as_slice()
        else {
            panic!("one answer: {sent:?}");
        };
        assert_eq!(to.id, sender.node);
        let ids: BTreeSet<MemberId> = members.iter().map(|m| *m.id()).collect();
        assert_eq!(
            ids,
            BTreeSet::from([member(3, 1), member(4, 1), m.me]),
            "3's newer life, 4, and the answerer"
        );
        assert!(metadata.is_empty(), "the sender holds the only metadata");
    }

    /// A suspect that refuted (its incarnation rose) before the check expired is not reported.
    #[test]
    fn a_check_the_suspect_refuted_confirms_nothing() {
        let mut out = Outbox::default();
        let mut m = machine_with_three_peers(&mut out);
        let (now, suspect) = (Instant::ZERO, member(4, 1));
        m.handle_datagram(now, &report_datagram(2, suspect), &mut out);
        swim_learns(&mut m, now, Member::new(suspect, 1, State::Alive), &mut out);
        let _ = drain(&mut out);
        let later = now + m.config.probe_rtt;
        m.handle_timer(later, later, MembershipTimer::Check(suspect, 0), &mut out);
        let (sends, _) = drain(&mut out);
        assert_eq!(sends, vec![]);
        assert_eq!(m.stats().suspect_checks_unanswered, 0);
    }

    /// Our SWIM suspects member 4 at incarnation 0 when a report says someone suspects it at 1:
    /// it refuted our suspicion and we missed that. The timer our SWIM armed for incarnation 0
    /// declares nothing then (the report had reset our record of the suspicion, so that timer
    /// declared the member with no last call, and a declaration wins over any incarnation); our
    /// suspicion goes on at incarnation 1, with a last call before it declares.
    #[test]
    fn a_report_at_a_higher_incarnation_moves_our_suspicion_to_it() {
        let mut out = Outbox::default();
        let mut m = machine_with_three_peers(&mut out);
        let (now, suspect) = (Instant::ZERO, member(4, 1));
        let (at, timer) = suspected_by_our_probe(&mut m, &mut out, suspect);

        let carried = reported_at_incarnation_one(&mut m, &mut out, now, suspect);
        // Armed for a full timeout, then earlier on the reporter's confirmation.
        let Some((due, live)) = carried.first() else {
            panic!("our suspicion moved to incarnation 1");
        };
        assert!(carried.iter().all(|(_, t)| t == live), "{carried:?}");
        assert!(*due < at, "the report confirms the new suspicion");
        m.handle_timer(at, at, MembershipTimer::Swim(timer), &mut out);
        let _ = drain(&mut out);
        let held = m.swim_entry(suspect).map(|s| (s.incarnation(), s.state()));
        assert_eq!(
            held,
            Some((1, State::Suspect)),
            "the old timer declared nothing"
        );

        calls_before_declaring(&mut m, &mut out, at, live.clone(), suspect);
        let later = at + Duration::from_secs(60);
        m.handle_timer(later, later, MembershipTimer::Swim(live.clone()), &mut out);
        let _ = drain(&mut out);
        assert_eq!(
            m.member(suspect.node).expect("known").state,
            MemberState::Failed
        );
    }

    /// After our suspicion moved to incarnation 1, foca's probe of the member that started at
    /// incarnation 0 fails and foca arms a timer for 0 (it does when the member refuted while
    /// the probe ran). That timer declares nothing, and it no longer displaces the moved one,
    /// which found itself not armed and declared with no last call (review).
    #[test]
    fn a_stale_probe_timer_leaves_the_moved_suspicion_armed() {
        let mut out = Outbox::default();
        let mut m = machine_with_three_peers(&mut out);
        let (now, suspect) = (Instant::ZERO, member(4, 1));
        let (at, stale) = suspected_by_our_probe(&mut m, &mut out, suspect);
        let moved = reported_at_incarnation_one(&mut m, &mut out, now, suspect);
        let (_, live) = moved.first().expect("our suspicion moved to incarnation 1");

        let later = now + Duration::from_millis(100);
        m.drive(later, &mut out, |_, mut io| {
            foca::Runtime::submit_after(&mut io, stale.clone(), Duration::from_secs(4));
            Ok(())
        });
        let _ = drain(&mut out);
        calls_before_declaring(&mut m, &mut out, at, live.clone(), suspect);
    }

    /// A report about an earlier life of a suspect (still held, at a higher incarnation, by a
    /// member that has not heard of the restart) leaves our suspicion of the current life as it
    /// was: it made our timer declare with no last call.
    #[test]
    fn a_report_about_an_earlier_life_leaves_our_suspicion_alone() {
        let mut out = Outbox::default();
        let mut m = machine_with_three_peers(&mut out);
        let (now, suspect) = (Instant::ZERO, member(4, 1));
        let (at, timer) = suspected_by_our_probe(&mut m, &mut out, suspect);

        m.handle_datagram(now, &report_at(2, member(4, 0), 1), &mut out);
        let _ = drain(&mut out);
        calls_before_declaring(&mut m, &mut out, at, timer, suspect);
    }

    /// Member 2 reports `suspect` at incarnation 1: the suspicion timers armed then, for it.
    fn reported_at_incarnation_one(
        m: &mut Membership,
        out: &mut Outbox,
        now: Instant,
        suspect: MemberId,
    ) -> Vec<(Instant, foca::Timer<MemberId>)> {
        m.handle_datagram(now, &report_at(2, suspect, 1), out);
        swim_timers(out, |timer| {
            matches!(
                timer,
                foca::Timer::ChangeSuspectToDown { incarnation: 1, .. }
            )
        })
    }

    /// `timer` fires at `at`: the suspect is told directly (the last call), not declared.
    fn calls_before_declaring(
        m: &mut Membership,
        out: &mut Outbox,
        at: Instant,
        timer: foca::Timer<MemberId>,
        suspect: MemberId,
    ) {
        m.handle_timer(at, at, MembershipTimer::Swim(timer), out);
        let (sends, _) = drain(out);
        assert!(
            sends.contains(&(suspect.node_addr(), Channel::Membership)),
            "{sends:?}"
        );
        assert_eq!(
            m.member(suspect.node).expect("known").state,
            MemberState::Alive
        );
    }

    /// Where a failed probe of `suspect` leaves our SWIM: it holds the member suspect at
    /// incarnation 0 and asks for the timer that declares it (returned, with when it fires).
    pub(super) fn suspected_by_our_probe(
        m: &mut Membership,
        out: &mut Outbox,
        suspect: MemberId,
    ) -> (Instant, foca::Timer<MemberId>) {
        m.drive(Instant::ZERO, out, |swim, mut io| {
            let suspected = Member::new(suspect, 0, State::Suspect);
            swim.apply_many(std::iter::once(suspected), true, &mut io)?;
            let timer = foca::Timer::ChangeSuspectToDown {
                member_id: suspect,
                incarnation: 0,
                token: foca::TimerToken::default(),
            };
            foca::Runtime::submit_after(&mut io, timer, Duration::from_secs(4));
            Ok(())
        });
        let ours = swim_timers(out, |timer| {
            matches!(timer, foca::Timer::ChangeSuspectToDown { .. })
        });
        let [(at, timer)] = ours.as_slice() else {
            panic!("one suspicion timer armed: {ours:?}");
        };
        (*at, timer.clone())
    }

    /// A node that left hears the others' news of its departure — a push-pull's answer that
    /// lists it down, a suspicion — and stays left: before, SWIM renewed its identity and it
    /// rejoined as a new life during the runtime's stop grace, then stopped without a word.
    #[test]
    fn a_node_that_left_stays_left_whatever_it_hears() {
        let mut out = Outbox::default();
        let mut m = machine_with_three_peers(&mut out);
        let me = m.me();
        m.leave(Instant::ZERO, &mut out);
        let _ = drain(&mut out);
        let now = Instant::ZERO + Duration::from_millis(10);
        let answer = MembershipMessage::PushPull {
            members: vec![Member::down(me), Member::alive(member(2, 1))],
            metadata: Vec::new(),
            reply: true,
        };
        m.handle_message(now, NodeId::from_u128(2), answer, &mut out);
        m.handle_datagram(now, &report_at(2, me, 0), &mut out);
        m.join(now, member(3, 1).node_addr(), &mut out);
        let push_pull = MembershipTimer::PushPull;
        m.handle_timer(now, now, push_pull, &mut out);
        assert_eq!(m.me(), me, "no renewal");
        assert_eq!(drain(&mut out).0, vec![], "nothing sent");
    }
}
