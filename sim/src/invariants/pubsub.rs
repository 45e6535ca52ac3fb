//! Pub/sub's invariant, `pubsub-delivery`, over every publication of a run (checked at its
//! end, when every delivery that will happen has).
//!
//! - **Once.** No application life is handed one publication twice, reliable or not.
//! - **Only where routed.** A publication reaches only nodes its publisher routed it to.
//! - **In order.** Each application life gets one publisher life's plain publications in
//!   publish order, and its reliable ones in publish order (the two kinds are separate
//!   streams: a reliable resend may pass newer plain messages).
//! - **Reliable means delivered.** A reliable publication reaches every node it was routed to
//!   when the publisher's life and the receiver's node both still run at the end and the
//!   network has been whole for [`RESEND_BOUND`] before it: resends repair lost connections.
//! - **Plain means delivered on a quiet network.** A plain publication made once the network
//!   had been whole for [`RESEND_BOUND`], to a receiver whose life runs from then to the end,
//!   from a publisher whose life ran [`RESEND_BOUND`] past it, and that did not give up waiting
//!   for room in a full outbox, arrives. A publisher that stops sooner takes with it what still
//!   waits in its outbox or travels on its streams: at most once, as in the runtime.
//! - **Bounded.** No message joined an outbox already at its byte bound, and no frame of
//!   several messages exceeded the frame bound (see [`crate::pubsub::sending`]).
//!
//! Measured: publications, deliveries, frames, messages that shared a frame, and publications
//! that waited for room.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{Check, Invariant, Measurements};
use crate::faults::Fault;
use crate::pubsub::{Publication, Sending};
use crate::world::World;

/// Time after the network is whole again within which every reliable stream has been repaired:
/// one resend wait ([`crate::pubsub::RESEND_AFTER`]), one tick, and slack for a retransmitted
/// stream packet.
pub const RESEND_BOUND: Duration = Duration::from_secs(3);

/// The `pubsub-delivery` invariant.
#[derive(Default)]
pub struct Delivery {
    /// Since when the network has been whole (no partition, no lossy spell); `None` while not.
    whole_since_us: Option<u64>,
    deliveries: u64,
    sending: Sending,
}

impl Delivery {
    /// A fresh check.
    pub fn new() -> Self {
        Self {
            whole_since_us: Some(0),
            deliveries: 0,
            sending: Sending::default(),
        }
    }
}

/// Where a stream of deliveries stands: (receiver slot, its life, publisher slot, its life,
/// reliable) to the last publication handed over.
type Streams = BTreeMap<(usize, u64, usize, u64, bool), u64>;

fn check_once_and_routed(id: usize, p: &Publication) -> Check {
    let mut seen = std::collections::BTreeSet::new();
    for &(slot, life, _) in &p.deliveries {
        if !seen.insert((slot, life)) {
            return Err(format!(
                "publication #{id} ({}, reliable={}) handed to n{slot} twice in one life",
                p.topic, p.reliable
            ));
        }
        if !p.route.contains(&slot) {
            return Err(format!(
                "publication #{id} reached n{slot}, which its publisher did not route it to ({:?})",
                p.route
            ));
        }
    }
    Ok(())
}

fn check_order(world: &World) -> Check {
    let mut handed: Vec<(u64, usize, usize, u64)> = Vec::new();
    for (id, p) in world.publications().iter().enumerate() {
        for &(slot, life, at) in &p.deliveries {
            handed.push((at, id, slot, life));
        }
    }
    // Stable by time: deliveries in the same microsecond keep the order they were recorded in.
    handed.sort_by_key(|&(at, ..)| at);
    let mut last: Streams = BTreeMap::new();
    for (at, id, slot, life) in handed {
        let p = &world.publications()[id];
        let key = (slot, life, p.slot, p.life, p.reliable);
        if let Some(&before) = last.get(&key) {
            if before > id as u64 {
                return Err(format!(
                    "n{slot} got publication #{id} from n{} after #{before} at {:.3} s (reliable={})",
                    p.slot,
                    at as f64 / 1e6,
                    p.reliable
                ));
            }
        }
        last.insert(key, id as u64);
    }
    Ok(())
}

impl Delivery {
    fn check_delivered(&self, world: &World, id: usize, p: &Publication) -> Check {
        let Some(whole_since) = self.whole_since_us else {
            return Ok(());
        };
        let bound = RESEND_BOUND.as_micros() as u64;
        let end = world.now_us();
        let publisher = world.node(p.slot);
        let publisher_runs = publisher.is_up_in(p.life);
        let publisher_ran_past = |us: u64| publisher.life_ended_us(p.life).is_none_or(|e| e >= us);
        for &to in p.route.iter().filter(|&&to| to != p.slot) {
            if p.deliveries.iter().any(|&(slot, ..)| slot == to) || p.gave_up.contains(&to) {
                continue;
            }
            let receiver = world.node(to);
            let owed = if p.reliable {
                publisher_runs && receiver.is_up() && end >= whole_since + bound
            } else {
                p.published_us >= whole_since + bound
                    && publisher_ran_past(p.published_us + bound)
                    && receiver.is_up()
                    && receiver.started_us() <= p.published_us
                    && end >= p.published_us + bound
            };
            if owed {
                return Err(format!(
                    "publication #{id} ({}, reliable={}) from n{} at {:.3} s never reached n{to}",
                    p.topic,
                    p.reliable,
                    p.slot,
                    p.published_us as f64 / 1e6
                ));
            }
        }
        Ok(())
    }
}

impl Invariant for Delivery {
    fn name(&self) -> &'static str {
        "pubsub-delivery"
    }

    fn on_fault(&mut self, world: &World, fault: &Fault, _slots: &[usize]) {
        match fault {
            Fault::Partition(..) | Fault::PartitionOneWay(..) | Fault::Network(_) => {
                self.whole_since_us = None
            }
            Fault::Heal => self.whole_since_us = Some(world.now_us()),
            _ => {}
        }
        // A lossy spell ends when a later `Network` fault sets a clean model again; the runner
        // hands faults in order, so a `Network(lan)` after a heal restarts the clock here.
        if let Fault::Network(model) = fault {
            if model.loss == 0.0 && world.network().rules().is_empty() {
                self.whole_since_us = Some(world.now_us());
            }
        }
    }

    fn at_end(&mut self, world: &World) -> Check {
        let sending = world.pubsub_sending();
        if let Some(broken) = &sending.broken {
            return Err(format!("a pub/sub bound was broken: {broken}"));
        }
        self.sending = sending.clone();
        for (id, p) in world.publications().iter().enumerate() {
            self.deliveries += p.deliveries.len() as u64;
            check_once_and_routed(id, p)?;
            self.check_delivered(world, id, p)?;
        }
        check_order(world)
    }

    fn measure(&self, out: &mut Measurements) {
        out.publications_delivered += self.deliveries;
        out.pubsub_frames += self.sending.frames;
        out.pubsub_batched += self.sending.batched;
        out.pubsub_waited += self.sending.waited;
    }
}
