//! The TOML configuration file: its schema (unknown keys are refused), and how its values are
//! applied with the file and line recorded for every field.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::discovery::{parse_dns_server, DiscoveryChoice, DiscoveryKind};
use super::duration::TextDuration;
use super::error::{ConfigError, Origin};
use super::origins::Origins;
use super::port_setting::PortSetting;
use super::security::Security;
use super::{NodeConfig, Profile};

/// Largest configuration file read, so a wrong path (a device, a log) fails fast.
const MAX_FILE_BYTES: u64 = 1 << 20;

/// The file's top level.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    cluster: Option<Spanned<String>>,
    profile: Option<Spanned<String>>,
    node_id: Option<Spanned<String>>,
    bind: Option<Spanned<String>>,
    advertise: Option<Spanned<String>>,
    http: Option<Spanned<String>>,
    http_advertise: Option<Spanned<String>>,
    security: Option<Spanned<FileSecurity>>,
    discovery: Option<Spanned<Vec<Spanned<FileDiscovery>>>>,
    membership: Option<FileMembership>,
    replication: Option<FileReplication>,
    transport: Option<FileTransport>,
    metadata: Option<FileMetadata>,
    data_dir: Option<Spanned<PathBuf>>,
    storage: Option<Spanned<String>>,
    sync: Option<Spanned<String>>,
    sync_interval: Option<Spanned<TextDuration>>,
    federation: Option<Spanned<super::federation::FileFederation>>,
    vars_reseat_after: Option<Spanned<String>>,
}

/// `[security]`: a secret, or the three certificate files, or `development_secret = true`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSecurity {
    secret: Option<String>,
    ca: Option<PathBuf>,
    certificate: Option<PathBuf>,
    key: Option<PathBuf>,
    development_secret: Option<bool>,
}

/// One `[[discovery]]` entry; which keys apply depends on `kind`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDiscovery {
    kind: String,
    seeds: Option<Vec<String>>,
    dir: Option<PathBuf>,
    name: Option<String>,
    port: Option<u16>,
    srv: Option<bool>,
    interval: Option<TextDuration>,
    server: Option<String>,
}

/// `[membership]`: every field of [`foundation_core::membership::MembershipConfig`], optional.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileMembership {
    probe_period: Option<Spanned<TextDuration>>,
    probe_rtt: Option<Spanned<TextDuration>>,
    indirect_probes: Option<Spanned<usize>>,
    suspect_to_down_after: Option<Spanned<TextDuration>>,
    suspicion_confirmations: Option<Spanned<usize>>,
    suspect_to_down_min: Option<Spanned<TextDuration>>,
    local_health_max: Option<Spanned<u32>>,
    push_pull_interval: Option<Spanned<TextDuration>>,
    gossip_interval: Option<Spanned<TextDuration>>,
    gossip_fanout: Option<Spanned<usize>>,
    remember_down_for: Option<Spanned<TextDuration>>,
    reap_after: Option<Spanned<TextDuration>>,
    max_packet_size: Option<Spanned<usize>>,
}

/// `[replication]`: every field of [`foundation_core::replication::ReplicationConfig`] but
/// `wall_ms_at_zero`, which the runtime sets from its clock; each optional.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileReplication {
    fanout: Option<Spanned<usize>>,
    push_all_max: Option<Spanned<usize>>,
    anti_entropy_interval: Option<Spanned<TextDuration>>,
    op_log_max: Option<Spanned<usize>>,
    value_size_max: Option<Spanned<usize>>,
    key_size_max: Option<Spanned<usize>>,
    keyspace_keys_max: Option<Spanned<usize>>,
    keyspace_bytes_max: Option<Spanned<usize>>,
    keyspaces_max: Option<Spanned<usize>>,
    max_drift_ms: Option<Spanned<u64>>,
    tombstone_ttl: Option<Spanned<TextDuration>>,
    departed_after: Option<Spanned<TextDuration>>,
    bulk_threshold: Option<Spanned<usize>>,
}

