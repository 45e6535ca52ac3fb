//! Which node a `foundation` command talks to.
//!
//! `--node HOST:PORT` (or `http://HOST:PORT`, as `foundation node` prints it) names the node's
//! HTTP address. Without it, the command looks for a running node of the cluster (`--cluster`,
//! `FOUNDATION_CLUSTER`, the config file, else `"foundation"`, exactly as `foundation node`
//! decides) in the local discovery directory, where every node on this machine advertises its
//! HTTP address; failing that, it uses the configured HTTP address when it has a fixed port (the
//! production default `127.0.0.1:7401`, or `FOUNDATION_HTTP`).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use foundation_engine::config::{ConfigBuilder, ConfigError, NodeConfig, Profile, DEFAULT_CLUSTER};
use foundation_engine::discovery::{
    choose_auto, default_base_dir, running_nodes, DiscoverySpec, Environment, RunningNode,
};
use foundation_transport::ClusterName;

/// How long a found node gets to accept a connection before the next one is tried.
const PROBE_TIMEOUT: Duration = Duration::from_millis(1500);

/// A node's HTTP address as the operator wrote it: `HOST:PORT` or `http://HOST:PORT[/]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeAddress {
    host: String,
    port: u16,
}

impl NodeAddress {
    /// The address of a socket.
    pub fn from_socket(addr: SocketAddr) -> Self {
        Self {
            host: addr.ip().to_string(),
            port: addr.port(),
        }
    }

    /// Resolves the host name (an IP address resolves to itself).
    pub async fn resolve(&self) -> Result<SocketAddr, String> {
        if let Ok(ip) = self.host.parse::<IpAddr>() {
            return Ok(SocketAddr::new(ip, self.port));
        }
        let found = tokio::net::lookup_host((self.host.as_str(), self.port))
            .await
            .map_err(|e| format!("--node {self}: cannot resolve {:?}: {e}", self.host))?;
        let mut found: Vec<SocketAddr> = found.collect();
        // Prefer IPv4: `localhost` resolves to ::1 first on many systems, while nodes bind
        // 127.0.0.1 by default.
        found.sort_by_key(|a| !a.is_ipv4());
        found
            .first()
            .copied()
            .ok_or_else(|| format!("--node {self}: {:?} has no address", self.host))
    }
}

impl fmt::Display for NodeAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl FromStr for NodeAddress {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let expected = || {
            format!(
                "{text:?} is not a node address: expected HOST:PORT or http://HOST:PORT, \
                 e.g. 127.0.0.1:7401 (the http address `foundation node` prints)"
            )
        };
        let trimmed = text.trim();
        let rest = match trimmed.split_once("://") {
            None => trimmed,
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
            Some((scheme, _)) if scheme.eq_ignore_ascii_case("https") => {
                return Err(format!(
                    "{text:?}: a node serves plain HTTP (on loopback by default); \
                     use http://HOST:PORT or HOST:PORT"
                ))
            }
            Some(_) => return Err(expected()),
        };
        // `foundation node` prints `http://127.0.0.1:PORT/`: a trailing slash is fine, a path
        // is not (commands choose their own paths).
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('/') {
            return Err(format!(
                "{text:?}: give the node's address without a path, e.g. http://127.0.0.1:7401"
            ));
        }
        if let Ok(addr) = rest.parse::<SocketAddr>() {
            if addr.port() == 0 {
                return Err(expected());
            }
            return Ok(Self::from_socket(addr));
        }
        let (host, port) = rest.rsplit_once(':').ok_or_else(expected)?;
        let port: u16 = port.parse().map_err(|_| expected())?;
        let host_ok = !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_');
        if port == 0 || !host_ok {
            return Err(expected());
        }
        Ok(Self {
            host: host.to_owned(),
            port,
        })
    }
}

