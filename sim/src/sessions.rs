//! Coordination sessions in the simulator: the core's session driver
//! (`foundation_core::agents::sessions`) run between simulated agents on simulated nodes, its
//! outcome committed to a ledger through the core's `commit_outcome`, under whatever the world
//! does to the network and the nodes.
//!
//! [`Sessions`] is the carrier, as the engine's runtime is in the real world, and carries the
//! same machines: a session opened on a caller's node is coordinated there or on the node the
//! rendezvous rule places it on (as the caller sees the members); the participants are the
//! agents of the capability in the coordinator's agent directory; every ask of the driver is an
//! agent request (`World::message_agent`: routed, lost with its connection, queued in the
//! agent's mailbox, failed by a panicking agent, ended by its deadline), and its answer is
//! handed to the driver at the time it reached the coordinator, on the coordinator's clock.
//! What an agent answers is drawn from the seed ([`answer_of`]): a bid, a ballot, a decline,
//! its excess demand at a tatonnement's prices (a Cobb-Douglas trader whose tastes and
//! endowment follow from its name, [`excess_demand`]), and now and then a replay of an older session's answer or an answer of the wrong kind
//! (refused by the driver). Once decided, the coordinator commits the outcome by the core's
//! settle rule ([`Attempts`]); a caller whose coordinator is lost (it stops seeing it alive, or
//! no report came within the budget) settles the session by committing its abort, as the
//! engine's caller does; and for a seeded share of sessions a participant's node settles it
//! after the commit time, as a participant that missed the session's notice would (notices
//! themselves are not carried). A coordinator whose node crashes loses its session.
//!
//! Everything is recorded ([`SessionRecord`]) for the checks of
//! [`crate::invariants::sessions`].

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use foundation_agents::variable::{Policy, VarType, VarValue};
use foundation_agents::voting::{Ballot, Method};
use foundation_agents::Money;
use foundation_core::agents::directory::AgentDirectory;
use foundation_core::agents::sessions::{
    abort, ledger_outcome, open, place, Answer, Ask, Attempts, Commit, CommitState, Drove, Heard,
    Mechanism, Proposed, SessionAnswer, SessionDriver, Settled,
};
use foundation_core::membership::MemberState;
use foundation_core::time::Instant;
use foundation_core::vars::{Life, Outcome, SessionId, VarSpec, VarsEvent};

use crate::world::World;

/// How long a caller waits for a remote coordinator's report beyond the commit time: rounds of
/// `answer_within` (the engine waits for 1,000; simulated sessions are short).
const ROUNDS_AWAITED: u32 = 20;
/// How soon a proposal that lost the ledger's version to another outcome is made again.
const RETRY_US: u64 = 5_000;
/// How soon a proposal refused behind this node's own write on the ledger is made again, as
/// the engine's coordinator does.
const OWN_WRITE_POLL_US: u64 = 2_000;
/// How long past its timeout a proposal may go unanswered before its fate is unknown.
const PROPOSAL_GRACE_US: u64 = 1_000_000;
/// One session in this many is settled by a participant that missed its notice.
const PARTICIPANT_SETTLES_ONE_IN: u64 = 4;

/// One session to run.
#[derive(Clone, Debug)]
pub struct SessionPlan {
    /// Its identity; sessions commit to a ledger in increasing order of ids.
    pub id: SessionId,
    /// The node slot that opens it.
    pub caller: usize,
    /// What it decides.
    pub mechanism: Mechanism,
    /// Agents with this capability take part.
    pub capability: String,
    /// How long participants have to answer.
    pub answer_within: Duration,
    /// Where the outcome commits, if anywhere.
    pub commit: Option<Commit>,
    /// Coordinated by the rendezvous choice (else by the caller).
    pub placed: bool,
}

