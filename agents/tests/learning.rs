//! Learning bidders in repeated auctions.

use foundation_agents::auction::sealed::Pricing;
use foundation_agents::learning::negotiator::{
    beta_grid, negotiation_utility, run_repeated_negotiations, AdaptiveNegotiator,
    LearningNegotiator,
};
use foundation_agents::learning::repeated::run_repeated;
use foundation_agents::learning::{
    counterfactual_utility, shading_grid, BidStrategy, EpsilonGreedy, MultiplicativeWeights,
    RandomBidder, RoundFeedback, Truthful,
};
use foundation_agents::negotiation::alternating::{AlternatingConfig, NegotiationOutcome};
use foundation_agents::negotiation::strategy::{Action, Negotiator, Role, TimeDependent};
use foundation_agents::AgentId;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const ROUNDS: u64 = 3_000;

/// Hedge learner (value 1) against an opponent bidding U[0, 1). Returns the learner and its utility.
fn hedge_against_uniform(pricing: Pricing, seed: u64) -> (MultiplicativeWeights, f64) {
    let eta = (8.0 * (20f64).ln() / ROUNDS as f64).sqrt();
    let mut learner = MultiplicativeWeights::new(shading_grid(20), eta);
    let mut opponent = RandomBidder {
        low: 0.0,
        high: 1.0,
    };
    let mut rng = StdRng::seed_from_u64(seed);
    let mut strategies: [&mut dyn BidStrategy; 2] = [&mut learner, &mut opponent];
    let outcome = run_repeated(&mut strategies, &[1.0, 1.0], pricing, ROUNDS, &mut rng);
    (learner, outcome.utilities[0])
}

#[test]
fn hedge_learns_to_shade_to_half_its_value_in_first_price_against_a_uniform_opponent() {
    // Against a U[0,1) bid, bidding b with value 1 earns (1 − b)·b, maximised at b = 1/2.
    let (learner, utility) = hedge_against_uniform(Pricing::FirstPrice, 3);
    let best = learner.best_factor();
    assert!((best - 0.5).abs() <= 0.1, "learned factor {best}");
    // Regret against the best fixed bid in expectation (0.25 per round) stays small.
    let average = utility / ROUNDS as f64;
    assert!(average > 0.25 - 0.05, "average utility {average}");
}

#[test]
fn hedge_learns_to_bid_its_value_in_second_price() {
    let (learner, _) = hedge_against_uniform(Pricing::SecondPrice, 5);
    assert!(
        learner.best_factor() >= 0.9,
        "learned factor {}",
        learner.best_factor()
    );
}

#[test]
fn epsilon_greedy_finds_a_profitable_shade_from_its_own_payoffs() {
    let mut learner = EpsilonGreedy::new(shading_grid(10), 0.1);
    let mut opponent = RandomBidder {
        low: 0.0,
        high: 1.0,
    };
    let mut rng = StdRng::seed_from_u64(11);
    let mut strategies: [&mut dyn BidStrategy; 2] = [&mut learner, &mut opponent];
    let outcome = run_repeated(
        &mut strategies,
        &[1.0, 1.0],
        Pricing::FirstPrice,
        ROUNDS,
        &mut rng,
    );
    let best = learner.best_factor();
    assert!((0.3..=0.7).contains(&best), "learned factor {best}");
    assert!(outcome.utilities[0] / ROUNDS as f64 > 0.18);
}

#[test]
fn repeated_runs_replay_exactly_from_the_seed() {
    let (a, ua) = hedge_against_uniform(Pricing::FirstPrice, 9);
    let (b, ub) = hedge_against_uniform(Pricing::FirstPrice, 9);
    assert_eq!((a.distribution(), ua), (b.distribution(), ub));
}

#[test]
fn a_strategy_that_emits_nan_simply_does_not_bid() {
    struct Broken;
    impl BidStrategy for Broken {
        fn bid(&mut self, _value: f64, _rng: &mut dyn rand::RngCore) -> f64 {
            f64::NAN
        }
        fn observe(&mut self, _feedback: &RoundFeedback) {}
    }
    let (mut broken, mut honest) = (Broken, Truthful);
    let mut strategies: [&mut dyn BidStrategy; 2] = [&mut broken, &mut honest];
    let mut rng = StdRng::seed_from_u64(1);
    let outcome = run_repeated(
        &mut strategies,
        &[5.0, 2.0],
        Pricing::SecondPrice,
        10,
        &mut rng,
    );
    assert_eq!((outcome.wins.clone(), outcome.revenue), (vec![0, 10], 0.0));
}

#[test]
fn counterfactual_utility_prices_each_rule_correctly() {
    let fb = |pricing| RoundFeedback {
        value: 10.0,
        bid: 0.0,
        won: false,
        paid: 0.0,
        highest_other: Some(4.0),
        pricing,
    };
    assert_eq!(counterfactual_utility(0.6, &fb(Pricing::FirstPrice)), 0.4);
    assert_eq!(counterfactual_utility(0.6, &fb(Pricing::SecondPrice)), 0.6);
    assert_eq!(counterfactual_utility(0.3, &fb(Pricing::SecondPrice)), 0.0);
}

