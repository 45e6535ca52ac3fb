//! Placement in the simulator: workloads every node declares (again at every start, as an
//! application does), the start/stop decisions the cores make, and the checks that placement
//! must pass under crashes, partitions and churn ([`PlacementCheck`]):
//!
//! - `one-owner`: no instance runs on two nodes at any instant. A node counts as running an
//!   instance from its start decision until its stop decision or the end of its lease,
//!   whichever is first — a crashed node runs nothing, a stalled one stops counting when its
//!   lease ends (it stops at once on waking, before anything else).
//! - `no-minority-owner`: once a side without a majority of the up nodes has been cut off for
//!   longer than the stop bound (a lease and a renewal, plus slack), it runs nothing.
//! - `owned-after-heal`: a bound after the last disturbance, every instance runs on exactly one
//!   node.
//! - `routed-delivery`: a message routed by key ([`World::route_by_key`]) is delivered only on a node
//!   that runs its instance at that instant, at most once, and its origin hears one outcome by
//!   its deadline: delivered (then it was, once), not delivered (then it was not), or
//!   unconfirmed (at most once).
//! - `handoff-state` (runs without crashes or partitions, [`PlacementCheck::state_carried`]):
//!   the application's state of each instance — here, how many messages it took — follows it
//!   through every handoff, so its owner's count is every delivery the instance ever had.

use std::collections::BTreeMap;
use std::time::Duration;

use foundation_core::placement::{
    Instance, PlacementConfig, PlacementEvent, RouteError, RouteId, WorkloadSpec,
};

use crate::world::{AppRequest, World};

/// A message the application routed by key, and what became of it.
#[derive(Clone, Debug)]
pub struct RouteRecord {
    /// Who routed it, and in which life.
    pub origin: (usize, u64),
    /// When, and its deadline, in world µs.
    pub sent_us: u64,
    /// The deadline, in world µs.
    pub deadline_us: u64,
    /// Deliveries: (world µs, slot).
    pub deliveries: Vec<(u64, usize)>,
    /// The outcome the origin heard: (world µs, outcome).
    pub outcome: Option<(u64, Result<(), RouteError>)>,
}

/// The workloads the application on every node declares, and what the cores decided.
#[derive(Default)]
pub struct Placements {
    /// Placement settings for every core (`None`: the core's defaults).
    config: Option<PlacementConfig>,
    workloads: BTreeMap<String, WorkloadSpec>,
    /// (world µs, slot, decision), since the last take.
    pub(crate) events: Vec<(u64, usize, PlacementEvent)>,
    /// Deliveries and outcomes of routed messages, for the check: (world µs, slot, event,
    /// whether the instance ran on that node when it was delivered).
    route_events: Vec<(u64, usize, PlacementEvent, bool)>,
    /// Every routed message.
    routes: BTreeMap<RouteId, RouteRecord>,
    /// The application's state of each instance on each node: messages it took.
    app_state: BTreeMap<(usize, Instance), u64>,
}

impl World {
    /// Every node declares `name` now (those up) and at every later start.
    pub fn declare_placement(&mut self, name: &str, spec: WorkloadSpec) -> Result<(), String> {
        self.placements.workloads.insert(name.to_owned(), spec);
        for slot in 0..self.nodes().len() {
            self.declare_placements(slot);
        }
        Ok(())
    }

    /// Gives every core these placement settings (split-brain policy, timing): those up now
    /// and every later start. Call before any workload is declared.
    pub fn set_placement(&mut self, config: PlacementConfig) -> Result<(), String> {
        config.validate().map_err(|e| e.to_string())?;
        self.placements.config = Some(config.clone());
        for slot in 0..self.nodes().len() {
            let set = self.with_core(slot, |core, now| core.set_placement(now, config.clone()));
            if let Some(Err(e)) = set {
                return Err(e.to_string());
            }
        }
        Ok(())
    }