/// What became of one session.
#[derive(Clone, Debug)]
pub struct SessionRecord {
    /// The plan.
    pub plan: SessionPlan,
    /// The coordinating slot.
    pub coordinator: usize,
    /// The participants, by name.
    pub participants: Vec<String>,
    /// When it opened (world µs).
    pub opened_us: u64,
    /// What the driver gave, once it finished.
    pub drove: Option<Drove>,
    /// What the coordinator reported about the commit, and when (world µs).
    pub commit: Option<(CommitState, u64)>,
    /// Whether the caller got the report.
    pub reported: bool,
    /// Settles of the session: by which slot, what it found, when (world µs).
    pub settles: Vec<(usize, Settled, u64)>,
    /// Why the coordinator did not finish, if it did not.
    pub lost: Option<String>,
}

/// A proposal of an outcome (the coordinator's, or a settle's abort) in flight.
struct Land {
    record: usize,
    slot: usize,
    life: u64,
    ledger: String,
    outcome: Outcome,
    timeout: Duration,
    attempts: Attempts,
    /// The core's request and when its fate becomes unknown (world µs), once proposed.
    request: Option<(u64, u64)>,
    /// When to propose (again), world µs.
    propose_at: u64,
    /// Until when a proposal refused behind this node's own write on the ledger is made again
    /// (world µs): the commit's timeout from the first proposal.
    wait_until: u64,
    settle: bool,
}

/// A session whose coordinator drives it.
struct Driving {
    record: usize,
    slot: usize,
    life: u64,
    driver: SessionDriver,
    opened: Instant,
    /// Agent message number → the driver's ask.
    asks: BTreeMap<u64, u64>,
    /// The driver's asks awaiting answers: what each asked.
    pending: BTreeMap<u64, Ask>,
}

/// A caller awaiting a remote coordinator's report.
struct Awaiting {
    record: usize,
    life: u64,
    due_us: u64,
}

/// The carrier of every session of a world.
#[derive(Default)]
pub struct Sessions {
    records: Vec<SessionRecord>,
    driving: Vec<Driving>,
    lands: Vec<Land>,
    awaiting: Vec<Awaiting>,
    /// Participants' settles to start: (when, record, slot).
    participant_settles: Vec<(u64, usize, usize)>,
    vars_events: Vec<(usize, VarsEvent)>,
}

impl Sessions {
    /// Every session so far.
    pub fn records(&self) -> &[SessionRecord] {
        &self.records
    }

    /// The variables events the world emitted since the last call (the carrier reads them
    /// for its proposals and keeps them for the caller).
    pub fn take_vars_events(&mut self) -> Vec<(usize, VarsEvent)> {
        std::mem::take(&mut self.vars_events)
    }

    /// Opens `plan` on its caller's node; `false` when the caller is not running.
    pub fn open(&mut self, world: &mut World, plan: SessionPlan) -> bool {
        let Some(core) = world.node(plan.caller).core() else {
            return false;
        };
        let coordinator = if plan.placed {
            let me = world.node_addr(plan.caller);
            let alive = core.members().filter(|m| m.state == MemberState::Alive);
            let chosen = place::coordinator(plan.id, alive.map(|m| m.node_addr()).chain([me]));
            chosen
                .and_then(|n| world.slot_of(n.id))
                .unwrap_or(plan.caller)
        } else {
            plan.caller
        };
        let record = self.records.len();
        let caller_life = world.node(plan.caller).life();
        let budget = plan.answer_within.saturating_mul(ROUNDS_AWAITED)
            + plan.commit.as_ref().map_or(Duration::ZERO, |c| c.timeout);
        self.records.push(SessionRecord {
            plan: plan.clone(),
            coordinator,
            participants: Vec::new(),
            opened_us: world.now_us(),
            drove: None,
            commit: None,
            reported: coordinator == plan.caller,
            settles: Vec::new(),
            lost: None,
        });
        world.note(format_args!(
            "n{} opens session {} ({}) on n{coordinator}",
            plan.caller,
            plan.id.0,
            plan.mechanism.name()
        ));
        if coordinator != plan.caller {
            let due_us = world.now_us() + budget.as_micros() as u64;
            self.awaiting.push(Awaiting {
                record,
                life: caller_life,
                due_us,
            });
        }
        self.start_driving(world, record);
        true
    }