/// The options every command that talks to a node takes.
#[derive(clap::Args, Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeTarget {
    /// The node's HTTP address: HOST:PORT or http://HOST:PORT, as `foundation node` prints it.
    /// Default: a running node of the cluster on this machine (found through the local
    /// discovery directory), else the configured HTTP address when its port is fixed.
    #[arg(long, global = true, value_name = "HOST:PORT")]
    pub node: Option<NodeAddress>,
    /// Without --node: the cluster whose local node to use (env FOUNDATION_CLUSTER; default
    /// "foundation", as for `foundation node`).
    #[arg(long, global = true)]
    pub cluster: Option<String>,
    /// Without --node: the node's TOML configuration file (env FOUNDATION_CONFIG), read for
    /// the cluster name, a local discovery directory and a fixed HTTP address.
    #[arg(long = "config", global = true, value_name = "FILE")]
    pub config_file: Option<PathBuf>,
}

/// What the configuration says about where this user's nodes can be found.
#[derive(Debug)]
struct LocalView {
    cluster: ClusterName,
    /// Base directories of local discovery to look in (the cluster name is appended).
    bases: Vec<PathBuf>,
    /// The configured HTTP address, when its port is fixed.
    fixed_http: Option<SocketAddr>,
    /// Why the configuration could not be read fully, if it could not.
    config_error: Option<String>,
}

impl NodeTarget {
    /// The node's HTTP address: `--node`, else a local node of the cluster that accepts a
    /// connection (the longest running), else the configured fixed address. The error says what
    /// was tried and how to fix it.
    pub async fn resolve(&self) -> Result<SocketAddr, String> {
        self.resolve_with(false).await
    }

    /// As [`resolve`](Self::resolve), but without `--node` it refuses to choose among several
    /// running nodes of the cluster: for commands that change the node they reach (`leave`).
    pub async fn resolve_exactly_one(&self) -> Result<SocketAddr, String> {
        self.resolve_with(true).await
    }

    async fn resolve_with(&self, exactly_one: bool) -> Result<SocketAddr, String> {
        if let Some(node) = &self.node {
            return node.resolve().await;
        }
        let view = self.local_view()?;
        let mut found = Vec::new();
        let mut unlisted = Vec::new();
        for base in &view.bases {
            match running_nodes(base, &view.cluster) {
                Ok(nodes) => found.extend(nodes),
                Err(error) => unlisted.push(format!(
                    "cannot list {}: {error}",
                    base.join(view.cluster.as_str()).display()
                )),
            }
        }
        let with_http: Vec<&RunningNode> = found.iter().filter(|n| n.http.is_some()).collect();
        let mut answering: Vec<(&RunningNode, SocketAddr)> = Vec::new();
        for node in &with_http {
            let Some(http) = node.http.map(reachable_form) else {
                continue;
            };
            if accepts(http).await {
                answering.push((node, http));
                if !exactly_one {
                    break;
                }
            }
        }
        match answering.as_slice() {
            [(_, http)] => return Ok(*http),
            [(_, http), ..] if !exactly_one => return Ok(*http),
            [] => {}
            several => {
                let listed: Vec<String> = several
                    .iter()
                    .map(|(node, http)| format!("{} at {http}", node.id))
                    .collect();
                return Err(format!(
                    "{} nodes of cluster {:?} run on this machine ({}); say which with \
                     --node HOST:PORT",
                    several.len(),
                    view.cluster.as_str(),
                    listed.join(", ")
                ));
            }
        }
        if let Some(http) = view.fixed_http {
            return Ok(http);
        }
        Err(not_found(&view, &found, &with_http, &unlisted))
    }

    /// Where to look, as `foundation node` would decide it from the same sources. A file that
    /// cannot be read or parsed is an error: guessing the cluster without it could reach another
    /// cluster's node, and act on it.
    fn local_view(&self) -> Result<LocalView, String> {
        let env = Environment::from_process();
        match self.config_builder().build() {
            Ok(config) => Ok(LocalView::of(config, &env, None)),
            Err(error @ (ConfigError::Read { .. } | ConfigError::File { .. })) => {
                Err(error.to_string())
            }
            Err(error) => self.lenient_view(&env, error.to_string()),
        }
    }