/// `[transport]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTransport {
    keep_alive: Option<Spanned<TextDuration>>,
    idle_timeout: Option<Spanned<TextDuration>>,
    bulk_port: Option<Spanned<PortSetting>>,
    sealed_port: Option<Spanned<PortSetting>>,
    /// The older spelling of `sealed_port`: `false` is `"off"`, `true` the profile's default.
    sealed_membership: Option<Spanned<bool>>,
}

/// `[metadata]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileMetadata {
    name: Option<Spanned<String>>,
    version: Option<Spanned<String>>,
    tags: Option<Spanned<BTreeMap<String, String>>>,
}

/// Puts each `field` the file's `section` table sets into `target`, recording the line it came
/// from as `section.field`, so validation can point at it.
macro_rules! put_fields {
    ($layer:expr, $origins:expr, $file:expr, $target:expr, $section:literal: $($field:ident),* $(,)?) => {$(
        if let Some(value) = &$file.$field {
            let origin = $layer.origin(value.span());
            $origins.put(
                &mut $target.$field,
                value.get_ref().clone().into(),
                concat!($section, ".", stringify!($field)),
                &origin,
            );
        }
    )*};
}

/// A parsed configuration file, with its text kept to turn spans into line numbers.
#[derive(Debug)]
pub(crate) struct FileLayer {
    path: String,
    text: String,
    config: FileConfig,
}

impl FileLayer {
    /// Reads and parses the file at `path`.
    pub(crate) fn load(path: &Path) -> Result<Self, ConfigError> {
        let name = path.display().to_string();
        let text = read_bounded(path).map_err(|source| ConfigError::Read {
            path: name.clone(),
            source,
        })?;
        Self::parse(name, text)
    }

    /// Parses `text`, naming it `path` in errors.
    pub(crate) fn parse(path: String, text: String) -> Result<Self, ConfigError> {
        match toml::from_str::<FileConfig>(&text) {
            Ok(config) => Ok(Self { path, text, config }),
            Err(error) => Err(parse_error(path, &text, &error)),
        }
    }

    /// The origin of a value at `span`.
    fn origin(&self, span: Range<usize>) -> Origin {
        Origin::File {
            path: self.path.clone(),
            line: line_of(&self.text, span.start),
        }
    }

    /// The file's `profile`, if it sets one.
    pub(crate) fn profile(&self) -> Result<Option<(Profile, Origin)>, ConfigError> {
        let Some(profile) = &self.config.profile else {
            return Ok(None);
        };
        let origin = self.origin(profile.span());
        match profile.get_ref().parse() {
            Ok(parsed) => Ok(Some((parsed, origin))),
            Err(e) => Err(ConfigError::invalid(origin, "profile", e)),
        }
    }

    /// Applies every value the file sets on top of `config`.
    pub(crate) fn apply(
        &self,
        config: &mut NodeConfig,
        origins: &mut Origins,
    ) -> Result<(), ConfigError> {
        self.apply_identity(config, origins)?;
        self.apply_addresses(config, origins)?;
        self.apply_security(config, origins)?;
        self.apply_discovery(config, origins)?;
        self.apply_membership(config, origins);
        self.apply_replication(config, origins);
        self.apply_transport(config, origins)?;
        self.apply_metadata(config, origins);
        self.apply_storage(config, origins)?;
        self.apply_vars(config, origins)?;
        self.apply_federation(config, origins)
    }

    fn apply_vars(
        &self,
        config: &mut NodeConfig,
        origins: &mut Origins,
    ) -> Result<(), ConfigError> {
        let Some(after) = &self.config.vars_reseat_after else {
            return Ok(());
        };
        let origin = self.origin(after.span());
        let parsed = super::duration::parse_reseat(after.get_ref())
            .map_err(|e| ConfigError::invalid(origin.clone(), "vars_reseat_after", e))?;
        origins.put(
            &mut config.vars_reseat,
            parsed,
            "vars_reseat_after",
            &origin,
        );
        Ok(())
    }

