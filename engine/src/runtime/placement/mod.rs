//! `node.placement()`: singletons and sharded workloads placed by the core's placement machine
//! (`foundation_core::placement`: rendezvous hashing, keep-majority, leases from a quorum of
//! registrars), run here as tokio tasks by a supervisor ([`supervisor`]), listed on
//! `GET /placement`.
//!
//! Every node that may run a workload declares it with the same name and kind; the factory
//! makes the instance's future each time it starts here. A future that panics or returns while
//! this node still owns the instance is started again with backoff.
//!
//! [`PlacementHandle::place`] is the general form: its factory gets an [`InstanceContext`]
//! with the state a previous owner handed over and an inbox of messages routed by key
//! ([`PlacementHandle::route`]) and of handoff requests (for a spec with `handoff`).
//! [`PlacementHandle::events`] tells the application what placement does ([`PlacementNotice`]).

mod events;
mod http;
mod metrics;
pub mod supervisor;

pub use events::PlacementNotice;
pub(crate) use http::routes;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use foundation_core::placement::{
    shard_of, Instance, Kind, PlacementError, PlacementEvent, RouteError, RouteId, WorkloadSpec,
};
use foundation_core::time::Instant;
use foundation_core::{Core, NodeId};
use serde::Serialize;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use super::request::{PlacementRequest, Request};
use supervisor::{Decision, Factory, Registration, SupervisorCounters};
pub use supervisor::{Inbox, InstanceContext, INBOX_CAPACITY};

/// One instance as this node sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct InstanceView {
    /// The shard (0 for a singleton).
    pub shard: u32,
    /// Who this node's view says owns it (it runs there once that node holds its lease).
    #[serde(serialize_with = "node_text")]
    pub owner: Option<NodeId>,
    /// Whether it runs here now.
    pub running_here: bool,
}

/// One declared workload as this node sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WorkloadView {
    /// `singleton`, `sharded`, `replicated` or `local`.
    pub kind: &'static str,
    /// Its instances, by shard.
    pub instances: Vec<InstanceView>,
}

/// Every workload declared here, by name: what the driver publishes after each change.
pub type PlacementView = BTreeMap<String, WorkloadView>;

fn node_text<S: serde::Serializer>(id: &Option<NodeId>, s: S) -> Result<S::Ok, S::Error> {
    match id {
        Some(id) => s.collect_str(id),
        None => s.serialize_none(),
    }
}

/// Why a placement call failed.
#[derive(Debug, thiserror::Error)]
pub enum PlacementCallError {
    /// The machine refused it (unknown workload, another spec under the name, a bad setting).
    #[error(transparent)]
    Refused(#[from] PlacementError),
    /// A routed message was not confirmed delivered by its deadline.
    #[error(transparent)]
    Route(#[from] RouteError),
    /// The node stopped.
    #[error("the node stopped")]
    Stopped,
}

/// Given to an instance asked to hand itself over ([`Inbox::HandOff`]).
pub struct HandoffReply {
    pub(crate) instance: Instance,
    pub(crate) requests: mpsc::Sender<Request>,
}

impl HandoffReply {
    /// Gives the instance's state to its next owner (over the bulk channel); the instance is
    /// stopped here once that node holds it. A state over the limit (`handoff_max_bytes`) is
    /// refused with [`PlacementError::TooLarge`]: the handoff goes on, so a smaller state may
    /// still be given before it times out.
    pub async fn hand_over(&self, state: Vec<u8>) -> Result<(), PlacementCallError> {
        let (done, answer) = oneshot::channel();
        let request = PlacementRequest::HandOff {
            instance: self.instance.clone(),
            state,
            done,
        };
        self.requests
            .send(Request::Placement(request))
            .await
            .map_err(|_| PlacementCallError::Stopped)?;
        answer
            .await
            .map_err(|_| PlacementCallError::Stopped)?
            .map_err(Into::into)
    }

    /// The instance being handed over.
    pub fn instance(&self) -> &Instance {
        &self.instance
    }
}

/// Declare singletons and sharded workloads, and find who owns what. Cheap to clone.
#[derive(Clone)]
pub struct PlacementHandle {
    requests: mpsc::Sender<Request>,
    registrations: mpsc::UnboundedSender<Registration>,
    view: watch::Receiver<Arc<PlacementView>>,
    notices: broadcast::Sender<PlacementNotice>,
    counters: Arc<SupervisorCounters>,
    me: NodeId,
}

impl PlacementHandle {
    /// Runs exactly one instance of `name` cluster-wide: `factory` makes its future whenever
    /// it starts on this node. Every node that may run it declares it the same way. Declaring
    /// a name again keeps the first factory (another kind under the name is refused).
    pub async fn singleton<F, Fut>(&self, name: &str, factory: F) -> Result<(), PlacementCallError>
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.singleton_with(name, WorkloadSpec::singleton(), factory)
            .await
    }

    /// [`PlacementHandle::singleton`] with a spec: the owner rule, tags, minimum members.
    pub async fn singleton_with<F, Fut>(
        &self,
        name: &str,
        spec: WorkloadSpec,
        factory: F,
    ) -> Result<(), PlacementCallError>
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let factory: Factory = Arc::new(move |_| Box::pin(factory()));
        self.declare(name, spec, factory).await
    }

