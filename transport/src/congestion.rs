//! A delay-based congestion controller for background traffic (LEDBAT-style, RFC 6817), plugged
//! into quinn through `congestion::ControllerFactory`.
//!
//! Loss-based controllers (quinn's default, Cubic) grow the window until a buffer overflows, so a
//! saturating transfer keeps every queue on its path full: on loopback that is the UDP socket's
//! receive buffer and the receiver's backlog of undecrypted packets, milliseconds deep, and any
//! urgent packet that shares them waits behind it. This controller instead measures queueing
//! delay — the round-trip time of each acknowledged packet above the lowest seen recently — and
//! steers the window so that the queue it builds stays below a target: background traffic takes
//! the capacity nobody else uses and yields as soon as queueing appears.
//!
//! Differences from RFC 6817, for a path whose base delay is tens of microseconds:
//! - delays are round-trip samples (`ack time - send time` of the newest packet of each ack),
//!   not one-way delays, since quinn carries no timestamps;
//! - the current delay is the lowest of the last few acks, which filters out an ack the peer
//!   delayed on purpose and a scheduling hiccup;
//! - the base delay is the lowest sample of the last few seconds, kept in buckets, so a route
//!   change is learnt within `BASE_BUCKETS × base_bucket`;
//! - slow start (doubling per round trip) until the queue first reaches half the target, as
//!   LEDBAT++ does, so a transfer reaches the path's rate within a few round trips;
//! - above the target the window shrinks in proportion to how far above it is, at most by half
//!   per round trip, instead of only linearly, so a queue drains within about one round trip;
//! - the target is at least a quarter of the base delay, so on a long path bulk is not starved
//!   by jitter larger than a target sized for a LAN.

use std::any::Any;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use quinn::congestion::{Controller, ControllerFactory};
use quinn_proto::RttEstimator;

/// Lowest-delay samples kept for the current delay.
const CURRENT_FILTER: usize = 4;
/// Buckets of base-delay history.
const BASE_BUCKETS: usize = 4;
/// Packets the window never shrinks below: enough to keep acks flowing (one ack per two
/// packets) without a timer.
const MIN_WINDOW_PACKETS: u64 = 4;

/// Settings of the delay-based controller.
#[derive(Clone, Debug)]
pub struct LedbatConfig {
    /// Queueing delay the background traffic may add to the path. Smaller keeps urgent traffic
    /// faster and costs background throughput when delays are noisy. On a long path the
    /// controller allows a quarter of the base delay instead when that is more, so a path whose
    /// jitter alone exceeds a LAN-sized target (a WAN link) still carries bulk.
    pub target: Duration,
    /// How fast the window moves towards the target (RFC 6817's GAIN); 1 adds at most one
    /// packet per round trip while below the target.
    pub gain: f64,
    /// Window at the start, in bytes.
    pub initial_window: u64,
    /// Largest window, in bytes.
    pub max_window: u64,
    /// Length of one bucket of base-delay history.
    pub base_bucket: Duration,
    /// Urgent traffic to yield to: while it is active, `yield_target` replaces `target`.
    pub urgent: Option<Arc<UrgentTraffic>>,
    /// The queueing delay allowed while urgent traffic is active.
    pub yield_target: Duration,
}

/// Tells delay-based controllers that urgent traffic is flowing from this node, so that
/// background transfers keep a shorter queue for as long as it does.
#[derive(Debug)]
pub struct UrgentTraffic {
    epoch: Instant,
    /// Nanoseconds after `epoch` until which urgent traffic counts as active.
    until: AtomicU64,
    hold: Duration,
}

impl UrgentTraffic {
    /// Urgent traffic stays active for `hold` after each [`mark`](Self::mark).
    pub fn new(hold: Duration) -> Self {
        Self {
            epoch: Instant::now(),
            until: AtomicU64::new(0),
            hold,
        }
    }

    /// Urgent traffic was just sent.
    pub fn mark(&self, now: Instant) {
        let until = now.saturating_duration_since(self.epoch) + self.hold;
        self.until
            .fetch_max(until.as_nanos() as u64, Ordering::Relaxed);
    }

