//! `foundation node`: start a node, print who it is and how it finds peers, log membership
//! changes with timestamps, and leave gracefully on SIGTERM or SIGINT (a second signal exits at
//! once).

use std::net::SocketAddr;

/// Prints a line; a closed stdout (the operator piped us into something that exited) must not
/// take the node down.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}
use std::path::PathBuf;

use foundation_engine::config::{NodeConfig, Profile, StorageMode};
use foundation_engine::discovery::{choose_auto, default_base_dir, DiscoverySpec, Environment};
use foundation_engine::membership::MembershipEvent;
use foundation_engine::runtime::Node;

use super::open_secret::OpenSecretWarning;
use super::signals::Signals;

/// Options of `foundation node`; anything not given comes from the environment, the file or
/// the profile's defaults.
#[derive(clap::Args, Debug, Default)]
#[command(after_help = "\
Examples:
  foundation node                                   zero config: joins the nodes of cluster
                                                    \"foundation\" on this machine
  foundation node --cluster orders --name api-1
  foundation node --data-dir /var/lib/foundation    keep keyspaces and the node id on disk
  FOUNDATION_NODE_ID=5f0e… foundation node           the same member across restarts
  FOUNDATION_LOG=info foundation node 2>node.log    more logs, into a file (no colour codes)

Stopping: SIGTERM or Ctrl-C (SIGINT) makes the node leave gracefully (peers record it as left)
and exit; a second signal exits at once. `foundation leave` does the same from another terminal.")]
pub struct NodeArgs {
    /// Cluster name (env FOUNDATION_CLUSTER; default "foundation").
    #[arg(long)]
    pub cluster: Option<String>,
    /// TOML configuration file (env FOUNDATION_CONFIG).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// development (zero config) or production (explicit discovery and secret required).
    #[arg(long)]
    pub profile: Option<Profile>,
    /// Seed address host:port; repeat for several (env FOUNDATION_SEEDS).
    #[arg(long = "seed")]
    pub seeds: Vec<String>,
    /// UDP address for QUIC (env FOUNDATION_BIND).
    #[arg(long)]
    pub bind: Option<SocketAddr>,
    /// HTTP address for /metrics, /health, /members (env FOUNDATION_HTTP).
    #[arg(long)]
    pub http: Option<SocketAddr>,
    /// A human-friendly node name (env FOUNDATION_NAME).
    #[arg(long)]
    pub name: Option<String>,
    /// Data directory: durable state in DATA_DIR/store, the node's id in DATA_DIR/node-id (env
    /// FOUNDATION_DATA_DIR; FOUNDATION_NODE_ID overrides the id). Required in production unless
    /// --storage memory.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// memory, or disk in the data directory (env FOUNDATION_STORAGE; default disk when a
    /// data directory is given).
    #[arg(long)]
    pub storage: Option<StorageMode>,
    /// Also serve a service of this name that answers each request with the request itself:
    /// a smoke test for RPC across the cluster (`foundation call NAME hello`), as `nats reply`
    /// is for NATS.
    #[arg(long, value_name = "NAME")]
    pub echo_service: Option<String>,
}

impl NodeArgs {
    /// The configuration these arguments, the environment and the file describe.
    pub fn config(&self) -> Result<NodeConfig, foundation_engine::config::ConfigError> {
        let mut builder = NodeConfig::builder().process_env();
        if let Some(path) = &self.config {
            builder = builder.file(path);
        }
        if let Some(cluster) = &self.cluster {
            builder = builder.cluster(cluster.clone());
        }
        if let Some(profile) = self.profile {
            builder = builder.profile(profile);
        }
        if !self.seeds.is_empty() {
            builder = builder.seeds(self.seeds.clone());
        }
        if let Some(bind) = self.bind {
            builder = builder.bind(bind);
        }
        if let Some(http) = self.http {
            builder = builder.http(Some(http));
        }
        if let Some(name) = &self.name {
            builder = builder.name(name.clone());
        }
        if let Some(dir) = &self.data_dir {
            builder = builder.data_dir(dir.clone());
        }
        if let Some(storage) = self.storage {
            builder = builder.storage(storage);
        }
        builder.build()
    }
}

