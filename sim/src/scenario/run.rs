//! Runs one scenario with one seed: builds the world, applies faults at their times, steps the
//! world, feeds every hook of every invariant, and writes the report.

use std::panic::{self, AssertUnwindSafe};

use super::sessions::{Found, SessionRun, CHECKS as SESSION_CHECKS};
use super::{Scenario, Scheduled};
use crate::cache::CacheDriver;
use crate::faults::{Fault, Nodes};
use crate::invariants::agents::{AgentRequests, AgentsVanish, SupervisorIntensity};
use crate::invariants::pubsub::Delivery;
use crate::invariants::registry::RegistryConsistent;
use crate::invariants::rpc::CallsEnd;
use crate::invariants::{self, Check, Invariant, Measurements};
use crate::report::{
    InvariantOutcome, ReplicationReport, RunReport, TimelineEntry, Traffic, TrafficTotals,
    Violation,
};
use crate::stamps::LetOut;
use crate::views::ViewRecorder;
use crate::world::{Observed, World, WorldConfig};

/// Violations kept per invariant (the count keeps going).
const VIOLATIONS_KEPT: usize = 10;
/// Events one node may cause per simulated second before the run is stopped as a message storm
/// (a healthy node causes well under a hundred).
const EVENTS_PER_NODE_SECOND_MAX: u64 = 20_000;

/// How to run.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Keep the trace lines in the report.
    pub keep_trace: bool,
    /// Record every node's view over time, for pictures ([`crate::views`]).
    pub record_views: bool,
}

/// Runs `scenario` with `seed`. A panic anywhere inside is caught and reported as a failure of
/// the `no-panics` invariant.
pub fn run(scenario: &Scenario, seed: u64, options: &RunOptions) -> RunReport {
    let started = std::time::Instant::now();
    let scenario = &*scenario.for_seed(seed);
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
        Runner::new(scenario, seed, options).run()
    }));
    let mut report = outcome.unwrap_or_else(|payload| panicked(scenario, seed, payload));
    // Wall time is reported, never traced: it is the one thing that differs between runs.
    report.wall_secs = started.elapsed().as_secs_f64();
    report
}

/// What a caught panic said.
pub(crate) fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

fn panicked(scenario: &Scenario, seed: u64, payload: Box<dyn std::any::Any + Send>) -> RunReport {
    let (name, replay) = (&scenario.name, replay_command(scenario, seed));
    RunReport::of_panic(name, seed, scenario.nodes, panic_message(payload), replay)
}

/// The one-line command that replays a run.
pub fn replay_command(scenario: &Scenario, seed: u64) -> String {
    format!(
        "foundation sim {} --nodes {} --seed {seed}",
        scenario.replay_source, scenario.nodes
    )
}

struct Watched {
    invariant: Box<dyn Invariant>,
    outcome: InvariantOutcome,
}

pub(crate) struct Runner<'a> {
    scenario: &'a Scenario,
    seed: u64,
    world: World,
    watched: Vec<Watched>,
    schedule: Vec<Scheduled>,
    timeline: Vec<TimelineEntry>,
    events: u64,
    next_tick: u64,
    next_fault: usize,
    traffic_start: Option<(u64, TrafficTotals)>,
    views: Option<ViewRecorder>,
    /// The scenario's cache workload, whose checks are outcomes in `watched`.
    cache: Option<CacheDriver>,
    /// The scenario's ledgers and sessions, whose checks are outcomes in `watched`.
    sessions: Option<SessionRun>,
    /// The last step's membership events, its memory kept for the next ones.
    observed: Vec<Observed>,
    /// The ops nodes sent since the last step, its memory kept likewise.
    let_out: Vec<LetOut>,
}

