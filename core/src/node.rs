//! `Core`: one node's protocols as one deterministic state machine.
//!
//! A driver owns a `Core` and runs this loop:
//!
//! ```text
//! let mut core = Core::new(config, now);
//! loop {
//!     while let Some(effect) = core.poll_effect() {
//!         match effect {
//!             Effect::Send { to, channel, payload } => /* hand to the transport */,
//!             Effect::Event(event) => /* tell the application */,
//!             Effect::Persist { seq, batch } => /* write, then Input::Persisted */,
//!         }
//!     }
//!     match /* the next datagram, message or command, or core.poll_timeout() passing */ {
//!         Input(now, input) => core.handle(now, input),
//!         Deadline(now) => core.handle_timeout(now),
//!     }
//! }
//! ```
//!
//! `engine::runtime` drives it with tokio and QUIC; `foundation-sim` drives many of them with a
//! virtual clock and a simulated network. Adding a protocol means adding a machine here and a
//! variant to [`CoreMessage`], [`Timer`] and [`Event`] — never touching the drivers. The core
//! keeps its own timers, so a driver holds one deadline, not a timer wheel.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use bytes::Bytes;
use foundation_agents::variable::VarValue;
use serde::{Deserialize, Serialize};

use crate::cache::{CacheError, CacheMessage, CacheSettings, Caches, Started, Store};
use crate::effects::{Effect, Event, Kind, Mark, Outbox, Timer};
use crate::ephemeral::{Ephemeral, EphemeralConfig, EphemeralError, Owner};
use crate::membership::{
    ForceLeaveError, MemberId, MemberState, MemberView, Membership, MembershipConfig,
    MembershipEvent, MembershipMessage, MembershipStats, NodeMetadata,
};
use crate::placement::{
    self, Candidate, Instance, Member, Placement, PlacementConfig, PlacementError,
    PlacementMessage, RouteId, WorkloadSpec,
};
use crate::replication::{
    AckTicket, Origin, Replication, ReplicationConfig, ReplicationError, ReplicationEvent,
    ReplicationMessage, RestoreError, RestoredKeyspace, Snapshot, Write, Written,
};
use crate::storage::Loaded;
use crate::time::Instant;
use crate::vars::{
    Life, Outcome, Outgoing, VarSpec, Vars, VarsError, VarsMessage, COUNTERS_KEYSPACE,
    LWW_KEYSPACE, VARS_KEYSPACE,
};
use crate::{Channel, NodeAddr, NodeId};

/// Everything needed to build a node's core.
#[derive(Clone, Debug)]
pub struct CoreConfig {
    /// Who we are, and which life of the node this is.
    pub me: MemberId,
    /// Membership timers and limits.
    pub membership: MembershipConfig,
    /// What we say about ourselves.
    pub metadata: NodeMetadata,
    /// Seed of every random choice the core makes.
    pub seed: u64,
}

/// One input to the core.
#[derive(Clone, Debug, PartialEq)]
pub enum Input {
    /// Bytes from a peer on a channel.
    Received {
        /// The sender, as authenticated by the transport.
        from: NodeId,
        /// The channel.
        channel: Channel,
        /// The payload.
        payload: Bytes,
    },
    /// A request from the local application.
    Command(Command),
    /// Storage made every batch up to `upto` durable ([`Effect::Persist`]).
    Persisted {
        /// The last durable batch.
        upto: u64,
    },
    /// Storage could not write batch `seq` (a full or failing disk).
    PersistFailed {
        /// The batch.
        seq: u64,
    },
    /// The host at `node`'s address answered a membership datagram with "port unreachable":
    /// nothing listens where that member did, as after a crash (an ICMP error the transport
    /// read; unauthenticated, so membership checks before it declares anything).
    PortClosed {
        /// The member the datagram was sent to.
        node: NodeId,
    },
}

/// Requests from the local application.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// Join the cluster through the node at this address.
    Join(NodeAddr),
    /// Leave the cluster gracefully.
    Leave,
    /// Replace our metadata.
    SetMetadata(NodeMetadata),
}

/// Why a local write was refused. Nothing changed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// Replication refused it (a limit).
    #[error(transparent)]
    Replication(#[from] ReplicationError),
    /// Not a valid ephemeral entry.
    #[error(transparent)]
    Ephemeral(#[from] EphemeralError),
}

/// What an operator's `force-leave` removed ([`Core::force_leave`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ForceLeft {
    /// A failed or departed member of the members table; it stops counting in the agreed
    /// membership too.
    Member(MemberView),
    /// A member that only the agreed membership still counted, at `generation`: the table
    /// reaped it, in this life or while this node was down (see [`placement::stored`]).
    Agreed {
        /// The member's node.
        id: NodeId,
        /// The generation it was agreed at.
        generation: u64,
    },
}

impl ForceLeft {
    /// The node removed.
    pub fn id(&self) -> NodeId {
        match self {
            ForceLeft::Member(view) => view.id,
            ForceLeft::Agreed { id, .. } => *id,
        }
    }
}

/// The top-level message carried on the coordination and replication channels. Machines
/// encode their own variant (`membership::encode`, `replication::encode`, by their tag in
/// [`crate::envelope`]); the core decodes the whole. Variant order is the tags' order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum CoreMessage {
    /// For the membership machine.
    Membership(MembershipMessage),
    /// For the replication machine.
    Replication(ReplicationMessage),
    /// For the variables machine.
    Vars(VarsMessage),
    /// For the placement machine.
    Placement(PlacementMessage),
    /// For the caches.
    Cache(CacheMessage),
}

/// A stream message as postcard decodes it; a push-pull, the largest message by far, through
/// the membership's own decoder of it, which gives the same result faster.
fn decode(payload: &[u8]) -> Result<CoreMessage, postcard::Error> {
    match crate::membership::decode_push_pull(payload) {
        Some(push_pull) => push_pull.map(CoreMessage::Membership),
        None => postcard::from_bytes(payload),
    }
}

/// Counters of inputs the core refused.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CoreStats {
    /// Stream messages that did not decode.
    pub bad_messages: u64,
}

/// One node's protocols.
pub struct Core {
    membership: Membership,
    replication: Replication,
    ephemeral: Ephemeral,
    vars: Vars,
    /// When the variables' timer is armed for, if it is.
    vars_timer: Option<Instant>,
    outbox: Outbox,
    stats: CoreStats,
    /// Members we saw failed or leave and not come back yet.
    seen_down: BTreeSet<NodeId>,
    placement: Placement,
    /// When the placement timer is armed for, if it is.
    placement_timer: Option<Instant>,
    /// A leave waits for placement's handoffs before it tells the membership.
    leave_after_handoffs: bool,
    caches: Caches,
    /// When the caches' timer is armed for, if it is.
    cache_timer: Option<Instant>,
    /// Bumped by every call that may change what the quick checks and replication's read:
    /// every public `&mut` entry but an input or timer that reached only the membership
    /// ([`Core::touched`]).
    touched: u64,
    /// The [`Core::touched`] count at which settling last found nothing to persist, no
    /// renewal and no reconcile timer to start: until the count moves, a step that reached
    /// only SWIM and emitted no event leaves those three as they were (see [`Core::settle`]).
    idle_at: Option<u64>,
}

impl Core {
    /// A core for one node, starting at `now`.
    pub fn new(config: CoreConfig, now: Instant) -> Self {
        let mut outbox = Outbox::default();
        let placement = Placement::new(
            Life {
                node: config.me.node,
                generation: config.me.generation,
            },
            PlacementConfig::for_membership(&config.membership),
            now,
        );
        let membership = Membership::new(
            config.me,
            config.membership,
            config.metadata,
            config.seed,
            now,
            &mut outbox,
        );
        let replication = Replication::new(
            origin(&config.me),
            ReplicationConfig::default(),
            config.seed ^ REPLICATION_SEED_SALT,
        );
        Self {
            membership,
            replication,
            ephemeral: Ephemeral::new(EphemeralConfig::default()),
            vars: Vars::new(Life {
                node: config.me.node,
                generation: config.me.generation,
            }),
            vars_timer: None,
            outbox,
            stats: CoreStats::default(),
            seen_down: BTreeSet::new(),
            placement,
            placement_timer: None,
            leave_after_handoffs: false,
            caches: Caches::new(
                Life {
                    node: config.me.node,
                    generation: config.me.generation,
                },
                0,
            ),
            cache_timer: None,
            touched: 0,
            idle_at: None,
        }
    }

