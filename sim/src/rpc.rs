//! RPC in the simulator: calls between the nodes' applications, routed by the engine's own
//! router and served through its own admission gate, over the simulated network.
//!
//! Each call starts on a running node of a [`Calls`] load, names a service the applications
//! registered ([`Fault::Register`](crate::faults::Fault::Register)), and is routed by
//! [`Router`] against the directory that node's core holds at that moment — the same code
//! `node.rpc()` runs. A request travels as a stream message on the rpc channel (lost with its
//! connection, as the network model says); the serving node admits it through [`Admission`],
//! runs the handler for a seeded service time and replies the same way. An attempt that gets no
//! reply ends when its time share runs out, exactly as the runtime's request timeout does; a
//! request sent into a cut connection or to a node that is down fails at once as not delivered,
//! as a refused dial does.
//!
//! Every call is recorded ([`CallRecord`]) with how many times a handler ran for it, which is
//! what [`crate::invariants::rpc::CallsEnd`] checks.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use foundation_core::services::admission::Admission;
use foundation_core::services::breaker::BreakerConfig;
use foundation_core::services::router::{
    Attempt, AttemptEnd, CallOptions, CallPlan, Router, RpcError, Step,
};
use foundation_core::services::trace::TraceContext;
use foundation_core::services::wire::{RemoteError, RpcReply, RpcRequest};
use foundation_core::time::Instant;
use foundation_core::Channel;
use rand10::rngs::StdRng as RouterRng;
use rand10::SeedableRng;
use serde::Serialize;

use crate::faults::Nodes;
use crate::pace::{check_share, Pace};
use crate::world::{NodeStatus, World};

/// The most calls one node's handlers run at once, as the runtime's default allows.
const RUNNING_MAX: usize = 4096;
/// Longest service time of a simulated handler.
const SERVICE_TIME_MAX_US: u64 = 3_000;
/// Service time range of the handlers of services named `slow…`: some outlast any deadline a
/// scenario gives, so attempts time out with their handler running.
const SLOW_SERVICE_US: std::ops::Range<u64> = 20_000..700_000;
/// How long a dial into a cut link or a down node takes to fail.
const REFUSED_AFTER_US: u64 = 1_000;

/// Whether `service` is one whose handlers are slow (named `slow…`): their calls time out
/// often and trip breakers, as such services do.
pub fn is_slow(service: &str) -> bool {
    service.starts_with("slow")
}

/// A seeded stream of calls: `rate` per second over the selection together, for `duration`,
/// each from a random running node of the selection to `service`, idempotent with probability
/// `idempotent`, with `deadline` to finish.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Calls {
    /// Which nodes call.
    pub nodes: Nodes,
    /// The service called.
    pub service: String,
    /// Calls per second, over the whole selection.
    pub rate: f64,
    /// How long calls keep coming.
    pub duration: Duration,
    /// Each call's deadline.
    pub deadline: Duration,
    /// Share of idempotent calls, 0–1.
    pub idempotent: f64,
}

impl Calls {
    /// `rate` calls per second from `nodes` to `service` for `duration`: half idempotent, each
    /// with a 500 ms deadline.
    pub fn new(nodes: Nodes, service: &str, rate: f64, duration: Duration) -> Self {
        Self {
            nodes,
            service: service.to_owned(),
            rate,
            duration,
            deadline: Duration::from_millis(500),
            idempotent: 0.5,
        }
    }

    /// With this deadline per call.
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// Checks every field.
    pub fn validate(&self) -> Result<(), String> {
        foundation_core::services::record::check_service_name(&self.service)
            .map_err(|e| e.to_string())?;
        self.pace().check("call", 1e5)?;
        if self.deadline.is_zero() {
            return Err("calls need a deadline above zero".into());
        }
        check_share("idempotent", self.idempotent)
    }

    fn pace(&self) -> Pace {
        Pace {
            rate: self.rate,
            duration: self.duration,
        }
    }
}

impl fmt::Display for Calls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "calls to {} from {}: {}/s for {:?}, deadline {:?}, {:.0}% idempotent",
            self.service,
            self.nodes,
            self.rate,
            self.duration,
            self.deadline,
            self.idempotent * 100.0
        )
    }
}

