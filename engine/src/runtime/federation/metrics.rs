//! `foundation_federation_*` metrics: per link its state, RTT, bytes and missed probes, and the
//! handshakes this gateway refused. Registered with every node (empty on nodes that never run
//! a gateway), refreshed by the gateway's task from the machine and the endpoint; the bridged
//! pub/sub counters ([`BridgeMetrics`]) are counted as messages cross.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, PoisonError};

use super::bridge::BridgeMetrics;
use foundation_core::federation::{LinkState, LinkStatus};
use foundation_transport::gateway::LinkBytes;
use foundation_transport::Declared;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Link {
    cluster: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Direction {
    cluster: String,
    direction: &'static str,
}

/// Totals already counted, so that counters advance by what is new since the last refresh.
#[derive(Debug, Default)]
struct Counted {
    bytes: BTreeMap<(String, &'static str), u64>,
    missed: BTreeMap<String, u64>,
    refused: u64,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct FederationMetrics {
    up: Family<Link, Gauge>,
    rtt: Family<Link, Gauge<f64, AtomicU64>>,
    bytes: Family<Direction, Counter>,
    probes_missed: Family<Link, Counter>,
    refused: Counter,
    counted: Arc<Mutex<Counted>>,
    pub bridge: BridgeMetrics,
}

impl FederationMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        let registry = registry.sub_registry_with_prefix("foundation_federation");
        registry.register(
            "link_up",
            "1 while the link to a cluster is up (its gateway answers probes), else 0",
            Declared(metrics.up.clone()),
        );
        registry.register(
            "link_rtt_seconds",
            "Smoothed round-trip time of the probes to a linked cluster's gateway",
            Declared(metrics.rtt.clone()),
        );
        registry.register(
            "link_bytes",
            "Bytes of requests and replies carried on a link, by direction",
            Declared(metrics.bytes.clone()),
        );
        registry.register(
            "link_probes_missed",
            "Probes to a linked cluster that timed out or failed",
            Declared(metrics.probes_missed.clone()),
        );
        registry.register(
            "refused_handshakes",
            "Gateways this node refused: unlinked clusters, untrusted certificates",
            metrics.refused.clone(),
        );
        metrics.bridge.register(registry);
        metrics
    }

    /// A new gateway's figures start from zero: count from there.
    pub fn restart(&self) {
        *self.counted.lock().unwrap_or_else(PoisonError::into_inner) = Counted::default();
    }

    /// A stopped gateway's links are down.
    pub fn stopped(&self, links: &[LinkStatus]) {
        for link in links {
            let label = Link {
                cluster: link.cluster.as_str().to_owned(),
            };
            self.up.get_or_create(&label).set(0);
        }
    }

    /// Brings the metrics up to the gateway's current figures.
    pub fn refresh(
        &self,
        links: &[LinkStatus],
        bytes: impl Fn(&LinkStatus) -> LinkBytes,
        refused: u64,
    ) {
        let mut counted = self.counted.lock().unwrap_or_else(PoisonError::into_inner);
        for link in links {
            let cluster = link.cluster.as_str().to_owned();
            let label = Link {
                cluster: cluster.clone(),
            };
            self.up
                .get_or_create(&label)
                .set(i64::from(link.state == LinkState::Up));
            if let Some(rtt) = link.rtt {
                self.rtt.get_or_create(&label).set(rtt.as_secs_f64());
            }
            let missed = counted.missed.entry(cluster.clone()).or_default();
            self.probes_missed
                .get_or_create(&label)
                .inc_by(link.probes_missed.saturating_sub(*missed));
            *missed = link.probes_missed.max(*missed);
            let carried = bytes(link);
            for (direction, total) in [("sent", carried.sent), ("received", carried.received)] {
                let seen = counted
                    .bytes
                    .entry((cluster.clone(), direction))
                    .or_default();
                let family = Direction {
                    cluster: cluster.clone(),
                    direction,
                };
                self.bytes
                    .get_or_create(&family)
                    .inc_by(total.saturating_sub(*seen));
                *seen = total.max(*seen);
            }
        }
        self.refused.inc_by(refused.saturating_sub(counted.refused));
        counted.refused = refused.max(counted.refused);
    }
}
