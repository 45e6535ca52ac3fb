//! The `foundation` command.

use clap::{Parser, Subcommand};

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
    /// Two endpoints on loopback exchange traffic on every channel; a third with the wrong
    /// secret is refused.
    Demo,
}

fn main() {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt().with_env_filter(filter).init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => fail(&format!("cannot start the async runtime: {error}")),
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Demo => foundation::demo::run().await,
        }
    });
    if let Err(error) = result {
        fail(&error.to_string());
    }
}

fn fail(message: &str) -> ! {
    eprintln!("foundation: {message}");
    std::process::exit(1);
}
