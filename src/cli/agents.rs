//! `foundation agents`: the MABEAM agents a running node sees anywhere in the cluster, over its
//! HTTP API (`GET /agents`).

use std::time::Duration;

use serde_json::Value;

use super::target::NodeTarget;

/// Options of `foundation agents`.
#[derive(clap::Args, Debug)]
#[command(after_help = "\
Examples:
  foundation agents                        every agent a node on this machine sees
  foundation agents --capability bidder    only agents that can bid
  foundation agents --json")]
pub struct AgentsArgs {
    /// Which node to ask.
    #[command(flatten)]
    pub target: NodeTarget,
    /// Only agents with this capability.
    #[arg(long)]
    pub capability: Option<String>,
    /// Print the raw JSON.
    #[arg(long)]
    pub json: bool,
}

/// Fetches `/agents` and prints it.
pub async fn run(args: AgentsArgs) -> Result<(), Box<dyn std::error::Error>> {
    let node = args.target.resolve().await?;
    let answer = foundation_engine::http::get_json(node, "/agents", Duration::from_secs(3))
        .await
        .map_err(|e| format!("cannot reach the node at {node}: {e}"))?;
    let mut agents = answer["agents"].as_array().cloned().unwrap_or_default();
    if let Some(capability) = &args.capability {
        agents.retain(|a| has_capability(a, capability));
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&agents)?);
        return Ok(());
    }
    println!(
        "{:<24} {:<10} {:<22} {:<10} {:<10} CAPABILITIES",
        "AGENT", "NODE", "ADDRESS", "STATE", "HEALTH"
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
        println!(
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
        println!("(no agents)");
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