/// What became of one call.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CallRecord {
    /// The calling slot.
    pub slot: usize,
    /// The caller's life (its calls die with it).
    pub life: u64,
    /// The service.
    pub service: String,
    /// Whether the call allowed retries after a lost answer.
    pub idempotent: bool,
    /// When it started (world µs).
    pub started_us: u64,
    /// When it ended (world µs); `None` while it runs or if its node died first.
    pub ended_us: Option<u64>,
    /// Its deadline, and when it ended, on the caller's clock.
    pub until_local: Instant,
    /// When it ended on the caller's clock.
    pub ended_local: Option<Instant>,
    /// `ok`, or the error's outcome name; `None` while it runs or if its node died first.
    pub outcome: Option<&'static str>,
    /// Attempts the router made.
    pub attempts: u32,
    /// Times a handler started for it, on any node.
    pub executions: u32,
}

/// One running call.
struct LiveCall {
    plan: CallPlan<'static>,
    /// The attempt under way, numbered across the whole run.
    attempt: Option<(u64, Attempt)>,
}

/// The RPC state of one node life: its router, its gate and its randomness.
struct NodeRpc {
    life: u64,
    router: Router,
    gate: Admission,
    rng: RouterRng,
    /// The version of the node's directory the router last forgot vanished instances for.
    directory_seen: u64,
}

/// Where the world's RPC traffic stands.
#[derive(Default)]
pub(crate) struct RpcLayer {
    nodes: BTreeMap<usize, NodeRpc>,
    live: BTreeMap<u64, LiveCall>,
    records: Vec<CallRecord>,
    loads: Vec<(Calls, Vec<usize>, u64)>,
    next_attempt: u64,
}

/// An RPC event waiting in the world's queue.
#[derive(Clone, Debug)]
pub(crate) enum RpcEvent {
    /// The next call of load `load`.
    NextCall { load: usize },
    /// A request arrives at `to`.
    Request {
        from: usize,
        to: usize,
        lives: (u64, u64),
        connection: u64,
        call: u64,
        attempt: u64,
        payload: Vec<u8>,
    },
    /// A handler finished (or the gate refused the call).
    Handled(Answer),
    /// How an attempt ended reaches its caller `to`.
    Ended {
        to: usize,
        life: u64,
        call: u64,
        attempt: u64,
        end: AttemptEnd,
        /// The connection it came on, when it crossed the network.
        connection: Option<(usize, u64)>,
    },
    /// An attempt's time share ran out.
    Timeout {
        slot: usize,
        life: u64,
        call: u64,
        attempt: u64,
    },
}

/// A serving node's answer to one attempt.
#[derive(Clone, Debug)]
pub(crate) struct Answer {
    /// The serving slot and its life.
    slot: usize,
    life: u64,
    /// Whether the gate counted the call as running (a refusal holds no slot).
    admitted: bool,
    /// The calling slot and its life.
    caller: (usize, u64),
    call: u64,
    attempt: u64,
    reply: RpcReply,
}

impl RpcEvent {
    /// The slot it happens on; `None` for the world's own.
    pub(crate) fn slot(&self) -> Option<usize> {
        match self {
            RpcEvent::NextCall { .. } => None,
            RpcEvent::Request { to, .. } | RpcEvent::Ended { to, .. } => Some(*to),
            RpcEvent::Handled(Answer { slot, .. }) | RpcEvent::Timeout { slot, .. } => Some(*slot),
        }
    }
}

impl World {
    /// Every call so far, by call number.
    pub fn calls(&self) -> &[CallRecord] {
        &self.rpc.records
    }

    /// Starts a call load now.
    pub(crate) fn start_calls(&mut self, calls: Calls, slots: Vec<usize>) {
        let end = self.now_us() + calls.duration.as_micros() as u64;
        let gap = 1 + self.random_below(calls.pace().max_gap_us());
        let load = self.rpc.loads.len();
        self.rpc.loads.push((calls, slots, end));
        if self.now_us() + gap <= end {
            self.push_rpc(self.now_us() + gap, RpcEvent::NextCall { load });
        }
    }

