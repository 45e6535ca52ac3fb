//! Call market (double auction): buy and sell limit orders collected until a deadline, then cleared
//! at once.
//!
//! Units are ranked: buyers by limit descending, sellers ascending, ties by arrival then agent id.
//! The efficient quantity `q` is the largest `q` with `b_q >= s_q` (the q-th highest buy unit against
//! the q-th lowest sell unit). Two pricing rules:
//! - [`ClearingRule::Uniform`]: all `q` units trade at the midpoint of the interval of prices that
//!   clears exactly `q` units, `[max(s_q, b_{q+1}), min(b_q, s_{q+1})]` — efficient, individually
//!   rational, exactly budget-balanced, but not truthful.
//! - [`ClearingRule::McAfee`]: McAfee (1992) trade reduction. With `p0 = (b_{q+1} + s_{q+1}) / 2`,
//!   if `s_q <= p0 <= b_q` all `q` units trade at `p0`; otherwise the marginal pair is excluded, `q-1`
//!   units trade, buyers pay `b_q` and sellers receive `s_q`. Dominant-strategy truthful for unit
//!   traders and weakly budget surplus, at the cost of at most one trade.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::error::Rejection;
use crate::telemetry::{Telemetry, TelemetryEvent};
use crate::types::{validate_amount, AgentId, Outgoing, Overflow, Time};

/// Largest quantity one order may carry, so cumulative sums cannot overflow.
pub const ORDER_QUANTITY_MAX: u64 = 1 << 40;

/// Largest limit an order may name: a clearing's surplus (a price difference times at most
/// `u64::MAX` units) then stays within f64's range.
pub const LIMIT_MAX: f64 = f64::MAX / 18_446_744_073_709_551_616.0;

/// Which side of the market an order is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Side {
    /// Wants to buy at most `limit` per unit.
    Buy,
    /// Wants to sell at least `limit` per unit.
    Sell,
}

/// A limit order as the market stores it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Order {
    /// The trader.
    pub agent: AgentId,
    /// Buy or sell.
    pub side: Side,
    /// Units wanted or offered, >= 1.
    pub quantity: u64,
    /// Per-unit limit price.
    pub limit: f64,
    /// Arrival rank; breaks ties between equal limits.
    pub seq: u64,
}

/// How the market sets prices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClearingRule {
    /// One price, midpoint of the clearing interval.
    Uniform,
    /// McAfee trade reduction (truthful, weakly budget surplus).
    McAfee,
}

/// One order's execution.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Fill {
    /// The trader.
    pub agent: AgentId,
    /// Buy or sell.
    pub side: Side,
    /// Units traded.
    pub quantity: u64,
    /// Per-unit price paid (buy) or received (sell).
    pub price: f64,
}

/// Why the market cleared the way it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClearingReason {
    /// No buy unit valued at least a sell unit.
    NoCrossing,
    /// All efficient units traded at one price.
    AllEfficientUnitsTraded,
    /// McAfee excluded the marginal pair; the surplus goes to the market maker.
    TradeReduction,
}

/// The record of a cleared call market.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClearingOutcome {
    /// Efficient quantity: largest `q` with `b_q >= s_q`.
    pub efficient_quantity: u64,
    /// Units actually traded (efficient quantity, or one less under trade reduction).
    pub traded_quantity: u64,
    /// Price buyers pay per unit, if anything traded.
    pub buyer_price: Option<f64>,
    /// Price sellers receive per unit, if anything traded.
    pub seller_price: Option<f64>,
    /// Fills, buyers then sellers, each in priority order.
    pub fills: Vec<Fill>,
    /// Money left with the market: buyers' payments minus sellers' receipts (never negative).
    pub surplus: f64,
    /// Why.
    pub reason: ClearingReason,
}

/// Unit-level view of one side's ranked orders: the limit of the k-th unit (1-based).
struct Ladder<'a> {
    orders: &'a [Order],
    cumulative: Vec<u64>,
}

impl<'a> Ladder<'a> {
    fn new(orders: &'a [Order]) -> Self {
        let mut total = 0u64;
        let cumulative = orders
            .iter()
            .map(|o| {
                // Saturating: 2^24 orders of the largest quantity would otherwise overflow.
                total = total.saturating_add(o.quantity);
                total
            })
            .collect();
        Ladder { orders, cumulative }
    }

    fn total(&self) -> u64 {
        self.cumulative.last().copied().unwrap_or(0)
    }

