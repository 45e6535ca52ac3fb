//! Every mechanism through the one [`Protocol`] shape.
//!
//! For each machine, arbitrary message sequences (bad amounts, outsiders, duplicates, stale rounds,
//! late arrivals) are carried through postcard, the wire format, and delivered by an event-driven
//! driver that fires timers in time order. After every step the machine's invariants must hold; at
//! the end, replaying only the accepted messages must give the same outcome and the same notices,
//! which is what "a rejection changes nothing" means.

use std::collections::{BTreeMap, BTreeSet};

use foundation_agents::auction::dutch::{DutchAuction, DutchConfig, DutchMessage};
use foundation_agents::auction::english::{EnglishAuction, EnglishConfig, EnglishMessage};
use foundation_agents::auction::sealed::{Pricing, SealedBidAuction, SealedConfig, SealedMessage};
use foundation_agents::auction::vcg::{BundleBid, CombinatorialAuction, VcgMessage};
use foundation_agents::market::double::{CallMarket, ClearingRule, MarketMessage};
use foundation_agents::market::tatonnement::{Auctioneer, TatonnementConfig, TatonnementMessage};
use foundation_agents::negotiation::alternating::{AlternatingConfig, AlternatingOffers, Move};
use foundation_agents::negotiation::contract_net::{ContractAnswer, ContractNet};
use foundation_agents::negotiation::strategy::Role;
use foundation_agents::voting::{Ballot, Election, ElectionConfig, Method, VoteMessage};
use foundation_agents::{AgentId, Money, Protocol, Time};
use proptest::prelude::*;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Timer firings allowed after the last message; every machine here decides well within it.
const TIMER_STEPS_MAX: usize = 1_000;

/// Encodes and decodes through postcard and checks the bytes survive exactly.
fn wire<T: Serialize + DeserializeOwned>(value: &T) -> T {
    let bytes = postcard::to_allocvec(value).expect("serialisable");
    let back: T = postcard::from_bytes(&bytes).expect("decodable");
    let again = postcard::to_allocvec(&back).expect("serialisable");
    assert_eq!(again, bytes, "the round trip is exact");
    back
}

/// One arrival: at `at`, from agent `from`, this message.
type Step<M> = (u64, u64, M);

/// What a run produced, as text so any outcome type compares.
#[derive(Debug, PartialEq)]
struct Run {
    outcome: String,
    notices: Vec<String>,
    accepted: Vec<bool>,
}

/// Fires every timer due at or before `until`, checking invariants after each.
fn fire_timers<P: Protocol>(machine: &mut P, until: Option<Time>, notices: &mut Vec<String>) {
    for _ in 0..TIMER_STEPS_MAX {
        match machine.poll_timeout() {
            Some(t) if until.is_none_or(|u| t <= u) => {
                machine.handle_timeout(t);
                assert_eq!(machine.invariants(), Ok(()));
                collect(machine, notices);
            }
            _ => return,
        }
    }
}

fn collect<P: Protocol>(machine: &mut P, notices: &mut Vec<String>) {
    for notice in machine.drain_outbox() {
        let msg = wire(&notice.msg);
        notices.push(format!("{} {msg:?}", notice.to));
    }
}

/// Delivers `steps` (sorted by time) through the wire, with timers in between, to the end.
fn run<P: Protocol>(mut machine: P, steps: &[Step<P::Message>]) -> Run {
    assert_eq!(machine.invariants(), Ok(()));
    let mut notices = Vec::new();
    collect(&mut machine, &mut notices);
    let mut accepted = Vec::new();
    for (at, from, message) in steps {
        fire_timers(&mut machine, Some(Time(*at)), &mut notices);
        let before = format!("{:?}", machine.outcome());
        let result = machine.handle(Time(*at), AgentId(*from), wire(message));
        if result.is_err() {
            assert_eq!(
                before,
                format!("{:?}", machine.outcome()),
                "rejection moved the outcome"
            );
        }
        accepted.push(result.is_ok());
        assert_eq!(machine.invariants(), Ok(()));
        collect(&mut machine, &mut notices);
    }
    fire_timers(&mut machine, None, &mut notices);
    assert!(
        machine.outcome().is_some(),
        "the machine decides once its timers have fired"
    );
    assert!(!machine.drain_telemetry().is_empty());
    Run {
        outcome: format!("{:?}", machine.outcome()),
        notices,
        accepted,
    }
}