    /// The coordinator opens the session's driver over the agents it sees with the capability.
    fn start_driving(&mut self, world: &mut World, record: usize) {
        let slot = self.records[record].coordinator;
        let plan = self.records[record].plan.clone();
        let Some(core) = world.node(slot).core() else {
            self.records[record].lost = Some("coordinator down".into());
            return;
        };
        let directory = AgentDirectory::build(core);
        let mut names: Vec<String> = directory
            .with_capability(&plan.capability)
            .into_iter()
            .map(|a| a.name.clone())
            .collect();
        names.sort();
        names.dedup();
        let within = plan.answer_within.as_millis() as u64;
        let driver = match open(plan.id, &plan.mechanism, &names, within) {
            Ok(driver) if !names.is_empty() => driver,
            Ok(_) => return self.records[record].lost = Some("no participants".into()),
            Err(why) => return self.records[record].lost = Some(why),
        };
        self.records[record].participants = names;
        let life = world.node(slot).life();
        let opened = world.local_time(slot);
        self.driving.push(Driving {
            record,
            slot,
            life,
            driver,
            opened,
            asks: BTreeMap::new(),
            pending: BTreeMap::new(),
        });
    }

    /// The earliest world time at which something of a session is due.
    pub fn next_wake(&self, world: &World) -> Option<u64> {
        let drivers = self.driving.iter().filter_map(|d| {
            let ms = d.driver.poll_timeout()?;
            let at = d.opened + Duration::from_millis(ms);
            Some(world.world_at(d.slot, at))
        });
        let lands = self.lands.iter().map(|l| match l.request {
            Some((_, unknown_at)) => unknown_at,
            None => l.propose_at,
        });
        let awaited = self.awaiting.iter().map(|a| a.due_us);
        let settles = self.participant_settles.iter().map(|p| p.0);
        drivers.chain(lands).chain(awaited).chain(settles).min()
    }

    /// Carries whatever happened since the last call: answers heard, deadlines passed,
    /// proposals decided, coordinators lost. Call after every step of the world.
    pub fn poll(&mut self, world: &mut World) {
        let events = world.take_vars_events();
        for (slot, event) in &events {
            if let VarsEvent::CasDone {
                request, outcome, ..
            } = event
            {
                self.cas_done(world, *slot, *request, Proposed::Cas(outcome.clone()));
            }
        }
        self.vars_events.extend(events);
        self.drive(world);
        self.propose_due(world);
        self.watch_coordinators(world);
        self.start_participant_settles(world);
    }

    fn drive(&mut self, world: &mut World) {
        let mut finished = Vec::new();
        for i in 0..self.driving.len() {
            let d = &mut self.driving[i];
            if !world.node(d.slot).is_up_in(d.life) {
                self.records[d.record].lost = Some("coordinator crashed".into());
                finished.push(i);
                continue;
            }
            hear_answers(world, d, &self.records[d.record].plan);
            let elapsed = ms_since(world, d.slot, d.opened);
            if let Some(wake) = d.driver.poll_timeout() {
                // Due by the coordinator's clock, or by the world time `next_wake` named for
                // it (the two may differ by the rounding of a skewed clock).
                let due = world.world_at(d.slot, d.opened + Duration::from_millis(wake));
                if wake <= elapsed || due <= world.now_us() {
                    d.driver.handle_timeout(elapsed.max(wake));
                }
            }
            send_asks(world, d, &self.records[d.record].participants);
            if d.driver.finished() {
                finished.push(i);
            }
        }
        for i in finished.into_iter().rev() {
            let d = self.driving.remove(i);
            if self.records[d.record].lost.is_none() {
                self.decided(world, d);
            }
        }
    }

