//! Compare-and-set variables in the simulator: writers on every node, one to three at the same
//! instant (so writes race for one version), a partition that leaves a minority side, lossy
//! links and a crash mid-write; over many seeds, every version is decided the same on every
//! node that learns it (as each node learnt it, not only the last 16 versions the registers
//! keep), each version is won by at most one writer (and the one that won is the one decided),
//! and no value outside the type is ever seen. The same
//! holds while a variable is moved to other acceptors after a restart ([`run_move`]). A
//! member declared failed that renewed its identity is named by its variables life in
//! `alive_lives()`, and answers for it ([`run_renewed_alive_lives`]).
//!
//! Then `lww` variables and resource counters through a partition, its heal, a crash and a
//! restart: no value outside the type is ever shown though one node writes out-of-range
//! values by hand, replicas converge after every disturbance, counters never go below zero
//! and never spend more than the initial units plus the refills. `can_fail` plants the bug
//! each of those checks is for and shows it fails.

use std::collections::BTreeMap;
use std::time::Duration;

use foundation_agents::cas::CasOutcome;
use foundation_agents::variable::{Policy, VarType, VarValue};
use foundation_core::replication::Write;
use foundation_core::vars::{
    lww, Life, VarSpec, VarsError, VarsEvent, COUNTERS_KEYSPACE, LWW_KEYSPACE,
};
use foundation_sim::faults::{Fault, Identity, Nodes};
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
        keep_trace: std::env::var("VARS_TRACE").is_ok(),
        ..WorldConfig::lan(seed, NODES)
    });
    world.apply(&Fault::Join(Nodes::All, 0), &BTreeMap::new())?;
    run_to(&mut world, secs(3))?;
    let spec = VarSpec {
        ty: TYPE,
        policy: Policy::Cas,
        initial: VarValue::Int(0),
        acceptors: lives(&world),
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
        apply_due(&mut world, &mut faults, t)?;
        racing_writes(&mut world);
        events.extend(world.take_vars_events());
    }
    run_to(&mut world, secs(30))?;
    events.extend(world.take_vars_events());
    check(&world, &events)
}

/// The invariants; returns (versions decided, writes won).
fn check(world: &World, events: &[(usize, VarsEvent)]) -> Result<(usize, usize), String> {
    check_holders(world, events, 0..NODES)
}

