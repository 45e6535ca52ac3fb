//! Properties of the call market and of Walrasian tatonnement.

use foundation_agents::error::ConfigError;
use foundation_agents::market::double::{
    clear, CallMarket, ClearingOutcome, ClearingReason, ClearingRule, MarketMessage, Order, Side,
};
use foundation_agents::market::tatonnement::{
    self, scarf_economy, Auctioneer, CobbDouglas, Consumer, TatonnementConfig, TatonnementMessage,
    TatonnementNotice, TatonnementOutcome,
};
use foundation_agents::telemetry::TelemetryEvent;
use foundation_agents::{AgentId, Rejection, Time};
use proptest::prelude::*;

fn order(i: usize, side: Side, quantity: u64, limit: f64) -> Order {
    Order {
        agent: AgentId(i as u64),
        side,
        quantity,
        limit,
        seq: i as u64,
    }
}

/// Clears `orders` through the market machine, one message each, checking its invariants after every
/// step, and checks the machine agrees with the pure clearing function.
fn through_market(orders: &[Order], rule: ClearingRule) -> ClearingOutcome {
    let mut market = CallMarket::new("prop", rule, Time(1_000), Time(0));
    for o in orders {
        let (quantity, limit) = (o.quantity, o.limit);
        let message = match o.side {
            Side::Buy => MarketMessage::Bid { quantity, limit },
            Side::Sell => MarketMessage::Ask { quantity, limit },
        };
        market
            .handle(Time(o.seq), o.agent, message)
            .expect("valid order");
        assert_eq!(market.invariants(), Ok(()));
    }
    assert_eq!(
        market.handle_timeout(Time(999)),
        None,
        "not before the deadline"
    );
    let out = market
        .handle_timeout(Time(1_000))
        .expect("cleared at the deadline");
    assert_eq!(market.invariants(), Ok(()));
    assert_eq!(
        market.drain_outbox().len(),
        orders.len(),
        "one notice per order"
    );
    assert_eq!(out, clear(orders, rule));
    out
}

/// Efficient quantity by expanding every order into units and pairing sorted units.
fn brute_force_quantity(orders: &[Order]) -> u64 {
    let units = |side: Side| -> Vec<f64> {
        orders
            .iter()
            .filter(|o| o.side == side)
            .flat_map(|o| std::iter::repeat_n(o.limit, o.quantity as usize))
            .collect()
    };
    let mut buys = units(Side::Buy);
    let mut sells = units(Side::Sell);
    buys.sort_by(|a, b| b.total_cmp(a));
    sells.sort_by(|a, b| a.total_cmp(b));
    buys.iter().zip(&sells).take_while(|(b, s)| b >= s).count() as u64
}

fn orders() -> impl Strategy<Value = Vec<Order>> {
    let one = (
        prop_oneof![Just(Side::Buy), Just(Side::Sell)],
        1u64..5,
        0u32..=40,
    );
    prop::collection::vec(one, 0..30).prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(|(i, (side, q, limit))| order(i, side, q, f64::from(limit) * 0.5))
            .collect()
    })
}

fn check_individually_rational(
    orders: &[Order],
    out: &foundation_agents::market::double::ClearingOutcome,
) {
    for fill in &out.fills {
        let limit = orders
            .iter()
            .find(|o| o.agent == fill.agent && o.side == fill.side)
            .map(|o| o.limit);
        let limit = limit.expect("fills name real orders");
        match fill.side {
            Side::Buy => assert!(
                fill.price <= limit,
                "buyer pays {} above limit {limit}",
                fill.price
            ),
            Side::Sell => assert!(
                fill.price >= limit,
                "seller gets {} below limit {limit}",
                fill.price
            ),
        }
    }
}

fn traded(out: &foundation_agents::market::double::ClearingOutcome, side: Side) -> u64 {
    out.fills
        .iter()
        .filter(|f| f.side == side)
        .map(|f| f.quantity)
        .sum()
}

