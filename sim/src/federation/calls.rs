//! Application calls from the nodes of one cluster to a service of another, carried the way
//! `rpc().call_in` carries them in the engine (`engine/src/runtime/federation/relay.rs`,
//! `serve.rs`, `FederationHandle::forward`):
//!
//! 1. the calling node hands the call to a gateway of its own cluster (the relay service; one
//!    hop of the cluster's network), or to its own machine when it is a gateway;
//! 2. that gateway's machine routes it (`Federation::route`: the link's current remote gateway,
//!    or `LinkDown`, `NotExported`, `NotLinked`, `UnknownCluster`);
//! 3. the call crosses the WAN with its attempt's share of what is left of the deadline (all
//!    of it unless the call is idempotent); the remote gateway refuses what its cluster does
//!    not export (`Federation::exports`), refuses a call whose budget ran out, and otherwise
//!    has an instance answer (a round trip of its cluster's network);
//! 4. an attempt that brings no answer tells the forwarding gateway's machine how it ended
//!    (`call_ended`, as the engine does): no handshake (no process at the remote address), no
//!    answer within its budget (the request or the answer lost), the connection closed under
//!    it (the remote gateway went down after taking it, seen when its answer would have
//!    arrived), or the remote's deadline passed; the machine moves the link on and says
//!    whether to try again on the remote's next gateway (`MAX_CALL_ATTEMPTS` in all; after a
//!    request may have run, only for an idempotent call);
//! 5. the reply comes back the same way; the caller gives up at its deadline.
//!
//! The machine's decisions are the core's; the carriage is modelled here: the relay's choice
//! among its cluster's gateways is a seeded pick among the running ones (the engine's RPC
//! balances over the relay's registrations and retries), the cluster hops take the cluster's
//! network latency without loss, and an instance answers as soon as it is reached.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use foundation_core::federation::{FederationError, ForwardedAttempt, Route};
use foundation_core::services::router::AttemptEnd;
use foundation_core::services::wire::{RemoteError, RpcReply};
use rand::rngs::StdRng;
use rand::Rng;
use serde::Serialize;

use super::wan::{CallLeg, RemoteOutcome, WanMessage};
use super::{listening_at, Harness};

/// A stream of calls from one cluster to a service of another.
#[derive(Clone, Debug, PartialEq)]
pub struct CallSpec {
    /// The calling cluster (index).
    pub from: usize,
    /// The called cluster (index).
    pub to: usize,
    /// The service called.
    pub service: String,
    /// When the calls start.
    pub start: Duration,
    /// When they stop.
    pub stop: Duration,
    /// Calls per second, from random running nodes of `from`.
    pub rate: f64,
    /// Each call's deadline.
    pub deadline: Duration,
    /// Whether the calls are idempotent (`CallOptions::idempotent`): retried on the remote's
    /// next gateway after a lost attempt too.
    pub idempotent: bool,
}

/// How a call ended, as its caller saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum CallEnd {
    /// An instance of the remote cluster answered.
    Ok,
    /// Refused: the remote cluster does not export the service (or not visibly yet).
    NotExported,
    /// Refused: the link is down.
    LinkDown,
    /// Refused: the cluster is known only through another.
    NotLinked,
    /// Refused: no such cluster.
    UnknownCluster,
    /// No gateway of the caller's own cluster runs.
    NoGateway,
    /// Every attempt found no process on the remote gateway.
    Unreachable,
    /// The remote gateway went down under an attempt (a crash closed its connection), and
    /// the call was not retried: it is not idempotent, or its attempts or time ran out.
    Lost,
    /// The deadline passed (in the remote cluster, or while waiting).
    DeadlineExceeded,
    /// The calling node went down before the call ended (nobody to tell).
    CallerGone,
}

impl CallEnd {
    /// As reports name it.
    pub fn name(self) -> &'static str {
        match self {
            CallEnd::Ok => "ok",
            CallEnd::NotExported => "not-exported",
            CallEnd::LinkDown => "link-down",
            CallEnd::NotLinked => "not-linked",
            CallEnd::UnknownCluster => "unknown-cluster",
            CallEnd::NoGateway => "no-gateway",
            CallEnd::Unreachable => "unreachable",
            CallEnd::Lost => "lost",
            CallEnd::DeadlineExceeded => "deadline-exceeded",
            CallEnd::CallerGone => "caller-gone",
        }
    }
}

impl From<FederationError> for CallEnd {
    fn from(error: FederationError) -> Self {
        match error {
            FederationError::UnknownCluster(_) | FederationError::BadDirectory(_) => {
                CallEnd::UnknownCluster
            }
            // The harness links clusters in a mesh without hubs, so no transit is ever asked.
            FederationError::NotLinked(_) | FederationError::TransitRefused { .. } => {
                CallEnd::NotLinked
            }
            FederationError::LinkDown(_) => CallEnd::LinkDown,
            FederationError::NotExported { .. } => CallEnd::NotExported,
        }
    }
}

