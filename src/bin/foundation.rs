//! The `foundation` command.

use clap::{CommandFactory, Parser, Subcommand};
use foundation::cli::{
    config::ConfigArgs, leave::LeaveArgs, members::MembersArgs, node::NodeArgs,
    services::ServicesArgs, sim::SimCommand,
};

const EXAMPLES: &str = "\
Examples:
  foundation node                            start a node; zero config: it joins the nodes of
                                             cluster \"foundation\" on this machine
  foundation node --cluster orders --name api-1
  foundation members                         the members of a node running on this machine
  foundation members --node 127.0.0.1:7401   ... of the node serving HTTP there
  foundation config set checkout.enabled true
  foundation vars set gpu.slots 7 --expected 0  compare-and-set, decided by a majority
  foundation snapshot save backup.fsnap      config and the other replicated keyspaces to a file
  foundation snapshot restore backup.fsnap   merge them back (newer values on the cluster win)
  foundation leave                           make the local node leave gracefully
  foundation force-leave ID                  remove a failed member from every table now
  foundation publish orders.eu.created 'order 17'
  foundation subscribe 'orders.>'            print messages until Ctrl-C
  foundation call greeter world --timeout 500ms
  foundation register postgres --addr 10.0.0.5:5432 --tag role=primary
  foundation monitor                         members, config and services as they change
  foundation sim --scenario partition-heal --nodes 100 --seed 7
  foundation sim --scenario crash-restart --seeds 1..40 --html report.html
                                             pictures: each node's view, detection, bytes

Commands that talk to a node find one of their cluster (--cluster, FOUNDATION_CLUSTER, else
\"foundation\") on this machine; --node HOST:PORT or http://HOST:PORT names one anywhere.

Environment: FOUNDATION_LOG sets the log filter (error, warn [default], info, debug, trace, or
per module: foundation_engine=debug); logs go to stderr with UTC timestamps, in colour only on a
terminal (NO_COLOR turns it off). FOUNDATION_CLUSTER, FOUNDATION_NODE_ID, FOUNDATION_CONFIG and
the other FOUNDATION_* settings are described in the README.";

#[derive(Parser)]
#[command(
    name = "foundation",
    version,
    about = "Foundation: a cluster engine for services and agents",
    after_help = EXAMPLES
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
    /// Check that this node's configuration and host are ready for production (OK/WARN/FAIL).
    Check(foundation::cli::check::CheckArgs),
    /// Show the members table of a running node.
    Members(MembersArgs),
    /// Show the service instances a running node sees.
    Services(ServicesArgs),
    /// Read, change or watch the cluster-wide config through a running node.
    Config(ConfigArgs),
    /// Save the replicated keyspaces to a file, or merge a saved file back into the cluster.
    Snapshot(foundation::cli::snapshot::SnapshotArgs),
    /// Make a running node leave the cluster gracefully (its peers record it as left).
    Leave(LeaveArgs),
    /// Remove a failed member from the members table of every node now.
    ForceLeave(foundation::cli::force_leave::ForceLeaveArgs),
    /// Publish a message on a topic through a running node.
    Publish(foundation::cli::pubsub::PublishArgs),
    /// Print the messages of a topic pattern as they arrive, until Ctrl-C.
    Subscribe(foundation::cli::pubsub::SubscribeArgs),
    /// Call a service by RPC through a running node and print its answer.
    Call(foundation::cli::call::CallArgs),
    /// Register an endpoint outside Foundation (URL or HOST:PORT) in the cluster's registry.
    Register(foundation::cli::register::RegisterArgs),
    /// Remove endpoints registered with `foundation register`.
    Deregister(foundation::cli::register::DeregisterArgs),
    /// Print a node's events (members, config, services) as they happen, until Ctrl-C.
    Monitor(foundation::cli::monitor::MonitorArgs),
    /// Show the MABEAM agents a running node sees anywhere in the cluster.
    Agents(foundation::cli::agents::AgentsArgs),
    /// Singletons and shards a node declared: owners, and what runs there.
    Placement(foundation::cli::placement::PlacementArgs),
    /// A gateway's links to other clusters and the services they export.
    Federation(foundation::cli::federation::FederationArgs),
    /// Declare, read and compare-and-set variables through a running node.
    Vars(foundation::cli::vars::VarsArgs),
    /// Simulate a cluster running the real engine on a virtual clock and a faulty network.
    Sim(SimCommand),
}

fn main() {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let cli = match Cli::try_parse_from(&argv) {
        Ok(cli) => cli,
        Err(error) => {
            let words: Vec<String> = argv
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect();
            foundation::cli::suggest::with_suggestion(error, &Cli::command(), &words).exit()
        }
    };
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
            Command::Check(args) => foundation::cli::check::run(args).await,
            Command::Members(args) => foundation::cli::members::run(args).await,
            Command::Services(args) => foundation::cli::services::run(args).await,
            Command::Config(args) => foundation::cli::config::run(args).await,
            Command::Snapshot(args) => foundation::cli::snapshot::run(args).await,
            Command::Leave(args) => foundation::cli::leave::run(args).await,
            Command::Vars(args) => foundation::cli::vars::run(args).await,
            Command::Agents(args) => foundation::cli::agents::run(args).await,
            Command::ForceLeave(args) => foundation::cli::force_leave::run(args).await,
            Command::Publish(args) => foundation::cli::pubsub::publish(args).await,
            Command::Subscribe(args) => foundation::cli::pubsub::subscribe(args).await,
            Command::Call(args) => foundation::cli::call::run(args).await,
            Command::Register(args) => foundation::cli::register::register(args).await,
            Command::Deregister(args) => foundation::cli::register::deregister(args).await,
            Command::Monitor(args) => foundation::cli::monitor::run(args).await,
            Command::Placement(args) => foundation::cli::placement::run(args).await,
            Command::Federation(args) => foundation::cli::federation::run(args).await,
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

/// Ends the command with `message` on stderr and status 1. The message may carry a node's text
/// (a refusal's reason, a name): shown escaped, it cannot rewrite the operator's terminal.
fn fail(message: &str) -> ! {
    use std::io::Write;
    let message = foundation::cli::printable(message);
    let _ = writeln!(std::io::stderr(), "foundation: {message}");
    std::process::exit(1);
}