    /// Replaces the placement settings (checked). Call right after [`Core::new`].
    pub fn with_placement(mut self, config: PlacementConfig, now: Instant) -> Self {
        let _ = self.set_placement(now, config);
        self
    }

    /// Replaces the placement settings, if they are valid, before any workload is declared
    /// (the machine starts afresh: what it ran and registered is forgotten; the agreed
    /// membership is kept).
    pub fn set_placement(
        &mut self,
        now: Instant,
        config: PlacementConfig,
    ) -> Result<(), PlacementError> {
        self.touch();
        config.validate()?;
        if self.placement.workloads().next().is_some() {
            return Err(PlacementError::Invalid(
                "placement settings change only before any workload is declared".into(),
            ));
        }
        let me = self.membership.me();
        let life = Life {
            node: me.node,
            generation: me.generation,
        };
        // The agreed membership is not a setting: members agreed to (stored ones among them)
        // and no longer in the view would be forgotten, and a restarted node counted alone.
        let agreed: Vec<(NodeId, u64)> = self
            .placement
            .agreed()
            .iter()
            .map(|(id, generation)| (*id, generation))
            .collect();
        self.placement = Placement::new(life, config, now);
        self.placement.seed_agreed(now, &agreed);
        // Membership may have changed already: the new machine takes up the current view.
        self.placement_view_now(now);
        Ok(())
    }

    /// Replaces the replication settings. Call right after [`Core::new`]: the replicated state
    /// is reset.
    pub fn with_replication(mut self, config: ReplicationConfig, seed: u64) -> Self {
        self.touch();
        self.caches.set_wall_ms_at_zero(config.wall_ms_at_zero);
        self.replication = Replication::new(self.replication.me(), config, seed);
        self
    }

    /// Shares membership metadata values equal to those other cores in this process hold (the
    /// simulator's many cores): memory only, nothing any core does changes. Call right after
    /// [`Core::new`].
    pub fn with_shared_metadata(mut self, shared: crate::membership::SharedMetadata) -> Self {
        self.membership.share_metadata(shared);
        self
    }

    /// Replaces the ephemeral entries' settings. Call right after [`Core::new`].
    pub fn with_ephemeral(mut self, config: EphemeralConfig) -> Self {
        self.touch();
        self.ephemeral = Ephemeral::new(config);
        self
    }

    /// Starts persisting replicated keyspaces (all but the ephemeral ones, whose entries belong
    /// to live nodes) and placement's agreed membership, and takes up what a previous life of
    /// this node stored: the agreed membership before any majority is counted (see
    /// [`crate::placement::stored`]). Call right after [`Core::new`] and its `with_*`
    /// settings, before any input, with what storage loaded. Returns how many stored records
    /// did not decode.
    pub fn start_persisting(&mut self, now: Instant, loaded: &Loaded) -> usize {
        self.touch();
        let volatile = self.ephemeral.config().keyspaces.clone();
        self.replication.enable_persistence(volatile);
        let bad_agreed = self.restore_agreed(now, &loaded.state.node);
        let whole = !loaded.report.partial;
        let skipped = self
            .replication
            .restore(now, &loaded.state, whole, &mut self.outbox);
        skipped + usize::from(bad_agreed)
    }

    /// Seeds placement's agreed membership from its stored record; true if the record is
    /// there but does not decode (left out: this node then starts alone, as without one).
    fn restore_agreed(&mut self, now: Instant, node: &BTreeMap<String, Vec<u8>>) -> bool {
        let Some(bytes) = node.get(placement::stored::AGREED_RECORD) else {
            return false;
        };
        match placement::stored::decode(bytes) {
            Ok(members) => {
                self.placement.seed_agreed(now, &members);
                false
            }
            Err(_) => true,
        }
    }

    /// Hands storage placement's agreed membership when it changed, in the batch this input
    /// flushes, so a restart counts majorities among the same members.
    fn keep_agreed(&mut self) {
        if !self.placement.take_agreed_changed() || !self.replication.persisting() {
            return;
        }
        let me = self.membership.me().node;
        if let Some(record) = placement::stored::encode(self.placement.agreed(), me) {
            self.replication
                .keep_node_record(placement::stored::AGREED_RECORD, record);
        }
    }

    /// Feeds one input.
    pub fn handle(&mut self, now: Instant, input: Input) {
        let mark = self.outbox.mark();
        let swim = matches!(
            input,
            Input::Received {
                channel: Channel::Membership,
                ..
            }
        );
        self.dispatch(now, input);
        let quiet = self.settle(now, mark, swim);
        if !(swim && quiet) {
            self.touch();
        }
        self.debug_check();
    }

