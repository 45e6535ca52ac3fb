//! Handing an instance's state to its next owner, for workloads declared with `handoff`.
//!
//! When an instance running here should run elsewhere (a join moved it, or this node leaves),
//! it is not stopped at once: placement says [`PlacementEvent::BeginHandoff`] and keeps
//! claiming it, so nobody else can start it; the application stops its work and gives the
//! state ([`Placement::hand_off`]), which goes to the next owner on the bulk channel. The next
//! owner keeps it and answers; only then does the old owner stop and release the instance, so
//! the next owner holds the state before it can win the lease, and gets it as
//! [`PlacementEvent::EndHandoff`] just before its `Start`. If the view names another next owner
//! before the handoff finishes (another join), the handoff and its state go to that one; if it
//! names us again (the next owner crashed or left the view), the instance stops and starts
//! again here at once with the state it gave, as it would have on another node. A handoff
//! that does not finish within `handoff_timeout` (no state given, no answer) stops the
//! instance without one, as a crash would. Messages routed to an instance being handed over
//! are not delivered by the old owner: they wait at the next one (see [`super::routing`]).

use std::collections::BTreeMap;

use bytes::Bytes;

use super::wire::PlacementMessage;
use super::{Instance, Placement, PlacementError, PlacementEvent, StopReason};
use crate::time::Instant;
use crate::vars::Life;
use crate::NodeId;

/// Most handed-over states a node keeps for instances it has not started yet.
pub const RECEIVED_STATES_MAX: usize = 1024;

/// An instance being handed over from here.
#[derive(Debug)]
struct Outgoing {
    to: NodeId,
    reason: StopReason,
    deadline: Instant,
    /// The state the application gave, once it did (we wait for the next owner's answer):
    /// kept to send again if the next owner changes before it answers, or to start from here
    /// if our view gives the instance back to us.
    state: Option<Bytes>,
}

/// A state handed to us, kept until the instance starts here.
#[derive(Debug)]
struct Received {
    from: NodeId,
    state: Bytes,
    until: Instant,
}

/// Counters of handoffs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HandoffStats {
    /// Handoffs begun here.
    pub begun: u64,
    /// Handoffs that finished (the next owner holds the state).
    pub completed: u64,
    /// Handoffs that ran out of time: the instance stopped without handing over.
    pub timed_out: u64,
    /// States refused as too large.
    pub too_large: u64,
    /// States started with: received from a previous owner, or taken back.
    pub resumed: u64,
    /// Handoffs our view gave back to us once the state was given: the instance started
    /// again here with it.
    pub taken_back: u64,
}

/// Both sides of handoffs on one node.
#[derive(Debug, Default)]
pub(super) struct Handoffs {
    outgoing: BTreeMap<Instance, Outgoing>,
    received: BTreeMap<Instance, Received>,
    pub(super) stats: HandoffStats,
}

impl Handoffs {
    /// Whether `instance` is being handed over from here.
    pub(super) fn is_handing_off(&self, instance: &Instance) -> bool {
        self.outgoing.contains_key(instance)
    }

    /// The instances being handed over from here.
    pub(super) fn handing_off(&self) -> impl Iterator<Item = &Instance> {
        self.outgoing.keys()
    }

    /// The earliest deadline of a handoff or of a kept state.
    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        let outgoing = self.outgoing.values().map(|o| o.deadline);
        outgoing
            .chain(self.received.values().map(|r| r.until))
            .min()
    }

    pub(super) fn forget(&mut self, instance: &Instance) {
        self.outgoing.remove(instance);
    }
}

impl Placement {
    /// Hands `instance` over to `to` instead of stopping it now (its workload asked for it).
    pub(super) fn begin_handoff(
        &mut self,
        now: Instant,
        instance: Instance,
        to: NodeId,
        reason: StopReason,
    ) {
        self.handoffs.stats.begun += 1;
        let deadline = now + self.config.handoff_timeout;
        self.handoffs.outgoing.insert(
            instance.clone(),
            Outgoing {
                to,
                reason,
                deadline,
                state: None,
            },
        );
        self.events
            .push(PlacementEvent::BeginHandoff { instance, to });
    }

    /// The application's state of `instance`, after [`PlacementEvent::BeginHandoff`]: sent to
    /// the next owner, and the instance stops once it holds it. A state over
    /// `handoff_max_bytes` is refused (the handoff goes on: give a smaller one, or let it time
    /// out and the next owner starts afresh).
    pub fn hand_off(
        &mut self,
        now: Instant,
        instance: &Instance,
        state: Vec<u8>,
    ) -> Result<(), PlacementError> {
        let max = self.config.handoff_max_bytes;
        let Some(o) = self.handoffs.outgoing.get_mut(instance) else {
            return Err(PlacementError::NotHandingOff(instance.clone()));
        };
        if state.len() > max {
            self.handoffs.stats.too_large += 1;
            return Err(PlacementError::TooLarge {
                size: state.len(),
                max,
            });
        }
        o.state = Some(Bytes::from(state));
        // One our view gives back to us is not sent: `decide` starts it here again.
        if !self.wanted.contains(instance) {
            self.send_state(instance);
        }
        self.decide(now);
        Ok(())
    }

    /// Sends the state given for `instance` to its next owner.
    fn send_state(&mut self, instance: &Instance) {
        let Some(Outgoing {
            to,
            state: Some(state),
            ..
        }) = self.handoffs.outgoing.get(instance)
        else {
            return;
        };
        let message = super::wire::encode(&PlacementMessage::HandoffState {
            instance: instance.clone(),
            life: self.me,
            state: state.to_vec(),
        });
        self.bulk_out.push((*to, message));
    }

