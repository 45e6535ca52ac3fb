//! `foundation leave`: make a running node leave the cluster gracefully (`POST /leave`), as
//! SIGTERM would: its peers record it as left, not failed, and the node process exits.

use crate::cli::say;
use std::time::Duration;

use foundation_engine::http::{send_json, Method};

use super::target::NodeTarget;

/// Long enough for the node's agents to stop (each is given `stop_grace`, 5 s by default, one
/// after another), its handoffs to finish, the leave to reach the peers and the node's
/// transport to close. The node goes on leaving if this runs out first.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(60);

/// Options of `foundation leave`.
#[derive(clap::Args, Debug)]
#[command(after_help = "\
Examples:
  foundation leave                           the node of cluster \"foundation\" on this machine
  foundation leave --cluster orders
  foundation leave --node 127.0.0.1:7401     one of several local nodes, or a node elsewhere

The node tells its peers it is leaving (they record it as left, not failed), withdraws its
discovery advertisement and exits, as it does on SIGTERM or Ctrl-C.")]
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
    say!("node {id} at {node} left the cluster");
    Ok(())
}
