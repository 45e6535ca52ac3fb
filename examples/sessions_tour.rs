//! One coordination session per mechanism family, between agents on three nodes: a sealed-bid
//! (Vickrey) auction, an English and a Dutch auction, a combinatorial auction with VCG
//! payments, Contract Net, a call market, a negotiation, a vote and a tatonnement. Each line printed is what the session
//! decided, how many traders answered and how many rounds of asks it took; the auctions and
//! Contract Net commit their winner and price to a ledger, the vote its elected value.
//!
//! The traders are plain agents: each answers the [`Ask`] it gets from what it knows
//! privately (what the item is worth to it, what a task costs it).
//!
//! Run: `cargo run --example sessions_tour`

mod common;

use common::{cluster, wait_until, Error};

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use foundation::agents::auction::sealed::Pricing;
use foundation::agents::auction::vcg::BundleBid;
use foundation::agents::market::double::{ClearingRule, Side};
use foundation::agents::market::tatonnement::TatonnementOutcome;
use foundation::agents::negotiation::alternating::NegotiationOutcome;
use foundation::agents::negotiation::strategy::Role;
use foundation::agents::variable::{Policy, VarType, VarValue};
use foundation::agents::voting::{Ballot, Method};
use foundation::agents::Money;
use foundation::engine::runtime::agents::sessions::{
    Answer, Ask, Commit, Coordinator, Decision, Mechanism, Session, SessionAnswer, SessionMessage,
};
use foundation::engine::runtime::agents::{
    answer, Agent, AgentSpec, Context, HandlerError, Message,
};
use foundation::engine::vars::{SessionId, VarSpec};
use foundation::Node;

const TRADERS: &str = "trader";
const NAMES: [&str; 3] = ["ann", "bob", "cat"];

/// What a trader knows privately.
#[derive(Clone)]
struct Trader {
    /// What the item is worth to it.
    value: u64,
    /// What the task would cost it.
    cost: u64,
    /// The items it wants together (bit k: item k) and what the bundle is worth.
    bundle: (u32, u64),
    /// Its market order.
    order: (Side, f64),
    /// Its favourite option of a vote.
    favourite: usize,
    /// What it holds of the tatonnement's two goods, and the share of its wealth it would
    /// spend on the first.
    holds: ([f64; 2], f64),
}

impl Trader {
    /// What it would buy (positive) or sell (negative) of each good at `prices`: a
    /// Cobb-Douglas trader spends a fixed share of its wealth on each good.
    fn excess(&self, prices: &[f64]) -> Vec<f64> {
        let (holds, share) = self.holds;
        let wealth: f64 = prices.iter().zip(holds).map(|(p, h)| p * h).sum();
        let shares = [share, 1.0 - share];
        (0..2)
            .map(|j| shares[j] * wealth / prices.get(j).copied().unwrap_or(1.0) - holds[j])
            .collect()
    }
}

