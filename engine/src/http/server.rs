//! The server: a bounded accept loop, one hyper HTTP/1 connection per task, and graceful
//! shutdown.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Either, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::Request;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::{JoinHandle, JoinSet};

use super::error::HttpError;
use super::health::Health;
use super::routes::{
    json, MetricsSource, Routes, StreamAnswer, StreamRequest, WriteAnswer, WriteRequest,
};
use super::stream::ChannelBody;

/// A response: whole, or streamed from a channel.
type Answer = hyper::Response<Either<Full<Bytes>, ChannelBody>>;

/// Largest request body a write route accepts.
const WRITE_BODY_MAX: usize = 1 << 20;

/// Bounds that keep a misbehaving client from exhausting the node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once; further clients wait in the kernel's backlog. Default 64:
    /// far more than scrapers and operators need, few enough to be harmless.
    pub max_connections: usize,
    /// Longest a client may take to send a request's headers. Default 5 s.
    pub header_read_timeout: Duration,
    /// Largest request head, in bytes. Default 16 KiB (hyper's minimum is 8 KiB).
    pub max_header_bytes: usize,
    /// A connection is closed (gracefully) after this long, so idle keep-alive clients cannot
    /// hold slots forever. Default 60 s.
    pub max_connection_age: Duration,
    /// How long shutdown waits for requests in flight. Default 2 s.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 64,
            header_read_timeout: Duration::from_secs(5),
            max_header_bytes: 16 << 10,
            max_connection_age: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(2),
        }
    }
}

/// Smallest read buffer hyper accepts; a smaller `max_header_bytes` is raised to it.
const HYPER_MIN_BUF: usize = 8192;

/// A configured, not yet started, HTTP server.
#[derive(Clone)]
pub struct HttpServer {
    addr: SocketAddr,
    routes: Routes,
    limits: Limits,
}

/// Adds routes and limits to a server; see the [module documentation](super).
#[derive(Clone)]
pub struct HttpServerBuilder {
    server: HttpServer,
}

impl HttpServer {
    /// A server that will listen on `addr` (port 0 picks a free port).
    pub fn builder(addr: SocketAddr) -> HttpServerBuilder {
        HttpServerBuilder {
            server: HttpServer {
                addr,
                routes: Routes::default(),
                limits: Limits::default(),
            },
        }
    }

    /// Binds the address and starts serving on the current tokio runtime.
    pub fn start(self) -> Result<HttpHandle, HttpError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| HttpError::NoRuntime)?;
        let listener = bind(self.addr)?;
        let local_addr = listener.local_addr().map_err(|source| HttpError::Bind {
            addr: self.addr,
            source,
        })?;
        let listener = {
            let _entered = runtime.enter();
            TcpListener::from_std(listener).map_err(|source| HttpError::Bind {
                addr: self.addr,
                source,
            })?
        };
        let (shutdown, signal) = watch::channel(false);
        let task = runtime.spawn(accept_loop(
            listener,
            Arc::new(self.routes),
            self.limits,
            signal,
        ));
        tracing::info!(addr = %local_addr, "HTTP server listening");
        Ok(HttpHandle {
            local_addr,
            shutdown,
            task,
        })
    }
}

impl HttpServerBuilder {
    /// Serves `registry` at `/metrics`.
    pub fn metrics(mut self, registry: impl Into<MetricsSource>) -> Self {
        self.server.routes.metrics = Some(registry.into());
        self
    }

    /// Answers `/health` with `health()`: 200 when healthy, 503 otherwise. Without it, `/health`
    /// says the server is serving.
    pub fn health(mut self, health: impl Fn() -> Health + Send + Sync + 'static) -> Self {
        self.server.routes.health = Some(Arc::new(health));
        self
    }

    /// Answers `GET path` with the JSON `route()` returns at that moment; also listed on
    /// `/status`. `path` starts with `/`; `/metrics`, `/health` and `/status` are taken.
    pub fn json(
        mut self,
        path: impl Into<String>,
        route: impl Fn() -> Value + Send + Sync + 'static,
    ) -> Self {
        self.server.routes.json.insert(path.into(), Arc::new(route));
        self
    }

    /// Answers `GET` on paths under `prefix` (which ends with `/`), other than the prefix
    /// itself, with the status and JSON `route` returns for the rest of the path
    /// (percent-decoded); e.g. `/config/` answers `/config/{key}`. Exact [`json`](Self::json)
    /// routes take precedence.
    pub fn json_under(
        mut self,
        prefix: impl Into<String>,
        route: impl Fn(&str) -> (hyper::StatusCode, Value) + Send + Sync + 'static,
    ) -> Self {
        self.server
            .routes
            .json_under
            .insert(prefix.into(), Arc::new(route));
        self
    }

    /// Answers `PUT`, `POST` and `DELETE` on paths under `prefix` (which ends with `/`) with
    /// what `route` returns for the request. Bind such a server to loopback only: there is no
    /// authentication.
    pub fn write(
        mut self,
        prefix: impl Into<String>,
        route: impl Fn(WriteRequest) -> WriteAnswer + Send + Sync + 'static,
    ) -> Self {
        self.server
            .routes
            .writes
            .insert(prefix.into(), Arc::new(route));
        self
    }

