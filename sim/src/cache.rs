//! Caches in the simulator: a cache workload any scenario can run, and its two checks.
//!
//! A scenario with a cache workload (`[cache]` in a scenario file, see
//! [`crate::scenario::file`]) has every node declare a partitioned cache (with a short TTL,
//! so keys are computed again and again) and, at every start, declare it again. From its start
//! time on, a seeded stream of `get_or_compute`, `put` and `get` calls on a few skewed keys
//! runs on random live nodes while the scenario's faults crash and restart nodes, so the
//! owners of keys move under the callers. Compute functions take a random virtual time, some
//! past their deadline.
//!
//! - `cache-single-flight`: no two computations of one key granted by the same owner (one life
//!   of a node) run at once. A computation runs on its node from its `Run` event to its
//!   `RunEnded` event or the end of that node's life.
//! - `cache-near-fresh`: a node never serves a value of an owner older than a version whose
//!   invalidation from that owner already reached it.
//!
//! - `cache-one-compute`, with `quorum = true` in `[cache]` (the cache's quorum rule on): no two
//!   computations of one key run at once anywhere in the cluster, whoever granted them.
//!
//! `cache-churn` (`sim/scenarios/cache-churn.toml`, also `--scenario cache-churn`) is the
//! scenario made for the first two: 5 nodes whose owners crash and restart; `cache-partition`
//! (`sim/scenarios/cache-partition.toml`) for the third: partitions and a restart under the
//! quorum rule. Each check fails with its fault switch on (`CacheFlightAdmitsAll`,
//! `CacheNearIgnoresInvalidation`, `CacheQuorumNoFence`; `tests/fault_switches.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use foundation_core::cache::{CacheEvent, CacheSettings, MemoryStore, Mode, QuorumRule};
use foundation_core::vars::Life;
use serde::Serialize;

use crate::scenario::{file, RunOptions, Scenario};
use crate::world::World;

/// The scenario's name.
pub const SCENARIO: &str = "cache-churn";
/// The cache every node declares.
pub const CACHE: &str = "churn";
/// The `cache-churn` scenario file.
pub const SCENARIO_FILE: &str = include_str!("../scenarios/cache-churn.toml");
/// The checks' names, as reports show them.
pub const CHECKS: [&str; 2] = ["cache-single-flight", "cache-near-fresh"];
/// The check a workload with the quorum rule adds.
pub const QUORUM_CHECK: &str = "cache-one-compute";
/// The `cache-partition` scenario file.
pub const PARTITION_FILE: &str = include_str!("../scenarios/cache-partition.toml");

/// A scenario's cache workload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheWorkload {
    /// Calls start then.
    pub from: Duration,
    /// Keys called (skewed: key 0 about half the time).
    pub keys: u64,
    /// The cache's TTL.
    pub ttl: Duration,
    /// Whether the cache has the quorum rule (and the run checks `cache-one-compute`).
    pub quorum: bool,
}

impl Default for CacheWorkload {
    fn default() -> Self {
        Self {
            from: Duration::from_secs(2),
            keys: 8,
            ttl: Duration::from_millis(700),
            quorum: false,
        }
    }
}

impl CacheWorkload {
    fn settings(&self) -> CacheSettings {
        let mut s = CacheSettings::new(CACHE, Mode::Partitioned).ttl(self.ttl);
        s.near_ttl = Duration::from_secs(5);
        s.lease_margin = Duration::from_millis(500);
        if self.quorum {
            // Runs as long as the callers' deadlines; 5 s for one side to see a partition or a
            // heal later than the other (the simulator's failure detection spreads about 2 s).
            s.quorum = Some(QuorumRule {
                max_run: CALL_WITHIN,
                settle: Duration::from_secs(5),
                min_members: 1,
            });
        }
        s
    }

    /// The checks a run with this workload reports.
    pub fn checks(&self) -> Vec<&'static str> {
        let mut checks = CHECKS.to_vec();
        if self.quorum {
            checks.push(QUORUM_CHECK);
        }
        checks
    }
}

/// What a cache workload did, for the run's report.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CacheCounts {
    /// Computations run.
    pub computes: u64,
    /// Values served.
    pub served: u64,
    /// Of `served`, from near copies.
    pub near_served: u64,
    /// Invalidations that reached a reader.
    pub invalidations: u64,
    /// Calls that ended in a timeout.
    pub timeouts: u64,
    /// Entries a key's new owner took over from its previous owner when ownership moved.
    pub taken_over: u64,
    /// Computations an owner refused for want of a majority (the quorum rule).
    pub refused: u64,
}

impl CacheCounts {
    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: &CacheCounts) {
        self.computes += other.computes;
        self.served += other.served;
        self.near_served += other.near_served;
        self.invalidations += other.invalidations;
        self.timeouts += other.timeouts;
        self.taken_over += other.taken_over;
        self.refused += other.refused;
    }
}

impl std::fmt::Display for CacheCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "cache: {} computes · {} served ({} from near copies) · {} invalidations reached · {} timeouts · {} entries taken over by new owners · {} computations refused without a majority",
            self.computes, self.served, self.near_served, self.invalidations, self.timeouts, self.taken_over, self.refused
        )
    }
}

