//! Coordination sessions across the cluster: `node.agents().run(session)` runs one of the
//! `foundation_agents` mechanisms between agents found by capability on any node, and commits
//! its outcome to a ledger variable in one majority-decided step.
//!
//! The coordinator is the calling node. It invites every agent that declared the session's
//! capability (a [`SessionMessage::Invite`] request over the agents' messaging), feeds the
//! answers that arrive to the mechanism's `foundation_agents::Protocol` machine at the time they arrive
//! (milliseconds since the session opened), closes the machine at the deadline, commits the
//! outcome to the ledger ([`crate::runtime::vars::VarsHandle::commit_outcome`]: every field and
//! debit together or nothing, once per session), and tells each participant how it ended
//! ([`SessionMessage::Notice`]).
//!
//! Refused, with the reason in [`SessionReport::rejected`], and never changing the outcome: an
//! answer naming another session (a replay of an old one), an answer of the wrong kind, an
//! answer after the deadline, and anything the machine itself refuses (over budget, malformed).
//! A participant that does not answer is silent, not agreeing: it is counted absent.
//!
//! Coordinator failure: the invitation names the ledger. A participant that hears no notice
//! within the deadline plus the commit time may call [`AgentsHandle::settle_session`], which
//! commits an *empty* outcome for the session (it aborts the session) — or learns that the
//! session already committed, or that a later session did (sessions commit to a ledger in
//! increasing id order, see `foundation_core::vars::outcome`). Either way the ledger holds exactly one outcome for the session,
//! every participant that asks learns the same version, and a coordinator that comes back
//! finds its session settled ([`CommitState::AlreadyCommitted`]). Resuming a session on a new
//! coordinator from replicated session state is not built.

use std::collections::BTreeMap;
use std::time::Duration;

use foundation_agents::auction::sealed::{Pricing, SealedBidAuction, SealedConfig, SealedMessage};
use foundation_agents::auction::AuctionOutcome;
use foundation_agents::cas::CasOutcome;
use foundation_agents::variable::VarValue;
use foundation_agents::voting::{
    Ballot, Election, ElectionConfig, Method, VoteError, VoteMessage, VoteOutcome,
};
use foundation_agents::{AgentId, Money, Rejection, Time};
use foundation_core::vars::{Outcome, SessionId, VarsError};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::AgentsHandle;
use crate::runtime::request::VarWrite;
use crate::runtime::vars::{propose, VarsCallError};

/// How long past the deadline the coordinator still listens, so that a late answer is refused
/// as late (with its reason) rather than lost as a timeout.
const LATE_GRACE: Duration = Duration::from_millis(250);
/// Attempts to commit when other outcomes keep winning the ledger's next version.
const COMMIT_ATTEMPTS: usize = 8;

/// What a session decides, and how.
#[derive(Clone, Debug)]
pub enum Mechanism {
    /// A sealed-bid auction of `item`; participants answer [`Answer::Bid`].
    SealedBid {
        /// What is sold.
        item: String,
        /// First or second price.
        pricing: Pricing,
        /// The lowest acceptable bid.
        reserve: Money,
    },
    /// An election; participants answer [`Answer::Ballot`].
    Vote {
        /// What is decided.
        question: String,
        /// The options, by label.
        candidates: Vec<String>,
        /// The counting rule.
        method: Method,
        /// Fraction of the participants that must vote, in [0, 1].
        quorum: f64,
    },
}

impl Mechanism {
    /// Its name in metrics and events.
    pub fn name(&self) -> &'static str {
        match self {
            Mechanism::SealedBid { .. } => "sealed-bid",
            Mechanism::Vote { .. } => "vote",
        }
    }
}

impl CommitState {
    /// Its label in metrics.
    pub fn label(&self) -> &'static str {
        match self {
            CommitState::NotRequested => "decided",
            CommitState::Committed { .. } => "committed",
            CommitState::AlreadyCommitted { .. } => "already_committed",
            CommitState::NotCommitted(_) => "not_committed",
        }
    }
}

