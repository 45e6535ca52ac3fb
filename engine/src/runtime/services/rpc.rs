//! RPC through the registry: a call picks a healthy instance of the service by a
//! load-balancing strategy, skips instances whose circuit breaker is open, and retries on
//! another instance within the deadline — any call when the handler certainly did not run,
//! idempotent calls also after a timeout or a lost connection. A call to an instance in this
//! node never touches the network.
//!
//! ```no_run
//! # use std::time::Duration;
//! # async fn demo(node: foundation_engine::runtime::Node) -> Result<(), foundation_engine::runtime::services::RpcError> {
//! let doubled: u64 = node.rpc().call("billing", &21u64, Duration::from_millis(200)).await?;
//! # Ok(()) }
//! ```

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::task::{Context, Waker};
use std::time::Duration;

use bytes::Bytes;
use foundation_transport::{ClusterName, Endpoint, IncomingRequest, NodeId, RequestError};
use rand10::rngs::StdRng;
use rand10::SeedableRng;
use serde::{de::DeserializeOwned, Serialize};
use tokio::sync::mpsc;
use tokio::time::Instant as TokioInstant;
use tracing::Instrument;

use super::handler::{handle_guarded, Call, Handler};
use super::metrics::{Outcome, Service, ServicesMetrics, State};
use super::registry::{lock, Shared};
use crate::runtime::agents::AgentRequests;
use foundation_core::services::admission::{Admission, MAX_CALL_DEADLINE};
use foundation_core::services::breaker::{
    BreakerConfig, BreakerConfigError, State as BreakerState,
};
use foundation_core::services::rate_limit::RateLimit;
use foundation_core::services::router::{Attempt, AttemptEnd, CallPlan, Router, Step};
pub use foundation_core::services::router::{CallOptions, RpcError};
use foundation_core::services::trace::TraceContext;
use foundation_core::services::wire::{RemoteError, RpcReply, RpcRequest};
use foundation_core::services::{Directory, Instance};
use foundation_core::time::Instant;

tokio::task_local! {
    static CURRENT_TRACE: TraceContext;
}

/// The trace of the RPC handler (or pub/sub subscriber task) this code runs in, if any; a
/// call made from there continues it.
pub fn current_trace() -> Option<TraceContext> {
    CURRENT_TRACE.try_with(|t| *t).ok()
}

/// Runs `future` with `trace` as the current trace.
pub async fn with_trace<F: std::future::Future>(trace: TraceContext, future: F) -> F::Output {
    CURRENT_TRACE.scope(trace, future).await
}

/// Who a call is made for: the trace it continues and, for a federated call, its cluster.
struct Sender {
    trace: TraceContext,
    origin: Option<ClusterName>,
}

/// Settings of the RPC layer.
#[derive(Clone, Debug)]
pub struct RpcConfig {
    /// Circuit breakers, one per instance this node calls.
    pub breaker: BreakerConfig,
    /// Optional limit per calling node on the calls this node serves.
    pub rate_limit: Option<RateLimit>,
    /// Most calls this node's handlers run at once; more are refused as overloaded.
    pub max_concurrent_calls: usize,
    /// Longest a call from a peer runs here, whatever deadline it sent (it runs with the
    /// smaller of the two): a peer cannot hold a handler and its slot for weeks.
    pub max_call_deadline: Duration,
}

impl Default for RpcConfig {
    fn default() -> Self {
        Self {
            breaker: BreakerConfig::default(),
            rate_limit: None,
            max_concurrent_calls: 4096,
            max_call_deadline: MAX_CALL_DEADLINE,
        }
    }
}

/// Routing state shared by every clone of the handle: the core's router and the randomness
/// it and new traces draw from, under one lock.
pub(crate) struct RpcState {
    routing: Mutex<Routing>,
    epoch: TokioInstant,
    metrics: ServicesMetrics,
}

struct Routing {
    router: Router,
    rng: StdRng,
}