    fn unit(&self, k: u64) -> Option<f64> {
        if k == 0 || k > self.total() {
            return None;
        }
        let index = self.cumulative.partition_point(|&c| c < k);
        self.orders.get(index).map(|o| o.limit)
    }
}

/// Ranks orders of one side: best limit first, then arrival, then agent id.
fn rank(orders: &mut [Order], side: Side) {
    orders.sort_by(|a, b| {
        let by_limit = match side {
            Side::Buy => b.limit.total_cmp(&a.limit),
            Side::Sell => a.limit.total_cmp(&b.limit),
        };
        by_limit.then((a.seq, a.agent).cmp(&(b.seq, b.agent)))
    });
}

/// Largest `q` with `b_q >= s_q`, by binary search (the difference `b_k - s_k` falls with `k`).
fn efficient_quantity(buys: &Ladder, sells: &Ladder) -> u64 {
    let (mut lo, mut hi) = (0u64, buys.total().min(sells.total()));
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        match (buys.unit(mid), sells.unit(mid)) {
            (Some(b), Some(s)) if b >= s => lo = mid,
            _ => hi = mid - 1,
        }
    }
    lo
}

/// Clears validated orders under `rule`.
pub fn clear(orders: &[Order], rule: ClearingRule) -> ClearingOutcome {
    let mut buys: Vec<Order> = orders
        .iter()
        .copied()
        .filter(|o| o.side == Side::Buy)
        .collect();
    let mut sells: Vec<Order> = orders
        .iter()
        .copied()
        .filter(|o| o.side == Side::Sell)
        .collect();
    rank(&mut buys, Side::Buy);
    rank(&mut sells, Side::Sell);
    let (b, s) = (Ladder::new(&buys), Ladder::new(&sells));
    let q = efficient_quantity(&b, &s);
    let (Some(b_q), Some(s_q)) = (b.unit(q), s.unit(q)) else {
        return no_trade(q);
    };
    let (b_next, s_next) = (b.unit(q + 1), s.unit(q + 1));
    let (traded, buyer_price, seller_price, reason) = match rule {
        ClearingRule::Uniform => {
            let low = b_next.map_or(s_q, |bn| bn.max(s_q));
            let high = s_next.map_or(b_q, |sn| sn.min(b_q));
            let p = low + (high - low) / 2.0;
            (q, p, p, ClearingReason::AllEfficientUnitsTraded)
        }
        ClearingRule::McAfee => match (b_next, s_next) {
            (Some(bn), Some(sn)) if (s_q..=b_q).contains(&(bn + (sn - bn) / 2.0)) => {
                let p0 = bn + (sn - bn) / 2.0;
                (q, p0, p0, ClearingReason::AllEfficientUnitsTraded)
            }
            _ => (q - 1, b_q, s_q, ClearingReason::TradeReduction),
        },
    };
    if traded == 0 {
        return no_trade(q);
    }
    let mut fills = fill(&buys, traded, buyer_price);
    fills.extend(fill(&sells, traded, seller_price));
    ClearingOutcome {
        efficient_quantity: q,
        traded_quantity: traded,
        buyer_price: Some(buyer_price),
        seller_price: Some(seller_price),
        fills,
        surplus: (buyer_price - seller_price) * traded as f64,
        reason,
    }
}

fn no_trade(efficient_quantity: u64) -> ClearingOutcome {
    let reason = if efficient_quantity == 0 {
        ClearingReason::NoCrossing
    } else {
        ClearingReason::TradeReduction
    };
    ClearingOutcome {
        efficient_quantity,
        traded_quantity: 0,
        buyer_price: None,
        seller_price: None,
        fills: Vec::new(),
        surplus: 0.0,
        reason,
    }
}

/// Fills the first `units` units of ranked orders at `price`.
fn fill(ranked: &[Order], units: u64, price: f64) -> Vec<Fill> {
    let mut left = units;
    let mut fills = Vec::new();
    for order in ranked {
        if left == 0 {
            break;
        }
        let quantity = order.quantity.min(left);
        left -= quantity;
        fills.push(Fill {
            agent: order.agent,
            side: order.side,
            quantity,
            price,
        });
    }
    fills
}

/// What a trader sends to a call market.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum MarketMessage {
    /// Buy up to `quantity` units at no more than `limit` each.
    Bid {
        /// Units wanted, 1..=[`ORDER_QUANTITY_MAX`].
        quantity: u64,
        /// Highest acceptable price per unit.
        limit: f64,
    },
    /// Sell up to `quantity` units at no less than `limit` each.
    Ask {
        /// Units offered, 1..=[`ORDER_QUANTITY_MAX`].
        quantity: u64,
        /// Lowest acceptable price per unit.
        limit: f64,
    },
}

