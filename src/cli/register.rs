//! `foundation register SERVICE --addr ADDR` and `foundation deregister SERVICE`: an endpoint
//! that lives outside Foundation (a database, a legacy HTTP service) in the cluster's registry,
//! through a running node (`PUT`/`DELETE /services/{name}`).

use crate::cli::say;
use std::time::Duration;

use bytes::Bytes;
use foundation_engine::http::{percent_encode, Method};
use serde_json::json;

use super::act::ask;
use super::target::NodeTarget;

const TIMEOUT: Duration = Duration::from_secs(5);

/// Options of `foundation register`.
#[derive(clap::Args, Debug)]
#[command(after_help = "\
Examples:
  foundation register postgres --addr 10.0.0.5:5432 --tag role=primary
  foundation register legacy-api --addr http://10.0.0.7:8080/ --version 2.3.1

The instance belongs to the node that registered it: every node sees it (`foundation services`)
while that node is alive, and it goes when that node stops or on `foundation deregister`.")]
pub struct RegisterArgs {
    /// The service name.
    pub service: String,
    /// Where the endpoint is: a URL or HOST:PORT.
    #[arg(long)]
    pub addr: String,
    /// A tag KEY=VALUE (repeat for more).
    #[arg(long = "tag", value_name = "KEY=VALUE", value_parser = parse_tag)]
    pub tags: Vec<(String, String)>,
    /// The endpoint's version.
    #[arg(long)]
    pub version: Option<String>,
    /// Which node holds the registration.
    #[command(flatten)]
    pub target: NodeTarget,
}

/// Options of `foundation deregister`.
#[derive(clap::Args, Debug)]
#[command(after_help = "\
Examples:
  foundation deregister postgres            every endpoint of it registered through this node
  foundation deregister postgres --id 3     one (the id `register` printed)")]
pub struct DeregisterArgs {
    /// The service name.
    pub service: String,
    /// Only the instance with this id.
    #[arg(long)]
    pub id: Option<u64>,
    /// The node that holds the registration.
    #[command(flatten)]
    pub target: NodeTarget,
}

fn parse_tag(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => Ok((key.trim().into(), value.into())),
        _ => Err(format!("{text:?} is not KEY=VALUE")),
    }
}

/// Registers the endpoint.
pub async fn register(args: RegisterArgs) -> Result<(), Box<dyn std::error::Error>> {
    let node = args.target.resolve().await?;
    let tags: serde_json::Map<String, serde_json::Value> =
        args.tags.into_iter().map(|(k, v)| (k, json!(v))).collect();
    let spec = json!({ "addr": args.addr, "version": args.version, "tags": tags });
    let path = format!("/services/{}", percent_encode(&args.service));
    let body = Bytes::from(spec.to_string());
    let answer = ask(node, Method::PUT, &path, body, TIMEOUT).await?;
    say!(
        "registered {} at {} (id {}, held by the node at {node})",
        args.service,
        args.addr,
        answer["id"]
    );
    Ok(())
}

/// Removes endpoints registered through the node.
pub async fn deregister(args: DeregisterArgs) -> Result<(), Box<dyn std::error::Error>> {
    let node = args.target.resolve().await?;
    let mut path = format!("/services/{}", percent_encode(&args.service));
    if let Some(id) = args.id {
        path.push_str(&format!("?id={id}"));
    }
    let answer = ask(node, Method::DELETE, &path, Bytes::new(), TIMEOUT).await?;
    say!("deregistered {} {}", args.service, answer["deregistered"]);
    Ok(())
}
