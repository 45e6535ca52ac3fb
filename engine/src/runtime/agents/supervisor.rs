//! The node's supervisor task: it runs the pure `foundation_core::agents::supervisor::Supervisor`
//! machine of every agent group, carries out its actions (start and stop instances, give up),
//! arms its `poll_timeout` with tokio, and publishes every agent's lifecycle state to the
//! cluster-wide directory, the local table messages are delivered by, metrics and events.
//!
//! Each group has its own machine, so restart intensity is counted per group: a single agent
//! spawned alone that fails too often stops alone, and the rest of the node carries on.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use foundation_agents::Time;
use foundation_core::agents::supervisor::{
    directory_state, Action, ChildId, ChildSpec, Exit, Supervisor, SupervisorError,
};
use foundation_core::agents::AgentState;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant as TokioInstant;

use super::group::{AgentSpec, GroupSpec};
use super::instance::{self, Running};
use super::{AgentEvent, AgentsError, Shared};

/// What the supervisor task is asked to do, and told.
pub(super) enum Command {
    Spawn {
        spec: GroupSpec,
        done: oneshot::Sender<Result<(), AgentsError>>,
    },
    Stop {
        group: String,
        done: oneshot::Sender<Result<(), AgentsError>>,
    },
    /// Add an agent to a running group.
    AddChild {
        group: String,
        agent: AgentSpec,
        done: oneshot::Sender<Result<(), AgentsError>>,
    },
    Exited {
        group: u64,
        child: ChildId,
        exit: Exit,
    },
    /// Stop every group, the last spawned first, then end.
    Shutdown(oneshot::Sender<()>),
    /// Kill every instance without `terminate`, as a crash would, then end.
    Abort(oneshot::Sender<()>),
}

struct Group {
    name: String,
    machine: Supervisor,
    spec: GroupSpec,
    running: Vec<Option<Running>>,
    starts: Vec<u64>,
    /// Children the machine asked to stop, in its order, not yet told: each is told only once
    /// the one before has exited, so a child never outlives what was started after it.
    stops: VecDeque<ChildId>,
    /// The child told to stop whose exit is awaited.
    stopping_now: Option<ChildId>,
    /// Why the machine gave up, until the states say `Failed` and it is announced.
    gave_up_reason: Option<String>,
    /// Callers waiting for the group to stop; non-empty once a stop was asked for.
    stopping: Vec<oneshot::Sender<Result<(), AgentsError>>>,
    stop_requested: bool,
}

pub(super) struct Task {
    shared: Arc<Shared>,
    commands: mpsc::Receiver<Command>,
    groups: BTreeMap<u64, Group>,
    /// Group ids by name: a spawn, stop or added agent finds its group without a walk of all.
    by_name: BTreeMap<String, u64>,
    /// The next timeout of each group whose machine has one (a child waiting out its backoff),
    /// kept after every step of that group's machine: the loop arms the earliest without
    /// asking every group, which made each command cost as much as the node has agents.
    deadlines: BTreeMap<u64, Time>,
    next_group: u64,
    epoch: TokioInstant,
    shutdown: Option<oneshot::Sender<()>>,
    /// The shutdown is answered: the task ends.
    finished: bool,
}

impl Task {
    pub fn new(shared: Arc<Shared>, commands: mpsc::Receiver<Command>) -> Self {
        Self {
            shared,
            commands,
            groups: BTreeMap::new(),
            by_name: BTreeMap::new(),
            deadlines: BTreeMap::new(),
            next_group: 1,
            epoch: TokioInstant::now(),
            shutdown: None,
            finished: false,
        }
    }

    pub async fn run(mut self) {
        loop {
            let wake = self.next_deadline();
            let sleep = tokio::time::sleep_until(wake.unwrap_or_else(far_future));
            let command = tokio::select! {
                command = self.commands.recv() => command,
                _ = sleep, if wake.is_some() => {
                    self.timeouts().await;
                    continue;
                }
            };
            let Some(command) = command else { return };
            self.handle(command).await;
            if self.finished {
                return;
            }
        }
    }

    /// Carries out one command.
    async fn handle(&mut self, command: Command) {
        match command {
            Command::Spawn { spec, done } => {
                let result = self.spawn(spec).await;
                let _ = done.send(result);
            }
            Command::Stop { group, done } => self.stop(&group, done).await,
            Command::AddChild { group, agent, done } => {
                let result = self.add_child(&group, agent).await;
                let _ = done.send(result);
            }
            Command::Exited { group, child, exit } => self.exited(group, child, exit).await,
            Command::Shutdown(done) => {
                self.shutdown = Some(done);
                self.stop_last_group().await;
            }
            Command::Abort(done) => {
                self.abort();
                let _ = done.send(());
                self.finished = true;
            }
        }
    }

