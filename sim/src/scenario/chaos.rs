//! The `chaos` scenario: a fault schedule drawn from the run's seed ("swizzle" testing in the
//! FoundationDB way). Every seed is a different schedule, so a sweep over thousands of seeds
//! tries thousands of mixes of partitions, crashes, restarts, stops, stalls, network changes,
//! clock skew and joins under replicated writes, registrations, and (on some seeds) agents and
//! pub/sub.
//!
//! A run has three phases: the cluster forms and the application load starts; a disturbed
//! phase of 30–60 s where a fault comes every 0.5–4 s; then everything heals (partitions gone,
//! the network a LAN again, some of the down nodes restarted) and a quiet phase lasts past
//! every convergence bound, so every check must hold at the end.
//!
//! The schedule comes from its own random stream (the seed mixed with `STREAM`), not the
//! world's: the same seed draws the same schedule and runs the same trace. The report's
//! timeline lists the faults a seed drew, and `--scenario chaos --seed N` replays it.
//!
//! The draws stay inside the engine's contract, so a failing seed is an engine or check bug:
//! - a graceful stop happens only with no partition in force and none for a while after: its
//!   departure must reach everyone to be recorded as "left" (a node that left across a cut is
//!   rightly seen failed);
//! - at most a quarter of the cluster is down at once (at least one node may be);
//! - stalls last at most `STALL_MAX`, and clock steps and drift stay far inside the
//!   replication's allowed drift.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use super::Scenario;
use crate::agents::{AgentGroup, AgentMessages};
use crate::faults::{millis, secs, Fault, Identity, Nodes, LEAVE_GRACE};
use crate::invariants::registry::RegistryConsistent;
use crate::invariants::Bounds;
use crate::network::LinkModel;
use crate::pubsub::Publishes;
use crate::writes::{Workload, Writes};

/// Mixed into the run's seed to give the schedule its own stream ("chaos").
const STREAM: u64 = 0x0063_6861_6f73;
/// When the load starts: the cluster has formed.
const LOAD_START: Duration = Duration::from_secs(3);
/// When the disturbed phase starts.
const DISTURBED_START: Duration = Duration::from_secs(5);
/// Longest stall: what the standard scenarios use; stalled nodes declared failed are counted,
/// not failed (`StallsSurvived` stays off).
const STALL_MAX: Duration = Duration::from_millis(3_000);
/// Quiet after a graceful stop before a partition may come: the goodbye must have spread.
const AFTER_STOP: Duration = Duration::from_secs(3);
/// The topics published on, when a seed draws pub/sub.
const TOPICS: [&str; 2] = ["orders.eu.created", "audit"];

/// The `chaos` template with `nodes` nodes: its schedule is drawn at each run.
pub fn scenario(nodes: usize) -> Scenario {
    let mut scenario = Scenario::new("chaos")
        .describe("a fault schedule drawn from the seed: 30–60 s of random partitions (two-sided, one-way, a node isolated), heals, crashes, restarts as the same and as new nodes, graceful stops, stalls, lossy spells, clock skew and joins under replicated writes and service registrations (on some seeds agents and pub/sub too); then everything heals and stays quiet until every check must hold")
        .nodes(nodes)
        .duration(DISTURBED_START + secs(60) + quiet());
    scenario.draw = Some(draw);
    // Restarts land anywhere in the partitions drawn; the runtime's seed retry gets a node
    // alone on its side back in after the heal.
    scenario.join_retry = true;
    scenario
}

/// The scenario the run with `seed` runs: the template with a schedule drawn from the seed.
pub fn draw(template: &Scenario, seed: u64) -> Scenario {
    let mut rng = StdRng::seed_from_u64(seed ^ STREAM);
    let disturbed = millis(rng.gen_range(30_000..=60_000));
    let mut drawing = Drawing::new(&mut rng, template.nodes);
    drawing.load(disturbed);
    drawing.disturb(DISTURBED_START + disturbed);
    drawing.settle();
    let end = drawing.at + quiet();
    let mut scenario = template.clone().duration(end);
    scenario.draw = None;
    for (at, fault) in drawing.faults {
        scenario = scenario.at(at, fault);
    }
    scenario
}

