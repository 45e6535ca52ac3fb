//! Checks of the merged configuration: each error names the field and where its value came from.

use std::net::SocketAddr;

use super::discovery::DiscoveryChoice;
use super::error::{ConfigError, Origin};
use super::origins::{DiscoveryHints, Origins};
use super::security::PRODUCTION_NEEDS_SECURITY;
use super::{NodeConfig, Profile};

/// Largest total size of the name, tags and version, in bytes: metadata travels with
/// membership, whose datagrams carry at most 1200 bytes.
pub const METADATA_MAX_BYTES: usize = 512;

const PRODUCTION_NEEDS_DISCOVERY: &str =
    "the production profile needs explicit discovery (auto alone only works inside Kubernetes): \
     set FOUNDATION_SEEDS=host:port,... or FOUNDATION_DNS_NAME=name (TOML: [[discovery]] with \
     kind = \"static\" and seeds, or kind = \"dns\" and name), or FOUNDATION_DISCOVERY=mdns";

/// Runs every check.
pub(crate) fn all(
    config: &NodeConfig,
    origins: &Origins,
    hints: &DiscoveryHints,
) -> Result<(), ConfigError> {
    membership(config, origins)?;
    replication(config, origins)?;
    transport(config, origins)?;
    federation_port(config, origins)?;
    advertise(config, origins)?;
    dns_port(config, origins)?;
    config.security.check(&origins.of("security"))?;
    metadata(config, origins)?;
    if config.profile == Profile::Production {
        production(config, origins, hints)?;
    }
    super::storage::validate(config, origins)
}

fn membership(config: &NodeConfig, origins: &Origins) -> Result<(), ConfigError> {
    let e = config.membership.validate();
    e.map_err(|e| in_section(origins, "membership", e.field, e.problem))
}

/// A broken rule between two settings is reported where the operator set one: the named
/// setting's origin, or its partner's when the named one kept its default.
fn replication(config: &NodeConfig, origins: &Origins) -> Result<(), ConfigError> {
    config.replication.validate().map_err(|e| {
        let field = format!("replication.{}", e.field);
        let mut origin = origins.of(&field);
        if let (Origin::Default, Some(related)) = (&origin, e.related) {
            origin = origins.of(&format!("replication.{related}"));
        }
        ConfigError::invalid(origin, field, e.problem)
    })
}

fn transport(config: &NodeConfig, origins: &Origins) -> Result<(), ConfigError> {
    let e = config.transport_config().validate();
    e.map_err(|e| in_section(origins, "transport", e.field, e.problem))
}

/// A section's own check failed on `field`: named as its dotted TOML key, at the place its
/// value came from.
fn in_section(origins: &Origins, section: &str, field: &str, problem: String) -> ConfigError {
    let field = format!("{section}.{field}");
    ConfigError::invalid(origins.of(&field), field, problem)
}

/// A gateway's port must not be one of the node's own UDP ports: the second bind would fail at
/// start, after the node had begun joining.
fn federation_port(config: &NodeConfig, origins: &Origins) -> Result<(), ConfigError> {
    let Some(federation) = &config.federation else {
        return Ok(());
    };
    let port = federation.bind.port();
    let transport = &config.transport;
    let own = [
        ("bind", Some(config.bind.port())),
        ("transport.bulk_port", transport.bulk_port.port()),
        ("transport.sealed_port", transport.sealed_port.port()),
    ];
    match own.iter().find(|(_, own)| port != 0 && *own == Some(port)) {
        Some((field, _)) => Err(ConfigError::invalid(
            origins.of("federation"),
            "federation.bind",
            format!("port {port} is this node's {field} as well: give the gateway another port"),
        )),
        None => Ok(()),
    }
}

fn advertise(config: &NodeConfig, origins: &Origins) -> Result<(), ConfigError> {
    for (field, value) in [
        ("advertise", config.advertise),
        ("http_advertise", config.http_advertise),
    ] {
        match value {
            Some(addr) if !dialable(addr) => {
                return Err(ConfigError::invalid(
                    origins.of(field),
                    field,
                    format!("{addr} cannot be dialled by peers: it needs a specific IP address and a non-zero port"),
                ))
            }
            _ => {}
        }
    }
    Ok(())
}

/// A `dns` strategy without a port dials every peer at this node's own port, which is no
/// port at all when the node binds port 0 (the development profile's default: each node's
/// port is chosen at random), so it would find no one.
fn dns_port(config: &NodeConfig, origins: &Origins) -> Result<(), ConfigError> {
    let own_port = config.advertise.unwrap_or(config.bind).port();
    let portless = |choice: &DiscoveryChoice| {
        matches!(
            choice,
            DiscoveryChoice::Dns {
                port: 0,
                srv: false,
                ..
            }
        )
    };
    if own_port != 0 || !config.discovery.iter().any(portless) {
        return Ok(());
    }
    let origin = ["discovery.port", "discovery.name", "discovery"]
        .map(|field| origins.of(field))
        .into_iter()
        .find(|origin| *origin != Origin::Default)
        .unwrap_or(Origin::Default);
    Err(ConfigError::invalid(
        origin,
        "discovery.port",
        "a dns strategy without a port dials peers at this node's own port, and this node binds \
         port 0 (a random one): set the peers' port (FOUNDATION_DNS_PORT, TOML: port in the \
         [[discovery]] entry, or srv = true to take it from SRV records), or a fixed port of \
         this node's (FOUNDATION_BIND, or an advertise address with a port)",
    ))
}

fn dialable(addr: SocketAddr) -> bool {
    !addr.ip().is_unspecified() && addr.port() != 0
}

fn metadata(config: &NodeConfig, origins: &Origins) -> Result<(), ConfigError> {
    let metadata = &config.metadata;
    if metadata.tags.keys().any(|key| key.trim().is_empty()) {
        return Err(ConfigError::invalid(
            origins.of("metadata.tags"),
            "metadata.tags",
            "tag keys must not be empty",
        ));
    }
    let tags: usize = metadata.tags.iter().map(|(k, v)| k.len() + v.len()).sum();
    let size = tags + metadata.version.len() + metadata.name.as_ref().map_or(0, String::len);
    if size > METADATA_MAX_BYTES {
        let problem = format!(
            "name, tags and version take {size} bytes; at most {METADATA_MAX_BYTES} fit in membership messages"
        );
        return Err(ConfigError::invalid(
            origins.of("metadata.tags"),
            "metadata",
            problem,
        ));
    }
    Ok(())
}

fn production(
    config: &NodeConfig,
    origins: &Origins,
    hints: &DiscoveryHints,
) -> Result<(), ConfigError> {
    if config.security.is_development() {
        return Err(ConfigError::invalid(
            origins.of("security"),
            "security",
            PRODUCTION_NEEDS_SECURITY,
        ));
    }
    let only_auto = config.discovery.iter().all(|c| *c == DiscoveryChoice::Auto);
    if config.discovery.is_empty() || (only_auto && !hints.kubernetes) {
        return Err(ConfigError::invalid(
            origins.of("discovery"),
            "discovery",
            PRODUCTION_NEEDS_DISCOVERY,
        ));
    }
    Ok(())
}
