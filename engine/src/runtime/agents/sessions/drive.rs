//! The loop that drives one mechanism's `Protocol` machine between agents of the cluster,
//! whatever the mechanism: single-round (sealed bids, ballots, bundles, orders) or multi-round
//! (an English auction's rising clock, a Dutch auction's falling one, a Contract Net
//! announcement).
//!
//! Every notice the machine produces for an agent that asks for an answer becomes one request
//! to that agent (an [`Ask`] inside a [`SessionMessage::Invite`]), with the machine's next
//! deadline as its deadline; the answer is fed to the machine when it arrives, converted to
//! the machine's message *from the ask it answers* (so an answer to round 3 is a message for
//! round 3, and the machine refuses it if the clock moved on). At the machine's deadline the
//! loop fires its timeout; when every ask is answered before the deadline there is nothing
//! left to wait for, so the loop moves the machine's time to the deadline at once (an
//! auction's clock advances as soon as every bidder answered the price).
//!
//! Time given to the machine is the session's own: milliseconds since it opened, plus the
//! waits skipped that way, so it never goes backwards.

use std::collections::BTreeSet;
use std::time::Duration;

use foundation_agents::{AgentId, Outgoing, Protocol, Time};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::{millis, Answer, Ask, Decision, Mechanism, Session, SessionAnswer, SessionMessage};
use crate::runtime::agents::{AgentsHandle, DeliveryError};

/// How long past an ask's deadline the coordinator still listens, so that a late answer is
/// refused as late (with its reason) rather than lost as a timeout.
const LATE_GRACE: Duration = Duration::from_millis(250);

/// A mechanism's machine, as the session loop drives it.
pub(super) trait Mechanic: Protocol {
    /// What participant `to` is asked for `notice`; `None` for a notice that wants no answer
    /// (a result: the session's own [`SessionMessage::Notice`] tells how it ended).
    fn ask(mechanism: &Mechanism, to: &str, notice: &Self::Notice) -> Option<Ask>;
    /// The machine's message for `answer` to `asked`; `Ok(None)` when the machine needs none
    /// (a decline it has no message for); `Err` for an answer of the wrong kind.
    fn message(asked: &Ask, answer: Answer) -> Result<Option<Self::Message>, String>;
    /// The session's decision for the machine's outcome.
    fn decision(outcome: Self::Outcome) -> Decision;
}

/// What driving a machine to its outcome gave.
pub(super) struct Drove {
    /// What the mechanism decided.
    pub decision: Decision,
    /// Participants with at least one accepted answer (a decline is an answer).
    pub answered: usize,
    /// Answers refused, with the reason: `(agent, reason)`.
    pub rejected: Vec<(String, String)>,
    /// Batches of asks sent (an English auction's rounds, a Dutch auction's ticks).
    pub rounds: u64,
}

/// What came back from one ask.
struct Reply {
    agent: usize,
    asked: Ask,
    deadline: Time,
    heard: Heard,
}

enum Heard {
    Answer(SessionAnswer),
    /// The answer could not be decoded.
    Malformed(String),
    /// No answer: a timeout, an unreachable node, a stopped agent.
    Silent,
}

/// The session's time: real milliseconds since it opened plus the waits skipped.
struct Clock {
    opened: Instant,
    skipped: u64,
}

impl Clock {
    fn now(&self) -> Time {
        Time(millis(self.opened.elapsed()).saturating_add(self.skipped))
    }

    /// Moves the session's time to `t` at once, if it is ahead.
    fn skip_to(&mut self, t: Time) {
        self.skipped = self.skipped.saturating_add(t.since(self.now()));
    }

    /// The real instant session time `t` falls on.
    fn instant_of(&self, t: Time) -> Instant {
        self.opened + Duration::from_millis(t.0.saturating_sub(self.skipped))
    }
}

/// One run of a machine: its asks in flight and what they brought.
struct Run<'a, M> {
    handle: &'a AgentsHandle,
    session: &'a Session,
    names: &'a [String],
    machine: M,
    clock: Clock,
    sender: mpsc::UnboundedSender<Reply>,
    replies: mpsc::UnboundedReceiver<Reply>,
    asks: JoinSet<()>,
    pending: usize,
    answered: BTreeSet<usize>,
    rejected: Vec<(String, String)>,
    rounds: u64,
}

/// Drives `machine` (opened at session time 0 over participants `names`, agent `i` being
/// `AgentId(i)`) to its outcome; the `opening` asks go out first (the single-round machines,
/// and a negotiation's first mover, are told nothing by the machine itself).
pub(super) async fn drive<M: Mechanic>(
    handle: &AgentsHandle,
    session: &Session,
    names: &[String],
    machine: M,
    opening: Vec<(AgentId, Ask)>,
) -> Drove {
    let (sender, replies) = mpsc::unbounded_channel();
    let mut run = Run {
        handle,
        session,
        names,
        machine,
        clock: Clock {
            opened: Instant::now(),
            skipped: 0,
        },
        sender,
        replies,
        asks: JoinSet::new(),
        pending: 0,
        answered: BTreeSet::new(),
        rejected: Vec::new(),
        rounds: 0,
    };
    run.ask_all(opening);
    let outcome = run.until_decided().await;
    run.hear_stragglers().await;
    Drove {
        decision: M::decision(outcome),
        answered: run.answered.len(),
        rejected: run.rejected,
        rounds: run.rounds,
    }
}

