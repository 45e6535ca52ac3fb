//! `static`: configured seed addresses or host names, re-resolved periodically (a host name's
//! addresses may change while the cluster runs).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::mpsc;

use super::handle::StopSignal;
use super::report::{dialable, Closed, Reporter};
use super::rounds;
use super::{Candidate, Discovery, DiscoveryError, DiscoveryHandle, DiscoveryMetrics, LocalNode};

const NAME: &str = "static";

/// Seed addresses (`"ip:port"`, `"[ipv6]:port"`) or host names (`"host:port"`).
#[derive(Clone, Debug)]
pub struct StaticSeeds {
    seeds: Vec<String>,
    interval: Duration,
    metrics: DiscoveryMetrics,
}

impl StaticSeeds {
    /// How often seeds are resolved and reported again, by default.
    pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);

    /// Validates every seed; a malformed one is an error naming it, and so is an empty list.
    pub fn new(seeds: &[String], metrics: DiscoveryMetrics) -> Result<Self, DiscoveryError> {
        if seeds.is_empty() {
            return Err(DiscoveryError::NoSeeds);
        }
        for seed in seeds {
            validate_seed(seed)?;
        }
        Ok(Self {
            seeds: seeds.iter().map(|s| s.trim().to_owned()).collect(),
            interval: Self::DEFAULT_INTERVAL,
            metrics,
        })
    }

    /// Sets how often seeds are resolved and reported again.
    pub fn with_interval(mut self, interval: Duration) -> Self {
        self.interval = interval.max(Duration::from_millis(10));
        self
    }
}

/// Checks the shape of a seed without resolving it (resolution can fail transiently).
/// Why no peer can be at a seed written as an address, if none can (reported candidates at
/// such addresses are dropped, so a seed there would join nothing, silently).
pub(crate) fn undialable(addr: SocketAddr) -> Option<&'static str> {
    match addr.port() {
        0 => Some("port 0 cannot be dialled"),
        _ if !dialable(addr) => Some(
            "no peer is at an unspecified, multicast or broadcast address (this machine is 127.0.0.1)",
        ),
        _ => None,
    }
}

fn validate_seed(seed: &str) -> Result<(), DiscoveryError> {
    let bad = |reason| DiscoveryError::BadSeed {
        seed: seed.to_owned(),
        reason,
    };
    let seed = seed.trim();
    if let Ok(addr) = seed.parse::<SocketAddr>() {
        return undialable(addr).map_or(Ok(()), |reason| Err(bad(reason)));
    }
    let (host, port) = seed.rsplit_once(':').ok_or_else(|| bad("no port"))?;
    match port.parse::<u16>() {
        Ok(0) => return Err(bad("port 0 cannot be dialled")),
        Ok(_) => {}
        Err(_) => return Err(bad("the port is not a number from 1 to 65535")),
    }
    if host.is_empty() {
        return Err(bad("no host"));
    }
    if host.contains(':') || host.starts_with('[') {
        return Err(bad(
            "an IPv6 address must be written in brackets, e.g. [::1]:7000",
        ));
    }
    let label_ok = |l: &str| {
        !l.is_empty() && l.len() <= 63 && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    if host.len() > 253 || !host.trim_end_matches('.').split('.').all(label_ok) {
        return Err(bad("the host is not a valid host name"));
    }
    Ok(())
}

impl Discovery for StaticSeeds {
    fn name(&self) -> &'static str {
        NAME
    }

    fn start(
        self: Box<Self>,
        me: LocalNode,
        found: mpsc::Sender<Candidate>,
    ) -> Result<DiscoveryHandle, DiscoveryError> {
        let reporter = Reporter::new(NAME, me, found, self.metrics.clone());
        Ok(DiscoveryHandle::spawn(NAME, move |stop| {
            run(*self, reporter, stop)
        }))
    }
}

async fn run(seeds: StaticSeeds, reporter: Reporter, stop: StopSignal) {
    rounds::every(seeds.interval, stop, || {
        resolve_all(&seeds.seeds, &reporter)
    })
    .await;
}

/// Resolves each seed and reports its addresses; a failing seed is logged and counted, and
/// retried on the next round.
async fn resolve_all(seeds: &[String], reporter: &Reporter) -> Result<(), Closed> {
    for seed in seeds {
        match tokio::net::lookup_host(seed.as_str()).await {
            Ok(addrs) => {
                for addr in addrs {
                    reporter.report(addr, None)?;
                }
            }
            Err(error) => {
                reporter.error();
                tracing::warn!(%seed, %error, "static discovery: cannot resolve seed");
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_formed_seeds_are_accepted() {
        for seed in [
            "127.0.0.1:7000",
            "[::1]:7000",
            "localhost:1",
            "node-1.example.org.:65535",
        ] {
            assert!(validate_seed(seed).is_ok(), "{seed}");
        }
    }

    #[test]
    fn malformed_seeds_are_rejected_with_a_reason() {
        for seed in [
            "",
            "host",
            ":7000",
            "host:",
            "host:0",
            "host:70000",
            "::1:7000",
            "a b:1",
            "h:x",
            "0.0.0.0:7400",
            "[::]:7400",
            "224.0.0.1:7400",
            "255.255.255.255:7400",
        ] {
            let error = validate_seed(seed).expect_err(seed).to_string();
            assert!(error.starts_with("static discovery: bad seed"), "{error}");
        }
    }
}