    /// When [`Core::handle_timeout`] next has something to do: the earliest armed timer.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.outbox.next_timer()
    }

    /// Fires every timer due at `now` that was armed before this call (one armed while firing
    /// waits for the next call, which [`Core::poll_timeout`] then asks for at once).
    pub fn handle_timeout(&mut self, now: Instant) {
        let armed = self.outbox.timers().armed();
        let mut quiet = true;
        while let Some((scheduled, timer)) = self.outbox.timers().pop_due(now, armed) {
            let mark = self.outbox.mark();
            let swim = matches!(timer, Timer::Membership(_));
            quiet &= swim;
            self.fire(now, scheduled, timer);
            quiet &= self.settle(now, mark, swim);
        }
        if !quiet {
            self.touch();
        }
        self.debug_check();
    }

    /// Counts calls that may have changed a machine other than the membership, or the core's
    /// timers of placement and the variables: all but SWIM's datagrams and timers that emitted
    /// no event. A checker whose last passing check saw the same count needs to check only the
    /// membership and the timer bound again ([`Core::invariants_since`]).
    pub fn touched(&self) -> u64 {
        self.touched
    }

    pub(crate) fn touch(&mut self) {
        self.touched += 1;
    }

    /// In debug builds (the simulator's tests among them), the invariants that are cheap
    /// enough to check after every input: ephemeral entries', the timer bound's, the
    /// variables' and placement's. Replication's walk every key and membership's compare with
    /// SWIM's table: the simulator checks those after every step as `core-invariants` (a
    /// panic here would hide which invariant a planted membership bug breaks).
    fn debug_check(&self) {
        if cfg!(debug_assertions) {
            if let Err(broken) = self.quick_invariants() {
                panic!("a core invariant is broken: {broken}");
            }
        }
    }

    fn quick_invariants(&self) -> Result<(), String> {
        self.ephemeral.invariants()?;
        self.timer_bound()?;
        self.vars.invariants()?;
        self.placement.invariants()?;
        if let Some(due) = self.placement.poll_timeout() {
            if self.placement_timer.is_none_or(|armed| armed > due) {
                return Err(format!("placement's next deadline {due:?} is not armed"));
            }
        }
        // A write under way has its retry or deadline armed.
        match (self.vars.poll_timeout(), self.vars_timer) {
            (Some(due), armed) if armed.is_none_or(|armed| armed > due) => Err(format!(
                "the variables' next deadline {due:?} is not armed (armed: {armed:?})"
            )),
            _ => Ok(()),
        }
    }

    /// Any timer the outbox dropped: SWIM's arm timers too, so this is checked after every step.
    #[inline]
    fn timer_bound(&self) -> Result<(), String> {
        match self.outbox.timers_dropped() {
            0 => Ok(()),
            dropped => Err(format!("{dropped} timers were dropped at the timer bound")),
        }
    }

    /// What follows every input and every timer: replication hears of members that came up,
    /// persists what changed, and writes as our current life. Returns whether it left every
    /// machine but the membership as it was: no event to read, nothing to persist, no renewal,
    /// no reconcile timer to start. `swim`: the input or timer reached only the membership.
    fn settle(&mut self, now: Instant, mark: Mark, swim: bool) -> bool {
        // These four read only the events emitted since `mark`, and emit nothing when there
        // are none: most inputs of a formed cluster (a probe, its answer) emit none.
        if self.outbox.events_since(&mark, Kind::Any) == 0 {
            let me = origin(&self.membership.me());
            // Nothing but SWIM changed since settling last found the rest idle: it still is,
            // and asking replication and the ephemeral entries again was half of this.
            if swim && self.idle_at == Some(self.touched) && me == self.replication.me() {
                return true;
            }
            return self.settle_rest(now);
        }
        self.members_came_up(now, &mark);
        self.placement_view(now, &mark);
        self.adopt_declarations(now, &mark);
        self.adopt_cache_entries(now, &mark);
        self.settle_rest(now);
        false
    }

    /// Persists what changed, renews replication's writer and starts the reconcile timer, as
    /// needed; returns whether none was, and notes it for [`Self::settle`].
    fn settle_rest(&mut self, now: Instant) -> bool {
        self.keep_agreed();
        let mut quiet = !self.replication.flush_persistence(&mut self.outbox);
        // Replication writes as our current life: see `Replication::renew`.
        let me = origin(&self.membership.me());
        if me != self.replication.me() {
            quiet = false;
            self.replication.renew(me);
        }
        // The variables life stays through a renewal: members are told which one it is.
        let identity = self.membership.me().generation;
        if identity != self.vars.identity() {
            quiet = false;
            let alive: Vec<NodeId> = self.membership.alive().map(|m| m.id).collect();
            self.vars.renewed(now, identity, alive);
            self.deliver_vars(now, Outgoing::new());
        }
        if self.ephemeral.wants_ticking(&self.replication) && self.ephemeral.start_ticking() {
            quiet = false;
            self.arm_reconcile(now);
        }
        self.idle_at = quiet.then_some(self.touched);
        quiet
    }

    fn dispatch(&mut self, now: Instant, input: Input) {
        match input {
            Input::Received {
                from,
                channel,
                payload,
            } => self.received(now, from, channel, &payload),
            Input::Command(command) => self.command(now, command),
            Input::Persisted { upto } => self.replication.persisted(upto, &mut self.outbox),
            Input::PersistFailed { seq } => self.replication.persist_failed(seq),
            Input::PortClosed { node } => self.membership.port_closed(now, node, &mut self.outbox),
        }
    }

    fn fire(&mut self, now: Instant, scheduled: Instant, timer: Timer) {
        match timer {
            Timer::Membership(timer) => {
                self.membership
                    .handle_timer(now, scheduled, timer, &mut self.outbox)
            }
            Timer::Replication(timer) => {
                let peers = self.alive_addrs();
                let membership = &self.membership;
                self.seen_down.retain(|id| membership.member(*id).is_some());
                let members = self.retire_departed(now);
                self.replication
                    .handle_timer(now, timer, &peers, &members, &mut self.outbox)
            }
            Timer::EphemeralReconcile => self.reconcile(now),
            Timer::Placement => {
                self.placement_timer = None;
                self.placement.handle_timeout(now);
                self.deliver_placement(now);
            }
            Timer::Cache => {
                self.cache_timer = None;
                self.caches.handle_timeout(now);
                self.deliver_caches(now);
            }
            Timer::Vars => {
                self.vars_timer = None;
                let mut out = Outgoing::new();
                self.vars.handle_timeout(now, &mut out);
                if self.vars.reseat_now(now) {
                    let members = crate::vars::reseat::seen(self.membership.members());
                    self.vars.reseat(now, &members, &mut out);
                }
                self.deliver_vars(now, out);
            }
        }
    }

    /// Tells replication of members that came up while handling the last input, and whether
    /// we had seen them failed or gone (replication pulls from those: see its docs).
    fn members_came_up(&mut self, now: Instant, mark: &Mark) {
        let events = self.outbox.events_since(mark, Kind::Membership);
        if events == 0 {
            return;
        }
        // Sized for every event: a join's pushes grew it from nothing, a copy per doubling.
        let mut up = Vec::with_capacity(events);
        let mut vars_changed = false;
        for effect in self.outbox.since(mark.queued()) {
            match effect {
                Effect::Event(Event::Membership(MembershipEvent::Up(view))) => {
                    up.push(view.node_addr());
                    vars_changed |= self.vars.member_up(now, view.id, view.generation);
                }
                Effect::Event(Event::Membership(
                    MembershipEvent::Failed(view) | MembershipEvent::Left(view),
                )) => {
                    self.seen_down.insert(view.id);
                    self.vars.member_down(now, view.id, view.generation);
                    vars_changed = true;
                }
                _ => {}
            }
        }
        if vars_changed || self.vars.has_messages() {
            self.deliver_vars(now, Outgoing::new());
        }
        for peer in up {
            let came_back = self.seen_down.remove(&peer.id);
            self.replication
                .member_up(now, peer, came_back, &mut self.outbox);
        }
    }

    /// Timers refused because too many were pending: never expected, a bug's symptom.
    pub fn timers_dropped(&self) -> u64 {
        self.outbox.timers_dropped()
    }

    /// The next effect to execute, in order.
    #[inline]
    pub fn poll_effect(&mut self) -> Option<Effect> {
        self.outbox.pop()
    }

    /// The membership machine, for queries.
    pub fn membership(&self) -> &Membership {
        &self.membership
    }

    /// The replication machine, for local reads of replicated keyspaces.
    pub fn replication(&self) -> &Replication {
        &self.replication
    }

    /// Applies a local write to a replicated keyspace and starts spreading it; returns the
    /// write's name and stamp.
    pub fn write(&mut self, now: Instant, write: Write) -> Result<Written, ReplicationError> {
        self.touch();
        let (keyspace, key) = (write.keyspace.clone(), write.key.clone());
        let result = self.write_replicated(now, write);
        // A write to a variables keyspace that did not come from the variables machine (the
        // generic key-value API, or a misbehaving caller) is checked like a peer's.
        if result.is_ok() && [LWW_KEYSPACE, COUNTERS_KEYSPACE].contains(&keyspace.as_str()) {
            self.feed_var_entry(now, &keyspace, &key);
            self.deliver_vars(now, Outgoing::new());
        }
        result
    }

    fn write_replicated(
        &mut self,
        now: Instant,
        write: Write,
    ) -> Result<Written, ReplicationError> {
        let peers = self.alive_addrs();
        let result = self.replication.write(now, write, &peers, &mut self.outbox);
        self.replication.flush_persistence(&mut self.outbox);
        result
    }

    /// Every replicated keyspace that is not ephemeral, as a snapshot file holds them.
    pub fn snapshot(&self, now: Instant) -> Snapshot {
        self.replication
            .snapshot(now, &self.ephemeral.config().keyspaces)
    }

    /// Merges a snapshot's keyspaces into ours as CRDT merges (nothing newer here is lost) and
    /// sends them to the live members; see [`crate::replication::snapshot`]. A refusal changes
    /// nothing.
    pub fn restore_snapshot(
        &mut self,
        now: Instant,
        snapshot: &Snapshot,
    ) -> Result<Vec<RestoredKeyspace>, RestoreError> {
        self.touch();
        let mark = self.outbox.mark();
        let peers = self.alive_addrs();
        let exclude = self.ephemeral.config().keyspaces.clone();
        let result =
            self.replication
                .restore_snapshot(now, snapshot, &exclude, &peers, &mut self.outbox);
        // Variables and caches take up what changed, and storage writes it.
        self.settle(now, mark, false);
        self.debug_check();
        result
    }

    /// Removes a failed or departed member from the table now, here and on every live member
    /// (an operator's `force-leave`); see [`Membership::force_leave`].
    /// It stops counting in the agreed membership (placement's quorum and majority writes).
    /// A member the table no longer holds but the agreed membership still counts is removed
    /// from the latter: reaping leaves it there, and nothing else ever would.
    pub fn force_leave(
        &mut self,
        now: Instant,
        node: NodeId,
    ) -> Result<ForceLeft, ForceLeaveError> {
        self.touch();
        let removed = match self.membership.force_leave(node, &mut self.outbox) {
            Ok(view) => ForceLeft::Member(view),
            Err(ForceLeaveError::Unknown(_)) => self.force_leave_agreed(node)?,
            Err(refused) => return Err(refused),
        };
        let generation = match &removed {
            ForceLeft::Member(view) => view.generation,
            ForceLeft::Agreed { generation, .. } => *generation,
        };
        self.placement.forget_member(now, node, generation);
        self.deliver_placement(now);
        self.keep_agreed();
        self.replication.flush_persistence(&mut self.outbox);
        Ok(removed)
    }

    /// The force-leave of a member only the agreed membership counts; live members are told
    /// too, as for one in the table, since they may still count it as well (a member reaped
    /// as failed stays agreed everywhere). Its address is not known any more.
    fn force_leave_agreed(&mut self, node: NodeId) -> Result<ForceLeft, ForceLeaveError> {
        let generation = self
            .placement
            .agreed()
            .get(&node)
            .ok_or(ForceLeaveError::Unknown(node))?;
        let addr = std::net::SocketAddr::from(([0, 0, 0, 0], 0));
        let member = MemberId {
            node,
            addr,
            generation,
        };
        self.membership.tell_forget(member, &mut self.outbox);
        Ok(ForceLeft::Agreed {
            id: node,
            generation,
        })
    }

    /// Owns (or stops owning) an ephemeral entry and starts spreading it.
    pub fn set_ephemeral(
        &mut self,
        now: Instant,
        keyspace: &str,
        name: &str,
        value: Option<Vec<u8>>,
    ) -> Result<(), WriteError> {
        self.touch();
        let me = Owner::from(self.membership.me());
        let write = self.ephemeral.set(me, keyspace, name, value)?;
        self.write(now, write)?;
        if self.ephemeral.start_ticking() {
            self.arm_reconcile(now);
        }
        Ok(())
    }

    /// The value of the ephemeral entry `name` of `keyspace` this node owns, if it owns one.
    pub fn owned_ephemeral(&self, keyspace: &str, name: &str) -> Option<&[u8]> {
        self.ephemeral.owned(keyspace, name)
    }

    /// Whether `keyspace` holds ephemeral entries.
    pub fn ephemeral_keyspace(&self, keyspace: &str) -> bool {
        self.ephemeral.config().keyspaces.contains(keyspace)
    }

    fn reconcile(&mut self, now: Instant) {
        self.arm_reconcile(now);
        let writes = self
            .ephemeral
            .reconcile(now, &self.replication, &self.membership);
        for write in writes {
            // A refused repair is counted by replication and retried next round.
            let _ = self.write(now, write);
        }
    }

    fn arm_reconcile(&mut self, now: Instant) {
        let at = now + self.ephemeral.config().reconcile_interval;
        self.outbox.timer(at, Timer::EphemeralReconcile);
    }

    /// Applies a local write and asks every live member to acknowledge it; progress comes as
    /// [`crate::replication::ReplicationEvent::Acked`] events until `until`. The majority is
    /// of the agreed membership, placement's (members leave it only by leaving gracefully), so
    /// a node on a minority side is refused ([`ReplicationError::MinoritySide`]) instead of
    /// confirming a write that too few members hold.
    pub fn write_acked(
        &mut self,
        now: Instant,
        write: Write,
        until: Instant,
    ) -> Result<AckTicket, ReplicationError> {
        self.touch();
        let peers = self.alive_addrs();
        let agreed = self.placement.agreed().len();
        let result =
            self.replication
                .write_acked(now, write, &peers, agreed, until, &mut self.outbox);
        self.replication.flush_persistence(&mut self.outbox);
        result
    }

    /// Every known member but ourselves, in node id order.
    pub fn members(&self) -> impl Iterator<Item = MemberView> + '_ {
        self.membership.members()
    }

    /// Counters of the core and its machines.
    pub fn stats(&self) -> (&CoreStats, &MembershipStats) {
        (&self.stats, self.membership.stats())
    }

    /// Checks every machine's invariants.
    pub fn invariants(&self) -> Result<(), String> {
        self.membership.invariants()?;
        self.quick_invariants()?;
        self.replication.invariants()
    }

    /// [`Self::invariants`] for a checker that checked up to `membership_cursor` (a value of
    /// `self.membership().changes()`): membership checks only the members that changed since.
    /// `passed`: the [`Core::touched`] of the checker's last check, if it passed; when nothing
    /// touched the other machines since, their checks would pass again and are skipped (a
    /// formed cluster's steps are nearly all SWIM's, and those checks were half of checking).
    #[inline]
    pub fn invariants_since(
        &self,
        membership_cursor: u64,
        passed: Option<u64>,
    ) -> Result<(), String> {
        // Inline where the simulator checks after every step: nearly every step of a formed
        // cluster takes the first two returns, and the calls cost more than the checks.
        self.membership.invariants_since(membership_cursor)?;
        if passed == Some(self.touched) {
            return self.timer_bound();
        }
        self.others_invariants()
    }

    /// The machines' invariants but the membership's.
    fn others_invariants(&self) -> Result<(), String> {
        self.quick_invariants()?;
        self.replication.invariants()
    }

    fn alive_addrs(&self) -> Vec<NodeAddr> {
        self.membership.alive().map(|m| m.node_addr()).collect()
    }

    /// Tells replication which members are gone for good (not alive for `departed_after`) and
    /// which of its origins are lives of those, or past lives of restarted nodes. Returns the
    /// other members: those not departed, whose digests replication's agreements need.
    fn retire_departed(&mut self, now: Instant) -> Vec<NodeId> {
        let after = self.replication.config().departed_after;
        let members: Vec<MemberView> = self.membership.members().collect();
        // Members removed from the table (reaped or forced out) are gone for good too.
        let departed: BTreeSet<NodeId> = members
            .iter()
            .filter(|m| m.state != MemberState::Alive && now.saturating_since(m.since) >= after)
            .map(|m| m.id)
            .chain(self.membership.removed())
            .collect();
        let holding: Vec<NodeId> = members
            .iter()
            .map(|m| m.id)
            .filter(|id| !departed.contains(id))
            .collect();
        let gone = self
            .replication
            .origins()
            .into_iter()
            .filter(|o| {
                let node = NodeId::from_u128(o.node.as_u128());
                let me = self.membership.me();
                departed.contains(&node)
                    || (node == me.node && me.generation > o.generation)
                    || members
                        .iter()
                        .any(|m| m.id == node && m.generation > o.generation)
            })
            .collect();
        if !fault_on!(NeverRetire) {
            self.replication.retire(&departed, &gone, &holding);
        }
        let writers: BTreeSet<NodeId> = self
            .replication
            .origins()
            .iter()
            .map(|o| NodeId::from_u128(o.node.as_u128()))
            .collect();
        self.membership
            .retain_removed(|node| writers.contains(&node));
        holding
    }

    fn received(&mut self, now: Instant, from: NodeId, channel: Channel, payload: &[u8]) {
        if channel == Channel::Membership {
            return self
                .membership
                .handle_datagram(now, payload, &mut self.outbox);
        }
        match decode(payload) {
            Ok(CoreMessage::Membership(message)) => {
                let forgotten = match &message {
                    MembershipMessage::Forget(member) => Some((member.node, member.generation)),
                    _ => None,
                };
                self.membership
                    .handle_message(now, from, message, &mut self.outbox);
                // Another node's force-leave: once the member is out of our table too, it
                // stops counting in the agreed membership here as well.
                let forgotten = forgotten.filter(|(n, _)| self.membership.member(*n).is_none());
                if let Some((node, generation)) = forgotten {
                    self.placement.forget_member(now, node, generation);
                    self.deliver_placement(now);
                }
            }
            Ok(CoreMessage::Replication(message)) => {
                // Any known member may be answered, even one we currently think failed: it
                // evidently is not.
                let sender = self.known_addr(from);
                self.replication
                    .handle_message(now, sender, message, &mut self.outbox);
                if self.replication.take_chain_request() {
                    let peers = self.alive_addrs();
                    self.replication
                        .chain(now, &peers, Some(from), &mut self.outbox);
                }
            }
            Ok(CoreMessage::Placement(message)) => {
                self.placement.received(now, from, message);
                self.deliver_placement(now);
            }
            Ok(CoreMessage::Cache(message)) => {
                self.caches.received(now, from, message);
                self.deliver_caches(now);
            }
            Ok(CoreMessage::Vars(message)) => {
                let mut out = Outgoing::new();
                self.vars.received(now, from, message, &mut out);
                self.deliver_vars(now, out);
            }
            Err(_) => self.stats.bad_messages += 1,
        }
    }

    /// Sends the variables machine's messages (its own straight back to it), then reports its
    /// events and arms its timer.
    fn deliver_vars(&mut self, now: Instant, mut out: Outgoing) {
        let me = self.membership.me().node;
        let mut local = VecDeque::new();
        loop {
            out.extend(self.vars.take_messages());
            for (to, payload) in out.drain(..) {
                if to == me {
                    local.push_back(payload);
                } else if let Some(addr) = self.known_addr(to) {
                    self.outbox.send(addr, Channel::Coordination, payload);
                }
            }
            let Some(payload) = local.pop_front() else {
                break;
            };
            if let Ok(CoreMessage::Vars(message)) = postcard::from_bytes(&payload) {
                self.vars.received(now, me, message, &mut out);
            }
        }
        self.publish_vars(now);
        // Taking up our own writes may call for messages (a raise of a counter's allowance).
        let more = self.vars.take_messages();
        if !more.is_empty() {
            return self.deliver_vars(now, more);
        }
        for event in self.vars.take_events() {
            self.outbox.event(Event::Vars(event));
        }
        let due = self.vars.poll_timeout();
        if let Some(at) = due.filter(|at| self.vars_timer.is_none_or(|armed| *at < armed)) {
            self.vars_timer = Some(at);
            self.outbox.timer(at, Timer::Vars);
        }
    }

    /// Makes the variables machine's writes (`lww` values, counter states) and hands each back
    /// to it as the keyspace now holds it, stamp included.
    fn publish_vars(&mut self, now: Instant) {
        for write in self.vars.take_publications() {
            let (keyspace, key) = (write.keyspace.clone(), write.key.clone());
            // A refused write (a keyspace limit) is counted by replication; the value stays
            // as it was, since the machine shows only what the keyspace holds.
            if self.write_replicated(now, write).is_ok() {
                self.feed_var_entry(now, &keyspace, &key);
            }
        }
    }

    /// Hands the variables machine what keyspace `keyspace` holds under `key`.
    fn feed_var_entry(&mut self, now: Instant, keyspace: &str, key: &str) {
        let entry = self
            .replication
            .keyspace(keyspace)
            .and_then(|k| k.entry(key));
        if let Some(entry) = entry {
            let bytes = entry.value.as_ref().map(|v| v.bytes.as_slice());
            self.vars.entry_changed(now, keyspace, key, entry.ts, bytes);
        }
    }

    /// Hands the variables machine every write its keyspaces hold for variable `name` (one
    /// just declared here).
    fn feed_var_entries(&mut self, now: Instant, name: &str) {
        let prefix = format!("{name}\0");
        for keyspace in [LWW_KEYSPACE, COUNTERS_KEYSPACE] {
            let keys: Vec<String> = self
                .replication
                .keyspace(keyspace)
                .map(|k| k.map().entries().map(|(key, _)| key.clone()).collect())
                .unwrap_or_default();
            for key in keys.iter().filter(|k| k.starts_with(&prefix)) {
                self.feed_var_entry(now, keyspace, key);
            }
        }
    }

    /// The address of `id` if it is a known member, even one we think failed (a message to it
    /// costs little, and it may be back).
    fn known_addr(&self, id: NodeId) -> Option<NodeAddr> {
        self.membership
            .members()
            .find(|m| m.id == id)
            .map(|m| m.node_addr())
    }

    /// Declares a variable here and replicates the declaration, so every acceptor takes it up
    /// (see [`crate::vars`]). A name already declared cluster-wide with another spec is a
    /// conflict.
    pub fn declare_var(
        &mut self,
        now: Instant,
        name: &str,
        spec: VarSpec,
    ) -> Result<(), VarsError> {
        self.touch();
        let bytes = spec.encode();
        let replicated = self.replication.get(VARS_KEYSPACE, name);
        // After a change of acceptors the declaration carries a seat after the spec: only the
        // spec has to be the same.
        if replicated.is_some_and(|held| VarSpec::decode(held).as_ref() != Some(&spec)) {
            return Err(VarsError::Conflict(name.to_owned()));
        }
        let first = replicated.is_none();
        self.vars.declare(name, spec)?;
        self.feed_var_entries(now, name);
        self.deliver_vars(now, Outgoing::new());
        if first {
            let write = Write {
                keyspace: VARS_KEYSPACE.to_owned(),
                key: name.to_owned(),
                value: Some(bytes),
            };
            self.write(now, write)
                .map_err(|e| VarsError::NotReplicated(e.to_string()))?;
        }
        Ok(())
    }

    /// Takes up declarations of variables, `lww` writes and counter states that arrived while
    /// handling the last input.
    fn adopt_declarations(&mut self, now: Instant, mark: &Mark) {
        if self.outbox.events_since(mark, Kind::Replication) == 0 {
            return;
        }
        let changed: Vec<(String, String, Option<Vec<u8>>)> = self
            .outbox
            .since(mark.queued())
            .filter_map(|effect| match effect {
                Effect::Event(Event::Replication(ReplicationEvent::KeyChanged {
                    keyspace,
                    key,
                    new,
                    ..
                })) if [VARS_KEYSPACE, LWW_KEYSPACE, COUNTERS_KEYSPACE]
                    .contains(&keyspace.as_str()) =>
                {
                    // Only a declaration's bytes are needed: writes are read from the keyspace
                    // with their stamps.
                    let bytes = new.as_ref().filter(|_| keyspace == VARS_KEYSPACE).cloned();
                    Some((keyspace.clone(), key.clone(), bytes))
                }
                _ => None,
            })
            .collect();
        if changed.is_empty() {
            return;
        }
        for (keyspace, key, new) in changed {
            match (keyspace.as_str(), new) {
                (VARS_KEYSPACE, Some(bytes)) => {
                    self.vars.adopt(now, &key, &bytes);
                    self.feed_var_entries(now, &key);
                }
                (VARS_KEYSPACE, None) => {}
                _ => self.feed_var_entry(now, &keyspace, &key),
            }
        }
        self.deliver_vars(now, Outgoing::new());
    }

    /// Proposes `value` to replace version `expected` of variable `name`, decided within
    /// `timeout`; the outcome comes as [`VarsEvent::CasDone`] with the returned request number.
    ///
    /// [`VarsEvent::CasDone`]: crate::vars::VarsEvent::CasDone
    pub fn compare_and_set(
        &mut self,
        now: Instant,
        name: &str,
        expected: u64,
        value: VarValue,
        timeout: Duration,
    ) -> Result<u64, VarsError> {
        self.touch();
        self.with_vars(now, |vars, out| {
            vars.compare_and_set(now, name, expected, value, timeout, out)
        })
    }

    /// Moves `cas` or `coordinated` variable `name` to `acceptors`, decided by a majority of its
    /// current acceptors within `timeout` (see [`crate::vars::reconfigure`]); how it ended comes
    /// as [`VarsEvent::CasDone`] with the returned request number. Refused unless a majority
    /// of `acceptors` are among [`Self::alive_lives`] ([`VarsError::NotAlive`]).
    ///
    /// [`VarsEvent::CasDone`]: crate::vars::VarsEvent::CasDone
    pub fn change_acceptors(
        &mut self,
        now: Instant,
        name: &str,
        acceptors: BTreeSet<Life>,
        timeout: Duration,
    ) -> Result<u64, VarsError> {
        self.touch();
        let alive = self.alive_lives();
        self.with_vars(now, |vars, out| {
            vars.change_acceptors(now, name, (acceptors, &alive), timeout, out)
        })
    }

    /// Commits `value` as version `expected + 1` of `coordinated` variable `name`, decided like
    /// a compare-and-set within `timeout` (see [`Vars::commit`]): the path a coordination
    /// protocol's outcome takes. The outcome comes as [`VarsEvent::CasDone`].
    ///
    /// [`VarsEvent::CasDone`]: crate::vars::VarsEvent::CasDone
    pub fn commit_var(
        &mut self,
        now: Instant,
        name: &str,
        expected: u64,
        value: VarValue,
        timeout: Duration,
    ) -> Result<u64, VarsError> {
        self.touch();
        self.with_vars(now, |vars, out| {
            vars.commit(now, name, expected, value, timeout, out)
        })
    }

    /// Commits a session's whole `outcome` (writes and budget debits) to ledger `name` in one
    /// majority-decided step, once per session (see [`Vars::commit_outcome`]). The outcome
    /// comes as [`VarsEvent::CasDone`] with the returned request number.
    ///
    /// [`VarsEvent::CasDone`]: crate::vars::VarsEvent::CasDone
    pub fn commit_outcome(
        &mut self,
        now: Instant,
        name: &str,
        outcome: &Outcome,
        timeout: Duration,
    ) -> Result<u64, VarsError> {
        self.touch();
        self.with_vars(now, |vars, out| {
            vars.commit_outcome(now, name, outcome, timeout, out)
        })
    }

    /// The one path of every variables request that may send messages: runs `request` with an
    /// outbox, then delivers what it produced — even when it was refused, since a refused draw
    /// may still have asked for rights.
    fn with_vars<T>(
        &mut self,
        now: Instant,
        request: impl FnOnce(&mut Vars, &mut Outgoing) -> Result<T, VarsError>,
    ) -> Result<T, VarsError> {
        let mut out = Outgoing::new();
        let result = request(&mut self.vars, &mut out);
        self.deliver_vars(now, out);
        result
    }

    /// Writes `value` to `lww` variable `name` and replicates it (see [`Vars::set`]).
    pub fn set_var(&mut self, now: Instant, name: &str, value: VarValue) -> Result<(), VarsError> {
        self.touch();
        self.vars.set(name, value)?;
        self.deliver_vars(now, Outgoing::new());
        Ok(())
    }

    /// Draws `amount` units of counter `name` from this node's rights (see [`Vars::draw`]).
    pub fn draw(&mut self, now: Instant, name: &str, amount: u64) -> Result<(), VarsError> {
        self.touch();
        self.with_vars(now, |vars, out| vars.draw(now, name, amount, out))
    }

    /// Adds `amount` units to counter `name` as this node's rights (see [`Vars::refill`]).
    pub fn refill(&mut self, now: Instant, name: &str, amount: u64) -> Result<(), VarsError> {
        self.touch();
        self.vars.refill(now, name, amount)?;
        self.deliver_vars(now, Outgoing::new());
        Ok(())
    }

    /// Asks the node holding the most of counter `name`'s rights for `amount` of them.
    pub fn request_rights(
        &mut self,
        now: Instant,
        name: &str,
        amount: u64,
    ) -> Result<(), VarsError> {
        self.touch();
        self.with_vars(now, |vars, out| vars.request_rights(now, name, amount, out))
    }

    /// The variables machine, for queries.
    pub fn vars(&self) -> &Vars {
        &self.vars
    }

    /// This node's variables life and that of every member it sees alive: the acceptors a
    /// `cas` variable declared now would have.
    pub fn alive_lives(&self) -> BTreeSet<Life> {
        let alive = self.membership.alive();
        let lives = alive.map(|m| self.vars.life_of(m.id, m.generation));
        lives.chain([self.vars.me()]).collect()
    }

    /// Turns automatic re-seating of variables off gone acceptor lives on with `config`, or
    /// off with `None` (see [`crate::vars::reseat`]; on with its defaults unless set).
    pub fn set_vars_reseat(&mut self, config: Option<crate::vars::reseat::ReseatConfig>) {
        self.vars.set_reseat(config);
    }

    /// The placement machine, for queries (who owns what, what runs here).
    pub fn placement(&self) -> &Placement {
        &self.placement
    }

    /// Declares a workload for placement on this node (every node that may run it declares it
    /// the same); starts and stops come as [`Event::Placement`].
    pub fn declare_placement(
        &mut self,
        now: Instant,
        name: &str,
        spec: WorkloadSpec,
    ) -> Result<(), PlacementError> {
        self.touch();
        self.placement.declare(now, name, spec)?;
        self.deliver_placement(now);
        Ok(())
    }

    /// Removes a workload here: its instances here stop and are released.
    pub fn remove_placement(&mut self, now: Instant, name: &str) -> Result<(), PlacementError> {
        self.touch();
        self.placement.remove(now, name)?;
        self.deliver_placement(now);
        Ok(())
    }

    /// Routes `payload` by `key` to the instance of `workload` it maps to, wherever that
    /// runs; the outcome comes as a [`crate::placement::PlacementEvent::Routed`] event.
    pub fn route(
        &mut self,
        now: Instant,
        workload: &str,
        key: &[u8],
        payload: Vec<u8>,
        ttl: std::time::Duration,
    ) -> Result<RouteId, PlacementError> {
        self.touch();
        let id = self.placement.route(now, workload, key, payload, ttl)?;
        self.deliver_placement(now);
        Ok(id)
    }

    /// The state of an instance being handed over from here (after
    /// [`crate::placement::PlacementEvent::BeginHandoff`]).
    pub fn hand_off(
        &mut self,
        now: Instant,
        instance: &Instance,
        state: Vec<u8>,
    ) -> Result<(), PlacementError> {
        self.touch();
        let result = self.placement.hand_off(now, instance, state);
        self.deliver_placement(now);
        result
    }

    /// Gives placement the members whose view changed while handling the last input, as the
    /// view holds them now: O(changes), where handing it the whole view each time made a
    /// cluster's formation O(N²) per node.
    fn placement_view(&mut self, now: Instant, mark: &Mark) {
        let events = self.outbox.events_since(mark, Kind::Membership);
        if events == 0 {
            return;
        }
        // A sorted, deduplicated Vec gives the BTreeSet's order without its per-node allocations.
        let mut ids = Vec::with_capacity(events);
        for effect in self.outbox.since(mark.queued()) {
            if let Effect::Event(Event::Membership(event)) = effect {
                match event {
                    MembershipEvent::Up(v)
                    | MembershipEvent::Updated(v)
                    | MembershipEvent::Failed(v)
                    | MembershipEvent::Left(v)
                    | MembershipEvent::Removed(v) => ids.push(v.id),
                    MembershipEvent::Joined | MembershipEvent::Isolated => {}
                }
            }
        }
        ids.sort_unstable();
        ids.dedup();
        let changed: Vec<(NodeId, Option<Member>)> = ids
            .into_iter()
            .map(|node| {
                (
                    node,
                    self.membership.member(node).as_ref().map(placement_member),
                )
            })
            .collect();
        let own = self.own_candidate();
        self.placement.view_changed(now, own, &changed);
        self.deliver_placement(now);
        self.caches_view(now);
    }

    /// Our own life and tags, as placement sees them.
    fn own_candidate(&self) -> Candidate {
        let me = self.membership.me();
        Candidate {
            id: me.node,
            generation: me.generation,
            tags: self
                .membership
                .metadata_of(me.node)
                .map(|m| m.tags.clone())
                .unwrap_or_default(),
        }
    }

    /// Gives placement the whole current membership view.
    fn placement_view_now(&mut self, now: Instant) {
        let own = self.own_candidate();
        let members: Vec<Member> = self
            .membership
            .members()
            .map(|m| placement_member(&m))
            .collect();
        self.placement.update_view(now, own, &members);
        self.deliver_placement(now);
        self.caches_view(now);
    }

    /// Gives the caches the live members (ourselves included), when any cache is declared: a
    /// full list is O(N) per membership change, which placement's incremental view avoids, so
    /// a node without caches skips it and [`Self::declare_cache`] brings the view up to date.
    fn caches_view(&mut self, now: Instant) {
        if self.caches.names().next().is_none() {
            return;
        }
        let candidates = self.cache_candidates();
        self.caches.set_majority(self.sees_majority(&candidates));
        self.caches.update_view(now, candidates);
        self.deliver_caches(now);
    }

    /// Whether `alive` (ourselves included) holds a majority of placement's agreed membership:
    /// the caches' quorum rule counts the same members as placement's keep-majority.
    fn sees_majority(&self, alive: &[Candidate]) -> bool {
        let agreed = self.placement.agreed();
        let seen = alive.iter().filter(|c| agreed.contains_key(&c.id)).count();
        seen * 2 > agreed.len()
    }

    /// The live members, ourselves included, as the caches choose owners among them.
    fn cache_candidates(&self) -> Vec<Candidate> {
        let alive = self
            .membership
            .members()
            .filter(|m| m.state == MemberState::Alive);
        let mut candidates: Vec<Candidate> =
            alive.map(|m| placement_member(&m).candidate).collect();
        candidates.push(self.own_candidate());
        candidates
    }

    /// Sends placement's messages, reports its decisions and arms its timer; a leave that
    /// waited for handoffs goes on once they are done.
    fn deliver_placement(&mut self, now: Instant) {
        let coordination = self.placement.take_messages().into_iter();
        let coordination = coordination.map(|(to, payload)| (to, Channel::Coordination, payload));
        let bulk = self.placement.take_bulk_messages().into_iter();
        let bulk = bulk.map(|(to, payload)| (to, Channel::Bulk, payload));
        for (to, channel, payload) in coordination.chain(bulk) {
            if let Some(addr) = self.known_addr(to) {
                self.outbox.send(addr, channel, payload);
            }
        }
        if self.leave_after_handoffs && !self.placement.is_handing_off() {
            self.leave_after_handoffs = false;
            self.membership.leave(now, &mut self.outbox);
        }
        for event in self.placement.take_events() {
            self.outbox.event(Event::Placement(event));
        }
        let due = self.placement.poll_timeout();
        if let Some(at) = due.filter(|at| self.placement_timer.is_none_or(|armed| *at < armed)) {
            self.placement_timer = Some(at);
            self.outbox.timer(at, Timer::Placement);
        }
    }

    /// The caches, for queries.
    pub fn caches(&self) -> &Caches {
        &self.caches
    }

    /// Declares a cache here with the store its entries live in (see [`crate::cache`]).
    pub fn declare_cache(
        &mut self,
        now: Instant,
        settings: CacheSettings,
        store: std::sync::Arc<dyn Store>,
    ) -> Result<(), CacheError> {
        self.touch();
        let name = settings.name.clone();
        if self.caches.names().next().is_none() {
            // Without caches the view was not kept (`caches_view`); nothing depends on it yet.
            let candidates = self.cache_candidates();
            self.caches.set_majority(self.sees_majority(&candidates));
            self.caches.adopt_view(candidates);
        }
        self.caches.declare(now, settings, store)?;
        // A replicated cache takes up what its keyspace already holds.
        let keyspace = format!("{}{name}", crate::cache::KEYSPACE_PREFIX);
        let held: Vec<(String, Vec<u8>)> = self
            .replication
            .keyspace(&keyspace)
            .map(|k| k.iter().map(|(k, v)| (k.to_owned(), v.to_vec())).collect())
            .unwrap_or_default();
        for (key, value) in held {
            self.caches
                .replicated_changed(Instant::ZERO, &keyspace, &key, Some(&value));
        }
        Ok(())
    }

    /// Reads a cache (see [`Caches::get`]).
    pub fn cache_get(
        &mut self,
        now: Instant,
        name: &str,
        key: &[u8],
        within: Duration,
    ) -> Result<Started, CacheError> {
        self.touch();
        self.with_caches(now, |caches| caches.get(now, name, key, within))
    }

    /// Reads a cache or computes the value (see [`Caches::get_or_compute`]).
    pub fn cache_get_or_compute(
        &mut self,
        now: Instant,
        name: &str,
        key: &[u8],
        within: Duration,
    ) -> Result<Started, CacheError> {
        self.touch();
        self.with_caches(now, |caches| caches.get_or_compute(now, name, key, within))
    }

    /// Writes a cache entry (see [`Caches::put`]).
    pub fn cache_put(
        &mut self,
        now: Instant,
        name: &str,
        key: &[u8],
        value: Bytes,
        ttl: Option<Duration>,
    ) -> Result<(), CacheError> {
        self.touch();
        self.with_caches(now, |caches| caches.put(now, name, key, value, ttl))
    }

    /// Runs one call on the cache machine, then sends and reports what it produced.
    fn with_caches<T>(&mut self, now: Instant, call: impl FnOnce(&mut Caches) -> T) -> T {
        let result = call(&mut self.caches);
        self.deliver_caches(now);
        result
    }

    /// The outcome of a computation this node was granted (see [`Caches::computed`]).
    pub fn cache_computed(
        &mut self,
        now: Instant,
        req: u64,
        outcome: Result<(Bytes, Option<Duration>), CacheError>,
    ) {
        self.touch();
        self.caches.computed(now, req, outcome);
        self.deliver_caches(now);
    }

    /// Sends the caches' messages, writes their replicated entries, reports their events and
    /// arms their timer.
    fn deliver_caches(&mut self, now: Instant) {
        for (to, message) in self.caches.take_messages() {
            if let Some(addr) = self.known_addr(to) {
                self.outbox
                    .send(addr, Channel::Coordination, crate::cache::encode(&message));
            }
        }
        for write in self.caches.take_publications() {
            // A refused write (a keyspace limit) is counted by replication; the entry stays
            // on this node only.
            let _ = self.write_replicated(now, write);
        }
        for event in self.caches.take_events() {
            self.outbox.event(Event::Cache(event));
        }
        let due = self.caches.poll_timeout();
        if let Some(at) = due.filter(|at| self.cache_timer.is_none_or(|armed| *at < armed)) {
            self.cache_timer = Some(at);
            self.outbox.timer(at, Timer::Cache);
        }
    }

    /// Takes up replicated caches' entries that changed while handling the last input.
    fn adopt_cache_entries(&mut self, now: Instant, mark: &Mark) {
        if self.outbox.events_since(mark, Kind::Replication) == 0 {
            return;
        }
        let changed: Vec<(String, String, Option<Vec<u8>>)> = self
            .outbox
            .since(mark.queued())
            .filter_map(|effect| match effect {
                Effect::Event(Event::Replication(ReplicationEvent::KeyChanged {
                    keyspace,
                    key,
                    new,
                    ..
                })) if keyspace.starts_with(crate::cache::KEYSPACE_PREFIX) => {
                    Some((keyspace.clone(), key.clone(), new.clone()))
                }
                _ => None,
            })
            .collect();
        for (keyspace, key, new) in changed {
            self.caches
                .replicated_changed(now, &keyspace, &key, new.as_deref());
        }
    }

    fn command(&mut self, now: Instant, command: Command) {
        match command {
            Command::Join(seed) => self.membership.join(now, seed, &mut self.outbox),
            Command::Leave => {
                // Hand over first: placement releases what it ran before we stop answering,
                // and the membership hears of the leave once handoffs are done (registrars
                // stop counting a member that left, so its claims would no longer hold).
                self.leave_after_handoffs = true;
                self.placement.leave(now);
                self.deliver_placement(now);
            }
            Command::SetMetadata(metadata) => {
                self.membership.set_metadata(metadata, &mut self.outbox);
                // Placement reads our tags on a view change only, and ours changes no view
                // here; peers place by the new tags as soon as they hear them.
                let own = self.own_candidate();
                self.placement.view_changed(now, own, &[]);
                self.deliver_placement(now);
            }
        }
    }
}