/// Runs a node until SIGTERM or SIGINT, then leaves gracefully; a second signal during the
/// leave exits at once.
pub async fn run(args: NodeArgs) -> Result<(), Box<dyn std::error::Error>> {
    // Installed first and once: a signal that arrives while the node starts, or while a line is
    // printed, waits in the stream instead of being lost.
    let mut signals = Signals::install()?;
    let config = args.config()?;
    for warning in config.warnings() {
        eprintln!("{} WARNING: {warning}", timestamp());
    }
    let node = Node::start_configured(&config).await?;
    print_identity(&node, &config);
    if let Some(name) = &args.echo_service {
        serve_echo(&node, name).await?;
    }
    let mut events = node.membership_events();
    let mut open_secret = OpenSecretWarning::new(config.security.is_development());
    let signal = loop {
        tokio::select! {
            event = events.recv() => match event {
                Ok(event) => {
                    print_event(&event);
                    if let MembershipEvent::Up(member) = &event {
                        let cluster = config.cluster.as_str();
                        if let Some(warning) = open_secret.check(cluster, member.addr.ip()) {
                            say!("{} WARNING: {warning}", timestamp());
                            tracing::warn!("{warning}");
                        }
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    say!("{} ({n} membership events skipped)", timestamp())
                }
                Err(_) => break None,
            },
            signal = signals.recv() => break Some(signal),
            // An operator's `foundation leave` (POST /leave) already did the leaving.
            () = node.stopped() => break None,
        }
    };
    match signal {
        Some(signal) => say!(
            "{} {signal}: leaving the cluster (send another signal to exit at once)",
            timestamp()
        ),
        None => say!("{} the node has stopped; closing", timestamp()),
    }
    tokio::select! {
        () = node.leave() => {}
        signal = signals.recv() => {
            say!("{} {signal} again: exiting without finishing the leave", timestamp());
            std::process::exit(signal.exit_code());
        }
    }
    say!("{} left", timestamp());
    Ok(())
}

/// Now, as RFC 3339 UTC with microseconds (the same clock and format as the log lines).
pub fn timestamp() -> String {
    use tracing_subscriber::fmt::format::Writer;
    use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
    let mut text = String::new();
    if SystemTime.format_time(&mut Writer::new(&mut text)).is_err() {
        text.clear();
        text.push('-');
    }
    text
}

/// Registers `name`, answered by the request's own body.
async fn serve_echo(node: &Node, name: &str) -> Result<(), Box<dyn std::error::Error>> {
    use foundation_engine::runtime::services::{Call, HandlerError, ServiceOptions};
    let echo = |call: Call| async move { Ok::<_, HandlerError>(call.body) };
    node.services()
        .register(name, echo, ServiceOptions::default())
        .await
        .map_err(|e| format!("--echo-service {name}: {e}"))?;
    say!("echo     service {name:?} answers every call with its request");
    Ok(())
}

fn print_identity(node: &Node, config: &NodeConfig) {
    say!("node     {}", node.id());
    say!("cluster  {} ({} profile)", node.cluster(), config.profile);
    say!("quic     {}", node.addr());
    match (&config.data_dir, config.storage) {
        (Some(dir), StorageMode::Disk) => {
            say!("storage  disk in {} (sync {})", dir.display(), config.sync)
        }
        _ => say!("storage  memory (lost when the node stops)"),
    }
    for (i, line) in discovery_lines(config, &Environment::from_process())
        .iter()
        .enumerate()
    {
        say!("{} {line}", if i == 0 { "discover" } else { "        " });
    }
    match node.http_addr() {
        Some(http) => {
            say!("http     http://{http}/ (metrics, health, members)");
            say!("members  foundation members --node {http}");
        }
        None => say!("http     off"),
    }
}

/// How the node finds peers, one line per strategy: what it does, and for `auto` what it chose
/// and why.
pub fn discovery_lines(config: &NodeConfig, env: &Environment) -> Vec<String> {
    let mut lines = Vec::new();
    for spec in &config.discovery {
        if *spec == DiscoverySpec::Auto {
            let choice = choose_auto(env);
            lines.push(format!("auto: {}", choice.reason));
            for chosen in choice.specs.iter().filter(|s| **s != DiscoverySpec::Auto) {
                lines.push(format!("  {}", describe_strategy(chosen, config, env)));
            }
        } else {
            lines.push(format!(
                "{} (configured)",
                describe_strategy(spec, config, env)
            ));
        }
    }
    if lines.is_empty() {
        lines.push("none: this node joins only when a peer joins it".to_owned());
    }
    lines
}

fn describe_strategy(spec: &DiscoverySpec, config: &NodeConfig, env: &Environment) -> String {
    match spec {
        DiscoverySpec::Static { seeds } => format!("static: seeds {}", seeds.join(", ")),
        DiscoverySpec::Local { dir } => {
            let base = dir.clone().unwrap_or_else(|| default_base_dir(env));
            format!(
                "local: this user's nodes on this machine, through {}",
                base.join(config.cluster.as_str()).display()
            )
        }
        DiscoverySpec::Mdns => match env.mdns_interfaces() {
            interfaces if interfaces.is_empty() => {
                "mdns: the local network, every interface".to_owned()
            }
            interfaces => format!("mdns: the local network on {}", interfaces.join(", ")),
        },
        DiscoverySpec::Dns {
            name, port, srv, ..
        } => match (srv, port) {
            (true, _) => format!("dns: SRV records of {name}"),
            (false, 0) => format!("dns: {name}, peers on this node's port"),
            (false, port) => format!("dns: {name}, peers on port {port}"),
        },
        DiscoverySpec::Auto => "auto".to_owned(),
    }
}

fn print_event(event: &MembershipEvent) {
    let describe = |m: &foundation_engine::membership::MemberView| {
        let name = m
            .metadata
            .as_ref()
            .and_then(|d| d.name.clone())
            .unwrap_or_default();
        // A peer names itself: its name must not rewrite the terminal or split the line.
        format!("{} {} {}", m.id.short(), m.addr, super::printable(&name))
    };
    let now = timestamp();
    match event {
        MembershipEvent::Up(m) => say!("{now} up       {}", describe(m)),
        MembershipEvent::Updated(m) => say!("{now} updated  {}", describe(m)),
        MembershipEvent::Failed(m) => say!("{now} FAILED   {}", describe(m)),
        MembershipEvent::Left(m) => say!("{now} left     {}", describe(m)),
        MembershipEvent::Removed(m) => say!("{now} removed  {}", describe(m)),
        MembershipEvent::Joined => say!("{now} joined the cluster"),
        MembershipEvent::Isolated => say!("{now} isolated: no live peers"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_discovery_prints_what_it_chose_and_why() {
        let config = NodeConfig::defaults(Profile::Development);
        assert_eq!(config.discovery, vec![DiscoverySpec::Auto]);
        let laptop = Environment {
            xdg_runtime_dir: Some("/run/user/7".into()),
            ..Environment::default()
        };
        let lines = discovery_lines(&config, &laptop);
        assert!(
            lines[0].starts_with("auto: auto discovery chose local + mdns")
                && lines[0].contains("KUBERNETES_SERVICE_HOST unset"),
            "{lines:?}"
        );
        assert_eq!(
            lines[1..],
            [
                "  local: this user's nodes on this machine, through /run/user/7/foundation/foundation"
                    .to_owned(),
                "  mdns: the local network, every interface".to_owned(),
            ]
        );
        let seeded = Environment {
            seeds: vec!["10.0.0.1:7400".into()],
            ..Environment::default()
        };
        let lines = discovery_lines(&config, &seeded);
        assert!(lines[0].contains("chose static seeds"), "{lines:?}");
        assert_eq!(lines[1], "  static: seeds 10.0.0.1:7400");
    }

    #[test]
    fn configured_discovery_says_so() {
        let mut config = NodeConfig::defaults(Profile::Development);
        config.discovery = vec![
            DiscoverySpec::Static {
                seeds: vec!["a:1".into(), "b:2".into()],
            },
            DiscoverySpec::Local {
                dir: Some("/srv/f".into()),
            },
        ];
        assert_eq!(
            discovery_lines(&config, &Environment::default()),
            [
                "static: seeds a:1, b:2 (configured)",
                "local: this user's nodes on this machine, through /srv/f/foundation (configured)",
            ]
        );
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let now = timestamp();
        assert_eq!(now.len(), "2026-01-02T03:04:05.678901Z".len(), "{now}");
        assert!(now.ends_with('Z') && now.as_bytes()[10] == b'T', "{now}");
    }
}
