//! MABEAM agents on a running node: spawn supervised [`Agent`]s, find any agent of the
//! cluster by name, capability or node, and send them messages.
//!
//! ```no_run
//! # use std::time::Duration;
//! # use foundation_engine::runtime::agents::{answer, Agent, AgentSpec, Context, HandlerError, Message};
//! struct Doubler;
//! impl Agent for Doubler {
//!     async fn handle(&mut self, _: &Context, m: Message) -> Result<bytes::Bytes, HandlerError> {
//!         answer(&(m.decode::<u64>()? * 2))
//!     }
//! }
//! # async fn demo(node: foundation_engine::runtime::Node) -> Result<(), Box<dyn std::error::Error>> {
//! let agents = node.agents();
//! agents.spawn(AgentSpec::new("doubler", || Doubler).capability("math")).await?;
//! let four: u64 = agents.request("doubler", &2u64, Duration::from_secs(1)).await?;
//! # Ok(()) }
//! ```
//!
//! The pieces: `agent` (the trait), `group` (what is spawned), `instance` (one running
//! instance and how its end is observed), `supervisor` (the task that runs the pure supervisor
//! machines and publishes lifecycle states), `messaging` (send, request, multicast), `remote`
//! (the rpc channel), `metrics`.

mod agent;
mod group;
mod instance;
mod messaging;
mod metrics;
mod remote;
pub mod sessions;
mod supervisor;

pub use agent::{answer, Agent, Context, HandlerError, Health, Message, StopReason};
pub use foundation_core::agents::supervisor::{Restart, Strategy, SupervisorConfig};
pub use foundation_core::agents::{AgentDirectory, AgentEntry, AgentState, DeliveryError};
pub use group::AgentSpec;
pub use messaging::Delivered;
pub(crate) use remote::AgentRequests;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use foundation_core::agents::record::AgentRecord;
use foundation_core::agents::supervisor::SupervisorError;
use foundation_core::agents::BadAgent;
use foundation_core::ephemeral::AGENTS_KEYSPACE;
use foundation_core::membership::MemberView;
use foundation_core::node::WriteError;
use foundation_core::services::admission::MAX_CALL_DEADLINE;
use foundation_core::services::Directory;
use foundation_transport::{Endpoint, IncomingRequest, NodeId};
use prometheus_client::registry::Registry;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::runtime::request::{set_ephemeral, Request};
use group::GroupSpec;
use instance::{Envelope, Mailbox};
use metrics::AgentsMetrics;
use supervisor::Command;

/// Settings of a node's agents.
#[derive(Clone, Debug)]
pub struct AgentsConfig {
    /// The supervisor of an agent spawned alone with [`AgentsHandle::spawn`].
    pub supervisor: SupervisorConfig,
    /// Messages queued per agent; a message to a full mailbox is refused, not waited for.
    pub mailbox: usize,
    /// Largest message, sent or received.
    pub max_message_bytes: usize,
    /// How long a `send` to another node waits for the message to be queued there.
    pub send_timeout: Duration,
    /// Longest a request from another node waits here for its agent's answer, whatever
    /// deadline it carried (it waits the smaller of the two): a peer cannot hold a task here
    /// for weeks behind an agent that never answers. A caller on another node therefore gets
    /// `DeadlineExceeded` past it, where a caller here waits its own deadline. `Duration::MAX`
    /// means no cap. Sessions a peer places here (`Coordinator::Rendezvous`) are bounded by
    /// their own `answer_within` and commit timeout instead.
    pub max_request_deadline: Duration,
    /// How long a stopped instance may take to finish its message and `terminate` before it
    /// is aborted.
    pub stop_grace: Duration,
    /// How often every running agent is asked for its health; a change is written to its
    /// directory entry, so every node shows it.
    pub health_interval: Duration,
}

impl Default for AgentsConfig {
    fn default() -> Self {
        Self {
            supervisor: SupervisorConfig::default(),
            mailbox: 1024,
            max_message_bytes: 1 << 20,
            send_timeout: Duration::from_secs(5),
            max_request_deadline: MAX_CALL_DEADLINE,
            stop_grace: Duration::from_secs(5),
            health_interval: Duration::from_secs(1),
        }
    }
}

