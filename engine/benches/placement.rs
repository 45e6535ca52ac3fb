//! Singleton failover in the simulator at N=100 (real cores, virtual clock, LAN links): after
//! the owner crashes, how long until a survivor runs it, against how long the failure detector
//! takes (first and last survivor to declare the owner failed); and, in the same runs, the
//! naive "every node decides alone" baseline (each node runs the singleton as soon as its own
//! view says it is the owner: no leases, no quorum), with the duplicates it runs. A second
//! scenario cuts the cluster 40 | 60 with the owner on the small side. Akka's singleton, for
//! reference, takes ≈ 45 s with its default settings (published figure, not measured here).
//!
//! `cargo bench -p foundation-engine --bench placement` (`-- quick` for fewer seeds). Prints
//! numbers; never pass/fail.

use std::collections::BTreeMap;
use std::time::Instant as WallInstant;

use foundation_core::membership::{MemberState, MembershipConfig, MembershipEvent};
use foundation_core::placement::rendezvous::{owner, Candidate, Rule};
use foundation_core::placement::{Instance, WorkloadSpec};
use foundation_sim::faults::{Fault, Nodes};
use foundation_sim::network::LinkModel;
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

fn run(plan: Plan, seed: u64) -> Figures {
    let mut world = World::new(WorldConfig {
        seed,
        nodes: NODES,
        membership: MembershipConfig::development(),
        network: LinkModel::lan(),
        keep_trace: false,
    });
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
    let seeds = if quick { 2 } else { 5 };
    println!("Akka cluster singleton, default settings (published): ≈ 45000 ms to fail over");
    report("owner crashes", Plan::Crash, seeds);
    report(
        "partition 40 | 60, owner on the 40 side",
        Plan::Partition,
        seeds,
    );
}
