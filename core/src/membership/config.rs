//! Membership timers and limits. Profiles pick presets; every field can be overridden.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How the SWIM failure detector and its additions behave.
///
/// Detection time of a crashed member is roughly `probe_period` (until someone probes it) +
/// `probe_rtt` (direct probe) + the rest of the period (indirect probes) + `suspect_to_down_after`
/// (shortened by independent confirmations), all stretched by the local-health multiplier on a
/// node that is itself struggling.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembershipConfig {
    /// How often each node probes one random member. Default 500 ms in development, 1 s in
    /// production. Must exceed `probe_rtt`.
    pub probe_period: Duration,
    /// How long a direct probe may take before indirect probes are sent. Default 200 ms in
    /// development, 400 ms in production; must be well above the network's p99 RTT.
    pub probe_rtt: Duration,
    /// Members asked to probe on our behalf when a direct probe fails. Default 3.
    pub indirect_probes: usize,
    /// How long a suspected member has to refute before it is declared failed, with no
    /// independent confirmations. Default 2 s in development, 4 s in production.
    pub suspect_to_down_after: Duration,
    /// Independent suspicions that shrink the suspicion timeout to its minimum (Lifeguard), and
    /// how many members check a new suspect directly when its suspicion starts (each check the
    /// suspect leaves unanswered for a probe round trip is one such suspicion). Default 3.
    pub suspicion_confirmations: usize,
    /// The shortest the suspicion timeout gets with enough confirmations. Default a quarter of
    /// `suspect_to_down_after`. With the direct checks, a crashed member reaches it within a
    /// round trip of its suspicion, so this bounds the stall a member survives: about
    /// `probe_period + suspect_to_down_min + probe_rtt` (measured in the simulator: production
    /// survives 2.2 s, development 1 s).
    pub suspect_to_down_min: Duration,
    /// Largest local-health multiplier: a node that misses its own probes' answers stretches its
    /// probe timeouts up to this factor instead of accusing healthy peers. Default 8.
    pub local_health_max: u32,
    /// How often a full-membership push-pull exchange runs with one random member. Default 10 s
    /// in development, 30 s in production.
    pub push_pull_interval: Duration,
    /// How often piggy-backed gossip is also sent on its own, and to how many members.
    /// Default 200 ms to 3 members. A change of the live set is gossiped at once as well (to
    /// `indirect_probes` members, at most ten rounds per interval).
    pub gossip_interval: Duration,
    /// Members gossip is sent to each `gossip_interval`.
    pub gossip_fanout: usize,
    /// How long a failed or departed member is remembered (so it is not re-added by stale
    /// gossip). Default 60 s.
    pub remember_down_for: Duration,
    /// How long a failed or departed member stays in the members table before it is removed
    /// (reaped), on every node by its own clock, so tables converge: a node that joined later
    /// never saw it. Serf's reconnect/tombstone timeouts play this part. A removed member
    /// counts as gone for good for replication (as after `departed_after`). It is listed again
    /// the moment it comes back, with its stable id the same member. Default 15 min, the
    /// default `departed_after` of replication.
    pub reap_after: Duration,
    /// Largest membership datagram. Default and maximum 1200 bytes (one QUIC datagram).
    pub max_packet_size: usize,
}

impl MembershipConfig {
    /// Fast timers for a laptop or a test cluster on one machine.
    pub fn development() -> Self {
        Self {
            probe_period: Duration::from_millis(500),
            probe_rtt: Duration::from_millis(200),
            indirect_probes: 3,
            suspect_to_down_after: Duration::from_secs(2),
            suspicion_confirmations: 3,
            suspect_to_down_min: Duration::from_millis(500),
            local_health_max: 8,
            push_pull_interval: Duration::from_secs(10),
            gossip_interval: Duration::from_millis(200),
            gossip_fanout: 3,
            remember_down_for: Duration::from_secs(60),
            reap_after: Duration::from_secs(15 * 60),
            max_packet_size: 1200,
        }
    }

    /// Conservative timers for a data-center network.
    pub fn production() -> Self {
        Self {
            probe_period: Duration::from_secs(1),
            probe_rtt: Duration::from_millis(400),
            suspect_to_down_after: Duration::from_secs(4),
            suspect_to_down_min: Duration::from_secs(1),
            push_pull_interval: Duration::from_secs(30),
            ..Self::development()
        }
    }

    /// Checks the relationships between fields; the error names the field.
    pub fn validate(&self) -> Result<(), MembershipConfigError> {
        let fail = |field, problem: &str| {
            Err(MembershipConfigError {
                field,
                problem: problem.into(),
            })
        };
        // Checked before probe_rtt, which is judged against it: an error names the field to fix.
        if self.probe_period.is_zero() {
            return fail("probe_period", "must be non-zero");
        }
        if self.probe_rtt.is_zero() || self.probe_rtt >= self.probe_period {
            return fail(
                "probe_rtt",
                "must be non-zero and shorter than probe_period",
            );
        }
        if self.indirect_probes == 0 {
            return fail("indirect_probes", "must be at least 1");
        }
        if self.suspect_to_down_min.is_zero()
            || self.suspect_to_down_min > self.suspect_to_down_after
        {
            return fail(
                "suspect_to_down_min",
                "must be non-zero and at most suspect_to_down_after",
            );
        }
        if self.local_health_max == 0 {
            return fail("local_health_max", "must be at least 1");
        }
        if self.push_pull_interval < self.probe_period {
            return fail("push_pull_interval", "must be at least probe_period");
        }
        if self.gossip_interval.is_zero() || self.gossip_fanout == 0 {
            return fail("gossip_interval", "interval and fanout must be non-zero");
        }
        if self.reap_after < self.suspect_to_down_after {
            // Shorter would remove a member before others are done declaring it failed, and
            // their gossip would bring it back.
            return fail("reap_after", "must be at least suspect_to_down_after");
        }
        if !(512..=1200).contains(&self.max_packet_size) {
            return fail("max_packet_size", "must be between 512 and 1200 bytes");
        }
        Ok(())
    }
}

/// A membership setting with an invalid value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid membership config: {field} {problem}")]
pub struct MembershipConfigError {
    /// The field.
    pub field: &'static str,
    /// What is wrong.
    pub problem: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_valid() {
        assert_eq!(MembershipConfig::development().validate(), Ok(()));
        assert_eq!(MembershipConfig::production().validate(), Ok(()));
    }

    #[test]
    fn a_probe_rtt_longer_than_the_period_is_refused_by_name() {
        let config = MembershipConfig {
            probe_rtt: Duration::from_secs(5),
            ..MembershipConfig::development()
        };
        assert_eq!(config.validate().unwrap_err().field, "probe_rtt");
    }
}
