//! Every mechanism family as a session between agents on three real QUIC nodes on loopback:
//! an English auction (rounds over the network, a silent bidder dropped by the activity rule,
//! a malformed answer and one of the wrong kind refused with their reasons), a Dutch auction,
//! Contract Net, a combinatorial VCG auction (each item's winner and the payments committed
//! in one step), a call market, alternating-offers bargaining between two agents and a
//! tatonnement that never claims convergence while a participant is silent. Each outcome is the one the mechanism's machine gives for
//! the answers accepted. No timing is asserted: waits have generous deadlines.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use common::eventually;
use common::ledgers::{declare_everywhere, field};
use foundation_agents::auction::vcg::BundleBid;
use foundation_agents::auction::AuctionReason;
use foundation_agents::market::double::{ClearingRule, Side};
use foundation_agents::market::tatonnement::TatonnementOutcome;
use foundation_agents::negotiation::alternating::NegotiationOutcome;
use foundation_agents::negotiation::strategy::Role;
use foundation_agents::variable::{Policy, VarType, VarValue};
use foundation_agents::voting::Ballot;
use foundation_agents::Money;
use foundation_engine::runtime::agents::sessions::{
    Answer, Ask, Commit, CommitState, Coordinator, Decision, Mechanism, Session, SessionAnswer,
    SessionMessage,
};
use foundation_engine::runtime::agents::{
    answer, Agent, AgentSpec, Context, HandlerError, Message,
};
use foundation_engine::runtime::{Node, NodeSettings};
use foundation_engine::vars::{SessionId, VarSpec};

const SOON: Duration = Duration::from_secs(20);
const TRADERS: &str = "trader";

/// A trader's private figures, and how it answers every kind of ask.
#[derive(Clone)]
enum Trader {
    Honest {
        /// What the item is worth to it: it stays in, takes and bids up to this.
        value: u64,
        /// What a task costs it.
        cost: u64,
        /// Its XOR bid in a combinatorial auction.
        bundles: Vec<BundleBid>,
        /// Its market order.
        order: (Side, u64, f64),
    },
    /// Never answers in time.
    Silent,
    /// Answers bytes that decode to nothing.
    Garbled,
    /// Answers a ballot to anything.
    Confused,
}

impl Agent for Trader {
    async fn handle(&mut self, _: &Context, message: Message) -> Result<Bytes, HandlerError> {
        let SessionMessage::Invite {
            session,
            ask,
            within_ms,
            ..
        } = message.decode()?
        else {
            return Ok(Bytes::new()); // A notice: nothing to answer.
        };
        let reply = match self {
            Trader::Honest {
                value,
                cost,
                bundles,
                order,
            } => honest(ask, *value, *cost, bundles, *order),
            Trader::Silent => {
                tokio::time::sleep(Duration::from_millis(within_ms + 1_000)).await;
                Answer::Decline
            }
            Trader::Garbled => return Ok(Bytes::from_static(&[0xff, 0xff, 0xff])),
            Trader::Confused => Answer::Ballot(Ballot::Choice(0)),
        };
        answer(&SessionAnswer {
            session,
            answer: reply,
        })
    }
}

fn honest(
    ask: Ask,
    value: u64,
    cost: u64,
    bundles: &[BundleBid],
    order: (Side, u64, f64),
) -> Answer {
    let yes_if = |ok: bool| if ok { Answer::Accept } else { Answer::Decline };
    match ask {
        Ask::Bid { .. } => Answer::Bid(Money(value)),
        Ask::Stay { price, .. } | Ask::Take { price, .. } => yes_if(price.0 <= value),
        Ask::Task { .. } => Answer::Bid(Money(cost)),
        Ask::Bundles { .. } => Answer::Bundles(bundles.to_vec()),
        Ask::Order { .. } => Answer::Order {
            side: order.0,
            quantity: order.1,
            limit: order.2,
        },
        Ask::Vote { .. } => Answer::Decline,
        Ask::Negotiate {
            role,
            standing,
            next_round,
            ..
        } => bargain(role, standing, next_round, value, cost),
        Ask::Prices { prices, .. } => Answer::Excess(excess(&prices, value, cost)),
    }
}

