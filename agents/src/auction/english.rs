//! English auction: a rising price clock with an activity rule.
//!
//! Each round the auctioneer announces a price; an active bidder must confirm it (`Stay`) before the
//! round's deadline or it is out for good (activity rule: silence counts as dropping, and nobody
//! re-enters). The clock rises by the increment while two or more bidders stay. The price a winner
//! pays is within one increment of the second-highest value, which is why the English auction
//! approximates Vickrey.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{result_notices, AuctionOutcome, AuctionReason, Award, Outgoing, ResultNotice};
use crate::error::{ConfigError, Rejection};
use crate::telemetry::{Telemetry, TelemetryEvent};
use crate::types::{AgentId, Money, Time};

/// Upper bound on rounds so a misconfigured clock cannot run forever; the auction then sells to the
/// earliest remaining bidder at the current price.
pub const ENGLISH_ROUNDS_MAX: u64 = 1_000_000;

/// Configuration of an English auction.
#[derive(Debug, Clone)]
pub struct EnglishConfig {
    /// The resource sold.
    pub item: String,
    /// Opening price, which is also the reserve, in minor units.
    pub start_price: Money,
    /// Price rise per round, at least one minor unit so the clock always moves; the winner's price
    /// is within this of Vickrey's. `start_price + increment · ENGLISH_ROUNDS_MAX` must fit in
    /// [`Money`], so no round's price can overflow.
    pub increment: Money,
    /// How long bidders have to confirm each price, in milliseconds.
    pub round_ms: u64,
    /// The admitted bidders.
    pub participants: BTreeSet<AgentId>,
    /// Budgets of bidders that declared one; confirming a price above it is refused.
    pub budgets: BTreeMap<AgentId, Money>,
}

/// A bidder's answer to the announced price.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EnglishResponse {
    /// I accept to pay the announced price.
    Stay,
    /// I leave the auction.
    Drop,
}

/// What a bidder sends to an English auction: its answer to the price of `round`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EnglishMessage {
    /// I accept to pay the price announced for `round`.
    Stay {
        /// The round answered; answers to any other round are refused.
        round: u64,
    },
    /// I leave the auction at `round`.
    Drop {
        /// The round answered.
        round: u64,
    },
}

/// Messages the auctioneer sends to bidders.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum EnglishNotice {
    /// The clock price for `round`; answer before `respond_by`.
    Price {
        /// Round number, from 0.
        round: u64,
        /// The price to confirm.
        price: Money,
        /// Deadline for the answer.
        respond_by: Time,
    },
    /// The auction decided.
    Result(ResultNotice),
}

/// An English (ascending clock) auction.
///
/// Driver order: [`new`](Self::new) (announces round 0), [`respond`](Self::respond) for each answer,
/// [`handle_timeout`](Self::handle_timeout) at [`poll_timeout`](Self::poll_timeout); drain
/// [`drain_outbox`](Self::drain_outbox) after each call.
#[derive(Debug)]
pub struct EnglishAuction {
    config: EnglishConfig,
    started_at: Time,
    round: u64,
    round_deadline: Time,
    active: BTreeSet<AgentId>,
    /// Bidders that confirmed the current price, in arrival order (ties go to the earliest).
    stayed: Vec<AgentId>,
    dropped: BTreeSet<AgentId>,
    /// Confirmations of the previous round, in arrival order.
    previous_stayed: Vec<AgentId>,
    responses: usize,
    outcome: Option<AuctionOutcome>,
    outbox: Vec<Outgoing<EnglishNotice>>,
    telemetry: Telemetry,
}

impl EnglishAuction {
    /// Opens the auction at `now` and announces the start price.
    pub fn new(config: EnglishConfig, now: Time) -> Result<Self, ConfigError> {
        validate(&config)?;
        let telemetry = Telemetry::started("english", config.item.clone(), now);
        let active = config.participants.clone();
        let mut auction = EnglishAuction {
            config,
            started_at: now,
            round: 0,
            round_deadline: now,
            active,
            stayed: Vec::new(),
            dropped: BTreeSet::new(),
            previous_stayed: Vec::new(),
            responses: 0,
            outcome: None,
            outbox: Vec::new(),
            telemetry,
        };
        auction.announce(now);
        Ok(auction)
    }

    /// The current clock price. `validate` proved the price of the last possible round fits, so
    /// this cannot overflow for any round the auction reaches.
    pub fn price(&self) -> Money {
        clock_price(&self.config, self.round).unwrap_or(Money::MAX)
    }