/// How long the quiet phase lasts: past the longest bound a check gives the cluster to settle
/// (the registry's, which adds a reconcile and an anti-entropy round to membership's).
fn quiet() -> Duration {
    let bounds = Bounds::default();
    let registry = RegistryConsistent::for_simulator(&bounds).bounds().1;
    registry.max(bounds.replication).max(bounds.convergence) + secs(5)
}

/// A schedule being drawn, and what the faults so far did to the cluster.
struct Drawing<'r> {
    rng: &'r mut StdRng,
    n: usize,
    at: Duration,
    faults: Vec<(Duration, Fault)>,
    /// Slots crashed or stopped and not restarted, in order.
    down: Vec<usize>,
    /// Partitions in force.
    cuts: usize,
    /// No partition before this (a stop's goodbye is spreading).
    cut_not_before: Duration,
    /// Whether the network is something else than a LAN.
    disturbed_network: bool,
    /// When each slot's last stall ends.
    stalled_until: Vec<Duration>,
}

/// One kind of fault the disturbed phase draws from.
#[derive(Clone, Copy)]
enum Move {
    Cut,
    Heal,
    Crash,
    Restart,
    Stop,
    Stall,
    Network,
    Skew,
    Join,
    Register,
    Deregister,
    Burst,
}

/// How often each move is drawn, when it is possible.
const MOVES: [(Move, u32); 12] = [
    (Move::Cut, 4),
    (Move::Heal, 3),
    (Move::Crash, 3),
    (Move::Restart, 3),
    (Move::Stop, 1),
    (Move::Stall, 2),
    (Move::Network, 2),
    (Move::Skew, 1),
    (Move::Join, 1),
    (Move::Register, 1),
    (Move::Deregister, 1),
    (Move::Burst, 2),
];

impl<'r> Drawing<'r> {
    fn new(rng: &'r mut StdRng, n: usize) -> Self {
        Self {
            rng,
            n,
            at: Duration::ZERO,
            faults: Vec::new(),
            down: Vec::new(),
            cuts: 0,
            cut_not_before: Duration::ZERO,
            disturbed_network: false,
            stalled_until: vec![Duration::ZERO; n],
        }
    }

    fn push(&mut self, at: Duration, fault: Fault) {
        self.faults.push((at, fault));
    }

    /// The application load, through the disturbed phase: writes (some acknowledged) and
    /// registrations on every seed, agents and pub/sub on some.
    fn load(&mut self, disturbed: Duration) {
        let during = DISTURBED_START - LOAD_START + disturbed;
        let writes = Workload::new(Nodes::All, 30.0, 80, during)
            .deletes(0.15)
            .acked(0.25);
        self.push(LOAD_START, Fault::Workload(writes));
        let register = |nodes, service: &str| Fault::Register {
            nodes,
            service: service.into(),
            instances: 1,
        };
        self.push(LOAD_START, register(Nodes::All, "api"));
        let half = Nodes::Share { from: 0.0, to: 0.5 };
        self.push(LOAD_START, register(half, "billing"));
        if self.rng.gen_bool(0.5) {
            self.agents(during);
        }
        if self.rng.gen_bool(0.5) {
            self.pubsub(during);
        }
    }

    fn agents(&mut self, during: Duration) {
        let workers = AgentGroup::new(Nodes::All, "worker", 2).failure(0.005);
        self.push(LOAD_START, Fault::Agents(workers));
        let messages = AgentMessages::new(Nodes::All, 60.0, during);
        self.push(LOAD_START, Fault::AgentMessages(messages));
    }

    fn pubsub(&mut self, during: Duration) {
        let subscribe = |nodes, pattern: &str| Fault::Subscribe {
            nodes,
            pattern: pattern.into(),
        };
        self.push(LOAD_START, subscribe(Nodes::All, "orders.*.created"));
        let third = Nodes::Share {
            from: 0.3,
            to: 0.65,
        };
        self.push(LOAD_START, subscribe(third, "audit"));
        let publishes = Publishes::new(Nodes::All, &TOPICS, 60.0, during);
        self.push(LOAD_START, Fault::Publish(publishes));
    }

