//! A DSPEx-style distributed optimization: evaluator agents on three nodes search the
//! configuration of a parameterized program; evaluation slots are sold by auction from a
//! shared budget, and the best configuration is chosen by a vote of the evaluators and
//! committed to the cluster's variables. Halfway through, one evaluator node crashes; the
//! search goes on without it.
//!
//! **The program** is a simulated-annealing tour improver for small travelling-salesman
//! instances, with three parameters: a `temperature` in 0.0..=2.0, a move `strategy` (swap,
//! insert, 2-opt) and an integer `budget` of iterations. **The objective** ships here and is
//! deterministic: the mean ratio of the improved tour's length to the nearest-neighbour
//! tour's over six fixed training instances (lower is better). Each evaluator also holds three
//! validation instances of its own, which it ranks the finalists by when it votes.
//!
//! **Every decision is a coordination session between agents on different nodes**, placed on
//! a coordinator by rendezvous hashing of its id:
//! - each evaluation is a sealed-bid (second-price) auction for a slot: evaluators bid what
//!   the slot is worth to them (faster ones more); the winner's price is debited from the
//!   shared `eval.credits` ledger in the same majority-decided step that records the winner,
//!   and the search stops when the credits cannot pay;
//! - after each round, the evaluators vote (Borda) among the three best configurations, and
//!   the elected one is committed to `program.config` — its temperature, strategy and budget
//!   together.
//!
//! Four real nodes in this process talk QUIC on 127.0.0.1 and find each other through a local
//! discovery directory of their own. While it runs, `foundation agents sessions --node ADDR`
//! (the address is printed) lists the sessions the optimizer node coordinated.
//!
//! Run: `cargo run --release --example distributed_optimization`

mod common;

use common::{cluster, wait_until, Error, PATIENCE};

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use foundation::agents::auction::sealed::Pricing;
use foundation::agents::variable::{Policy, VarType, VarValue};
use foundation::agents::voting::{Ballot, Method};
use foundation::agents::Money;
use foundation::engine::runtime::agents::sessions::{
    Answer, Ask, Commit, CommitState, Coordinator, Decision, Mechanism, Session, SessionAnswer,
    SessionError, SessionMessage, SessionReport,
};
use foundation::engine::runtime::agents::{
    answer, Agent, AgentSpec, Context, HandlerError, Message,
};
use foundation::engine::vars::{SessionId, VarSpec};
use foundation::Node;
use serde::{Deserialize, Serialize};

const EVALUATORS: &str = "evaluator";
/// Credits the whole search may spend on evaluation slots.
const CREDITS: i64 = 1_500;
const ROUNDS: usize = 4;
const PER_ROUND: usize = 4;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let dir = std::env::temp_dir().join(format!("foundation-optimize-{}", std::process::id()));
    let result = run(&dir).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn run(dir: &Path) -> Result<(), Error> {
    let started = Instant::now();
    let names = ["optimizer", "eval-a", "eval-b", "eval-c"];
    let mut evaluators = cluster(dir, "optimize", &names).await?;
    let optimizer = evaluators.remove(0);
    let workers = spawn_workers(&evaluators).await?;
    wait_until("every evaluator is visible from the optimizer", || {
        optimizer.agents().with_capability(EVALUATORS).len() == workers.len()
    })
    .await?;
    declare_ledgers(&optimizer, &evaluators, &workers).await?;

    let mut search = Search::new(&optimizer);
    for round in 1..=ROUNDS {
        println!("\n== round {round}");
        let candidates = search.next_candidates();
        if candidates.is_empty() {
            break;
        }
        let affordable = search.evaluate(&candidates).await;
        search.elect().await;
        if !affordable {
            println!("   the credits cannot pay another slot: the search ends");
            break;
        }
        if round == 2 {
            println!("   !! crashing node eval-c (evaluators c1, c2) without a word");
            evaluators[2].abort().await;
        }
    }
    report(&search, &optimizer, &evaluators[0]).await;
    println!("   the run took {:.1} s", started.elapsed().as_secs_f64());
    for node in [&optimizer, &evaluators[0], &evaluators[1]] {
        node.leave().await;
    }
    Ok(())
}

