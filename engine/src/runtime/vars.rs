//! `node.vars()`: variables agents coordinate on, decided across the cluster (see
//! `foundation_core::vars` for the protocol and what is not built yet).

use std::collections::BTreeMap;
use std::time::Duration;

use foundation_agents::cas::CasOutcome;
use foundation_agents::variable::VarValue;
use foundation_core::membership::{MemberState, MemberView};
use foundation_core::vars::{Life, VarSpec, VarsError, VarsEvent};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use super::driver::Driver;
use super::request::Request;

/// What a [`VarsHandle`] asks of the driver.
pub(crate) enum VarsRequest {
    Declare {
        name: String,
        spec: VarSpec,
        done: oneshot::Sender<Result<(), VarsError>>,
    },
    Get {
        name: String,
        done: oneshot::Sender<Option<(u64, VarValue)>>,
    },
    CompareAndSet {
        name: String,
        expected: u64,
        value: VarValue,
        timeout: Duration,
        done: oneshot::Sender<Result<CasOutcome<Life>, VarsError>>,
    },
}

/// Compare-and-sets of this node under way, by variable and request number.
pub(crate) type CasWaits =
    BTreeMap<(String, u64), oneshot::Sender<Result<CasOutcome<Life>, VarsError>>>;

/// Why a variables call did not get an answer.
#[derive(Debug, thiserror::Error)]
pub enum VarsCallError {
    /// The machine refused it.
    #[error(transparent)]
    Refused(#[from] VarsError),
    /// The node stopped.
    #[error("the node stopped")]
    Stopped,
}

/// Declare, read, compare-and-set and watch variables. Cheap to clone.
#[derive(Clone)]
pub struct VarsHandle {
    pub(crate) me: Life,
    pub(crate) requests: mpsc::Sender<Request>,
    pub(crate) events: broadcast::Sender<VarsEvent>,
    pub(crate) view: watch::Receiver<Vec<MemberView>>,
}

impl VarsHandle {
    /// This node's life, as a spec's acceptors name it.
    pub fn me(&self) -> Life {
        self.me
    }

    /// This node and every member it sees alive: the acceptors a `cas` variable declared now
    /// would have. Every acceptor must declare the variable with the same spec.
    pub fn alive_lives(&self) -> std::collections::BTreeSet<Life> {
        let view = self.view.borrow();
        let alive = view.iter().filter(|m| m.state == MemberState::Alive);
        alive
            .map(|m| Life {
                node: m.id,
                generation: m.generation,
            })
            .chain([self.me])
            .collect()
    }

    /// Declares `name` with `spec` here; again with the same spec does nothing.
    pub async fn declare(&self, name: &str, spec: VarSpec) -> Result<(), VarsCallError> {
        let (done, answer) = oneshot::channel();
        let name = name.to_owned();
        self.ask(VarsRequest::Declare { name, spec, done }, answer)
            .await?
            .map_err(Into::into)
    }

    /// The version and value of `name` on this node, if declared here.
    pub async fn get(&self, name: &str) -> Result<Option<(u64, VarValue)>, VarsCallError> {
        let (done, answer) = oneshot::channel();
        let name = name.to_owned();
        self.ask(VarsRequest::Get { name, done }, answer).await
    }

    /// Replaces version `expected` of `name` with `value` if a majority of its acceptors
    /// agree within `timeout`: of concurrent writers expecting the same version, exactly one
    /// wins cluster-wide. The outcome says which, or that no majority answered.
    pub async fn compare_and_set(
        &self,
        name: &str,
        expected: u64,
        value: VarValue,
        timeout: Duration,
    ) -> Result<CasOutcome<Life>, VarsCallError> {
        let (done, answer) = oneshot::channel();
        let request = VarsRequest::CompareAndSet {
            name: name.to_owned(),
            expected,
            value,
            timeout,
            done,
        };
        self.ask(request, answer).await?.map_err(Into::into)
    }

    /// Changes of every variable here from now on (new versions, and how this node's writes
    /// ended).
    pub fn watch(&self) -> broadcast::Receiver<VarsEvent> {
        self.events.subscribe()
    }

    async fn ask<T>(
        &self,
        request: VarsRequest,
        answer: oneshot::Receiver<T>,
    ) -> Result<T, VarsCallError> {
        self.requests
            .send(Request::Vars(request))
            .await
            .map_err(|_| VarsCallError::Stopped)?;
        answer.await.map_err(|_| VarsCallError::Stopped)
    }
}

impl Driver {
    pub(crate) fn vars_request(&mut self, request: VarsRequest) {
        let now = self.now();
        match request {
            VarsRequest::Declare { name, spec, done } => {
                let _ = done.send(self.core.declare_var(&name, spec));
            }
            VarsRequest::Get { name, done } => {
                let current = self.core.vars().get(&name);
                let _ = done.send(current.map(|(version, value)| (version, value.clone())));
            }
            VarsRequest::CompareAndSet {
                name,
                expected,
                value,
                timeout,
                done,
            } => match self
                .core
                .compare_and_set(now, &name, expected, value, timeout)
            {
                Ok(request) => {
                    self.cas_waits.insert((name, request), done);
                }
                Err(refused) => {
                    let _ = done.send(Err(refused));
                }
            },
        }
    }

    /// Answers the write an event ends, and tells watchers.
    pub(crate) fn vars_event(&mut self, event: VarsEvent) {
        if let VarsEvent::CasDone {
            name,
            request,
            outcome,
        } = &event
        {
            if let Some(done) = self.cas_waits.remove(&(name.clone(), *request)) {
                let _ = done.send(Ok(outcome.clone()));
            }
        }
        let _ = self.vars_events.send(event);
    }
}
