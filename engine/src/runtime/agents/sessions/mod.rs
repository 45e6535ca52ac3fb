//! Coordination sessions across the cluster: `node.agents().run(session)` runs one of the
//! `foundation_agents` mechanisms — sealed-bid, English, Dutch and combinatorial (VCG)
//! auctions, votes, Contract Net, a call market, a negotiation, a tatonnement — between agents
//! found by capability on any node, and commits its outcome to a ledger variable in one
//! majority-decided step.
//!
//! Every rule of a session lives in the core, sans-IO (`foundation_core::agents::sessions`:
//! the driver of the mechanism's `foundation_agents::Protocol` machine, the mechanisms, the
//! ledger's settle rule, the rendezvous choice), where the simulator runs the same code under
//! a seed; this module carries it over the cluster. The coordinator runs the core's driver
//! (see `drive`): every ask the driver has for an agent is a [`SessionMessage::Invite`]
//! request over the agents' messaging, carrying an [`Ask`]; the answers go back to the driver
//! at the time they arrive (milliseconds since the session opened); its deadlines are tokio
//! sleeps, round after round for the clock auctions. Once
//! the machine decides, the coordinator commits the outcome to the ledger ([`crate::runtime::vars::VarsHandle::commit_outcome`]: every field and
//! debit together or nothing, once per session), and tells each participant how it ended
//! ([`SessionMessage::Notice`]).
//!
//! Refused, with the reason in [`SessionReport::rejected`], and never changing the outcome: an
//! answer naming another session (a replay of an old one), an answer of the wrong kind, an
//! answer after the deadline, and anything the machine itself refuses (over budget, malformed).
//! A participant that does not answer is silent, not agreeing: it is counted absent.
//!
//! The coordinator is the caller, or the member rendezvous hashing of the session id picks
//! ([`Coordinator::Rendezvous`], see `placement`).
//!
//! Coordinator failure: the session is aborted, never resumed (why: `placement`). The
//! invitation names the ledger. A participant that hears no notice within the deadline plus
//! the commit time may call [`AgentsHandle::settle_session`], which commits an *empty*
//! outcome for the session (it aborts the session) — or learns that the session already
//! committed, or that a later session did (sessions commit to a ledger in increasing id
//! order, see `foundation_core::vars::outcome`); a caller whose placed coordinator dies does
//! the same ([`SessionError::CoordinatorLost`]). Either way the ledger holds exactly one
//! outcome for the session, everyone who asks learns the same version, and a coordinator that
//! comes back finds its session settled ([`CommitState::AlreadyCommitted`]).

use std::time::Duration;

mod drive;
mod log;
pub(super) mod placement;

pub(crate) use log::SessionLog;
pub use log::SessionRow;
pub(crate) use placement::COORDINATOR;

use foundation_agents::Money;
use foundation_core::agents::sessions::{abort, ledger_outcome, Attempts, Landing, Proposed};
pub use foundation_core::agents::sessions::{
    Answer, Ask, Commit, CommitState, Decision, Mechanism, SessionAnswer, Settled,
};
use foundation_core::vars::{Outcome, SessionId};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::AgentsHandle;
use crate::runtime::request::VarWrite;
use crate::runtime::vars::{counter, propose, VarsCallError};

/// One session to run.
#[derive(Clone, Debug, Serialize, Deserialize)]
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
    /// Which node coordinates it.
    pub coordinator: Coordinator,
}

/// Which node coordinates a session (drives its machine and commits its outcome).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Coordinator {
    /// The node that calls [`AgentsHandle::run`].
    #[default]
    Caller,
    /// The live member with the highest rendezvous weight for the session id, this node
    /// included: every node that sees the same members picks the same one, and sessions
    /// spread over the cluster. See `placement`.
    Rendezvous,
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

/// How a session ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SessionReport {
    /// The session.
    pub session: SessionId,
    /// The participants invited, by name.
    pub participants: Vec<String>,
    /// How many answered (a decline is an answer) in time with something accepted.
    pub answered: usize,
    /// Answers refused, with the reason: `(agent, reason)`.
    pub rejected: Vec<(String, String)>,
    /// Rounds of asks (1 for a single-round mechanism; a clock auction's rounds or ticks).
    pub rounds: u64,
    /// What the mechanism decided.
    pub decision: Decision,
    /// Whether it reached the ledger.
    pub commit: CommitState,
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
    /// The node placed to coordinate the session could not run it.
    #[error("coordinator {coordinator} could not run the session: {why}")]
    Remote {
        /// The coordinator.
        coordinator: foundation_core::NodeId,
        /// Why.
        why: String,
    },
    /// The node placed to coordinate the session was lost before it reported; the session
    /// was settled on its ledger (see `placement`): aborted by this call, or found decided.
    #[error("coordinator {coordinator} lost mid-session ({why}); settled: {settled:?}")]
    CoordinatorLost {
        /// The coordinator.
        coordinator: foundation_core::NodeId,
        /// How it was lost.
        why: String,
        /// How the session was settled on its ledger; `None` without a ledger.
        settled: Option<Settled>,
    },
}