/// A Cobb-Douglas trader holding `value`/10 of the first good and `cost`/10 of the second,
/// spending half its wealth on each: its excess demand at `prices`.
fn excess(prices: &[f64], value: u64, cost: u64) -> Vec<f64> {
    let holds = [value as f64 / 10.0, cost as f64 / 10.0];
    let wealth: f64 = prices.iter().zip(holds).map(|(p, h)| p * h).sum();
    prices
        .iter()
        .zip(holds)
        .map(|(p, h)| 0.5 * wealth / p - h)
        .collect()
}

/// A buyer opens at 20 and concedes 2 an offer, taking any price up to its value; a seller
/// opens at 40 and concedes 2 an offer, taking any price down to its cost less 10.
fn bargain(role: Role, standing: Option<f64>, round: u32, value: u64, cost: u64) -> Answer {
    let step = 2.0 * f64::from(round);
    match (role, standing) {
        (Role::Buyer, Some(p)) if p <= value as f64 => Answer::Accept,
        (Role::Seller, Some(p)) if p >= cost as f64 - 10.0 => Answer::Accept,
        (Role::Buyer, _) => Answer::Offer(20.0 + step),
        (Role::Seller, _) => Answer::Offer(40.0 - step),
    }
}

fn bundle(bits: u32, value: u64) -> BundleBid {
    BundleBid {
        bundle: bits,
        value: Money(value),
    }
}

async fn cluster_with_traders() -> Vec<Node> {
    let nodes = common::cluster(3, |seeds| NodeSettings {
        http: seeds.is_empty().then(|| "127.0.0.1:0".parse().unwrap()),
        ..common::settings("mechanisms-test", "mechanisms test secret", seeds)
    })
    .await;
    let honest = |value, cost, bundles, order| Trader::Honest {
        value,
        cost,
        bundles,
        order,
    };
    let traders = [
        (
            0,
            "ann",
            honest(30, 20, vec![bundle(0b01, 30)], (Side::Sell, 1, 10.0)),
        ),
        (
            1,
            "bob",
            honest(52, 35, vec![bundle(0b11, 52)], (Side::Buy, 1, 52.0)),
        ),
        (
            2,
            "cat",
            honest(41, 25, vec![bundle(0b10, 41)], (Side::Buy, 1, 41.0)),
        ),
        (1, "dan", Trader::Silent),
        (2, "eve", Trader::Garbled),
        (0, "fay", Trader::Confused),
    ];
    for (node, name, trader) in traders {
        let spec = AgentSpec::new(name, move || trader.clone()).capability(TRADERS);
        nodes[node].agents().spawn(spec).await.unwrap();
    }
    for node in &nodes {
        eventually(SOON, "every trader is visible", || {
            node.agents().with_capability(TRADERS).len() == 6
        })
        .await;
    }
    nodes
}

fn names(options: &[&str]) -> VarType {
    VarType::Choice(options.iter().map(|n| n.to_string()).collect())
}

/// A ledger with a Choice field per name in `choices` (initially "nobody"), `price`,
/// `budget` (100) and `session`.
fn ledger(node: &Node, choices: &[&str]) -> VarSpec {
    let who = names(&["nobody", "ann", "bob", "cat", "dan", "eve", "fay"]);
    let int = VarType::Int {
        min: 0,
        max: i64::MAX,
    };
    let mut ty: BTreeMap<String, VarType> = choices
        .iter()
        .map(|c| (c.to_string(), who.clone()))
        .collect();
    let mut initial: BTreeMap<String, VarValue> = choices
        .iter()
        .map(|c| (c.to_string(), VarValue::Choice("nobody".into())))
        .collect();
    for (field, start) in [("price", 0), ("budget", 100), ("session", 0)] {
        ty.insert(field.into(), int.clone());
        initial.insert(field.into(), VarValue::Int(start));
    }
    VarSpec {
        ty: VarType::Record(ty),
        policy: Policy::Coordinated,
        initial: VarValue::Record(initial),
        acceptors: node.vars().alive_lives(),
    }
}