    /// Whether urgent traffic was sent within the hold time before `now`.
    pub fn active(&self, now: Instant) -> bool {
        (now.saturating_duration_since(self.epoch).as_nanos() as u64)
            < self.until.load(Ordering::Relaxed)
    }
}

impl Default for LedbatConfig {
    fn default() -> Self {
        Self {
            target: Duration::from_millis(1),
            gain: 1.0,
            initial_window: 14_720,
            max_window: 64 << 20,
            base_bucket: Duration::from_secs(2),
            urgent: None,
            yield_target: Duration::from_micros(25),
        }
    }
}

impl ControllerFactory for LedbatConfig {
    fn build(self: Arc<Self>, now: Instant, current_mtu: u16) -> Box<dyn Controller> {
        Box::new(Ledbat::new(self, now, current_mtu))
    }
}

/// The controller of one connection.
#[derive(Clone, Debug)]
pub struct Ledbat {
    config: Arc<LedbatConfig>,
    mtu: u64,
    window: u64,
    slow_start: bool,
    /// Lowest delay of the acks of the current batch.
    batch_delay: Option<Duration>,
    /// Bytes newly acknowledged in the current batch (not app-limited).
    batch_bytes: u64,
    /// The lowest delays of the last few batches.
    current: VecDeque<Duration>,
    /// (start of bucket, lowest delay in it), oldest first.
    base: VecDeque<(Instant, Duration)>,
    /// Packets sent before this moment belong to a round trip already answered with a decrease.
    recovery_start: Instant,
}

impl Ledbat {
    fn new(config: Arc<LedbatConfig>, now: Instant, mtu: u16) -> Self {
        Self {
            window: config.initial_window,
            config,
            mtu: u64::from(mtu),
            slow_start: true,
            batch_delay: None,
            batch_bytes: 0,
            current: VecDeque::with_capacity(CURRENT_FILTER),
            base: VecDeque::with_capacity(BASE_BUCKETS),
            recovery_start: now,
        }
    }

    fn min_window(&self) -> u64 {
        MIN_WINDOW_PACKETS * self.mtu
    }

    fn record_base(&mut self, now: Instant, delay: Duration) {
        match self.base.back_mut() {
            Some((start, lowest)) if now.duration_since(*start) < self.config.base_bucket => {
                *lowest = (*lowest).min(delay);
            }
            _ => {
                if self.base.len() == BASE_BUCKETS {
                    self.base.pop_front();
                }
                self.base.push_back((now, delay));
            }
        }
    }

    fn base_delay(&self) -> Option<Duration> {
        self.base.iter().map(|(_, d)| *d).min()
    }

    fn current_delay(&self) -> Option<Duration> {
        self.current.iter().copied().min()
    }

    /// The queueing delay seen now: current delay above the base delay.
    pub fn queueing_delay(&self) -> Option<Duration> {
        Some(self.current_delay()?.saturating_sub(self.base_delay()?))
    }

    /// A packet sent at `sent` was acknowledged at `now` (the body of `Controller::on_ack`,
    /// apart from quinn's RTT estimator, which this controller does not use).
    fn acked(&mut self, now: Instant, sent: Instant, bytes: u64, app_limited: bool) {
        let delay = now.saturating_duration_since(sent);
        self.batch_delay = Some(self.batch_delay.map_or(delay, |d| d.min(delay)));
        if !app_limited {
            self.batch_bytes += bytes;
        }
    }