impl<'a> Runner<'a> {
    pub(crate) fn new(scenario: &'a Scenario, seed: u64, options: &RunOptions) -> Self {
        let mut world = World::new(WorldConfig {
            seed,
            nodes: scenario.nodes,
            membership: scenario.membership.clone(),
            network: scenario.network.clone(),
            keep_trace: options.keep_trace,
        });
        if let Some(replication) = &scenario.replication {
            world.set_replication(replication.clone());
        }
        if let Some(storage) = &scenario.storage {
            world.set_storage(storage.clone());
        }
        world.set_hosts_survive_crashes(scenario.hosts_survive_crashes);
        world.set_join_retry(scenario.join_retry);
        let mut all = invariants::defaults(&scenario.bounds, &scenario.membership);
        if scenario.has_writes() {
            all.extend(invariants::replication_defaults(&scenario.bounds));
            world.keep_let_out();
        }
        let registers = scenario
            .schedule
            .iter()
            .any(|s| matches!(s.fault, Fault::Register { .. }));
        if registers {
            all.push(Box::new(RegistryConsistent::for_simulator(
                &scenario.bounds,
            )));
        }
        let calls = scenario
            .schedule
            .iter()
            .any(|s| matches!(s.fault, Fault::Calls(_)));
        if calls {
            all.push(Box::new(CallsEnd::new(&scenario.bounds)));
        }
        let publishes = scenario
            .schedule
            .iter()
            .any(|s| matches!(s.fault, Fault::Publish(_)));
        if publishes {
            all.push(Box::new(Delivery::new()));
        }
        let spawns = scenario
            .schedule
            .iter()
            .any(|s| matches!(s.fault, Fault::Agents(_)));
        if spawns {
            all.push(Box::new(AgentsVanish::new(&scenario.bounds)));
            all.push(Box::new(AgentRequests::new()));
            all.push(Box::new(SupervisorIntensity::new()));
        }
        all.extend(scenario.extra.iter().map(|make| make()));
        let mut watched: Vec<Watched> = all
            .into_iter()
            .map(|invariant| {
                let outcome = InvariantOutcome {
                    name: invariant.name().into(),
                    violations: 0,
                    first: Vec::new(),
                };
                Watched { invariant, outcome }
            })
            .collect();
        let cache = scenario.cache.clone().map(CacheDriver::new);
        if let Some(driver) = &cache {
            watched.extend(driver.checks().into_iter().map(|name| Watched {
                invariant: Box::new(Nothing),
                outcome: InvariantOutcome {
                    name: (*name).into(),
                    violations: 0,
                    first: Vec::new(),
                },
            }));
        }
        let sessions = scenario.sessions.clone().filter(|w| !w.is_empty());
        let sessions = sessions.map(|w| SessionRun::new(scenario, w));
        if sessions.is_some() {
            watched.extend(SESSION_CHECKS.iter().map(|name| Watched {
                invariant: Box::new(Nothing),
                outcome: InvariantOutcome {
                    name: (*name).into(),
                    violations: 0,
                    first: Vec::new(),
                },
            }));
        }
        let mut schedule = scenario.schedule.clone();
        // Stable: faults at the same time apply in the order the scenario lists them.
        schedule.sort_by_key(|s| s.at);
        Self {
            scenario,
            seed,
            world,
            watched,
            schedule,
            timeline: Vec::new(),
            events: 0,
            next_tick: scenario.bounds.interval.as_micros().max(1) as u64,
            next_fault: 0,
            traffic_start: None,
            views: options
                .record_views
                .then(|| ViewRecorder::new(scenario.duration.as_micros() as u64, scenario.nodes)),
            cache,
            sessions,
            observed: Vec::new(),
            let_out: Vec::new(),
        }
    }

    fn run(mut self) -> RunReport {
        self.begin();
        let end_us = self.end_us();
        self.run_until(end_us);
        self.end()
    }

    /// Has every node join (the start of every run).
    pub(crate) fn begin(&mut self) {
        self.apply(&Fault::Join(Nodes::All, 0));
    }

    /// When the scenario ends, in microseconds.
    pub(crate) fn end_us(&self) -> u64 {
        self.scenario.duration.as_micros() as u64
    }

    /// Runs every fault, tick and event due up to `until_us` (no further than the scenario's
    /// end), then moves the clock to it. False once the event budget is spent.
    pub(crate) fn run_until(&mut self, until_us: u64) -> bool {
        let end_us = self.end_us();
        let until_us = until_us.min(end_us);
        let tick_us = self.tick_us();
        let budget = EVENTS_PER_NODE_SECOND_MAX
            * self.scenario.nodes as u64
            * end_us.div_ceil(1_000_000).max(1);
        loop {
            let event = self.world.next_time().unwrap_or(u64::MAX);
            let fault = self
                .schedule
                .get(self.next_fault)
                .map_or(u64::MAX, |s| s.at.as_micros() as u64);
            let cache = self.cache.as_ref().map_or(u64::MAX, CacheDriver::next_us);
            let sessions = self
                .sessions
                .as_ref()
                .map_or(u64::MAX, |s| s.next_us(&self.world));
            if event
                .min(fault)
                .min(self.next_tick)
                .min(cache)
                .min(sessions)
                > until_us
            {
                break;
            }
            let beside = event.min(fault).min(self.next_tick);
            if sessions < beside && sessions <= cache {
                self.world.advance_to(sessions);
                self.drive_sessions(|s, world| s.act(world));
            } else if cache < event && cache < fault && cache < self.next_tick {
                self.world.advance_to(cache);
                self.drive_cache();
            } else if fault <= event && fault <= self.next_tick {
                self.world.advance_to(fault);
                let scheduled = self.schedule[self.next_fault].fault.clone();
                self.apply(&scheduled);
                self.next_fault += 1;
            } else if self.next_tick < event {
                self.world.advance_to(self.next_tick);
                self.hook(|inv, world| inv.on_tick(world));
                if let Some(views) = &mut self.views {
                    views.sample(&self.world);
                }
                self.next_tick += tick_us;
            } else if !self.step(budget) {
                return false;
            }
        }
        self.world.advance_to(until_us);
        true
    }