/// One call, from issue to end.
#[derive(Clone, Debug, PartialEq)]
pub struct CallRecord {
    /// The calling cluster (index).
    pub from: usize,
    /// The called cluster (index).
    pub to: usize,
    /// The service.
    pub service: String,
    /// The calling node's slot.
    pub caller: usize,
    /// Its life when it called.
    pub caller_life: u64,
    /// When it was issued (simulated µs).
    pub issued_us: u64,
    /// Its deadline (simulated µs).
    pub deadline_us: u64,
    /// Whether the called cluster's gateway exported the service when the call was issued.
    pub exported_at_issue: bool,
    /// Whether the call is idempotent.
    pub idempotent: bool,
    /// Attempts across the WAN.
    pub attempts: u32,
    /// The attempt the forwarding gateway waits on, if any.
    pub awaiting: Option<u32>,
    /// When an instance answered it, if one did.
    pub served_us: Option<u64>,
    /// When and how it ended.
    pub end: Option<(u64, CallEnd)>,
}

/// What is next for a call.
#[derive(Clone, Debug)]
enum Step {
    /// The next call of a spec (index).
    Issue(usize),
    /// A call reached a gateway (index) of its own cluster.
    AtGateway { call: usize, gateway: usize },
    /// The gateway's answer reached the caller.
    Back { call: usize, end: CallEnd },
    /// The caller's deadline.
    Timeout(usize),
    /// An attempt's budget ran out at the gateway that forwarded it.
    AttemptTimeout(CallLeg),
}

/// The calls of a run: their schedule and records.
pub struct Calls {
    rng: StdRng,
    steps: BTreeMap<(u64, u64), Step>,
    seq: u64,
    /// Every call issued, by id.
    pub records: Vec<CallRecord>,
}

impl Calls {
    /// The calls of `specs`, drawn from `rng`.
    pub fn new(specs: &[CallSpec], rng: StdRng) -> Self {
        let mut calls = Self {
            rng,
            steps: BTreeMap::new(),
            seq: 0,
            records: Vec::new(),
        };
        for (index, spec) in specs.iter().enumerate() {
            let first = spec.start.as_micros() as u64 + calls.gap(spec.rate);
            if first < spec.stop.as_micros() as u64 {
                calls.push(first, Step::Issue(index));
            }
        }
        calls
    }

    /// When the next step is due.
    pub fn next_time(&self) -> Option<u64> {
        self.steps.keys().next().map(|(at, _)| *at)
    }

    fn push(&mut self, at_us: u64, step: Step) {
        self.seq += 1;
        self.steps.insert((at_us, self.seq), step);
    }

    fn pop(&mut self, now_us: u64) -> Option<Step> {
        let (&key, _) = self.steps.iter().next()?;
        (key.0 <= now_us).then(|| self.steps.remove(&key)).flatten()
    }

    /// A seeded exponential gap between calls at `rate` per second (at least 1 µs).
    fn gap(&mut self, rate: f64) -> u64 {
        let uniform: f64 = self.rng.gen_range(f64::EPSILON..1.0);
        ((-uniform.ln() / rate) * 1e6).max(1.0) as u64
    }
}

