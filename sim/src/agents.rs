//! Agents in the simulator: supervised agents on every node, listed in the replicated agent
//! directory, exchanging `send`s and `request`s over the simulated network.
//!
//! An [`AgentGroup`] is the application's: each node of its selection spawns the group (now if
//! it is up, and again at every start, as an application spawns its agents at startup) under
//! the core's own supervisor machine ([`Supervisor`]) — the one `node.agents()` runs. Each
//! agent's lifecycle state goes into the `agents` ephemeral keyspace as the runtime writes it
//! ([`directory_state`]), so every node's agent directory is kept by the core's code, brought
//! up to date from its changes as the runtime's is.
//!
//! Agents fail deterministically from the seed: a share of the messages they handle make them
//! panic ([`AgentGroup::failure`]), and an instance may also fail on its own after a seeded
//! lifetime ([`AgentGroup::crash_every`]). Each failure is reported to the supervisor, which
//! restarts the agent after its backoff, restarts the whole group (one-for-all), or gives up
//! after too many restarts in its period; its decisions are carried out as the runtime does:
//! children stopped in its order, one at a time, and messages queued for a restarting agent
//! kept for its next instance.
//!
//! [`AgentMessages`] loads send messages from random running nodes to agents picked among every
//! agent any node was told to spawn: routed by the core's rule ([`route::resolve`]: this node's
//! agent first, else the directory's), delivered as one stream message on the rpc channel (lost
//! with its connection), admitted by the receiver by the same rule as the runtime's
//! ([`route::admit`]), and answered the same way. The caller keeps its requests in the core's
//! [`Outstanding`] table, which ends each at its deadline at the latest.
//!
//! Every message is recorded ([`MessageRecord`]) and every supervisor's failures, restarts and
//! give-up ([`SupervisionRecord`]): what the invariants of [`crate::invariants::agents`] read.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::time::Duration;

use foundation_core::agents::record::{check_agent_name, check_capabilities, AgentRecord};
use foundation_core::agents::requests::{Outstanding, Taken};
use foundation_core::agents::route::{self, Target};
use foundation_core::agents::supervisor::{
    directory_state, Action, ChildId, ChildSpec, ChildState, Exit, Restart, Strategy, Supervisor,
    SupervisorConfig, Time,
};
use foundation_core::agents::{AgentState, DeliveryError};
use foundation_core::ephemeral::AGENTS_KEYSPACE;
use foundation_core::time::Instant;
use foundation_core::Channel;
use serde::Serialize;

use crate::faults::Nodes;
use crate::pace::{check_share, Pace};
use crate::world::{AppRequest, NodeStatus, World};

/// Messages an agent's mailbox holds; one more is refused with `MailboxFull`.
pub const MAILBOX_MAX: usize = 64;
/// How long an agent takes to handle one message.
const HANDLE_US: std::ops::Range<u64> = 100..3_000;
/// How long a message into a cut link or to a down node takes to fail.
const REFUSED_AFTER_US: u64 = 1_000;
/// How soon a deadline that a wake should have cleared is looked at again.
const STALE_RETRY_US: u64 = 1_000;
/// Most agents in one group.
const GROUP_MAX: usize = 32;

/// A group of agents the application on each node of a selection spawns under one supervisor.
/// Its agents are named `<name>-<slot>-<i>`, so each node's are its own.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AgentGroup {
    /// Which nodes spawn it.
    pub nodes: Nodes,
    /// The group's name, and its agents' prefix.
    pub name: String,
    /// Agents in the group, on each node.
    pub agents: usize,
    /// The capability every agent of the group declares.
    pub capability: String,
    /// The supervisor's settings.
    pub supervisor: SupervisorConfig,
    /// Share of handled messages that make the agent panic, 0–1.
    pub failure: f64,
    /// Mean lifetime of an instance before it fails on its own; `None`: only messages fail it.
    pub crash_every: Option<Duration>,
}

impl AgentGroup {
    /// `agents` agents per node of `nodes` with capability `name`, one-for-one, at most 3
    /// restarts in 5 s, 1 % of messages failing.
    pub fn new(nodes: Nodes, name: &str, agents: usize) -> Self {
        Self {
            nodes,
            name: name.to_owned(),
            agents,
            capability: name.to_owned(),
            supervisor: SupervisorConfig::default(),
            failure: 0.01,
            crash_every: None,
        }
    }