    /// Declares every workload on the core in `slot`, if it is up (with the world's placement
    /// settings first, on a core just started).
    pub(crate) fn declare_placements(&mut self, slot: usize) {
        if let Some(config) = self.placements.config.clone() {
            let _ = self.with_core(slot, |core, now| core.set_placement(now, config));
        }
        let workloads: Vec<(String, WorkloadSpec)> = self
            .placements
            .workloads
            .iter()
            .map(|(n, s)| (n.clone(), s.clone()))
            .collect();
        for (name, spec) in workloads {
            // The same spec everywhere: a refusal would be a bug the checks then show.
            let _ = self.with_core(slot, |core, now| core.declare_placement(now, &name, spec));
        }
    }

    /// The application's side of a placement event on `slot`: it keeps a count of the
    /// messages each instance took as its state, hands it over when asked, and takes it up
    /// when handed one.
    pub(crate) fn placement_event(&mut self, slot: usize, event: PlacementEvent) {
        let now = self.now_us();
        let local = self.local_time(slot);
        // Judged now: the core delivers after it stopped what it stops in the same input.
        let runs = |instance: &Instance| {
            self.node(slot)
                .core()
                .is_some_and(|c| c.placement().is_running(instance, local))
        };
        let runs_here = match &event {
            PlacementEvent::Deliver { instance, .. } => runs(instance),
            _ => false,
        };
        let p = &mut self.placements;
        match &event {
            PlacementEvent::Deliver { instance, .. } => {
                *p.app_state.entry((slot, instance.clone())).or_default() += 1;
                p.route_events.push((now, slot, event.clone(), runs_here));
            }
            PlacementEvent::Routed { .. } => {
                p.route_events.push((now, slot, event.clone(), false));
            }
            PlacementEvent::EndHandoff {
                instance, state, ..
            } => {
                let count = <[u8; 8]>::try_from(state.as_ref()).map_or(0, u64::from_le_bytes);
                p.app_state.insert((slot, instance.clone()), count);
            }
            PlacementEvent::BeginHandoff { instance, .. } => {
                let count = p.app_state.get(&(slot, instance.clone())).copied();
                let state = count.unwrap_or(0).to_le_bytes().to_vec();
                let instance = instance.clone();
                self.request_after(slot, 0, AppRequest::HandOff { instance, state });
            }
            // Its state was taken at `BeginHandoff` if it was handed over; else it is lost.
            PlacementEvent::Stop { instance, .. } => {
                p.app_state.remove(&(slot, instance.clone()));
            }
            PlacementEvent::Start { .. } | PlacementEvent::Duplicate { .. } => {}
        }
        self.placements.events.push((now, slot, event));
    }

    /// The application on `slot` gives the state of `instance` it is handing over.
    pub(crate) fn hand_off(&mut self, slot: usize, instance: &Instance, state: Vec<u8>) {
        let result = self.with_core(slot, |core, now| core.hand_off(now, instance, state));
        if let Some(Err(e)) = result {
            self.note(format_args!("n{slot} hand-off of {instance} refused: {e}"));
        }
        // What the node ran is gone from it now, handed over or not.
        self.placements.app_state.remove(&(slot, instance.clone()));
    }

    /// The application on `slot` routes a message by `key` to `workload`, waiting `ttl` at
    /// most; `None` if the node is down or refused it.
    pub fn route_by_key(
        &mut self,
        slot: usize,
        workload: &str,
        key: &[u8],
        ttl: Duration,
    ) -> Option<RouteId> {
        let sent_us = self.now_us();
        let life = self.node(slot).life();
        let routed = self.with_core(slot, |core, now| {
            core.route(now, workload, key, b"m".to_vec(), ttl)
        })?;
        let id = routed.ok()?;
        let record = RouteRecord {
            origin: (slot, life),
            sent_us,
            deadline_us: sent_us + ttl.as_micros() as u64,
            deliveries: Vec::new(),
            outcome: None,
        };
        self.placements.routes.insert(id, record);
        Some(id)
    }

    /// Every routed message so far.
    pub fn routes(&self) -> &BTreeMap<RouteId, RouteRecord> {
        &self.placements.routes
    }

    /// The application's state (messages taken) of `instance` on `slot`, if it runs there.
    pub fn app_state(&self, slot: usize, instance: &Instance) -> Option<u64> {
        self.placements
            .app_state
            .get(&(slot, instance.clone()))
            .copied()
    }

