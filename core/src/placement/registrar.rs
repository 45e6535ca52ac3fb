//! The registrar side of placement: every member keeps, for each instance, which life claimed it
//! and until when it promised not to register anyone else. A claimant may run an instance only
//! while a quorum of registrars hold it for it, so two claimants never both hold a quorum: any
//! two quorums share a registrar, and a registrar holds one claimant per instance at a time.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::Instance;
use crate::time::Instant;
use crate::vars::Life;
use crate::NodeId;

/// One member's registrations.
#[derive(Debug)]
pub struct Registrar {
    /// Instance → (holder, promised until, on our clock).
    held: BTreeMap<Instance, (Life, Instant)>,
    /// The last (generation, round) taken from each claimant node: a round of an older life,
    /// or an older round, is a late duplicate and ignored (it must not release what a newer
    /// round claims).
    rounds: BTreeMap<NodeId, (u64, u64)>,
    /// How long a registration lasts after the round that made it arrived.
    lease: Duration,
    /// A registrar that just started does not know what its previous life promised: it grants
    /// nothing until every such promise has run out.
    quiet_until: Instant,
}

impl Registrar {
    /// A registrar started at `now`.
    pub fn new(now: Instant, lease: Duration) -> Self {
        Self {
            held: BTreeMap::new(),
            rounds: BTreeMap::new(),
            lease,
            quiet_until: now + lease,
        }
    }

    /// Takes claimant `life`'s round `round` at `now`: releases what the claimant's node no
    /// longer claims (a newer life replaces the older: the older one is dead, or stopped
    /// everything before renewing), registers each claimed instance nobody else holds, and
    /// returns those. `None` for a late duplicate.
    pub fn claim(
        &mut self,
        now: Instant,
        life: Life,
        round: u64,
        claims: &BTreeSet<Instance>,
    ) -> Option<Vec<Instance>> {
        let stamp = (life.generation, round);
        if self
            .rounds
            .get(&life.node)
            .is_some_and(|last| *last >= stamp)
        {
            return None;
        }
        self.rounds.insert(life.node, stamp);
        // A release takes effect at once: the claimant stopped the instance before it sent
        // the round that leaves it out.
        self.held
            .retain(|instance, (holder, _)| holder.node != life.node || claims.contains(instance));
        if now < self.quiet_until {
            return Some(Vec::new());
        }
        let until = now + self.lease;
        let mut granted = Vec::new();
        for instance in claims {
            let free = match self.held.get(instance) {
                Some((holder, promised)) => {
                    let ran_out = *promised <= now && !fault_on!(PlacementRegistrationsNeverExpire);
                    holder.node == life.node || ran_out || fault_on!(PlacementGrantsHeld)
                }
                None => true,
            };
            if free {
                self.held.insert(instance.clone(), (life, until));
                granted.push(instance.clone());
            }
        }
        Some(granted)
    }

    /// Drops registrations whose promise ran out, and the rounds of lives holding nothing.
    pub fn expire(&mut self, now: Instant) {
        if !fault_on!(PlacementRegistrationsNeverExpire) {
            self.held.retain(|_, (_, until)| *until > now);
        }
        // Rounds of idle nodes are kept so late duplicates stay recognised; past this many
        // nodes the idle ones go (a bound on memory under churn of node ids).
        if self.rounds.len() > 4096 {
            let holding: BTreeSet<NodeId> = self.held.values().map(|(l, _)| l.node).collect();
            self.rounds.retain(|node, _| holding.contains(node));
        }
    }

    /// Who holds `instance` and until when, if anyone.
    pub fn holder(&self, instance: &Instance) -> Option<(Life, Instant)> {
        self.held.get(instance).copied()
    }

    /// Every registration, in instance order.
    pub fn held(&self) -> impl Iterator<Item = (&Instance, &(Life, Instant))> {
        self.held.iter()
    }
}