/// Why spawning or stopping agents failed.
#[derive(Debug, thiserror::Error)]
pub enum AgentsError {
    /// A name or capability is not acceptable.
    #[error(transparent)]
    Bad(#[from] BadAgent),
    /// The supervisor settings are invalid, or two agents of a group share a name.
    #[error(transparent)]
    Supervisor(#[from] SupervisorError),
    /// An agent or group of this node already has the name.
    #[error("an agent or group named {0:?} already runs in this node")]
    NameTaken(String),
    /// No group of this name runs in this node.
    #[error("no agent group named {0:?} in this node")]
    UnknownGroup(String),
    /// The directory write was refused (a size limit).
    #[error(transparent)]
    Refused(#[from] WriteError),
    /// The node has stopped.
    #[error("the node has stopped")]
    Stopped,
}

/// A change in the lifecycle of this node's agents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AgentEvent {
    /// An agent entered `state`.
    State {
        /// The agent.
        name: String,
        /// Its new state.
        state: AgentState,
    },
    /// A group's supervisor gave up after too many restarts; its agents are `Failed`.
    GaveUp {
        /// The group (an agent spawned alone is a group of its own name).
        group: String,
        /// Which agent failed once too often.
        reason: String,
    },
    /// A coordination session this node coordinates opened or ended.
    Session {
        /// The session.
        session: foundation_core::vars::SessionId,
        /// Its mechanism (`sealed-bid`, `vote`, `english`, `dutch`, `contract-net`, `vcg`,
        /// `market`).
        mechanism: &'static str,
        /// What happened, in words: `opened with N participants`, `round K: asked N
        /// participants`, or the decision, how many answered, and whether it committed.
        what: String,
    },
}

/// One local agent, as messaging and the supervisor share it.
struct LocalAgent {
    mailbox: Arc<Mailbox>,
    capabilities: BTreeSet<String>,
    state: AgentState,
    /// Its latest health report.
    health: Health,
    /// Whether `state` is in the directory yet.
    published: bool,
}

/// State every clone of the handle, the supervisor task and the rpc server share.
pub(crate) struct Shared {
    node: NodeId,
    config: AgentsConfig,
    requests: mpsc::Sender<Request>,
    directory: watch::Receiver<Arc<Directory>>,
    /// The member table, for placing session coordinators.
    members: watch::Receiver<Vec<MemberView>>,
    endpoint: Endpoint,
    local: RwLock<BTreeMap<String, LocalAgent>>,
    /// How many local agents are in each state, changed with the table: the gauges are set
    /// from it rather than from a count over every local agent at each change.
    states: std::sync::Mutex<BTreeMap<AgentState, usize>>,
    commands: mpsc::Sender<Command>,
    metrics: AgentsMetrics,
    events: broadcast::Sender<AgentEvent>,
    /// The sessions this node coordinated.
    sessions: sessions::SessionLog,
    /// Held from reading an agent's entry to writing it to the directory, so directory writes
    /// land in the order of what they show: a health report read just before a stop once
    /// landed after the stop's delete and brought the agent back for good.
    writing: tokio::sync::Mutex<()>,
}

/// Events buffered per subscriber before the oldest are dropped.
const EVENT_BUFFER: usize = 1024;
/// Commands queued for the supervisor task.
const COMMAND_BUFFER: usize = 1024;

/// Starts the node's supervisor task and the server of remote agent messages.
pub(crate) fn start(
    config: AgentsConfig,
    requests: mpsc::Sender<Request>,
    directory: watch::Receiver<Arc<Directory>>,
    members: watch::Receiver<Vec<MemberView>>,
    endpoint: Endpoint,
    incoming: mpsc::Receiver<IncomingRequest>,
    registry: &mut Registry,
) -> AgentsHandle {
    let (commands, commands_rx) = mpsc::channel(COMMAND_BUFFER);
    let shared = Arc::new(Shared {
        node: endpoint.local().id,
        config,
        requests,
        directory,
        members,
        endpoint,
        local: RwLock::default(),
        states: std::sync::Mutex::default(),
        commands,
        metrics: AgentsMetrics::register(registry),
        events: broadcast::channel(EVENT_BUFFER).0,
        sessions: sessions::SessionLog::default(),
        writing: tokio::sync::Mutex::default(),
    });
    tokio::spawn(supervisor::Task::new(shared.clone(), commands_rx).run());
    let handle = AgentsHandle { shared };
    tokio::spawn(remote::serve(handle.clone(), incoming));
    tokio::spawn(report_health(handle.clone()));
    handle
}

/// Asks every running agent of this node for its health every `health_interval` and writes
/// changes to the directory, until the supervisor task has ended (the node stopped). An agent
/// busy past the interval keeps its last report, and one whose mailbox is more than half full
/// is not asked that round: the question takes a mailbox slot a message may need.
async fn report_health(handle: AgentsHandle) {
    let interval = handle.shared.config.health_interval;
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !handle.shared.commands.is_closed() {
        ticks.tick().await;
        let running: Vec<String> = handle
            .shared
            .read()
            .iter()
            .filter(|(_, a)| a.state == AgentState::Running)
            .filter(|(_, a)| a.mailbox.sender.capacity() * 2 > a.mailbox.sender.max_capacity())
            .map(|(name, _)| name.clone())
            .collect();
        for name in running {
            if let Ok(health) = handle.health(&name, interval).await {
                handle.shared.set_health(&name, health).await;
            }
        }
    }
}

impl Shared {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, LocalAgent>> {
        self.local
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, LocalAgent>> {
        self.local
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Takes the names of `spec`'s agents for this node, with empty mailboxes.
    fn claim_names(&self, agents: &[AgentSpec]) -> Result<(), AgentsError> {
        let mut local = self.write();
        if let Some(taken) = agents.iter().find(|a| local.contains_key(&a.name)) {
            return Err(AgentsError::NameTaken(taken.name.clone()));
        }
        for agent in agents {
            let entry = LocalAgent {
                mailbox: Mailbox::new(self.config.mailbox),
                capabilities: agent.capabilities.clone(),
                state: AgentState::Restarting,
                health: Health::Healthy,
                published: false,
            };
            local.insert(agent.name.clone(), entry);
            self.count_state(None, Some(AgentState::Restarting));
        }
        Ok(())
    }

    fn mailbox(&self, name: &str) -> Option<Arc<Mailbox>> {
        self.read().get(name).map(|a| a.mailbox.clone())
    }

    fn context(self: &Arc<Self>, name: &str) -> Context {
        Context {
            name: name.to_owned(),
            agents: AgentsHandle {
                shared: self.clone(),
            },
        }
    }

    /// Enters agents `names`, just claimed, in the directory as running before their
    /// instances start. If the directory has no room for one (its keyspace's limits), none of
    /// them runs: the entries written are deleted, the names freed, and the refusal returned —
    /// rather than an agent that runs where no other node can find it.
    async fn list(&self, names: &[&str]) -> Result<(), AgentsError> {
        for (listed, name) in names.iter().enumerate() {
            if let Err(refused) = self.set_state(name, AgentState::Running).await {
                for name in &names[..listed] {
                    self.release(name).await;
                }
                for name in &names[listed..] {
                    self.unclaim(name);
                }
                return Err(refused.into());
            }
        }
        Ok(())
    }

    /// Records agent `name`'s state, and if it changed tells the directory, the metrics and
    /// the event subscribers. A refused directory write is returned (the event is not sent).
    async fn set_state(&self, name: &str, state: AgentState) -> Result<(), WriteError> {
        let _writing = self.writing.lock().await;
        let record = {
            let mut local = self.write();
            let Some(agent) = local.get_mut(name) else {
                return Ok(());
            };
            if agent.published && agent.state == state {
                return Ok(());
            }
            self.count_state(Some(agent.state), Some(state));
            agent.state = state;
            agent.published = true;
            AgentRecord {
                capabilities: agent.capabilities.clone(),
                state,
                health: agent.health.clone(),
            }
        };
        self.publish(name, Some(record)).await?;
        // Told once the directory here shows it: a subscriber looks the agent up on the news.
        let _ = self.events.send(AgentEvent::State {
            name: name.to_owned(),
            state,
        });
        Ok(())
    }

    /// Records agent `name`'s health report, and if it changed writes it to the directory.
    async fn set_health(&self, name: &str, health: Health) {
        let health = health.bounded();
        let _writing = self.writing.lock().await;
        let record = {
            let mut local = self.write();
            let Some(agent) = local.get_mut(name) else {
                return;
            };
            if agent.health == health || !agent.published {
                return;
            }
            agent.health = health.clone();
            AgentRecord {
                capabilities: agent.capabilities.clone(),
                state: agent.state,
                health,
            }
        };
        warn_unwritten(name, self.publish(name, Some(record)).await);
    }

    /// Forgets agent `name`: its mailbox closes and its directory entry is deleted.
    async fn release(&self, name: &str) {
        let _writing = self.writing.lock().await;
        self.unclaim(name);
        warn_unwritten(name, self.publish(name, None).await);
    }

    /// Forgets agent `name` here (its mailbox closes); its directory entry, if any, stays.
    fn unclaim(&self, name: &str) {
        if let Some(gone) = self.write().remove(name) {
            self.count_state(Some(gone.state), None);
        }
    }

    /// Writes agent `name`'s directory entry (`None` deletes it). A stopped node refuses
    /// nothing: there is nobody left to tell.
    async fn publish(&self, name: &str, record: Option<AgentRecord>) -> Result<(), WriteError> {
        let value = record.as_ref().map(AgentRecord::encode);
        let result = set_ephemeral(&self.requests, AGENTS_KEYSPACE, name.to_owned(), value).await;
        result.unwrap_or(Ok(()))
    }

    /// Moves one local agent from state `from` to `to` in the per-state gauges (`None`: it
    /// arrives or leaves). Called under the table's write lock, so counts follow the table.
    fn count_state(&self, from: Option<AgentState>, to: Option<AgentState>) {
        let mut states = self
            .states
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(from) = from {
            let count = states.entry(from).or_default();
            *count = count.saturating_sub(1);
            self.metrics.set_agents(from, *count);
        }
        if let Some(to) = to {
            let count = states.entry(to).or_default();
            *count += 1;
            self.metrics.set_agents(to, *count);
        }
    }
}

/// Logs a directory write of agent `name` that was refused where nobody waits for it.
fn warn_unwritten(name: &str, written: Result<(), WriteError>) {
    if let Err(e) = written {
        tracing::warn!(agent = %name, error = %e, "agent directory entry not written");
    }
}

/// The agents of one node, and its view of every agent in the cluster. Cheap to clone.
#[derive(Clone)]
pub struct AgentsHandle {
    pub(crate) shared: Arc<Shared>,
}

impl AgentsHandle {
    /// This node's id.
    pub fn node(&self) -> NodeId {
        self.shared.node
    }

    /// Spawns `agent` under a supervisor of its own with the node's default settings
    /// ([`AgentsConfig::supervisor`]); the group is named after the agent.
    pub async fn spawn(&self, agent: AgentSpec) -> Result<(), AgentsError> {
        let config = self.shared.config.supervisor.clone();
        self.spawn_with(agent, config).await
    }

    /// Spawns `agent` under a supervisor of its own with `config`.
    pub async fn spawn_with(
        &self,
        agent: AgentSpec,
        config: SupervisorConfig,
    ) -> Result<(), AgentsError> {
        let name = agent.name.clone();
        self.spawn_group(name, config, vec![agent]).await
    }

    /// Spawns `agents` under one supervisor called `group`, started in the given order and
    /// stopped in reverse. Returns once every agent has started and is in the directory here.
    pub async fn spawn_group(
        &self,
        group: impl Into<String>,
        config: SupervisorConfig,
        agents: Vec<AgentSpec>,
    ) -> Result<(), AgentsError> {
        let spec = GroupSpec {
            name: group.into(),
            config,
            agents,
        };
        self.command(|done| Command::Spawn { spec, done }).await
    }

    /// Adds `agent` to the running group `group` (or to the supervisor of an agent spawned
    /// alone under that name) as its last agent: started now — with the others, if a
    /// one-for-all restart is stopping them — stopped first, and restarted under the group's
    /// strategy and intensity. Returns once it has started and is in the directory here. A
    /// name taken on this node is [`AgentsError::NameTaken`]; a group that is stopping or gave
    /// up refuses with [`SupervisorError::NotRunning`].
    pub async fn start_child(&self, group: &str, agent: AgentSpec) -> Result<(), AgentsError> {
        let group = group.to_owned();
        self.command(|done| Command::AddChild { group, agent, done })
            .await
    }

    /// Stops group `group` (or the agent spawned alone under that name): its agents
    /// terminate in reverse start order and leave the directory.
    pub async fn stop(&self, group: &str) -> Result<(), AgentsError> {
        let group = group.to_owned();
        self.command(|done| Command::Stop { group, done }).await
    }

    async fn command(
        &self,
        command: impl FnOnce(oneshot::Sender<Result<(), AgentsError>>) -> Command,
    ) -> Result<(), AgentsError> {
        let (done, result) = oneshot::channel();
        self.shared
            .commands
            .send(command(done))
            .await
            .map_err(|_| AgentsError::Stopped)?;
        result.await.map_err(|_| AgentsError::Stopped)?
    }

    /// The state of this node's agent `name`, if it has one.
    pub fn state(&self, name: &str) -> Option<AgentState> {
        self.shared.read().get(name).map(|a| a.state)
    }

    /// Names of this node's agents.
    pub fn local_names(&self) -> Vec<String> {
        self.shared.read().keys().cloned().collect()
    }

    /// Asks this node's agent `name` how it is doing (between two of its messages).
    pub async fn health(&self, name: &str, deadline: Duration) -> Result<Health, DeliveryError> {
        let mailbox = self
            .shared
            .mailbox(name)
            .ok_or_else(|| DeliveryError::UnknownAgent(name.to_owned()))?;
        let (reply, answer) = oneshot::channel();
        messaging::enqueue(name, &mailbox, Envelope::Health(reply))?;
        match tokio::time::timeout(deadline, answer).await {
            Ok(Ok(health)) => Ok(health),
            Ok(Err(_)) => Err(self.dead(name)),
            Err(_) => Err(DeliveryError::DeadlineExceeded),
        }
    }

    /// The cluster's agents as this node sees them now.
    pub fn directory(&self) -> Arc<AgentDirectory> {
        self.shared.directory.borrow().agents().clone()
    }

    /// The agent a message to `name` goes to: this node's, else the one on the smallest node.
    pub fn lookup(&self, name: &str) -> Option<AgentEntry> {
        self.directory().get(name).cloned()
    }

    /// Every visible agent that declared `capability`.
    pub fn with_capability(&self, capability: &str) -> Vec<AgentEntry> {
        let directory = self.directory();
        directory
            .with_capability(capability)
            .into_iter()
            .cloned()
            .collect()
    }

    /// Every visible agent running in `node`.
    pub fn on_node(&self, node: NodeId) -> Vec<AgentEntry> {
        let directory = self.directory();
        directory.on_node(node).into_iter().cloned().collect()
    }

    /// Lifecycle changes of this node's agents from now on.
    pub fn events(&self) -> broadcast::Receiver<AgentEvent> {
        self.shared.events.subscribe()
    }

    /// Stops every group, the last spawned first, and deletes their directory entries; the
    /// node calls it before it leaves.
    pub(crate) async fn shutdown(&self) {
        self.end(Command::Shutdown).await;
    }

    /// Kills every agent instance without `terminate`, as a crash would.
    pub(crate) async fn abort(&self) {
        self.end(Command::Abort).await;
    }

    /// Sends the supervisor task a command that ends it, and waits until it has.
    async fn end(&self, command: fn(oneshot::Sender<()>) -> Command) {
        let (done, ended) = oneshot::channel();
        if self.shared.commands.send(command(done)).await.is_ok() {
            let _ = ended.await;
        }
    }

    /// The error for a local agent that took no more messages.
    fn dead(&self, name: &str) -> DeliveryError {
        DeliveryError::DeadAgent {
            name: name.to_owned(),
            state: self.state(name).unwrap_or(AgentState::Stopped),
        }
    }
}