impl RpcState {
    pub fn new(config: &RpcConfig, metrics: ServicesMetrics) -> Result<Self, BreakerConfigError> {
        let routing = Routing {
            router: Router::new(config.breaker)?,
            rng: StdRng::from_rng(&mut rand10::rng()),
        };
        Ok(Self {
            routing: Mutex::new(routing),
            epoch: TokioInstant::now(),
            metrics,
        })
    }

    fn now(&self) -> Instant {
        Instant::from_elapsed(self.epoch.elapsed())
    }

    /// Drops the routing state of instances no longer in `directory`.
    pub fn forget_missing(&self, directory: &Directory) {
        lock(&self.routing).router.forget_missing(directory);
    }

    pub(crate) fn new_trace(&self) -> TraceContext {
        let rng = &mut lock(&self.routing).rng;
        match current_trace() {
            Some(parent) => parent.child(rng),
            None => TraceContext::new_root(rng, true),
        }
    }

    /// The call's next step, with breaker changes counted.
    fn next(&self, call: &mut CallPlan<'_>, directory: &Directory) -> Step {
        let now = self.now();
        let routing = &mut *lock(&self.routing);
        let step = routing.router.next(now, call, directory, &mut routing.rng);
        self.count_transitions(&mut routing.router);
        step
    }

    /// Takes in how an attempt ended: the call's answer, or `None` to go on.
    fn finish(
        &self,
        call: &mut CallPlan<'_>,
        attempt: Attempt,
        end: AttemptEnd,
    ) -> Option<Result<Vec<u8>, RpcError>> {
        let now = self.now();
        let router = &mut lock(&self.routing).router;
        let answer = router.finish(now, call, attempt, end);
        self.count_transitions(router);
        answer
    }

    /// Gives back an attempt whose call was dropped before it ended.
    fn abandon(&self, attempt: Attempt) {
        let now = self.now();
        let router = &mut lock(&self.routing).router;
        router.abandon(now, attempt);
        self.count_transitions(router);
    }

    fn count_transitions(&self, router: &mut Router) {
        for (instance, transition) in router.take_transitions() {
            let state = match transition.to {
                BreakerState::Closed => "closed",
                BreakerState::Open => "open",
                BreakerState::HalfOpen => "half_open",
            };
            tracing::info!(%instance, state, "circuit breaker changed state");
            self.metrics
                .breaker_transitions
                .get_or_create(&State { state })
                .inc();
        }
    }
}

/// An attempt being carried. Dropped before it ends — its call dropped by a caller who gave
/// up on it (a timeout around the call, a `select!`) — it is abandoned to the router, so it
/// no longer counts as outstanding (least outstanding would shun its instance) nor holds a
/// half-open trial.
struct Underway<'a> {
    state: &'a RpcState,
    attempt: Option<Attempt>,
}

impl Underway<'_> {
    /// Takes in how the attempt ended: the call's answer, or `None` to go on.
    fn end(
        mut self,
        call: &mut CallPlan<'_>,
        end: AttemptEnd,
    ) -> Option<Result<Vec<u8>, RpcError>> {
        let attempt = self.attempt.take()?;
        self.state.finish(call, attempt, end)
    }
}

impl std::ops::Deref for Underway<'_> {
    type Target = Attempt;

    fn deref(&self) -> &Attempt {
        self.attempt
            .as_ref()
            .expect("only `end` takes the attempt, and it consumes the guard")
    }
}

impl Drop for Underway<'_> {
    fn drop(&mut self) {
        if let Some(attempt) = self.attempt.take() {
            self.state.abandon(attempt);
        }
    }
}

/// Calls services by name. Cheap to clone.
#[derive(Clone)]
pub struct RpcHandle {
    pub(crate) shared: Arc<Shared>,
    pub(crate) state: Arc<RpcState>,
    pub(crate) endpoint: Endpoint,
}

