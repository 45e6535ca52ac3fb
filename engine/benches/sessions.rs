//! Coordination sessions on real runtime nodes on 127.0.0.1 (issue 14's targets): a sealed-bid
//! auction with 1,000 bidder agents spread over 5 nodes, against the same auction on one node;
//! a vote with 100 voters across 5 nodes; Contract Net with 50 contractors across 5 nodes.
//! For each: the time from opening the session to its report on the coordinator (decided and
//! committed by a majority), and to the committed ledger version being visible on every node
//! (p50/p99 over the samples).
//!
//! ```sh
//! cargo bench -p foundation-engine --bench sessions            # full run
//! cargo bench -p foundation-engine --bench sessions -- quick   # fewer samples
//! ```
//!
//! Prints numbers; never fails on timing (timing is not a pass/fail test).

#[path = "common/nodes.rs"]
mod nodes;
#[path = "../../transport/benches/common/percentiles.rs"]
mod percentiles;
#[path = "common/wait.rs"]
mod wait;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use foundation_agents::auction::sealed::Pricing;
use foundation_agents::variable::{Policy, VarType, VarValue};
use foundation_agents::voting::{Ballot, Method};
use foundation_agents::Money;
use foundation_engine::runtime::agents::sessions::{
    Answer, Ask, Commit, CommitState, Coordinator, Mechanism, Session, SessionAnswer,
    SessionMessage,
};
use foundation_engine::runtime::agents::{
    answer, Agent, AgentSpec, Context, HandlerError, Message,
};
use foundation_engine::runtime::Node;
use foundation_engine::vars::{SessionId, VarSpec};
use percentiles::percentiles;
use wait::wait_until;

const SECRET: &str = "sessions benchmark secret, long enough";
const PATIENCE: Duration = Duration::from_secs(60);

/// Answers every ask at once: bids and costs from its number, votes by its number.
struct Participant(u64);

impl Agent for Participant {
    async fn handle(&mut self, _: &Context, message: Message) -> Result<Bytes, HandlerError> {
        let SessionMessage::Invite { session, ask, .. } = message.decode()? else {
            return Ok(Bytes::new());
        };
        let n = self.0;
        let reply = match ask {
            Ask::Bid { .. } => Answer::Bid(bid_of(n)),
            Ask::Vote { candidates, .. } => {
                Answer::Ballot(Ballot::Choice((n as usize) % candidates.len().max(1)))
            }
            Ask::Task { .. } => Answer::Bid(Money(10 + (n * 104_729) % 1_000)),
            _ => Answer::Decline,
        };
        answer(&SessionAnswer {
            session,
            answer: reply,
        })
    }
}

/// Participant `n`'s sealed bid.
fn bid_of(n: u64) -> Money {
    Money(100 + (n * 7_919) % 10_000)
}

/// The `keep` names of `names` (participant `i` is `names[i]`) with the highest bids: a
/// ledger's `Choice` field lists at most 256 options, so the auction ledger's holders are the
/// bidders that can win (bids are fixed, so the same ones win every sample).
fn likeliest_winners(names: &[String], keep: usize) -> Vec<String> {
    let mut ranked: Vec<(Money, &String)> =
        (0u64..).zip(names).map(|(i, n)| (bid_of(i), n)).collect();
    ranked.sort_by(|a, b| b.cmp(a));
    ranked
        .into_iter()
        .take(keep)
        .map(|(_, n)| n.clone())
        .collect()
}

/// Spawns `count` participants named `prefix-N` with capability `prefix`, spread round-robin
/// over `nodes`, and waits until every node sees them all.
async fn spawn_participants(nodes: &[Node], prefix: &str, count: usize) -> Vec<String> {
    let mut names = Vec::with_capacity(count);
    for i in 0..count {
        let name = format!("{prefix}-{i:04}");
        let spec = AgentSpec::new(&name, move || Participant(i as u64)).capability(prefix);
        nodes[i % nodes.len()]
            .agents()
            .spawn(spec)
            .await
            .expect("spawn");
        names.push(name);
    }
    for node in nodes {
        let seen = wait_until(PATIENCE, || {
            node.agents().with_capability(prefix).len() == count
        })
        .await;
        assert!(
            seen,
            "participants not visible everywhere within {PATIENCE:?}"
        );
    }
    names
}

/// A ledger whose `winner` is one of `names` (or `nobody`), with price, budget and session.
fn ledger(node: &Node, names: &[String]) -> VarSpec {
    let mut choices = vec!["nobody".to_owned()];
    choices.extend(names.iter().cloned());
    let int = VarType::Int {
        min: 0,
        max: i64::MAX,
    };
    let ty = VarType::Record(BTreeMap::from([
        (
            "winner".to_owned(),
            VarType::Choice(choices.into_iter().collect()),
        ),
        ("price".to_owned(), int.clone()),
        ("budget".to_owned(), int.clone()),
        ("session".to_owned(), int),
    ]));
    let initial = VarValue::Record(BTreeMap::from([
        ("winner".to_owned(), VarValue::Choice("nobody".into())),
        ("price".to_owned(), VarValue::Int(0)),
        ("budget".to_owned(), VarValue::Int(i64::MAX / 2)),
        ("session".to_owned(), VarValue::Int(0)),
    ]));
    VarSpec {
        ty,
        policy: Policy::Coordinated,
        initial,
        acceptors: node.vars().alive_lives(),
    }
}

