//! Placement: which node runs each singleton and each shard, as a deterministic machine.
//!
//! Every node declares the same workloads (a singleton is one instance, a sharded workload
//! `shards` instances). From its membership view each node computes the owner of every instance
//! ([`rendezvous`]: rendezvous hashing over the eligible members, or the oldest one), and claims
//! the instances it should own.
//!
//! **Uniqueness does not rest on views agreeing.** A claimant runs an instance only while it
//! holds a *lease* on it from a quorum of registrars (every member of the agreed membership is
//! one, [`registrar`]): it sends its claims in rounds; a registrar registers an instance for
//! the claimant unless another node holds it, and promises to register nobody else until
//! `lease` after the round arrived. The claimant's lease runs from when it *sent* the round,
//! shortened by a clock-drift margin, so it always ends before the registrars' promises do. Two
//! quorums share a registrar, so two nodes never hold one instance at once, whatever their views.
//!
//! **Split brain.** A side without a quorum gets no grants and stops everything when its
//! lease runs out — before the registrars on the other side release it, so before the other side
//! can start anything. The quorum is [`SplitBrain::KeepMajority`] (a majority of the *agreed*
//! membership: members join it when seen alive and leave it only when they leave gracefully, so
//! no side shrinks its way into a majority; registrars grant only members of their own agreed
//! membership, so a node they do not count cannot win with them), [`SplitBrain::StaticQuorum`],
//! or one member's grant: [`SplitBrain::KeepReferee`] (a named node) and
//! [`SplitBrain::KeepOldest`] (the oldest agreed member; a registrar grants only while it is the
//! oldest it knows of, from a lease after it became so). One registrar holds one claimant per
//! instance, so those are unique too. On a node with storage the agreed membership outlives a
//! restart ([`stored`]): a node restarted alone still counts the members it had agreed to.
//!
//! Singletons and shards are unique; [`Kind::Replicated`] and [`Kind::Local`] workloads run one
//! instance per node without leases (`per_node`). Messages are routed by key to the owner
//! ([`routing`]), and an instance that moves may hand its state over ([`handoff`]).
//!
//! A run-time duplicate detector (`duplicates.rs`) counts what the leases should make
//! impossible: a registrar's answer names the claimed instances that run on its node, and a
//! claimant that runs one too, since before its round, has proof of an overlap
//! ([`PlacementEvent::Duplicate`]).
//!
//! Failover after a crash takes the failure detector's time (views change) or the lease,
//! whichever is longer, plus a round trip: the lease defaults to shorter than detection.
//! A graceful leave or a move hands over in about one round: the old owner stops, its next
//! round releases the instance, and the new owner's next round wins it.
//!
//! Time comes in as arguments; what to send and what to start or stop come out
//! ([`Placement::take_messages`], [`Placement::take_events`]).

mod duplicates;
pub mod handoff;
pub mod members;
mod per_node;
pub mod registrar;
pub mod rendezvous;
pub mod routing;
pub mod stored;
pub mod wire;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::membership::{MemberState, MembershipConfig};
use crate::time::Instant;
use crate::vars::Life;
use crate::NodeId;

pub use handoff::HandoffStats;
pub use registrar::Registrar;
pub use rendezvous::{shard_of, Candidate, Rule};
pub use routing::{RouteAnswer, RouteError, RouteId, RouteStats, ROUTE_PAYLOAD_MAX};
pub use wire::{encode, PlacementMessage, MAX_CLAIMS};

use duplicates::Duplicates;
use handoff::Handoffs;
use members::{Agreed, Members};
use routing::Routing;

/// Largest `handoff_max_bytes`: what a node accepts in one bulk transfer.
pub const HANDOFF_STATE_MAX: usize = crate::replication::FULL_STATE_BYTES_MAX;

/// One placed instance: a singleton (shard 0 of a singleton workload) or one shard.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Instance {
    /// The workload's name.
    pub workload: String,
    /// The shard; 0 for a singleton.
    pub shard: u32,
}

impl Instance {
    /// Shard `shard` of `workload`.
    pub fn new(workload: &str, shard: u32) -> Self {
        Self {
            workload: workload.to_owned(),
            shard,
        }
    }
}

impl fmt::Display for Instance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.workload, self.shard)
    }
}

/// What a workload is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// Exactly one instance cluster-wide.
    Singleton,
    /// `shards` instances, keys mapped onto them by hash.
    Sharded {
        /// How many shards (at least 1; fixed once declared).
        shards: u32,
    },
    /// One instance on every eligible member (by tags).
    Replicated,
    /// One instance on this node, declared here only.
    Local,
}

/// A workload's declaration. Every node that may run it declares it with the same spec.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadSpec {
    /// Singleton or sharded.
    pub kind: Kind,
    /// How owners are chosen.
    pub rule: Rule,
    /// Tags a member must carry (same value) to be eligible; empty: every member.
    pub require: BTreeMap<String, String>,
    /// Eligible members this node must see (itself included) before any instance starts. Set
    /// it to a majority of the expected cluster so nodes that boot apart never each start one.
    pub min_members: usize,
    /// Whether an instance that moves (a join, a graceful leave) hands its state to its next
    /// owner before it stops there ([`handoff`]); otherwise it stops at once and the next
    /// owner starts afresh.
    #[serde(default)]
    pub handoff: bool,
}

impl WorkloadSpec {
    /// One instance, by rendezvous hashing, on any member.
    pub fn singleton() -> Self {
        Self {
            kind: Kind::Singleton,
            rule: Rule::Rendezvous,
            require: BTreeMap::new(),
            min_members: 1,
            handoff: false,
        }
    }

    /// `shards` instances by rendezvous hashing, on any member.
    pub fn sharded(shards: u32) -> Self {
        Self {
            kind: Kind::Sharded { shards },
            ..Self::singleton()
        }
    }

