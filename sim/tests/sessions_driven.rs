//! Coordination sessions driven in the simulator: sealed-bid auctions, votes and tatonnements
//! (reported, not committed), each run by
//! the core's session driver between simulated agents on five nodes (`foundation_sim::sessions`),
//! coordinated by the caller or placed by rendezvous, their outcomes committed to two ledgers,
//! over a lossy network, while a partition cuts nodes 0 and 1 (coordinators among them) off,
//! heals, and node 4 crashes with sessions in flight. Checked over many seeds
//! (`foundation_sim::invariants::sessions`): one outcome per session, a committed allocation
//! within its budget, the committed outcome equal to the same machine's on one node for the
//! acknowledged answers, no convergence claimed over a silent participant, and nothing
//! committed on the minority side. `can_fail` plants the bug
//! each check is for and shows it fails.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use foundation_agents::auction::sealed::Pricing;
use foundation_agents::market::tatonnement::TatonnementOutcome;
use foundation_agents::variable::{VarType, VarValue};
use foundation_agents::voting::Method;
use foundation_agents::Money;
use foundation_core::agents::sessions::{Commit, CommitState, Decision, Mechanism, Settled};
use foundation_core::vars::{Life, SessionId, VarSpec};
use foundation_sim::agents::AgentGroup;
use foundation_sim::faults::{Fault, Nodes};
use foundation_sim::invariants::sessions::{
    matches_machine, no_minority_commit, one_outcome_per_session, silence_is_not_convergence,
    within_budget, Ledger, Minority,
};
use foundation_sim::network::LinkModel;
use foundation_sim::sessions::{ledger_spec, SessionPlan, SessionRecord, Sessions};
use foundation_sim::world::{World, WorldConfig};

const NODES: usize = 5;
const AGENTS_PER_NODE: usize = 2;
const GPU: &str = "gpu";
const MODE: &str = "mode";
const BUDGET: i64 = 3_000;
const CANDIDATES: [&str; 3] = ["fast", "balanced", "careful"];
const NOBODY: &str = "nobody";

fn secs(s: u64) -> u64 {
    s * 1_000_000
}

/// Every agent name the bidder groups give.
fn bidders() -> BTreeSet<String> {
    let group = AgentGroup::new(Nodes::All, "bidder", AGENTS_PER_NODE);
    let names = (0..NODES).flat_map(|s| (0..AGENTS_PER_NODE).map(move |i| (s, i)));
    names.map(|(s, i)| group.agent_name(s, i)).collect()
}

fn record(fields: &[(&str, VarType, VarValue)], acceptors: BTreeSet<Life>) -> VarSpec {
    ledger_spec(fields.iter().cloned(), acceptors)
}

/// The auctions' ledger: the slot's holder, the price paid, the budget it came from.
fn gpu_spec(acceptors: BTreeSet<Life>) -> VarSpec {
    let mut holders = bidders();
    holders.insert(NOBODY.to_owned());
    let int = |min| VarType::Int { min, max: i64::MAX };
    let fields = [
        (
            "holder",
            VarType::Choice(holders),
            VarValue::Choice(NOBODY.into()),
        ),
        ("price", int(0), VarValue::Int(0)),
        ("budget", int(0), VarValue::Int(BUDGET)),
    ];
    record(&fields, acceptors)
}

/// The votes' ledger: the mode elected.
fn mode_spec(acceptors: BTreeSet<Life>) -> VarSpec {
    let mut modes: BTreeSet<String> = CANDIDATES.iter().map(|c| (*c).to_owned()).collect();
    modes.insert(NOBODY.to_owned());
    let fields = [(
        "mode",
        VarType::Choice(modes),
        VarValue::Choice(NOBODY.into()),
    )];
    record(&fields, acceptors)
}

fn commit(ledger: &str, winner: &str, auction: bool) -> Commit {
    Commit {
        ledger: ledger.to_owned(),
        winner_field: winner.to_owned(),
        price_field: auction.then(|| "price".to_owned()),
        budget_field: auction.then(|| "budget".to_owned()),
        counter: None,
        elected_writes: BTreeMap::new(),
        timeout: Duration::from_secs(1),
    }
}