impl<M: Mechanic> Run<'_, M> {
    async fn until_decided(&mut self) -> M::Outcome {
        loop {
            let notices = self.machine.drain_outbox();
            self.ask_notices(notices);
            if let Some(outcome) = self.machine.outcome() {
                return outcome.clone();
            }
            // A machine with neither an outcome nor a deadline would wait forever: decide now.
            let wake = self
                .machine
                .poll_timeout()
                .unwrap_or_else(|| self.clock.now());
            if self.pending == 0 {
                // Nobody left to hear from before the deadline: it may as well be now.
                self.clock.skip_to(wake);
                self.machine.handle_timeout(wake);
                continue;
            }
            tokio::select! {
                Some(reply) = self.replies.recv() => self.hear(reply),
                () = tokio::time::sleep_until(self.clock.instant_of(wake)) => {
                    let now = self.clock.now();
                    self.machine.handle_timeout(now);
                }
            }
        }
    }

    /// After the decision: the answers still in flight (each bounded by its deadline plus the
    /// grace), so a late one is reported as refused rather than lost.
    async fn hear_stragglers(&mut self) {
        while self.pending > 0 {
            match self.replies.recv().await {
                Some(reply) => self.hear(reply),
                None => break,
            }
        }
    }

    fn ask_notices(&mut self, notices: Vec<Outgoing<M::Notice>>) {
        let mechanism = &self.session.mechanism;
        let name = |to: AgentId| usize::try_from(to.0).ok().and_then(|i| self.names.get(i));
        let asks = notices
            .iter()
            .filter_map(|n| {
                let to = name(n.to)?;
                M::ask(mechanism, to, &n.msg).map(|ask| (n.to, ask))
            })
            .collect();
        self.ask_all(asks);
    }

    /// Sends each ask to its participant, all at once; the replies come back on the channel.
    fn ask_all(&mut self, asks: Vec<(AgentId, Ask)>) {
        if asks.is_empty() {
            return;
        }
        self.rounds += 1;
        let now = self.clock.now();
        let fallback = now.plus_ms(millis(self.session.answer_within));
        let deadline = self.machine.poll_timeout().unwrap_or(fallback);
        let within_ms = deadline.since(now);
        let wait = Duration::from_millis(within_ms) + LATE_GRACE;
        let commit = self.session.commit.as_ref();
        for (to, ask) in asks {
            let Some(name) = usize::try_from(to.0).ok().and_then(|i| self.names.get(i)) else {
                continue; // The machine only addresses participants; nothing to send otherwise.
            };
            let message = SessionMessage::Invite {
                session: self.session.id,
                ask: ask.clone(),
                within_ms,
                ledger: commit.map(|c| c.ledger.clone()),
                commit_ms: commit.map_or(0, |c| millis(c.timeout)),
            };
            let (handle, name, sender) = (self.handle.clone(), name.clone(), self.sender.clone());
            let agent = to.0 as usize;
            self.pending += 1;
            self.asks.spawn(async move {
                let heard = match handle.request(&name, &message, wait).await {
                    Ok(answer) => Heard::Answer(answer),
                    Err(DeliveryError::Codec(why)) => Heard::Malformed(why),
                    Err(_) => Heard::Silent,
                };
                let reply = Reply {
                    agent,
                    asked: ask,
                    deadline,
                    heard,
                };
                let _ = sender.send(reply); // The session ended: nobody listens any more.
            });
        }
        let what = format!("round {}: asked {} participants", self.rounds, self.pending);
        self.handle.session_event(self.session, what);
    }

    /// Feeds one reply to the machine, or records why it is refused.
    fn hear(&mut self, reply: Reply) {
        self.pending = self.pending.saturating_sub(1);
        let agent = reply.agent;
        match self.take(reply) {
            Ok(false) => {} // Silent: absent, never counted as agreeing.
            Ok(true) => {
                self.answered.insert(agent);
            }
            Err(reason) => {
                let name = self.names.get(agent).cloned().unwrap_or_default();
                self.rejected.push((name, reason));
            }
        }
    }

    fn take(&mut self, reply: Reply) -> Result<bool, String> {
        let answer = match reply.heard {
            Heard::Silent => return Ok(false),
            Heard::Malformed(why) => return Err(format!("malformed answer: {why}")),
            Heard::Answer(answer) => answer,
        };
        if answer.session != self.session.id {
            let this = self.session.id;
            return Err(format!(
                "answer names session {:?}, this is {this:?}",
                answer.session
            ));
        }
        let now = self.clock.now();
        if now >= reply.deadline {
            let deadline = reply.deadline;
            return Err(format!(
                "answered at {now:?}, after the deadline {deadline:?}"
            ));
        }
        if let Some(message) = M::message(&reply.asked, answer.answer)? {
            let from = AgentId(reply.agent as u64);
            self.machine
                .handle(now, from, message)
                .map_err(|r| r.to_string())?;
        }
        Ok(true)
    }
}
