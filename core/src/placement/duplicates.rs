//! The run-time duplicate detector: evidence, from messages placement already exchanges, that
//! two nodes ran one singleton or shard at the same instant (which the leases should make
//! impossible, so the count should stay 0).
//!
//! A registrar answering a claimant's round says which of the claimed instances run on its own
//! node under a lease valid at that moment ([`super::PlacementMessage::Granted`]'s `running`).
//! The claimant counts a duplicate when it runs such an instance itself, under a lease valid now,
//! in a run that began before it sent that round. The reasoning needs no clocks, only cause and
//! effect: the run here began before the round was sent, the round was received before the
//! answer was written, and the run here is still leased now, after the answer arrived — so it
//! was running at the instant the other node said it ran the instance too.
//!
//! It is sound, not complete: overlaps on two sides of a partition (no messages) or shorter
//! than a round trip are not seen; the simulator's `one-owner` check sees those.

use std::collections::{BTreeMap, BTreeSet};

use super::Instance;
use crate::NodeId;

/// What the detector keeps: the first round sent in each run here, and what it reported.
#[derive(Debug, Default)]
pub(crate) struct Duplicates {
    /// Instance running here → the first round number sent after its run began.
    first_round: BTreeMap<Instance, u64>,
    /// (instance, other node) already counted in the present run of the instance here.
    reported: BTreeSet<(Instance, NodeId)>,
    /// Duplicates detected so far.
    pub(crate) detected: u64,
}

impl Duplicates {
    /// A run of `instance` began here; `next_round` is the number the next round sent gets.
    pub(crate) fn started(&mut self, instance: &Instance, next_round: u64) {
        self.first_round.insert(instance.clone(), next_round);
    }

    /// The run of `instance` here ended.
    pub(crate) fn stopped(&mut self, instance: &Instance) {
        self.first_round.remove(instance);
        self.reported.retain(|(i, _)| i != instance);
    }

    /// Registrar `from` answered our round `round` saying it runs `instance`; `leased_here` is
    /// whether it runs here under a lease valid now. Returns whether that is a new duplicate.
    pub(crate) fn reported_running(
        &mut self,
        from: NodeId,
        round: u64,
        instance: &Instance,
        leased_here: bool,
    ) -> bool {
        let ran_before_round = self
            .first_round
            .get(instance)
            .is_some_and(|first| *first <= round);
        if !(leased_here && ran_before_round) {
            return false;
        }
        let new = self.reported.insert((instance.clone(), from));
        if new {
            self.detected += 1;
        }
        new
    }
}
