//! `FOUNDATION_*` environment variables: parsed up front (each error names its variable),
//! then applied above the file and below the builder.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use foundation_transport::{ClusterName, NodeId};

use super::discovery::{check_seed, parse_dns_server, DiscoveryChoice, DiscoveryKind};
use super::duration::{parse_duration, parse_reseat};
use super::error::{ConfigError, Origin};
use super::origins::{DiscoveryHints, Origins};
use super::port_setting::PortSetting;
use super::security::Security;
use super::storage::sync_policy;
use super::toml_file::parse_http;
use super::{NodeConfig, Profile, StorageMode, SyncPolicy};
use foundation_core::vars::reseat::ReseatConfig;

/// Every variable this module reads; any other `FOUNDATION_*` variable is reported as unknown
/// (a typo would otherwise be silently ignored).
pub const VARIABLES: &[&str] = &[
    "FOUNDATION_CONFIG",
    "FOUNDATION_CLUSTER",
    "FOUNDATION_PROFILE",
    "FOUNDATION_NODE_ID",
    "FOUNDATION_BIND",
    "FOUNDATION_ADVERTISE",
    "FOUNDATION_BULK_PORT",
    "FOUNDATION_SEALED_PORT",
    "FOUNDATION_HTTP",
    "FOUNDATION_HTTP_ADVERTISE",
    "FOUNDATION_HTTP_TOKEN",
    "FOUNDATION_HTTP_ORIGINS",
    "FOUNDATION_HTTP_HOSTS",
    "FOUNDATION_SECRET",
    "FOUNDATION_CA",
    "FOUNDATION_CERT",
    "FOUNDATION_KEY",
    "FOUNDATION_SEEDS",
    "FOUNDATION_DISCOVERY",
    "FOUNDATION_DNS_NAME",
    "FOUNDATION_DNS_PORT",
    "FOUNDATION_DNS_SERVER",
    "FOUNDATION_MDNS_INTERFACE",
    "FOUNDATION_NAME",
    "FOUNDATION_TAGS",
    "FOUNDATION_DATA_DIR",
    "FOUNDATION_STORAGE",
    "FOUNDATION_SYNC",
    "FOUNDATION_SYNC_INTERVAL",
    "FOUNDATION_VARS_RESEAT_AFTER",
    "FOUNDATION_REPLICATION_KEYSPACE_KEYS_MAX",
    "FOUNDATION_REPLICATION_KEYSPACE_BYTES_MAX",
];

/// Other programs' variables in the same namespace (the CLI's log filter), not typos.
const OTHERS: &[&str] = &["FOUNDATION_LOG"];

/// Whether `name` is a `FOUNDATION_*` variable something in Foundation reads (deployment files
/// are checked against this, so a typo there is caught before it is silently ignored).
pub fn is_known_variable(name: &str) -> bool {
    VARIABLES.contains(&name) || OTHERS.contains(&name)
}

