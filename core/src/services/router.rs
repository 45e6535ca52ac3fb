//! Where an RPC call goes: the deterministic routing machine behind `node.rpc()`.
//!
//! A call is a [`CallPlan`]; the [`Router`] picks each attempt's instance (load balancing over
//! the healthy instances the directory shows, skipping those whose circuit breaker refuses),
//! gives it a share of the deadline, and judges how the attempt ended: an answer, a retry on
//! another instance, or a final failure. It never performs I/O and never reads a clock; the
//! runtime carries attempts over QUIC and the simulator over its faulty network, both through
//! this same code.
//!
//! Retry rule: any call may move to another instance when the handler certainly did not run
//! (unreachable, refused, no such instance, rate limited, overloaded); an idempotent call also
//! after a timeout or a lost connection, where the handler may have run.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rand10::Rng;

use super::balance::{Balancer, Candidate, Strategy};
use super::breaker::{
    BreakerConfig, BreakerConfigError, Breakers, Outcome as BreakerOutcome, Permit, Transition,
};
use super::directory::{Directory, Instance, InstanceId};
use super::wire::{RemoteError, RpcReply};
use crate::time::Instant;

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
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
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

impl RpcError {
    /// A short stable name of the outcome, for metrics and traces.
    pub fn outcome(&self) -> &'static str {
        match self {
            RpcError::Handler { .. } => "handler_error",
            RpcError::DeadlineExceeded { .. } => "deadline_exceeded",
            RpcError::NoInstances { .. } => "no_instances",
            RpcError::CircuitOpen { .. } => "circuit_open",
            RpcError::Unavailable { .. } => "unavailable",
            RpcError::Codec(_) => "codec",
        }
    }
}

/// How an attempt ended, as whoever carried it saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttemptEnd {
    /// The instance's node answered.
    Reply(RpcReply),
    /// The request never reached a handler (no connection, refused before reading it).
    NotDelivered(String),
    /// The request is larger than the transport carries: no instance can take it.
    TooLarge(String),
    /// No answer arrived (time ran out, the connection broke): the handler may have run.
    Lost(String),
}

impl AttemptEnd {
    /// Why the attempt gave no answer, as an error's last reason.
    fn reason(self) -> String {
        match self {
            AttemptEnd::Reply(RpcReply::Ok(_)) => "answered".to_owned(),
            AttemptEnd::Reply(RpcReply::Err(e)) => e.to_string(),
            AttemptEnd::NotDelivered(reason)
            | AttemptEnd::TooLarge(reason)
            | AttemptEnd::Lost(reason) => reason,
        }
    }
}

/// One attempt to carry out: call `instance` and give up after `budget`.
#[derive(Debug)]
pub struct Attempt {
    /// The instance to call.
    pub instance: Instance,
    /// How long this attempt may take.
    pub budget: Duration,
    /// Which attempt of its call this is, from 1.
    pub number: u32,
    permit: Permit,
}

/// What a call does next.
#[derive(Debug)]
pub enum Step {
    /// Carry out this attempt, then report its end to [`Router::finish`].
    Attempt(Attempt),
    /// The call is over.
    Done(Result<Vec<u8>, RpcError>),
}

/// One call in flight: what it asked for and what its attempts have done so far. It borrows
/// the service name and options from the caller when it can (the runtime's calls do: nothing
/// is copied per call), or owns them (the simulator keeps calls across events).
#[derive(Clone, Debug)]
pub struct CallPlan<'a> {
    service: Cow<'a, str>,
    options: Cow<'a, CallOptions>,
    deadline: Duration,
    until: Instant,
    tried: Vec<InstanceId>,
    attempts: u32,
    last: Option<String>,
}

impl<'a> CallPlan<'a> {
    /// A call to `service`, started at `now`, that must end within `deadline`.
    pub fn new(
        service: impl Into<Cow<'a, str>>,
        options: Cow<'a, CallOptions>,
        now: Instant,
        deadline: Duration,
    ) -> Self {
        Self {
            service: service.into(),
            options,
            deadline,
            until: now + deadline,
            tried: Vec::new(),
            attempts: 0,
            last: None,
        }
    }

    /// The service called.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// Attempts made so far.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// When the call's deadline passes.
    pub fn until(&self) -> Instant {
        self.until
    }

    fn deadline_exceeded(&self) -> RpcError {
        RpcError::DeadlineExceeded {
            service: self.service.to_string(),
            deadline: self.deadline,
            attempts: self.attempts,
        }
    }

    /// The error when no further attempt is possible.
    fn exhausted(&mut self, now: Instant) -> RpcError {
        if now >= self.until {
            return self.deadline_exceeded();
        }
        let service = self.service.to_string();
        match self.last.take() {
            Some(last) => RpcError::Unavailable {
                service,
                attempts: self.attempts,
                last,
            },
            None if self.attempts == 0 && !self.tried.is_empty() => {
                RpcError::CircuitOpen { service }
            }
            None => RpcError::NoInstances { service },
        }
    }
}

