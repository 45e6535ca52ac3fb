//! One link to a remote cluster, as its gateway sees it: WAN-paced probes to the remote's
//! gateways (one at a time; after a miss the next probe goes to the gateway with the fewest misses
//! since the link was last answered, so a crashed gateway is routed around), the link's state
//! (down only when every gateway has missed in a row, so one dead gateway and a lost probe of a
//! healthy one do not take it down) and a smoothed round-trip time from the answers.

use std::cmp::Reverse;
use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;

use crate::identity::ClusterName;
use crate::time::Instant;

/// Timers of the WAN probes: slower than the LAN failure detector's, as Consul's WAN pool is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WanTimers {
    /// Time between two probes of a link.
    pub probe_interval: Duration,
    /// How long a probe may wait for its answer before it counts as missed.
    pub probe_timeout: Duration,
    /// Consecutive misses of every one of the remote's gateways after which the link is down.
    pub down_after: u32,
}

impl Default for WanTimers {
    fn default() -> Self {
        Self {
            probe_interval: Duration::from_secs(5),
            probe_timeout: Duration::from_secs(3),
            down_after: 3,
        }
    }
}

impl WanTimers {
    /// Checks that every timer is usable.
    pub fn validate(&self) -> Result<(), &'static str> {
        if self.probe_interval.is_zero() || self.probe_timeout.is_zero() {
            return Err("probe_interval and probe_timeout must be above zero");
        }
        if self.down_after == 0 {
            return Err("down_after must be at least 1");
        }
        Ok(())
    }
}

/// Whether a link carries traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkState {
    /// No probe answered yet.
    Connecting,
    /// The last probe (or one of the last `down_after - 1`) was answered.
    Up,
    /// `down_after` probes in a row were missed.
    Down,
}

/// What a link looks like from outside.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LinkStatus {
    /// The remote cluster.
    pub cluster: ClusterName,
    /// Up, down or connecting.
    pub state: LinkState,
    /// The gateway probes and calls currently go to.
    pub gateway: SocketAddr,
    /// Smoothed round-trip time of the probes, once one was answered.
    pub rtt: Option<Duration>,
    /// Probes sent.
    pub probes_sent: u64,
    /// Probes missed (timed out or failed).
    pub probes_missed: u64,
}

/// A probe the driver is to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeOut {
    /// Names the probe in the answer or failure the driver reports back.
    pub id: u64,
    /// Where to send it.
    pub gateway: SocketAddr,
}

pub(super) struct Link {
    cluster: ClusterName,
    gateways: Vec<SocketAddr>,
    current: usize,
    state: LinkState,
    rtt: Option<Duration>,
    /// Per gateway, probes missed since the link was last answered (by any gateway: counts from
    /// before an answer, say from a cut that has healed, say nothing about the gateways now).
    misses: Vec<u32>,
    /// Per gateway, when it last answered a probe.
    answered_at: Vec<Option<Instant>>,
    outstanding: Option<(u64, Instant)>,
    next_probe: Instant,
    probes_sent: u64,
    probes_missed: u64,
}

impl Link {
    /// A link that probes at once. `gateways` is not empty (the configuration checks it).
    pub fn new(cluster: ClusterName, gateways: Vec<SocketAddr>, now: Instant) -> Self {
        let misses = vec![0; gateways.len()];
        let answered_at = vec![None; gateways.len()];
        Self {
            cluster,
            gateways,
            current: 0,
            state: LinkState::Connecting,
            rtt: None,
            misses,
            answered_at,
            outstanding: None,
            next_probe: now,
            probes_sent: 0,
            probes_missed: 0,
        }
    }

    pub fn state(&self) -> LinkState {
        self.state
    }

    /// Every gateway of the remote cluster, in the configured order.
    pub fn gateways(&self) -> &[SocketAddr] {
        &self.gateways
    }

    pub fn gateway(&self) -> SocketAddr {
        self.gateways[self.current % self.gateways.len()]
    }

    pub fn status(&self) -> LinkStatus {
        LinkStatus {
            cluster: self.cluster.clone(),
            state: self.state,
            gateway: self.gateway(),
            rtt: self.rtt,
            probes_sent: self.probes_sent,
            probes_missed: self.probes_missed,
        }
    }

