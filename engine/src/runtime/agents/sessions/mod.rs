//! Coordination sessions across the cluster: `node.agents().run(session)` runs one of the
//! `foundation_agents` mechanisms — sealed-bid, English, Dutch and combinatorial (VCG)
//! auctions, votes, Contract Net, a call market — between agents found by capability on any
//! node, and commits its outcome to a ledger variable in one majority-decided step.
//!
//! The coordinator is the calling node. It drives the mechanism's `foundation_agents::Protocol`
//! machine (see `drive`): every notice the machine has for an agent that wants an answer is
//! a [`SessionMessage::Invite`] request over the agents' messaging, carrying an [`Ask`]; the
//! answers are fed to the machine at the time they arrive (milliseconds since the session
//! opened); its deadlines fire as timeouts, round after round for the clock auctions. Once
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

use std::collections::BTreeMap;
use std::time::Duration;

mod drive;
mod log;
mod mechanisms;
pub(super) mod placement;

pub(crate) use log::SessionLog;
pub use log::SessionRow;
pub(crate) use placement::COORDINATOR;

use foundation_agents::auction::sealed::Pricing;
use foundation_agents::auction::vcg::{BundleBid, VcgError, VcgSolution};
use foundation_agents::auction::AuctionOutcome;
use foundation_agents::cas::CasOutcome;
use foundation_agents::market::double::{ClearingOutcome, ClearingRule, Side};
use foundation_agents::negotiation::alternating::NegotiationOutcome;
use foundation_agents::negotiation::contract_net::ContractOutcome;
use foundation_agents::negotiation::strategy::Role;
use foundation_agents::variable::VarValue;
use foundation_agents::voting::{Ballot, Method, VoteError, VoteOutcome};
use foundation_agents::Money;
use foundation_core::vars::{Outcome, SessionId, VarsError};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::AgentsHandle;
use crate::runtime::request::VarWrite;
use crate::runtime::vars::{counter, propose, VarsCallError};
/// Attempts to commit when other outcomes keep winning the ledger's next version.
const COMMIT_ATTEMPTS: usize = 8;

/// What a session decides, and how.
#[derive(Clone, Debug, Serialize, Deserialize)]
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
    /// An English auction of `item`: a price clock rising from `start` by `increment` each
    /// round while two or more bidders stay; each round lasts the session's `answer_within`.
    /// Participants answer [`Ask::Stay`] with [`Answer::Accept`] (stay in) or
    /// [`Answer::Decline`] (drop out); a silent bidder is out (the activity rule).
    English {
        /// What is sold.
        item: String,
        /// The opening price, which is also the reserve.
        start: Money,
        /// The rise per round, at least one minor unit.
        increment: Money,
    },
    /// A Dutch auction of `item`: a price clock falling from `start` by `decrement` each tick
    /// (the session's `answer_within`) down to `floor`; the first [`Answer::Accept`] of an
    /// [`Ask::Take`] wins at that tick's price.
    Dutch {
        /// What is sold.
        item: String,
        /// The opening (highest) price.
        start: Money,
        /// The fall per tick, at least one minor unit.
        decrement: Money,
        /// The lowest price offered.
        floor: Money,
    },
    /// Contract Net: `task` goes to the cheapest contractor; participants answer
    /// [`Ask::Task`] with [`Answer::Bid`] (a cost) or [`Answer::Decline`] (refuse).
    ContractNet {
        /// The task.
        task: String,
        /// Costs above this are refused.
        max_cost: Option<Money>,
    },
    /// A combinatorial auction of `items` with exact winner determination and VCG payments;
    /// participants answer [`Ask::Bundles`] with [`Answer::Bundles`] (an XOR bid, bit `k` of a
    /// bundle standing for `items[k]`).
    Combinatorial {
        /// The auction's name.
        name: String,
        /// The items, at most `foundation_agents::auction::vcg::VCG_ITEMS_MAX`.
        items: Vec<String>,
    },
    /// Alternating-offers bargaining over a price between agents `buyer` and `seller` (both
    /// must have the session's capability; other participants are not asked): the mover
    /// answers [`Ask::Negotiate`] with [`Answer::Offer`], [`Answer::Accept`] (the standing
    /// offer) or [`Answer::Decline`] (quit); a mover silent for the session's `answer_within`
    /// ends it without agreement. Its prices are real numbers, so the agreement is reported
    /// and not committed to a ledger.
    Negotiation {
        /// What is negotiated.
        subject: String,
        /// The buying agent.
        buyer: String,
        /// The selling agent.
        seller: String,
        /// Who offers first.
        first_mover: Role,
        /// Offers before the last responder may only accept or quit.
        rounds_max: u32,
    },
    /// A call market (double auction) cleared once at the deadline; participants answer
    /// [`Ask::Order`] with [`Answer::Order`]. Its prices are real numbers, so a market's
    /// clearing is reported and not committed to a ledger.
    Market {
        /// The market's name.
        name: String,
        /// Uniform price or McAfee trade reduction.
        rule: ClearingRule,
    },
}

