//! Singleton failover in the simulator at N=100 (real cores, virtual clock, LAN links): after
//! the owner crashes, how long until a survivor runs it, against how long the failure detector
//! takes (first and last survivor to declare the owner failed); and, in the same runs, the
//! naive "every node decides alone" baseline (each node runs the singleton as soon as its own
//! view says it is the owner: no leases, no quorum), with the duplicates it runs. A second
//! scenario cuts the cluster 40 | 60 with the owner on the small side. Akka's singleton, for
//! reference, takes ≈ 45 s with its default settings (published figure, not measured here).
//!
//! A third scenario rebalances shards after a join: 99 nodes run 1000 shards, a 100th joins;
//! how many shards changed runner against the minimum (the shards rendezvous hashing gives the
//! newcomer; a perfectly even split would give it 10), how many starts the move took, and how
//! long until every shard ran once on its final owner (time to settle), with the shard-time
//! spent without a runner meanwhile.
//!
//! `cargo bench -p foundation-engine --bench placement` (`-- quick` for fewer seeds,
//! `-- rebalance` for the join alone). Prints numbers; never pass/fail.

use std::collections::BTreeMap;
use std::time::Instant as WallInstant;

use foundation_core::membership::{MemberState, MembershipEvent};
use foundation_core::placement::rendezvous::{owner, Candidate, Rule};
use foundation_core::placement::{Instance, PlacementEvent, WorkloadSpec};
use foundation_sim::faults::{Fault, Nodes};
use foundation_sim::world::{World, WorldConfig};

const NODES: usize = 100;
/// How often the runners are sampled (µs of simulated time).
const SAMPLE_US: u64 = 10_000;

#[derive(Clone, Copy, PartialEq)]
enum Plan {
    Crash,
    Partition,
}

/// One run's figures, in ms of simulated time after the disturbance.
#[derive(Default, Debug)]
struct Figures {
    detect_first: Option<u64>,
    detect_last: Option<u64>,
    failover: Option<u64>,
    naive_failover: Option<u64>,
    /// Sampled time with two or more runners, ms.
    duplicate_ms: u64,
    naive_duplicate_ms: u64,
}

/// The naive baseline's runners: every up node whose own view of the live members names it
/// the rendezvous owner — no quorum, no minimum, no lease.
fn naive_runners(world: &World, instance: &Instance) -> Vec<usize> {
    (0..world.nodes().len())
        .filter(|slot| {
            let node = world.node(*slot);
            node.core().is_some_and(|core| {
                let candidates: Vec<Candidate> = core
                    .members()
                    .filter(|m| m.state == MemberState::Alive)
                    .map(|m| m.id)
                    .chain([node.id()])
                    .map(|id| Candidate {
                        id,
                        generation: 0,
                        tags: BTreeMap::new(),
                    })
                    .collect();
                owner(
                    Rule::Rendezvous,
                    &instance.workload,
                    instance.shard,
                    &candidates,
                ) == Some(node.id())
            })
        })
        .collect()
}

/// N nodes with development timers on LAN links, none joined yet.
fn world(seed: u64) -> World {
    World::new(WorldConfig::lan(seed, NODES))
}