// ---- the program being tuned, and its objective ----

/// One configuration of the program.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
struct Config {
    /// Index into [`TEMPERATURES`].
    t: usize,
    /// Index into [`STRATEGIES`].
    s: usize,
    /// Index into [`BUDGETS`].
    b: usize,
}

const TEMPERATURES: [f64; 6] = [0.0, 0.1, 0.3, 0.6, 1.0, 2.0];
const STRATEGIES: [&str; 3] = ["swap", "insert", "two-opt"];
const BUDGETS: [i64; 3] = [1_000, 4_000, 12_000];

impl Config {
    fn all() -> Vec<Config> {
        let mut all = Vec::new();
        for t in 0..TEMPERATURES.len() {
            for s in 0..STRATEGIES.len() {
                for b in 0..BUDGETS.len() {
                    all.push(Config { t, s, b });
                }
            }
        }
        all
    }

    fn label(self) -> String {
        format!(
            "t{:.1}-{}-b{}",
            TEMPERATURES[self.t], STRATEGIES[self.s], BUDGETS[self.b]
        )
    }

    fn from_label(label: &str) -> Option<Config> {
        Config::all().into_iter().find(|c| c.label() == label)
    }

    /// The configurations one step away on one parameter.
    fn neighbours(self) -> Vec<Config> {
        let step = |i: usize, len: usize| [i.checked_sub(1), (i + 1 < len).then_some(i + 1)];
        let mut near = Vec::new();
        near.extend(
            step(self.t, TEMPERATURES.len())
                .into_iter()
                .flatten()
                .map(|t| Config { t, ..self }),
        );
        near.extend(
            (0..STRATEGIES.len())
                .filter(|&s| s != self.s)
                .map(|s| Config { s, ..self }),
        );
        near.extend(
            step(self.b, BUDGETS.len())
                .into_iter()
                .flatten()
                .map(|b| Config { b, ..self }),
        );
        near
    }

    /// The ledger fields this configuration sets.
    fn fields(self) -> BTreeMap<String, VarValue> {
        BTreeMap::from([
            ("temperature".into(), VarValue::Float(TEMPERATURES[self.t])),
            (
                "strategy".into(),
                VarValue::Choice(STRATEGIES[self.s].into()),
            ),
            ("budget".into(), VarValue::Int(BUDGETS[self.b])),
        ])
    }
}

/// xorshift64*: a small deterministic generator, so every run computes the same scores.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const CITIES: usize = 40;

fn instance(seed: u64) -> Vec<(f64, f64)> {
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    (0..CITIES).map(|_| (rng.unit(), rng.unit())).collect()
}

fn length(cities: &[(f64, f64)], tour: &[usize]) -> f64 {
    let leg = |a: usize, b: usize| {
        let (p, q) = (cities[a], cities[b]);
        ((p.0 - q.0).powi(2) + (p.1 - q.1).powi(2)).sqrt()
    };
    (0..tour.len())
        .map(|i| leg(tour[i], tour[(i + 1) % tour.len()]))
        .sum()
}

fn nearest_neighbour(cities: &[(f64, f64)]) -> Vec<usize> {
    let mut tour = vec![0];
    let mut left: BTreeSet<usize> = (1..cities.len()).collect();
    while let Some(&last) = tour.last() {
        let distance = |c: &usize| length(cities, &[last, *c]);
        let Some(next) = left
            .iter()
            .copied()
            .min_by(|a, b| distance(a).total_cmp(&distance(b)))
        else {
            break;
        };
        left.remove(&next);
        tour.push(next);
    }
    tour
}