    /// One call of load `load` from a random running node of its selection, then the next
    /// after a random gap.
    pub(crate) fn next_load_call(&mut self, load: usize) {
        let (calls, slots, end) = &self.rpc.loads[load];
        let (calls, end) = (calls.clone(), *end);
        let running: Vec<usize> = slots
            .iter()
            .copied()
            .filter(|&s| self.node(s).status() == NodeStatus::Running)
            .collect();
        if !running.is_empty() {
            let slot = running[self.random_below(running.len() as u64) as usize];
            let idempotent = self.random_below(1_000_000) < (calls.idempotent * 1e6) as u64;
            self.call(slot, &calls.service, idempotent, calls.deadline);
        }
        let next = self.now_us() + 1 + self.random_below(calls.pace().max_gap_us());
        if next <= end {
            self.push_rpc(next, RpcEvent::NextCall { load });
        }
    }

    /// The application on `slot` calls `service`; returns the call's number, or `None` when the
    /// node is not running.
    pub fn call(
        &mut self,
        slot: usize,
        service: &str,
        idempotent: bool,
        deadline: Duration,
    ) -> Option<u64> {
        self.node(slot).core()?;
        let now = self.local_now(slot);
        let options = CallOptions {
            idempotent,
            ..CallOptions::default()
        };
        let plan = CallPlan::new(service.to_owned(), Cow::Owned(options), now, deadline);
        let id = self.rpc.records.len() as u64;
        let life = self.node(slot).life();
        self.rpc.records.push(CallRecord {
            slot,
            life,
            service: service.to_owned(),
            idempotent,
            started_us: self.now_us(),
            ended_us: None,
            until_local: plan.until(),
            ended_local: None,
            outcome: None,
            attempts: 0,
            executions: 0,
        });
        self.note(format_args!(
            "n{slot} call #{id} {service} idempotent={idempotent}"
        ));
        self.rpc.live.insert(
            id,
            LiveCall {
                plan,
                attempt: None,
            },
        );
        self.step_call(slot, id);
        Some(id)
    }

    /// The RPC state of the node in `slot`, fresh for each life.
    fn node_rpc(&mut self, slot: usize) -> &mut NodeRpc {
        let life = self.node(slot).life();
        let fresh = self.rpc.nodes.get(&slot).is_none_or(|n| n.life != life);
        if fresh {
            let seed = self.random_below(u64::MAX);
            let node = NodeRpc {
                life,
                router: Router::new(BreakerConfig::default()).expect("the default is valid"),
                gate: Admission::new(None, RUNNING_MAX),
                rng: RouterRng::seed_from_u64(seed),
                directory_seen: 0,
            };
            self.rpc.nodes.insert(slot, node);
        }
        self.rpc.nodes.get_mut(&slot).expect("inserted above")
    }

    /// Asks the router for the next step of call `id` and carries it out.
    fn step_call(&mut self, slot: usize, id: u64) {
        let Some((directory, version)) = self.directory(slot) else {
            return;
        };
        let now = self.local_now(slot);
        let Some(mut call) = self.rpc.live.remove(&id) else {
            return;
        };
        let node = self.node_rpc(slot);
        // As the runtime does on every directory change: routing state of vanished instances goes.
        if node.directory_seen != version {
            node.router.forget_missing(&directory);
            node.directory_seen = version;
        }
        let step = node
            .router
            .next(now, &mut call.plan, &directory, &mut node.rng);
        match step {
            Step::Done(result) => self.end_call(slot, id, &call.plan, result),
            Step::Attempt(attempt) => {
                self.rpc.next_attempt += 1;
                let number = self.rpc.next_attempt;
                self.send_attempt(slot, id, number, &attempt, &call.plan);
                call.attempt = Some((number, attempt));
                self.rpc.live.insert(id, call);
            }
        }
    }