    /// How many instances the workload has.
    pub fn shards(&self) -> u32 {
        match self.kind {
            Kind::Singleton | Kind::Replicated | Kind::Local => 1,
            Kind::Sharded { shards } => shards,
        }
    }
}

/// Which side of a partition may own instances.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SplitBrain {
    /// A majority of the agreed membership (not of who is visible now).
    KeepMajority,
    /// At least this many registrars; safe only if more than half the cluster.
    StaticQuorum(u32),
    /// The side with the oldest member of the agreed membership (lowest generation): a lease
    /// needs that member's grant, and a registrar grants only while it is the oldest it knows
    /// of and has not left (and a lease after it became so, so the previous oldest's grants
    /// have run out). If the oldest crashes, nothing is owned until it comes back (a younger
    /// life: the next oldest then decides) or leaves.
    KeepOldest,
    /// The side with this node: a lease needs its grant. While it is down nothing is owned.
    KeepReferee(NodeId),
}

/// Placement's timing and policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlacementConfig {
    /// How long a registration lasts after its round arrived.
    pub lease: Duration,
    /// How often a claimant sends a round (well under `lease`, so leases never lapse on a
    /// healthy network).
    pub renew: Duration,
    /// Clock-rate error allowed between any two nodes, in parts per million: a claimant's lease
    /// is shortened by this much (and a little more for in-flight timers).
    pub drift_ppm: u32,
    /// Which side may own.
    pub split_brain: SplitBrain,
    /// How long a handoff may take (the application giving the state, the next owner taking
    /// it) before the instance stops without one.
    pub handoff_timeout: Duration,
    /// Largest handed-over state, in bytes (at most [`HANDOFF_STATE_MAX`]).
    pub handoff_max_bytes: usize,
}

impl PlacementConfig {
    /// Timing bounded by the failure detector's: the lease is no longer than the shortest time
    /// SWIM takes to declare a member failed (one probe period plus the shortest suspicion), so
    /// failover after a crash waits for detection, not for the lease.
    pub fn for_membership(membership: &MembershipConfig) -> Self {
        let lease = membership.probe_period + membership.suspect_to_down_min;
        Self {
            lease,
            renew: lease / 4,
            drift_ppm: 100_000,
            split_brain: SplitBrain::KeepMajority,
            handoff_timeout: lease * 2,
            handoff_max_bytes: 16 << 20,
        }
    }

    /// Refuses settings that would let leases lapse on a healthy network or overlap.
    pub fn validate(&self) -> Result<(), PlacementError> {
        let bad = |why: &str| Err(PlacementError::Invalid(why.to_owned()));
        if self.drift_ppm >= 500_000 {
            return bad("drift_ppm must be under 500000 (50 %)");
        }
        if self.renew.is_zero() || self.renew * 2 > self.claimant_lease() {
            return bad("renew must be positive and at most half the drift-shortened lease");
        }
        if matches!(self.split_brain, SplitBrain::StaticQuorum(0)) {
            return bad("a static quorum needs at least 1 member");
        }
        if self.handoff_timeout.is_zero() || self.handoff_max_bytes > HANDOFF_STATE_MAX {
            return bad("handoff_timeout must be positive and handoff_max_bytes at most 256 MiB");
        }
        Ok(())
    }

    /// How long after sending a round its grants let the claimant run: the lease shortened by
    /// the drift margin, so it ends before any registrar's promise does.
    pub fn claimant_lease(&self) -> Duration {
        let micros = self.lease.as_micros() as u64;
        let kept = 1_000_000u64.saturating_sub(u64::from(self.drift_ppm));
        Duration::from_micros(micros / 1_000_000 * kept + micros % 1_000_000 * kept / 1_000_000)
    }
}

/// Why a local placement request was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    /// No workload of that name is declared here.
    #[error("no workload named {0:?} is declared on this node")]
    Unknown(String),
    /// Declared already with another spec; shard counts never change without a migration.
    #[error("workload {0:?} is already declared with another spec (shard counts cannot change without a migration)")]
    Conflict(String),
    /// A name or setting that cannot be used.
    #[error("invalid placement setting: {0}")]
    Invalid(String),
    /// A routed message or a handed-over state over its limit.
    #[error("{size} bytes is over the limit of {max} bytes")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// A state was given for an instance that is not being handed over from here.
    #[error("{0} is not being handed over from this node")]
    NotHandingOff(Instance),
    /// Too many routed messages wait for an outcome; retry later.
    #[error("{0} routed messages already wait for an outcome")]
    Busy(usize),
}

/// Why an instance stopped here.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StopReason {
    /// Another member should own it now (a join, a view change).
    Moved,
    /// The lease ran out: this side has no quorum.
    LostQuorum,
    /// The workload was removed here.
    Removed,
    /// This node is leaving the cluster.
    Leaving,
    /// This node took a new life (it had been declared failed).
    Renewed,
}

/// What placement tells the application: start or stop an instance on this node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlacementEvent {
    /// Run this instance here, from now until told to stop.
    Start {
        /// The instance.
        instance: Instance,
        /// How long it waited here between this node's view naming it the owner and now (the
        /// lease, the previous owner's stop or handoff): the part of its time without an
        /// owner that this node saw. Zero for replicated and local workloads.
        waited: Duration,
    },
    /// Stop this instance now.
    Stop {
        /// The instance.
        instance: Instance,
        /// Why.
        reason: StopReason,
    },
    /// `begin_handoff`: this instance moves to `to`. Stop its work and give its state with
    /// [`Placement::hand_off`]; a `Stop` follows once `to` holds it (or the handoff timed out).
    BeginHandoff {
        /// The instance.
        instance: Instance,
        /// Its next owner.
        to: NodeId,
    },
    /// `end_handoff`: the state the previous owner handed over, just before this instance's
    /// `Start` here (or this node's own, from a handoff our view gave back to us).
    EndHandoff {
        /// The instance.
        instance: Instance,
        /// The previous owner (this node, for a handoff taken back).
        from: NodeId,
        /// Its state.
        state: Bytes,
    },
    /// A message routed by key to this instance, which runs here.
    Deliver {
        /// The instance.
        instance: Instance,
        /// The message's name.
        id: RouteId,
        /// What the origin sent.
        payload: Bytes,
    },
    /// The run-time duplicate detector's evidence (`duplicates.rs`): `with` ran this instance
    /// at an instant when it ran here too, both under valid leases. Should never happen.
    Duplicate {
        /// The instance.
        instance: Instance,
        /// The other node that ran it.
        with: NodeId,
    },
    /// What became of a message this node routed ([`Placement::route`]).
    Routed {
        /// The message.
        id: RouteId,
        /// Delivered, or why not confirmed.
        outcome: Result<(), RouteError>,
    },
}