/// Where a session's outcome lands: fields of a ledger (a `coordinated` record, see
/// `foundation_core::vars::outcome`).
#[derive(Clone, Debug)]
pub struct Commit {
    /// The ledger variable.
    pub ledger: String,
    /// The field that takes the winner (an auction's winning agent, an election's label), as
    /// a `Choice`.
    pub winner_field: String,
    /// An auction's price, as an `Int` field.
    pub price_field: Option<String>,
    /// The budget an auction's price is debited from, an `Int` field.
    pub budget_field: Option<String>,
    /// How long the commit may take.
    pub timeout: Duration,
}

/// One session to run.
#[derive(Clone, Debug)]
pub struct Session {
    /// Its identity, unique in the cluster: a ledger takes one outcome per session, in
    /// increasing order of ids (take ids that grow with time).
    pub id: SessionId,
    /// The mechanism.
    pub mechanism: Mechanism,
    /// Agents with this capability, on any node, take part.
    pub capability: String,
    /// How long participants have to answer.
    pub answer_within: Duration,
    /// Where the outcome commits, if anywhere.
    pub commit: Option<Commit>,
}

/// What a coordinator sends a participant agent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum SessionMessage {
    /// Take part: answer (as the request's answer) with a [`SessionAnswer`].
    Invite {
        /// The session.
        session: SessionId,
        /// What is asked.
        ask: Ask,
        /// Milliseconds left to answer.
        within_ms: u64,
        /// The ledger the outcome commits to, to settle the session if the coordinator fails.
        ledger: Option<String>,
        /// How long the coordinator may take to commit after the deadline.
        commit_ms: u64,
    },
    /// How the session ended.
    Notice {
        /// The session.
        session: SessionId,
        /// What it decided, in words.
        decided: String,
        /// Whether it is committed (and at which ledger version).
        committed: Option<u64>,
    },
}

/// What a participant is asked.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Ask {
    /// A sealed bid for `item`, at least `reserve`.
    Bid {
        /// What is sold.
        item: String,
        /// The lowest acceptable bid.
        reserve: Money,
    },
    /// A ballot on `question` over `candidates` (indices into it).
    Vote {
        /// What is decided.
        question: String,
        /// The options.
        candidates: Vec<String>,
    },
}

/// A participant's answer to an invitation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SessionAnswer {
    /// The session answered; an answer naming another is refused.
    pub session: SessionId,
    /// The answer.
    pub answer: Answer,
}

/// A participant's answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Answer {
    /// A sealed bid.
    Bid(Money),
    /// A ballot.
    Ballot(Ballot),
    /// No bid, no vote.
    Decline,
}

/// What the mechanism decided.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// An auction's outcome.
    Auction(AuctionOutcome),
    /// An election's outcome, or why it could not decide.
    Vote(Result<VoteOutcome, VoteError>),
}

/// Whether the outcome reached the ledger.
#[derive(Clone, Debug, PartialEq)]
pub enum CommitState {
    /// No ledger was named, or nothing was decided to commit.
    NotRequested,
    /// Committed as this version of the ledger, on a majority of its acceptors.
    Committed {
        /// The ledger version the outcome wrote.
        version: u64,
    },
    /// This session had already committed an outcome, as this ledger version (a replay of
    /// the session, or a retry after an answer was lost): nothing new was written.
    AlreadyCommitted {
        /// The ledger version the session's earlier outcome wrote.
        version: u64,
    },
    /// Not committed, and nothing of it shows: why.
    NotCommitted(String),
}

/// How a session ended.
#[derive(Clone, Debug, PartialEq)]
pub struct SessionReport {
    /// The session.
    pub session: SessionId,
    /// The participants invited, by name.
    pub participants: Vec<String>,
    /// How many answered (a decline is an answer) in time with something accepted.
    pub answered: usize,
    /// Answers refused, with the reason: `(agent, reason)`.
    pub rejected: Vec<(String, String)>,
    /// What the mechanism decided.
    pub decision: Decision,
    /// Whether it reached the ledger.
    pub commit: CommitState,
}