fn run(plan: Plan, seed: u64) -> Figures {
    let mut world = world(seed);
    let none = BTreeMap::new();
    world.apply(&Fault::Join(Nodes::All, 0), &none).ok();
    let spec = WorkloadSpec {
        min_members: NODES / 2 + 1,
        ..WorkloadSpec::singleton()
    };
    world.declare_placement("s", spec).ok();
    let instance = Instance::new("s", 0);
    let mut t = 0;
    // Formed and placed: the singleton runs somewhere.
    let owner = loop {
        t += 100_000;
        world.advance_to_running(t);
        if let Some(slots) = world.placement_runners().get(&instance) {
            if t > 15_000_000 {
                break slots[0];
            }
        }
        if t > 60_000_000 {
            return Figures::default();
        }
    };
    world.take_observed();
    let at = t;
    match plan {
        Plan::Crash => {
            world.apply(&Fault::Crash(Nodes::One(owner)), &none).ok();
        }
        Plan::Partition => {
            let small: Vec<usize> = (0..NODES).filter(|s| *s == owner || s % 5 < 2).collect();
            let big: Vec<usize> = (0..NODES).filter(|s| !small.contains(s)).collect();
            world
                .apply(
                    &Fault::Partition(Nodes::List(small), Nodes::List(big)),
                    &none,
                )
                .ok();
        }
    }
    let owner_id = world.node(owner).id();
    let mut figures = Figures::default();
    let mut detected = 0;
    let watchers = NODES - 1;
    while t < at + 20_000_000 {
        t += SAMPLE_US;
        world.advance_to_running(t);
        let since = (t - at) / 1000;
        for seen in world.take_observed() {
            if matches!(&seen.event, MembershipEvent::Failed(v) if v.id == owner_id) {
                detected += 1;
                figures.detect_first.get_or_insert(since);
                if detected == watchers || plan == Plan::Partition {
                    figures.detect_last = Some(since);
                }
            }
        }
        let runners = world
            .placement_runners()
            .get(&instance)
            .cloned()
            .unwrap_or_default();
        if runners.iter().any(|s| *s != owner) {
            figures.failover.get_or_insert(since);
        }
        if runners.len() > 1 {
            figures.duplicate_ms += SAMPLE_US / 1000;
        }
        let naive = naive_runners(&world, &instance);
        if naive.iter().any(|s| *s != owner) {
            figures.naive_failover.get_or_insert(since);
        }
        if naive.len() > 1 {
            figures.naive_duplicate_ms += SAMPLE_US / 1000;
        }
    }
    figures
}

const SHARDS: u32 = 1000;

/// One join's figures.
#[derive(Default, Debug)]
struct Rebalance {
    /// Shards whose runner after settling differs from before the join.
    moved: usize,
    /// Shards rendezvous hashing gives the newcomer: the fewest that must move.
    minimum: usize,
    /// Starts of shards anywhere after the join (a shard that moves once starts once).
    starts: usize,
    /// ms from the join until every shard runs once on its final owner.
    settle_ms: Option<u64>,
    /// Sampled shard-ms with no runner after the join.
    unowned_shard_ms: u64,
}

/// Each shard's single runner, if every shard runs exactly once.
fn assignment(world: &World) -> Option<Vec<usize>> {
    let runners = world.placement_runners();
    (0..SHARDS)
        .map(
            |s| match runners.get(&Instance::new("sh", s)).map(Vec::as_slice) {
                Some([one]) => Some(*one),
                _ => None,
            },
        )
        .collect()
}

/// Where rendezvous hashing puts each shard over the given slots.
fn rendezvous_over(world: &World, slots: impl Iterator<Item = usize>) -> Vec<usize> {
    let candidates: Vec<Candidate> = slots
        .map(|slot| Candidate {
            id: world.node(slot).id(),
            generation: 0,
            tags: BTreeMap::new(),
        })
        .collect();
    (0..SHARDS)
        .map(|s| {
            let id = owner(Rule::Rendezvous, "sh", s, &candidates).expect("candidates");
            world.slot_of(id).expect("a slot")
        })
        .collect()
}

fn rebalance(seed: u64) -> Rebalance {
    let mut world = world(seed);
    let none = BTreeMap::new();
    let newcomer = NODES - 1;
    let first: Vec<usize> = (0..newcomer).collect();
    world.apply(&Fault::Join(Nodes::List(first), 0), &none).ok();
    // Declared once the 99 have formed: placing 1000 shards anew at every one of the
    // formation's views costs the simulator minutes and is not what is measured.
    let mut t = 15_000_000;
    world.advance_to_running(t);
    let spec = WorkloadSpec {
        min_members: NODES / 2 + 1,
        ..WorkloadSpec::sharded(SHARDS)
    };
    world.declare_placement("sh", spec).ok();
    let before_owners = rendezvous_over(&world, 0..newcomer);
    let before = loop {
        t += 100_000;
        world.advance_to_running(t);
        match assignment(&world) {
            Some(a) if a == before_owners => break a,
            _ if t > 75_000_000 => return Rebalance::default(),
            _ => {}
        }
    };
    let after_owners = rendezvous_over(&world, 0..NODES);
    let mut figures = Rebalance {
        minimum: after_owners.iter().filter(|s| **s == newcomer).count(),
        ..Rebalance::default()
    };
    world.take_placement_events();
    world
        .apply(&Fault::Join(Nodes::One(newcomer), 0), &none)
        .ok();
    let at = t;
    while t < at + 20_000_000 {
        t += SAMPLE_US;
        world.advance_to_running(t);
        let runners = world.placement_runners();
        let unowned = (0..SHARDS)
            .filter(|s| !runners.contains_key(&Instance::new("sh", *s)))
            .count() as u64;
        figures.unowned_shard_ms += unowned * SAMPLE_US / 1000;
        match assignment(&world) {
            Some(a) if a == after_owners => {
                figures.settle_ms.get_or_insert((t - at) / 1000);
            }
            _ => figures.settle_ms = None,
        }
    }
    figures.starts = world
        .take_placement_events()
        .iter()
        .filter(|(_, _, e)| matches!(e, PlacementEvent::Start { .. }))
        .count();
    if let Some(after) = assignment(&world) {
        figures.moved = before.iter().zip(&after).filter(|(b, a)| b != a).count();
    }
    figures
}

