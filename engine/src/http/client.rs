//! A tiny HTTP/1.1 client for the CLI (`foundation members --node ADDR`, `foundation config`).

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use super::error::HttpError;

/// Largest response body accepted, so a wrong address cannot make the CLI buffer without end.
const MAX_BODY_BYTES: usize = 16 << 20;

/// Longest part of an error body kept in [`HttpError::Status`].
const ERROR_BODY_BYTES: usize = 1024;

/// `GET path` from the node at `addr`, parsed as JSON, all within `timeout`.
///
/// A non-2xx answer is [`HttpError::Status`] with the body, which for `/health` says why the
/// node is unhealthy.
pub async fn get_json(addr: SocketAddr, path: &str, timeout: Duration) -> Result<Value, HttpError> {
    send_json(addr, Method::GET, path, None, timeout).await
}

/// `method path` with `body` as JSON (if any) to the node at `addr`, the answer parsed as
/// JSON, all within `timeout`; a non-2xx answer is [`HttpError::Status`] with the body.
pub async fn send_json(
    addr: SocketAddr,
    method: Method,
    path: &str,
    body: Option<&Value>,
    timeout: Duration,
) -> Result<Value, HttpError> {
    let body = body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string()));
    send_bytes(addr, method, path, body, timeout).await
}

/// `method path` with `body` as it is (a message to publish, a request to pass on), the
/// answer parsed as JSON, all within `timeout`; a non-2xx answer is [`HttpError::Status`].
pub async fn send_bytes(
    addr: SocketAddr,
    method: Method,
    path: &str,
    body: Bytes,
    timeout: Duration,
) -> Result<Value, HttpError> {
    send_typed(addr, Outgoing::new(method, path, body, JSON), timeout).await
}

/// `POST path` with `file` as `application/octet-stream` (an upload: a snapshot), the answer
/// parsed as JSON, all within `timeout`; a non-2xx answer is [`HttpError::Status`].
pub async fn post_file(
    addr: SocketAddr,
    path: &str,
    file: Bytes,
    timeout: Duration,
) -> Result<Value, HttpError> {
    send_typed(
        addr,
        Outgoing::new(Method::POST, path, file, OCTETS),
        timeout,
    )
    .await
}

async fn send_typed(
    addr: SocketAddr,
    request: Outgoing<'_>,
    timeout: Duration,
) -> Result<Value, HttpError> {
    let path = request.path;
    let bytes = within(addr, path, timeout, fetch(addr, request, MAX_BODY_BYTES)).await?;
    parse_json(addr, path, &bytes)
}

/// `GET path` as raw bytes, at most `max` of them (a longer answer is an error), all within
/// `timeout`; a non-2xx answer is [`HttpError::Status`].
pub async fn get_bytes(
    addr: SocketAddr,
    path: &str,
    max: usize,
    timeout: Duration,
) -> Result<Bytes, HttpError> {
    let request = Outgoing::new(Method::GET, path, Bytes::new(), JSON);
    within(addr, path, timeout, fetch(addr, request, max)).await
}

const JSON: &str = "application/json";
const OCTETS: &str = "application/octet-stream";

/// A request to send.
struct Outgoing<'a> {
    method: Method,
    path: &'a str,
    body: Bytes,
    content_type: &'static str,
}

impl<'a> Outgoing<'a> {
    fn new(method: Method, path: &'a str, body: Bytes, content_type: &'static str) -> Self {
        Self {
            method,
            path,
            body,
            content_type,
        }
    }
}

/// `exchange`, unless `path` is not a path or it takes longer than `timeout`.
async fn within<T>(
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
    exchange: impl std::future::Future<Output = Result<T, HttpError>>,
) -> Result<T, HttpError> {
    if !path.starts_with('/') {
        return Err(HttpError::InvalidPath(path.to_owned()));
    }
    tokio::time::timeout(timeout, exchange)
        .await
        .unwrap_or_else(|_| {
            Err(HttpError::Timeout {
                addr,
                path: path.to_owned(),
                after: timeout,
            })
        })
}

