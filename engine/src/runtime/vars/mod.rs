//! `node.vars()`: variables agents coordinate on, decided across the cluster (see
//! `foundation_core::vars` for the protocol and what is not built yet), moving them to other
//! acceptors, and their HTTP endpoints.

pub(crate) mod alive;
mod http;
pub mod json;
mod metrics;
mod watching;

pub use watching::{VarChange, VarWatch, WatchError, Watched};

pub(crate) use http::{all_json, routes};

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use foundation_agents::cas::CasOutcome;
use foundation_agents::variable::VarValue;
use foundation_core::vars::{Change, Life, Outcome, VarSpec, VarStatistics, VarsError, VarsEvent};
use foundation_core::Core;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use super::request::{Request, VarWrite, VarsRequest};
use super::wait::bounded;
use alive::AliveLives;
use foundation_core::time::Instant;

/// How long [`VarsHandle::draw`] waits for a counter's holders to allow this node more.
pub const ALLOWANCE_WAIT: Duration = Duration::from_millis(500);

/// How often a draw waiting for its allowance tries again.
const ALLOWANCE_POLL: Duration = Duration::from_millis(2);

/// How often a write waiting behind this node's own write on the variable looks again: that
/// write is one round trip to the acceptors, so a few milliseconds.
const OWN_WRITE_POLL: Duration = Duration::from_millis(2);

/// Compare-and-sets of this node under way, by variable and request number.
type CasWaits = BTreeMap<(String, u64), oneshot::Sender<Result<CasOutcome<Life>, VarsError>>>;

/// The driver's side of the variables: writes awaiting their outcome, the view local reads
/// see, and the watchers.
pub(crate) struct VarsRuntime {
    cas_waits: CasWaits,
    view: watch::Sender<Arc<VarsView>>,
    alive: watch::Sender<Arc<AliveLives>>,
    /// The core's lives version last published: a renewal a member told changes the lives
    /// without a membership event.
    lives_version: u64,
    events: broadcast::Sender<VarsEvent>,
    metrics: metrics::VarsMetrics,
}

/// One variable as this node holds it.
#[derive(Clone, Debug, PartialEq)]
pub struct VarState {
    /// Its version here.
    pub version: u64,
    /// Its value at that version.
    pub value: VarValue,
    /// What it is.
    pub spec: VarSpec,
    /// Its last changes as this node saw them, oldest first (at most
    /// `foundation_core::vars::HISTORY_MAX`).
    pub history: Vec<Change>,
    /// What happened to it here.
    pub statistics: VarStatistics,
    /// For a counter, the units this node may draw without asking.
    pub rights: Option<u64>,
    /// For a `cas` or `coordinated` variable, who decides its next version as this node
    /// knows it, and the first version they decide (the spec names those it was declared
    /// with; a change of acceptors moves these).
    pub acceptors: Option<(u64, std::collections::BTreeSet<Life>)>,
}

/// Every variable this node holds, by name: what the driver publishes after each change.
pub type VarsView = BTreeMap<String, VarState>;

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

/// Declare, read, write and watch variables: compare-and-set for `cas` variables, `set` for
/// `lww` ones, `draw` and `refill` for counters. Cheap to clone.
#[derive(Clone)]
pub struct VarsHandle {
    pub(crate) me: Life,
    pub(crate) requests: mpsc::Sender<Request>,
    pub(crate) events: broadcast::Sender<VarsEvent>,
    /// What [`Self::alive_lives`] answers, published by the driver (see
    /// [`VarsRuntime::publish_alive`]).
    pub(crate) alive: watch::Receiver<Arc<AliveLives>>,
    pub(crate) held: watch::Receiver<Arc<VarsView>>,
}

impl VarsHandle {
    /// This node's life, as a spec's acceptors name it.
    pub fn me(&self) -> Life {
        self.me
    }

    /// This node and every member it sees alive, each as the life its variables machine
    /// answers for (a member declared failed and renewed keeps its first life: see
    /// `foundation_core::vars::lives`): the acceptors a `cas` variable declared now would
    /// have. Every acceptor must declare the variable with the same spec.
    pub fn alive_lives(&self) -> BTreeSet<Life> {
        let mut alive = self.alive.borrow().lives.clone();
        alive.insert(self.me);
        alive
    }

