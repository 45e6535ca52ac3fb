//! Repeated sealed-bid auctions between pluggable strategies, run through the real auction machine.

use rand::RngCore;

use super::{BidStrategy, RoundFeedback};
use crate::auction::sealed::{Pricing, SealedBidAuction, SealedConfig};
use crate::types::{AgentId, Money, Time};

/// Minor units per unit of value: strategies think in real-valued values, the auction clears in
/// exact micro-units.
pub const MINOR_PER_UNIT: f64 = 1_000_000.0;

/// A strategy's real-valued bid in minor units; `None` for NaN, negative or unrepresentable bids,
/// which the runner treats as not bidding.
pub fn to_minor(bid: f64) -> Option<Money> {
    let minor = (bid * MINOR_PER_UNIT).round();
    // `u64::MAX as f64` rounds up to 2^64, so `<` keeps the cast exact and in range.
    (minor.is_finite() && minor >= 0.0 && minor < u64::MAX as f64).then_some(Money(minor as u64))
}

fn to_units(amount: Money) -> f64 {
    amount.approx_f64() / MINOR_PER_UNIT
}

/// Totals of a repeated auction.
#[derive(Debug, Clone, PartialEq)]
pub struct RepeatedOutcome {
    /// Summed utility (value − price when winning) per agent.
    pub utilities: Vec<f64>,
    /// Rounds won per agent.
    pub wins: Vec<u64>,
    /// Summed revenue of the seller.
    pub revenue: f64,
    /// Rounds played.
    pub rounds: u64,
}

/// Plays `rounds` auctions. Agent `i` has value `values[i]` every round and bids through
/// `strategies[i]`; invalid bids a strategy produces (NaN, negative) are rejected by the machine and
/// count as not bidding.
pub fn run_repeated(
    strategies: &mut [&mut dyn BidStrategy],
    values: &[f64],
    pricing: Pricing,
    rounds: u64,
    rng: &mut dyn RngCore,
) -> RepeatedOutcome {
    let n = strategies.len().min(values.len());
    let mut outcome = RepeatedOutcome {
        utilities: vec![0.0; n],
        wins: vec![0; n],
        revenue: 0.0,
        rounds,
    };
    for round in 0..rounds {
        let now = Time(round);
        let config = SealedConfig::new(format!("round-{round}"), pricing);
        let Ok(mut auction) = SealedBidAuction::new(config, now) else {
            break;
        };
        let mut bids = vec![None; n];
        for i in 0..n {
            let bid = to_minor(strategies[i].bid(values[i], rng));
            bids[i] = bid
                .filter(|&b| auction.submit(now, AgentId(i as u64), b).is_ok())
                .map(to_units);
        }
        let award = auction.close(now).award;
        for i in 0..n {
            let won = award
                .as_ref()
                .is_some_and(|a| a.winner == AgentId(i as u64));
            let paid = award
                .as_ref()
                .filter(|_| won)
                .map_or(0.0, |a| to_units(a.price));
            let highest_other = (0..n)
                .filter(|&j| j != i)
                .filter_map(|j| bids[j])
                .fold(None, |m: Option<f64>, b| Some(m.map_or(b, |m| m.max(b))));
            if won {
                outcome.utilities[i] += values[i] - paid;
                outcome.wins[i] += 1;
                outcome.revenue += paid;
            }
            let feedback = RoundFeedback {
                value: values[i],
                bid: bids[i].unwrap_or(0.0),
                won,
                paid,
                highest_other,
                pricing,
            };
            strategies[i].observe(&feedback);
        }
    }
    outcome
}
