//! The machine that drives one mechanism's `Protocol` machine between agents, whatever the
//! mechanism: single-round (sealed bids, ballots, bundles, orders) or multi-round (an English
//! auction's rising clock, a Dutch auction's falling one, a Contract Net announcement).
//!
//! Every notice the mechanism's machine produces for an agent that asks for an answer becomes
//! one [`AskOut`] (an [`Ask`] for that agent, with the machine's next deadline as its deadline)
//! for the carrier to deliver as an agent request; the answer the carrier brings back
//! ([`SessionDriver::hear`]) is fed to the machine at the time it arrives, converted to the
//! machine's message *from the ask it answers* (so an answer to round 3 is a message for round
//! 3, and the machine refuses it if the clock moved on). At the machine's deadline the carrier
//! calls [`SessionDriver::handle_timeout`]; when every ask is answered before the deadline
//! there is nothing left to wait for, so the driver moves the machine's time to the deadline at
//! once (an auction's clock advances as soon as every bidder answered the price).
//!
//! Time is an input: the carrier gives the milliseconds since the session opened, on its own
//! clock (the runtime's, or a simulated node's). The machine's time is that plus the waits
//! skipped, so it never goes backwards.
//!
//! Refused, with the reason in [`Drove::rejected`], and never changing the outcome: an answer
//! naming another session (a replay of an old one), an answer of the wrong kind, an answer
//! after its ask's deadline, a malformed one, and anything the machine itself refuses. A
//! participant that does not answer is silent, not agreeing: it is counted absent. Every answer
//! the machine took is kept ([`Drove::acknowledged`]), so the outcome can be checked against
//! the same machine fed those answers on one node.

use std::collections::{BTreeMap, BTreeSet};

use foundation_agents::{AgentId, Outgoing, Protocol, Time};

use super::mechanism::{Answer, Ask, Decision, Mechanism, SessionAnswer};
use crate::vars::SessionId;

/// How long past an ask's deadline the coordinator still listens, so that a late answer is
/// refused as late (with its reason) rather than lost as a timeout.
pub const LATE_GRACE_MS: u64 = 250;

/// A mechanism's machine, as the session driver drives it.
pub(super) trait Mechanic: Protocol {
    /// What participant `to` is asked for `notice`; `None` for a notice that wants no answer
    /// (a result: the session's own notice tells how it ended).
    fn ask(mechanism: &Mechanism, to: &str, notice: &Self::Notice) -> Option<Ask>;
    /// The machine's message for `answer` to `asked`; `Ok(None)` when the machine needs none
    /// (a decline it has no message for); `Err` for an answer of the wrong kind.
    fn message(asked: &Ask, answer: Answer) -> Result<Option<Self::Message>, String>;
    /// The session's decision for the machine's outcome.
    fn decision(outcome: Self::Outcome) -> Decision;
}

/// One ask for the carrier to deliver to participant `agent` as a request.
#[derive(Clone, Debug, PartialEq)]
pub struct AskOut {
    /// Names the ask when its answer comes back ([`SessionDriver::hear`]).
    pub id: u64,
    /// The participant: an index into the session's names.
    pub agent: usize,
    /// What is asked.
    pub ask: Ask,
    /// Milliseconds the participant has to answer.
    pub within_ms: u64,
    /// How long the carrier's request may wait for the answer: the deadline plus
    /// [`LATE_GRACE_MS`], so a late answer is heard and refused as late.
    pub wait_ms: u64,
}

/// What came back for one ask.
#[derive(Clone, Debug, PartialEq)]
pub enum Heard {
    /// An answer.
    Answer(SessionAnswer),
    /// The answer could not be decoded.
    Malformed(String),
    /// No answer: a timeout, an unreachable node, a stopped agent.
    Silent,
}

/// One answer the machine took.
#[derive(Clone, Debug, PartialEq)]
pub struct Acked {
    /// The machine's time when it took it.
    pub at: Time,
    /// The participant (an index into the session's names).
    pub agent: usize,
    /// What it was asked.
    pub asked: Ask,
    /// What it answered.
    pub answer: Answer,
}

