//! From a validated [`NodeConfig`] to a running [`Node`]: the one place configuration meets the
//! runtime, so `Foundation::builder()…start()`, `foundation node` and tests all start nodes the
//! same way.

use foundation_transport::{LocalIdentity, NodeId};
use prometheus_client::registry::Registry;
use tracing::warn;

use super::{Node, NodeError, NodeSettings, StorageSettings};
use crate::config::{ConfigBuilder, ConfigError, NodeConfig, StorageMode};
use crate::discovery::{self, DiscoveryMetrics, Environment};
use crate::storage::DataDir;

/// Why a node could not be started from configuration.
#[derive(Debug, thiserror::Error)]
pub enum StartNodeError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The node failed to start.
    #[error(transparent)]
    Node(#[from] NodeError),
    /// The node started, but its federation gateway did not (the node was stopped again).
    #[error("federation gateway: {0}")]
    Gateway(#[from] super::federation::GatewayStartError),
}

impl Node {
    /// Starts a node with `config`, and its federation gateway when `[federation]` is set.
    pub async fn start_configured(config: &NodeConfig) -> Result<Node, StartNodeError> {
        let node = Node::start(NodeSettings::from_config(config)?).await?;
        if let Some(federation) = &config.federation {
            if let Err(error) = node.start_gateway(federation.clone()) {
                node.abort().await;
                return Err(error.into());
            }
        }
        Ok(node)
    }
}

impl NodeSettings {
    /// Settings for `config`, with discovery strategies built against the process environment.
    pub fn from_config(config: &NodeConfig) -> Result<NodeSettings, StartNodeError> {
        let mut registry = Registry::default();
        let discovery_metrics = DiscoveryMetrics::register(&mut registry);
        let environment = Environment::from_process();
        let mut strategies = Vec::new();
        for spec in &config.discovery {
            // Building `auto` logs what it chose and why.
            let built = discovery::build(spec, &environment, &discovery_metrics)
                .map_err(NodeError::from)?;
            strategies.extend(built);
        }
        let mut transport = config.transport_config();
        transport.bind = config.bind;
        transport.advertise = config.advertise;
        Ok(NodeSettings {
            identity: LocalIdentity {
                id: node_id(config)?,
                cluster: config.cluster.clone(),
            },
            trust: config.security.trust(&config.cluster)?,
            transport,
            membership: config.membership.clone(),
            metadata: config.metadata.clone(),
            seeds: Vec::new(),
            discovery: strategies,
            http: config.http,
            http_advertise: config.http_advertise,
            http_access: config.http_access.clone(),
            registry,
            rpc: Default::default(),
            replication: config.replication.clone(),
            storage: match (&config.data_dir, config.storage) {
                (Some(dir), StorageMode::Disk) => Some(StorageSettings {
                    data_dir: dir.clone(),
                    sync: config.sync,
                }),
                _ => None,
            },
            agents: Default::default(),
            vars_reseat: config.vars_reseat,
        })
    }
}

/// The configured id; else, with a data directory, the one kept there, so a restart is the same
/// member coming back; else a new random one.
fn node_id(config: &NodeConfig) -> Result<NodeId, NodeError> {
    if let Some(id) = config.node_id {
        return Ok(id);
    }
    match &config.data_dir {
        Some(dir) => Ok(DataDir::create(dir.clone())?.stable_node_id()?),
        None => Ok(NodeId::random()),
    }
}

impl ConfigBuilder {
    /// Builds the configuration and starts a node with it, logging its warnings (such as the
    /// development secret's).
    pub async fn start(self) -> Result<Node, StartNodeError> {
        let config = self.build()?;
        for warning in config.warnings() {
            warn!("{warning}");
        }
        Node::start_configured(&config).await
    }
}