    /// The driver finished: the coordinator commits its decision, if it has one to commit.
    fn decided(&mut self, world: &mut World, d: Driving) {
        let record = &mut self.records[d.record];
        let drove = d.driver.drove();
        record.drove = drove.clone();
        let plan = record.plan.clone();
        let decision = drove.map(|dr| dr.decision);
        let commit = plan.commit.as_ref().zip(decision.as_ref());
        let writes = commit.map(|(commit, decision)| {
            let names = &record.participants;
            let writes = ledger_outcome(plan.id, &plan.mechanism, commit, names, decision);
            (commit, writes)
        });
        let (commit, outcome) = match writes {
            Some((commit, Ok(Some((outcome, _paid))))) => (commit, outcome),
            other => {
                let state = match other {
                    Some((_, Err(why))) => CommitState::NotCommitted(why),
                    _ => CommitState::NotRequested,
                };
                record.commit = Some((state, world.now_us()));
                return self.reported(world, d.record);
            }
        };
        self.lands.push(Land {
            record: d.record,
            slot: d.slot,
            life: d.life,
            ledger: commit.ledger.clone(),
            outcome,
            timeout: commit.timeout,
            attempts: Attempts::default(),
            request: None,
            propose_at: world.now_us(),
            wait_until: world.now_us() + commit.timeout.as_micros() as u64,
            settle: false,
        });
    }

    /// The coordinator has its report: the caller gets it if it can be reached; a seeded share
    /// of sessions gets a participant's settle after the commit time.
    fn reported(&mut self, world: &mut World, record: usize) {
        let r = &self.records[record];
        let (coordinator, caller) = (r.coordinator, r.plan.caller);
        let reachable = !world.network().blocked(coordinator, caller);
        if reachable && world.node(caller).is_up() {
            self.records[record].reported = true;
            self.awaiting.retain(|a| a.record != record);
        }
        let Some(commit) = self.records[record].plan.commit.clone() else {
            return;
        };
        if world.random_below(PARTICIPANT_SETTLES_ONE_IN) == 0 {
            let slot = world.random_below(world.nodes().len() as u64) as usize;
            let at = world.now_us() + commit.timeout.as_micros() as u64;
            self.participant_settles.push((at, record, slot));
        }
    }

    fn cas_done<P>(&mut self, world: &mut World, slot: usize, request: u64, proposed: Proposed<P>) {
        let Some(i) = self
            .lands
            .iter()
            .position(|l| l.slot == slot && l.request.is_some_and(|(r, _)| r == request))
        else {
            return;
        };
        self.landed(world, i, proposed);
    }

    /// Proposal `i` ended as `proposed`: proposed again on the newest record, or settled.
    fn landed<P>(&mut self, world: &mut World, i: usize, proposed: Proposed<P>) {
        let land = &mut self.lands[i];
        land.request = None;
        if proposed.behind_own_write() && world.now_us() < land.wait_until {
            land.propose_at = world.now_us() + OWN_WRITE_POLL_US;
            return;
        }
        let Some(landing) = land.attempts.after(proposed) else {
            land.propose_at = world.now_us() + RETRY_US;
            return;
        };
        let land = self.lands.remove(i);
        let now = world.now_us();
        let record = &mut self.records[land.record];
        if land.settle {
            record.settles.push((land.slot, landing.settled(), now));
            return;
        }
        record.commit = Some((landing.commit_state(None), now));
        self.reported(world, land.record);
    }

    /// Makes every proposal that is due; ends those whose node died or whose answer is overdue.
    fn propose_due(&mut self, world: &mut World) {
        let now = world.now_us();
        let mut i = 0;
        while i < self.lands.len() {
            let before = self.lands.len();
            let land = &self.lands[i];
            if !world.node(land.slot).is_up_in(land.life) {
                // Whoever proposed is gone and learns nothing; a coordinator loses its session.
                if !land.settle {
                    self.records[land.record].lost = Some("coordinator crashed".into());
                }
                self.lands.remove(i);
                continue;
            }
            match land.request {
                Some((_, unknown_at)) if unknown_at <= now => {
                    let why = Proposed::<()>::Unanswered("no answer to the proposal".into());
                    self.landed(world, i, why);
                }
                None if land.propose_at <= now => self.propose(world, i),
                _ => {}
            }
            if self.lands.len() == before {
                i += 1;
            }
        }
    }