    /// The lives of the members alive now that `members` name, each by its name, its id or
    /// the start of its id (as `foundation members` shows them): the acceptors for
    /// [`Self::change_acceptors`] an operator names. An entry that names no member alive here,
    /// or more than one, is refused with the reason.
    pub fn lives_named(&self, members: &[String]) -> Result<BTreeSet<Life>, String> {
        self.alive.borrow().all_named(members)
    }

    /// Declares `name` with `spec` cluster-wide: here at once, and on every other acceptor as
    /// the replicated declaration reaches it. Again with the same spec does nothing; another
    /// spec for a declared name is [`VarsError::Conflict`].
    pub async fn declare(&self, name: &str, spec: VarSpec) -> Result<(), VarsCallError> {
        let (done, answer) = oneshot::channel();
        let name = name.to_owned();
        self.ask(VarsRequest::Declare { name, spec, done }, answer)
            .await?
            .map_err(Into::into)
    }

    /// The version and value of `name` on this node, if declared here (a local read: a node
    /// cut off from the acceptors may be behind).
    pub fn get(&self, name: &str) -> Option<(u64, VarValue)> {
        let held = self.held.borrow();
        held.get(name).map(|v| (v.version, v.value.clone()))
    }

    /// Every variable held here.
    pub fn all(&self) -> Arc<VarsView> {
        self.held.borrow().clone()
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
        let write = VarWrite::Cas { expected, value };
        propose(&self.requests, name, write, timeout).await
    }

    /// Commits session `outcome` (field writes and budget debits) to ledger `name` in one step
    /// decided by a majority of its acceptors within `timeout`: all of it or nothing, and once
    /// per session (see `foundation_core::vars::outcome`). A version mismatch means another
    /// outcome won the version: the caller may apply it again to the new record.
    pub async fn commit_outcome(
        &self,
        name: &str,
        outcome: Outcome,
        timeout: Duration,
    ) -> Result<CasOutcome<Life>, VarsCallError> {
        propose(&self.requests, name, VarWrite::Outcome(outcome), timeout).await
    }

    /// Writes `value` to `lww` variable `name`: shown here at once and everywhere as it
    /// replicates, unless a later write (by hybrid logical clock) gets there. Another policy's
    /// variable is [`VarsError::WrongPolicy`] (a `coordinated` one changes only as a
    /// coordination protocol's outcome).
    pub async fn set(&self, name: &str, value: VarValue) -> Result<(), VarsCallError> {
        let (done, answer) = oneshot::channel();
        let name = name.to_owned();
        self.ask(VarsRequest::Set { name, value, done }, answer)
            .await?
            .map_err(Into::into)
    }

    /// Draws `amount` units from counter `name` out of this node's rights, without asking
    /// anyone. With too few, [`VarsError::Insufficient`]: the node asked the one holding the
    /// most for the rest, so a retry a little later may succeed. Holding enough but allowed
    /// to spend too few of them so far (see `foundation_core::vars::escrow`), it waits up to
    /// `ALLOWANCE_WAIT` (500 ms) for the holders to allow more, then returns
    /// [`VarsError::Allowance`].
    pub async fn draw(&self, name: &str, amount: u64) -> Result<(), VarsCallError> {
        let started = tokio::time::Instant::now();
        loop {
            let drawn = self.counter(name, amount, false).await;
            let short = matches!(
                drawn,
                Err(VarsCallError::Refused(VarsError::Allowance { .. }))
            );
            if !short || started.elapsed() >= ALLOWANCE_WAIT {
                return drawn;
            }
            // A raise is one round trip to the holders: look again soon.
            tokio::time::sleep(ALLOWANCE_POLL).await;
        }
    }

    /// Adds `amount` units to counter `name`, as rights of this node.
    pub async fn refill(&self, name: &str, amount: u64) -> Result<(), VarsCallError> {
        self.counter(name, amount, true).await
    }

    async fn counter(&self, name: &str, amount: u64, refill: bool) -> Result<(), VarsCallError> {
        counter(&self.requests, name, amount, refill).await
    }