    fn apply_federation(
        &self,
        config: &mut NodeConfig,
        origins: &mut Origins,
    ) -> Result<(), ConfigError> {
        let Some(federation) = &self.config.federation else {
            return Ok(());
        };
        let origin = self.origin(federation.span());
        let settings = federation
            .get_ref()
            .settings()
            .map_err(|e| ConfigError::invalid(origin.clone(), "federation", e))?;
        origins.put(
            &mut config.federation,
            Some(settings),
            "federation",
            &origin,
        );
        Ok(())
    }

    fn apply_storage(
        &self,
        config: &mut NodeConfig,
        origins: &mut Origins,
    ) -> Result<(), ConfigError> {
        let file = &self.config;
        if let Some(dir) = &file.data_dir {
            let origin = self.origin(dir.span());
            origins.put(
                &mut config.data_dir,
                Some(dir.get_ref().clone()),
                "data_dir",
                &origin,
            );
        }
        if let Some(mode) = &file.storage {
            let origin = self.origin(mode.span());
            let parsed = mode
                .get_ref()
                .parse()
                .map_err(|e| ConfigError::invalid(origin.clone(), "storage", e))?;
            origins.put(&mut config.storage, parsed, "storage", &origin);
        }
        let span = file
            .sync
            .as_ref()
            .map(Spanned::span)
            .or_else(|| file.sync_interval.as_ref().map(Spanned::span));
        let Some(span) = span else {
            return Ok(());
        };
        let origin = self.origin(span);
        let name = file.sync.as_ref().map(|s| s.get_ref().as_str());
        let interval = file.sync_interval.as_ref().map(|i| i.get_ref().0);
        match super::storage::sync_policy(name, interval) {
            Ok(Some(policy)) => origins.put(&mut config.sync, policy, "sync", &origin),
            Ok(None) => {}
            Err(problem) => return Err(ConfigError::invalid(origin, "sync", problem)),
        }
        Ok(())
    }

    fn apply_identity(
        &self,
        config: &mut NodeConfig,
        origins: &mut Origins,
    ) -> Result<(), ConfigError> {
        if let Some(cluster) = &self.config.cluster {
            let origin = self.origin(cluster.span());
            let name = cluster
                .get_ref()
                .parse()
                .map_err(|e| ConfigError::invalid(origin.clone(), "cluster", e))?;
            origins.put(&mut config.cluster, name, "cluster", &origin);
        }
        if let Some(id) = &self.config.node_id {
            let origin = self.origin(id.span());
            let id = id
                .get_ref()
                .parse()
                .map_err(|e| ConfigError::invalid(origin.clone(), "node_id", e))?;
            origins.put(&mut config.node_id, Some(id), "node_id", &origin);
        }
        Ok(())
    }

    fn apply_addresses(
        &self,
        config: &mut NodeConfig,
        origins: &mut Origins,
    ) -> Result<(), ConfigError> {
        if let Some(bind) = &self.config.bind {
            let origin = self.origin(bind.span());
            let addr = parse_addr(bind.get_ref(), &origin, "bind")?;
            origins.put(&mut config.bind, addr, "bind", &origin);
        }
        if let Some(advertise) = &self.config.advertise {
            let origin = self.origin(advertise.span());
            let addr = parse_addr(advertise.get_ref(), &origin, "advertise")?;
            origins.put(&mut config.advertise, Some(addr), "advertise", &origin);
        }
        if let Some(http) = &self.config.http {
            let origin = self.origin(http.span());
            let addr = parse_http(http.get_ref())
                .map_err(|e| ConfigError::invalid(origin.clone(), "http", e))?;
            origins.put(&mut config.http, addr, "http", &origin);
        }
        if let Some(advertise) = &self.config.http_advertise {
            let origin = self.origin(advertise.span());
            let addr = parse_addr(advertise.get_ref(), &origin, "http_advertise")?;
            origins.put(
                &mut config.http_advertise,
                Some(addr),
                "http_advertise",
                &origin,
            );
        }
        Ok(())
    }

    fn apply_security(
        &self,
        config: &mut NodeConfig,
        origins: &mut Origins,
    ) -> Result<(), ConfigError> {
        let Some(section) = &self.config.security else {
            return Ok(());
        };
        let origin = self.origin(section.span());
        if let Some(security) = section.get_ref().to_security(&origin)? {
            origins.put(&mut config.security, security, "security", &origin);
        }
        Ok(())
    }

