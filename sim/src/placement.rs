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

use std::collections::BTreeMap;

use foundation_core::placement::{Instance, PlacementEvent, WorkloadSpec};

use crate::world::World;

/// The workloads the application on every node declares, and what the cores decided.
#[derive(Default)]
pub struct Placements {
    workloads: BTreeMap<String, WorkloadSpec>,
    /// (world µs, slot, decision), since the last take.
    pub(crate) events: Vec<(u64, usize, PlacementEvent)>,
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

    /// Declares every workload on the core in `slot`, if it is up.
    pub(crate) fn declare_placements(&mut self, slot: usize) {
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

    /// `one-owner` and `no-minority-owner`, at the world's current instant.
    pub fn after_step(&mut self, world: &World) {
        let now = world.now_us();
        let runners = world.placement_runners();
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
