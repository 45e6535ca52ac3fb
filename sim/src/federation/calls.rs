//! Application calls from the nodes of one cluster to a service of another, carried the way
//! `rpc().call_in` carries them in the engine (`engine/src/runtime/federation/relay.rs`,
//! `serve.rs`, `FederationHandle::forward`):
//!
//! 1. the calling node hands the call to a gateway of its own cluster (the relay service; one
//!    hop of the cluster's network), or to its own machine when it is a gateway;
//! 2. that gateway's machine routes it (`Federation::route`: the link's current remote gateway,
//!    or `LinkDown`, `NotExported`, `NotLinked`, `UnknownCluster`);
//! 3. the call crosses the WAN with what is left of its deadline; the remote gateway refuses
//!    what its cluster does not export (`Federation::exports`), refuses a call whose budget ran
//!    out, and otherwise has an instance answer (a round trip of its cluster's network);
//! 4. a remote gateway that does not run fails the handshake: the forwarding gateway tells its
//!    machine (`call_failed`: the link moves to the remote's next gateway, and it says whether
//!    to try again, `MAX_CALL_ATTEMPTS` in all), as the engine does;
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
use rand::rngs::StdRng;
use rand::Rng;
use serde::Serialize;

use super::wan::{RemoteOutcome, WanMessage};
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
    /// Attempts across the WAN.
    pub attempts: u32,
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
            attempts: 0,
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
            }) => {
                self.calls.records[id].attempts += 1;
                let message = WanMessage::Call {
                    call: id as u64,
                    from: gateway,
                    life,
                    to: address,
                    service,
                    deadline_us: self.calls.records[id].deadline_us,
                };
                self.wan.send(self.now_us, from, to, message);
            }
        }
    }

    /// A forwarded call reached the address `to`: its gateway refuses or serves it and
    /// answers; nothing listening fails the handshake.
    pub(super) fn call_arrived(
        &mut self,
        id: usize,
        from: usize,
        life: u64,
        to: SocketAddr,
        service: &str,
        deadline_us: u64,
    ) {
        let (caller_cluster, remote_cluster) =
            (self.gateways[from].cluster, self.calls.records[id].to);
        let machine =
            listening_at(&self.gateways, to).and_then(|i| self.gateways[i].machine.as_ref());
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
            call: id as u64,
            to: from,
            life,
            gateway: to,
            outcome,
        };
        self.wan.send(at, remote_cluster, caller_cluster, reply);
    }

    /// The answer to call `id` reached the gateway that forwarded it.
    pub(super) fn reply_arrived(
        &mut self,
        id: usize,
        to: usize,
        life: u64,
        remote: SocketAddr,
        outcome: RemoteOutcome,
    ) {
        let record = &self.calls.records[id];
        let (from, cluster, attempts) = (record.from, record.to, record.attempts);
        let gateway = &mut self.gateways[to];
        let machine = match gateway.machine.as_mut() {
            Some(machine) if gateway.life == life && record.end.is_none() => machine,
            // The forwarding gateway went down, or the caller gave up: nobody waits for it.
            _ => return,
        };
        let end = match outcome {
            RemoteOutcome::Served => CallEnd::Ok,
            RemoteOutcome::NotExported => CallEnd::NotExported,
            RemoteOutcome::DeadlineExceeded => CallEnd::DeadlineExceeded,
            RemoteOutcome::Handshake => {
                let name = &self.scenario.clusters[cluster].name;
                let attempt = ForwardedAttempt {
                    number: attempts,
                    idempotent: false,
                    until: super::instant(record.deadline_us),
                };
                let end = AttemptEnd::NotDelivered("handshake failed".into());
                if machine.call_ended(super::instant(self.now_us), name, remote, &attempt, &end) {
                    self.forward(id, to);
                    return;
                }
                CallEnd::Unreachable
            }
        };
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