    /// Answers `GET` on paths under `prefix` with the stream `route` returns (or its error);
    /// the response lasts until the route's sender is dropped or the client goes away. A
    /// stream holds one of the server's connections while it lasts.
    pub fn stream(
        mut self,
        prefix: impl Into<String>,
        route: impl Fn(StreamRequest) -> StreamAnswer + Send + Sync + 'static,
    ) -> Self {
        self.server
            .routes
            .streams
            .insert(prefix.into(), Arc::new(route));
        self
    }

    /// Answers `/status.json`, which the `/status` page draws, with `status()`: an object with
    /// any of `node`, `health`, `members`, `services`, `variables`, `agents` (drawn as tables)
    /// and `routes` (shown as JSON). Without it, `/status.json` holds the health and every
    /// [`json`](Self::json) route.
    pub fn status(mut self, status: impl Fn() -> Value + Send + Sync + 'static) -> Self {
        self.server.routes.status = Some(Arc::new(status));
        self
    }

    /// Replaces the default limits.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.server.limits = limits;
        self
    }

    /// The configured server.
    pub fn build(self) -> HttpServer {
        self.server
    }

    /// Builds and starts the server; see [`HttpServer::start`].
    pub fn start(self) -> Result<HttpHandle, HttpError> {
        self.server.start()
    }
}

/// A running server. Dropping it stops the server too; [`shutdown`](Self::shutdown) also
/// waits for requests in flight.
#[derive(Debug)]
pub struct HttpHandle {
    local_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl HttpHandle {
    /// The address actually bound (the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting, lets requests in flight finish (up to the grace period), and returns
    /// when the server is gone.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        // The task ends on its own; an error here means it panicked, which there is nothing
        // left to do about at shutdown.
        let _ = self.task.await;
    }
}

fn bind(addr: SocketAddr) -> Result<std::net::TcpListener, HttpError> {
    let listener =
        std::net::TcpListener::bind(addr).map_err(|source| HttpError::Bind { addr, source })?;
    listener
        .set_nonblocking(true)
        .map_err(|source| HttpError::Bind { addr, source })?;
    Ok(listener)
}

/// Accepts connections while a slot is free, until shutdown is signalled or the handle dropped.
async fn accept_loop(
    listener: TcpListener,
    routes: Arc<Routes>,
    limits: Limits,
    mut signal: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = accept(&listener, &slots) => accepted,
            _ = signal.changed() => break,
        };
        if let Some((stream, peer, slot)) = accepted {
            let routes = routes.clone();
            connections.spawn(serve(stream, peer, routes, limits, signal.clone(), slot));
        }
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    let drain = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(limits.shutdown_grace, drain)
        .await
        .is_err()
    {
        tracing::debug!("HTTP connections still open after the grace period are dropped");
    }
}

/// Waits for a free slot, then a connection. Accept errors (out of file descriptors, a
/// connection reset before it was accepted) are logged and retried after a pause.
async fn accept(
    listener: &TcpListener,
    slots: &Arc<Semaphore>,
) -> Option<(TcpStream, SocketAddr, OwnedSemaphorePermit)> {
    let slot = slots.clone().acquire_owned().await.ok()?;
    match listener.accept().await {
        Ok((stream, peer)) => Some((stream, peer, slot)),
        Err(error) => {
            tracing::warn!(%error, "HTTP accept failed");
            tokio::time::sleep(Duration::from_millis(50)).await;
            None
        }
    }
}