fn report_rebalance(seeds: u64) {
    let started = WallInstant::now();
    let runs: Vec<Rebalance> = (1..=seeds).map(rebalance).collect();
    println!(
        "a 100th node joins 99 running {SHARDS} shards: {seeds} seeds ({:.1} s of wall time)",
        started.elapsed().as_secs_f64()
    );
    for (seed, r) in (1..).zip(&runs) {
        println!(
            "  seed {seed}: moved {} shards, minimum {} (an even split: {}), {} starts; settled in {}; {} shard-ms without a runner",
            r.moved,
            r.minimum,
            SHARDS as usize / NODES,
            r.starts,
            r.settle_ms.map_or("-".into(), |ms| format!("{ms} ms")),
            r.unowned_shard_ms
        );
    }
    println!(
        "  median time to settle: {}",
        median(runs.iter().filter_map(|r| r.settle_ms).collect())
    );
}

trait RunTo {
    fn advance_to_running(&mut self, us: u64);
}

impl RunTo for World {
    fn advance_to_running(&mut self, us: u64) {
        while self.next_time().is_some_and(|t| t <= us) {
            self.step();
        }
        self.advance_to(us);
    }
}

fn median(mut v: Vec<u64>) -> String {
    if v.is_empty() {
        return "-".into();
    }
    v.sort_unstable();
    format!("{} ms", v[v.len() / 2])
}

fn report(name: &str, plan: Plan, seeds: u64) {
    let started = WallInstant::now();
    let runs: Vec<Figures> = (1..=seeds).map(|seed| run(plan, seed)).collect();
    let pick = |f: fn(&Figures) -> Option<u64>| runs.iter().filter_map(f).collect::<Vec<_>>();
    println!(
        "{name}: N={NODES}, {seeds} seeds ({:.1} s of wall time)",
        started.elapsed().as_secs_f64()
    );
    println!(
        "  failure detection: first survivor {}, last {}",
        median(pick(|f| f.detect_first)),
        median(pick(|f| f.detect_last))
    );
    println!(
        "  placement failover: {} (runs that failed over: {}/{seeds}); time with 2+ runners: {} ms total",
        median(pick(|f| f.failover)),
        pick(|f| f.failover).len(),
        runs.iter().map(|f| f.duplicate_ms).sum::<u64>()
    );
    println!(
        "  naive baseline: failover {}; time with 2+ runners: {} ms total ({} ms per run)",
        median(pick(|f| f.naive_failover)),
        runs.iter().map(|f| f.naive_duplicate_ms).sum::<u64>(),
        runs.iter().map(|f| f.naive_duplicate_ms).sum::<u64>() / seeds.max(1)
    );
}

fn main() {
    let quick = std::env::args().any(|a| a == "quick");
    let only_rebalance = std::env::args().any(|a| a == "rebalance");
    let seeds = if quick { 2 } else { 5 };
    if !only_rebalance {
        println!("Akka cluster singleton, default settings (published): ≈ 45000 ms to fail over");
        report("owner crashes", Plan::Crash, seeds);
        report(
            "partition 40 | 60, owner on the 40 side",
            Plan::Partition,
            seeds,
        );
    }
    report_rebalance(if quick { 1 } else { 3 });
}
