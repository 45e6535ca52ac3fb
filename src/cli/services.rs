//! `foundation services`: the service instances a running node sees, over its HTTP API.

use crate::cli::{out, say};
use std::time::Duration;

use serde_json::Value;

use super::target::NodeTarget;

/// Options of `foundation services`.
#[derive(clap::Args, Debug)]
#[command(after_help = "\
Examples:
  foundation services                     every instance a node on this machine sees
  foundation services billing --json      one service, as JSON
  foundation services --node 127.0.0.1:7401")]
pub struct ServicesArgs {
    /// Which node to ask.
    #[command(flatten)]
    pub target: NodeTarget,
    /// Only this service.
    pub service: Option<String>,
    /// Print the raw JSON.
    #[arg(long)]
    pub json: bool,
}

/// Fetches `/services` and prints it.
pub async fn run(args: ServicesArgs) -> Result<(), Box<dyn std::error::Error>> {
    let node = args.target.resolve().await?;
    let answer = foundation_engine::http::get_json(node, "/services", Duration::from_secs(3))
        .await
        .map_err(|e| format!("cannot reach the node at {node}: {e}"))?;
    let mut services = answer["services"].as_object().cloned().unwrap_or_default();
    if let Some(only) = &args.service {
        services.retain(|name, _| name == only);
    }
    if args.json {
        out!("{}", serde_json::to_string_pretty(&services)?);
        return Ok(());
    }
    print_table(&services);
    Ok(())
}

fn print_table(services: &serde_json::Map<String, Value>) {
    out!(
        "{:<24} {:<28} {:<22} {:<10} {:<8} {:<6} TAGS",
        "SERVICE",
        "INSTANCE",
        "ADDRESS",
        "HEALTH",
        "VERSION",
        "WEIGHT"
    );
    for (name, instances) in services {
        for instance in instances.as_array().into_iter().flatten() {
            let record = &instance["record"];
            let tags: Vec<String> = record["tags"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect();
            say!(
                "{:<24} {:<28} {:<22} {:<10} {:<8} {:<6} {}",
                name,
                instance["id"].as_str().unwrap_or_default(),
                // An outside endpoint is reached at its own address, not its node's.
                record["target"]["endpoint"]
                    .as_str()
                    .or(instance["addr"].as_str())
                    .unwrap_or_default(),
                record["health"].as_str().unwrap_or_default(),
                record["version"].as_str().unwrap_or_default(),
                record["weight"],
                tags.join(",")
            );
        }
    }
    if services.is_empty() {
        out!("(no services registered)");
    }
}
