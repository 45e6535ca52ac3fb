//! This node as it shows itself to operators (`/members`' self row, `/health`, `/status`,
//! `/keyspaces`, `/leave`, `/snapshot`, `/monitor`). Its name and tags change with
//! [`Node::set_metadata`](super::Node::set_metadata), so they are read from what the driver
//! publishes after each change, never from a copy taken at start.

use std::sync::Arc;

use foundation_core::membership::{MemberId, NodeMetadata};
use foundation_transport::ClusterName;
use serde_json::{json, Value};
use tokio::sync::watch;

/// This node: what never changes in its life, and its metadata as last published.
#[derive(Clone)]
pub(crate) struct Identity {
    fixed: Arc<Fixed>,
    metadata: watch::Receiver<Arc<NodeMetadata>>,
}

struct Fixed {
    member: MemberId,
    cluster: ClusterName,
}

impl Identity {
    /// This node's identity, and where its metadata is published from then on.
    pub(crate) fn new(
        member: MemberId,
        cluster: ClusterName,
        metadata: NodeMetadata,
    ) -> (Self, watch::Sender<Arc<NodeMetadata>>) {
        let (publish, metadata) = watch::channel(Arc::new(metadata));
        let fixed = Arc::new(Fixed { member, cluster });
        (Self { fixed, metadata }, publish)
    }

    /// The node as JSON, with its name and tags now.
    pub(crate) fn json(&self) -> Value {
        let Fixed { member, cluster } = &*self.fixed;
        let metadata = self.metadata.borrow();
        json!({
            "id": member.node.to_string(),
            "addr": member.addr.to_string(),
            "cluster": cluster.as_str(),
            "generation": member.generation,
            "name": metadata.name,
            "tags": metadata.tags,
        })
    }

    /// The node's metadata now, as members' rows show theirs.
    pub(crate) fn metadata_json(&self) -> Value {
        serde_json::to_value(&**self.metadata.borrow()).unwrap_or_default()
    }
}