/// What driving a machine to its outcome gave.
#[derive(Clone, Debug, PartialEq)]
pub struct Drove {
    /// What the mechanism decided.
    pub decision: Decision,
    /// Participants with at least one accepted answer (a decline is an answer).
    pub answered: usize,
    /// Answers refused, with the reason: `(agent, reason)`.
    pub rejected: Vec<(String, String)>,
    /// Batches of asks sent (an English auction's rounds, a Dutch auction's ticks).
    pub rounds: u64,
    /// Every answer the machine took, in the order it took them.
    pub acknowledged: Vec<Acked>,
}

/// An ask awaiting its answer.
struct Pending {
    agent: usize,
    asked: Ask,
    deadline: Time,
}

/// One session's driver, over whichever mechanism it runs.
pub struct SessionDriver {
    run: Box<dyn Driving>,
}

/// [`Run`] with its mechanism's machine type erased.
trait Driving: Send {
    fn take_asks(&mut self) -> Vec<AskOut>;
    fn hear(&mut self, elapsed_ms: u64, ask: u64, heard: Heard);
    fn handle_timeout(&mut self, elapsed_ms: u64);
    fn poll_timeout(&self) -> Option<u64>;
    fn decision(&self) -> Option<&Decision>;
    fn in_flight(&self) -> usize;
    fn rounds(&self) -> u64;
    fn drove(&self) -> Option<Drove>;
}

impl SessionDriver {
    /// Drives `machine` (opened at session time 0 over participants `names`, agent `i` being
    /// `AgentId(i)`); the `opening` asks go out first (the single-round machines, and a
    /// negotiation's first mover, are told nothing by the machine itself).
    pub(super) fn new<M: Mechanic + Send + 'static>(
        session: SessionId,
        mechanism: &Mechanism,
        names: &[String],
        answer_within_ms: u64,
        machine: M,
        opening: Vec<(AgentId, Ask)>,
    ) -> Self {
        let mut run = Run {
            session,
            mechanism: mechanism.clone(),
            names: names.to_vec(),
            answer_within_ms,
            machine,
            skipped: 0,
            last_ms: 0,
            next_ask: 0,
            asks: BTreeMap::new(),
            outbox: Vec::new(),
            answered: BTreeSet::new(),
            rejected: Vec::new(),
            rounds: 0,
            acknowledged: Vec::new(),
            decision: None,
        };
        run.ask_all(opening);
        run.advance();
        Self { run: Box::new(run) }
    }

    /// The asks to deliver now; each batch taken is one round.
    pub fn take_asks(&mut self) -> Vec<AskOut> {
        self.run.take_asks()
    }

    /// The answer to ask `ask` came back (or it ended silent) at `elapsed_ms` since the
    /// session opened. An ask it does not know (answered already) is ignored.
    pub fn hear(&mut self, elapsed_ms: u64, ask: u64, heard: Heard) {
        self.run.hear(elapsed_ms, ask, heard);
    }

    /// The time [`poll_timeout`](Self::poll_timeout) named has come.
    pub fn handle_timeout(&mut self, elapsed_ms: u64) {
        self.run.handle_timeout(elapsed_ms);
    }

    /// When (milliseconds since the session opened) to call
    /// [`handle_timeout`](Self::handle_timeout); `None` once decided.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.run.poll_timeout()
    }

    /// The decision, once the machine made it.
    pub fn decision(&self) -> Option<&Decision> {
        self.run.decision()
    }

    /// Asks whose answers have not come back yet.
    pub fn in_flight(&self) -> usize {
        self.run.in_flight()
    }

    /// Batches of asks so far.
    pub fn rounds(&self) -> u64 {
        self.run.rounds()
    }

    /// Decided, and every ask's answer heard (a late one is refused, not lost): the session
    /// can report.
    pub fn finished(&self) -> bool {
        self.decision().is_some() && self.in_flight() == 0
    }

    /// What it gave, once decided.
    pub fn drove(&self) -> Option<Drove> {
        self.run.drove()
    }
}

