//! The variables machine's side of [`escrow`](super::escrow): raising this life's allowance,
//! answering other lives' raises and fences, and reclaiming a dead life's rights as its heir
//! when membership reports it down, or a later life of its node up.

use std::collections::BTreeMap;

use super::counter::{self, CounterVar};
use super::escrow::{self, Step, Steps};
use super::{encode, Kind, Life, Outgoing, Vars, VarsMessage};
use crate::time::Instant;
use crate::NodeId;

/// Asks for a higher allowance of counter `name` if this life's is short of `need` or running
/// low; the messages to send.
pub(super) fn plan_raise(
    now: Instant,
    name: &str,
    spec: u64,
    counter: &mut CounterVar,
    need: u64,
) -> Outgoing {
    let steps = counter.escrow.plan_raise(now, &counter.counter, need);
    wrap(name, spec, counter.escrow.me(), steps)
}

fn wrap(name: &str, spec: u64, from: Life, steps: Steps) -> Outgoing {
    steps
        .into_iter()
        .map(|(to, step)| {
            let message = VarsMessage::Escrow {
                name: name.to_owned(),
                spec,
                from,
                step,
            };
            (to.node, encode(&message))
        })
        .collect()
}

/// Whether membership reported `life` over: its node down at its generation or a later one.
pub(super) fn ended(down: &BTreeMap<NodeId, u64>, life: Life) -> bool {
    down.get(&life.node).is_some_and(|g| life.generation <= *g)
}

impl Vars {
    /// Messages made outside a call that took an [`Outgoing`]: send them like the others.
    pub fn take_messages(&mut self) -> Outgoing {
        std::mem::take(&mut self.pending)
    }