impl Mechanism {
    /// Its name in metrics and events.
    pub fn name(&self) -> &'static str {
        match self {
            Mechanism::SealedBid { .. } => "sealed-bid",
            Mechanism::Vote { .. } => "vote",
            Mechanism::English { .. } => "english",
            Mechanism::Dutch { .. } => "dutch",
            Mechanism::ContractNet { .. } => "contract-net",
            Mechanism::Combinatorial { .. } => "vcg",
            Mechanism::Market { .. } => "market",
            Mechanism::Negotiation { .. } => "negotiation",
        }
    }

    /// What it decides about: the item, question, task or market.
    pub fn subject(&self) -> &str {
        match self {
            Mechanism::SealedBid { item, .. }
            | Mechanism::English { item, .. }
            | Mechanism::Dutch { item, .. } => item,
            Mechanism::Vote { question, .. } => question,
            Mechanism::ContractNet { task, .. } => task,
            Mechanism::Combinatorial { name, .. } | Mechanism::Market { name, .. } => name,
            Mechanism::Negotiation { subject, .. } => subject,
        }
    }

    /// Whether its outcome can commit to a ledger (prices that are real numbers cannot).
    fn commits(&self) -> bool {
        !matches!(
            self,
            Mechanism::Market { .. } | Mechanism::Negotiation { .. }
        )
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
/// `foundation_core::vars::outcome`). An auction, an English or Dutch auction and Contract
/// Net write their winner, price (a contract's cost) and debit; a vote writes the label
/// elected; a combinatorial auction writes each item's winner into the field named as the
/// item (not `winner_field`) and the sum of the VCG payments as price and debit.
#[derive(Clone, Debug, Serialize, Deserialize)]
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
    /// An escrow counter (a `counter` variable) the price is also drawn from, on this
    /// coordinator's rights, just before the commit: a price it cannot draw is not committed;
    /// units drawn for an outcome that certainly did not land are refilled; when the commit's
    /// fate is unknown (no majority, a timeout) they stay drawn — the counter is never
    /// overspent, at the cost of units lost to the pool.
    pub counter: Option<String>,
    /// For a vote: the other fields the elected candidate sets, by candidate label (a
    /// candidate standing for a whole configuration, e.g. a temperature and a strategy).
    pub elected_writes: BTreeMap<String, BTreeMap<String, VarValue>>,
    /// How long the commit may take.
    pub timeout: Duration,
}

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
    /// An English auction's round: [`Answer::Accept`] to stay in at `price`,
    /// [`Answer::Decline`] to drop out for good.
    Stay {
        /// What is sold.
        item: String,
        /// The round.
        round: u64,
        /// The price to pay if the clock stops here.
        price: Money,
    },
    /// A Dutch auction's tick: [`Answer::Accept`] to take `item` at `price` now,
    /// [`Answer::Decline`] to wait for a lower price.
    Take {
        /// What is sold.
        item: String,
        /// The tick.
        tick: u64,
        /// The price on offer.
        price: Money,
    },
    /// A Contract Net call for proposals: [`Answer::Bid`] a cost, or [`Answer::Decline`].
    Task {
        /// The task.
        task: String,
        /// Costs above this are refused.
        max_cost: Option<Money>,
    },
    /// A combinatorial auction: [`Answer::Bundles`] (bit `k` of a bundle is `items[k]`).
    Bundles {
        /// The auction.
        auction: String,
        /// The items.
        items: Vec<String>,
    },
    /// A call market: [`Answer::Order`], or [`Answer::Decline`].
    Order {
        /// The market.
        market: String,
    },
    /// Your move in a negotiation: [`Answer::Offer`] a price, [`Answer::Accept`] the standing
    /// offer (if any), or [`Answer::Decline`] to quit.
    Negotiate {
        /// What is negotiated.
        subject: String,
        /// Your side.
        role: Role,
        /// The other side's offer on the table, if any.
        standing: Option<f64>,
        /// The number of the offer you would make.
        next_round: u32,
    },
}

