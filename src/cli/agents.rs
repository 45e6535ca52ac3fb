//! `foundation agents`: the MABEAM agents a running node sees anywhere in the cluster, over its
//! HTTP API (`GET /agents`); `foundation agents sessions`: the coordination sessions it
//! coordinated (`GET /agents/sessions`).

use crate::cli::{out, say};
use std::time::Duration;

use serde_json::Value;

use super::target::NodeTarget;

/// Options of `foundation agents`.
#[derive(clap::Args, Debug)]
#[command(after_help = "\
Examples:
  foundation agents                        every agent a node on this machine sees
  foundation agents --capability bidder    only agents that can bid
  foundation agents --json
  foundation agents sessions               sessions the node coordinated: mechanism, state, outcome")]
pub struct AgentsArgs {
    /// Which node to ask.
    #[command(flatten)]
    pub target: NodeTarget,
    /// What to show instead of the agents.
    #[command(subcommand)]
    pub command: Option<AgentsCommand>,
    /// Only agents with this capability.
    #[arg(long)]
    pub capability: Option<String>,
    /// Print the raw JSON.
    #[arg(long)]
    pub json: bool,
}

/// `foundation agents` subcommands.
#[derive(clap::Subcommand, Debug, PartialEq)]
pub enum AgentsCommand {
    /// The coordination sessions (auctions, votes, Contract Net, …) the node coordinated:
    /// running ones and the most recent that ended, with their mechanism, state and outcome.
    Sessions {
        /// Print the raw JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Fetches `/agents` (or `/agents/sessions`) and prints it.
pub async fn run(args: AgentsArgs) -> Result<(), Box<dyn std::error::Error>> {
    let node = args.target.resolve().await?;
    if let Some(AgentsCommand::Sessions { json }) = args.command {
        return sessions(node, json || args.json).await;
    }
    let answer = fetch(node, "/agents").await?;
    let mut agents = answer["agents"].as_array().cloned().unwrap_or_default();
    if let Some(capability) = &args.capability {
        agents.retain(|a| has_capability(a, capability));
    }
    if args.json {
        out!("{}", serde_json::to_string_pretty(&agents)?);
        return Ok(());
    }
    out!(
        "{:<24} {:<10} {:<22} {:<10} {:<10} CAPABILITIES",
        "AGENT",
        "NODE",
        "ADDRESS",
        "STATE",
        "HEALTH"
    );
    for agent in &agents {
        let node = agent["node"].as_str().unwrap_or_default();
        let local = if agent["local"] == true {
            " (here)"
        } else {
            ""
        };
        // A reason, when the agent gave one, follows the capabilities.
        let reason = agent["health_reason"]
            .as_str()
            .map_or_else(String::new, |r| format!(" — {r}"));
        say!(
            "{:<24} {:<10} {:<22} {:<10} {:<10} {}{local}{reason}",
            agent["name"].as_str().unwrap_or_default(),
            node.get(..8).unwrap_or(node),
            agent["addr"].as_str().unwrap_or_default(),
            agent["state"].as_str().unwrap_or_default(),
            agent["health"].as_str().unwrap_or("healthy"),
            capabilities(agent).join(","),
        );
    }
    if agents.is_empty() {
        out!("(no agents)");
    }
    Ok(())
}

async fn fetch(node: std::net::SocketAddr, path: &str) -> Result<Value, String> {
    foundation_engine::http::get_json(node, path, Duration::from_secs(3))
        .await
        .map_err(|e| format!("cannot reach the node at {node}: {e}"))
}

/// Prints `/agents/sessions`: one line per session, oldest first.
async fn sessions(
    node: std::net::SocketAddr,
    json: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    let answer = fetch(node, "/agents/sessions").await?;
    let sessions = answer["sessions"].as_array().cloned().unwrap_or_default();
    if json {
        out!("{}", serde_json::to_string_pretty(&sessions)?);
        return Ok(());
    }
    out!(
        "{:<10} {:<13} {:<26} {:<18} {:<10} {:<7} OUTCOME",
        "SESSION",
        "MECHANISM",
        "SUBJECT",
        "STATE",
        "ANSWERED",
        "ROUNDS"
    );
    for s in &sessions {
        let text = |key: &str| s[key].as_str().unwrap_or_default().to_owned();
        let number = |key: &str| s[key].as_u64().map_or_else(String::new, |n| n.to_string());
        let answered = match s["answered"].as_u64() {
            Some(n) => format!("{n}/{}", number("participants")),
            None => format!("-/{}", number("participants")),
        };
        let commit = s["commit"]
            .as_str()
            .map_or_else(String::new, |c| format!(" [{c}]"));
        say!(
            "{:<10} {:<13} {:<26} {:<18} {:<10} {:<7} {}{commit}",
            number("session"),
            text("mechanism"),
            text("subject"),
            text("state"),
            answered,
            number("rounds"),
            text("outcome"),
        );
    }
    if sessions.is_empty() {
        out!("(no sessions coordinated by this node)");
    }
    Ok(())
}

fn capabilities(agent: &Value) -> Vec<&str> {
    let listed = agent["capabilities"].as_array().into_iter().flatten();
    listed.filter_map(Value::as_str).collect()
}

fn has_capability(agent: &Value, capability: &str) -> bool {
    capabilities(agent).contains(&capability)
}
