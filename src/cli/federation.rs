//! `foundation federation`: a gateway's links to other clusters (state, remote gateway, RTT,
//! probes, bytes), its hubs and transit clusters, its bridged pub/sub, the handshakes it
//! refused, and the global directory of exported services, over its HTTP API
//! (`GET /federation`).

use crate::cli::{out, say};
use std::time::Duration;

use serde_json::Value;

use super::target::NodeTarget;

/// Options of `foundation federation`.
#[derive(clap::Args, Debug)]
#[command(after_help = "\
Examples:
  foundation federation --node 127.0.0.1:7401   a gateway's links and the services other clusters export
  foundation federation --json")]
pub struct FederationArgs {
    /// Which node to ask.
    #[command(flatten)]
    pub target: NodeTarget,
    /// Print the raw JSON.
    #[arg(long)]
    pub json: bool,
}

/// Fetches `/federation` and prints it.
pub async fn run(args: FederationArgs) -> Result<(), Box<dyn std::error::Error>> {
    let node = args.target.resolve().await?;
    let answer = foundation_engine::http::get_json(node, "/federation", Duration::from_secs(3))
        .await
        .map_err(|e| format!("cannot reach the node at {node}: {e}"))?;
    if args.json {
        out!("{}", serde_json::to_string_pretty(&answer)?);
        return Ok(());
    }
    if answer["gateway"] != true {
        out!("(this node is not a federation gateway: see [federation] in the node's TOML)");
        return Ok(());
    }
    print_links(&answer);
    print_routing(&answer);
    print_bridges(&answer);
    print_directory(&answer);
    let refused = answer["refused_handshakes"].as_u64().unwrap_or_default();
    out!("refused handshakes: {refused}");
    Ok(())
}

fn print_links(answer: &Value) {
    out!(
        "{:<20} {:<11} {:<22} {:>9} {:>7} {:>7} {:>10} {:>10}",
        "LINK",
        "STATE",
        "GATEWAY",
        "RTT_MS",
        "PROBES",
        "MISSED",
        "SENT",
        "RECEIVED"
    );
    for link in answer["links"].as_array().into_iter().flatten() {
        let rtt = link["rtt_ms"]
            .as_f64()
            .map_or("-".to_owned(), |ms| format!("{ms:.1}"));
        say!(
            "{:<20} {:<11} {:<22} {:>9} {:>7} {:>7} {:>10} {:>10}",
            link["cluster"].as_str().unwrap_or_default(),
            link["state"].as_str().unwrap_or_default(),
            link["gateway"].as_str().unwrap_or_default(),
            rtt,
            link["probes_sent"].as_u64().unwrap_or_default(),
            link["probes_missed"].as_u64().unwrap_or_default(),
            link["bytes_sent"].as_u64().unwrap_or_default(),
            link["bytes_received"].as_u64().unwrap_or_default(),
        );
    }
}

/// Hub-and-spoke: the links used as hubs, the clusters carried as a hub, and the calls served
/// here by the cluster they started in.
fn print_routing(answer: &Value) {
    let names = |field: &str| -> String {
        let list: Vec<&str> = answer[field]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        if list.is_empty() {
            "-".to_owned()
        } else {
            list.join(", ")
        }
    };
    say!("hubs: {}   transit: {}", names("hubs"), names("transit"));
    let mut served: Vec<String> = answer["served_by_origin"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(origin, calls)| format!("{origin}={}", calls.as_u64().unwrap_or_default()))
        .collect();
    // Calls of the origins past the gateway's bound on names hubs give (older gateways do
    // not say).
    let unlisted = answer["served_unlisted_origins"].as_u64().unwrap_or(0);
    if unlisted > 0 {
        served.push(format!("others={unlisted}"));
    }
    if !served.is_empty() {
        say!("calls served, by origin cluster: {}", served.join(" "));
    }
}

/// Bridged pub/sub per link: messages and payload bytes each way, and drops by reason.
fn print_bridges(answer: &Value) {
    out!(
        "{:<20} {:>10} {:>12} {:>10} {:>12}  DROPPED",
        "BRIDGE",
        "MSGS_OUT",
        "BYTES_OUT",
        "MSGS_IN",
        "BYTES_IN"
    );
    for link in answer["links"].as_array().into_iter().flatten() {
        let bridged = &link["bridged"];
        let dropped: Vec<String> = bridged["dropped"]
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(_, n)| n.as_u64().unwrap_or_default() > 0)
            .map(|(reason, n)| format!("{reason}={n}"))
            .collect();
        let count = |field: &str| bridged[field].as_u64().unwrap_or_default();
        say!(
            "{:<20} {:>10} {:>12} {:>10} {:>12}  {}",
            link["cluster"].as_str().unwrap_or_default(),
            count("messages_out"),
            count("bytes_out"),
            count("messages_in"),
            count("bytes_in"),
            if dropped.is_empty() {
                "-".to_owned()
            } else {
                dropped.join(" ")
            },
        );
    }
}

fn print_directory(answer: &Value) {
    let empty = serde_json::Map::new();
    let clusters = answer["directory"].as_object().unwrap_or(&empty);
    out!("{:<20} {:<32} HEALTHY", "CLUSTER", "EXPORTED SERVICE");
    for (cluster, entry) in clusters {
        let services = entry["services"].as_object().unwrap_or(&empty);
        if services.is_empty() {
            say!("{cluster:<20} (nothing exported)");
        }
        for (name, service) in services {
            let healthy = service["healthy"].as_u64().unwrap_or_default();
            say!("{cluster:<20} {name:<32} {healthy}");
        }
    }
}
