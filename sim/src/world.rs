//! `World`: many node cores on one virtual clock, a seeded network and one event queue, all on
//! one thread.
//!
//! Everything random comes from the world's seed: node ids, generations, each core's seed, and
//! every network draw. Events are ordered by time, then by the order they were queued, so two
//! events due at the same microsecond run in that order — the same order on every run.
//!
//! A driver (the scenario runner) calls [`World::step`] until [`World::next_time`] passes where
//! it wants to stop, applies faults with [`World::apply`], and reads nodes and the membership
//! events they emitted ([`World::take_observed`]) to check invariants.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{Ipv4Addr, SocketAddr};

use bytes::Bytes;
use foundation_core::effects::{Effect, Event};
use foundation_core::membership::{
    MemberId, MemberView, MembershipConfig, MembershipEvent, NodeMetadata, SharedMetadata,
};
use foundation_core::node::{Command, Core, CoreConfig, Input};
use foundation_core::replication::{
    AckTicket, Durability, Envelope, Op, Origin, ReplicationConfig, ReplicationEvent, Write,
};
use foundation_core::storage::Batch;
use foundation_core::time::Instant;
use foundation_core::vars::VarsEvent;
use foundation_core::{Channel, ChannelLimits, NodeAddr, NodeId};
use foundation_crdt::{LwwEntry, Timestamp};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::agents::{AgentEvent, AgentsLayer};
use crate::clock::NodeClock;
use crate::network::{BlockRule, LinkModel, Network};
use crate::pubsub::{PubSubEvent, PubSubLayer};
use crate::queue::{EventQueue, Queued};
use crate::rpc::{RpcEvent, RpcLayer};
use crate::stamps::{self, LetOut};
use crate::storage::{DiskTotals, NodeDisk, StorageConfig};
use crate::trace::{write_stamp, Fnv64, Trace};
use crate::writes::{self, AckProgress, ReplicationTotals, Workload, WriteRecord, WriteRequest};

/// Datagrams a stalled node's socket buffer holds; later ones are dropped, as the kernel would
/// (the transport's own datagram queue is 256 deep).
pub const STALL_DATAGRAMS_MAX: usize = 256;
/// The port every simulated node listens on (addresses are never opened as sockets).
pub const SIM_PORT: u16 = 7946;
/// How long the runtime's driver waits before trying its seeds again while its node knows no
/// live member (`JOIN_RETRY_MIN` in `engine/src/runtime/driver.rs`).
const JOIN_RETRY_US: u64 = 3_000_000;
/// How often the runtime's static seeds are reported again (`StaticSeeds::DEFAULT_INTERVAL`);
/// the driver joins through each one it does not see alive.
const SEED_ROUND_US: u64 = 30_000_000;
/// The transport adds one version byte to every membership datagram.
const DATAGRAM_ENVELOPE_BYTES: usize = 1;

/// How to build a world.
#[derive(Clone, Debug)]
pub struct WorldConfig {
    /// Seed of everything random.
    pub seed: u64,
    /// Node slots; every slot starts with a running core that has not joined anyone.
    pub nodes: usize,
    /// Membership settings of every core.
    pub membership: MembershipConfig,
    /// How every link behaves at first.
    pub network: LinkModel,
    /// Keep trace lines (not only their hash).
    pub keep_trace: bool,
}

impl WorldConfig {
    /// `nodes` nodes from `seed` with the development membership profile on LAN links,
    /// keeping only the trace's hash: the world most tests start from.
    pub fn lan(seed: u64, nodes: usize) -> Self {
        Self {
            seed,
            nodes,
            membership: MembershipConfig::development(),
            network: LinkModel::lan(),
            keep_trace: false,
        }
    }
}

/// Where a node slot is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeStatus {
    /// Processing inputs.
    Running,
    /// Running, but not processing anything until its stall ends.
    Stalled,
    /// Crashed or shut down: no core.
    Down,
}

/// What one node sent and received.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct NodeTraffic {
    /// Membership datagrams sent.
    pub datagrams_sent: u64,
    /// Their bytes, with the transport's version byte.
    pub datagram_bytes_sent: u64,
    /// Stream messages sent.
    pub stream_messages_sent: u64,
    /// Their bytes (payload only).
    pub stream_bytes_sent: u64,
    /// Inputs received from peers.
    pub messages_received: u64,
    /// Payload bytes received on the replication and bulk channels (ops, digests, states).
    pub replication_bytes_received: u64,
    /// Sends refused because they exceeded the transport's frame limit for their channel.
    pub oversized: u64,
    /// Sends to an address where no node with that id listens.
    pub misaddressed: u64,
}

/// One node slot: an address that keeps its place while the node on it crashes and restarts.
pub struct SimNode {
    addr: SocketAddr,
    id: NodeId,
    generation: u64,
    /// Boxed: a core is kilobytes, and the slot's own fields (clock, id, life), read on every
    /// event, then share a few cache lines instead of sitting at the far end of it.
    core: Option<Box<Core>>,
    life: u64,
    stalled_until: Option<u64>,
    held: VecDeque<Pending>,
    /// World instants of the wake-ups queued for this life, so one deadline is queued once: a
    /// handful, looked up on every event, so a plain vector (a tree's search cost more).
    wakes: Vec<u64>,
    clock: NodeClock,
    traffic: NodeTraffic,
    stalls: Vec<(u64, u64)>,
    started_us: u64,
    leaving_us: Option<u64>,
    /// Lives that ended, with when (world µs).
    ended: Vec<(u64, u64)>,
    /// Its disk, when the scenario gives nodes storage; it outlives the cores.
    disk: Option<NodeDisk>,
}

impl SimNode {
    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its current node id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The generation the running core goes by (it may renew it after being declared failed).
    pub fn generation(&self) -> u64 {
        self.core
            .as_ref()
            .map_or(self.generation, |c| c.membership().me().generation)
    }

    /// Its status.
    pub fn status(&self) -> NodeStatus {
        match (&self.core, self.stalled_until) {
            (None, _) => NodeStatus::Down,
            (Some(_), Some(_)) => NodeStatus::Stalled,
            (Some(_), None) => NodeStatus::Running,
        }
    }

    /// Whether a core is running (stalled or not).
    pub fn is_up(&self) -> bool {
        self.core.is_some()
    }

    /// Its core, unless it is down.
    pub fn core(&self) -> Option<&Core> {
        self.core.as_deref()
    }

    /// What it sent and received.
    pub fn traffic(&self) -> &NodeTraffic {
        &self.traffic
    }

    /// Every stall of this slot, as world-time microsecond spans.
    pub fn stalls(&self) -> &[(u64, u64)] {
        &self.stalls
    }

    /// When the current core started, in world microseconds.
    pub fn started_us(&self) -> u64 {
        self.started_us
    }

    /// When the current core was told to leave, if it was.
    pub fn leaving_us(&self) -> Option<u64> {
        self.leaving_us
    }

    /// Which life of the slot this is: it grows on every start and every crash, so a
    /// `(slot, life)` pair names one run of one core.
    pub fn life(&self) -> u64 {
        self.life
    }

    /// Whether the core of `life` is the one running now.
    pub fn is_up_in(&self, life: u64) -> bool {
        self.core.is_some() && self.life == life
    }

    /// When the core of `life` stopped (crashed, or shut down after leaving), in world µs.
    pub fn life_ended_us(&self, life: u64) -> Option<u64> {
        self.ended
            .iter()
            .find(|(l, _)| *l == life)
            .map(|(_, at)| *at)
    }

    /// Whether a core runs now that took up what life `life` of this slot made durable: the
    /// slot has a disk, and it was not replaced since (a new identity is a new machine).
    pub fn up_with_disk_of(&self, life: u64) -> bool {
        self.core.is_some() && self.disk.as_ref().is_some_and(|d| d.holds_life(life))
    }

    fn node_addr(&self) -> NodeAddr {
        NodeAddr {
            id: self.id,
            addr: self.addr,
        }
    }
}

/// A membership event a node emitted.
#[derive(Clone, Debug)]
pub struct Observed {
    /// World time.
    pub at: Instant,
    /// The slot of the node that emitted it.
    pub observer: usize,
    /// The event.
    pub event: MembershipEvent,
}

