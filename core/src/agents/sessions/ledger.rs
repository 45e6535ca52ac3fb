//! What a session's decision writes to its ledger ([`ledger_outcome`]), and the settle rule
//! that gives each session exactly one outcome there: how one proposal of it ended
//! ([`Landing::of`]), when to propose again on the newest record, and what the session then
//! reports ([`CommitState`], [`Settled`]). The proposals themselves go through the core's
//! `commit_outcome` (see `crate::vars::outcome`); whoever carries them (the engine's runtime,
//! the simulator) only moves requests and calls these.

use std::collections::BTreeMap;
use std::time::Duration;

use foundation_agents::cas::CasOutcome;
use foundation_agents::variable::VarValue;
use foundation_agents::{AgentId, Money};
use serde::{Deserialize, Serialize};

use super::mechanism::{Decision, Mechanism};
use crate::vars::{Outcome, SessionId, VarsError};

/// Proposals of one outcome while other outcomes keep winning the ledger's next version.
pub const COMMIT_ATTEMPTS: usize = 8;

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

/// How settling a session whose coordinator went silent found it.
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

/// How one proposal of an outcome to a ledger ended, as far as the session is concerned.
#[derive(Clone, Debug, PartialEq)]
pub enum Landing {
    /// This outcome wrote the version.
    Won(u64),
    /// The session had already written the version.
    Decided {
        /// The version.
        version: u64,
        /// Perhaps with this very outcome: an earlier proposal of it ended without this node
        /// learning whether it won (see [`Attempts`]).
        perhaps_ours: bool,
    },
    /// A later session committed first: this session can no longer commit.
    Closed {
        /// The ledger's last session.
        last: u64,
        /// This outcome may have landed before it: an earlier proposal of it ended without
        /// this node learning whether it won (see [`Attempts`]).
        perhaps_ours: bool,
    },
    /// Nothing landed, and nothing will: why.
    Failed(String),
    /// Nothing landed yet, but a proposal that reached some acceptor may still be decided.
    Uncertain(String),
}

/// How a proposal ended, as the carrier saw it.
#[derive(Clone, Debug, PartialEq)]
pub enum Proposed<P> {
    /// The register decided (or found it could not).
    Cas(CasOutcome<P>),
    /// The ledger refused it before proposing: nothing changed.
    Refused(VarsError),
    /// No answer from the node that proposes it (a timeout, a lost connection): its fate is
    /// unknown.
    Unanswered(String),
}

impl<P> Proposed<P> {
    /// Whether the ledger refused it only because another write of this node on the ledger
    /// is under way (another session's commit, or a settle): no outcome won the version, so
    /// the carrier proposes the same outcome again once that write ends — within the commit's
    /// timeout, and without counting it as one of the [`COMMIT_ATTEMPTS`]. Sessions a node
    /// coordinates decide together often enough (answers arrive together); refusing them
    /// would lose outcomes nobody outbid.
    pub fn behind_own_write(&self) -> bool {
        matches!(self, Proposed::Refused(VarsError::Busy))
    }
}

impl Landing {
    /// What a proposal's end means for the session; `None`: another outcome won the version it
    /// aimed at, so propose again on the newest record (at most [`COMMIT_ATTEMPTS`] times).
    pub fn of<P>(proposed: Proposed<P>) -> Option<Landing> {
        match proposed {
            Proposed::Cas(CasOutcome::Won { version }) => Some(Landing::Won(version)),
            Proposed::Cas(CasOutcome::NoMajority) => Some(Landing::Uncertain(
                "no majority of the ledger's acceptors".into(),
            )),
            Proposed::Cas(_) => None,
            Proposed::Refused(VarsError::SessionDecided { version, .. }) => {
                Some(Landing::Decided {
                    version,
                    perhaps_ours: false,
                })
            }
            Proposed::Refused(VarsError::SessionStale { last, .. }) => Some(Landing::Closed {
                last,
                perhaps_ours: false,
            }),
            Proposed::Refused(e) => Some(Landing::Failed(e.to_string())),
            Proposed::Unanswered(why) => Some(Landing::Uncertain(why)),
        }
    }

    /// Landing after [`COMMIT_ATTEMPTS`] proposals all lost to other outcomes.
    pub fn outrun() -> Landing {
        Landing::Failed("other outcomes kept winning the ledger".into())
    }

    /// Whether units drawn from an escrow counter for this outcome go back: only when it
    /// certainly did not land (an uncertain one may still be decided, so they stay drawn).
    pub fn refunds(&self) -> bool {
        match self {
            Landing::Won(_) | Landing::Uncertain(_) => false,
            Landing::Decided { perhaps_ours, .. } | Landing::Closed { perhaps_ours, .. } => {
                !perhaps_ours
            }
            Landing::Failed(_) => true,
        }
    }

    /// What the coordinator reports; `escrow` names the counter and amount drawn, if any.
    pub fn commit_state(self, escrow: Option<(&str, Money)>) -> CommitState {
        match self {
            Landing::Won(version) => CommitState::Committed { version },
            Landing::Uncertain(_) if fault_on!(SessionUncertainAsCommitted) => {
                CommitState::Committed { version: 0 }
            }
            Landing::Decided { version, .. } => CommitState::AlreadyCommitted { version },
            Landing::Closed { last, perhaps_ours } => {
                let mut why = format!("a later session, {last}, committed first");
                if perhaps_ours {
                    why.push_str("; an earlier proposal of this outcome may have landed before it");
                }
                CommitState::NotCommitted(why)
            }
            Landing::Failed(why) => CommitState::NotCommitted(why),
            Landing::Uncertain(why) => CommitState::NotCommitted(match escrow {
                Some((name, paid)) => format!(
                    "{why}; {paid} of counter {name:?} stay drawn: the outcome may still be decided"
                ),
                None => why,
            }),
        }
    }