#[test]
fn a_textbook_market_clears_two_units_at_the_midpoint() {
    let orders = vec![
        order(0, Side::Buy, 1, 10.0),
        order(1, Side::Buy, 1, 8.0),
        order(2, Side::Buy, 1, 3.0),
        order(3, Side::Sell, 1, 2.0),
        order(4, Side::Sell, 1, 5.0),
        order(5, Side::Sell, 1, 9.0),
    ];
    let out = clear(&orders, ClearingRule::Uniform);
    assert_eq!(out.traded_quantity, 2);
    // Clearing interval [max(s2 = 5, b3 = 3), min(b2 = 8, s3 = 9)] = [5, 8].
    assert_eq!(out.buyer_price, Some(6.5));
    let mcafee = clear(&orders, ClearingRule::McAfee);
    // p0 = (3 + 9) / 2 = 6 lies in [5, 8], so no trade is lost.
    assert_eq!((mcafee.traded_quantity, mcafee.buyer_price), (2, Some(6.0)));
}

#[test]
fn mcafee_drops_the_marginal_trade_when_p0_is_outside_and_keeps_the_surplus() {
    let orders = vec![
        order(0, Side::Buy, 1, 10.0),
        order(1, Side::Buy, 1, 8.0),
        order(2, Side::Sell, 1, 2.0),
        order(3, Side::Sell, 1, 5.0),
    ];
    let out = clear(&orders, ClearingRule::McAfee);
    assert_eq!((out.efficient_quantity, out.traded_quantity), (2, 1));
    assert_eq!((out.buyer_price, out.seller_price), (Some(8.0), Some(5.0)));
    assert_eq!(
        (out.surplus, out.reason),
        (3.0, ClearingReason::TradeReduction)
    );
}

#[test]
fn the_call_market_rejects_bad_orders_without_changing_the_result() {
    let mut m = CallMarket::new("cpu", ClearingRule::Uniform, Time(100), Time(0));
    m.submit(Time(1), AgentId(1), Side::Buy, 2, 10.0)
        .expect("valid");
    m.submit(Time(1), AgentId(2), Side::Sell, 2, 4.0)
        .expect("valid");
    let before = clear(
        &[order(1, Side::Buy, 2, 10.0), order(2, Side::Sell, 2, 4.0)],
        ClearingRule::Uniform,
    );
    assert_eq!(
        m.submit(Time(2), AgentId(3), Side::Buy, 1, f64::NAN),
        Err(Rejection::NotFinite)
    );
    assert!(matches!(
        m.submit(Time(2), AgentId(3), Side::Buy, 1, -2.0),
        Err(Rejection::Negative { .. })
    ));
    assert!(matches!(
        m.submit(Time(2), AgentId(3), Side::Buy, 0, 2.0),
        Err(Rejection::InvalidQuantity { .. })
    ));
    assert!(matches!(
        m.submit(Time(2), AgentId(1), Side::Buy, 1, 20.0),
        Err(Rejection::Duplicate { .. })
    ));
    assert!(matches!(
        m.submit(Time(100), AgentId(4), Side::Buy, 1, 20.0),
        Err(Rejection::Late { .. })
    ));
    let after = m.close(Time(100));
    assert_eq!(after.fills, before.fills);
    assert_eq!(after.buyer_price, Some(7.0));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn uniform_clearing_trades_the_efficient_quantity_rationally_and_balances_the_budget(orders in orders()) {
        let out = through_market(&orders, ClearingRule::Uniform);
        prop_assert_eq!(out.efficient_quantity, brute_force_quantity(&orders));
        prop_assert_eq!(out.traded_quantity, out.efficient_quantity);
        prop_assert_eq!(traded(&out, Side::Buy), out.traded_quantity);
        prop_assert_eq!(traded(&out, Side::Sell), out.traded_quantity);
        check_individually_rational(&orders, &out);
        prop_assert_eq!(out.surplus, 0.0);
    }

    #[test]
    fn mcafee_loses_at_most_one_trade_is_rational_and_never_runs_a_deficit(orders in orders()) {
        let out = through_market(&orders, ClearingRule::McAfee);
        let q = brute_force_quantity(&orders);
        prop_assert_eq!(out.efficient_quantity, q);
        prop_assert!(out.traded_quantity == q || out.traded_quantity + 1 == q);
        prop_assert_eq!(traded(&out, Side::Buy), traded(&out, Side::Sell));
        check_individually_rational(&orders, &out);
        let paid: f64 = out.fills.iter().filter(|f| f.side == Side::Buy).map(|f| f.price * f.quantity as f64).sum();
        let received: f64 = out.fills.iter().filter(|f| f.side == Side::Sell).map(|f| f.price * f.quantity as f64).sum();
        prop_assert!(paid - received >= -1e-9);
    }

    #[test]
    fn mcafee_is_truthful_for_a_unit_buyer_on_a_grid(
        values in prop::collection::vec(0u32..=20, 2..8),
        costs in prop::collection::vec(0u32..=20, 2..8),
    ) {
        // Distinct offsets keep limits apart so the unit ranking is strict, as McAfee assumes.
        let limit = |k: u32, i: usize| f64::from(k) + i as f64 * 1e-3;
        let market = |buyer0: f64| {
            let mut orders: Vec<Order> = values.iter().enumerate().map(|(i, &v)| order(i, Side::Buy, 1, limit(v, i))).collect();
            orders[0].limit = buyer0;
            let n = orders.len();
            orders.extend(costs.iter().enumerate().map(|(j, &c)| order(n + j, Side::Sell, 1, limit(c, j) + 5e-4)));
            clear(&orders, ClearingRule::McAfee)
        };
        let true_value = limit(values[0], 0);
        let utility = |report: f64| {
            let out = market(report);
            out.fills.iter().find(|f| f.agent == AgentId(0)).map_or(0.0, |f| true_value - f.price)
        };
        let honest = utility(true_value);
        for k in 0..=42 {
            let report = f64::from(k) * 0.5 + 0.0007;
            prop_assert!(utility(report) <= honest + 1e-9, "report {} beats truth", report);
        }
    }
}

