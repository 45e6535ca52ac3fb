//! `foundation config get|set|delete|watch`: the cluster-wide config of a running node, over
//! its HTTP API (`GET /config`, `PUT` and `DELETE /config/{key}`).

use crate::cli::{out, say};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use foundation_engine::http::{get_json, percent_encode, send_json, HttpError, Method};
use serde_json::Value;

use super::target::NodeTarget;

/// Longest one HTTP exchange with the node may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

/// Options of `foundation config`.
#[derive(clap::Args, Debug)]
#[command(after_help = "\
Examples:
  foundation config get                                every key and value
  foundation config get checkout.enabled
  foundation config set checkout.enabled true
  foundation config set limits.api '{\"rps\": 5}' --majority 2000
  foundation config delete limits.api
  foundation config watch limits.                      print changes under a prefix
  foundation config get --cluster orders --node http://127.0.0.1:7401/")]
pub struct ConfigArgs {
    /// Which node to ask.
    #[command(flatten)]
    pub target: NodeTarget,
    /// What to do.
    #[command(subcommand)]
    pub command: ConfigCommand,
}

/// `foundation config` subcommands.
#[derive(clap::Subcommand, Debug, PartialEq)]
pub enum ConfigCommand {
    /// Print one key's value, or every key and value (as JSON).
    Get {
        /// The key; all keys when absent.
        key: Option<String>,
    },
    /// Set a key cluster-wide. The value is parsed as JSON (`true`, `42`, `{"rps":5}`);
    /// anything that is not JSON is stored as a string.
    Set {
        /// The key.
        key: String,
        /// The value.
        value: String,
        /// Return only once a majority of live members hold the write, waiting at most this
        /// many milliseconds (fails otherwise; the write still spreads).
        #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..=60_000))]
        majority: Option<u64>,
    },
    /// Delete a key cluster-wide.
    Delete {
        /// The key.
        key: String,
    },
    /// Print changes under a prefix as they are seen. This polls `/config`: changes between
    /// two polls are coalesced into one.
    Watch {
        /// Only keys starting with this.
        #[arg(default_value = "")]
        prefix: String,
        /// Time between polls, in milliseconds.
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(50..))]
        every_ms: u64,
    },
}

/// Runs the subcommand against the node.
pub async fn run(args: ConfigArgs) -> Result<(), Box<dyn std::error::Error>> {
    let node = args.target.resolve().await?;
    let unreachable = |e: foundation_engine::http::HttpError| -> Box<dyn std::error::Error> {
        format!("node at {node}: {e}").into()
    };
    match args.command {
        ConfigCommand::Get { key: None } => {
            let all = snapshot(node).await.map_err(unreachable)?;
            out!("{}", serde_json::to_string_pretty(&all)?);
        }
        ConfigCommand::Get { key: Some(key) } => {
            match get_json(node, &key_path(&key), REQUEST_TIMEOUT).await {
                Ok(value) => out!("{value}"),
                Err(HttpError::Status { status: 404, .. }) => {
                    return Err(format!("no key {key:?}").into())
                }
                Err(error) => return Err(unreachable(error)),
            }
        }
        ConfigCommand::Set {
            key,
            value,
            majority,
        } => {
            let mut path = key_path(&key);
            let mut timeout = REQUEST_TIMEOUT;
            if let Some(ms) = majority {
                path.push_str(&format!("?majority_ms={ms}"));
                timeout += Duration::from_millis(ms);
            }
            let value = parse_value(&value);
            send_json(node, Method::PUT, &path, Some(&value), timeout)
                .await
                .map_err(unreachable)?;
        }
        ConfigCommand::Delete { key } => {
            send_json(node, Method::DELETE, &key_path(&key), None, REQUEST_TIMEOUT)
                .await
                .map_err(unreachable)?;
        }
        ConfigCommand::Watch { prefix, every_ms } => {
            watch(node, &prefix, Duration::from_millis(every_ms))
                .await
                .map_err(unreachable)?;
        }
    }
    Ok(())
}

/// Polls the node and prints one line per change until the node cannot be reached.
async fn watch(
    node: SocketAddr,
    prefix: &str,
    every: Duration,
) -> Result<(), foundation_engine::http::HttpError> {
    let mut before = snapshot(node).await?;
    let mut ticks = tokio::time::interval(every);
    loop {
        ticks.tick().await;
        let now = snapshot(node).await?;
        for line in changes(&before, &now, prefix) {
            say!("{line}");
        }
        before = now;
    }
}

