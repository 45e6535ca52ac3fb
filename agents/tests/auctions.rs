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
use foundation_agents::error::ConfigError;
use foundation_agents::telemetry::TelemetryEvent;
use foundation_agents::{AgentId, Money, Rejection, Time};
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn ids(n: usize) -> Vec<AgentId> {
    (0..n as u64).map(AgentId).collect()
}

fn sealed(pricing: Pricing, reserve: u64, bids: &[u64]) -> AuctionOutcome {
    let config = SealedConfig::new("item", pricing)
        .reserve(Money(reserve))
        .participants(ids(bids.len().max(1)));
    let mut auction = SealedBidAuction::new(config, Time(0)).expect("valid config");
    for (i, &b) in bids.iter().enumerate() {
        auction
            .submit(Time(i as u64), AgentId(i as u64), Money(b))
            .expect("valid bid");
        assert_eq!(auction.invariants(), Ok(()));
    }
    auction.close(Time(100))
}

/// Utility of bidder 0 with value `value` bidding `bid` against `others` under `pricing`.
fn utility(pricing: Pricing, reserve: u64, value: u64, bid: u64, others: &[u64]) -> i128 {
    let mut bids = vec![bid];
    bids.extend_from_slice(others);
    match sealed(pricing, reserve, &bids).award {
        Some(a) if a.winner == AgentId(0) => i128::from(value) - i128::from(a.price.minor()),
        _ => 0,
    }
}

#[test]
fn first_price_winner_pays_own_bid() {
    let outcome = sealed(Pricing::FirstPrice, 0, &[3, 7, 5]);
    let award = outcome.award.expect("sold");
    assert_eq!((award.winner, award.price), (AgentId(1), Money(7)));
    assert_eq!(outcome.reason, AuctionReason::HighestBidPaysOwnBid);
}

#[test]
fn vickrey_winner_pays_second_price_with_reserve_as_floor() {
    let award = sealed(Pricing::SecondPrice, 0, &[3, 7, 5])
        .award
        .expect("sold");
    assert_eq!((award.winner, award.price), (AgentId(1), Money(5)));
    let award = sealed(Pricing::SecondPrice, 6, &[3, 7, 5])
        .award
        .expect("sold");
    assert_eq!(award.price, Money(6));
    let outcome = sealed(Pricing::SecondPrice, 8, &[3, 7, 5]);
    assert_eq!(
        (outcome.award, outcome.reason),
        (None, AuctionReason::BelowReserve)
    );
}

#[test]
fn equal_bids_go_to_the_earliest_submission() {
    let outcome = sealed(Pricing::FirstPrice, 0, &[4, 9, 9]);
    assert_eq!(outcome.award.expect("sold").winner, AgentId(1));
    assert_eq!(outcome.reason, AuctionReason::TieBrokenByArrivalThenId);
}

#[test]
fn an_auction_without_bids_sells_nothing_and_says_so() {
    let outcome = sealed(Pricing::SecondPrice, 0, &[]);
    assert_eq!(
        (outcome.award, outcome.reason),
        (None, AuctionReason::NoBids)
    );
}

#[test]
fn every_kind_of_bad_bid_is_rejected_with_its_reason() {
    let config = SealedConfig::new("item", Pricing::SecondPrice)
        .participants([AgentId(1), AgentId(2)])
        .budget(AgentId(3), Money(10))
        .deadline(Time(50));
    let mut a = SealedBidAuction::new(config, Time(0)).expect("valid");
    // NaN, infinite and negative amounts cannot be expressed in `Money`; on the wire they fail
    // to decode (see tests/protocol.rs).
    assert!(matches!(
        a.submit(Time(1), AgentId(3), Money(11)),
        Err(Rejection::OverBudget { .. })
    ));
    assert!(matches!(
        a.submit(Time(1), AgentId(9), Money(1)),
        Err(Rejection::NotParticipant { .. })
    ));
    assert_eq!(a.submit(Time(2), AgentId(1), Money(5)), Ok(()));
    assert!(matches!(
        a.submit(Time(3), AgentId(1), Money(6)),
        Err(Rejection::Duplicate { .. })
    ));
    assert!(matches!(
        a.submit(Time(50), AgentId(2), Money(6)),
        Err(Rejection::Late { .. })
    ));
    assert_eq!(a.bids().len(), 1);
    let outcome = a.handle_timeout(Time(50)).expect("closed at deadline");
    assert_eq!(outcome.award.expect("sold").winner, AgentId(1));
    assert_eq!(
        a.submit(Time(60), AgentId(2), Money(6)),
        Err(Rejection::Closed)
    );
}

