//! Adaptive bidders that learn across repeated auctions, pluggable per agent through
//! [`BidStrategy`], and negotiators that learn across repeated negotiations, pluggable through
//! [`negotiator::AdaptiveNegotiator`] (see [`negotiator::LearningNegotiator`]).
//!
//! Learners choose a shading factor from a grid (bid = factor × value):
//! - [`EpsilonGreedy`] learns from its own realised utility only (bandit feedback);
//! - [`MultiplicativeWeights`] (Hedge) uses the announced highest competing bid to score every grid
//!   point after each round (full information), which gives average regret `O(sqrt(ln K / T))`.
//!
//! Randomness comes from the caller's RNG so repeated runs replay exactly.

pub mod negotiator;
pub mod repeated;

use rand::{Rng, RngCore};
use serde::{Deserialize, Serialize};

use crate::auction::sealed::Pricing;

/// What a bidder learns after one round.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RoundFeedback {
    /// The bidder's value for the item this round.
    pub value: f64,
    /// What it bid.
    pub bid: f64,
    /// Whether it won.
    pub won: bool,
    /// What it paid (0 if it lost).
    pub paid: f64,
    /// The highest competing bid, if the auctioneer announces it (None with no competitors).
    pub highest_other: Option<f64>,
    /// The pricing rule of the auction.
    pub pricing: Pricing,
}

/// A bidding policy; each agent can use its own.
pub trait BidStrategy {
    /// The bid for an item worth `value` to this agent.
    fn bid(&mut self, value: f64, rng: &mut dyn RngCore) -> f64;
    /// Learns from the round's result.
    fn observe(&mut self, feedback: &RoundFeedback);
}

/// Bids its value; weakly dominant in second-price auctions.
#[derive(Debug, Clone, Copy, Default)]
pub struct Truthful;

impl BidStrategy for Truthful {
    fn bid(&mut self, value: f64, _rng: &mut dyn RngCore) -> f64 {
        value
    }

    fn observe(&mut self, _feedback: &RoundFeedback) {}
}

/// Bids uniformly at random in `[low, high)`, ignoring its value; a stationary opponent for tests.
#[derive(Debug, Clone, Copy)]
pub struct RandomBidder {
    /// Lowest bid.
    pub low: f64,
    /// Upper end of bids.
    pub high: f64,
}

impl BidStrategy for RandomBidder {
    fn bid(&mut self, _value: f64, rng: &mut dyn RngCore) -> f64 {
        self.low + (self.high - self.low) * rng.gen::<f64>()
    }

    fn observe(&mut self, _feedback: &RoundFeedback) {}
}

/// Utility (as a fraction of value) that bidding `factor × value` would have earned, given the
/// highest competing bid. Ties count as losses: the learner cannot count on tie-breaking.
pub fn counterfactual_utility(factor: f64, feedback: &RoundFeedback) -> f64 {
    if !(feedback.value.is_finite() && feedback.value > 0.0) {
        return 0.0;
    }
    let bid = factor * feedback.value;
    let other = feedback.highest_other.unwrap_or(0.0);
    if bid <= other && feedback.highest_other.is_some() {
        return 0.0;
    }
    let price = match feedback.pricing {
        Pricing::FirstPrice => bid,
        Pricing::SecondPrice => other,
    };
    (feedback.value - price) / feedback.value
}

/// `k` evenly spaced shading factors from `1/k` to 1.
pub fn shading_grid(k: usize) -> Vec<f64> {
    (1..=k.max(1)).map(|i| i as f64 / k.max(1) as f64).collect()
}

/// Epsilon-greedy over a grid of shading factors, with sample-average estimates.
#[derive(Debug, Clone)]
pub struct EpsilonGreedy {
    grid: Vec<f64>,
    estimates: Vec<f64>,
    counts: Vec<u64>,
    epsilon: f64,
    last: usize,
}

