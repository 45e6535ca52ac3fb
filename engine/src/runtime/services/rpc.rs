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

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use foundation_transport::{Endpoint, IncomingRequest, NodeId, RequestError};
use rand10::rngs::StdRng;
use rand10::SeedableRng;
use serde::{de::DeserializeOwned, Serialize};
use tokio::sync::{mpsc, Semaphore};
use tokio::time::Instant as TokioInstant;
use tracing::Instrument;

use super::handler::{Call, Handler};
use super::metrics::{Outcome, Service, ServicesMetrics, State};
use super::registry::{lock, Shared};
use foundation_core::services::balance::{Balancer, Candidate, Strategy};
use foundation_core::services::breaker::{
    BreakerConfig, BreakerConfigError, Breakers, Outcome as CallOutcome, Permit,
    State as BreakerState, Transition,
};
use foundation_core::services::rate_limit::{RateLimit, RateLimits};
use foundation_core::services::trace::TraceContext;
use foundation_core::services::wire::{RemoteError, RpcReply, RpcRequest};
use foundation_core::services::{Directory, Instance, InstanceId};
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

/// How one call is routed.
#[derive(Clone, Debug)]
pub struct CallOptions {
    /// How an instance is chosen.
    pub strategy: Strategy,
    /// The key for [`Strategy::ConsistentHash`].
    pub key: Option<Vec<u8>>,
    /// Whether running the request twice is harmless, so a timeout or a lost connection may
    /// be retried on another instance.
    pub idempotent: bool,
    /// Most instances tried.
    pub max_attempts: u32,
}

impl Default for CallOptions {
    fn default() -> Self {
        Self {
            strategy: Strategy::RoundRobin,
            key: None,
            idempotent: false,
            max_attempts: 3,
        }
    }
}

impl CallOptions {
    /// Routes by `strategy`.
    pub fn strategy(mut self, strategy: Strategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// Consistent hashing on `key`: the same key goes to the same instance.
    pub fn hash_key(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.strategy = Strategy::ConsistentHash;
        self.key = Some(key.into());
        self
    }

    /// Marks the call idempotent (retried after timeouts and lost connections).
    pub fn idempotent(mut self) -> Self {
        self.idempotent = true;
        self
    }
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    /// No healthy instance of the service is visible.
    #[error("no healthy instance of {service:?}")]
    NoInstances {
        /// The service.
        service: String,
    },
    /// Every healthy instance's circuit breaker is open.
    #[error("every instance of {service:?} is failing (circuit open)")]
    CircuitOpen {
        /// The service.
        service: String,
    },
    /// The deadline passed.
    #[error(
        "call to {service:?} exceeded its deadline of {deadline:?} after {attempts} attempt(s)"
    )]
    DeadlineExceeded {
        /// The service.
        service: String,
        /// The deadline given.
        deadline: Duration,
        /// Instances tried.
        attempts: u32,
    },
    /// The handler answered with an error.
    #[error("{service:?} failed: {message}")]
    Handler {
        /// The service.
        service: String,
        /// The handler's message.
        message: String,
    },
    /// Every attempt failed without an answer.
    #[error("{service:?} unavailable after {attempts} attempt(s): {last}")]
    Unavailable {
        /// The service.
        service: String,
        /// Instances tried.
        attempts: u32,
        /// The last failure.
        last: String,
    },
    /// The request could not be encoded, or the response decoded.
    #[error("{0}")]
    Codec(String),
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
}

impl Default for RpcConfig {
    fn default() -> Self {
        Self {
            breaker: BreakerConfig::default(),
            rate_limit: None,
            max_concurrent_calls: 4096,
        }
    }
}

/// Routing state shared by every clone of the handle.
pub(crate) struct RpcState {
    balancer: Mutex<Balancer<String>>,
    breakers: Mutex<Breakers<InstanceId>>,
    outstanding: Mutex<BTreeMap<InstanceId, u32>>,
    rng: Mutex<StdRng>,
    epoch: TokioInstant,
    metrics: ServicesMetrics,
}

/// Calling nodes whose rate-limit buckets a node keeps; callers beyond share one bucket.
const RATE_LIMITED_CALLERS_MAX: usize = 10_000;