impl Harness<'_> {
    /// Runs every call step due now.
    pub(super) fn run_calls(&mut self) {
        while let Some(step) = self.calls.pop(self.now_us) {
            match step {
                Step::Issue(spec) => self.issue(spec),
                Step::AtGateway { call, gateway } => self.forward(call, gateway),
                Step::Back { call, end } => self.end_call(call, end),
                Step::Timeout(call) => self.end_call(call, CallEnd::DeadlineExceeded),
                Step::AttemptTimeout(leg) => self.attempt_ended(leg, RemoteOutcome::Lost),
            }
        }
    }

    /// One hop inside cluster `cluster` (its network's latency, at least 1 µs).
    fn hop_us(&self, cluster: usize) -> u64 {
        let latency = self.scenario.clusters[cluster].scenario.network.latency;
        (latency.as_micros() as u64).max(1)
    }

    /// Issues the next call of spec `index` from a random running node, and schedules the one
    /// after.
    fn issue(&mut self, index: usize) {
        let scenario = self.scenario;
        let spec = &scenario.calls[index];
        let next = self.now_us + self.calls.gap(spec.rate);
        if next < spec.stop.as_micros() as u64 {
            self.calls.push(next, Step::Issue(index));
        }
        let world = self.runners[spec.from].world_mut();
        let up: Vec<usize> = (0..world.nodes().len())
            .filter(|&slot| world.node(slot).is_up())
            .collect();
        if up.is_empty() {
            return;
        }
        let caller = up[self.calls.rng.gen_range(0..up.len())];
        let caller_life = world.node(caller).life();
        let id = self.calls.records.len();
        let deadline_us = self.now_us + spec.deadline.as_micros() as u64;
        let record = CallRecord {
            from: spec.from,
            to: spec.to,
            service: spec.service.clone(),
            caller,
            caller_life,
            issued_us: self.now_us,
            deadline_us,
            exported_at_issue: self.ground.exported(spec.to, &spec.service),
            idempotent: spec.idempotent,
            attempts: 0,
            awaiting: None,
            served_us: None,
            end: None,
        };
        self.calls.records.push(record);
        self.calls.push(deadline_us, Step::Timeout(id));
        self.relay(id, spec.from, caller);
    }

    /// The caller hands call `id` to a gateway of its cluster.
    fn relay(&mut self, id: usize, cluster: usize, caller: usize) {
        let running: Vec<usize> = (0..self.gateways.len())
            .filter(|&i| self.gateways[i].cluster == cluster)
            .filter(|&i| self.gateways[i].machine.is_some())
            .collect();
        let hop = self.hop_us(cluster);
        if let Some(&own) = running.iter().find(|&&i| self.gateways[i].slot == caller) {
            self.calls.push(
                self.now_us,
                Step::AtGateway {
                    call: id,
                    gateway: own,
                },
            );
        } else if running.is_empty() {
            let end = CallEnd::NoGateway;
            self.calls
                .push(self.now_us + hop, Step::Back { call: id, end });
        } else {
            let gateway = running[self.calls.rng.gen_range(0..running.len())];
            self.calls
                .push(self.now_us + hop, Step::AtGateway { call: id, gateway });
        }
    }

    /// Gateway `gateway` routes call `id` across the WAN, or refuses it.
    fn forward(&mut self, id: usize, gateway: usize) {
        let record = &self.calls.records[id];
        if record.end.is_some() {
            return;
        }
        let (from, to, service) = (record.from, record.to, record.service.clone());
        let back = self.now_us + self.hop_us(from);
        let life = self.gateways[gateway].life;
        let Some(machine) = self.gateways[gateway].machine.as_ref() else {
            // The relay's instance went down under the call.
            let end = CallEnd::NoGateway;
            self.calls.push(back, Step::Back { call: id, end });
            return;
        };
        let remote = self.scenario.clusters[to].name.as_str();
        match machine.route(remote, &service) {
            Err(error) => self.calls.push(
                back,
                Step::Back {
                    call: id,
                    end: error.into(),
                },
            ),
            // The harness configures no hubs (every `Federation` here is a mesh member), so the
            // machine only ever routes directly; a route through a hub would need transit carried.
            Ok(Route::ViaHub { .. }) => self.calls.push(
                back,
                Step::Back {
                    call: id,
                    end: CallEnd::NotLinked,
                },
            ),
            Ok(Route::Direct {
                gateway: address, ..
            }) => self.send_attempt(id, gateway, life, address, service),
        }
    }

    /// Gateway `gateway` (in its life `life`) sends the next attempt of call `id` to the remote
    /// gateway at `remote` with its share of the deadline, and gives up on it when that runs
    /// out, as the engine's request does.
    fn send_attempt(
        &mut self,
        id: usize,
        gateway: usize,
        life: u64,
        remote: SocketAddr,
        service: String,
    ) {
        let record = &mut self.calls.records[id];
        record.attempts += 1;
        record.awaiting = Some(record.attempts);
        let budget = forwarded(record).budget(super::instant(self.now_us));
        let deadline_us = self.now_us + budget.as_micros() as u64;
        let leg = CallLeg {
            call: id as u64,
            attempt: record.attempts,
            from: gateway,
            life,
            remote,
        };
        let (from, to) = (record.from, record.to);
        let message = WanMessage::Call {
            leg,
            service,
            deadline_us,
        };
        self.wan.send(self.now_us, from, to, message);
        self.calls.push(deadline_us, Step::AttemptTimeout(leg));
    }

    /// A forwarded call reached the address `leg.remote`: its gateway refuses or serves it and
    /// answers; nothing listening fails the handshake.
    pub(super) fn call_arrived(&mut self, leg: CallLeg, service: &str, deadline_us: u64) {
        let id = leg.call as usize;
        let (caller_cluster, remote_cluster) =
            (self.gateways[leg.from].cluster, self.calls.records[id].to);
        let taken_by = listening_at(&self.gateways, leg.remote)
            .filter(|&i| self.gateways[i].machine.is_some());
        let machine = taken_by.and_then(|i| self.gateways[i].machine.as_ref());
        let round_trip = 2 * self.hop_us(remote_cluster);
        let (outcome, at) = match machine {
            None => (RemoteOutcome::Handshake, self.now_us),
            Some(m) if !m.exports(service) => (RemoteOutcome::NotExported, self.now_us),
            // Not worth starting: the instance could not answer within the budget.
            Some(_) if self.now_us + round_trip > deadline_us => {
                (RemoteOutcome::DeadlineExceeded, self.now_us)
            }
            Some(_) => {
                let served = self.now_us + round_trip;
                self.calls.records[id].served_us = Some(served);
                (RemoteOutcome::Served, served)
            }
        };
        let reply = WanMessage::CallReply {
            leg,
            outcome,
            taken_by: taken_by.map(|i| (i, self.gateways[i].life)),
        };
        self.wan.send(at, remote_cluster, caller_cluster, reply);
    }

    /// The answer to an attempt reached the gateway that forwarded it. A remote gateway that
    /// went down since it took the call closed the connection: no answer came. (The engine
    /// learns that when the crash's close arrives; here a round trip later at most.)
    pub(super) fn reply_arrived(
        &mut self,
        leg: CallLeg,
        outcome: RemoteOutcome,
        taken_by: Option<(usize, u64)>,
    ) {
        let gone = |(i, life): (usize, u64)| {
            let gateway = &self.gateways[i];
            gateway.life != life || gateway.machine.is_none()
        };
        let outcome = match taken_by {
            Some(remote) if gone(remote) => RemoteOutcome::Lost,
            _ => outcome,
        };
        self.attempt_ended(leg, outcome);
    }

    /// Attempt `leg` ended with `outcome` at the gateway that forwarded it, unless that gateway
    /// stopped waiting (it went down, the call ended, or the attempt was given up on): its
    /// machine decides whether the call goes to the remote's next gateway (`call_ended`, as
    /// the engine asks it), else the outcome goes back to the caller.
    fn attempt_ended(&mut self, leg: CallLeg, outcome: RemoteOutcome) {
        let id = leg.call as usize;
        let record = &mut self.calls.records[id];
        let gateway = &mut self.gateways[leg.from];
        let machine = match gateway.machine.as_mut() {
            Some(machine)
                if gateway.life == leg.life
                    && record.end.is_none()
                    && record.awaiting == Some(leg.attempt) =>
            {
                machine
            }
            _ => return,
        };
        record.awaiting = None;
        let (attempt_end, end) = judged(outcome);
        let cluster = &self.scenario.clusters[record.to].name;
        let attempt = forwarded(record);
        let now = super::instant(self.now_us);
        let retry =
            attempt_end.is_some_and(|e| machine.call_ended(now, cluster, leg.remote, &attempt, &e));
        if retry {
            self.forward(id, leg.from);
            return;
        }
        let from = record.from;
        let back = self.now_us + self.hop_us(from);
        self.calls.push(back, Step::Back { call: id, end });
    }

    /// Call `id` ends now with `end`, unless it already has (a late answer after the deadline
    /// is dropped, as the caller no longer waits).
    fn end_call(&mut self, id: usize, end: CallEnd) {
        let record = &self.calls.records[id];
        if record.end.is_some() {
            return;
        }
        let (cluster, slot, life) = (record.from, record.caller, record.caller_life);
        let node = self.runners[cluster].world_mut().node(slot);
        let gone = !node.is_up() || node.life() != life;
        let end = if gone { CallEnd::CallerGone } else { end };
        self.calls.records[id].end = Some((self.now_us, end));
    }
}

/// Call `record`'s latest attempt, as the machine judges it.
fn forwarded(record: &CallRecord) -> ForwardedAttempt {
    ForwardedAttempt {
        number: record.attempts,
        idempotent: record.idempotent,
        until: super::instant(record.deadline_us),
    }
}

/// What an attempt's outcome is in the services router's terms when it brought no answer
/// (the engine's `attempt_end`), and how the call ends if it is not tried again.
fn judged(outcome: RemoteOutcome) -> (Option<AttemptEnd>, CallEnd) {
    match outcome {
        RemoteOutcome::Served => (None, CallEnd::Ok),
        RemoteOutcome::NotExported => (None, CallEnd::NotExported),
        RemoteOutcome::DeadlineExceeded => (
            Some(AttemptEnd::Reply(RpcReply::Err(
                RemoteError::DeadlineExceeded,
            ))),
            CallEnd::DeadlineExceeded,
        ),
        RemoteOutcome::Handshake => (
            Some(AttemptEnd::NotDelivered("handshake failed".into())),
            CallEnd::Unreachable,
        ),
        RemoteOutcome::Lost => (Some(AttemptEnd::Lost("no answer".into())), CallEnd::Lost),
    }
}
