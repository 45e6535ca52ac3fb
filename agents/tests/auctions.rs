//! Properties of the single-item and combinatorial auctions.

use std::collections::{BTreeMap, BTreeSet};

use foundation_agents::auction::dutch::{DutchAuction, DutchConfig, DutchNotice};
use foundation_agents::auction::english::{
    EnglishAuction, EnglishConfig, EnglishNotice, EnglishResponse,
};
use foundation_agents::auction::sealed::{Pricing, SealedBidAuction, SealedConfig, SealedMessage};
use foundation_agents::auction::vcg::{
    self, BundleBid, CombinatorialAuction, VcgError, VcgMessage, VcgSolution, XorBids,
};
use foundation_agents::auction::{AuctionOutcome, AuctionReason};
use foundation_agents::telemetry::TelemetryEvent;
use foundation_agents::{AgentId, Rejection, Time};
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn ids(n: usize) -> Vec<AgentId> {
    (0..n as u64).map(AgentId).collect()
}

fn sealed(pricing: Pricing, reserve: f64, bids: &[f64]) -> AuctionOutcome {
    let config = SealedConfig::new("item", pricing)
        .reserve(reserve)
        .participants(ids(bids.len()));
    let mut auction = SealedBidAuction::new(config, Time(0)).expect("valid config");
    for (i, &b) in bids.iter().enumerate() {
        auction
            .submit(Time(i as u64), AgentId(i as u64), b)
            .expect("valid bid");
        assert_eq!(auction.invariants(), Ok(()));
    }
    auction.close(Time(100))
}

/// Utility of bidder 0 with value `value` bidding `bid` against `others` under `pricing`.
fn utility(pricing: Pricing, reserve: f64, value: f64, bid: f64, others: &[f64]) -> f64 {
    let mut bids = vec![bid];
    bids.extend_from_slice(others);
    match sealed(pricing, reserve, &bids).award {
        Some(a) if a.winner == AgentId(0) => value - a.price,
        _ => 0.0,
    }
}

#[test]
fn first_price_winner_pays_own_bid() {
    let outcome = sealed(Pricing::FirstPrice, 0.0, &[3.0, 7.0, 5.0]);
    let award = outcome.award.expect("sold");
    assert_eq!((award.winner, award.price), (AgentId(1), 7.0));
    assert_eq!(outcome.reason, AuctionReason::HighestBidPaysOwnBid);
}

#[test]
fn vickrey_winner_pays_second_price_with_reserve_as_floor() {
    let award = sealed(Pricing::SecondPrice, 0.0, &[3.0, 7.0, 5.0])
        .award
        .expect("sold");
    assert_eq!((award.winner, award.price), (AgentId(1), 5.0));
    let award = sealed(Pricing::SecondPrice, 6.0, &[3.0, 7.0, 5.0])
        .award
        .expect("sold");
    assert_eq!(award.price, 6.0);
    let outcome = sealed(Pricing::SecondPrice, 8.0, &[3.0, 7.0, 5.0]);
    assert_eq!(
        (outcome.award, outcome.reason),
        (None, AuctionReason::BelowReserve)
    );
}

#[test]
fn equal_bids_go_to_the_earliest_submission() {
    let outcome = sealed(Pricing::FirstPrice, 0.0, &[4.0, 9.0, 9.0]);
    assert_eq!(outcome.award.expect("sold").winner, AgentId(1));
    assert_eq!(outcome.reason, AuctionReason::TieBrokenByArrivalThenId);
}

#[test]
fn an_auction_without_bids_sells_nothing_and_says_so() {
    let outcome = sealed(Pricing::SecondPrice, 0.0, &[]);
    assert_eq!(
        (outcome.award, outcome.reason),
        (None, AuctionReason::NoBids)
    );
}