/// What a call market tells each trader once it clears.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum MarketNotice {
    /// Your order on `side` traded `quantity` units at `price` each.
    Filled {
        /// Buy or sell.
        side: Side,
        /// Units traded.
        quantity: u64,
        /// Per-unit price.
        price: f64,
    },
    /// Your order on `side` did not trade.
    Unfilled {
        /// Buy or sell.
        side: Side,
    },
}

/// A call market as a state machine: orders until the deadline, one clearing at close.
///
/// Driver order: [`new`](Self::new), [`handle`](Self::handle) per message,
/// [`handle_timeout`](Self::handle_timeout) at [`poll_timeout`](Self::poll_timeout) (or
/// [`close`](Self::close)); then drain the outbox and telemetry.
#[derive(Debug)]
pub struct CallMarket {
    name: String,
    rule: ClearingRule,
    deadline: Time,
    started_at: Time,
    participants: Option<BTreeSet<AgentId>>,
    orders: Vec<Order>,
    sides_seen: BTreeSet<(AgentId, Side)>,
    outcome: Option<ClearingOutcome>,
    outbox: Vec<Outgoing<MarketNotice>>,
    telemetry: Telemetry,
}

impl CallMarket {
    /// Opens a market at `now`, open to any agent, that accepts orders until `deadline`.
    pub fn new(name: impl Into<String>, rule: ClearingRule, deadline: Time, now: Time) -> Self {
        let name = name.into();
        let telemetry = Telemetry::started("call-market", name.clone(), now);
        CallMarket {
            name,
            rule,
            deadline,
            started_at: now,
            participants: None,
            orders: Vec::new(),
            sides_seen: BTreeSet::new(),
            outcome: None,
            outbox: Vec::new(),
            telemetry,
        }
    }

    /// Restricts trading to `agents`; orders from anyone else are refused.
    pub fn with_participants(mut self, agents: impl IntoIterator<Item = AgentId>) -> Self {
        self.participants = Some(agents.into_iter().collect());
        self
    }

    /// The instant after which orders are late and the market should be closed.
    pub fn deadline(&self) -> Time {
        self.deadline
    }

    /// Applies a message from `from`; the [`Protocol`](crate::Protocol) entry point.
    pub fn handle(
        &mut self,
        now: Time,
        from: AgentId,
        message: MarketMessage,
    ) -> Result<(), Rejection> {
        match message {
            MarketMessage::Bid { quantity, limit } => {
                self.submit(now, from, Side::Buy, quantity, limit)
            }
            MarketMessage::Ask { quantity, limit } => {
                self.submit(now, from, Side::Sell, quantity, limit)
            }
        }
    }

    /// Offers a limit order; one order per agent and side. Rejections leave the market unchanged.
    pub fn submit(
        &mut self,
        now: Time,
        agent: AgentId,
        side: Side,
        quantity: u64,
        limit: f64,
    ) -> Result<(), Rejection> {
        let result = self.check(now, agent, side, quantity, limit);
        self.telemetry.input(now, agent, Some(limit), &result);
        result?;
        let seq = self.orders.len() as u64;
        self.orders.push(Order {
            agent,
            side,
            quantity,
            limit,
            seq,
        });
        self.sides_seen.insert((agent, side));
        Ok(())
    }

    fn check(
        &self,
        now: Time,
        agent: AgentId,
        side: Side,
        qty: u64,
        limit: f64,
    ) -> Result<(), Rejection> {
        if self.outcome.is_some() {
            return Err(Rejection::Closed);
        }
        if now >= self.deadline {
            let deadline = self.deadline;
            return Err(Rejection::Late { at: now, deadline });
        }
        if !self.admits(&agent) {
            return Err(Rejection::NotParticipant { agent });
        }
        validate_amount(limit)?;
        if limit > LIMIT_MAX {
            let what = format!("limit {limit} above {LIMIT_MAX}: the surplus could leave f64");
            return Err(Rejection::Overflow(Overflow { what }));
        }
        if qty == 0 || qty > ORDER_QUANTITY_MAX {
            let what = format!("quantity {qty}, allowed 1..={ORDER_QUANTITY_MAX}");
            return Err(Rejection::InvalidQuantity { what });
        }
        if self.sides_seen.contains(&(agent, side)) {
            return Err(Rejection::Duplicate { agent });
        }
        Ok(())
    }

    fn admits(&self, agent: &AgentId) -> bool {
        self.participants.as_ref().is_none_or(|p| p.contains(agent))
    }