    /// With this restart strategy.
    pub fn strategy(mut self, strategy: Strategy) -> Self {
        self.supervisor.strategy = strategy;
        self
    }

    /// Each instance fails on its own after a seeded lifetime of `mean` on average.
    pub fn crash_every(mut self, mean: Duration) -> Self {
        self.crash_every = Some(mean);
        self
    }

    /// With this share of messages failing the agent.
    pub fn failure(mut self, share: f64) -> Self {
        self.failure = share;
        self
    }

    /// The name of agent `i` of the group on `slot`.
    pub fn agent_name(&self, slot: usize, i: usize) -> String {
        format!("{}-{slot}-{i}", self.name)
    }

    /// Checks every field.
    pub fn validate(&self) -> Result<(), String> {
        check_agent_name(&self.agent_name(0, 0)).map_err(|e| e.to_string())?;
        check_capabilities(&BTreeSet::from([self.capability.clone()]))
            .map_err(|e| e.to_string())?;
        if self.agents == 0 || self.agents > GROUP_MAX {
            return Err(format!(
                "an agent group has 1 to {GROUP_MAX} agents, not {}",
                self.agents
            ));
        }
        check_share("failure", self.failure)?;
        if self.crash_every.is_some_and(|d| d.as_micros() < 1_000) {
            return Err("crash_every must be at least 1ms".into());
        }
        Supervisor::new(self.supervisor.clone(), Vec::new())
            .map(drop)
            .map_err(|e| e.to_string())
    }

    fn children(&self, slot: usize) -> Vec<ChildSpec> {
        (0..self.agents)
            .map(|i| ChildSpec {
                name: self.agent_name(slot, i),
                restart: Restart::Permanent,
            })
            .collect()
    }
}

impl fmt::Display for AgentGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.supervisor;
        write!(
            f,
            "agents {} x{} on {} ({:?}, at most {} restarts in {} ms, {:.1}% of messages fail",
            self.name,
            self.agents,
            self.nodes,
            c.strategy,
            c.max_restarts,
            c.period_ms,
            self.failure * 100.0
        )?;
        match self.crash_every {
            Some(d) => write!(f, ", an instance fails every {d:?} on average)"),
            None => write!(f, ")"),
        }
    }
}

/// A seeded stream of agent messages: `rate` per second over the selection together, for
/// `duration`, each from a random running node of the selection to a random agent, a request
/// with probability `requests` (else a send), each with `deadline` to end.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AgentMessages {
    /// Which nodes send.
    pub nodes: Nodes,
    /// Messages per second, over the whole selection.
    pub rate: f64,
    /// How long they keep coming.
    pub duration: Duration,
    /// Each message's deadline (a send's to be queued, a request's to be answered).
    pub deadline: Duration,
    /// Share of requests, 0–1.
    pub requests: f64,
}

impl AgentMessages {
    /// `rate` messages per second from `nodes` for `duration`: 70 % requests, 500 ms deadline.
    pub fn new(nodes: Nodes, rate: f64, duration: Duration) -> Self {
        Self {
            nodes,
            rate,
            duration,
            deadline: Duration::from_millis(500),
            requests: 0.7,
        }
    }

    /// Checks every field.
    pub fn validate(&self) -> Result<(), String> {
        self.pace().check("agent message", 1e5)?;
        if self.deadline.is_zero() {
            return Err("agent messages need a deadline above zero".into());
        }
        check_share("requests", self.requests)
    }

    fn pace(&self) -> Pace {
        Pace {
            rate: self.rate,
            duration: self.duration,
        }
    }
}

impl fmt::Display for AgentMessages {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "agent messages from {}: {}/s for {:?}, deadline {:?}, {:.0}% requests",
            self.nodes,
            self.rate,
            self.duration,
            self.deadline,
            self.requests * 100.0
        )
    }
}

/// What became of one message.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MessageRecord {
    /// The sending slot.
    pub slot: usize,
    /// The sender's life (its messages die with it).
    pub life: u64,
    /// The agent it was for.
    pub agent: String,
    /// A request (else a send).
    pub request: bool,
    /// When it was sent (world µs).
    pub started_us: u64,
    /// Its deadline on the sender's clock.
    pub until_local: Instant,
    /// Its deadline in world µs, as the sender's clock ran when it was sent.
    pub until_us: u64,
    /// When it ended (world µs); `None` while waiting or if its sender died first.
    pub ended_us: Option<u64>,
    /// When it ended on the sender's clock.
    pub ended_local: Option<Instant>,
    /// `ok`, or the error's label; `None` while waiting or if its sender died first.
    pub outcome: Option<&'static str>,
    /// Answers the sender took for it.
    pub answers: u32,
}