    /// The current round.
    pub fn round(&self) -> u64 {
        self.round
    }

    fn announce(&mut self, now: Time) {
        self.round_deadline = now.plus_ms(self.config.round_ms);
        let (round, price, respond_by) = (self.round, self.price(), self.round_deadline);
        for &to in &self.active {
            let msg = EnglishNotice::Price {
                round,
                price,
                respond_by,
            };
            self.outbox.push(Outgoing { to, msg });
        }
    }

    /// Applies a message from `from`; the [`Protocol`](crate::Protocol) entry point.
    pub fn handle(
        &mut self,
        now: Time,
        from: AgentId,
        message: EnglishMessage,
    ) -> Result<(), Rejection> {
        let (round, response) = match message {
            EnglishMessage::Stay { round } => (round, EnglishResponse::Stay),
            EnglishMessage::Drop { round } => (round, EnglishResponse::Drop),
        };
        self.respond(now, from, round, response)
    }

    /// Handles a bidder's answer for `round`. Rejections leave the auction unchanged.
    pub fn respond(
        &mut self,
        now: Time,
        agent: AgentId,
        round: u64,
        response: EnglishResponse,
    ) -> Result<(), Rejection> {
        let result = self.check(now, agent, round, response);
        let amount = (response == EnglishResponse::Stay).then(|| self.price().approx_f64());
        self.telemetry.input(now, agent, amount, &result);
        result?;
        self.responses += 1;
        match response {
            EnglishResponse::Stay => self.stayed.push(agent),
            EnglishResponse::Drop => {
                self.dropped.insert(agent);
            }
        }
        if self.stayed.len() + self.dropped.len() == self.active.len() {
            self.end_round(now);
        }
        Ok(())
    }

    fn check(
        &self,
        now: Time,
        agent: AgentId,
        round: u64,
        response: EnglishResponse,
    ) -> Result<(), Rejection> {
        if self.outcome.is_some() {
            return Err(Rejection::Closed);
        }
        if !self.config.participants.contains(&agent) {
            return Err(Rejection::NotParticipant { agent });
        }
        if !self.active.contains(&agent) {
            return Err(Rejection::Inactive { agent });
        }
        if round != self.round {
            let what = format!("round {round}, current round is {}", self.round);
            return Err(Rejection::InvalidReference { what });
        }
        if now >= self.round_deadline {
            let deadline = self.round_deadline;
            return Err(Rejection::Late { at: now, deadline });
        }
        if self.stayed.contains(&agent) || self.dropped.contains(&agent) {
            return Err(Rejection::Duplicate { agent });
        }
        match self.config.budgets.get(&agent) {
            Some(&budget) if response == EnglishResponse::Stay && self.price() > budget => {
                Err(Rejection::OverBudget {
                    amount: self.price(),
                    budget,
                })
            }
            _ => Ok(()),
        }
    }

    /// Checks internal consistency; tests and the simulator call it after every step.
    pub fn invariants(&self) -> Result<(), String> {
        let answered: BTreeSet<AgentId> = self.stayed.iter().copied().collect();
        if answered.len() != self.stayed.len() {
            return Err("a bidder confirmed twice in one round".into());
        }
        if !answered.is_disjoint(&self.dropped) {
            return Err("a bidder both stayed and dropped".into());
        }
        if !answered.is_subset(&self.active) || !self.dropped.is_subset(&self.active) {
            return Err("an inactive bidder answered".into());
        }
        if !self.active.is_subset(&self.config.participants) {
            return Err("an outsider is active".into());
        }
        if self.round_deadline < self.started_at || self.price() < self.config.start_price {
            return Err("the round deadline or the clock went backwards".into());
        }
        if let Some(agent) = self
            .stayed
            .iter()
            .find(|a| !self.within_budget(a, self.price()))
        {
            return Err(format!("{agent} confirmed a price over its budget"));
        }
        self.award_consistent()
    }

    fn within_budget(&self, agent: &AgentId, price: Money) -> bool {
        self.config.budgets.get(agent).is_none_or(|&b| price <= b)
    }

    /// A winner is a participant that confirmed the price it pays, within its budget.
    fn award_consistent(&self) -> Result<(), String> {
        let Some(award) = self.outcome.as_ref().and_then(|o| o.award.as_ref()) else {
            return Ok(());
        };
        if !self.config.participants.contains(&award.winner) {
            return Err("the winner is not a participant".into());
        }
        if !self.within_budget(&award.winner, award.price) {
            return Err("the winner pays more than its budget".into());
        }
        if award.price < self.config.start_price || award.price > self.price() {
            return Err(format!("price {} outside [start, clock]", award.price));
        }
        Ok(())
    }

