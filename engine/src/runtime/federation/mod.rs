//! Federation in a running node: a node started as a gateway ([`Node::start_gateway`]) links
//! its cluster to others, keeps the global directory of exported services, and forwards calls
//! to services of linked clusters. The protocol is `foundation_core::federation`'s machine;
//! this module drives it over the transport's gateway endpoint with tokio's clock.
//!
//! `call_in` works on every node: one that is not a gateway relays the call through a gateway
//! of its own cluster (see `relay.rs`). `lookup_in` reads the gateway's directory: this node's
//! own, or through the same relay one of its cluster's gateways'. The gateway sends a call over
//! the direct link, or, as the machine's route says, through a hub (`Transit`), which passes it
//! on over its own direct link as a call naming its origin (`Via`, see `serve.rs`).
//!
//! Pub/sub is bridged for the topic patterns both sides name (`FederationSettings::bridges`):
//! see `bridge.rs`.
//!
//! [`Node::start_gateway`]: super::Node::start_gateway

mod bridge;
pub(crate) mod http;
pub(crate) mod metrics;
mod relay;
mod serve;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use foundation_core::federation::wire::{
    self, FederationReply, FederationRequest, ForwardedCall, RemoteCallError,
};
use foundation_core::federation::{
    BatchLimits, BridgeConfig, BridgeConfigError, ExportedService, Federation, FederationConfig,
    FederationConfigError, FederationError, ForwardedAttempt, GlobalDirectory, LinkConfig,
    LinkStatus, Route, Routing, ServedCalls, TopicBridges, WanTimers,
};
use foundation_core::services::admission::MAX_CALL_DEADLINE;
use foundation_core::services::router::AttemptEnd;
use foundation_core::services::trace::TraceContext;
use foundation_core::services::wire::{RemoteError, RpcReply};
use foundation_core::time::Instant;
use foundation_transport::gateway::{GatewayConfig, GatewayEndpoint, GatewayError, LinkBytes};
use foundation_transport::security::RemoteRoot;
use foundation_transport::{ClusterName, NodeId, Trust};
use tokio::sync::watch;
use tokio::time::Instant as TokioInstant;

use super::services::{CallOptions, PubSubHandle, RpcHandle, ServicesHandle};

/// How long `lookup_in` on a node that is not a gateway waits for its cluster's gateway.
pub const LOOKUP_DEADLINE: Duration = Duration::from_secs(2);

/// How a node acts as a gateway.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FederationSettings {
    /// Where this gateway listens for gateways of linked clusters.
    pub bind: SocketAddr,
    /// The links to other clusters.
    pub links: Vec<LinkSettings>,
    /// The services this cluster exports (a service is exported only when named here and
    /// registered healthy somewhere in the cluster).
    pub exports: Vec<String>,
    /// Probe pacing between gateways.
    pub timers: WanTimers,
    /// Largest request or reply between gateways.
    pub max_frame: usize,
    /// Hub-and-spoke: the links used as hubs, the clusters carried as a hub, the push spacing
    /// of export changes. Default: a mesh member that pushes changes 50 ms apart at most.
    pub routing: Routing,
    /// Pub/sub bridged per linked cluster: the topic patterns exported there and imported
    /// from there (a topic crosses only when the other side's gateway agrees).
    pub bridges: Vec<BridgeConfig>,
    /// Longest a call from a linked cluster runs here, served or carried as a hub, whatever
    /// deadline it asked for (it runs with the smaller). Default: as a peer's call inside the
    /// cluster, [`MAX_CALL_DEADLINE`].
    pub max_call_deadline: Duration,
    /// The most a batch of bridged pub/sub messages holds, sent to a linked gateway or taken
    /// from one (a larger one is refused whole, counted `oversized`; a single message larger
    /// than a batch may be is not sent, counted `too_large`). Zero limits are refused.
    pub bridge_batch: BatchLimits,
}

