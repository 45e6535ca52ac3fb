//! What a node says about itself, disseminated with membership.

use std::collections::BTreeMap;
use std::net::SocketAddr;

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
    /// The metadata.
    pub metadata: NodeMetadata,
}

/// Largest encoded metadata accepted, so it always fits a push-pull exchange comfortably.
pub const METADATA_MAX_BYTES: usize = 4096;