    /// What settling a session found.
    pub fn settled(self) -> Settled {
        match self {
            Landing::Won(version) => Settled::Aborted { version },
            Landing::Decided { version, .. } => Settled::Decided { version },
            Landing::Closed { last, .. } => Settled::Closed { last },
            Landing::Failed(why) | Landing::Uncertain(why) => Settled::Unknown(why),
        }
    }
}

/// The proposals of one outcome (a session's commit, or a settle's abort) until it lands: the
/// settle rule across them, which both carriers follow.
///
/// Why more than [`Landing::of`] each time: a proposal can end without this node learning
/// whether it won its version (`CasOutcome::Superseded`: the register moved past it unseen).
/// It is proposed again on the newest record, and what that finds may be this outcome's own
/// doing — the session decided (by it), or a later session after it — so from then on no
/// landing says the outcome certainly did not land, and units drawn for it stay drawn (a win
/// spent them; anything else may be its own doing). Counted as lost, it once had them
/// refilled while the ledger took its debit.
#[derive(Clone, Debug, Default)]
pub struct Attempts {
    /// Proposals that lost their version to another outcome (or to an unseen fate).
    lost: usize,
    /// An earlier proposal's fate went unlearned: it may be the one decided.
    unseen: bool,
}

impl Attempts {
    /// How the latest proposal ended; `None`: propose again on the newest record (at most
    /// [`COMMIT_ATTEMPTS`] proposals in all).
    pub fn after<P>(&mut self, proposed: Proposed<P>) -> Option<Landing> {
        let unseen = matches!(proposed, Proposed::Cas(CasOutcome::Superseded { .. }));
        self.unseen |= unseen;
        let landing = match Landing::of(proposed) {
            Some(landing) => landing,
            None if self.lost + 1 >= COMMIT_ATTEMPTS => Landing::outrun(),
            None => {
                self.lost += 1;
                return None;
            }
        };
        Some(if self.unseen {
            Self::perhaps_ours(landing)
        } else {
            landing
        })
    }

    /// `landing`, found after a proposal of the outcome whose fate went unlearned.
    fn perhaps_ours(landing: Landing) -> Landing {
        match landing {
            Landing::Decided { version, .. } => Landing::Decided {
                version,
                perhaps_ours: true,
            },
            Landing::Closed { last, .. } => Landing::Closed {
                last,
                perhaps_ours: true,
            },
            Landing::Failed(why) => Landing::Uncertain(format!(
                "{why}; an earlier proposal of this outcome may have landed"
            )),
            sure => sure,
        }
    }
}

/// The outcome that settles `session` when its coordinator went silent: it writes nothing,
/// but takes the session's one slot on the ledger, so the session is aborted.
pub fn abort(session: SessionId) -> Outcome {
    Outcome {
        session,
        writes: BTreeMap::new(),
        debits: BTreeMap::new(),
    }
}

/// The ledger writes and debit session `session`'s decision makes (participants by name,
/// agent `i` being `names[i]`), and the price paid: `Ok(None)` when it decided nothing to
/// commit, `Err` (why) when what it decided cannot be written — a price beyond the ledger's
/// `Int` fields, which bids of that size make: refused, not passed off as nothing to commit.
pub fn ledger_outcome(
    session: SessionId,
    mechanism: &Mechanism,
    commit: &Commit,
    names: &[String],
    decision: &Decision,
) -> Result<Option<(Outcome, Money)>, String> {
    let Some((mut outcome, paid)) = decided_writes(session, mechanism, commit, names, decision)
    else {
        return Ok(None);
    };
    if !matches!(decision, Decision::Vote(_)) {
        if let Some(field) = &commit.price_field {
            let price = i64::try_from(paid.minor())
                .map_err(|_| format!("a price of {paid} does not fit ledger field {field:?}"))?;
            outcome.writes.insert(field.clone(), VarValue::Int(price));
        }
        if let Some(field) = &commit.budget_field {
            outcome.debits.insert(field.clone(), paid.minor());
        }
    }
    Ok(Some((outcome, paid)))
}

/// The writes of what `decision` awarded (its winners, a vote's configuration) and the price
/// paid, if it decided anything to commit.
fn decided_writes(
    session: SessionId,
    mechanism: &Mechanism,
    commit: &Commit,
    names: &[String],
    decision: &Decision,
) -> Option<(Outcome, Money)> {
    let name_of = |agent: AgentId| {
        let i = usize::try_from(agent.0).ok()?;
        names.get(i).cloned()
    };
    let mut outcome = Outcome {
        session,
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
            let Mechanism::Combinatorial { items, .. } = mechanism else {
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
        | Decision::Tatonnement(_)
        | Decision::Negotiation(_) => return None,
    };
    if let Some(winner) = winner {
        outcome
            .writes
            .insert(commit.winner_field.clone(), VarValue::Choice(winner));
    }
    Some((outcome, paid))
}
