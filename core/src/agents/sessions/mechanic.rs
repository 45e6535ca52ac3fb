//! Each mechanism of a session as the `foundation_agents` machine that decides it: how it is
//! opened ([`open`]), what its participants are asked, how their answers become the machine's
//! messages, and what its outcome means for the session. The machines are used as they are;
//! nothing of their rules is repeated here.

use std::collections::{BTreeMap, BTreeSet};

use foundation_agents::auction::dutch::{DutchAuction, DutchConfig, DutchMessage, DutchNotice};
use foundation_agents::auction::english::{
    EnglishAuction, EnglishConfig, EnglishMessage, EnglishNotice,
};
use foundation_agents::auction::sealed::{SealedBidAuction, SealedConfig, SealedMessage};
use foundation_agents::auction::vcg::{CombinatorialAuction, VcgMessage};
use foundation_agents::auction::{AuctionOutcome, ResultNotice};
use foundation_agents::market::double::{CallMarket, MarketMessage, MarketNotice, Side};
use foundation_agents::market::tatonnement::{
    Auctioneer, TatonnementConfig, TatonnementMessage, TatonnementNotice,
};
use foundation_agents::negotiation::alternating::{
    AlternatingConfig, AlternatingOffers, Move, NegotiationNotice, NegotiationOutcome,
};
use foundation_agents::negotiation::contract_net::{ContractAnswer, ContractNet, ContractNotice};
use foundation_agents::negotiation::strategy::Role;
use foundation_agents::voting::{Election, ElectionConfig, VoteMessage, VoteNotice};
use foundation_agents::{AgentId, Time};

use super::driver::{Mechanic, SessionDriver};
use super::mechanism::{Answer, Ask, Decision, Mechanism};
use crate::vars::SessionId;

/// The refusal of an answer that does not fit what was asked.
fn wrong_kind(asked: &Ask) -> String {
    format!("an answer of the wrong kind for {}", asked.kind())
}

/// `ask` for every participant.
fn everyone(ids: &BTreeSet<AgentId>, ask: Ask) -> Vec<(AgentId, Ask)> {
    ids.iter().map(|&id| (id, ask.clone())).collect()
}

/// Opens session `session`'s machine for `mechanism` at session time 0 over participants
/// `names` (agent `i` is `AgentId(i)`, `names[i]`), each answer due within
/// `answer_within_ms` (a clock auction's round, a Dutch tick, a negotiation's turn), and the
/// driver that runs it; `Err` says why the mechanism's configuration is invalid.
pub fn open(
    session: SessionId,
    mechanism: &Mechanism,
    names: &[String],
    answer_within_ms: u64,
) -> Result<SessionDriver, String> {
    let ids: BTreeSet<AgentId> = (0..names.len() as u64).map(AgentId).collect();
    let within = answer_within_ms;
    let deadline = Time(within);
    let invalid = |e: foundation_agents::error::ConfigError| e.to_string();
    let driver = match mechanism {
        Mechanism::SealedBid {
            item,
            pricing,
            reserve,
        } => {
            let config = SealedConfig::new(item.clone(), *pricing)
                .reserve(*reserve)
                .deadline(deadline)
                .participants(ids.clone());
            let machine = SealedBidAuction::new(config, Time(0)).map_err(invalid)?;
            let ask = Ask::Bid {
                item: item.clone(),
                reserve: *reserve,
            };
            SessionDriver::new(
                session,
                mechanism,
                names,
                within,
                machine,
                everyone(&ids, ask),
            )
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
                voters: ids.iter().map(|id| (*id, 1.0)).collect(),
                method: *method,
                quorum: *quorum,
                deadline,
            };
            let machine = Election::new(config, Time(0)).map_err(invalid)?;
            let ask = Ask::Vote {
                question: question.clone(),
                candidates: candidates.clone(),
            };
            SessionDriver::new(
                session,
                mechanism,
                names,
                within,
                machine,
                everyone(&ids, ask),
            )
        }
        Mechanism::English {
            item,
            start,
            increment,
        } => {
            let config = EnglishConfig {
                item: item.clone(),
                start_price: *start,
                increment: *increment,
                round_ms: within,
                participants: ids,
                budgets: BTreeMap::new(),
            };
            let machine = EnglishAuction::new(config, Time(0)).map_err(invalid)?;
            SessionDriver::new(session, mechanism, names, within, machine, Vec::new())
        }
        Mechanism::Dutch {
            item,
            start,
            decrement,
            floor,
        } => {
            let config = DutchConfig {
                item: item.clone(),
                start_price: *start,
                decrement: *decrement,
                floor: *floor,
                tick_ms: within,
                participants: ids.into_iter().map(|id| (id, None)).collect(),
            };
            let machine = DutchAuction::new(config, Time(0)).map_err(invalid)?;
            SessionDriver::new(session, mechanism, names, within, machine, Vec::new())
        }
        Mechanism::ContractNet { task, max_cost } => {
            let machine = ContractNet::new(task.clone(), ids, deadline, *max_cost, Time(0));
            SessionDriver::new(session, mechanism, names, within, machine, Vec::new())
        }
        Mechanism::Combinatorial { name, items } => {
            let machine = CombinatorialAuction::new(
                name.clone(),
                items.len(),
                deadline,
                Some(ids.clone()),
                Time(0),
            );
            let ask = Ask::Bundles {
                auction: name.clone(),
                items: items.clone(),
            };
            SessionDriver::new(
                session,
                mechanism,
                names,
                within,
                machine,
                everyone(&ids, ask),
            )
        }
        Mechanism::Market { name, rule } => {
            let machine = CallMarket::new(name.clone(), *rule, deadline, Time(0))
                .with_participants(ids.clone());
            let ask = Ask::Order {
                market: name.clone(),
            };
            SessionDriver::new(
                session,
                mechanism,
                names,
                within,
                machine,
                everyone(&ids, ask),
            )
        }
        Mechanism::Tatonnement {
            supply,
            step,
            tolerance,
            rounds_max,
            ..
        } => {
            let config = TatonnementConfig {
                step: *step,
                tolerance: *tolerance,
                rounds_max: *rounds_max,
                round_ms: within,
            };
            let machine = Auctioneer::new(supply.clone(), ids, config, Time(0)).map_err(invalid)?;
            SessionDriver::new(session, mechanism, names, within, machine, Vec::new())
        }
        Mechanism::Negotiation {
            subject,
            buyer,
            seller,
            first_mover,
            rounds_max,
        } => {
            let id_of = |name: &str| {
                let i = names.iter().position(|n| n == name);
                i.map(|i| AgentId(i as u64))
                    .ok_or_else(|| format!("{name:?} does not have the capability"))
            };
            let config = AlternatingConfig {
                subject: subject.clone(),
                buyer: id_of(buyer)?,
                seller: id_of(seller)?,
                first_mover: *first_mover,
                rounds_max: *rounds_max,
                turn_ms: within,
            };
            let first = match first_mover {
                Role::Buyer => config.buyer,
                Role::Seller => config.seller,
            };
            let machine = AlternatingOffers::new(config, Time(0)).map_err(invalid)?;
            let ask = Ask::Negotiate {
                subject: subject.clone(),
                role: *first_mover,
                standing: None,
                next_round: 0,
            };
            SessionDriver::new(
                session,
                mechanism,
                names,
                within,
                machine,
                vec![(first, ask)],
            )
        }
    };
    Ok(driver)
}