    /// The end of a batch of acks: one delay sample, one window update.
    fn end_of_acks(&mut self, now: Instant) {
        let Some(delay) = self.batch_delay.take() else {
            return;
        };
        let acked = std::mem::take(&mut self.batch_bytes);
        self.record_base(now, delay);
        if self.current.len() == CURRENT_FILTER {
            self.current.pop_front();
        }
        self.current.push_back(delay);
        let Some(queueing) = self.queueing_delay() else {
            return;
        };
        let base = self.base_delay().unwrap_or_default();
        let configured = match &self.config.urgent {
            Some(urgent) if urgent.active(now) => self.config.yield_target,
            _ => self.config.target,
        };
        let target = configured.max(base / 4).as_secs_f64().max(1e-6);
        let off_target = ((target - queueing.as_secs_f64()) / target).clamp(-1.0, 1.0);
        if self.slow_start {
            if queueing.as_secs_f64() < target / 2.0 {
                self.window = (self.window + acked).min(self.config.max_window);
                return;
            }
            self.slow_start = false;
        }
        if off_target >= 0.0 {
            let increase =
                self.config.gain * off_target * acked as f64 * self.mtu as f64 / self.window as f64;
            self.window = (self.window + increase as u64).min(self.config.max_window);
        } else if now > self.recovery_start {
            // Above target: shrink in proportion, at most by half, once per round trip.
            let factor = (1.0 + off_target / 2.0).max(0.5);
            self.window = ((self.window as f64 * factor) as u64).max(self.min_window());
            self.recovery_start = now + self.current_delay().unwrap_or_default();
        }
    }
}

impl Controller for Ledbat {
    fn on_ack(
        &mut self,
        now: Instant,
        sent: Instant,
        bytes: u64,
        app_limited: bool,
        _rtt: &RttEstimator,
    ) {
        self.acked(now, sent, bytes, app_limited);
    }

    fn on_end_acks(
        &mut self,
        now: Instant,
        _in_flight: u64,
        _app_limited: bool,
        _largest_packet_num_acked: Option<u64>,
    ) {
        self.end_of_acks(now);
    }

    fn on_congestion_event(
        &mut self,
        now: Instant,
        sent: Instant,
        is_persistent_congestion: bool,
        _lost_bytes: u64,
    ) {
        self.slow_start = false;
        if is_persistent_congestion {
            self.window = self.min_window();
        } else if sent > self.recovery_start {
            self.window = (self.window / 2).max(self.min_window());
        }
        self.recovery_start = now;
    }

    fn on_mtu_update(&mut self, new_mtu: u16) {
        self.mtu = u64::from(new_mtu);
        self.window = self.window.max(self.min_window());
    }

    fn window(&self) -> u64 {
        self.window
    }

    fn clone_box(&self) -> Box<dyn Controller> {
        Box::new(self.clone())
    }

    fn initial_window(&self) -> u64 {
        self.config.initial_window
    }

    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MTU: u16 = 1200;
    const BASE: Duration = Duration::from_micros(50);

    fn controller(now: Instant) -> Ledbat {
        let config = LedbatConfig {
            target: Duration::from_micros(250),
            ..LedbatConfig::default()
        };
        Ledbat::new(Arc::new(config), now, MTU)
    }

    /// One ack batch of `packets` full packets, each acknowledged `delay` after it was sent.
    fn ack(c: &mut Ledbat, now: Instant, delay: Duration, packets: u64) {
        for _ in 0..packets {
            c.acked(now, now - delay, u64::from(MTU), false);
        }
        c.end_of_acks(now);
    }

    #[test]
    fn slow_start_grows_the_window_while_no_queue_builds() {
        let mut now = Instant::now();
        let mut c = controller(now);
        let start = c.window();
        for _ in 0..100 {
            now += BASE;
            ack(&mut c, now, BASE, 2);
        }
        assert_eq!(c.window(), start + 200 * u64::from(MTU));
        assert_eq!(c.queueing_delay(), Some(Duration::ZERO));
    }

    #[test]
    fn a_queue_above_the_target_shrinks_the_window_to_no_less_than_the_minimum() {
        let mut now = Instant::now();
        let mut c = controller(now);
        for _ in 0..100 {
            now += BASE;
            ack(&mut c, now, BASE, 2);
        }
        let grown = c.window();
        // Queueing delay of 1 ms, four times the target, for many round trips.
        for _ in 0..200 {
            now += Duration::from_millis(1);
            ack(&mut c, now, BASE + Duration::from_millis(1), 2);
        }
        assert!(c.window() < grown / 4, "window {} of {grown}", c.window());
        assert_eq!(c.window(), c.min_window());
    }