#[test]
fn every_kind_of_bad_bid_is_rejected_with_its_reason() {
    let config = SealedConfig::new("item", Pricing::SecondPrice)
        .participants([AgentId(1), AgentId(2)])
        .budget(AgentId(3), 10.0)
        .deadline(Time(50));
    let mut a = SealedBidAuction::new(config, Time(0)).expect("valid");
    assert_eq!(
        a.submit(Time(1), AgentId(1), f64::NAN),
        Err(Rejection::NotFinite)
    );
    assert_eq!(
        a.submit(Time(1), AgentId(1), f64::INFINITY),
        Err(Rejection::NotFinite)
    );
    assert!(matches!(
        a.submit(Time(1), AgentId(1), -1.0),
        Err(Rejection::Negative { .. })
    ));
    assert!(matches!(
        a.submit(Time(1), AgentId(3), 11.0),
        Err(Rejection::OverBudget { .. })
    ));
    assert!(matches!(
        a.submit(Time(1), AgentId(9), 1.0),
        Err(Rejection::NotParticipant { .. })
    ));
    assert_eq!(a.submit(Time(2), AgentId(1), 5.0), Ok(()));
    assert!(matches!(
        a.submit(Time(3), AgentId(1), 6.0),
        Err(Rejection::Duplicate { .. })
    ));
    assert!(matches!(
        a.submit(Time(50), AgentId(2), 6.0),
        Err(Rejection::Late { .. })
    ));
    assert_eq!(a.bids().len(), 1);
    let outcome = a.handle_timeout(Time(50)).expect("closed at deadline");
    assert_eq!(outcome.award.expect("sold").winner, AgentId(1));
    assert_eq!(a.submit(Time(60), AgentId(2), 6.0), Err(Rejection::Closed));
}

#[test]
fn telemetry_records_start_bids_rejections_and_the_decision() {
    let config = SealedConfig::new("item", Pricing::FirstPrice).deadline(Time(10));
    let mut a = SealedBidAuction::new(config, Time(2)).expect("valid");
    a.submit(Time(3), AgentId(1), 1.0).expect("valid");
    let _ = a.submit(Time(4), AgentId(2), -1.0);
    a.close(Time(10));
    let events = a.drain_telemetry();
    assert!(matches!(events[0], TelemetryEvent::Started { .. }));
    assert!(matches!(events[1], TelemetryEvent::Accepted { .. }));
    assert!(matches!(events[2], TelemetryEvent::Rejected { .. }));
    assert!(matches!(
        events[3],
        TelemetryEvent::Decided { duration_ms: 8, .. }
    ));
    assert!(a.drain_telemetry().is_empty());
    let notices = a.drain_outbox();
    assert_eq!(notices.len(), 1, "the one bidder is told it won");
}

/// Drives an English auction with straightforward bidders who stay while the price is within value.
fn english(values: &[f64], start: f64, increment: f64) -> AuctionOutcome {
    english_traced(values, start, increment).0
}

/// As [`english`], also returning every telemetry event, to compare runs.
fn english_traced(
    values: &[f64],
    start: f64,
    increment: f64,
) -> (AuctionOutcome, Vec<TelemetryEvent>) {
    let participants: BTreeSet<AgentId> = ids(values.len()).into_iter().collect();
    let config = EnglishConfig {
        item: "item".into(),
        start_price: start,
        increment,
        round_ms: 10,
        participants,
        budgets: BTreeMap::new(),
    };
    let mut auction = EnglishAuction::new(config, Time(0)).expect("valid");
    let mut now = Time(0);
    for _ in 0..100_000 {
        let notices = auction.drain_outbox();
        if notices.is_empty() {
            now = auction.poll_timeout().unwrap_or(now);
            auction.handle_timeout(now);
        }
        for notice in notices {
            if let EnglishNotice::Price { round, price, .. } = notice.msg {
                let stay = values[notice.to.0 as usize] >= price;
                let response = if stay {
                    EnglishResponse::Stay
                } else {
                    EnglishResponse::Drop
                };
                now = now.plus_ms(1);
                let _ = auction.respond(now, notice.to, round, response);
                assert_eq!(auction.invariants(), Ok(()));
            }
        }
        if let Some(outcome) = auction.outcome() {
            return (outcome.clone(), auction.drain_telemetry());
        }
    }
    panic!("English auction did not finish");
}