impl RpcHandle {
    /// Calls `service` with a typed request (postcard) and default options.
    pub async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        service: &str,
        request: &Req,
        deadline: Duration,
    ) -> Result<Resp, RpcError> {
        self.call_with(service, request, deadline, &CallOptions::default())
            .await
    }

    /// Calls `service` with a typed request and explicit routing options.
    pub async fn call_with<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        service: &str,
        request: &Req,
        deadline: Duration,
        options: &CallOptions,
    ) -> Result<Resp, RpcError> {
        let body = postcard::to_stdvec(request).map_err(|e| RpcError::Codec(e.to_string()))?;
        let response = self
            .call_bytes(service, body.into(), deadline, options)
            .await?;
        postcard::from_bytes(&response).map_err(|e| RpcError::Codec(format!("response: {e}")))
    }

    /// Calls `service` with raw bytes.
    pub async fn call_bytes(
        &self,
        service: &str,
        body: Bytes,
        deadline: Duration,
        options: &CallOptions,
    ) -> Result<Bytes, RpcError> {
        self.call_bytes_from(None, service, body, deadline, options)
            .await
    }

    /// Calls `service` with raw bytes on behalf of a call from the cluster `origin` (the
    /// gateway serving a federated call), which the handler sees as [`Call::origin`].
    pub(crate) async fn call_bytes_from(
        &self,
        origin: Option<ClusterName>,
        service: &str,
        body: Bytes,
        deadline: Duration,
        options: &CallOptions,
    ) -> Result<Bytes, RpcError> {
        let started = TokioInstant::now();
        let sender = Sender {
            trace: self.state.new_trace(),
            origin,
        };
        let span = tracing::debug_span!("rpc.call", service, trace_id = %sender.trace.trace_id);
        let result = self
            .route(service, body, deadline, options, &sender)
            .instrument(span)
            .await;
        self.record(service, started, &result);
        result
    }

    async fn route(
        &self,
        service: &str,
        body: Bytes,
        deadline: Duration,
        options: &CallOptions,
        sender: &Sender,
    ) -> Result<Bytes, RpcError> {
        let options = std::borrow::Cow::Borrowed(options);
        let mut call = CallPlan::new(service, options, self.state.now(), deadline);
        loop {
            let directory = self.shared.directory.borrow().clone();
            let attempt = match self.state.next(&mut call, &directory) {
                Step::Attempt(attempt) => attempt,
                Step::Done(result) => return result.map(Bytes::from),
            };
            if attempt.number > 1 {
                self.state
                    .metrics
                    .retries
                    .get_or_create(&Service {
                        service: service.to_owned(),
                    })
                    .inc();
            }
            let attempt = Underway {
                state: &self.state,
                attempt: Some(attempt),
            };
            let end = self.carry(&attempt, &body, sender).await;
            if let Some(answer) = attempt.end(&mut call, end) {
                return answer.map(Bytes::from);
            }
        }
    }

    /// Carries one attempt to its instance, in this node or over the network.
    async fn carry(&self, attempt: &Attempt, body: &Bytes, sender: &Sender) -> AttemptEnd {
        let instance = &attempt.instance;
        if instance.local {
            let reply = self
                .call_local(instance, body.clone(), attempt.budget, sender)
                .await;
            return AttemptEnd::Reply(reply);
        }
        match self
            .call_remote(instance, body, attempt.budget, sender)
            .await
        {
            Ok(reply) => AttemptEnd::Reply(reply),
            Err(RequestError::Unreachable(e)) => AttemptEnd::NotDelivered(e),
            Err(RequestError::Refused(code)) => {
                AttemptEnd::NotDelivered(format!("refused (code {code})"))
            }
            Err(e @ RequestError::InFlightLimit { .. }) => AttemptEnd::NotDelivered(e.to_string()),
            Err(e @ RequestError::TooLarge { .. }) => AttemptEnd::TooLarge(e.to_string()),
            Err(e) => AttemptEnd::Lost(e.to_string()),
        }
    }

    async fn call_remote(
        &self,
        instance: &Instance,
        body: &Bytes,
        budget: Duration,
        sender: &Sender,
    ) -> Result<RpcReply, RequestError> {
        let request = RpcRequest {
            service: instance.service.clone(),
            instance: instance.id.local,
            trace: sender.trace,
            origin: sender.origin.as_ref().map(|c| c.as_str().to_owned()),
            body: body.to_vec(),
        };
        let payload = postcard::to_stdvec(&request)
            .map_err(|e| RequestError::Unreachable(format!("request does not encode: {e}")))?;
        let response = self
            .endpoint
            .request(instance.node(), payload.into(), budget)
            .await?;
        // A reply that does not decode is an instance answering garbage: a failure of it.
        Ok(postcard::from_bytes(&response).unwrap_or_else(|e| {
            RpcReply::Err(RemoteError::Handler(format!("malformed reply: {e}")))
        }))
    }

    async fn call_local(
        &self,
        instance: &Instance,
        body: Bytes,
        budget: Duration,
        sender: &Sender,
    ) -> RpcReply {
        let call = Call {
            service: instance.service.clone(),
            caller: self.endpoint.local().id,
            trace: sender.trace,
            origin: sender.origin.clone(),
            deadline: TokioInstant::now() + budget,
            body,
        };
        run_handler(&self.shared, instance.id.local, call).await
    }

    fn record(&self, service: &str, started: TokioInstant, result: &Result<Bytes, RpcError>) {
        let outcome = match result {
            Ok(_) => "ok",
            Err(e) => e.outcome(),
        };
        let metrics = &self.state.metrics;
        metrics
            .calls
            .get_or_create(&Outcome {
                service: service.to_owned(),
                outcome,
            })
            .inc();
        metrics
            .call_seconds
            .get_or_create(&Service {
                service: service.to_owned(),
            })
            .observe(started.elapsed().as_secs_f64());
    }
}