/// One run of a machine: its asks in flight and what they brought.
struct Run<M> {
    session: SessionId,
    mechanism: Mechanism,
    names: Vec<String>,
    answer_within_ms: u64,
    machine: M,
    /// Milliseconds of waiting skipped: the machine's time is the carrier's plus these.
    skipped: u64,
    /// The latest carrier time seen, so the machine's time never goes backwards.
    last_ms: u64,
    next_ask: u64,
    asks: BTreeMap<u64, Pending>,
    outbox: Vec<AskOut>,
    answered: BTreeSet<usize>,
    rejected: Vec<(String, String)>,
    rounds: u64,
    acknowledged: Vec<Acked>,
    decision: Option<Decision>,
}

impl<M: Mechanic> Run<M> {
    /// The machine's time at carrier time `elapsed_ms`.
    fn at(&mut self, elapsed_ms: u64) -> Time {
        self.last_ms = self.last_ms.max(elapsed_ms);
        self.now()
    }

    fn now(&self) -> Time {
        Time(self.last_ms.saturating_add(self.skipped))
    }

    /// Sends the machine's new notices as asks, takes its outcome if it has one, and while no
    /// ask is in flight moves its time to its deadline at once.
    fn advance(&mut self) {
        while self.decision.is_none() {
            let notices = self.machine.drain_outbox();
            self.ask_notices(notices);
            if let Some(outcome) = self.machine.outcome() {
                self.decision = Some(M::decision(outcome.clone()));
                return;
            }
            if !self.asks.is_empty() {
                return;
            }
            // Nobody left to hear from before the deadline: it may as well be now. (A machine
            // with neither an outcome nor a deadline would wait forever: decide now.)
            let now = self.now();
            let wake = self.machine.poll_timeout().unwrap_or(now);
            self.skipped = self.skipped.saturating_add(wake.since(now));
            self.machine.handle_timeout(wake);
        }
    }

    fn ask_notices(&mut self, notices: Vec<Outgoing<M::Notice>>) {
        let asks = notices
            .iter()
            .filter_map(|n| {
                let to = self.name(n.to)?;
                M::ask(&self.mechanism, to, &n.msg).map(|ask| (n.to, ask))
            })
            .collect();
        self.ask_all(asks);
    }

    fn name(&self, agent: AgentId) -> Option<&String> {
        usize::try_from(agent.0)
            .ok()
            .and_then(|i| self.names.get(i))
    }

    /// Queues each ask for its participant, all with the machine's next deadline.
    fn ask_all(&mut self, asks: Vec<(AgentId, Ask)>) {
        if asks.is_empty() {
            return;
        }
        self.rounds += 1;
        let now = self.now();
        let fallback = now.plus_ms(self.answer_within_ms);
        let deadline = self.machine.poll_timeout().unwrap_or(fallback);
        let within_ms = deadline.since(now);
        for (to, ask) in asks {
            // The machine only addresses participants; nothing to send otherwise.
            let Some(agent) = usize::try_from(to.0).ok().filter(|&i| i < self.names.len()) else {
                continue;
            };
            let id = self.next_ask;
            self.next_ask += 1;
            self.asks.insert(
                id,
                Pending {
                    agent,
                    asked: ask.clone(),
                    deadline,
                },
            );
            self.outbox.push(AskOut {
                id,
                agent,
                ask,
                within_ms,
                wait_ms: within_ms.saturating_add(LATE_GRACE_MS),
            });
        }
    }

