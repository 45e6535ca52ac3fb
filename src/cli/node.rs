//! `foundation node`: start a node, print who it is, log membership changes, leave on Ctrl-C.

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
use foundation_engine::membership::MembershipEvent;
use foundation_engine::runtime::{Node, NodeSettings};

/// Options of `foundation node`; anything not given comes from the environment, the file or
/// the profile's defaults.
#[derive(clap::Args, Debug, Default)]
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
    /// Data directory: durable state in <dir>/store, the node's identity in <dir>/node-id
    /// (env FOUNDATION_DATA_DIR). Required in production unless --storage memory.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// memory, or disk in the data directory (env FOUNDATION_STORAGE; default disk when a
    /// data directory is given).
    #[arg(long)]
    pub storage: Option<StorageMode>,
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

/// Runs a node until Ctrl-C, then leaves gracefully.
pub async fn run(args: NodeArgs) -> Result<(), Box<dyn std::error::Error>> {
    let config = args.config()?;
    for warning in config.warnings() {
        eprintln!("WARNING: {warning}");
    }
    let node = Node::start(NodeSettings::from_config(&config)?).await?;
    print_identity(&node, &config);
    let mut events = node.membership_events();
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Ok(event) => print_event(&event),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => say!("({n} membership events skipped)"),
                Err(_) => break,
            },
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    say!("leaving the cluster…");
    node.leave().await;
    say!("left");
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
    let kinds: Vec<_> = config.discovery.iter().map(|d| d.kind()).collect();
    say!("discover {}", kinds.join(", "));
    match node.http_addr() {
        Some(http) => {
            say!("http     http://{http}/ (metrics, health, members)");
            say!("members  foundation members --node {http}");
        }
        None => say!("http     off"),
    }
}

fn print_event(event: &MembershipEvent) {
    let describe = |m: &foundation_engine::membership::MemberView| {
        let name = m
            .metadata
            .as_ref()
            .and_then(|d| d.name.clone())
            .unwrap_or_default();
        format!("{} {} {}", m.id.short(), m.addr, name)
    };
    match event {
        MembershipEvent::Up(m) => say!("up       {}", describe(m)),
        MembershipEvent::Updated(m) => say!("updated  {}", describe(m)),
        MembershipEvent::Failed(m) => say!("FAILED   {}", describe(m)),
        MembershipEvent::Left(m) => say!("left     {}", describe(m)),
        MembershipEvent::Joined => say!("joined the cluster"),
        MembershipEvent::Isolated => say!("isolated: no live peers"),
    }
}
