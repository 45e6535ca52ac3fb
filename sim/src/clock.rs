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
        let scaled = i128::from(world_us) * (PPM + i128::from(self.drift_ppm)) / PPM;
        let raw = (scaled + i128::from(self.offset_us)).clamp(0, i128::from(u64::MAX)) as u64;
        self.last_us = self.last_us.max(raw);
        Instant::from_elapsed(std::time::Duration::from_micros(self.last_us))
    }

    /// The earliest world time, not before `now_us`, at which the node's clock reads `local`.
    pub fn world_at(&self, local: Instant, now_us: u64) -> u64 {
        let local_us = i128::from(local.elapsed().as_micros() as u64);
        let rate = PPM + i128::from(self.drift_ppm);
        let numerator = (local_us - i128::from(self.offset_us)) * PPM;
        // Rounded up, so the timer never fires before its time on the node's clock.
        let world = (numerator + rate - 1).div_euclid(rate);
        world.clamp(i128::from(now_us), i128::from(u64::MAX)) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

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