/// Runs local instance `id`'s handler for `call` until the call's deadline.
async fn run_handler(shared: &Shared, id: u64, call: Call) -> RpcReply {
    let handler: Option<Arc<dyn Handler>> = shared
        .handlers
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(&(call.service.clone(), id))
        .cloned();
    let Some(handler) = handler else {
        return RpcReply::Err(RemoteError::NoSuchInstance);
    };
    let (deadline, trace) = (call.deadline, call.trace);
    let span =
        tracing::debug_span!("rpc.handle", service = %call.service, trace_id = %trace.trace_id);
    let run = with_trace(trace, handle_guarded(&*handler, call)).instrument(span);
    match tokio::time::timeout_at(deadline, run).await {
        Ok(Ok(body)) => RpcReply::Ok(body.to_vec()),
        Ok(Err(e)) => RpcReply::Err(RemoteError::Handler(e.message)),
        Err(_) => RpcReply::Err(RemoteError::DeadlineExceeded),
    }
}

/// Answers the calls that reach this node.
///
/// Each call runs first where it is taken, in the transport's task that read it off its
/// stream ([`Endpoint::serve_requests`]): a handler that finishes without waiting (most do) is
/// answered there, together with the other requests of the same read, without a task of its
/// own or a hop to the services' loop, so a batch of requests costs one wake-up of the
/// responder. A handler that has to wait moves to a task of its own from its first wait on, so
/// it never holds up the calls behind it (one that computes for long without waiting holds up
/// the calls behind it on its connection, as it would hold up a worker anyway).
#[derive(Clone)]
pub(crate) struct CallServer {
    shared: Arc<Shared>,
    metrics: ServicesMetrics,
    gate: Arc<Mutex<Admission>>,
    epoch: TokioInstant,
    agents: AgentRequests,
}