impl Mechanic for AlternatingOffers {
    fn ask(mechanism: &Mechanism, to: &str, notice: &NegotiationNotice) -> Option<Ask> {
        let Mechanism::Negotiation { subject, buyer, .. } = mechanism else {
            return None;
        };
        let NegotiationNotice::Offered { round, price, .. } = *notice else {
            return None; // Agreed or failed: the session's notice tells.
        };
        let role = if to == buyer {
            Role::Buyer
        } else {
            Role::Seller
        };
        Some(Ask::Negotiate {
            subject: subject.clone(),
            role,
            standing: Some(price),
            next_round: round + 1,
        })
    }

    fn message(asked: &Ask, answer: Answer) -> Result<Option<Move>, String> {
        let Ask::Negotiate { next_round, .. } = *asked else {
            return Err(wrong_kind(asked));
        };
        match answer {
            Answer::Offer(price) => Ok(Some(Move::Offer {
                round: next_round,
                price,
            })),
            Answer::Accept => Ok(Some(Move::Accept {
                round: next_round.wrapping_sub(1),
            })),
            Answer::Decline => Ok(Some(Move::Quit)),
            _ => Err(wrong_kind(asked)),
        }
    }

    fn decision(outcome: NegotiationOutcome) -> Decision {
        Decision::Negotiation(outcome)
    }
}

impl Mechanic for SealedBidAuction {
    fn ask(_: &Mechanism, _: &str, _: &ResultNotice) -> Option<Ask> {
        None
    }

    fn message(asked: &Ask, answer: Answer) -> Result<Option<SealedMessage>, String> {
        match answer {
            Answer::Bid(amount) => Ok(Some(SealedMessage::Bid { amount })),
            Answer::Decline => Ok(None),
            _ => Err(wrong_kind(asked)),
        }
    }

    fn decision(outcome: AuctionOutcome) -> Decision {
        Decision::Auction(outcome)
    }
}

impl Mechanic for Election {
    fn ask(_: &Mechanism, _: &str, _: &VoteNotice) -> Option<Ask> {
        None
    }

    fn message(asked: &Ask, answer: Answer) -> Result<Option<VoteMessage>, String> {
        match answer {
            Answer::Ballot(ballot) => Ok(Some(VoteMessage::Cast { ballot })),
            Answer::Decline => Ok(None),
            _ => Err(wrong_kind(asked)),
        }
    }

    fn decision(outcome: Self::Outcome) -> Decision {
        Decision::Vote(outcome)
    }
}