    /// Times out an overdue probe, then starts the next one if it is due.
    pub fn poll(
        &mut self,
        now: Instant,
        timers: &WanTimers,
        next_id: &mut u64,
    ) -> Option<ProbeOut> {
        if let Some((_, sent)) = self.outstanding {
            if now.saturating_since(sent) >= timers.probe_timeout {
                self.miss(timers);
            }
        }
        if self.outstanding.is_some() || now < self.next_probe {
            return None;
        }
        *next_id += 1;
        self.outstanding = Some((*next_id, now));
        self.next_probe = now + timers.probe_interval;
        self.probes_sent += 1;
        Some(ProbeOut {
            id: *next_id,
            gateway: self.gateway(),
        })
    }

    /// Takes in an answer; false when it answers no outstanding probe (late or unknown).
    pub fn answered(&mut self, now: Instant, id: u64) -> bool {
        let Some((sent, at)) = self.outstanding else {
            return false;
        };
        if sent != id {
            return false;
        }
        let sample = now.saturating_since(at);
        // RFC 6298's smoothing: one noisy WAN sample moves the estimate by an eighth.
        self.rtt = Some(match self.rtt {
            Some(rtt) => (rtt * 7 + sample) / 8,
            None => sample,
        });
        self.outstanding = None;
        self.misses.fill(0);
        self.answered_at[self.current] = Some(now);
        self.state = LinkState::Up;
        true
    }

    /// Takes in a failed probe (refused, unreachable); false when it is not the outstanding one.
    pub fn failed(&mut self, id: u64, timers: &WanTimers) -> bool {
        match self.outstanding {
            Some((sent, _)) if sent == id => {
                self.miss(timers);
                true
            }
            _ => false,
        }
    }

    fn miss(&mut self, timers: &WanTimers) {
        self.outstanding = None;
        self.probes_missed += 1;
        let missed = &mut self.misses[self.current];
        *missed = missed.saturating_add(1);
        // Failover without a separate detector: the next probe goes to the gateway that has
        // missed least, the current one included; between equals to the one that answered last,
        // so a dead gateway and a lost probe of a healthy one leave the link on the healthy one.
        self.current = self.least_missed_after(self.gateways.len());
        if self.misses.iter().all(|&m| m >= timers.down_after) {
            self.state = LinkState::Down;
        }
    }

    /// Moves to another gateway if `gateway` is the current one (a call could not reach it).
    /// Not a probe miss: the probes decide whether the link is down.
    pub fn skip(&mut self, gateway: SocketAddr) {
        if self.gateway() == gateway && self.gateways.len() > 1 {
            self.current = self.least_missed_after(self.gateways.len() - 1);
        }
    }

    /// Among the `count` gateways that follow the current one in rotation (wrapping around to it
    /// when `count` is their number), the one with the fewest misses; between equals the one that
    /// answered last, then the first in rotation.
    fn least_missed_after(&self, count: usize) -> usize {
        let n = self.gateways.len();
        (1..=count)
            .map(|step| (self.current + step) % n)
            .min_by_key(|&i| (self.misses[i], Reverse(self.answered_at[i])))
            .unwrap_or(self.current)
    }