    fn apply_discovery(
        &self,
        config: &mut NodeConfig,
        origins: &mut Origins,
    ) -> Result<(), ConfigError> {
        let Some(entries) = &self.config.discovery else {
            return Ok(());
        };
        let mut choices = Vec::new();
        for entry in entries.get_ref() {
            choices.push(entry.get_ref().to_choice(&self.origin(entry.span()))?);
        }
        origins.put(
            &mut config.discovery,
            choices,
            "discovery",
            &self.origin(entries.span()),
        );
        Ok(())
    }

    fn apply_membership(&self, config: &mut NodeConfig, origins: &mut Origins) {
        let Some(file) = &self.config.membership else {
            return;
        };
        put_fields!(self, origins, file, config.membership, "membership":
            probe_period,
            probe_rtt,
            indirect_probes,
            suspect_to_down_after,
            suspicion_confirmations,
            suspect_to_down_min,
            local_health_max,
            push_pull_interval,
            gossip_interval,
            gossip_fanout,
            remember_down_for,
            reap_after,
            max_packet_size,
        );
    }

    fn apply_replication(&self, config: &mut NodeConfig, origins: &mut Origins) {
        let Some(file) = &self.config.replication else {
            return;
        };
        put_fields!(self, origins, file, config.replication, "replication":
            fanout,
            push_all_max,
            anti_entropy_interval,
            op_log_max,
            value_size_max,
            key_size_max,
            keyspace_keys_max,
            keyspace_bytes_max,
            keyspaces_max,
            max_drift_ms,
            tombstone_ttl,
            departed_after,
            bulk_threshold,
        );
    }

    fn apply_transport(
        &self,
        config: &mut NodeConfig,
        origins: &mut Origins,
    ) -> Result<(), ConfigError> {
        let Some(file) = &self.config.transport else {
            return Ok(());
        };
        if let Some(value) = &file.keep_alive {
            origins.put(
                &mut config.transport.keep_alive,
                value.get_ref().0,
                "transport.keep_alive",
                &self.origin(value.span()),
            );
        }
        if let Some(value) = &file.idle_timeout {
            origins.put(
                &mut config.transport.idle_timeout,
                value.get_ref().0,
                "transport.idle_timeout",
                &self.origin(value.span()),
            );
        }
        if let Some(value) = &file.bulk_port {
            origins.put(
                &mut config.transport.bulk_port,
                *value.get_ref(),
                "transport.bulk_port",
                &self.origin(value.span()),
            );
        }
        if let Some((port, span)) = self.sealed_port(file)? {
            origins.put(
                &mut config.transport.sealed_port,
                port,
                "transport.sealed_port",
                &self.origin(span),
            );
        }
        Ok(())
    }

    /// `sealed_port`, or what `sealed_membership = false` means; the two keys together must
    /// agree, so the file cannot say both "on" and "off".
    fn sealed_port(
        &self,
        file: &FileTransport,
    ) -> Result<Option<(PortSetting, Range<usize>)>, ConfigError> {
        let port = file.sealed_port.as_ref();
        match (port, &file.sealed_membership) {
            (Some(port), Some(on)) if port.get_ref().enabled() != *on.get_ref() => {
                Err(ConfigError::invalid(
                    self.origin(on.span()),
                    "transport.sealed_membership",
                    format!(
                        "contradicts sealed_port = \"{}\": keep only sealed_port (\"off\" turns \
                         sealed membership off)",
                        port.get_ref()
                    ),
                ))
            }
            (Some(port), _) => Ok(Some((*port.get_ref(), port.span()))),
            (None, Some(on)) if !on.get_ref() => Ok(Some((PortSetting::Off, on.span()))),
            (None, _) => Ok(None),
        }
    }