/// A buyer with a linear tactic whose reservation price is redrawn in [120, 180) before every
/// negotiation and who walks away on any turn with probability `hazard` (an outside option): a
/// stationary but noisy opponent. A patient buyer opening low rewards a seller who holds out; an
/// impatient one opening closer rewards a seller who concedes quickly.
struct NoisyBuyer {
    tactic: TimeDependent,
    hazard: f64,
    rng: StdRng,
}

impl NoisyBuyer {
    fn new(initial: f64, hazard: f64, seed: u64) -> Self {
        let tactic = TimeDependent {
            role: Role::Buyer,
            initial,
            reservation: 150.0,
            beta: 1.0,
            k: 0.0,
        };
        let rng = StdRng::seed_from_u64(seed);
        NoisyBuyer {
            tactic,
            hazard,
            rng,
        }
    }
}

impl Negotiator for NoisyBuyer {
    fn role(&self) -> Role {
        Role::Buyer
    }

    fn act(&mut self, t: f64, standing: Option<f64>) -> Action {
        if self.rng.gen::<f64>() < self.hazard {
            return Action::Quit;
        }
        self.tactic.act(t, standing)
    }
}

impl AdaptiveNegotiator for NoisyBuyer {
    fn begin(&mut self) {
        self.tactic.reservation = 120.0 + 60.0 * self.rng.gen::<f64>();
    }

    fn observe(&mut self, _outcome: &NegotiationOutcome) {}
}

fn negotiation_config() -> AlternatingConfig {
    AlternatingConfig {
        subject: "price".into(),
        buyer: AgentId(1),
        seller: AgentId(2),
        first_mover: Role::Seller,
        rounds_max: 20,
        turn_ms: 100,
    }
}

const SELLER_INITIAL: f64 = 200.0;
const SELLER_RESERVATION: f64 = 50.0;
const NEGOTIATIONS: u64 = 2_000;
/// The learner is judged on the last quarter, after it had time to explore.
const JUDGED_FROM: usize = 1_500;

/// (opening price, hazard) of the patient and of the impatient buyer.
const OPPONENTS: [(f64, f64); 2] = [(0.0, 0.0), (100.0, 0.1)];

/// The seller's utility in each negotiation against a noisy buyer.
fn seller_utilities<S: AdaptiveNegotiator>(seller: &mut S, opponent: (f64, f64)) -> Vec<f64> {
    let mut buyer = NoisyBuyer::new(opponent.0, opponent.1, 11);
    run_repeated_negotiations(&negotiation_config(), &mut buyer, seller, NEGOTIATIONS)
        .iter()
        .map(|o| negotiation_utility(Role::Seller, SELLER_RESERVATION, o))
        .collect()
}

fn fixed(beta: f64) -> TimeDependent {
    TimeDependent {
        role: Role::Seller,
        initial: SELLER_INITIAL,
        reservation: SELLER_RESERVATION,
        beta,
        k: 0.0,
    }
}

fn learner() -> LearningNegotiator {
    let grid = beta_grid(0.1, 10.0, 9);
    LearningNegotiator::new(
        Role::Seller,
        SELLER_INITIAL,
        SELLER_RESERVATION,
        grid,
        0.1,
        7,
    )
}

fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len().max(1) as f64
}

#[test]
fn a_learning_negotiator_finds_the_concession_speed_each_opponent_rewards() {
    let mut best_betas = Vec::new();
    for opponent in OPPONENTS {
        let mut seller = learner();
        let learned = mean(&seller_utilities(&mut seller, opponent)[JUDGED_FROM..]);
        let fixed_late = |beta| mean(&seller_utilities(&mut fixed(beta), opponent)[JUDGED_FROM..]);
        let linear = fixed_late(1.0);
        let best_fixed = beta_grid(0.1, 10.0, 9)
            .into_iter()
            .map(fixed_late)
            .fold(f64::NEG_INFINITY, f64::max);
        assert!(
            learned > linear + 2.0,
            "{opponent:?}: learner {learned:.2} vs linear {linear:.2}"
        );
        // Exploring 10% of the time costs a little against the best β in hindsight, no more.
        assert!(
            learned >= 0.9 * best_fixed,
            "{opponent:?}: learner {learned:.2} vs best fixed {best_fixed:.2}"
        );
        best_betas.push(seller.best_beta());
    }
    // No single β serves both: hold out against the patient buyer, concede to the impatient one.
    assert!(
        best_betas[0] < 0.5 && best_betas[1] > 2.0,
        "best β per opponent: {best_betas:?}"
    );
}

#[test]
fn repeated_negotiations_replay_exactly_from_the_seeds() {
    let run = || {
        let mut seller = learner();
        let utilities = seller_utilities(&mut seller, OPPONENTS[1]);
        (utilities, seller.estimates())
    };
    assert_eq!(run(), run());
}
