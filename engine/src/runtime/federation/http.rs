//! `GET /federation`: whether this node is a gateway, its links (state, gateway, RTT, probes,
//! bytes), the handshakes it refused, and the global directory as it holds it.

use serde_json::{json, Value};

use super::FederationHandle;
use crate::http::HttpServerBuilder;
use crate::runtime::services::ServicesHandle;

pub(crate) fn routes(server: HttpServerBuilder, services: ServicesHandle) -> HttpServerBuilder {
    server.json("/federation", move || match services.shared.gateway() {
        Some(gateway) => gateway.json(),
        None => json!({ "gateway": false }),
    })
}

impl FederationHandle {
    fn json(&self) -> Value {
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
        json!({
            "gateway": true,
            "addr": self.addr().map(|a| a.to_string()),
            "refused_handshakes": self.refused(),
            "links": links,
            "directory": clusters,
        })
    }
}