/// The environment's settings, parsed and checked.
#[derive(Debug, Default)]
pub(crate) struct EnvLayer {
    pub config_file: Option<PathBuf>,
    pub profile: Option<Profile>,
    cluster: Option<ClusterName>,
    node_id: Option<NodeId>,
    bind: Option<SocketAddr>,
    advertise: Option<SocketAddr>,
    bulk_port: Option<PortSetting>,
    sealed_port: Option<PortSetting>,
    http: Option<Option<SocketAddr>>,
    http_advertise: Option<SocketAddr>,
    http_token: Option<String>,
    http_origins: Option<Vec<String>>,
    http_hosts: Option<Vec<String>>,
    security: Option<(Security, &'static str)>,
    seeds: Option<Vec<String>>,
    discovery: Option<Vec<DiscoveryKind>>,
    dns_name: Option<String>,
    dns_server: Option<SocketAddr>,
    dns_port: Option<String>,
    name: Option<String>,
    tags: Vec<(String, String)>,
    data_dir: Option<PathBuf>,
    storage: Option<StorageMode>,
    sync: Option<(SyncPolicy, &'static str)>,
    vars_reseat: Option<Option<ReseatConfig>>,
    keyspace_keys_max: Option<usize>,
    keyspace_bytes_max: Option<usize>,
    kubernetes: bool,
    /// Unrecognised `FOUNDATION_*` variables.
    pub unknown: Vec<String>,
}

impl EnvLayer {
    /// Parses the variables in `vars`; empty values count as unset.
    pub(crate) fn parse(vars: &BTreeMap<String, String>) -> Result<Self, ConfigError> {
        let get = |name: &str| vars.get(name).map(|v| v.trim()).filter(|v| !v.is_empty());
        let mut layer = EnvLayer {
            config_file: get("FOUNDATION_CONFIG").map(PathBuf::from),
            kubernetes: get("KUBERNETES_SERVICE_HOST").is_some(),
            unknown: unknown_variables(vars),
            ..Self::default()
        };
        refuse_empty_secrets(vars)?;
        layer.parse_identity(&get)?;
        layer.parse_addresses(&get)?;
        layer.security = parse_security(&get)?;
        layer.parse_discovery(&get)?;
        layer.parse_storage(&get)?;
        layer.vars_reseat = parsed(&get, "FOUNDATION_VARS_RESEAT_AFTER", parse_reseat)?;
        layer.parse_replication(&get)?;
        layer.name = get("FOUNDATION_NAME").map(str::to_owned);
        if let Some(tags) = get("FOUNDATION_TAGS") {
            layer.tags = parse_tags(tags).map_err(|e| ConfigError::env("FOUNDATION_TAGS", e))?;
        }
        Ok(layer)
    }

    fn parse_identity<'a>(
        &mut self,
        get: &impl Fn(&str) -> Option<&'a str>,
    ) -> Result<(), ConfigError> {
        self.profile = parsed(get, "FOUNDATION_PROFILE", |v| v.parse::<Profile>())?;
        self.cluster = parsed(get, "FOUNDATION_CLUSTER", ClusterName::new)?;
        self.node_id = parsed(get, "FOUNDATION_NODE_ID", |v| v.parse::<NodeId>())?;
        Ok(())
    }

    fn parse_addresses<'a>(
        &mut self,
        get: &impl Fn(&str) -> Option<&'a str>,
    ) -> Result<(), ConfigError> {
        let addr = |v: &str| {
            v.parse::<SocketAddr>().map_err(|_| {
                format!("{v:?} is not an ip:port address (for example \"0.0.0.0:7400\")")
            })
        };
        self.bind = parsed(get, "FOUNDATION_BIND", addr)?;
        self.advertise = parsed(get, "FOUNDATION_ADVERTISE", addr)?;
        self.http_advertise = parsed(get, "FOUNDATION_HTTP_ADVERTISE", addr)?;
        self.bulk_port = parsed(get, "FOUNDATION_BULK_PORT", str::parse::<PortSetting>)?;
        self.sealed_port = parsed(get, "FOUNDATION_SEALED_PORT", str::parse::<PortSetting>)?;
        self.http = parsed(get, "FOUNDATION_HTTP", parse_http)?;
        self.http_token = parsed(get, "FOUNDATION_HTTP_TOKEN", parse_token)?;
        let list = |v: &str| Ok::<_, String>(split_list(v).map(str::to_owned).collect());
        self.http_origins = parsed(get, "FOUNDATION_HTTP_ORIGINS", list)?;
        self.http_hosts = parsed(get, "FOUNDATION_HTTP_HOSTS", list)?;
        Ok(())
    }