/// What a run of `cache-churn` saw.
#[derive(Clone, Debug, Default)]
pub struct CacheChurnReport {
    /// The seed.
    pub seed: u64,
    /// Violations, by invariant: (simulated seconds, what), the first few of each.
    pub violations: BTreeMap<String, Vec<(f64, String)>>,
    /// What the workload did.
    pub counts: CacheCounts,
}

impl CacheChurnReport {
    /// Whether every check held.
    pub fn passed(&self) -> bool {
        self.violations.values().all(Vec::is_empty)
    }

    /// The first violation of `invariant`.
    pub fn first(&self, invariant: &str) -> Option<&(f64, String)> {
        self.violations.get(invariant).and_then(|v| v.first())
    }
}

/// The `cache-churn` scenario, from its file.
pub fn churn_scenario() -> Result<Scenario, String> {
    file::parse(SCENARIO_FILE, "sim/scenarios/cache-churn.toml").map_err(|e| e.to_string())
}

/// One seeded run of `cache-churn` (every invariant of the run, the cache checks among them).
pub fn run_churn(seed: u64) -> Result<CacheChurnReport, String> {
    run_scenario(&churn_scenario()?, seed)
}

/// One seeded run of `cache-partition`, the quorum rule's scenario.
pub fn run_partition(seed: u64) -> Result<CacheChurnReport, String> {
    let scenario = file::parse(PARTITION_FILE, "sim/scenarios/cache-partition.toml")
        .map_err(|e| e.to_string())?;
    run_scenario(&scenario, seed)
}

fn run_scenario(scenario: &Scenario, seed: u64) -> Result<CacheChurnReport, String> {
    let run = crate::scenario::run(scenario, seed, &RunOptions::default());
    if let Some(panic) = run.panic {
        return Err(panic);
    }
    let violations = run
        .invariants
        .iter()
        .map(|i| {
            let first = i.first.iter().map(|v| (v.at_secs, v.message.clone()));
            (i.name.clone(), first.collect())
        })
        .collect();
    Ok(CacheChurnReport {
        seed,
        violations,
        counts: run.measurements.cache.unwrap_or_default(),
    })
}

/// Drives a cache workload in a world: calls at seeded times, computations reported when
/// their virtual time is up, events checked.
pub struct CacheDriver {
    workload: CacheWorkload,
    /// The life each slot declared the cache in.
    declared: BTreeMap<usize, u64>,
    /// Entries each node life took over and computations it refused, as last seen.
    taken_over: BTreeMap<(usize, u64), (u64, u64)>,
    /// Computations to report: (world µs due, slot, life, request).
    due: Vec<(u64, usize, u64, u64)>,
    next_us: u64,
    value: u64,
    checker: Checker,
    counts: CacheCounts,
}

impl CacheDriver {
    /// A driver whose first call is at the workload's start.
    pub fn new(workload: CacheWorkload) -> Self {
        let next_us = workload.from.as_micros() as u64;
        Self {
            workload: workload.clone(),
            declared: BTreeMap::new(),
            taken_over: BTreeMap::new(),
            due: Vec::new(),
            next_us,
            value: 0,
            checker: Checker {
                one_compute: workload.quorum,
                ..Checker::default()
            },
            counts: CacheCounts::default(),
        }
    }

    /// When it next acts, in world µs.
    pub fn next_us(&self) -> u64 {
        self.next_us
    }

    /// The checks it reports.
    pub fn checks(&self) -> Vec<&'static str> {
        self.workload.checks()
    }

    /// What it did so far.
    pub fn counts(&self) -> &CacheCounts {
        &self.counts
    }

    /// Acts at the world's now: declares the cache on nodes that started since, reports
    /// finished computations, makes one call, and checks the events. Returns the checks'
    /// violations, as (check, what).
    pub fn act(&mut self, world: &mut World) -> Vec<(&'static str, String)> {
        let t = world.now_us();
        self.declare(world);
        self.report_computed(world, t);
        self.call(world);
        let mut violations = Vec::new();
        for (at, slot, event) in world.take_cache_events() {
            if let CacheEvent::Run { req, .. } = &event {
                // Most take 50–600 ms, one in ten outlives its 1.5 s deadline.
                let took = if world.random_below(10) == 0 {
                    2_000_000
                } else {
                    50_000 + world.random_below(550_000)
                };
                self.due
                    .push((at + took, slot, world.node(slot).life(), *req));
            }
            let found = self.checker.event(world, &mut self.counts, slot, event);
            violations.extend(found);
        }
        self.next_us = t + 10_000 + world.random_below(50_000);
        self.count_taken_over(world);
        violations
    }

    /// Takes up the live nodes' counts of entries taken over and computations refused (a
    /// node's count ends with its life, so each life's last one is kept).
    fn count_taken_over(&mut self, world: &World) {
        for (slot, node) in world.nodes().iter().enumerate() {
            let stats = node.core().and_then(|c| c.caches().stats(CACHE));
            if let Some(stats) = stats {
                self.taken_over
                    .insert((slot, node.life()), (stats.taken_over, stats.refused));
            }
        }
        self.counts.taken_over = self.taken_over.values().map(|c| c.0).sum();
        self.counts.refused = self.taken_over.values().map(|c| c.1).sum();
    }

    fn declare(&mut self, world: &mut World) {
        for slot in 0..world.nodes().len() {
            let life = world.node(slot).life();
            if world.node(slot).is_up() && self.declared.get(&slot) != Some(&life) {
                self.declared.insert(slot, life);
                let store = Arc::new(MemoryStore::new(1_000));
                let settings = self.workload.settings();
                world.with_core(slot, |core, now| core.declare_cache(now, settings, store));
            }
        }
    }

    /// Finished computations report (a node that crashed since reports nothing).
    fn report_computed(&mut self, world: &mut World, t: u64) {
        let (ready, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.due)
            .into_iter()
            .partition(|(at, ..)| *at <= t);
        self.due = later;
        for (_, slot, life, req) in ready {
            if world.node(slot).is_up_in(life) {
                self.value += 1;
                let bytes = Bytes::from(format!("c{}", self.value));
                world.with_core(slot, |core, now| {
                    core.cache_computed(now, req, Ok((bytes, None)))
                });
            }
        }
    }

    fn call(&mut self, world: &mut World) {
        let slot = world.random_below(world.nodes().len() as u64) as usize;
        // Skewed keys: key 0 about half the time.
        let keys = self.workload.keys;
        let key = format!(
            "k{}",
            world.random_below(keys).min(world.random_below(keys))
        );
        let within = CALL_WITHIN;
        let op = world.random_below(10);
        self.value += 1;
        let put = Bytes::from(format!("p{}", self.value));
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
    }
}