    /// Feeds one answer to the machine: `Ok(true)` taken, `Ok(false)` silent, `Err` refused.
    fn take(&mut self, elapsed_ms: u64, pending: &Pending, heard: Heard) -> Result<bool, String> {
        let answer = match heard {
            Heard::Silent => {
                self.planted_silence(elapsed_ms, pending);
                return Ok(false);
            }
            Heard::Malformed(why) => return Err(format!("malformed answer: {why}")),
            Heard::Answer(answer) => answer,
        };
        if answer.session != self.session {
            let this = self.session;
            return Err(format!(
                "answer names session {:?}, this is {this:?}",
                answer.session
            ));
        }
        let now = self.at(elapsed_ms);
        if now >= pending.deadline {
            let deadline = pending.deadline;
            return Err(format!(
                "answered at {now:?}, after the deadline {deadline:?}"
            ));
        }
        if let Some(message) = M::message(&pending.asked, answer.answer.clone())? {
            let from = self.sender(pending.agent);
            self.machine
                .handle(now, from, message)
                .map_err(|r| r.to_string())?;
        }
        self.acknowledged.push(Acked {
            at: now,
            agent: pending.agent,
            asked: pending.asked.clone(),
            answer: answer.answer,
        });
        Ok(true)
    }

    /// The planted bug of `FaultSwitch::SessionSilenceAsZeroDemand` (test builds only):
    /// a participant silent at a tatonnement's prices is fed to the machine as zero excess
    /// demand, so silence reads as a cleared market. Nothing without the switch.
    fn planted_silence(&mut self, elapsed_ms: u64, pending: &Pending) {
        let Ask::Prices { prices, .. } = &pending.asked else {
            return;
        };
        if !fault_on!(SessionSilenceAsZeroDemand) {
            return;
        }
        let zero = Answer::Excess(vec![0.0; prices.len()]);
        if let Ok(Some(message)) = M::message(&pending.asked, zero) {
            let now = self.at(elapsed_ms);
            let _ = self
                .machine
                .handle(now, AgentId(pending.agent as u64), message);
        }
    }

    /// The machine's identity of the participant an answer came from.
    fn sender(&self, agent: usize) -> AgentId {
        if fault_on!(SessionAnswerFromWrongAgent) {
            // The planted bug: the answer is credited to the next participant.
            return AgentId(((agent + 1) % self.names.len().max(1)) as u64);
        }
        AgentId(agent as u64)
    }
}

impl<M: Mechanic + Send> Driving for Run<M> {
    fn take_asks(&mut self) -> Vec<AskOut> {
        std::mem::take(&mut self.outbox)
    }

    fn hear(&mut self, elapsed_ms: u64, ask: u64, heard: Heard) {
        let Some(pending) = self.asks.remove(&ask) else {
            return;
        };
        let agent = pending.agent;
        match self.take(elapsed_ms, &pending, heard) {
            Ok(false) => {} // Silent: absent, never counted as agreeing.
            Ok(true) => {
                self.answered.insert(agent);
            }
            Err(reason) => {
                let name = self.names.get(agent).cloned().unwrap_or_default();
                self.rejected.push((name, reason));
            }
        }
        self.advance();
    }

    fn handle_timeout(&mut self, elapsed_ms: u64) {
        if self.decision.is_some() {
            return;
        }
        let now = self.at(elapsed_ms);
        self.machine.handle_timeout(now);
        self.advance();
    }

    fn poll_timeout(&self) -> Option<u64> {
        if self.decision.is_some() {
            return None;
        }
        Some(match self.machine.poll_timeout() {
            Some(wake) => wake.0.saturating_sub(self.skipped),
            None => self.last_ms,
        })
    }

    fn decision(&self) -> Option<&Decision> {
        self.decision.as_ref()
    }

    fn in_flight(&self) -> usize {
        self.asks.len()
    }

    fn rounds(&self) -> u64 {
        self.rounds
    }

    fn drove(&self) -> Option<Drove> {
        Some(Drove {
            decision: self.decision.clone()?,
            answered: self.answered.len(),
            rejected: self.rejected.clone(),
            rounds: self.rounds,
            acknowledged: self.acknowledged.clone(),
        })
    }
}