/// A queued event. The queue holds hundreds of thousands while a large cluster forms, so the
/// frequent kinds (datagrams, stream messages, wake-ups) stay small — slots as `u32` — and the
/// rare large ones are boxed: 88 bytes an event, not 128.
#[derive(Clone, Debug)]
enum Pending {
    Datagram {
        to: Slot,
        from: Slot,
        from_id: NodeId,
        payload: Bytes,
        /// The payload's trace hash, taken when it was sent (a push-pull is tens of KB).
        hash: u32,
    },
    Stream {
        to: Slot,
        from: Slot,
        from_id: NodeId,
        channel: Channel,
        payload: Bytes,
        hash: u32,
        connection: u64,
        lives: (u64, u64),
    },
    /// The node's core has a timer due by now (its `poll_timeout`, in world time).
    Wake {
        node: usize,
        life: u64,
        at: u64,
    },
    Command {
        node: usize,
        life: u64,
        request: Box<AppRequest>,
    },
    Write {
        node: usize,
        life: u64,
        id: u64,
        write: Box<Write>,
        acked: Option<std::time::Duration>,
    },
    /// The next write of the workload with this index.
    Workload {
        index: usize,
    },
    /// The slot's disk has room again (its disk outlives its cores: no life).
    DiskFree {
        node: usize,
    },
    Resume {
        node: usize,
        life: u64,
    },
    /// The host of `about` answered a datagram from `to` with ICMP port unreachable (or a
    /// forger says so): the sender's transport reports the port closed.
    PortClosed {
        to: Slot,
        about: NodeId,
    },
    /// A storage batch completes: synced, or refused when it was written.
    Synced {
        node: usize,
        life: u64,
        seq: u64,
        written: bool,
    },
    Shutdown {
        node: usize,
        life: u64,
    },
    /// RPC traffic between the nodes' applications.
    Rpc(Box<RpcEvent>),
    /// Pub/sub traffic between the nodes' applications.
    PubSub(Box<PubSubEvent>),
    /// The nodes' agents: their messages, work, failures and supervisors' timers.
    Agents(Box<AgentEvent>),
}

/// A node slot in a queued event.
type Slot = u32;

/// `slot` as a queued event holds it.
fn slot32(slot: usize) -> Slot {
    Slot::try_from(slot).expect("fewer than 2³² node slots")
}

impl Pending {
    /// The slot it is for; `None` for the world's own events.
    fn node(&self) -> Option<usize> {
        match self {
            Pending::Datagram { to, .. } | Pending::Stream { to, .. } => Some(*to as usize),
            Pending::PortClosed { to, .. } => Some(*to as usize),
            Pending::Wake { node, .. } | Pending::Command { node, .. } => Some(*node),
            Pending::Resume { node, .. } | Pending::Shutdown { node, .. } => Some(*node),
            Pending::Write { node, .. } | Pending::Synced { node, .. } => Some(*node),
            Pending::Workload { .. } | Pending::DiskFree { .. } => None,
            Pending::Rpc(event) => event.slot(),
            Pending::PubSub(event) => event.slot(),
            Pending::Agents(event) => event.slot(),
        }
    }
}

/// What the application on a node asks of its core at a queued time.
#[derive(Clone, Debug)]
pub enum AppRequest {
    /// A command (join, leave, metadata).
    Command(Command),
    /// A write to a replicated keyspace, outside the world's write log (benchmarks).
    Write(Write),
    /// Own (`Some`) or stop owning (`None`) an ephemeral entry.
    Ephemeral {
        /// The ephemeral keyspace.
        keyspace: String,
        /// The entry's name.
        name: String,
        /// Its value.
        value: Option<Vec<u8>>,
    },
    /// The runtime's join retry (see `World::join_at_start`): join through a seed if the core
    /// knows no live member, and look again later.
    JoinWhileAlone,
    /// The runtime's static seeds reported again (see `World::seed_round`).
    SeedRound,
    /// The state of a placed instance being handed over (see [`crate::placement`]).
    HandOff {
        /// The instance.
        instance: foundation_core::placement::Instance,
        /// Its state.
        state: Vec<u8>,
    },
}

/// The simulated cluster.
pub struct World {
    now_us: u64,
    nodes: Vec<SimNode>,
    /// Each slot's node id, as `nodes` holds it, in 16 bytes a slot: [`World::listening`]
    /// checks one for every send and member event, and reading it from the slot itself
    /// missed cache once each (a slot is hundreds of bytes; at N=1000, 40 % of the mass
    /// join's `drain`).
    slot_ids: Vec<NodeId>,
    by_id: BTreeMap<NodeId, usize>,
    queue: EventQueue,
    pending: Vec<Option<Pending>>,
    free: Vec<usize>,
    rng: StdRng,
    network: Network,
    membership: MembershipConfig,
    /// Metadata values the cores share instead of each holding its own copy of every
    /// member's (memory only: see `SharedMetadata`).
    shared_metadata: SharedMetadata,
    limits: ChannelLimits,
    trace: Trace,
    observed: Vec<Observed>,
    /// Member-event lines' tails, by the member's slot.
    member_texts: MemberTexts,
    /// Variables events, with the slot that emitted them, since the last take.
    vars_events: Vec<(usize, VarsEvent)>,
    /// Cache events since the last take: (world µs, slot, event).
    cache_events: Vec<(u64, usize, foundation_core::cache::CacheEvent)>,
    /// Ops of their running lives the nodes sent since the last take, kept only for a driver
    /// that takes them ([`World::keep_let_out`]).
    let_out: Option<Vec<LetOut>>,
    /// The sender, hash and length of the last payload read for `let_out`: a push goes to
    /// every member as one payload, read once.
    let_out_last: (usize, u32, usize),
    topology: Vec<(u64, Vec<BlockRule>)>,
    replication: Option<ReplicationConfig>,
    storage: Option<StorageConfig>,
    /// Whether a crash leaves the node's host up, answering datagrams to it with ICMP port
    /// unreachable (a killed process) rather than silence (the host lost with it).
    hosts_survive_crashes: bool,
    /// Whether a restarted node keeps the runtime's seed retry for its whole life.
    join_retry: bool,
    writes: WriteLog,
    /// What each slot's application registers in the service registry.
    pub(crate) registrations: crate::services::Registrations,
    /// Placed workloads every node declares, and the decisions the cores made.
    pub(crate) placements: crate::placement::Placements,
    /// The applications' calls to each other.
    pub(crate) rpc: RpcLayer,
    /// The applications' subscriptions and publications.
    pub(crate) pubsub: PubSubLayer,
    /// Each node's services directory, kept from its core's changes.
    pub(crate) directories: crate::directories::Directories,
    /// The applications' agents and their messages.
    pub(crate) agents: AgentsLayer,
}

/// What the world wrote and what replication did, beyond each core's own counters.
#[derive(Default)]
struct WriteLog {
    /// Every write a core applied, in order.
    records: Vec<WriteRecord>,
    /// `(slot, life, keyspace, seq)` to the record, for acks.
    by_seq: BTreeMap<(Origin, String, u64), usize>,
    /// Writes issued so far (applied, refused, or lost with their node).
    issued: u64,
    /// Writes a core refused.
    refused: u64,
    /// Running workloads: the workload, its slots, and when it ends (world µs).
    workloads: Vec<(Workload, Vec<usize>, u64)>,
    /// Counters of cores that are gone.
    gone: ReplicationTotals,
    /// The life `(slot, life)` whose stream message the core being stepped is handling: an
    /// ack event it emits came from that member.
    sender: Option<(usize, u64)>,
}

impl World {
    /// A world of `config.nodes` fresh cores at time zero.
    pub fn new(config: WorldConfig) -> Self {
        let mut world = World {
            now_us: 0,
            nodes: Vec::with_capacity(config.nodes),
            slot_ids: Vec::with_capacity(config.nodes),
            by_id: BTreeMap::new(),
            queue: EventQueue::default(),
            pending: Vec::new(),
            free: Vec::new(),
            rng: StdRng::seed_from_u64(config.seed),
            network: Network::new(config.network),
            membership: config.membership,
            shared_metadata: SharedMetadata::default(),
            limits: ChannelLimits::default(),
            trace: Trace::new(config.keep_trace),
            observed: Vec::new(),
            member_texts: MemberTexts::default(),
            vars_events: Vec::new(),
            cache_events: Vec::new(),
            let_out: None,
            let_out_last: (usize::MAX, 0, 0),
            topology: vec![(0, Vec::new())],
            replication: None,
            storage: None,
            hosts_survive_crashes: false,
            join_retry: false,
            writes: WriteLog::default(),
            registrations: Default::default(),
            placements: Default::default(),
            rpc: RpcLayer::default(),
            pubsub: PubSubLayer::default(),
            directories: Default::default(),
            agents: AgentsLayer::default(),
        };
        for slot in 0..config.nodes {
            world.add_slot(slot);
        }
        for slot in 0..config.nodes {
            let generation = world.rng.gen_range(1..1 << 20);
            world.start(slot, generation);
        }
        world
    }

    /// World time.
    pub fn now(&self) -> Instant {
        Instant::from_elapsed(std::time::Duration::from_micros(self.now_us))
    }

    /// World time in microseconds.
    pub fn now_us(&self) -> u64 {
        self.now_us
    }

    /// Node slots.
    pub fn nodes(&self) -> &[SimNode] {
        &self.nodes
    }

    /// One slot.
    pub fn node(&self, slot: usize) -> &SimNode {
        &self.nodes[slot]
    }