/// Runs the program with `config` on one instance: simulated annealing from the
/// nearest-neighbour tour, cooling linearly; returns best length / nearest-neighbour length.
fn improve(config: Config, cities: &[(f64, f64)], seed: u64) -> f64 {
    let mut tour = nearest_neighbour(cities);
    let start = length(cities, &tour);
    let (mut current, mut best) = (start, start);
    let mut rng = Rng(seed ^ 0xdead_beef);
    let budget = BUDGETS[config.b];
    let scale = TEMPERATURES[config.t] * start / CITIES as f64 * 0.2;
    for step in 0..budget {
        let temperature = scale * (1.0 - step as f64 / budget as f64);
        let mut next = tour.clone();
        let (i, j) = (rng.below(CITIES), rng.below(CITIES));
        let (lo, hi) = (i.min(j), i.max(j));
        match STRATEGIES[config.s] {
            "swap" => next.swap(i, j),
            "insert" => {
                let city = next.remove(i);
                next.insert(j, city);
            }
            _ => next[lo..=hi].reverse(),
        }
        let candidate = length(cities, &next);
        let delta = candidate - current;
        let accept =
            delta <= 0.0 || (temperature > 0.0 && rng.unit() < (-delta / temperature).exp());
        if accept {
            tour = next;
            current = candidate;
            best = best.min(current);
        }
    }
    best / start
}

/// Mean ratio over the instances `seeds` (lower is better).
fn objective(config: Config, seeds: impl Iterator<Item = u64>) -> f64 {
    let ratios: Vec<f64> = seeds.map(|s| improve(config, &instance(s), s)).collect();
    ratios.iter().sum::<f64>() / ratios.len().max(1) as f64
}

fn training_score(config: Config) -> f64 {
    objective(config, 1..=6)
}

// ---- the agents ----

/// An evaluator's bidding and voting side (capability `evaluator`).
struct Evaluator {
    /// How much an evaluation slot is worth to it per 100 iterations when idle (its speed).
    worth: u64,
    /// Jobs its runner has done: each one it already carries lowers what another slot is
    /// worth to it, so slots spread over the evaluators.
    jobs: Arc<AtomicU64>,
    /// Its own validation instances.
    validation: Vec<u64>,
}

impl Agent for Evaluator {
    async fn handle(&mut self, _: &Context, message: Message) -> Result<Bytes, HandlerError> {
        let SessionMessage::Invite { session, ask, .. } = message.decode()? else {
            return Ok(Bytes::new()); // How a session ended: nothing to answer.
        };
        let reply = match ask {
            Ask::Bid { reserve, .. } => {
                let busy = self.jobs.load(Ordering::Relaxed);
                Answer::Bid(Money(reserve.0 * 2 * self.worth / (10 + 2 * busy)))
            }
            Ask::Vote { candidates, .. } => Answer::Ballot(self.rank(&candidates)),
            _ => Answer::Decline,
        };
        answer(&SessionAnswer {
            session,
            answer: reply,
        })
    }
}

impl Evaluator {
    /// The finalists, best first by this evaluator's own validation instances.
    fn rank(&self, candidates: &[String]) -> Ballot {
        let mut scored: Vec<(f64, usize)> = candidates
            .iter()
            .enumerate()
            .filter_map(|(i, label)| Config::from_label(label).map(|c| (i, c)))
            .map(|(i, c)| (objective(c, self.validation.iter().copied()), i))
            .collect();
        scored.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        Ballot::Ranking(scored.into_iter().map(|(_, i)| i).collect())
    }
}

/// An evaluation job for a slot's winner.
#[derive(Serialize, Deserialize)]
struct Evaluate(Config);

/// The runner that evaluates configurations on the training instances (`NAME.run`).
struct Runner {
    jobs: Arc<AtomicU64>,
}

impl Agent for Runner {
    async fn handle(&mut self, _: &Context, message: Message) -> Result<Bytes, HandlerError> {
        let Evaluate(config) = message.decode()?;
        self.jobs.fetch_add(1, Ordering::Relaxed);
        answer(&training_score(config))
    }
}