    /// The current round's deadline, while the auction is open.
    pub fn poll_timeout(&self) -> Option<Time> {
        self.outcome.is_none().then_some(self.round_deadline)
    }

    /// Ends the round if its deadline passed: silent bidders are dropped (activity rule).
    pub fn handle_timeout(&mut self, now: Time) -> Option<AuctionOutcome> {
        if self.outcome.is_none() && now >= self.round_deadline {
            self.end_round(now);
        }
        self.outcome.clone()
    }

    fn end_round(&mut self, now: Time) {
        let stayed = std::mem::take(&mut self.stayed);
        self.dropped.clear();
        match stayed.len() {
            0 => self.decide_all_dropped(now),
            1 => self.decide(
                now,
                stayed[0],
                self.price(),
                AuctionReason::LastActiveBidder,
            ),
            _ if self.round + 1 >= ENGLISH_ROUNDS_MAX => self.decide(
                now,
                stayed[0],
                self.price(),
                AuctionReason::LastActiveBidder,
            ),
            _ => {
                self.active = stayed.iter().copied().collect();
                self.previous_stayed = stayed;
                self.round += 1;
                self.announce(now);
            }
        }
    }

    fn decide_all_dropped(&mut self, now: Time) {
        // Everyone left at this price; the earliest to confirm the previous price is committed to it.
        match (self.round, self.previous_stayed.first().copied()) {
            (0, _) | (_, None) => {
                let reason = if self.responses == 0 {
                    AuctionReason::NoBids
                } else {
                    AuctionReason::BelowReserve
                };
                self.finish(now, None, reason);
            }
            (_, Some(winner)) => {
                let price = clock_price(&self.config, self.round - 1).unwrap_or(Money::MAX);
                self.decide(now, winner, price, AuctionReason::AllDroppedTogether);
            }
        }
    }

    fn decide(&mut self, now: Time, winner: AgentId, price: Money, reason: AuctionReason) {
        let award = Award {
            winner,
            price,
            winning_bid: price,
        };
        self.finish(now, Some(award), reason);
    }

    fn finish(&mut self, now: Time, award: Option<Award>, reason: AuctionReason) {
        let notices = result_notices(self.config.participants.iter().copied(), award.as_ref());
        self.outbox.extend(notices.into_iter().map(|o| Outgoing {
            to: o.to,
            msg: EnglishNotice::Result(o.msg),
        }));
        let outcome = AuctionOutcome {
            item: self.config.item.clone(),
            award,
            reason,
            bids_considered: self.responses,
            decided_at: now,
        };
        self.telemetry.emit(TelemetryEvent::Decided {
            protocol: "english",
            summary: outcome.summary(),
            at: now,
            duration_ms: now.since(self.started_at),
        });
        self.outcome = Some(outcome);
    }

    /// The outcome, once decided.
    pub fn outcome(&self) -> Option<&AuctionOutcome> {
        self.outcome.as_ref()
    }

    /// Takes the messages for bidders.
    pub fn drain_outbox(&mut self) -> Vec<Outgoing<EnglishNotice>> {
        std::mem::take(&mut self.outbox)
    }

    /// Takes the buffered telemetry events.
    pub fn drain_telemetry(&mut self) -> Vec<TelemetryEvent> {
        self.telemetry.drain()
    }
}

crate::protocol::delegate_protocol!(
    EnglishAuction,
    message = EnglishMessage,
    notice = EnglishNotice,
    outcome = AuctionOutcome
);

/// The clock price of `round`: `start + increment · round`, or [`Overflow`](crate::Overflow).
pub fn clock_price(config: &EnglishConfig, round: u64) -> Result<Money, crate::Overflow> {
    config
        .increment
        .checked_mul(round)
        .and_then(|rise| config.start_price.checked_add(rise))
}

fn validate(config: &EnglishConfig) -> Result<(), ConfigError> {
    if config.increment == Money::ZERO {
        return Err(ConfigError::Parameter {
            name: "increment",
            value: 0.0,
            why: "must be at least one minor unit, or the clock never rises",
        });
    }
    // The round cap bounds the clock, so checking its last price once keeps every price exact.
    clock_price(config, ENGLISH_ROUNDS_MAX)?;
    if config.participants.is_empty() {
        return Err(ConfigError::Empty {
            what: "participants",
        });
    }
    Ok(())
}