    /// The slot a node id lives (or lived) in.
    pub fn slot_of(&self, id: NodeId) -> Option<usize> {
        self.by_id.get(&id).copied()
    }

    /// The slot whose current node has `id`: not one that ran it in an earlier life. The
    /// transport dials an address and checks the node id of the peer that answers (mutual TLS),
    /// so a message for a replaced node never reaches the node that now has its address.
    pub fn slot_hosting(&self, id: NodeId) -> Option<usize> {
        self.slot_of(id).filter(|&slot| self.nodes[slot].id() == id)
    }

    /// The network.
    pub fn network(&self) -> &Network {
        &self.network
    }

    /// Every partition layout the run went through: (world µs it started, its block rules).
    pub fn topology_history(&self) -> &[(u64, Vec<BlockRule>)] {
        &self.topology
    }

    /// The trace so far.
    pub fn trace(&self) -> &Trace {
        &self.trace
    }

    /// The trace, to keep after the world is gone.
    pub fn take_trace(&mut self) -> Trace {
        std::mem::take(&mut self.trace)
    }

    /// Whether membership events were emitted since the last [`Self::take_observed`].
    pub fn has_observed(&self) -> bool {
        !self.observed.is_empty()
    }

    /// Membership events emitted since the last call.
    pub fn take_observed(&mut self) -> Vec<Observed> {
        std::mem::take(&mut self.observed)
    }

    /// [`Self::take_observed`] into `into` (emptied), whose memory the next events reuse: a
    /// mass join emits one per member learnt, and a new vector each step grew to them again.
    pub fn swap_observed(&mut self, into: &mut Vec<Observed>) {
        into.clear();
        std::mem::swap(&mut self.observed, into);
    }

    /// Keeps the ops of their running lives that nodes send from now on, for
    /// [`Self::swap_let_out`]: a driver that never takes them would keep them all.
    pub fn keep_let_out(&mut self) {
        self.let_out.get_or_insert_with(Vec::new);
    }

    /// Whether nodes sent ops of their running lives since the last [`Self::swap_let_out`].
    pub fn has_let_out(&self) -> bool {
        self.let_out.as_ref().is_some_and(|l| !l.is_empty())
    }

    /// The ops of their running lives nodes sent since the last call (into `into`, emptied,
    /// whose memory the next ones reuse), in the order they were sent.
    pub fn swap_let_out(&mut self, into: &mut Vec<LetOut>) {
        into.clear();
        if let Some(kept) = &mut self.let_out {
            std::mem::swap(kept, into);
        }
    }

    /// Variables events emitted since the last call, with the slot of the node that emitted
    /// each.
    pub fn take_vars_events(&mut self) -> Vec<(usize, VarsEvent)> {
        std::mem::take(&mut self.vars_events)
    }

    /// Cache events emitted since the last call: (world µs, slot, event).
    pub fn take_cache_events(&mut self) -> Vec<(u64, usize, foundation_core::cache::CacheEvent)> {
        std::mem::take(&mut self.cache_events)
    }

    /// Runs `act` on the core in `slot` at its local now, then carries out what it queued.
    /// `None` when the node is down.
    pub fn with_core<R>(
        &mut self,
        slot: usize,
        act: impl FnOnce(&mut Core, Instant) -> R,
    ) -> Option<R> {
        let node = &mut self.nodes[slot];
        let local = node.clock.local(self.now_us);
        let result = act(node.core.as_deref_mut()?, local);
        self.drain(slot);
        Some(result)
    }

    /// The time on the clock of the node in `slot` now (its own, skewed clock), read without
    /// moving it.
    pub fn local_time(&self, slot: usize) -> Instant {
        self.nodes[slot].clock.clone().local(self.now_us)
    }

    /// When the next event is due, if any.
    pub fn next_time(&self) -> Option<u64> {
        self.queue.peek_at()
    }

    /// Moves the clock forward to `us` (never back) without running anything.
    pub fn advance_to(&mut self, us: u64) {
        self.now_us = self.now_us.max(us);
    }

    /// Runs the next event. Returns the slot whose core it reached, if it reached one.
    pub fn step(&mut self) -> Option<usize> {
        let queued = self.queue.pop()?;
        self.now_us = self.now_us.max(queued.at);
        let what = self.pending[queued.slot].take()?;
        self.free.push(queued.slot);
        self.dispatch(what)
    }

    /// Gives every core these replication settings: the running ones now (their replicated state
    /// is reset, so call it before anything is written) and every core started later.
    pub fn set_replication(&mut self, config: ReplicationConfig) {
        for slot in 0..self.nodes.len() {
            let seed = self.rng.gen::<u64>();
            if let Some(core) = self.nodes[slot].core.take() {
                let core = (*core).with_replication(config.clone(), seed);
                self.nodes[slot].core = Some(Box::new(core));
                self.take_up_disk(slot);
            }
        }
        self.replication = Some(config);
    }

    /// Every node does what the runtime's driver does all its life: every `JOIN_RETRY`, if its
    /// core knows no live member, join through a seed. Off by default: the reference traces
    /// predate it, and only a node restarted into a cut with nobody on its side ever needed it
    /// there; the `chaos` scenario turns it on (a node that joined through the one node on its
    /// side of a one-way cut, which then crashed, was left alone after the heal; and two nodes
    /// that never restarted, each left alone by a cut, stayed alone after the heal — foca stops
    /// announcing to members it holds down once it has no live member, so only the driver's
    /// seeds bring such a node back: seed 41 at 5 nodes).
    pub fn set_join_retry(&mut self, on: bool) {
        self.join_retry = on;
    }

    /// Crashes from now on kill only the node's process: its host answers datagrams to it with
    /// ICMP port unreachable, which reaches the sender's core as [`Input::PortClosed`].
    pub fn set_hosts_survive_crashes(&mut self, on: bool) {
        self.hosts_survive_crashes = on;
    }

    /// Every running node but `slot` is told `slot`'s port is closed, as a forged ICMP error
    /// would (its core must check before it believes it).
    pub fn forge_port_closed(&mut self, slot: usize) {
        let about = self.nodes[slot].id;
        for to in (0..self.nodes.len()).filter(|&to| to != slot) {
            let to = slot32(to);
            self.push(self.now_us, Pending::PortClosed { to, about });
        }
    }

    /// Gives every node slot a disk with these settings, and has every running core persist
    /// to it from now on (call after [`World::set_replication`], before anything is written).
    pub fn set_storage(&mut self, config: StorageConfig) {
        for node in &mut self.nodes {
            node.disk = Some(NodeDisk::new(&config, 0));
        }
        self.storage = Some(config);
        for slot in 0..self.nodes.len() {
            self.take_up_disk(slot);
            self.drain(slot);
        }
    }

    /// The nodes' storage, if they have any.
    pub fn storage(&self) -> Option<&StorageConfig> {
        self.storage.as_ref()
    }

    /// What every disk did so far.
    pub fn disk_totals(&self) -> DiskTotals {
        let mut totals = DiskTotals::default();
        for disk in self.nodes.iter().filter_map(|n| n.disk.as_ref()) {
            totals.add(disk.totals());
        }
        totals
    }

    /// Queues a command for the node in `slot`, `after_us` from now.
    pub fn command_after(&mut self, slot: usize, after_us: u64, command: Command) {
        self.request_after(slot, after_us, AppRequest::Command(command));
    }

    /// Queues what the application on `slot` asks of its core, `after_us` from now (dropped if
    /// the node's life ends first).
    pub fn request_after(&mut self, slot: usize, after_us: u64, request: AppRequest) {
        let life = self.nodes[slot].life;
        self.push(
            self.now_us + after_us,
            Pending::Command {
                node: slot,
                life,
                request: Box::new(request),
            },
        );
    }

    /// Has a (re)started `slot` join the cluster. Every node's seed list is the whole cluster,
    /// and the first one up and responsive answers: a running node on `slot`'s side of every
    /// partition. With none there (a cut leaves `slot` alone), the runtime's driver tries its
    /// seeds again every `JOIN_RETRY` while its core knows no live member; joining across the
    /// cut once, as the simulator did, stranded the node past the heal, since nobody knows its
    /// new life (`--scenario chaos` seed 18, `scenarios/restart-inside-partition.toml`). With
    /// no node running at all, the others will join this one.
    pub(crate) fn join_at_start(&mut self, slot: usize) {
        let seed = self.reachable_seed(slot);
        if let Some(seed) = seed {
            self.join_through(slot, seed);
        }
        let others = (0..self.nodes.len()).any(|s| s != slot && self.running(s));
        if self.join_retry {
            self.keep_joining_while_alone(slot);
        } else if seed.is_none() && others {
            self.request_after(slot, JOIN_RETRY_US, AppRequest::JoinWhileAlone);
        }
    }

    fn join_through(&mut self, slot: usize, seed: usize) {
        let seed = self.node_addr(seed);
        self.command_after(slot, 0, Command::Join(seed));
    }

