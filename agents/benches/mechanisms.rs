//! Mechanism benchmarks: plain `std::time::Instant`, one table per mechanism.
//!
//! Run with `cargo bench -p foundation-agents`. Timing lives here, never in pass/fail tests.

use std::time::{Duration, Instant};

use foundation_agents::auction::sealed::{Pricing, SealedBidAuction, SealedConfig};
use foundation_agents::auction::vcg::{self, BundleBid, XorBids};
use foundation_agents::market::double::{clear, ClearingRule, Order, Side};
use foundation_agents::market::tatonnement::{
    self, CobbDouglas, Consumer, TatonnementConfig, TatonnementOutcome,
};
use foundation_agents::{AgentId, Money, Time};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Repetitions per measurement; the median is reported so one slow run does not skew the figure.
const REPEATS: usize = 15;

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn time<T>(mut f: impl FnMut() -> T) -> Duration {
    let samples = (0..REPEATS)
        .map(|_| {
            let start = Instant::now();
            std::hint::black_box(f());
            start.elapsed()
        })
        .collect();
    median(samples)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn sealed_bid(rng: &mut StdRng) {
    let bids: Vec<Money> = (0..10_000)
        .map(|_| Money(rng.gen_range(0..100_000)))
        .collect();
    println!("\n## sealed-bid auction, 10,000 bids (target <= 5 ms)");
    println!(
        "{:<14} {:>18} {:>14}",
        "pricing", "submit+close ms", "close ms"
    );
    for pricing in [Pricing::FirstPrice, Pricing::SecondPrice] {
        let fill = || {
            let mut a =
                SealedBidAuction::new(SealedConfig::new("slot", pricing), Time(0)).expect("valid");
            for (i, &b) in bids.iter().enumerate() {
                let _ = a.submit(Time(1), AgentId(i as u64), b);
            }
            a
        };
        let total = time(|| fill().close(Time(2)));
        let close = median(
            (0..REPEATS)
                .map(|_| {
                    let mut a = fill();
                    let start = Instant::now();
                    std::hint::black_box(a.close(Time(2)));
                    start.elapsed()
                })
                .collect(),
        );
        println!(
            "{:<14} {:>18.3} {:>14.3}",
            format!("{pricing:?}"),
            ms(total),
            ms(close)
        );
    }
}

fn vcg_instance(rng: &mut StdRng, items: usize, bidders: usize, alternatives: usize) -> XorBids {
    (0..bidders as u64)
        .map(|agent| {
            let mut alts: Vec<BundleBid> = (0..alternatives)
                .map(|_| {
                    let size = rng.gen_range(1..=3.min(items));
                    let bundle = (0..size).fold(0u32, |m, _| m | 1 << rng.gen_range(0..items));
                    BundleBid {
                        bundle,
                        value: Money(rng.gen_range(100..10_000) * u64::from(bundle.count_ones())),
                    }
                })
                .collect();
            alts.sort_by_key(|b| b.bundle);
            alts.dedup_by_key(|b| b.bundle);
            (AgentId(agent), alts)
        })
        .collect()
}

fn vcg_sizes(rng: &mut StdRng) {
    println!("\n## VCG: exact winner determination + payments (5 XOR alternatives per bidder)");
    println!(
        "{:>6} {:>8} {:>12} {:>12}",
        "items", "bidders", "ms", "welfare"
    );
    for (items, bidders) in [
        (4, 10),
        (8, 10),
        (8, 50),
        (12, 20),
        (12, 100),
        (16, 20),
        (16, 100),
        (20, 7),
    ] {
        let bids = vcg_instance(rng, items, bidders, 5);
        let mut welfare = Money::ZERO;
        let d = time(|| {
            let s = vcg::solve(items, &bids).expect("within limits");
            welfare = s.welfare;
        });
        println!(
            "{items:>6} {bidders:>8} {:>12.3} {:>12}",
            ms(d),
            welfare.to_string()
        );
    }
    let too_big = vcg_instance(rng, 20, 10, 5);
    println!(
        "20 items, 10 bidders: {}",
        vcg::solve(20, &too_big)
            .map(|_| "solved".to_string())
            .unwrap_or_else(|e| e.to_string())
    );
}

fn tatonnement_iterations(rng: &mut StdRng) {
    println!("\n## tatonnement on random Cobb-Douglas economies (step 0.5, tolerance 1e-8)");
    println!(
        "{:>6} {:>10} {:>10} {:>12} {:>10}",
        "goods", "consumers", "rounds", "residual", "ms"
    );
    for (goods, consumers) in [(2, 10), (5, 10), (10, 100), (20, 100), (50, 1_000)] {
        let economy: Vec<CobbDouglas> = (0..consumers)
            .map(|_| {
                let raw: Vec<f64> = (0..goods).map(|_| rng.gen_range(0.05..1.0)).collect();
                let sum: f64 = raw.iter().sum();
                let endowment = (0..goods).map(|_| rng.gen_range(0.1..10.0)).collect();
                CobbDouglas {
                    alpha: raw.iter().map(|a| a / sum).collect(),
                    endowment,
                }
            })
            .collect();
        let refs: Vec<&dyn Consumer> = economy.iter().map(|c| c as &dyn Consumer).collect();
        let start = Instant::now();
        let outcome = tatonnement::run(&refs, TatonnementConfig::default(), None).expect("valid");
        let elapsed = start.elapsed();
        let (rounds, residual, tag) = match outcome {
            TatonnementOutcome::Converged {
                rounds, residual, ..
            } => (rounds, Some(residual), ""),
            TatonnementOutcome::NotConverged {
                rounds, residual, ..
            } => (rounds, residual, " (not converged)"),
        };
        println!(
            "{goods:>6} {consumers:>10} {rounds:>10} {:>12} {:>10.3}{tag}",
            residual.map_or("unknown".into(), |r| format!("{r:.2e}")),
            ms(elapsed)
        );
    }
    let scarf = tatonnement::scarf_economy();
    let refs: Vec<&dyn Consumer> = scarf.iter().map(|c| c as &dyn Consumer).collect();
    let start = Instant::now();
    let outcome = tatonnement::run(
        &refs,
        TatonnementConfig::default(),
        Some(vec![0.5, 0.3, 0.2]),
    );
    let elapsed = start.elapsed();
    match outcome {
        Ok(TatonnementOutcome::NotConverged { rounds, residual, .. }) => println!(
            "Scarf's economy from (0.5, 0.3, 0.2): not converged after {rounds} rounds, residual {residual:?}, {:.3} ms",
            ms(elapsed)
        ),
        other => println!("Scarf's economy: unexpected {other:?}"),
    }
}

fn double_auction(rng: &mut StdRng) {
    let orders: Vec<Order> = (0..100_000u64)
        .map(|i| {
            let side = if i % 2 == 0 { Side::Buy } else { Side::Sell };
            let limit = rng.gen_range(10.0..110.0);
            Order {
                agent: AgentId(i),
                side,
                quantity: rng.gen_range(1..10),
                limit,
                seq: i,
            }
        })
        .collect();
    println!("\n## call market, 100,000 orders");
    println!(
        "{:<10} {:>10} {:>12} {:>10}",
        "rule", "ms", "traded", "price"
    );
    for rule in [ClearingRule::Uniform, ClearingRule::McAfee] {
        let mut out = None;
        let d = time(|| out = Some(clear(&orders, rule)));
        let out = out.expect("ran");
        let price = out.buyer_price.unwrap_or(f64::NAN);
        println!(
            "{:<10} {:>10.3} {:>12} {:>10.4}",
            format!("{rule:?}"),
            ms(d),
            out.traded_quantity,
            price
        );
    }
}

fn main() {
    let mut rng = StdRng::seed_from_u64(2026);
    println!("# foundation-agents mechanism benchmarks (median of {REPEATS} runs)");
    sealed_bid(&mut rng);
    vcg_sizes(&mut rng);
    tatonnement_iterations(&mut rng);
    double_auction(&mut rng);
}
