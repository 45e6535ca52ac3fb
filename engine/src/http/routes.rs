//! The route table and how a request becomes a response. No I/O here, so every answer can be
//! checked without a socket.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Method, Response, StatusCode};
use prometheus_client::registry::Registry;
use serde_json::Value;
use tokio::sync::mpsc;

use super::exposition::{
    to_classic, wants_openmetrics, CLASSIC_CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE,
};
use super::health::Health;
use super::status_page;

const JSON: &str = "application/json";
const TEXT: &str = "text/plain; charset=utf-8";
const HTML: &str = "text/html; charset=utf-8";

/// A closure producing a JSON document on each request.
pub(crate) type JsonRoute = Arc<dyn Fn() -> Value + Send + Sync>;
/// A closure answering `GET` on paths under a prefix, given the rest of the path
/// (percent-decoded).
pub(crate) type JsonUnderRoute = Arc<dyn Fn(&str) -> (StatusCode, Value) + Send + Sync>;
/// A closure producing the node's health on each request.
pub(crate) type HealthRoute = Arc<dyn Fn() -> Health + Send + Sync>;
/// The answer of a write route: a status and a JSON body.
pub type WriteAnswer = Pin<Box<dyn Future<Output = (StatusCode, Value)> + Send>>;
/// A closure handling `PUT`, `POST` or `DELETE` under a path prefix.
pub(crate) type WriteRoute = Arc<dyn Fn(WriteRequest) -> WriteAnswer + Send + Sync>;

/// A write route, the methods it documents and the bodies it takes.
#[derive(Clone)]
pub(crate) struct WriteEntry {
    pub methods: Vec<Method>,
    pub route: WriteRoute,
    pub body: BodyLimit,
}

/// How large a write route's body may be and how long it may take to arrive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BodyLimit {
    /// Largest body, in bytes; a larger one is answered 413.
    pub max_bytes: usize,
    /// Longest the body may take once the head is in (408 after); `None`: the server's
    /// [`Limits::body_read_timeout`](super::Limits::body_read_timeout).
    pub read_timeout: Option<std::time::Duration>,
}

/// The answer of a download route: the bytes to send, or a status and JSON body.
pub type DownloadAnswer = Pin<Box<dyn Future<Output = Result<Bytes, (StatusCode, Value)>> + Send>>;
/// A closure answering `GET` on one path with bytes (`application/octet-stream`).
pub(crate) type DownloadRoute = Arc<dyn Fn() -> DownloadAnswer + Send + Sync>;

/// How a request matches the write routes.
pub(crate) enum WriteMatch {
    /// No write route's prefix: a read.
    None,
    /// A documented method on a write route, with the decoded rest of the path.
    Route(WriteEntry, String),
    /// A write route's prefix with a method it does not take; the methods it does take.
    WrongMethod(Vec<Method>),
    /// A write route's prefix followed by malformed percent-encoding or bytes that are not UTF-8.
    BadPath,
}

/// The answer of a stream route: the receiving end of a stream of chunks (see
/// [`LineSender`](super::LineSender)), or a status and JSON body when there is nothing to stream.
pub type StreamAnswer =
    Pin<Box<dyn Future<Output = Result<mpsc::Receiver<Bytes>, (StatusCode, Value)>> + Send>>;
/// A closure answering `GET` under a path prefix with a stream.
pub(crate) type StreamRoute = Arc<dyn Fn(StreamRequest) -> StreamAnswer + Send + Sync>;

/// A request to a stream route.
#[derive(Clone, Debug)]
pub struct StreamRequest {
    /// The path after the route's prefix, percent-decoded.
    pub rest: String,
    /// The query string (after `?`, as sent), empty if none.
    pub query: String,
}

/// A request to a write route.
#[derive(Clone, Debug)]
pub struct WriteRequest {
    /// `PUT`, `POST` or `DELETE`.
    pub method: Method,
    /// The path after the route's prefix, percent-decoded.
    pub rest: String,
    /// The query string (after `?`, as sent), empty if none.
    pub query: String,
    /// The body (at most the server's body limit).
    pub body: Bytes,
}

/// The registry `/metrics` encodes: shared read-only once built, or behind a lock when metrics
/// are still being registered while the server runs.
#[derive(Clone)]
pub enum MetricsSource {
    /// A registry no one registers into any more.
    Shared(Arc<Registry>),
    /// A registry that may still change.
    Locked(Arc<Mutex<Registry>>),
}

impl fmt::Debug for MetricsSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MetricsSource::Shared(_) => "MetricsSource::Shared",
            MetricsSource::Locked(_) => "MetricsSource::Locked",
        })
    }
}

impl From<Arc<Registry>> for MetricsSource {
    fn from(registry: Arc<Registry>) -> Self {
        MetricsSource::Shared(registry)
    }
}

impl From<Arc<Mutex<Registry>>> for MetricsSource {
    fn from(registry: Arc<Mutex<Registry>>) -> Self {
        MetricsSource::Locked(registry)
    }
}

