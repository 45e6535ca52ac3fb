//! Node configuration: profiles, a TOML file, environment variables and the builder, merged in
//! that order of precedence and validated with errors that name the field and what is wrong.
//!
//! ```text
//!   profile defaults  <  TOML file  <  FOUNDATION_* environment  <  builder / CLI
//! ```
//!
//! The profile is settled first (builder, then `FOUNDATION_PROFILE`, then the file's
//! `profile`, else development) because it decides every default. Start from
//! [`NodeConfig::builder`]:
//!
//! ```no_run
//! # fn main() -> Result<(), foundation_engine::config::ConfigError> {
//! let config = foundation_engine::config::NodeConfig::builder()
//!     .cluster("orders")
//!     .file("foundation.toml")
//!     .process_env()
//!     .build()?;
//! for warning in config.warnings() {
//!     eprintln!("warning: {warning}");
//! }
//! # Ok(()) }
//! ```

mod builder;
mod discovery;
pub(crate) mod duration;
mod env;
mod error;
mod federation;
mod origins;
mod overrides;
mod port_setting;
mod profile;
mod resolve;
mod security;
mod storage;
mod toml_file;
mod validate;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use foundation_transport::{ClusterName, NodeId, TransportConfig};

use crate::http::Access;

use foundation_core::membership::MembershipConfig;
use foundation_core::replication::ReplicationConfig;

pub use builder::ConfigBuilder;
pub use discovery::{parse_dns_server, DiscoveryChoice, DEFAULT_DNS_INTERVAL, DEFAULT_PORT};
pub use duration::{format_duration, parse_duration, ParseDurationError};
pub use env::is_known_variable;
pub use error::{ConfigError, Origin};
pub use port_setting::{PortSetting, DEFAULT_BULK_PORT, DEFAULT_SEALED_PORT};
pub use profile::{ParseProfileError, Profile};
pub use security::Security;
pub use storage::StorageMode;

pub use crate::storage::SyncPolicy;

/// The cluster name used when none is configured.
pub const DEFAULT_CLUSTER: &str = "foundation";

