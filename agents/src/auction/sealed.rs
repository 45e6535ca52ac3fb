//! Sealed-bid auctions: first-price and Vickrey (second-price with the reserve as a floor).
//!
//! Bids are hidden until the deadline; each admitted agent may bid once. Ties go to the earliest
//! submission, then the lowest agent id, so every node that replays the same inputs picks the same
//! winner.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{result_notices, AuctionOutcome, AuctionReason, Award, Outgoing, ResultNotice};
use crate::error::{ConfigError, Rejection};
use crate::telemetry::{Telemetry, TelemetryEvent};
use crate::types::{AgentId, Money, Time};

/// How the winner's price is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Pricing {
    /// The winner pays its own bid.
    FirstPrice,
    /// The winner pays the larger of the second-highest bid and the reserve (Vickrey).
    SecondPrice,
}

/// Configuration of a sealed-bid auction.
#[derive(Debug, Clone)]
pub struct SealedConfig {
    item: String,
    pricing: Pricing,
    reserve: Money,
    deadline: Option<Time>,
    participants: Option<BTreeMap<AgentId, Option<Money>>>,
}

impl SealedConfig {
    /// An auction for `item` with no reserve, no deadline and open to any agent.
    pub fn new(item: impl Into<String>, pricing: Pricing) -> Self {
        SealedConfig {
            item: item.into(),
            pricing,
            reserve: Money::ZERO,
            deadline: None,
            participants: None,
        }
    }

    /// Minimum acceptable bid and, under second price, the lowest price the winner can pay.
    /// Default 0.
    pub fn reserve(mut self, reserve: Money) -> Self {
        self.reserve = reserve;
        self
    }

    /// Bids arriving at or after this instant are late. Default: none (the driver closes).
    pub fn deadline(mut self, deadline: Time) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// Restricts bidding to these agents, without budgets. Default: anyone may bid.
    pub fn participants(mut self, agents: impl IntoIterator<Item = AgentId>) -> Self {
        let map = self.participants.get_or_insert_with(BTreeMap::new);
        for agent in agents {
            map.entry(agent).or_insert(None);
        }
        self
    }

    /// Admits `agent` with a budget its bids may not exceed.
    pub fn budget(mut self, agent: AgentId, budget: Money) -> Self {
        let map = self.participants.get_or_insert_with(BTreeMap::new);
        map.insert(agent, Some(budget));
        self
    }

    /// Checks the parameters; run by [`SealedBidAuction::new`]. Money amounts are valid by type,
    /// so what is left is an explicitly empty participant list (an auction nobody may bid in).
    pub fn validate(&self) -> Result<(), ConfigError> {
        match &self.participants {
            Some(map) if map.is_empty() => Err(ConfigError::Empty {
                what: "participants",
            }),
            _ => Ok(()),
        }
    }
}

/// A valid bid as the auction stores it; `seq` is its arrival rank.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedBid {
    /// The bidder.
    pub agent: AgentId,
    /// The amount bid.
    pub amount: Money,
    /// Arrival rank, 0 for the first accepted bid; breaks ties.
    pub seq: u64,
}

/// What a bidder sends to a sealed-bid auction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SealedMessage {
    /// A sealed bid of `amount`; one per bidder.
    Bid {
        /// The amount bid, in minor units.
        amount: Money,
    },
}

/// A sealed-bid auction.
///
/// Driver order: [`SealedBidAuction::new`], then [`submit`](Self::submit) for each arriving bid,
/// then [`handle_timeout`](Self::handle_timeout) when [`poll_timeout`](Self::poll_timeout) passes (or
/// [`close`](Self::close) when the driver knows all bids are in); then drain
/// [`drain_outbox`](Self::drain_outbox) and [`drain_telemetry`](Self::drain_telemetry).
#[derive(Debug)]
pub struct SealedBidAuction {
    config: SealedConfig,
    started_at: Time,
    bids: Vec<SealedBid>,
    bidders: BTreeSet<AgentId>,
    outcome: Option<AuctionOutcome>,
    outbox: Vec<Outgoing<ResultNotice>>,
    telemetry: Telemetry,
}

