//! `foundation vars get|declare|set`: variables agents coordinate on, through a running node's
//! HTTP API (`GET /variables[/{name}]`, `PUT` and `POST /variables/{name}`).

use std::time::Duration;

use foundation_engine::http::{get_json, percent_encode, send_json, HttpError, Method};
use serde_json::{json, Value};

use super::act::refusal;
use super::config::parse_value;
use super::target::NodeTarget;

/// Longest one exchange may take beyond the write's own timeout.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

/// Options of `foundation vars`.
#[derive(clap::Args, Debug)]
#[command(after_help = "\
Examples:
  foundation vars get                                    every variable: version, value, type
  foundation vars get gpu.slots
  foundation vars declare gpu.slots --type '{\"int\": [0, 8]}' --initial 8
  foundation vars declare mode --type '{\"choice\": [\"fast\", \"safe\"]}' --initial '\"safe\"'
  foundation vars set gpu.slots 7 --expected 0           wins only if still at version 0

A declared variable is decided by a majority of its acceptors (this node and every member alive
when it was declared): `set` replaces the version it expects, or says who got there first.")]
pub struct VarsArgs {
    /// Which node to ask.
    #[command(flatten)]
    pub target: NodeTarget,
    /// What to do.
    #[command(subcommand)]
    pub command: VarsCommand,
}

/// `foundation vars` subcommands.
#[derive(clap::Subcommand, Debug, PartialEq)]
pub enum VarsCommand {
    /// Print one variable, or every variable the node holds (as JSON).
    Get {
        /// The variable; all when absent.
        name: Option<String>,
    },
    /// Declare a compare-and-set variable cluster-wide.
    Declare {
        /// The variable.
        name: String,
        /// Its type as JSON: {"int": [MIN, MAX]}, {"float": [MIN, MAX]}, {"choice": [..]},
        /// "bool", or {"record": {"FIELD": TYPE, ..}}.
        #[arg(long = "type", value_name = "JSON")]
        ty: String,
        /// Its value at version 0, as JSON.
        #[arg(long, value_name = "JSON")]
        initial: String,
    },
    /// Replace version --expected of a variable with a value (JSON), if a majority agrees.
    Set {
        /// The variable.
        name: String,
        /// The new value, as JSON.
        value: String,
        /// The version to replace (see `get`).
        #[arg(long)]
        expected: u64,
        /// Longest wait for a majority, in milliseconds.
        #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..=60_000))]
        timeout_ms: u64,
    },
}

/// Runs the subcommand against the node.
pub async fn run(args: VarsArgs) -> Result<(), Box<dyn std::error::Error>> {
    let node = args.target.resolve().await?;
    let (method, path, body, timeout) = match args.command {
        VarsCommand::Get { name: None } => {
            (Method::GET, "/variables".into(), None, REQUEST_TIMEOUT)
        }
        VarsCommand::Get { name: Some(name) } => (Method::GET, path(&name), None, REQUEST_TIMEOUT),
        VarsCommand::Declare { name, ty, initial } => {
            let ty: Value = serde_json::from_str(&ty).map_err(|e| format!("--type: {e}"))?;
            let body = json!({ "type": ty, "initial": parse_value(&initial) });
            (Method::PUT, path(&name), Some(body), REQUEST_TIMEOUT)
        }
        VarsCommand::Set {
            name,
            value,
            expected,
            timeout_ms,
        } => {
            let body = json!({ "expected": expected, "value": parse_value(&value), "timeout_ms": timeout_ms });
            let timeout = REQUEST_TIMEOUT + Duration::from_millis(timeout_ms);
            (Method::POST, path(&name), Some(body), timeout)
        }
    };
    let answer = match method {
        Method::GET => get_json(node, &path, timeout).await,
        _ => send_json(node, method, &path, body.as_ref(), timeout).await,
    };
    match answer {
        Ok(value) => {
            println!("{}", serde_json::to_string_pretty(&value)?);
            Ok(())
        }
        Err(HttpError::Status { status, body, .. }) => Err(refusal(status, &body).into()),
        Err(error) => Err(format!("node at {node}: {error}").into()),
    }
}

fn path(name: &str) -> String {
    format!("/variables/{}", percent_encode(name))
}