    /// A previous owner's state for `instance`: kept for when it starts here, and answered.
    pub(super) fn state_received(
        &mut self,
        now: Instant,
        from: NodeId,
        instance: Instance,
        life: Life,
        state: Vec<u8>,
    ) {
        let declared = self
            .workloads
            .get(&instance.workload)
            .is_some_and(|spec| instance.shard < spec.shards());
        let room = self.handoffs.received.len() < RECEIVED_STATES_MAX
            || self.handoffs.received.contains_key(&instance);
        if life.node != from || !declared || !room || state.len() > self.config.handoff_max_bytes {
            self.stats.refused += 1;
            return;
        }
        let received = Received {
            from,
            state: Bytes::from(state),
            until: self.keep_state_until(now),
        };
        self.handoffs.received.insert(instance.clone(), received);
        let answer = PlacementMessage::HandoffTaken { instance };
        self.out.push((from, super::wire::encode(&answer)));
    }

    /// The next owner holds the state: the instance stops here and is released.
    pub(super) fn handoff_taken(&mut self, now: Instant, from: NodeId, instance: &Instance) {
        let done = self
            .handoffs
            .outgoing
            .get(instance)
            .is_some_and(|o| o.to == from && o.state.is_some());
        if !done {
            return;
        }
        if let Some(o) = self.handoffs.outgoing.remove(instance) {
            self.handoffs.stats.completed += 1;
            self.stop(instance, o.reason);
        }
        self.decide(now);
    }

    /// The view changed: a handoff whose next owner is now another member goes to that one
    /// instead (with its state, if given already), so the state reaches the member that will
    /// run the instance rather than one that would take it, let us stop, and never start it.
    /// One our view gives back to us is left to [`Self::take_back_handoffs`].
    pub(super) fn retarget_handoffs(&mut self) {
        let changed: Vec<(Instance, NodeId)> = self
            .handoffs
            .outgoing
            .iter()
            .filter(|(instance, _)| !self.wanted.contains(*instance))
            .filter_map(|(instance, o)| {
                let to = self.successor(instance)?;
                (to != o.to).then(|| (instance.clone(), to))
            })
            .collect();
        for (instance, to) in changed {
            if let Some(o) = self.handoffs.outgoing.get_mut(&instance) {
                o.to = to;
                self.send_state(&instance);
            }
        }
    }

    /// Ends the handoffs our view gives back to us whose state was given: the instance stops
    /// and starts again here, under the lease we kept claiming, with that state (as
    /// [`PlacementEvent::EndHandoff`] from us), rather than wait for an answer from a next
    /// owner that crashed or left and then restart here without it at the deadline. Until the
    /// state is given the handoff goes on: the application is stopping its work.
    pub(super) fn take_back_handoffs(&mut self, now: Instant) {
        let back: Vec<Instance> = self
            .handoffs
            .outgoing
            .iter()
            .filter(|(instance, o)| o.state.is_some() && self.wanted.contains(*instance))
            .map(|(instance, _)| instance.clone())
            .collect();
        for instance in back {
            let Some(Outgoing {
                reason,
                state: Some(state),
                ..
            }) = self.handoffs.outgoing.remove(&instance)
            else {
                continue;
            };
            self.handoffs.stats.taken_back += 1;
            let received = Received {
                from: self.me.node,
                state,
                until: self.keep_state_until(now),
            };
            self.handoffs.received.insert(instance.clone(), received);
            let lease = self.leases.get(&instance).copied();
            self.stop(&instance, reason);
            if let Some(until) = lease {
                self.leases.insert(instance, until);
            }
        }
    }

    /// Ends handoffs past their deadline (stopping the instance without one) and forgets kept
    /// states past theirs.
    pub(super) fn expire_handoffs(&mut self, now: Instant) {
        let late: Vec<(Instance, StopReason)> = self
            .handoffs
            .outgoing
            .iter()
            .filter(|(_, o)| o.deadline <= now)
            .map(|(i, o)| (i.clone(), o.reason))
            .collect();
        for (instance, reason) in late {
            self.handoffs.stats.timed_out += 1;
            self.handoffs.outgoing.remove(&instance);
            self.stop(&instance, reason);
        }
        self.handoffs.received.retain(|_, r| r.until > now);
    }

    /// Until when a state for an instance not started yet is kept: a while, since the next
    /// owner may need a membership round or two to win it.
    fn keep_state_until(&self, now: Instant) -> Instant {
        now + self.config.lease * 4
    }

    /// Before `instance` starts here: the state handed over for it, as an event.
    pub(super) fn resume_handed_over(&mut self, instance: &Instance) {
        if let Some(r) = self.handoffs.received.remove(instance) {
            if fault_on!(PlacementHandoffDropsState) {
                return;
            }
            self.handoffs.stats.resumed += 1;
            self.events.push(PlacementEvent::EndHandoff {
                instance: instance.clone(),
                from: r.from,
                state: r.state,
            });
        }
    }

    /// Whether any instance is being handed over from here (a leave waits for them).
    pub fn is_handing_off(&self) -> bool {
        self.handoffs.handing_off().next().is_some()
    }

    /// Handoff counters.
    pub fn handoff_stats(&self) -> &HandoffStats {
        &self.handoffs.stats
    }
}
