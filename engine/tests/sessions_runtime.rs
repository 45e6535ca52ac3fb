//! Coordination sessions between agents on three real QUIC nodes on loopback: a sealed-bid
//! auction whose bidders sit on every node commits its winner, price and budget debit to a
//! ledger in one step seen everywhere; late answers and replays of an old session are refused
//! with a reason; a session commits once; a vote commits its winner; and a coordinator left
//! without a majority commits nothing. No timing is asserted: waits have generous deadlines.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::eventually;
use common::ledgers::{declare_everywhere, field};
use foundation_agents::auction::sealed::Pricing;
use foundation_agents::auction::AuctionReason;
use foundation_agents::variable::{Policy, VarType, VarValue};
use foundation_agents::voting::{Ballot, Method};
use foundation_agents::Money;
use foundation_engine::runtime::agents::sessions::{
    Answer, Ask, Commit, CommitState, Coordinator, Decision, Mechanism, Session, SessionAnswer,
    SessionError, SessionMessage, Settled,
};
use foundation_engine::runtime::agents::{
    answer, Agent, AgentEvent, AgentSpec, Context, HandlerError, Message,
};
use foundation_engine::runtime::Node;
use foundation_engine::vars::{SessionId, VarSpec};

const SOON: Duration = Duration::from_secs(20);
const BIDDERS: &str = "gpu-bidder";

async fn cluster(n: usize) -> Vec<Node> {
    common::cluster(n, |seeds| {
        common::settings("sessions-test", "sessions test secret", seeds)
    })
    .await
}

/// How a test bidder behaves.
#[derive(Clone, Copy)]
enum Style {
    /// Bids this, and votes for candidate `choice`.
    Honest { bid: u64, choice: usize },
    /// Answers after the deadline.
    Late,
    /// Answers with the id of an old session.
    Replay,
}

struct Bidder(Style);

impl Agent for Bidder {
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
        let (session, bid, choice) = match self.0 {
            Style::Honest { bid, choice } => (session, bid, choice),
            Style::Late => {
                tokio::time::sleep(Duration::from_millis(within_ms + 100)).await;
                (session, 1_000, 0)
            }
            Style::Replay => (SessionId(session.0.wrapping_sub(1)), 1_000, 0),
        };
        let answer_to = match ask {
            Ask::Bid { .. } => Answer::Bid(Money(bid)),
            Ask::Vote { .. } => Answer::Ballot(Ballot::Choice(choice)),
            _ => Answer::Decline,
        };
        answer(&SessionAnswer {
            session,
            answer: answer_to,
        })
    }
}

fn bidder(name: &str, style: Style) -> AgentSpec {
    AgentSpec::new(name, move || Bidder(style)).capability(BIDDERS)
}

fn choice(names: &[&str]) -> VarType {
    VarType::Choice(names.iter().map(|n| n.to_string()).collect())
}

/// The GPU slot's ledger: holder, price, budget left, deciding session.
fn gpu_ledger(node: &Node, holders: &[&str]) -> VarSpec {
    let int = |min, max| VarType::Int { min, max };
    let ty = VarType::Record(BTreeMap::from([
        ("holder".to_owned(), choice(holders)),
        ("price".to_owned(), int(0, i64::MAX)),
        ("budget".to_owned(), int(0, i64::MAX)),
        ("session".to_owned(), int(0, i64::MAX)),
    ]));
    let initial = VarValue::Record(BTreeMap::from([
        ("holder".to_owned(), VarValue::Choice("nobody".into())),
        ("price".to_owned(), VarValue::Int(0)),
        ("budget".to_owned(), VarValue::Int(100)),
        ("session".to_owned(), VarValue::Int(0)),
    ]));
    VarSpec {
        ty,
        policy: Policy::Coordinated,
        initial,
        acceptors: node.vars().alive_lives(),
    }
}

