//! What a node says about itself, disseminated with membership.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

/// A node's self-description.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeMetadata {
    /// A human-friendly name.
    pub name: Option<String>,
    /// Capabilities and labels, e.g. `zone=eu-1`, `gpu=true`.
    pub tags: BTreeMap<String, String>,
    /// The software version the node runs.
    pub version: String,
    /// Where the node serves HTTP (`/metrics`, `/health`, `/members`).
    pub http: Option<SocketAddr>,
}

/// Metadata with the version its owner gave it; the higher version wins everywhere.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Versioned {
    /// Bumped by the owner on every change.
    pub version: u64,
    /// The metadata, shared by the table, the view and the events that show it (encoded as
    /// the value itself: the wire format is that of a plain `NodeMetadata`).
    pub metadata: Arc<NodeMetadata>,
}

/// Metadata values shared by several nodes' membership machines in one process (the
/// simulator's): a node that takes up a value equal to one another node already holds keeps
/// that one, so N nodes hold N values in all instead of N each. Only content-equal values
/// are shared, so what each machine sees, and everything it does, is unchanged.
#[derive(Clone, Debug, Default)]
pub struct SharedMetadata {
    values: Arc<Mutex<Interned>>,
}

/// Each node's metadata by version.
type Interned = BTreeMap<(crate::NodeId, u64), Arc<NodeMetadata>>;

impl SharedMetadata {
    /// `node`'s metadata at `version`, as an equal value already shared if there is one.
    pub fn intern(
        &self,
        node: crate::NodeId,
        version: u64,
        value: Arc<NodeMetadata>,
    ) -> Arc<NodeMetadata> {
        let mut values = self.values.lock().unwrap_or_else(|e| e.into_inner());
        match values.get(&(node, version)) {
            Some(shared) if **shared == *value => shared.clone(),
            _ => {
                values.insert((node, version), value.clone());
                value
            }
        }
    }

    /// How many values are shared.
    pub fn len(&self) -> usize {
        self.values.lock().map_or(0, |v| v.len())
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Largest encoded metadata accepted, so it always fits a push-pull exchange comfortably.
pub const METADATA_MAX_BYTES: usize = 4096;
