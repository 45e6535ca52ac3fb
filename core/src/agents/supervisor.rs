//! A supervisor for one node's agents, as a deterministic state machine: it decides when to
//! start, stop and restart children; the driver runs them and reports how they exit.
//!
//! - **Strategies**: one-for-one restarts only the child that failed; one-for-all stops every
//!   other running child (in reverse start order), waits until they have stopped, and starts
//!   them all again in start order.
//! - **Restart policies** per child: permanent (always restarted), transient (restarted only
//!   after an abnormal exit: a failure or a panic), temporary (never restarted).
//! - **Intensity**: more than `max_restarts` restarts within `period_ms` and the supervisor gives
//!   up: it stops every child in reverse start order and reports why, instead of retrying forever.
//! - **Backoff**: a child that fails again soon after a restart waits twice as long as before
//!   (from `backoff_initial_ms`, at most `backoff_max_ms`); one that ran for a whole period
//!   starts again from the initial delay.
//! - **Shutdown** stops children in reverse start order, so a child is stopped before what it
//!   was started after (and may depend on).
//!
//! Driving it: call [`Supervisor::start`], carry out the [`Action`]s, report every exit with
//! [`Supervisor::exited`] (the exits of children it asked to stop too), and call
//! [`Supervisor::handle_timeout`] at [`Supervisor::poll_timeout`]. [`directory_state`] is what
//! the agent directory shows for a child. The engine's runtime drives it with tokio and real
//! agents; the simulator drives the same machine with simulated agents on a virtual clock.

use std::collections::VecDeque;

pub use foundation_agents::Time;
use serde::{Deserialize, Serialize};

use super::record::AgentState;

/// Which children a failure restarts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Strategy {
    /// Only the child that failed.
    OneForOne,
    /// Every child: the others are stopped and all start again in order.
    OneForAll,
}

/// When a child that exited is started again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Restart {
    /// Always.
    Permanent,
    /// Only after an abnormal exit.
    Transient,
    /// Never.
    Temporary,
}

/// How a child ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Exit {
    /// It finished its work.
    Normal,
    /// Its handler returned an error.
    Failed(String),
    /// It panicked.
    Panicked(String),
}

impl Exit {
    fn abnormal(&self) -> bool {
        !matches!(self, Exit::Normal)
    }
}

/// A child's place in start order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ChildId(pub usize);

/// A child to supervise.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildSpec {
    /// Its name, unique under this supervisor.
    pub name: String,
    /// When it is restarted.
    pub restart: Restart,
}

/// The supervisor's settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SupervisorConfig {
    /// Which children a failure restarts.
    pub strategy: Strategy,
    /// Most restarts allowed within `period_ms`; one more and the supervisor gives up.
    pub max_restarts: u32,
    /// The window restarts are counted in, and how long a child must run to count as stable.
    pub period_ms: u64,
    /// Delay before the first restart of a child.
    pub backoff_initial_ms: u64,
    /// Longest delay before a restart.
    pub backoff_max_ms: u64,
}

impl Default for SupervisorConfig {
    fn default() -> Self {
        Self {
            strategy: Strategy::OneForOne,
            max_restarts: 3,
            period_ms: 5_000,
            backoff_initial_ms: 10,
            backoff_max_ms: 5_000,
        }
    }
}

/// What the driver must do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    /// Start (or start again) this child.
    Start(ChildId),
    /// Stop this child, then report its exit.
    Stop(ChildId),
    /// The supervisor gave up: too many restarts. Every child is being stopped.
    GaveUp {
        /// The child whose failure was one too many, and the count.
        reason: String,
    },
}

/// Why a supervisor could not be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SupervisorError {
    /// A setting is out of range.
    #[error("invalid supervisor setting {field}: {problem}")]
    Invalid {
        /// The setting.
        field: &'static str,
        /// What is wrong.
        problem: &'static str,
    },
    /// Two children share a name.
    #[error("two children are named {0:?}")]
    DuplicateName(String),
    /// The supervisor is stopping or has stopped (on request or after giving up): no child
    /// joins it any more.
    #[error("the supervisor is stopping or stopped: no child can join it")]
    NotRunning,
}

/// Where a child is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChildState {
    /// Not started yet.
    Idle,
    /// Running since this time.
    Running {
        /// When it was started.
        since: Time,
    },
    /// Asked to stop; its exit is awaited.
    Stopping,
    /// Waiting to be started again at this time.
    Waiting {
        /// When.
        until: Time,
    },
    /// Ended for good (or until the supervisor starts again).
    Stopped,
}