impl CallServer {
    pub(crate) fn new(
        shared: Arc<Shared>,
        config: &RpcConfig,
        metrics: ServicesMetrics,
        agents: AgentRequests,
    ) -> Self {
        let gate = Admission::new(config.rate_limit, config.max_concurrent_calls)
            .with_max_deadline(config.max_call_deadline);
        Self {
            shared,
            metrics,
            gate: Arc::new(Mutex::new(gate)),
            epoch: TokioInstant::now(),
            agents,
        }
    }

    /// Takes `request` in this task, running its handler until its first wait; agent messages
    /// go on to the agents' queue.
    pub(crate) fn take(&self, request: IncomingRequest) {
        let Some(request) = self.agents.divert(request) else {
            return;
        };
        let now = Instant::from_elapsed(self.epoch.elapsed());
        let mut call = Box::pin(serve_one(
            self.shared.clone(),
            self.metrics.clone(),
            self.gate.clone(),
            now,
            request,
        ));
        // Polled once with a waker that does nothing: if it is not done, the task it moves to
        // polls it again at once, with its own waker, before anything can have been missed.
        let mut inline = Context::from_waker(Waker::noop());
        if call.as_mut().poll(&mut inline).is_pending() {
            tokio::spawn(call);
        }
    }
}

/// Serves the requests the transport queued before the [`CallServer`] took over, until the
/// endpoint closes.
pub(crate) async fn serve_queued(
    server: CallServer,
    mut requests: mpsc::Receiver<IncomingRequest>,
) {
    while let Some(request) = requests.recv().await {
        server.take(request);
    }
}

/// Admits one call, runs its handler unless the caller gives up first, and answers it.
async fn serve_one(
    shared: Arc<Shared>,
    metrics: ServicesMetrics,
    gate: Arc<Mutex<Admission>>,
    now: Instant,
    request: IncomingRequest,
) {
    let (from, payload, deadline, responder) = request.into_parts();
    let served = admit_and_run(
        &shared,
        &metrics,
        &gate,
        now,
        (from, &payload, deadline),
        responder.cancelled(),
    );
    let Some(reply) = served.await else {
        return;
    };
    let bytes = postcard::to_stdvec(&reply).unwrap_or_default();
    // The caller may have given up; nothing to do about a failed response.
    let _ = responder.respond(bytes.into()).await;
}

/// Admits the call `payload` from `from` and runs its handler until `deadline`, unless
/// `cancelled` (the caller giving up: its deadline, or it dropped the call) resolves first,
/// since its answer would be dropped anyway. The reply, or `None` if the caller gave up.
async fn admit_and_run(
    shared: &Shared,
    metrics: &ServicesMetrics,
    gate: &Arc<Mutex<Admission>>,
    now: Instant,
    (from, payload, deadline): (NodeId, &[u8], TokioInstant),
    cancelled: impl Future<Output = ()>,
) -> Option<RpcReply> {
    let (admitted, longest) = {
        let mut gate = lock(gate);
        (gate.admit(now, from, payload), gate.max_deadline())
    };
    let capped = TokioInstant::now().checked_add(longest);
    let deadline = capped.map_or(deadline, |capped| deadline.min(capped));
    // The metrics name a service only when it runs here: a peer names whatever it likes, and
    // a label set per made-up name would grow the node's metrics for as long as it lives.
    let service = admitted
        .as_ref()
        .ok()
        .map(|r| r.service.as_str())
        .filter(|service| shared.serves(service))
        .map(str::to_owned);
    // Held from admission on, not from the handler's first poll: the race below may end
    // before the handler's future is ever polled, and the slot must be freed all the same.
    let _running = admitted.is_ok().then(|| Running(gate.clone()));
    let work = async {
        match admitted {
            Ok(request) => answer(shared, from, request, deadline).await,
            Err(refused) => {
                if matches!(refused, RemoteError::RateLimited { .. }) {
                    metrics.rate_limited.inc();
                }
                RpcReply::Err(refused)
            }
        }
    };
    let reply = tokio::select! {
        reply = work => reply,
        () = cancelled => {
            count_outcome(metrics, service, "cancelled");
            return None;
        }
    };
    count_served(metrics, service, &reply);
    Some(reply)
}