/// Drives a Dutch auction where bidder i accepts as soon as the price is at most `bids[i]`.
fn dutch(bids: &[f64], start: f64, decrement: f64, floor: f64) -> AuctionOutcome {
    let participants: BTreeMap<AgentId, Option<f64>> =
        ids(bids.len()).into_iter().map(|a| (a, None)).collect();
    let config = DutchConfig {
        item: "item".into(),
        start_price: start,
        decrement,
        floor,
        tick_ms: 10,
        participants,
    };
    let mut auction = DutchAuction::new(config, Time(0)).expect("valid");
    let mut now = Time(0);
    for _ in 0..1_000_000 {
        for notice in auction.drain_outbox() {
            if let DutchNotice::Price { tick, price } = notice.msg {
                if bids[notice.to.0 as usize] >= price {
                    let _ = auction.accept(now, notice.to, tick);
                }
                assert_eq!(auction.invariants(), Ok(()));
            }
        }
        if let Some(outcome) = auction.outcome() {
            return outcome.clone();
        }
        now = auction.poll_timeout().unwrap_or(now);
        auction.handle_timeout(now);
    }
    panic!("Dutch auction did not finish");
}

#[test]
fn english_activity_rule_drops_silent_bidders() {
    let participants: BTreeSet<AgentId> = ids(3).into_iter().collect();
    let config = EnglishConfig {
        item: "i".into(),
        start_price: 1.0,
        increment: 1.0,
        round_ms: 10,
        participants,
        budgets: [(AgentId(1), 1.5)].into_iter().collect(),
    };
    let mut a = EnglishAuction::new(config, Time(0)).expect("valid");
    a.respond(Time(1), AgentId(0), 0, EnglishResponse::Stay)
        .expect("active");
    a.respond(Time(2), AgentId(1), 0, EnglishResponse::Stay)
        .expect("active");
    a.handle_timeout(Time(10));
    assert_eq!(a.round(), 1);
    assert!(matches!(
        a.respond(Time(11), AgentId(2), 1, EnglishResponse::Stay),
        Err(Rejection::Inactive { .. })
    ));
    assert!(matches!(
        a.respond(Time(12), AgentId(1), 1, EnglishResponse::Stay),
        Err(Rejection::OverBudget { .. })
    ));
    a.respond(Time(12), AgentId(0), 1, EnglishResponse::Stay)
        .expect("active");
    let outcome = a.handle_timeout(Time(20)).expect("decided");
    let award = outcome.award.expect("sold");
    assert_eq!((award.winner, award.price), (AgentId(0), 2.0));
}

#[test]
fn the_same_inputs_replay_to_the_same_outcome_and_telemetry() {
    let values = [12.5, 40.0, 39.0, 7.0];
    assert_eq!(
        english_traced(&values, 1.0, 0.5),
        english_traced(&values, 1.0, 0.5)
    );
}

#[test]
fn all_bidders_dropping_together_sell_at_the_previous_price_to_the_earliest() {
    let outcome = english(&[5.5, 5.5], 1.0, 1.0);
    let award = outcome.award.expect("sold");
    assert_eq!((award.winner, award.price), (AgentId(0), 5.0));
    assert_eq!(outcome.reason, AuctionReason::AllDroppedTogether);
}