    /// Start and stop decisions since the last call: (world µs, slot, decision).
    pub fn take_placement_events(&mut self) -> Vec<(u64, usize, PlacementEvent)> {
        std::mem::take(&mut self.placements.events)
    }

    /// Which up nodes run each instance now, by each node's own clock and lease.
    pub fn placement_runners(&self) -> BTreeMap<Instance, Vec<usize>> {
        let mut runners: BTreeMap<Instance, Vec<usize>> = BTreeMap::new();
        for (slot, node) in self.nodes().iter().enumerate() {
            let Some(core) = node.core() else { continue };
            let now = self.local_time(slot);
            for (instance, _) in core.placement().running() {
                if core.placement().is_running(instance, now) {
                    runners.entry(instance.clone()).or_default().push(slot);
                }
            }
        }
        runners
    }
}

/// The placement checks, fed by the test or benchmark that drives the world.
#[derive(Debug, Default)]
pub struct PlacementCheck {
    /// Every instance the run declared.
    pub instances: Vec<Instance>,
    /// Sides cut off without a majority: (since world µs, slots).
    minority: Vec<(u64, Vec<usize>)>,
    /// How long a minority side may keep running what it ran (µs).
    pub stop_bound_us: u64,
    /// Violations, as (world µs, invariant, description).
    pub violations: Vec<(u64, &'static str, String)>,
    /// Instance-steps with no owner, counted at each check (a measure, not a check).
    pub unowned_checks: u64,
}

/// How late after its deadline (world time) an outcome may come: clocks drift a little.
const OUTCOME_SLACK_US: u64 = 50_000;

impl PlacementCheck {
    /// Checks for `instances`; a minority must stop within `stop_bound_us`.
    pub fn new(instances: Vec<Instance>, stop_bound_us: u64) -> Self {
        Self {
            instances,
            stop_bound_us,
            ..Self::default()
        }
    }

    /// `slots` are cut off from a majority from now on.
    pub fn minority(&mut self, world: &World, slots: Vec<usize>) {
        self.minority.push((world.now_us(), slots));
    }

    /// Every partition healed.
    pub fn healed(&mut self) {
        self.minority.clear();
    }

    fn violation(&mut self, at: u64, invariant: &'static str, what: String) {
        if self.violations.len() < 100 {
            self.violations.push((at, invariant, what));
        }
    }

    /// `routed-delivery` for what happened in the last step: deliveries only where the
    /// instance runs and at most once, outcomes by the deadline and true to the deliveries.
    fn routes_after_step(&mut self, world: &mut World) {
        let now = world.now_us();
        for (at, slot, event, runs_here) in std::mem::take(&mut world.placements.route_events) {
            let Some(what) = route_event(world, at, slot, &event, runs_here) else {
                continue;
            };
            self.violation(at, "routed-delivery", what);
        }
        let overdue: Vec<String> = world
            .placements
            .routes
            .iter()
            .filter(|(_, r)| r.outcome.is_none() && r.deadline_us + OUTCOME_SLACK_US < now)
            .filter(|(_, r)| world.node(r.origin.0).is_up_in(r.origin.1))
            .map(|(id, r)| {
                format!(
                    "{id}: no outcome {} µs past its deadline",
                    now - r.deadline_us
                )
            })
            .collect();
        for what in overdue {
            self.violation(now, "routed-delivery", what);
        }
    }

    /// `routed-delivery`, at the end of a run: each outcome agrees with the deliveries.
    pub fn routes_settled(&mut self, world: &World) {
        let now = world.now_us();
        let wrong: Vec<String> = world
            .routes()
            .iter()
            .filter_map(|(id, r)| {
                let n = r.deliveries.len();
                let fine = match r.outcome.map(|(_, o)| o) {
                    Some(Ok(())) => n == 1,
                    Some(Err(RouteError::NotDelivered)) => n == 0,
                    Some(Err(RouteError::Unconfirmed)) | None => n <= 1,
                };
                (!fine).then(|| format!("{id}: outcome {:?} but {n} deliveries", r.outcome))
            })
            .collect();
        for what in wrong {
            self.violation(now, "routed-delivery", what);
        }
    }

