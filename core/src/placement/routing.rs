//! Routing messages by key to the node that runs the key's shard.
//!
//! The origin sends a message to the owner its view names; the receiver delivers it if the
//! instance runs there (and is not being handed over), keeps it if it is about to run it (it
//! wants the instance and waits for its lease or for the handed-over state), and otherwise
//! answers "not here". Only a "not here" (or a message not sent yet, for want of an owner) is
//! tried again, after a short wait and to the owner the view names then. So a message is sent
//! on only when the last node it was sent to said it did not deliver it: it is delivered at
//! most once, and the origin learns one outcome within its deadline:
//!
//! - delivered ([`PlacementEvent::Routed`] with `Ok`);
//! - [`RouteError::NotDelivered`]: every node asked said no, or none could be asked;
//! - [`RouteError::Unconfirmed`]: the deadline came while a node had it and had not answered
//!   (lost on a partition, or buffered there): it was delivered at most once, maybe not at all.
//!
//! The receiver keeps a message at most the time the origin had left when it sent it.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::wire::{encode, PlacementMessage};
use super::{shard_of, Instance, Placement, PlacementError, PlacementEvent};
use crate::time::Instant;
use crate::vars::Life;
use crate::NodeId;

/// Largest payload of a routed message: it travels in one coordination frame (64 KiB).
pub const ROUTE_PAYLOAD_MAX: usize = 60 * 1024;

/// Most messages a node keeps for instances it is about to run; past it, "not here".
pub const ROUTE_BUFFER_MAX: usize = 4096;

/// Most routed messages of this node waiting for an outcome at once.
pub const ROUTES_PENDING_MAX: usize = 4096;

/// A routed message's name: its origin's life and a number increasing per life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RouteId {
    /// The life that routed it.
    pub origin: Life,
    /// Its number in that life.
    pub seq: u64,
}

impl fmt::Display for RouteId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.origin.node.short(), self.seq)
    }
}

/// A receiver's answer to a routed message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RouteAnswer {
    /// Handed to the running instance.
    Delivered,
    /// Not delivered: the instance does not run here and is not about to.
    NotHere,
    /// Not delivered: kept here for the instance, which did not start in time.
    Expired,
}

/// Why a routed message was not confirmed delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(rename_all = "kebab-case")]
pub enum RouteError {
    /// No owner took it before the deadline; it was not delivered.
    #[error("no owner took the message before its deadline; it was not delivered")]
    NotDelivered,
    /// The deadline came while a node had it without answering; delivered at most once.
    #[error("the deadline passed without an answer; the message was delivered at most once")]
    Unconfirmed,
}

/// Where an outgoing message stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Attempt {
    /// Not with any node: to be sent (again) at this instant.
    Due(Instant),
    /// With this node, answer awaited (ourselves: kept in our own buffer).
    With(NodeId),
}

#[derive(Debug)]
struct Outgoing {
    /// The life that routed it: its id keeps naming that life after this node takes a new
    /// one, since the caller waits for that id and the node that has it answers to it.
    origin: Life,
    instance: Instance,
    payload: Vec<u8>,
    deadline: Instant,
    attempt: Attempt,
}

/// A message kept for an instance about to run here.
#[derive(Debug)]
struct Buffered {
    id: RouteId,
    from: NodeId,
    instance: Instance,
    payload: Vec<u8>,
    until: Instant,
}

/// Counters of routing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouteStats {
    /// Messages routed from here.
    pub routed: u64,
    /// Of those, confirmed delivered.
    pub delivered: u64,
    /// Of those, failed ([`RouteError`]).
    pub failed: u64,
    /// Messages delivered to instances running here.
    pub delivered_here: u64,
    /// Messages kept here for an instance about to run.
    pub buffered: u64,
}

/// Both sides of routing on one node: what it routed, and what it keeps for others.
#[derive(Debug, Default)]
pub(super) struct Routing {
    next_seq: u64,
    outgoing: BTreeMap<u64, Outgoing>,
    buffered: Vec<Buffered>,
    pub(super) stats: RouteStats,
}