    fn propose(&mut self, world: &mut World, i: usize) {
        let land = &self.lands[i];
        let (ledger, outcome, timeout) = (land.ledger.clone(), land.outcome.clone(), land.timeout);
        let proposed = world.with_core(land.slot, |core, now| {
            core.commit_outcome(now, &ledger, &outcome, timeout)
        });
        match proposed {
            Some(Ok(request)) => {
                let unknown_at = world.now_us() + timeout.as_micros() as u64 + PROPOSAL_GRACE_US;
                self.lands[i].request = Some((request, unknown_at));
            }
            Some(Err(refused)) => self.landed(world, i, Proposed::<()>::Refused(refused)),
            None => self.landed(world, i, Proposed::<()>::Unanswered("node down".into())),
        }
    }

    /// A caller settles its session when it stops seeing the coordinator alive, or no report
    /// came within the budget.
    fn watch_coordinators(&mut self, world: &mut World) {
        let now = world.now_us();
        let mut settle = Vec::new();
        self.awaiting.retain(|a| {
            let record = &self.records[a.record];
            let caller = record.plan.caller;
            if !world.node(caller).is_up_in(a.life) {
                return false; // The caller is gone; nobody awaits the report.
            }
            let coordinator = world.node(record.coordinator).id();
            let seen_alive = world.node(caller).core().is_some_and(|core| {
                core.members()
                    .any(|m| m.id == coordinator && m.state == MemberState::Alive)
            });
            if seen_alive && now < a.due_us {
                return true;
            }
            settle.push((a.record, caller));
            false
        });
        for (record, slot) in settle {
            self.settle(world, record, slot);
        }
    }

    fn start_participant_settles(&mut self, world: &mut World) {
        let now = world.now_us();
        let due: Vec<(u64, usize, usize)> = self
            .participant_settles
            .iter()
            .copied()
            .filter(|p| p.0 <= now)
            .collect();
        self.participant_settles.retain(|p| p.0 > now);
        for (_, record, slot) in due {
            if world.node(slot).is_up() {
                self.settle(world, record, slot);
            }
        }
    }

    /// The node in `slot` commits the session's abort, unless it finds it settled.
    fn settle(&mut self, world: &mut World, record: usize, slot: usize) {
        let Some(commit) = self.records[record].plan.commit.clone() else {
            return; // Nothing to settle: the session simply has no outcome.
        };
        let session = self.records[record].plan.id;
        world.note(format_args!("n{slot} settles session {}", session.0));
        self.lands.push(Land {
            record,
            slot,
            life: world.node(slot).life(),
            ledger: commit.ledger,
            outcome: abort(session),
            timeout: commit.timeout,
            attempts: Attempts::default(),
            request: None,
            propose_at: world.now_us(),
            wait_until: world.now_us() + commit.timeout.as_micros() as u64,
            settle: true,
        });
    }
}

/// Milliseconds on `slot`'s clock since `opened`.
fn ms_since(world: &World, slot: usize, opened: Instant) -> u64 {
    world.local_time(slot).saturating_since(opened).as_millis() as u64
}

/// Hands the driver every answer (or silence) that reached the coordinator, in the order
/// they arrived.
fn hear_answers(world: &mut World, d: &mut Driving, plan: &SessionPlan) {
    let mut ended: Vec<(u64, u64, u64)> = d
        .asks
        .iter()
        .filter_map(|(&message, &ask)| {
            let record = world.agent_messages().get(message as usize)?;
            record.ended_us.map(|at| (at, message, ask))
        })
        .collect();
    ended.sort_unstable();
    for (_, message, ask) in ended {
        d.asks.remove(&message);
        let record = &world.agent_messages()[message as usize];
        let (ok, agent, at) = (
            record.outcome == Some("ok"),
            record.agent.clone(),
            record.ended_local,
        );
        let elapsed = at.map_or(0, |at| at.saturating_since(d.opened).as_millis() as u64);
        let heard = match d.pending.remove(&ask) {
            Some(asked) if ok => Heard::Answer(answer_of(world, plan, &agent, &asked)),
            _ => Heard::Silent,
        };
        d.driver.hear(elapsed, ask, heard);
    }
}

