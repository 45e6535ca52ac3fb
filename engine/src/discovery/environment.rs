//! The environment discovery depends on, read once so that everything else is testable.

use std::path::PathBuf;

/// A snapshot of what discovery reads from the process environment.
///
/// [`Environment::from_process`] is the only place discovery reads environment variables; tests
/// and the configuration layer construct it directly (for instance to add configured seeds).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Environment {
    /// `KUBERNETES_SERVICE_HOST`: set in every Kubernetes pod.
    pub kubernetes_service_host: Option<String>,
    /// `POD_NAMESPACE` (set through the downward API), used in the default DNS name.
    pub pod_namespace: Option<String>,
    /// `FOUNDATION_DNS_NAME`: the headless service name to resolve under `auto`.
    pub dns_name: Option<String>,
    /// `FOUNDATION_DNS_PORT`: the peers' QUIC port for A/AAAA records (default: our own port).
    pub dns_port: Option<String>,
    /// `FOUNDATION_DNS_SERVER`: the name server `auto`'s DNS lookups ask (default: the
    /// system's). The configuration layer refuses an invalid value before this is read.
    pub dns_server: Option<std::net::SocketAddr>,
    /// Seed addresses: `FOUNDATION_SEEDS` (comma-separated) plus any the configuration adds.
    pub seeds: Vec<String>,
    /// `FOUNDATION_MDNS_INTERFACE`: comma-separated interface names mDNS is restricted to
    /// (default: all interfaces).
    pub mdns_interface: Option<String>,
    /// `XDG_RUNTIME_DIR`: the base of the local discovery directory.
    pub xdg_runtime_dir: Option<PathBuf>,
    /// `USER`: names the fallback local directory when the uid is unknown.
    pub user: Option<String>,
}

impl Environment {
    /// Reads the variables above from this process's environment. Empty values count as unset.
    pub fn from_process() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        Self {
            kubernetes_service_host: var("KUBERNETES_SERVICE_HOST"),
            pod_namespace: var("POD_NAMESPACE"),
            dns_name: var("FOUNDATION_DNS_NAME"),
            dns_port: var("FOUNDATION_DNS_PORT"),
            dns_server: var("FOUNDATION_DNS_SERVER")
                .and_then(|s| crate::config::parse_dns_server(&s).ok()),
            seeds: var("FOUNDATION_SEEDS")
                .map(|s| split_list(&s))
                .unwrap_or_default(),
            mdns_interface: var("FOUNDATION_MDNS_INTERFACE"),
            xdg_runtime_dir: var("XDG_RUNTIME_DIR").map(PathBuf::from),
            user: var("USER"),
        }
    }

    /// The mDNS interface names from `mdns_interface` (empty: all interfaces).
    pub fn mdns_interfaces(&self) -> Vec<String> {
        self.mdns_interface
            .as_deref()
            .map(split_list)
            .unwrap_or_default()
    }
}

/// Splits a comma-separated list, trimming items and dropping empty ones.
pub(crate) fn split_list(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_trimmed_and_empty_items_dropped() {
        assert_eq!(split_list(" a:1, ,b:2,"), vec!["a:1", "b:2"]);
        let env = Environment {
            mdns_interface: Some("lo, eth0".into()),
            ..Environment::default()
        };
        assert_eq!(env.mdns_interfaces(), vec!["lo", "eth0"]);
    }
}