/// Two evaluators per evaluator node, each with a runner.
async fn spawn_workers(nodes: &[Node]) -> Result<Vec<String>, Error> {
    let mut names = Vec::new();
    for (n, node) in nodes.iter().enumerate() {
        for k in 0..2u64 {
            let name = format!("{}{}", ["a", "b", "c"][n], k + 1);
            let index = n as u64 * 2 + k;
            let validation: Vec<u64> = (0..3).map(|v| 100 + index * 3 + v).collect();
            let worth = 10 + (index * 7) % 9; // 10..=18: some evaluators are faster.
            let jobs = Arc::new(AtomicU64::new(0));
            let counted = jobs.clone();
            let evaluator = move || Evaluator {
                worth,
                jobs: counted.clone(),
                validation: validation.clone(),
            };
            node.agents()
                .spawn(AgentSpec::new(&name, evaluator).capability(EVALUATORS))
                .await?;
            let runner = move || Runner { jobs: jobs.clone() };
            node.agents()
                .spawn(AgentSpec::new(format!("{name}.run"), runner))
                .await?;
            println!(
                "   evaluator {name} on {} (bids {}/10 of the reserve when idle)",
                node_name(n),
                worth * 2
            );
            names.push(name);
        }
    }
    Ok(names)
}

fn node_name(n: usize) -> &'static str {
    ["eval-a", "eval-b", "eval-c"][n]
}

// ---- the ledgers ----

async fn declare_ledgers(
    optimizer: &Node,
    evaluators: &[Node],
    workers: &[String],
) -> Result<(), Error> {
    let int = |min, max| VarType::Int { min, max };
    let mut slot_holders: BTreeSet<String> = workers.iter().cloned().collect();
    slot_holders.insert("nobody".into());
    let credits = VarSpec {
        ty: VarType::Record(BTreeMap::from([
            ("slot".into(), VarType::Choice(slot_holders)),
            ("price".into(), int(0, i64::MAX)),
            ("credits".into(), int(0, i64::MAX)),
            ("session".into(), int(0, i64::MAX)),
        ])),
        policy: Policy::Coordinated,
        initial: VarValue::Record(BTreeMap::from([
            ("slot".into(), VarValue::Choice("nobody".into())),
            ("price".into(), VarValue::Int(0)),
            ("credits".into(), VarValue::Int(CREDITS)),
            ("session".into(), VarValue::Int(0)),
        ])),
        acceptors: optimizer.vars().alive_lives(),
    };
    let mut labels: BTreeSet<String> = Config::all().into_iter().map(Config::label).collect();
    labels.insert("none".into());
    let default = Config { t: 0, s: 0, b: 0 };
    let mut initial = default.fields();
    initial.insert("candidate".into(), VarValue::Choice("none".into()));
    initial.insert("session".into(), VarValue::Int(0));
    let config = VarSpec {
        ty: VarType::Record(BTreeMap::from([
            ("candidate".into(), VarType::Choice(labels)),
            ("temperature".into(), VarType::Float { min: 0.0, max: 2.0 }),
            (
                "strategy".into(),
                VarType::Choice(STRATEGIES.map(String::from).into()),
            ),
            ("budget".into(), int(100, 20_000)),
            ("session".into(), int(0, i64::MAX)),
        ])),
        policy: Policy::Coordinated,
        initial: VarValue::Record(initial),
        acceptors: optimizer.vars().alive_lives(),
    };
    optimizer.vars().declare("eval.credits", credits).await?;
    optimizer.vars().declare("program.config", config).await?;
    wait_until("both ledgers are declared on every node", || {
        evaluators.iter().all(|n| {
            n.vars().get("eval.credits").is_some() && n.vars().get("program.config").is_some()
        })
    })
    .await
}

// ---- the search ----