#[test]
fn dutch_stale_acceptances_are_refused() {
    let participants = [(AgentId(0), None), (AgentId(1), Some(5.0))]
        .into_iter()
        .collect();
    let config = DutchConfig {
        item: "i".into(),
        start_price: 10.0,
        decrement: 1.0,
        floor: 2.0,
        tick_ms: 5,
        participants,
    };
    let mut a = DutchAuction::new(config, Time(0)).expect("valid");
    a.handle_timeout(Time(5));
    assert!(matches!(
        a.accept(Time(6), AgentId(0), 0),
        Err(Rejection::InvalidReference { .. })
    ));
    assert!(matches!(
        a.accept(Time(6), AgentId(1), 1),
        Err(Rejection::OverBudget { .. })
    ));
    a.accept(Time(6), AgentId(0), 1).expect("current tick");
    assert_eq!(
        a.outcome().and_then(|o| o.award.clone()).map(|w| w.price),
        Some(9.0)
    );
}

#[test]
fn dutch_clock_that_reaches_the_floor_unaccepted_sells_nothing() {
    let outcome = dutch(&[0.5, 0.2], 3.0, 1.0, 0.75);
    assert_eq!(outcome.reason, AuctionReason::ClockExhausted);
}

#[test]
fn first_and_second_price_have_equal_expected_revenue_by_monte_carlo() {
    // Three bidders with values U[0,1]; symmetric equilibrium bids are v·(n−1)/n in first price and v
    // in second price; both yield expected revenue (n−1)/(n+1) = 0.5.
    let (n, trials) = (3usize, 20_000);
    let mut rng = StdRng::seed_from_u64(7);
    let (mut first, mut second) = (0.0, 0.0);
    for _ in 0..trials {
        let values: Vec<f64> = (0..n).map(|_| rng.gen::<f64>()).collect();
        let shaded: Vec<f64> = values
            .iter()
            .map(|v| v * (n - 1) as f64 / n as f64)
            .collect();
        first += sealed(Pricing::FirstPrice, 0.0, &shaded)
            .award
            .map_or(0.0, |a| a.price);
        second += sealed(Pricing::SecondPrice, 0.0, &values)
            .award
            .map_or(0.0, |a| a.price);
    }
    let (first, second) = (first / trials as f64, second / trials as f64);
    assert!((first - 0.5).abs() < 0.01, "first-price revenue {first}");
    assert!((second - 0.5).abs() < 0.01, "second-price revenue {second}");
    assert!((first - second).abs() < 0.01);
}