impl Ask {
    /// What is asked, in a word, for refusals.
    pub fn kind(&self) -> &'static str {
        match self {
            Ask::Bid { .. } => "a sealed bid",
            Ask::Vote { .. } => "a ballot",
            Ask::Stay { .. } => "an English auction's price",
            Ask::Take { .. } => "a Dutch auction's price",
            Ask::Task { .. } => "a call for proposals",
            Ask::Bundles { .. } => "a combinatorial bid",
            Ask::Order { .. } => "a market order",
            Ask::Negotiate { .. } => "a negotiation move",
        }
    }
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
    /// A sealed bid, or a contractor's cost.
    Bid(Money),
    /// A ballot.
    Ballot(Ballot),
    /// Yes to the price asked: stay in (English), take it (Dutch).
    Accept,
    /// An XOR bid of a combinatorial auction: at most one of the bundles may win.
    Bundles(Vec<BundleBid>),
    /// A limit order of a call market.
    Order {
        /// Buy or sell.
        side: Side,
        /// Units.
        quantity: u64,
        /// The per-unit limit price.
        limit: f64,
    },
    /// A negotiation offer: the price proposed.
    Offer(f64),
    /// No bid, no vote, no order; drop out (English); refuse (Contract Net); quit (negotiation).
    Decline,
}

/// What the mechanism decided.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Decision {
    /// A single-item auction's outcome (sealed-bid, English, Dutch).
    Auction(AuctionOutcome),
    /// An election's outcome, or why it could not decide.
    Vote(Result<VoteOutcome, VoteError>),
    /// Contract Net's award.
    Contract(ContractOutcome),
    /// A combinatorial auction's allocation and payments, or why it could not be solved.
    Combinatorial(Result<VcgSolution, VcgError>),
    /// A call market's clearing.
    Market(ClearingOutcome),
    /// A negotiation's agreement, or why there was none.
    Negotiation(NegotiationOutcome),
}

/// Whether the outcome reached the ledger.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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

/// How [`AgentsHandle::settle_session`] found a session.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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

/// How a commit to a ledger ended.
enum Landing {
    /// This outcome wrote the version.
    Won(u64),
    /// The session had already written the version.
    Decided(u64),
    /// A later session (this one) committed first: this session can no longer commit.
    Closed(u64),
    /// Nothing landed, and nothing will: why.
    Failed(String),
    /// Nothing landed yet, but a proposal that reached some acceptor may still be decided.
    Uncertain(String),
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
        let drove = mechanisms::run_machine(self, &session, &names).await?;
        let commit = self.commit(&session, &names, &drove.decision).await;
        self.notify(&session, &names, &drove.decision, &commit)
            .await;
        let labels = (mechanism, commit.label());
        self.shared.metrics.session(labels, drove.rounds, opened);
        let decided = summary(&drove.decision, &names);
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
        let Some((outcome, paid)) = ledger_outcome(session, commit, names, decision) else {
            return CommitState::NotRequested;
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
        let refund = !matches!(landing, Landing::Won(_) | Landing::Uncertain(_));
        if let Some(name) = escrow.filter(|_| refund) {
            if let Err(e) = counter(&self.shared.requests, name, paid.minor(), true).await {
                tracing::warn!(counter = name, error = %e, "units drawn for an outcome that did not land were not refilled");
            }
        }
        match landing {
            Landing::Won(version) => CommitState::Committed { version },
            Landing::Decided(version) => CommitState::AlreadyCommitted { version },
            Landing::Closed(last) => {
                CommitState::NotCommitted(format!("a later session, {last}, committed first"))
            }
            Landing::Failed(why) => CommitState::NotCommitted(why),
            Landing::Uncertain(why) => CommitState::NotCommitted(match escrow {
                Some(name) => format!("{why}; {paid} of counter {name:?} stay drawn: the outcome may still be decided"),
                None => why,
            }),
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
                    return Landing::Uncertain("no majority of the ledger's acceptors".into())
                }
                Ok(_) => tokio::time::sleep(Duration::from_millis(5)).await,
                Err(VarsCallError::Refused(VarsError::SessionDecided { version, .. })) => {
                    return Landing::Decided(version)
                }
                Err(VarsCallError::Refused(VarsError::SessionStale { last, .. })) => {
                    return Landing::Closed(last)
                }
                Err(e @ VarsCallError::Refused(_)) => return Landing::Failed(e.to_string()),
                Err(e) => return Landing::Uncertain(e.to_string()),
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
            Landing::Failed(why) | Landing::Uncertain(why) => Settled::Unknown(why),
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
            decided: summary(decision, names),
            committed,
        };
        for name in names {
            let _ = self.send(name, &notice).await;
        }
    }
}

