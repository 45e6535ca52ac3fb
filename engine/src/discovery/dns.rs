//! `dns`: periodic A/AAAA or SRV resolution of one name — a Kubernetes headless service lists
//! every ready pod, so re-resolving it tracks the cluster as pods come and go.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{Name, RData};
use hickory_resolver::TokioResolver;
use tokio::sync::mpsc;

use super::handle::StopSignal;
use super::report::{Closed, Reporter};
use super::rounds;
use super::{Candidate, Discovery, DiscoveryError, DiscoveryHandle, DiscoveryMetrics, LocalNode};

const NAME: &str = "dns";

/// Resolves one DNS name periodically and reports the addresses.
///
/// With `srv`, each SRV record gives a target and a port; otherwise A/AAAA records are used with
/// the configured port (port 0 means "the port this node advertises", which suits a
/// Kubernetes deployment where every pod listens on the same port).
#[derive(Clone, Debug)]
pub struct DnsDiscovery {
    name: Name,
    port: u16,
    srv: bool,
    interval: Duration,
    nameserver: Option<SocketAddr>,
    metrics: DiscoveryMetrics,
}

impl DnsDiscovery {
    /// How often the name is resolved, by default.
    pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);

    /// Resolution of `name`, through the system's resolver configuration (`/etc/resolv.conf`)
    /// unless [`with_nameserver`](Self::with_nameserver) says otherwise. The name is checked
    /// here; the resolver is set up by `start`.
    pub fn new(
        name: &str,
        port: u16,
        srv: bool,
        metrics: DiscoveryMetrics,
    ) -> Result<Self, DiscoveryError> {
        Ok(Self {
            name: parse_name(name)?,
            port,
            srv,
            interval: Self::DEFAULT_INTERVAL,
            nameserver: None,
            metrics,
        })
    }

    /// Sends queries to `server` (UDP) instead of the system's name servers; tests use this
    /// with a server on 127.0.0.1.
    pub fn with_nameserver(mut self, server: SocketAddr) -> Self {
        self.nameserver = Some(server);
        self
    }

    /// Sets how often the name is resolved.
    pub fn with_interval(mut self, interval: Duration) -> Self {
        self.interval = interval.max(Duration::from_millis(10));
        self
    }

    fn resolver(&self) -> Result<TokioResolver, DiscoveryError> {
        let builder = match self.nameserver {
            None => TokioResolver::builder_tokio()
                .map_err(|e| DiscoveryError::Resolver(e.to_string()))?,
            Some(server) => {
                let mut udp = ConnectionConfig::udp();
                udp.port = server.port();
                let nameserver = NameServerConfig::new(server.ip(), true, vec![udp]);
                let config = ResolverConfig::from_name_servers(vec![nameserver]);
                let mut builder =
                    TokioResolver::builder_with_config(config, TokioRuntimeProvider::default());
                builder.options_mut().timeout = Duration::from_secs(2);
                builder
            }
        };
        builder
            .build()
            .map_err(|e| DiscoveryError::Resolver(e.to_string()))
    }
}

fn parse_name(name: &str) -> Result<Name, DiscoveryError> {
    if name.trim().is_empty() {
        return Err(DiscoveryError::DnsConfig(
            "the name to resolve is empty".into(),
        ));
    }
    Name::from_str(name.trim())
        .map_err(|e| DiscoveryError::DnsConfig(format!("{name:?} is not a DNS name: {e}")))
}

impl Discovery for DnsDiscovery {
    fn name(&self) -> &'static str {
        NAME
    }

    fn start(
        self: Box<Self>,
        me: LocalNode,
        found: mpsc::Sender<Candidate>,
    ) -> Result<DiscoveryHandle, DiscoveryError> {
        let resolver = self.resolver()?;
        let port = match self.port {
            0 => me.addr.port(),
            port => port,
        };
        let query = Query {
            name: self.name,
            port,
            srv: self.srv,
            resolver,
        };
        let reporter = Reporter::new(NAME, me, found, self.metrics.clone());
        let interval = self.interval;
        Ok(DiscoveryHandle::spawn(NAME, move |stop| {
            run(query, interval, reporter, stop)
        }))
    }
}

/// What a running strategy resolves, and with what.
struct Query {
    name: Name,
    port: u16,
    srv: bool,
    resolver: TokioResolver,
}

async fn run(dns: Query, interval: Duration, reporter: Reporter, stop: StopSignal) {
    rounds::every(interval, stop, || round(&dns, &reporter)).await;
}

/// One resolution; a failure is logged and counted, and retried next round.
async fn round(dns: &Query, reporter: &Reporter) -> Result<(), Closed> {
    // Each round must ask the server: a cached answer would hide pods that came or went.
    dns.resolver.clear_cache();
    let resolved = if dns.srv {
        resolve_srv(dns).await
    } else {
        resolve_ips(dns, &dns.name, dns.port).await
    };
    match resolved {
        Ok(addrs) => addrs.into_iter().try_for_each(|a| reporter.report(a, None)),
        Err(error) => {
            reporter.error();
            tracing::warn!(name = %dns.name, %error, "dns discovery: lookup failed");
            Ok(())
        }
    }
}

async fn resolve_ips(dns: &Query, name: &Name, port: u16) -> Result<Vec<SocketAddr>, String> {
    let ips = dns
        .resolver
        .lookup_ip(name.clone())
        .await
        .map_err(|e| e.to_string())?;
    Ok(ips.iter().map(|ip| SocketAddr::new(ip, port)).collect())
}

/// SRV records, each target resolved from the additional section when the server sent it
/// there, else with its own A/AAAA lookup.
async fn resolve_srv(dns: &Query) -> Result<Vec<SocketAddr>, String> {
    let lookup = dns
        .resolver
        .srv_lookup(dns.name.clone())
        .await
        .map_err(|e| e.to_string())?;
    let mut addrs = Vec::new();
    for record in lookup.answers() {
        let RData::SRV(srv) = &record.data else {
            continue;
        };
        if srv.port == 0 {
            continue;
        }
        let extra: Vec<IpAddr> = lookup
            .additionals()
            .iter()
            .filter(|r| r.name == srv.target)
            .filter_map(|r| r.data.ip_addr())
            .collect();
        if extra.is_empty() {
            match resolve_ips(dns, &srv.target, srv.port).await {
                Ok(found) => addrs.extend(found),
                Err(error) => {
                    tracing::debug!(target = %srv.target, %error, "dns discovery: SRV target did not resolve")
                }
            }
        } else {
            addrs.extend(extra.into_iter().map(|ip| SocketAddr::new(ip, srv.port)));
        }
    }
    Ok(addrs)
}