/// One supervisor's life: its failures, restarts and whether it gave up, in the local
/// milliseconds its machine was given.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SupervisionRecord {
    /// The node slot.
    pub slot: usize,
    /// The node's life.
    pub life: u64,
    /// The group.
    pub group: String,
    /// Its agents' names.
    pub agents: Vec<String>,
    /// Most restarts in a period.
    pub max_restarts: u32,
    /// The period.
    pub period_ms: u64,
    /// Failures of running agents reported to the machine.
    pub failures: Vec<u64>,
    /// Starts of an agent after its first.
    pub restarts: Vec<u64>,
    /// When it gave up, and why.
    pub gave_up: Option<(u64, String)>,
    /// When it gave up, in world µs.
    pub gave_up_us: Option<u64>,
    /// Starts decided after it gave up (never, in a correct supervisor).
    pub started_after_giving_up: u32,
}

/// A message in a mailbox or being handled.
#[derive(Clone, Debug)]
struct Work {
    caller: (usize, u64),
    id: u64,
    request: bool,
}

/// One agent of a running group.
struct Child {
    name: String,
    /// Grows at every start and every end, so events for an ended instance are told apart.
    instance: u64,
    busy: Option<Work>,
    mailbox: VecDeque<Work>,
    shown: Option<AgentState>,
    started: bool,
}

/// A group running on one node life.
struct RunningGroup {
    decl: usize,
    record: usize,
    machine: Supervisor,
    children: Vec<Child>,
}

/// The agents of one node life and its messages awaiting answers.
struct NodeAgents {
    life: u64,
    groups: Vec<RunningGroup>,
    outstanding: Outstanding<u64>,
    wakes: BTreeSet<u64>,
}

/// Where the world's agents stand.
#[derive(Default)]
pub(crate) struct AgentsLayer {
    groups: Vec<(AgentGroup, Vec<usize>)>,
    names: Vec<String>,
    nodes: BTreeMap<usize, NodeAgents>,
    messages: Vec<MessageRecord>,
    supervision: Vec<SupervisionRecord>,
    loads: Vec<(AgentMessages, Vec<usize>, u64)>,
}

/// An agents event waiting in the world's queue.
#[derive(Clone, Debug)]
pub(crate) enum AgentEvent {
    /// The next message of load `load`.
    NextMessage { load: usize },
    /// A message reaches node `to`.
    Arrive {
        from: usize,
        to: usize,
        lives: (u64, u64),
        connection: u64,
        id: u64,
        agent: String,
        request: bool,
    },
    /// An agent finished handling the message it was busy with.
    Handled { slot: usize, life: u64, at: Place },
    /// An agent instance fails on its own.
    Crash { slot: usize, life: u64, at: Place },
    /// A reply reaches the sender `to`.
    Reply {
        to: usize,
        life: u64,
        id: u64,
        result: Result<(), DeliveryError>,
        connection: Option<(usize, u64)>,
    },
    /// Supervisor backoffs and request deadlines of node `slot` are due.
    Wake { slot: usize, life: u64, at: u64 },
}

/// One agent instance: group, child, instance number.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Place {
    group: usize,
    child: usize,
    instance: u64,
}

impl AgentEvent {
    /// The slot it happens on; `None` for the world's own.
    pub(crate) fn slot(&self) -> Option<usize> {
        match self {
            AgentEvent::NextMessage { .. } => None,
            AgentEvent::Arrive { to, .. } | AgentEvent::Reply { to, .. } => Some(*to),
            AgentEvent::Handled { slot, .. }
            | AgentEvent::Crash { slot, .. }
            | AgentEvent::Wake { slot, .. } => Some(*slot),
        }
    }
}

impl World {
    /// Every agent message so far, by number.
    pub fn agent_messages(&self) -> &[MessageRecord] {
        &self.agents.messages
    }

    /// Every supervisor life so far.
    pub fn supervision(&self) -> &[SupervisionRecord] {
        &self.agents.supervision
    }