/// How [`AgentsHandle::settle_session`] found a session.
#[derive(Clone, Debug, PartialEq)]
pub enum Settled {
    /// The session had committed its outcome (or another participant's abort) as this ledger
    /// version.
    Decided {
        /// The version.
        version: u64,
    },
    /// This call aborted it: the ledger version holds no writes of the session.
    Aborted {
        /// The version.
        version: u64,
    },
    /// A later session committed to the ledger, so this one never can any more (it may have
    /// committed before that one: read the ledger's history).
    Closed {
        /// The ledger's last session.
        last: u64,
    },
    /// Not settled (no majority, or the ledger refused): ask again later.
    Unknown(String),
}

/// Why a session could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// No agent of the cluster has the capability.
    #[error("no agent has capability {0:?}")]
    NoParticipants(String),
    /// The mechanism's configuration is invalid.
    #[error("invalid mechanism: {0}")]
    Config(String),
}

/// How a commit to a ledger ended.
enum Landing {
    /// This outcome wrote the version.
    Won(u64),
    /// The session had already written the version.
    Decided(u64),
    /// A later session (this one) committed first: this session can no longer commit.
    Closed(u64),
    /// Nothing landed: why.
    Failed(String),
}

/// One participant's reply as it arrived.
struct Arrival {
    name: String,
    at: Time,
    reply: Option<SessionAnswer>,
}

impl AgentsHandle {
    /// Runs `session` with every agent of the cluster that has its capability, coordinated by
    /// this node; see the [module docs](self).
    pub async fn run(&self, session: Session) -> Result<SessionReport, SessionError> {
        let mut names: Vec<String> = self
            .with_capability(&session.capability)
            .into_iter()
            .map(|a| a.name)
            .collect();
        names.sort();
        names.dedup();
        if names.is_empty() {
            return Err(SessionError::NoParticipants(session.capability.clone()));
        }
        let ids: BTreeMap<String, AgentId> = (0u64..)
            .zip(&names)
            .map(|(i, n)| (n.clone(), AgentId(i)))
            .collect();
        let deadline = Time(millis(session.answer_within));
        let (ask, mut machine) = open(&session, &ids, deadline)?;
        let opened = Instant::now();
        let mechanism = session.mechanism.name();
        self.session_event(
            &session,
            format!("opened with {} participants", names.len()),
        );
        let arrivals = self.invite(&session, &names, ask).await;
        let (answered, rejected) = machine.feed(session.id, &ids, arrivals);
        let decision = machine.close(deadline);
        let commit = self.commit(&session, &names, &decision).await;
        self.notify(&session, &names, &decision, &commit).await;
        self.shared
            .metrics
            .session(mechanism, commit.label(), opened);
        let what = format!(
            "{}; {answered} of {} answered, {} refused; {commit:?}",
            summary(&decision),
            names.len(),
            rejected.len()
        );
        self.session_event(&session, what);
        Ok(SessionReport {
            session: session.id,
            participants: names,
            answered,
            rejected,
            decision,
            commit,
        })
    }

    fn session_event(&self, session: &Session, what: String) {
        let _ = self.shared.events.send(super::AgentEvent::Session {
            session: session.id,
            mechanism: session.mechanism.name(),
            what,
        });
    }

    /// Invites every participant at once and collects the replies with their arrival times.
    async fn invite(&self, session: &Session, names: &[String], ask: Ask) -> Vec<Arrival> {
        let opened = Instant::now();
        let within = session.answer_within + LATE_GRACE;
        let mut asks = tokio::task::JoinSet::new();
        for name in names {
            let commit = session.commit.as_ref();
            let message = SessionMessage::Invite {
                session: session.id,
                ask: ask.clone(),
                within_ms: millis(session.answer_within),
                ledger: commit.map(|c| c.ledger.clone()),
                commit_ms: commit.map_or(0, |c| millis(c.timeout)),
            };
            let (handle, name) = (self.clone(), name.clone());
            asks.spawn(async move {
                let reply = handle.request(&name, &message, within).await.ok();
                let at = Time(millis(opened.elapsed()));
                Arrival { name, at, reply }
            });
        }
        let mut arrivals = Vec::with_capacity(names.len());
        while let Some(joined) = asks.join_next().await {
            arrivals.extend(joined.ok());
        }
        // In arrival order, then by name: the order the machine breaks ties by.
        arrivals.sort_by(|a, b| (a.at, &a.name).cmp(&(b.at, &b.name)));
        arrivals
    }