fn grid_value() -> impl Strategy<Value = f64> {
    (0u32..=20).prop_map(|k| f64::from(k) * 0.5)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn vickrey_truthful_bidding_beats_every_deviation_on_a_grid(
        value in grid_value(),
        others in prop::collection::vec(grid_value(), 0..5),
        reserve in prop_oneof![Just(0.0), grid_value()],
    ) {
        let truthful = utility(Pricing::SecondPrice, reserve, value, value, &others);
        for k in 0..=24 {
            let deviation = f64::from(k) * 0.5;
            let u = utility(Pricing::SecondPrice, reserve, value, deviation, &others);
            prop_assert!(u <= truthful + 1e-12, "bid {deviation} earns {u} > truthful {truthful}");
        }
    }

    #[test]
    fn first_price_is_not_truthful_shading_helps_whenever_you_win_above_the_runner_up(
        value in 1.0f64..10.0,
        other in 0.0f64..0.9,
    ) {
        let truthful = utility(Pricing::FirstPrice, 0.0, value, value, &[other]);
        let shaded = utility(Pricing::FirstPrice, 0.0, value, (other + value) / 2.0, &[other]);
        prop_assert!(truthful == 0.0 && shaded > 0.0);
    }

    #[test]
    fn english_price_is_within_one_increment_of_vickrey(
        values in prop::collection::vec(0.0f64..100.0, 2..6),
        increment in 0.5f64..5.0,
    ) {
        let start = 1.0;
        let e = english(&values, start, increment);
        let v = sealed(Pricing::SecondPrice, start, &values);
        match (e.award, v.award) {
            (Some(e), Some(v)) => {
                prop_assert!((e.price - v.price).abs() <= increment + 1e-9, "english {} vickrey {}", e.price, v.price);
                let winner_value = values[e.winner.0 as usize];
                let top = values.iter().copied().fold(0.0, f64::max);
                prop_assert!(top - winner_value <= increment + 1e-9);
            }
            (None, None) => {}
            (e, v) => prop_assert!(false, "english {e:?} vickrey {v:?}"),
        }
    }

    #[test]
    fn dutch_price_is_within_one_decrement_of_first_price(
        bids in prop::collection::vec(0.0f64..100.0, 1..6),
        decrement in 0.25f64..5.0,
    ) {
        let start = 101.0;
        let d = dutch(&bids, start, decrement, 0.0);
        let f = sealed(Pricing::FirstPrice, 0.0, &bids);
        let (d, f) = (d.award.expect("floor 0 sells"), f.award.expect("sold"));
        prop_assert!(f.price - d.price <= decrement + 1e-9 && d.price <= f.price + 1e-9);
        prop_assert!(f.price - bids[d.winner.0 as usize] <= decrement + 1e-9);
    }

    #[test]
    fn rejected_bad_bids_never_change_the_outcome(
        valid in prop::collection::vec(0.0f64..50.0, 1..8),
        bad in prop::collection::vec(0usize..6, 0..12),
        pricing in prop_oneof![Just(Pricing::FirstPrice), Just(Pricing::SecondPrice)],
    ) {
        let n = valid.len();
        let make = || {
            let config = SealedConfig::new("x", pricing).participants(ids(n)).budget(AgentId(0), 1_000.0).deadline(Time(1_000));
            SealedBidAuction::new(config, Time(0)).expect("valid")
        };
        let mut clean = make();
        let mut noisy = make();
        for (i, &b) in valid.iter().enumerate() {
            clean.submit(Time(i as u64), AgentId(i as u64), b).expect("valid");
            noisy.submit(Time(i as u64), AgentId(i as u64), b).expect("valid");
            for &kind in &bad {
                let (agent, amount, at) = match kind {
                    0 => (AgentId(i as u64), f64::NAN, Time(1)),
                    1 => (AgentId(i as u64), -3.0, Time(1)),
                    2 => (AgentId(0), 5_000.0, Time(1)),
                    3 => (AgentId(i as u64), 99.0, Time(1)),
                    4 => (AgentId(999), 99.0, Time(1)),
                    _ => (AgentId(i as u64), 99.0, Time(1_000)),
                };
                let refused = noisy.handle(at, agent, SealedMessage::Bid { amount }).is_err();
                prop_assert!(refused);
                prop_assert_eq!(noisy.invariants(), Ok(()));
            }
        }
        prop_assert_eq!(clean.close(Time(1_000)).award, noisy.close(Time(1_000)).award);
        prop_assert_eq!(noisy.invariants(), Ok(()));
    }
}

/// Best welfare by trying every assignment of one alternative (or none) to each bidder.
fn brute_force_welfare(bids: &[Vec<BundleBid>], used: u32, i: usize) -> f64 {
    if i == bids.len() {
        return 0.0;
    }
    let mut best = brute_force_welfare(bids, used, i + 1);
    for b in &bids[i] {
        if b.bundle & used == 0 {
            best = best.max(b.value + brute_force_welfare(bids, used | b.bundle, i + 1));
        }
    }
    best
}

fn xor_bids(items: usize) -> impl Strategy<Value = Vec<Vec<BundleBid>>> {
    let bid = (1u32..(1 << items), 0u32..=20).prop_map(|(bundle, v)| BundleBid {
        bundle,
        value: f64::from(v),
    });
    let alternatives = prop::collection::vec(bid, 1..4).prop_map(|mut v| {
        v.sort_by_key(|b| b.bundle);
        v.dedup_by_key(|b| b.bundle);
        v
    });
    prop::collection::vec(alternatives, 1..6)
}

fn to_map(bids: &[Vec<BundleBid>]) -> XorBids {
    bids.iter()
        .enumerate()
        .map(|(i, b)| (AgentId(i as u64), b.clone()))
        .collect()
}