    fn config_builder(&self) -> ConfigBuilder {
        let mut builder = NodeConfig::builder().process_env();
        if let Some(path) = &self.config_file {
            builder = builder.file(path);
        }
        if let Some(cluster) = &self.cluster {
            builder = builder.cluster(cluster.clone());
        }
        builder
    }

    /// The configuration is for starting a node: a client can still look for one when, say,
    /// production settings lack a secret it does not need. Read again under development's
    /// rules, the same sources still name the cluster and its discovery directories (the
    /// production default HTTP address, 127.0.0.1:7401, is not assumed). Failing that too, the
    /// cluster is what `--cluster` or `FOUNDATION_CLUSTER` says, else the default — unless a
    /// file names it: that file's cluster cannot be told, and another's must not be guessed.
    fn lenient_view(&self, env: &Environment, error: String) -> Result<LocalView, String> {
        let lenient = self.config_builder().profile(Profile::Development).build();
        if let Ok(config) = lenient {
            return Ok(LocalView::of(config, env, Some(error)));
        }
        let named = self
            .cluster
            .clone()
            .or_else(|| std::env::var("FOUNDATION_CLUSTER").ok());
        let file = self
            .config_file
            .clone()
            .or_else(|| std::env::var_os("FOUNDATION_CONFIG").map(PathBuf::from));
        let name = match (named, file) {
            (Some(name), _) => name,
            (None, Some(file)) => {
                return Err(format!(
                    "cannot tell the cluster from {}: {error}; name it with --cluster, or pass \
                     --node HOST:PORT",
                    file.display()
                ))
            }
            (None, None) => DEFAULT_CLUSTER.to_owned(),
        };
        let cluster = ClusterName::new(&name).map_err(|e| format!("--cluster: {e}"))?;
        Ok(LocalView {
            cluster,
            bases: vec![default_base_dir(env)],
            fixed_http: None,
            config_error: Some(error),
        })
    }
}

impl LocalView {
    fn of(config: NodeConfig, env: &Environment, config_error: Option<String>) -> Self {
        Self {
            bases: local_bases(&config.discovery, env),
            cluster: config.cluster,
            fixed_http: config.http.filter(|a| a.port() != 0).map(reachable_form),
            config_error,
        }
    }
}

/// Every local discovery base directory the configured strategies use; the default one when
/// none does (a node started with other settings may still advertise there).
fn local_bases(discovery: &[DiscoverySpec], env: &Environment) -> Vec<PathBuf> {
    let mut specs: Vec<DiscoverySpec> = Vec::new();
    for spec in discovery {
        match spec {
            DiscoverySpec::Auto => specs.extend(choose_auto(env).specs),
            other => specs.push(other.clone()),
        }
    }
    let mut bases: Vec<PathBuf> = specs
        .iter()
        .filter_map(|spec| match spec {
            DiscoverySpec::Local { dir } => {
                Some(dir.clone().unwrap_or_else(|| default_base_dir(env)))
            }
            _ => None,
        })
        .collect();
    let default = default_base_dir(env);
    if !bases.contains(&default) {
        bases.push(default);
    }
    bases.dedup();
    bases
}

/// A wildcard bind address is reached through loopback.
fn reachable_form(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), addr.port())
        }
        _ => addr,
    }
}

/// Whether something accepts TCP connections at `addr` (the advertisement may be of a node
/// that is shutting down).
async fn accepts(addr: SocketAddr) -> bool {
    matches!(
        tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect(addr)).await,
        Ok(Ok(_))
    )
}