struct Search {
    node: Node,
    next_session: u64,
    scores: BTreeMap<String, (Config, f64)>,
    rng: Rng,
    elected: Option<String>,
}

impl Search {
    fn new(node: &Node) -> Self {
        Search {
            node: node.clone(),
            next_session: 1,
            scores: BTreeMap::new(),
            rng: Rng(2024),
            elected: None,
        }
    }

    fn session(&mut self, mechanism: Mechanism, commit: Commit, within: Duration) -> Session {
        let id = SessionId(self.next_session);
        self.next_session += 1;
        Session {
            id,
            mechanism,
            capability: EVALUATORS.into(),
            answer_within: within,
            commit: Some(commit),
            coordinator: Coordinator::Rendezvous,
        }
    }

    /// Random configurations first, then neighbours of the best so far not yet evaluated.
    fn next_candidates(&mut self) -> Vec<Config> {
        let all = Config::all();
        let fresh = |c: &Config, picked: &[Config]| {
            !self.scores.contains_key(&c.label()) && !picked.contains(c)
        };
        let mut picked = Vec::new();
        if let Some((best, _)) = self.best().first().map(|(_, v)| *v) {
            for near in best.neighbours() {
                if picked.len() < PER_ROUND && fresh(&near, &picked) {
                    picked.push(near);
                }
            }
        }
        while picked.len() < PER_ROUND {
            let c = all[self.rng.below(all.len())];
            if fresh(&c, &picked) {
                picked.push(c);
            }
        }
        picked
    }

    fn best(&self) -> Vec<(String, (Config, f64))> {
        let mut ranked: Vec<_> = self.scores.iter().map(|(k, v)| (k.clone(), *v)).collect();
        ranked.sort_by(|a, b| a.1 .1.total_cmp(&b.1 .1).then(a.0.cmp(&b.0)));
        ranked
    }

    /// Auctions a slot for each candidate and has the winner evaluate it; false once the
    /// credits cannot pay for a slot.
    async fn evaluate(&mut self, candidates: &[Config]) -> bool {
        for &config in candidates {
            for _attempt in 0..5 {
                let (report, coordinator) = match self.auction_slot(config).await {
                    Ok(found) => found,
                    Err(retry) => {
                        println!("   slot for {}: {retry}; trying again", config.label());
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        continue;
                    }
                };
                let Some((winner, price)) = award(&report) else {
                    println!("   slot for {}: no bid reached the reserve", config.label());
                    break;
                };
                match &report.commit {
                    CommitState::Committed { .. } => {}
                    CommitState::NotCommitted(why) if why.contains("credits") => return false,
                    other => {
                        println!(
                            "   slot for {}: not committed ({other:?}); again",
                            config.label()
                        );
                        continue;
                    }
                }
                let (agents, runner) = (self.node.agents(), format!("{winner}.run"));
                match agents
                    .request::<_, f64>(&runner, &Evaluate(config), PATIENCE)
                    .await
                {
                    Ok(score) => {
                        println!(
                            "   {:<24} slot won by {winner} for {price:>3} credits (auction on {coordinator}; {} of {} bid): score {score:.4}",
                            config.label(),
                            report.answered,
                            report.participants.len()
                        );
                        self.scores.insert(config.label(), (config, score));
                        break;
                    }
                    Err(e) => println!(
                        "   {winner} could not evaluate {} ({e}); the slot is auctioned again",
                        config.label()
                    ),
                }
            }
        }
        true
    }