    fn parse_discovery<'a>(
        &mut self,
        get: &impl Fn(&str) -> Option<&'a str>,
    ) -> Result<(), ConfigError> {
        self.seeds = parsed(get, "FOUNDATION_SEEDS", parse_seeds)?;
        self.discovery = parsed(get, "FOUNDATION_DISCOVERY", |v| {
            split_list(v)
                .map(str::parse)
                .collect::<Result<Vec<DiscoveryKind>, String>>()
        })?;
        self.dns_name = get("FOUNDATION_DNS_NAME").map(str::to_owned);
        self.dns_server = parsed(get, "FOUNDATION_DNS_SERVER", parse_dns_server)?;
        // Checked once it is known whether a dns strategy takes it (resolve.rs).
        self.dns_port = get("FOUNDATION_DNS_PORT").map(str::to_owned);
        Ok(())
    }

    fn parse_storage<'a>(
        &mut self,
        get: &impl Fn(&str) -> Option<&'a str>,
    ) -> Result<(), ConfigError> {
        self.data_dir = get("FOUNDATION_DATA_DIR").map(PathBuf::from);
        self.storage = parsed(get, "FOUNDATION_STORAGE", |v| v.parse::<StorageMode>())?;
        let interval = parsed(get, "FOUNDATION_SYNC_INTERVAL", parse_duration)?;
        let name = get("FOUNDATION_SYNC");
        let var = if name.is_some() {
            "FOUNDATION_SYNC"
        } else {
            "FOUNDATION_SYNC_INTERVAL"
        };
        self.sync = sync_policy(name, interval)
            .map_err(|e| ConfigError::env(var, e))?
            .map(|policy| (policy, var));
        Ok(())
    }

    /// The two replication limits a growing cluster runs into (the agent directory and the
    /// service registry are one keyspace each); the other replication settings are TOML only,
    /// as membership's are.
    fn parse_replication<'a>(
        &mut self,
        get: &impl Fn(&str) -> Option<&'a str>,
    ) -> Result<(), ConfigError> {
        let count = |v: &str| {
            v.parse::<usize>()
                .map_err(|_| format!("{v:?} is not a whole number"))
        };
        self.keyspace_keys_max = parsed(get, "FOUNDATION_REPLICATION_KEYSPACE_KEYS_MAX", count)?;
        self.keyspace_bytes_max = parsed(get, "FOUNDATION_REPLICATION_KEYSPACE_BYTES_MAX", count)?;
        Ok(())
    }

    /// Applies every variable that is set on top of `config`.
    pub(crate) fn apply(
        &self,
        config: &mut NodeConfig,
        origins: &mut Origins,
        hints: &mut DiscoveryHints,
    ) {
        let set = |origins: &mut Origins, field: &str, var| origins.set(field, &Origin::Env(var));
        if let Some(cluster) = &self.cluster {
            config.cluster = cluster.clone();
            set(origins, "cluster", "FOUNDATION_CLUSTER");
        }
        if let Some(id) = self.node_id {
            config.node_id = Some(id);
            set(origins, "node_id", "FOUNDATION_NODE_ID");
        }
        self.apply_addresses(config, origins);
        if let Some((security, var)) = &self.security {
            config.security = security.clone();
            set(origins, "security", var);
        }
        self.apply_discovery(config, origins, hints);
        self.apply_metadata(config, origins);
        self.apply_storage(config, origins);
        self.apply_replication(config, origins);
    }

    fn apply_replication(&self, config: &mut NodeConfig, origins: &mut Origins) {
        let replication = &mut config.replication;
        let limits = [
            (
                &mut replication.keyspace_keys_max,
                self.keyspace_keys_max,
                "replication.keyspace_keys_max",
                "FOUNDATION_REPLICATION_KEYSPACE_KEYS_MAX",
            ),
            (
                &mut replication.keyspace_bytes_max,
                self.keyspace_bytes_max,
                "replication.keyspace_bytes_max",
                "FOUNDATION_REPLICATION_KEYSPACE_BYTES_MAX",
            ),
        ];
        for (slot, value, field, var) in limits {
            if let Some(value) = value {
                origins.put(slot, value, field, &Origin::Env(var));
            }
        }
    }

    fn apply_storage(&self, config: &mut NodeConfig, origins: &mut Origins) {
        if let Some(dir) = &self.data_dir {
            let origin = Origin::Env("FOUNDATION_DATA_DIR");
            origins.put(&mut config.data_dir, Some(dir.clone()), "data_dir", &origin);
        }
        if let Some(mode) = self.storage {
            let origin = Origin::Env("FOUNDATION_STORAGE");
            origins.put(&mut config.storage, mode, "storage", &origin);
        }
        if let Some((policy, var)) = self.sync {
            origins.put(&mut config.sync, policy, "sync", &Origin::Env(var));
        }
        if let Some(reseat) = self.vars_reseat {
            let origin = Origin::Env("FOUNDATION_VARS_RESEAT_AFTER");
            origins.put(
                &mut config.vars_reseat,
                reseat,
                "vars_reseat_after",
                &origin,
            );
        }
    }

    fn apply_addresses(&self, config: &mut NodeConfig, origins: &mut Origins) {
        if let Some(bind) = self.bind {
            origins.put(
                &mut config.bind,
                bind,
                "bind",
                &Origin::Env("FOUNDATION_BIND"),
            );
        }
        if let Some(advertise) = self.advertise {
            origins.put(
                &mut config.advertise,
                Some(advertise),
                "advertise",
                &Origin::Env("FOUNDATION_ADVERTISE"),
            );
        }
        let transport = &mut config.transport;
        let ports = [
            (
                &mut transport.bulk_port,
                self.bulk_port,
                "transport.bulk_port",
                "FOUNDATION_BULK_PORT",
            ),
            (
                &mut transport.sealed_port,
                self.sealed_port,
                "transport.sealed_port",
                "FOUNDATION_SEALED_PORT",
            ),
        ];
        for (slot, port, field, var) in ports {
            if let Some(port) = port {
                origins.put(slot, port, field, &Origin::Env(var));
            }
        }
        if let Some(http) = self.http {
            origins.put(
                &mut config.http,
                http,
                "http",
                &Origin::Env("FOUNDATION_HTTP"),
            );
        }
        if let Some(addr) = self.http_advertise {
            origins.put(
                &mut config.http_advertise,
                Some(addr),
                "http_advertise",
                &Origin::Env("FOUNDATION_HTTP_ADVERTISE"),
            );
        }
        self.apply_http_access(config, origins);
    }

    fn apply_http_access(&self, config: &mut NodeConfig, origins: &mut Origins) {
        let access = &mut config.http_access;
        if let Some(token) = &self.http_token {
            access.token = Some(token.clone());
            origins.set("http_access", &Origin::Env("FOUNDATION_HTTP_TOKEN"));
        }
        if let Some(allowed) = &self.http_origins {
            access.allowed_origins = allowed.clone();
            origins.set("http_access", &Origin::Env("FOUNDATION_HTTP_ORIGINS"));
        }
        if let Some(allowed) = &self.http_hosts {
            access.allowed_hosts = allowed.clone();
            origins.set("http_access", &Origin::Env("FOUNDATION_HTTP_HOSTS"));
        }
    }

    fn apply_discovery(
        &self,
        config: &mut NodeConfig,
        origins: &mut Origins,
        hints: &mut DiscoveryHints,
    ) {
        if let Some(kinds) = &self.discovery {
            let choices = kinds
                .iter()
                .map(|&kind| DiscoveryChoice::empty(kind))
                .collect();
            origins.put(
                &mut config.discovery,
                choices,
                "discovery",
                &Origin::Env("FOUNDATION_DISCOVERY"),
            );
        }
        if let Some(seeds) = &self.seeds {
            hints.seeds = Some((seeds.clone(), Origin::Env("FOUNDATION_SEEDS")));
        }
        if let Some(name) = &self.dns_name {
            hints.dns_name = Some((name.clone(), Origin::Env("FOUNDATION_DNS_NAME")));
        }
        if let Some(server) = self.dns_server {
            hints.dns_server = Some((server, Origin::Env("FOUNDATION_DNS_SERVER")));
        }
        if let Some(port) = &self.dns_port {
            hints.dns_port = Some((port.clone(), Origin::Env("FOUNDATION_DNS_PORT")));
        }
        hints.kubernetes |= self.kubernetes;
    }

    fn apply_metadata(&self, config: &mut NodeConfig, origins: &mut Origins) {
        if let Some(name) = &self.name {
            origins.put(
                &mut config.metadata.name,
                Some(name.clone()),
                "metadata.name",
                &Origin::Env("FOUNDATION_NAME"),
            );
        }
        if !self.tags.is_empty() {
            config.metadata.tags.extend(self.tags.iter().cloned());
            origins.set("metadata.tags", &Origin::Env("FOUNDATION_TAGS"));
        }
    }
}