fn parse_json(addr: SocketAddr, path: &str, body: &[u8]) -> Result<Value, HttpError> {
    serde_json::from_slice(body).map_err(|e| HttpError::Json {
        addr,
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

/// `GET path` from the node at `addr` as a stream of newline-delimited JSON documents, each
/// handed to `on_line` as it arrives, until the node ends the stream (`Ok`), `on_line` returns
/// false (`Ok`), or the connection fails. Connecting and the answer's head must come within
/// `timeout`; the stream itself may last forever. A non-2xx answer is [`HttpError::Status`].
pub async fn stream_lines(
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
    mut on_line: impl FnMut(Value) -> bool,
) -> Result<(), HttpError> {
    if !path.starts_with('/') {
        return Err(HttpError::InvalidPath(path.to_owned()));
    }
    let request = Outgoing::new(Method::GET, path, Bytes::new(), JSON);
    let opened = tokio::time::timeout(timeout, open(addr, request));
    let (response, _driver) = opened.await.map_err(|_| HttpError::Timeout {
        addr,
        path: path.to_owned(),
        after: timeout,
    })??;
    let status = response.status();
    let mut body = response.into_body();
    if !status.is_success() {
        // A refusal's body is read within the same time as the head: only a stream may last.
        let refusal = Limited::new(body, MAX_BODY_BYTES).collect();
        let bytes = match tokio::time::timeout(timeout, refusal).await {
            Ok(Ok(collected)) => collected.to_bytes(),
            _ => Bytes::new(),
        };
        return Err(status_error(addr, path, status.as_u16(), &bytes));
    }
    let mut pending = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| HttpError::Protocol {
            addr,
            reason: e.to_string(),
        })?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        pending.extend_from_slice(&data);
        if pending.len() > MAX_BODY_BYTES {
            return Err(HttpError::Protocol {
                addr,
                reason: "a streamed line longer than 16 MiB".into(),
            });
        }
        for line in take_lines(&mut pending) {
            let value = serde_json::from_slice(&line).map_err(|e| HttpError::Json {
                addr,
                path: path.to_owned(),
                reason: e.to_string(),
            })?;
            if !on_line(value) {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// Removes the complete (newline-terminated, non-empty) lines from the front of `pending`.
fn take_lines(pending: &mut Vec<u8>) -> Vec<Vec<u8>> {
    let Some(end) = pending.iter().rposition(|b| *b == b'\n') else {
        return Vec::new();
    };
    let rest = pending.split_off(end + 1);
    let complete = std::mem::replace(pending, rest);
    complete
        .split(|b| *b == b'\n')
        .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
        .map(<[u8]>::to_vec)
        .collect()
}

/// Aborts the connection driver when the request is done or abandoned.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Sends `request` and reads the whole answer, at most `max` bytes of it.
async fn fetch(addr: SocketAddr, request: Outgoing<'_>, max: usize) -> Result<Bytes, HttpError> {
    let protocol = |e: &dyn std::fmt::Display| HttpError::Protocol {
        addr,
        reason: e.to_string(),
    };
    let path = request.path;
    let (response, _driver) = open(addr, request).await?;
    let status = response.status();
    let body = Limited::new(response.into_body(), max)
        .collect()
        .await
        .map_err(|e| protocol(&e))?
        .to_bytes();
    if !status.is_success() {
        return Err(status_error(addr, path, status.as_u16(), &body));
    }
    Ok(body)
}

/// Connects, sends the request and returns the response's head with its body still to read,
/// and the connection's driver, which must live as long as the body is read.
async fn open(
    addr: SocketAddr,
    request: Outgoing<'_>,
) -> Result<(hyper::Response<Incoming>, AbortOnDrop), HttpError> {
    let Outgoing {
        method,
        path,
        body,
        content_type,
    } = request;
    let protocol = |e: &dyn std::fmt::Display| HttpError::Protocol {
        addr,
        reason: e.to_string(),
    };
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|source| HttpError::Connect { addr, source })?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| protocol(&e))?;
    let driver = AbortOnDrop(tokio::spawn(async move {
        let _ = connection.await;
    }));
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header(HOST, addr.to_string())
        .header(ACCEPT, "application/json")
        .header(CONTENT_TYPE, content_type);
    if let Some(token) = token_from_env() {
        request = request.header(AUTHORIZATION, format!("Bearer {token}"));
    }
    let request = request
        .body(Full::new(body))
        .map_err(|_| HttpError::InvalidPath(path.to_owned()))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| protocol(&e))?;
    Ok((response, driver))
}

/// The token a node configured with `FOUNDATION_HTTP_TOKEN` asks of writers; the CLI runs in
/// the same environment as the node, or the operator exports it.
fn token_from_env() -> Option<String> {
    let token = std::env::var("FOUNDATION_HTTP_TOKEN").ok()?;
    let token = token.trim();
    (!token.is_empty()).then(|| token.to_owned())
}

fn status_error(addr: SocketAddr, path: &str, status: u16, body: &[u8]) -> HttpError {
    let body = String::from_utf8_lossy(&body[..body.len().min(ERROR_BODY_BYTES)]);
    HttpError::Status {
        addr,
        path: path.to_owned(),
        status,
        body: body.trim().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::take_lines;

    #[test]
    fn only_complete_lines_are_taken_and_the_rest_waits() {
        let mut pending = b"{\"a\":1}\n\n{\"b\":2}\n{\"c\"".to_vec();
        let lines = take_lines(&mut pending);
        assert_eq!(lines, vec![b"{\"a\":1}".to_vec(), b"{\"b\":2}".to_vec()]);
        assert_eq!(pending, b"{\"c\"".to_vec());
        assert!(take_lines(&mut pending).is_empty());
    }
}