/// Where the supervisor is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SupervisorState {
    /// Not started.
    Idle,
    /// Supervising.
    Running,
    /// Stopping every child, at the application's request.
    ShuttingDown,
    /// Stopping every child after too many restarts.
    GivingUp,
    /// Every child has stopped.
    Stopped,
}

#[derive(Clone, Debug)]
struct Child {
    spec: ChildSpec,
    state: ChildState,
    /// Failures since the child last ran for a whole period: the backoff exponent.
    consecutive: u32,
    /// While stopping: when to start it again once it has exited (one-for-all), if at all.
    then: Option<Time>,
}

/// A supervisor; see the module docs.
#[derive(Clone, Debug)]
pub struct Supervisor {
    config: SupervisorConfig,
    children: Vec<Child>,
    state: SupervisorState,
    /// Times of restarts within the last period.
    recent: VecDeque<Time>,
    /// Restarts decided so far.
    restarts: u64,
    /// Whether it gave up (it stays stopped afterwards).
    gave_up: bool,
}

impl Supervisor {
    /// A supervisor of `children`, in start order.
    pub fn new(
        config: SupervisorConfig,
        children: Vec<ChildSpec>,
    ) -> Result<Self, SupervisorError> {
        validate(&config)?;
        for (i, child) in children.iter().enumerate() {
            if children[..i].iter().any(|c| c.name == child.name) {
                return Err(SupervisorError::DuplicateName(child.name.clone()));
            }
        }
        let children = children
            .into_iter()
            .map(|spec| Child {
                spec,
                state: ChildState::Idle,
                consecutive: 0,
                then: None,
            })
            .collect();
        Ok(Self {
            config,
            children,
            state: SupervisorState::Idle,
            recent: VecDeque::new(),
            restarts: 0,
            gave_up: false,
        })
    }

    /// Starts every child, in order.
    pub fn start(&mut self, now: Time) -> Vec<Action> {
        if self.state != SupervisorState::Idle {
            return Vec::new();
        }
        self.state = SupervisorState::Running;
        (0..self.children.len())
            .map(|i| self.launch(now, i))
            .collect()
    }

    /// Adds `spec` as the last child (started last, stopped first). A running supervisor
    /// starts it at once — or, while a one-for-all restart is stopping the others, with them
    /// once they have stopped; an idle one starts it with the rest. Its restarts count
    /// towards the same intensity as its siblings'.
    pub fn start_child(
        &mut self,
        now: Time,
        spec: ChildSpec,
    ) -> Result<(ChildId, Vec<Action>), SupervisorError> {
        if !matches!(self.state, SupervisorState::Idle | SupervisorState::Running) {
            return Err(SupervisorError::NotRunning);
        }
        if self.children.iter().any(|c| c.spec.name == spec.name) {
            return Err(SupervisorError::DuplicateName(spec.name));
        }
        let id = ChildId(self.children.len());
        self.children.push(Child {
            spec,
            state: ChildState::Idle,
            consecutive: 0,
            then: None,
        });
        if self.state == SupervisorState::Idle {
            return Ok((id, Vec::new()));
        }
        let restarting = self
            .children
            .iter()
            .any(|c| c.state == ChildState::Stopping);
        if restarting {
            self.children[id.0].state = ChildState::Waiting { until: now };
            return Ok((id, Vec::new()));
        }
        Ok((id, vec![self.launch(now, id.0)]))
    }

    /// Child `id` exited as `exit`: what to do about it.
    pub fn exited(&mut self, now: Time, id: ChildId, exit: Exit) -> Vec<Action> {
        let Some(child) = self.children.get_mut(id.0) else {
            return Vec::new();
        };
        let was = std::mem::replace(&mut child.state, ChildState::Stopped);
        if was == ChildState::Stopping {
            // An exit we asked for: start it again if a one-for-all restart wants it.
            if let Some(until) = child.then.take() {
                child.state = ChildState::Waiting { until };
            }
            self.finish_if_done();
            return self.start_due(now);
        }
        if !matches!(was, ChildState::Running { .. }) || self.state != SupervisorState::Running {
            child.state = was; // a stale report: nothing changes
            return Vec::new();
        }
        let restart = match child.spec.restart {
            Restart::Permanent => true,
            Restart::Transient => exit.abnormal(),
            Restart::Temporary => false,
        };
        if !restart {
            return Vec::new();
        }
        if let ChildState::Running { since } = was {
            self.note_failure(now, id.0, since);
        }
        if self.too_many_restarts(now) {
            return self.give_up(id.0);
        }
        self.schedule_restart(now, id.0)
    }