/// A member of our view as placement sees it.
fn placement_member(m: &MemberView) -> Member {
    Member {
        candidate: Candidate {
            id: m.id,
            generation: m.generation,
            tags: m
                .metadata
                .as_ref()
                .map(|d| d.tags.clone())
                .unwrap_or_default(),
        },
        state: m.state,
        since: m.since,
    }
}

/// Mixed into the core's seed so replication's random choices are independent of membership's.
const REPLICATION_SEED_SALT: u64 = 0x5EED_0F4E_911C_A7E5;

/// Our identity as a writer of replicated ops.
fn origin(me: &MemberId) -> Origin {
    Origin {
        node: foundation_crdt::NodeId::from_u128(me.node.as_u128()),
        generation: me.generation,
    }
}

/// A core of its own (node 1 at 127.0.0.1:7000, development timings), for tests.
#[cfg(test)]
pub(crate) fn lone_core() -> Core {
    let config = CoreConfig {
        me: MemberId {
            node: NodeId::from_u128(1),
            addr: "127.0.0.1:7000".parse().expect("address"),
            generation: 1,
        },
        membership: MembershipConfig::development(),
        metadata: NodeMetadata::default(),
        seed: 1,
    };
    Core::new(config, Instant::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{membership, replication};

    /// Machines encode their own variant of the envelope by tag; what they write must be
    /// exactly what the core decodes.
    #[test]
    fn each_machine_encodes_its_variant_of_the_core_envelope() {
        let leaving = MembershipMessage::Leaving(MemberId {
            node: NodeId::from_u128(7),
            addr: "127.0.0.1:7000".parse().expect("address"),
            generation: 3,
        });
        let ack = ReplicationMessage::Ack {
            keyspace: "ks".into(),
            origin: origin(&MemberId {
                node: NodeId::from_u128(9),
                addr: "127.0.0.1:7001".parse().expect("address"),
                generation: 1,
            }),
            seq: 42,
        };
        let whole = |m: CoreMessage| postcard::to_stdvec(&m).expect("encodes");
        assert_eq!(
            membership::encode(leaving.clone()).as_ref(),
            whole(CoreMessage::Membership(leaving)).as_slice()
        );
        assert_eq!(
            replication::encode(ack.clone()).as_ref(),
            whole(CoreMessage::Replication(ack)).as_slice()
        );
        let step = VarsMessage::Cas {
            name: "x".into(),
            spec: 7,
            from: Life {
                node: NodeId::from_u128(9),
                generation: 1,
            },
            message: foundation_agents::cas::CasMessage::Prepare {
                slot: 1,
                ballot: foundation_agents::cas::Ballot {
                    round: 1,
                    proposer: Life {
                        node: NodeId::from_u128(9),
                        generation: 1,
                    },
                },
            },
        };
        assert_eq!(
            crate::vars::encode(&step).as_ref(),
            whole(CoreMessage::Vars(step)).as_slice()
        );
    }

    /// Our own tags count for placement as soon as we set them, not at the next membership
    /// change (in a quiet cluster there may be none for a long while, and peers already
    /// place by the new tags).
    #[test]
    fn new_own_tags_place_here_at_once() {
        let mut core = lone_core();
        let now = Instant::ZERO;
        let spec = WorkloadSpec {
            require: [("zone".to_owned(), "eu".to_owned())].into(),
            ..WorkloadSpec::replicated()
        };
        core.declare_placement(now, "edge", spec).expect("declared");
        let instance = crate::placement::Instance::new("edge", 0);
        assert!(!core.placement().runs_here(&instance), "untagged");
        let mut metadata = NodeMetadata::default();
        metadata.tags.insert("zone".to_owned(), "eu".to_owned());
        core.handle(now, Input::Command(Command::SetMetadata(metadata)));
        assert!(core.placement().runs_here(&instance), "tagged now");
        core.handle(
            now,
            Input::Command(Command::SetMetadata(NodeMetadata::default())),
        );
        assert!(!core.placement().runs_here(&instance), "untagged again");
    }

    /// A SWIM datagram that foca refuses: it reaches the membership alone and emits no event.
    fn swim_noise() -> Input {
        Input::Received {
            from: NodeId::from_u128(2),
            channel: Channel::Membership,
            payload: Bytes::from_static(&[0xff; 8]),
        }
    }

    /// Settling skips persistence and the reconcile timer after a SWIM step only while
    /// nothing else reached the core since it last found them idle: a write between two SWIM
    /// datagrams that leaves the reconcile timer wanted has it started at the next one.
    #[test]
    fn a_swim_step_after_a_call_settles_in_full() {
        let mut core = lone_core();
        let now = Instant::ZERO;
        core.handle(now, swim_noise());
        let idle = core.touched();
        core.handle(now, swim_noise());
        assert_eq!(core.touched(), idle, "settled as idle, and still is");
        let write = Write {
            keyspace: crate::ephemeral::SERVICES_KEYSPACE.into(),
            key: "billing".into(),
            value: Some(vec![1]),
        };
        core.write(now, write).expect("written");
        let written = core.touched();
        core.handle(now, swim_noise());
        assert_eq!(core.touched(), written + 1, "the reconcile timer started");
        core.handle(now, swim_noise());
        assert_eq!(core.touched(), written + 1, "idle again");
    }

    /// The checker skips the machines other than the membership only while nothing but SWIM
    /// reached the core since its last passing check: any other input or call is counted, so
    /// a machine it breaks is checked, and caught, after that very step.
    #[test]
    fn only_swim_steps_leave_the_other_machines_unchecked() {
        let mut core = lone_core();
        let now = Instant::ZERO;
        let start = core.touched();
        core.handle(now, swim_noise());
        assert_eq!(core.touched(), start, "a SWIM datagram without events");
        core.handle(now, Input::Persisted { upto: 0 });
        assert_eq!(core.touched(), start + 1, "any other input");
        let counter = VarSpec {
            ty: foundation_agents::variable::VarType::Int {
                min: 0,
                max: i64::MAX,
            },
            policy: foundation_agents::variable::Policy::Counter,
            initial: VarValue::Int(5),
            acceptors: [Life {
                node: NodeId::from_u128(1),
                generation: 1,
            }]
            .into(),
        };
        core.declare_var(now, "tokens", counter).expect("declared");
        assert!(core.touched() > start + 1, "a call from the application");
        core.draw(now, "tokens", 1).expect("drawn");
        assert!(core.vars_timer.is_some(), "the draw's publication armed");
        let passed = core.touched();
        let cursor = core.membership().changes();
        assert_eq!(core.invariants_since(cursor, Some(passed)), Ok(()));

        // Broken behind the counter's back (no step can do this; in debug builds the next
        // step's own check would panic): a check that saw the same count skips the variables...
        core.vars_timer = None;
        assert_eq!(core.invariants_since(cursor, Some(passed)), Ok(()));
        // ...a check that did not pass does not, nor one after any count (what every step
        // that could reach them adds, as above).
        assert!(core.invariants_since(cursor, None).is_err());
        core.touch();
        let broken = core.invariants_since(cursor, Some(passed));
        assert!(
            broken.is_err_and(|e| e.contains("variables")),
            "caught after that step"
        );
    }
}
