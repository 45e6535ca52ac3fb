//! `foundation leave`: make a running node leave the cluster gracefully (`POST /leave`), as
//! SIGTERM would: its peers record it as left, not failed, and the node process exits.

use std::time::Duration;

use foundation_engine::http::{send_json, Method};

use super::target::NodeTarget;

/// Long enough for the leave to reach the peers and the node's transport to close.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(15);

/// Options of `foundation leave`.
#[derive(clap::Args, Debug)]
pub struct LeaveArgs {
    /// Which node leaves. Without --node, the one node of the cluster running on this
    /// machine; when several run, --node must say which.
    #[command(flatten)]
    pub target: NodeTarget,
}

/// Asks the node to leave and waits until it has.
pub async fn run(args: LeaveArgs) -> Result<(), Box<dyn std::error::Error>> {
    let node = args.target.resolve_exactly_one().await?;
    let answer = send_json(node, Method::POST, "/leave", None, LEAVE_TIMEOUT)
        .await
        .map_err(|e| format!("node at {node}: {e}"))?;
    let id = answer["node"]["id"].as_str().unwrap_or("(unknown id)");
    println!("node {id} at {node} left the cluster");
    Ok(())
}