fn session(id: u64, mechanism: Mechanism, ledger: Option<&str>) -> Session {
    Session {
        id: SessionId(id),
        mechanism,
        capability: TRADERS.into(),
        answer_within: Duration::from_millis(800),
        commit: ledger.map(|ledger| Commit {
            ledger: ledger.into(),
            winner_field: "holder".into(),
            price_field: Some("price".into()),
            budget_field: Some("budget".into()),
            counter: None,
            elected_writes: BTreeMap::new(),
            timeout: Duration::from_secs(3),
        }),
        coordinator: Coordinator::Caller,
    }
}

fn reasons(rejected: &[(String, String)]) -> BTreeMap<&str, &str> {
    rejected
        .iter()
        .map(|(a, r)| (a.as_str(), r.as_str()))
        .collect()
}

async fn everywhere(nodes: &[Node], ledger: &str, expected: &[(&str, VarValue)]) {
    for node in nodes {
        eventually(SOON, "the outcome shows on every node, whole", || {
            expected
                .iter()
                .all(|(name, value)| field(node, ledger, name).as_ref() == Some(value))
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clock_auctions_run_round_after_round_across_nodes_and_commit() {
    let nodes = cluster_with_traders().await;
    declare_everywhere(&nodes, "gpu", ledger(&nodes[0], &["holder"])).await;

    let english = Mechanism::English {
        item: "gpu".into(),
        start: Money(10),
        increment: Money(5),
    };
    let report = nodes[0]
        .agents()
        .run(session(1, english, Some("gpu")))
        .await
        .unwrap();
    let Decision::Auction(outcome) = &report.decision else {
        panic!("an auction: {report:?}");
    };
    let award = outcome.award.clone().expect("sold");
    // The clock rises 10, 15, … 45: at 45 only bob (value 52) stays; cat (41) dropped at 45.
    assert_eq!(award.price, Money(45), "{report:?}");
    assert_eq!(outcome.reason, AuctionReason::LastActiveBidder);
    assert_eq!(report.rounds, 8, "rounds at 10, 15, …, 45: {report:?}");
    assert_eq!(report.answered, 3, "ann, bob, cat: {report:?}");
    let why = reasons(&report.rejected);
    assert!(why["eve"].contains("malformed"), "{why:?}");
    assert!(why["fay"].contains("wrong kind"), "{why:?}");
    assert!(
        !why.contains_key("dan"),
        "silence is absence, not a refusal"
    );
    assert_eq!(report.commit, CommitState::Committed { version: 1 });
    let bob = VarValue::Choice("bob".into());
    everywhere(
        &nodes,
        "gpu",
        &[
            ("holder", bob.clone()),
            ("price", VarValue::Int(45)),
            ("budget", VarValue::Int(55)),
        ],
    )
    .await;

    let dutch = Mechanism::Dutch {
        item: "gpu".into(),
        start: Money(60),
        decrement: Money(5),
        floor: Money(10),
    };
    let report = nodes[2]
        .agents()
        .run(session(2, dutch, Some("gpu")))
        .await
        .unwrap();
    let Decision::Auction(outcome) = &report.decision else {
        panic!("an auction: {report:?}");
    };
    // 60, 55 find no taker; at 50 bob (value 52) takes it.
    let award = outcome.award.clone().expect("sold");
    assert_eq!(award.price, Money(50), "{report:?}");
    assert_eq!(outcome.reason, AuctionReason::FirstToAcceptFallingPrice);
    assert_eq!(report.commit, CommitState::Committed { version: 2 });
    everywhere(
        &nodes,
        "gpu",
        &[
            ("holder", bob),
            ("price", VarValue::Int(50)),
            ("budget", VarValue::Int(5)),
        ],
    )
    .await;

    // A third sale the budget cannot pay: decided, refused by the ledger, nothing shows.
    let english = Mechanism::English {
        item: "gpu".into(),
        start: Money(10),
        increment: Money(5),
    };
    let report = nodes[1]
        .agents()
        .run(session(3, english, Some("gpu")))
        .await
        .unwrap();
    assert!(
        matches!(&report.commit, CommitState::NotCommitted(why) if why.contains("budget")),
        "{report:?}"
    );
    assert_eq!(field(&nodes[1], "gpu", "budget"), Some(VarValue::Int(5)));

    let mut metrics = String::new();
    prometheus_client::encoding::text::encode(&mut metrics, nodes[0].registry()).unwrap();
    let rounds = "foundation_agent_session_rounds_total{mechanism=\"english\"} 8";
    assert!(metrics.contains(rounds), "{metrics}");

    // Node 0 lists the session it coordinated, over HTTP as `foundation agents sessions` reads it.
    let http = nodes[0].http_addr().expect("serves HTTP");
    let listed = foundation_engine::http::get_json(http, "/agents/sessions", SOON)
        .await
        .unwrap();
    let rows = listed["sessions"].as_array().cloned().unwrap_or_default();
    assert_eq!(
        rows.len(),
        1,
        "only session 1 was coordinated here: {rows:?}"
    );
    assert_eq!(rows[0]["mechanism"], "english");
    assert_eq!(rows[0]["state"], "committed");
    assert_eq!(rows[0]["answered"], 3);
    assert_eq!(rows[0]["rounds"], 8);
    assert_eq!(rows[0]["commit"], "version 1");
    assert!(rows[0]["outcome"]
        .as_str()
        .unwrap()
        .contains("bob won gpu at 45"));
    for node in &nodes {
        node.abort().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contract_net_vcg_a_market_and_a_negotiation_decide_across_nodes() {
    let nodes = cluster_with_traders().await;
    declare_everywhere(&nodes, "jobs", ledger(&nodes[0], &["holder"])).await;
    declare_everywhere(&nodes, "slots", ledger(&nodes[0], &["gpu-a", "gpu-b"])).await;

    // The contract's cost is also drawn from an escrow counter of 300 credits (100 rights on
    // each node), on the coordinator's rights, together with the ledger's commit.
    let credits = VarSpec {
        ty: VarType::Int {
            min: 0,
            max: i64::MAX,
        },
        policy: Policy::Counter,
        initial: VarValue::Int(300),
        acceptors: nodes[0].vars().alive_lives(),
    };
    declare_everywhere(&nodes, "credits", credits).await;
    let contract = Mechanism::ContractNet {
        task: "render".into(),
        max_cost: Some(Money(30)),
    };
    let mut paid_from_credits = session(1, contract, Some("jobs"));
    if let Some(commit) = paid_from_credits.commit.as_mut() {
        commit.counter = Some("credits".into());
    }
    let report = nodes[1]
        .agents()
        .run(paid_from_credits.clone())
        .await
        .unwrap();
    let Decision::Contract(outcome) = &report.decision else {
        panic!("a contract: {report:?}");
    };
    assert_eq!(outcome.award.map(|(_, cost)| cost), Some(Money(20)));
    let why = reasons(&report.rejected);
    assert!(why["bob"].contains("budget"), "35 is over 30: {why:?}");
    assert_eq!(report.commit, CommitState::Committed { version: 1 });
    everywhere(
        &nodes,
        "jobs",
        &[
            ("holder", VarValue::Choice("ann".into())),
            ("budget", VarValue::Int(80)),
        ],
    )
    .await;
    let credits_left = |node: &Node| node.vars().get("credits").map(|(_, v)| v);
    assert_eq!(credits_left(&nodes[1]), Some(VarValue::Int(280)));
    // The same session again: it draws, finds the session committed, and refills.
    let again = nodes[1].agents().run(paid_from_credits).await.unwrap();
    assert_eq!(again.commit, CommitState::AlreadyCommitted { version: 1 });
    assert_eq!(
        credits_left(&nodes[1]),
        Some(VarValue::Int(280)),
        "refilled"
    );
    for node in &nodes {
        eventually(SOON, "280 credits left everywhere", || {
            credits_left(node) == Some(VarValue::Int(280))
        })
        .await;
    }

    let vcg = Mechanism::Combinatorial {
        name: "slots".into(),
        items: vec!["gpu-a".into(), "gpu-b".into()],
    };
    let report = nodes[0]
        .agents()
        .run(session(2, vcg, Some("slots")))
        .await
        .unwrap();
    let Decision::Combinatorial(Ok(solution)) = &report.decision else {
        panic!("solved: {report:?}");
    };
    // ann (a: 30) and cat (b: 41) beat bob (a+b: 52); ann pays 52-41, cat pays 52-30.
    assert_eq!(solution.welfare, Money(71));
    let payments: Vec<u64> = solution.awards.iter().map(|a| a.payment.0).collect();
    assert_eq!(payments, vec![11, 22], "{solution:?}");
    assert_eq!(report.commit, CommitState::Committed { version: 1 });
    everywhere(
        &nodes,
        "slots",
        &[
            ("gpu-a", VarValue::Choice("ann".into())),
            ("gpu-b", VarValue::Choice("cat".into())),
            ("price", VarValue::Int(33)),
            ("budget", VarValue::Int(67)),
        ],
    )
    .await;

    let market = Mechanism::Market {
        name: "gpu-hours".into(),
        rule: ClearingRule::Uniform,
    };
    let report = nodes[2]
        .agents()
        .run(session(3, market, None))
        .await
        .unwrap();
    let Decision::Market(cleared) = &report.decision else {
        panic!("a market: {report:?}");
    };
    // ann sells one at 10 or more; bob buys at 52 or less, cat at 41: one unit trades, at the
    // midpoint of [41, 52].
    assert_eq!(cleared.traded_quantity, 1, "{cleared:?}");
    assert_eq!(cleared.buyer_price, Some(46.5));
    let committed_market = session(
        4,
        Mechanism::Market {
            name: "gpu-hours".into(),
            rule: ClearingRule::Uniform,
        },
        Some("jobs"),
    );
    assert!(nodes[2].agents().run(committed_market).await.is_err());

    // ann (buyer, value 30) and bob (seller, cost 35: takes 25 or more) bargain from node 0:
    // 20, 38, 24, 34, 28 — which bob takes. The others are not asked.
    let negotiation = Mechanism::Negotiation {
        subject: "gpu-hour".into(),
        buyer: "ann".into(),
        seller: "bob".into(),
        first_mover: Role::Buyer,
        rounds_max: 10,
    };
    let report = nodes[0]
        .agents()
        .run(session(5, negotiation, None))
        .await
        .unwrap();
    let Decision::Negotiation(NegotiationOutcome::Agreement { price, rounds, .. }) =
        report.decision
    else {
        panic!("an agreement: {report:?}");
    };
    assert_eq!((price, rounds), (28.0, 5), "{report:?}");
    assert_eq!((report.answered, report.rounds), (2, 6), "{report:?}");

    // A tatonnement among all six: dan is silent every round, eve's answers do not decode and
    // fay's are of the wrong kind, so no round is answered by everyone and no equilibrium is
    // claimed, however close the honest three's prices come.
    let tatonnement = Mechanism::Tatonnement {
        market: "spot".into(),
        supply: vec![12.3, 8.0],
        step: 0.5,
        tolerance: 1e-2,
        rounds_max: 3,
    };
    let report = nodes[1]
        .agents()
        .run(session(6, tatonnement, None))
        .await
        .unwrap();
    let Decision::Tatonnement(TatonnementOutcome::NotConverged {
        rounds,
        residual,
        answered,
        participants,
        ..
    }) = report.decision
    else {
        panic!("silence is not convergence: {report:?}");
    };
    assert_eq!((rounds, residual), (3, None), "{report:?}");
    assert_eq!((answered, participants), (3, 6), "{report:?}");
    assert_eq!((report.answered, report.rounds), (3, 3), "{report:?}");
    for node in &nodes {
        node.abort().await;
    }
}
