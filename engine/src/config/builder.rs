//! The builder: collects sources and overrides, then merges and validates them.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use foundation_transport::NodeId;

use super::discovery::DiscoveryChoice;
use super::env::EnvLayer;
use super::error::{ConfigError, Origin};
use super::origins::{DiscoveryHints, Origins};
use super::overrides::Overrides;
use super::port_setting::PortSetting;
use super::security::Security;
use super::toml_file::FileLayer;
use super::{resolve, validate, NodeConfig, Profile, StorageMode, SyncPolicy};
use foundation_core::membership::MembershipConfig;
use foundation_core::replication::ReplicationConfig;

/// Collects configuration sources; [`build`](Self::build) merges them as
/// profile defaults < file < environment < the setters here, and validates the result.
#[derive(Clone, Debug, Default)]
pub struct ConfigBuilder {
    file: Option<PathBuf>,
    env: BTreeMap<String, String>,
    overrides: Overrides,
}

impl ConfigBuilder {
    /// Reads this TOML file (unknown keys are errors). Without it, `FOUNDATION_CONFIG` names
    /// the file, if set.
    pub fn file(mut self, path: impl AsRef<Path>) -> Self {
        self.file = Some(path.as_ref().to_path_buf());
        self
    }

    /// Uses these environment variables (`FOUNDATION_*`); later calls add to and replace
    /// earlier ones. Tests pass a map here instead of touching the process environment.
    pub fn env<K: Into<String>, V: Into<String>>(
        mut self,
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        self.env
            .extend(vars.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    /// Uses the process environment. Variables that are not valid Unicode are skipped (none of
    /// ours can be).
    pub fn process_env(self) -> Self {
        let vars = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)));
        self.env(vars.collect::<Vec<_>>())
    }

    /// The cluster's name (validated at build: 1–63 of `a-z`, `0-9`, `-`).
    pub fn cluster(mut self, name: impl Into<String>) -> Self {
        self.overrides.cluster = Some(name.into());
        self
    }

    /// The profile, which picks every default.
    pub fn profile(mut self, profile: Profile) -> Self {
        self.overrides.profile = Some(profile);
        self
    }

    /// A stable node id.
    pub fn node_id(mut self, id: NodeId) -> Self {
        self.overrides.node_id = Some(id);
        self
    }

    /// The QUIC endpoint's UDP address.
    pub fn bind(mut self, addr: SocketAddr) -> Self {
        self.overrides.bind = Some(addr);
        self
    }

    /// The address peers should dial.
    pub fn advertise(mut self, addr: SocketAddr) -> Self {
        self.overrides.advertise = Some(addr);
        self
    }

    /// The HTTP server's address; `None` disables it.
    pub fn http(mut self, addr: Option<SocketAddr>) -> Self {
        self.overrides.http = Some(addr);
        self
    }

    /// The address other nodes reach this node's HTTP API at, when it differs from `http`
    /// (NAT, containers); by default a wildcard `http` is advertised at the QUIC address's IP.
    pub fn http_advertise(mut self, addr: SocketAddr) -> Self {
        self.overrides.http_advertise = Some(addr);
        self
    }

    /// A shared cluster secret (at least 16 bytes).
    pub fn secret(self, secret: impl Into<String>) -> Self {
        self.security(Security::Secret(secret.into()))
    }

    /// Operator-supplied CA, node certificate and key (PEM files).
    pub fn certificates(
        self,
        ca: impl Into<PathBuf>,
        certificate: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
    ) -> Self {
        self.security(Security::Files {
            ca: ca.into(),
            certificate: certificate.into(),
            key: key.into(),
        })
    }

    /// How the node is trusted.
    pub fn security(mut self, security: Security) -> Self {
        self.overrides.security = Some(security);
        self
    }

    /// Seed addresses (`host:port`): fill the `static` strategy, replacing `auto`.
    pub fn seeds<S: Into<String>>(mut self, seeds: impl IntoIterator<Item = S>) -> Self {
        self.overrides.seeds = Some(seeds.into_iter().map(Into::into).collect());
        self
    }

    /// A DNS name to resolve for peers: fills the `dns` strategy, replacing `auto`.
    pub fn dns_name(mut self, name: impl Into<String>) -> Self {
        self.overrides.dns_name = Some(name.into());
        self
    }

    /// The discovery strategies, replacing those of every other source.
    pub fn discovery(mut self, strategies: impl IntoIterator<Item = DiscoveryChoice>) -> Self {
        self.overrides.discovery = Some(strategies.into_iter().collect());
        self
    }

    /// Adds (or replaces) a metadata tag.
    pub fn tag(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.overrides.tags.insert(key.into(), value.into());
        self
    }

    /// The node's human-friendly name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.overrides.name = Some(name.into());
        self
    }

    /// The whole membership configuration, replacing the profile's preset and the file's values.
    pub fn membership(mut self, membership: MembershipConfig) -> Self {
        self.overrides.membership = Some(membership);
        self
    }

    /// The whole replication configuration, replacing the defaults and the file's values.
    pub fn replication(mut self, replication: ReplicationConfig) -> Self {
        self.overrides.replication = Some(replication);
        self
    }

    /// The QUIC keep-alive interval.
    pub fn keep_alive(mut self, interval: Duration) -> Self {
        self.overrides.keep_alive = Some(interval);
        self
    }

    /// The QUIC idle timeout.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.overrides.idle_timeout = Some(timeout);
        self
    }

    /// The UDP port bulk transfers arrive on: `Auto`, a fixed port, or `Off` to share the
    /// regular port.
    pub fn bulk_port(mut self, port: PortSetting) -> Self {
        self.overrides.bulk_port = Some(port);
        self
    }

    /// The UDP port sealed membership datagrams travel on: `Auto`, a fixed port, or `Off` to
    /// send membership in QUIC datagrams on the regular port.
    pub fn sealed_port(mut self, port: PortSetting) -> Self {
        self.overrides.sealed_port = Some(port);
        self
    }

    /// The data directory (durable state and the node's identity); implies `storage = disk`
    /// unless storage is set to memory.
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.overrides.data_dir = Some(dir.into());
        self
    }

    /// Where replicated state lives.
    pub fn storage(mut self, mode: StorageMode) -> Self {
        self.overrides.storage = Some(mode);
        self
    }

    /// When a durable write counts as done.
    pub fn sync(mut self, policy: SyncPolicy) -> Self {
        self.overrides.sync = Some(policy);
        self
    }

    /// Merges the sources and validates the result.
    pub fn build(self) -> Result<NodeConfig, ConfigError> {
        let env = EnvLayer::parse(&self.env)?;
        let path = self.file.clone().or_else(|| env.config_file.clone());
        let file = path.as_deref().map(FileLayer::load).transpose()?;
        let (profile, profile_origin) = self.settle_profile(&env, file.as_ref())?;
        let mut config = NodeConfig::defaults(profile);
        let mut origins = Origins::default();
        let mut hints = DiscoveryHints::default();
        origins.set("profile", &profile_origin);
        if let Some(file) = &file {
            file.apply(&mut config, &mut origins)?;
        }
        env.apply(&mut config, &mut origins, &mut hints);
        self.overrides
            .apply(&mut config, &mut origins, &mut hints)?;
        resolve::discovery(&mut config, &mut origins, &hints)?;
        super::storage::resolve(&mut config, &origins);
        validate::all(&config, &origins, &hints)?;
        for var in &env.unknown {
            tracing::warn!(variable = %var, "ignoring unknown FOUNDATION_* environment variable");
        }
        Ok(config)
    }

    /// The profile, settled first because it picks the defaults: builder, environment, file,
    /// else development.
    fn settle_profile(
        &self,
        env: &EnvLayer,
        file: Option<&FileLayer>,
    ) -> Result<(Profile, Origin), ConfigError> {
        if let Some(profile) = self.overrides.profile {
            return Ok((profile, Origin::Builder));
        }
        if let Some(profile) = env.profile {
            return Ok((profile, Origin::Env("FOUNDATION_PROFILE")));
        }
        match file.map(FileLayer::profile).transpose()?.flatten() {
            Some(found) => Ok(found),
            None => Ok((Profile::Development, Origin::Default)),
        }
    }
}
