//! What the configuration says about discovery, and turning it into strategies.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{
    choose_auto, default_base_dir, Discovery, DiscoveryError, DiscoveryMetrics, DnsDiscovery,
    Environment, LocalDiscovery, MdnsDiscovery, StaticSeeds,
};

/// One discovery strategy as configured. In TOML: `kind = "static"`, `"local"`, `"mdns"`,
/// `"dns"` or `"auto"`, with the variant's fields beside it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum DiscoverySpec {
    /// Seed addresses or host names: `"host:port"`, `"ip:port"`, `"[ipv6]:port"`.
    Static {
        /// The seeds.
        seeds: Vec<String>,
    },
    /// Nodes of this user on this machine, through a runtime directory.
    Local {
        /// Replaces the per-user base directory (the cluster name is still appended).
        #[serde(default)]
        dir: Option<PathBuf>,
    },
    /// mDNS on the local network; interfaces from `FOUNDATION_MDNS_INTERFACE` (default: all).
    Mdns,
    /// A DNS name resolved periodically.
    Dns {
        /// The name, e.g. a headless service `foundation.default.svc.cluster.local`.
        name: String,
        /// The peers' port for A/AAAA records; 0 means the port this node advertises.
        #[serde(default)]
        port: u16,
        /// Use SRV records (target and port) instead of A/AAAA.
        #[serde(default)]
        srv: bool,
        /// How often the name is resolved.
        #[serde(
            default = "default_dns_interval",
            with = "crate::config::duration::text"
        )]
        interval: Duration,
        /// The name server to ask (UDP), instead of the system's (`/etc/resolv.conf`). In
        /// TOML `server = "ip"` or `"ip:port"` (port 53 by default); env
        /// `FOUNDATION_DNS_SERVER`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        server: Option<std::net::SocketAddr>,
    },
    /// Chosen from the environment by [`choose_auto`].
    Auto,
}

fn default_dns_interval() -> Duration {
    DnsDiscovery::DEFAULT_INTERVAL
}

/// Builds the strategies `spec` describes (`Auto` expands through [`choose_auto`], whose
/// reason is logged; call `choose_auto` yourself to show it). Configuration errors — a bad
/// seed, an unusable DNS name — are reported here, before anything starts.
pub fn build(
    spec: &DiscoverySpec,
    env: &Environment,
    metrics: &DiscoveryMetrics,
) -> Result<Vec<Box<dyn Discovery>>, DiscoveryError> {
    let metrics = metrics.clone();
    let one = |d: Box<dyn Discovery>| Ok(vec![d]);
    match spec {
        DiscoverySpec::Static { seeds } => one(Box::new(StaticSeeds::new(seeds, metrics)?)),
        DiscoverySpec::Local { dir } => {
            let base = dir.clone().unwrap_or_else(|| default_base_dir(env));
            one(Box::new(LocalDiscovery::new(base, metrics)))
        }
        DiscoverySpec::Mdns => one(Box::new(MdnsDiscovery::new(env.mdns_interfaces(), metrics))),
        DiscoverySpec::Dns {
            name,
            port,
            srv,
            interval,
            server,
        } => {
            let mut dns = DnsDiscovery::new(name, *port, *srv, metrics)?.with_interval(*interval);
            if let Some(server) = server {
                dns = dns.with_nameserver(*server);
            }
            one(Box::new(dns))
        }
        DiscoverySpec::Auto => build_auto(env, &metrics),
    }
}

fn build_auto(
    env: &Environment,
    metrics: &DiscoveryMetrics,
) -> Result<Vec<Box<dyn Discovery>>, DiscoveryError> {
    let choice = choose_auto(env);
    tracing::info!(reason = %choice.reason, "discovery: auto");
    let mut strategies = Vec::new();
    for spec in choice.specs.iter().filter(|s| **s != DiscoverySpec::Auto) {
        strategies.extend(build(spec, env, metrics)?);
    }
    Ok(strategies)
}