/// A tatonnement among the traders; its prices are reported, not committed.
fn tatonnement() -> Mechanism {
    Mechanism::Tatonnement {
        market: "spot".into(),
        supply: vec![15.0, 15.0],
        step: 0.5,
        tolerance: 1e-2,
        rounds_max: 40,
    }
}

/// Session `id`: a sealed-bid auction of the GPU slot, a vote on the mode, or a tatonnement,
/// in turn.
fn plan(world: &mut World, id: u64, caller: usize) -> SessionPlan {
    let (mechanism, capability, commit) = if id.is_multiple_of(3) {
        (tatonnement(), "trader", None)
    } else if id % 3 == 1 {
        let pricing = if id % 2 == 1 {
            Pricing::SecondPrice
        } else {
            Pricing::FirstPrice
        };
        let mechanism = Mechanism::SealedBid {
            item: "gpu-slot".into(),
            pricing,
            reserve: Money(20),
        };
        (mechanism, "bidder", Some(commit(GPU, "holder", true)))
    } else {
        let mechanism = Mechanism::Vote {
            question: "mode".into(),
            candidates: CANDIDATES.iter().map(|c| (*c).to_owned()).collect(),
            method: Method::Plurality,
            quorum: 0.3,
        };
        (mechanism, "voter", Some(commit(MODE, "mode", false)))
    };
    SessionPlan {
        id: SessionId(id),
        caller,
        mechanism,
        capability: capability.to_owned(),
        answer_within: Duration::from_millis(200),
        commit,
        placed: world.random_below(2) == 0,
    }
}

/// A world run with sessions: what happened, and the ledgers as the nodes learned them.
struct Run {
    records: Vec<SessionRecord>,
    gpu: Ledger,
    mode: Ledger,
    minority: Vec<Minority>,
}

/// Steps `world` and `sessions` together to `us`, checking each stepped core's invariants and
/// that every node learns the same ledger versions.
fn run_to(
    world: &mut World,
    sessions: &mut Sessions,
    ledgers: &mut [&mut Ledger],
    us: u64,
) -> Result<(), String> {
    loop {
        let next = [world.next_time(), sessions.next_wake(world)]
            .into_iter()
            .flatten()
            .min();
        let Some(next) = next.filter(|t| *t <= us) else {
            break;
        };
        if world.next_time() == Some(next) {
            if let Some(slot) = world.step() {
                if let Some(Err(e)) = world.node(slot).core().map(|c| c.invariants()) {
                    return Err(format!("n{slot}: {e}"));
                }
            }
        } else {
            world.advance_to(next);
        }
        sessions.poll(world);
        for (slot, event) in sessions.take_vars_events() {
            for ledger in ledgers.iter_mut() {
                ledger.learn(slot, &event)?;
            }
        }
    }
    world.advance_to(us);
    sessions.poll(world);
    Ok(())
}

fn lossy_lan() -> LinkModel {
    LinkModel {
        loss: 0.02,
        duplicate: 0.01,
        ..LinkModel::lan()
    }
}