impl EpsilonGreedy {
    /// Explores with probability `epsilon` (clamped to [0, 1]) over `grid` (non-empty, else [1.0]).
    pub fn new(grid: Vec<f64>, epsilon: f64) -> Self {
        let grid = if grid.is_empty() { vec![1.0] } else { grid };
        let k = grid.len();
        EpsilonGreedy {
            grid,
            estimates: vec![0.0; k],
            counts: vec![0; k],
            epsilon: epsilon.clamp(0.0, 1.0),
            last: 0,
        }
    }

    /// The factor with the best estimate (lowest index on ties).
    pub fn best_factor(&self) -> f64 {
        let best = crate::voting::tally::argmax(&self.estimates).unwrap_or(0);
        self.grid[best]
    }
}

impl BidStrategy for EpsilonGreedy {
    fn bid(&mut self, value: f64, rng: &mut dyn RngCore) -> f64 {
        // Untried arms first, so every estimate starts from real data.
        self.last = match self.counts.iter().position(|&c| c == 0) {
            Some(untried) => untried,
            None if rng.gen::<f64>() < self.epsilon => rng.gen_range(0..self.grid.len()),
            None => crate::voting::tally::argmax(&self.estimates).unwrap_or(0),
        };
        self.grid[self.last] * value
    }

    fn observe(&mut self, feedback: &RoundFeedback) {
        let utility = if feedback.won && feedback.value > 0.0 {
            (feedback.value - feedback.paid) / feedback.value
        } else {
            0.0
        };
        let i = self.last;
        self.counts[i] += 1;
        self.estimates[i] += (utility - self.estimates[i]) / self.counts[i] as f64;
    }
}

/// Multiplicative weights (Hedge) over a grid of shading factors, full-information updates.
#[derive(Debug, Clone)]
pub struct MultiplicativeWeights {
    grid: Vec<f64>,
    log_weights: Vec<f64>,
    eta: f64,
}

impl MultiplicativeWeights {
    /// Learning rate `eta` > 0 (for `T` rounds and `K` arms, `sqrt(8 ln K / T)` is the textbook choice).
    pub fn new(grid: Vec<f64>, eta: f64) -> Self {
        let grid = if grid.is_empty() { vec![1.0] } else { grid };
        let k = grid.len();
        MultiplicativeWeights {
            grid,
            log_weights: vec![0.0; k],
            eta: if eta.is_finite() { eta.abs() } else { 0.1 },
        }
    }

    /// Current probability of each grid point.
    pub fn distribution(&self) -> Vec<f64> {
        // Weights are kept in log space so long runs cannot overflow; subtract the max before exp.
        let max = self
            .log_weights
            .iter()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max);
        let w: Vec<f64> = self.log_weights.iter().map(|l| (l - max).exp()).collect();
        let total: f64 = w.iter().sum();
        w.iter().map(|x| x / total).collect()
    }

    /// The grid of factors.
    pub fn grid(&self) -> &[f64] {
        &self.grid
    }

    /// The most likely factor.
    pub fn best_factor(&self) -> f64 {
        let best = crate::voting::tally::argmax(&self.log_weights).unwrap_or(0);
        self.grid[best]
    }
}

impl BidStrategy for MultiplicativeWeights {
    fn bid(&mut self, value: f64, rng: &mut dyn RngCore) -> f64 {
        let mut u = rng.gen::<f64>();
        let probabilities = self.distribution();
        let mut chosen = self.grid.len() - 1;
        for (i, p) in probabilities.iter().enumerate() {
            if u < *p {
                chosen = i;
                break;
            }
            u -= p;
        }
        self.grid[chosen] * value
    }

    fn observe(&mut self, feedback: &RoundFeedback) {
        for (log_w, &factor) in self.log_weights.iter_mut().zip(&self.grid) {
            *log_w += self.eta * counterfactual_utility(factor, feedback);
        }
    }
}