    /// Runs one instance of `name` on every member that carries the tags in `require` (all of
    /// them when empty): `factory` makes its future on this node when this node is one.
    pub async fn replicated<F, Fut>(
        &self,
        name: &str,
        require: BTreeMap<String, String>,
        factory: F,
    ) -> Result<(), PlacementCallError>
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let spec = WorkloadSpec {
            require,
            ..WorkloadSpec::replicated()
        };
        self.singleton_with(name, spec, factory).await
    }

    /// Runs one instance of `name` on this node, supervised like placed ones (restarted with
    /// backoff, listed on `GET /placement`) until the node leaves.
    pub async fn local<F, Fut>(&self, name: &str, factory: F) -> Result<(), PlacementCallError>
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.singleton_with(name, WorkloadSpec::local(), factory)
            .await
    }

    /// Declares `name` with any spec (a singleton, shards, `handoff`): `factory` makes a
    /// run's future from its [`InstanceContext`] — the shard, the state handed over by the
    /// previous owner, and an inbox of routed messages and handoff requests.
    pub async fn place<F, Fut>(
        &self,
        name: &str,
        spec: WorkloadSpec,
        factory: F,
    ) -> Result<(), PlacementCallError>
    where
        F: Fn(InstanceContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let factory: Factory = Arc::new(move |context| Box::pin(factory(context)));
        self.declare(name, spec, factory).await
    }

    /// Sends `payload` to the instance of `workload` that `key` maps to, wherever it runs
    /// (buffered at its next owner during a handoff), and returns once it was delivered to
    /// that instance's inbox, or fails by `ttl`: [`RouteError::NotDelivered`] (it was not),
    /// [`RouteError::Unconfirmed`] (no answer: delivered at most once).
    pub async fn route(
        &self,
        workload: &str,
        key: &[u8],
        payload: Vec<u8>,
        ttl: std::time::Duration,
    ) -> Result<(), PlacementCallError> {
        let (done, answer) = oneshot::channel();
        let request = PlacementRequest::Route {
            workload: workload.to_owned(),
            key: key.to_vec(),
            payload,
            ttl,
            done,
        };
        self.requests
            .send(Request::Placement(request))
            .await
            .map_err(|_| PlacementCallError::Stopped)?;
        answer.await.map_err(|_| PlacementCallError::Stopped)?
    }

    /// Spreads `shards` instances of `name` over the members: `factory(shard)` makes a shard's
    /// future whenever it starts on this node. Keys map to shards with
    /// [`PlacementHandle::owner_of`]. The shard count is fixed once declared.
    pub async fn sharded<F, Fut>(
        &self,
        name: &str,
        shards: u32,
        factory: F,
    ) -> Result<(), PlacementCallError>
    where
        F: Fn(u32) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.sharded_with(name, WorkloadSpec::sharded(shards), factory)
            .await
    }

    /// [`PlacementHandle::sharded`] with a spec.
    pub async fn sharded_with<F, Fut>(
        &self,
        name: &str,
        spec: WorkloadSpec,
        factory: F,
    ) -> Result<(), PlacementCallError>
    where
        F: Fn(u32) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let factory: Factory = Arc::new(move |context| Box::pin(factory(context.shard)));
        self.declare(name, spec, factory).await
    }

    async fn declare(
        &self,
        name: &str,
        spec: WorkloadSpec,
        factory: Factory,
    ) -> Result<(), PlacementCallError> {
        // Registered before the declaration, so the factory is there for the first start.
        let registration = Registration {
            name: name.to_owned(),
            factory,
        };
        self.registrations
            .send(registration)
            .map_err(|_| PlacementCallError::Stopped)?;
        let (done, answer) = oneshot::channel();
        let request = PlacementRequest::Declare {
            name: name.to_owned(),
            spec,
            done,
        };
        self.requests
            .send(Request::Placement(request))
            .await
            .map_err(|_| PlacementCallError::Stopped)?;
        answer
            .await
            .map_err(|_| PlacementCallError::Stopped)?
            .map_err(Into::into)
    }

    /// The shard `key` maps to in `workload`, and who this node's view says owns it (`None`
    /// while too few members are eligible).
    pub fn owner_of(
        &self,
        workload: &str,
        key: &[u8],
    ) -> Result<(u32, Option<NodeId>), PlacementCallError> {
        let view = self.view.borrow();
        let w = view
            .get(workload)
            .ok_or_else(|| PlacementError::Unknown(workload.to_owned()))?;
        let shards = u32::try_from(w.instances.len()).unwrap_or(u32::MAX);
        let shard = shard_of(key, shards);
        let owner = w.instances.get(shard as usize).and_then(|i| i.owner);
        Ok((shard, owner))
    }

    /// Whether `instance` of `workload` runs on this node now.
    pub fn running_here(&self, workload: &str, shard: u32) -> bool {
        self.view
            .borrow()
            .get(workload)
            .and_then(|w| w.instances.get(shard as usize))
            .is_some_and(|i| i.running_here)
    }

    /// Every workload declared here, with owners.
    pub fn all(&self) -> Arc<PlacementView> {
        self.view.borrow().clone()
    }

    /// Waits until the published view changes.
    pub async fn changed(&mut self) -> Result<(), PlacementCallError> {
        self.view
            .changed()
            .await
            .map_err(|_| PlacementCallError::Stopped)
    }

    /// What placement does from now on, as this node sees it: owner changes, starts and
    /// stops here (with the time without an owner), handoffs, duplicates detected. A
    /// subscriber that falls more than 1024 notices behind misses the oldest
    /// (`RecvError::Lagged`).
    pub fn events(&self) -> broadcast::Receiver<PlacementNotice> {
        self.notices.subscribe()
    }

    /// This node's id.
    pub fn me(&self) -> NodeId {
        self.me
    }

    /// How many times an instance was started again here after it panicked or returned.
    pub fn restarts(&self) -> u64 {
        self.counters.restarts.load(Ordering::Relaxed)
    }

    /// How many runs of instances panicked here.
    pub fn panics(&self) -> u64 {
        self.counters.panics.load(Ordering::Relaxed)
    }

    /// How many instances the core started here.
    pub fn started(&self) -> u64 {
        self.counters.started.load(Ordering::Relaxed)
    }

    /// Routed messages delivered here that no run of their instance took (its inbox was
    /// full, or it was between restarts).
    pub fn undelivered(&self) -> u64 {
        self.counters.undelivered.load(Ordering::Relaxed)
    }

    /// How many times this node saw another run an instance while it ran here, both under
    /// valid leases ([`PlacementNotice::DuplicateDetected`]); should stay 0.
    pub fn duplicates_detected(&self) -> u64 {
        self.counters.duplicates.load(Ordering::Relaxed)
    }
}