/// One seeded run of sessions through a partition, its heal and a crash.
fn run(seed: u64) -> Result<Run, String> {
    let mut world = World::new(WorldConfig {
        network: lossy_lan(),
        ..WorldConfig::lan(seed, NODES)
    });
    let none = BTreeMap::new();
    world.apply(&Fault::Join(Nodes::All, 0), &none)?;
    for (name, agents, failure) in [
        ("bidder", AGENTS_PER_NODE, 0.02),
        ("voter", AGENTS_PER_NODE, 0.02),
        // A tatonnement asks its traders round after round: at the others' failure share
        // their supervisors would give up on them within seconds, and a failed trader is
        // silent in every round after (so no tatonnement converges any more, rightly).
        ("trader", 1, 0.002),
    ] {
        let group = AgentGroup::new(Nodes::All, name, agents).failure(failure);
        world.apply(&Fault::Agents(group), &none)?;
    }
    let mut sessions = Sessions::default();
    let mut gpu = Ledger::new(GPU, gpu_spec(BTreeSet::new()).initial);
    let mut mode = Ledger::new(MODE, mode_spec(BTreeSet::new()).initial);
    run_to(
        &mut world,
        &mut sessions,
        &mut [&mut gpu, &mut mode],
        secs(3),
    )?;
    let lives: BTreeSet<Life> = (0..NODES)
        .map(|slot| Life {
            node: world.node(slot).id(),
            generation: world.node(slot).generation(),
        })
        .collect();
    for (name, spec) in [(GPU, gpu_spec(lives.clone())), (MODE, mode_spec(lives))] {
        world
            .with_core(0, |core, now| core.declare_var(now, name, spec))
            .ok_or("n0 down")?
            .map_err(|e| e.to_string())?;
    }
    run_to(
        &mut world,
        &mut sessions,
        &mut [&mut gpu, &mut mode],
        secs(5),
    )?;
    let mut faults = vec![
        (
            secs(9),
            Fault::Partition(Nodes::List(vec![0, 1]), Nodes::List(vec![2, 3, 4])),
        ),
        (secs(15), Fault::Heal),
        (secs(20), Fault::Crash(Nodes::One(4))),
    ];
    // Cut off from a second after the partition (what was in flight has landed) to its heal.
    let minority = vec![(secs(10), secs(15), BTreeSet::from([0, 1]))];
    let (mut t, mut id) = (secs(5), 0);
    while t < secs(26) {
        t += 100_000 + world.random_below(300_000);
        run_to(&mut world, &mut sessions, &mut [&mut gpu, &mut mode], t)?;
        while faults.first().is_some_and(|(at, _)| *at <= t) {
            let (_, fault) = faults.remove(0);
            world.apply(&fault, &none)?;
        }
        id += 1;
        let caller = world.random_below(NODES as u64) as usize;
        let plan = plan(&mut world, id, caller);
        sessions.open(&mut world, plan);
    }
    run_to(
        &mut world,
        &mut sessions,
        &mut [&mut gpu, &mut mode],
        secs(34),
    )?;
    Ok(Run {
        records: sessions.records().to_vec(),
        gpu,
        mode,
        minority,
    })
}

/// Every check over one run; the first violation, named by its check.
fn check(run: &Run) -> Result<(), String> {
    let named = |name: &str, check: Result<(), String>| check.map_err(|e| format!("{name}: {e}"));
    for ledger in [&run.gpu, &run.mode] {
        named(
            "one-outcome-per-session",
            one_outcome_per_session(ledger, &run.records),
        )?;
    }
    named(
        "within-budget",
        within_budget(&run.gpu, &run.records, "budget"),
    )?;
    named(
        "matches-machine",
        matches_machine(&run.gpu, &run.records, "holder", Some("price")),
    )?;
    named(
        "matches-machine",
        matches_machine(&run.mode, &run.records, "mode", None),
    )?;
    named(
        "silence-is-not-convergence",
        silence_is_not_convergence(&run.records),
    )?;
    named(
        "no-minority-commit",
        no_minority_commit(&run.records, &run.minority),
    )
}

fn run_and_check(seed: u64) -> Result<Run, String> {
    let run = run(seed)?;
    check(&run)?;
    Ok(run)
}

/// What the runs did, summed: to show the checks looked at something.
#[derive(Debug, Default)]
struct Tally {
    sessions: usize,
    committed: usize,
    aborted: usize,
    found_decided: usize,
    refused_answers: usize,
    lost: usize,
    placed_elsewhere: usize,
    converged: usize,
    not_converged: usize,
}

