//! Learning bidders in repeated auctions.

use foundation_agents::auction::sealed::Pricing;
use foundation_agents::learning::repeated::run_repeated;
use foundation_agents::learning::{
    counterfactual_utility, shading_grid, BidStrategy, EpsilonGreedy, MultiplicativeWeights,
    RandomBidder, RoundFeedback, Truthful,
};
use rand::rngs::StdRng;
use rand::SeedableRng;

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
