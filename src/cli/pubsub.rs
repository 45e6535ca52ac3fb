//! `foundation publish TOPIC MESSAGE` and `foundation subscribe PATTERN`: pub/sub through a
//! running node (`POST /publish/{topic}`, and the stream `GET /subscribe/{pattern}`).

use crate::cli::{out, say};
use std::time::Duration;

use bytes::Bytes;
use foundation_engine::http::{percent_encode, Method};

use super::act::{ask, follow, payload_text};
use super::node::timestamp;
use super::target::NodeTarget;

const TIMEOUT: Duration = Duration::from_secs(5);

/// Options of `foundation publish`.
#[derive(clap::Args, Debug)]
#[command(after_help = "\
Examples:
  foundation publish orders.eu.created 'order 17'
  foundation publish alerts.disk '{\"host\": \"db-1\"}' --node 127.0.0.1:7401

The message goes, as it is, to every subscriber of a matching pattern on any node, once per
node (at most once; a node with no matching subscriber is not sent it).")]
pub struct PublishArgs {
    /// The topic: dot-separated segments, e.g. orders.eu.created.
    pub topic: String,
    /// The message, sent as it is (text).
    pub message: String,
    /// Which node publishes.
    #[command(flatten)]
    pub target: NodeTarget,
}

/// Options of `foundation subscribe`.
#[derive(clap::Args, Debug)]
#[command(after_help = "\
Examples:
  foundation subscribe 'orders.*.created'     one segment per *
  foundation subscribe 'orders.>'             > matches the rest
  foundation subscribe 'alerts.>' --count 1   exit after the first message

Prints one line per message: UTC time, topic, message (hex when it is not text). Runs until
Ctrl-C, --count messages, or the node stops (with --count, an error when it stops first).")]
pub struct SubscribeArgs {
    /// The topic pattern: segments, `*` for one segment, `>` for the rest.
    pub pattern: String,
    /// Exit after this many messages (at least 1); fail if the node ends the stream before.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
    /// Which node holds the subscription.
    #[command(flatten)]
    pub target: NodeTarget,
}

/// Publishes one message.
pub async fn publish(args: PublishArgs) -> Result<(), Box<dyn std::error::Error>> {
    let node = args.target.resolve().await?;
    let path = format!("/publish/{}", percent_encode(&args.topic));
    let body = Bytes::from(args.message.into_bytes());
    let answer = ask(node, Method::POST, &path, body, TIMEOUT).await?;
    out!("published {} bytes to {}", answer["bytes"], args.topic);
    Ok(())
}

/// Prints messages as they arrive.
pub async fn subscribe(args: SubscribeArgs) -> Result<(), Box<dyn std::error::Error>> {
    let node = args.target.resolve().await?;
    let path = format!("/subscribe/{}", percent_encode(&args.pattern));
    let mut left = args.count;
    follow(node, &path, |line| match line["kind"].as_str() {
        Some("subscribed") => {
            eprintln!("subscribed to {} at {node} (Ctrl-C to stop)", args.pattern);
            true
        }
        Some("message") => {
            let topic = line["topic"].as_str().unwrap_or("?");
            say!("{} {topic} {}", timestamp(), payload_text(&line));
            left = left.map(|n| n.saturating_sub(1));
            left != Some(0)
        }
        _ => true,
    })
    .await?;
    match (args.count, left) {
        // A script waiting for N messages must be able to tell that fewer came.
        (Some(count), Some(missing)) if missing > 0 => Err(format!(
            "the node at {node} ended the subscription after {} of {count} messages",
            count - missing
        )
        .into()),
        _ => Ok(()),
    }
}