#[test]
fn telemetry_records_start_bids_rejections_and_the_decision() {
    let config = SealedConfig::new("item", Pricing::FirstPrice).deadline(Time(10));
    let mut a = SealedBidAuction::new(config, Time(2)).expect("valid");
    a.submit(Time(3), AgentId(1), Money(1)).expect("valid");
    let _ = a.submit(Time(4), AgentId(1), Money(2));
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
fn english(values: &[u64], start: u64, increment: u64) -> AuctionOutcome {
    english_traced(values, start, increment).0
}

/// As [`english`], also returning every telemetry event, to compare runs.
fn english_traced(
    values: &[u64],
    start: u64,
    increment: u64,
) -> (AuctionOutcome, Vec<TelemetryEvent>) {
    let participants: BTreeSet<AgentId> = ids(values.len()).into_iter().collect();
    let config = EnglishConfig {
        item: "item".into(),
        start_price: Money(start),
        increment: Money(increment),
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
                let stay = Money(values[notice.to.0 as usize]) >= price;
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
fn dutch(bids: &[u64], start: u64, decrement: u64, floor: u64) -> AuctionOutcome {
    let participants: BTreeMap<AgentId, Option<Money>> =
        ids(bids.len()).into_iter().map(|a| (a, None)).collect();
    let config = DutchConfig {
        item: "item".into(),
        start_price: Money(start),
        decrement: Money(decrement),
        floor: Money(floor),
        tick_ms: 10,
        participants,
    };
    let mut auction = DutchAuction::new(config, Time(0)).expect("valid");
    let mut now = Time(0);
    for _ in 0..1_000_000 {
        for notice in auction.drain_outbox() {
            if let DutchNotice::Price { tick, price } = notice.msg {
                if Money(bids[notice.to.0 as usize]) >= price {
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
        start_price: Money(10),
        increment: Money(10),
        round_ms: 10,
        participants,
        budgets: [(AgentId(1), Money(15))].into_iter().collect(),
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
    assert_eq!((award.winner, award.price), (AgentId(0), Money(20)));
}

#[test]
fn the_same_inputs_replay_to_the_same_outcome_and_telemetry() {
    let values = [125, 400, 390, 70];
    assert_eq!(
        english_traced(&values, 10, 5),
        english_traced(&values, 10, 5)
    );
}

#[test]
fn all_bidders_dropping_together_sell_at_the_previous_price_to_the_earliest() {
    let outcome = english(&[55, 55], 10, 10);
    let award = outcome.award.expect("sold");
    assert_eq!((award.winner, award.price), (AgentId(0), Money(50)));
    assert_eq!(outcome.reason, AuctionReason::AllDroppedTogether);
}

#[test]
fn dutch_stale_acceptances_are_refused() {
    let participants = [(AgentId(0), None), (AgentId(1), Some(Money(5)))]
        .into_iter()
        .collect();
    let config = DutchConfig {
        item: "i".into(),
        start_price: Money(10),
        decrement: Money(1),
        floor: Money(2),
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
        Some(Money(9))
    );
}

#[test]
fn dutch_clock_that_reaches_the_floor_unaccepted_sells_nothing() {
    let outcome = dutch(&[5, 2], 30, 10, 8);
    assert_eq!(outcome.reason, AuctionReason::ClockExhausted);
}

#[test]
fn first_and_second_price_have_equal_expected_revenue_by_monte_carlo() {
    // Three bidders with values U[0,1]; symmetric equilibrium bids are v·(n−1)/n in first price and v
    // in second price; both yield expected revenue (n−1)/(n+1) = 0.5.
    // Values in micro-units, so 1.0 is 1,000,000.
    let (n, trials, unit) = (3u64, 20_000u64, 1_000_000u64);
    let mut rng = StdRng::seed_from_u64(7);
    let (mut first, mut second) = (0u64, 0u64);
    for _ in 0..trials {
        let values: Vec<u64> = (0..n).map(|_| rng.gen_range(0..unit)).collect();
        let shaded: Vec<u64> = values.iter().map(|v| v * (n - 1) / n).collect();
        first += sealed(Pricing::FirstPrice, 0, &shaded)
            .award
            .map_or(0, |a| a.price.minor());
        second += sealed(Pricing::SecondPrice, 0, &values)
            .award
            .map_or(0, |a| a.price.minor());
    }
    let mean = |total: u64| total as f64 / (trials * unit) as f64;
    let (first, second) = (mean(first), mean(second));
    assert!((first - 0.5).abs() < 0.01, "first-price revenue {first}");
    assert!((second - 0.5).abs() < 0.01, "second-price revenue {second}");
    assert!((first - second).abs() < 0.01);
}

fn grid_value() -> impl Strategy<Value = u64> {
    0u64..=20
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn vickrey_truthful_bidding_beats_every_deviation_on_a_grid(
        value in grid_value(),
        others in prop::collection::vec(grid_value(), 0..5),
        reserve in prop_oneof![Just(0), grid_value()],
    ) {
        let truthful = utility(Pricing::SecondPrice, reserve, value, value, &others);
        for deviation in 0..=24 {
            let u = utility(Pricing::SecondPrice, reserve, value, deviation, &others);
            prop_assert!(u <= truthful, "bid {deviation} earns {u} > truthful {truthful}");
        }
    }

    #[test]
    fn first_price_is_not_truthful_shading_helps_whenever_you_win_above_the_runner_up(
        value in 10u64..100,
        other in 0u64..9,
    ) {
        let truthful = utility(Pricing::FirstPrice, 0, value, value, &[other]);
        let shaded = utility(Pricing::FirstPrice, 0, value, (other + value) / 2, &[other]);
        prop_assert!(truthful == 0 && shaded > 0);
    }

    #[test]
    fn english_price_is_within_one_increment_of_vickrey(
        values in prop::collection::vec(0u64..10_000, 2..6),
        increment in 1u64..500,
    ) {
        let start = 100;
        let e = english(&values, start, increment);
        let v = sealed(Pricing::SecondPrice, start, &values);
        match (e.award, v.award) {
            (Some(e), Some(v)) => {
                prop_assert!(e.price.minor().abs_diff(v.price.minor()) <= increment, "english {} vickrey {}", e.price, v.price);
                let winner_value = values[e.winner.0 as usize];
                let top = values.iter().copied().max().unwrap_or(0);
                prop_assert!(top - winner_value <= increment);
            }
            (None, None) => {}
            (e, v) => prop_assert!(false, "english {e:?} vickrey {v:?}"),
        }
    }

    #[test]
    fn dutch_price_is_within_one_decrement_of_first_price(
        bids in prop::collection::vec(0u64..10_000, 1..6),
        decrement in 1u64..500,
    ) {
        let start = 10_100;
        let d = dutch(&bids, start, decrement, 0);
        let f = sealed(Pricing::FirstPrice, 0, &bids);
        let (d, f) = (d.award.expect("floor 0 sells"), f.award.expect("sold"));
        prop_assert!(d.price <= f.price && f.price.minor() - d.price.minor() <= decrement);
        prop_assert!(f.price.minor() - bids[d.winner.0 as usize] <= decrement);
    }

    #[test]
    fn rejected_bad_bids_never_change_the_outcome(
        valid in prop::collection::vec(0u64..5_000, 1..8),
        bad in prop::collection::vec(0usize..6, 0..12),
        pricing in prop_oneof![Just(Pricing::FirstPrice), Just(Pricing::SecondPrice)],
    ) {
        let n = valid.len();
        let make = || {
            let config = SealedConfig::new("x", pricing).participants(ids(n)).budget(AgentId(0), Money(100_000)).deadline(Time(1_000));
            SealedBidAuction::new(config, Time(0)).expect("valid")
        };
        let mut clean = make();
        let mut noisy = make();
        for (i, &b) in valid.iter().enumerate() {
            clean.submit(Time(i as u64), AgentId(i as u64), Money(b)).expect("valid");
            noisy.submit(Time(i as u64), AgentId(i as u64), Money(b)).expect("valid");
            for &kind in &bad {
                let (agent, amount, at) = match kind {
                    0 => (AgentId(i as u64), Money::MAX, Time(1)),
                    1 => (AgentId(i as u64), Money(3), Time(1)),
                    2 => (AgentId(0), Money(500_000), Time(1)),
                    3 => (AgentId(i as u64), Money(9_900), Time(1)),
                    4 => (AgentId(999), Money(9_900), Time(1)),
                    _ => (AgentId(i as u64), Money(9_900), Time(1_000)),
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
fn brute_force_welfare(bids: &[Vec<BundleBid>], used: u32, i: usize) -> u64 {
    if i == bids.len() {
        return 0;
    }
    let mut best = brute_force_welfare(bids, used, i + 1);
    for b in &bids[i] {
        if b.bundle & used == 0 {
            best = best.max(b.value.minor() + brute_force_welfare(bids, used | b.bundle, i + 1));
        }
    }
    best
}

fn xor_bids(items: usize) -> impl Strategy<Value = Vec<Vec<BundleBid>>> {
    let bid = (1u32..(1 << items), 0u64..=20).prop_map(|(bundle, v)| BundleBid {
        bundle,
        value: Money(v),
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
fn true_value(truth: &[BundleBid], bundle: u32) -> i128 {
    truth
        .iter()
        .filter(|b| b.bundle & !bundle == 0)
        .map(|b| i128::from(b.value.minor()))
        .max()
        .unwrap_or(0)
}

#[test]
fn vcg_prices_the_classic_complements_example() {
    // Items A, B. Bidder 0 wants AB for 10; bidders 1 and 2 want A for 6 and B for 6.
    let bids = vec![
        vec![BundleBid {
            bundle: 0b11,
            value: Money(10),
        }],
        vec![BundleBid {
            bundle: 0b01,
            value: Money(6),
        }],
        vec![BundleBid {
            bundle: 0b10,
            value: Money(6),
        }],
    ];
    let s = vcg::solve(2, &to_map(&bids)).expect("small");
    assert_eq!(s.welfare, Money(12));
    let pays: Vec<(u64, Money)> = s.awards.iter().map(|a| (a.agent.0, a.payment)).collect();
    assert_eq!(pays, vec![(1, Money(4)), (2, Money(4))]);
}

#[test]
fn vcg_refuses_instances_too_large_to_solve_exactly() {
    let bids = to_map(&[vec![BundleBid {
        bundle: 1,
        value: Money(1),
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
                    value: Money(1),
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
    assert!(a
        .submit(Time(1), AgentId(1), bad(0b1000, Money(1)))
        .is_err());
    assert!(a.submit(Time(1), AgentId(1), bad(0, Money(1))).is_err());
    assert!(a
        .submit(
            Time(1),
            AgentId(1),
            vec![
                BundleBid {
                    bundle: 1,
                    value: Money(1)
                };
                2
            ]
        )
        .is_err());
    a.submit(Time(1), AgentId(1), bad(1, Money(3)))
        .expect("valid");
    assert!(a.submit(Time(2), AgentId(1), bad(2, Money(3))).is_err());
    assert!(a.submit(Time(100), AgentId(2), bad(2, Money(3))).is_err());
    let s = a.close(Time(100)).expect("solvable");
    assert_eq!((s.welfare, s.awards[0].payment), (Money(3), Money(0)));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn vcg_allocation_matches_brute_force_and_payments_stay_within_value(bids in xor_bids(4)) {
        let s = vcg_through_machine(4, &bids);
        prop_assert_eq!(s.welfare.minor(), brute_force_welfare(&bids, 0, 0));
        let mut used = 0u32;
        let mut total = 0;
        for award in &s.awards {
            prop_assert_eq!(award.bundle & used, 0, "bundles overlap");
            used |= award.bundle;
            total += award.value.minor();
            prop_assert!(award.payment <= award.value);
        }
        prop_assert_eq!(total, s.welfare.minor());
    }

    #[test]
    fn vcg_truthful_reporting_beats_every_misreport_on_a_grid(bids in xor_bids(3), scale in 0u64..8) {
        let truth = bids[0].clone();
        let outcome_for = |report: Vec<BundleBid>| {
            let mut all = bids.clone();
            all[0] = report;
            let s = vcg::solve(3, &to_map(&all)).expect("small");
            s.awards.iter().find(|a| a.agent == AgentId(0)).map_or(0, |a| true_value(&truth, a.bundle) - i128::from(a.payment.minor()))
        };
        let honest = outcome_for(truth.clone());
        for k in 0..=8u64 {
            // Misreport: scale every alternative by k/4, and the first one by scale/4.
            let report: Vec<BundleBid> = truth.iter().enumerate().map(|(j, b)| BundleBid {
                bundle: b.bundle,
                value: Money(b.value.minor() * if j == 0 { scale } else { k } / 4),
            }).collect();
            let u = outcome_for(report);
            prop_assert!(u <= honest, "misreport earns {} > honest {}", u, honest);
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
            start_price: Money(10),
            increment: Money(10),
            round_ms: 10,
            participants: ids(4).into_iter().collect(),
            budgets: [(AgentId(3), Money(25))].into_iter().collect(),
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
            prop_assert!(award.winner.0 < 4 && award.price >= Money(10));
            prop_assert!(award.winner != AgentId(3) || award.price <= Money(25), "budget respected");
        }
    }
}

#[test]
fn vcg_payments_near_the_top_of_the_range_are_exact_and_overflow_is_refused() {
    // Two bidders for one item at 2^63 and 2^63 - 1: the runner-up's value is the winner's payment,
    // to the minor unit (in f64 both are 2^63 and the sum of all values is infinite).
    let top = 1u64 << 63;
    let one = |value| vec![BundleBid { bundle: 1, value }];
    let bids: XorBids = [
        (AgentId(0), one(Money(top))),
        (AgentId(1), one(Money(top - 1))),
    ]
    .into_iter()
    .collect();
    let s = vcg::solve(1, &bids).expect("the sum of top values fits");
    assert_eq!(
        (s.welfare, s.awards[0].payment),
        (Money(top), Money(top - 1))
    );
    // A third bidder at 2^63 makes the sum of largest values overflow: refused at the door, and
    // the pure solver refuses the instance with a typed error rather than an infinity.
    let mut auction = CombinatorialAuction::new("top", 1, Time(100), None, Time(0));
    for (agent, alternatives) in &bids {
        auction
            .submit(Time(1), *agent, alternatives.clone())
            .expect("fits");
    }
    assert!(matches!(
        auction.submit(Time(2), AgentId(2), one(Money(top))),
        Err(Rejection::Overflow(_))
    ));
    assert_eq!(auction.invariants(), Ok(()));
    let mut over = bids.clone();
    over.insert(AgentId(2), one(Money(top)));
    assert!(matches!(vcg::solve(1, &over), Err(VcgError::Overflow(_))));
}

#[test]
fn clock_increments_never_vanish_against_a_large_price_and_overflowing_clocks_are_refused() {
    // At 2^60 an f64 cannot add 1; the integer clock rises by exactly one minor unit per round.
    let start = 1u64 << 60;
    let e = english(&[start + 3, start + 1], start, 1);
    let award = e.award.expect("sold");
    assert_eq!((award.winner, award.price), (AgentId(0), Money(start + 2)));
    let d = dutch(&[start - 2, 0], start, 1, 0);
    assert_eq!(d.award.expect("sold").price, Money(start - 2));
    // An English clock whose last possible round would leave the range cannot be opened.
    let config = EnglishConfig {
        item: "x".into(),
        start_price: Money(u64::MAX - 10),
        increment: Money(1),
        round_ms: 10,
        participants: ids(2).into_iter().collect(),
        budgets: BTreeMap::new(),
    };
    assert!(matches!(
        EnglishAuction::new(config.clone(), Time(0)),
        Err(ConfigError::Overflow(_))
    ));
    let zero = EnglishConfig {
        start_price: Money(1),
        increment: Money::ZERO,
        ..config
    };
    assert!(matches!(
        EnglishAuction::new(zero, Time(0)),
        Err(ConfigError::Parameter { .. })
    ));
}
