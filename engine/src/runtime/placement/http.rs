//! `GET /placement`: every workload declared on this node, each instance's owner as this node
//! sees it, what runs here, and the duplicates the run-time detector reported here.

use serde_json::{json, Value};

use super::PlacementHandle;
use crate::http::HttpServerBuilder;

/// Adds the placement route to `server`.
pub(crate) fn routes(server: HttpServerBuilder, placement: PlacementHandle) -> HttpServerBuilder {
    server.json("/placement", move || {
        let all = placement.all();
        json!({
            "node": placement.me().to_string(),
            "workloads": serde_json::to_value(&*all).unwrap_or(Value::Null),
            "duplicates_detected": placement.duplicates_detected(),
        })
    })
}