/// Runs the script, then only its accepted messages, and requires the same outcome and notices.
fn check<P: Protocol>(make: impl Fn() -> P, mut steps: Vec<Step<P::Message>>) {
    steps.sort_by_key(|s| s.0);
    let full = run(make(), &steps);
    let kept: Vec<Step<P::Message>> = steps
        .into_iter()
        .zip(&full.accepted)
        .filter(|(_, ok)| **ok)
        .map(|(s, _)| s)
        .collect();
    let clean = run(make(), &kept);
    assert_eq!(
        (&full.outcome, &full.notices),
        (&clean.outcome, &clean.notices)
    );
}

/// Money amounts, including the top of the range, whose sums overflow.
fn money() -> impl Strategy<Value = Money> {
    prop_oneof![
        6 => (0u64..=100).prop_map(Money),
        1 => Just(Money::MAX),
        1 => Just(Money(u64::MAX / 2 + 1)),
    ]
}

fn amount() -> impl Strategy<Value = f64> {
    prop_oneof![
        6 => (0u32..=100).prop_map(f64::from),
        1 => Just(f64::NAN),
        1 => Just(f64::INFINITY),
        1 => Just(-1.0),
        1 => Just(1e300),
    ]
}

/// Agents 1..=4 take part; 0 and 5 are outsiders.
fn agent() -> impl Strategy<Value = u64> {
    0u64..6
}

fn steps<M: std::fmt::Debug>(
    message: impl Strategy<Value = M>,
) -> impl Strategy<Value = Vec<Step<M>>> {
    prop::collection::vec((0u64..200, agent(), message), 0..24)
}

fn participants() -> BTreeSet<AgentId> {
    (1..=4).map(AgentId).collect()
}

fn sealed(pricing: Pricing) -> SealedBidAuction {
    let config = SealedConfig::new("slot", pricing)
        .participants(participants())
        .budget(AgentId(1), Money(50))
        .reserve(Money(5))
        .deadline(Time(150));
    SealedBidAuction::new(config, Time(0)).expect("valid")
}

fn english() -> EnglishAuction {
    let config = EnglishConfig {
        item: "slot".into(),
        start_price: Money(10),
        increment: Money(5),
        round_ms: 20,
        participants: participants(),
        budgets: BTreeMap::from([(AgentId(2), Money(40))]),
    };
    EnglishAuction::new(config, Time(0)).expect("valid")
}

fn dutch() -> DutchAuction {
    let mut participants: BTreeMap<AgentId, Option<Money>> =
        participants().into_iter().map(|a| (a, None)).collect();
    participants.insert(AgentId(3), Some(Money(45)));
    let config = DutchConfig {
        item: "slot".into(),
        start_price: Money(100),
        decrement: Money(10),
        floor: Money(10),
        tick_ms: 15,
        participants,
    };
    DutchAuction::new(config, Time(0)).expect("valid")
}

fn alternating() -> AlternatingOffers {
    let config = AlternatingConfig {
        subject: "price".into(),
        buyer: AgentId(1),
        seller: AgentId(2),
        first_mover: Role::Seller,
        rounds_max: 6,
        turn_ms: 30,
    };
    AlternatingOffers::new(config, Time(0)).expect("valid")
}

fn election(method: Method) -> Election {
    let config = ElectionConfig {
        question: "temperature".into(),
        candidates: vec!["0.2".into(), "0.7".into(), "1.0".into()],
        voters: participants()
            .into_iter()
            .map(|a| (a, a.0 as f64))
            .collect(),
        method,
        quorum: 0.5,
        deadline: Time(150),
    };
    Election::new(config, Time(0)).expect("valid")
}

