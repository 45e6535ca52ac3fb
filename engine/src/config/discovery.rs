//! The discovery strategies a configuration can ask for.
//!
//! This mirrors the discovery module's strategy list without depending on it, so configuration
//! can be parsed and validated on its own; the engine maps each choice onto a strategy.

use std::str::FromStr;
use std::time::Duration;

/// Default UDP port peers listen on in production.
pub const DEFAULT_PORT: u16 = 7400;

/// How often DNS names are re-resolved by default: often enough to notice a rescheduled pod
/// within a probe or two of a failure detector's patience, rarely enough not to load the resolver.
pub const DEFAULT_DNS_INTERVAL: Duration = Duration::from_secs(30);

use crate::discovery::undialable;
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

    /// A DNS A/AAAA strategy for `name` with the default interval; the answers are dialled at
    /// the port this node advertises (port 0), as `auto` does in Kubernetes.
    pub fn dns(name: impl Into<String>) -> Self {
        DiscoveryChoice::Dns {
            name: name.into(),
            port: 0,
            srv: false,
            interval: DEFAULT_DNS_INTERVAL,
            server: None,
        }
    }
}

/// Parses a DNS server setting: `"ip"` (port 53) or `"ip:port"` (`"[v6]:port"`), a specific
/// address with a non-zero port.
pub fn parse_dns_server(text: &str) -> Result<std::net::SocketAddr, String> {
    use std::net::{IpAddr, SocketAddr};
    let text = text.trim();
    let bad = || {
        format!("{text:?} is not a name server address: expected \"ip\" or \"ip:port\" (for example \"10.0.0.2\", \"10.0.0.2:5353\", \"[fd00::2]:53\")")
    };
    let addr = match text.parse::<SocketAddr>() {
        Ok(addr) => addr,
        Err(_) => {
            let bare = text.strip_prefix('[').and_then(|t| t.strip_suffix(']'));
            let ip: IpAddr = bare.unwrap_or(text).parse().map_err(|_| bad())?;
            SocketAddr::new(ip, 53)
        }
    };
    if addr.ip().is_unspecified() || addr.port() == 0 {
        return Err(format!(
            "{text:?} cannot be asked: a name server needs a specific IP address and a non-zero port"
        ));
    }
    Ok(addr)
}

/// The peers' QUIC port for a `dns` strategy's A/AAAA answers; 0 is this node's own port.
pub(crate) fn parse_dns_port(text: &str) -> Result<u16, String> {
    text.trim().parse().map_err(|_| {
        format!(
            "{text:?} is not a port: expected 0 (this node's own) to 65535 (in Kubernetes, a \
             Service named foundation-dns sets FOUNDATION_DNS_PORT=tcp://... in every pod)"
        )
    })
}

/// Checks that `seed` looks like `host:port`, so a typo fails at start-up rather than at the
/// first dial. Names are resolved later by discovery.
pub(crate) fn check_seed(seed: &str) -> Result<(), String> {
    let bad = || format!("seed {seed:?} is not host:port (for example \"10.0.0.1:7400\")");
    if let Some(reason) = seed.trim().parse().ok().and_then(undialable) {
        return Err(format!("seed {seed:?}: {reason}"));
    }
    let (host, port) = seed.rsplit_once(':').ok_or_else(bad)?;
    if host.is_empty() || port.parse::<u16>().map_or(true, |p| p == 0) {
        return Err(bad());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dns_server_is_an_ip_with_port_53_unless_given() {
        let ok = |text: &str| parse_dns_server(text).map(|a| a.to_string());
        assert_eq!(ok("10.0.0.2").as_deref(), Ok("10.0.0.2:53"));
        assert_eq!(ok(" 10.0.0.2:5353 ").as_deref(), Ok("10.0.0.2:5353"));
        assert_eq!(ok("fd00::2").as_deref(), Ok("[fd00::2]:53"));
        assert_eq!(ok("[fd00::2]").as_deref(), Ok("[fd00::2]:53"));
        assert_eq!(ok("[fd00::2]:5353").as_deref(), Ok("[fd00::2]:5353"));
        for bad in [
            "",
            "ns1.example",
            "10.0.0.2:",
            "10.0.0.2:70000",
            "0.0.0.0",
            "[::]:53",
            "10.0.0.2:0",
        ] {
            let error = parse_dns_server(bad).expect_err(bad);
            assert!(
                error.contains(&format!("{:?}", bad.trim())),
                "{bad:?}: {error}"
            );
        }
    }
}