impl SealedBidAuction {
    /// Opens the auction at `now`.
    pub fn new(config: SealedConfig, now: Time) -> Result<Self, ConfigError> {
        config.validate()?;
        let telemetry = Telemetry::started(protocol_name(config.pricing), config.item.clone(), now);
        Ok(SealedBidAuction {
            config,
            started_at: now,
            bids: Vec::new(),
            bidders: BTreeSet::new(),
            outcome: None,
            outbox: Vec::new(),
            telemetry,
        })
    }

    /// Applies a message from `from`; the [`Protocol`](crate::Protocol) entry point.
    pub fn handle(
        &mut self,
        now: Time,
        from: AgentId,
        message: SealedMessage,
    ) -> Result<(), Rejection> {
        match message {
            SealedMessage::Bid { amount } => self.submit(now, from, amount),
        }
    }

    /// Offers a bid. A rejected bid leaves the auction exactly as it was.
    pub fn submit(&mut self, now: Time, agent: AgentId, amount: Money) -> Result<(), Rejection> {
        let result = self.check(now, agent, amount);
        self.telemetry
            .input(now, agent, Some(amount.approx_f64()), &result);
        if result.is_ok() {
            let seq = self.bids.len() as u64;
            self.bids.push(SealedBid { agent, amount, seq });
            self.bidders.insert(agent);
        }
        result
    }

    fn check(&self, now: Time, agent: AgentId, amount: Money) -> Result<(), Rejection> {
        if self.outcome.is_some() {
            return Err(Rejection::Closed);
        }
        if let Some(deadline) = self.config.deadline {
            if now >= deadline {
                return Err(Rejection::Late { at: now, deadline });
            }
        }
        let budget = match &self.config.participants {
            Some(map) => *map.get(&agent).ok_or(Rejection::NotParticipant { agent })?,
            None => None,
        };
        if let Some(budget) = budget {
            if amount > budget {
                return Err(Rejection::OverBudget { amount, budget });
            }
        }
        if self.bidders.contains(&agent) {
            return Err(Rejection::Duplicate { agent });
        }
        Ok(())
    }

    /// The deadline the driver should arm a timer for, if any and still open.
    pub fn poll_timeout(&self) -> Option<Time> {
        self.outcome
            .is_none()
            .then_some(self.config.deadline)
            .flatten()
    }

    /// Closes the auction if the deadline has passed.
    pub fn handle_timeout(&mut self, now: Time) -> Option<AuctionOutcome> {
        match self.poll_timeout() {
            Some(deadline) if now >= deadline => Some(self.close(now)),
            _ => self.outcome.clone(),
        }
    }

    /// Decides now with the bids received (idempotent: a second call returns the same outcome).
    pub fn close(&mut self, now: Time) -> AuctionOutcome {
        if let Some(outcome) = &self.outcome {
            return outcome.clone();
        }
        let (award, reason) = clear(&self.bids, self.config.pricing, self.config.reserve);
        let outcome = AuctionOutcome {
            item: self.config.item.clone(),
            award,
            reason,
            bids_considered: self.bids.len(),
            decided_at: now,
        };
        self.finish(now, outcome.clone());
        outcome
    }

    fn finish(&mut self, now: Time, outcome: AuctionOutcome) {
        let recipients: Vec<AgentId> = match &self.config.participants {
            Some(map) => map.keys().copied().collect(),
            None => self.bidders.iter().copied().collect(),
        };
        self.outbox = result_notices(recipients.into_iter(), outcome.award.as_ref());
        self.telemetry.emit(TelemetryEvent::Decided {
            protocol: protocol_name(self.config.pricing),
            summary: outcome.summary(),
            at: now,
            duration_ms: now.since(self.started_at),
        });
        self.outcome = Some(outcome);
    }

    /// Checks internal consistency; tests and the simulator call it after every step.
    pub fn invariants(&self) -> Result<(), String> {
        if self.bidders.len() != self.bids.len() {
            return Err("a bidder has more than one stored bid".into());
        }
        for (i, bid) in self.bids.iter().enumerate() {
            if bid.seq != i as u64 {
                return Err(format!("bid {i} is out of order or invalid: {bid:?}"));
            }
            self.admissible(bid)?;
        }
        self.outcome_consistent()
    }