/// The driver's side: it carries out requests on the core, hands decisions to the supervisor
/// and publishes the view.
pub(crate) struct PlacementRuntime {
    decisions: mpsc::UnboundedSender<Decision>,
    view: watch::Sender<Arc<PlacementView>>,
    notices: broadcast::Sender<PlacementNotice>,
    counters: Arc<SupervisorCounters>,
    /// Callers of `route` waiting for their message's outcome.
    routes: BTreeMap<RouteId, oneshot::Sender<Result<(), PlacementCallError>>>,
    /// Stops waiting for this node's handoffs to finish before it closes the endpoint: every
    /// leave asked meanwhile, each answered once the node has left (or dropped unanswered if
    /// the node is aborted first: its callers hear it stopped).
    pub(crate) stop_after_handoffs: Vec<oneshot::Sender<()>>,
    metrics: metrics::PlacementMetrics,
}

/// A handle and the driver's runtime for it, with the supervisor running.
pub(crate) fn start(
    requests: mpsc::Sender<Request>,
    me: NodeId,
    registry: &mut prometheus_client::registry::Registry,
) -> (PlacementHandle, PlacementRuntime) {
    let (registrations, registrations_rx) = mpsc::unbounded_channel();
    let (decisions, decisions_rx) = mpsc::unbounded_channel();
    let counters = Arc::new(SupervisorCounters::default());
    supervisor::spawn(
        registrations_rx,
        decisions_rx,
        requests.clone(),
        counters.clone(),
    );
    let (view_tx, view) = watch::channel(Arc::default());
    let (notices, _) = broadcast::channel(events::NOTICE_BUFFER);
    let handle = PlacementHandle {
        requests,
        registrations,
        view,
        notices: notices.clone(),
        counters: counters.clone(),
        me,
    };
    let runtime = PlacementRuntime {
        decisions,
        view: view_tx,
        notices,
        counters,
        routes: BTreeMap::new(),
        stop_after_handoffs: Vec::new(),
        metrics: metrics::PlacementMetrics::register(registry),
    };
    (handle, runtime)
}

