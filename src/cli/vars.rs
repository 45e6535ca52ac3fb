//! `foundation vars get|declare|set|move|draw|refill|watch`: variables agents coordinate on,
//! through a running node's HTTP API (`GET /variables[/{name}]`, `PUT` and `POST
//! /variables/{name}`), and `watch` follows `GET /watch/variables/{name}` (or `?prefix=`).

use crate::cli::{out, say};
use std::time::Duration;

use foundation_engine::http::{
    get_json, percent_encode, send_json, stream_lines, HttpError, Method,
};
use serde_json::{json, Value};

use super::act::refusal;
use super::config::parse_value;
use super::target::NodeTarget;

/// Longest one exchange may take beyond the write's own timeout.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

/// Options of `foundation vars`.
#[derive(clap::Args, Debug)]
#[command(after_help = "\
Examples:
  foundation vars get                                    every variable: version, value, type
  foundation vars get gpu.slots
  foundation vars declare gpu.slots --type '{\"int\": [0, 8]}' --initial 8
  foundation vars declare mode --type '{\"choice\": [\"fast\", \"safe\"]}' --initial '\"safe\"'
  foundation vars set gpu.slots 7 --expected 0           wins only if still at version 0
  foundation vars move gpu.slots --to alive              after restarts: the lives alive now decide it
  foundation vars move gpu.slots --to api-1,api-2,4f2a09c1   to these members (names or ids)
  foundation vars declare temperature --policy lww --type '{\"float\": [0, 2]}' --initial 0.7
  foundation vars set temperature 0.9                    last writer wins
  foundation vars declare budget --policy counter --initial 1000
  foundation vars draw budget 25                         spends this node's rights
  foundation vars refill budget 100
  foundation vars watch temperature                      one line per change (old and new value, writer), until Ctrl-C
  foundation vars watch --prefix room.                   ... of every variable whose name starts with room.

Policies: `cas` (default) is decided by a majority of its acceptors (this node and every member
alive when it was declared): `set --expected` replaces the version it expects, or says who got
there first. Acceptors are node lives: after a restart (a new life), `move` hands the variable
to the lives alive now, decided by a majority of its current ones. `lww`: the last writer by hybrid logical clock wins. `coordinated`: only a
coordination protocol's outcome changes it. `counter`: units every node draws from its own
rights without asking; a draw beyond them is refused (and more are asked for): retry.")]
pub struct VarsArgs {
    /// Which node to ask.
    #[command(flatten)]
    pub target: NodeTarget,
    /// What to do.
    #[command(subcommand)]
    pub command: VarsCommand,
}

/// `foundation vars` subcommands.
#[derive(clap::Subcommand, Debug, PartialEq)]
pub enum VarsCommand {
    /// Print one variable, or every variable the node holds (as JSON).
    Get {
        /// The variable; all when absent.
        name: Option<String>,
    },
    /// Declare a variable cluster-wide.
    Declare {
        /// The variable.
        name: String,
        /// Its type as JSON: {"int": [MIN, MAX]}, {"float": [MIN, MAX]}, {"choice": [..]},
        /// "bool", or {"record": {"FIELD": TYPE, ..}}. A counter needs none.
        #[arg(long = "type", value_name = "JSON")]
        ty: Option<String>,
        /// Its value at version 0, as JSON (a counter's initial units).
        #[arg(long, value_name = "JSON")]
        initial: String,
        /// How concurrent changes are resolved.
        #[arg(long, default_value = "cas", value_parser = ["cas", "lww", "coordinated", "counter"])]
        policy: String,
    },
    /// Write a value (JSON): with --expected, a compare-and-set of that version, won if a
    /// majority agrees; without, an `lww` write.
    Set {
        /// The variable.
        name: String,
        /// The new value, as JSON.
        value: String,
        /// The version to replace (see `get`); `cas` variables only.
        #[arg(long)]
        expected: Option<u64>,
        /// Longest wait for a majority, in milliseconds.
        #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..=60_000))]
        timeout_ms: u64,
    },
    /// Move a `cas` or `coordinated` variable to other acceptors, decided by a majority of
    /// its current ones (how it outlives restarts: each restart makes a new life).
    Move {
        /// The variable.
        name: String,
        /// The new acceptors: `alive` is this node and every member alive now; or members
        /// alive now, comma-separated, each by name or id (or at least 4 digits of an id, as
        /// `foundation members` shows it).
        #[arg(long, value_parser = parse_move_target)]
        to: String,
        /// Longest wait for a majority, in milliseconds.
        #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..=60_000))]
        timeout_ms: u64,
    },
    /// Draw units from a counter out of this node's rights.
    Draw {
        /// The counter.
        name: String,
        /// How many units.
        units: u64,
    },
    /// Add units to a counter, as this node's rights.
    Refill {
        /// The counter.
        name: String,
        /// How many units.
        units: u64,
    },
    /// Print every change of a variable, or of every variable under a prefix, as it happens:
    /// version, value, writer.
    Watch {
        /// The variable (or give --prefix).
        #[arg(required_unless_present = "prefix", conflicts_with = "prefix")]
        name: Option<String>,
        /// Every variable whose name starts with this, those declared later included.
        #[arg(long)]
        prefix: Option<String>,
        /// Stop after this many lines, the current value's included (by default, run until
        /// interrupted).
        #[arg(long)]
        count: Option<u64>,
    },
}

