//! Fills seeds and DNS names given on their own into the discovery strategies, and checks that
//! every `static` and `dns` strategy ended up with what it needs.

use super::discovery::{check_seed, parse_dns_port, DiscoveryChoice};
use super::error::{ConfigError, Origin};
use super::origins::{DiscoveryHints, Origins};
use super::NodeConfig;

/// Resolves `config.discovery` against `hints`.
///
/// Seeds replace those of the `static` strategy when their source ranks at least as high as
/// the discovery list's; with no `static` strategy they replace `auto` (which is what `auto`
/// would choose) or are added. A DNS name does the same for `dns`.
pub(crate) fn discovery(
    config: &mut NodeConfig,
    origins: &mut Origins,
    hints: &DiscoveryHints,
) -> Result<(), ConfigError> {
    let list_origin = origins.of("discovery");
    if let Some((seeds, origin)) = &hints.seeds {
        let choice = DiscoveryChoice::Static {
            seeds: seeds.clone(),
        };
        merge(&mut config.discovery, choice, origin, &list_origin);
        origins.set("discovery.seeds", origin);
    }
    if let Some((name, origin)) = &hints.dns_name {
        merge(
            &mut config.discovery,
            DiscoveryChoice::dns(name.clone()),
            origin,
            &list_origin,
        );
        origins.set("discovery.name", origin);
    }
    if let Some((addr, origin)) = &hints.dns_server {
        set_dns(config, origins, origin, "discovery.server", |choice| {
            let DiscoveryChoice::Dns { server, .. } = choice else {
                return None;
            };
            Some((server.is_none(), move || *server = Some(*addr)))
        });
    }
    let runs_dns = |c: &DiscoveryChoice| matches!(c, DiscoveryChoice::Dns { .. });
    // Judged only where a dns strategy takes it: `auto` notes a bad one and goes on.
    let dns_port = hints
        .dns_port
        .as_ref()
        .filter(|_| config.discovery.iter().any(runs_dns));
    if let Some((text, origin)) = dns_port {
        let wanted = parse_dns_port(text)
            .map_err(|e| ConfigError::invalid(origin.clone(), "discovery.port", e))?;
        set_dns(config, origins, origin, "discovery.port", |choice| {
            let DiscoveryChoice::Dns { port, .. } = choice else {
                return None;
            };
            Some((*port == 0, move || *port = wanted))
        });
    }
    check(&config.discovery, origins)
}

/// Sets one setting of every `dns` strategy from a source given on its own, where that source
/// ranks at least as high as the discovery list's or the strategy left the setting unset.
/// `field` picks the setting: whether it is unset, and how to set it.
fn set_dns<'c, F: FnOnce()>(
    config: &'c mut NodeConfig,
    origins: &mut Origins,
    origin: &Origin,
    key: &str,
    field: impl Fn(&'c mut DiscoveryChoice) -> Option<(bool, F)>,
) {
    let outranks = origin.rank() >= origins.of("discovery").rank();
    for choice in &mut config.discovery {
        if let Some((unset, set)) = field(choice) {
            if outranks || unset {
                set();
                origins.set(key, origin);
            }
        }
    }
}

/// Puts `hint`'s seeds or name into the strategy of the same kind, or adds the strategy.
fn merge(
    list: &mut Vec<DiscoveryChoice>,
    hint: DiscoveryChoice,
    origin: &Origin,
    list_origin: &Origin,
) {
    let same_kind = |c: &DiscoveryChoice| c.kind() == hint.kind();
    if list.iter().any(same_kind) {
        for choice in list.iter_mut().filter(|c| same_kind(c)) {
            if origin.rank() >= list_origin.rank() || is_empty(choice) {
                fill(choice, &hint);
            }
        }
        return;
    }
    match list.iter().position(|c| *c == DiscoveryChoice::Auto) {
        Some(auto) => list[auto] = hint,
        None => list.push(hint),
    }
}

fn is_empty(choice: &DiscoveryChoice) -> bool {
    match choice {
        DiscoveryChoice::Static { seeds } => seeds.is_empty(),
        DiscoveryChoice::Dns { name, .. } => name.is_empty(),
        _ => false,
    }
}

/// Copies the seeds or the name of `hint` into `choice`, keeping `choice`'s other settings.
fn fill(choice: &mut DiscoveryChoice, hint: &DiscoveryChoice) {
    match (choice, hint) {
        (DiscoveryChoice::Static { seeds }, DiscoveryChoice::Static { seeds: new }) => {
            seeds.clone_from(new)
        }
        (DiscoveryChoice::Dns { name, .. }, DiscoveryChoice::Dns { name: new, .. }) => {
            name.clone_from(new)
        }
        _ => {}
    }
}

/// Every `static` strategy has valid seeds and every `dns` strategy a name.
fn check(list: &[DiscoveryChoice], origins: &Origins) -> Result<(), ConfigError> {
    for choice in list {
        match choice {
            DiscoveryChoice::Static { seeds } if seeds.is_empty() => {
                let problem =
                    "the static strategy has no seeds: set FOUNDATION_SEEDS=host:port,... \
                               or seeds = [\"host:port\"] in its [[discovery]] entry";
                return Err(ConfigError::invalid(
                    origins.of("discovery"),
                    "discovery.seeds",
                    problem,
                ));
            }
            DiscoveryChoice::Static { seeds } => {
                for seed in seeds {
                    check_seed(seed).map_err(|e| {
                        ConfigError::invalid(origins.of("discovery.seeds"), "discovery.seeds", e)
                    })?;
                }
            }
            DiscoveryChoice::Dns { name, .. } if name.trim().is_empty() => {
                let problem = "the dns strategy has no name: set FOUNDATION_DNS_NAME \
                               or name = \"...\" in its [[discovery]] entry";
                return Err(ConfigError::invalid(
                    origins.of("discovery"),
                    "discovery.name",
                    problem,
                ));
            }
            _ => {}
        }
    }
    Ok(())
}