    /// When [`Self::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Time> {
        if self.state != SupervisorState::Running {
            return None;
        }
        self.children
            .iter()
            .filter_map(|c| match c.state {
                ChildState::Waiting { until } => Some(until),
                _ => None,
            })
            .min()
    }

    /// Starts the children whose wait is over.
    pub fn handle_timeout(&mut self, now: Time) -> Vec<Action> {
        self.start_due(now)
    }

    /// Stops every child in reverse start order; the supervisor is stopped once all have
    /// exited.
    pub fn shutdown(&mut self) -> Vec<Action> {
        if matches!(self.state, SupervisorState::Idle | SupervisorState::Stopped) {
            self.state = SupervisorState::Stopped;
            return Vec::new();
        }
        self.state = SupervisorState::ShuttingDown;
        let actions = self.stop_all();
        self.finish_if_done();
        actions
    }

    /// Where the supervisor is.
    pub fn state(&self) -> SupervisorState {
        self.state
    }

    /// Where child `id` is.
    pub fn child_state(&self, id: ChildId) -> Option<&ChildState> {
        self.children.get(id.0).map(|c| &c.state)
    }

    /// The child named `name`.
    pub fn child(&self, name: &str) -> Option<ChildId> {
        self.children
            .iter()
            .position(|c| c.spec.name == name)
            .map(ChildId)
    }

    /// Restarts decided so far.
    pub fn restarts(&self) -> u64 {
        self.restarts
    }

    /// Whether it gave up after too many restarts.
    pub fn gave_up(&self) -> bool {
        self.gave_up
    }

    /// Its settings.
    pub fn config(&self) -> &SupervisorConfig {
        &self.config
    }

    /// How many children it supervises.
    pub fn len(&self) -> usize {
        self.children.len()
    }

    /// Whether it supervises no child.
    pub fn is_empty(&self) -> bool {
        self.children.is_empty()
    }

    /// Checks the bookkeeping.
    pub fn invariants(&self) -> Result<(), String> {
        if self.recent.len() > self.config.max_restarts as usize + 1 {
            return Err(format!(
                "{} restarts counted in one period",
                self.recent.len()
            ));
        }
        let active = self
            .children
            .iter()
            .any(|c| matches!(c.state, ChildState::Running { .. } | ChildState::Stopping));
        if self.state == SupervisorState::Stopped && active {
            return Err("stopped with a child still running".into());
        }
        let waiting = self
            .children
            .iter()
            .any(|c| matches!(c.state, ChildState::Waiting { .. }));
        if self.state != SupervisorState::Running && waiting {
            return Err("a child waits for a restart that will never come".into());
        }
        Ok(())
    }

    fn launch(&mut self, now: Time, i: usize) -> Action {
        self.children[i].state = ChildState::Running { since: now };
        Action::Start(ChildId(i))
    }

    /// Counts a failure of child `i`, started at `since`, towards its backoff.
    fn note_failure(&mut self, now: Time, i: usize, since: Time) {
        let child = &mut self.children[i];
        if now.since(since) >= self.config.period_ms {
            child.consecutive = 0;
        }
        child.consecutive = child.consecutive.saturating_add(1);
    }

    /// Records a restart; whether it is one more than the intensity allows.
    fn too_many_restarts(&mut self, now: Time) -> bool {
        self.recent.push_back(now);
        while self
            .recent
            .front()
            .is_some_and(|&t| now.since(t) >= self.config.period_ms)
        {
            self.recent.pop_front();
        }
        self.recent.len() > self.config.max_restarts as usize && !fault_on!(SupervisorNeverGivesUp)
    }

    fn backoff(&self, i: usize) -> u64 {
        let doublings = self.children[i].consecutive.saturating_sub(1).min(63);
        self.config
            .backoff_initial_ms
            .saturating_mul(1u64 << doublings)
            .min(self.config.backoff_max_ms)
    }

    fn schedule_restart(&mut self, now: Time, i: usize) -> Vec<Action> {
        self.restarts += 1;
        let until = now.plus_ms(self.backoff(i));
        let actions = match self.config.strategy {
            Strategy::OneForOne => Vec::new(),
            Strategy::OneForAll => self.stop_others_to_restart(i, until),
        };
        self.children[i].state = ChildState::Waiting { until };
        actions
    }

    /// One-for-all: stops every other running child in reverse start order, to start again
    /// with the failed one (temporary children are not started again).
    fn stop_others_to_restart(&mut self, failed: usize, until: Time) -> Vec<Action> {
        let mut actions = Vec::new();
        for i in (0..self.children.len()).rev().filter(|&i| i != failed) {
            let child = &mut self.children[i];
            let again = child.spec.restart != Restart::Temporary;
            match child.state {
                ChildState::Running { .. } => {
                    child.state = ChildState::Stopping;
                    child.then = again.then_some(until);
                    actions.push(Action::Stop(ChildId(i)));
                }
                ChildState::Waiting { .. } => child.state = ChildState::Waiting { until },
                ChildState::Stopping => child.then = again.then_some(until),
                ChildState::Idle | ChildState::Stopped => {}
            }
        }
        actions
    }

    /// Stops every running child, in reverse start order, for good; waiting children end.
    fn stop_all(&mut self) -> Vec<Action> {
        let mut actions = Vec::new();
        for i in (0..self.children.len()).rev() {
            let child = &mut self.children[i];
            child.then = None;
            match child.state {
                ChildState::Running { .. } => {
                    child.state = ChildState::Stopping;
                    actions.push(Action::Stop(ChildId(i)));
                }
                ChildState::Waiting { .. } | ChildState::Idle => child.state = ChildState::Stopped,
                ChildState::Stopping | ChildState::Stopped => {}
            }
        }
        actions
    }

    fn give_up(&mut self, failed: usize) -> Vec<Action> {
        self.state = SupervisorState::GivingUp;
        self.gave_up = true;
        let reason = format!(
            "{} failed: {} restarts within {} ms, more than the {} allowed",
            self.children[failed].spec.name,
            self.recent.len(),
            self.config.period_ms,
            self.config.max_restarts
        );
        let mut actions = vec![Action::GaveUp { reason }];
        actions.extend(self.stop_all());
        self.finish_if_done();
        actions
    }

    /// Starts waiting children whose time has come, in start order — under one-for-all only
    /// once every child asked to stop has stopped.
    fn start_due(&mut self, now: Time) -> Vec<Action> {
        if self.state != SupervisorState::Running {
            return Vec::new();
        }
        if self
            .children
            .iter()
            .any(|c| c.state == ChildState::Stopping)
        {
            return Vec::new();
        }
        let due: Vec<usize> = (0..self.children.len())
            .filter(|&i| matches!(self.children[i].state, ChildState::Waiting { until } if until <= now))
            .collect();
        due.into_iter().map(|i| self.launch(now, i)).collect()
    }

    fn finish_if_done(&mut self) {
        let stopping = matches!(
            self.state,
            SupervisorState::ShuttingDown | SupervisorState::GivingUp
        );
        let active = self
            .children
            .iter()
            .any(|c| matches!(c.state, ChildState::Running { .. } | ChildState::Stopping));
        if stopping && !active {
            self.state = SupervisorState::Stopped;
        }
    }
}

/// What the agent directory shows for child `id`: `Failed` once the supervisor gave up,
/// `Restarting` while it waits to run again (or is stopped by a one-for-all restart), `Stopped`
/// when it ended for good or its group is being stopped on request (`stop_requested`).
pub fn directory_state(machine: &Supervisor, id: ChildId, stop_requested: bool) -> AgentState {
    if machine.gave_up() {
        return AgentState::Failed;
    }
    match machine.child_state(id) {
        Some(ChildState::Running { .. }) => AgentState::Running,
        Some(ChildState::Waiting { .. } | ChildState::Idle) => AgentState::Restarting,
        Some(ChildState::Stopping) if !stop_requested => AgentState::Restarting,
        _ => AgentState::Stopped,
    }
}

fn validate(config: &SupervisorConfig) -> Result<(), SupervisorError> {
    let invalid = |field, problem| Err(SupervisorError::Invalid { field, problem });
    if config.period_ms == 0 {
        return invalid("period_ms", "must be non-zero");
    }
    if config.backoff_initial_ms > config.backoff_max_ms {
        return invalid("backoff_initial_ms", "must be at most backoff_max_ms");
    }
    Ok(())
}

#[cfg(test)]
mod tests;