fn tatonnement() -> Auctioneer {
    let config = TatonnementConfig {
        rounds_max: 20,
        round_ms: 30,
        ..TatonnementConfig::default()
    };
    let ids = (1..=3).map(AgentId);
    Auctioneer::new(vec![1.0, 2.0], ids, config, Time(0)).expect("valid")
}

fn candidates() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(0usize..4, 0..4)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn sealed_bid_auctions_keep_their_invariants_and_ignore_rejections(
        script in steps(money().prop_map(|amount| SealedMessage::Bid { amount })),
        first in any::<bool>(),
    ) {
        let pricing = if first { Pricing::FirstPrice } else { Pricing::SecondPrice };
        check(|| sealed(pricing), script);
    }

    #[test]
    fn english_auctions_keep_their_invariants_and_ignore_rejections(
        script in steps((0u64..5, any::<bool>()).prop_map(|(round, stay)| {
            if stay { EnglishMessage::Stay { round } } else { EnglishMessage::Drop { round } }
        })),
    ) {
        check(english, script);
    }

    #[test]
    fn dutch_auctions_keep_their_invariants_and_ignore_rejections(
        script in steps((0u64..12).prop_map(|tick| DutchMessage::Accept { tick })),
    ) {
        check(dutch, script);
    }

    #[test]
    fn vcg_auctions_keep_their_invariants_and_ignore_rejections(
        script in steps(prop::collection::vec((0u32..10, money()), 0..4).prop_map(|alts| {
            let bundles = alts.into_iter().map(|(bundle, value)| BundleBid { bundle, value }).collect();
            VcgMessage::Bid { bundles }
        })),
    ) {
        check(|| CombinatorialAuction::new("bundles", 3, Time(150), Some(participants()), Time(0)), script);
    }

    #[test]
    fn call_markets_keep_their_invariants_and_ignore_rejections(
        script in steps((any::<bool>(), 0u64..5, amount()).prop_map(|(buy, quantity, limit)| {
            if buy { MarketMessage::Bid { quantity, limit } } else { MarketMessage::Ask { quantity, limit } }
        })),
        mcafee in any::<bool>(),
    ) {
        let rule = if mcafee { ClearingRule::McAfee } else { ClearingRule::Uniform };
        check(|| CallMarket::new("m", rule, Time(150), Time(0)).with_participants(participants()), script);
    }

    #[test]
    fn tatonnement_keeps_its_invariants_and_ignores_rejections(
        script in steps((0usize..3, prop::collection::vec(prop_oneof![4 => -1.0f64..1.0, 1 => Just(f64::NAN)], 1..4))
            .prop_map(|(round, excess)| TatonnementMessage::Excess { round, excess })),
    ) {
        check(tatonnement, script);
    }

    #[test]
    fn alternating_offers_keep_their_invariants_and_ignore_rejections(
        script in steps(prop_oneof![
            (0u32..7, amount()).prop_map(|(round, price)| Move::Offer { round, price }),
            (0u32..7).prop_map(|round| Move::Accept { round }),
            Just(Move::Quit),
        ]),
    ) {
        check(alternating, script);
    }

    #[test]
    fn contract_net_keeps_its_invariants_and_ignores_rejections(
        script in steps(prop_oneof![4 => money().prop_map(ContractAnswer::Bid), 1 => Just(ContractAnswer::Refuse)]),
    ) {
        check(|| ContractNet::new("task", participants(), Time(150), Some(Money(60)), Time(0)), script);
    }

    #[test]
    fn elections_keep_their_invariants_and_ignore_rejections(
        script in steps(prop_oneof![
            (0usize..4).prop_map(Ballot::Choice),
            candidates().prop_map(Ballot::Ranking),
            candidates().prop_map(Ballot::Approval),
        ].prop_map(|ballot| VoteMessage::Cast { ballot })),
        method in prop_oneof![Just(Method::Plurality), Just(Method::Borda), Just(Method::Approval), Just(Method::Schulze)],
    ) {
        check(|| election(method), script);
    }
}