/// A member as placement sees it: built by the core from its membership view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Who, and its tags.
    pub candidate: Candidate,
    /// Alive, failed or left.
    pub state: MemberState,
    /// Since when, on our clock.
    pub since: Instant,
}

/// Counters for metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PlacementStats {
    /// Rounds sent.
    pub rounds: u64,
    /// Instances started here.
    pub started: u64,
    /// Instances stopped here because the lease ran out.
    pub lost_quorum: u64,
    /// Instances stopped here to move elsewhere (or to leave).
    pub moved: u64,
    /// Messages refused (a claim under another node's name, an unknown round).
    pub refused: u64,
    /// Stops by reason: moved (or handed over), lost quorum, removed, leaving, renewed.
    pub stops_by_reason: [u64; 5],
    /// Time instances waited here between this node's view naming it their owner and their
    /// start (the lease, the previous owner's stop or handoff), in microseconds: the part of
    /// a failover this node saw. Summed over nodes it approaches the time without owner after
    /// detection.
    pub waited_micros: u64,
}

impl PlacementStats {
    /// Counts one instance stopped here.
    fn count_stop(&mut self, reason: StopReason) {
        match reason {
            StopReason::LostQuorum => self.lost_quorum += 1,
            _ => self.moved += 1,
        }
        self.stops_by_reason[reason.index()] += 1;
    }
}

impl StopReason {
    /// Its index in [`PlacementStats::stops_by_reason`].
    pub fn index(self) -> usize {
        match self {
            StopReason::Moved => 0,
            StopReason::LostQuorum => 1,
            StopReason::Removed => 2,
            StopReason::Leaving => 3,
            StopReason::Renewed => 4,
        }
    }

    /// Every reason, in index order.
    pub const ALL: [StopReason; 5] = [
        StopReason::Moved,
        StopReason::LostQuorum,
        StopReason::Removed,
        StopReason::Leaving,
        StopReason::Renewed,
    ];

    /// Its name, as in serde.
    pub fn name(self) -> &'static str {
        match self {
            StopReason::Moved => "moved",
            StopReason::LostQuorum => "lost-quorum",
            StopReason::Removed => "removed",
            StopReason::Leaving => "leaving",
            StopReason::Renewed => "renewed",
        }
    }
}

/// Grants needed, given our agreed membership and the largest one any registrar reported
/// (for the policies that count; the others need one given member's grant).
fn quorum_size(policy: SplitBrain, agreed: usize, reported: usize) -> usize {
    if fault_on!(PlacementQuorumOfOne) {
        return 1;
    }
    match policy {
        SplitBrain::KeepMajority => agreed.max(reported) / 2 + 1,
        SplitBrain::StaticQuorum(n) => n as usize,
        SplitBrain::KeepOldest | SplitBrain::KeepReferee(_) => 1,
    }
}

/// One round a claimant sent, and what came back.
#[derive(Debug)]
struct Round {
    sent: Instant,
    /// Instance → registrars that granted it in this round.
    grants: BTreeMap<Instance, BTreeSet<NodeId>>,
    /// The largest agreed membership a registrar reported.
    members: usize,
}

/// One node's placement machine: claimant and registrar.
#[derive(Debug)]
pub struct Placement {
    me: Life,
    config: PlacementConfig,
    workloads: BTreeMap<String, WorkloadSpec>,
    /// The agreed membership (ourselves included): the registrars a quorum is counted among,
    /// each with the latest generation seen of it (for keep-oldest); and the members alive in
    /// our view, in node id order, with their generation: the other candidates, kept up to
    /// date one member at a time ([`Placement::view_changed`]), not rebuilt per change. One
    /// table for both (see [`members`]): every node holds one entry per member (O(N²) in a
    /// simulation), so an entry is small: tags are in `tagged`, for the members that carry any.
    members: Members,
    /// `agreed` ordered by age, (generation, node): the oldest first, in O(log N). Kept only
    /// under [`SplitBrain::KeepOldest`], the one policy that asks who the oldest is.
    by_age: BTreeSet<(u64, NodeId)>,
    /// Since when we are the oldest agreed member, if we are (keep-oldest grants wait a
    /// lease after it).
    oldest_since: Option<Instant>,
    /// Ourselves, once the core gave us a view: the first candidate.
    own: Option<Candidate>,
    /// The tags of the members alive in our view that carry any.
    tagged: BTreeMap<NodeId, BTreeMap<String, String>>,
    /// What our view says we should own.
    wanted: BTreeSet<Instance>,
    /// Since when each wanted instance that does not run here yet has been wanted.
    wanted_since: BTreeMap<Instance, Instant>,
    /// What the last round claimed.
    claimed: BTreeSet<Instance>,
    /// Running here, with the end of the lease on our clock.
    running: BTreeMap<Instance, Instant>,
    /// Running here, of per-node workloads (replicated, local): no lease.
    per_node: BTreeSet<Instance>,
    /// Leases won for instances not started yet (or renewed ahead), by instance.
    leases: BTreeMap<Instance, Instant>,
    rounds: BTreeMap<u64, Round>,
    next_round: u64,
    round_due: Option<Instant>,
    leaving: bool,
    /// Whether `wanted` must be computed again (the view or the workloads changed).
    dirty: bool,
    /// Whether another member joined or left the agreed membership, or was agreed at another
    /// generation, since [`Placement::take_agreed_changed`] last asked: the stored record
    /// must follow ([`stored`]).
    agreed_changed: bool,
    registrar: Registrar,
    routing: Routing,
    handoffs: Handoffs,
    duplicates: Duplicates,
    out: Vec<(NodeId, Bytes)>,
    /// Messages for the bulk channel (handed-over states).
    bulk_out: Vec<(NodeId, Bytes)>,
    events: Vec<PlacementEvent>,
    stats: PlacementStats,
}