    /// Whether [`Self::take_messages`] has any.
    pub fn has_messages(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Membership reports `node` failed or gone at `generation`: its lives up to that
    /// generation are over, and this life starts fencing those that held counter rights if it
    /// is their heir (see [`escrow`]).
    pub fn member_down(&mut self, now: Instant, node: NodeId, generation: u64) {
        if node == self.me.node && generation >= self.me.generation {
            return;
        }
        let highest = self.down.entry(node).or_default();
        *highest = (*highest).max(generation);
        let down = &self.down;
        for (name, variable) in &mut self.variables {
            let Kind::Counter(counter) = &mut variable.kind else {
                continue;
            };
            let dead: Vec<Life> = counter
                .lives
                .values()
                .copied()
                .filter(|l| l.node == node && ended(down, *l))
                .filter(|l| counter.counter.rights(counter::actor(*l)) > 0)
                .filter(|l| counter.escrow.is_heir_of(*l, |h| ended(down, h)))
                .collect();
            for life in dead {
                if fault_on!(CounterReclaimUnfenced) {
                    // The unsafe shortcut the fence exists to prevent: take what the dead life
                    // holds as this replica sees it, without stopping it from spending.
                    let rights = counter.counter.rights(counter::actor(life));
                    let taken = counter.counter.hand_over(
                        counter::actor(life),
                        counter::actor(self.me),
                        rights,
                    );
                    if taken.is_ok() {
                        counter.unpublished.get_or_insert(now);
                    }
                    continue;
                }
                let steps = counter.escrow.start_fence(now, life);
                let from = counter.escrow.me();
                self.pending
                    .extend(wrap(name, variable.fingerprint, from, steps));
            }
        }
    }

    /// Membership reports `node` alive at `generation`: a life of it reported down at that
    /// generation was not over after all (a refuted suspicion), so stop fencing it; the
    /// node's earlier lives are over; and if this node's identity was renewed, `node` is told
    /// which life goes by it. True when earlier lives were taken down: fences may have begun,
    /// whose deadlines the caller must arm (as after [`member_down`](Self::member_down)).
    pub fn member_up(&mut self, now: Instant, node: NodeId, generation: u64) -> bool {
        self.tell_renewal(node);
        let life = self.life_of(node, generation);
        if self.down.get(&node) == Some(&generation) {
            self.down.remove(&node);
            self.stop_fencing(life);
        }
        self.earlier_lives_over(now, life)
    }

    /// `life` is alive: stops fencing it and the node's later lives.
    fn stop_fencing(&mut self, life: Life) {
        for variable in self.variables.values_mut() {
            if let Kind::Counter(counter) = &mut variable.kind {
                let back: Vec<Life> = counter
                    .lives
                    .values()
                    .copied()
                    .filter(|l| l.node == life.node && l.generation >= life.generation)
                    .collect();
                for life in back {
                    counter.escrow.cancel_fence(life);
                }
            }
        }
    }

    /// `life` is up, so the earlier lives of its node are over: they are taken down as if
    /// membership had said so, which it never does for a node restarted quicker than failure
    /// detection (SWIM only renames the member) — their rights would stay with them for good.
    /// Only lives a counter here knows are looked for, so a join costs nothing more. True when
    /// it took them down.
    fn earlier_lives_over(&mut self, now: Instant, life: Life) -> bool {
        let earlier = |l: &Life| l.node == life.node && l.generation < life.generation;
        let known = self.variables.values().any(|v| match &v.kind {
            Kind::Counter(counter) => counter.lives.values().any(earlier),
            _ => false,
        });
        let over = life.generation.saturating_sub(1);
        let taken_down = known
            && !ended(
                &self.down,
                Life {
                    generation: over,
                    ..life
                },
            );
        if taken_down {
            self.member_down(now, life.node, over);
        }
        taken_down
    }

    /// A step of counter `name`'s allowances from life `life` (on node `from`).
    pub(super) fn escrow_step(
        &mut self,
        now: Instant,
        from: NodeId,
        (name, spec, life): (String, u64, Life),
        step: Step,
        out: &mut Outgoing,
    ) {
        let me = self.me;
        let ended_dead = match &step {
            Step::Fence { dead } => ended(&self.down, *dead),
            _ => false,
        };
        let Ok((fingerprint, counter)) = self.counter_mut(&name) else {
            self.stats.foreign_messages += 1;
            return;
        };
        if fingerprint != spec || life.node != from {
            self.stats.foreign_messages += 1;
            return;
        }
        let reply = match step {
            Step::Raise { ceiling } => counter.escrow.raise_asked(life, ceiling),
            Step::Fence { dead } => counter.escrow.fence_asked(life, dead, ended_dead),
            Step::Allowed { ceiling, fenced } => {
                counter.escrow.allowed(life, ceiling, fenced);
                None
            }
            Step::Fenced {
                dead,
                heir,
                ceiling,
            } => {
                if let Some(ceiling) = counter.escrow.fenced(life, dead, heir, ceiling) {
                    self.take_rights(now, &name, dead, ceiling, out);
                }
                None
            }
        };
        if let Some(reply) = reply {
            out.extend(wrap(&name, fingerprint, me, vec![(life, reply)]));
        }
    }

    /// As heir of `dead`, fenced at `ceiling` by a majority: hands this life what `dead` was
    /// given beyond it, and writes the state at once.
    fn take_rights(
        &mut self,
        now: Instant,
        name: &str,
        dead: Life,
        ceiling: u64,
        out: &mut Outgoing,
    ) {
        let me = self.me;
        let Ok((fingerprint, counter)) = self.counter_mut(name) else {
            return;
        };
        let amount = escrow::reclaimable(&counter.counter, dead, ceiling);
        if amount == 0 {
            return;
        }
        let taken = counter
            .counter
            .hand_over(counter::actor(dead), counter::actor(me), amount);
        if taken.is_err() {
            return; // Cannot happen: `reclaimable` is at most what `dead` holds here.
        }
        out.extend(plan_raise(now, name, fingerprint, counter, 0));
        self.stats.rights_reclaimed += amount;
        self.publish_counter(name);
    }

    /// Raises and fences of every counter due at `now`, sent again.
    pub(super) fn escrow_timeouts(&mut self, now: Instant, out: &mut Outgoing) {
        for (name, variable) in &mut self.variables {
            if let Kind::Counter(counter) = &mut variable.kind {
                let steps = counter.escrow.handle_timeout(now);
                out.extend(wrap(name, variable.fingerprint, counter.escrow.me(), steps));
            }
        }
    }
}
