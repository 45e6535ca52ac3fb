//! When written data is synced to the device.

use std::fmt;
use std::time::Duration;

use crate::config::format_duration;

/// When a write counts as done. Default [`SyncPolicy::Always`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum SyncPolicy {
    /// A write is done once it is synced to the device; concurrent writes share one sync (group
    /// commit). Survives power loss. The default, and what production should use.
    #[default]
    Always,
    /// A write is done once the operating system has it; a sync runs at most this long after.
    /// Survives a crash of the process; a power loss can take the last interval's writes.
    Interval(Duration),
    /// A write is done once the operating system has it; syncs only at a clean shutdown.
    /// Survives a crash of the process, not of the machine. For tests and caches.
    Never,
}

impl SyncPolicy {
    /// The interval used when `sync = "interval"` is given without `sync_interval`: short
    /// enough that a power loss costs little, long enough to fold a busy node's writes into
    /// ten syncs a second.
    pub const DEFAULT_INTERVAL: Duration = Duration::from_millis(100);
    /// The longest interval accepted: beyond it, "interval" is "never" in disguise.
    pub const INTERVAL_MAX: Duration = Duration::from_secs(60);

    /// The setting's name: `"always"`, `"interval"` or `"never"`.
    pub const fn name(self) -> &'static str {
        match self {
            SyncPolicy::Always => "always",
            SyncPolicy::Interval(_) => "interval",
            SyncPolicy::Never => "never",
        }
    }

    /// Parses `always`, `interval` (with `interval`, else the default) or `never`.
    pub fn parse(name: &str, interval: Option<Duration>) -> Result<Self, String> {
        let policy = match name.trim().to_ascii_lowercase().as_str() {
            "always" => SyncPolicy::Always,
            "never" => SyncPolicy::Never,
            "interval" => SyncPolicy::Interval(interval.unwrap_or(Self::DEFAULT_INTERVAL)),
            _ => {
                return Err(format!(
                    "{name:?} is not a sync policy: expected \"always\", \"interval\" or \"never\""
                ))
            }
        };
        if interval.is_some() && !matches!(policy, SyncPolicy::Interval(_)) {
            return Err(format!(
                "sync_interval applies only with sync = \"interval\", not {:?}",
                policy.name()
            ));
        }
        Ok(policy)
    }

    /// Checks the interval's range.
    pub fn validate(self) -> Result<(), String> {
        match self {
            SyncPolicy::Interval(every) if every.is_zero() || every > Self::INTERVAL_MAX => {
                Err(format!(
                    "sync_interval is {}; it must be above zero and at most {} (use sync = \
                     \"never\" for no periodic sync)",
                    format_duration(every),
                    format_duration(Self::INTERVAL_MAX)
                ))
            }
            _ => Ok(()),
        }
    }
}

impl fmt::Display for SyncPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SyncPolicy::Interval(every) => write!(f, "interval {}", format_duration(*every)),
            other => f.write_str(other.name()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_the_interval_goes_with_interval_only() {
        assert_eq!(SyncPolicy::parse("Always", None), Ok(SyncPolicy::Always));
        assert_eq!(SyncPolicy::parse("never", None), Ok(SyncPolicy::Never));
        assert_eq!(
            SyncPolicy::parse("interval", None),
            Ok(SyncPolicy::Interval(SyncPolicy::DEFAULT_INTERVAL))
        );
        let ms = Duration::from_millis(20);
        assert_eq!(
            SyncPolicy::parse("interval", Some(ms)),
            Ok(SyncPolicy::Interval(ms))
        );
        assert!(SyncPolicy::parse("always", Some(ms)).is_err());
        assert!(SyncPolicy::parse("sometimes", None).is_err());
    }

    #[test]
    fn intervals_must_be_positive_and_bounded() {
        assert!(SyncPolicy::Interval(Duration::ZERO).validate().is_err());
        assert!(SyncPolicy::Interval(Duration::from_secs(61))
            .validate()
            .is_err());
        assert!(SyncPolicy::Interval(Duration::from_millis(5))
            .validate()
            .is_ok());
    }
}