fn cobb_douglas_economy() -> impl Strategy<Value = Vec<CobbDouglas>> {
    (2usize..5).prop_flat_map(|goods| {
        let consumer = (
            prop::collection::vec(0.05f64..1.0, goods),
            prop::collection::vec(0.1f64..10.0, goods),
        )
            .prop_map(|(raw, endowment)| {
                let sum: f64 = raw.iter().sum();
                CobbDouglas {
                    alpha: raw.iter().map(|a| a / sum).collect(),
                    endowment,
                }
            });
        prop::collection::vec(consumer, 1..6)
    })
}

/// Runs a tatonnement through the auctioneer's [`Protocol`] interface, every consumer answering by
/// message, with the invariants checked after every step.
fn run_checked(consumers: &[&dyn Consumer], config: TatonnementConfig) -> TatonnementOutcome {
    let supply = tatonnement::total_supply(consumers);
    let ids = (0..consumers.len() as u64).map(AgentId);
    let mut auctioneer = Auctioneer::new(supply, ids, config, Time(0)).expect("valid");
    let mut now = Time(0);
    loop {
        let (round, prices) = (auctioneer.round(), auctioneer.prices().to_vec());
        for (i, c) in consumers.iter().enumerate() {
            let excess = c.excess_demand(&prices);
            let message = TatonnementMessage::Excess { round, excess };
            auctioneer
                .handle(now, AgentId(i as u64), message)
                .expect("valid answer");
            assert_eq!(auctioneer.invariants(), Ok(()));
        }
        now = now.plus_ms(1);
        let outcome = auctioneer.end_round(now);
        assert_eq!(auctioneer.invariants(), Ok(()));
        if let Some(outcome) = outcome {
            return outcome;
        }
    }
}