    fn running(&self, slot: usize) -> bool {
        self.nodes[slot].status() == NodeStatus::Running
    }

    /// The first running node other than `slot` with the links both ways open.
    fn reachable_seed(&self, slot: usize) -> Option<usize> {
        let open = |s: &usize| !self.network.blocked(slot, *s) && !self.network.blocked(*s, slot);
        (0..self.nodes.len())
            .filter(|&s| s != slot && self.running(s))
            .find(open)
    }

    /// With [`Self::set_join_retry`] on, has `slot` (joining now) retry its seeds all its life
    /// while it knows no live member, as the driver does.
    pub(crate) fn keep_joining_while_alone(&mut self, slot: usize) {
        if self.join_retry {
            self.request_after(slot, JOIN_RETRY_US, AppRequest::JoinWhileAlone);
            self.request_after(slot, SEED_ROUND_US, AppRequest::SeedRound);
        }
    }

    /// The static seeds' round, every `SEED_ROUND_US` (with [`Self::set_join_retry`]): `slot`
    /// joins through every reachable node it does not see alive at that address, as the
    /// driver's `consider` does with each seed reported. Without it, a cluster split by a
    /// cut in which nodes restarted as new identities stayed two clusters after the heal:
    /// neither side knew the other's lives, and nobody was alone (chaos seed 98 at 16 nodes).
    fn seed_round(&mut self, slot: usize) {
        let Some(core) = self.nodes[slot].core.as_deref() else {
            return;
        };
        let alive: BTreeSet<SocketAddr> = core.membership().alive().map(|m| m.addr).collect();
        let open = |s: usize| !self.network.blocked(slot, s) && !self.network.blocked(s, slot);
        let unseen: Vec<usize> = (0..self.nodes.len())
            .filter(|&s| s != slot && self.running(s) && open(s))
            .filter(|&s| !alive.contains(&self.nodes[s].addr))
            .collect();
        for seed in unseen {
            self.join_through(slot, seed);
        }
        self.request_after(slot, SEED_ROUND_US, AppRequest::SeedRound);
    }

    /// The driver's retry of [`Self::join_at_start`]: while `slot`'s core knows no live member.
    fn join_while_alone(&mut self, slot: usize) {
        let alone = self.nodes[slot]
            .core
            .as_deref()
            .is_some_and(|c| c.membership().alive().next().is_none());
        if alone {
            if let Some(seed) = self.reachable_seed(slot) {
                self.join_through(slot, seed);
            }
        }
        if alone || self.join_retry {
            self.request_after(slot, JOIN_RETRY_US, AppRequest::JoinWhileAlone);
        }
    }

    /// The local time of the node in `slot` now.
    pub(crate) fn local_now(&mut self, slot: usize) -> Instant {
        self.nodes[slot].clock.local(self.now_us)
    }

    /// When the clock of the node in `slot` reads `local`, in world µs.
    pub(crate) fn world_at(&self, slot: usize, local: Instant) -> u64 {
        self.nodes[slot].clock.world_at(local, self.now_us)
    }

    /// Queues an RPC event.
    pub(crate) fn push_rpc(&mut self, at: u64, event: RpcEvent) {
        self.push(at, Pending::Rpc(Box::new(event)));
    }

    /// Queues a pub/sub event.
    pub(crate) fn push_pubsub(&mut self, at: u64, event: PubSubEvent) {
        self.push(at, Pending::PubSub(Box::new(event)));
    }

    /// Queues an agents event.
    pub(crate) fn push_agents(&mut self, at: u64, event: AgentEvent) {
        self.push(at, Pending::Agents(Box::new(event)));
    }

    /// Sends a stream message on `channel` from `from` to `to` now: when it arrives and on
    /// which connection, or `None` when the connection is cut.
    pub(crate) fn stream_send(
        &mut self,
        from: usize,
        to: usize,
        channel: Channel,
    ) -> Option<(u64, u64)> {
        self.network
            .stream(&mut self.rng, from, to, channel, self.now_us)
    }

    /// The address a node in `slot` is reached at.
    pub fn node_addr(&self, slot: usize) -> NodeAddr {
        self.nodes[slot].node_addr()
    }

    /// A uniformly random number below `bound`, from the world's seeded stream.
    pub fn random_below(&mut self, bound: u64) -> u64 {
        if bound == 0 {
            return 0;
        }
        self.rng.gen_range(0..bound)
    }

    // ---- writes to replicated keyspaces ----

    /// Has the node in `slot` make a local write now, or when its stall ends: sets
    /// `request.key` to a value unique in the run (`w<id>`, padded), or deletes it. Returns the
    /// write's id, or `None` if the node is down. Once a core applied it, it is in
    /// [`World::writes`]; a refused write is only counted ([`World::writes_refused`]).
    pub fn write(&mut self, slot: usize, request: WriteRequest) -> Option<u64> {
        let node = &self.nodes[slot];
        node.core.as_deref()?;
        self.writes.issued += 1;
        let id = self.writes.issued;
        let value = (!request.delete).then(|| writes::value(id, request.value_size));
        let write = Write {
            keyspace: request.keyspace,
            key: request.key,
            value,
        };
        if node.stalled_until.is_some() {
            let life = node.life;
            let held = Pending::Write {
                node: slot,
                life,
                id,
                write: Box::new(write),
                acked: request.acked,
            };
            self.hold(slot, held);
        } else {
            self.apply_write(slot, id, write, request.acked);
        }
        Some(id)
    }

    /// Every write a core applied, in the order they were applied.
    pub fn writes(&self) -> &[WriteRecord] {
        &self.writes.records
    }

    /// Writes issued so far: applied, refused, or lost with a node that went down first.
    pub fn writes_issued(&self) -> u64 {
        self.writes.issued
    }

    /// Writes a core refused (a limit).
    pub fn writes_refused(&self) -> u64 {
        self.writes.refused
    }

    /// The replication settings every core runs with.
    pub fn replication_config(&self) -> ReplicationConfig {
        self.replication.clone().unwrap_or_default()
    }

    /// Replication counters over every node and every life (crashed cores' counters are kept).
    pub fn replication_totals(&self) -> ReplicationTotals {
        let mut totals = self.writes.gone.clone();
        for core in self.nodes.iter().filter_map(SimNode::core) {
            totals.add(core.replication().stats());
        }
        totals
    }

    /// Anti-entropy rounds started so far, over every node and every life.
    pub fn anti_entropy_rounds(&self) -> u64 {
        self.replication_totals().anti_entropy_rounds
    }

    /// Starts a workload on `slots`: its first write comes after one random gap.
    pub(crate) fn start_workload(&mut self, workload: Workload, slots: Vec<usize>) {
        let end = self.now_us + workload.duration.as_micros() as u64;
        let gap = 1 + self.random_below(workload.max_gap_us());
        let index = self.writes.workloads.len();
        self.writes.workloads.push((workload, slots, end));
        if self.now_us + gap <= end {
            self.push(self.now_us + gap, Pending::Workload { index });
        }
    }

    /// One write of workload `index` on a random running node of its selection, then the next
    /// after a random gap.
    fn workload_write(&mut self, index: usize) {
        let (workload, slots, end) = &self.writes.workloads[index];
        let running: Vec<usize> = slots
            .iter()
            .copied()
            .filter(|&s| self.nodes[s].status() == NodeStatus::Running)
            .collect();
        let (keys, deletes, acked) = (workload.keys, workload.deletes, workload.acked);
        let (value_size, max_gap, end) = (workload.value_size, workload.max_gap_us(), *end);
        let keyspace = workload.keyspace.clone();
        if !running.is_empty() {
            let slot = running[self.random_below(running.len() as u64) as usize];
            let key = writes::key(self.random_below(keys as u64) as usize);
            let delete = deletes > 0.0 && self.rng.gen::<f64>() < deletes;
            let acked = acked > 0.0 && self.rng.gen::<f64>() < acked;
            let request = WriteRequest {
                keyspace,
                key,
                delete,
                acked: acked.then_some(writes::ACK_DEADLINE),
                value_size,
            };
            self.write(slot, request);
        }
        let next = self.now_us + 1 + self.random_below(max_gap);
        if next <= end {
            self.push(next, Pending::Workload { index });
        }
    }