    /// The state the node in `slot` shows for its own agent `name` now, if it runs one.
    pub fn local_agent_state(&self, slot: usize, name: &str) -> Option<AgentState> {
        let node = self.agents.nodes.get(&slot)?;
        if node.life != self.node(slot).life() {
            return None;
        }
        node.groups.iter().find_map(|g| {
            let child = g.children.iter().position(|c| c.name == name)?;
            Some(directory_state(&g.machine, ChildId(child), false))
        })
    }

    /// The application on each of `slots` spawns `group` (now if up, and at every start).
    pub(crate) fn declare_agents(&mut self, group: AgentGroup, slots: Vec<usize>) {
        for &slot in &slots {
            self.agents
                .names
                .extend((0..group.agents).map(|i| group.agent_name(slot, i)));
        }
        let decl = self.agents.groups.len();
        self.agents.groups.push((group, slots.clone()));
        for slot in slots {
            if self.node(slot).is_up() {
                self.spawn_group(slot, decl);
            }
        }
    }

    /// The node in `slot` just started: its application spawns its groups again.
    pub(crate) fn spawn_agents_at_start(&mut self, slot: usize) {
        let decls: Vec<usize> = (0..self.agents.groups.len())
            .filter(|&d| self.agents.groups[d].1.contains(&slot))
            .collect();
        for decl in decls {
            self.spawn_group(slot, decl);
        }
    }

    /// Starts a message load now.
    pub(crate) fn start_agent_messages(&mut self, load: AgentMessages, slots: Vec<usize>) {
        let end = self.now_us() + load.duration.as_micros() as u64;
        let gap = 1 + self.random_below(load.pace().max_gap_us());
        let index = self.agents.loads.len();
        self.agents.loads.push((load, slots, end));
        if self.now_us() + gap <= end {
            self.push_agents(self.now_us() + gap, AgentEvent::NextMessage { load: index });
        }
    }

    /// The node in `slot` died: its agents, their mailboxes and its waiting messages go.
    pub(crate) fn agents_end_life(&mut self, slot: usize) {
        self.agents.nodes.remove(&slot);
    }

    /// Carries out an agents event due now.
    pub(crate) fn agents_deliver(&mut self, event: AgentEvent) {
        match event {
            AgentEvent::NextMessage { load } => self.next_agent_message(load),
            AgentEvent::Arrive {
                from,
                to,
                lives,
                connection,
                id,
                agent,
                request,
            } => {
                let current = (self.node(from).life(), self.node(to).life());
                if current == lives && self.network().connection(from, to) == connection {
                    self.arrive_agent(to, (from, lives.0), id, &agent, request);
                }
            }
            AgentEvent::Handled { slot, life, at } => {
                if self.current(slot, life) {
                    self.agent_handled(slot, at);
                }
            }
            AgentEvent::Crash { slot, life, at } => {
                if self.current(slot, life) && self.instance_runs(slot, at) {
                    let name = self.child_mut(slot, at).map(|c| c.name.clone());
                    self.note(format_args!("n{slot} agent {name:?} fails"));
                    self.fail_child(slot, at, Exit::Failed("simulated failure".into()));
                }
            }
            AgentEvent::Reply {
                to,
                life,
                id,
                result,
                connection,
            } => {
                let intact = connection
                    .is_none_or(|(from, conn)| self.network().connection(from, to) == conn);
                if intact && self.current(to, life) {
                    self.take_reply(to, id, result);
                }
            }
            AgentEvent::Wake { slot, life, at } => {
                if self.current(slot, life) {
                    self.agents_wake(slot, at);
                }
            }
        }
    }

    /// Whether `life` is the running life of `slot` (its agents state is created on demand).
    fn current(&self, slot: usize, life: u64) -> bool {
        self.node(slot).is_up_in(life)
    }

    /// The agents state of the node in `slot`, fresh for each life.
    fn node_agents(&mut self, slot: usize) -> &mut NodeAgents {
        let life = self.node(slot).life();
        let fresh = self.agents.nodes.get(&slot).is_none_or(|n| n.life != life);
        if fresh {
            let node = NodeAgents {
                life,
                groups: Vec::new(),
                outstanding: Outstanding::new(),
                wakes: BTreeSet::new(),
            };
            self.agents.nodes.insert(slot, node);
        }
        self.agents.nodes.get_mut(&slot).expect("inserted above")
    }

    /// The supervisor's clock on `slot`: local milliseconds.
    fn sup_now(&mut self, slot: usize) -> Time {
        Time(self.local_now(slot).elapsed().as_millis() as u64)
    }

