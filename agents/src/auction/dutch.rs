//! Dutch auction: a falling price clock; the first bidder to accept wins at the current price.
//!
//! The clock moves in ticks the driver fires ([`DutchAuction::handle_timeout`]); an acceptance names
//! the tick it answers, so an acceptance of a stale (higher) price that arrives after the clock moved
//! is refused rather than honoured at a price the auctioneer no longer offers. Strategically it is
//! equivalent to a first-price sealed-bid auction: the winner pays within one decrement of its
//! first-price bid.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{result_notices, AuctionOutcome, AuctionReason, Award, Outgoing, ResultNotice};
use crate::error::{ConfigError, Rejection};
use crate::telemetry::{Telemetry, TelemetryEvent};
use crate::types::{AgentId, Money, Time};

/// Configuration of a Dutch auction.
#[derive(Debug, Clone)]
pub struct DutchConfig {
    /// The resource sold.
    pub item: String,
    /// Opening (highest) price in minor units, >= floor.
    pub start_price: Money,
    /// Price fall per tick, at least one minor unit so the clock always reaches the floor.
    pub decrement: Money,
    /// Lowest price offered (the reserve).
    pub floor: Money,
    /// Milliseconds between ticks.
    pub tick_ms: u64,
    /// Admitted bidders with their budgets (`None`: no budget declared).
    pub participants: BTreeMap<AgentId, Option<Money>>,
}

/// What a bidder sends to a Dutch auction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DutchMessage {
    /// I take the item at the price of `tick`; refused if the clock has moved on.
    Accept {
        /// The tick whose price is accepted.
        tick: u64,
    },
}

/// Messages the auctioneer sends to bidders.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum DutchNotice {
    /// The clock price for `tick`.
    Price {
        /// Tick number, from 0.
        tick: u64,
        /// The price on offer.
        price: Money,
    },
    /// The auction decided.
    Result(ResultNotice),
}

/// A Dutch (descending clock) auction.
///
/// Driver order: [`new`](Self::new) (announces tick 0), [`accept`](Self::accept) on each acceptance,
/// [`handle_timeout`](Self::handle_timeout) at [`poll_timeout`](Self::poll_timeout); drain the
/// outbox after each call.
#[derive(Debug)]
pub struct DutchAuction {
    config: DutchConfig,
    started_at: Time,
    tick: u64,
    next_tick_at: Time,
    outcome: Option<AuctionOutcome>,
    outbox: Vec<Outgoing<DutchNotice>>,
    telemetry: Telemetry,
}

impl DutchAuction {
    /// Opens the auction at `now` and announces the start price.
    pub fn new(config: DutchConfig, now: Time) -> Result<Self, ConfigError> {
        validate(&config)?;
        let telemetry = Telemetry::started("dutch", config.item.clone(), now);
        let mut auction = DutchAuction {
            next_tick_at: now.plus_ms(config.tick_ms),
            config,
            started_at: now,
            tick: 0,
            outcome: None,
            outbox: Vec::new(),
            telemetry,
        };
        auction.announce();
        Ok(auction)
    }

    /// The price at `tick`, never below the floor.
    pub fn price_at(&self, tick: u64) -> Money {
        // A fall larger than representable lands below any start price: the floor.
        let fall = self
            .config
            .decrement
            .checked_mul(tick)
            .unwrap_or(Money::MAX);
        let price = self
            .config
            .start_price
            .checked_sub(fall)
            .unwrap_or(Money::ZERO);
        price.max(self.config.floor)
    }

    /// The price currently on offer.
    pub fn price(&self) -> Money {
        self.price_at(self.tick)
    }

    /// The current tick.
    pub fn tick(&self) -> u64 {
        self.tick
    }

    fn announce(&mut self) {
        let (tick, price) = (self.tick, self.price());
        for &to in self.config.participants.keys() {
            let msg = DutchNotice::Price { tick, price };
            self.outbox.push(Outgoing { to, msg });
        }
    }

    /// Applies a message from `from`; the [`Protocol`](crate::Protocol) entry point.
    pub fn handle(
        &mut self,
        now: Time,
        from: AgentId,
        message: DutchMessage,
    ) -> Result<(), Rejection> {
        match message {
            DutchMessage::Accept { tick } => self.accept(now, from, tick),
        }
    }

    /// Accepts the price of `tick`. The first valid acceptance wins and closes the auction.
    pub fn accept(&mut self, now: Time, agent: AgentId, tick: u64) -> Result<(), Rejection> {
        let result = self.check(agent, tick);
        self.telemetry
            .input(now, agent, Some(self.price().approx_f64()), &result);
        result?;
        let price = self.price();
        let award = Award {
            winner: agent,
            price,
            winning_bid: price,
        };
        self.finish(
            now,
            Some(award),
            AuctionReason::FirstToAcceptFallingPrice,
            1,
        );
        Ok(())
    }

