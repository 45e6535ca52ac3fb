//! `auto`: picking strategies from the environment, and saying why.

use super::{DiscoverySpec, DnsDiscovery, Environment};

/// The headless service name `auto` resolves in Kubernetes when `FOUNDATION_DNS_NAME` is unset:
/// `foundation.<POD_NAMESPACE or "default">.svc.cluster.local`.
pub const DEFAULT_DNS_SERVICE: &str = "foundation";

/// What `auto` chose, and a sentence saying why (the node prints it).
#[derive(Clone, Debug, PartialEq)]
pub struct AutoChoice {
    /// The strategies to run.
    pub specs: Vec<DiscoverySpec>,
    /// Which strategies, and which part of the environment led there.
    pub reason: String,
}

/// Chooses discovery from the environment, first match wins:
/// 1. configured seeds → `static` (what is set beats what is detected, as in the node's
///    configuration, where `FOUNDATION_SEEDS` takes `auto`'s place before it is chosen);
/// 2. Kubernetes (`KUBERNETES_SERVICE_HOST` set) → `dns` on the headless service
///    (`FOUNDATION_DNS_NAME`, else [`DEFAULT_DNS_SERVICE`] in the pod's namespace);
/// 3. otherwise → `local` + `mdns` (zero config on a laptop).
pub fn choose_auto(env: &Environment) -> AutoChoice {
    if !env.seeds.is_empty() {
        return AutoChoice {
            specs: vec![DiscoverySpec::Static {
                seeds: env.seeds.clone(),
            }],
            reason: format!(
                "auto discovery chose static seeds: {} seed(s) configured ({})",
                env.seeds.len(),
                env.seeds.join(", ")
            ),
        };
    }
    if let Some(host) = &env.kubernetes_service_host {
        return kubernetes(env, host);
    }
    AutoChoice {
        specs: vec![DiscoverySpec::Local { dir: None }, DiscoverySpec::Mdns],
        reason: "auto discovery chose local + mdns: no Kubernetes environment \
                 (KUBERNETES_SERVICE_HOST unset) and no seeds configured (FOUNDATION_SEEDS)"
            .to_owned(),
    }
}

fn kubernetes(env: &Environment, host: &str) -> AutoChoice {
    let (name, from) = match &env.dns_name {
        Some(name) => (name.clone(), "FOUNDATION_DNS_NAME"),
        None => {
            let namespace = env.pod_namespace.as_deref().unwrap_or("default");
            let name = format!("{DEFAULT_DNS_SERVICE}.{namespace}.svc.cluster.local");
            (name, "the default headless service name")
        }
    };
    let (port, port_text) = dns_port(env);
    AutoChoice {
        specs: vec![DiscoverySpec::Dns {
            name: name.clone(),
            port,
            srv: false,
            interval: DnsDiscovery::DEFAULT_INTERVAL,
            server: env.dns_server,
        }],
        reason: format!(
            "auto discovery chose dns: Kubernetes detected (KUBERNETES_SERVICE_HOST={host}); \
             resolving {name} ({from}) with {port_text}"
        ),
    }
}

/// The port for A/AAAA answers, and how the reason describes it. An unparsable
/// `FOUNDATION_DNS_PORT` falls back to 0 ("our own port") rather than failing `auto`, and the
/// reason says so.
fn dns_port(env: &Environment) -> (u16, String) {
    let Some(text) = env.dns_port.as_deref() else {
        return (0, "this node's own port".to_owned());
    };
    match text.trim().parse::<u16>() {
        Ok(port) if port != 0 => (port, format!("port {port} (FOUNDATION_DNS_PORT)")),
        _ => (
            0,
            format!("this node's own port (FOUNDATION_DNS_PORT={text:?} is not a port)"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unparsable_dns_port_falls_back_to_our_own() {
        let env = Environment {
            kubernetes_service_host: Some("10.0.0.1".into()),
            dns_port: Some("http".into()),
            ..Environment::default()
        };
        let choice = choose_auto(&env);
        assert!(matches!(
            choice.specs[0],
            DiscoverySpec::Dns { port: 0, .. }
        ));
        assert!(
            choice.reason.contains("\"http\" is not a port"),
            "{}",
            choice.reason
        );
    }
}