/// Routing state of one calling node: round-robin cursors, a circuit breaker and a count of
/// outstanding attempts per instance.
#[derive(Debug)]
pub struct Router {
    balancer: Balancer<String>,
    breakers: Breakers<InstanceId>,
    outstanding: BTreeMap<InstanceId, u32>,
    transitions: Vec<(InstanceId, Transition)>,
}

impl Router {
    /// A router whose breakers follow `breaker`.
    pub fn new(breaker: BreakerConfig) -> Result<Self, BreakerConfigError> {
        Ok(Self {
            balancer: Balancer::new(),
            breakers: Breakers::new(breaker)?,
            outstanding: BTreeMap::new(),
            transitions: Vec::new(),
        })
    }

    /// The next step of `call`: an attempt on a routable instance it has not tried whose
    /// breaker grants one, or the call's end. Instances whose breaker refuses are marked tried
    /// without costing an attempt.
    pub fn next(
        &mut self,
        now: Instant,
        call: &mut CallPlan<'_>,
        directory: &Directory,
        rng: &mut impl Rng,
    ) -> Step {
        if call.attempts >= call.options.max_attempts.max(1) {
            return Step::Done(Err(call.exhausted(now)));
        }
        let all = directory.instances(&call.service);
        let instances: Vec<&Instance> = all.iter().filter(|i| i.record.routable()).collect();
        if instances.is_empty() {
            let service = call.service.to_string();
            return Step::Done(Err(match call.last.take() {
                Some(last) => RpcError::Unavailable {
                    service,
                    attempts: call.attempts,
                    last,
                },
                None => RpcError::NoInstances { service },
            }));
        }
        let Some((instance, permit)) = self.pick(now, call, &instances, rng) else {
            return Step::Done(Err(call.exhausted(now)));
        };
        if now >= call.until {
            self.breakers
                .record(now, &instance.id, permit, BreakerOutcome::Cancelled);
            return Step::Done(Err(call.deadline_exceeded()));
        }
        call.attempts += 1;
        *self.outstanding.entry(instance.id).or_default() += 1;
        Step::Attempt(Attempt {
            budget: attempt_budget(now, call),
            number: call.attempts,
            instance,
            permit,
        })
    }

    fn pick(
        &mut self,
        now: Instant,
        call: &mut CallPlan<'_>,
        instances: &[&Instance],
        rng: &mut impl Rng,
    ) -> Option<(Instance, Permit)> {
        let candidates = self.candidates(instances);
        loop {
            let index = self.balancer.pick_excluding(
                &*call.service,
                &call.options.strategy,
                &candidates,
                call.options.key.as_deref(),
                &call.tried,
                rng,
            )?;
            let instance = instances[index];
            call.tried.push(instance.id);
            if let Ok(permit) = self.breakers.allow(now, &instance.id) {
                if let Some(transition) = permit.transition() {
                    self.transitions.push((instance.id, transition));
                }
                return Some((instance.clone(), permit));
            }
        }
    }

    fn candidates(&self, instances: &[&Instance]) -> Vec<Candidate<InstanceId>> {
        instances
            .iter()
            .map(|i| Candidate {
                id: i.id,
                weight: i.record.weight,
                outstanding: self.outstanding(&i.id),
                is_local: i.local,
            })
            .collect()
    }

    /// Takes in how `attempt` of `call` ended: the call's answer, or `None` when it goes on
    /// (ask [`Router::next`] for the next step).
    pub fn finish(
        &mut self,
        now: Instant,
        call: &mut CallPlan<'_>,
        attempt: Attempt,
        end: AttemptEnd,
    ) -> Option<Result<Vec<u8>, RpcError>> {
        let id = attempt.instance.id;
        let idempotent = call.options.idempotent || fault_on!(RetryEveryLostCall);
        let (healthy, verdict) = judge(&call.service, end, idempotent);
        let outcome = if healthy {
            BreakerOutcome::Success
        } else {
            BreakerOutcome::Failure
        };
        self.record_end(now, id, attempt.permit, outcome);
        match verdict {
            Verdict::Answer(answer) => Some(answer),
            Verdict::Retry(reason) => {
                call.last = Some(reason);
                None
            }
        }
    }

    /// The call was dropped while `attempt` ran (its caller gave up on it): the attempt no
    /// longer counts as outstanding, and a half-open trial it held is given back at once
    /// rather than presumed lost when the round times out. Its breaker learns nothing.
    pub fn abandon(&mut self, now: Instant, attempt: Attempt) {
        let cancelled = BreakerOutcome::Cancelled;
        self.record_end(now, attempt.instance.id, attempt.permit, cancelled);
    }

    /// An attempt on `id` ended with `outcome`. An instance forgotten while the attempt ran
    /// (its count went with it) learns nothing: a breaker made for it now would outlive it
    /// until the next [`Router::forget_missing`].
    fn record_end(
        &mut self,
        now: Instant,
        id: InstanceId,
        permit: Permit,
        outcome: BreakerOutcome,
    ) {
        if !self.ended(&id) {
            return;
        }
        if let Some(transition) = self.breakers.record(now, &id, permit, outcome) {
            self.transitions.push((id, transition));
        }
    }