    /// Applies a write on the running core in `slot` and records it.
    fn apply_write(
        &mut self,
        slot: usize,
        id: u64,
        write: Write,
        acked: Option<std::time::Duration>,
    ) {
        let now = self.now_us;
        let node = &mut self.nodes[slot];
        let (local, life) = (node.clock.local(now), node.life);
        let Some(core) = node.core.as_deref_mut() else {
            return;
        };
        let what = write
            .value
            .as_ref()
            .map_or_else(|| "delete".to_string(), |v| format!("{}B", v.len()));
        let asks = if acked.is_some() { " acked" } else { "" };
        self.trace.line(format_args!(
            "{} n{slot} <- write {}/{} w{id} {what}{asks}",
            Stamp(now),
            write.keyspace,
            write.key
        ));
        let newest_before = newest_timestamp(core);
        let mut record = WriteRecord {
            id,
            at_us: now,
            slot,
            life,
            origin: core.replication().me(),
            seq: 0,
            keyspace: write.keyspace.clone(),
            key: write.key.clone(),
            value: write.value.clone(),
            ts: Timestamp::ZERO,
            newest_before,
            read_back: None,
            acked: None,
            durable_at_us: None,
        };
        let result = match acked {
            None => core.write(local, write).map(|w| (w.seq, w.ts, None)),
            Some(d) => core
                .write_acked(local, write, local + d)
                .map(|t| (t.seq, t.ts, Some(t))),
        };
        match result {
            Ok((seq, ts, ticket)) => {
                record.seq = seq;
                record.ts = ts;
                self.record_write(record, ticket)
            }
            Err(error) => {
                self.writes.refused += 1;
                self.trace.line(format_args!(
                    "{} n{slot} write w{id} refused: {error}",
                    Stamp(now)
                ));
            }
        }
        self.drain(slot);
    }

    /// Completes the record of a write its core applied (what the writer reads back, what
    /// waits for acks and the disk) and keeps it.
    fn record_write(&mut self, mut record: WriteRecord, ticket: Option<AckTicket>) {
        let Some(core) = self.nodes[record.slot].core.as_deref() else {
            return;
        };
        let applied = core.replication().keyspace(&record.keyspace);
        record.read_back = applied
            .and_then(|k| k.map().entry(&record.key))
            .map(|e| e.ts);
        let durability = core.replication().durability(&record.keyspace);
        let lives = [(record.slot, record.life)];
        record.acked = ticket.map(|t| {
            let mut progress = AckProgress {
                members: t.members,
                holders: 1,
                majority_at_us: None,
                holder_lives: lives.into(),
                acker_lives: Default::default(),
            };
            if progress.majority() <= 1 {
                progress.majority_at_us = Some(record.at_us);
            }
            progress
        });
        let index = self.writes.records.len();
        // The reply waits until the write is durable here, as the runtime's does.
        match durability {
            Durability::Now => record.durable_at_us = Some(record.at_us),
            Durability::After(seq) => {
                if let Some(disk) = self.nodes[record.slot].disk.as_mut() {
                    disk.await_batch(seq, index);
                }
            }
            Durability::Failing => {}
        }
        let key = (record.origin, record.keyspace.clone(), record.seq);
        self.writes.by_seq.insert(key, index);
        self.writes.records.push(record);
    }

    /// An ack for a write of the core in `slot`: counts it, and notes which lives hold the op.
    fn acked(
        &mut self,
        origin: Origin,
        keyspace: String,
        seq: u64,
        holders: usize,
        members: usize,
    ) {
        let Some(&index) = self.writes.by_seq.get(&(origin, keyspace, seq)) else {
            return;
        };
        let record = &self.writes.records[index];
        let envelope = Envelope {
            keyspace: record.keyspace.clone(),
            origin: record.origin,
            seq,
            epoch: 0,
            op: Op {
                key: record.key.clone(),
                entry: LwwEntry {
                    ts: record.ts,
                    value: record.value.clone(),
                },
            },
        };
        let holding: Vec<(usize, u64)> = (0..self.nodes.len())
            .filter(|&s| {
                self.nodes[s].core.as_deref().is_some_and(|c| {
                    c.replication()
                        .keyspace(&envelope.keyspace)
                        .is_some_and(|k| k.has(&envelope))
                })
            })
            .map(|s| (s, self.nodes[s].life))
            .collect();
        let now = self.now_us;
        let progress = self.writes.records[index]
            .acked
            .get_or_insert_with(AckProgress::default);
        progress.members = progress.members.max(members);
        progress.holders = progress.holders.max(holders);
        progress.holder_lives.extend(holding);
        progress.acker_lives.extend(self.writes.sender);
        if progress.majority_at_us.is_none() && progress.holders >= progress.majority() {
            progress.majority_at_us = Some(now);
        }
    }

    /// Applies a write on `slot`'s core without recording it: a corrupted world, for tests that
    /// show the replication invariants catch data they cannot explain.
    #[cfg(test)]
    pub(crate) fn write_unrecorded(&mut self, slot: usize, write: Write) {
        let local = self.nodes[slot].clock.local(self.now_us);
        if let Some(core) = self.nodes[slot].core.as_deref_mut() {
            let _ = core.write(local, write);
        }
        self.drain(slot);
    }

    /// Writes a line of the driver's own (faults, phases) into the trace.
    pub fn note(&mut self, args: std::fmt::Arguments<'_>) {
        let now = self.now_us;
        self.trace.line(format_args!("{} * {}", Stamp(now), args));
    }

    // ---- node lifecycle, used by fault application ----

    /// Starts a core in `slot` with `generation` (the slot must be down, or fresh).
    pub(crate) fn start(&mut self, slot: usize, generation: u64) {
        let seed = self.rng.gen::<u64>();
        let node = &mut self.nodes[slot];
        node.life += 1;
        node.wakes.clear();
        node.generation = generation;
        node.started_us = self.now_us;
        node.leaving_us = None;
        let me = MemberId {
            node: node.id,
            addr: node.addr,
            generation,
        };
        let metadata = NodeMetadata {
            name: Some(format!("n{slot}")),
            version: "sim".into(),
            ..NodeMetadata::default()
        };
        let config = CoreConfig {
            me,
            membership: self.membership.clone(),
            metadata,
            seed,
        };
        let local = node.clock.local(self.now_us);
        let core = Core::new(config, local).with_shared_metadata(self.shared_metadata.clone());
        node.core = Some(Box::new(match &self.replication {
            Some(replication) => core.with_replication(replication.clone(), seed.rotate_left(32)),
            None => core,
        }));
        let (now, id) = (self.now_us, node.id.short());
        self.trace.line(format_args!(
            "{} n{slot} start {id} gen {generation}",
            Stamp(now)
        ));
        self.take_up_disk(slot);
        self.declare_placements(slot);
        self.drain(slot);
    }

    /// Has the core in `slot` persist to the slot's disk and take up what it holds (nothing
    /// without storage). Before the core's first input, as the runtime does.
    fn take_up_disk(&mut self, slot: usize) {
        let now = self.now_us;
        let node = &mut self.nodes[slot];
        let (Some(disk), Some(core)) = (node.disk.as_mut(), node.core.as_deref_mut()) else {
            return;
        };
        let loaded = disk.load();
        let skipped = core.start_persisting(node.clock.local(now), &loaded);
        let entries = loaded.state.entry_count();
        self.trace.line(format_args!(
            "{} n{slot} loads {entries} entries ({}); {skipped} did not decode",
            Stamp(now),
            loaded.report
        ));
    }

    /// The core in `slot` asks for batch `seq` to be made durable: it is written to the
    /// slot's disk now and completes a sync latency later.
    fn persist(&mut self, slot: usize, seq: u64, batch: &Batch) {
        let now = self.now_us;
        let node = &mut self.nodes[slot];
        let (Some(config), Some(disk)) = (self.storage.as_ref(), node.disk.as_mut()) else {
            // A core persists only when `take_up_disk` started it, which needs a disk.
            self.trace.line(format_args!(
                "{} n{slot} -> persist #{seq} (no disk)",
                Stamp(now)
            ));
            return;
        };
        let written = disk.write(batch).is_ok();
        let at = disk.due(now, config.sync_delay_us(&mut self.rng));
        let life = node.life;
        let refused = if written { "" } else { " refused" };
        self.trace.line(format_args!(
            "{} n{slot} -> persist #{seq} {} ops{refused}, done at {}",
            Stamp(now),
            batch.ops().len(),
            Stamp(at)
        ));
        let synced = Pending::Synced {
            node: slot,
            life,
            seq,
            written,
        };
        self.push(at, synced);
    }

    /// Batch `seq` of the core in `slot` completes: the disk syncs, and the core and the
    /// writes that waited hear of it.
    fn synced(&mut self, slot: usize, seq: u64, written: bool) {
        let now = self.now_us;
        let node = &mut self.nodes[slot];
        let Some(disk) = node.disk.as_mut() else {
            return;
        };
        let (input, durable) = disk.complete(seq, written);
        self.trace
            .line(format_args!("{} n{slot} <- {input:?}", Stamp(now)));
        if let Some(core) = node.core.as_deref_mut() {
            core.handle(node.clock.local(now), input);
        }
        for index in durable {
            self.writes.records[index].durable_at_us = Some(now);
        }
        self.drain(slot);
    }

    /// Stops the core in `slot` at once: its timers, buffers and connections are gone, and
    /// its disk loses what was not synced.
    pub(crate) fn crash(&mut self, slot: usize) {
        let node = &mut self.nodes[slot];
        if let (Some(disk), Some(_)) = (node.disk.as_mut(), &node.core) {
            let lost = disk.crash(&mut self.rng);
            self.trace
                .line(format_args!("{} n{slot} disk {lost}", Stamp(self.now_us)));
        }
        self.end_life(slot);
    }

