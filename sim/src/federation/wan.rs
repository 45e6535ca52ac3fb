//! The WAN between clusters' gateways: its own latency, jitter and loss, cuts between clusters,
//! and a queue of probes and answers in flight, all drawn from one seeded RNG.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use foundation_core::federation::GlobalDirectory;
use foundation_core::identity::ClusterName;
use rand::rngs::StdRng;
use rand::Rng;

/// The port every simulated gateway listens on for other clusters' gateways.
pub const WAN_PORT: u16 = 8302;

/// How every WAN path behaves (one direction).
#[derive(Clone, Debug, PartialEq)]
pub struct WanModel {
    /// Fixed one-way delay.
    pub latency: Duration,
    /// Largest uniform random delay added to `latency`.
    pub jitter: Duration,
    /// Probability a probe or an answer is lost.
    pub loss: f64,
}

/// A cut of the WAN between two sets of clusters (by index), from `from` to `to`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WanCut {
    /// When the cut starts.
    pub from: Duration,
    /// When it heals.
    pub to: Duration,
    /// One side.
    pub side: Vec<usize>,
    /// The other side.
    pub other: Vec<usize>,
}

impl WanCut {
    /// Whether the cut separates clusters `a` and `b` at `us`.
    pub fn separates(&self, a: usize, b: usize, us: u64) -> bool {
        let active = (self.from.as_micros() as u64..self.to.as_micros() as u64).contains(&us);
        let across = |x: usize, y: usize| self.side.contains(&x) && self.other.contains(&y);
        active && (across(a, b) || across(b, a))
    }
}

/// The address gateway `slot` of cluster `cluster` listens on.
pub fn gateway_addr(cluster: usize, slot: usize) -> SocketAddr {
    let (c, s) = (cluster as u8, slot as u8);
    SocketAddr::from((Ipv4Addr::new(10, 100 + c, 0, s), WAN_PORT))
}

/// What travels on the WAN.
#[derive(Clone, Debug)]
pub enum WanMessage {
    /// A probe from gateway `from` (its index and life), carrying its directory.
    Probe {
        /// The sending gateway's index.
        from: usize,
        /// The sender's life when it sent the probe (an answer to an older life is dropped).
        life: u64,
        /// The sender's cluster.
        cluster: ClusterName,
        /// The link (remote cluster) the probe belongs to, as the sender names it.
        link: ClusterName,
        /// The probe's id.
        id: u64,
        /// Where it goes.
        to: SocketAddr,
        /// The sender's directory.
        directory: GlobalDirectory,
    },
    /// The answer to a probe, back to gateway `to`.
    Answer {
        /// The gateway that sent the probe.
        to: usize,
        /// Its life when it sent the probe.
        life: u64,
        /// The link the probe belonged to.
        link: ClusterName,
        /// The probe's id.
        id: u64,
        /// The answering gateway's directory.
        directory: GlobalDirectory,
    },
    /// A directory pushed after the sender's exports changed (no answer; the probes repair a
    /// lost one).
    Push {
        /// The sender's cluster.
        cluster: ClusterName,
        /// Where it goes.
        to: SocketAddr,
        /// The sender's directory, as offered to the receiver.
        directory: GlobalDirectory,
    },
    /// A forwarded application call ([`super::calls`]), from gateway `leg.from` to the remote
    /// gateway listening on `leg.remote`.
    Call {
        /// Which attempt of which call, between which gateways.
        leg: CallLeg,
        /// The service called.
        service: String,
        /// The attempt's budget: the call must not be served after this (simulated µs).
        deadline_us: u64,
    },
    /// What became of a forwarded call, back to gateway `leg.from`.
    CallReply {
        /// The attempt answered.
        leg: CallLeg,
        /// The remote's answer.
        outcome: RemoteOutcome,
        /// The remote gateway that took the call (index and life), if one listened: a reply
        /// reaching the forwarding gateway after that life ended stands for the connection
        /// the crash closed under the call.
        taken_by: Option<(usize, u64)>,
    },
}