    fn apply_metadata(&self, config: &mut NodeConfig, origins: &mut Origins) {
        let Some(file) = &self.config.metadata else {
            return;
        };
        let metadata = &mut config.metadata;
        if let Some(name) = &file.name {
            origins.put(
                &mut metadata.name,
                Some(name.get_ref().clone()),
                "metadata.name",
                &self.origin(name.span()),
            );
        }
        if let Some(version) = &file.version {
            origins.put(
                &mut metadata.version,
                version.get_ref().clone(),
                "metadata.version",
                &self.origin(version.span()),
            );
        }
        if let Some(tags) = &file.tags {
            origins.put(
                &mut metadata.tags,
                tags.get_ref().clone(),
                "metadata.tags",
                &self.origin(tags.span()),
            );
        }
    }
}

impl FileSecurity {
    /// The security this section asks for; `None` for an empty section.
    fn to_security(&self, origin: &Origin) -> Result<Option<Security>, ConfigError> {
        let files = [&self.ca, &self.certificate, &self.key];
        let any_file = files.iter().any(|f| f.is_some());
        let development = self.development_secret == Some(true);
        let chosen =
            usize::from(self.secret.is_some()) + usize::from(any_file) + usize::from(development);
        if chosen > 1 {
            let problem =
                "set only one of: secret; ca, certificate and key; development_secret = true";
            return Err(ConfigError::invalid(origin.clone(), "security", problem));
        }
        if let Some(secret) = &self.secret {
            return Ok(Some(Security::Secret(secret.clone())));
        }
        if development {
            return Ok(Some(Security::DevelopmentSecret));
        }
        if !any_file {
            return Ok(None);
        }
        self.certificate_files(origin).map(Some)
    }

    fn certificate_files(&self, origin: &Origin) -> Result<Security, ConfigError> {
        match (&self.ca, &self.certificate, &self.key) {
            (Some(ca), Some(certificate), Some(key)) => Ok(Security::Files {
                ca: ca.clone(),
                certificate: certificate.clone(),
                key: key.clone(),
            }),
            _ => {
                let missing: Vec<&str> = [
                    ("ca", &self.ca),
                    ("certificate", &self.certificate),
                    ("key", &self.key),
                ]
                .into_iter()
                .filter(|(_, value)| value.is_none())
                .map(|(name, _)| name)
                .collect();
                let problem = format!(
                    "certificate files need ca, certificate and key; missing: {}",
                    missing.join(", ")
                );
                Err(ConfigError::invalid(origin.clone(), "security", problem))
            }
        }
    }
}

impl FileDiscovery {
    /// The strategy this entry describes; keys that do not apply to its kind are refused.
    fn to_choice(&self, origin: &Origin) -> Result<DiscoveryChoice, ConfigError> {
        let invalid = |field: &str, problem: String| {
            ConfigError::invalid(origin.clone(), format!("discovery.{field}"), problem)
        };
        let kind: DiscoveryKind = self.kind.parse().map_err(|e| invalid("kind", e))?;
        let allowed: &[&str] = match kind {
            DiscoveryKind::Static => &["seeds"],
            DiscoveryKind::Local => &["dir"],
            DiscoveryKind::Dns => &["name", "port", "srv", "interval", "server"],
            DiscoveryKind::Mdns | DiscoveryKind::Auto => &[],
        };
        if let Some(field) = self
            .present_keys()
            .into_iter()
            .find(|key| !allowed.contains(key))
        {
            return Err(invalid(
                field,
                format!("does not apply to kind = {:?}", self.kind),
            ));
        }
        let server = match &self.server {
            Some(text) => Some(parse_dns_server(text).map_err(|e| invalid("server", e))?),
            None => None,
        };
        let mut choice = self.fill(DiscoveryChoice::empty(kind));
        if let DiscoveryChoice::Dns { server: slot, .. } = &mut choice {
            *slot = server;
        }
        Ok(choice)
    }