/// Runs the bids through the combinatorial auction machine, one message per bidder, checking its
/// invariants after every step and that it agrees with the pure solver.
fn vcg_through_machine(items: usize, bids: &[Vec<BundleBid>]) -> VcgSolution {
    let mut auction = CombinatorialAuction::new("prop", items, Time(100), None, Time(0));
    for (i, bundles) in bids.iter().enumerate() {
        let message = VcgMessage::Bid {
            bundles: bundles.clone(),
        };
        auction
            .handle(Time(i as u64), AgentId(i as u64), message)
            .expect("valid bid");
        assert_eq!(auction.invariants(), Ok(()));
    }
    let solution = auction.handle_timeout(Time(100)).expect("deadline");
    assert_eq!(auction.invariants(), Ok(()));
    assert_eq!(
        auction.drain_outbox().len(),
        bids.len(),
        "every bidder told"
    );
    let solution = solution.expect("small");
    assert_eq!(Ok(&solution), vcg::solve(items, &to_map(bids)).as_ref());
    solution
}

/// True value of receiving `bundle` for a bidder whose true XOR valuation is `truth`.
fn true_value(truth: &[BundleBid], bundle: u32) -> f64 {
    truth
        .iter()
        .filter(|b| b.bundle & !bundle == 0)
        .map(|b| b.value)
        .fold(0.0, f64::max)
}

#[test]
fn vcg_prices_the_classic_complements_example() {
    // Items A, B. Bidder 0 wants AB for 10; bidders 1 and 2 want A for 6 and B for 6.
    let bids = vec![
        vec![BundleBid {
            bundle: 0b11,
            value: 10.0,
        }],
        vec![BundleBid {
            bundle: 0b01,
            value: 6.0,
        }],
        vec![BundleBid {
            bundle: 0b10,
            value: 6.0,
        }],
    ];
    let s = vcg::solve(2, &to_map(&bids)).expect("small");
    assert_eq!(s.welfare, 12.0);
    let pays: Vec<(u64, f64)> = s.awards.iter().map(|a| (a.agent.0, a.payment)).collect();
    assert_eq!(pays, vec![(1, 4.0), (2, 4.0)]);
}

#[test]
fn vcg_refuses_instances_too_large_to_solve_exactly() {
    let bids = to_map(&[vec![BundleBid {
        bundle: 1,
        value: 1.0,
    }]]);
    assert!(matches!(
        vcg::solve(21, &bids),
        Err(VcgError::TooLarge { .. })
    ));
    let many: XorBids = (0..200)
        .map(|i| {
            (
                AgentId(i),
                vec![BundleBid {
                    bundle: 1,
                    value: 1.0,
                }],
            )
        })
        .collect();
    assert!(matches!(
        vcg::solve(16, &many),
        Err(VcgError::TooLarge { .. })
    ));
}

