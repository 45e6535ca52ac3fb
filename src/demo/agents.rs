//! The MABEAM part of `foundation demo`: a bidder agent on every node, and a sealed-bid auction
//! for a GPU slot between them whose winner and price a coordinated variable takes, decided by
//! a majority of the nodes — run again after two nodes are gone.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use foundation_agents::auction::sealed::Pricing;
use foundation_agents::variable::{Policy, VarType, VarValue};
use foundation_agents::Money;
use foundation_engine::runtime::agents::sessions::{
    Answer, Ask, Commit, Coordinator, Decision, Mechanism, Session, SessionAnswer, SessionMessage,
};
use foundation_engine::runtime::agents::{
    answer, Agent, AgentSpec, Context, HandlerError, Message,
};
use foundation_engine::runtime::Node;
use foundation_engine::vars::{SessionId, VarSpec};

use super::cluster::{wait_until, Error};

const BIDDERS: &str = "bidder";
const LEDGER: &str = "gpu-slot";

/// Bids what the slot is worth to it: in a Vickrey auction that is its best bid.
struct Bidder {
    value: u64,
}

impl Agent for Bidder {
    async fn handle(&mut self, _: &Context, message: Message) -> Result<Bytes, HandlerError> {
        let SessionMessage::Invite { session, ask, .. } = message.decode()? else {
            return Ok(Bytes::new()); // How a session ended: nothing to answer.
        };
        let reply = match ask {
            Ask::Bid { .. } => Answer::Bid(Money(self.value)),
            _ => Answer::Decline,
        };
        answer(&SessionAnswer {
            session,
            answer: reply,
        })
    }
}

/// The bidder of node `i` (1-based).
fn bidder_name(i: usize) -> String {
    format!("bidder-{i}")
}

/// Spawns a bidder on each node (node i values the slot at 10·i + 7), declares the ledger
/// every node's life decides, and waits until every node sees both.
pub async fn start_bidders(nodes: &[Node]) -> Result<(), Error> {
    println!("\nagents: a bidder on every node; a sealed-bid (Vickrey) auction for a GPU slot");
    let since = Instant::now();
    for (i, node) in nodes.iter().enumerate() {
        let value = 10 * (i as u64 + 1) + 7;
        let spec = AgentSpec::new(bidder_name(i + 1), move || Bidder { value });
        node.agents().spawn(spec.capability(BIDDERS)).await?;
    }
    let what = format!("every node sees the {} bidders", nodes.len());
    wait_until(&what, since, || {
        nodes
            .iter()
            .all(|n| n.agents().with_capability(BIDDERS).len() == nodes.len())
    })
    .await?;
    let since = Instant::now();
    nodes[0].vars().declare(LEDGER, ledger(&nodes[0])).await?;
    wait_until("the ledger is declared on every node", since, || {
        nodes.iter().all(|n| n.vars().get(LEDGER).is_some())
    })
    .await
}

/// Runs auction `id` from `from` among the bidders it sees, and shows the ledger on `reader`
/// once it has the committed version.
pub async fn auction(id: u64, from: &Node, reader: &Node) -> Result<(), Error> {
    let started = Instant::now();
    let session = Session {
        id: SessionId(id),
        mechanism: Mechanism::SealedBid {
            item: LEDGER.into(),
            pricing: Pricing::SecondPrice,
            reserve: Money(5),
        },
        capability: BIDDERS.into(),
        answer_within: Duration::from_millis(500),
        commit: Some(commit()),
        coordinator: Coordinator::Rendezvous,
    };
    let report = from.agents().run(session).await?;
    let winner = match &report.decision {
        Decision::Auction(a) => a.award.as_ref().map(|w| {
            let name = report.participants.get(w.winner.0 as usize);
            (name.cloned().unwrap_or_default(), w.price)
        }),
        _ => None,
    };
    let Some((winner, price)) = winner else {
        return Err(format!("auction {id} sold nothing: {:?}", report.decision).into());
    };
    println!(
        "  auction {id}: {} of {} bidders answered, {winner} wins at {price} (the second-highest bid), {:?}: {:.1} ms",
        report.answered,
        report.participants.len(),
        report.commit,
        started.elapsed().as_secs_f64() * 1e3
    );
    let version = from.vars().get(LEDGER).map_or(0, |(v, _)| v);
    let since = Instant::now();
    wait_until("another node reads the committed ledger", since, || {
        reader.vars().get(LEDGER).is_some_and(|(v, _)| v >= version)
    })
    .await?;
    if let Some((version, VarValue::Record(fields))) = reader.vars().get(LEDGER) {
        let field = |k: &str| fields.get(k).map(|v| format!("{v:?}")).unwrap_or_default();
        println!(
            "  ledger \"{LEDGER}\" at version {version}: holder {}, price {}",
            field("holder"),
            field("price")
        );
    }
    Ok(())
}

/// Where an auction's outcome goes: the winner and the price, decided like any write.
fn commit() -> Commit {
    Commit {
        ledger: LEDGER.into(),
        winner_field: "holder".into(),
        price_field: Some("price".into()),
        budget_field: None,
        counter: None,
        elected_writes: BTreeMap::new(),
        timeout: Duration::from_secs(5),
    }
}

/// A record of the slot's holder (a bidder's name) and what it paid; a coordinated variable
/// decided by a majority of `node`'s view of the alive lives.
fn ledger(node: &Node) -> VarSpec {
    let names = (1..=super::cluster::NODES).map(bidder_name);
    let holder = VarType::Choice(std::iter::once("nobody".to_owned()).chain(names).collect());
    let fields = [
        ("holder", holder, VarValue::Choice("nobody".into())),
        (
            "price",
            VarType::Int {
                min: 0,
                max: i64::MAX,
            },
            VarValue::Int(0),
        ),
        (
            "session",
            VarType::Int {
                min: 0,
                max: i64::MAX,
            },
            VarValue::Int(0),
        ),
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
