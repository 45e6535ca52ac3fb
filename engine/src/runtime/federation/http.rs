//! `GET /federation`: whether this node is a gateway, its links (state, gateway, RTT, probes,
//! bytes, bridged pub/sub and the interest heard and told), the handshakes it refused, its hubs
//! and transit clusters, the calls it served by the cluster they started in, and the global
//! directory as it holds it.

use serde_json::{json, Value};

use super::FederationHandle;
use crate::http::HttpServerBuilder;
use crate::runtime::services::ServicesHandle;
use foundation_transport::ClusterName;

pub(crate) fn routes(server: HttpServerBuilder, services: ServicesHandle) -> HttpServerBuilder {
    server.json("/federation", move || match services.shared.gateway() {
        Some(gateway) => gateway.json(),
        None => json!({ "gateway": false }),
    })
}

impl FederationHandle {
    fn json(&self) -> Value {
        let now = self.inner.now();
        let links: Vec<Value> = self
            .links()
            .iter()
            .map(|link| {
                let bytes = self.bytes(&link.cluster);
                json!({
                    "cluster": link.cluster.as_str(),
                    "state": link.state,
                    "gateway": link.gateway.to_string(),
                    "rtt_ms": link.rtt.map(|rtt| rtt.as_secs_f64() * 1e3),
                    "probes_sent": link.probes_sent,
                    "probes_missed": link.probes_missed,
                    "bytes_sent": bytes.sent,
                    "bytes_received": bytes.received,
                    "bridged": self.inner.bridge.metrics.json(&link.cluster),
                    "interest": self.inner.bridge.interest_json(now, &link.cluster),
                })
            })
            .collect();
        let directory = self.directory();
        let clusters: serde_json::Map<String, Value> = directory
            .clusters()
            .map(|(cluster, exports)| {
                let services: serde_json::Map<String, Value> = exports
                    .services
                    .iter()
                    .map(|(name, service)| (name.clone(), json!({ "healthy": service.healthy })))
                    .collect();
                let entry = json!({ "version": exports.version, "services": services });
                (cluster.as_str().to_owned(), entry)
            })
            .collect();
        let routing = self.inner.machine().routing().clone();
        let names = |set: &std::collections::BTreeSet<_>| -> Vec<String> {
            set.iter().map(|c: &ClusterName| c.to_string()).collect()
        };
        let served = self.served();
        let by_origin: serde_json::Map<String, Value> = (served.by_origin().iter())
            .map(|(origin, calls)| (origin.to_string(), json!(calls)))
            .collect();
        json!({
            "gateway": true,
            "addr": self.addr().map(|a| a.to_string()),
            "refused_handshakes": self.refused(),
            "links": links,
            "hubs": names(&routing.hubs),
            "transit": names(&routing.transit),
            "served_by_origin": by_origin,
            "served_unlisted_origins": served.unlisted(),
            "directory": clusters,
        })
    }
}