/// [`check`], with `holders` the running nodes that must hold "x".
fn check_holders(
    world: &World,
    events: &[(usize, VarsEvent)],
    holders: std::ops::Range<usize>,
) -> Result<(usize, usize), String> {
    let mut decided = BTreeMap::new();
    for slot in holders {
        let Some(core) = world.node(slot).core() else {
            continue;
        };
        let (version, _) = core
            .vars()
            .get("x")
            .ok_or(format!("n{slot} does not hold x"))?;
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
    let learnt = learnt_versions(events)?;
    for (version, decision) in &decided {
        if learnt.get(version).is_some_and(|l| l != decision) {
            return Err(format!(
                "version {version}: decided {decision:?}, learnt {:?}",
                learnt[version]
            ));
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
                let other = |(w, _): &(Life, _)| w.node != writer;
                if decided.get(version).is_some_and(other) || learnt.get(version).is_some_and(other)
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

/// Every version of "x" as the nodes learnt it, from each `Changed` event whenever it came:
/// every node that learns a version learns the same writer and value. The registers keep
/// only their last 16 decisions, so what they hold at the end cannot show a version two
/// nodes learnt differently early on.
fn learnt_versions(
    events: &[(usize, VarsEvent)],
) -> Result<BTreeMap<u64, (Life, VarValue)>, String> {
    let mut learnt = BTreeMap::new();
    for (slot, event) in events {
        let VarsEvent::Changed {
            name,
            version,
            value,
            writer,
        } = event
        else {
            continue;
        };
        if name != "x" {
            continue;
        }
        let learning = (*writer, value.clone());
        let seen = learnt.entry(*version).or_insert_with(|| learning.clone());
        if *seen != learning {
            return Err(format!(
                "version {version}: n{slot} learnt {learning:?}, another node {seen:?}"
            ));
        }
    }
    Ok(learnt)
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
    for seed in sweep_seeds(300) {
        run(seed).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    }
}

/// A rolling restart's step under faults: "x" is declared with the lives of nodes 0 to 2;
/// node 2 crashes and restarts (a new life, so two of the three are left), and from 9 s every
/// step a random holder asks to move "x" to the lives of all five nodes, racing the writers,
/// through a partition (odd seeds: node 0 alone, so no old majority until the heal; even
/// seeds: {0, 1, 3} against {2, 4}, so the move lands on one side) and a later crash of a new
/// acceptor. Every version is decided once and the same everywhere ([`check`]), the move lands
/// on every node, writes are won after it, and after a last write every running node shows the
/// same version and value. Returns (the version the move decided, writes won after it).
fn run_move(seed: u64) -> Result<(u64, usize), String> {
    let mut world = joined(seed)?;
    declare_x_on_the_first_three(&mut world)?;
    let partition = match seed % 2 {
        1 => Fault::Partition(Nodes::One(0), Nodes::List(vec![1, 2, 3, 4])),
        _ => Fault::Partition(Nodes::List(vec![0, 1, 3]), Nodes::List(vec![2, 4])),
    };
    let mut faults = vec![
        (secs(6), Fault::Crash(Nodes::One(2))),
        (secs(7), Fault::Restart(Nodes::One(2), Identity::Same)),
        (secs(9), partition),
        (secs(13), Fault::Heal),
        (secs(20), Fault::Crash(Nodes::One(3))),
    ];
    let mut target = None;
    let mut events = Vec::new();
    let mut t = secs(4);
    while t < secs(28) {
        t += 50_000 + world.random_below(400_000);
        run_to(&mut world, t)?;
        apply_due(&mut world, &mut faults, t)?;
        // Asked again only until one node knows it landed: a node that missed it must learn
        // it from the decisions, not by deciding a move of its own.
        if t >= secs(9) && !moved_somewhere(&world, target.as_ref()) {
            let to = target.get_or_insert_with(|| lives(&world)).clone();
            let slot = world.random_below(NODES as u64) as usize;
            world.with_core(slot, |core, now| {
                core.change_acceptors(now, "x", to, Duration::from_secs(1))
            });
        }
        racing_writes(&mut world);
        events.extend(world.take_vars_events());
    }
    run_to(&mut world, secs(32))?;
    let target = target.ok_or("no move was asked")?;
    last_write(&mut world)?;
    events.extend(world.take_vars_events());
    check(&world, &events)?;
    // The first version the five lives decide, as the nodes that learnt the change itself know
    // it (one that jumped over it knows a later one): the move is the version before.
    let from = (0..NODES)
        .filter_map(|slot| world.node(slot).core()?.vars().acceptors("x"))
        .map(|(from, _)| from)
        .min()
        .ok_or("no node holds x")?;
    let moved = from - 1;
    let after = events
        .iter()
        .filter(|(_, e)| matches!(e, VarsEvent::CasDone { outcome: CasOutcome::Won { version }, .. } if *version > moved))
        .count();
    let mut shown = None;
    for slot in 0..NODES {
        let Some(vars) = world.node(slot).core().map(|c| c.vars()) else {
            continue;
        };
        let (_, acceptors) = vars.acceptors("x").ok_or(format!("n{slot} lost x"))?;
        if acceptors != target {
            return Err(format!(
                "n{slot} decides with {acceptors:?}, not the five lives"
            ));
        }
        let here = vars.get("x").map(|(v, x)| (v, x.clone()));
        if shown.get_or_insert(here.clone()) != &here {
            return Err(format!(
                "n{slot} ends at {here:?}, another node at {shown:?}"
            ));
        }
    }
    Ok((moved, after))
}

/// Whether a running node decides "x" with `target` already.
fn moved_somewhere(world: &World, target: Option<&std::collections::BTreeSet<Life>>) -> bool {
    let decides = |slot| {
        let acceptors = world.node(slot).core()?.vars().acceptors("x")?.1;
        Some(Some(&acceptors) == target)
    };
    (0..NODES).any(|slot| decides(slot) == Some(true))
}

/// One to three compare-and-sets of "x" at the same instant, each from a random node
/// expecting the version it holds, so writes race for one version.
fn racing_writes(world: &mut World) {
    for _ in 0..=world.random_below(3) {
        write_x(world);
    }
}

/// A compare-and-set of "x" from a random node holding it, expecting its version there.
fn write_x(world: &mut World) {
    let slot = world.random_below(NODES as u64) as usize;
    let value = VarValue::Int(world.random_below(101) as i64);
    world.with_core(slot, |core, now| {
        let expected = core.vars().get("x").map_or(0, |(v, _)| v);
        core.compare_and_set(now, "x", expected, value, Duration::from_secs(1))
    });
}

/// Writes from node 1 until one wins: its decision reaches every acceptor, so every running
/// node then shows the last version (a node cut off while others decided learns only then).
fn last_write(world: &mut World) -> Result<(), String> {
    for _ in 0..20 {
        world.with_core(1, |core, now| {
            let expected = core.vars().get("x").map_or(0, |(v, _)| v);
            core.compare_and_set(now, "x", expected, VarValue::Int(1), Duration::from_secs(1))
        });
        let at = world.now_us() + secs(2);
        run_to(world, at)?;
        let events = world.take_vars_events();
        let won = events.iter().any(|(slot, e)| {
            *slot == 1
                && matches!(
                    e,
                    VarsEvent::CasDone {
                        outcome: CasOutcome::Won { .. },
                        ..
                    }
                )
        });
        if won {
            return Ok(());
        }
    }
    Err("node 1 never won a last write".into())
}

#[test]
fn a_move_of_the_acceptors_through_a_restart_a_partition_and_a_crash_decides_each_version_once() {
    let (mut moved, mut after) = (0, 0);
    for seed in 1..=6 {
        let (m, a) = run_move(seed).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        moved += u64::from(m > 0);
        after += a;
    }
    assert!(
        moved == 6 && after >= 6,
        "{moved} moves, {after} writes won after them"
    );
}

/// The move over many more seeds (`cargo test -p foundation-sim --test vars -- --ignored
/// move_sweep`; `VARS_SEED=N` runs one seed).
#[test]
#[ignore]
fn move_sweep_over_many_seeds() {
    for seed in sweep_seeds(200) {
        run_move(seed).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    }
}

/// The `lww` variable of the replicated scenarios, and what its misbehaving node writes.
const LWW_TYPE: VarType = VarType::Int { min: 0, max: 100 };
/// The node that writes out-of-range values by hand, bypassing its own checks.
const LIAR: usize = 3;

/// Applies each disturbance of `faults` (in time order) whose time `t` has reached, once.
fn apply_due(world: &mut World, faults: &mut Vec<(u64, Fault)>, t: u64) -> Result<(), String> {
    while faults.first().is_some_and(|(at, _)| *at <= t) {
        let (_, fault) = faults.remove(0);
        world.apply(&fault, &BTreeMap::new())?;
    }
    Ok(())
}

/// Seeds 1 to `n` for a sweep, or only `VARS_SEED` when it is set.
fn sweep_seeds(n: u64) -> impl Iterator<Item = u64> {
    let only: Option<u64> = std::env::var("VARS_SEED").ok().and_then(|s| s.parse().ok());
    (1..=n).filter(move |s| only.is_none_or(|o| o == *s))
}

/// Declares `cas` variable "x" on node 0, decided by the lives of nodes 0 to 2.
fn declare_x_on_the_first_three(world: &mut World) -> Result<(), String> {
    let spec = VarSpec {
        ty: TYPE,
        policy: Policy::Cas,
        initial: VarValue::Int(0),
        acceptors: lives_of(world, 0..3),
    };
    world
        .with_core(0, |core, now| core.declare_var(now, "x", spec))
        .ok_or("node 0 is down")?
        .map_err(|e| e.to_string())
}

/// A world of `NODES` joined nodes at 3 s.
fn joined(seed: u64) -> Result<World, String> {
    let mut world = World::new(WorldConfig::lan(seed, NODES));
    world.apply(&Fault::Join(Nodes::All, 0), &BTreeMap::new())?;
    run_to(&mut world, secs(3))?;
    Ok(world)
}

fn lives(world: &World) -> std::collections::BTreeSet<Life> {
    lives_of(world, 0..NODES)
}

/// The lives of the nodes in `slots`, as they run now.
fn lives_of(world: &World, slots: std::ops::Range<usize>) -> std::collections::BTreeSet<Life> {
    slots
        .map(|slot| Life {
            node: world.node(slot).id(),
            generation: world.node(slot).generation(),
        })
        .collect()
}

/// Declares `name` on node 0 and checks every node took it up a second later.
fn declare_everywhere(world: &mut World, name: &str, spec: VarSpec) -> Result<(), String> {
    world
        .with_core(0, |core, now| core.declare_var(now, name, spec))
        .ok_or("node 0 is down")?
        .map_err(|e| e.to_string())?;
    let at = world.now_us() + secs(1);
    run_to(world, at)?;
    for slot in 0..NODES {
        if world
            .node(slot)
            .core()
            .and_then(|c| c.vars().get(name))
            .is_none()
        {
            return Err(format!("n{slot} never took {name:?} up"));
        }
    }
    Ok(())
}

/// The disturbances of the replicated scenarios, and the quiet points after each, where every
/// running node must show the same value: a partition, its heal, a crash and a restart.
fn disturbances() -> Vec<(u64, Fault)> {
    vec![
        (
            secs(8),
            Fault::Partition(Nodes::List(vec![0, 1]), Nodes::List(vec![2, 3, 4])),
        ),
        (secs(12), Fault::Heal),
        (secs(30), Fault::Crash(Nodes::One(4))),
        (secs(37), Fault::Restart(Nodes::One(4), Identity::Same)),
    ]
}

/// Quiet windows (no writes), in seconds, whose end is a convergence check: after the heal
/// (the sides of a partition long enough to declare each other down merge again through
/// membership's periodic push-pull, every 10 s in development), after the crash, after the
/// restart, and at the end.
const QUIET: [(u64, u64); 4] = [(12, 27), (30, 34), (37, 45), (48, 55)];

/// When the replicated scenarios end.
const END: u64 = 55_000_000;

fn quiet(us: u64) -> bool {
    QUIET
        .iter()
        .any(|(from, to)| us >= secs(*from) && us < secs(*to))
}

/// Every running node shows the same value of `name`.
fn converged(world: &World, name: &str, at: &str) -> Result<(), String> {
    let mut shown: Option<(usize, VarValue)> = None;
    for slot in 0..NODES {
        let Some(core) = world.node(slot).core() else {
            continue;
        };
        let (_, value) = core
            .vars()
            .get(name)
            .ok_or(format!("n{slot} lost {name}"))?;
        match &shown {
            Some((first, v)) if v != value => {
                let digests = |s: usize| {
                    world.node(s).core().map(|c| {
                        let d = c.replication().state_digests();
                        (
                            d.get(LWW_KEYSPACE).copied(),
                            d.get(COUNTERS_KEYSPACE).copied(),
                        )
                    })
                };
                if std::env::var("VARS_TRACE").is_ok() {
                    for s in 0..NODES {
                        let Some(c) = world.node(s).core() else {
                            continue;
                        };
                        let alive: Vec<_> = c.membership().alive().map(|m| m.id.short()).collect();
                        eprintln!("n{s} alive {alive:?}");
                        if let Some(k) = c.replication().keyspace(LWW_KEYSPACE) {
                            for (key, e) in k.map().entries() {
                                let v = e
                                    .value
                                    .as_ref()
                                    .and_then(|v| lww::LwwRecord::decode(&v.bytes));
                                eprintln!(
                                    "  {:?} {:?} {:?}",
                                    key.split('\0').nth(1),
                                    e.ts.wall_ms,
                                    v.map(|r| r.value)
                                );
                            }
                        }
                    }
                }
                return Err(format!(
                    "{at}: {name} shows {v:?} on n{first} but {value:?} on n{slot} (keyspace digests {:?} and {:?})",
                    digests(*first),
                    digests(slot)
                ));
            }
            Some(_) => {}
            None => shown = Some((slot, value.clone())),
        }
    }
    Ok(())
}

/// The `lww` scenario: every node writes at random through the disturbances, the liar also
/// writes out-of-range values under its key by hand; no value outside the type is ever shown,
/// and replicas converge at the end of every quiet window. Returns (writes, lies).
fn run_lww(seed: u64) -> Result<(u64, u64), String> {
    let mut world = joined(seed)?;
    let spec = VarSpec {
        ty: LWW_TYPE,
        policy: Policy::Lww,
        initial: VarValue::Int(0),
        acceptors: Default::default(),
    };
    declare_everywhere(&mut world, "t", spec.clone())?;
    let (mut writes, mut lies) = (0, 0);
    let mut faults = disturbances();
    let mut checks: Vec<u64> = QUIET.iter().map(|(_, to)| secs(*to)).collect();
    let mut t = world.now_us();
    while t < END {
        t += 50_000 + world.random_below(300_000);
        run_to(&mut world, t)?;
        apply_due(&mut world, &mut faults, t)?;
        while checks.first().is_some_and(|at| *at <= t) {
            checks.remove(0);
            converged(&world, "t", &format!("{:.1}s", t as f64 / 1e6))?;
        }
        if quiet(t) || t >= END {
            continue;
        }
        let slot = world.random_below(NODES as u64) as usize;
        let value = world.random_below(101) as i64;
        if slot == LIAR && world.random_below(2) == 0 {
            lies += lie(&mut world, &spec, value + 101);
        } else if let Some(result) = world.with_core(slot, |core, now| {
            core.set_var(now, "t", VarValue::Int(value))
        }) {
            result.map_err(|e| format!("n{slot}: a valid write refused: {e}"))?;
            writes += 1;
        }
        check_shown(world.take_vars_events(), "t", &LWW_TYPE)?;
    }
    Ok((writes, lies))
}

/// The liar writes `value` (out of range) under its own key of the `lww` keyspace, as a node
/// without the type check would. Returns 1 if it was running.
fn lie(world: &mut World, spec: &VarSpec, value: i64) -> u64 {
    let life = Life {
        node: world.node(LIAR).id(),
        generation: world.node(LIAR).generation(),
    };
    let record = lww::LwwRecord {
        spec: spec.fingerprint(),
        value: VarValue::Int(value),
        writer: life,
        seq: value as u64,
    };
    let write = Write {
        keyspace: LWW_KEYSPACE.to_owned(),
        key: lww::key("t", life.node),
        value: Some(record.encode()),
    };
    let written = world.with_core(LIAR, |core, now| core.write(now, write).is_ok());
    u64::from(written == Some(true))
}

/// Every value a `Changed` event showed for `name` fits `ty`.
fn check_shown(events: Vec<(usize, VarsEvent)>, name: &str, ty: &VarType) -> Result<(), String> {
    for (slot, event) in events {
        if let VarsEvent::Changed {
            name: n,
            value,
            version,
            ..
        } = event
        {
            if n == name {
                ty.check(&value)
                    .map_err(|e| format!("n{slot} showed {name} version {version}: {e}"))?;
            }
        }
    }
    Ok(())
}

#[test]
fn lww_replicas_converge_after_every_disturbance_and_never_show_a_liars_value() {
    let (mut writes, mut lies) = (0, 0);
    for seed in 1..=6 {
        let (w, l) = run_lww(seed).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        writes += w;
        lies += l;
    }
    assert!(writes >= 100 && lies >= 10, "{writes} writes, {lies} lies");
}

/// The counter of the replicated scenarios: its initial units, shared among every node.
const POOL: u64 = 40;

/// What the counter scenario counts, outside the engine: every draw and refill a node
/// reported done.
#[derive(Debug, Default)]
struct Ledger {
    drawn: u64,
    refilled: u64,
    refused: u64,
    /// Units heirs took from lives fenced dead (the crashed node's, and the cut-off side's).
    reclaimed: u64,
}

/// Declares the counter `pool` of `POOL` units on every node, every life an acceptor.
fn declare_pool(world: &mut World) -> Result<(), String> {
    let spec = VarSpec {
        ty: VarType::Int {
            min: 0,
            max: i64::MAX,
        },
        policy: Policy::Counter,
        initial: VarValue::Int(POOL as i64),
        acceptors: lives(world),
    };
    declare_everywhere(world, "pool", spec)
}

/// The counter scenario: nodes draw and refill at random through the disturbances, asking
/// each other for rights when short. At every step no node shows the counter below zero or
/// anyone overdrawn (the core's invariants), and the units drawn never exceed the initial
/// units plus the refills; replicas converge at the end of every quiet window.
fn run_counter(seed: u64) -> Result<Ledger, String> {
    let mut world = joined(seed)?;
    declare_pool(&mut world)?;
    let mut ledger = Ledger::default();
    let mut faults = disturbances();
    let mut checks: Vec<u64> = QUIET.iter().map(|(_, to)| secs(*to)).collect();
    let mut t = world.now_us();
    while t < END {
        t += 20_000 + world.random_below(150_000);
        run_to(&mut world, t)?;
        apply_due(&mut world, &mut faults, t)?;
        while checks.first().is_some_and(|at| *at <= t) {
            checks.remove(0);
            converged(&world, "pool", &format!("{:.1}s", t as f64 / 1e6))?;
        }
        if quiet(t) || t >= END {
            continue;
        }
        counter_step(&mut world, &mut ledger)?;
        if ledger.drawn > POOL + ledger.refilled {
            return Err(format!(
                "{} units drawn of {POOL} and {} refilled",
                ledger.drawn, ledger.refilled
            ));
        }
    }
    ledger.reclaimed = (0..NODES)
        .filter_map(|slot| world.node(slot).core())
        .map(|core| core.vars().stats().rights_reclaimed)
        .sum();
    Ok(ledger)
}

/// One random draw (mostly) or refill on a random node.
fn counter_step(world: &mut World, ledger: &mut Ledger) -> Result<(), String> {
    let slot = world.random_below(NODES as u64) as usize;
    let refill = world.random_below(8) == 0;
    let amount = 1 + world.random_below(3);
    let result = world.with_core(slot, |core, now| match refill {
        true => core.refill(now, "pool", amount),
        false => core.draw(now, "pool", amount),
    });
    match (result, refill) {
        (None, _) => {}
        (Some(Ok(())), true) => ledger.refilled += amount,
        (Some(Ok(())), false) => ledger.drawn += amount,
        (Some(Err(VarsError::Insufficient { .. } | VarsError::Allowance { .. })), _) => {
            ledger.refused += 1
        }
        (Some(Err(e)), _) => return Err(format!("n{slot}: {e}")),
    }
    Ok(())
}

#[test]
fn counters_never_go_negative_nor_spend_more_than_they_hold_through_disturbances() {
    let mut total = Ledger::default();
    for seed in 1..=6 {
        let ledger = run_counter(seed).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        total.drawn += ledger.drawn;
        total.refilled += ledger.refilled;
        total.refused += ledger.refused;
        total.reclaimed += ledger.reclaimed;
    }
    // Not vacuous: the pool runs dry, rights move on request, and heirs reclaim.
    assert!(
        total.drawn >= 6 * POOL / 2 && total.refused >= 6 && total.reclaimed > 0,
        "{total:?}"
    );
}

/// Node 4 crashes and its next life starts 200 ms later, well before failure detection:
/// membership renames the member and never reports its first life down. Returns the units
/// heirs reclaimed.
fn run_quick_restart(seed: u64) -> Result<u64, String> {
    let mut world = joined(seed)?;
    declare_pool(&mut world)?;
    let crash = world.now_us();
    world.apply(&Fault::Crash(Nodes::One(4)), &BTreeMap::new())?;
    run_to(&mut world, crash + 200_000)?;
    world.apply(
        &Fault::Restart(Nodes::One(4), Identity::Same),
        &BTreeMap::new(),
    )?;
    run_to(&mut world, crash + secs(15))?;
    Ok((0..NODES)
        .filter_map(|slot| world.node(slot).core())
        .map(|core| core.vars().stats().rights_reclaimed)
        .sum())
}

/// The first life's rights beyond its allowance go to one heir, as after a crash membership
/// saw: its share of 8 units, 4 of them allowed from the start.
#[test]
fn a_node_restarted_before_it_was_seen_failed_has_its_first_lifes_rights_reclaimed() {
    for seed in 1..=3 {
        let reclaimed = run_quick_restart(seed).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        assert_eq!(reclaimed, 4, "seed {seed}");
    }
}

/// Both replicated scenarios over many more seeds; release builds only (`cargo test --release
/// -p foundation-sim --test vars -- --ignored replicated`; `VARS_SEED=N` runs one seed).
#[test]
#[ignore]
fn replicated_sweep_over_many_seeds() {
    let (mut writes, mut lies, mut ledger) = (0, 0, Ledger::default());
    for seed in sweep_seeds(200) {
        let (w, l) = run_lww(seed).unwrap_or_else(|e| panic!("lww seed {seed}: {e}"));
        let c = run_counter(seed).unwrap_or_else(|e| panic!("counter seed {seed}: {e}"));
        writes += w;
        lies += l;
        ledger.drawn += c.drawn;
        ledger.refilled += c.refilled;
        ledger.refused += c.refused;
        ledger.reclaimed += c.reclaimed;
    }
    eprintln!("lww: {writes} writes, {lies} out-of-range writes refused; counters: {ledger:?}");
}

/// Each replicated invariant fails with the bug it is meant to catch planted.
mod can_fail {
    use super::*;
    use foundation_core::fault_switch::{self, FaultSwitch};

    /// The first violation `run` reports with `switch` on, or the core's debug check panicking
    /// on it (which is what a test build does first with a broken invariant).
    fn first_failing(switch: FaultSwitch, run: impl Fn(u64) -> Result<(), String>) -> String {
        let _on = fault_switch::engage(switch);
        (1..=6)
            .find_map(|seed| {
                let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(seed)));
                match outcome {
                    Ok(result) => result.err(),
                    Err(panic) => Some(panic_text(panic.as_ref())),
                }
            })
            .unwrap_or_else(|| panic!("{switch:?} was not caught in 6 seeds"))
    }

    fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
        let text = panic.downcast_ref::<String>().cloned();
        text.or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_default()
    }

    /// Acceptors that forget what they promised let two writers of one version both win.
    #[test]
    fn acceptors_that_forget_their_promises_decide_a_version_twice() {
        let caught = first_failing(FaultSwitch::AcceptorForgetsPromises, |s| run(s).map(drop));
        assert!(caught.contains("version"), "{caught}");
    }

    #[test]
    fn an_unchecked_remote_lww_value_is_seen() {
        let caught = first_failing(FaultSwitch::VarsTakeOutOfRange, |s| run_lww(s).map(drop));
        assert!(caught.contains("is outside [0, 100]"), "{caught}");
    }

    #[test]
    fn replicas_that_ignore_peers_writes_do_not_converge() {
        let caught = first_failing(FaultSwitch::VarsIgnorePeersLww, |s| run_lww(s).map(drop));
        assert!(caught.contains("shows"), "{caught}");
    }

    #[test]
    fn draws_beyond_the_rights_held_overspend() {
        let caught = first_failing(FaultSwitch::CounterDrawsUnbacked, |s| {
            run_counter(s).map(drop)
        });
        assert!(caught.contains("units drawn"), "{caught}");
    }

    /// Without the fence, the side that declares the cut-off lives dead takes their rights
    /// while they keep spending them: units are spent twice, which shows as more units drawn
    /// than the pool ever held, or, once the sides' states meet, as a merge that would
    /// overdraw a cut-off life — refused whole, so the replicas stay apart and show different
    /// values.
    #[test]
    fn an_unfenced_reclaim_spends_rights_twice() {
        let caught = first_failing(FaultSwitch::CounterReclaimUnfenced, |s| {
            run_counter(s).map(drop)
        });
        let apart = caught.contains("pool shows") && caught.contains(" but ");
        assert!(caught.contains("units drawn") || apart, "{caught}");
    }
}

/// A rolling deploy with no move asked for: "x" is declared with the lives of nodes 0 to 2,
/// writers run on random nodes, nodes 2 then 1 crash and restart (new lives), and later node 0
/// is cut off for 3 s — long enough to be declared failed and renew its membership identity,
/// shorter than re-seating's 10 s grace. Every version is decided once ([`check`]), a last
/// write wins, and every running node ends deciding with node 0's life and the new lives of
/// 1 and 2: re-seating moved the variable off each restarted life, and not off node 0 (its
/// renewed membership generation is not a new life, and it came back within the grace).
fn run_reseat(seed: u64) -> Result<(), String> {
    let mut world = joined(seed)?;
    declare_x_on_the_first_three(&mut world)?;
    let mut faults = vec![
        (secs(6), Fault::Crash(Nodes::One(2))),
        (secs(7), Fault::Restart(Nodes::One(2), Identity::Same)),
        (secs(12), Fault::Crash(Nodes::One(1))),
        (secs(13), Fault::Restart(Nodes::One(1), Identity::Same)),
        (
            secs(18),
            Fault::Partition(Nodes::One(0), Nodes::List(vec![1, 2, 3, 4])),
        ),
        (secs(21), Fault::Heal),
    ];
    let mut events = Vec::new();
    let mut t = secs(5);
    while t < secs(30) {
        t += 50_000 + world.random_below(400_000);
        run_to(&mut world, t)?;
        apply_due(&mut world, &mut faults, t)?;
        racing_writes(&mut world);
        events.extend(world.take_vars_events());
    }
    run_to(&mut world, secs(34))?;
    last_write(&mut world)?;
    events.extend(world.take_vars_events());
    check_holders(&world, &events, 0..3)?;
    let vars_life = |slot: usize| world.node(slot).core().map(|c| c.vars().me());
    let expected: std::collections::BTreeSet<Life> = (0..3).filter_map(vars_life).collect();
    for slot in 0..3 {
        let Some(core) = world.node(slot).core() else {
            continue;
        };
        let (_, acceptors) = core
            .vars()
            .acceptors("x")
            .ok_or(format!("n{slot} lost x"))?;
        if acceptors != expected {
            return Err(format!(
                "n{slot} decides with {acceptors:?}, not {expected:?}"
            ));
        }
    }
    Ok(())
}

#[test]
fn a_rolling_restart_alone_re_seats_the_variable_and_a_short_partition_moves_nothing() {
    for seed in 1..=6 {
        run_reseat(seed).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    }
}

/// The same over many more seeds (`cargo test -p foundation-sim --test vars -- --ignored
/// reseat_sweep`; `VARS_SEED=N` runs one seed).
#[test]
#[ignore]
fn reseat_sweep_over_many_seeds() {
    for seed in sweep_seeds(200) {
        run_reseat(seed).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    }
}

/// Node 0 is cut off for 3 s, long enough to be declared failed and renew its membership
/// identity; it keeps its variables life. Node 1 then declares "y" with its `alive_lives()`,
/// nodes 3 and 4 crash, and node 1 writes: it wins only if node 0 answers as the life the
/// set names, since nodes 1 and 2 alone are two of five. With `renewal_lost`, what node 0
/// sends node 1 is dropped for 3 s after the heal, so its first word of the renewal is lost,
/// and node 1 is asked only 10 s later.
fn run_renewed_alive_lives(seed: u64, renewal_lost: bool) -> Result<(), String> {
    let mut world = joined(seed)?;
    world.apply(
        &Fault::Partition(Nodes::One(0), Nodes::List(vec![1, 2, 3, 4])),
        &BTreeMap::new(),
    )?;
    run_to(&mut world, secs(6))?;
    world.apply(&Fault::Heal, &BTreeMap::new())?;
    if renewal_lost {
        let cut = Fault::PartitionOneWay(Nodes::One(0), Nodes::One(1));
        world.apply(&cut, &BTreeMap::new())?;
        run_to(&mut world, secs(9))?;
        world.apply(&Fault::Heal, &BTreeMap::new())?;
        run_to(&mut world, secs(19))?;
    } else {
        run_to(&mut world, secs(9))?;
    }
    let renewed = world.node(0).core().ok_or("node 0 is down")?;
    let life = renewed.vars().me();
    if renewed.membership().me().generation == life.generation {
        return Err("node 0 never renewed its membership identity".into());
    }
    let alive = world.node(1).core().ok_or("node 1 is down")?.alive_lives();
    if !alive.contains(&life) || alive.len() != NODES {
        return Err(format!("node 1's alive lives {alive:?} lack {life:?}"));
    }
    let spec = VarSpec {
        ty: TYPE,
        policy: Policy::Cas,
        initial: VarValue::Int(0),
        acceptors: alive,
    };
    world
        .with_core(1, |core, now| core.declare_var(now, "y", spec))
        .ok_or("node 1 is down")?
        .map_err(|e| e.to_string())?;
    let at = world.now_us() + secs(1);
    run_to(&mut world, at)?;
    world.apply(&Fault::Crash(Nodes::List(vec![3, 4])), &BTreeMap::new())?;
    world.with_core(1, |core, now| {
        core.compare_and_set(now, "y", 0, VarValue::Int(5), Duration::from_secs(1))
    });
    let at = world.now_us() + secs(2);
    run_to(&mut world, at)?;
    let outcome = world
        .take_vars_events()
        .into_iter()
        .find_map(|(slot, e)| match e {
            VarsEvent::CasDone { outcome, .. } if slot == 1 => Some(outcome),
            _ => None,
        });
    match outcome {
        Some(CasOutcome::Won { version: 1 }) => Ok(()),
        other => Err(format!("node 1's write ended {other:?}")),
    }
}

#[test]
fn a_renewed_member_is_named_by_its_variables_life_and_answers_for_it() {
    for seed in 1..=3 {
        run_renewed_alive_lives(seed, false).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    }
}

/// A renewed node tells a member which life it keeps more than once: with only its first
/// word, lost to a one-way cut, node 1 named the renewed generation for good.
#[test]
fn a_renewal_whose_first_word_is_lost_is_told_again() {
    for seed in 1..=3 {
        run_renewed_alive_lives(seed, true).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    }
}
