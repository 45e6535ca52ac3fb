//! A tiny HTTP/1.1 client for the CLI (`foundation members --node ADDR`, `foundation config`).

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{ACCEPT, CONTENT_TYPE, HOST};
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
    if !path.starts_with('/') {
        return Err(HttpError::InvalidPath(path.to_owned()));
    }
    let body = body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string()));
    match tokio::time::timeout(timeout, fetch(addr, method, path, body)).await {
        Ok(result) => result,
        Err(_) => Err(HttpError::Timeout {
            addr,
            path: path.to_owned(),
            after: timeout,
        }),
    }
}

/// Aborts the connection driver when the request is done or abandoned.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn fetch(
    addr: SocketAddr,
    method: Method,
    path: &str,
    body: Bytes,
) -> Result<Value, HttpError> {
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
    let _driver = AbortOnDrop(tokio::spawn(async move {
        let _ = connection.await;
    }));
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header(HOST, addr.to_string())
        .header(ACCEPT, "application/json")
        .header(CONTENT_TYPE, "application/json")
        .body(Full::new(body))
        .map_err(|_| HttpError::InvalidPath(path.to_owned()))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| protocol(&e))?;
    let status = response.status();
    let body = Limited::new(response.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
        .map_err(|e| protocol(&e))?
        .to_bytes();
    if !status.is_success() {
        return Err(status_error(addr, path, status.as_u16(), &body));
    }
    serde_json::from_slice(&body).map_err(|e| HttpError::Json {
        addr,
        path: path.to_owned(),
        reason: e.to_string(),
    })
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