/// Everything a node needs to start. Build it with [`NodeConfig::builder`]; a value from the
/// builder has been validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeConfig {
    /// The cluster to join; nodes only talk to nodes of the same cluster. Default
    /// `"foundation"`. TOML `cluster`, env `FOUNDATION_CLUSTER`.
    pub cluster: ClusterName,
    /// A stable node id, so a restarted node rejoins as itself (a higher incarnation) rather
    /// than as a stranger. Default: none, a fresh random id each start. TOML `node_id`
    /// (hex), env `FOUNDATION_NODE_ID`.
    pub node_id: Option<NodeId>,
    /// Which defaults were used. TOML `profile`, env `FOUNDATION_PROFILE`.
    pub profile: Profile,
    /// UDP address of the QUIC endpoint. Default `127.0.0.1:0` in development (loopback, any
    /// port: nothing is exposed by accident) and `0.0.0.0:7400` in production. TOML `bind`,
    /// env `FOUNDATION_BIND`.
    pub bind: SocketAddr,
    /// Address peers should dial, when it differs from `bind` (NAT, containers, `0.0.0.0`).
    /// Default: none: the bound address, or when bound to `0.0.0.0`/`::` the address of the
    /// default route's interface (never the unspecified address). TOML `advertise`, env
    /// `FOUNDATION_ADVERTISE`.
    pub advertise: Option<SocketAddr>,
    /// TCP address of the HTTP server (`/metrics`, `/health`, `/members`); `None` disables it.
    /// Default `127.0.0.1:0` in development (an ephemeral port, so many nodes fit on one
    /// machine) and `127.0.0.1:7401` in production (a fixed port for scrapers, loopback until an
    /// operator decides otherwise). TOML `http` (`"off"` disables), env `FOUNDATION_HTTP`.
    pub http: Option<SocketAddr>,
    /// Address other nodes (the status page's convergence column) reach this node's HTTP API
    /// at, put into membership metadata. Default: `http` itself when it names a specific IP;
    /// when `http` binds every address (`0.0.0.0`, `::`), the node's advertised QUIC IP with
    /// `http`'s port. Never the unspecified address. TOML `http_advertise`, env
    /// `FOUNDATION_HTTP_ADVERTISE`.
    pub http_advertise: Option<SocketAddr>,
    /// Who may use the HTTP API: a bearer token for writes (required for writes when `http`
    /// is not loopback), and the web origins and host names allowed besides the node's own.
    /// Default: no token, no extra origins or hosts. Env `FOUNDATION_HTTP_TOKEN` (at least 16
    /// characters), `FOUNDATION_HTTP_ORIGINS`, `FOUNDATION_HTTP_HOSTS` (comma-separated).
    pub http_access: Access,
    /// How the node proves it belongs to the cluster. Default: the development secret in
    /// development; production requires a secret or certificates. TOML `[security]`, env
    /// `FOUNDATION_SECRET` or `FOUNDATION_CA`/`FOUNDATION_CERT`/`FOUNDATION_KEY`.
    pub security: Security,
    /// How the first peers are found; several strategies may run at once. Default `[auto]`
    /// (local + mDNS on a laptop). Production needs an explicit strategy, seeds, a DNS name, or
    /// a Kubernetes environment for `auto`. TOML `[[discovery]]`, env `FOUNDATION_DISCOVERY`,
    /// `FOUNDATION_SEEDS`, `FOUNDATION_DNS_NAME`, and `FOUNDATION_DNS_SERVER` (or a `dns`
    /// entry's `server = "ip[:port]"`) for the name server DNS discovery asks.
    pub discovery: Vec<DiscoveryChoice>,
    /// Failure-detector timers and limits. Default: the profile's preset
    /// ([`MembershipConfig::development`] or [`MembershipConfig::production`]). TOML
    /// `[membership]`, every field overridable.
    pub membership: MembershipConfig,
    /// Replicated keyspaces' limits and timers: the agent directory, the service registry and
    /// config are each one keyspace, so `keyspace_keys_max` (default 10,000) bounds the agents
    /// a cluster holds. Default: [`ReplicationConfig::default`]. TOML `[replication]`, every
    /// field but `wall_ms_at_zero` (the runtime's) overridable; env
    /// `FOUNDATION_REPLICATION_KEYSPACE_KEYS_MAX`, `FOUNDATION_REPLICATION_KEYSPACE_BYTES_MAX`.
    /// Give every node the same values, since each checks its own writes against them.
    pub replication: ReplicationConfig,
    /// QUIC connection liveness. TOML `[transport]`.
    pub transport: TransportSettings,
    /// What this node tells the cluster about itself. TOML `[metadata]`, env `FOUNDATION_NAME`,
    /// `FOUNDATION_TAGS`.
    pub metadata: NodeMetadata,
    /// The node's data directory: its durable state in `store/` and its stable identity in
    /// `node-id` (layout: [`crate::storage::DataDir`]). Default: none. Required in production
    /// unless `storage = "memory"`. TOML `data_dir`, env `FOUNDATION_DATA_DIR`, CLI
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// Where replicated state lives. Default: `disk` when a data directory is given, else
    /// `memory` (development only: production refuses to default to memory). TOML `storage`,
    /// env `FOUNDATION_STORAGE`.
    pub storage: StorageMode,
    /// When a durable write counts as done. Default `always` (synced, with group commit).
    /// TOML `sync` (`"always"`, `"interval"`, `"never"`) and `sync_interval` (default
    /// 100ms), env `FOUNDATION_SYNC`, `FOUNDATION_SYNC_INTERVAL`.
    pub sync: SyncPolicy,
    /// This node as a federation gateway of its cluster: its address, the links to other
    /// clusters and the services exported to them. Default: none. TOML `[federation]` (see
    /// `config/federation.rs` for the keys).
    pub federation: Option<crate::runtime::federation::FederationSettings>,
    /// Moving `cas` and `coordinated` variables off acceptor lives that are gone, on their
    /// own (see `foundation_core::vars::reseat`): on by default, a failed life replaced after
    /// 10s. TOML `vars_reseat_after` (a duration, or `"off"`), env
    /// `FOUNDATION_VARS_RESEAT_AFTER`.
    pub vars_reseat: Option<foundation_core::vars::reseat::ReseatConfig>,
}

/// The transport settings a node configuration controls; the rest keep the transport's
/// defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TransportSettings {
    /// QUIC keep-alive interval, used only with `sealed_port` off. Default 10 s: keeps NAT
    /// bindings open without a ping per peer every second (membership's probes are what notice
    /// a dead peer). Must be shorter than `idle_timeout`. TOML `transport.keep_alive`.
    pub keep_alive: Duration,
    /// A connection silent for this long is dead. Default 30 s; the connection of a member
    /// membership declares failed is closed at once, so this only reaps the rest. At most
    /// 600 s. TOML `transport.idle_timeout`.
    pub idle_timeout: Duration,
    /// The UDP port bulk transfers arrive on, apart from urgent traffic. Default `auto` (any
    /// free port, announced to peers) in development and 7402 in production, which a firewall
    /// must let through besides `bind`'s port; `off` sends transfers on `bind`'s port. TOML
    /// `transport.bulk_port` (`"auto"`, `"off"` or a port), env `FOUNDATION_BULK_PORT`.
    pub bulk_port: PortSetting,
    /// The UDP port membership datagrams travel on outside QUIC, sealed with keys from each
    /// connection's TLS session (announced to peers; a firewall must let it through besides
    /// `bind`'s and the bulk port). Default `auto` in development and 7403 in production; `off`
    /// sends membership in QUIC datagrams on `bind`'s port, and connections then keep
    /// themselves alive every `keep_alive`. TOML `transport.sealed_port` (`"auto"`, `"off"` or a
    /// port; `sealed_membership = false` is the older spelling of `"off"`), env
    /// `FOUNDATION_SEALED_PORT`.
    pub sealed_port: PortSetting,
}