#[test]
fn combinatorial_auction_rejects_bad_xor_bids_and_late_bids() {
    let mut a = CombinatorialAuction::new("spectrum", 3, Time(100), None, Time(0));
    let bad = |bundle, value| vec![BundleBid { bundle, value }];
    assert!(a.submit(Time(1), AgentId(1), vec![]).is_err());
    assert!(a.submit(Time(1), AgentId(1), bad(0b1000, 1.0)).is_err());
    assert!(a.submit(Time(1), AgentId(1), bad(0, 1.0)).is_err());
    assert!(a.submit(Time(1), AgentId(1), bad(1, f64::NAN)).is_err());
    assert!(a
        .submit(
            Time(1),
            AgentId(1),
            vec![
                BundleBid {
                    bundle: 1,
                    value: 1.0
                };
                2
            ]
        )
        .is_err());
    a.submit(Time(1), AgentId(1), bad(1, 3.0)).expect("valid");
    assert!(a.submit(Time(2), AgentId(1), bad(2, 3.0)).is_err());
    assert!(a.submit(Time(100), AgentId(2), bad(2, 3.0)).is_err());
    let s = a.close(Time(100)).expect("solvable");
    assert_eq!((s.welfare, s.awards[0].payment), (3.0, 0.0));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn vcg_allocation_matches_brute_force_and_payments_stay_within_value(bids in xor_bids(4)) {
        let s = vcg_through_machine(4, &bids);
        prop_assert_eq!(s.welfare, brute_force_welfare(&bids, 0, 0));
        let mut used = 0u32;
        let mut total = 0.0;
        for award in &s.awards {
            prop_assert_eq!(award.bundle & used, 0, "bundles overlap");
            used |= award.bundle;
            total += award.value;
            prop_assert!(award.payment >= 0.0 && award.payment <= award.value + 1e-9);
        }
        prop_assert!((total - s.welfare).abs() < 1e-9);
    }

    #[test]
    fn vcg_truthful_reporting_beats_every_misreport_on_a_grid(bids in xor_bids(3), scale in 0usize..8) {
        let truth = bids[0].clone();
        let outcome_for = |report: Vec<BundleBid>| {
            let mut all = bids.clone();
            all[0] = report;
            let s = vcg::solve(3, &to_map(&all)).expect("small");
            s.awards.iter().find(|a| a.agent == AgentId(0)).map_or(0.0, |a| true_value(&truth, a.bundle) - a.payment)
        };
        let honest = outcome_for(truth.clone());
        for k in 0..=8 {
            let factor = 0.25 * k as f64;
            // Misreport: scale every alternative, and the first one by a different factor.
            let report: Vec<BundleBid> = truth.iter().enumerate().map(|(j, b)| BundleBid {
                bundle: b.bundle,
                value: b.value * if j == 0 { 0.25 * scale as f64 } else { factor },
            }).collect();
            let u = outcome_for(report);
            prop_assert!(u <= honest + 1e-9, "misreport earns {} > honest {}", u, honest);
        }
    }
}

/// One arbitrary input to an English auction, possibly nonsense.
#[derive(Debug, Clone)]
enum EnglishInput {
    Respond {
        agent: u64,
        round: u64,
        stay: bool,
        dt: u64,
    },
    Timeout {
        dt: u64,
    },
}

fn english_input() -> impl Strategy<Value = EnglishInput> {
    prop_oneof![
        (0u64..6, 0u64..4, any::<bool>(), 0u64..15).prop_map(|(agent, round, stay, dt)| {
            EnglishInput::Respond {
                agent,
                round,
                stay,
                dt,
            }
        }),
        (0u64..25).prop_map(|dt| EnglishInput::Timeout { dt }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn arbitrary_english_input_never_panics_and_keeps_invariants(
        inputs in prop::collection::vec(english_input(), 0..60),
    ) {
        let config = EnglishConfig {
            item: "x".into(),
            start_price: 1.0,
            increment: 1.0,
            round_ms: 10,
            participants: ids(4).into_iter().collect(),
            budgets: [(AgentId(3), 2.5)].into_iter().collect(),
        };
        let mut a = EnglishAuction::new(config, Time(0)).expect("valid");
        let mut now = Time(0);
        for input in inputs {
            match input {
                EnglishInput::Respond { agent, round, stay, dt } => {
                    now = now.plus_ms(dt);
                    let response = if stay { EnglishResponse::Stay } else { EnglishResponse::Drop };
                    let _ = a.respond(now, AgentId(agent), round, response);
                }
                EnglishInput::Timeout { dt } => {
                    now = now.plus_ms(dt);
                    a.handle_timeout(now);
                }
            }
            prop_assert_eq!(a.invariants(), Ok(()));
        }
        if let Some(award) = a.outcome().and_then(|o| o.award.clone()) {
            prop_assert!(award.winner.0 < 4 && award.price >= 1.0);
            prop_assert!(award.winner != AgentId(3) || award.price <= 2.5, "budget respected");
        }
    }
}