impl PlacementRuntime {
    /// Carries out a handle's request on the core.
    pub(crate) fn request(&mut self, core: &mut Core, now: Instant, request: PlacementRequest) {
        match request {
            PlacementRequest::Declare { name, spec, done } => {
                let result = core.declare_placement(now, &name, spec);
                // Shown here before the caller hears it is done: `owner_of` right after the
                // declaration reads this view.
                self.publish(core);
                let _ = done.send(result);
            }
            PlacementRequest::Route {
                workload,
                key,
                payload,
                ttl,
                done,
            } => match core.route(now, &workload, &key, payload, ttl) {
                Ok(id) => {
                    // Callers that gave up need no answer.
                    self.routes.retain(|_, waiter| !waiter.is_closed());
                    self.routes.insert(id, done);
                }
                Err(refused) => {
                    let _ = done.send(Err(refused.into()));
                }
            },
            PlacementRequest::HandOff {
                instance,
                state,
                done,
            } => {
                let _ = done.send(core.hand_off(now, &instance, state));
            }
        }
    }

    /// Hands a decision to the supervisor (or an outcome to a caller of `route`) and
    /// publishes the view.
    pub(crate) fn event(&mut self, core: &Core, event: PlacementEvent) {
        if let PlacementEvent::Start { instance, waited } = &event {
            self.metrics.without_owner(&instance.workload, *waited);
        }
        let notice = events::notice_of(&event);
        let decision = match event {
            PlacementEvent::Start { instance, .. } => Decision::Start(instance),
            PlacementEvent::Stop { instance, .. } => Decision::Stop(instance),
            PlacementEvent::BeginHandoff { instance, .. } => Decision::BeginHandoff(instance),
            PlacementEvent::EndHandoff {
                instance, state, ..
            } => Decision::HandedOver(instance, state),
            PlacementEvent::Deliver {
                instance, payload, ..
            } => Decision::Deliver(instance, payload),
            PlacementEvent::Routed { id, outcome } => {
                if let Some(waiter) = self.routes.remove(&id) {
                    let _ = waiter.send(outcome.map_err(Into::into));
                }
                return;
            }
            PlacementEvent::Duplicate { .. } => {
                self.counters.duplicates.fetch_add(1, Ordering::Relaxed);
                return self.notify(notice);
            }
        };
        let _ = self.decisions.send(decision);
        self.publish(core);
        // Told once the view shows it: a subscriber reads `running_here` on the news.
        self.notify(notice);
    }

    fn notify(&self, notice: Option<PlacementNotice>) {
        if let Some(notice) = notice {
            // Nobody listening is fine: the stream is for whoever subscribed.
            let _ = self.notices.send(notice);
        }
    }

    /// Brings the `foundation_placement_*` metrics up to date.
    pub(crate) fn sync_metrics(&self, core: &Core) {
        self.metrics.sync(core);
    }

    /// Publishes who owns what, as the core sees it now.
    pub(crate) fn publish(&self, core: &Core) {
        let placement = core.placement();
        let mut view = PlacementView::new();
        for (name, spec) in placement.workloads() {
            let instances = (0..spec.shards())
                .map(|shard| {
                    let instance = Instance::new(name, shard);
                    InstanceView {
                        shard,
                        owner: placement.owner(&instance).ok().flatten(),
                        running_here: placement.runs_here(&instance),
                    }
                })
                .collect();
            let kind = match spec.kind {
                Kind::Singleton => "singleton",
                Kind::Sharded { .. } => "sharded",
                Kind::Replicated => "replicated",
                Kind::Local => "local",
            };
            view.insert(name.clone(), WorkloadView { kind, instances });
        }
        self.view.send_if_modified(|held| {
            if **held == view {
                return false;
            }
            events::owner_changes(held, &view, &self.notices);
            *held = Arc::new(view);
            true
        });
    }
}