impl FederationSettings {
    /// A gateway on `bind` with no links, nothing exported and the default WAN timers.
    pub fn new(bind: SocketAddr) -> Self {
        Self {
            bind,
            links: Vec::new(),
            exports: Vec::new(),
            timers: WanTimers::default(),
            max_frame: wire::MAX_FRAME,
            routing: Routing::default(),
            bridges: Vec::new(),
            max_call_deadline: MAX_CALL_DEADLINE,
            bridge_batch: BatchLimits::default(),
        }
    }
}

/// One link: the remote cluster, its gateways and what it is trusted by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkSettings {
    /// The remote cluster.
    pub cluster: ClusterName,
    /// Its gateways' addresses, tried in order (the next after a missed probe).
    pub gateways: Vec<SocketAddr>,
    /// Its trust root: its secret or its CA certificate.
    pub root: RemoteRoot,
}

/// Why a gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum GatewayStartError {
    /// The links or timers are unusable.
    #[error(transparent)]
    Config(#[from] FederationConfigError),
    /// The topic bridges are unusable.
    #[error(transparent)]
    Bridge(#[from] BridgeConfigError),
    /// The gateway's endpoint could not start.
    #[error(transparent)]
    Endpoint(#[from] GatewayError),
    /// This node already runs a gateway.
    #[error("this node already runs a gateway")]
    AlreadyRunning,
}

/// Why a lookup or a call in another cluster failed.
#[derive(Debug, thiserror::Error)]
pub enum CrossClusterError {
    /// No gateway of this cluster runs, so nothing can reach another cluster.
    #[error("no federation gateway runs in this cluster")]
    NoGateway,
    /// The gateway this call was relayed through could not reach the remote gateway.
    #[error("through this cluster's gateway: {0}")]
    Relayed(String),
    /// Unknown or unlinked cluster, link down, service not exported, bad directory.
    #[error(transparent)]
    Federation(#[from] FederationError),
    /// The remote gateway could not be reached, or refused us.
    #[error(transparent)]
    Gateway(#[from] GatewayError),
    /// The call failed in the remote cluster.
    #[error("in the remote cluster: {0}")]
    Remote(#[from] RemoteCallError),
    /// The remote gateway refused the request.
    #[error("refused by the remote gateway: {0}")]
    Refused(String),
    /// A request or reply did not encode or decode.
    #[error("codec: {0}")]
    Codec(String),
    /// The call inside this cluster failed (a call to this node's own cluster).
    #[error(transparent)]
    Local(#[from] super::services::RpcError),
}

/// A running gateway. Cheap to clone.
#[derive(Clone)]
pub struct FederationHandle {
    inner: Arc<Gateway>,
}

struct Gateway {
    machine: Mutex<Federation>,
    endpoint: GatewayEndpoint,
    epoch: TokioInstant,
    stop: watch::Sender<bool>,
    bridge: bridge::Bridge,
}

impl Gateway {
    fn now(&self) -> Instant {
        Instant::from_elapsed(self.epoch.elapsed())
    }

    fn machine(&self) -> std::sync::MutexGuard<'_, Federation> {
        self.machine.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl FederationHandle {
    /// Every link's state, gateway, RTT and probe counts.
    pub fn links(&self) -> Vec<LinkStatus> {
        self.inner.machine().links()
    }

    /// The global directory as this gateway holds it.
    pub fn directory(&self) -> GlobalDirectory {
        self.inner.machine().directory().clone()
    }

    /// The topic patterns `cluster` said it would deliver from this cluster, while that holds
    /// (`None`: nothing heard, or too long ago, or its link went down since; everything
    /// exported there is sent).
    pub fn interest_heard(&self, cluster: &ClusterName) -> Option<Vec<String>> {
        self.inner.bridge.interest_heard(self.inner.now(), cluster)
    }

    /// Handshakes this gateway refused (nodes of unlinked clusters, untrusted certificates).
    pub fn refused(&self) -> u64 {
        self.inner.endpoint.refused()
    }

    /// Bytes carried on the link to `cluster`.
    pub fn bytes(&self, cluster: &ClusterName) -> LinkBytes {
        self.inner.endpoint.bytes(cluster)
    }

    /// Where this gateway listens.
    pub fn addr(&self) -> Option<SocketAddr> {
        self.inner.endpoint.local_addr()
    }

    /// Calls this gateway admitted from other clusters, by the cluster each started in (a
    /// call through a hub counts for its origin, not for the hub; past
    /// [`HUB_NAMED_ORIGINS_MAX`](foundation_core::federation::HUB_NAMED_ORIGINS_MAX) origins
    /// named by hubs, together as `unlisted`).
    pub fn served(&self) -> ServedCalls {
        self.inner.machine().served().clone()
    }

    fn lookup(
        &self,
        cluster: &str,
        service: &str,
    ) -> Result<Option<ExportedService>, FederationError> {
        self.inner.machine().lookup(cluster, service)
    }

    /// Forwards a call to `service` of `cluster` on the route the machine chooses: the direct
    /// link, or through a hub.
    async fn forward(
        &self,
        cluster: &str,
        service: &str,
        call: Outgoing,
    ) -> Result<Bytes, CrossClusterError> {
        let choose = |machine: &Federation| -> Result<_, FederationError> {
            let route = machine.route(cluster, service)?;
            let leg = match &route {
                Route::Direct { .. } => Leg::Call,
                Route::ViaHub { target, .. } => Leg::Transit(target.to_string()),
            };
            Ok((route.link().clone(), route.gateway(), leg))
        };
        self.send(choose, service, call).await
    }

    /// As a hub: passes a call from `from` on to `target` over the direct link, naming `from`
    /// as its origin, if the machine allows that transit.
    async fn pass_on(
        &self,
        from: &ClusterName,
        target: &str,
        call: ForwardedCall,
    ) -> Result<Bytes, CrossClusterError> {
        let choose = |machine: &Federation| -> Result<_, FederationError> {
            let gateway = machine.transit(from, target, &call.service)?;
            let name = ClusterName::new(target)
                .map_err(|_| FederationError::UnknownCluster(target.to_owned()))?;
            Ok((name, gateway, Leg::Via(from.to_string())))
        };
        let requested = Duration::from_micros(call.deadline_micros);
        let outgoing = Outgoing {
            body: Bytes::from(call.body),
            deadline: self.inner.machine().call_deadline(requested),
            trace: call.trace,
            idempotent: call.idempotent,
        };
        self.send(choose, &call.service, outgoing).await
    }

    /// Sends a call to the gateway `choose` names (on a link, as a leg), each attempt with its
    /// share of what is left of the deadline; the machine decides whether an attempt that
    /// ended without an answer goes to the link's next gateway (`Federation::call_ended`).
    async fn send(
        &self,
        choose: impl Fn(&Federation) -> Result<(ClusterName, SocketAddr, Leg), FederationError>,
        service: &str,
        call: Outgoing,
    ) -> Result<Bytes, CrossClusterError> {
        let mut attempt = ForwardedAttempt {
            number: 0,
            idempotent: call.idempotent,
            until: self.inner.now() + call.deadline,
        };
        loop {
            attempt.number += 1;
            let (link, gateway, leg) = choose(&self.inner.machine())?;
            let budget = attempt.budget(self.inner.now());
            let forwarded = ForwardedCall {
                service: service.to_owned(),
                body: call.body.to_vec(),
                deadline_micros: u64::try_from(budget.as_micros()).unwrap_or(u64::MAX),
                trace: call.trace,
                idempotent: call.idempotent,
            };
            let payload = wire::encode(&leg.request(forwarded))
                .map_err(|e| CrossClusterError::Codec(e.to_string()))?;
            let sent = self
                .inner
                .endpoint
                .request(&link, gateway, payload.into(), budget)
                .await;
            let outcome = sent.map(|reply| call_reply(&reply));
            let retry = attempt_end(&outcome).is_some_and(|end| {
                let now = self.inner.now();
                let mut machine = self.inner.machine();
                machine.call_ended(now, &link, gateway, &attempt, &end)
            });
            if !retry {
                return outcome?;
            }
        }
    }
}

/// A call as the gateway sends it on: body, what is left of its deadline, trace, options.
struct Outgoing {
    body: Bytes,
    deadline: Duration,
    trace: TraceContext,
    idempotent: bool,
}

/// The answer a remote gateway's reply carries.
fn call_reply(reply: &[u8]) -> Result<Bytes, CrossClusterError> {
    match wire::decode(reply) {
        Ok(FederationReply::Call(Ok(body))) => Ok(body.into()),
        // The hub's own refusal reads as this gateway's would.
        Ok(FederationReply::Call(Err(RemoteCallError::Federation(e)))) => {
            Err(CrossClusterError::Federation(e))
        }
        Ok(FederationReply::Call(Err(e))) => Err(CrossClusterError::Remote(e)),
        Ok(FederationReply::Refused(why)) => Err(CrossClusterError::Refused(why)),
        Ok(
            FederationReply::Probe { .. } | FederationReply::Pushed | FederationReply::Bridged(_),
        ) => Err(CrossClusterError::Codec("not a call reply".into())),
        Err(e) => Err(CrossClusterError::Codec(format!("reply: {e}"))),
    }
}

/// How a forwarded attempt ended, in the services router's terms, when it ended without an
/// answer: no handshake (the request never left), no answer (it may have run), or the remote
/// cluster's deadline passed (its handler may have run). `None` for an answer, a refusal or a
/// request that cannot be sent: those end the call.
fn attempt_end(
    outcome: &Result<Result<Bytes, CrossClusterError>, GatewayError>,
) -> Option<AttemptEnd> {
    match outcome {
        Err(e @ GatewayError::Handshake { .. }) => Some(AttemptEnd::NotDelivered(e.to_string())),
        Err(e @ (GatewayError::Unreachable { .. } | GatewayError::DeadlineExceeded)) => {
            Some(AttemptEnd::Lost(e.to_string()))
        }
        Ok(Err(CrossClusterError::Remote(RemoteCallError::DeadlineExceeded))) => Some(
            AttemptEnd::Reply(RpcReply::Err(RemoteError::DeadlineExceeded)),
        ),
        Err(_) | Ok(_) => None,
    }
}

/// What a forwarded call is to the gateway it goes to.
enum Leg {
    /// A call to its own cluster's service.
    Call,
    /// A call for the named cluster, which it carries as a hub.
    Transit(String),
    /// A call from the named cluster, passed on by this gateway as a hub.
    Via(String),
}

impl Leg {
    fn request(self, call: ForwardedCall) -> FederationRequest {
        match self {
            Leg::Call => FederationRequest::Call {
                service: call.service,
                body: call.body,
                deadline_micros: call.deadline_micros,
                trace: call.trace,
                idempotent: call.idempotent,
            },
            Leg::Transit(target) => FederationRequest::Transit { target, call },
            Leg::Via(origin) => FederationRequest::Via { origin, call },
        }
    }
}

/// Starts the gateway of `node`'s cluster and returns its handle.
pub(super) fn start(
    settings: FederationSettings,
    trust: &Trust,
    local: &ClusterName,
    me: NodeId,
    rpc: RpcHandle,
    pubsub: PubSubHandle,
    metrics: metrics::FederationMetrics,
) -> Result<FederationHandle, GatewayStartError> {
    let epoch = TokioInstant::now();
    let links = settings
        .links
        .iter()
        .map(|l| LinkConfig {
            cluster: l.cluster.clone(),
            gateways: l.gateways.clone(),
        })
        .collect();
    let config = FederationConfig {
        local: local.clone(),
        me,
        links,
        timers: settings.timers,
    };
    settings.bridge_batch.validate(settings.max_frame)?;
    if settings.max_call_deadline.is_zero() {
        let why = "max_call_deadline must be above zero";
        return Err(FederationConfigError::Limit(why).into());
    }
    let machine = Federation::with_routing(config, settings.routing.clone(), Instant::ZERO)?
        .with_max_call_deadline(settings.max_call_deadline);
    let bridges = TopicBridges::new(&machine.linked(), &settings.bridges)?;
    let roots: Vec<_> = settings
        .links
        .iter()
        .map(|l| (l.cluster.clone(), l.root.clone()))
        .collect();
    let gateway_config = GatewayConfig {
        bind: settings.bind,
        keep_alive: settings.timers.probe_interval.min(Duration::from_secs(5)),
        idle_timeout: settings.timers.probe_interval * 3,
        max_frame: settings.max_frame,
    };
    let (endpoint, requests) = GatewayEndpoint::start(&gateway_config, trust, local, &roots)?;
    let inner = Arc::new(Gateway {
        machine: Mutex::new(machine),
        endpoint,
        epoch,
        stop: watch::channel(false).0,
        bridge: bridge::Bridge::new(bridges, me, metrics.bridge.clone(), &settings),
    });
    let handle = FederationHandle { inner };
    metrics.restart();
    let task = serve::Task {
        handle: handle.clone(),
        exports: settings.exports,
        rpc,
        metrics,
    };
    tokio::spawn(task.run(requests));
    bridge::spawn(&handle, pubsub);
    Ok(handle)
}

impl FederationHandle {
    /// Stops probing and serving, and closes the gateway's links: they go down on the remote
    /// side, both clusters go on alone. The socket is released once the last handle is dropped.
    pub fn stop(&self) {
        self.inner.stop.send_replace(true);
        self.inner.endpoint.close();
    }
}

impl ServicesHandle {
    /// The exported service `service` of `cluster` as the global directory shows it:
    /// `Ok(None)` when that cluster is known but does not export it (or its export has not
    /// arrived yet). A gateway reads its own directory; another node asks one of its
    /// cluster's gateways (as `call_in` does), waiting at most [`LOOKUP_DEADLINE`].
    pub async fn lookup_in(
        &self,
        cluster: &str,
        service: &str,
    ) -> Result<Option<ExportedService>, CrossClusterError> {
        match self.shared.gateway() {
            Some(gateway) => Ok(gateway.lookup(cluster, service)?),
            None => relay::lookup(&self.rpc, cluster, service, LOOKUP_DEADLINE).await,
        }
    }
}

impl RpcHandle {
    /// Calls `service` of `cluster` with a typed request and default options: through a
    /// gateway for another cluster (this node, or else one of its cluster's gateways), with the
    /// remaining deadline and this call's trace; as [`call`](Self::call) for this node's own
    /// cluster.
    pub async fn call_in<Req: serde::Serialize, Resp: serde::de::DeserializeOwned>(
        &self,
        cluster: &str,
        service: &str,
        request: &Req,
        deadline: Duration,
    ) -> Result<Resp, CrossClusterError> {
        self.call_in_with(cluster, service, request, deadline, &CallOptions::default())
            .await
    }

    /// [`call_in`](Self::call_in) with explicit options. An idempotent call is retried as
    /// inside a cluster: on the remote's next gateway after a timeout or a lost connection
    /// (each attempt keeping time for the later ones), and between instances in the remote
    /// cluster; any call is retried where it certainly did not run. The routing strategy
    /// applies to a call to this node's own cluster only.
    pub async fn call_in_with<Req: serde::Serialize, Resp: serde::de::DeserializeOwned>(
        &self,
        cluster: &str,
        service: &str,
        request: &Req,
        deadline: Duration,
        options: &CallOptions,
    ) -> Result<Resp, CrossClusterError> {
        let body =
            postcard::to_stdvec(request).map_err(|e| CrossClusterError::Codec(e.to_string()))?;
        let reply = self
            .call_in_bytes(cluster, service, body.into(), deadline, options)
            .await?;
        postcard::from_bytes(&reply).map_err(|e| CrossClusterError::Codec(format!("response: {e}")))
    }

    /// [`call_in_with`](Self::call_in_with) with raw bytes.
    pub async fn call_in_bytes(
        &self,
        cluster: &str,
        service: &str,
        body: Bytes,
        deadline: Duration,
        options: &CallOptions,
    ) -> Result<Bytes, CrossClusterError> {
        if cluster == self.endpoint.cluster().as_str() {
            return Ok(self.call_bytes(service, body, deadline, options).await?);
        }
        let Some(gateway) = self.shared.gateway() else {
            return relay::call(self, cluster, service, body, deadline, options).await;
        };
        let call = Outgoing {
            body,
            deadline,
            trace: self.state.new_trace(),
            idempotent: options.idempotent,
        };
        gateway.forward(cluster, service, call).await
    }
}