    /// The core in `slot` exits cleanly: its disk syncs first.
    fn shut_down(&mut self, slot: usize) {
        if let Some(disk) = self.nodes[slot].disk.as_mut() {
            disk.shut_down();
        }
        self.end_life(slot);
    }

    fn end_life(&mut self, slot: usize) {
        self.rpc_end_life(slot);
        self.agents_end_life(slot);
        let node = &mut self.nodes[slot];
        if let Some(core) = &node.core {
            // Remember the generation the core went by, for the restart and for reports.
            node.generation = core.membership().me().generation;
            self.writes.gone.add(core.replication().stats());
            node.ended.push((node.life, self.now_us));
        }
        node.life += 1;
        node.core = None;
        node.stalled_until = None;
        node.held.clear();
        node.wakes.clear();
    }

    /// Shuts the node down `after_us` from now (after a graceful leave).
    pub(crate) fn shutdown_after(&mut self, slot: usize, after_us: u64) {
        self.nodes[slot].leaving_us = Some(self.now_us);
        let life = self.nodes[slot].life;
        self.push(
            self.now_us + after_us,
            Pending::Shutdown { node: slot, life },
        );
    }

    /// Gives `slot` a new random node id (its address stays). A new identity is a replaced
    /// machine: with storage, it comes with a new, empty disk, so what earlier lives made
    /// durable is on its peers only.
    pub(crate) fn new_identity(&mut self, slot: usize) {
        let id = self.fresh_id();
        let node = &mut self.nodes[slot];
        node.id = id;
        self.slot_ids[slot] = id;
        if let (Some(config), Some(disk)) = (self.storage.as_ref(), node.disk.as_mut()) {
            disk.replace(config, node.life + 1);
        }
        self.by_id.insert(id, slot);
    }

    /// The disk of `slot` refuses every write for `for_us` (nothing without storage).
    pub(crate) fn fill_disk(&mut self, slot: usize, for_us: u64) {
        let until = self.now_us + for_us;
        if let Some(disk) = self.nodes[slot].disk.as_mut() {
            disk.fill(until);
            self.push(until, Pending::DiskFree { node: slot });
        }
    }

    /// Freezes the node in `slot` for `for_us`.
    pub(crate) fn stall(&mut self, slot: usize, for_us: u64) {
        let (now, node) = (self.now_us, &mut self.nodes[slot]);
        if node.core.is_none() {
            return;
        }
        let until = node.stalled_until.unwrap_or(now).max(now + for_us);
        node.stalled_until = Some(until);
        node.stalls.push((now, until));
        let life = node.life;
        self.push(until, Pending::Resume { node: slot, life });
    }

    /// Changes the node's clock.
    pub(crate) fn skew(&mut self, slot: usize, offset_us: i64, drift_ppm: i64) {
        self.nodes[slot].clock.skew(offset_us, drift_ppm);
    }

    /// The network, to change.
    pub(crate) fn network_mut(&mut self) -> &mut Network {
        &mut self.network
    }

    /// Records the partition layout after a change.
    pub(crate) fn topology_changed(&mut self) {
        let rules = self.network.rules().to_vec();
        self.topology.push((self.now_us, rules));
    }

    fn add_slot(&mut self, slot: usize) {
        let addr = slot_addr(slot);
        let id = self.fresh_id();
        self.by_id.insert(id, slot);
        self.slot_ids.push(id);
        self.nodes.push(SimNode {
            addr,
            id,
            generation: 0,
            core: None,
            life: 0,
            stalled_until: None,
            held: VecDeque::new(),
            wakes: Vec::new(),
            clock: NodeClock::default(),
            traffic: NodeTraffic::default(),
            stalls: Vec::new(),
            started_us: 0,
            leaving_us: None,
            ended: Vec::new(),
            disk: None,
        });
    }

    fn fresh_id(&mut self) -> NodeId {
        loop {
            let id = NodeId::from_u128(self.rng.gen::<u128>());
            if !self.by_id.contains_key(&id) {
                return id;
            }
        }
    }

    fn push(&mut self, at: u64, what: Pending) {
        let slot = match self.free.pop() {
            Some(slot) => {
                self.pending[slot] = Some(what);
                slot
            }
            None => {
                self.pending.push(Some(what));
                self.pending.len() - 1
            }
        };
        self.queue.push(Queued { at, slot });
    }

    // ---- delivering events ----

    fn dispatch(&mut self, what: Pending) -> Option<usize> {
        let slot = match (&what, what.node()) {
            (Pending::Workload { index }, _) => {
                self.workload_write(*index);
                return None;
            }
            (Pending::Rpc(event), _) if matches!(**event, RpcEvent::NextCall { .. }) => {
                if let RpcEvent::NextCall { load } = **event {
                    self.next_load_call(load);
                }
                return None;
            }
            (Pending::PubSub(event), _) if matches!(**event, PubSubEvent::NextPublish { .. }) => {
                self.pubsub_deliver((**event).clone());
                return None;
            }
            (Pending::Agents(event), _) if matches!(**event, AgentEvent::NextMessage { .. }) => {
                self.agents_deliver((**event).clone());
                return None;
            }
            (Pending::DiskFree { node }, _) => {
                let (node, now) = (*node, self.now_us);
                if let Some(disk) = self.nodes[node].disk.as_mut() {
                    disk.free(now);
                }
                self.trace
                    .line(format_args!("{} n{node} disk has room", Stamp(now)));
                return None;
            }
            (_, Some(slot)) => slot,
            (_, None) => return None,
        };
        match what {
            Pending::Resume { node, life } if self.nodes[node].life == life => {
                self.resume(node);
                return Some(node);
            }
            Pending::Shutdown { node, life } if self.nodes[node].life == life => {
                self.shut_down(node);
                self.trace
                    .line(format_args!("{} n{node} shut down", Stamp(self.now_us)));
                return None;
            }
            Pending::Resume { .. } | Pending::Shutdown { .. } => return None,
            Pending::Datagram { to, from, .. } if self.nodes[slot].core.is_none() => {
                self.port_unreachable(to as usize, from as usize);
                return None;
            }
            _ => {}
        }
        if !self.still_valid(&what) {
            return None;
        }
        if self.nodes[slot].stalled_until.is_some() {
            self.hold(slot, what);
            return None;
        }
        self.deliver(what);
        Some(slot)
    }

    /// Whether the event can still reach its node: the node is up, a timer or command belongs
    /// to the node's current life, and a stream message's connection survived.
    fn still_valid(&mut self, what: &Pending) -> bool {
        let Some(slot) = what.node() else {
            return false;
        };
        if self.nodes[slot].core.is_none() {
            return false;
        }
        match what {
            Pending::Wake { life, .. }
            | Pending::Command { life, .. }
            | Pending::Write { life, .. }
            | Pending::Synced { life, .. } => self.nodes[slot].life == *life,
            Pending::Stream {
                to,
                from,
                connection,
                lives,
                ..
            } => {
                let (from, to) = (*from as usize, *to as usize);
                let alive = self.network.connection(from, to) == *connection
                    && (self.nodes[from].life, self.nodes[to].life) == *lives;
                if !alive {
                    self.network.count_stream_drop();
                }
                alive
            }
            _ => true,
        }
    }

    fn hold(&mut self, slot: usize, what: Pending) {
        let node = &mut self.nodes[slot];
        let datagrams = node
            .held
            .iter()
            .filter(|p| matches!(p, Pending::Datagram { .. }))
            .count();
        if matches!(what, Pending::Datagram { .. }) && datagrams >= STALL_DATAGRAMS_MAX {
            return;
        }
        node.held.push_back(what);
    }

    fn resume(&mut self, slot: usize) {
        let now = self.now_us;
        if self.nodes[slot]
            .stalled_until
            .is_some_and(|until| until > now)
        {
            return; // a longer stall was added on top of this one
        }
        self.nodes[slot].stalled_until = None;
        self.trace
            .line(format_args!("{} n{slot} resumes", Stamp(now)));
        while let Some(what) = self.nodes[slot].held.pop_front() {
            if self.nodes[slot].core.is_none() {
                break;
            }
            self.deliver(what);
        }
    }

