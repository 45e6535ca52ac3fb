//! Values set on the builder (or the CLI): the highest-precedence source.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use foundation_transport::{ClusterName, NodeId};

use super::discovery::DiscoveryChoice;
use super::error::{ConfigError, Origin};
use super::origins::{DiscoveryHints, Origins};
use super::port_setting::PortSetting;
use super::security::Security;
use super::{NodeConfig, Profile, StorageMode, SyncPolicy};
use foundation_core::membership::MembershipConfig;
use foundation_core::replication::ReplicationConfig;

/// Each field is `None` (or empty) unless its setter was called.
#[derive(Clone, Debug, Default)]
pub(crate) struct Overrides {
    pub cluster: Option<String>,
    pub profile: Option<Profile>,
    pub node_id: Option<NodeId>,
    pub bind: Option<SocketAddr>,
    pub advertise: Option<SocketAddr>,
    pub http: Option<Option<SocketAddr>>,
    pub http_advertise: Option<SocketAddr>,
    pub security: Option<Security>,
    pub seeds: Option<Vec<String>>,
    pub dns_name: Option<String>,
    pub discovery: Option<Vec<DiscoveryChoice>>,
    pub tags: BTreeMap<String, String>,
    pub name: Option<String>,
    pub membership: Option<MembershipConfig>,
    pub replication: Option<ReplicationConfig>,
    pub keep_alive: Option<Duration>,
    pub idle_timeout: Option<Duration>,
    pub bulk_port: Option<PortSetting>,
    pub sealed_port: Option<PortSetting>,
    pub data_dir: Option<PathBuf>,
    pub storage: Option<StorageMode>,
    pub sync: Option<SyncPolicy>,
}

impl Overrides {
    /// Applies every value that was set on top of `config`.
    pub(crate) fn apply(
        &self,
        config: &mut NodeConfig,
        origins: &mut Origins,
        hints: &mut DiscoveryHints,
    ) -> Result<(), ConfigError> {
        let builder = &Origin::Builder;
        if let Some(name) = &self.cluster {
            let cluster = ClusterName::new(name.as_str())
                .map_err(|e| ConfigError::invalid(Origin::Builder, "cluster", e))?;
            origins.put(&mut config.cluster, cluster, "cluster", builder);
        }
        set(
            &mut config.node_id,
            self.node_id.map(Some),
            "node_id",
            origins,
        );
        set(&mut config.bind, self.bind, "bind", origins);
        set(
            &mut config.advertise,
            self.advertise.map(Some),
            "advertise",
            origins,
        );
        set(&mut config.http, self.http, "http", origins);
        set(
            &mut config.http_advertise,
            self.http_advertise.map(Some),
            "http_advertise",
            origins,
        );
        set(
            &mut config.security,
            self.security.clone(),
            "security",
            origins,
        );
        set(
            &mut config.discovery,
            self.discovery.clone(),
            "discovery",
            origins,
        );
        set(
            &mut config.membership,
            self.membership.clone(),
            "membership",
            origins,
        );
        set(
            &mut config.replication,
            self.replication.clone(),
            "replication",
            origins,
        );
        set(
            &mut config.transport.keep_alive,
            self.keep_alive,
            "transport.keep_alive",
            origins,
        );
        set(
            &mut config.transport.idle_timeout,
            self.idle_timeout,
            "transport.idle_timeout",
            origins,
        );
        set(
            &mut config.transport.bulk_port,
            self.bulk_port,
            "transport.bulk_port",
            origins,
        );
        set(
            &mut config.transport.sealed_port,
            self.sealed_port,
            "transport.sealed_port",
            origins,
        );
        set(
            &mut config.metadata.name,
            self.name.clone().map(Some),
            "metadata.name",
            origins,
        );
        if !self.tags.is_empty() {
            config.metadata.tags.extend(self.tags.clone());
            origins.set("metadata.tags", builder);
        }
        self.apply_storage(config, origins);
        self.apply_hints(hints);
        Ok(())
    }

    fn apply_storage(&self, config: &mut NodeConfig, origins: &mut Origins) {
        set(
            &mut config.data_dir,
            self.data_dir.clone().map(Some),
            "data_dir",
            origins,
        );
        set(&mut config.storage, self.storage, "storage", origins);
        set(&mut config.sync, self.sync, "sync", origins);
    }

    fn apply_hints(&self, hints: &mut DiscoveryHints) {
        if let Some(seeds) = &self.seeds {
            hints.seeds = Some((seeds.clone(), Origin::Builder));
        }
        if let Some(name) = &self.dns_name {
            hints.dns_name = Some((name.clone(), Origin::Builder));
        }
    }
}

/// Stores `value` in `slot` when it was set, recording the builder as its origin.
fn set<T>(slot: &mut T, value: Option<T>, field: &str, origins: &mut Origins) {
    if let Some(value) = value {
        origins.put(slot, value, field, &Origin::Builder);
    }
}