    fn spawn_group(&mut self, slot: usize, decl: usize) {
        let group = self.agents.groups[decl].0.clone();
        let Ok(machine) = Supervisor::new(group.supervisor.clone(), group.children(slot)) else {
            return; // validated when declared
        };
        let life = self.node(slot).life();
        let record = self.agents.supervision.len();
        self.agents.supervision.push(SupervisionRecord {
            slot,
            life,
            group: group.name.clone(),
            agents: (0..group.agents)
                .map(|i| group.agent_name(slot, i))
                .collect(),
            max_restarts: group.supervisor.max_restarts,
            period_ms: group.supervisor.period_ms,
            failures: Vec::new(),
            restarts: Vec::new(),
            gave_up: None,
            gave_up_us: None,
            started_after_giving_up: 0,
        });
        let children = (0..group.agents)
            .map(|i| Child {
                name: group.agent_name(slot, i),
                instance: 0,
                busy: None,
                mailbox: VecDeque::new(),
                shown: None,
                started: false,
            })
            .collect();
        let now = self.sup_now(slot);
        let node = self.node_agents(slot);
        let index = node.groups.len();
        node.groups.push(RunningGroup {
            decl,
            record,
            machine,
            children,
        });
        let actions = node.groups[index].machine.start(now);
        self.note(format_args!("n{slot} spawns {}", group.name));
        self.run_actions(slot, index, actions);
    }

    /// Carries out the supervisor's actions for group `g` of `slot`, in order; a stop is
    /// carried out at once and its exit reported before the next action.
    fn run_actions(&mut self, slot: usize, g: usize, actions: Vec<Action>) {
        let mut queue: VecDeque<Action> = actions.into();
        while let Some(action) = queue.pop_front() {
            match action {
                Action::Start(child) => self.start_child(slot, g, child.0),
                Action::Stop(child) => {
                    self.end_instance(slot, g, child.0, "stopped before answering");
                    let now = self.sup_now(slot);
                    let group = &mut self.node_agents(slot).groups[g];
                    queue.extend(group.machine.exited(now, child, Exit::Normal));
                }
                Action::GaveUp { reason } => {
                    let now = self.sup_now(slot);
                    let now_us = self.now_us();
                    let record = self.node_agents(slot).groups[g].record;
                    self.note(format_args!("n{slot} supervisor gave up: {reason}"));
                    let r = &mut self.agents.supervision[record];
                    r.gave_up = Some((now.0, reason));
                    r.gave_up_us = Some(now_us);
                }
            }
        }
        self.drop_dead_mail(slot, g);
        self.publish_states(slot, g);
        self.arm_agents_wake(slot);
    }

    fn start_child(&mut self, slot: usize, g: usize, c: usize) {
        let now = self.sup_now(slot);
        let life = self.node(slot).life();
        let group = &mut self.node_agents(slot).groups[g];
        let (decl, record, gave_up) = (group.decl, group.record, group.machine.gave_up());
        let child = &mut group.children[c];
        child.instance += 1;
        let (instance, again) = (child.instance, child.started);
        child.started = true;
        let r = &mut self.agents.supervision[record];
        if again {
            r.restarts.push(now.0);
        }
        if gave_up {
            r.started_after_giving_up += 1;
        }
        if let Some(mean) = self.agents.groups[decl].0.crash_every {
            let lifetime = 1 + self.random_below(2 * mean.as_micros() as u64);
            let at = Place {
                group: g,
                child: c,
                instance,
            };
            self.push_agents(
                self.now_us() + lifetime,
                AgentEvent::Crash { slot, life, at },
            );
        }
        self.next_work(slot, g, c);
    }

    /// An instance ends (stopped or failed, as `why` says): the message it was handling fails.
    fn end_instance(&mut self, slot: usize, g: usize, c: usize, why: &str) {
        let Some(child) = self.node_agents(slot).groups[g].children.get_mut(c) else {
            return;
        };
        child.instance += 1;
        let name = child.name.clone();
        if let Some(work) = child.busy.take() {
            let error = DeliveryError::Handler {
                name,
                message: why.to_owned(),
            };
            self.reply(slot, &work, Err(error));
        }
    }