/// One attempt of a forwarded call on the WAN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallLeg {
    /// The call's id.
    pub call: u64,
    /// Which attempt of the call this is, from 1.
    pub attempt: u32,
    /// The forwarding gateway's index.
    pub from: usize,
    /// Its life when it forwarded (an answer to an older life is dropped).
    pub life: u64,
    /// The remote gateway's address.
    pub remote: SocketAddr,
}

/// A remote gateway's answer to a forwarded call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RemoteOutcome {
    /// Served by an instance of the remote cluster.
    Served,
    /// The remote cluster does not export the service (now).
    NotExported,
    /// The budget ran out before an instance could answer.
    DeadlineExceeded,
    /// No process listens on the address: the connection's handshake failed.
    Handshake,
    /// No answer: the remote gateway went down under the call, or the attempt's time ran out
    /// (the request or its answer lost); the handler may have run.
    Lost,
}

impl WanMessage {
    /// The application call this message carries, if it carries one.
    fn call(&self) -> Option<u64> {
        match self {
            WanMessage::Call { leg, .. } | WanMessage::CallReply { leg, .. } => Some(leg.call),
            _ => None,
        }
    }
}

/// Messages sent, lost and cut on the WAN.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct WanStats {
    /// Sent.
    pub sent: u64,
    /// Lost to the model's loss.
    pub lost: u64,
    /// Dropped by a cut.
    pub cut: u64,
    /// Delivered to a gateway that was not running.
    pub unanswered: u64,
    /// Application calls carried (forwarded calls, not their replies).
    pub calls: u64,
}

/// The WAN: its model, its cuts and what is in flight.
pub struct Wan {
    model: WanModel,
    cuts: Vec<WanCut>,
    rng: StdRng,
    in_flight: BTreeMap<(u64, u64), (usize, usize, WanMessage)>,
    seq: u64,
    /// What happened so far.
    pub stats: WanStats,
    /// Application calls one of whose messages was lost or cut.
    pub lost_calls: BTreeSet<u64>,
}

impl Wan {
    /// An empty WAN.
    pub fn new(model: WanModel, cuts: Vec<WanCut>, rng: StdRng) -> Self {
        Self {
            model,
            cuts,
            rng,
            in_flight: BTreeMap::new(),
            seq: 0,
            stats: WanStats::default(),
            lost_calls: BTreeSet::new(),
        }
    }

    /// Whether a cut separates clusters `a` and `b` at `us`.
    pub fn cut_between(&self, a: usize, b: usize, us: u64) -> bool {
        self.cuts.iter().any(|c| c.separates(a, b, us))
    }

    /// Sends `message` from cluster `from` to cluster `to` at `now_us`.
    pub fn send(&mut self, now_us: u64, from: usize, to: usize, message: WanMessage) {
        self.stats.sent += 1;
        if matches!(message, WanMessage::Call { .. }) {
            self.stats.calls += 1;
        }
        if self.cut_between(from, to, now_us) {
            self.stats.cut += 1;
            self.lost_calls.extend(message.call());
            return;
        }
        if self.rng.gen_bool(self.model.loss.clamp(0.0, 1.0)) {
            self.stats.lost += 1;
            self.lost_calls.extend(message.call());
            return;
        }
        let jitter = self.model.jitter.as_micros() as u64;
        let delay = self.model.latency.as_micros() as u64 + self.rng.gen_range(0..=jitter);
        self.seq += 1;
        self.in_flight
            .insert((now_us + delay, self.seq), (from, to, message));
    }

    /// When the next message arrives.
    pub fn next_time(&self) -> Option<u64> {
        self.in_flight.keys().next().map(|(at, _)| *at)
    }

    /// The next message due by `now_us` that no cut holds back (a cut that started while it
    /// was in flight drops it).
    pub fn deliver(&mut self, now_us: u64) -> Option<WanMessage> {
        loop {
            let (&key, _) = self.in_flight.iter().next()?;
            if key.0 > now_us {
                return None;
            }
            let (from, to, message) = self.in_flight.remove(&key)?;
            if self.cut_between(from, to, key.0) {
                self.stats.cut += 1;
                self.lost_calls.extend(message.call());
                continue;
            }
            return Some(message);
        }
    }
}