    /// A stored bid came from a participant and stays within its budget.
    fn admissible(&self, bid: &SealedBid) -> Result<(), String> {
        let Some(map) = &self.config.participants else {
            return Ok(());
        };
        match map.get(&bid.agent) {
            None => Err(format!("accepted a bid from outsider {}", bid.agent)),
            Some(Some(budget)) if bid.amount > *budget => {
                Err(format!("accepted {bid:?} over budget {budget}"))
            }
            Some(_) => Ok(()),
        }
    }

    /// A decided outcome is what clearing the stored bids gives.
    fn outcome_consistent(&self) -> Result<(), String> {
        let Some(outcome) = &self.outcome else {
            return Ok(());
        };
        let (award, reason) = clear(&self.bids, self.config.pricing, self.config.reserve);
        if outcome.award != award || outcome.reason != reason {
            return Err(format!(
                "outcome {outcome:?} differs from clearing the bids"
            ));
        }
        if outcome.bids_considered != self.bids.len() {
            return Err("outcome counts a different number of bids".into());
        }
        Ok(())
    }

    /// The outcome, once decided.
    pub fn outcome(&self) -> Option<&AuctionOutcome> {
        self.outcome.as_ref()
    }

    /// The valid bids received so far, in arrival order.
    pub fn bids(&self) -> &[SealedBid] {
        &self.bids
    }

    /// Takes the result notices for the bidders.
    pub fn drain_outbox(&mut self) -> Vec<Outgoing<ResultNotice>> {
        std::mem::take(&mut self.outbox)
    }

    /// Takes the buffered telemetry events.
    pub fn drain_telemetry(&mut self) -> Vec<TelemetryEvent> {
        self.telemetry.drain()
    }
}

crate::protocol::delegate_protocol!(
    SealedBidAuction,
    message = SealedMessage,
    notice = ResultNotice,
    outcome = AuctionOutcome
);

fn protocol_name(pricing: Pricing) -> &'static str {
    match pricing {
        Pricing::FirstPrice => "first-price",
        Pricing::SecondPrice => "vickrey",
    }
}

/// True when `a` ranks above `b`: higher amount, then earlier arrival, then lower id.
fn ranks_above(a: &SealedBid, b: &SealedBid) -> bool {
    if a.amount != b.amount {
        return a.amount > b.amount;
    }
    (a.seq, a.agent) < (b.seq, b.agent)
}

/// Clears a sealed-bid auction over already-validated bids in one pass (no sort: O(n)).
pub fn clear(
    bids: &[SealedBid],
    pricing: Pricing,
    reserve: Money,
) -> (Option<Award>, AuctionReason) {
    let mut best: Option<&SealedBid> = None;
    let mut second: Option<&SealedBid> = None;
    for bid in bids.iter().filter(|b| b.amount >= reserve) {
        match best {
            Some(top) if !ranks_above(bid, top) => {
                if second.is_none_or(|s| ranks_above(bid, s)) {
                    second = Some(bid);
                }
            }
            _ => {
                second = best;
                best = Some(bid);
            }
        }
    }
    let Some(top) = best else {
        let reason = if bids.is_empty() {
            AuctionReason::NoBids
        } else {
            AuctionReason::BelowReserve
        };
        return (None, reason);
    };
    let tied = second.is_some_and(|s| s.amount == top.amount);
    let price = match pricing {
        Pricing::FirstPrice => top.amount,
        Pricing::SecondPrice => second.map_or(reserve, |s| s.amount.max(reserve)),
    };
    let reason = match (tied, pricing) {
        (true, _) => AuctionReason::TieBrokenByArrivalThenId,
        (false, Pricing::FirstPrice) => AuctionReason::HighestBidPaysOwnBid,
        (false, Pricing::SecondPrice) => AuctionReason::HighestBidPaysSecondPriceOrReserve,
    };
    let award = Award {
        winner: top.agent,
        price,
        winning_bid: top.amount,
    };
    (Some(award), reason)
}
