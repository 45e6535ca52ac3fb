//! `foundation monitor`: a node's events as they happen — members, config changes, service
//! instances — from the stream `GET /monitor`, like `serf monitor`.

use crate::cli::{out, say};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::act::follow;
use super::node::timestamp;
use super::target::NodeTarget;

/// Options of `foundation monitor`.
#[derive(clap::Args, Debug)]
#[command(after_help = "\
Examples:
  foundation monitor                       events seen by the local node of cluster \"foundation\"
  foundation monitor --json                one JSON document per event
  foundation monitor --node 127.0.0.1:7401

Without --node, when the node stops the monitor follows another node of the cluster running on
this machine, if any. Lines: UTC time, then `member up|updated|failed|left|removed ID ADDR gen N`, `config KEY = VALUE`
(or `deleted`), `service up|down NAME INSTANCE ADDR`. Runs until Ctrl-C or the node stops.")]
pub struct MonitorArgs {
    /// Print each event as the JSON the node sends.
    #[arg(long)]
    pub json: bool,
    /// Which node to watch.
    #[command(flatten)]
    pub target: NodeTarget,
}

/// How long to look for another local node when the followed one goes away.
const FIND_ANOTHER_FOR: Duration = Duration::from_secs(5);

/// Prints events until the stream ends. Without --node, when the node goes away the monitor
/// follows another running node of the cluster on this machine, if there is one.
pub async fn run(args: MonitorArgs) -> Result<(), Box<dyn std::error::Error>> {
    let mut node = args.target.resolve().await?;
    loop {
        let ended = follow(node, "/monitor", |event| {
            if args.json {
                out!("{event}");
            } else {
                say!("{} {}", timestamp(), describe(&event));
            }
            true
        })
        .await;
        let next = match args.target.node {
            Some(_) => None,
            None => another_node(&args.target, node).await,
        };
        let Some(next) = next else {
            ended?;
            eprintln!("the node at {node} ended the stream (it stopped)");
            return Ok(());
        };
        eprintln!(
            "{} the node at {node} went away; following the node at {next}",
            timestamp()
        );
        node = next;
    }
}

/// A running local node of the cluster other than `gone`, looked for a few seconds: a node
/// that is leaving may still accept connections for a moment.
async fn another_node(target: &NodeTarget, gone: SocketAddr) -> Option<SocketAddr> {
    let started = Instant::now();
    while started.elapsed() < FIND_ANOTHER_FOR {
        if let Ok(found) = target.resolve().await {
            if found != gone {
                return Some(found);
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    None
}

/// One event as a line of text.
fn describe(event: &Value) -> String {
    let text = |v: &Value| v.as_str().unwrap_or("?").to_owned();
    match event["kind"].as_str() {
        Some("monitoring") => format!(
            "monitoring node {} (Ctrl-C to stop)",
            text(&event["node"]["id"])
        ),
        Some("member") if event["member"].is_object() => {
            let m = &event["member"];
            let (id, addr) = (text(&m["id"]), text(&m["addr"]));
            format!(
                "member {} {id} {addr} gen {}",
                text(&event["event"]),
                m["generation"]
            )
        }
        Some("member") => format!("member {}: this node", text(&event["event"])),
        Some("config") if event["new"].is_null() => {
            format!("config {} deleted", text(&event["key"]))
        }
        Some("config") => format!("config {} = {}", text(&event["key"]), event["new"]),
        Some("service") => format!(
            "service {} {} {} {}",
            text(&event["event"]),
            text(&event["service"]),
            text(&event["instance"]),
            text(&event["addr"])
        ),
        Some("lagged") => format!(
            "(missed {} events: this monitor fell behind)",
            event["missed"]
        ),
        _ => event.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_read_as_one_line_each() {
        let up = json!({"kind": "member", "event": "failed",
            "member": {"id": "ab", "addr": "127.0.0.1:1", "generation": 7}});
        assert_eq!(describe(&up), "member failed ab 127.0.0.1:1 gen 7");
        let set = json!({"kind": "config", "key": "k", "old": null, "new": 42});
        assert_eq!(describe(&set), "config k = 42");
        let gone = json!({"kind": "config", "key": "k", "old": 42, "new": null});
        assert_eq!(describe(&gone), "config k deleted");
    }
}