    fn deliver(&mut self, what: Pending) {
        let (slot, input) = match what {
            Pending::Datagram {
                to,
                from,
                from_id,
                payload,
                hash,
            } => {
                let (to, from) = (to as usize, from as usize);
                let channel = Channel::Membership;
                (to, self.received(to, from, from_id, channel, payload, hash))
            }
            Pending::PortClosed { to, about } => {
                self.trace.line(format_args!(
                    "{} n{to} <- port of {about} closed",
                    Stamp(self.now_us)
                ));
                (to as usize, Input::PortClosed { node: about })
            }
            Pending::Stream {
                to,
                from,
                from_id,
                channel,
                payload,
                hash,
                lives,
                ..
            } => {
                let (to, from) = (to as usize, from as usize);
                self.writes.sender = Some((from, lives.0));
                (to, self.received(to, from, from_id, channel, payload, hash))
            }
            Pending::Write {
                node,
                id,
                write,
                acked,
                ..
            } => return self.apply_write(node, id, *write, acked),
            Pending::Synced {
                node, seq, written, ..
            } => return self.synced(node, seq, written),
            Pending::Wake { node, at, .. } => return self.wake(node, at),
            Pending::Rpc(event) => return self.rpc_deliver(*event),
            Pending::PubSub(event) => return self.pubsub_deliver(*event),
            Pending::Agents(event) => return self.agents_deliver(*event),
            Pending::Command { node, request, .. } => {
                self.trace.line(format_args!(
                    "{} n{node} <- {request:?}",
                    Stamp(self.now_us)
                ));
                match *request {
                    AppRequest::Command(command) => (node, Input::Command(command)),
                    AppRequest::HandOff { instance, state } => {
                        return self.hand_off(node, &instance, state)
                    }
                    AppRequest::JoinWhileAlone => return self.join_while_alone(node),
                    AppRequest::SeedRound => return self.seed_round(node),
                    other => return self.app_write(node, other),
                }
            }
            Pending::Resume { .. }
            | Pending::Shutdown { .. }
            | Pending::Workload { .. }
            | Pending::DiskFree { .. } => return,
        };
        let node = &mut self.nodes[slot];
        let local = node.clock.local(self.now_us);
        if let Some(core) = node.core.as_deref_mut() {
            core.handle(local, input);
        }
        self.drain(slot);
        self.writes.sender = None;
    }

    /// A datagram reached a slot whose core is down: with the host up, it answers the sender
    /// with ICMP port unreachable, over the network like any datagram.
    fn port_unreachable(&mut self, down: usize, sender: usize) {
        if !self.hosts_survive_crashes {
            return;
        }
        let about = self.nodes[down].id;
        for at in self
            .network
            .datagram(&mut self.rng, down, sender, self.now_us)
        {
            let to = slot32(sender);
            self.push(at, Pending::PortClosed { to, about });
        }
    }

    fn received(
        &mut self,
        to: usize,
        from: usize,
        from_id: NodeId,
        channel: Channel,
        payload: Bytes,
        hash: u32,
    ) -> Input {
        self.nodes[to].traffic.messages_received += 1;
        if matches!(channel, Channel::Replication | Channel::Bulk) {
            self.nodes[to].traffic.replication_bytes_received += payload.len() as u64;
        }
        let len = payload.len();
        let words = [
            TRACE_RECEIVE,
            self.now_us,
            to as u64,
            from as u64,
            channel as u64,
            len as u64,
            u64::from(hash),
        ];
        self.trace.words(&words, || {
            format!(
                "{} n{to} <- n{from} {channel:?} {len}B #{hash:08x}",
                Stamp(self.now_us)
            )
        });
        Input::Received {
            from: from_id,
            channel,
            payload,
        }
    }

    /// Carries out a queued write or ephemeral change on `slot`'s core; a refusal is traced and
    /// counted with the refused writes.
    fn app_write(&mut self, slot: usize, request: AppRequest) {
        let node = &mut self.nodes[slot];
        let local = node.clock.local(self.now_us);
        let Some(core) = node.core.as_deref_mut() else {
            return;
        };
        let result = match request {
            AppRequest::Write(write) => core.write(local, write).map(|_| ()).map_err(Into::into),
            AppRequest::Ephemeral {
                keyspace,
                name,
                value,
            } => core.set_ephemeral(local, &keyspace, &name, value),
            AppRequest::Command(_)
            | AppRequest::HandOff { .. }
            | AppRequest::JoinWhileAlone
            | AppRequest::SeedRound => Ok(()),
        };
        if let Err(e) = result {
            self.writes.refused += 1;
            self.trace
                .line(format_args!("{} n{slot} refused: {e}", Stamp(self.now_us)));
        }
        self.drain(slot);
    }

    /// Fires the timers of the core in `slot` that are due.
    fn wake(&mut self, slot: usize, at: u64) {
        let node = &mut self.nodes[slot];
        if let Some(queued) = node.wakes.iter().position(|&w| w == at) {
            node.wakes.swap_remove(queued);
        }
        let local = node.clock.local(self.now_us);
        let Some(core) = node.core.as_deref_mut() else {
            return;
        };
        let words = [TRACE_WAKE, self.now_us, slot as u64];
        self.trace
            .words(&words, || format!("{} n{slot} <- wake", Stamp(self.now_us)));
        core.handle_timeout(local);
        self.drain(slot);
    }

    /// Queues a wake-up for the core in `slot` at its next timer, unless one is queued then.
    fn schedule_wake(&mut self, slot: usize) {
        let node = &mut self.nodes[slot];
        let Some(due) = node.core.as_deref().and_then(Core::poll_timeout) else {
            return;
        };
        let at = node.clock.world_at(due, self.now_us);
        if node.wakes.contains(&at) {
            return;
        }
        node.wakes.push(at);
        let life = node.life;
        self.push(
            at,
            Pending::Wake {
                node: slot,
                life,
                at,
            },
        );
    }

    /// Executes every effect the core in `slot` queued, in order, then queues its next wake-up.
    fn drain(&mut self, slot: usize) {
        loop {
            let Some(effect) = self.nodes[slot]
                .core
                .as_deref_mut()
                .and_then(Core::poll_effect)
            else {
                self.schedule_wake(slot);
                return;
            };
            if let Effect::Event(event) = &effect {
                self.directories.note(slot, event);
            }
            match effect {
                Effect::Send {
                    to,
                    channel,
                    payload,
                } => self.send(slot, to, channel, payload),
                Effect::Event(Event::Membership(event)) => self.observe(slot, event),
                Effect::Persist { seq, batch } => self.persist(slot, seq, &batch),
                // Other protocols' events are traced; their invariants read them from the trace
                // or from the cores until they need a hook of their own. Acks also go to the
                // write log.
                Effect::Event(Event::Placement(event)) => {
                    let now = Stamp(self.now_us);
                    self.trace
                        .line(format_args!("{now} n{slot} -> event {event:?}"));
                    self.placement_event(slot, event);
                }
                Effect::Event(Event::Vars(event)) => {
                    let now = Stamp(self.now_us);
                    self.trace
                        .line(format_args!("{now} n{slot} -> event {event:?}"));
                    self.vars_events.push((slot, event));
                }
                Effect::Event(Event::Cache(event)) => {
                    let now = Stamp(self.now_us);
                    self.trace
                        .line(format_args!("{now} n{slot} -> event {event:?}"));
                    self.cache_events.push((self.now_us, slot, event));
                }
                #[allow(unreachable_patterns)]
                Effect::Event(other) => {
                    let now = Stamp(self.now_us);
                    self.trace
                        .line(format_args!("{now} n{slot} -> event {other:?}"));
                    if let Event::Replication(ReplicationEvent::Acked {
                        keyspace,
                        origin,
                        seq,
                        holders,
                        members,
                    }) = other
                    {
                        self.acked(origin, keyspace, seq, holders, members);
                    }
                }
            }
        }
    }

    fn send(&mut self, from: usize, to: NodeAddr, channel: Channel, payload: Bytes) {
        let len = payload.len();
        let hash = Fnv64::of(&payload) as u32;
        let target = self.listening(to);
        // A target outside the cluster is known by its id's hash (the text shows its address).
        let target_word = target.map_or(Fnv64::of(&to.id.as_u128().to_le_bytes()), |t| t as u64);
        let words = [
            TRACE_SEND,
            self.now_us,
            from as u64,
            target_word,
            channel as u64,
            len as u64,
            u64::from(hash),
        ];
        self.trace.words(&words, || {
            let shown = Shown(target, to);
            format!(
                "{} n{from} -> {shown} {channel:?} {len}B #{hash:08x}",
                Stamp(self.now_us)
            )
        });
        let envelope = if channel == Channel::Membership {
            DATAGRAM_ENVELOPE_BYTES
        } else {
            0
        };
        let traffic = &mut self.nodes[from].traffic;
        if len + envelope > self.limits.of(channel) {
            traffic.oversized += 1;
            return;
        }
        if channel == Channel::Membership {
            traffic.datagrams_sent += 1;
            traffic.datagram_bytes_sent += (len + envelope) as u64;
        } else {
            traffic.stream_messages_sent += 1;
            traffic.stream_bytes_sent += len as u64;
        }
        let replicated = matches!(channel, Channel::Replication | Channel::Bulk);
        if self.let_out.is_some() && replicated && self.let_out_last != (from, hash, len) {
            self.let_out_last = (from, hash, len);
            self.note_let_out(from, &payload);
        }
        // Mutual TLS refuses a peer whose id is not the one we dialled: nothing is delivered.
        let Some(target) = target else {
            self.nodes[from].traffic.misaddressed += 1;
            return;
        };
        self.route(from, target, channel, payload, hash);
    }