/// Runs the subcommand against the node.
pub async fn run(args: VarsArgs) -> Result<(), Box<dyn std::error::Error>> {
    let node = args.target.resolve().await?;
    if let VarsCommand::Watch {
        name,
        prefix,
        count,
    } = args.command
    {
        let path = match (name, prefix) {
            (Some(name), _) => format!("/watch/variables/{}", percent_encode(&name)),
            (None, prefix) => format!(
                "/watch/variables?prefix={}",
                percent_encode(&prefix.unwrap_or_default())
            ),
        };
        return watch(node, &path, count).await;
    }
    let (method, path, body, timeout) = match args.command {
        VarsCommand::Get { name: None } => {
            (Method::GET, "/variables".into(), None, REQUEST_TIMEOUT)
        }
        VarsCommand::Get { name: Some(name) } => (Method::GET, path(&name), None, REQUEST_TIMEOUT),
        VarsCommand::Declare {
            name,
            ty,
            initial,
            policy,
        } => {
            let mut body = json!({ "policy": policy, "initial": parse_value(&initial) });
            if let Some(ty) = ty {
                let ty: Value = serde_json::from_str(&ty).map_err(|e| format!("--type: {e}"))?;
                body["type"] = ty;
            }
            (Method::PUT, path(&name), Some(body), REQUEST_TIMEOUT)
        }
        VarsCommand::Set {
            name,
            value,
            expected: Some(expected),
            timeout_ms,
        } => {
            let body = json!({ "expected": expected, "value": parse_value(&value), "timeout_ms": timeout_ms });
            let timeout = REQUEST_TIMEOUT + Duration::from_millis(timeout_ms);
            (Method::POST, path(&name), Some(body), timeout)
        }
        VarsCommand::Move {
            name,
            to,
            timeout_ms,
        } => {
            let body = json!({ "move_to": move_target_json(&to), "timeout_ms": timeout_ms });
            let timeout = REQUEST_TIMEOUT + Duration::from_millis(timeout_ms);
            (Method::POST, path(&name), Some(body), timeout)
        }
        VarsCommand::Set { name, value, .. } => {
            let body = json!({ "value": parse_value(&value) });
            (Method::POST, path(&name), Some(body), REQUEST_TIMEOUT)
        }
        VarsCommand::Draw { name, units } => {
            let body = json!({ "draw": units });
            (Method::POST, path(&name), Some(body), REQUEST_TIMEOUT)
        }
        VarsCommand::Refill { name, units } => {
            let body = json!({ "refill": units });
            (Method::POST, path(&name), Some(body), REQUEST_TIMEOUT)
        }
        VarsCommand::Watch { .. } => unreachable!("handled above"),
    };
    let answer = match method {
        Method::GET => get_json(node, &path, timeout).await,
        _ => send_json(node, method, &path, body.as_ref(), timeout).await,
    };
    match answer {
        Ok(value) => {
            out!("{}", serde_json::to_string_pretty(&value)?);
            Ok(())
        }
        Err(HttpError::Status { status, body, .. }) => Err(refusal(status, &body).into()),
        Err(error) => Err(format!("node at {node}: {error}").into()),
    }
}