impl AgentsHandle {
    /// Runs `session` with every agent of the cluster that has its capability, coordinated by
    /// this node or the one [`Session::coordinator`] places it on; see the [module
    /// docs](self).
    pub async fn run(&self, session: Session) -> Result<SessionReport, SessionError> {
        let at = match session.coordinator {
            Coordinator::Caller => return self.run_here(session).await,
            Coordinator::Rendezvous => self.coordinator_of(session.id),
        };
        if at.id == self.node() {
            self.run_here(session).await
        } else {
            self.run_at(at, session).await
        }
    }

    /// Runs `session` coordinated by this node, wherever it was placed.
    async fn run_here(&self, session: Session) -> Result<SessionReport, SessionError> {
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
        if !session.mechanism.commits() && session.commit.is_some() {
            let why = "its prices are real numbers and do not commit to a ledger";
            let why = format!("{}: {why}", session.mechanism.name());
            return Err(SessionError::Config(why));
        }
        let opened = Instant::now();
        let entry = self.shared.sessions.opened(&session, names.len());
        let mechanism = session.mechanism.name();
        self.session_event(
            &session,
            format!("opened with {} participants", names.len()),
        );
        let drove = match drive::drive(self, &session, &names).await {
            Ok(drove) => drove,
            Err(error) => {
                self.session_event(&session, format!("refused: {error}"));
                let took = opened.elapsed();
                self.shared
                    .sessions
                    .refused(entry, &error.to_string(), took);
                return Err(error);
            }
        };
        let commit = self.commit(&session, &names, &drove.decision).await;
        self.notify(&session, &names, &drove.decision, &commit)
            .await;
        let labels = (mechanism, commit.label());
        self.shared.metrics.session(labels, drove.rounds, opened);
        let decided = drove.decision.summary(&names);
        let what = format!(
            "{decided}; {} of {} answered, {} refused; {commit:?}",
            drove.answered,
            names.len(),
            drove.rejected.len()
        );
        self.session_event(&session, what);
        let report = SessionReport {
            session: session.id,
            participants: names,
            answered: drove.answered,
            rejected: drove.rejected,
            rounds: drove.rounds,
            decision: drove.decision,
            commit,
        };
        self.shared
            .sessions
            .ended(entry, &report, decided, opened.elapsed());
        Ok(report)
    }

    /// The sessions this node coordinated: running ones and the most recent that ended,
    /// oldest first.
    pub fn sessions(&self) -> Vec<SessionRow> {
        self.shared.sessions.rows()
    }

    fn session_event(&self, session: &Session, what: String) {
        let _ = self.shared.events.send(super::AgentEvent::Session {
            session: session.id,
            mechanism: session.mechanism.name(),
            what,
        });
    }

    /// Commits the decision to the session's ledger, applying it again to the newest record
    /// while other outcomes win the versions it aimed at; draws the price from the escrow
    /// counter first, if one is named.
    async fn commit(
        &self,
        session: &Session,
        names: &[String],
        decision: &Decision,
    ) -> CommitState {
        let Some(commit) = &session.commit else {
            return CommitState::NotRequested;
        };
        let (outcome, paid) =
            match ledger_outcome(session.id, &session.mechanism, commit, names, decision) {
                Ok(Some(writes)) => writes,
                Ok(None) => return CommitState::NotRequested,
                Err(why) => return CommitState::NotCommitted(why),
            };
        let escrow = commit.counter.as_deref().filter(|_| paid > Money::ZERO);
        if let Some(name) = escrow {
            let drawn = counter(&self.shared.requests, name, paid.minor(), false).await;
            if let Err(e) = drawn {
                return CommitState::NotCommitted(format!(
                    "counter {name:?} cannot pay {paid}: {e}"
                ));
            }
        }
        let landing = self.land(&commit.ledger, &outcome, commit.timeout).await;
        if let Some(name) = escrow.filter(|_| landing.refunds()) {
            if let Err(e) = counter(&self.shared.requests, name, paid.minor(), true).await {
                tracing::warn!(counter = name, error = %e, "units drawn for an outcome that did not land were not refilled");
            }
        }
        landing.commit_state(escrow.map(|name| (name, paid)))
    }

    /// Commits `outcome` to `ledger`, applying it again to the newest record while other
    /// sessions win the versions it aimed at, until it lands or its session is found settled.
    /// A proposal refused only because this node's own write on the ledger is under way
    /// waits for that write inside `propose`.
    async fn land(&self, ledger: &str, outcome: &Outcome, timeout: Duration) -> Landing {
        let mut attempts = Attempts::default();
        loop {
            let write = VarWrite::Outcome(outcome.clone());
            let proposed = match propose(&self.shared.requests, ledger, write, timeout).await {
                Ok(cas) => Proposed::Cas(cas),
                Err(VarsCallError::Refused(e)) => Proposed::Refused(e),
                Err(e) => Proposed::Unanswered(e.to_string()),
            };
            match attempts.after(proposed) {
                Some(landing) => return landing,
                None => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    }

    /// Settles session `session` on ledger `ledger` when its coordinator went silent: commits
    /// an empty outcome for it (the session is aborted) unless it already committed one.
    pub async fn settle_session(
        &self,
        ledger: &str,
        session: SessionId,
        timeout: Duration,
    ) -> Settled {
        let landing = self.land(ledger, &abort(session), timeout).await;
        landing.settled()
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
            decided: decision.summary(names),
            committed,
        };
        for name in names {
            let _ = self.send(name, &notice).await;
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