fn dyn_refs<C: Consumer>(cs: &[C]) -> Vec<&dyn Consumer> {
    cs.iter().map(|c| c as &dyn Consumer).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn walras_law_holds_the_value_of_excess_demand_is_zero_at_any_prices(
        economy in cobb_douglas_economy(),
        raw_prices in prop::collection::vec(0.01f64..10.0, 4),
    ) {
        let goods = economy[0].endowment.len();
        let prices = &raw_prices[..goods];
        let mut value = 0.0;
        let mut scale = 0.0;
        for c in &economy {
            for (z, p) in c.excess_demand(prices).iter().zip(prices) {
                value += z * p;
                scale += (z * p).abs();
            }
        }
        prop_assert!(value.abs() <= 1e-9 * scale.max(1.0));
        for c in scarf_economy() {
            let v: f64 = c.excess_demand(&raw_prices[..3]).iter().zip(&raw_prices[..3]).map(|(z, p)| z * p).sum();
            prop_assert!(v.abs() < 1e-9);
        }
    }

    #[test]
    fn tatonnement_converges_on_cobb_douglas_economies(economy in cobb_douglas_economy()) {
        let refs = dyn_refs(&economy);
        let outcome = run_checked(&refs, TatonnementConfig::default());
        let TatonnementOutcome::Converged { prices, residual, .. } = outcome else {
            return Err(TestCaseError::fail(format!("did not converge: {outcome:?}")));
        };
        prop_assert!(residual <= 1e-8);
        // At equilibrium prices every market clears.
        let supply = tatonnement::total_supply(&refs);
        let mut total = vec![0.0; supply.len()];
        for c in &economy {
            total.iter_mut().zip(c.excess_demand(&prices)).for_each(|(t, z)| *t += z);
        }
        prop_assert!(tatonnement::residual(&total, &supply) <= 1e-8);
    }
}

#[test]
fn tatonnement_reports_non_convergence_on_scarfs_example() {
    let economy = scarf_economy();
    let refs = dyn_refs(&economy);
    let config = TatonnementConfig {
        rounds_max: 5_000,
        ..TatonnementConfig::default()
    };
    let outcome = tatonnement::run(&refs, config, Some(vec![0.5, 0.3, 0.2])).expect("valid");
    match outcome {
        TatonnementOutcome::NotConverged {
            rounds, residual, ..
        } => {
            assert_eq!(rounds, 5_000);
            assert!(residual.is_some_and(|r| r > 1e-3), "residual {residual:?}");
        }
        other => panic!("Scarf's economy must not converge, got {other:?}"),
    }
}

#[test]
fn scarfs_economy_started_at_its_equilibrium_is_recognised_at_once() {
    let economy = scarf_economy();
    let outcome =
        tatonnement::run(&dyn_refs(&economy), TatonnementConfig::default(), None).expect("valid");
    assert!(
        matches!(outcome, TatonnementOutcome::Converged { rounds: 1, .. }),
        "{outcome:?}"
    );
}

#[test]
fn the_auctioneer_repeats_a_round_with_silent_agents_and_rejects_bad_answers() {
    let config = TatonnementConfig::default();
    let mut a =
        Auctioneer::new(vec![1.0, 1.0], [AgentId(1), AgentId(2)], config, Time(0)).expect("valid");
    assert_eq!(
        a.submit(Time(1), AgentId(1), 0, vec![f64::NAN, 0.0]),
        Err(Rejection::NotFinite)
    );
    assert!(matches!(
        a.submit(Time(1), AgentId(9), 0, vec![0.0, 0.0]),
        Err(Rejection::NotParticipant { .. })
    ));
    assert!(matches!(
        a.submit(Time(1), AgentId(1), 3, vec![0.0, 0.0]),
        Err(Rejection::InvalidReference { .. })
    ));
    a.submit(Time(1), AgentId(1), 0, vec![0.5, -0.5])
        .expect("valid");
    assert!(matches!(
        a.submit(Time(1), AgentId(1), 0, vec![0.5, -0.5]),
        Err(Rejection::Duplicate { .. })
    ));
    let before = a.prices().to_vec();
    assert_eq!(a.end_round(Time(2)), None);
    assert_eq!(a.absent_last_round(), 1);
    assert_eq!(a.round(), 1);
    assert_eq!(
        a.prices(),
        &before[..],
        "one agent's answer does not steer everyone's prices"
    );
    a.submit(Time(3), AgentId(1), 1, vec![0.5, -0.5])
        .expect("valid");
    a.submit(Time(3), AgentId(2), 1, vec![0.0, 0.0])
        .expect("valid");
    assert_eq!(a.end_round(Time(4)), None);
    assert_eq!(a.absent_last_round(), 0);
    assert!(
        a.prices()[0] > a.prices()[1],
        "a complete round moves prices: the over-demanded good became dearer"
    );
    let events = a.drain_telemetry();
    assert!(matches!(events[0], TelemetryEvent::Started { .. }));
    let rejected = events
        .iter()
        .filter(|e| matches!(e, TelemetryEvent::Rejected { .. }));
    assert_eq!(rejected.count(), 4);
}

