//! Replication's settings, and the ranges in which they work together.

use std::time::Duration;

use foundation_crdt::{HlcConfig, DEFAULT_MAX_DRIFT_MS};

use super::{
    ENVELOPE_OVERHEAD, FULL_STATE_BYTES_MAX, KEYSPACE_NAME_MAX, OPS_MESSAGE_BYTES_MAX,
    STATE_ENTRY_OVERHEAD,
};

/// The shortest anti-entropy interval [`ReplicationConfig::validate`] accepts.
const ANTI_ENTROPY_INTERVAL_MIN: Duration = Duration::from_millis(10);

/// The longest op log [`ReplicationConfig::validate`] accepts.
const OP_LOG_MAX_LIMIT: usize = 1 << 20;

/// Replication's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicationConfig {
    /// How many random live members a new op is pushed to when there are more than
    /// [`Self::push_all_max`].
    pub fanout: usize,
    /// Up to this many live members, a new op is pushed to every one of them.
    pub push_all_max: usize,
    /// How often a node starts an anti-entropy exchange.
    pub anti_entropy_interval: Duration,
    /// Ops kept per keyspace (over all origins) to answer digests; a peer further behind gets
    /// the full state.
    pub op_log_max: usize,
    /// Largest value, in bytes.
    pub value_size_max: usize,
    /// Largest key, in bytes.
    pub key_size_max: usize,
    /// Most live keys in one keyspace.
    pub keyspace_keys_max: usize,
    /// Most bytes (keys plus values) in one keyspace; keeps a full state within one message.
    pub keyspace_bytes_max: usize,
    /// Most keyspaces this node creates by its own writes; it still takes those its peers
    /// created (two nodes one short of it may each create one at once).
    pub keyspaces_max: usize,
    /// How far ahead of our wall clock a remote timestamp may be (see [`HlcConfig`]).
    pub max_drift_ms: u64,
    /// Wall-clock time (Unix ms) at the driver's `Instant::ZERO`: HLC timestamps are wall time,
    /// and nodes' monotonic epochs differ. The simulator leaves it 0 (one virtual clock).
    pub wall_ms_at_zero: u64,
    /// Least age of a tombstone before it may be collected (it also needs every member's
    /// digest to show it seen). It bounds how far behind a writer's clock may be, and how long
    /// an op may stay unknown to everyone, before its write could be dropped: see the module
    /// docs.
    pub tombstone_ttl: Duration,
    /// A member not alive for this long is gone for good: its origins' bookkeeping is dropped
    /// and the epoch changes. Keep it at least [`Self::tombstone_ttl`].
    pub departed_after: Duration,
    /// Full states larger than this, in bytes, go on the bulk channel (their own stream at the
    /// lowest priority) instead of the replication stream.
    pub bulk_threshold: usize,
}

impl Default for ReplicationConfig {
    fn default() -> Self {
        Self {
            fanout: 3,
            push_all_max: 64,
            anti_entropy_interval: Duration::from_secs(1),
            op_log_max: 1024,
            value_size_max: 64 * 1024,
            key_size_max: 1024,
            keyspace_keys_max: 10_000,
            keyspace_bytes_max: 2 * 1024 * 1024,
            keyspaces_max: 64,
            max_drift_ms: DEFAULT_MAX_DRIFT_MS,
            wall_ms_at_zero: 0,
            tombstone_ttl: Duration::from_secs(15 * 60),
            departed_after: Duration::from_secs(15 * 60),
            bulk_threshold: 64 * 1024,
        }
    }
}

impl ReplicationConfig {
    /// Checks each setting's range and the rules that tie them together; the error names the
    /// first setting out of range.
    pub fn validate(&self) -> Result<(), ReplicationConfigError> {
        self.check_ranges()?;
        self.check_rules()
    }

    fn check_ranges(&self) -> Result<(), ReplicationConfigError> {
        let fail = |field, problem: &str| {
            Err(ReplicationConfigError {
                field,
                related: None,
                problem: problem.to_owned(),
            })
        };
        // Below this a node would do little but exchange digests; a typo's "1us" is the case.
        if self.anti_entropy_interval < ANTI_ENTROPY_INTERVAL_MIN {
            return fail("anti_entropy_interval", "must be at least 10ms");
        }
        // Past this a log keeps more than a full state would carry, in memory that grows with
        // every write: a full state then serves a peer this far behind better.
        if self.op_log_max > OP_LOG_MAX_LIMIT {
            return fail("op_log_max", &format!("must be at most {OP_LOG_MAX_LIMIT}"));
        }
        // Named one by one: an operator reads the name in an error pointing at their file.
        for (field, value) in [
            ("fanout", self.fanout),
            ("op_log_max", self.op_log_max),
            ("keyspaces_max", self.keyspaces_max),
            ("keyspace_keys_max", self.keyspace_keys_max),
            ("key_size_max", self.key_size_max),
            ("value_size_max", self.value_size_max),
        ] {
            if value == 0 {
                return fail(field, "must be at least 1");
            }
        }
        Ok(())
    }