    /// Commits the decision to the session's ledger, applying it again to the newest record
    /// while other outcomes win the versions it aimed at.
    async fn commit(
        &self,
        session: &Session,
        names: &[String],
        decision: &Decision,
    ) -> CommitState {
        let Some(commit) = &session.commit else {
            return CommitState::NotRequested;
        };
        let Some(outcome) = ledger_outcome(session.id, commit, names, decision) else {
            return CommitState::NotRequested;
        };
        match self.land(&commit.ledger, &outcome, commit.timeout).await {
            Landing::Won(version) => CommitState::Committed { version },
            Landing::Decided(version) => CommitState::AlreadyCommitted { version },
            Landing::Closed(last) => {
                CommitState::NotCommitted(format!("a later session, {last}, committed first"))
            }
            Landing::Failed(why) => CommitState::NotCommitted(why),
        }
    }

    /// Commits `outcome` to `ledger`, applying it again to the newest record while other
    /// sessions win the versions it aimed at, until it lands or its session is found settled.
    async fn land(&self, ledger: &str, outcome: &Outcome, timeout: Duration) -> Landing {
        for _ in 0..COMMIT_ATTEMPTS {
            let write = VarWrite::Outcome(outcome.clone());
            match propose(&self.shared.requests, ledger, write, timeout).await {
                Ok(CasOutcome::Won { version }) => return Landing::Won(version),
                Ok(CasOutcome::NoMajority) => {
                    return Landing::Failed("no majority of the ledger's acceptors".into())
                }
                Ok(_) => tokio::time::sleep(Duration::from_millis(5)).await,
                Err(VarsCallError::Refused(VarsError::SessionDecided { version, .. })) => {
                    return Landing::Decided(version)
                }
                Err(VarsCallError::Refused(VarsError::SessionStale { last, .. })) => {
                    return Landing::Closed(last)
                }
                Err(e) => return Landing::Failed(e.to_string()),
            }
        }
        Landing::Failed("other outcomes kept winning the ledger".into())
    }

    /// Settles session `session` on ledger `ledger` when its coordinator went silent: commits
    /// an empty outcome for it (the session is aborted) unless it already committed one.
    pub async fn settle_session(
        &self,
        ledger: &str,
        session: SessionId,
        timeout: Duration,
    ) -> Settled {
        let abort = Outcome {
            session,
            writes: BTreeMap::new(),
            debits: BTreeMap::new(),
        };
        match self.land(ledger, &abort, timeout).await {
            Landing::Won(version) => Settled::Aborted { version },
            Landing::Decided(version) => Settled::Decided { version },
            Landing::Closed(last) => Settled::Closed { last },
            Landing::Failed(why) => Settled::Unknown(why),
        }
    }

    /// Tells every participant how the session ended (at most once each, not waited for).
    async fn notify(
        &self,
        session: &Session,
        names: &[String],
        decision: &Decision,
        commit: &CommitState,
    ) {
        let committed = match commit {
            CommitState::Committed { version } => Some(*version),
            _ => None,
        };
        let notice = SessionMessage::Notice {
            session: session.id,
            decided: summary(decision),
            committed,
        };
        for name in names {
            let _ = self.send(name, &notice).await;
        }
    }
}

/// The machine of a session's mechanism, opened at time 0.
enum Machine {
    Sealed(SealedBidAuction),
    Vote(Election),
}