/// An admitted call, counted as running until dropped (also when its task is cancelled).
struct Running(Arc<Mutex<Admission>>);

impl Drop for Running {
    fn drop(&mut self) {
        lock(&self.0).finished();
    }
}

async fn answer(
    shared: &Shared,
    from: NodeId,
    request: RpcRequest,
    deadline: TokioInstant,
) -> RpcReply {
    // Only a gateway names an origin, and a cluster's members trust each other; a name that is
    // not one is a malformed request.
    let origin = match request.origin.map(|name| ClusterName::new(&name)) {
        None => None,
        Some(Ok(cluster)) => Some(cluster),
        Some(Err(e)) => return RpcReply::Err(RemoteError::BadRequest(format!("origin: {e}"))),
    };
    let call = Call {
        service: request.service,
        caller: from,
        trace: request.trace,
        origin,
        deadline,
        body: request.body.into(),
    };
    run_handler(shared, request.instance, call).await
}

fn count_served(metrics: &ServicesMetrics, service: Option<String>, reply: &RpcReply) {
    let outcome = match reply {
        RpcReply::Ok(_) => "ok",
        RpcReply::Err(RemoteError::Handler(_)) => "handler_error",
        RpcReply::Err(RemoteError::DeadlineExceeded) => "deadline_exceeded",
        RpcReply::Err(RemoteError::NoSuchInstance) => "no_such_instance",
        RpcReply::Err(RemoteError::RateLimited { .. }) => "rate_limited",
        RpcReply::Err(RemoteError::Overloaded) => "overloaded",
        RpcReply::Err(RemoteError::BadRequest(_)) => "bad_request",
    };
    count_outcome(metrics, service, outcome);
}

fn count_outcome(metrics: &ServicesMetrics, service: Option<String>, outcome: &'static str) {
    let service = service.unwrap_or_default();
    metrics
        .served
        .get_or_create(&Outcome { service, outcome })
        .inc();
}

#[cfg(test)]
mod tests {
    use super::*;
    use foundation_core::services::record::InstanceRecord;
    use foundation_core::services::InstanceId;
    use rand10::rngs::StdRng;
    use tokio::sync::watch;

    /// A caller can have given up before its call is served (a request queued behind others,
    /// a large one whose caller stopped reading while it arrived): the race is then lost by
    /// the handler before it starts, and the slot the gate counted the call in must still be
    /// freed. Counted only once the handler's future first ran, it leaked whenever the race
    /// looked at the caller first, until the node refused every call as overloaded.
    #[tokio::test]
    async fn a_call_given_up_before_it_runs_frees_its_slot() {
        let (_, directory) = watch::channel(Arc::new(Directory::default()));
        let shared = Shared::new(mpsc::channel(1).0, directory);
        let metrics =
            ServicesMetrics::register(&mut prometheus_client::registry::Registry::default());
        let gate = Arc::new(Mutex::new(Admission::new(None, 1)));
        let request = RpcRequest {
            service: "gone".into(),
            instance: 1,
            trace: TraceContext::new_root(&mut StdRng::seed_from_u64(1), true),
            origin: None,
            body: Vec::new(),
        };
        let payload = postcard::to_stdvec(&request).expect("encodes");
        let deadline = TokioInstant::now() + Duration::from_secs(1);
        // The race picks its first branch at random: enough rounds that both orders come up.
        for round in 0..64 {
            let call = (NodeId::random(), payload.as_slice(), deadline);
            let given_up = std::future::ready(());
            let _ = admit_and_run(&shared, &metrics, &gate, Instant::ZERO, call, given_up).await;
            assert_eq!(lock(&gate).running(), 0, "slot leaked in round {round}");
        }
    }

