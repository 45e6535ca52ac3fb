//! Compare-and-set variables in the simulator: writers on every node, a partition that leaves
//! a minority side, lossy links and a crash mid-write; over many seeds, every version is decided
//! the same on every node that learns it, each version is won by at most one writer (and the
//! one that won is the one decided), and no value outside the type is ever seen.

use std::collections::BTreeMap;
use std::time::Duration;

use foundation_agents::cas::CasOutcome;
use foundation_agents::variable::{Policy, VarType, VarValue};
use foundation_core::membership::MembershipConfig;
use foundation_core::vars::{Life, VarSpec, VarsEvent};
use foundation_sim::faults::{Fault, Nodes};
use foundation_sim::network::LinkModel;
use foundation_sim::world::{World, WorldConfig};

const NODES: usize = 5;
const TYPE: VarType = VarType::Int { min: 0, max: 100 };

fn secs(s: u64) -> u64 {
    s * 1_000_000
}

/// Runs the world to `us`, checking the stepped core's invariants after every step.
fn run_to(world: &mut World, us: u64) -> Result<(), String> {
    while world.next_time().is_some_and(|t| t <= us) {
        if let Some(slot) = world.step() {
            if let Some(core) = world.node(slot).core() {
                if let Err(e) = core.invariants() {
                    if std::env::var("VARS_TRACE").is_ok() {
                        let lines = world.take_trace().take_lines().unwrap_or_default();
                        for line in lines.iter().rev().take(80).rev() {
                            eprintln!("{line}");
                        }
                    }
                    return Err(format!("n{slot}: {e}"));
                }
            }
        }
    }
    world.advance_to(us);
    Ok(())
}

/// One seeded run; returns a description of the first violation.
fn run(seed: u64) -> Result<(usize, usize), String> {
    let mut world = World::new(WorldConfig {
        seed,
        nodes: NODES,
        membership: MembershipConfig::development(),
        network: LinkModel::lan(),
        keep_trace: std::env::var("VARS_TRACE").is_ok(),
    });
    world.apply(&Fault::Join(Nodes::All, 0), &BTreeMap::new())?;
    run_to(&mut world, secs(3))?;
    let acceptors = (0..NODES)
        .map(|slot| Life {
            node: world.node(slot).id(),
            generation: world.node(slot).generation(),
        })
        .collect();
    let spec = VarSpec {
        ty: TYPE,
        policy: Policy::Cas,
        initial: VarValue::Int(0),
        acceptors,
    };
    // Declared on one node; the others take the replicated declaration up.
    world
        .with_core(0, |core, now| core.declare_var(now, "x", spec))
        .expect("up")
        .map_err(|e| e.to_string())?;
    run_to(&mut world, secs(4))?;
    for slot in 0..NODES {
        let held = world.node(slot).core().and_then(|c| c.vars().get("x"));
        if held.is_none() {
            return Err(format!("n{slot} never took the declaration up"));
        }
    }
    let minority = Nodes::List(vec![0, 1]);
    let majority = Nodes::List(vec![2, 3, 4]);
    let mut faults = vec![
        (secs(8), Fault::Partition(minority, majority)),
        (secs(14), Fault::Heal),
        (secs(18), Fault::Crash(Nodes::One(4))),
    ];
    let mut events = Vec::new();
    let mut t = secs(4);
    while t < secs(25) {
        t += 50_000 + world.random_below(400_000);
        run_to(&mut world, t)?;
        // The disturbances, each once, at the first step past its time.
        while faults.first().is_some_and(|(at, _)| *at <= t) {
            let (_, fault) = faults.remove(0);
            world.apply(&fault, &BTreeMap::new())?;
        }
        let slot = world.random_below(NODES as u64) as usize;
        let value = VarValue::Int(world.random_below(101) as i64);
        world.with_core(slot, |core, now| {
            let expected = core.vars().get("x").map_or(0, |(v, _)| v);
            core.compare_and_set(now, "x", expected, value, Duration::from_secs(1))
        });
        events.extend(world.take_vars_events());
    }
    run_to(&mut world, secs(30))?;
    events.extend(world.take_vars_events());
    check(&world, &events)
}

/// The invariants; returns (versions decided, writes won).
fn check(world: &World, events: &[(usize, VarsEvent)]) -> Result<(usize, usize), String> {
    let mut decided = BTreeMap::new();
    for slot in 0..NODES {
        let Some(core) = world.node(slot).core() else {
            continue;
        };
        let (version, _) = core.vars().get("x").expect("declared");
        // Decisions older than the register's window are forgotten; the rest must agree.
        for v in 0..=version {
            let Some((writer, value)) = core.vars().decided("x", v) else {
                continue;
            };
            let seen = decided.entry(v).or_insert((writer, value.clone()));
            if *seen != (writer, value.clone()) {
                return Err(format!(
                    "version {v}: n{slot} decided {writer:?} {value:?}, another node {seen:?}"
                ));
            }
        }
    }
    let mut won = BTreeMap::new();
    for (slot, event) in events {
        match event {
            VarsEvent::Changed { version, value, .. } => {
                TYPE.check(value)
                    .map_err(|e| format!("n{slot} saw version {version}: {e}"))?;
            }
            VarsEvent::CasDone {
                outcome: CasOutcome::Won { version },
                ..
            } => {
                let writer = world.node(*slot).id();
                if let Some(previous) = won.insert(*version, writer) {
                    return Err(format!(
                        "version {version} won by {previous:?} and {writer:?}"
                    ));
                }
                if decided
                    .get(version)
                    .is_some_and(|(w, _): &(Life, _)| w.node != writer)
                {
                    return Err(format!(
                        "version {version} won by {writer:?} but decided otherwise"
                    ));
                }
            }
            VarsEvent::CasDone { .. } | VarsEvent::Declared { .. } => {}
        }
    }
    Ok((decided.len().saturating_sub(1), won.len()))
}

#[test]
fn cas_versions_are_linear_and_won_once_across_partitions_loss_and_crashes() {
    let (mut versions, mut wins) = (0, 0);
    for seed in 1..=12 {
        let (v, w) = run(seed).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        versions += v;
        wins += w;
    }
    // Not vacuous: writes commit, on the majority side and after the heal.
    assert!(
        versions >= 12 && wins >= 12,
        "{versions} versions, {wins} wins"
    );
}

/// The same over many more seeds; release builds only (`cargo test --release -p
/// foundation-sim --test vars -- --ignored`; `VARS_SEED=N` runs one seed, `VARS_TRACE=1` prints
/// the trace before a broken invariant). Seed 287 found a membership bug this way: a rename of
/// a member held down was taken as "up" (fixed in `Membership::renamed`).
#[test]
#[ignore]
fn cas_sweep_over_many_seeds() {
    let only: Option<u64> = std::env::var("VARS_SEED").ok().and_then(|s| s.parse().ok());
    for seed in (1..=300).filter(|s| only.is_none_or(|o| o == *s)) {
        run(seed).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    }
}
