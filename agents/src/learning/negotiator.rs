//! Negotiators that learn across repeated alternating-offers negotiations.
//!
//! A [`LearningNegotiator`] keeps one time-dependent concession tactic per concession curvature β on
//! a grid (Boulware β < 1 through Conceder β > 1). Before each negotiation it picks a β by
//! epsilon-greedy over the average utility each β earned so far; after it, it learns the utility it
//! actually got (bandit feedback: what another β would have earned depends on how the opponent would
//! have reacted, which it cannot know). It plugs into the protocol through the ordinary
//! [`Negotiator`] trait, so the machine cannot tell it from a fixed tactic.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::negotiation::alternating::{negotiate, AlternatingConfig, NegotiationOutcome};
use crate::negotiation::strategy::{Action, Negotiator, Role, TimeDependent};
use crate::types::Time;

/// A negotiator that can change between negotiations; pluggable per agent.
pub trait AdaptiveNegotiator: Negotiator {
    /// Called before each negotiation, to choose how to play it.
    fn begin(&mut self);
    /// Called after each negotiation with its outcome, to learn from it.
    fn observe(&mut self, outcome: &NegotiationOutcome);
}

/// A fixed tactic does not adapt; implementing the trait lets it run as a baseline or opponent.
impl AdaptiveNegotiator for TimeDependent {
    fn begin(&mut self) {}

    fn observe(&mut self, _outcome: &NegotiationOutcome) {}
}

/// What a negotiation was worth to an agent: its gain over its reservation price on agreement
/// (price above reservation for a seller, below for a buyer), 0 without agreement.
pub fn negotiation_utility(role: Role, reservation: f64, outcome: &NegotiationOutcome) -> f64 {
    match outcome {
        NegotiationOutcome::Agreement { price, .. } => match role {
            Role::Seller => price - reservation,
            Role::Buyer => reservation - price,
        },
        NegotiationOutcome::Disagreement { .. } => 0.0,
    }
}

/// `k` concession curvatures spaced evenly in log scale from `low` to `high` (both > 0): equal
/// steps between Boulware and Conceder behaviour, since β acts as an exponent.
pub fn beta_grid(low: f64, high: f64, k: usize) -> Vec<f64> {
    if !(low.is_finite() && high.is_finite() && low > 0.0 && high > 0.0) || k < 2 {
        return vec![1.0];
    }
    let (a, b) = (low.ln(), high.ln());
    // The ends are set exactly: exp(ln x) can be off by an ulp, and callers name them.
    (0..k)
        .map(|i| match i {
            0 => low,
            _ if i == k - 1 => high,
            _ => (a + (b - a) * i as f64 / (k - 1) as f64).exp(),
        })
        .collect()
}

/// Epsilon-greedy choice of a concession curvature β across repeated negotiations.
#[derive(Debug, Clone)]
pub struct LearningNegotiator {
    tactic: TimeDependent,
    betas: Vec<f64>,
    estimates: Vec<f64>,
    counts: Vec<u64>,
    epsilon: f64,
    chosen: usize,
    rng: StdRng,
}

impl LearningNegotiator {
    /// Learns over `betas` (non-positive or non-finite entries are dropped; none left means β = 1)
    /// for an agent on `role` that opens at `initial` and never goes past `reservation`. Explores
    /// with probability `epsilon` (clamped to [0, 1]); `seed` makes its choices replayable.
    pub fn new(
        role: Role,
        initial: f64,
        reservation: f64,
        betas: Vec<f64>,
        epsilon: f64,
        seed: u64,
    ) -> Self {
        let mut betas: Vec<f64> = betas
            .into_iter()
            .filter(|b| b.is_finite() && *b > 0.0)
            .collect();
        if betas.is_empty() {
            betas.push(1.0);
        }
        let k = betas.len();
        LearningNegotiator {
            tactic: TimeDependent {
                role,
                initial,
                reservation,
                beta: betas[0],
                k: 0.0,
            },
            betas,
            estimates: vec![0.0; k],
            counts: vec![0; k],
            epsilon: if epsilon.is_nan() {
                0.0
            } else {
                epsilon.clamp(0.0, 1.0)
            },
            chosen: 0,
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// The β in use for the current negotiation.
    pub fn beta(&self) -> f64 {
        self.tactic.beta
    }

    /// The β with the best average utility so far (the lowest index on ties).
    pub fn best_beta(&self) -> f64 {
        let best = crate::voting::tally::argmax(&self.estimates).unwrap_or(0);
        self.betas[best]
    }

    /// Average utility and number of negotiations per β, in grid order.
    pub fn estimates(&self) -> Vec<(f64, f64, u64)> {
        self.betas
            .iter()
            .zip(&self.estimates)
            .zip(&self.counts)
            .map(|((b, e), c)| (*b, *e, *c))
            .collect()
    }
}

impl Negotiator for LearningNegotiator {
    fn role(&self) -> Role {
        self.tactic.role
    }

    fn act(&mut self, t: f64, standing: Option<f64>) -> Action {
        self.tactic.act(t, standing)
    }
}

impl AdaptiveNegotiator for LearningNegotiator {
    fn begin(&mut self) {
        // Untried β first, so every estimate starts from a real negotiation.
        self.chosen = match self.counts.iter().position(|&c| c == 0) {
            Some(untried) => untried,
            None if self.rng.gen::<f64>() < self.epsilon => self.rng.gen_range(0..self.betas.len()),
            None => crate::voting::tally::argmax(&self.estimates).unwrap_or(0),
        };
        self.tactic.beta = self.betas[self.chosen];
    }

    fn observe(&mut self, outcome: &NegotiationOutcome) {
        let utility = negotiation_utility(self.tactic.role, self.tactic.reservation, outcome);
        let i = self.chosen;
        self.counts[i] += 1;
        // Incremental mean: no growing history, and the same arithmetic on every replay.
        self.estimates[i] += (utility - self.estimates[i]) / self.counts[i] as f64;
    }
}

/// Plays `rounds` negotiations under `config` between `buyer` and `seller`, each told to
/// [`begin`](AdaptiveNegotiator::begin) before and to [`observe`](AdaptiveNegotiator::observe) after.
/// Returns every outcome in order; negotiation `r` starts at virtual time `r` seconds.
///
/// Generic rather than `dyn` so the call does not rely on trait upcasting, which is newer than the
/// workspace's minimum Rust version.
pub fn run_repeated_negotiations<B: AdaptiveNegotiator, S: AdaptiveNegotiator>(
    config: &AlternatingConfig,
    buyer: &mut B,
    seller: &mut S,
    rounds: u64,
) -> Vec<NegotiationOutcome> {
    let mut outcomes = Vec::new();
    for round in 0..rounds {
        buyer.begin();
        seller.begin();
        let start = Time(round.saturating_mul(1_000));
        // A config `negotiate` refuses (e.g. zero rounds) cannot start any negotiation.
        let Ok(outcome) = negotiate(config.clone(), buyer, seller, start) else {
            break;
        };
        buyer.observe(&outcome);
        seller.observe(&outcome);
        outcomes.push(outcome);
    }
    outcomes
}