    /// Faults every 0.5–4 s from the disturbed phase's start to `until`.
    fn disturb(&mut self, until: Duration) {
        self.at = DISTURBED_START;
        while self.at < until {
            let chosen = self.choose();
            let fault = self.make(chosen);
            self.push(self.at, fault);
            self.at += millis(self.rng.gen_range(500..=4_000));
        }
    }

    /// A move possible now, drawn by weight.
    fn choose(&mut self) -> Move {
        let possible: Vec<(Move, u32)> = MOVES
            .iter()
            .copied()
            .filter(|&(m, _)| self.possible(m))
            .collect();
        let total: u32 = possible.iter().map(|&(_, w)| w).sum();
        let mut pick = self.rng.gen_range(0..total);
        for (m, weight) in possible {
            if pick < weight {
                return m;
            }
            pick -= weight;
        }
        Move::Stall
    }

    fn possible(&self, m: Move) -> bool {
        match m {
            Move::Cut => self.cuts < 2 && self.at >= self.cut_not_before && self.n >= 2,
            Move::Heal => self.cuts > 0,
            Move::Stop if self.cuts > 0 || self.all_stalled() => false,
            Move::Crash | Move::Stop => self.down.len() < self.down_max(),
            Move::Restart => !self.down.is_empty(),
            Move::Join => self.up().len() >= 2,
            _ => true,
        }
    }

    /// At most a quarter of the cluster down at once, and at least one node may be.
    fn down_max(&self) -> usize {
        (self.n / 4).max(1).min(self.n - 1)
    }

    fn all_stalled(&self) -> bool {
        self.up().iter().all(|&s| self.stalled_until[s] >= self.at)
    }

    fn up(&self) -> Vec<usize> {
        (0..self.n).filter(|s| !self.down.contains(s)).collect()
    }

    fn make(&mut self, m: Move) -> Fault {
        match m {
            Move::Cut => self.cut(),
            Move::Heal => {
                self.cuts = 0;
                Fault::Heal
            }
            Move::Crash => Fault::Crash(Nodes::List(self.take_down())),
            Move::Stop => self.stop(),
            Move::Restart => self.restart(),
            Move::Stall => self.stall(),
            Move::Network => self.network(),
            Move::Skew => self.skew(),
            Move::Join => self.join(),
            Move::Register | Move::Deregister => self.registration(m),
            Move::Burst => self.burst(),
        }
    }

    /// Some random slots out of `from`: at least one, at most `max`.
    fn some(&mut self, from: &[usize], max: usize) -> Vec<usize> {
        let count = self.rng.gen_range(1..=max.clamp(1, from.len()));
        let mut picked: Vec<usize> = from.choose_multiple(self.rng, count).copied().collect();
        picked.sort_unstable();
        picked
    }

    /// A partition: a random two-sided split (a minority or a majority cut off), one node
    /// isolated, or a one-way cut.
    fn cut(&mut self) -> Fault {
        self.cuts += 1;
        let all: Vec<usize> = (0..self.n).collect();
        let side = match self.rng.gen_range(0..3) {
            0 => self.some(&all, 1),
            _ => self.some(&all, self.n - 1),
        };
        let rest: Vec<usize> = all.into_iter().filter(|s| !side.contains(s)).collect();
        let (side, rest) = (Nodes::List(side), Nodes::List(rest));
        match self.rng.gen_range(0..4) {
            0 => Fault::PartitionOneWay(side, rest),
            1 => Fault::PartitionOneWay(rest, side),
            _ => Fault::Partition(side, rest),
        }
    }

    /// Some running nodes, marked down.
    fn take_down(&mut self) -> Vec<usize> {
        let up = self.up();
        let room = self.down_max() - self.down.len();
        let picked = self.some(&up, room);
        self.down.extend(&picked);
        picked
    }