    fn tick_us(&self) -> u64 {
        self.scenario.bounds.interval.as_micros().max(1) as u64
    }

    /// The world, for a driver that runs something beside it (a federation gateway).
    pub(crate) fn world_mut(&mut self) -> &mut World {
        &mut self.world
    }

    /// Runs the end-of-run checks and writes the report.
    pub(crate) fn end(mut self) -> RunReport {
        self.world.advance_to(self.end_us());
        self.hand_let_out();
        self.hook(|inv, world| inv.at_end(world));
        self.drive_sessions(|s, world| {
            let mut found = s.poll(world);
            found.extend(s.at_end());
            found
        });
        self.finish()
    }

    /// Runs one event; false when the event budget is spent.
    fn step(&mut self, budget: u64) -> bool {
        let from_us = self.scenario.traffic_from.as_micros() as u64;
        if self.traffic_start.is_none() && self.world.next_time().is_some_and(|t| t >= from_us) {
            self.traffic_start = Some((from_us, TrafficTotals::of(&self.world)));
        }
        self.events += 1;
        if self.events > budget {
            let message =
                format!("more than {budget} events: a message storm; the run was stopped");
            self.record("event-budget", message);
            return false;
        }
        if let Some(slot) = self.world.step() {
            self.hook(|inv, world| inv.after_step(world, slot));
        }
        // The carrier learns what the step did (answers, commits, crashes) at once.
        self.drive_sessions(|s, world| s.poll(world));
        // Most steps emit no membership event: nothing to swap for them.
        if self.world.has_observed() {
            let mut observed = std::mem::take(&mut self.observed);
            self.world.swap_observed(&mut observed);
            for event in &observed {
                self.hook(|inv, world| inv.on_event(world, event));
            }
            self.observed = observed;
        }
        self.hand_let_out();
        true
    }

    /// Hands the invariants the ops nodes sent since the last call: in steps, and in what
    /// ran between them (a restart's first batch, a workload's writes).
    fn hand_let_out(&mut self) {
        if !self.world.has_let_out() {
            return;
        }
        let mut let_out = std::mem::take(&mut self.let_out);
        self.world.swap_let_out(&mut let_out);
        for op in &let_out {
            self.hook(|inv, world| inv.on_let_out(world, op));
        }
        self.let_out = let_out;
    }

    fn apply(&mut self, fault: &Fault) {
        let at_secs = self.world.now_us() as f64 / 1e6;
        match self.world.apply(fault, &self.scenario.groups) {
            Ok(slots) => {
                self.timeline.push(TimelineEntry {
                    at_secs,
                    what: fault.to_string(),
                });
                for w in &mut self.watched {
                    w.invariant.on_fault(&self.world, fault, &slots);
                }
            }
            Err(problem) => self.record("scenario", format!("{fault}: {problem}")),
        }
    }

    /// One act of the cache workload; its checks' violations go to their outcomes.
    fn drive_cache(&mut self) {
        let Some(driver) = &mut self.cache else {
            return;
        };
        for (name, message) in driver.act(&mut self.world) {
            self.violated(name, message);
        }
    }

    /// Runs `call` on the scenario's sessions, if it has any; its violations go to their
    /// outcomes.
    fn drive_sessions(&mut self, call: impl FnOnce(&mut SessionRun, &mut World) -> Vec<Found>) {
        let Some(sessions) = &mut self.sessions else {
            return;
        };
        for (name, message) in call(sessions, &mut self.world) {
            self.violated(name, message);
        }
    }

    /// A violation of the driver-fed check `name` now (a new outcome when nothing watches it).
    fn violated(&mut self, name: &str, message: String) {
        let at_secs = self.world.now_us() as f64 / 1e6;
        let watched = self.watched.iter_mut().find(|w| w.outcome.name == name);
        let Some(w) = watched else {
            return self.record(name, message);
        };
        w.outcome.violations += 1;
        if w.outcome.first.len() < VIOLATIONS_KEPT {
            w.outcome.first.push(Violation { at_secs, message });
        }
    }

