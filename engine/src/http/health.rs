//! The `/health` answer.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Whether the node is fit to serve, as `/health` reports it: 200 when healthy, 503 otherwise,
/// with this as the JSON body.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Health {
    /// The verdict; decides the status code.
    pub healthy: bool,
    /// A short reason a person can read ("member of 5", "not part of a cluster").
    pub status: String,
    /// Anything else worth showing (member counts, uptime), as JSON.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub details: Map<String, Value>,
}

impl Health {
    /// A healthy node, with a reason.
    pub fn healthy(status: impl Into<String>) -> Self {
        Self {
            healthy: true,
            status: status.into(),
            details: Map::new(),
        }
    }

    /// An unhealthy node, with a reason.
    pub fn unhealthy(status: impl Into<String>) -> Self {
        Self {
            healthy: false,
            ..Self::healthy(status)
        }
    }

    /// Adds a detail.
    pub fn detail(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.details.insert(key.into(), value.into());
        self
    }
}