impl Placement {
    /// The machine of life `me`, started at `now`.
    pub fn new(me: Life, config: PlacementConfig, now: Instant) -> Self {
        let registrar = Registrar::new(now, config.lease);
        Self {
            me,
            members: Members::with_agreed(me.node, me.generation),
            by_age: if config.split_brain == SplitBrain::KeepOldest {
                BTreeSet::from([(me.generation, me.node)])
            } else {
                BTreeSet::new()
            },
            oldest_since: None,
            config,
            workloads: BTreeMap::new(),
            own: None,
            tagged: BTreeMap::new(),
            wanted: BTreeSet::new(),
            wanted_since: BTreeMap::new(),
            claimed: BTreeSet::new(),
            running: BTreeMap::new(),
            per_node: BTreeSet::new(),
            leases: BTreeMap::new(),
            rounds: BTreeMap::new(),
            next_round: 1,
            round_due: None,
            leaving: false,
            dirty: true,
            agreed_changed: false,
            registrar,
            routing: Routing::default(),
            handoffs: Handoffs::default(),
            duplicates: Duplicates::default(),
            out: Vec::new(),
            bulk_out: Vec::new(),
            events: Vec::new(),
            stats: PlacementStats::default(),
        }
    }

    /// The settings.
    pub fn config(&self) -> &PlacementConfig {
        &self.config
    }

    /// Declares a workload here. Declaring the same spec again is a no-op.
    pub fn declare(
        &mut self,
        now: Instant,
        name: &str,
        spec: WorkloadSpec,
    ) -> Result<(), PlacementError> {
        if name.is_empty() || name.len() > 256 {
            return Err(PlacementError::Invalid(
                "a workload name has 1 to 256 bytes".into(),
            ));
        }
        if spec.shards() == 0 || spec.shards() > MAX_CLAIMS as u32 {
            return Err(PlacementError::Invalid(format!(
                "a sharded workload has 1 to {MAX_CLAIMS} shards"
            )));
        }
        match self.workloads.get(name) {
            Some(held) if *held == spec => return Ok(()),
            Some(_) => return Err(PlacementError::Conflict(name.to_owned())),
            None => {}
        }
        self.workloads.insert(name.to_owned(), spec);
        self.dirty = true;
        self.decide(now);
        Ok(())
    }

    /// Removes a workload here: its instances stop, and their next round releases them.
    pub fn remove(&mut self, now: Instant, name: &str) -> Result<(), PlacementError> {
        if self.workloads.remove(name).is_none() {
            return Err(PlacementError::Unknown(name.to_owned()));
        }
        let gone: Vec<Instance> = self
            .running
            .keys()
            .filter(|i| i.workload == name)
            .cloned()
            .collect();
        for instance in gone {
            self.stop(&instance, StopReason::Removed);
        }
        self.dirty = true;
        self.decide(now);
        Ok(())
    }

    /// This node is leaving: stop everything and release it at once, so the members that
    /// stay take over in about one round instead of waiting for the lease. Instances of
    /// workloads with `handoff` are handed to their next owners first (the core leaves the
    /// membership once [`Placement::is_handing_off`] is false).
    pub fn leave(&mut self, now: Instant) {
        self.leaving = true;
        self.dirty = true;
        self.decide(now);
    }

    /// Takes up a new membership view: `me` is our own life and tags, `members` everyone else.
    pub fn update_view(&mut self, now: Instant, me: Candidate, members: &[Member]) {
        self.take_own(me);
        self.agree(self.me.node, self.me.generation);
        for m in members {
            self.update_agreed(m);
        }
        self.note_oldest(now);
        self.members.clear_alive();
        self.tagged.clear();
        for m in members.iter().filter(|m| m.state == MemberState::Alive) {
            self.add_other(&m.candidate);
        }
        self.dirty = true;
        self.decide(now);
    }

    /// Takes up the members of our view that changed since the last view we were given, each
    /// as the view holds it now (`None`: no longer in the table). The same state as
    /// [`Placement::update_view`] with the whole view, in O(changes · log N) instead of O(N).
    pub fn view_changed(
        &mut self,
        now: Instant,
        me: Candidate,
        changed: &[(NodeId, Option<Member>)],
    ) {
        self.take_own(me);
        self.agree(self.me.node, self.me.generation);
        for (node, member) in changed {
            match member {
                Some(m) if m.state == MemberState::Alive => self.agree_other(&m.candidate),
                Some(m) => {
                    self.update_agreed(m);
                    self.remove_other(*node);
                }
                None => self.remove_other(*node),
            }
        }
        self.members.settle();
        self.note_oldest(now);
        self.dirty = true;
        self.decide(now);
    }

    /// Our own life and tags: a new life stops what the old one ran before the new one claims.
    fn take_own(&mut self, me: Candidate) {
        if me.generation != self.me.generation || me.id != self.me.node {
            self.stop_all(StopReason::Renewed);
            self.stop_per_node(StopReason::Renewed);
            self.me = Life {
                node: me.id,
                generation: me.generation,
            };
            self.rounds.clear();
            self.claimed.clear();
        }
        self.own = Some(me);
    }