fn open(
    session: &Session,
    ids: &BTreeMap<String, AgentId>,
    deadline: Time,
) -> Result<(Ask, Machine), SessionError> {
    let config_error =
        |e: foundation_agents::error::ConfigError| SessionError::Config(e.to_string());
    match &session.mechanism {
        Mechanism::SealedBid {
            item,
            pricing,
            reserve,
        } => {
            let config = SealedConfig::new(item.clone(), *pricing)
                .reserve(*reserve)
                .deadline(deadline)
                .participants(ids.values().copied());
            let machine = SealedBidAuction::new(config, Time(0)).map_err(config_error)?;
            let ask = Ask::Bid {
                item: item.clone(),
                reserve: *reserve,
            };
            Ok((ask, Machine::Sealed(machine)))
        }
        Mechanism::Vote {
            question,
            candidates,
            method,
            quorum,
        } => {
            let config = ElectionConfig {
                question: question.clone(),
                candidates: candidates.clone(),
                voters: ids.values().map(|id| (*id, 1.0)).collect(),
                method: *method,
                quorum: *quorum,
                deadline,
            };
            let machine = Election::new(config, Time(0)).map_err(config_error)?;
            let ask = Ask::Vote {
                question: question.clone(),
                candidates: candidates.clone(),
            };
            Ok((ask, Machine::Vote(machine)))
        }
    }
}

impl Machine {
    /// Feeds the replies in arrival order; returns how many were accepted and the refusals.
    fn feed(
        &mut self,
        session: SessionId,
        ids: &BTreeMap<String, AgentId>,
        arrivals: Vec<Arrival>,
    ) -> (usize, Vec<(String, String)>) {
        let mut answered = 0;
        let mut rejected = Vec::new();
        for Arrival { name, at, reply } in arrivals {
            let Some(reply) = reply else {
                continue; // Silent: absent, never counted as agreeing.
            };
            let result = match ids.get(&name) {
                Some(&id) if reply.session == session => self.take(at, id, reply.answer),
                Some(_) => Err(format!(
                    "answer names session {:?}, this is {session:?}",
                    reply.session
                )),
                None => Err("not a participant".into()),
            };
            match result {
                Ok(()) => answered += 1,
                Err(reason) => rejected.push((name, reason)),
            }
        }
        (answered, rejected)
    }

    fn take(&mut self, at: Time, id: AgentId, answer: Answer) -> Result<(), String> {
        let reason = |r: Rejection| r.to_string();
        match (self, answer) {
            (_, Answer::Decline) => Ok(()),
            (Machine::Sealed(m), Answer::Bid(amount)) => m
                .handle(at, id, SealedMessage::Bid { amount })
                .map_err(reason),
            (Machine::Vote(m), Answer::Ballot(ballot)) => m
                .handle(at, id, VoteMessage::Cast { ballot })
                .map_err(reason),
            _ => Err("an answer of the wrong kind for this mechanism".into()),
        }
    }

    fn close(&mut self, deadline: Time) -> Decision {
        match self {
            Machine::Sealed(m) => Decision::Auction(m.close(deadline)),
            Machine::Vote(m) => Decision::Vote(m.close(deadline)),
        }
    }
}

/// The ledger writes and debit a decision makes, if it decided anything to commit.
fn ledger_outcome(
    session: SessionId,
    commit: &Commit,
    names: &[String],
    decision: &Decision,
) -> Option<Outcome> {
    let mut outcome = Outcome {
        session,
        writes: BTreeMap::new(),
        debits: BTreeMap::new(),
    };
    let winner = match decision {
        Decision::Auction(auction) => {
            let award = auction.award.as_ref()?;
            if let Some(field) = &commit.price_field {
                let price = i64::try_from(award.price.minor()).ok()?;
                outcome.writes.insert(field.clone(), VarValue::Int(price));
            }
            if let Some(field) = &commit.budget_field {
                outcome.debits.insert(field.clone(), award.price.minor());
            }
            names.get(usize::try_from(award.winner.0).ok()?)?.clone()
        }
        Decision::Vote(Ok(vote)) => vote.label.clone(),
        Decision::Vote(Err(_)) => return None,
    };
    outcome
        .writes
        .insert(commit.winner_field.clone(), VarValue::Choice(winner));
    Some(outcome)
}

fn summary(decision: &Decision) -> String {
    match decision {
        Decision::Auction(a) => a.summary(),
        Decision::Vote(Ok(v)) => format!("elected {:?}", v.label),
        Decision::Vote(Err(e)) => e.to_string(),
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
