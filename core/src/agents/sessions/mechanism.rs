//! What a session decides and how ([`Mechanism`]), what its participants are asked ([`Ask`])
//! and answer ([`Answer`], [`SessionAnswer`]), and what it decided ([`Decision`]): the data
//! the coordinator, its participants and the ledger share, whoever drives the session.

use foundation_agents::auction::sealed::Pricing;
use foundation_agents::auction::vcg::{BundleBid, VcgError, VcgSolution};
use foundation_agents::auction::AuctionOutcome;
use foundation_agents::market::double::{ClearingOutcome, ClearingRule, Side};
use foundation_agents::market::tatonnement::TatonnementOutcome;
use foundation_agents::negotiation::alternating::NegotiationOutcome;
use foundation_agents::negotiation::contract_net::ContractOutcome;
use foundation_agents::negotiation::strategy::Role;
use foundation_agents::voting::{Ballot, Method, VoteError, VoteOutcome};
use foundation_agents::Money;
use serde::{Deserialize, Serialize};

use crate::vars::SessionId;

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
    /// A Walrasian tatonnement over goods of total `supply`: each round participants answer
    /// [`Ask::Prices`] with [`Answer::Excess`] (their excess demand per good at those prices),
    /// and the auctioneer moves prices toward clearing. A participant silent in a round is
    /// absent, never zero demand: no round with a silent participant converges. Its prices are
    /// real numbers, so its outcome is reported and not committed to a ledger.
    Tatonnement {
        /// The market's name.
        market: String,
        /// Total endowment of each good, each above zero.
        supply: Vec<f64>,
        /// Price adjustment speed per round.
        step: f64,
        /// Converged when every |excess demand| / supply is at most this.
        tolerance: f64,
        /// Rounds before giving up.
        rounds_max: usize,
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
            Mechanism::Tatonnement { .. } => "tatonnement",
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
            Mechanism::Tatonnement { market, .. } => market,
        }
    }

    /// Whether its outcome can commit to a ledger (prices that are real numbers cannot).
    pub fn commits(&self) -> bool {
        !matches!(
            self,
            Mechanism::Market { .. }
                | Mechanism::Negotiation { .. }
                | Mechanism::Tatonnement { .. }
        )
    }
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
    /// A tatonnement's round: [`Answer::Excess`] at `prices`.
    Prices {
        /// The market.
        market: String,
        /// The round.
        round: usize,
        /// The prices of the round, one per good (they sum to 1).
        prices: Vec<f64>,
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
            Ask::Prices { .. } => "a tatonnement's prices",
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
    /// A tatonnement answer: excess demand (demand minus endowment) per good.
    Excess(Vec<f64>),
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
    /// A tatonnement's prices, converged or not.
    Tatonnement(TatonnementOutcome),
    /// A negotiation's agreement, or why there was none.
    Negotiation(NegotiationOutcome),
}

impl Decision {
    /// The decision in words, participants by name.
    pub fn summary(&self, names: &[String]) -> String {
        let decision = self;
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
            Decision::Tatonnement(TatonnementOutcome::Converged { prices, rounds, .. }) => {
                format!("converged to prices {prices:?} in {rounds} rounds")
            }
            Decision::Tatonnement(TatonnementOutcome::NotConverged {
                rounds, answered, participants, ..
            }) => format!(
                "not converged after {rounds} rounds ({answered} of {participants} answered the last)"
            ),
            Decision::Negotiation(NegotiationOutcome::Agreement { price, rounds, .. }) => {
                format!("agreed at {price} after {rounds} offers")
            }
            Decision::Negotiation(NegotiationOutcome::Disagreement { rounds, reason }) => {
                format!("no agreement after {rounds} offers ({reason:?})")
            }
        }
    }
}
