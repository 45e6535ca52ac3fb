//! Caches in the simulator: the `cache-churn` scenario and its two checks.
//!
//! Five nodes declare a partitioned cache (with a short TTL, so keys are computed again and
//! again) and, at every start, declare it again. A seeded stream of `get_or_compute`, `put`
//! and `get` calls on a few skewed keys runs on random live nodes while nodes crash and
//! restart, so the owners of keys move under the callers. Compute functions take a random
//! virtual time, some past their deadline.
//!
//! - `cache-single-flight`: no two computations of one key granted by the same owner (one life
//!   of a node) run at once. A computation runs on its node from its `Run` event to its
//!   `RunEnded` event or the end of that node's life.
//! - `cache-near-fresh`: a node never serves a value of an owner older than a version whose
//!   invalidation from that owner already reached it.
//!
//! Each fails with its fault switch on (`CacheFlightAdmitsAll`, `CacheNearIgnoresInvalidation`;
//! `tests/fault_switches.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use foundation_core::cache::{CacheEvent, CacheSettings, MemoryStore, Mode};
use foundation_core::membership::MembershipConfig;
use foundation_core::vars::Life;

use crate::faults::{Fault, Identity, Nodes};
use crate::network::LinkModel;
use crate::world::{World, WorldConfig};

/// The scenario's name.
pub const SCENARIO: &str = "cache-churn";
/// The cache every node declares.
pub const CACHE: &str = "churn";

const NODES: usize = 5;
const KEYS: u64 = 8;
const END_US: u64 = 30_000_000;

/// What a run of `cache-churn` saw.
#[derive(Clone, Debug, Default)]
pub struct CacheChurnReport {
    /// The seed.
    pub seed: u64,
    /// Violations, by invariant: (world µs, what).
    pub violations: BTreeMap<&'static str, Vec<(u64, String)>>,
    /// Computations run.
    pub computes: u64,
    /// Values served, and how many from near copies.
    pub served: u64,
    /// Of `served`, from near copies.
    pub near_served: u64,
    /// Invalidations that reached a reader.
    pub invalidations: u64,
    /// Calls that ended in a timeout.
    pub timeouts: u64,
}

impl CacheChurnReport {
    /// Whether every check held.
    pub fn passed(&self) -> bool {
        self.violations.values().all(Vec::is_empty)
    }

    /// The first violation of `invariant`.
    pub fn first(&self, invariant: &str) -> Option<&(u64, String)> {
        self.violations.get(invariant).and_then(|v| v.first())
    }
}

fn settings() -> CacheSettings {
    let mut s = CacheSettings::new(CACHE, Mode::Partitioned).ttl(Duration::from_millis(700));
    s.near_ttl = Duration::from_secs(5);
    s.lease_margin = Duration::from_millis(500);
    s
}

/// One seeded run of `cache-churn`.
pub fn run_churn(seed: u64) -> Result<CacheChurnReport, String> {
    let mut world = World::new(WorldConfig {
        seed,
        nodes: NODES,
        membership: MembershipConfig::development(),
        network: LinkModel::lan(),
        keep_trace: false,
    });
    let no_groups = BTreeMap::new();
    world.apply(&Fault::Join(Nodes::All, 0), &no_groups)?;
    let mut report = CacheChurnReport {
        seed,
        ..CacheChurnReport::default()
    };
    let mut faults = vec![
        (7_000_000, Fault::Crash(Nodes::One(4))),
        (11_000_000, Fault::Restart(Nodes::One(4), Identity::Same)),
        (15_000_000, Fault::Crash(Nodes::One(2))),
        (17_000_000, Fault::Crash(Nodes::One(0))),
        (20_000_000, Fault::Restart(Nodes::One(2), Identity::Same)),
        (23_000_000, Fault::Restart(Nodes::One(0), Identity::Same)),
    ];
    let mut declared: BTreeMap<usize, u64> = BTreeMap::new();
    let mut check = Checker::default();
    // Computations to report: (world µs due, slot, life, request).
    let mut due: Vec<(u64, usize, u64, u64)> = Vec::new();
    let mut t = 2_000_000;
    let mut value = 0u64;
    while t < END_US {
        t += 10_000 + world.random_below(50_000);
        run_to(&mut world, t);
        while faults.first().is_some_and(|(at, _)| *at <= t) {
            let (_, fault) = faults.remove(0);
            world.apply(&fault, &no_groups)?;
        }
        for slot in 0..NODES {
            let life = world.node(slot).life();
            if world.node(slot).is_up() && declared.get(&slot) != Some(&life) {
                declared.insert(slot, life);
                let store = Arc::new(MemoryStore::new(1_000));
                world.with_core(slot, |core, _| core.declare_cache(settings(), store));
            }
        }
        // Finished computations report (a node that crashed since reports nothing).
        let (ready, later): (Vec<_>, Vec<_>) = due.into_iter().partition(|(at, ..)| *at <= t);
        due = later;
        for (_, slot, life, req) in ready {
            if world.node(slot).is_up_in(life) {
                value += 1;
                let bytes = Bytes::from(format!("c{value}"));
                world.with_core(slot, |core, now| {
                    core.cache_computed(now, req, Ok((bytes, None)))
                });
            }
        }
        let slot = world.random_below(NODES as u64) as usize;
        // Skewed keys: key 0 about half the time.
        let key = format!(
            "k{}",
            world.random_below(KEYS).min(world.random_below(KEYS))
        );
        let within = Duration::from_millis(1_500);
        let op = world.random_below(10);
        value += 1;
        let put = Bytes::from(format!("p{value}"));
        world.with_core(slot, |core, now| match op {
            0..=5 => {
                let _ = core.cache_get_or_compute(now, CACHE, key.as_bytes(), within);
            }
            6 => {
                let _ = core.cache_put(now, CACHE, key.as_bytes(), put, None);
            }
            _ => {
                let _ = core.cache_get(now, CACHE, key.as_bytes(), within);
            }
        });
        for (at, slot, event) in world.take_cache_events() {
            if let CacheEvent::Run { req, .. } = &event {
                // Most take 50–600 ms, one in ten outlives its 1.5 s deadline.
                let took = if world.random_below(10) == 0 {
                    2_000_000
                } else {
                    50_000 + world.random_below(550_000)
                };
                due.push((at + took, slot, world.node(slot).life(), *req));
            }
            check.event(&world, &mut report, at, slot, event);
        }
    }
    Ok(report)
}

