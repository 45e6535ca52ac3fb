//! The discovery strategies a configuration can ask for.
//!
//! This mirrors the discovery module's strategy list without depending on it, so configuration
//! can be parsed and validated on its own; the engine maps each choice onto a strategy.

use std::str::FromStr;
use std::time::Duration;

/// Default UDP port peers listen on in production, used for DNS A/AAAA answers.
pub const DEFAULT_PORT: u16 = 7400;

/// How often DNS names are re-resolved by default: often enough to notice a rescheduled pod
/// within a probe or two of a failure detector's patience, rarely enough not to load the resolver.
pub const DEFAULT_DNS_INTERVAL: Duration = Duration::from_secs(30);

/// One way of finding the first peers; the same type the discovery module builds strategies from.
pub use crate::discovery::DiscoverySpec as DiscoveryChoice;

/// The strategy names accepted in `FOUNDATION_DISCOVERY` and `kind = "..."`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DiscoveryKind {
    Static,
    Local,
    Mdns,
    Dns,
    Auto,
}

impl FromStr for DiscoveryKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "static" => Ok(Self::Static),
            "local" => Ok(Self::Local),
            "mdns" => Ok(Self::Mdns),
            "dns" => Ok(Self::Dns),
            "auto" => Ok(Self::Auto),
            _ => Err(format!(
                "unknown discovery strategy {s:?}: expected static, local, mdns, dns or auto"
            )),
        }
    }
}

impl DiscoveryChoice {
    /// The strategy's name as written in configuration.
    pub fn kind(&self) -> &'static str {
        match self {
            DiscoveryChoice::Static { .. } => "static",
            DiscoveryChoice::Local { .. } => "local",
            DiscoveryChoice::Mdns => "mdns",
            DiscoveryChoice::Dns { .. } => "dns",
            DiscoveryChoice::Auto => "auto",
        }
    }

    /// A strategy of `kind` with its settings left empty or at their defaults; seeds and DNS
    /// names are filled in when the configuration is resolved.
    pub(crate) fn empty(kind: DiscoveryKind) -> Self {
        match kind {
            DiscoveryKind::Static => DiscoveryChoice::Static { seeds: Vec::new() },
            DiscoveryKind::Local => DiscoveryChoice::Local { dir: None },
            DiscoveryKind::Mdns => DiscoveryChoice::Mdns,
            DiscoveryKind::Dns => DiscoveryChoice::dns(String::new()),
            DiscoveryKind::Auto => DiscoveryChoice::Auto,
        }
    }

    /// A DNS A/AAAA strategy for `name` with the default port and interval.
    pub fn dns(name: impl Into<String>) -> Self {
        DiscoveryChoice::Dns {
            name: name.into(),
            port: DEFAULT_PORT,
            srv: false,
            interval: DEFAULT_DNS_INTERVAL,
        }
    }
}

/// Checks that `seed` looks like `host:port`, so a typo fails at start-up rather than at the
/// first dial. Names are resolved later by discovery.
pub(crate) fn check_seed(seed: &str) -> Result<(), String> {
    let bad = || format!("seed {seed:?} is not host:port (for example \"10.0.0.1:7400\")");
    let (host, port) = seed.rsplit_once(':').ok_or_else(bad)?;
    if host.is_empty() || port.parse::<u16>().map_or(true, |p| p == 0) {
        return Err(bad());
    }
    Ok(())
}
