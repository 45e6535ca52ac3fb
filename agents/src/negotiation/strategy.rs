//! Concession strategies for price negotiation between a buyer and a seller.
//!
//! Time-dependent tactics (Faratin, Sierra & Jennings 1998): at fraction `t` of its deadline an agent
//! offers `initial + α(t) · (reservation − initial)` with `α(t) = k + (1 − k) · t^(1/β)`.
//! `β < 1` is Boulware (holds firm, concedes at the end), `β > 1` is Conceder (gives ground early).
//! Rubinstein (1982) agents instead play the subgame-perfect split for their discount factors and
//! agree at once.

use serde::{Deserialize, Serialize};

/// Which side of the price an agent is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    /// Prefers lower prices; will not pay above its reservation.
    Buyer,
    /// Prefers higher prices; will not sell below its reservation.
    Seller,
}

impl Role {
    /// True when `price` is at least as good for this role as `than`.
    pub fn prefers(self, price: f64, than: f64) -> bool {
        match self {
            Role::Buyer => price <= than,
            Role::Seller => price >= than,
        }
    }
}

/// What a negotiator does on its turn.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Action {
    /// Propose this price.
    Offer(f64),
    /// Accept the standing offer.
    Accept,
    /// Leave without agreement.
    Quit,
}

/// A negotiator's policy; pluggable per agent.
pub trait Negotiator {
    /// The side this negotiator is on.
    fn role(&self) -> Role;
    /// Chooses an action at fraction `t` in [0, 1] of the negotiation's time, given the opponent's
    /// standing offer (none on the very first move).
    fn act(&mut self, t: f64, standing: Option<f64>) -> Action;
}

/// A time-dependent concession tactic (Boulware when `beta < 1`, Conceder when `beta > 1`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TimeDependent {
    /// Buyer or seller.
    pub role: Role,
    /// First offer (the most favourable price the agent asks for).
    pub initial: f64,
    /// Worst acceptable price.
    pub reservation: f64,
    /// Concession curvature, > 0.
    pub beta: f64,
    /// Fraction of the range conceded at once, in [0, 1].
    pub k: f64,
}

impl TimeDependent {
    /// A Boulware tactic (β = 0.2): firm until close to the deadline.
    pub fn boulware(role: Role, initial: f64, reservation: f64) -> Self {
        TimeDependent {
            role,
            initial,
            reservation,
            beta: 0.2,
            k: 0.0,
        }
    }

    /// A Conceder tactic (β = 5): concedes most of the range early.
    pub fn conceder(role: Role, initial: f64, reservation: f64) -> Self {
        TimeDependent {
            role,
            initial,
            reservation,
            beta: 5.0,
            k: 0.0,
        }
    }

    /// The offer this tactic makes at fraction `t` of its time.
    pub fn offer_at(&self, t: f64) -> f64 {
        let t = if t.is_finite() {
            t.clamp(0.0, 1.0)
        } else {
            1.0
        };
        let alpha = self.k + (1.0 - self.k) * t.powf(1.0 / self.beta);
        self.initial + alpha * (self.reservation - self.initial)
    }
}

impl Negotiator for TimeDependent {
    fn role(&self) -> Role {
        self.role
    }

    fn act(&mut self, t: f64, standing: Option<f64>) -> Action {
        let mine = self.offer_at(t);
        match standing {
            // Accept when the opponent already offers at least what I would ask now.
            Some(offer) if self.role.prefers(offer, mine) => Action::Accept,
            _ => Action::Offer(mine),
        }
    }
}

/// Rubinstein's subgame-perfect share of a unit surplus for the first proposer, with discount
/// factors `delta_1` (proposer) and `delta_2` (responder) in [0, 1): `(1 − δ2) / (1 − δ1·δ2)`.
pub fn rubinstein_share(delta_1: f64, delta_2: f64) -> f64 {
    (1.0 - delta_2) / (1.0 - delta_1 * delta_2)
}

/// A Rubinstein agent splitting the surplus between `low` (seller's cost) and `high` (buyer's value):
/// proposes its equilibrium share and accepts anything at least worth its continuation value.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Rubinstein {
    /// Buyer or seller.
    pub role: Role,
    /// Lowest price of the bargaining range.
    pub low: f64,
    /// Highest price of the bargaining range.
    pub high: f64,
    /// This agent's per-round discount factor, in [0, 1).
    pub delta_own: f64,
    /// The opponent's per-round discount factor, in [0, 1).
    pub delta_other: f64,
}

impl Rubinstein {
    fn price_for_my_share(&self, share: f64) -> f64 {
        let surplus = self.high - self.low;
        match self.role {
            Role::Seller => self.low + share * surplus,
            Role::Buyer => self.high - share * surplus,
        }
    }
}

impl Negotiator for Rubinstein {
    fn role(&self) -> Role {
        self.role
    }

    fn act(&mut self, _t: f64, standing: Option<f64>) -> Action {
        let proposer_share = rubinstein_share(self.delta_own, self.delta_other);
        // As responder I get what I would get as next proposer, discounted by one round.
        let responder_share = self.delta_own * proposer_share;
        // The equilibrium offer equals the threshold exactly in real arithmetic; the slack absorbs
        // the last-bit rounding that would otherwise turn agreement into a rejection.
        let slack = 1e-9 * (self.high - self.low).abs();
        let threshold = match self.role {
            Role::Seller => self.price_for_my_share(responder_share) - slack,
            Role::Buyer => self.price_for_my_share(responder_share) + slack,
        };
        match standing {
            Some(offer) if self.role.prefers(offer, threshold) => Action::Accept,
            _ => Action::Offer(self.price_for_my_share(proposer_share)),
        }
    }
}