    /// Agent `at` failed with `exit`: the supervisor decides.
    fn fail_child(&mut self, slot: usize, at: Place, exit: Exit) {
        self.end_instance(slot, at.group, at.child, "failed before answering");
        let now = self.sup_now(slot);
        let group = &mut self.node_agents(slot).groups[at.group];
        let record = group.record;
        let counted = matches!(
            group.machine.child_state(ChildId(at.child)),
            Some(ChildState::Running { .. })
        );
        let actions = group.machine.exited(now, ChildId(at.child), exit);
        if counted {
            self.agents.supervision[record].failures.push(now.0);
        }
        self.run_actions(slot, at.group, actions);
    }

    fn instance_runs(&mut self, slot: usize, at: Place) -> bool {
        let group = &self.node_agents(slot).groups[at.group];
        group.children[at.child].instance == at.instance
            && matches!(
                group.machine.child_state(ChildId(at.child)),
                Some(ChildState::Running { .. })
            )
    }

    fn child_mut(&mut self, slot: usize, at: Place) -> Option<&mut Child> {
        self.node_agents(slot)
            .groups
            .get_mut(at.group)?
            .children
            .get_mut(at.child)
    }

    /// Starts handling the next queued message of agent `c`, if it runs and is idle.
    fn next_work(&mut self, slot: usize, g: usize, c: usize) {
        let life = self.node(slot).life();
        let group = &mut self.node_agents(slot).groups[g];
        let running = matches!(
            group.machine.child_state(ChildId(c)),
            Some(ChildState::Running { .. })
        );
        let child = &mut group.children[c];
        if !running || child.busy.is_some() {
            return;
        }
        let Some(work) = child.mailbox.pop_front() else {
            return;
        };
        child.busy = Some(work);
        let at = Place {
            group: g,
            child: c,
            instance: child.instance,
        };
        let took = HANDLE_US.start + self.random_below(HANDLE_US.end - HANDLE_US.start);
        self.push_agents(self.now_us() + took, AgentEvent::Handled { slot, life, at });
    }

    /// Agent `at` finished its message: it answers, or panics and is reported to its
    /// supervisor.
    fn agent_handled(&mut self, slot: usize, at: Place) {
        if !self.instance_runs(slot, at) {
            return;
        }
        let decl = self.node_agents(slot).groups[at.group].decl;
        let failure = self.agents.groups[decl].0.failure;
        let panics = self.random_below(1_000_000) < (failure * 1e6) as u64;
        let Some(child) = self.child_mut(slot, at) else {
            return;
        };
        let (work, name) = (child.busy.take(), child.name.clone());
        if panics {
            if let Some(work) = &work {
                let message = "simulated panic".to_owned();
                self.reply(slot, work, Err(DeliveryError::Panicked { name, message }));
            }
            return self.fail_child(slot, at, Exit::Panicked("simulated panic".into()));
        }
        if let Some(work) = work.filter(|w| w.request) {
            self.reply(slot, &work, Ok(()));
        }
        self.next_work(slot, at.group, at.child);
    }

    /// Messages queued for agents that will not run again are refused.
    fn drop_dead_mail(&mut self, slot: usize, g: usize) {
        let group = &mut self.node_agents(slot).groups[g];
        let mut refused = Vec::new();
        for c in 0..group.children.len() {
            let state = directory_state(&group.machine, ChildId(c), false);
            if state.accepts_messages() {
                continue;
            }
            let child = &mut group.children[c];
            let error = DeliveryError::DeadAgent {
                name: child.name.clone(),
                state,
            };
            refused.extend(child.mailbox.drain(..).map(|w| (w, error.clone())));
        }
        for (work, error) in refused {
            self.reply(slot, &work, Err(error));
        }
    }

    /// Writes the directory entries of group `g`'s agents whose state changed.
    fn publish_states(&mut self, slot: usize, g: usize) {
        let group = &mut self.node_agents(slot).groups[g];
        let decl = group.decl;
        let mut changed = Vec::new();
        for c in 0..group.children.len() {
            let state = directory_state(&group.machine, ChildId(c), false);
            let child = &mut group.children[c];
            if child.shown != Some(state) {
                child.shown = Some(state);
                changed.push((child.name.clone(), state));
            }
        }
        let capability = self.agents.groups[decl].0.capability.clone();
        for (name, state) in changed {
            let record = AgentRecord {
                capabilities: BTreeSet::from([capability.clone()]),
                state,
                ..AgentRecord::default()
            };
            let request = AppRequest::Ephemeral {
                keyspace: AGENTS_KEYSPACE.to_owned(),
                name,
                value: Some(record.encode()),
            };
            self.request_after(slot, 0, request);
        }
    }