impl Routing {
    /// The earliest instant something is due: a retry, a deadline, a buffered message's end.
    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        let outgoing = self.outgoing.values().map(|o| match o.attempt {
            Attempt::Due(at) => at.min(o.deadline),
            Attempt::With(_) => o.deadline,
        });
        let buffered = self.buffered.iter().map(|b| b.until);
        outgoing.chain(buffered).min()
    }
}

impl Placement {
    /// Routes `payload` to the instance `key` maps to in `workload`, wherever it runs, within
    /// `ttl`. The outcome comes as [`PlacementEvent::Routed`] with the returned id, at the
    /// latest at the deadline; the owner gets it as [`PlacementEvent::Deliver`].
    pub fn route(
        &mut self,
        now: Instant,
        workload: &str,
        key: &[u8],
        payload: Vec<u8>,
        ttl: Duration,
    ) -> Result<RouteId, PlacementError> {
        let spec = self
            .workloads
            .get(workload)
            .ok_or_else(|| PlacementError::Unknown(workload.to_owned()))?;
        if payload.len() > ROUTE_PAYLOAD_MAX {
            return Err(PlacementError::TooLarge {
                size: payload.len(),
                max: ROUTE_PAYLOAD_MAX,
            });
        }
        if self.routing.outgoing.len() >= ROUTES_PENDING_MAX {
            return Err(PlacementError::Busy(ROUTES_PENDING_MAX));
        }
        let instance = Instance::new(workload, shard_of(key, spec.shards()));
        self.routing.next_seq += 1;
        let seq = self.routing.next_seq;
        self.routing.stats.routed += 1;
        let outgoing = Outgoing {
            origin: self.me,
            instance,
            payload,
            deadline: now + ttl,
            attempt: Attempt::Due(now),
        };
        self.routing.outgoing.insert(seq, outgoing);
        self.send_route(now, seq);
        Ok(RouteId {
            origin: self.me,
            seq,
        })
    }

    /// Sends outgoing message `seq` to the owner our view names, or waits for one.
    fn send_route(&mut self, now: Instant, seq: u64) {
        let retry = self.route_retry();
        let Some(o) = self.routing.outgoing.get(&seq) else {
            return;
        };
        let owner = self.owner(&o.instance).ok().flatten();
        let id = RouteId {
            origin: o.origin,
            seq,
        };
        match owner {
            None => {
                if let Some(o) = self.routing.outgoing.get_mut(&seq) {
                    o.attempt = Attempt::Due(now + retry);
                }
            }
            Some(node) if node == self.me.node => {
                let (instance, payload, until) =
                    (o.instance.clone(), o.payload.clone(), o.deadline);
                if let Some(o) = self.routing.outgoing.get_mut(&seq) {
                    o.attempt = Attempt::With(node);
                }
                self.take_routed(now, id, node, instance, payload, until);
            }
            Some(node) => {
                let ttl_us = o.deadline.saturating_since(now).as_micros() as u64;
                let message = PlacementMessage::Route {
                    id,
                    instance: o.instance.clone(),
                    payload: o.payload.clone(),
                    ttl_us,
                };
                self.out.push((node, encode(&message)));
                if let Some(o) = self.routing.outgoing.get_mut(&seq) {
                    o.attempt = Attempt::With(node);
                }
            }
        }
    }

    /// How long to wait before sending a message again that no node took.
    fn route_retry(&self) -> Duration {
        (self.config.renew / 4).max(Duration::from_millis(1))
    }

    /// A routed message arrived (from `from`; ourselves for our own): deliver, keep, or say
    /// "not here".
    pub(super) fn take_routed(
        &mut self,
        now: Instant,
        id: RouteId,
        from: NodeId,
        instance: Instance,
        payload: Vec<u8>,
        until: Instant,
    ) {
        if self.deliverable(&instance, now) {
            self.deliver(id, instance, payload);
            return self.answer_route(now, from, id, RouteAnswer::Delivered);
        }
        let about_to_run = self.wanted.contains(&instance) && !fault_on!(PlacementRouteNoBuffer);
        if about_to_run && until > now && self.routing.buffered.len() < ROUTE_BUFFER_MAX {
            self.routing.stats.buffered += 1;
            self.routing.buffered.push(Buffered {
                id,
                from,
                instance,
                payload,
                until,
            });
            return;
        }
        if fault_on!(PlacementRouteNoBuffer) && self.wanted.contains(&instance) {
            // The planted bug: delivered to an instance that does not run here yet.
            self.deliver(id, instance, payload);
            return self.answer_route(now, from, id, RouteAnswer::Delivered);
        }
        self.answer_route(now, from, id, RouteAnswer::NotHere);
    }