impl Mechanic for EnglishAuction {
    fn ask(mechanism: &Mechanism, _: &str, notice: &EnglishNotice) -> Option<Ask> {
        match notice {
            EnglishNotice::Price { round, price, .. } => Some(Ask::Stay {
                item: mechanism.subject().to_owned(),
                round: *round,
                price: *price,
            }),
            EnglishNotice::Result(_) => None,
        }
    }

    fn message(asked: &Ask, answer: Answer) -> Result<Option<EnglishMessage>, String> {
        let Ask::Stay { round, .. } = *asked else {
            return Err(wrong_kind(asked));
        };
        match answer {
            Answer::Accept => Ok(Some(EnglishMessage::Stay { round })),
            Answer::Decline => Ok(Some(EnglishMessage::Drop { round })),
            _ => Err(wrong_kind(asked)),
        }
    }

    fn decision(outcome: AuctionOutcome) -> Decision {
        Decision::Auction(outcome)
    }
}

impl Mechanic for DutchAuction {
    fn ask(mechanism: &Mechanism, _: &str, notice: &DutchNotice) -> Option<Ask> {
        match notice {
            DutchNotice::Price { tick, price } => Some(Ask::Take {
                item: mechanism.subject().to_owned(),
                tick: *tick,
                price: *price,
            }),
            DutchNotice::Result(_) => None,
        }
    }

    fn message(asked: &Ask, answer: Answer) -> Result<Option<DutchMessage>, String> {
        let Ask::Take { tick, .. } = *asked else {
            return Err(wrong_kind(asked));
        };
        match answer {
            Answer::Accept => Ok(Some(DutchMessage::Accept { tick })),
            Answer::Decline => Ok(None), // Waits for a lower price.
            _ => Err(wrong_kind(asked)),
        }
    }

    fn decision(outcome: AuctionOutcome) -> Decision {
        Decision::Auction(outcome)
    }
}

impl Mechanic for ContractNet {
    fn ask(mechanism: &Mechanism, _: &str, notice: &ContractNotice) -> Option<Ask> {
        let Mechanism::ContractNet { max_cost, .. } = mechanism else {
            return None;
        };
        match notice {
            ContractNotice::Announce { task, .. } => Some(Ask::Task {
                task: task.clone(),
                max_cost: *max_cost,
            }),
            ContractNotice::Award { .. } | ContractNotice::Reject => None,
        }
    }

    fn message(asked: &Ask, answer: Answer) -> Result<Option<ContractAnswer>, String> {
        match answer {
            Answer::Bid(cost) => Ok(Some(ContractAnswer::Bid(cost))),
            Answer::Decline => Ok(Some(ContractAnswer::Refuse)),
            _ => Err(wrong_kind(asked)),
        }
    }

    fn decision(outcome: Self::Outcome) -> Decision {
        Decision::Contract(outcome)
    }
}

impl Mechanic for CombinatorialAuction {
    fn ask(_: &Mechanism, _: &str, _: &Self::Notice) -> Option<Ask> {
        None
    }

    fn message(asked: &Ask, answer: Answer) -> Result<Option<VcgMessage>, String> {
        match answer {
            Answer::Bundles(bundles) => Ok(Some(VcgMessage::Bid { bundles })),
            Answer::Decline => Ok(None),
            _ => Err(wrong_kind(asked)),
        }
    }

    fn decision(outcome: Self::Outcome) -> Decision {
        Decision::Combinatorial(outcome)
    }
}

impl Mechanic for CallMarket {
    fn ask(_: &Mechanism, _: &str, _: &MarketNotice) -> Option<Ask> {
        None
    }

    fn message(asked: &Ask, answer: Answer) -> Result<Option<MarketMessage>, String> {
        match answer {
            Answer::Order {
                side: Side::Buy,
                quantity,
                limit,
            } => Ok(Some(MarketMessage::Bid { quantity, limit })),
            Answer::Order {
                side: Side::Sell,
                quantity,
                limit,
            } => Ok(Some(MarketMessage::Ask { quantity, limit })),
            Answer::Decline => Ok(None),
            _ => Err(wrong_kind(asked)),
        }
    }

    fn decision(outcome: Self::Outcome) -> Decision {
        Decision::Market(outcome)
    }
}

impl Mechanic for Auctioneer {
    fn ask(mechanism: &Mechanism, _: &str, notice: &TatonnementNotice) -> Option<Ask> {
        match notice {
            TatonnementNotice::Prices { round, prices, .. } => Some(Ask::Prices {
                market: mechanism.subject().to_owned(),
                round: *round,
                prices: prices.clone(),
            }),
            TatonnementNotice::Finished { .. } => None,
        }
    }

    fn message(asked: &Ask, answer: Answer) -> Result<Option<TatonnementMessage>, String> {
        let Ask::Prices { round, .. } = *asked else {
            return Err(wrong_kind(asked));
        };
        match answer {
            Answer::Excess(excess) => Ok(Some(TatonnementMessage::Excess { round, excess })),
            Answer::Decline => Ok(None), // Absent this round, never zero demand.
            _ => Err(wrong_kind(asked)),
        }
    }

    fn decision(outcome: Self::Outcome) -> Decision {
        Decision::Tatonnement(outcome)
    }
}