async fn snapshot(
    node: SocketAddr,
) -> Result<BTreeMap<String, Value>, foundation_engine::http::HttpError> {
    let answer = get_json(node, "/config", REQUEST_TIMEOUT).await?;
    Ok(match answer {
        Value::Object(map) => map.into_iter().collect(),
        _ => BTreeMap::new(),
    })
}

fn key_path(key: &str) -> String {
    format!("/config/{}", percent_encode(key))
}

/// The value as JSON, or as a JSON string when it is not JSON.
pub fn parse_value(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}

/// One line per key under `prefix` that differs between two snapshots, in key order:
/// `key: old -> new`, with `(absent)` for a missing side.
pub fn changes(
    before: &BTreeMap<String, Value>,
    after: &BTreeMap<String, Value>,
    prefix: &str,
) -> Vec<String> {
    let show = |v: Option<&Value>| v.map_or_else(|| "(absent)".to_owned(), Value::to_string);
    let keys: std::collections::BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    keys.into_iter()
        .filter(|k| k.starts_with(prefix) && before.get(*k) != after.get(*k))
        .map(|k| format!("{k}: {} -> {}", show(before.get(k)), show(after.get(k))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        config: ConfigArgs,
    }

    fn parse(args: &[&str]) -> Result<ConfigArgs, clap::Error> {
        let argv = std::iter::once("config").chain(args.iter().copied());
        Cli::try_parse_from(argv).map(|c| c.config)
    }

    #[test]
    fn subcommands_parse_with_the_node_anywhere() {
        let args = parse(&[
            "set",
            "checkout.enabled",
            "true",
            "--node",
            "127.0.0.1:9000",
        ])
        .expect("parses");
        assert_eq!(args.target.node, Some("127.0.0.1:9000".parse().unwrap()));
        assert_eq!(
            args.command,
            ConfigCommand::Set {
                key: "checkout.enabled".into(),
                value: "true".into(),
                majority: None,
            }
        );
        let args = parse(&["set", "k", "1", "--majority", "2000"]).expect("parses");
        assert!(matches!(
            args.command,
            ConfigCommand::Set {
                majority: Some(2000),
                ..
            }
        ));
        assert!(parse(&["set", "k", "1", "--majority", "0"]).is_err());
        let args = parse(&["get"]).expect("parses");
        assert_eq!(args.command, ConfigCommand::Get { key: None });
        assert_eq!(args.target.node, None, "found on this machine when absent");
        let args = parse(&["--node", "http://127.0.0.1:9000/", "get", "k"]).expect("parses");
        assert_eq!(args.target.node, Some("127.0.0.1:9000".parse().unwrap()));
        let args = parse(&["get", "--cluster", "orders"]).expect("parses");
        assert_eq!(args.target.cluster.as_deref(), Some("orders"));
        let args = parse(&["watch", "limits."]).expect("parses");
        assert_eq!(
            args.command,
            ConfigCommand::Watch {
                prefix: "limits.".into(),
                every_ms: 1000
            }
        );
        assert!(parse(&["set", "only-a-key"]).is_err());
        assert!(
            parse(&["watch", "--every-ms", "1"]).is_err(),
            "polling floor"
        );
        assert!(parse(&["delete", "k", "--node", "not-an-address"]).is_err());
    }

    #[test]
    fn values_are_json_when_they_parse_and_strings_otherwise() {
        assert_eq!(parse_value("true"), Value::Bool(true));
        assert_eq!(parse_value("42"), serde_json::json!(42));
        assert_eq!(parse_value(r#"{"rps":5}"#), serde_json::json!({"rps": 5}));
        assert_eq!(
            parse_value("hello world"),
            Value::String("hello world".into())
        );
        assert_eq!(parse_value(r#""42""#), Value::String("42".into()));
    }

    #[test]
    fn watch_prints_changes_under_the_prefix_only() {
        let snap = |pairs: &[(&str, Value)]| -> BTreeMap<String, Value> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect()
        };
        let before = snap(&[
            ("a.x", Value::from(1)),
            ("a.gone", Value::from(true)),
            ("b", Value::from(1)),
        ]);
        let after = snap(&[
            ("a.x", Value::from(2)),
            ("a.new", Value::from("v")),
            ("b", Value::from(9)),
        ]);
        assert_eq!(
            changes(&before, &after, "a."),
            vec![
                "a.gone: true -> (absent)".to_owned(),
                "a.new: (absent) -> \"v\"".to_owned(),
                "a.x: 1 -> 2".to_owned(),
            ]
        );
        assert!(changes(&after, &after, "").is_empty());
    }
}