async fn declare(nodes: &[Node], name: &str, spec: VarSpec) {
    nodes[0].vars().declare(name, spec).await.expect("declare");
    for node in nodes {
        let declared = wait_until(PATIENCE, || node.vars().get(name).is_some()).await;
        assert!(declared, "ledger {name} not declared everywhere");
    }
}

/// Runs `samples` sessions of `mechanism` among the agents of `capability` from `nodes[0]`,
/// one after another, each committing to `ledger`; returns (to the report, to visible on
/// every node) per sample.
async fn measure(
    nodes: &[Node],
    (capability, ledger): (&str, &str),
    mechanism: Mechanism,
    samples: usize,
) -> (Vec<Duration>, Vec<Duration>) {
    let (mut reported, mut visible) = (Vec::new(), Vec::new());
    let first = nodes[0].vars().get(ledger).map_or(0, |(v, _)| v);
    for i in 0..samples {
        let session = Session {
            id: SessionId(first + i as u64 + 1),
            mechanism: mechanism.clone(),
            capability: capability.into(),
            answer_within: Duration::from_secs(10),
            commit: Some(Commit {
                ledger: ledger.into(),
                winner_field: "winner".into(),
                price_field: Some("price".into()),
                budget_field: Some("budget".into()),
                counter: None,
                elected_writes: BTreeMap::new(),
                timeout: Duration::from_secs(10),
            }),
            coordinator: Coordinator::Caller,
        };
        let started = Instant::now();
        let report = nodes[0].agents().run(session).await.expect("session runs");
        reported.push(started.elapsed());
        let CommitState::Committed { version } = report.commit else {
            panic!("sample {i} did not commit: {:?}", report.commit);
        };
        for node in nodes {
            let seen = wait_until(PATIENCE, || {
                node.vars().get(ledger).is_some_and(|(v, _)| v >= version)
            })
            .await;
            assert!(seen, "version {version} not visible everywhere");
        }
        visible.push(started.elapsed());
    }
    (reported, visible)
}

fn print(what: &str, (reported, visible): (Vec<Duration>, Vec<Duration>)) {
    let (r, v) = (percentiles(reported), percentiles(visible));
    println!("{what} (n={})", r.n);
    println!(
        "    to the report (decided, committed by a majority): p50 {:>8.1?}  p99 {:>8.1?}  max {:>8.1?}",
        r.p50, r.p99, r.max
    );
    println!(
        "    to the version visible on every node:             p50 {:>8.1?}  p99 {:>8.1?}  max {:>8.1?}",
        v.p50, v.p99, v.max
    );
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn main() {
    let quick = std::env::args().any(|a| a == "quick");
    let samples = if quick { 5 } else { 30 };
    println!(
        "load average before: {} ({} cores)",
        load(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let runtime = nodes::runtime();
    runtime.block_on(async {
        let sealed = Mechanism::SealedBid {
            item: "gpu-slot".into(),
            pricing: Pricing::SecondPrice,
            reserve: Money(1),
        };
        let one = nodes::cluster("sessions-bench-1", SECRET, 1).await;
        let names = spawn_participants(&one, "solo", 1_000).await;
        let holders = likeliest_winners(&names, 255);
        declare(&one, "solo", ledger(&one[0], &holders)).await;
        let figures = measure(&one, ("solo", "solo"), sealed.clone(), samples).await;
        print("sealed-bid, 1,000 bidders, 1 node", figures);
        for node in &one {
            node.abort().await;
        }

        let five = nodes::cluster("sessions-bench-5", SECRET, 5).await;
        let names = spawn_participants(&five, "bidder", 1_000).await;
        let holders = likeliest_winners(&names, 255);
        declare(&five, "slot", ledger(&five[0], &holders)).await;
        let figures = measure(&five, ("bidder", "slot"), sealed, samples).await;
        print("sealed-bid, 1,000 bidders over 5 nodes", figures);
        for node in &five {
            node.abort().await;
        }

        let five = nodes::cluster("sessions-bench-vote", SECRET, 5).await;
        let names = spawn_participants(&five, "voter", 100).await;
        let mut spec = ledger(&five[0], &names);
        if let VarType::Record(fields) = &mut spec.ty {
            let options = ["0.2", "0.7", "1.0"].map(String::from).to_vec();
            fields.insert(
                "winner".into(),
                VarType::Choice(options.into_iter().collect()),
            );
        }
        if let VarValue::Record(fields) = &mut spec.initial {
            fields.insert("winner".into(), VarValue::Choice("0.7".into()));
        }
        declare(&five, "plan", spec).await;
        let vote = Mechanism::Vote {
            question: "temperature".into(),
            candidates: ["0.2", "0.7", "1.0"].map(String::from).to_vec(),
            method: Method::Plurality,
            quorum: 0.5,
        };
        print(
            "vote, 100 voters over 5 nodes",
            measure(&five, ("voter", "plan"), vote, samples).await,
        );
        let contractors = spawn_participants(&five, "contractor", 50).await;
        declare(&five, "jobs", ledger(&five[0], &contractors)).await;
        let contract = Mechanism::ContractNet {
            task: "render".into(),
            max_cost: None,
        };
        print(
            "contract net, 50 contractors over 5 nodes",
            measure(&five, ("contractor", "jobs"), contract, samples).await,
        );
        for node in &five {
            node.abort().await;
        }
    });
    println!("load average after: {}", load());
}
