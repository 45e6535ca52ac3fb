//! What the commands that act on a node share: one request with the node's refusal as one
//! clear line, and following a stream of newline-delimited JSON.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use foundation_engine::http::{send_bytes, stream_lines, HttpError, Method};
use serde_json::Value;

/// How long the node may take to accept a stream before the command gives up.
const STREAM_OPEN_TIMEOUT: Duration = Duration::from_secs(5);

/// `method path` with `body` to the node; its refusal becomes one line with its reason.
pub async fn ask(
    node: SocketAddr,
    method: Method,
    path: &str,
    body: Bytes,
    timeout: Duration,
) -> Result<Value, String> {
    send_bytes(node, method, path, body, timeout)
        .await
        .map_err(|error| explain(node, error))
}

/// Follows the stream at `path`, handing each document to `on_line` until the node ends it or
/// `on_line` returns false.
pub async fn follow(
    node: SocketAddr,
    path: &str,
    on_line: impl FnMut(Value) -> bool,
) -> Result<(), String> {
    stream_lines(node, path, STREAM_OPEN_TIMEOUT, on_line)
        .await
        .map_err(|error| explain(node, error))
}

fn explain(node: SocketAddr, error: HttpError) -> String {
    match error {
        HttpError::Status { status, body, .. } => refusal(status, &body),
        error => format!("node at {node}: {error}"),
    }
}

/// The node's refusal as one line: its error text when it sent one.
pub fn refusal(status: u16, body: &str) -> String {
    let error = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| body.to_owned());
    format!("refused ({status}): {error}")
}

/// Payload JSON as the node sends it (`data` text, or `data_hex`) as one printable string.
pub fn payload_text(value: &Value) -> String {
    match (value["data"].as_str(), value["data_hex"].as_str()) {
        (Some(text), _) => text.to_owned(),
        (None, Some(hex)) => format!("(binary, hex) {hex}"),
        (None, None) => String::new(),
    }
}
