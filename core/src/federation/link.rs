//! One link to a remote cluster, as its gateway sees it: WAN-paced probes to the remote's
//! gateways (one at a time while the link is up; after a miss the next probe goes to the gateway
//! with the fewest misses since the link was last answered, so a crashed gateway is routed
//! around; every gateway at once while the link is not up, so the first that answers brings it
//! back whichever gateways were lost meanwhile), the link's state (down only when every gateway
//! has missed in a row, so one dead gateway and a lost probe of a healthy one do not take it down)
//! and a smoothed round-trip time from the answers.

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
    /// Per gateway, the probe waiting for its answer and when it was sent.
    outstanding: Vec<Option<(u64, Instant)>>,
    next_probe: Instant,
    probes_sent: u64,
    probes_missed: u64,
}

impl Link {
    /// A link that probes at once. `gateways` is not empty (the configuration checks it).
    pub fn new(cluster: ClusterName, gateways: Vec<SocketAddr>, now: Instant) -> Self {
        let misses = vec![0; gateways.len()];
        let answered_at = vec![None; gateways.len()];
        let outstanding = vec![None; gateways.len()];
        Self {
            cluster,
            gateways,
            current: 0,
            state: LinkState::Connecting,
            rtt: None,
            misses,
            answered_at,
            outstanding,
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

    /// The smoothed round-trip time of the probes, once one was answered.
    pub fn rtt(&self) -> Option<Duration> {
        self.rtt
    }

    pub fn status(&self) -> LinkStatus {
        LinkStatus {
            cluster: self.cluster.clone(),
            state: self.state,
            gateway: self.gateway(),
            rtt: self.rtt(),
            probes_sent: self.probes_sent,
            probes_missed: self.probes_missed,
        }
    }

    /// Times out overdue probes, then starts the next round if it is due: one probe to the
    /// current gateway while the link is up, one to every gateway while it is not. Probing them
    /// all costs nothing while up and spares a heal the rotation through gateways that died
    /// during the cut, each of which would otherwise cost a probe timeout.
    pub fn poll(&mut self, now: Instant, timers: &WanTimers, next_id: &mut u64) -> Vec<ProbeOut> {
        for gateway in 0..self.gateways.len() {
            if let Some((_, sent)) = self.outstanding[gateway] {
                if now.saturating_since(sent) >= timers.probe_timeout {
                    self.miss(gateway, timers);
                }
            }
        }
        if self.outstanding.iter().any(Option::is_some) || now < self.next_probe {
            return Vec::new();
        }
        self.next_probe = now + timers.probe_interval;
        let round: Vec<usize> = match self.state {
            LinkState::Up => vec![self.current],
            LinkState::Connecting | LinkState::Down => (0..self.gateways.len()).collect(),
        };
        round
            .into_iter()
            .map(|gateway| {
                *next_id += 1;
                self.outstanding[gateway] = Some((*next_id, now));
                self.probes_sent += 1;
                ProbeOut {
                    id: *next_id,
                    gateway: self.gateways[gateway],
                }
            })
            .collect()
    }

    /// The remote cluster was heard from (a probe or a push of its own): a link that is not up
    /// starts its next round as soon as its outstanding probes have ended.
    pub fn heard_from(&mut self, now: Instant) {
        if self.state != LinkState::Up {
            self.next_probe = self.next_probe.min(now);
        }
    }

    /// The gateway whose outstanding probe is `id`.
    fn probed_with(&self, id: u64) -> Option<usize> {
        self.outstanding
            .iter()
            .position(|probe| matches!(probe, Some((sent, _)) if *sent == id))
    }

    /// Takes in an answer; false when it answers no outstanding probe (late or unknown). On a
    /// link that was not up, the first gateway to answer becomes the one probes and calls go to.
    pub fn answered(&mut self, now: Instant, id: u64) -> bool {
        let Some(gateway) = self.probed_with(id) else {
            return false;
        };
        let Some((_, at)) = self.outstanding[gateway].take() else {
            return false;
        };
        let sample = now.saturating_since(at);
        // RFC 6298's smoothing: one noisy WAN sample moves the estimate by an eighth.
        self.rtt = Some(match self.rtt {
            Some(rtt) => (rtt * 7 + sample) / 8,
            None => sample,
        });
        self.misses.fill(0);
        self.answered_at[gateway] = Some(now);
        if self.state != LinkState::Up {
            self.current = gateway;
        }
        self.state = LinkState::Up;
        true
    }

    /// Takes in a failed probe (refused, unreachable); false when it is not an outstanding one.
    pub fn failed(&mut self, id: u64, timers: &WanTimers) -> bool {
        match self.probed_with(id) {
            Some(gateway) => {
                self.miss(gateway, timers);
                true
            }
            None => false,
        }
    }

    fn miss(&mut self, gateway: usize, timers: &WanTimers) {
        self.outstanding[gateway] = None;
        self.probes_missed += 1;
        let missed = &mut self.misses[gateway];
        *missed = missed.saturating_add(1);
        // Failover without a separate detector: when the current gateway missed, the next probe
        // goes to the gateway that has missed least, the current one included; between equals to
        // the one that answered last, so a dead gateway and a lost probe of a healthy one leave
        // the link on the healthy one. A miss of another gateway (a probe of a round sent to all)
        // leaves the current one where it is.
        if gateway == self.current {
            self.current = self.least_missed_after(self.gateways.len());
        }
        if self.misses.iter().all(|&m| m >= timers.down_after) {
            self.state = LinkState::Down;
        }
    }

    /// Moves to another gateway if `gateway` is the current one (a call could not reach it).
    /// Not a probe miss: the probes decide whether the link is down.
    pub fn skip(&mut self, gateway: SocketAddr) {
        self.move_from(gateway, |_, _| true);
    }

    /// As [`skip`](Link::skip) for a call that reached `gateway` but got no answer, unless
    /// every other gateway has missed more probes. A cut loses every call's attempt too, and
    /// moving the probes back to a gateway that has missed its rounds already would keep the
    /// link up (and calls waiting out their deadlines) for rounds more.
    pub fn skip_unanswered(&mut self, gateway: SocketAddr) {
        self.move_from(gateway, |next, current| next <= current);
    }

    /// Moves from `gateway`, if it is the current one, to the next with the fewest misses when
    /// `allowed(its misses, the current one's)`.
    fn move_from(&mut self, gateway: SocketAddr, allowed: impl Fn(u32, u32) -> bool) {
        if self.gateway() != gateway || self.gateways.len() < 2 {
            return;
        }
        let next = self.least_missed_after(self.gateways.len() - 1);
        if allowed(self.misses[next], self.misses[self.current]) {
            self.current = next;
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
        self.outstanding
            .iter()
            .flatten()
            .map(|&(_, sent)| sent + timers.probe_timeout)
            .min()
            .unwrap_or(self.next_probe)
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

    const FIRST: &str = "127.0.0.1:1";
    const SECOND: &str = "127.0.0.1:2";

    fn addr(gateway: &str) -> SocketAddr {
        gateway.parse().unwrap()
    }

    fn link() -> Link {
        Link::new(
            ClusterName::new("b").unwrap(),
            vec![addr(FIRST), addr(SECOND)],
            at(0),
        )
    }

    /// The probes of a round, in gateway order, checked to go where `expected` says.
    fn round(link: &mut Link, now: u64, ids: &mut u64, expected: &[&str]) -> Vec<u64> {
        let probes = link.poll(at(now), &timers(), ids);
        let gateways: Vec<SocketAddr> = probes.iter().map(|p| p.gateway).collect();
        let wanted: Vec<SocketAddr> = expected.iter().map(|g| addr(g)).collect();
        assert_eq!(gateways, wanted, "the round at {now} ms");
        probes.iter().map(|p| p.id).collect()
    }

    /// The single probe of a round of a link that is up, checked to go to `gateway`.
    fn one(link: &mut Link, now: u64, ids: &mut u64, gateway: &str) -> u64 {
        round(link, now, ids, &[gateway])[0]
    }

    #[test]
    fn probes_are_paced_and_answers_bring_the_link_up_with_an_rtt() {
        let (mut link, t, mut ids) = (link(), timers(), 0);
        let first = round(&mut link, 0, &mut ids, &[FIRST, SECOND]);
        assert!(link.answered(at(80), first[0]));
        assert!(
            !link.answered(at(90), first[0]),
            "a duplicate answer is ignored"
        );
        assert_eq!(link.state(), LinkState::Up);
        assert_eq!(link.status().rtt, Some(Duration::from_millis(80)));
        round(&mut link, 100, &mut ids, &[]);
        assert_eq!(
            link.next_deadline(&t),
            at(500),
            "the second gateway's probe"
        );
        round(&mut link, 500, &mut ids, &[]);
        assert_eq!(link.gateway(), addr(FIRST), "its miss moves nothing");
        round(&mut link, 999, &mut ids, &[]);
        let second = one(&mut link, 1000, &mut ids, FIRST);
        assert!(link.answered(at(1160), second));
        assert_eq!(link.status().rtt, Some(Duration::from_millis(90)));
    }

    #[test]
    fn missed_probes_fail_over_to_the_next_gateway_and_take_the_link_down() {
        let (mut link, t, mut ids) = (link(), timers(), 0);
        let first = round(&mut link, 0, &mut ids, &[FIRST, SECOND]);
        assert!(link.failed(first[1], &t));
        assert!(link.answered(at(10), first[0]));
        one(&mut link, 1000, &mut ids, FIRST);
        assert_eq!(link.next_deadline(&t), at(1500));
        // The timeout passes: a miss, the next gateway, still up after one miss.
        round(&mut link, 1500, &mut ids, &[]);
        assert_eq!(link.state(), LinkState::Up);
        assert_eq!(link.gateway(), addr(SECOND));
        let third = one(&mut link, 2000, &mut ids, SECOND);
        assert!(link.failed(third, &t));
        assert_eq!(link.state(), LinkState::Up, "each gateway missed once");
        let fourth = one(&mut link, 3000, &mut ids, FIRST);
        assert!(link.failed(fourth, &t));
        let fifth = one(&mut link, 4000, &mut ids, SECOND);
        assert!(link.failed(fifth, &t));
        assert_eq!(link.state(), LinkState::Down, "every gateway missed twice");
        assert!(
            !link.answered(at(4100), fifth),
            "a failed probe's late answer is ignored"
        );
        let down_round = round(&mut link, 5000, &mut ids, &[FIRST, SECOND]);
        assert!(link.answered(at(5050), down_round[1]));
        assert_eq!(link.state(), LinkState::Up, "heals on the next answer");
        assert_eq!(link.gateway(), addr(SECOND), "the gateway that answered");
        assert_eq!(link.status().probes_missed, 5);
    }

    #[test]
    fn a_dead_gateway_and_lost_probes_of_the_healthy_one_do_not_take_the_link_down() {
        let (mut link, t, mut ids) = (link(), timers(), 0);
        let first = round(&mut link, 0, &mut ids, &[FIRST, SECOND]);
        assert!(link.failed(first[0], &t), "the first gateway is dead");
        assert!(link.answered(at(40), first[1]));
        let mut now = 0;
        for round in 0..20 {
            now += 1000;
            // The healthy gateway's probe is lost; the next goes to the dead one (it has not
            // missed since the answer), and the one after back to the healthy one, which
            // answered last.
            let lost = one(&mut link, now, &mut ids, SECOND);
            assert!(link.failed(lost, &t));
            now += 1000;
            let tried = one(&mut link, now, &mut ids, FIRST);
            assert!(link.failed(tried, &t));
            assert_ne!(link.state(), LinkState::Down, "round {round}");
            now += 1000;
            let probe = one(&mut link, now, &mut ids, SECOND);
            assert!(link.answered(at(now + 40), probe));
        }
    }

    #[test]
    fn after_a_heal_the_gateway_that_answers_carries_the_link_whichever_died_in_the_cut() {
        let (mut link, t, mut ids) = (link(), timers(), 0);
        let first = round(&mut link, 0, &mut ids, &[FIRST, SECOND]);
        assert!(link.answered(at(10), first[0]));
        assert!(link.answered(at(20), first[1]));
        assert_eq!(link.gateway(), addr(FIRST), "the first answer chose it");
        // The cut: probes go unanswered until every gateway missed twice, then each round
        // probes both.
        for now in [1000, 2000, 3000, 4000] {
            let probes = link.poll(at(now), &t, &mut ids);
            assert_eq!(probes.len(), 1, "up: one probe at {now} ms");
            assert!(link.failed(probes[0].id, &t));
        }
        assert_eq!(link.state(), LinkState::Down);
        let cut = round(&mut link, 5000, &mut ids, &[FIRST, SECOND]);
        assert!(link.failed(cut[0], &t));
        assert!(link.failed(cut[1], &t));
        // The first gateway died during the cut, which then heals: the second answers the
        // next round and carries the link; the first's miss does not move it back.
        let heal = round(&mut link, 6000, &mut ids, &[FIRST, SECOND]);
        assert!(link.answered(at(6040), heal[1]));
        assert_eq!(link.state(), LinkState::Up);
        assert_eq!(link.gateway(), addr(SECOND));
        round(&mut link, 6500, &mut ids, &[]);
        assert_eq!(link.gateway(), addr(SECOND));
        // A lost probe of the live gateway leaves the link on it: the dead one has missed too
        // since the heal, and answered before the live one did.
        let lost = one(&mut link, 7000, &mut ids, SECOND);
        assert!(link.failed(lost, &t));
        assert_eq!(link.gateway(), addr(SECOND));
        let next = one(&mut link, 8000, &mut ids, SECOND);
        assert!(link.answered(at(8040), next));
    }

    #[test]
    fn a_failed_call_moves_the_link_to_the_next_gateway_once() {
        let mut link = link();
        link.skip(addr(FIRST));
        assert_eq!(link.gateway(), addr(SECOND));
        link.skip(addr(FIRST));
        assert_eq!(
            link.gateway(),
            addr(SECOND),
            "a second report of the same gateway does not skip the good one"
        );
        assert_eq!(link.status().probes_missed, 0);
        assert_eq!(link.state(), LinkState::Connecting);
    }
}
