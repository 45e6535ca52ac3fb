//! Workloads that run on many nodes at once, so need neither leases nor a quorum:
//! [`Kind::Replicated`] runs one instance on every eligible member (by tags, once
//! `min_members` eligible members are seen), [`Kind::Local`] one on this node only, for as long
//! as it is declared here. Each is instance 0 of its workload on each node that runs it; they
//! start and stop with the same events as singletons and shards.

use std::collections::BTreeSet;
use std::time::Duration;

use super::rendezvous::carries;
use super::{Instance, Kind, Placement, PlacementEvent, StopReason, WorkloadSpec};

impl WorkloadSpec {
    /// One instance on every member that carries `require`'s tags.
    pub fn replicated() -> Self {
        Self {
            kind: Kind::Replicated,
            ..Self::singleton()
        }
    }

    /// One instance on this node only.
    pub fn local() -> Self {
        Self {
            kind: Kind::Local,
            ..Self::singleton()
        }
    }

    /// Whether each node runs its own instance (no uniqueness, no leases).
    pub fn per_node(&self) -> bool {
        matches!(self.kind, Kind::Replicated | Kind::Local)
    }
}

impl Placement {
    /// Whether this node should run its own instance of `spec` now.
    fn runs_own(&self, spec: &WorkloadSpec) -> bool {
        if self.leaving {
            return false;
        }
        match spec.kind {
            Kind::Local => true,
            Kind::Replicated => {
                let me_eligible = self
                    .candidates()
                    .any(|(id, _, tags)| id == self.me.node && carries(tags, &spec.require));
                let eligible = self
                    .candidates()
                    .filter(|(_, _, tags)| carries(tags, &spec.require))
                    .count();
                me_eligible && eligible >= spec.min_members.max(1)
            }
            Kind::Singleton | Kind::Sharded { .. } => false,
        }
    }

    /// Starts and stops this node's own instances of per-node workloads.
    pub(super) fn decide_per_node(&mut self) {
        let should: BTreeSet<Instance> = self
            .workloads
            .iter()
            .filter(|(_, spec)| spec.per_node() && self.runs_own(spec))
            .map(|(name, _)| Instance::new(name, 0))
            .collect();
        let gone: Vec<Instance> = self.per_node.difference(&should).cloned().collect();
        for instance in gone {
            self.per_node.remove(&instance);
            let reason = if !self.workloads.contains_key(&instance.workload) {
                StopReason::Removed
            } else if self.leaving {
                StopReason::Leaving
            } else {
                StopReason::Moved
            };
            self.stats.count_stop(reason);
            self.events.push(PlacementEvent::Stop { instance, reason });
        }
        let new: Vec<Instance> = should.difference(&self.per_node).cloned().collect();
        for instance in new {
            self.per_node.insert(instance.clone());
            self.stats.started += 1;
            self.events.push(PlacementEvent::Start {
                instance,
                waited: Duration::ZERO,
            });
        }
    }

    /// Stops every per-node instance (a new life of this node starts them again).
    pub(super) fn stop_per_node(&mut self, reason: StopReason) {
        for instance in std::mem::take(&mut self.per_node) {
            self.stats.count_stop(reason);
            self.events.push(PlacementEvent::Stop { instance, reason });
        }
    }

    /// The per-node instances running here.
    pub fn running_per_node(&self) -> impl Iterator<Item = &Instance> {
        self.per_node.iter()
    }
}