/// Whether a client at `peer` may use the write routes. The API has no authentication, and an
/// operator may well bind it to every interface for Prometheus; a write from another machine
/// would change cluster-wide state, so only this machine may write.
pub(crate) fn may_write(peer: SocketAddr) -> bool {
    match peer.ip() {
        IpAddr::V4(ip) => ip.is_loopback(),
        IpAddr::V6(ip) => {
            ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// A stream's, a write route's, or the read-only routes' answer.
async fn answer(
    routes: &Routes,
    peer: SocketAddr,
    request: Request<Incoming>,
    shutdown: watch::Receiver<bool>,
) -> Answer {
    if let Some((route, rest)) = routes.stream_route(request.method(), request.uri().path()) {
        return stream(route, rest, request.uri().query(), shutdown).await;
    }
    write(routes, peer, request).await.map(Either::Left)
}

/// Starts the stream route's producer and answers with its chunks as they come.
async fn stream(
    route: super::routes::StreamRoute,
    rest: Option<String>,
    query: Option<&str>,
    shutdown: watch::Receiver<bool>,
) -> Answer {
    let Some(rest) = rest else {
        let why = serde_json::json!({ "error": "malformed percent-encoding in the path" });
        return json(hyper::StatusCode::BAD_REQUEST, &why).map(Either::Left);
    };
    let query = query.unwrap_or_default().to_owned();
    match route(StreamRequest { rest, query }).await {
        Ok(chunks) => {
            let chunks = until_shutdown(chunks, shutdown);
            let mut response = hyper::Response::new(Either::Right(ChannelBody(chunks)));
            let headers = response.headers_mut();
            headers.insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/x-ndjson"),
            );
            headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err((status, value)) => json(status, &value).map(Either::Left),
    }
}

/// The chunks of `chunks` until the server shuts down: a stream never finishes by itself, and
/// a graceful shutdown waits for responses in flight, so without this every open stream would
/// hold the shutdown for its whole grace period.
fn until_shutdown(
    mut chunks: mpsc::Receiver<Bytes>,
    mut shutdown: watch::Receiver<bool>,
) -> mpsc::Receiver<Bytes> {
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(async move {
        loop {
            let chunk = tokio::select! {
                chunk = chunks.recv() => chunk,
                _ = shutdown.wait_for(|stop| *stop) => None,
            };
            let Some(chunk) = chunk else { return };
            if tx.send(chunk).await.is_err() {
                return;
            }
        }
    });
    rx
}

/// A write route's answer, or the read-only routes'.
async fn write(
    routes: &Routes,
    peer: SocketAddr,
    request: Request<Incoming>,
) -> hyper::Response<Full<Bytes>> {
    let Some((route, rest)) = routes.write_route(request.method(), request.uri().path()) else {
        return routes.respond(request.method(), request.uri().path());
    };
    if !may_write(peer) {
        let why = serde_json::json!({
            "error": format!("writes are accepted only from this machine (loopback), not from {}", peer.ip())
        });
        return json(hyper::StatusCode::FORBIDDEN, &why);
    }
    let method = request.method().clone();
    let query = request.uri().query().unwrap_or_default().to_owned();
    let body = match Limited::new(request.into_body(), WRITE_BODY_MAX)
        .collect()
        .await
    {
        Ok(body) => body.to_bytes(),
        Err(error) => {
            let why = serde_json::json!({ "error": format!("unreadable body: {error}") });
            return json(hyper::StatusCode::BAD_REQUEST, &why);
        }
    };
    let (status, value) = route(WriteRequest {
        method,
        rest,
        query,
        body,
    })
    .await;
    json(status, &value)
}

/// Serves one connection until the client closes it, it errs, it gets too old, or shutdown.
async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    routes: Arc<Routes>,
    limits: Limits,
    mut signal: watch::Receiver<bool>,
    _slot: OwnedSemaphorePermit,
) {
    let streams_stop = signal.clone();
    let service = service_fn(move |request: Request<Incoming>| {
        let routes = routes.clone();
        let shutdown = streams_stop.clone();
        async move { Ok::<_, Infallible>(answer(&routes, peer, request, shutdown).await) }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(HYPER_MIN_BUF));
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let finished = tokio::select! {
        result = connection.as_mut() => Some(result),
        _ = signal.changed() => None,
        _ = tokio::time::sleep(limits.max_connection_age) => None,
    };
    let result = match finished {
        Some(result) => result,
        None => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = result {
        // Bad requests and timeouts are the client's problem, not the node's.
        tracing::debug!(%error, "HTTP connection ended with an error");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{stream_lines, LineSender};

    /// A stream that would last forever ends when the server shuts down, well within the
    /// grace period, after the lines sent before.
    #[tokio::test]
    async fn open_streams_end_at_shutdown() {
        let (lines, chunks) = LineSender::channel();
        let chunks = std::sync::Mutex::new(Some(chunks));
        let server = HttpServer::builder("127.0.0.1:0".parse().unwrap())
            .stream("/forever", move |_| {
                let taken = chunks.lock().unwrap().take();
                Box::pin(async move { taken.ok_or((hyper::StatusCode::GONE, Value::Null)) })
            })
            .start()
            .unwrap();
        let addr = server.local_addr();
        assert!(lines.send(&serde_json::json!(1)).await);
        let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
        let client = tokio::spawn(async move {
            stream_lines(addr, "/forever", Duration::from_secs(5), |line| {
                let _ = seen_tx.send(line);
                true
            })
            .await
        });
        assert_eq!(seen.recv().await, Some(serde_json::json!(1)));
        let started = std::time::Instant::now();
        server.shutdown().await;
        let ended = tokio::time::timeout(Duration::from_secs(5), client).await;
        assert!(ended.is_ok(), "the client's stream ended");
        assert!(
            started.elapsed() < Limits::default().shutdown_grace,
            "{:?}",
            started.elapsed()
        );
        drop(lines);
    }

    #[test]
    fn only_loopback_clients_may_write() {
        for allowed in [
            "127.0.0.1:9",
            "127.3.2.1:9",
            "[::1]:9",
            "[::ffff:127.0.0.1]:9",
        ] {
            assert!(may_write(allowed.parse().unwrap()), "{allowed}");
        }
        for refused in [
            "10.0.0.7:9",
            "192.168.1.2:9",
            "[fe80::1]:9",
            "[::ffff:10.0.0.1]:9",
        ] {
            assert!(!may_write(refused.parse().unwrap()), "{refused}");
        }
    }
}