impl Default for TransportSettings {
    fn default() -> Self {
        let transport = TransportConfig::default();
        Self {
            keep_alive: transport.keep_alive,
            idle_timeout: transport.idle_timeout,
            bulk_port: PortSetting::Auto,
            // Sealed membership is on by default, as in the transport.
            sealed_port: PortSetting::Auto,
        }
    }
}

/// What a node advertises about itself: TOML `[metadata]` (`name`, `version`, `[metadata.tags]`),
/// env `FOUNDATION_NAME` and `FOUNDATION_TAGS="k=v,k2=v2"`. The version defaults to this
/// crate's; the HTTP address is filled in by the runtime.
pub use foundation_core::membership::NodeMetadata;

impl NodeConfig {
    /// A builder that reads sources in precedence order; see the module documentation.
    pub fn builder() -> ConfigBuilder {
        ConfigBuilder::default()
    }

    /// The defaults of `profile`, unvalidated: production's defaults lack a secret and
    /// discovery on purpose, so the operator must supply them.
    pub fn defaults(profile: Profile) -> Self {
        let production = profile == Profile::Production;
        Self {
            cluster: default_cluster(),
            node_id: None,
            profile,
            bind: if production {
                SocketAddr::from((Ipv4Addr::UNSPECIFIED, 7400))
            } else {
                SocketAddr::from((Ipv4Addr::LOCALHOST, 0))
            },
            advertise: None,
            http: Some(SocketAddr::from((
                Ipv4Addr::LOCALHOST,
                if production { 7401 } else { 0 },
            ))),
            http_advertise: None,
            http_access: Access::default(),
            security: Security::DevelopmentSecret,
            discovery: vec![DiscoveryChoice::Auto],
            membership: if production {
                MembershipConfig::production()
            } else {
                MembershipConfig::development()
            },
            replication: ReplicationConfig::default(),
            transport: TransportSettings {
                bulk_port: production_or_auto(production, DEFAULT_BULK_PORT),
                sealed_port: production_or_auto(production, DEFAULT_SEALED_PORT),
                ..TransportSettings::default()
            },
            metadata: NodeMetadata {
                version: env!("CARGO_PKG_VERSION").to_owned(),
                ..NodeMetadata::default()
            },
            data_dir: None,
            storage: StorageMode::Memory,
            sync: SyncPolicy::Always,
            federation: None,
            vars_reseat: Some(Default::default()),
        }
    }

    /// Addresses this node reaches first, known before it starts: static seeds given as IP
    /// addresses and the name servers DNS discovery asks. The transport advertises the
    /// interface toward them when bound to an unspecified address.
    fn first_peers(&self) -> Vec<SocketAddr> {
        let mut peers = Vec::new();
        for choice in &self.discovery {
            match choice {
                DiscoveryChoice::Static { seeds } => {
                    peers.extend(seeds.iter().filter_map(|s| s.parse::<SocketAddr>().ok()));
                }
                DiscoveryChoice::Dns {
                    server: Some(server),
                    ..
                } => peers.push(*server),
                _ => {}
            }
        }
        peers
    }

    /// The transport configuration: the transport's defaults with this node's bind and
    /// advertise addresses, liveness timers, bulk and sealed ports.
    pub fn transport_config(&self) -> TransportConfig {
        TransportConfig {
            bind: self.bind,
            advertise: self.advertise,
            advertise_toward: self.first_peers(),
            keep_alive: self.transport.keep_alive,
            idle_timeout: self.transport.idle_timeout,
            bulk_endpoint: self.transport.bulk_port.enabled(),
            bulk_port: self.transport.bulk_port.port().unwrap_or(0),
            sealed_membership: self.transport.sealed_port.enabled(),
            sealed_port: self.transport.sealed_port.port().unwrap_or(0),
            ..TransportConfig::default()
        }
    }

    /// Things that work but that an operator should know, to print at start-up.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if self.security.is_development() {
            warnings.push(format!(
                "SECURITY: cluster {:?} uses the development secret, derived from the cluster \
                 name: anyone who can reach this node and knows the name can join. Set \
                 FOUNDATION_SECRET (or [security] secret) before using this outside a laptop.",
                self.cluster.as_str()
            ));
        }
        if self.profile == Profile::Production && self.storage == StorageMode::Memory {
            warnings.push(
                "STORAGE: storage = \"memory\": replicated state is lost when every node stops \
                 at once. Set data_dir to keep it on disk."
                    .to_owned(),
            );
        }
        warnings
    }
}

/// A fixed port in production, where a firewall must be told which to open; any free port in
/// development, where many nodes share one machine.
fn production_or_auto(production: bool, port: u16) -> PortSetting {
    if production {
        PortSetting::Fixed(port)
    } else {
        PortSetting::Auto
    }
}

fn default_cluster() -> ClusterName {
    // A constant known to be valid, not input: this cannot fail.
    ClusterName::new(DEFAULT_CLUSTER).expect("\"foundation\" is a valid cluster name")
}