/// Parses variable `var` with `parse` when it is set; the error names the variable and
/// quotes the value.
fn parsed<'a, T, E: std::fmt::Display>(
    get: &impl Fn(&str) -> Option<&'a str>,
    var: &'static str,
    parse: impl Fn(&'a str) -> Result<T, E>,
) -> Result<Option<T>, ConfigError> {
    let Some(value) = get(var) else {
        return Ok(None);
    };
    parse(value).map(Some).map_err(|e| ConfigError::env(var, e))
}

/// A secret, or all three certificate files; a partial set of files is an error naming the
/// missing variables.
fn parse_security<'a>(
    get: &impl Fn(&str) -> Option<&'a str>,
) -> Result<Option<(Security, &'static str)>, ConfigError> {
    let files = ["FOUNDATION_CA", "FOUNDATION_CERT", "FOUNDATION_KEY"];
    let present: Vec<&str> = files
        .iter()
        .copied()
        .filter(|var| get(var).is_some())
        .collect();
    let secret = get("FOUNDATION_SECRET");
    if secret.is_some() && !present.is_empty() {
        let problem = format!(
            "set either FOUNDATION_SECRET or the certificate files ({}), not both",
            present.join(", ")
        );
        return Err(ConfigError::env("FOUNDATION_SECRET", problem));
    }
    if let Some(secret) = secret {
        return Ok(Some((
            Security::Secret(secret.to_owned()),
            "FOUNDATION_SECRET",
        )));
    }
    match (get(files[0]), get(files[1]), get(files[2])) {
        (None, None, None) => Ok(None),
        (Some(ca), Some(cert), Some(key)) => {
            let security = Security::Files {
                ca: ca.into(),
                certificate: cert.into(),
                key: key.into(),
            };
            Ok(Some((security, "FOUNDATION_CA")))
        }
        _ => {
            let missing: Vec<&str> = files
                .iter()
                .copied()
                .filter(|var| get(var).is_none())
                .collect();
            let problem = format!("certificate files need FOUNDATION_CA, FOUNDATION_CERT and FOUNDATION_KEY; missing: {}", missing.join(", "));
            Err(ConfigError::env(
                present.first().copied().unwrap_or("FOUNDATION_CA"),
                problem,
            ))
        }
    }
}

