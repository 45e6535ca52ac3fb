//! `engine::runtime`: drives a node's [`Core`] with tokio and the QUIC transport.
//! This is what applications embed.
//!
//! ```no_run
//! # async fn demo(settings: foundation_engine::runtime::NodeSettings) -> Result<(), foundation_engine::runtime::NodeError> {
//! let node = foundation_engine::runtime::Node::start(settings).await?;
//! let mut changes = node.membership_events();
//! for member in node.members() {
//!     println!("{} {:?}", member.id, member.state);
//! }
//! node.leave().await;
//! # Ok(()) }
//! ```

pub mod agents;
pub mod caches;
mod cluster_config;
mod driver;
pub mod federation;
mod from_config;
mod http;
mod http_advertise;
mod identity;
mod metrics;
mod operator;
pub mod placement;
mod request;
pub mod services;
pub mod snapshot;
mod status;
mod storage;
mod vars;
mod wait;

pub use cluster_config::{
    decode as decode_config_value, ConfigChange, ConfigError, ConfigHandle, ConfigWatch,
    CONFIG_KEYSPACE,
};
pub use from_config::StartNodeError;
pub use storage::StorageSettings;

/// Why [`Node::force_leave`] removed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ForceLeaveFailed {
    /// The member is alive, unknown, or this node.
    #[error(transparent)]
    Refused(#[from] foundation_core::membership::ForceLeaveError),
    /// The node has stopped.
    #[error("the node has stopped")]
    Stopped,
}
use vars::VarsRuntime;
pub use vars::{
    VarChange, VarState, VarWatch, VarsCallError, VarsHandle, VarsView, WatchError, Watched,
};

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use foundation_transport::{
    ClusterName, Endpoint, LocalIdentity, NodeAddr, NodeId, StartError, TransportConfig,
    TransportMetrics, Trust,
};
use prometheus_client::registry::Registry;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::discovery::{Candidate, Discovery, DiscoveryError, DiscoveryHandle, LocalNode};
use agents::{AgentsConfig, AgentsHandle};
use cluster_config::Mirror;
use driver::Driver;
use foundation_core::membership::{
    MemberId, MemberView, MembershipConfig, MembershipConfigError, MembershipEvent, NodeMetadata,
};
use foundation_core::node::{Core, CoreConfig};
use foundation_core::replication::ReplicationConfig;
use foundation_core::services::Directory;
use foundation_core::time::Instant;
use foundation_core::vars::reseat::ReseatConfig;
use foundation_core::vars::Life;
use metrics::{MembershipMetrics, ReplicationMetrics};
use request::Request;
use services::{PubSubHandle, RpcConfig, RpcHandle, Services, ServicesHandle, ServicesInbox};

/// Events buffered per subscriber before the oldest are dropped.
const EVENT_BUFFER: usize = 1024;
/// Candidate addresses buffered between discovery and the driver.
const CANDIDATE_BUFFER: usize = 1024;

/// Everything a node needs to start.
pub struct NodeSettings {
    /// Node id and cluster name.
    pub identity: LocalIdentity,
    /// How peers are authenticated.
    pub trust: Trust,
    /// QUIC endpoint settings (bind address, timeouts, limits).
    pub transport: TransportConfig,
    /// Failure detector settings.
    pub membership: MembershipConfig,
    /// What this node says about itself.
    pub metadata: NodeMetadata,
    /// Addresses to join through at start, and again whenever no member is alive.
    pub seeds: Vec<SocketAddr>,
    /// Strategies that find peers (and advertise us), started once the endpoint is bound.
    pub discovery: Vec<Box<dyn Discovery>>,
    /// Where to serve `/metrics`, `/health` and `/members`; `None` serves nothing.
    pub http: Option<SocketAddr>,
    /// Where other nodes reach the HTTP API, when it differs from `http`; `None`: `http`, or
    /// for a wildcard `http` the advertised QUIC IP with `http`'s port (never `0.0.0.0`/`::`).
    pub http_advertise: Option<SocketAddr>,
    /// Who may use the HTTP API (token, allowed origins and hosts).
    pub http_access: crate::http::Access,
    /// A registry to add the node's metrics to (the caller may have registered its own).
    pub registry: Registry,
    /// Circuit breakers, rate limits and concurrency of RPC.
    pub rpc: RpcConfig,
    /// Replicated keyspaces' settings (limits, anti-entropy, GC and compaction timing).
    pub replication: ReplicationConfig,
    /// Where replicated keyspaces are kept on disk; `None`: in memory only, lost when the
    /// node stops.
    pub storage: Option<StorageSettings>,
    /// Agents' supervision defaults, mailboxes and message limits.
    pub agents: AgentsConfig,
    /// Moving `cas` and `coordinated` variables off acceptor lives that are gone, on their
    /// own (see `foundation_core::vars::reseat`); `None`: only by hand.
    pub vars_reseat: Option<ReseatConfig>,
}