    /// `handoff-state`: the owner of each instance counts every message the instance took,
    /// across every owner it had (for runs whose moves were all handoffs).
    pub fn state_carried(&mut self, world: &World) {
        let mut taken: BTreeMap<Instance, u64> = BTreeMap::new();
        for (_, slot, event) in &world.placements.events {
            if let PlacementEvent::Deliver { instance, .. } = event {
                let _ = slot;
                *taken.entry(instance.clone()).or_default() += 1;
            }
        }
        let runners = world.placement_runners();
        for (instance, total) in taken {
            let Some(&[slot]) = runners.get(&instance).map(Vec::as_slice) else {
                continue;
            };
            let counted = world.app_state(slot, &instance).unwrap_or(0);
            if counted != total {
                self.violation(
                    world.now_us(),
                    "handoff-state",
                    format!("{instance} on n{slot} counts {counted} of its {total} messages"),
                );
            }
        }
    }

    /// `one-owner` and `no-minority-owner`, at the world's current instant.
    pub fn after_step(&mut self, world: &mut World) {
        let now = world.now_us();
        let runners = world.placement_runners();
        self.routes_after_step(world);
        for (instance, slots) in &runners {
            if slots.len() > 1 && self.violations.len() < 100 {
                self.violations
                    .push((now, "one-owner", format!("{instance} runs on n{slots:?}")));
            }
        }
        for (since, side) in &self.minority {
            if now < since + self.stop_bound_us {
                continue;
            }
            for (instance, slots) in &runners {
                if let Some(slot) = slots.iter().find(|s| side.contains(s)) {
                    if self.violations.len() < 100 {
                        self.violations.push((
                            now,
                            "no-minority-owner",
                            format!(
                                "{instance} runs on n{slot}, on a minority side since {:.3}s",
                                *since as f64 / 1e6
                            ),
                        ));
                    }
                }
            }
        }
    }

    /// `owned-after-heal`: every instance runs on exactly one node now.
    pub fn exactly_one(&mut self, world: &World) {
        let runners = world.placement_runners();
        for instance in &self.instances {
            let slots = runners.get(instance).cloned().unwrap_or_default();
            if slots.len() != 1 {
                self.violations.push((
                    world.now_us(),
                    "owned-after-heal",
                    format!("{instance} runs on {} nodes: n{slots:?}", slots.len()),
                ));
            }
        }
    }

    /// Counts instances with no owner now (for failover measurements).
    pub fn count_unowned(&mut self, world: &World) {
        let runners = world.placement_runners();
        let unowned = self
            .instances
            .iter()
            .filter(|i| !runners.contains_key(i))
            .count();
        self.unowned_checks += unowned as u64;
    }

    /// The first violation of `invariant`, if any.
    pub fn first(&self, invariant: &str) -> Option<String> {
        self.violations
            .iter()
            .find(|(_, name, _)| *name == invariant)
            .map(|(at, name, what)| format!("{name} at {:.3}s: {what}", *at as f64 / 1e6))
    }
}

/// Records one routed message's delivery or outcome; says what is wrong with it, if anything.
fn route_event(
    world: &mut World,
    at: u64,
    slot: usize,
    event: &PlacementEvent,
    runs_here: bool,
) -> Option<String> {
    match event {
        PlacementEvent::Deliver { instance, id, .. } => {
            let record = world.placements.routes.get_mut(id)?;
            record.deliveries.push((at, slot));
            if !runs_here {
                return Some(format!(
                    "{id} delivered on n{slot}, where {instance} does not run"
                ));
            }
            (record.deliveries.len() > 1).then(|| {
                format!(
                    "{id} delivered {} times: {:?}",
                    record.deliveries.len(),
                    record.deliveries
                )
            })
        }
        PlacementEvent::Routed { id, outcome } => {
            let record = world.placements.routes.get_mut(id)?;
            record.outcome = Some((at, *outcome));
            (at > record.deadline_us + OUTCOME_SLACK_US).then(|| {
                format!(
                    "{id}: outcome {outcome:?} {} µs after its deadline",
                    at - record.deadline_us
                )
            })
        }
        _ => None,
    }
}
