//! `foundation_federation_bridged_*` metrics: per link, messages and payload bytes bridged in
//! and out, and the messages dropped by reason. Counted as messages cross; also what
//! `GET /federation` shows per link.

use foundation_transport::ClusterName;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use serde_json::{json, Value};

use super::Dropped;
use foundation_transport::Declared;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Direction {
    cluster: String,
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reason {
    cluster: String,
    reason: &'static str,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct BridgeMetrics {
    messages: Family<Direction, Counter>,
    bytes: Family<Direction, Counter>,
    dropped: Family<Reason, Counter>,
    /// Payload bytes not sent because the linked cluster's interest left them out.
    unwanted_bytes: Family<Link, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Link {
    cluster: String,
}

impl BridgeMetrics {
    /// Registers the families under `registry` (already prefixed `foundation_federation`).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "bridged_messages",
            "Pub/sub messages bridged over a link, by direction (out: sent and taken by the remote gateway; in: published here)",
            Declared(self.messages.clone()),
        );
        registry.register(
            "bridged_bytes",
            "Payload bytes of the pub/sub messages bridged over a link, by direction",
            Declared(self.bytes.clone()),
        );
        registry.register(
            "bridge_dropped",
            "Bridged pub/sub messages dropped, by link and reason",
            Declared(self.dropped.clone()),
        );
        registry.register(
            "bridge_unwanted_bytes",
            "Payload bytes of the bridged pub/sub messages not sent because the linked cluster's interest left them out",
            Declared(self.unwanted_bytes.clone()),
        );
    }

    /// Every series of `cluster`'s link at zero, so that a drop reason never seen still shows.
    pub fn declare(&self, cluster: &ClusterName) {
        for reason in Dropped::ALL {
            let _ = self.dropped.get_or_create(&reason_label(cluster, reason));
        }
        let _ = self.unwanted_bytes.get_or_create(&link_label(cluster));
    }

    /// A message of `bytes` payload exported to `cluster` was not sent: no interest there.
    pub fn unwanted(&self, cluster: &ClusterName, bytes: u64) {
        self.dropped(cluster, Dropped::NoInterest, 1);
        self.unwanted_bytes
            .get_or_create(&link_label(cluster))
            .inc_by(bytes);
    }

    /// `messages` of `bytes` payload crossed `cluster`'s link in `direction` (`in` or `out`).
    pub fn carried(
        &self,
        cluster: &ClusterName,
        direction: &'static str,
        messages: u64,
        bytes: u64,
    ) {
        let label = Direction {
            cluster: cluster.as_str().to_owned(),
            direction,
        };
        self.messages.get_or_create(&label).inc_by(messages);
        self.bytes.get_or_create(&label).inc_by(bytes);
    }

    /// `n` messages of `cluster`'s link were dropped for `reason`.
    pub fn dropped(&self, cluster: &ClusterName, reason: Dropped, n: u64) {
        if n == 0 {
            return;
        }
        self.dropped
            .get_or_create(&reason_label(cluster, reason))
            .inc_by(n);
    }

    /// The link's figures as `GET /federation` shows them.
    pub fn json(&self, cluster: &ClusterName) -> Value {
        let name = cluster.as_str().to_owned();
        let carried = |family: &Family<Direction, Counter>, direction| {
            let label = Direction {
                cluster: name.clone(),
                direction,
            };
            family.get_or_create(&label).get()
        };
        let dropped: serde_json::Map<String, Value> = Dropped::ALL
            .iter()
            .map(|reason| {
                let label = reason_label(cluster, *reason);
                (
                    reason.label().to_owned(),
                    json!(self.dropped.get_or_create(&label).get()),
                )
            })
            .collect();
        json!({
            "messages_out": carried(&self.messages, "out"),
            "bytes_out": carried(&self.bytes, "out"),
            "messages_in": carried(&self.messages, "in"),
            "bytes_in": carried(&self.bytes, "in"),
            "dropped": dropped,
            "unwanted_bytes": self.unwanted_bytes.get_or_create(&link_label(cluster)).get(),
        })
    }
}

fn reason_label(cluster: &ClusterName, reason: Dropped) -> Reason {
    Reason {
        cluster: cluster.as_str().to_owned(),
        reason: reason.label(),
    }
}

fn link_label(cluster: &ClusterName) -> Link {
    Link {
        cluster: cluster.as_str().to_owned(),
    }
}
