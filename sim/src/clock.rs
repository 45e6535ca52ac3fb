//! A node's own clock: the world's virtual time with an offset and a rate error, kept monotonic
//! (like `std::time::Instant` on a machine whose wall clock is stepped).

use foundation_core::time::Instant;

const PPM: i128 = 1_000_000;

/// How one node's clock relates to the world's.
#[derive(Clone, Debug, Default)]
pub struct NodeClock {
    offset_us: i64,
    drift_ppm: i64,
    last_us: u64,
}

impl NodeClock {
    /// Steps the clock by `offset_us` and sets its rate error. Local time never goes back: after
    /// a negative step it stands still until the world catches up.
    pub fn skew(&mut self, offset_us: i64, drift_ppm: i64) {
        self.offset_us = self.offset_us.saturating_add(offset_us);
        // A rate of zero or less would stop or reverse time: keep it within ±50 %.
        self.drift_ppm = drift_ppm.clamp(-500_000, 500_000);
    }

    /// The node's time at world time `world_us`.
    pub fn local(&mut self, world_us: u64) -> Instant {
        let scaled = scale(i128::from(world_us), self.drift_ppm);
        let raw = (scaled + i128::from(self.offset_us)).clamp(0, i128::from(u64::MAX)) as u64;
        self.last_us = self.last_us.max(raw);
        Instant::from_elapsed(std::time::Duration::from_micros(self.last_us))
    }

    /// The earliest world time, not before `now_us`, at which the node's clock reads `local`.
    pub fn world_at(&self, local: Instant, now_us: u64) -> u64 {
        // An `Instant` is whole microseconds: its seconds and sub-second microseconds give
        // them back without `as_micros`'s 128-bit arithmetic (this runs on every event).
        let elapsed = local.elapsed();
        let local_us = elapsed.as_secs() * 1_000_000 + u64::from(elapsed.subsec_micros());
        if self.offset_us == 0 && self.drift_ppm == 0 {
            return local_us.max(now_us);
        }
        let world = unscale(
            i128::from(local_us) - i128::from(self.offset_us),
            self.drift_ppm,
        );
        world.clamp(i128::from(now_us), i128::from(u64::MAX)) as u64
    }
}

/// `us` at the rate `1 + drift_ppm / 10⁶`, rounded toward zero. Most clocks run at the world's
/// rate, and this is on every event's path: they skip the arithmetic, and the others take it
/// in 64 bits while it fits (any run shorter than about 100 days of world time), not through
/// the 128-bit division's library call. Each shortcut gives what the 128-bit formula gives.
fn scale(us: i128, drift_ppm: i64) -> i128 {
    if drift_ppm == 0 {
        return us;
    }
    let rate = PPM as i64 + drift_ppm;
    match i64::try_from(us).ok().and_then(|us| us.checked_mul(rate)) {
        Some(product) => i128::from(product / PPM as i64),
        None => us * i128::from(rate) / PPM,
    }
}

/// The world time at which a clock running at `1 + drift_ppm / 10⁶` has advanced by `us`,
/// rounded up, so a timer never fires before its time on the node's clock (at the world's
/// rate, `us` itself; in 64 bits while they suffice, as in [`scale`]).
fn unscale(us: i128, drift_ppm: i64) -> i128 {
    if drift_ppm == 0 {
        return us;
    }
    let rate = PPM as i64 + drift_ppm;
    let narrow = i64::try_from(us)
        .ok()
        .and_then(|us| us.checked_mul(PPM as i64)?.checked_add(rate - 1));
    match narrow {
        Some(numerator) => i128::from(numerator.div_euclid(rate)),
        None => (us * PPM + i128::from(rate) - 1).div_euclid(i128::from(rate)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// The shortcut for clocks at the world's rate gives what the division gives.
    #[test]
    fn the_shortcut_at_the_worlds_rate_equals_the_division() {
        for us in [-3_000_001, -1, 0, 1, 999_999, 1_000_000, 123_456_789_012] {
            assert_eq!(scale(us, 0), us * PPM / PPM);
            assert_eq!(unscale(us, 0), (us * PPM + PPM - 1).div_euclid(PPM));
        }
    }

    /// The 64-bit shortcut of skewed clocks gives what 128 bits give, near zero, at any
    /// sign, and where 64 bits overflow.
    #[test]
    fn the_narrow_arithmetic_equals_the_wide() {
        let wide_scale = |us: i128, ppm: i64| us * (PPM + i128::from(ppm)) / PPM;
        let wide_unscale = |us: i128, ppm: i64| {
            let rate = PPM + i128::from(ppm);
            (us * PPM + rate - 1).div_euclid(rate)
        };
        let edges = [
            i128::from(i64::MAX),
            i128::from(i64::MIN),
            i128::from(u64::MAX),
        ];
        let mut values: Vec<i128> = edges.iter().flat_map(|&e| [e, e / 2, e / PPM]).collect();
        values.extend([
            -3_000_001, -999_999, -1, 0, 1, 999_999, 1_000_000, 40_000_007,
        ]);
        for us in values {
            for ppm in [-500_000, -1_000, -1, 1, 37, 1_000, 500_000] {
                assert_eq!(scale(us, ppm), wide_scale(us, ppm), "scale {us} {ppm}");
                assert_eq!(
                    unscale(us, ppm),
                    wide_unscale(us, ppm),
                    "unscale {us} {ppm}"
                );
            }
        }
    }

    /// A clock at the world's time and rate maps a deadline to itself, never before now.
    #[test]
    fn an_unskewed_clock_maps_timers_to_themselves() {
        let clock = NodeClock::default();
        for us in [0, 1, 999_999, 1_000_001, 123_456_789_012, u64::MAX / 2] {
            let due = Instant::from_elapsed(Duration::from_micros(us));
            assert_eq!(clock.world_at(due, 7), us.max(7));
            assert_eq!(clock.world_at(due, us + 1), us + 1);
        }
    }

    #[test]
    fn a_skewed_clock_maps_timers_back_to_world_time_and_never_goes_back() {
        let mut clock = NodeClock::default();
        clock.skew(1_000_000, 1_000);
        let local = clock.local(10_000_000);
        assert_eq!(local.elapsed(), Duration::from_micros(11_010_000));
        let due = local + Duration::from_secs(1);
        let world = clock.world_at(due, 10_000_000);
        assert!(clock.clone().local(world) >= due);
        clock.skew(-5_000_000, 0);
        assert_eq!(
            clock.local(10_000_001),
            local,
            "monotonic after a step back"
        );
    }
}