impl NodeSettings {
    /// Settings with the development profile's membership timers, the default transport on
    /// 127.0.0.1, no seeds, no discovery and no HTTP: the minimum to build on.
    pub fn new(identity: LocalIdentity, trust: Trust) -> Self {
        Self {
            identity,
            trust,
            transport: TransportConfig::default(),
            membership: MembershipConfig::development(),
            metadata: NodeMetadata::default(),
            seeds: Vec::new(),
            discovery: Vec::new(),
            http: None,
            http_advertise: None,
            http_access: crate::http::Access::default(),
            registry: Registry::default(),
            rpc: RpcConfig::default(),
            replication: ReplicationConfig::default(),
            storage: None,
            agents: AgentsConfig::default(),
            vars_reseat: Some(ReseatConfig::default()),
        }
    }
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The transport could not start.
    #[error(transparent)]
    Transport(#[from] StartError),
    /// The membership settings are invalid.
    #[error(transparent)]
    Membership(#[from] MembershipConfigError),
    /// A discovery strategy could not start.
    #[error(transparent)]
    Discovery(#[from] DiscoveryError),
    /// The HTTP server could not start.
    #[error(transparent)]
    Http(#[from] crate::http::HttpError),
    /// The RPC settings are invalid.
    #[error("invalid RPC settings: {0}")]
    Rpc(#[from] foundation_core::services::breaker::BreakerConfigError),
    /// The replication settings are invalid.
    #[error(transparent)]
    Replication(#[from] foundation_core::replication::ReplicationConfigError),
    /// The data directory could not be opened or written.
    #[error("storage: {0}")]
    Storage(#[from] crate::storage::StorageError),
}

/// A running node. Cheap to clone.
///
/// It runs until [`leave`](Node::leave) or [`abort`](Node::abort) (or an operator's
/// `POST /leave`), not until its handles are dropped. Once it has stopped it lets go of the
/// application's handlers, health checks, agents and workloads, so those may hold clones of
/// the node: after the last handle is dropped nothing of it is left, its ports included.
#[derive(Clone)]
pub struct Node {
    local: MemberId,
    cluster: ClusterName,
    endpoint: Endpoint,
    requests: mpsc::Sender<Request>,
    candidates: mpsc::Sender<Candidate>,
    view: watch::Receiver<Vec<MemberView>>,
    events: broadcast::Sender<MembershipEvent>,
    config: ConfigHandle,
    services: Services,
    agents: AgentsHandle,
    registry: Arc<Registry>,
    vars: VarsHandle,
    placement: placement::PlacementHandle,
    caches: caches::CachesHandle,
    http: Arc<std::sync::Mutex<Option<crate::http::HttpHandle>>>,
    /// Kept for the gateway, which presents this node's certificate to linked clusters.
    trust: Trust,
    federation_metrics: federation::metrics::FederationMetrics,
}

impl Node {
    /// Binds the transport, starts HTTP and discovery, and starts the node's protocols.
    pub async fn start(settings: NodeSettings) -> Result<Node, NodeError> {
        settings.membership.validate()?;
        settings.rpc.breaker.validate()?;
        settings.replication.validate()?;
        let NodeSettings {
            identity,
            trust,
            transport,
            membership,
            mut metadata,
            seeds,
            discovery,
            http,
            http_advertise,
            http_access: settings_access,
            mut registry,
            rpc,
            replication,
            storage,
            agents,
            vars_reseat,
        } = settings;
        // The sender lives in the store; without one it is dropped and the branch stays idle.
        let (outcomes, batch_outcomes) = mpsc::unbounded_channel();
        let opened = match &storage {
            Some(settings) => Some(storage::open(settings, start_generation(), outcomes).await?),
            None => None,
        };
        let transport_metrics = Arc::new(TransportMetrics::register(&mut registry));
        let membership_metrics = MembershipMetrics::register(&mut registry);
        let replication_metrics = ReplicationMetrics::register(&mut registry);
        let cluster = identity.cluster.clone();
        let (endpoint, mut inbox) =
            Endpoint::start(identity, &trust, transport, transport_metrics.clone()).await?;
        let (agent_divert, agent_requests) = agents::AgentRequests::new();
        let services_inbox = ServicesInbox {
            requests: take_queue(&mut inbox.requests),
            agents: agent_divert,
            events: take_queue(&mut inbox.events),
        };
        let local = MemberId {
            node: endpoint.local().id,
            addr: endpoint.local().addr,
            generation: opened
                .as_ref()
                .map_or_else(start_generation, |o| o.generation),
        };
        let (view_tx, view) = watch::channel(Vec::new());
        let (suspects_tx, suspects) = watch::channel(BTreeSet::new());
        let (requests_tx, requests) = mpsc::channel(CANDIDATE_BUFFER);
        let (directory_tx, directory) = watch::channel(Arc::new(Directory::default()));
        let agents = agents::start(
            agents,
            requests_tx.clone(),
            directory.clone(),
            view.clone(),
            endpoint.clone(),
            agent_requests,
            &mut registry,
        );
        let unwind = UnwindFailedStart::new(&agents, &endpoint);
        let directory_watch = directory.clone();
        let services = services::start(
            requests_tx.clone(),
            directory,
            endpoint.clone(),
            rpc,
            services_inbox,
            &mut registry,
        )?;
        let (vars_view, held) = watch::channel(Arc::default());
        let (alive_lives, alive) = watch::channel(Arc::default());
        let vars = VarsHandle {
            me: Life {
                node: local.node,
                generation: local.generation,
            },
            requests: requests_tx.clone(),
            events: broadcast::channel(EVENT_BUFFER).0,
            alive,
            held,
        };
        let vars_runtime = VarsRuntime::new(&vars, (vars_view, alive_lives), &mut registry);
        let (placement, placement_runtime) =
            placement::start(requests_tx.clone(), local.node, &mut registry);
        let cache_metrics = caches::CacheMetrics::register(&mut registry);
        let federation_metrics = federation::metrics::FederationMetrics::register(&mut registry);
        let epoch = tokio::time::Instant::now();
        let caches = caches::CachesHandle::new(requests_tx.clone(), epoch, cache_metrics);
        let registry = Arc::new(registry);
        let config = ConfigHandle {
            requests: requests_tx.clone(),
            mirror: Mirror::default(),
            events: broadcast::channel(EVENT_BUFFER).0,
        };
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let (identity, own_metadata) =
            identity::Identity::new(local, cluster.clone(), metadata.clone());
        let operator = operator::OperatorApi {
            requests: requests_tx.clone(),
            services: services.registry.clone(),
            rpc: services.rpc.clone(),
            pubsub: services.pubsub.clone(),
            config: config.clone(),
            events: events.clone(),
            directory: directory_watch,
            identity: identity.clone(),
        };
        let http = match http {
            Some(addr) => Some(http::serve(
                addr,
                http::Api {
                    registry: registry.clone(),
                    view: view.clone(),
                    config: config.clone(),
                    services: services.registry.clone(),
                    vars: vars.clone(),
                    placement: placement.clone(),
                    caches: caches.clone(),
                    agents: agents.clone(),
                    identity,
                    requests: requests_tx.clone(),
                    operator,
                    suspects,
                    access: settings_access,
                    transport: transport_metrics,
                    keyspaces: replication_metrics.summaries(),
                },
            )?),
            None => None,
        };
        // Peers get a routable address; local discovery keeps the bound one, which the CLI on
        // this machine reaches over loopback (where writes without a token are taken).
        let http_bound = http.as_ref().map(|h| h.local_addr());
        metadata.http = http_bound.map(|bound| {
            http_advertise::http_advertised(bound, http_advertise, endpoint.local().addr)
        });
        let core_config = CoreConfig {
            me: local,
            membership,
            metadata,
            seed: rand::random(),
        };
        let (candidates_tx, candidates) = mpsc::channel(CANDIDATE_BUFFER);
        let discovery = start_discovery(
            discovery,
            &cluster,
            endpoint.local(),
            http_bound,
            &candidates_tx,
        )?;
        let replication = ReplicationConfig {
            wall_ms_at_zero: unix_ms(),
            ..replication
        };
        let mut core =
            Core::new(core_config, Instant::ZERO).with_replication(replication, rand::random());
        core.set_vars_reseat(vars_reseat);
        let storage = opened.map(|opened| {
            let skipped = core.start_persisting(Instant::ZERO, &opened.loaded);
            if skipped > 0 {
                tracing::warn!(
                    skipped,
                    "stored records that did not decode were left out; peers refill them"
                );
            }
            fill_mirror(&config.mirror, &core);
            opened.storage
        });
        let driver = Driver {
            core,
            endpoint: endpoint.clone(),
            inbox,
            epoch,
            requests,
            requests_tx: requests_tx.clone(),
            candidates,
            seeds,
            view: view_tx,
            suspects: suspects_tx,
            events: events.clone(),
            config_events: config.events.clone(),
            mirror: config.mirror.clone(),
            majority_waits: BTreeMap::new(),
            metrics: membership_metrics,
            replication_metrics,
            timers_dropped: 0,
            vars: vars_runtime,
            join_attempts: BTreeMap::new(),
            discovery,
            directory: directory_tx,
            directory_now: Directory::default(),
            storage,
            batch_outcomes,
            durable_replies: BTreeMap::new(),
            placement: placement_runtime,
            caches: caches::CachesRuntime::new(caches.clone()),
            own_metadata,
        };
        tokio::spawn(driver.run());
        unwind.started();
        let http = Arc::new(std::sync::Mutex::new(http));
        Ok(Node {
            local,
            cluster,
            endpoint,
            requests: requests_tx,
            candidates: candidates_tx,
            view,
            events,
            config,
            services,
            agents,
            registry,
            vars,
            placement,
            caches,
            http,
            trust,
            federation_metrics,
        })
    }

    /// Starts this node as a federation gateway of its cluster (see [`federation`]).
    pub fn start_gateway(
        &self,
        settings: federation::FederationSettings,
    ) -> Result<federation::FederationHandle, federation::GatewayStartError> {
        let shared = &self.services.registry.shared;
        let mut slot = services::lock(&shared.federation);
        if slot.is_some() {
            return Err(federation::GatewayStartError::AlreadyRunning);
        }
        let handle = federation::start(
            settings,
            &self.trust,
            &self.cluster,
            self.local.node,
            self.services.rpc.clone(),
            self.services.pubsub.clone(),
            self.federation_metrics.clone(),
        )?;
        *slot = Some(handle.clone());
        Ok(handle)
    }

    /// This node's federation gateway, while one runs.
    pub fn federation(&self) -> Option<federation::FederationHandle> {
        self.services.registry.shared.gateway()
    }

    /// Stops this node's federation gateway, if one runs: its links go down, and both sides
    /// go on alone.
    pub fn stop_gateway(&self) {
        let shared = &self.services.registry.shared;
        if let Some(handle) = services::lock(&shared.federation).take() {
            handle.stop();
        }
    }

    /// Where this node serves HTTP, if it does.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http
            .lock()
            .ok()
            .and_then(|h| h.as_ref().map(|h| h.local_addr()))
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.local.node
    }

    /// The address peers reach this node at.
    pub fn addr(&self) -> SocketAddr {
        self.local.addr
    }

    /// Id and address together.
    pub fn node_addr(&self) -> NodeAddr {
        self.endpoint.local()
    }

    /// The cluster this node belongs to.
    pub fn cluster(&self) -> &ClusterName {
        &self.cluster
    }

    /// Every other member this node knows, with state and metadata, in node id order.
    pub fn members(&self) -> Vec<MemberView> {
        self.view.borrow().clone()
    }

    /// A stream of membership changes from now on.
    pub fn membership_events(&self) -> broadcast::Receiver<MembershipEvent> {
        self.events.subscribe()
    }

    /// The cluster-wide config: local reads, writes from any node, watches.
    pub fn config(&self) -> ConfigHandle {
        self.config.clone()
    }

    /// The service registry: register instances, look them up locally, watch them.
    pub fn services(&self) -> ServicesHandle {
        self.services.registry.clone()
    }

    /// Calls services by name, load-balanced, with retries and circuit breakers.
    pub fn rpc(&self) -> RpcHandle {
        self.services.rpc.clone()
    }

    /// Variables agents coordinate on: compare-and-set decided by a majority of acceptors.
    pub fn vars(&self) -> VarsHandle {
        self.vars.clone()
    }

    /// Singletons and sharded workloads, placed across the cluster with failover.
    pub fn placement(&self) -> placement::PlacementHandle {
        self.placement.clone()
    }

    /// Declares cache `settings.name` on this node (every node that uses it declares it with
    /// the same settings) and returns its handle; declaring it again with the same settings
    /// returns the same cache.
    pub async fn declare_cache(
        &self,
        settings: caches::CacheSettings,
    ) -> Result<caches::CacheHandle, caches::CacheError> {
        self.caches.declare(settings).await
    }

    /// Cache `name`, declared before on this node ([`caches::CacheError::Unknown`] if not).
    pub fn cache(&self, name: &str) -> Result<caches::CacheHandle, caches::CacheError> {
        self.caches.get(name)
    }

    /// Publish and subscribe by topic.
    pub fn pubsub(&self) -> PubSubHandle {
        self.services.pubsub.clone()
    }

    /// MABEAM agents: spawn supervised agents, find any agent of the cluster, message them.
    pub fn agents(&self) -> AgentsHandle {
        self.agents.clone()
    }

    /// Joins the cluster through the node listening at `addr` (seed, or any member).
    pub async fn join(&self, addr: SocketAddr) {
        let _ = self
            .candidates
            .send(Candidate {
                addr,
                id: None,
                source: "application",
            })
            .await;
    }

    /// Replaces this node's metadata; every member learns it. Returns once it holds here:
    /// placement by the new tags and what the node's HTTP pages show about it included (a
    /// stopped node ignores it). Without an `http` address it keeps the one it advertises.
    pub async fn set_metadata(&self, metadata: NodeMetadata) {
        let _ = request::ask(&self.requests, |done| Request::SetMetadata(metadata, done)).await;
    }

    /// The node's metrics registry (transport, membership), for `/metrics`.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// The transport endpoint, for the layers built on this node.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Stops the node at once without telling its peers, as a crash would (they will declare
    /// it failed). For tests, demos and fault drills; applications want [`leave`](Self::leave).
    pub async fn abort(&self) {
        self.agents.abort().await;
        let (done, stopped) = oneshot::channel();
        if self.requests.send(Request::Abort(done)).await.is_ok() {
            let _ = stopped.await;
        }
        self.shutdown_http().await;
    }

    async fn shutdown_http(&self) {
        let http = self.http.lock().ok().and_then(|mut h| h.take());
        if let Some(http) = http {
            http.shutdown().await;
        }
    }

    /// Resolves once the node has stopped: it left (through [`leave`](Self::leave) or an
    /// operator's `POST /leave` over HTTP) or was [aborted](Self::abort). An application that
    /// serves HTTP waits on this beside its own shutdown signal, then calls `leave` to finish
    /// (it returns at once for a node that has already left, after closing the HTTP server).
    pub async fn stopped(&self) {
        let mut view = self.view.clone();
        // The driver holds the only sender; it is dropped when the driver ends.
        while view.changed().await.is_ok() {}
    }

    /// Removes a failed or departed member from the members table now, on this node and on
    /// every live member (otherwise it goes after `reap_after`), and from the agreed
    /// membership majorities are counted in; also one that only the agreed membership still
    /// counts (reaped from the table, here or while this node was down). An alive member, an
    /// unknown one and this node are refused.
    pub async fn force_leave(
        &self,
        node: NodeId,
    ) -> Result<foundation_core::ForceLeft, ForceLeaveFailed> {
        match operator::force_leave(&self.requests, node).await {
            Ok(result) => result.map_err(ForceLeaveFailed::Refused),
            Err(_) => Err(ForceLeaveFailed::Stopped),
        }
    }

    /// Every replicated keyspace that is not ephemeral (config, variables, replicated caches),
    /// as this node holds it now; [`Snapshot::encode`](foundation_core::replication::Snapshot::encode)
    /// gives a snapshot file's bytes.
    pub async fn snapshot(
        &self,
    ) -> Result<foundation_core::replication::Snapshot, snapshot::SnapshotFailed> {
        snapshot::take(&self.requests).await
    }

    /// Merges a snapshot's keyspaces into this node's as CRDT merges (nothing newer here is
    /// lost, nothing is rolled back) and lets replication spread them; answers once the merge
    /// is durable here. A refused snapshot changes nothing.
    pub async fn restore(
        &self,
        snapshot: foundation_core::replication::Snapshot,
    ) -> Result<Vec<foundation_core::replication::RestoredKeyspace>, snapshot::SnapshotFailed> {
        snapshot::restore(&self.requests, snapshot).await
    }

    /// Leaves the cluster gracefully (members record "left", not "failed") and shuts down.
    /// Its agents are stopped first (the last spawned first), so they leave the directory
    /// while the node is still a member and can still tell its peers.
    pub async fn leave(&self) {
        leave_gracefully(&self.agents, &self.requests).await;
        self.shutdown_http().await;
    }
}

/// Leaves the cluster: the agents stop first, leaving the directory while the node is still a
/// member, then the node. `false` if the node had already stopped. What `Node::leave` and an
/// operator's `POST /leave` both do.
pub(crate) async fn leave_gracefully(
    agents: &AgentsHandle,
    requests: &mpsc::Sender<Request>,
) -> bool {
    agents.shutdown().await;
    let (done, stopped) = oneshot::channel();
    requests.send(Request::Stop(done)).await.is_ok() && stopped.await.is_ok()
}

/// Ends what a start began once it fails past the agents' start (the services, the HTTP server
/// or discovery refused): the agents' tasks and the endpoint hold each other, so they ran on,
/// with the UDP port bound, until the process ended.
struct UnwindFailedStart {
    begun: Option<(AgentsHandle, Endpoint)>,
}

impl UnwindFailedStart {
    fn new(agents: &AgentsHandle, endpoint: &Endpoint) -> Self {
        Self {
            begun: Some((agents.clone(), endpoint.clone())),
        }
    }

    /// The node started: its stop ends them now.
    fn started(mut self) {
        self.begun = None;
    }
}

impl Drop for UnwindFailedStart {
    fn drop(&mut self) {
        if let Some((agents, endpoint)) = self.begun.take() {
            tokio::spawn(async move {
                agents.abort().await;
                endpoint.close().await;
            });
        }
    }
}

/// Puts the restored config's live values into the mirror config reads use.
fn fill_mirror(mirror: &Mirror, core: &Core) {
    let Some(config) = core.replication().keyspace(cluster_config::CONFIG_KEYSPACE) else {
        return;
    };
    let mut mirror = mirror
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    mirror.extend(config.iter().map(|(k, v)| (k.to_owned(), v.to_vec())));
}

/// A generation that grows across restarts of the same node id: the start time in milliseconds.
/// A restarted node is thus a newer life of its id, and wins over stale news of the old one.
fn start_generation() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Takes a queue out of the inbox for another task, leaving a closed one in its place.
fn take_queue<T>(queue: &mut mpsc::Receiver<T>) -> mpsc::Receiver<T> {
    std::mem::replace(queue, mpsc::channel(1).1)
}

/// Wall-clock Unix time in milliseconds (0 if the clock is before 1970).
fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn start_discovery(
    strategies: Vec<Box<dyn Discovery>>,
    cluster: &ClusterName,
    local: NodeAddr,
    http: Option<SocketAddr>,
    found: &mpsc::Sender<Candidate>,
) -> Result<Vec<DiscoveryHandle>, DiscoveryError> {
    let me = LocalNode {
        cluster: cluster.clone(),
        id: local.id,
        addr: local.addr,
        http,
    };
    strategies
        .into_iter()
        .map(|strategy| strategy.start(me.clone(), found.clone()))
        .collect()
}