impl RpcState {
    pub fn new(config: &RpcConfig, metrics: ServicesMetrics) -> Result<Self, BreakerConfigError> {
        Ok(Self {
            balancer: Mutex::new(Balancer::new()),
            breakers: Mutex::new(Breakers::new(config.breaker)?),
            outstanding: Mutex::default(),
            rng: Mutex::new(StdRng::from_rng(&mut rand10::rng())),
            epoch: TokioInstant::now(),
            metrics,
        })
    }

    fn now(&self) -> Instant {
        Instant::from_elapsed(self.epoch.elapsed())
    }

    /// Drops breakers and counters of instances no longer in `directory`, so they do not
    /// accumulate over instance churn.
    pub fn forget_missing(&self, directory: &Directory) {
        let visible: BTreeSet<InstanceId> = directory.all().map(|i| i.id).collect();
        let mut breakers = lock(&self.breakers);
        let gone: Vec<InstanceId> = breakers
            .states()
            .map(|(id, _)| *id)
            .filter(|id| !visible.contains(id))
            .collect();
        for id in &gone {
            breakers.remove(id);
        }
        lock(&self.outstanding).retain(|id, _| visible.contains(id));
    }

    fn new_trace(&self) -> TraceContext {
        let mut rng = lock(&self.rng);
        match current_trace() {
            Some(parent) => parent.child(&mut *rng),
            None => TraceContext::new_root(&mut *rng, true),
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

/// How one attempt ended.
enum Attempt {
    Done(Result<Bytes, RpcError>),
    /// Failed in a way that allows another instance.
    Retry(String),
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
        let started = TokioInstant::now();
        let trace = self.state.new_trace();
        let span = tracing::debug_span!("rpc.call", service, trace_id = %trace.trace_id);
        let result = self
            .route(service, body, started + deadline, options, trace)
            .instrument(span)
            .await
            .map_err(|e| match e {
                RpcError::DeadlineExceeded { attempts, .. } => RpcError::DeadlineExceeded {
                    service: service.to_owned(),
                    deadline,
                    attempts,
                },
                other => other,
            });
        self.record(service, started, &result);
        result
    }

    async fn route(
        &self,
        service: &str,
        body: Bytes,
        until: TokioInstant,
        options: &CallOptions,
        trace: TraceContext,
    ) -> Result<Bytes, RpcError> {
        let mut tried: Vec<InstanceId> = Vec::new();
        let mut last = None;
        let mut attempts = 0;
        while attempts < options.max_attempts.max(1) {
            let Some((instance, permit)) = self.pick(service, options, &mut tried)? else {
                break;
            };
            let now = TokioInstant::now();
            if now >= until {
                return Err(self.deadline(service, attempts));
            }
            // An idempotent call keeps time for the attempts after this one, so one hung
            // instance cannot eat the whole deadline.
            let left = options.max_attempts.saturating_sub(attempts).max(1);
            let budget = if options.idempotent {
                (until - now) / left
            } else {
                until - now
            };
            attempts += 1;
            if attempts > 1 {
                self.state
                    .metrics
                    .retries
                    .get_or_create(&Service {
                        service: service.to_owned(),
                    })
                    .inc();
            }
            match self
                .attempt(&instance, permit, &body, budget, options, trace)
                .await
            {
                Attempt::Done(result) => return result,
                Attempt::Retry(reason) => last = Some(reason),
            }
        }
        if TokioInstant::now() >= until {
            return Err(self.deadline(service, attempts));
        }
        match last {
            Some(last) => Err(RpcError::Unavailable {
                service: service.to_owned(),
                attempts,
                last,
            }),
            None if attempts == 0 && !tried.is_empty() => Err(RpcError::CircuitOpen {
                service: service.to_owned(),
            }),
            None => Err(RpcError::NoInstances {
                service: service.to_owned(),
            }),
        }
    }

    fn deadline(&self, service: &str, attempts: u32) -> RpcError {
        RpcError::DeadlineExceeded {
            service: service.to_owned(),
            deadline: Duration::ZERO,
            attempts,
        }
    }

    /// The next instance to try: routable, not tried, breaker closed (or granting a trial).
    /// Instances whose breaker refuses are added to `tried` without costing an attempt.
    fn pick(
        &self,
        service: &str,
        options: &CallOptions,
        tried: &mut Vec<InstanceId>,
    ) -> Result<Option<(Instance, Permit)>, RpcError> {
        let all = self.shared.directory.borrow().instances(service);
        let instances: Vec<&Instance> = all.iter().filter(|i| i.record.routable()).collect();
        if instances.is_empty() {
            return Err(RpcError::NoInstances {
                service: service.to_owned(),
            });
        }
        let candidates = self.candidates(&instances);
        loop {
            let picked = {
                let mut rng = lock(&self.state.rng);
                lock(&self.state.balancer).pick_excluding(
                    service,
                    &options.strategy,
                    &candidates,
                    options.key.as_deref(),
                    tried,
                    &mut *rng,
                )
            };
            let Some(index) = picked else {
                return Ok(None);
            };
            let instance = instances[index];
            let allowed = lock(&self.state.breakers).allow(self.state.now(), &instance.id);
            tried.push(instance.id);
            if let Ok(permit) = allowed {
                if let Some(transition) = permit.transition() {
                    self.count_transition(transition);
                }
                return Ok(Some((instance.clone(), permit)));
            }
        }
    }

    fn candidates(&self, instances: &[&Instance]) -> Vec<Candidate<InstanceId>> {
        let outstanding = lock(&self.state.outstanding);
        instances
            .iter()
            .map(|i| Candidate {
                id: i.id,
                weight: i.record.weight,
                outstanding: outstanding.get(&i.id).copied().unwrap_or(0),
                is_local: i.local,
            })
            .collect()
    }

    async fn attempt(
        &self,
        instance: &Instance,
        permit: Permit,
        body: &Bytes,
        budget: Duration,
        options: &CallOptions,
        trace: TraceContext,
    ) -> Attempt {
        *lock(&self.state.outstanding)
            .entry(instance.id)
            .or_default() += 1;
        let result = if instance.local {
            self.call_local(instance, body.clone(), budget, trace).await
        } else {
            self.call_remote(instance, body, budget, trace).await
        };
        {
            let mut outstanding = lock(&self.state.outstanding);
            if let Some(n) = outstanding.get_mut(&instance.id) {
                *n -= 1;
                if *n == 0 {
                    outstanding.remove(&instance.id);
                }
            }
        }
        self.classify(instance, permit, result, options.idempotent)
    }

    /// Turns an attempt's result into an answer or a retry, and tells the breaker.
    fn classify(
        &self,
        instance: &Instance,
        permit: Permit,
        result: Result<RpcReply, RequestError>,
        idempotent: bool,
    ) -> Attempt {
        let service = instance.service.clone();
        let (healthy, attempt) = match result {
            Ok(RpcReply::Ok(body)) => (true, Attempt::Done(Ok(body.into()))),
            // A handler's own error is an answer: the instance works.
            Ok(RpcReply::Err(RemoteError::Handler(message))) => (
                true,
                Attempt::Done(Err(RpcError::Handler { service, message })),
            ),
            Ok(RpcReply::Err(RemoteError::RateLimited { retry_after_ms })) => (
                true,
                Attempt::Retry(format!("rate limited; retry after {retry_after_ms} ms")),
            ),
            Ok(RpcReply::Err(e)) if e.not_executed() => (false, Attempt::Retry(e.to_string())),
            Ok(RpcReply::Err(e)) if idempotent => (false, Attempt::Retry(e.to_string())),
            Ok(RpcReply::Err(e)) => (
                false,
                Attempt::Done(Err(RpcError::Unavailable {
                    service,
                    attempts: 1,
                    last: e.to_string(),
                })),
            ),
            Err(RequestError::Unreachable(e)) => (false, Attempt::Retry(e)),
            Err(RequestError::Refused(code)) => {
                (false, Attempt::Retry(format!("refused (code {code})")))
            }
            Err(e @ RequestError::TooLarge { .. }) => {
                (true, Attempt::Done(Err(RpcError::Codec(e.to_string()))))
            }
            Err(e) if idempotent => (false, Attempt::Retry(e.to_string())),
            Err(e) => (
                false,
                Attempt::Done(Err(RpcError::Unavailable {
                    service,
                    attempts: 1,
                    last: e.to_string(),
                })),
            ),
        };
        let outcome = if healthy {
            CallOutcome::Success
        } else {
            CallOutcome::Failure
        };
        let transition =
            lock(&self.state.breakers).record(self.state.now(), &instance.id, permit, outcome);
        if let Some(transition) = transition {
            self.count_transition(transition);
        }
        attempt
    }

    fn count_transition(&self, transition: Transition) {
        let state = match transition.to {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        };
        tracing::info!(state, "circuit breaker changed state");
        self.state
            .metrics
            .breaker_transitions
            .get_or_create(&State { state })
            .inc();
    }

    async fn call_remote(
        &self,
        instance: &Instance,
        body: &Bytes,
        budget: Duration,
        trace: TraceContext,
    ) -> Result<RpcReply, RequestError> {
        let request = RpcRequest {
            service: instance.service.clone(),
            instance: instance.id.local,
            trace,
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
        trace: TraceContext,
    ) -> Result<RpcReply, RequestError> {
        let call = Call {
            service: instance.service.clone(),
            caller: self.endpoint.local().id,
            trace,
            deadline: TokioInstant::now() + budget,
            body,
        };
        Ok(run_handler(&self.shared, instance.id.local, call).await)
    }

    fn record(&self, service: &str, started: TokioInstant, result: &Result<Bytes, RpcError>) {
        let outcome = match result {
            Ok(_) => "ok",
            Err(RpcError::Handler { .. }) => "handler_error",
            Err(RpcError::DeadlineExceeded { .. }) => "deadline_exceeded",
            Err(RpcError::NoInstances { .. }) => "no_instances",
            Err(RpcError::CircuitOpen { .. }) => "circuit_open",
            Err(RpcError::Unavailable { .. }) => "unavailable",
            Err(RpcError::Codec(_)) => "codec",
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
    let run = with_trace(trace, handler.handle(call)).instrument(span);
    match tokio::time::timeout_at(deadline, run).await {
        Ok(Ok(body)) => RpcReply::Ok(body.to_vec()),
        Ok(Err(e)) => RpcReply::Err(RemoteError::Handler(e.message)),
        Err(_) => RpcReply::Err(RemoteError::DeadlineExceeded),
    }
}

/// Answers the calls that reach this node, until the endpoint closes.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    config: RpcConfig,
    metrics: ServicesMetrics,
    mut requests: mpsc::Receiver<IncomingRequest>,
) {
    let running = Arc::new(Semaphore::new(config.max_concurrent_calls));
    let limits = config.rate_limit.map(|limit| {
        Arc::new(Mutex::new(RateLimits::<NodeId>::new(
            limit,
            RATE_LIMITED_CALLERS_MAX,
        )))
    });
    let epoch = TokioInstant::now();
    while let Some(request) = requests.recv().await {
        let (from, payload, deadline, responder) = request.into_parts();
        let limited = limits.as_ref().and_then(|limits| {
            let now = Instant::from_elapsed(epoch.elapsed());
            lock(limits).try_acquire(now, &from).err()
        });
        let shared = shared.clone();
        let metrics = metrics.clone();
        let permit = running.clone().try_acquire_owned();
        tokio::spawn(async move {
            let (service, reply) = match (limited, permit) {
                (Some(limited), _) => {
                    metrics.rate_limited.inc();
                    let retry_after_ms = limited.retry_after.as_millis() as u64;
                    (
                        None,
                        RpcReply::Err(RemoteError::RateLimited { retry_after_ms }),
                    )
                }
                (None, Err(_)) => (None, RpcReply::Err(RemoteError::Overloaded)),
                (None, Ok(_permit)) => answer(&shared, from, &payload, deadline).await,
            };
            count_served(&metrics, service, &reply);
            let bytes = postcard::to_stdvec(&reply).unwrap_or_default();
            // The caller may have given up; nothing to do about a failed response.
            let _ = responder.respond(bytes.into()).await;
        });
    }
}

async fn answer(
    shared: &Shared,
    from: NodeId,
    payload: &[u8],
    deadline: TokioInstant,
) -> (Option<String>, RpcReply) {
    let request: RpcRequest = match postcard::from_bytes(payload) {
        Ok(request) => request,
        Err(e) => return (None, RpcReply::Err(RemoteError::BadRequest(e.to_string()))),
    };
    let call = Call {
        service: request.service.clone(),
        caller: from,
        trace: request.trace,
        deadline,
        body: request.body.into(),
    };
    let reply = run_handler(shared, request.instance, call).await;
    (Some(request.service), reply)
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
    let service = service.unwrap_or_default();
    metrics
        .served
        .get_or_create(&Outcome { service, outcome })
        .inc();
}