    /// A running node, not stalled, leaves: a stalled node would shut down before it could say
    /// goodbye (`--nodes 5 --seed 237` stopped one mid-stall), which is a crash, not a stop.
    fn stop(&mut self) -> Fault {
        self.cut_not_before = self.at + LEAVE_GRACE + AFTER_STOP;
        let at = self.at;
        let up: Vec<usize> = self
            .up()
            .into_iter()
            .filter(|&s| self.stalled_until[s] < at)
            .collect();
        let picked = self.some(&up, 1);
        self.down.extend(&picked);
        Fault::Stop(Nodes::List(picked))
    }

    fn restart(&mut self) -> Fault {
        let down = self.down.clone();
        let picked = self.some(&down, down.len());
        self.down.retain(|s| !picked.contains(s));
        let identity = self.identity();
        Fault::Restart(Nodes::List(picked), identity)
    }

    fn identity(&mut self) -> Identity {
        if self.rng.gen_bool(0.6) {
            Identity::Same
        } else {
            Identity::New
        }
    }

    fn stall(&mut self) -> Fault {
        let up = self.up();
        let picked = self.some(&up, 1);
        let ms = self.rng.gen_range(200..=STALL_MAX.as_millis() as u64);
        self.stalled_until[picked[0]] = self.at + millis(ms);
        Fault::Stall(Nodes::List(picked), millis(ms))
    }

    /// A LAN, a flaky network, or a lossy one (15 % loss).
    fn network(&mut self) -> Fault {
        let model = match self.rng.gen_range(0..3) {
            0 => LinkModel::lan(),
            1 => LinkModel::flaky(),
            _ => LinkModel {
                loss: 0.15,
                ..LinkModel::flaky()
            },
        };
        self.disturbed_network = model != LinkModel::lan();
        Fault::Network(model)
    }

    /// Up to a quarter of the clocks stepped by up to 1.5 s and drifting by up to 400 ppm: far
    /// inside the replication's allowed drift (60 s).
    fn skew(&mut self) -> Fault {
        let all: Vec<usize> = (0..self.n).collect();
        let nodes = Nodes::List(self.some(&all, self.n.div_ceil(4)));
        Fault::ClockSkew {
            nodes,
            offset_us: self.rng.gen_range(-1_500_000..=1_500_000),
            drift_ppm: self.rng.gen_range(-400..=400),
        }
    }

    /// A running node told to join again through another.
    fn join(&mut self) -> Fault {
        let up = self.up();
        let pair = self.some(&up, 2);
        let via = if pair.len() == 2 { pair[1] } else { up[0] };
        let joiner = up.iter().copied().find(|&s| s != via).unwrap_or(pair[0]);
        Fault::Join(Nodes::One(joiner), via)
    }

    fn registration(&mut self, m: Move) -> Fault {
        let all: Vec<usize> = (0..self.n).collect();
        let nodes = Nodes::List(self.some(&all, self.n.div_ceil(3)));
        let service = if self.rng.gen_bool(0.5) {
            "api"
        } else {
            "billing"
        };
        match m {
            Move::Deregister => Fault::Deregister {
                nodes,
                service: service.into(),
            },
            _ => Fault::Register {
                nodes,
                service: service.into(),
                instances: 1,
            },
        }
    }

    /// One node writes (or deletes) a run of keys, acknowledged.
    fn burst(&mut self) -> Fault {
        let up = self.up();
        let writer = self.some(&up, 1)[0];
        let start = self.rng.gen_range(0..80);
        let writes = Writes::new(Nodes::One(writer), start..start + 10).acked();
        if self.rng.gen_bool(0.25) {
            Fault::Delete(writes)
        } else {
            Fault::Write(writes)
        }
    }

    /// The end of the disturbed phase: partitions healed, a LAN again, and each down node
    /// restarted or not by a coin flip (some stay down for good).
    fn settle(&mut self) {
        if self.cuts > 0 {
            self.push(self.at, Fault::Heal);
        }
        if self.disturbed_network {
            self.push(self.at, Fault::Network(LinkModel::lan()));
        }
        let down = std::mem::take(&mut self.down);
        for slot in down {
            if self.rng.gen_bool(0.5) {
                let identity = self.identity();
                self.push(self.at, Fault::Restart(Nodes::One(slot), identity));
            }
        }
    }
}