    /// Moves `cas` or `coordinated` variable `name` to `acceptors` (lives, like a spec's) from
    /// its next version on, decided by a majority of its current acceptors within `timeout`
    /// (see `foundation_core::vars::reconfigure`): how a variable outlives restarts of its
    /// acceptors, each of which makes a new life. `Won` means the new set decides every later
    /// version; `Lost` that a write took the version first (nothing changed: ask again);
    /// `NoMajority` that the current acceptors did not answer in time (nothing changed yet,
    /// but like a write the change may still land: read [`VarState::acceptors`]). Lives added
    /// take the variable up as the rewritten declaration reaches them. `lww` variables,
    /// counters, an empty set, the current set and a set of which fewer than a majority are
    /// among [`Self::alive_lives`] are refused.
    pub async fn change_acceptors(
        &self,
        name: &str,
        acceptors: std::collections::BTreeSet<Life>,
        timeout: Duration,
    ) -> Result<CasOutcome<Life>, VarsCallError> {
        propose(&self.requests, name, VarWrite::Move(acceptors), timeout).await
    }

    /// The last changes of `name` this node saw, oldest first.
    pub fn history(&self, name: &str) -> Option<Vec<Change>> {
        self.held.borrow().get(name).map(|v| v.history.clone())
    }

    /// Changes of every variable here from now on (new versions, and how this node's writes
    /// ended).
    pub fn watch(&self) -> broadcast::Receiver<VarsEvent> {
        self.events.subscribe()
    }

    /// Follows variable `name`: each newer version with the value before it and its writer.
    pub fn watch_variable(&self, name: &str) -> VarWatch {
        VarWatch::new(self, Watched::Name(name.to_owned()))
    }