/// The ledger writes and debit a decision makes, and the price paid, if it decided anything
/// to commit.
fn ledger_outcome(
    session: &Session,
    commit: &Commit,
    names: &[String],
    decision: &Decision,
) -> Option<(Outcome, Money)> {
    let name_of = |agent: foundation_agents::AgentId| {
        let i = usize::try_from(agent.0).ok()?;
        names.get(i).cloned()
    };
    let mut outcome = Outcome {
        session: session.id,
        writes: BTreeMap::new(),
        debits: BTreeMap::new(),
    };
    let (winner, paid) = match decision {
        Decision::Auction(auction) => {
            let award = auction.award.as_ref()?;
            (Some(name_of(award.winner)?), award.price)
        }
        Decision::Contract(contract) => {
            let (agent, cost) = contract.award?;
            (Some(name_of(agent)?), cost)
        }
        Decision::Vote(Ok(vote)) => {
            let sets = commit.elected_writes.get(&vote.label).into_iter().flatten();
            outcome
                .writes
                .extend(sets.map(|(f, v)| (f.clone(), v.clone())));
            (Some(vote.label.clone()), Money::ZERO)
        }
        Decision::Combinatorial(Ok(solution)) if !solution.awards.is_empty() => {
            let Mechanism::Combinatorial { items, .. } = &session.mechanism else {
                return None;
            };
            for award in &solution.awards {
                let winner = VarValue::Choice(name_of(award.agent)?);
                for (k, item) in items.iter().enumerate() {
                    if award.bundle & (1 << k) != 0 {
                        outcome.writes.insert(item.clone(), winner.clone());
                    }
                }
            }
            let payments = solution.awards.iter().map(|a| a.payment);
            (None, Money::checked_sum(payments).ok()?)
        }
        Decision::Vote(Err(_))
        | Decision::Combinatorial(_)
        | Decision::Market(_)
        | Decision::Negotiation(_) => return None,
    };
    if let Some(winner) = winner {
        outcome
            .writes
            .insert(commit.winner_field.clone(), VarValue::Choice(winner));
    }
    if !matches!(decision, Decision::Vote(_)) {
        if let Some(field) = &commit.price_field {
            let price = i64::try_from(paid.minor()).ok()?;
            outcome.writes.insert(field.clone(), VarValue::Int(price));
        }
        if let Some(field) = &commit.budget_field {
            outcome.debits.insert(field.clone(), paid.minor());
        }
    }
    Some((outcome, paid))
}

/// The decision in words, participants by name.
fn summary(decision: &Decision, names: &[String]) -> String {
    let name = |agent: foundation_agents::AgentId| {
        let i = usize::try_from(agent.0).ok();
        i.and_then(|i| names.get(i))
            .map_or_else(|| agent.to_string(), Clone::clone)
    };
    match decision {
        Decision::Auction(a) => match &a.award {
            Some(w) => format!(
                "{} won {} at {} ({:?})",
                name(w.winner),
                a.item,
                w.price,
                a.reason
            ),
            None => format!("{} not sold ({:?})", a.item, a.reason),
        },
        Decision::Vote(Ok(v)) => format!("elected {:?}", v.label),
        Decision::Vote(Err(e)) => e.to_string(),
        Decision::Contract(c) => match c.award {
            Some((agent, cost)) => format!("{} awarded to {} at {cost}", c.task, name(agent)),
            None => format!("{} not awarded ({})", c.task, c.reason),
        },
        Decision::Combinatorial(Ok(s)) => {
            let winners: Vec<String> = s.awards.iter().map(|a| name(a.agent)).collect();
            format!("bundles to {}, welfare {}", winners.join(", "), s.welfare)
        }
        Decision::Combinatorial(Err(e)) => e.to_string(),
        Decision::Market(m) => format!("{} units traded ({:?})", m.traded_quantity, m.reason),
        Decision::Negotiation(NegotiationOutcome::Agreement { price, rounds, .. }) => {
            format!("agreed at {price} after {rounds} offers")
        }
        Decision::Negotiation(NegotiationOutcome::Disagreement { rounds, reason }) => {
            format!("no agreement after {rounds} offers ({reason:?})")
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
