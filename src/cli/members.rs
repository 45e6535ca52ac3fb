//! `foundation members`: the members table of a running node, over its HTTP API.

use crate::cli::{out, say};
use std::time::Duration;

use serde_json::Value;

use super::target::NodeTarget;

/// Options of `foundation members`.
#[derive(clap::Args, Debug)]
#[command(after_help = "\
Examples:
  foundation members                            a node of cluster \"foundation\" on this machine
  foundation members --cluster orders           a node of cluster \"orders\" on this machine
  foundation members --node http://10.0.0.5:7401/ --json")]
pub struct MembersArgs {
    /// Which node to ask.
    #[command(flatten)]
    pub target: NodeTarget,
    /// Print the raw JSON.
    #[arg(long)]
    pub json: bool,
}

/// Fetches `/members` and prints it.
pub async fn run(args: MembersArgs) -> Result<(), Box<dyn std::error::Error>> {
    let node = args.target.resolve().await?;
    let answer = foundation_engine::http::get_json(node, "/members", Duration::from_secs(3))
        .await
        .map_err(|e| format!("cannot reach the node at {node}: {e}"))?;
    if args.json {
        out!("{}", serde_json::to_string_pretty(&answer)?);
        return Ok(());
    }
    print_table(&answer);
    Ok(())
}

fn print_table(answer: &Value) {
    let text = |v: &Value| {
        v.as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| v.to_string())
    };
    let me = &answer["self"];
    out!("{:<34} {:<22} {:<7} NAME", "NODE", "ADDRESS", "STATE");
    say!(
        "{:<34} {:<22} {:<7} (this node)",
        text(&me["id"]),
        text(&me["addr"]),
        "alive"
    );
    let members = answer["members"].as_array().cloned().unwrap_or_default();
    for member in &members {
        let name = member["metadata"]["name"].as_str().unwrap_or("");
        say!(
            "{:<34} {:<22} {:<7} {}",
            text(&member["id"]),
            text(&member["addr"]),
            text(&member["state"]),
            name
        );
    }
}