    /// Follows every variable whose name starts with `prefix`, those declared later included
    /// (`""`: every variable): each newer version with the value before it and its writer.
    pub fn watch_prefix(&self, prefix: &str) -> VarWatch {
        VarWatch::new(self, Watched::Prefix(prefix.to_owned()))
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

/// Draws (or with `refill`, adds) `amount` units of counter `name` on this node's rights.
pub(crate) async fn counter(
    requests: &mpsc::Sender<Request>,
    name: &str,
    amount: u64,
    refill: bool,
) -> Result<(), VarsCallError> {
    let (done, answer) = oneshot::channel();
    let request = VarsRequest::Counter {
        name: name.to_owned(),
        amount,
        refill,
        done,
    };
    requests
        .send(Request::Vars(request))
        .await
        .map_err(|_| VarsCallError::Stopped)?;
    let drawn = answer.await.map_err(|_| VarsCallError::Stopped)?;
    drawn.map_err(Into::into)
}

/// Asks the driver for a majority-decided write and waits for how it ended.
pub(crate) async fn propose(
    requests: &mpsc::Sender<Request>,
    name: &str,
    write: VarWrite,
    timeout: Duration,
) -> Result<CasOutcome<Life>, VarsCallError> {
    let wait_until = tokio::time::Instant::now() + bounded(timeout);
    loop {
        let left = wait_until.saturating_duration_since(tokio::time::Instant::now());
        let outcome = propose_once(requests, name, write.clone(), left).await;
        // The core proposes one write of this node per variable at a time. Another under way
        // is waited for: then this one wins or loses the version as a write from another
        // node would, instead of failing for a reason no other writer has.
        let busy = matches!(outcome, Err(VarsCallError::Refused(VarsError::Busy)));
        if !busy || tokio::time::Instant::now() >= wait_until {
            return outcome;
        }
        tokio::time::sleep(OWN_WRITE_POLL).await;
    }
}

async fn propose_once(
    requests: &mpsc::Sender<Request>,
    name: &str,
    write: VarWrite,
    timeout: Duration,
) -> Result<CasOutcome<Life>, VarsCallError> {
    let (done, answer) = oneshot::channel();
    let name = name.to_owned();
    let request = VarsRequest::Propose {
        name,
        write,
        timeout,
        done,
    };
    requests
        .send(Request::Vars(request))
        .await
        .map_err(|_| VarsCallError::Stopped)?;
    let outcome = answer.await.map_err(|_| VarsCallError::Stopped)?;
    outcome.map_err(Into::into)
}

impl VarsRuntime {
    /// The runtime of the handle `handle`, publishing on `view`, with its metrics in
    /// `registry`.
    pub(crate) fn new(
        handle: &VarsHandle,
        (view, alive): (watch::Sender<Arc<VarsView>>, watch::Sender<Arc<AliveLives>>),
        registry: &mut prometheus_client::registry::Registry,
    ) -> Self {
        Self {
            cas_waits: BTreeMap::new(),
            view,
            alive,
            lives_version: 0,
            events: handle.events.clone(),
            metrics: metrics::VarsMetrics::register(registry),
        }
    }

    /// Brings the metrics up to date with the core, and the counters' rights here: they move
    /// when a peer hands some over, which changes no value.
    pub(crate) fn sync_metrics(&self, core: &Core) {
        self.metrics.sync(core);
        let stale: Vec<String> = self
            .view
            .borrow()
            .iter()
            .filter(|(name, held)| held.rights.is_some() && core.vars().rights(name) != held.rights)
            .map(|(name, _)| name.clone())
            .collect();
        for name in stale {
            publish(&self.view, core, &name);
        }
    }

    /// Publishes the lives [`VarsHandle::alive_lives`] answers, after a membership event
    /// (`membership`) or when a member told a renewal.
    pub(crate) fn publish_alive(&mut self, core: &Core, membership: bool) {
        let version = core.vars().lives_version();
        if !membership && version == self.lives_version {
            return;
        }
        self.lives_version = version;
        let alive = AliveLives::of(core);
        self.alive.send_if_modified(|held| {
            let changed = **held != alive;
            *held = Arc::new(alive);
            changed
        });
    }

    /// Carries out a handle's request on the core.
    pub(crate) fn request(&mut self, core: &mut Core, now: Instant, request: VarsRequest) {
        match request {
            VarsRequest::Declare { name, spec, done } => {
                let result = core.declare_var(now, &name, spec);
                // Shown here before the caller hears it is done, as a write is: `PUT
                // /variables/…` reads it back at once (its event is handled after this).
                publish(&self.view, core, &name);
                let _ = done.send(result);
            }
            VarsRequest::Propose {
                name,
                write,
                timeout,
                done,
            } => match propose_on(core, now, &name, write, timeout) {
                Ok(request) => {
                    self.cas_waits.insert((name, request), done);
                }
                Err(refused) => {
                    let _ = done.send(Err(refused));
                }
            },
            VarsRequest::Set { name, value, done } => {
                let result = core.set_var(now, &name, value);
                // The write shows here before the caller hears it is done (its event is
                // handled after this request).
                publish(&self.view, core, &name);
                let _ = done.send(result);
            }
            VarsRequest::Counter {
                name,
                amount,
                refill,
                done,
            } => {
                let result = match refill {
                    true => core.refill(now, &name, amount),
                    false => core.draw(now, &name, amount),
                };
                // Rights and statistics change without a new value: show them.
                publish(&self.view, core, &name);
                let _ = done.send(result);
            }
        }
    }

    /// Answers the write an event ends, publishes what changed, and tells watchers.
    pub(crate) fn event(&mut self, core: &Core, event: VarsEvent) {
        match &event {
            VarsEvent::CasDone {
                name,
                request,
                outcome,
            } => {
                if let Some(done) = self.cas_waits.remove(&(name.clone(), *request)) {
                    let _ = done.send(Ok(outcome.clone()));
                }
            }
            VarsEvent::Changed { name, .. } | VarsEvent::Declared { name } => {
                publish(&self.view, core, name)
            }
        }
        let _ = self.events.send(event);
    }
}

fn propose_on(
    core: &mut Core,
    now: Instant,
    name: &str,
    write: VarWrite,
    timeout: Duration,
) -> Result<u64, VarsError> {
    match write {
        VarWrite::Cas { expected, value } => {
            core.compare_and_set(now, name, expected, value, timeout)
        }
        VarWrite::Outcome(outcome) => core.commit_outcome(now, name, &outcome, timeout),
        VarWrite::Move(acceptors) => core.change_acceptors(now, name, acceptors, timeout),
    }
}

/// Publishes what the core holds of `name` for local reads.
fn publish(view: &watch::Sender<Arc<VarsView>>, core: &Core, name: &str) {
    let vars = core.vars();
    let (Some((version, value)), Some(spec)) = (vars.get(name), vars.spec(name)) else {
        return;
    };
    let state = VarState {
        version,
        value: value.clone(),
        spec: spec.clone(),
        history: vars.history(name).into_iter().flatten().cloned().collect(),
        statistics: vars.statistics(name).cloned().unwrap_or_default(),
        rights: vars.rights(name),
        acceptors: vars.acceptors(name),
    };
    view.send_modify(|held| {
        Arc::make_mut(held).insert(name.to_owned(), state);
    });
}