fn auction(id: u64) -> Session {
    Session {
        id: SessionId(id),
        mechanism: Mechanism::SealedBid {
            item: "gpu-slot".into(),
            pricing: Pricing::SecondPrice,
            reserve: Money(5),
        },
        capability: BIDDERS.into(),
        answer_within: Duration::from_millis(1_500),
        commit: Some(Commit {
            ledger: "gpu".into(),
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auction_across_three_nodes_commits_winner_price_and_debit_once_everywhere() {
    let nodes = cluster(3).await;
    let names = ["nobody", "ann", "bob", "cat", "dan", "eve"];
    declare_everywhere(&nodes, "gpu", gpu_ledger(&nodes[0], &names)).await;
    let honest = |bid, choice| Style::Honest { bid, choice };
    let spawns = [
        (0, bidder("ann", honest(30, 0))),
        (1, bidder("bob", honest(45, 1))),
        (2, bidder("cat", honest(40, 1))),
        (1, bidder("dan", Style::Late)),
        (2, bidder("eve", Style::Replay)),
    ];
    for (node, spec) in spawns {
        nodes[node].agents().spawn(spec).await.unwrap();
    }
    eventually(SOON, "every bidder is visible from node 0", || {
        nodes[0].agents().with_capability(BIDDERS).len() == 5
    })
    .await;

    let mut events = nodes[0].agents().events();
    let report = nodes[0].agents().run(auction(7)).await.unwrap();
    let Decision::Auction(outcome) = &report.decision else {
        panic!("an auction decides an auction: {report:?}");
    };
    let award = outcome.award.clone().expect("sold");
    // bob (on node 1) outbids cat (node 2) and pays her bid; ann is third.
    assert_eq!(award.price, Money(40), "{report:?}");
    assert_eq!(
        outcome.reason,
        AuctionReason::HighestBidPaysSecondPriceOrReserve
    );
    assert_eq!(report.answered, 3, "{report:?}");
    let reasons: BTreeMap<&str, &str> = report
        .rejected
        .iter()
        .map(|(a, r)| (a.as_str(), r.as_str()))
        .collect();
    assert!(reasons["dan"].contains("deadline"), "{reasons:?}");
    assert!(reasons["eve"].contains("session"), "{reasons:?}");
    assert_eq!(report.commit, CommitState::Committed { version: 1 });
    let mut seen = Vec::new();
    while let Ok(event) = events.try_recv() {
        if let AgentEvent::Session { session, what, .. } = event {
            seen.push((session, what));
        }
    }
    assert_eq!(seen.len(), 3, "opened, one round of asks, ended: {seen:?}");
    assert!(seen[1].1.contains("round 1: asked 5"), "{seen:?}");
    assert!(seen[2].1.contains("bob won gpu-slot at 40"), "{seen:?}");
    assert!(seen[2].1.contains("3 of 5 answered, 2 refused"), "{seen:?}");
    let mut metrics = String::new();
    prometheus_client::encoding::text::encode(&mut metrics, nodes[0].registry()).unwrap();
    let committed =
        "foundation_agent_sessions_total{mechanism=\"sealed-bid\",outcome=\"committed\"} 1";
    assert!(metrics.contains(committed), "{metrics}");
    for node in &nodes {
        eventually(SOON, "the outcome shows on every node, whole", || {
            field(node, "gpu", "holder") == Some(VarValue::Choice("bob".into()))
                && field(node, "gpu", "price") == Some(VarValue::Int(40))
                && field(node, "gpu", "budget") == Some(VarValue::Int(60))
        })
        .await;
    }

    // The same session again, from another node: it already committed; nothing new lands.
    let again = nodes[2].agents().run(auction(7)).await.unwrap();
    assert_eq!(again.commit, CommitState::AlreadyCommitted { version: 1 });
    assert_eq!(nodes[0].vars().get("gpu").map(|(v, _)| v), Some(1));

    // A vote among the same agents sets a parameter.
    let plan = VarSpec {
        ty: VarType::Record(BTreeMap::from([
            ("temperature".to_owned(), choice(&["0.2", "0.7"])),
            ("level".to_owned(), VarType::Float { min: 0.0, max: 2.0 }),
            (
                "session".to_owned(),
                VarType::Int {
                    min: 0,
                    max: i64::MAX,
                },
            ),
        ])),
        policy: Policy::Coordinated,
        initial: VarValue::Record(BTreeMap::from([
            ("temperature".to_owned(), VarValue::Choice("0.2".into())),
            ("level".to_owned(), VarValue::Float(0.2)),
            ("session".to_owned(), VarValue::Int(0)),
        ])),
        acceptors: nodes[0].vars().alive_lives(),
    };
    declare_everywhere(&nodes, "plan", plan).await;
    let vote = Session {
        id: SessionId(8),
        mechanism: Mechanism::Vote {
            question: "temperature".into(),
            candidates: vec!["0.2".into(), "0.7".into()],
            method: Method::Plurality,
            quorum: 0.5,
        },
        capability: BIDDERS.into(),
        answer_within: Duration::from_millis(1_500),
        commit: Some(Commit {
            ledger: "plan".into(),
            winner_field: "temperature".into(),
            price_field: None,
            budget_field: None,
            counter: None,
            // The elected candidate also sets the float it stands for.
            elected_writes: ["0.2", "0.7"]
                .map(|label| {
                    let level = VarValue::Float(label.parse().unwrap());
                    (
                        label.to_owned(),
                        BTreeMap::from([("level".to_owned(), level)]),
                    )
                })
                .into(),
            timeout: Duration::from_secs(3),
        }),
        coordinator: Coordinator::Caller,
    };
    let report = nodes[1].agents().run(vote).await.unwrap();
    let Decision::Vote(Ok(elected)) = &report.decision else {
        panic!("the vote decides: {report:?}");
    };
    assert_eq!(elected.label, "0.7", "bob and cat outvote ann");
    assert_eq!(
        elected.absent.len(),
        2,
        "the late and the replaying voter are absent"
    );
    assert_eq!(report.commit, CommitState::Committed { version: 1 });
    for node in &nodes {
        eventually(SOON, "the elected value shows everywhere", || {
            field(node, "plan", "temperature") == Some(VarValue::Choice("0.7".into()))
                && field(node, "plan", "level") == Some(VarValue::Float(0.7))
        })
        .await;
    }
    for node in &nodes {
        node.abort().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_without_a_majority_commits_nothing() {
    let nodes = cluster(3).await;
    let names = ["nobody", "ann"];
    declare_everywhere(&nodes, "gpu", gpu_ledger(&nodes[0], &names)).await;
    let ann = bidder("ann", Style::Honest { bid: 30, choice: 0 });
    nodes[0].agents().spawn(ann).await.unwrap();
    nodes[1].abort().await;
    nodes[2].abort().await;
    let mut session = auction(9);
    if let Some(commit) = session.commit.as_mut() {
        commit.timeout = Duration::from_millis(800);
    }
    let report = nodes[0].agents().run(session).await.unwrap();
    let Decision::Auction(outcome) = &report.decision else {
        panic!("an auction: {report:?}");
    };
    assert!(
        outcome.award.is_some(),
        "ann wins at the reserve: {report:?}"
    );
    assert!(
        matches!(&report.commit, CommitState::NotCommitted(why) if why.contains("majority")),
        "{report:?}"
    );
    let (version, _) = nodes[0].vars().get("gpu").unwrap();
    assert_eq!(version, 0, "nothing of the outcome shows");
    assert_eq!(field(&nodes[0], "gpu", "budget"), Some(VarValue::Int(100)));
    nodes[0].abort().await;
}

/// Bids, and if no notice comes by the deadline plus the commit time, settles the session
/// itself; records every invitation and how it settled.
struct Settler {
    log: Arc<Mutex<Vec<String>>>,
    settled: Arc<Mutex<Vec<Settled>>>,
}

impl Agent for Settler {
    async fn handle(&mut self, ctx: &Context, message: Message) -> Result<Bytes, HandlerError> {
        let invite = message.decode()?;
        let SessionMessage::Invite {
            session,
            within_ms,
            ledger: Some(ledger),
            commit_ms,
            ..
        } = invite
        else {
            self.log.lock().unwrap().push("notice".into());
            return Ok(Bytes::new());
        };
        self.log.lock().unwrap().push("invite".into());
        let (agents, log, settled) = (ctx.agents().clone(), self.log.clone(), self.settled.clone());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(within_ms + commit_ms + 300)).await;
            if !log.lock().unwrap().contains(&"notice".to_owned()) {
                let fate = agents
                    .settle_session(&ledger, session, Duration::from_secs(3))
                    .await;
                settled.lock().unwrap().push(fate);
            }
        });
        // Thinks before bidding, long enough for the coordinator to die meanwhile.
        tokio::time::sleep(Duration::from_millis(within_ms / 2)).await;
        answer(&SessionAnswer {
            session,
            answer: Answer::Bid(Money(50)),
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_coordinator_dies_mid_session_the_participants_settle_it_once() {
    let nodes = cluster(3).await;
    let names = ["nobody", "ann", "bob"];
    declare_everywhere(&nodes, "gpu", gpu_ledger(&nodes[0], &names)).await;
    let log = Arc::new(Mutex::new(Vec::new()));
    let settled = Arc::new(Mutex::new(Vec::new()));
    for (node, name) in [(0, "ann"), (1, "bob")] {
        let (log, settled) = (log.clone(), settled.clone());
        let spec = AgentSpec::new(name, move || Settler {
            log: log.clone(),
            settled: settled.clone(),
        });
        nodes[node]
            .agents()
            .spawn(spec.capability(BIDDERS))
            .await
            .unwrap();
    }
    eventually(SOON, "the bidders are visible from the coordinator", || {
        nodes[2].agents().with_capability(BIDDERS).len() == 2
    })
    .await;
    let coordinator = nodes[2].agents();
    let mut session = auction(11);
    session.answer_within = Duration::from_millis(2_000);
    let run = tokio::spawn(async move { coordinator.run(session).await });
    eventually(SOON, "both bidders are invited", || {
        log.lock()
            .unwrap()
            .iter()
            .filter(|e| *e == "invite")
            .count()
            == 2
    })
    .await;
    // The coordinator crashes mid-session: its task and its node are gone before the deadline.
    run.abort();
    nodes[2].abort().await;
    eventually(SOON, "both participants settle the session", || {
        settled.lock().unwrap().len() == 2
    })
    .await;
    let fates = settled.lock().unwrap().clone();
    let aborted = fates
        .iter()
        .filter(|f| **f == Settled::Aborted { version: 1 })
        .count();
    let learned = fates
        .iter()
        .filter(|f| **f == Settled::Decided { version: 1 })
        .count();
    assert_eq!(
        (aborted, learned),
        (1, 1),
        "one abort, learned by the other: {fates:?}"
    );
    for node in &nodes[..2] {
        eventually(SOON, "the abort shows, and nothing of an award", || {
            node.vars().get("gpu").map(|(v, _)| v) == Some(1)
                && field(node, "gpu", "session") == Some(VarValue::Int(11))
                && field(node, "gpu", "budget") == Some(VarValue::Int(100))
        })
        .await;
    }
    for node in &nodes[..2] {
        node.abort().await;
    }
}

/// The first session id above `after` that node 0 would place on `node`.
fn placed_on(nodes: &[Node], node: usize, after: u64) -> u64 {
    let target = nodes[node].id();
    (after + 1..)
        .find(|id| nodes[0].agents().coordinator_of(SessionId(*id)).id == target)
        .expect("some session id lands on every member")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_placed_by_rendezvous_runs_there_and_is_aborted_once_when_that_node_dies() {
    let nodes = cluster(3).await;
    let names = ["nobody", "ann", "bob", "dan"];
    declare_everywhere(&nodes, "gpu", gpu_ledger(&nodes[0], &names)).await;
    let spawns = [
        (0, bidder("ann", Style::Honest { bid: 30, choice: 0 })),
        (1, bidder("bob", Style::Honest { bid: 45, choice: 0 })),
        (0, bidder("dan", Style::Late)),
    ];
    for (node, spec) in spawns {
        nodes[node].agents().spawn(spec).await.unwrap();
    }
    eventually(SOON, "every bidder is visible from node 0", || {
        nodes[0].agents().with_capability(BIDDERS).len() == 3
    })
    .await;

    // Placed on node 1 by the session id: node 1 coordinates, node 0 gets the report.
    let first = placed_on(&nodes, 1, 0);
    let mut on_coordinator = nodes[1].agents().events();
    let mut session = auction(first);
    session.coordinator = Coordinator::Rendezvous;
    let report = nodes[0].agents().run(session).await.unwrap();
    assert_eq!(report.commit, CommitState::Committed { version: 1 });
    let Decision::Auction(outcome) = &report.decision else {
        panic!("an auction: {report:?}");
    };
    assert_eq!(outcome.award.as_ref().map(|a| a.price), Some(Money(30)));
    let mut coordinated = false;
    while let Ok(event) = on_coordinator.try_recv() {
        coordinated |= matches!(event, AgentEvent::Session { session, .. } if session.0 == first);
    }
    assert!(coordinated, "node 1 ran the session");

    // Placed on node 2, which dies mid-session (dan keeps it open past the deadline).
    let second = placed_on(&nodes, 2, first);
    let mut on_doomed = nodes[2].agents().events();
    let mut session = auction(second);
    session.coordinator = Coordinator::Rendezvous;
    session.answer_within = Duration::from_millis(3_000);
    let caller = nodes[0].agents();
    let run = tokio::spawn(async move { caller.run(session).await });
    loop {
        let event = tokio::time::timeout(SOON, on_doomed.recv()).await;
        if let Ok(Ok(AgentEvent::Session { what, .. })) = event {
            if what.starts_with("round") {
                break;
            }
        }
    }
    nodes[2].abort().await;
    let lost = tokio::time::timeout(SOON, run).await.unwrap().unwrap();
    match lost {
        Err(SessionError::CoordinatorLost {
            settled: Some(Settled::Aborted { version: 2 }),
            ..
        }) => {}
        other => panic!("aborted as version 2 by the caller: {other:?}"),
    }
    for node in &nodes[..2] {
        eventually(SOON, "the abort shows, and nothing of an award", || {
            node.vars().get("gpu").map(|(v, _)| v) == Some(2)
                && field(node, "gpu", "session") == Some(VarValue::Int(second as i64))
                && field(node, "gpu", "budget") == Some(VarValue::Int(70))
        })
        .await;
    }
    for node in &nodes[..2] {
        node.abort().await;
    }
}

/// A session its mechanism refuses as it opens (here a vote's quorum above 1) ends in the
/// session log as refused, with the reason; it once stayed `running` there for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_refused_as_it_opens_shows_refused_with_its_reason() {
    let nodes = cluster(1).await;
    let agents = nodes[0].agents();
    let honest = Style::Honest { bid: 10, choice: 0 };
    agents.spawn(bidder("ann", honest)).await.unwrap();
    let mut session = auction(11);
    session.commit = None;
    session.mechanism = Mechanism::Vote {
        question: "temperature".into(),
        candidates: vec!["0.2".into(), "0.7".into()],
        method: Method::Plurality,
        quorum: 2.0,
    };
    let refused = agents.run(session).await;
    assert!(
        matches!(&refused, Err(SessionError::Config(why)) if why.contains("quorum")),
        "{refused:?}"
    );
    let rows = agents.sessions();
    let row = rows.iter().find(|r| r.session == 11).expect("logged");
    assert_eq!(row.state, "refused", "{row:?}");
    let why = row.outcome.as_deref().unwrap_or_default();
    assert!(why.contains("quorum"), "{row:?}");
    assert!(row.duration_ms.is_some(), "{row:?}");
    nodes[0].abort().await;
}

/// A caller that stops waiting on a session drops it: its row ends `abandoned` rather than
/// showing `running` for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_its_caller_gave_up_on_shows_abandoned() {
    let nodes = cluster(1).await;
    let agents = nodes[0].agents();
    agents.spawn(bidder("slow", Style::Late)).await.unwrap();
    let mut session = auction(12);
    session.commit = None;
    session.answer_within = Duration::from_secs(60);
    let gave_up = tokio::time::timeout(Duration::from_millis(300), agents.run(session)).await;
    assert!(gave_up.is_err(), "the late bidder answers after a minute");
    let rows = agents.sessions();
    let row = rows.iter().find(|r| r.session == 12).expect("logged");
    assert_eq!(row.state, "abandoned", "{row:?}");
    nodes[0].abort().await;
}

/// Sessions of one coordinator that decide at the same moment commit to their ledger one after
/// another: a commit waits for this node's write under way on the ledger instead of being
/// refused by it. Only the ledger's own rule (a later session committed first) may turn one
/// away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_deciding_together_on_one_coordinator_all_reach_the_ledger() {
    let nodes = cluster(3).await;
    declare_everywhere(
        &nodes,
        "gpu",
        gpu_ledger(&nodes[0], &["nobody", "ann", "bob"]),
    )
    .await;
    let honest = |bid, choice| Style::Honest { bid, choice };
    nodes[1]
        .agents()
        .spawn(bidder("ann", honest(30, 0)))
        .await
        .unwrap();
    nodes[2]
        .agents()
        .spawn(bidder("bob", honest(45, 1)))
        .await
        .unwrap();
    eventually(SOON, "both bidders are visible from node 0", || {
        nodes[0].agents().with_capability(BIDDERS).len() == 2
    })
    .await;
    let mut running = tokio::task::JoinSet::new();
    for id in 20..26 {
        let mut session = auction(id);
        if let Some(commit) = session.commit.as_mut() {
            // No budget to run out: every outcome could land.
            commit.price_field = None;
            commit.budget_field = None;
        }
        let agents = nodes[0].agents();
        running.spawn(async move { agents.run(session).await });
    }
    let mut committed = 0;
    while let Some(report) = running.join_next().await {
        let report = report.unwrap().unwrap();
        match &report.commit {
            CommitState::Committed { .. } => committed += 1,
            CommitState::NotCommitted(why) if why.contains("later session") => {}
            other => panic!("session {:?} ended {other:?}", report.session),
        }
    }
    assert!(committed >= 1, "at least the last session to commit lands");
    for node in &nodes {
        node.abort().await;
    }
}

/// Durations nobody means to wait out (`Duration::MAX` to answer and to commit, a session
/// placed on another node, whose caller waits for rounds of it) are the caller's to give: the
/// session runs as any other. Each deadline computed from them once overflowed the clock and
/// panicked — the caller's wait for its placed coordinator, and the coordinator's commit, on
/// the node that took the session from the network.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_with_durations_nobody_waits_out_is_placed_and_commits() {
    let nodes = cluster(2).await;
    declare_everywhere(
        &nodes,
        "gpu",
        gpu_ledger(&nodes[0], &["nobody", "ann", "bob"]),
    )
    .await;
    let spawns = [
        (0, bidder("ann", Style::Honest { bid: 30, choice: 0 })),
        (1, bidder("bob", Style::Honest { bid: 45, choice: 0 })),
    ];
    for (node, spec) in spawns {
        nodes[node].agents().spawn(spec).await.unwrap();
    }
    eventually(SOON, "every bidder is visible from node 0", || {
        nodes[0].agents().with_capability(BIDDERS).len() == 2
    })
    .await;
    let mut session = auction(placed_on(&nodes, 1, 0));
    session.coordinator = Coordinator::Rendezvous;
    session.answer_within = Duration::MAX;
    if let Some(commit) = &mut session.commit {
        commit.timeout = Duration::MAX;
    }
    let report = tokio::time::timeout(SOON, nodes[0].agents().run(session))
        .await
        .expect("everyone answered: the session ends at once")
        .unwrap();
    assert_eq!(report.commit, CommitState::Committed { version: 1 });
    for node in &nodes {
        node.abort().await;
    }
}

/// Bids too large for the ledger's price field win the auction, and the commit the caller
/// asked for is refused with its reason: the session does not say nothing was asked of the
/// ledger (it once reported `NotRequested`, "decided", as if no ledger were named).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_price_the_ledger_cannot_hold_is_not_committed_and_says_why() {
    let nodes = cluster(1).await;
    declare_everywhere(
        &nodes,
        "gpu",
        gpu_ledger(&nodes[0], &["nobody", "ann", "bob"]),
    )
    .await;
    let bids = [("ann", u64::MAX), ("bob", u64::MAX - 1)];
    for (name, bid) in bids {
        let spec = bidder(name, Style::Honest { bid, choice: 0 });
        nodes[0].agents().spawn(spec).await.unwrap();
    }
    let report = nodes[0].agents().run(auction(1)).await.unwrap();
    let Decision::Auction(outcome) = &report.decision else {
        panic!("an auction: {report:?}");
    };
    assert_eq!(
        outcome.award.as_ref().map(|a| a.price),
        Some(Money(u64::MAX - 1))
    );
    match &report.commit {
        CommitState::NotCommitted(why) => assert!(why.contains("price"), "{why}"),
        other => panic!("refused with its reason: {other:?}"),
    }
    assert_eq!(nodes[0].vars().get("gpu").map(|(v, _)| v), Some(0));
    nodes[0].abort().await;
}
