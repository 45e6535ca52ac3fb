//! `foundation force-leave ID`: remove a failed (or departed) member from the members table of
//! every live node now, instead of after the reap interval (`POST /force-leave/{id}`).

use crate::cli::say;
use std::time::Duration;

use bytes::Bytes;
use foundation_engine::http::{percent_encode, Method};

use super::act::ask;
use super::target::NodeTarget;

const TIMEOUT: Duration = Duration::from_secs(5);

/// Options of `foundation force-leave`.
#[derive(clap::Args, Debug)]
#[command(after_help = "\
Examples:
  foundation force-leave 3f2a9c0e5b7d41e8a6c1f0b2d4e6a8c0    the id `foundation members` shows
  foundation force-leave 3f2a…c0 --node 127.0.0.1:7401

Only a member the node holds failed or left can be removed; an alive one is refused (make it
leave with `foundation leave --node` on it). Without force-leave every node removes such a
member by itself after [membership] reap_after (default 15 min). A removed node that comes back
is listed again, as the same member when it kept its id.

A member that failed still counts in the agreed membership majorities are counted in after it
was reaped, and a node restarted from its storage counts the members it stored, though others
let them go while it was down: force-leave removes such a member too (no table lists it). Only
for members gone for good: a live member removed so (one across a partition, or one a node
restarted alone has not met yet) lets each side count a majority of its own.")]
pub struct ForceLeaveArgs {
    /// The member's node id (32 hex digits).
    pub id: String,
    /// Which node to ask (any live member will do: it tells the others).
    #[command(flatten)]
    pub target: NodeTarget,
}

/// Asks the node to remove the member everywhere.
pub async fn run(args: ForceLeaveArgs) -> Result<(), Box<dyn std::error::Error>> {
    let node = args.target.resolve().await?;
    let path = format!("/force-leave/{}", percent_encode(args.id.trim()));
    let answer = ask(node, Method::POST, &path, Bytes::new(), TIMEOUT).await?;
    let agreed = &answer["removed_agreed"];
    if !agreed.is_null() {
        say!(
            "removed {} (generation {}) from the agreed membership majorities are counted in \
             (the members table did not list it); live members were told",
            agreed["id"].as_str().unwrap_or(&args.id),
            agreed["generation"],
        );
        return Ok(());
    }
    let removed = &answer["removed"];
    say!(
        "removed {} ({}, {}) from the members table; live members were told",
        removed["id"].as_str().unwrap_or(&args.id),
        removed["state"].as_str().unwrap_or("?"),
        removed["addr"].as_str().unwrap_or("?"),
    );
    Ok(())
}