    /// `candidate` is alive in our view, and so in the agreed membership (it may have been
    /// before).
    fn agree_other(&mut self, candidate: &Candidate) {
        let before = self.members.agree_alive(candidate.id, candidate.generation);
        self.aged(candidate.id, candidate.generation, before);
        self.tag(candidate);
    }

    /// `candidate` is alive in our view (it may have been before).
    fn add_other(&mut self, candidate: &Candidate) {
        self.members.set_alive(candidate.id, candidate.generation);
        self.tag(candidate);
    }

    /// `candidate`'s tags, as placement chooses by them.
    fn tag(&mut self, candidate: &Candidate) {
        if candidate.tags.is_empty() {
            self.tagged.remove(&candidate.id);
        } else {
            self.tagged.insert(candidate.id, candidate.tags.clone());
        }
    }

    /// `node` is no longer alive in our view (or never was).
    fn remove_other(&mut self, node: NodeId) {
        self.members.set_not_alive(node);
        self.tagged.remove(&node);
    }

    /// Ourselves, then the members alive in our view in node id order: (node, generation,
    /// tags).
    fn candidates(&self) -> impl Iterator<Item = (NodeId, u64, &BTreeMap<String, String>)> {
        static NO_TAGS: BTreeMap<String, String> = BTreeMap::new();
        let own = self.own.iter().map(|c| (c.id, c.generation, &c.tags));
        let others = self.members.alive().map(|(id, generation)| {
            let tags = self.tagged.get(&id).unwrap_or(&NO_TAGS);
            (id, generation, tags)
        });
        own.chain(others)
    }