    /// A peer names whatever service it likes: calls to services with no instance here are
    /// counted under the empty service label, as refusals before decoding are, not a series
    /// per name, which a buggy or hostile peer would grow without bound (a label set per
    /// made-up name, kept for the node's life). A service that runs here keeps its own.
    #[tokio::test]
    async fn calls_to_services_not_served_here_add_no_metric_series() {
        let (_, directory) = watch::channel(Arc::new(Directory::default()));
        let shared = Shared::new(mpsc::channel(1).0, directory);
        let echo = |call: Call| async move { Ok(call.body) };
        let handlers = [(("echo".to_owned(), 1), Arc::new(echo) as Arc<dyn Handler>)];
        *shared.handlers.write().expect("not poisoned") = handlers.into_iter().collect();
        let mut registry = prometheus_client::registry::Registry::default();
        let metrics = ServicesMetrics::register(&mut registry);
        let gate = Arc::new(Mutex::new(Admission::new(None, 1)));
        let names = (0..50)
            .map(|n| format!("made-up-{n}"))
            .chain(["echo".into()]);
        for service in names {
            let request = RpcRequest {
                service,
                instance: 1,
                trace: TraceContext::new_root(&mut StdRng::seed_from_u64(1), true),
                origin: None,
                body: Vec::new(),
            };
            let payload = postcard::to_stdvec(&request).expect("encodes");
            let call = (
                NodeId::random(),
                payload.as_slice(),
                TokioInstant::now() + Duration::from_secs(1),
            );
            let never = std::future::pending::<()>();
            let _ = admit_and_run(&shared, &metrics, &gate, Instant::ZERO, call, never).await;
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encodes");
        let served: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("foundation_rpc_served_total{"))
            .collect();
        assert_eq!(served.len(), 2, "{served:#?}");
        assert!(served
            .iter()
            .any(|l| l.contains(r#"service="echo",outcome="ok""#)));
        assert!(served
            .iter()
            .any(|l| l.contains(r#"service="",outcome="no_such_instance"} 50"#)));
    }

    /// A caller that drops its call while an attempt runs (a timeout around the call, a
    /// `select!`) ends no attempt; the attempt must not stay counted as outstanding on its
    /// instance, which least outstanding would then shun for as long as it is listed.
    #[tokio::test]
    async fn a_call_dropped_during_its_attempt_leaves_nothing_outstanding() {
        let (endpoint, services, directory) = crate::runtime::services::tests::started().await;
        let instance = Instance {
            service: "hangs".into(),
            id: InstanceId {
                node: endpoint.local().id,
                generation: 1,
                local: 1,
            },
            addr: endpoint.local().addr,
            record: InstanceRecord::default(),
            local: true,
        };
        let never = |_: Call| async {
            std::future::pending::<()>().await;
            Ok(Bytes::new())
        };
        let handlers = &services.registry.shared.handlers;
        let key = ("hangs".to_owned(), 1);
        handlers
            .write()
            .expect("not poisoned")
            .insert(key, Arc::new(never));
        let listed = Directory::of_instances([instance.clone()]);
        directory
            .send(Arc::new(listed))
            .expect("the services layer listens");
        let rpc = &services.rpc;
        let outstanding = || lock(&rpc.state.routing).router.outstanding(&instance.id);

        let options = CallOptions::default();
        let deadline = Duration::from_secs(60);
        let mut call = Box::pin(rpc.call_bytes("hangs", Bytes::new(), deadline, &options));
        let polled = call.as_mut().poll(&mut Context::from_waker(Waker::noop()));
        assert!(polled.is_pending(), "the handler never answers");
        assert_eq!(outstanding(), 1, "the attempt is under way");
        drop(call);
        assert_eq!(
            outstanding(),
            0,
            "the dropped call's attempt was given back"
        );
    }
}