    /// Queues a wake-up at the earliest supervisor backoff or request deadline of `slot`.
    fn arm_agents_wake(&mut self, slot: usize) {
        let node = self.node_agents(slot);
        let backoff = node
            .groups
            .iter()
            .filter_map(|g| g.machine.poll_timeout())
            .min()
            .map(|t| Instant::from_elapsed(Duration::from_millis(t.0)));
        let due = match (backoff, node.outstanding.poll_timeout()) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => match a.or(b) {
                Some(due) => due,
                None => return,
            },
        };
        let now = self.now_us();
        let mut at = self.world_at(slot, due).max(now);
        let queued_by_now = self.node_agents(slot).wakes.range(..=now).next().is_some();
        if at == now && !queued_by_now {
            // Due and not cleared by the wake that was due: only a broken machine does that.
            // Looking again a millisecond later keeps the run going, not spinning in place.
            at = now + STALE_RETRY_US;
        }
        let life = self.node(slot).life();
        if self.node_agents(slot).wakes.insert(at) {
            self.push_agents(at, AgentEvent::Wake { slot, life, at });
        }
    }

    fn agents_wake(&mut self, slot: usize, at: u64) {
        self.node_agents(slot).wakes.remove(&at);
        let now = self.sup_now(slot);
        for g in 0..self.node_agents(slot).groups.len() {
            let group = &mut self.node_agents(slot).groups[g];
            if group.machine.poll_timeout().is_some_and(|t| t <= now) {
                let actions = group.machine.handle_timeout(now);
                self.run_actions(slot, g, actions);
            }
        }
        let local = self.local_now(slot);
        for id in self.node_agents(slot).outstanding.expire(local) {
            self.end_message(slot, id, "deadline_exceeded");
        }
        self.arm_agents_wake(slot);
    }

    /// One message of load `load` from a random running node of its selection, then the next
    /// after a random gap.
    fn next_agent_message(&mut self, load: usize) {
        let (messages, slots, end) = &self.agents.loads[load];
        let (messages, end) = (messages.clone(), *end);
        let running: Vec<usize> = slots
            .iter()
            .copied()
            .filter(|&s| self.node(s).status() == NodeStatus::Running)
            .collect();
        if !running.is_empty() && !self.agents.names.is_empty() {
            let slot = running[self.random_below(running.len() as u64) as usize];
            let pick = self.random_below(self.agents.names.len() as u64) as usize;
            let agent = self.agents.names[pick].clone();
            let request = self.random_below(1_000_000) < (messages.requests * 1e6) as u64;
            self.message_agent(slot, &agent, request, messages.deadline);
        }
        let next = self.now_us() + 1 + self.random_below(messages.pace().max_gap_us());
        if next <= end {
            self.push_agents(next, AgentEvent::NextMessage { load });
        }
    }

    /// The application on `slot` sends (or requests, with `request`) a message to agent
    /// `agent`; returns its number, or `None` when the node is not running.
    pub fn message_agent(
        &mut self,
        slot: usize,
        agent: &str,
        request: bool,
        deadline: Duration,
    ) -> Option<u64> {
        // The directory kept up to date from the core's changes, as the runtime keeps it (in
        // debug builds each read is checked against one built from scratch).
        let (directory, _) = self.directory(slot)?;
        let local = self.local_agent_state(slot, agent);
        // Where it goes, by the core's rule; the remote node as a slot.
        let target = route::resolve(agent, local, directory.agents()).map(|target| match target {
            Target::Local => Some(slot),
            Target::Remote(entry) => self.slot_of(entry.node.id),
        });
        let now = self.local_now(slot);
        let until_local = now + deadline;
        let id = self.agents.messages.len() as u64;
        self.agents.messages.push(MessageRecord {
            slot,
            life: self.node(slot).life(),
            agent: agent.to_owned(),
            request,
            started_us: self.now_us(),
            until_local,
            until_us: self.world_at(slot, until_local),
            ended_us: None,
            ended_local: None,
            outcome: None,
            answers: 0,
        });
        let kind = if request { "request" } else { "send" };
        self.note(format_args!("n{slot} {kind} #{id} to {agent}"));
        self.node_agents(slot).outstanding.open(id, until_local);
        self.arm_agents_wake(slot);
        match target {
            Err(error) => self.take_reply(slot, id, Err(error)),
            Ok(Some(to)) if to == slot => {
                self.arrive_agent(slot, (slot, self.node(slot).life()), id, agent, request)
            }
            Ok(to) => self.send_to_node(slot, to, id, agent, request),
        }
        Some(id)
    }

    fn send_to_node(
        &mut self,
        slot: usize,
        to: Option<usize>,
        id: u64,
        agent: &str,
        request: bool,
    ) {
        let life = self.node(slot).life();
        let refused = |reason: &str| AgentEvent::Reply {
            to: slot,
            life,
            id,
            result: Err(DeliveryError::Unreachable(reason.to_owned())),
            connection: None,
        };
        let Some(to) = to.filter(|&to| self.node(to).is_up()) else {
            return self.push_agents(self.now_us() + REFUSED_AFTER_US, refused("node down"));
        };
        match self.stream_send(slot, to, Channel::Rpc) {
            None => self.push_agents(self.now_us() + REFUSED_AFTER_US, refused("link cut")),
            Some((at, connection)) => {
                let arrive = AgentEvent::Arrive {
                    from: slot,
                    to,
                    lives: (life, self.node(to).life()),
                    connection,
                    id,
                    agent: agent.to_owned(),
                    request,
                };
                self.push_agents(at, arrive);
            }
        }
    }

    /// A message for agent `agent` reached node `slot`: refused, or queued for the agent (a
    /// send is answered once queued, a request once handled).
    fn arrive_agent(
        &mut self,
        slot: usize,
        caller: (usize, u64),
        id: u64,
        agent: &str,
        request: bool,
    ) {
        let work = Work {
            caller,
            id,
            request,
        };
        let local = self.local_agent_state(slot, agent);
        if let Err(error) = route::admit(agent, local) {
            return self.reply(slot, &work, Err(error));
        }
        let place = self
            .node_agents(slot)
            .groups
            .iter()
            .enumerate()
            .find_map(|(g, group)| {
                let c = group.children.iter().position(|c| c.name == agent)?;
                Some((g, c))
            });
        let Some((g, c)) = place else {
            return self.reply(
                slot,
                &work,
                Err(DeliveryError::UnknownAgent(agent.to_owned())),
            );
        };
        let child = &mut self.node_agents(slot).groups[g].children[c];
        if child.mailbox.len() >= MAILBOX_MAX {
            return self.reply(
                slot,
                &work,
                Err(DeliveryError::MailboxFull(agent.to_owned())),
            );
        }
        child.mailbox.push_back(work.clone());
        if !request {
            self.reply(slot, &work, Ok(()));
        }
        self.next_work(slot, g, c);
    }

    /// Node `slot` answers `work`'s sender: in place when it is itself, else over the network.
    fn reply(&mut self, slot: usize, work: &Work, result: Result<(), DeliveryError>) {
        let (caller, life) = work.caller;
        let reply = |connection| AgentEvent::Reply {
            to: caller,
            life,
            id: work.id,
            result: result.clone(),
            connection,
        };
        if caller == slot {
            let event = reply(None);
            return self.push_agents(self.now_us(), event);
        }
        if let Some((at, connection)) = self.stream_send(slot, caller, Channel::Rpc) {
            self.push_agents(at, reply(Some((slot, connection))));
        }
    }

    /// A reply to message `id` reached its sender on `slot`.
    fn take_reply(&mut self, slot: usize, id: u64, result: Result<(), DeliveryError>) {
        let now = self.local_now(slot);
        match self.node_agents(slot).outstanding.answer(now, id) {
            Taken::Answered => {
                self.agents.messages[id as usize].answers += 1;
                let outcome = result.as_ref().map_or_else(DeliveryError::label, |()| "ok");
                self.end_message(slot, id, outcome);
            }
            Taken::Late => self.end_message(slot, id, "deadline_exceeded"),
            Taken::Stale => {}
        }
    }

    fn end_message(&mut self, slot: usize, id: u64, outcome: &'static str) {
        let (now_us, now_local) = (self.now_us(), self.local_now(slot));
        let record = &mut self.agents.messages[id as usize];
        record.ended_us = Some(now_us);
        record.ended_local = Some(now_local);
        record.outcome = Some(outcome);
        self.note(format_args!("n{slot} message #{id} ended {outcome}"));
    }
}