    /// The candidates that carry every tag in `require`, in the order of
    /// [`Placement::candidates`].
    fn eligible<'a>(
        &'a self,
        require: &'a BTreeMap<String, String>,
    ) -> impl Iterator<Item = Candidate> + 'a {
        self.candidates()
            .filter(|(_, _, tags)| rendezvous::carries(tags, require))
            .map(|(id, generation, tags)| Candidate {
                id,
                generation,
                tags: tags.clone(),
            })
    }

    /// Members join the agreed membership when seen alive and leave it only when they leave
    /// gracefully. A failed member stays: dropping members on what one side sees is how two
    /// sides of a healed partition each end up with a majority of their own (the simulator's
    /// sweep found it: both sides dropped the other after the heal, while one member saw
    /// everyone alive). A member that never comes back keeps counting against the quorum until
    /// an operator removes it on purpose ([`Placement::forget_member`]), also once membership
    /// has reaped it.
    fn update_agreed(&mut self, m: &Member) {
        match m.state {
            MemberState::Alive => self.agree(m.candidate.id, m.candidate.generation),
            MemberState::Left => self.disagree(m.candidate.id),
            MemberState::Failed => {}
        }
    }

    /// `node` is in the agreed membership, in life `generation`.
    fn agree(&mut self, node: NodeId, generation: u64) {
        let before = self.members.agree(node, generation);
        self.aged(node, generation, before);
    }

    /// `node` was agreed at `before` and is now at `generation`: its place by age, and the
    /// stored record follows. Our own entry is not stored: it changes with every life, and a
    /// node always counts itself.
    fn aged(&mut self, node: NodeId, generation: u64, before: Option<u64>) {
        if before != Some(generation) && node != self.me.node {
            self.agreed_changed = true;
        }
        if self.config.split_brain == SplitBrain::KeepOldest && before != Some(generation) {
            if let Some(before) = before {
                self.by_age.remove(&(before, node));
            }
            self.by_age.insert((generation, node));
        }
    }

    /// `node` is out of the agreed membership.
    fn disagree(&mut self, node: NodeId) {
        if let Some(before) = self.members.disagree(node) {
            self.agreed_changed |= node != self.me.node;
            self.by_age.remove(&(before, node));
        }
    }

    /// Whether we are the oldest agreed member now, and since when.
    fn note_oldest(&mut self, now: Instant) {
        if self.oldest() != Some(self.me.node) {
            self.oldest_since = None;
        } else if self.oldest_since.is_none() {
            self.oldest_since = Some(now);
        }
    }

    /// An operator removed `node`'s life `generation` from the cluster on purpose
    /// (`force-leave`): it no longer counts in the agreed membership. Only for a member known
    /// to be gone for good: one alive on the other side of a partition would let both sides
    /// reach a majority. A later life agreed here stays (the notice is about an earlier one,
    /// and may arrive late).
    pub fn forget_member(&mut self, now: Instant, node: NodeId, generation: u64) {
        let later_life = self.agreed().get(&node).is_some_and(|g| g > generation);
        if node == self.me.node || later_life {
            return;
        }
        self.disagree(node);
        self.note_oldest(now);
        self.dirty = true;
        self.decide(now);
    }

    /// Takes up members agreed before this machine was made: what a previous life of this node
    /// stored ([`stored`]), or the machine this one replaces. Each counts from now on as if it
    /// had been seen alive at that generation; a member agreed here already keeps the
    /// generation seen in this life (newer), and our own entry stays this life's. Not a change
    /// to store: it is what is stored.
    pub fn seed_agreed(&mut self, now: Instant, members: &[(NodeId, u64)]) {
        let changed = self.agreed_changed;
        for &(node, generation) in members {
            if node != self.me.node && !self.members.agreed().contains_key(&node) {
                self.agree(node, generation);
            }
        }
        self.agreed_changed = changed;
        self.note_oldest(now);
        self.dirty = true;
    }

    /// Whether the agreed membership changed (a member of it other than us) since the last
    /// call: the core then hands storage the new record ([`stored::encode`]).
    pub fn take_agreed_changed(&mut self) -> bool {
        std::mem::take(&mut self.agreed_changed)
    }

    /// The oldest member of the agreed membership: lowest generation, then node id.
    fn oldest(&self) -> Option<NodeId> {
        // Every agreed node is in `by_age` under keep-oldest (they enter and leave together);
        // under the other policies nobody asks.
        self.by_age.first().map(|(_, id)| *id)
    }

    /// Whether our registrar may grant now: under keep-oldest only while we are the oldest
    /// and a member, from a lease after we became the oldest.
    fn may_grant(&self, now: Instant) -> bool {
        match self.config.split_brain {
            // Once we left (the membership hears of it when our handoffs are done), the next
            // oldest decides a lease after it heard, and a member that has not heard yet
            // would still take our grant alone for a lease: so we grant nothing any more.
            SplitBrain::KeepOldest => {
                let left = self.leaving && !self.is_handing_off();
                !left
                    && self
                        .oldest_since
                        .is_some_and(|since| now >= since + self.config.lease)
            }
            _ => true,
        }
    }

    /// The one member whose grant a lease needs, for the policies that name one.
    fn referee(&self) -> Option<NodeId> {
        match self.config.split_brain {
            SplitBrain::KeepOldest => self.oldest(),
            SplitBrain::KeepReferee(node) => Some(node),
            SplitBrain::KeepMajority | SplitBrain::StaticQuorum(_) => None,
        }
    }

    /// Fires what is due at `now`: lease ends and the next round.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.decide(now);
    }

    /// When [`Placement::handle_timeout`] next has something to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let lease_end = self.running.values().min().copied();
        [
            self.round_due,
            lease_end,
            self.routing.poll_timeout(),
            self.handoffs.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Takes a message from `from` (as authenticated by the transport).
    pub fn received(&mut self, now: Instant, from: NodeId, message: PlacementMessage) {
        match message {
            PlacementMessage::Claim {
                life,
                round,
                claims,
            } => {
                if life.node != from || claims.len() > MAX_CLAIMS {
                    self.stats.refused += 1;
                    return;
                }
                let claims: BTreeSet<Instance> =
                    if self.members.agreed().contains_key(&from) && self.may_grant(now) {
                        claims.into_iter().collect()
                    } else {
                        // Not (yet) a member we count: its claims take nothing, and what it held
                        // is released.
                        BTreeSet::new()
                    };
                self.registrar.expire(now);
                let running = self.leased_among(now, &claims);
                if let Some(granted) = self.registrar.claim(now, life, round, &claims) {
                    let members = u32::try_from(self.members.agreed().len()).unwrap_or(u32::MAX);
                    let reply = PlacementMessage::Granted {
                        round,
                        granted,
                        members,
                        generation: life.generation,
                        running,
                    };
                    self.out.push((from, encode(&reply)));
                }
            }
            PlacementMessage::Granted {
                round,
                granted,
                members,
                generation,
                running,
            } => {
                // A reply to a round of an earlier life of ours: a restarted process numbers
                // its rounds from 1 again, and that life's grants promise this one nothing.
                if generation != self.me.generation {
                    self.stats.refused += 1;
                    return;
                }
                self.check_duplicates(now, from, round, running);
                let members = usize::try_from(members).unwrap_or(usize::MAX);
                self.granted(now, from, round, granted, members);
                self.decide(now);
            }
            PlacementMessage::Route {
                id,
                instance,
                payload,
                ttl_us,
            } => {
                if id.origin.node != from || payload.len() > ROUTE_PAYLOAD_MAX {
                    self.stats.refused += 1;
                    return;
                }
                let until = now + Duration::from_micros(ttl_us.min(3_600_000_000));
                self.take_routed(now, id, from, instance, payload, until);
            }
            PlacementMessage::RouteAnswer { id, answer } => {
                self.route_answered(now, from, id, answer);
            }
            PlacementMessage::HandoffState {
                instance,
                life,
                state,
            } => self.state_received(now, from, instance, life, state),
            PlacementMessage::HandoffTaken { instance } => {
                self.handoff_taken(now, from, &instance);
            }
        }
    }

    /// Records registrar `from`'s grants for our round `round`; leases follow in `decide`.
    fn granted(
        &mut self,
        now: Instant,
        from: NodeId,
        round: u64,
        granted: Vec<Instance>,
        members: usize,
    ) {
        let referee = self.referee();
        let Some(r) = self.rounds.get_mut(&round) else {
            self.stats.refused += 1;
            return;
        };
        // Cap what a registrar may claim to count: no larger than any sane cluster's size.
        r.members = r.members.max(members.min(1 << 20));
        for instance in granted {
            if self.claimed.contains(&instance) {
                r.grants.entry(instance).or_default().insert(from);
            }
        }
        let until = r.sent + self.config.claimant_lease();
        if until <= now {
            return;
        }
        let quorum = quorum_size(
            self.config.split_brain,
            self.members.agreed().len(),
            r.members,
        );
        for (instance, set) in &r.grants {
            let counted = match self.config.split_brain {
                SplitBrain::KeepMajority => set
                    .iter()
                    .filter(|n| self.members.agreed().contains_key(n))
                    .count(),
                SplitBrain::StaticQuorum(_) => set.len(),
                SplitBrain::KeepOldest | SplitBrain::KeepReferee(_) => {
                    usize::from(referee.is_some_and(|r| set.contains(&r)))
                }
            };
            if counted >= quorum {
                let lease = self.leases.entry(instance.clone()).or_insert(until);
                *lease = (*lease).max(until);
            }
        }
    }

    /// Brings what runs here in line with the view and the leases, and sends a round if one
    /// is due or what we want changed.
    fn decide(&mut self, now: Instant) {
        self.registrar.expire(now);
        if std::mem::take(&mut self.dirty) {
            self.wanted = self.compute_wanted();
            self.decide_per_node();
            self.retarget_handoffs();
            let (wanted, running) = (&self.wanted, &self.running);
            self.wanted_since
                .retain(|i, _| wanted.contains(i) && !running.contains_key(i));
            for instance in self
                .wanted
                .difference(&self.running.keys().cloned().collect())
            {
                self.wanted_since.entry(instance.clone()).or_insert(now);
            }
        }
        let handing_off = &self.handoffs;
        self.leases.retain(|instance, until| {
            *until > now && (self.wanted.contains(instance) || handing_off.is_handing_off(instance))
        });
        let expired: Vec<Instance> = self
            .running
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(i, _)| i.clone())
            .collect();
        for instance in expired {
            self.stop(&instance, StopReason::LostQuorum);
        }
        self.take_back_handoffs(now);
        self.expire_handoffs(now);
        let moved: Vec<Instance> = self
            .running
            .keys()
            .filter(|i| !self.wanted.contains(*i) && !self.handoffs.is_handing_off(i))
            .cloned()
            .collect();
        for instance in moved {
            self.move_away(now, instance);
        }
        self.start_leased(now);
        self.advance_routes(now);
        let claims = self.claims();
        let due = self.round_due.is_some_and(|at| at <= now);
        if claims != self.claimed || (due && !claims.is_empty()) {
            self.send_round(now);
        } else if claims.is_empty() {
            self.round_due = None;
        }
        let horizon = self.config.lease;
        self.rounds
            .retain(|_, r| now.saturating_since(r.sent) < horizon);
    }

    /// An instance running here that should run elsewhere: handed over if its workload asks
    /// for it and another member may own it, else stopped now.
    fn move_away(&mut self, now: Instant, instance: Instance) {
        let reason = if self.leaving {
            StopReason::Leaving
        } else {
            StopReason::Moved
        };
        let handoff = self
            .workloads
            .get(&instance.workload)
            .is_some_and(|spec| spec.handoff);
        match self.successor(&instance).filter(|_| handoff) {
            Some(to) => self.begin_handoff(now, instance, to, reason),
            None => self.stop(&instance, reason),
        }
    }

    /// Who should own `instance` if not us: the owner among the other eligible members.
    fn successor(&self, instance: &Instance) -> Option<NodeId> {
        let spec = self.workloads.get(&instance.workload)?;
        let others: Vec<Candidate> = self
            .eligible(&spec.require)
            .filter(|c| c.id != self.me.node)
            .collect();
        rendezvous::owner(spec.rule, &instance.workload, instance.shard, &others)
    }

    /// What our rounds claim: what we want, and what we are handing over (still ours until
    /// the next owner holds its state).
    fn claims(&self) -> BTreeSet<Instance> {
        let mut claims = self.wanted.clone();
        claims.extend(self.handoffs.handing_off().cloned());
        claims
    }

    /// Starts each wanted instance we hold a lease on, and extends the running ones' leases.
    fn start_leased(&mut self, now: Instant) {
        let leases: Vec<(Instance, Instant)> =
            self.leases.iter().map(|(i, u)| (i.clone(), *u)).collect();
        for (instance, until) in leases {
            match self.running.get_mut(&instance) {
                Some(end) => *end = (*end).max(until),
                None if until > now => {
                    self.running.insert(instance.clone(), until);
                    self.duplicates.started(&instance, self.next_round);
                    self.stats.started += 1;
                    let waited = self
                        .wanted_since
                        .remove(&instance)
                        .map_or(Duration::ZERO, |since| now.saturating_since(since));
                    let micros = u64::try_from(waited.as_micros()).unwrap_or(u64::MAX);
                    self.stats.waited_micros += micros;
                    self.resume_handed_over(&instance);
                    self.events.push(PlacementEvent::Start { instance, waited });
                }
                None => {}
            }
        }
    }

    /// What our view says we should own: each instance whose owner among the eligible members
    /// is us, for workloads with enough eligible members (at most [`MAX_CLAIMS`], so one round
    /// claims all of them).
    fn compute_wanted(&self) -> BTreeSet<Instance> {
        let mut wanted = BTreeSet::new();
        if self.leaving {
            return wanted;
        }
        for (name, spec) in self.workloads.iter().filter(|(_, s)| !s.per_node()) {
            let eligible: Vec<Candidate> = self.eligible(&spec.require).collect();
            if eligible.len() < spec.min_members.max(1) {
                continue;
            }
            for shard in 0..spec.shards() {
                if wanted.len() < MAX_CLAIMS
                    && rendezvous::owner(spec.rule, name, shard, &eligible) == Some(self.me.node)
                {
                    wanted.insert(Instance::new(name, shard));
                }
            }
        }
        wanted
    }

    /// Sends our claims to every registrar (and registers them with our own).
    fn send_round(&mut self, now: Instant) {
        let round = self.next_round;
        self.next_round += 1;
        self.stats.rounds += 1;
        let claims = self.claims();
        if !claims.is_superset(&self.claimed) {
            // This round releases something: a late grant of an earlier round must not count
            // for it any more (the registrar may give it to another node once released).
            self.rounds.clear();
        }
        self.rounds.insert(
            round,
            Round {
                sent: now,
                grants: BTreeMap::new(),
                members: 0,
            },
        );
        self.claimed = claims.clone();
        let message = encode(&PlacementMessage::Claim {
            life: self.me,
            round,
            claims: claims.iter().cloned().collect(),
        });
        for node in self.members.agreed().keys() {
            if *node != self.me.node {
                self.out.push((*node, message.clone()));
            }
        }
        let ours = if self.may_grant(now) {
            claims.clone()
        } else {
            BTreeSet::new()
        };
        if let Some(granted) = self.registrar.claim(now, self.me, round, &ours) {
            let members = self.members.agreed().len();
            self.granted(now, self.me.node, round, granted, members);
            self.start_leased(now);
        }
        self.round_due = (!claims.is_empty()).then(|| now + self.config.renew);
    }

    fn stop(&mut self, instance: &Instance, reason: StopReason) {
        self.handoffs.forget(instance);
        if self.running.remove(instance).is_none() {
            return;
        }
        self.duplicates.stopped(instance);
        self.leases.remove(instance);
        self.stats.count_stop(reason);
        self.events.push(PlacementEvent::Stop {
            instance: instance.clone(),
            reason,
        });
    }

    /// Those of `claims` that run here under a lease valid at `now`.
    fn leased_among(&self, now: Instant, claims: &BTreeSet<Instance>) -> Vec<Instance> {
        claims
            .iter()
            .filter(|i| self.running.get(*i).is_some_and(|until| *until > now))
            .cloned()
            .collect()
    }

    /// Registrar `from` answered our round `round` (of this life) with what it runs of our
    /// claims: each that runs here too, leased now and since before that round, is a duplicate.
    fn check_duplicates(&mut self, now: Instant, from: NodeId, round: u64, running: Vec<Instance>) {
        if from == self.me.node {
            return;
        }
        for instance in running.into_iter().take(MAX_CLAIMS) {
            let leased_here = self
                .running
                .get(&instance)
                .is_some_and(|until| *until > now);
            if self
                .duplicates
                .reported_running(from, round, &instance, leased_here)
            {
                self.events.push(PlacementEvent::Duplicate {
                    instance,
                    with: from,
                });
            }
        }
    }

    fn stop_all(&mut self, reason: StopReason) {
        let all: Vec<Instance> = self.running.keys().cloned().collect();
        for instance in all {
            self.stop(&instance, reason);
        }
        self.leases.clear();
    }

    /// Messages to send on the coordination channel: (recipient, encoded
    /// `CoreMessage::Placement`).
    pub fn take_messages(&mut self) -> Vec<(NodeId, Bytes)> {
        std::mem::take(&mut self.out)
    }

    /// Messages to send on the bulk channel (handed-over states), like
    /// [`Placement::take_messages`].
    pub fn take_bulk_messages(&mut self) -> Vec<(NodeId, Bytes)> {
        std::mem::take(&mut self.bulk_out)
    }

    /// Start and stop decisions, in order.
    pub fn take_events(&mut self) -> Vec<PlacementEvent> {
        std::mem::take(&mut self.events)
    }

    /// Whether `instance` runs here at `now` (a lease that ran out no longer counts, even
    /// before the timer that stops it has fired).
    pub fn is_running(&self, instance: &Instance, now: Instant) -> bool {
        self.running.get(instance).is_some_and(|until| *until > now)
            || self.per_node.contains(instance)
    }

    /// Whether `instance` was started here and not stopped since (lease ends not judged).
    pub fn runs_here(&self, instance: &Instance) -> bool {
        self.running.contains_key(instance) || self.per_node.contains(instance)
    }

    /// The instances running here, with their lease ends.
    pub fn running(&self) -> impl Iterator<Item = (&Instance, &Instant)> {
        self.running.iter()
    }

    /// The declared workloads.
    pub fn workloads(&self) -> impl Iterator<Item = (&String, &WorkloadSpec)> {
        self.workloads.iter()
    }

    /// The agreed membership, each member with the latest generation seen of it.
    pub fn agreed(&self) -> Agreed<'_> {
        self.members.agreed()
    }

    /// The registrations this node holds as a registrar.
    pub fn registrar(&self) -> &Registrar {
        &self.registrar
    }

    /// Counters.
    pub fn stats(&self) -> &PlacementStats {
        &self.stats
    }

    /// How many times the duplicate detector found another node running an instance while it
    /// ran here ([`PlacementEvent::Duplicate`]); should stay 0.
    pub fn duplicates_detected(&self) -> u64 {
        self.duplicates.detected
    }

    /// Who our view says should own `instance` (it runs there once that node wins its
    /// lease); `None` when too few members are eligible.
    pub fn owner(&self, instance: &Instance) -> Result<Option<NodeId>, PlacementError> {
        let spec = self
            .workloads
            .get(&instance.workload)
            .ok_or_else(|| PlacementError::Unknown(instance.workload.clone()))?;
        if instance.shard >= spec.shards() {
            return Err(PlacementError::Invalid(format!(
                "{} has {} shards",
                instance.workload,
                spec.shards()
            )));
        }
        if spec.per_node() {
            // Every node that runs one owns its own: ours, if we do.
            return Ok(self.per_node.contains(instance).then_some(self.me.node));
        }
        let eligible: Vec<Candidate> = self.eligible(&spec.require).collect();
        if eligible.len() < spec.min_members.max(1) {
            return Ok(None);
        }
        Ok(rendezvous::owner(
            spec.rule,
            &instance.workload,
            instance.shard,
            &eligible,
        ))
    }

    /// The shard `key` maps to in `workload`, and who our view says owns it.
    pub fn owner_of_key(
        &self,
        workload: &str,
        key: &[u8],
    ) -> Result<(Instance, Option<NodeId>), PlacementError> {
        let spec = self
            .workloads
            .get(workload)
            .ok_or_else(|| PlacementError::Unknown(workload.to_owned()))?;
        let instance = Instance::new(workload, shard_of(key, spec.shards()));
        let owner = self.owner(&instance)?;
        Ok((instance, owner))
    }

    /// The machine's own consistency: every running instance is wanted and was leased.
    pub fn invariants(&self) -> Result<(), String> {
        for instance in self.running.keys() {
            if !self.wanted.contains(instance) && !self.handoffs.is_handing_off(instance) {
                return Err(format!(
                    "{instance} runs here but is neither wanted nor handed over"
                ));
            }
            if !self.claimed.contains(instance) {
                return Err(format!("{instance} runs here but was not claimed"));
            }
        }
        Ok(())
    }
}