    fn hook(&mut self, mut call: impl FnMut(&mut dyn Invariant, &World) -> Check) {
        let at_secs = self.world.now_us() as f64 / 1e6;
        for w in &mut self.watched {
            if let Err(message) = call(w.invariant.as_mut(), &self.world) {
                w.outcome.violations += 1;
                if w.outcome.first.len() < VIOLATIONS_KEPT {
                    w.outcome.first.push(Violation { at_secs, message });
                }
            }
        }
    }

    /// A violation that belongs to no invariant (a bad scenario, a storm).
    fn record(&mut self, name: &str, message: String) {
        let at_secs = self.world.now_us() as f64 / 1e6;
        self.timeline.push(TimelineEntry {
            at_secs,
            what: format!("{name}: {message}"),
        });
        let violation = Violation { at_secs, message };
        self.watched.push(Watched {
            invariant: Box::new(Nothing),
            outcome: InvariantOutcome {
                name: name.into(),
                violations: 1,
                first: vec![violation],
            },
        });
    }

    /// Per-node traffic from the scenario's `traffic_from` to now.
    fn traffic(&self) -> Traffic {
        let (start_us, start) = self.traffic_start.unwrap_or_default();
        let seconds = self.world.now_us().saturating_sub(start_us) as f64 / 1e6;
        let end = TrafficTotals::of(&self.world);
        Traffic::between(start, end, self.scenario.nodes, seconds)
    }

    fn finish(mut self) -> RunReport {
        let traffic = self.traffic();
        let mut measurements = Measurements::default();
        for w in &self.watched {
            w.invariant.measure(&mut measurements);
        }
        measurements.cache = self.cache.as_ref().map(|d| d.counts().clone());
        measurements.sessions = self.sessions.as_ref().map(SessionRun::counts);
        let replication = self
            .scenario
            .has_writes()
            .then(|| ReplicationReport::of(&self.world, &measurements));
        let mut timeline = self.timeline;
        milestones(&measurements, &mut timeline);
        let simulated_secs = self.world.now_us() as f64 / 1e6;
        let invariants: Vec<InvariantOutcome> =
            self.watched.into_iter().map(|w| w.outcome).collect();
        let mut trace = self.world.take_trace();
        let views = self.views.map(|v| v.finish(&self.world));
        RunReport {
            scenario: self.scenario.name.clone(),
            seed: self.seed,
            nodes: self.scenario.nodes,
            passed: invariants.iter().all(|i| i.violations == 0),
            simulated_secs,
            wall_secs: 0.0,
            timeline,
            traffic,
            network: self.world.network().stats().clone(),
            measurements,
            replication,
            invariants,
            panic: None,
            trace_hash: trace.hash(),
            trace_lines: trace.len(),
            trace: trace.take_lines(),
            views,
            replay: replay_command(self.scenario, self.seed),
        }
    }
}

/// Adds convergence and detection milestones to the timeline, in time order.
fn milestones(m: &Measurements, timeline: &mut Vec<TimelineEntry>) {
    for c in &m.convergence {
        let what = match c.took_secs {
            Some(t) => format!("converged after {t:.2}s ({})", c.after),
            None => format!("did not converge ({})", c.after),
        };
        timeline.push(TimelineEntry {
            at_secs: c.at_secs + c.took_secs.unwrap_or(0.0),
            what,
        });
    }
    for r in &m.replication {
        let what = match r.took_secs {
            Some(t) => format!("replicas equal after {t:.2}s ({})", r.after),
            None => format!("replicas did not converge ({})", r.after),
        };
        timeline.push(TimelineEntry {
            at_secs: r.at_secs + r.took_secs.unwrap_or(0.0),
            what,
        });
    }
    for d in m.detections.iter() {
        if let Some(all) = d.all_secs {
            let what = format!(
                "n{} seen {} by all {} survivors after {all:.2}s",
                d.node,
                if d.graceful { "gone" } else { "failed" },
                d.observers
            );
            timeline.push(TimelineEntry {
                at_secs: d.at_secs + all,
                what,
            });
        }
    }
    timeline.sort_by(|a, b| a.at_secs.total_cmp(&b.at_secs));
}

/// Placeholder for violations recorded by the runner itself.
struct Nothing;

impl Invariant for Nothing {
    fn name(&self) -> &'static str {
        "runner"
    }
}