impl Agent for Trader {
    async fn handle(&mut self, _: &Context, message: Message) -> Result<Bytes, HandlerError> {
        let SessionMessage::Invite { session, ask, .. } = message.decode()? else {
            return Ok(Bytes::new()); // How a session ended: nothing to answer.
        };
        let reply = match ask {
            Ask::Bid { .. } => Answer::Bid(Money(self.value)),
            // Stay in (English) or take it (Dutch) while the price is at most the value.
            Ask::Stay { price, .. } | Ask::Take { price, .. } if price.0 <= self.value => {
                Answer::Accept
            }
            Ask::Task { .. } => Answer::Bid(Money(self.cost)),
            Ask::Bundles { .. } => Answer::Bundles(vec![BundleBid {
                bundle: self.bundle.0,
                value: Money(self.bundle.1),
            }]),
            Ask::Order { .. } => Answer::Order {
                side: self.order.0,
                quantity: 1,
                limit: self.order.1,
            },
            Ask::Vote { .. } => Answer::Ballot(Ballot::Choice(self.favourite)),
            // Bargaining: take a price within its limit, else concede 2 an offer from 10 away.
            Ask::Negotiate {
                role,
                standing,
                next_round,
                ..
            } => {
                let (limit, toward) = match role {
                    Role::Buyer => (self.value as f64, 1.0),
                    Role::Seller => (self.cost as f64, -1.0),
                };
                match standing {
                    Some(p) if (p - limit) * toward <= 0.0 => Answer::Accept,
                    _ => Answer::Offer(limit - toward * (10.0 - 2.0 * f64::from(next_round))),
                }
            }
            Ask::Prices { prices, .. } if prices.len() == 2 => Answer::Excess(self.excess(&prices)),
            _ => Answer::Decline,
        };
        answer(&SessionAnswer {
            session,
            answer: reply,
        })
    }
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let dir = std::env::temp_dir().join(format!("foundation-tour-{}", std::process::id()));
    let result = run(&dir).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn run(dir: &Path) -> Result<(), Error> {
    let nodes = cluster(dir, "tour", &["n1", "n2", "n3"]).await?;
    let traders = [
        Trader {
            value: 30,
            cost: 20,
            bundle: (0b01, 30),
            order: (Side::Sell, 10.0),
            favourite: 0,
            holds: ([4.0, 1.0], 0.3),
        },
        Trader {
            value: 52,
            cost: 35,
            bundle: (0b11, 52),
            order: (Side::Buy, 52.0),
            favourite: 1,
            holds: ([1.0, 3.0], 0.6),
        },
        Trader {
            value: 41,
            cost: 25,
            bundle: (0b10, 41),
            order: (Side::Buy, 41.0),
            favourite: 1,
            holds: ([2.0, 2.0], 0.5),
        },
    ];
    for ((node, name), trader) in nodes.iter().zip(NAMES).zip(traders) {
        let spec = AgentSpec::new(name, move || trader.clone()).capability(TRADERS);
        node.agents().spawn(spec).await?;
    }
    wait_until("every trader is visible everywhere", || {
        nodes
            .iter()
            .all(|n| n.agents().with_capability(TRADERS).len() == 3)
    })
    .await?;
    nodes[0].vars().declare("deal", ledger(&nodes[0])).await?;
    wait_until("the ledger is declared everywhere", || {
        nodes.iter().all(|n| n.vars().get("deal").is_some())
    })
    .await?;

    let item = || "gpu-slot".to_owned();
    let mechanisms = [
        Mechanism::SealedBid {
            item: item(),
            pricing: Pricing::SecondPrice,
            reserve: Money(5),
        },
        Mechanism::English {
            item: item(),
            start: Money(10),
            increment: Money(5),
        },
        Mechanism::Dutch {
            item: item(),
            start: Money(60),
            decrement: Money(5),
            floor: Money(10),
        },
        Mechanism::Combinatorial {
            name: "gpus".into(),
            items: vec!["gpu-a".into(), "gpu-b".into()],
        },
        Mechanism::ContractNet {
            task: "render".into(),
            max_cost: None,
        },
        Mechanism::Market {
            name: "gpu-hours".into(),
            rule: ClearingRule::Uniform,
        },
        Mechanism::Negotiation {
            subject: "gpu-hour".into(),
            buyer: "ann".into(),
            seller: "cat".into(),
            first_mover: Role::Seller,
            rounds_max: 10,
        },
        Mechanism::Vote {
            question: "mode".into(),
            candidates: vec!["fast".into(), "safe".into()],
            method: Method::Plurality,
            quorum: 0.5,
        },
        Mechanism::Tatonnement {
            market: "spot".into(),
            supply: vec![7.0, 6.0],
            step: 0.5,
            tolerance: 1e-3,
            rounds_max: 500,
        },
    ];
    for (i, mechanism) in mechanisms.into_iter().enumerate() {
        let commit = match &mechanism {
            // Their prices are real numbers: reported only.
            Mechanism::Market { .. }
            | Mechanism::Negotiation { .. }
            | Mechanism::Tatonnement { .. } => None,
            Mechanism::Vote { .. } => Some(commit("mode")),
            _ => Some(commit("holder")),
        };
        let session = Session {
            id: SessionId(i as u64 + 1),
            mechanism,
            capability: TRADERS.into(),
            answer_within: Duration::from_millis(500),
            commit,
            coordinator: Coordinator::Rendezvous,
        };
        let name = session.mechanism.name();
        let report = nodes[i % 3].agents().run(session).await?;
        println!(
            "{name:<13} {:<52} {} of 3 answered, {} round(s), {:?}",
            decided(&report.decision, &report.participants),
            report.answered,
            report.rounds,
            report.commit
        );
    }
    let last = nodes[0].vars().get("deal").map_or(0, |(v, _)| v);
    wait_until("n3 has the last version", || {
        nodes[2].vars().get("deal").is_some_and(|(v, _)| v >= last)
    })
    .await?;
    if let Some((version, value)) = nodes[2].vars().get("deal") {
        println!("the ledger on n3 at version {version}: {value:?}");
    }
    for node in &nodes {
        node.leave().await;
    }
    Ok(())
}

/// What a decision says, traders by name.
fn decided(decision: &Decision, names: &[String]) -> String {
    let name = |i: u64| names.get(i as usize).cloned().unwrap_or_default();
    match decision {
        Decision::Auction(a) => match &a.award {
            Some(w) => format!("{} wins at {} ({:?})", name(w.winner.0), w.price, a.reason),
            None => format!("not sold ({:?})", a.reason),
        },
        Decision::Combinatorial(Ok(s)) => {
            let won: Vec<String> = s
                .awards
                .iter()
                .map(|w| format!("{} pays {}", name(w.agent.0), w.payment))
                .collect();
            format!("{} (welfare {})", won.join(", "), s.welfare)
        }
        Decision::Combinatorial(Err(e)) => e.to_string(),
        Decision::Contract(c) => match c.award {
            Some((agent, cost)) => format!("{} does it for {cost}", name(agent.0)),
            None => c.reason.clone(),
        },
        Decision::Market(m) => {
            format!("{} unit(s) trade at {:?}", m.traded_quantity, m.buyer_price)
        }
        Decision::Negotiation(NegotiationOutcome::Agreement {
            price,
            rounds,
            accepted_by,
        }) => format!(
            "{} accepts {price} after {rounds} offers",
            name(accepted_by.0)
        ),
        Decision::Negotiation(no) => format!("{no:?}"),
        Decision::Vote(Ok(v)) => format!("elected {:?}", v.label),
        Decision::Vote(Err(e)) => e.to_string(),
        Decision::Tatonnement(TatonnementOutcome::Converged { prices, rounds, .. }) => {
            format!("prices {prices:.3?} clear the market after {rounds} rounds")
        }
        Decision::Tatonnement(t) => format!("{t:?}"),
    }
}

/// Where the outcomes go: the winner into `winner` (per item for the combinatorial auction),
/// the price, and the budget the price is debited from (a vote writes only its winner).
fn commit(winner: &str) -> Commit {
    Commit {
        ledger: "deal".into(),
        winner_field: winner.into(),
        price_field: Some("price".into()),
        budget_field: Some("budget".into()),
        counter: None,
        elected_writes: BTreeMap::new(),
        timeout: Duration::from_secs(5),
    }
}

fn ledger(node: &Node) -> VarSpec {
    let who: VarType = VarType::Choice(["nobody", "ann", "bob", "cat"].map(String::from).into());
    let int = VarType::Int {
        min: 0,
        max: i64::MAX,
    };
    let fields = [
        ("holder", who.clone(), VarValue::Choice("nobody".into())),
        ("gpu-a", who.clone(), VarValue::Choice("nobody".into())),
        ("gpu-b", who, VarValue::Choice("nobody".into())),
        (
            "mode",
            VarType::Choice(["fast", "safe"].map(String::from).into()),
            VarValue::Choice("safe".into()),
        ),
        ("price", int.clone(), VarValue::Int(0)),
        ("budget", int.clone(), VarValue::Int(1_000)),
        ("session", int, VarValue::Int(0)),
    ];
    VarSpec {
        ty: VarType::Record(
            fields
                .iter()
                .map(|(k, t, _)| (k.to_string(), t.clone()))
                .collect(),
        ),
        policy: Policy::Coordinated,
        initial: VarValue::Record(
            fields
                .into_iter()
                .map(|(k, _, v)| (k.to_owned(), v))
                .collect(),
        ),
        acceptors: node.vars().alive_lives(),
    }
}