    /// Sends attempt `number` of call `id` from `slot`, and times it out after its share.
    fn send_attempt(
        &mut self,
        slot: usize,
        id: u64,
        number: u64,
        attempt: &Attempt,
        plan: &CallPlan<'_>,
    ) {
        self.rpc.records[id as usize].attempts = plan.attempts();
        let life = self.node(slot).life();
        let timeout_local = self.local_now(slot) + attempt.budget;
        let timeout_at = self.world_at(slot, timeout_local).max(self.now_us() + 1);
        let timeout = RpcEvent::Timeout {
            slot,
            life,
            call: id,
            attempt: number,
        };
        self.push_rpc(timeout_at, timeout);
        let request = RpcRequest {
            service: plan.service().to_owned(),
            instance: attempt.instance.id.local,
            trace: TraceContext::new_root(&mut self.node_rpc(slot).rng, false),
            origin: None,
            body: id.to_be_bytes().to_vec(),
        };
        let payload = postcard::to_stdvec(&request).unwrap_or_default();
        let target = self.slot_of(attempt.instance.id.node);
        let refused = |reason: &str| RpcEvent::Ended {
            to: slot,
            life,
            call: id,
            attempt: number,
            end: AttemptEnd::NotDelivered(reason.to_owned()),
            connection: None,
        };
        let Some(to) = target.filter(|&to| self.node(to).core().is_some()) else {
            return self.push_rpc(self.now_us() + REFUSED_AFTER_US, refused("node down"));
        };
        if to == slot {
            // A local instance: no network, as the runtime calls it in place.
            return self.arrive(slot, to, id, number, &payload);
        }
        let lives = (life, self.node(to).life());
        match self.stream_send(slot, to, Channel::Rpc) {
            None => self.push_rpc(self.now_us() + REFUSED_AFTER_US, refused("link cut")),
            Some((at, connection)) => {
                let request = RpcEvent::Request {
                    from: slot,
                    to,
                    lives,
                    connection,
                    call: id,
                    attempt: number,
                    payload,
                };
                self.push_rpc(at, request);
            }
        }
    }

    /// Records the end of call `id`.
    fn end_call(
        &mut self,
        slot: usize,
        id: u64,
        plan: &CallPlan<'_>,
        result: Result<Vec<u8>, RpcError>,
    ) {
        let now_local = self.local_now(slot);
        let outcome = match &result {
            Ok(_) => "ok",
            Err(e) => e.outcome(),
        };
        let now_us = self.now_us();
        let record = &mut self.rpc.records[id as usize];
        record.ended_us = Some(now_us);
        record.ended_local = Some(now_local);
        record.outcome = Some(outcome);
        record.attempts = plan.attempts();
        self.note(format_args!("n{slot} call #{id} ended {outcome}"));
    }

    /// Carries out an RPC event due now.
    pub(crate) fn rpc_deliver(&mut self, event: RpcEvent) {
        match event {
            RpcEvent::NextCall { load } => self.next_load_call(load),
            RpcEvent::Request {
                from,
                to,
                lives,
                connection,
                call,
                attempt,
                payload,
            } => {
                let current = (self.node(from).life(), self.node(to).life());
                if current == lives && self.network().connection(from, to) == connection {
                    self.arrive(from, to, call, attempt, &payload);
                }
            }
            RpcEvent::Handled(answer) => self.handled(answer),
            RpcEvent::Ended {
                to,
                life,
                call,
                attempt,
                end,
                connection,
            } => {
                let intact = connection
                    .is_none_or(|(from, conn)| self.network().connection(from, to) == conn);
                if intact && self.node(to).life() == life {
                    self.attempt_ended(to, call, attempt, end);
                }
            }
            RpcEvent::Timeout {
                slot,
                life,
                call,
                attempt,
            } => {
                if self.node(slot).life() == life {
                    let end = AttemptEnd::Lost("timed out".into());
                    self.attempt_ended(slot, call, attempt, end);
                }
            }
        }
    }