/// The error when no node was found: what was looked at, and how to fix it.
fn not_found(
    view: &LocalView,
    found: &[RunningNode],
    with_http: &[&RunningNode],
    unlisted: &[String],
) -> String {
    let cluster = view.cluster.as_str();
    let dirs: Vec<String> = view
        .bases
        .iter()
        .map(|b| b.join(cluster).display().to_string())
        .collect();
    let what = if !with_http.is_empty() {
        let addrs: Vec<String> = with_http
            .iter()
            .filter_map(|n| n.http.map(|a| a.to_string()))
            .collect();
        format!(
            "found {} node(s) of cluster {cluster:?} on this machine, but none accepts \
             connections on its HTTP address ({})",
            with_http.len(),
            addrs.join(", ")
        )
    } else if !found.is_empty() {
        format!(
            "found {} node(s) of cluster {cluster:?} on this machine, but none serves HTTP \
             (started with http off, or by an older version)",
            found.len()
        )
    } else {
        format!(
            "no running node of cluster {cluster:?} found on this machine (looked in {})",
            dirs.join(", ")
        )
    };
    let mut message = what;
    for problem in unlisted {
        message.push_str("; ");
        message.push_str(problem);
    }
    if let Some(error) = &view.config_error {
        message.push_str(&format!("; the configuration could not be read ({error})"));
    }
    message.push_str(&format!(
        "; start one with `foundation node --cluster {cluster}`, choose another cluster with \
         --cluster, or pass --node HOST:PORT (the http address a node prints at start)"
    ));
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<NodeAddress, String> {
        text.parse()
    }

    #[test]
    fn addresses_parse_with_or_without_the_scheme() {
        let plain = parse("127.0.0.1:7401").expect("host:port");
        assert_eq!(plain.to_string(), "127.0.0.1:7401");
        assert_eq!(parse("http://127.0.0.1:7401").unwrap(), plain);
        assert_eq!(parse("http://127.0.0.1:7401/").unwrap(), plain);
        assert_eq!(parse("HTTP://127.0.0.1:7401").unwrap(), plain);
        assert_eq!(parse(" 127.0.0.1:7401 ").unwrap(), plain);
        assert_eq!(
            parse("localhost:9000").unwrap().to_string(),
            "localhost:9000"
        );
        assert_eq!(
            parse("http://[::1]:7401/").unwrap().to_string(),
            "[::1]:7401"
        );
    }

    #[test]
    fn bad_addresses_say_what_is_expected() {
        for bad in [
            "",
            "7401",
            "127.0.0.1",
            "127.0.0.1:",
            ":7401",
            "127.0.0.1:0",
            "127.0.0.1:99999",
            "host name:80",
            "ftp://127.0.0.1:7401",
        ] {
            let error = parse(bad).expect_err(bad);
            assert!(error.contains("HOST:PORT"), "{bad:?}: {error}");
        }
        assert!(parse("https://127.0.0.1:7401")
            .unwrap_err()
            .contains("plain HTTP"));
        assert!(parse("http://127.0.0.1:7401/members")
            .unwrap_err()
            .contains("without a path"));
    }

    #[tokio::test]
    async fn ip_addresses_resolve_to_themselves() {
        let addr = parse("http://127.0.0.1:7401/").unwrap().resolve().await;
        assert_eq!(addr, Ok("127.0.0.1:7401".parse().unwrap()));
    }

    #[test]
    fn wildcard_binds_are_reached_through_loopback() {
        assert_eq!(
            reachable_form("0.0.0.0:7401".parse().unwrap()),
            "127.0.0.1:7401".parse().unwrap()
        );
        assert_eq!(
            reachable_form("[::]:7401".parse().unwrap()),
            "[::1]:7401".parse().unwrap()
        );
        assert_eq!(
            reachable_form("10.0.0.1:7401".parse().unwrap()),
            "10.0.0.1:7401".parse().unwrap()
        );
    }

    #[test]
    fn the_default_directory_is_always_searched() {
        let env = Environment {
            xdg_runtime_dir: Some("/run/user/1".into()),
            ..Environment::default()
        };
        let custom = DiscoverySpec::Local {
            dir: Some("/srv/foundation".into()),
        };
        assert_eq!(
            local_bases(&[custom], &env),
            vec![
                PathBuf::from("/srv/foundation"),
                PathBuf::from("/run/user/1/foundation")
            ]
        );
        assert_eq!(
            local_bases(&[DiscoverySpec::Auto], &env),
            vec![PathBuf::from("/run/user/1/foundation")]
        );
    }
}