    fn check(&self, agent: AgentId, tick: u64) -> Result<(), Rejection> {
        if self.outcome.is_some() {
            return Err(Rejection::Closed);
        }
        let budget = *self
            .config
            .participants
            .get(&agent)
            .ok_or(Rejection::NotParticipant { agent })?;
        if tick != self.tick {
            let what = format!("tick {tick}, current tick is {}", self.tick);
            return Err(Rejection::InvalidReference { what });
        }
        match budget {
            Some(budget) if self.price() > budget => Err(Rejection::OverBudget {
                amount: self.price(),
                budget,
            }),
            _ => Ok(()),
        }
    }

    /// When the clock next moves, while the auction is open.
    pub fn poll_timeout(&self) -> Option<Time> {
        self.outcome.is_none().then_some(self.next_tick_at)
    }

    /// Moves the clock down one tick if it is due; after the floor tick passes unaccepted, closes.
    pub fn handle_timeout(&mut self, now: Time) -> Option<AuctionOutcome> {
        if self.outcome.is_some() || now < self.next_tick_at {
            return self.outcome.clone();
        }
        if self.price() <= self.config.floor {
            self.finish(now, None, AuctionReason::ClockExhausted, 0);
        } else {
            self.tick += 1;
            self.next_tick_at = now.plus_ms(self.config.tick_ms);
            self.announce();
        }
        self.outcome.clone()
    }

    fn finish(&mut self, now: Time, award: Option<Award>, reason: AuctionReason, bids: usize) {
        let notices = result_notices(self.config.participants.keys().copied(), award.as_ref());
        self.outbox.extend(notices.into_iter().map(|o| Outgoing {
            to: o.to,
            msg: DutchNotice::Result(o.msg),
        }));
        let outcome = AuctionOutcome {
            item: self.config.item.clone(),
            award,
            reason,
            bids_considered: bids,
            decided_at: now,
        };
        self.telemetry.emit(TelemetryEvent::Decided {
            protocol: "dutch",
            summary: outcome.summary(),
            at: now,
            duration_ms: now.since(self.started_at),
        });
        self.outcome = Some(outcome);
    }

    /// Checks internal consistency; tests and the simulator call it after every step.
    pub fn invariants(&self) -> Result<(), String> {
        let price = self.price();
        if price < self.config.floor || price > self.config.start_price {
            return Err(format!("clock price {price} left [floor, start]"));
        }
        if self.next_tick_at < self.started_at {
            return Err("the next tick is before the start".into());
        }
        let Some(award) = self.outcome.as_ref().and_then(|o| o.award.as_ref()) else {
            return Ok(());
        };
        match self.config.participants.get(&award.winner) {
            None => Err("the winner is not a participant".into()),
            Some(Some(budget)) if award.price > *budget => {
                Err("the winner pays more than its budget".into())
            }
            // The winner pays exactly the clock price it accepted, which is where the clock stopped.
            Some(_) if award.price != price => Err("the winner's price is not the clock's".into()),
            Some(_) => Ok(()),
        }
    }

    /// The outcome, once decided.
    pub fn outcome(&self) -> Option<&AuctionOutcome> {
        self.outcome.as_ref()
    }

    /// Takes the messages for bidders.
    pub fn drain_outbox(&mut self) -> Vec<Outgoing<DutchNotice>> {
        std::mem::take(&mut self.outbox)
    }

    /// Takes the buffered telemetry events.
    pub fn drain_telemetry(&mut self) -> Vec<TelemetryEvent> {
        self.telemetry.drain()
    }
}

crate::protocol::delegate_protocol!(
    DutchAuction,
    message = DutchMessage,
    notice = DutchNotice,
    outcome = AuctionOutcome
);

fn validate(config: &DutchConfig) -> Result<(), ConfigError> {
    if config.start_price < config.floor {
        return Err(ConfigError::Parameter {
            name: "start_price",
            value: config.start_price.approx_f64(),
            why: "must be >= floor",
        });
    }
    if config.decrement == Money::ZERO {
        return Err(ConfigError::Parameter {
            name: "decrement",
            value: 0.0,
            why: "must be at least one minor unit, or the clock never falls",
        });
    }
    if config.participants.is_empty() {
        return Err(ConfigError::Empty {
            what: "participants",
        });
    }
    Ok(())
}