    /// The deadline, while the market is open.
    pub fn poll_timeout(&self) -> Option<Time> {
        self.outcome.is_none().then_some(self.deadline)
    }

    /// Clears the market once the deadline has passed.
    pub fn handle_timeout(&mut self, now: Time) -> Option<ClearingOutcome> {
        match self.outcome {
            None if now >= self.deadline => Some(self.close(now)),
            _ => self.outcome.clone(),
        }
    }

    /// Clears the market (idempotent).
    pub fn close(&mut self, now: Time) -> ClearingOutcome {
        if let Some(outcome) = &self.outcome {
            return outcome.clone();
        }
        let outcome = clear(&self.orders, self.rule);
        self.telemetry.emit(TelemetryEvent::Decided {
            protocol: "call-market",
            summary: format!(
                "{}: {} of {} efficient units traded ({:?})",
                self.name, outcome.traded_quantity, outcome.efficient_quantity, outcome.reason
            ),
            at: now,
            duration_ms: now.since(self.started_at),
        });
        self.notify(&outcome);
        self.outcome = Some(outcome.clone());
        outcome
    }

    /// One notice per order, in arrival order. Each agent has at most one order per side, so a
    /// fill is found by (agent, side).
    fn notify(&mut self, outcome: &ClearingOutcome) {
        for order in &self.orders {
            let fill = outcome
                .fills
                .iter()
                .find(|f| f.agent == order.agent && f.side == order.side);
            let msg = match fill {
                Some(f) => MarketNotice::Filled {
                    side: f.side,
                    quantity: f.quantity,
                    price: f.price,
                },
                None => MarketNotice::Unfilled { side: order.side },
            };
            self.outbox.push(Outgoing {
                to: order.agent,
                msg,
            });
        }
    }

    /// Checks internal consistency; tests and the simulator call it after every step.
    pub fn invariants(&self) -> Result<(), String> {
        if self.sides_seen.len() != self.orders.len() {
            return Err("an agent has two orders on one side".into());
        }
        for (i, order) in self.orders.iter().enumerate() {
            let valid = validate_amount(order.limit).is_ok()
                && (1..=ORDER_QUANTITY_MAX).contains(&order.quantity);
            if order.seq != i as u64 || !valid || !self.admits(&order.agent) {
                return Err(format!("stored order {i} is invalid: {order:?}"));
            }
        }
        match &self.outcome {
            Some(outcome) => self.clearing_consistent(outcome),
            None => Ok(()),
        }
    }

    /// Fills come from stored orders, respect their limits and sizes, balance across the sides and
    /// leave no deficit.
    fn clearing_consistent(&self, outcome: &ClearingOutcome) -> Result<(), String> {
        if outcome.traded_quantity > outcome.efficient_quantity {
            return Err("traded more than the efficient quantity".into());
        }
        for fill in &outcome.fills {
            let order = self
                .orders
                .iter()
                .find(|o| o.agent == fill.agent && o.side == fill.side)
                .ok_or_else(|| format!("fill without an order: {fill:?}"))?;
            let rational = match fill.side {
                Side::Buy => fill.price <= order.limit,
                Side::Sell => fill.price >= order.limit,
            };
            if fill.quantity > order.quantity || !rational {
                return Err(format!("fill {fill:?} breaks its order {order:?}"));
            }
        }
        for side in [Side::Buy, Side::Sell] {
            let units = outcome
                .fills
                .iter()
                .filter(|f| f.side == side)
                .fold(0u64, |sum, f| sum.saturating_add(f.quantity));
            if units != outcome.traded_quantity {
                return Err(format!(
                    "{side:?} fills sum to {units}, traded {}",
                    outcome.traded_quantity
                ));
            }
        }
        if outcome.surplus < 0.0 {
            return Err(format!("the market runs a deficit of {}", -outcome.surplus));
        }
        Ok(())
    }

    /// The outcome, once cleared.
    pub fn outcome(&self) -> Option<&ClearingOutcome> {
        self.outcome.as_ref()
    }

    /// Takes the notices for traders.
    pub fn drain_outbox(&mut self) -> Vec<Outgoing<MarketNotice>> {
        std::mem::take(&mut self.outbox)
    }

    /// Takes the buffered telemetry events.
    pub fn drain_telemetry(&mut self) -> Vec<TelemetryEvent> {
        self.telemetry.drain()
    }
}

crate::protocol::delegate_protocol!(
    CallMarket,
    message = MarketMessage,
    notice = MarketNotice,
    outcome = ClearingOutcome
);