    /// Keeps the ops of `from`'s running life that `payload` carries, for the invariants: under
    /// the generation the life started with, and under each renewal of it since (the node
    /// declared failed), up to replication's current origin.
    fn note_let_out(&mut self, from: usize, payload: &[u8]) {
        let node = &self.nodes[from];
        let Some(current) = node.core().map(|core| core.replication().me()) else {
            return;
        };
        let origins = stamps::LifeOrigins {
            node: current.node,
            first: node.generation,
            last: current.generation,
        };
        let (at_us, life) = (self.now_us, node.life);
        let ops = stamps::own_ops(payload, origins);
        let Some(kept) = &mut self.let_out else {
            return;
        };
        kept.extend(
            ops.into_iter()
                .map(|(origin, keyspace, seq, ts, how)| LetOut {
                    at_us,
                    slot: from,
                    life,
                    origin,
                    keyspace,
                    seq,
                    ts,
                    how,
                }),
        );
    }

    fn route(&mut self, from: usize, to: usize, channel: Channel, payload: Bytes, hash: u32) {
        let from_id = self.nodes[from].id;
        if channel == Channel::Membership {
            let arrivals = self.network.datagram(&mut self.rng, from, to, self.now_us);
            let copies = arrivals.len();
            let mut payload = Some(payload);
            for (copy, at) in arrivals.into_iter().enumerate() {
                // The last copy takes the payload itself: cloning a `Bytes` made from a `Vec`
                // allocates a shared header, and dropping the original frees it again.
                let payload = if copy + 1 == copies {
                    payload.take()
                } else {
                    payload.clone()
                };
                let Some(payload) = payload else { break };
                let (to, from) = (slot32(to), slot32(from));
                self.push(
                    at,
                    Pending::Datagram {
                        to,
                        from,
                        from_id,
                        payload,
                        hash,
                    },
                );
            }
            return;
        }
        if let Some((at, connection)) =
            self.network
                .stream(&mut self.rng, from, to, channel, self.now_us)
        {
            let lives = (self.nodes[from].life, self.nodes[to].life);
            self.push(
                at,
                Pending::Stream {
                    to: slot32(to),
                    from: slot32(from),
                    from_id,
                    channel,
                    payload,
                    hash,
                    connection,
                    lives,
                },
            );
        }
    }

    /// The slot where the node `to` names listens, if one does (found from the address).
    fn listening(&self, to: NodeAddr) -> Option<usize> {
        slot_of_addr(to.addr).filter(|&t| self.slot_ids.get(t) == Some(&to.id))
    }

    fn observe(&mut self, slot: usize, event: MembershipEvent) {
        let now = self.now_us;
        match &event {
            MembershipEvent::Up(v)
            | MembershipEvent::Updated(v)
            | MembershipEvent::Failed(v)
            | MembershipEvent::Left(v)
            | MembershipEvent::Removed(v) => self.trace_member_event(slot, event_kind(&event), v),
            MembershipEvent::Joined | MembershipEvent::Isolated => {
                self.trace.line(format_args!(
                    "{} n{slot} -> event {}",
                    Stamp(now),
                    event_kind(&event)
                ));
            }
        }
        self.observed.push(Observed {
            at: self.now(),
            observer: slot,
            event,
        });
    }

    /// Traces `{stamp} n{slot} -> event {kind} {who} gen {generation}`, written without
    /// `fmt`: a forming cluster emits one per node per member.
    fn trace_member_event(&mut self, slot: usize, kind: &str, v: &MemberView) {
        let now = self.now_us;
        // A member's own slot, from its address, or else the slot its id had.
        let who = self
            .listening(v.node_addr())
            .or_else(|| self.by_id.get(&v.id).copied());
        let tail = who.map(|who| self.member_texts.of(who, v.generation));
        self.trace.line_with(|text| {
            text.push_stamp(now);
            text.push_str(" n");
            text.push_decimal(slot as u64);
            text.push_str(" -> event ");
            text.push_str(kind);
            match tail {
                Some(tail) => text.push_str(tail),
                None => {
                    text.push_str(" ");
                    text.push_str(&v.id.short());
                    text.push_str(" gen ");
                    text.push_decimal(v.generation);
                }
            }
        });
    }
}

/// The tail of a member-event trace line, ` n{who} gen {generation}`, kept per slot for its
/// generation: a forming cluster writes each member's once per node, and its two numbers
/// (a generation has up to 20 digits) were most of the line's cost.
#[derive(Default)]
struct MemberTexts(Vec<Option<(u64, String)>>);

impl MemberTexts {
    fn of(&mut self, who: usize, generation: u64) -> &str {
        if self.0.len() <= who {
            self.0.resize(who + 1, None);
        }
        let kept = &mut self.0[who];
        if !matches!(kept, Some((g, _)) if *g == generation) {
            *kept = Some((generation, format!(" n{who} gen {generation}")));
        }
        kept.as_ref().map_or("", |(_, text)| text)
    }
}

/// The address of the node in `slot`: `10.x.y.z`, where `x.y.z` is `slot + 1` in 24 bits.
fn slot_addr(slot: usize) -> SocketAddr {
    let n = slot as u32 + 1;
    SocketAddr::from((
        Ipv4Addr::new(10, (n >> 16) as u8, (n >> 8) as u8, n as u8),
        SIM_PORT,
    ))
}

/// The slot whose address `addr` is, if it is one [`slot_addr`] makes: read back from the
/// address itself, not looked up (a send's target is found on every message). Any `10.x.y.z`
/// but `10.0.0.0` on the port is one (`slot + 1` fills 24 bits exactly), so the slot's
/// address need not be built again to compare.
fn slot_of_addr(addr: SocketAddr) -> Option<usize> {
    let SocketAddr::V4(v4) = addr else {
        return None;
    };
    let [ten, x, y, z] = v4.ip().octets();
    if ten != 10 || v4.port() != SIM_PORT {
        return None;
    }
    let n = usize::from(x) << 16 | usize::from(y) << 8 | usize::from(z);
    n.checked_sub(1)
}

/// The newest timestamp a core's keyspaces hold, tombstones included: no op it applied is newer.
fn newest_timestamp(core: &Core) -> Timestamp {
    let replication = core.replication();
    replication
        .keyspace_names()
        .filter_map(|name| replication.keyspace(name))
        .flat_map(|keyspace| keyspace.map().entries().map(|(_, e)| e.ts))
        .max()
        .unwrap_or_default()
}

/// A short name for a membership event.
pub fn event_kind(event: &MembershipEvent) -> &'static str {
    match event {
        MembershipEvent::Up(_) => "up",
        MembershipEvent::Updated(_) => "updated",
        MembershipEvent::Failed(_) => "failed",
        MembershipEvent::Left(_) => "left",
        MembershipEvent::Removed(_) => "removed",
        MembershipEvent::Joined => "joined",
        MembershipEvent::Isolated => "isolated",
    }
}

/// Tags of the trace's word lines ([`Trace::words`]).
const TRACE_SEND: u64 = 1;
const TRACE_RECEIVE: u64 = 2;
const TRACE_WAKE: u64 = 3;

/// A send's target as the trace shows it: its slot, or the address nobody in the cluster has.
struct Shown(Option<usize>, NodeAddr);

impl std::fmt::Display for Shown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(slot) => write!(f, "n{slot}"),
            None => write!(f, "{}", self.1),
        }
    }
}

/// World microseconds printed as seconds with six decimals.
struct Stamp(u64);

impl std::fmt::Display for Stamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write_stamp(f, self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every slot's address reads back as the slot; no other address does.
    #[test]
    fn slot_addresses_read_back() {
        for slot in [0, 1, 255, 256, 65_535, 65_536, (1 << 24) - 2] {
            assert_eq!(slot_of_addr(slot_addr(slot)), Some(slot));
        }
        let foreign = [
            SocketAddr::from(([10, 0, 0, 0], SIM_PORT)),
            SocketAddr::from(([11, 0, 0, 1], SIM_PORT)),
            SocketAddr::from(([10, 0, 0, 1], SIM_PORT + 1)),
            SocketAddr::from(([0u16, 0, 0, 0, 0, 0, 0, 1], SIM_PORT)),
        ];
        for addr in foreign {
            assert_eq!(slot_of_addr(addr), None, "{addr}");
        }
    }

    /// The queue's slab holds one `Option<Pending>` per queued event: hundreds of thousands
    /// while a large cluster forms. A new kind that grows it should be boxed.
    #[test]
    fn a_queued_event_stays_small() {
        assert!(
            std::mem::size_of::<Option<Pending>>() <= 88,
            "{} bytes",
            std::mem::size_of::<Option<Pending>>()
        );
    }
}