/// Shortest HTTP token accepted: a guessable token is no protection.
const HTTP_TOKEN_MIN: usize = 16;

fn parse_token(value: &str) -> Result<String, String> {
    if value.chars().count() < HTTP_TOKEN_MIN || value.contains(char::is_whitespace) {
        return Err(format!(
            "the token must be at least {HTTP_TOKEN_MIN} characters without spaces (e.g. `openssl rand -hex 24`)"
        ));
    }
    Ok(value.to_owned())
}

/// A secret variable that is set but empty is a mistake (an unexpanded `$SECRET`, an empty
/// Kubernetes secret), not a request for the default: falling back to the development secret
/// would quietly open the cluster.
fn refuse_empty_secrets(vars: &BTreeMap<String, String>) -> Result<(), ConfigError> {
    for var in ["FOUNDATION_SECRET", "FOUNDATION_HTTP_TOKEN"] {
        if vars.get(var).is_some_and(|value| value.trim().is_empty()) {
            let why = "is set but empty; give it a value, or unset it";
            return Err(ConfigError::env(var, why));
        }
    }
    Ok(())
}

fn split_list(value: &str) -> impl Iterator<Item = &str> {
    value
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
}

fn parse_seeds(value: &str) -> Result<Vec<String>, String> {
    let seeds: Vec<String> = split_list(value).map(str::to_owned).collect();
    seeds.iter().try_for_each(|seed| check_seed(seed))?;
    Ok(seeds)
}

/// `k=v,k2=v2`: keys must be non-empty; values may be empty.
fn parse_tags(value: &str) -> Result<Vec<(String, String)>, String> {
    split_list(value)
        .map(|pair| match pair.split_once('=') {
            Some((key, value)) if !key.trim().is_empty() => {
                Ok((key.trim().to_owned(), value.trim().to_owned()))
            }
            _ => Err(format!(
                "{pair:?} is not key=value (expected \"k=v,k2=v2\")"
            )),
        })
        .collect()
}

fn unknown_variables(vars: &BTreeMap<String, String>) -> Vec<String> {
    vars.keys()
        .filter(|key| key.starts_with("FOUNDATION_"))
        .filter(|key| !VARIABLES.contains(&key.as_str()) && !OTHERS.contains(&key.as_str()))
        .cloned()
        .collect()
}