    /// When [`poll`](Link::poll) next has work.
    pub fn next_deadline(&self, timers: &WanTimers) -> Instant {
        match self.outstanding {
            Some((_, sent)) => sent + timers.probe_timeout,
            None => self.next_probe,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> Instant {
        Instant::from_elapsed(Duration::from_millis(ms))
    }

    fn timers() -> WanTimers {
        WanTimers {
            probe_interval: Duration::from_millis(1000),
            probe_timeout: Duration::from_millis(500),
            down_after: 2,
        }
    }

    fn link() -> Link {
        let gateways = vec![
            "127.0.0.1:1".parse().unwrap(),
            "127.0.0.1:2".parse().unwrap(),
        ];
        Link::new(ClusterName::new("b").unwrap(), gateways, at(0))
    }

    #[test]
    fn probes_are_paced_and_answers_bring_the_link_up_with_an_rtt() {
        let (mut link, t, mut ids) = (link(), timers(), 0);
        let first = link.poll(at(0), &t, &mut ids).unwrap();
        assert_eq!(
            link.poll(at(100), &t, &mut ids),
            None,
            "one probe at a time"
        );
        assert!(link.answered(at(80), first.id));
        assert!(
            !link.answered(at(90), first.id),
            "a duplicate answer is ignored"
        );
        assert_eq!(link.state(), LinkState::Up);
        assert_eq!(link.status().rtt, Some(Duration::from_millis(80)));
        assert_eq!(
            link.poll(at(999), &t, &mut ids),
            None,
            "not before the interval"
        );
        let second = link.poll(at(1000), &t, &mut ids).unwrap();
        assert!(link.answered(at(1160), second.id));
        assert_eq!(link.status().rtt, Some(Duration::from_millis(90)));
    }

    #[test]
    fn missed_probes_fail_over_to_the_next_gateway_and_take_the_link_down() {
        let (mut link, t, mut ids) = (link(), timers(), 0);
        let first = link.poll(at(0), &t, &mut ids).unwrap();
        assert!(link.answered(at(10), first.id));
        let second = link.poll(at(1000), &t, &mut ids).unwrap();
        assert_eq!(second.gateway, "127.0.0.1:1".parse().unwrap());
        assert_eq!(link.next_deadline(&t), at(1500));
        // The timeout passes: a miss, the next gateway, still up after one miss.
        assert_eq!(link.poll(at(1500), &t, &mut ids), None);
        assert_eq!(link.state(), LinkState::Up);
        assert_eq!(link.gateway(), "127.0.0.1:2".parse().unwrap());
        let third = link.poll(at(2000), &t, &mut ids).unwrap();
        assert_eq!(third.gateway, "127.0.0.1:2".parse().unwrap());
        assert!(link.failed(third.id, &t));
        assert_eq!(link.state(), LinkState::Up, "each gateway missed once");
        let fourth = link.poll(at(3000), &t, &mut ids).unwrap();
        assert_eq!(fourth.gateway, "127.0.0.1:1".parse().unwrap());
        assert!(link.failed(fourth.id, &t));
        let fifth = link.poll(at(4000), &t, &mut ids).unwrap();
        assert_eq!(fifth.gateway, "127.0.0.1:2".parse().unwrap());
        assert!(link.failed(fifth.id, &t));
        assert_eq!(link.state(), LinkState::Down, "every gateway missed twice");
        assert!(
            !link.answered(at(4100), fifth.id),
            "a failed probe's late answer is ignored"
        );
        let sixth = link.poll(at(5000), &t, &mut ids).unwrap();
        assert!(link.answered(at(5050), sixth.id));
        assert_eq!(link.state(), LinkState::Up, "heals on the next answer");
        assert_eq!(link.status().probes_missed, 4);
    }

    #[test]
    fn a_dead_gateway_and_lost_probes_of_the_healthy_one_do_not_take_the_link_down() {
        let (mut link, t, mut ids) = (link(), timers(), 0);
        let dead: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let healthy: SocketAddr = "127.0.0.1:2".parse().unwrap();
        let first = link.poll(at(0), &t, &mut ids).unwrap();
        assert_eq!(first.gateway, dead);
        assert!(link.failed(first.id, &t));
        let mut now = 1000;
        let answered = link.poll(at(now), &t, &mut ids).unwrap();
        assert_eq!(answered.gateway, healthy);
        assert!(link.answered(at(now + 40), answered.id));
        for round in 0..20 {
            now += 1000;
            // The healthy gateway's probe is lost; the next goes to the dead one (it has not
            // missed since the answer), and the one after back to the healthy one, which
            // answered last.
            let lost = link.poll(at(now), &t, &mut ids).unwrap();
            assert_eq!(lost.gateway, healthy, "round {round}");
            assert!(link.failed(lost.id, &t));
            now += 1000;
            let tried = link.poll(at(now), &t, &mut ids).unwrap();
            assert_eq!(tried.gateway, dead, "round {round}");
            assert!(link.failed(tried.id, &t));
            assert_ne!(link.state(), LinkState::Down, "round {round}");
            now += 1000;
            let probe = link.poll(at(now), &t, &mut ids).unwrap();
            assert_eq!(probe.gateway, healthy, "round {round}");
            assert!(link.answered(at(now + 40), probe.id));
        }
    }

    #[test]
    fn a_failed_call_moves_the_link_to_the_next_gateway_once() {
        let mut link = link();
        let first: SocketAddr = "127.0.0.1:1".parse().unwrap();
        link.skip(first);
        assert_eq!(link.gateway(), "127.0.0.1:2".parse().unwrap());
        link.skip(first);
        assert_eq!(
            link.gateway(),
            "127.0.0.1:2".parse().unwrap(),
            "a second report of the same gateway does not skip the good one"
        );
        assert_eq!(link.status().probes_missed, 0);
        assert_eq!(link.state(), LinkState::Connecting);
    }
}