/// Sends each ask the driver has as an agent request from the coordinator.
fn send_asks(world: &mut World, d: &mut Driving, names: &[String]) {
    for ask in d.driver.take_asks() {
        let Some(name) = names.get(ask.agent) else {
            continue;
        };
        let wait = Duration::from_millis(ask.wait_ms);
        if let Some(message) = world.message_agent(d.slot, name, true, wait) {
            d.asks.insert(message, ask.id);
            d.pending.insert(ask.id, ask.ask);
        }
    }
}

/// What a simulated agent answers to `asked`, drawn from the seed: mostly a fitting answer
/// (a bid, a ballot, a decline), sometimes a replay of an older session's answer or an answer
/// of the wrong kind, which the driver must refuse.
pub fn answer_of(world: &mut World, plan: &SessionPlan, agent: &str, asked: &Ask) -> SessionAnswer {
    let roll = world.random_below(100);
    let answer = if roll < 3 {
        Answer::Offer(1.0) // Not an answer to any of the asks simulated: the wrong kind.
    } else {
        fitting(world, plan, agent, asked)
    };
    let session = if (3..7).contains(&roll) {
        SessionId(plan.id.0.saturating_sub(1)) // A replay of the session before.
    } else {
        plan.id
    };
    SessionAnswer { session, answer }
}

fn fitting(world: &mut World, plan: &SessionPlan, agent: &str, asked: &Ask) -> Answer {
    if let Ask::Prices { prices, .. } = asked {
        return Answer::Excess(excess_demand(agent, prices));
    }
    let declines = world.random_below(10) == 0;
    match asked {
        _ if declines => Answer::Decline,
        Ask::Bid { .. } => Answer::Bid(Money(world.random_below(400))),
        Ask::Vote { candidates, .. } => {
            let pick = world.random_below(candidates.len().max(1) as u64) as usize;
            match &plan.mechanism {
                Mechanism::Vote {
                    method: Method::Approval,
                    ..
                } => Answer::Ballot(Ballot::Approval(vec![pick])),
                _ => Answer::Ballot(Ballot::Choice(pick)),
            }
        }
        Ask::Stay { .. } | Ask::Take { .. } => {
            if world.random_below(3) == 0 {
                Answer::Decline
            } else {
                Answer::Accept
            }
        }
        _ => Answer::Decline,
    }
}

/// A ledger: a `coordinated` record of `fields` (name, type, first value) plus the `session`
/// field the settle rule keeps (the last session committed), decided by `acceptors`.
pub fn ledger_spec<'a>(
    fields: impl IntoIterator<Item = (&'a str, VarType, VarValue)>,
    acceptors: BTreeSet<Life>,
) -> VarSpec {
    let whole = VarType::Int {
        min: 0,
        max: i64::MAX,
    };
    let session = ("session", whole, VarValue::Int(0));
    let (types, values): (BTreeMap<_, _>, BTreeMap<_, _>) = fields
        .into_iter()
        .chain([session])
        .map(|(k, t, v)| ((k.to_owned(), t), (k.to_owned(), v)))
        .unzip();
    VarSpec {
        ty: VarType::Record(types),
        policy: Policy::Coordinated,
        initial: VarValue::Record(values),
        acceptors,
    }
}

/// A Cobb-Douglas trader's excess demand at `prices` (one per good): its tastes and endowment
/// follow from its name, so it answers every round of a tatonnement consistently and the
/// market has an equilibrium the prices can converge to.
pub fn excess_demand(agent: &str, prices: &[f64]) -> Vec<f64> {
    let goods = prices.len();
    let mut seed = agent.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    let mut unit = || {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        (seed >> 11) as f64 / (1u64 << 53) as f64
    };
    let tastes: Vec<f64> = (0..goods).map(|_| 0.2 + unit()).collect();
    let endowment: Vec<f64> = (0..goods).map(|_| 1.0 + 4.0 * unit()).collect();
    let total: f64 = tastes.iter().sum();
    let wealth: f64 = prices.iter().zip(&endowment).map(|(p, e)| p * e).sum();
    (0..goods)
        .map(|j| tastes[j] / total * wealth / prices[j].max(f64::MIN_POSITIVE) - endowment[j])
        .collect()
}