impl MetricsSource {
    /// The registry as OpenMetrics text.
    fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        match self {
            MetricsSource::Shared(registry) => {
                prometheus_client::encoding::text::encode(&mut text, registry)?
            }
            MetricsSource::Locked(registry) => {
                // A panic elsewhere while holding the lock leaves the registry itself intact.
                let registry = registry
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                prometheus_client::encoding::text::encode(&mut text, &registry)?;
            }
        }
        Ok(text)
    }
}

/// Everything the server answers.
#[derive(Clone, Default)]
pub(crate) struct Routes {
    pub metrics: Option<MetricsSource>,
    pub health: Option<HealthRoute>,
    pub json: BTreeMap<String, JsonRoute>,
    /// `GET` routes by path prefix (`/config/` answers `/config/{key}`).
    pub json_under: BTreeMap<String, JsonUnderRoute>,
    /// Write routes by path prefix.
    pub writes: BTreeMap<String, WriteEntry>,
    /// Streaming `GET` routes by path prefix.
    pub streams: BTreeMap<String, StreamRoute>,
    /// `GET` routes answered with bytes, by exact path.
    pub downloads: BTreeMap<String, DownloadRoute>,
    /// What `/status.json` shows; without it, health and every JSON route.
    pub status: Option<JsonRoute>,
}

impl Routes {
    /// How `method path` matches the write routes. `GET` and `HEAD` are reads wherever they go.
    pub(crate) fn write_route(&self, method: &Method, path: &str) -> WriteMatch {
        if is_read(method) {
            return WriteMatch::None;
        }
        let found = self.writes.iter().find_map(|(prefix, entry)| {
            let rest = path.strip_prefix(prefix.as_str())?;
            Some((entry, rest))
        });
        let Some((entry, rest)) = found else {
            return WriteMatch::None;
        };
        if !entry.methods.contains(method) {
            return WriteMatch::WrongMethod(entry.methods.clone());
        }
        match percent_decode(rest) {
            Some(rest) => WriteMatch::Route(entry.clone(), rest),
            None => WriteMatch::BadPath,
        }
    }

    /// The stream route for `GET path`, with the rest of the path, if there is one.
    pub(crate) fn stream_route(
        &self,
        method: &Method,
        path: &str,
    ) -> Option<(StreamRoute, Option<String>)> {
        if method != Method::GET {
            return None;
        }
        self.streams.iter().find_map(|(prefix, route)| {
            let rest = path.strip_prefix(prefix.as_str())?;
            Some((route.clone(), percent_decode(rest)))
        })
    }

    /// The download route for a read of `path`, if there is one.
    pub(crate) fn download_route(&self, method: &Method, path: &str) -> Option<DownloadRoute> {
        is_read(method)
            .then(|| self.downloads.get(path).cloned())
            .flatten()
    }

    /// The response to `method path` (a read: `HEAD` answers as `GET`, and the server sends
    /// the head alone).
    /// `accept` is the request's `Accept` header, which picks the format of `/metrics`.
    pub(crate) fn respond(
        &self,
        method: &Method,
        path: &str,
        accept: Option<&str>,
    ) -> Response<Full<Bytes>> {
        if !is_read(method) {
            return method_not_allowed(&[Method::GET, Method::HEAD]);
        }
        match path {
            "/metrics" => self.metrics(accept),
            "/health" => self.health_response(),
            "/" | "/status" => with_type(StatusCode::OK, HTML, status_page::PAGE.to_owned()),
            "/status.json" => json(StatusCode::OK, &self.status_json()),
            _ => match self.json.get(path) {
                Some(route) => json(StatusCode::OK, &route()),
                None => self.respond_under(path),
            },
        }
    }

    /// The answer of the `GET` prefix route `path` falls under, if any.
    fn respond_under(&self, path: &str) -> Response<Full<Bytes>> {
        let found = self.json_under.iter().find_map(|(prefix, route)| {
            let rest = path.strip_prefix(prefix.as_str())?;
            (!rest.is_empty()).then_some((route, rest))
        });
        let Some((route, rest)) = found else {
            return plain(StatusCode::NOT_FOUND, "not found; see /status\n");
        };
        match percent_decode(rest) {
            Some(rest) => {
                let (status, value) = route(&rest);
                json(status, &value)
            }
            None => json(
                StatusCode::BAD_REQUEST,
                &serde_json::json!({ "error": "malformed percent-encoding in the path" }),
            ),
        }
    }