#[test]
fn silence_is_never_reported_as_convergence() {
    // Agent 1 says its market clears; agent 2 never answers. Counting the silent agent as zero
    // excess demand would report an equilibrium after one round.
    let config = TatonnementConfig {
        rounds_max: 3,
        ..TatonnementConfig::default()
    };
    let mut a =
        Auctioneer::new(vec![1.0, 1.0], [AgentId(1), AgentId(2)], config, Time(0)).expect("valid");
    let mut outcome = None;
    for round in 0..3 {
        let at = Time(round as u64 * 1_000 + 1);
        a.submit(at, AgentId(1), round, vec![0.0, 0.0])
            .expect("valid");
        outcome = a.handle_timeout(a.poll_timeout().expect("running"));
        assert_eq!(a.invariants(), Ok(()));
    }
    assert_eq!(
        outcome,
        Some(TatonnementOutcome::NotConverged {
            prices: vec![0.5, 0.5],
            rounds: 3,
            residual: None,
            answered: 1,
            participants: 2,
        })
    );
    let finished = a.drain_outbox().into_iter().any(|o| {
        matches!(
            o.msg,
            TatonnementNotice::Finished {
                converged: false,
                ..
            }
        )
    });
    assert!(finished, "agents learn that nothing was agreed");
    assert!(matches!(
        Auctioneer::new(vec![1.0], [], TatonnementConfig::default(), Time(0)),
        Err(ConfigError::Empty { .. })
    ));
}

#[test]
fn answers_too_large_to_aggregate_leave_prices_and_residual_finite() {
    // Each answer is finite, but their sum overflows, and one alone moves a price past f64's
    // range: the round cannot measure the market, so it repeats its prices as an incomplete
    // round does, instead of ending on infinite or NaN prices.
    let config = TatonnementConfig {
        rounds_max: 3,
        ..TatonnementConfig::default()
    };
    let agents = [AgentId(1), AgentId(2)];
    let mut a = Auctioneer::new(vec![1.0, 1e-300], agents, config, Time(0)).expect("valid");
    let before = a.prices().to_vec();
    let mut outcome = None;
    for round in 0..3usize {
        let at = Time(1 + 2 * round as u64);
        a.submit(at, AgentId(1), round, vec![f64::MAX, f64::MAX])
            .expect("finite");
        a.submit(at, AgentId(2), round, vec![f64::MAX, -1.0])
            .expect("finite");
        outcome = a.end_round(Time(2 + 2 * round as u64));
        assert_eq!(a.prices(), &before[..], "round {round}");
        a.invariants()
            .expect("prices stay a normalised positive vector");
    }
    match outcome {
        Some(TatonnementOutcome::NotConverged {
            residual, prices, ..
        }) => {
            assert!(residual.is_none_or(f64::is_finite), "{residual:?}");
            assert!(prices.iter().all(|p| p.is_finite()), "{prices:?}");
        }
        other => panic!("out of rounds, not converged: {other:?}"),
    }
}

#[test]
fn limits_whose_surplus_would_leave_f64s_range_are_refused() {
    // A McAfee trade reduction at buyers' f64::MAX and a seller's 0 over two units once
    // reported an infinite surplus; limits are bounded so the surplus of any clearing is finite.
    let mut m = CallMarket::new("cpu", ClearingRule::McAfee, Time(100), Time(0));
    let refused = m.submit(Time(1), AgentId(9), Side::Buy, 1, f64::MAX);
    assert!(
        matches!(refused, Err(Rejection::Overflow(_))),
        "{refused:?}"
    );
    let limit = foundation_agents::market::double::LIMIT_MAX;
    for buyer in 1..=3 {
        m.submit(Time(1), AgentId(buyer), Side::Buy, 1, limit)
            .expect("at the bound");
    }
    m.submit(Time(1), AgentId(4), Side::Sell, 3, 0.0)
        .expect("valid");
    let out = m.close(Time(100));
    assert_eq!(out.traded_quantity, 2, "{out:?}");
    assert!(out.surplus.is_finite(), "{out:?}");
    assert_eq!(out.surplus, limit * 2.0);
}
