//! What an application spawns: an [`AgentSpec`] (a name, a factory of instances, capabilities,
//! a restart policy) and groups of them under one supervisor.

use std::collections::BTreeSet;

use foundation_core::agents::record::{check_agent_name, check_capabilities};
use foundation_core::agents::supervisor::{ChildSpec, Restart, Supervisor, SupervisorConfig};

use super::agent::Agent;
use super::instance::{launcher, Launch};
use super::AgentsError;

/// One agent to spawn.
///
/// ```no_run
/// # use foundation_engine::runtime::agents::{Agent, AgentSpec, Context, HandlerError, Message};
/// # struct Echo;
/// # impl Agent for Echo {
/// #     async fn handle(&mut self, _: &Context, m: Message) -> Result<bytes::Bytes, HandlerError> { Ok(m.body) }
/// # }
/// let spec = AgentSpec::new("echo", || Echo).capability("echo");
/// ```
#[derive(Clone)]
pub struct AgentSpec {
    pub(super) name: String,
    pub(super) capabilities: BTreeSet<String>,
    pub(super) restart: Restart,
    pub(super) launch: Launch,
}

impl AgentSpec {
    /// An agent called `name` whose every instance `factory` builds; permanent (always
    /// restarted) and without capabilities until told otherwise.
    pub fn new<A, F>(name: impl Into<String>, factory: F) -> Self
    where
        A: Agent,
        F: Fn() -> A + Send + Sync + 'static,
    {
        Self {
            name: name.into(),
            capabilities: BTreeSet::new(),
            restart: Restart::Permanent,
            launch: launcher(factory),
        }
    }

    /// Adds a capability others find the agent by. Capabilities are declared here, not by
    /// the agent, because they are replicated before its first instance runs and stay the
    /// same across restarts.
    pub fn capability(mut self, capability: impl Into<String>) -> Self {
        self.capabilities.insert(capability.into());
        self
    }

    /// When the agent is started again after it exits.
    pub fn restart(mut self, restart: Restart) -> Self {
        self.restart = restart;
        self
    }

    /// The agent's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Checks its name and capabilities.
    pub(super) fn check(&self) -> Result<(), AgentsError> {
        check_agent_name(&self.name)?;
        check_capabilities(&self.capabilities)?;
        Ok(())
    }
}

/// Agents supervised together by one machine: one-for-all restarts all of them when one fails,
/// and the restart intensity counts the restarts of all of them.
#[derive(Clone)]
pub(super) struct GroupSpec {
    pub name: String,
    pub config: SupervisorConfig,
    pub agents: Vec<AgentSpec>,
}

impl GroupSpec {
    /// Checks names and capabilities and builds the group's supervisor machine.
    pub fn machine(&self) -> Result<Supervisor, AgentsError> {
        check_agent_name(&self.name)?;
        for agent in &self.agents {
            agent.check()?;
        }
        let children = self
            .agents
            .iter()
            .map(|a| ChildSpec {
                name: a.name.clone(),
                restart: a.restart,
            })
            .collect();
        Ok(Supervisor::new(self.config.clone(), children)?)
    }
}