    fn present_keys(&self) -> Vec<&'static str> {
        let keys = [
            ("seeds", self.seeds.is_some()),
            ("dir", self.dir.is_some()),
            ("name", self.name.is_some()),
            ("port", self.port.is_some()),
            ("srv", self.srv.is_some()),
            ("interval", self.interval.is_some()),
            ("server", self.server.is_some()),
        ];
        keys.into_iter()
            .filter(|(_, present)| *present)
            .map(|(key, _)| key)
            .collect()
    }

    fn fill(&self, mut choice: DiscoveryChoice) -> DiscoveryChoice {
        match &mut choice {
            DiscoveryChoice::Static { seeds } => *seeds = self.seeds.clone().unwrap_or_default(),
            DiscoveryChoice::Local { dir } => dir.clone_from(&self.dir),
            DiscoveryChoice::Dns {
                name,
                port,
                srv,
                interval,
                ..
            } => {
                *name = self.name.clone().unwrap_or_default();
                *port = self.port.unwrap_or(*port);
                *srv = self.srv.unwrap_or(*srv);
                *interval = self.interval.map_or(*interval, |i| i.0);
            }
            DiscoveryChoice::Mdns | DiscoveryChoice::Auto => {}
        }
        choice
    }
}

/// Parses a socket address, naming `field` in the error.
pub(crate) fn parse_addr(
    text: &str,
    origin: &Origin,
    field: &str,
) -> Result<SocketAddr, ConfigError> {
    text.trim().parse().map_err(|_| {
        let problem = format!("{text:?} is not an ip:port address (for example \"0.0.0.0:7400\")");
        ConfigError::invalid(origin.clone(), field, problem)
    })
}

/// Parses the HTTP setting: an address, or `off` to disable the server.
pub(crate) fn parse_http(text: &str) -> Result<Option<SocketAddr>, String> {
    let text = text.trim();
    if ["off", "none", "false", "disabled"].contains(&text.to_ascii_lowercase().as_str()) {
        return Ok(None);
    }
    text.parse().map(Some).map_err(|_| {
        format!(
            "{text:?} is neither an ip:port address (for example \"127.0.0.1:7401\") nor \"off\""
        )
    })
}

fn read_bounded(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let file = std::fs::File::open(path)?;
    let mut text = String::new();
    file.take(MAX_FILE_BYTES + 1).read_to_string(&mut text)?;
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(std::io::Error::other(
            "larger than 1 MiB; is this the right file?",
        ));
    }
    Ok(text)
}

/// A TOML error as a [`ConfigError::File`] naming the line and, when it can be told, the key.
fn parse_error(path: String, text: &str, error: &toml::de::Error) -> ConfigError {
    let span = error.span();
    let line = span.as_ref().map(|span| line_of(text, span.start));
    let key = span.and_then(|span| key_at(text, span.start));
    let message = error.message().trim().replace('\n', " ");
    let message = match key {
        Some(key) if !message.contains(&key) => format!("{key}: {message}"),
        _ => message,
    };
    ConfigError::File {
        path,
        line,
        message,
    }
}

/// The 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The dotted key (`membership.probe_rtt`) assigned on the line holding `offset`, found by
/// reading the line's `key =` and the nearest table header above it. Best effort: the error
/// message is still right without it.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let start = text.as_bytes()[..offset.min(text.len())]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let line = text.get(start..)?.lines().next()?;
    let key = line.split_once('=')?.0.trim();
    if key.is_empty() || key.starts_with('[') || key.contains('"') {
        return None;
    }
    let table = text
        .get(..start)?
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['));
    Some(
        match table.map(|t| t.trim_matches(|c| c == '[' || c == ']').trim()) {
            Some(table) if !table.is_empty() => format!("{table}.{key}"),
            _ => key.to_owned(),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_counted_from_one() {
        assert_eq!(line_of("a\nb\nc", 0), 1);
        assert_eq!(line_of("a\nb\nc", 2), 2);
        assert_eq!(line_of("a\nb\nc", 99), 3);
    }

    #[test]
    fn keys_are_found_with_their_table() {
        let text = "cluster = \"x\"\n[membership]\nprobe_rtt = \"5 parsecs\"\n";
        let offset = text.find("\"5").unwrap();
        assert_eq!(
            key_at(text, offset).as_deref(),
            Some("membership.probe_rtt")
        );
        assert_eq!(key_at(text, 3).as_deref(), Some("cluster"));
    }

    #[test]
    fn http_off_disables() {
        assert_eq!(parse_http("off"), Ok(None));
        assert!(parse_http("nope").is_err());
    }
}