fn run_to(world: &mut World, us: u64) {
    while world.next_time().is_some_and(|t| t <= us) {
        world.step();
    }
    world.advance_to(us);
}

/// A computation: (slot, life, request).
type Runner = (usize, u64, u64);

#[derive(Default)]
struct Checker {
    /// Computations running: (granting owner, key) → (slot, life, request).
    running: BTreeMap<(Life, Bytes), BTreeSet<Runner>>,
    /// The highest version of each owner's key whose invalidation reached each slot's life:
    /// (slot, life, owner, key) → version.
    floors: BTreeMap<(usize, u64, Life, Bytes), u64>,
}

impl Checker {
    fn event(
        &mut self,
        world: &World,
        report: &mut CacheChurnReport,
        at: u64,
        slot: usize,
        event: CacheEvent,
    ) {
        let life = world.node(slot).life();
        // A computation on a node whose life ended is over.
        for runners in self.running.values_mut() {
            runners.retain(|(s, l, _)| world.node(*s).is_up_in(*l));
        }
        match event {
            CacheEvent::Run {
                req,
                key,
                granted_by,
                ..
            } => {
                report.computes += 1;
                let runners = self.running.entry((granted_by, key.clone())).or_default();
                runners.insert((slot, life, req));
                if runners.len() > 1 {
                    let who: Vec<String> = runners
                        .iter()
                        .map(|(s, _, r)| format!("n{s} request {r}"))
                        .collect();
                    report
                        .violations
                        .entry("cache-single-flight")
                        .or_default()
                        .push((
                            at,
                            format!(
                                "key {:?} granted by {} runs {} times at once: {}",
                                String::from_utf8_lossy(&key),
                                granted_by.node,
                                runners.len(),
                                who.join(", ")
                            ),
                        ));
                }
            }
            CacheEvent::RunEnded {
                req,
                key,
                granted_by,
                ..
            } => {
                if let Some(runners) = self.running.get_mut(&(granted_by, key)) {
                    runners.remove(&(slot, life, req));
                }
            }
            CacheEvent::InvalidationReached {
                key,
                owner,
                version,
                ..
            } => {
                report.invalidations += 1;
                let floor = self.floors.entry((slot, life, owner, key)).or_default();
                *floor = (*floor).max(version);
            }
            CacheEvent::Served {
                key,
                owner,
                version,
                near,
                ..
            } => {
                report.served += 1;
                report.near_served += u64::from(near);
                let floor = self.floors.get(&(slot, life, owner, key.clone()));
                if let Some(floor) = floor.filter(|f| **f > version) {
                    report.violations.entry("cache-near-fresh").or_default().push((
                        at,
                        format!(
                            "n{slot} served key {:?} version {version} of {} after its invalidation to version {floor} reached it ({})",
                            String::from_utf8_lossy(&key),
                            owner.node,
                            if near { "near copy" } else { "owner's answer" }
                        ),
                    ));
                }
            }
            CacheEvent::Done { result, .. } => {
                if result == Err(foundation_core::cache::CacheError::Timeout) {
                    report.timeouts += 1;
                }
            }
        }
        report.violations.entry("cache-single-flight").or_default();
        report.violations.entry("cache-near-fresh").or_default();
    }
}