    fn metrics(&self, accept: Option<&str>) -> Response<Full<Bytes>> {
        let Some(source) = &self.metrics else {
            return plain(
                StatusCode::NOT_FOUND,
                "no metrics registry on this server\n",
            );
        };
        match source.encode() {
            Ok(text) if wants_openmetrics(accept) => {
                with_type(StatusCode::OK, OPENMETRICS_CONTENT_TYPE, text)
            }
            Ok(text) => with_type(StatusCode::OK, CLASSIC_CONTENT_TYPE, to_classic(&text)),
            Err(_) => plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "metrics could not be encoded\n",
            ),
        }
    }

    /// The node's health; without a health closure the server being up is all there is to say.
    pub(crate) fn health(&self) -> Health {
        match &self.health {
            Some(health) => health(),
            None => Health::healthy("serving"),
        }
    }

    fn health_response(&self) -> Response<Full<Bytes>> {
        let health = self.health();
        let status = if health.healthy {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        let body = serde_json::to_value(&health).unwrap_or(Value::Null);
        json(status, &body)
    }

    /// The document the status page draws: the server's own, or its health and JSON routes.
    fn status_json(&self) -> Value {
        if let Some(status) = &self.status {
            return status();
        }
        let routes: serde_json::Map<String, Value> = self
            .json
            .iter()
            .map(|(path, route)| (path.clone(), route()))
            .collect();
        let health = serde_json::to_value(self.health()).unwrap_or(Value::Null);
        serde_json::json!({ "health": health, "routes": routes })
    }
}

/// Decodes `%XX` escapes; `None` for a malformed escape or bytes that are not UTF-8.
pub fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Escapes every byte but unreserved URL characters, so any key fits in one path segment.
pub fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Whether `method` only reads.
pub(crate) fn is_read(method: &Method) -> bool {
    method == Method::GET || method == Method::HEAD
}

/// 405, naming the methods the path takes.
pub(crate) fn method_not_allowed(methods: &[Method]) -> Response<Full<Bytes>> {
    let allow = methods
        .iter()
        .map(Method::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    let why = serde_json::json!({ "error": format!("this path takes {allow}") });
    let mut response = json(StatusCode::METHOD_NOT_ALLOWED, &why);
    if let Ok(allow) = HeaderValue::from_str(&allow) {
        response.headers_mut().insert(ALLOW, allow);
    }
    response
}

pub(crate) fn json(status: StatusCode, value: &Value) -> Response<Full<Bytes>> {
    // Serialising a `Value` cannot fail; the fallback keeps this path panic-free regardless.
    let mut body = serde_json::to_string_pretty(value).unwrap_or_else(|_| "null".to_owned());
    body.push('\n');
    with_type(status, JSON, body)
}

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    with_type(status, TEXT, text.to_owned())
}

fn with_type(
    status: StatusCode,
    content_type: &'static str,
    body: String,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_paths_and_methods() {
        let routes = Routes::default();
        assert_eq!(
            routes.respond(&Method::GET, "/nope", None).status(),
            StatusCode::NOT_FOUND
        );
        let post = routes.respond(&Method::POST, "/health", None);
        assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(post.headers()[ALLOW], "GET, HEAD");
        assert_eq!(
            routes.respond(&Method::HEAD, "/health", None).status(),
            StatusCode::OK
        );
    }

    #[test]
    fn prefix_routes_get_the_decoded_rest_of_the_path() {
        let mut routes = Routes::default();
        routes.json_under.insert(
            "/config/".to_owned(),
            Arc::new(|key: &str| match key {
                "a b" => (StatusCode::OK, serde_json::json!(1)),
                _ => (StatusCode::NOT_FOUND, serde_json::json!({ "error": key })),
            }),
        );
        let found = routes.respond(&Method::GET, "/config/a%20b", None);
        assert_eq!(found.status(), StatusCode::OK);
        assert_eq!(found.headers()[CONTENT_TYPE], JSON);
        let missing = routes.respond(&Method::GET, "/config/zz", None);
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
        assert_eq!(missing.headers()[CONTENT_TYPE], JSON);
        assert_eq!(
            routes.respond(&Method::GET, "/config/%zz", None).status(),
            StatusCode::BAD_REQUEST
        );
        // The prefix alone is not a key, and other paths are not under it.
        assert_eq!(
            routes.respond(&Method::GET, "/config/", None).status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            routes.respond(&Method::GET, "/configx", None).status(),
            StatusCode::NOT_FOUND
        );
    }

    #[test]
    fn percent_encoding_round_trips_and_refuses_garbage() {
        let key = "limits/api key%é";
        let encoded = percent_encode(key);
        assert!(!encoded.contains('/') && !encoded.contains(' '));
        assert_eq!(percent_decode(&encoded).as_deref(), Some(key));
        assert_eq!(percent_decode("a%2"), None);
        assert_eq!(percent_decode("a%zz"), None);
        assert_eq!(percent_decode("%FF"), None);
    }

    #[test]
    fn health_decides_the_status() {
        let mut routes = Routes::default();
        assert_eq!(
            routes.respond(&Method::GET, "/health", None).status(),
            StatusCode::OK
        );
        routes.health = Some(Arc::new(|| Health::unhealthy("alone")));
        assert_eq!(
            routes.respond(&Method::GET, "/health", None).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
}
