//! Profiles: named sets of defaults for a laptop and for a data center.

use std::fmt;
use std::str::FromStr;

/// Which set of defaults a node starts from.
///
/// The profile is settled before anything else is read, because it decides every default:
/// the builder wins, then `FOUNDATION_PROFILE`, then `profile` in the TOML file, and otherwise
/// [`Profile::Development`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Profile {
    /// Zero configuration on one machine: loopback addresses, local and mDNS discovery, fast
    /// timers and the guessable development secret (with a loud warning).
    #[default]
    Development,
    /// A data center: explicit discovery and a real secret or certificates are required, and
    /// timers tolerate a busier network.
    Production,
}

impl Profile {
    /// The canonical lowercase name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Profile::Development => "development",
            Profile::Production => "production",
        }
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a string is not a profile name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown profile {0:?}: expected \"development\" (or \"dev\") or \"production\" (or \"prod\")"
)]
pub struct ParseProfileError(String);

impl FromStr for Profile {
    type Err = ParseProfileError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "development" | "dev" => Ok(Profile::Development),
            "production" | "prod" => Ok(Profile::Production),
            _ => Err(ParseProfileError(s.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_and_short_names_parse() {
        assert_eq!("dev".parse(), Ok(Profile::Development));
        assert_eq!("Development".parse(), Ok(Profile::Development));
        assert_eq!("prod".parse(), Ok(Profile::Production));
        assert_eq!("production".parse(), Ok(Profile::Production));
        assert!("staging".parse::<Profile>().is_err());
    }
}