    /// Attempts on `instance` this node has under way.
    pub fn outstanding(&self, instance: &InstanceId) -> u32 {
        self.outstanding.get(instance).copied().unwrap_or(0)
    }

    /// One attempt on `id` ended; false if none was counted (the instance was forgotten).
    fn ended(&mut self, id: &InstanceId) -> bool {
        let Some(n) = self.outstanding.get_mut(id) else {
            return false;
        };
        *n -= 1;
        if *n == 0 {
            self.outstanding.remove(id);
        }
        true
    }

    /// Breaker state changes since the last call, for metrics and logs.
    pub fn take_transitions(&mut self) -> Vec<(InstanceId, Transition)> {
        std::mem::take(&mut self.transitions)
    }

    /// Drops breakers and counts of instances no longer in `directory`, and cursors of
    /// services it no longer lists, so they do not pile up over churn.
    pub fn forget_missing(&mut self, directory: &Directory) {
        let visible: BTreeSet<InstanceId> = directory.all().map(|i| i.id).collect();
        let gone: Vec<InstanceId> = self
            .breakers
            .states()
            .map(|(id, _)| *id)
            .filter(|id| !visible.contains(id))
            .collect();
        for id in &gone {
            self.breakers.remove(id);
        }
        self.outstanding.retain(|id, _| visible.contains(id));
        let listed: BTreeSet<&str> = directory.service_names().collect();
        self.balancer
            .retain(|service| listed.contains(service.as_str()));
    }

    /// Instances with a breaker (each called at least once and still visible).
    pub fn breakers(&self) -> &Breakers<InstanceId> {
        &self.breakers
    }
}

/// The time an attempt may take. An idempotent call keeps time for the attempts after this
/// one, so one hung instance cannot eat the whole deadline.
fn attempt_budget(now: Instant, call: &CallPlan<'_>) -> Duration {
    if fault_on!(BudgetIgnoresDeadline) {
        return call.deadline;
    }
    let remaining_attempts = call
        .options
        .max_attempts
        .saturating_sub(call.attempts)
        .saturating_add(1);
    attempt_share(
        call.until.saturating_since(now),
        call.options.idempotent,
        remaining_attempts,
    )
}

/// The share of `left` one attempt may take when `remaining_attempts` may still be made (this
/// one included): all of it for a call that is not idempotent (it is never retried after a
/// timeout, so nothing is kept back), else an equal share, so a hung attempt leaves time for
/// the later ones. Cross-cluster calls share their deadline between gateways by this rule.
pub fn attempt_share(left: Duration, idempotent: bool, remaining_attempts: u32) -> Duration {
    if !idempotent {
        return left;
    }
    left / remaining_attempts.max(1)
}

enum Verdict {
    Answer(Result<Vec<u8>, RpcError>),
    Retry(String),
}

/// Whether a call may be tried again elsewhere after an attempt ended as `end`: always when
/// the handler certainly did not run, and for an idempotent call also when it may have run
/// but gave no answer (a timeout, a lost connection). Cross-cluster calls are retried between
/// gateways by this rule too.
pub fn retryable(end: &AttemptEnd, idempotent: bool) -> bool {
    match end {
        AttemptEnd::Reply(RpcReply::Ok(_))
        | AttemptEnd::Reply(RpcReply::Err(RemoteError::Handler(_)))
        | AttemptEnd::TooLarge(_) => false,
        AttemptEnd::Reply(RpcReply::Err(e)) => e.not_executed() || idempotent,
        AttemptEnd::NotDelivered(_) => true,
        AttemptEnd::Lost(_) => idempotent,
    }
}

/// What an attempt's end means: whether the instance worked (for its breaker), and whether
/// the call has its answer or may move on.
fn judge(service: &str, end: AttemptEnd, idempotent: bool) -> (bool, Verdict) {
    // A handler's own error is an answer and a rate limit a refusal: the instance works.
    let healthy = matches!(
        end,
        AttemptEnd::Reply(RpcReply::Ok(_))
            | AttemptEnd::Reply(RpcReply::Err(
                RemoteError::Handler(_) | RemoteError::RateLimited { .. }
            ))
            | AttemptEnd::TooLarge(_)
    );
    if retryable(&end, idempotent) {
        return (healthy, Verdict::Retry(end.reason()));
    }
    let answer = match end {
        AttemptEnd::Reply(RpcReply::Ok(body)) => Ok(body),
        AttemptEnd::Reply(RpcReply::Err(RemoteError::Handler(message))) => Err(RpcError::Handler {
            service: service.to_owned(),
            message,
        }),
        AttemptEnd::TooLarge(reason) => Err(RpcError::Codec(reason)),
        other => Err(RpcError::Unavailable {
            service: service.to_owned(),
            attempts: 1,
            last: other.reason(),
        }),
    };
    (healthy, Verdict::Answer(answer))
}

#[cfg(test)]
mod tests;
