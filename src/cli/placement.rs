//! `foundation placement`: the singletons and shards a running node has declared, who its view
//! says owns each, and what runs on it, over its HTTP API (`GET /placement`).

use crate::cli::{out, say};
use std::time::Duration;

use serde_json::Value;

use super::target::NodeTarget;

/// Options of `foundation placement`.
#[derive(clap::Args, Debug)]
#[command(after_help = "\
Examples:
  foundation placement          every workload a node on this machine declared, with owners
  foundation placement --json")]
pub struct PlacementArgs {
    /// Which node to ask.
    #[command(flatten)]
    pub target: NodeTarget,
    /// Print the raw JSON.
    #[arg(long)]
    pub json: bool,
}

/// Fetches `/placement` and prints it.
pub async fn run(args: PlacementArgs) -> Result<(), Box<dyn std::error::Error>> {
    let node = args.target.resolve().await?;
    let answer = foundation_engine::http::get_json(node, "/placement", Duration::from_secs(3))
        .await
        .map_err(|e| format!("cannot reach the node at {node}: {e}"))?;
    if args.json {
        out!("{}", serde_json::to_string_pretty(&answer)?);
        return Ok(());
    }
    let empty = serde_json::Map::new();
    let workloads = answer["workloads"].as_object().unwrap_or(&empty);
    out!(
        "{:<24} {:<10} {:>5}  {:<10} HERE",
        "WORKLOAD",
        "KIND",
        "SHARD",
        "OWNER"
    );
    for (name, workload) in workloads {
        let kind = workload["kind"].as_str().unwrap_or_default();
        for instance in workload["instances"].as_array().into_iter().flatten() {
            say!(
                "{:<24} {:<10} {:>5}  {:<10} {}",
                name,
                kind,
                instance["shard"].as_u64().unwrap_or_default(),
                short(&instance["owner"]),
                if instance["running_here"] == true {
                    "yes"
                } else {
                    ""
                },
            );
        }
    }
    if workloads.is_empty() {
        out!("(no workloads declared on this node)");
    }
    if let Some(duplicates) = answer["duplicates_detected"].as_u64() {
        out!("duplicates detected here: {duplicates} (should stay 0)");
    }
    Ok(())
}

/// A node id's first 8 characters, or `-` without an owner.
fn short(owner: &Value) -> &str {
    match owner.as_str() {
        Some(id) => id.get(..8).unwrap_or(id),
        None => "-",
    }
}