impl Tally {
    fn add(&mut self, run: &Run) {
        for r in &run.records {
            self.sessions += 1;
            if matches!(r.commit, Some((CommitState::Committed { .. }, _))) {
                self.committed += 1;
            }
            for (_, settled, _) in &r.settles {
                match settled {
                    Settled::Aborted { .. } => self.aborted += 1,
                    Settled::Decided { .. } => self.found_decided += 1,
                    _ => {}
                }
            }
            self.refused_answers += r.drove.as_ref().map_or(0, |d| d.rejected.len());
            self.lost += usize::from(r.lost.is_some());
            self.placed_elsewhere += usize::from(r.coordinator != r.plan.caller);
            match r.drove.as_ref().map(|d| &d.decision) {
                Some(Decision::Tatonnement(TatonnementOutcome::Converged { .. })) => {
                    self.converged += 1
                }
                Some(Decision::Tatonnement(_)) => self.not_converged += 1,
                _ => {}
            }
        }
    }
}

#[test]
fn sessions_commit_one_outcome_each_through_loss_a_partition_and_a_crash() {
    let mut tally = Tally::default();
    for seed in 1..=4 {
        let run = run_and_check(seed).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        tally.add(&run);
    }
    eprintln!("{tally:?}");
    assert!(tally.committed >= 40, "outcomes commit: {tally:?}");
    assert!(
        tally.aborted >= 1,
        "lost coordinators' sessions are aborted: {tally:?}"
    );
    assert!(
        tally.found_decided >= 1,
        "late settles find the outcome: {tally:?}"
    );
    assert!(
        tally.refused_answers >= 10,
        "bad answers are refused: {tally:?}"
    );
    assert!(
        tally.lost >= 1,
        "a coordinator crash loses sessions: {tally:?}"
    );
    assert!(
        tally.placed_elsewhere >= 10,
        "sessions are placed: {tally:?}"
    );
    assert!(tally.converged >= 30, "tatonnements converge: {tally:?}");
}

#[test]
fn a_seed_gives_the_same_sessions_twice() {
    let describe = |run: &Run| format!("{:?} {:?} {:?}", run.records, run.gpu, run.mode);
    let (a, b) = (run(7).expect("runs"), run(7).expect("runs"));
    assert_eq!(describe(&a), describe(&b));
}

/// More seeds, release builds only (`cargo test --release -p foundation-sim --test
/// sessions_driven -- --ignored`).
#[test]
#[ignore]
fn session_sweep_over_many_seeds() {
    let mut tally = Tally::default();
    for seed in 1..=300 {
        let run = run_and_check(seed).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        tally.add(&run);
    }
    eprintln!("300 seeds: {tally:?}");
}

mod can_fail {
    use super::*;
    use foundation_core::fault_switch::{self, FaultSwitch};

    /// The first violation of `check` with `switch` on, in seeds 1 to 6.
    fn caught(switch: FaultSwitch, check: &str) -> String {
        let _on = fault_switch::engage(switch);
        let first = (1..=6)
            .find_map(|seed| run_and_check(seed).err())
            .unwrap_or_else(|| panic!("{switch:?} was not caught in 6 seeds"));
        eprintln!("{switch:?} caught: {first}");
        assert!(first.starts_with(check), "{switch:?}: {first}");
        first
    }

    #[test]
    fn a_ledger_that_ignores_which_session_wrote_it_takes_two_outcomes() {
        caught(
            FaultSwitch::OutcomeIgnoresSessionOrder,
            "one-outcome-per-session",
        );
    }

    #[test]
    fn a_debit_that_empties_the_budget_instead_of_refusing_overspends() {
        caught(FaultSwitch::DebitSaturatesAtFloor, "within-budget");
    }

    #[test]
    fn answers_credited_to_the_wrong_participant_change_the_outcome() {
        caught(FaultSwitch::SessionAnswerFromWrongAgent, "matches-machine");
    }

    #[test]
    fn silence_taken_as_zero_demand_claims_a_convergence_nobody_answered() {
        caught(
            FaultSwitch::SessionSilenceAsZeroDemand,
            "silence-is-not-convergence",
        );
    }

    #[test]
    fn an_uncertain_commit_reported_as_committed_shows_on_the_minority_side() {
        caught(
            FaultSwitch::SessionUncertainAsCommitted,
            "no-minority-commit",
        );
    }
}