    /// One slot auction; Err says why to try again (its coordinator was lost).
    async fn auction_slot(&mut self, config: Config) -> Result<(SessionReport, String), String> {
        let reserve = Money(BUDGETS[config.b] as u64 / 100);
        let mechanism = Mechanism::SealedBid {
            item: format!("slot:{}", config.label()),
            pricing: Pricing::SecondPrice,
            reserve,
        };
        let commit = Commit {
            ledger: "eval.credits".into(),
            winner_field: "slot".into(),
            price_field: Some("price".into()),
            budget_field: Some("credits".into()),
            counter: None,
            elected_writes: BTreeMap::new(),
            timeout: Duration::from_secs(5),
        };
        let session = self.session(mechanism, commit, Duration::from_secs(2));
        let coordinator = self.coordinator_name(session.id);
        match self.node.agents().run(session).await {
            Ok(report) => Ok((report, coordinator)),
            Err(e @ (SessionError::CoordinatorLost { .. } | SessionError::Remote { .. })) => {
                Err(e.to_string())
            }
            Err(e) => Err(format!("could not run: {e}")),
        }
    }

    fn coordinator_name(&self, session: SessionId) -> String {
        let at = self.node.agents().coordinator_of(session);
        if at.id == self.node.id() {
            "the optimizer".into()
        } else {
            format!("node {}", at.id.short())
        }
    }

    /// The evaluators vote among the three best configurations; the elected one is committed.
    async fn elect(&mut self) {
        let finalists: Vec<(String, (Config, f64))> = self.best().into_iter().take(3).collect();
        if finalists.is_empty() {
            return;
        }
        let labels: Vec<String> = finalists.iter().map(|(l, _)| l.clone()).collect();
        let commit = Commit {
            ledger: "program.config".into(),
            winner_field: "candidate".into(),
            price_field: None,
            budget_field: None,
            counter: None,
            elected_writes: finalists
                .iter()
                .map(|(l, (c, _))| (l.clone(), c.fields()))
                .collect(),
            timeout: Duration::from_secs(5),
        };
        let mechanism = Mechanism::Vote {
            question: "program.config".into(),
            candidates: labels.clone(),
            method: Method::Borda,
            quorum: 0.5,
        };
        for _ in 0..5 {
            let session = self.session(mechanism.clone(), commit.clone(), Duration::from_secs(5));
            match self.node.agents().run(session).await {
                Ok(SessionReport {
                    decision: Decision::Vote(Ok(vote)),
                    commit,
                    answered,
                    participants,
                    ..
                }) => {
                    println!(
                        "   vote among {labels:?}: {answered} of {} evaluators voted; elected {} ({commit:?})",
                        participants.len(),
                        vote.label
                    );
                    self.elected = Some(vote.label);
                    return;
                }
                Ok(report) => {
                    println!("   the vote did not decide: {:?}", report.decision);
                    return;
                }
                Err(e) => println!("   the vote could not finish ({e}); again"),
            }
        }
    }
}

fn award(report: &SessionReport) -> Option<(String, u64)> {
    let Decision::Auction(outcome) = &report.decision else {
        return None;
    };
    let award = outcome.award.as_ref()?;
    let winner = report.participants.get(award.winner.0 as usize)?;
    Some((winner.clone(), award.price.0))
}

async fn report(search: &Search, optimizer: &Node, survivor: &Node) {
    println!("\n== result");
    for (label, (_, score)) in search.best().iter().take(5) {
        println!("   {label:<24} training score {score:.4}");
    }
    let committed = survivor.vars().get("program.config");
    let credits = survivor.vars().get("eval.credits");
    if let Some((version, VarValue::Record(fields))) = committed {
        let show = |f: &str| fields.get(f).map_or("?".into(), |v| format!("{v:?}"));
        println!(
            "   committed program.config (version {version}, read on eval-a): candidate {}, temperature {}, strategy {}, budget {}",
            show("candidate"),
            show("temperature"),
            show("strategy"),
            show("budget")
        );
    }
    if let Some((version, VarValue::Record(fields))) = credits {
        println!(
            "   eval.credits at version {version} (paid slots and aborted sessions): {:?} of {CREDITS} left",
            fields.get("credits")
        );
    }
    println!(
        "   sessions coordinated by the optimizer node: {} (the others by the evaluator nodes, placed by rendezvous hashing)",
        optimizer.agents().sessions().len()
    );
}

// ---- nodes ----