    #[test]
    fn below_the_target_the_window_grows_slowly_and_a_single_late_ack_is_filtered_out() {
        let mut now = Instant::now();
        let mut c = controller(now);
        now += BASE;
        ack(&mut c, now, BASE, 2);
        // Leave slow start with a queue at the target.
        now += BASE;
        ack(&mut c, now, BASE + Duration::from_micros(300), 2);
        for _ in 0..4 {
            now += BASE;
            ack(&mut c, now, BASE + Duration::from_micros(300), 2);
        }
        assert!(!c.slow_start);
        let before = c.window();
        // Back at the base delay: linear growth, less than one packet per ack of two packets.
        for _ in 0..4 {
            now += BASE;
            ack(&mut c, now, BASE, 2);
        }
        let after = c.window();
        assert!(after > before && after < before + 4 * u64::from(MTU));
        // One delayed ack among prompt ones does not count as queueing.
        now += BASE;
        ack(&mut c, now, Duration::from_millis(25), 1);
        assert_eq!(c.queueing_delay(), Some(Duration::ZERO));
        assert!(c.window() >= after);
    }

    #[test]
    fn on_a_long_path_the_target_scales_with_the_base_delay() {
        let mut now = Instant::now();
        let mut c = controller(now);
        let base = Duration::from_millis(40);
        // Leave slow start with a queue above half the 10 ms scaled target.
        for _ in 0..4 {
            now += base;
            ack(&mut c, now, base, 2);
        }
        for _ in 0..4 {
            now += base;
            ack(&mut c, now, base + Duration::from_millis(6), 2);
        }
        assert!(!c.slow_start);
        // 2 ms of jitter is eight times the 250 µs target, but a fifth of the scaled one.
        let before = c.window();
        for _ in 0..20 {
            now += base;
            ack(&mut c, now, base + Duration::from_millis(2), 2);
        }
        assert!(c.window() > before, "{} <= {before}", c.window());
    }

    #[test]
    fn while_urgent_traffic_flows_the_yield_target_applies() {
        let mut now = Instant::now();
        let urgent = Arc::new(UrgentTraffic::new(Duration::from_millis(10)));
        let config = LedbatConfig {
            target: Duration::from_micros(250),
            urgent: Some(urgent.clone()),
            yield_target: Duration::from_micros(25),
            ..LedbatConfig::default()
        };
        let mut c = Ledbat::new(Arc::new(config), now, MTU);
        for _ in 0..100 {
            now += BASE;
            ack(&mut c, now, BASE, 2);
        }
        // 100 µs of queueing is under the target: the window keeps growing.
        let queued = BASE + Duration::from_micros(100);
        let before = c.window();
        for _ in 0..8 {
            now += queued;
            ack(&mut c, now, queued, 2);
        }
        let grown = c.window();
        assert!(grown > before);
        // A coordination message: the same queue is now four times the yield target.
        urgent.mark(now);
        assert!(urgent.active(now));
        for _ in 0..8 {
            now += queued;
            ack(&mut c, now, queued, 2);
        }
        assert!(c.window() < grown / 2, "{} of {grown}", c.window());
        // 10 ms later urgent traffic is over and the window grows again.
        now += Duration::from_millis(10);
        assert!(!urgent.active(now));
        let low = c.window();
        for _ in 0..8 {
            now += queued;
            ack(&mut c, now, queued, 2);
        }
        assert!(c.window() > low);
    }

    #[test]
    fn a_loss_halves_the_window_once_per_round_trip() {
        let mut now = Instant::now();
        let mut c = controller(now);
        for _ in 0..20 {
            now += BASE;
            ack(&mut c, now, BASE, 2);
        }
        let w = c.window();
        c.on_congestion_event(now, now - BASE, false, 1200);
        assert_eq!(c.window(), w / 2);
        // A second loss of a packet sent before the first reaction changes nothing.
        c.on_congestion_event(now + BASE, now - BASE, false, 1200);
        assert_eq!(c.window(), w / 2);
        c.on_congestion_event(now + BASE, now, true, 1200);
        assert_eq!(c.window(), c.min_window());
    }
}