    /// Whether a routed message for `instance` may be handed to it here now: it runs on a
    /// lease and is not being handed over.
    fn deliverable(&self, instance: &Instance, now: Instant) -> bool {
        self.is_running(instance, now) && !self.handoffs.is_handing_off(instance)
    }

    fn deliver(&mut self, id: RouteId, instance: Instance, payload: Vec<u8>) {
        self.routing.stats.delivered_here += 1;
        self.events.push(PlacementEvent::Deliver {
            instance,
            id,
            payload: Bytes::from(payload),
        });
    }

    fn answer_route(&mut self, now: Instant, to: NodeId, id: RouteId, answer: RouteAnswer) {
        if to == self.me.node {
            self.route_answered(now, to, id, answer);
        } else {
            let message = PlacementMessage::RouteAnswer { id, answer };
            self.out.push((to, encode(&message)));
        }
    }

    /// A node's answer to one of our messages.
    pub(super) fn route_answered(
        &mut self,
        now: Instant,
        from: NodeId,
        id: RouteId,
        answer: RouteAnswer,
    ) {
        let retry = self.route_retry();
        let Some(o) = self.routing.outgoing.get_mut(&id.seq) else {
            return;
        };
        if o.origin != id.origin || o.attempt != Attempt::With(from) {
            // Not the node that has it now: a stale or forged answer.
            return;
        }
        match answer {
            RouteAnswer::Delivered => self.route_outcome(id.seq, Ok(())),
            RouteAnswer::Expired => self.route_outcome(id.seq, Err(RouteError::NotDelivered)),
            RouteAnswer::NotHere if now >= o.deadline => {
                self.route_outcome(id.seq, Err(RouteError::NotDelivered));
            }
            RouteAnswer::NotHere => o.attempt = Attempt::Due(now + retry),
        }
    }

    fn route_outcome(&mut self, seq: u64, outcome: Result<(), RouteError>) {
        let Some(o) = self.routing.outgoing.remove(&seq) else {
            return;
        };
        match outcome {
            Ok(()) => self.routing.stats.delivered += 1,
            Err(_) => self.routing.stats.failed += 1,
        }
        let id = RouteId {
            origin: o.origin,
            seq,
        };
        self.events.push(PlacementEvent::Routed { id, outcome });
    }

    /// Delivers kept messages whose instance runs here now, answers those that ran out or
    /// whose instance we no longer expect, then retries and ends our own messages.
    pub(super) fn advance_routes(&mut self, now: Instant) {
        let kept = std::mem::take(&mut self.routing.buffered);
        for b in kept {
            if self.deliverable(&b.instance, now) {
                self.deliver(b.id, b.instance, b.payload);
                self.answer_route(now, b.from, b.id, RouteAnswer::Delivered);
            } else if b.until <= now {
                self.answer_route(now, b.from, b.id, RouteAnswer::Expired);
            } else if !self.wanted.contains(&b.instance) {
                self.answer_route(now, b.from, b.id, RouteAnswer::NotHere);
            } else {
                self.routing.buffered.push(b);
            }
        }
        let due: Vec<(u64, Attempt, Instant)> = self
            .routing
            .outgoing
            .iter()
            .map(|(seq, o)| (*seq, o.attempt, o.deadline))
            .collect();
        for (seq, attempt, deadline) in due {
            match attempt {
                _ if deadline > now => {
                    if matches!(attempt, Attempt::Due(at) if at <= now) {
                        self.send_route(now, seq);
                    }
                }
                Attempt::Due(_) => self.route_outcome(seq, Err(RouteError::NotDelivered)),
                Attempt::With(_) => self.route_outcome(seq, Err(RouteError::Unconfirmed)),
            }
        }
    }

    /// Routing's counters.
    pub fn route_stats(&self) -> &RouteStats {
        &self.routing.stats
    }
}