    fn now(&self) -> Time {
        Time(u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX))
    }

    fn next_deadline(&self) -> Option<TokioInstant> {
        debug_assert!(
            self.groups
                .iter()
                .all(|(id, g)| g.machine.poll_timeout() == self.deadlines.get(id).copied()),
            "a group's timeout changed without its deadline being noted"
        );
        let at = self.deadlines.values().min()?;
        Some(self.epoch + std::time::Duration::from_millis(at.0))
    }

    /// Notes group `id`'s next timeout after a step of its machine.
    fn note_deadline(&mut self, id: u64) {
        match self.groups.get(&id).and_then(|g| g.machine.poll_timeout()) {
            Some(at) => self.deadlines.insert(id, at),
            None => self.deadlines.remove(&id),
        };
    }

    /// The id of the group called `name`.
    fn named(&self, name: &str) -> Option<u64> {
        self.by_name.get(name).copied()
    }

    async fn spawn(&mut self, spec: GroupSpec) -> Result<(), AgentsError> {
        if self.shutdown.is_some() {
            return Err(AgentsError::Stopped);
        }
        if self.by_name.contains_key(&spec.name) {
            return Err(AgentsError::NameTaken(spec.name));
        }
        let machine = spec.machine()?;
        self.shared.claim_names(&spec.agents)?;
        let names: Vec<&str> = spec.agents.iter().map(|a| a.name.as_str()).collect();
        self.shared.list(&names).await?;
        let id = self.next_group;
        self.next_group += 1;
        let children = spec.agents.len();
        let mut group = Group {
            name: spec.name.clone(),
            machine,
            spec,
            running: (0..children).map(|_| None).collect(),
            starts: vec![0; children],
            stops: VecDeque::new(),
            stopping_now: None,
            gave_up_reason: None,
            stopping: Vec::new(),
            stop_requested: false,
        };
        let actions = group.machine.start(self.now());
        self.by_name.insert(group.name.clone(), id);
        self.groups.insert(id, group);
        self.apply(id, actions);
        self.sync(id).await;
        Ok(())
    }

    async fn add_child(&mut self, name: &str, agent: AgentSpec) -> Result<(), AgentsError> {
        let now = self.now();
        let Some((id, group)) = self
            .named(name)
            .and_then(|id| Some((id, self.groups.get_mut(&id)?)))
        else {
            return Err(AgentsError::UnknownGroup(name.to_owned()));
        };
        agent.check()?;
        if group.stop_requested {
            return Err(SupervisorError::NotRunning.into());
        }
        self.shared.claim_names(std::slice::from_ref(&agent))?;
        self.shared.list(&[agent.name.as_str()]).await?;
        let child = ChildSpec {
            name: agent.name.clone(),
            restart: agent.restart,
        };
        let actions = match group.machine.start_child(now, child) {
            Ok((_, actions)) => actions,
            Err(refused) => {
                self.shared.release(&agent.name).await;
                return Err(refused.into());
            }
        };
        group.spec.agents.push(agent);
        group.running.push(None);
        group.starts.push(0);
        self.apply(id, actions);
        self.sync(id).await;
        Ok(())
    }

    async fn stop(&mut self, name: &str, done: oneshot::Sender<Result<(), AgentsError>>) {
        let Some((id, group)) = self
            .named(name)
            .and_then(|id| Some((id, self.groups.get_mut(&id)?)))
        else {
            let _ = done.send(Err(AgentsError::UnknownGroup(name.to_owned())));
            return;
        };
        group.stopping.push(done);
        group.stop_requested = true;
        let actions = group.machine.shutdown();
        self.apply(id, actions);
        self.sync(id).await;
    }

    async fn exited(&mut self, id: u64, child: ChildId, exit: Exit) {
        let now = self.now();
        let Some(group) = self.groups.get_mut(&id) else {
            return;
        };
        if let Some(slot) = group.running.get_mut(child.0) {
            *slot = None;
        }
        group.stops.retain(|&c| c != child);
        if group.stopping_now == Some(child) {
            group.stopping_now = None;
        }
        if exit != Exit::Normal {
            let name = &group.spec.agents[child.0].name;
            tracing::warn!(agent = %name, ?exit, "agent instance ended abnormally");
        }
        let actions = group.machine.exited(now, child, exit);
        self.apply(id, actions);
        self.sync(id).await;
    }

    async fn timeouts(&mut self) {
        let now = self.now();
        let due: Vec<u64> = self
            .deadlines
            .iter()
            .filter(|(_, &at)| at <= now)
            .map(|(&id, _)| id)
            .collect();
        for id in due {
            if let Some(group) = self.groups.get_mut(&id) {
                let actions = group.machine.handle_timeout(now);
                self.apply(id, actions);
                self.sync(id).await;
            }
        }
    }

    /// Carries out the machine's actions for group `id`.
    fn apply(&mut self, id: u64, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Start(child) => self.start_child(id, child),
                Action::Stop(child) => {
                    if let Some(group) = self.groups.get_mut(&id) {
                        group.stops.push_back(child);
                    }
                }
                Action::GaveUp { reason } => self.gave_up(id, reason),
            }
        }
        self.note_deadline(id);
        self.next_stop(id);
    }

    /// Tells the next child in the stop queue to stop, unless one is still stopping.
    fn next_stop(&mut self, id: u64) {
        let grace = self.shared.config.stop_grace;
        let Some(group) = self.groups.get_mut(&id) else {
            return;
        };
        while group.stopping_now.is_none() {
            let Some(child) = group.stops.pop_front() else {
                return;
            };
            if let Some(running) = group.running.get_mut(child.0).and_then(Option::as_mut) {
                running.stop(grace);
                group.stopping_now = Some(child);
            }
        }
    }

    fn start_child(&mut self, id: u64, child: ChildId) {
        let Some(group) = self.groups.get_mut(&id) else {
            return;
        };
        let spec = &group.spec.agents[child.0];
        let Some(mailbox) = self.shared.mailbox(&spec.name) else {
            return;
        };
        if group.starts[child.0] > 0 {
            self.shared.metrics.restarts.inc();
        }
        group.starts[child.0] += 1;
        let commands = self.shared.commands.clone();
        let ctx = self.shared.context(&spec.name);
        let running = instance::start(&spec.launch, ctx, mailbox, move |exit| {
            Box::pin(async move {
                // The supervisor task gone: the node stopped, nobody to tell.
                let _ = commands
                    .send(Command::Exited {
                        group: id,
                        child,
                        exit,
                    })
                    .await;
            })
        });
        group.running[child.0] = Some(running);
    }

    fn gave_up(&mut self, id: u64, reason: String) {
        let Some(group) = self.groups.get_mut(&id) else {
            return;
        };
        tracing::error!(group = %group.name, %reason, "agent supervisor gave up");
        self.shared.metrics.gave_up.inc();
        group.gave_up_reason = Some(reason);
    }

    /// Publishes the states of group `id`'s agents that changed, and removes the group once a
    /// stop asked for has finished.
    async fn sync(&mut self, id: u64) {
        let Some(group) = self.groups.get(&id) else {
            return;
        };
        let states: Vec<(String, AgentState)> = (0..group.spec.agents.len())
            .map(|i| {
                (
                    group.spec.agents[i].name.clone(),
                    directory_state(&group.machine, ChildId(i), group.stop_requested),
                )
            })
            .collect();
        for (name, state) in states {
            let written = self.shared.set_state(&name, state).await;
            super::warn_unwritten(&name, written);
        }
        let Some(group) = self.groups.get_mut(&id) else {
            return;
        };
        if let Some(reason) = group.gave_up_reason.take() {
            let _ = self.shared.events.send(AgentEvent::GaveUp {
                group: group.name.clone(),
                reason,
            });
        }
        let group = &self.groups[&id];
        let finished = group.stop_requested
            && group.machine.state()
                == foundation_core::agents::supervisor::SupervisorState::Stopped;
        if finished {
            self.remove(id).await;
        }
    }

    async fn remove(&mut self, id: u64) {
        let Some(group) = self.groups.remove(&id) else {
            return;
        };
        self.by_name.remove(&group.name);
        self.deadlines.remove(&id);
        for agent in &group.spec.agents {
            self.shared.release(&agent.name).await;
        }
        for done in group.stopping {
            let _ = done.send(Ok(()));
        }
        if self.shutdown.is_some() {
            self.stop_last_group_boxed().await;
        }
    }

    /// During shutdown: stops the most recently spawned group still running (the reverse of
    /// spawn order, as each group stops its agents in reverse start order); once none is
    /// left, answers the shutdown.
    async fn stop_last_group(&mut self) {
        let next = self
            .groups
            .iter()
            .rev()
            .find(|(_, g)| !g.stop_requested)
            .map(|(_, g)| g.name.clone());
        match next {
            Some(name) => {
                let (done, _) = oneshot::channel();
                self.stop(&name, done).await;
            }
            None if self.groups.is_empty() => {
                if let Some(done) = self.shutdown.take() {
                    let _ = done.send(());
                }
                self.finished = true;
            }
            None => {}
        }
    }

    /// The recursion remove → stop_last_group → stop → sync → remove needs a boxed future.
    fn stop_last_group_boxed(
        &mut self,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
        Box::pin(self.stop_last_group())
    }

    fn abort(&mut self) {
        for group in self.groups.values() {
            for running in group.running.iter().flatten() {
                running.kill();
            }
        }
    }
}

fn far_future() -> TokioInstant {
    TokioInstant::now() + std::time::Duration::from_secs(86_400)
}