/// Each call's deadline.
const CALL_WITHIN: Duration = Duration::from_millis(1_500);

/// A computation: (slot, life, request).
type Runner = (usize, u64, u64);

#[derive(Default)]
struct Checker {
    /// Computations running: (granting owner, key) → (slot, life, request).
    running: BTreeMap<(Life, Bytes), BTreeSet<Runner>>,
    /// Whether to check `cache-one-compute`.
    one_compute: bool,
    /// The highest version of each owner's key whose invalidation reached each slot's life:
    /// (slot, life, owner, key) → version.
    floors: BTreeMap<(usize, u64, Life, Bytes), u64>,
}

impl Checker {
    /// Takes one event of `slot`; a violation it shows, as (check, what).
    fn event(
        &mut self,
        world: &World,
        counts: &mut CacheCounts,
        slot: usize,
        event: CacheEvent,
    ) -> Option<(&'static str, String)> {
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
                counts.computes += 1;
                let runners = self.running.entry((granted_by, key.clone())).or_default();
                runners.insert((slot, life, req));
                if runners.len() == 1 {
                    return self.one_compute_broken(&key);
                }
                (runners.len() > 1).then(|| {
                    let who: Vec<String> = runners
                        .iter()
                        .map(|(s, _, r)| format!("n{s} request {r}"))
                        .collect();
                    let what = format!(
                        "key {:?} granted by {} runs {} times at once: {}",
                        String::from_utf8_lossy(&key),
                        granted_by.node,
                        runners.len(),
                        who.join(", ")
                    );
                    ("cache-single-flight", what)
                })
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
                None
            }
            CacheEvent::InvalidationReached {
                key,
                owner,
                version,
                ..
            } => {
                counts.invalidations += 1;
                let floor = self.floors.entry((slot, life, owner, key)).or_default();
                *floor = (*floor).max(version);
                None
            }
            CacheEvent::Served {
                key,
                owner,
                version,
                near,
                ..
            } => {
                counts.served += 1;
                counts.near_served += u64::from(near);
                let floor = self.floors.get(&(slot, life, owner, key.clone()));
                floor.filter(|f| **f > version).map(|floor| {
                    let what = format!(
                        "n{slot} served key {:?} version {version} of {} after its invalidation to version {floor} reached it ({})",
                        String::from_utf8_lossy(&key),
                        owner.node,
                        if near { "near copy" } else { "owner's answer" }
                    );
                    ("cache-near-fresh", what)
                })
            }
            CacheEvent::Done { result, .. } => {
                if result == Err(foundation_core::cache::CacheError::Timeout) {
                    counts.timeouts += 1;
                }
                None
            }
        }
    }
}

impl Checker {
    /// `cache-one-compute` (when checked): a second computation of `key` runs, granted by
    /// another owner.
    fn one_compute_broken(&self, key: &Bytes) -> Option<(&'static str, String)> {
        if !self.one_compute {
            return None;
        }
        let who: Vec<String> = self
            .running
            .iter()
            .filter(|((_, k), _)| k == key)
            .flat_map(|((owner, _), runners)| {
                runners
                    .iter()
                    .map(move |(s, _, r)| format!("n{s} request {r} granted by {}", owner.node))
            })
            .collect();
        (who.len() > 1).then(|| {
            let what = format!(
                "key {:?} runs {} times at once cluster-wide: {}",
                String::from_utf8_lossy(key),
                who.len(),
                who.join(", ")
            );
            (QUORUM_CHECK, what)
        })
    }
}