    /// A request from `from` reached `to`: admitted and handled, or refused at once.
    fn arrive(&mut self, from: usize, to: usize, call: u64, attempt: u64, payload: &[u8]) {
        let now = self.local_now(to);
        let caller_id = self.node(from).id();
        let admitted = self.node_rpc(to).gate.admit(now, caller_id, payload);
        let (life, caller) = (self.node(to).life(), (from, self.node(from).life()));
        let answer = |admitted, reply| Answer {
            slot: to,
            life,
            admitted,
            caller,
            call,
            attempt,
            reply,
        };
        let request = match admitted {
            Ok(request) => request,
            Err(refused) => return self.handled(answer(false, RpcReply::Err(refused))),
        };
        let registered = self
            .registrations()
            .of(to)
            .any(|r| r.service == request.service && r.local == request.instance);
        if !registered {
            let refused = RpcReply::Err(RemoteError::NoSuchInstance);
            return self.handled(answer(true, refused));
        }
        self.rpc.records[call as usize].executions += 1;
        let service_time = if is_slow(&request.service) {
            SLOW_SERVICE_US.start + self.random_below(SLOW_SERVICE_US.end - SLOW_SERVICE_US.start)
        } else {
            100 + self.random_below(SERVICE_TIME_MAX_US)
        };
        let done = answer(true, RpcReply::Ok(request.body));
        self.push_rpc(self.now_us() + service_time, RpcEvent::Handled(done));
    }

    /// The handler on `slot` finished call `call`: its gate slot frees, the reply goes back.
    fn handled(&mut self, answer: Answer) {
        let Answer {
            slot,
            life,
            admitted,
            caller: (caller, caller_life),
            call,
            attempt,
            reply,
        } = answer;
        if self.node(slot).life() != life {
            return; // the node died with the call
        }
        if admitted {
            self.node_rpc(slot).gate.finished();
        }
        let ended = |connection| RpcEvent::Ended {
            to: caller,
            life: caller_life,
            call,
            attempt,
            end: AttemptEnd::Reply(reply.clone()),
            connection,
        };
        if caller == slot {
            return self.rpc_deliver(ended(None));
        }
        if let Some((at, connection)) = self.stream_send(slot, caller, Channel::Rpc) {
            self.push_rpc(at, ended(Some((slot, connection))));
        }
    }

    /// Attempt `attempt` of call `id` on `slot` ended: the call ends or tries again.
    fn attempt_ended(&mut self, slot: usize, id: u64, attempt: u64, end: AttemptEnd) {
        let Some(mut call) = self.rpc.live.remove(&id) else {
            return;
        };
        let current = match call.attempt.take() {
            Some((number, current)) if number == attempt => current,
            other => {
                // A late answer to an attempt already judged (timed out, or refused).
                call.attempt = other;
                self.rpc.live.insert(id, call);
                return;
            }
        };
        let now = self.local_now(slot);
        let answer = self
            .node_rpc(slot)
            .router
            .finish(now, &mut call.plan, current, end);
        match answer {
            Some(result) => self.end_call(slot, id, &call.plan, result),
            None => {
                self.rpc.live.insert(id, call);
                self.step_call(slot, id);
            }
        }
    }

    /// The node in `slot` died: its calls die with it, unanswered, and callers waiting on it
    /// learn that their connection closed (a restarted QUIC peer resets it; a stopping one
    /// closes it), not knowing whether the handler ran.
    pub(crate) fn rpc_end_life(&mut self, slot: usize) {
        let records = &self.rpc.records;
        self.rpc
            .live
            .retain(|&id, _| records[id as usize].slot != slot);
        self.rpc.nodes.remove(&slot);
        let dead = self.node(slot).id();
        let waiting: Vec<(u64, u64, usize)> = self
            .rpc
            .live
            .iter()
            .filter_map(|(&id, call)| {
                let (number, attempt) = call.attempt.as_ref()?;
                let caller = self.rpc.records[id as usize].slot;
                (attempt.instance.id.node == dead && caller != slot)
                    .then_some((id, *number, caller))
            })
            .collect();
        for (call, attempt, caller) in waiting {
            let closed = RpcEvent::Ended {
                to: caller,
                life: self.node(caller).life(),
                call,
                attempt,
                end: AttemptEnd::Lost("connection closed".into()),
                connection: None,
            };
            self.push_rpc(self.now_us() + REFUSED_AFTER_US, closed);
        }
    }
}