/// Follows `GET /watch/variables/{name}` (or `?prefix=`) and prints one line per value: the
/// current ones, then each change; stops after `count` lines if given.
async fn watch(
    node: std::net::SocketAddr,
    path: &str,
    count: Option<u64>,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut printed = 0;
    let followed = stream_lines(node, path, REQUEST_TIMEOUT, |line| {
        say!("{}", watch_line(&line));
        printed += 1;
        count.is_none_or(|c| printed < c)
    })
    .await;
    match followed {
        Ok(()) => Ok(()),
        Err(HttpError::Status { status, body, .. }) => Err(refusal(status, &body).into()),
        Err(error) => Err(format!("node at {node}: {error}").into()),
    }
}

/// One line of the watch stream, for people.
fn watch_line(line: &Value) -> String {
    let writer = &line["writer"];
    let name = line["name"]
        .as_str()
        .map_or_else(String::new, |n| format!("{n} "));
    match line["kind"].as_str() {
        Some("current") => format!(
            "{name}version {} value {} (current)",
            line["version"], line["value"]
        ),
        Some("changed") => format!(
            "{name}version {} value {} (was {}) writer {}/{}",
            line["version"],
            line["value"],
            line["old"],
            writer["node"].as_str().unwrap_or("?"),
            writer["generation"]
        ),
        Some("lagged") => format!(
            "({} events went by faster than this watch read them; changes may be missing)",
            line["skipped_events"]
        ),
        _ => line.to_string(),
    }
}

fn path(name: &str) -> String {
    format!("/variables/{}", percent_encode(name))
}

/// `--to` of `vars move`: `alive`, or members separated by commas, none empty.
fn parse_move_target(to: &str) -> Result<String, String> {
    match to.split(',').any(|member| member.trim().is_empty()) {
        true => Err("`alive`, or members alive now separated by commas (names or ids)".into()),
        false => Ok(to.to_owned()),
    }
}

/// `--to` as the HTTP API's `"move_to"`: `"alive"` or a list of members.
fn move_target_json(to: &str) -> Value {
    match to {
        "alive" => json!("alive"),
        members => json!(members.split(',').map(str::trim).collect::<Vec<_>>()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        vars: VarsArgs,
    }

    #[test]
    fn move_takes_alive_or_a_list_of_members_as_its_target() {
        let parse = |args: &[&str]| {
            let argv = std::iter::once("vars").chain(args.iter().copied());
            Cli::try_parse_from(argv).map(|c| c.vars.command)
        };
        assert_eq!(
            parse(&["move", "slots", "--to", "alive"]).ok(),
            Some(VarsCommand::Move {
                name: "slots".into(),
                to: "alive".into(),
                timeout_ms: 2000,
            })
        );
        assert!(parse(&["move", "slots", "--to", "a,,b"]).is_err());
        assert!(parse(&["move", "slots", "--to", ""]).is_err());
        assert!(parse(&["move", "slots"]).is_err());
        assert_eq!(move_target_json("alive"), json!("alive"));
        assert_eq!(
            move_target_json("api-1, 4f2a09c1"),
            json!(["api-1", "4f2a09c1"])
        );
    }

    #[test]
    fn watch_lines_show_the_value_what_it_was_and_who_changed_it() {
        let current = json!({ "kind": "current", "version": 2, "value": 6 });
        assert_eq!(watch_line(&current), "version 2 value 6 (current)");
        let changed = json!({ "kind": "changed", "version": 3, "old": 6, "value": 7,
            "writer": { "node": "ab", "generation": 1 } });
        assert_eq!(
            watch_line(&changed),
            "version 3 value 7 (was 6) writer ab/1"
        );
        let named = json!({ "kind": "current", "name": "room.a", "version": 1, "value": 0 });
        assert_eq!(watch_line(&named), "room.a version 1 value 0 (current)");
        let lagged = json!({ "kind": "lagged", "skipped_events": 4 });
        assert!(watch_line(&lagged).starts_with("(4 events"));
    }
}