    /// Each rule ties two settings: the error names the one to change and the other, since the
    /// operator may have set either.
    fn check_rules(&self) -> Result<(), ReplicationConfigError> {
        // Saturating: the sizes come from an operator's file, and a sum past usize must fail the
        // check, not wrap under it.
        let op = (ENVELOPE_OVERHEAD + KEYSPACE_NAME_MAX)
            .saturating_add(self.key_size_max)
            .saturating_add(self.value_size_max);
        let state = self
            .keyspace_bytes_max
            .saturating_add(self.keyspace_keys_max.saturating_mul(STATE_ENTRY_OVERHEAD));
        let rules = [
            (
                op <= OPS_MESSAGE_BYTES_MAX,
                "value_size_max",
                "key_size_max",
                format!("an op of the largest key and value ({op} bytes) must fit one message of {OPS_MESSAGE_BYTES_MAX} bytes"),
            ),
            (
                state <= FULL_STATE_BYTES_MAX,
                "keyspace_bytes_max",
                "keyspace_keys_max",
                format!("a full keyspace ({state} bytes with per-entry overhead) must fit a full state of {FULL_STATE_BYTES_MAX} bytes"),
            ),
            (
                self.value_size_max <= self.keyspace_bytes_max,
                "value_size_max",
                "keyspace_bytes_max",
                "must be at most keyspace_bytes_max".into(),
            ),
            (
                self.tombstone_ttl >= self.anti_entropy_interval,
                "tombstone_ttl",
                "anti_entropy_interval",
                "must be at least anti_entropy_interval".into(),
            ),
            (
                self.departed_after >= self.tombstone_ttl,
                "departed_after",
                "tombstone_ttl",
                "must be at least tombstone_ttl (see the GC rule in the replication docs)".into(),
            ),
        ];
        match rules.into_iter().find(|(holds, ..)| !holds) {
            Some((_, field, related, problem)) => Err(ReplicationConfigError {
                field,
                related: Some(related),
                problem,
            }),
            None => Ok(()),
        }
    }

    /// The clock settings these imply.
    pub(super) fn hlc(&self) -> HlcConfig {
        HlcConfig {
            max_drift_ms: self.max_drift_ms,
        }
    }
}

/// A replication setting with an invalid value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid replication setting {field}: {problem}")]
pub struct ReplicationConfigError {
    /// The setting.
    pub field: &'static str,
    /// The other setting of the rule `field` breaks, if it breaks one between two.
    pub related: Option<&'static str>,
    /// What is wrong with it.
    pub problem: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid() {
        ReplicationConfig::default().validate().expect("valid");
    }

    #[test]
    fn settings_out_of_range_are_named() {
        let cases = [
            (
                "fanout",
                ReplicationConfig {
                    fanout: 0,
                    ..Default::default()
                },
            ),
            (
                "departed_after",
                ReplicationConfig {
                    departed_after: Duration::from_secs(1),
                    ..Default::default()
                },
            ),
            (
                "value_size_max",
                ReplicationConfig {
                    value_size_max: 2 << 20,
                    keyspace_bytes_max: 4 << 20,
                    ..Default::default()
                },
            ),
            (
                "keyspace_bytes_max",
                ReplicationConfig {
                    keyspace_bytes_max: FULL_STATE_BYTES_MAX,
                    ..Default::default()
                },
            ),
            (
                "tombstone_ttl",
                ReplicationConfig {
                    tombstone_ttl: Duration::from_millis(10),
                    ..Default::default()
                },
            ),
            (
                "keyspace_keys_max",
                ReplicationConfig {
                    keyspace_keys_max: 0,
                    ..Default::default()
                },
            ),
            (
                "key_size_max",
                ReplicationConfig {
                    key_size_max: 0,
                    ..Default::default()
                },
            ),
            (
                "anti_entropy_interval",
                ReplicationConfig {
                    anti_entropy_interval: Duration::from_micros(1),
                    ..Default::default()
                },
            ),
            (
                "op_log_max",
                ReplicationConfig {
                    op_log_max: OP_LOG_MAX_LIMIT + 1,
                    ..Default::default()
                },
            ),
        ];
        for (field, config) in cases {
            let error = config.validate().expect_err(field);
            assert_eq!(error.field, field, "{error}");
        }
    }

    #[test]
    fn a_broken_rule_names_its_other_setting_too() {
        let short_ttl = ReplicationConfig {
            tombstone_ttl: Duration::from_millis(10),
            ..Default::default()
        };
        let error = short_ttl.validate().expect_err("ttl under the interval");
        assert_eq!(error.related, Some("anti_entropy_interval"));
        let no_fanout = ReplicationConfig {
            fanout: 0,
            ..Default::default()
        };
        assert_eq!(no_fanout.validate().expect_err("zero").related, None);
    }
}
