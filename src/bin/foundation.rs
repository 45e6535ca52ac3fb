//! The `foundation` command.

use clap::{Parser, Subcommand};
use foundation::cli::{
    config::ConfigArgs, leave::LeaveArgs, members::MembersArgs, node::NodeArgs,
    services::ServicesArgs, sim::SimCommand,
};

#[derive(Parser)]
#[command(
    name = "foundation",
    version,
    about = "Foundation: a cluster engine for services and agents"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start a local five-node cluster in this process and watch it form, lose a node and
    /// see another leave.
    Demo,
    /// Two QUIC endpoints on loopback exchange traffic on every channel; a third with the wrong
    /// secret is refused.
    TransportDemo,
    /// Run a node (zero config in development: finds nodes of its cluster on this machine).
    Node(NodeArgs),
    /// Show the members table of a running node.
    Members(MembersArgs),
    /// Show the service instances a running node sees.
    Services(ServicesArgs),
    /// Read, change or watch the cluster-wide config through a running node.
    Config(ConfigArgs),
    /// Make a running node leave the cluster gracefully (its peers record it as left).
    Leave(LeaveArgs),
    /// Simulate a cluster running the real engine on a virtual clock and a faulty network.
    Sim(SimCommand),
}

fn main() {
    let cli = Cli::parse();
    // The demos narrate for themselves; a node logs what its operator needs to see.
    let quiet = matches!(
        cli.command,
        Command::Demo | Command::TransportDemo | Command::Sim(_)
    );
    let default_level = if quiet { "error" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("FOUNDATION_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour_on_stderr())
        .init();
    let command = match cli.command {
        Command::Sim(sim) => std::process::exit(foundation::cli::sim::run(sim)),
        other => other,
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => fail(&format!("cannot start the async runtime: {error}")),
    };
    let result = runtime.block_on(async {
        match command {
            Command::Sim(_) => Ok(()),
            Command::Demo => foundation::demo::cluster().await,
            Command::TransportDemo => foundation::demo::transport().await,
            Command::Node(args) => foundation::cli::node::run(args).await,
            Command::Members(args) => foundation::cli::members::run(args).await,
            Command::Services(args) => foundation::cli::services::run(args).await,
            Command::Config(args) => foundation::cli::config::run(args).await,
            Command::Leave(args) => foundation::cli::leave::run(args).await,
        }
    });
    if let Err(error) = result {
        fail(&error.to_string());
    }
}

/// Colour only for a person at a terminal: never into a file or a pipe, and never when
/// `NO_COLOR` is set (<https://no-color.org>).
fn colour_on_stderr() -> bool {
    use std::io::IsTerminal;
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    !no_color && std::io::stderr().is_terminal()
}

fn fail(message: &str) -> ! {
    eprintln!("foundation: {message}");
    std::process::exit(1);
}
