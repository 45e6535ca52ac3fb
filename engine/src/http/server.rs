//! The server: a bounded accept loop, one hyper HTTP/1 connection per task, and graceful
//! shutdown.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Either, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{
    HeaderValue, ACCEPT, AUTHORIZATION, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, HOST, ORIGIN,
    RETRY_AFTER,
};
use hyper::service::service_fn;
use hyper::{Method, Request};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch, Semaphore};
use tokio::task::{JoinHandle, JoinSet};

use super::access::{Access, Facts, Refusal, RouteKind};
use super::connections::{Activity, Table};
use super::error::HttpError;
use super::health::Health;
use super::routes::{
    json, method_not_allowed, BodyLimit, DownloadAnswer, DownloadRoute, MetricsSource, Routes,
    StreamAnswer, StreamRequest, WriteAnswer, WriteEntry, WriteMatch, WriteRequest,
};
use super::stream::{forward, pieces, ChannelBody};

/// A response: whole, or streamed from a channel.
type Answer = hyper::Response<Either<Full<Bytes>, ChannelBody>>;

/// Largest request body a write route accepts unless it says otherwise
/// ([`HttpServerBuilder::write_with`]).
const WRITE_BODY_MAX: usize = 1 << 20;

/// Bounds that keep a misbehaving client from exhausting the node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Connections open at once. When all are open, the oldest one with no request in
    /// progress is closed for the newcomer (see `connections`), so silent clients cannot lock
    /// out `/health`. Default 256.
    pub max_connections: usize,
    /// Longest a client may take to send a request's headers. Default 5 s.
    pub header_read_timeout: Duration,
    /// Longest a client may take to send a write's body once its headers are in. Default 10 s.
    pub body_read_timeout: Duration,
    /// Largest request head, in bytes; a larger one is answered 431. Default 16 KiB (hyper's
    /// minimum is 8 KiB).
    pub max_header_bytes: usize,
    /// Writes in progress at once; more are answered 503 at once. Default 16.
    pub max_writes: usize,
    /// Streams open at once; more are answered 503. Default 32.
    pub max_streams: usize,
    /// Longest the client of a stream or a download may leave a chunk untaken once the buffers
    /// between are full; the answer is then cut (a download cut short fails, never looks
    /// whole), so clients that stop reading cannot hold streams or downloads for good.
    /// Default 30 s.
    pub stream_stall_timeout: Duration,
    /// A connection is closed (gracefully) after this long, so idle keep-alive clients cannot
    /// hold slots forever. Default 60 s.
    pub max_connection_age: Duration,
    /// How long shutdown waits for requests in flight. Default 2 s.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 256,
            header_read_timeout: Duration::from_secs(5),
            body_read_timeout: Duration::from_secs(10),
            max_header_bytes: 16 << 10,
            max_writes: 16,
            max_streams: 32,
            stream_stall_timeout: Duration::from_secs(30),
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
    access: Access,
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
                access: Access::default(),
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
        if !self.access.writes_possible(local_addr) {
            tracing::warn!(addr = %local_addr, "the HTTP API is bound to a non-loopback address without a token: it serves reads only; set FOUNDATION_HTTP_TOKEN to allow writes");
        }
        let shared = Arc::new(Shared {
            bound: local_addr,
            writes: Arc::new(Semaphore::new(self.limits.max_writes.max(1))),
            large_bodies: Arc::new(Semaphore::new(1)),
            downloads: Arc::new(Semaphore::new(1)),
            streams: Arc::new(Semaphore::new(self.limits.max_streams.max(1))),
            routes: self.routes,
            limits: self.limits,
            access: self.access,
        });
        let task = runtime.spawn(accept_loop(listener, shared, signal));
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

    /// Answers `methods` (some of `PUT`, `POST`, `DELETE`) on paths under `prefix` (which ends
    /// with `/`) with what `route` returns for the request; other write methods there get 405.
    /// Who may write is the server's [`Access`] policy.
    pub fn write(
        self,
        prefix: impl Into<String>,
        methods: &[Method],
        route: impl Fn(WriteRequest) -> WriteAnswer + Send + Sync + 'static,
    ) -> Self {
        let body = BodyLimit {
            max_bytes: WRITE_BODY_MAX,
            read_timeout: None,
        };
        self.write_with(prefix, methods, body, route)
    }

    /// A [`write`](Self::write) route whose bodies have their own limit. Requests to routes
    /// whose limit is over the default 1 MiB are read one at a time across the server (others
    /// get 503 meanwhile), so such routes cannot make the node buffer more than one large body.
    pub fn write_with(
        mut self,
        prefix: impl Into<String>,
        methods: &[Method],
        body: BodyLimit,
        route: impl Fn(WriteRequest) -> WriteAnswer + Send + Sync + 'static,
    ) -> Self {
        let entry = WriteEntry {
            methods: methods.to_vec(),
            route: Arc::new(route),
            body,
        };
        self.server.routes.writes.insert(prefix.into(), entry);
        self
    }

    /// Answers `GET path` (exactly) with the bytes `route` produces, as
    /// `application/octet-stream`, or with its error. A read, under the server's access policy
    /// for reads.
    pub fn download(
        mut self,
        path: impl Into<String>,
        route: impl Fn() -> DownloadAnswer + Send + Sync + 'static,
    ) -> Self {
        self.server
            .routes
            .downloads
            .insert(path.into(), Arc::new(route));
        self
    }

    /// Replaces the default access policy (loopback writes, no token).
    pub fn access(mut self, access: Access) -> Self {
        self.server.access = access;
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

/// What every connection of one server shares.
struct Shared {
    routes: Routes,
    limits: Limits,
    access: Access,
    /// The address actually bound, which the access policy judges.
    bound: SocketAddr,
    /// Permits for writes in progress.
    writes: Arc<Semaphore>,
    /// The one permit for a body over the default limit.
    large_bodies: Arc<Semaphore>,
    /// The one permit for a download being sent.
    downloads: Arc<Semaphore>,
    /// Permits for open streams.
    streams: Arc<Semaphore>,
}

/// Accepts connections until shutdown is signalled or the handle dropped, closing the oldest
/// idle connection when the table is full.
async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut signal: watch::Receiver<bool>,
) {
    let mut table = Table::new(shared.limits.max_connections);
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = accept(&listener) => accepted,
            Some(ended) = connections.join_next(), if !connections.is_empty() => {
                if let Ok(id) = ended {
                    table.closed(id);
                }
                continue;
            }
            _ = signal.changed() => break,
        };
        let Some((stream, peer)) = accepted else {
            continue;
        };
        let Some(admitted) = table.admit() else {
            // Every connection has a request in progress: shed this one rather than queue it.
            tracing::debug!(%peer, "HTTP connection refused: every connection is busy");
            continue;
        };
        let connection = Connection {
            peer,
            shared: shared.clone(),
            activity: admitted.activity,
        };
        let serving = serve(stream, connection, signal.clone(), admitted.give_way);
        connections.spawn(async move {
            serving.await;
            admitted.id
        });
    }
    drop(listener);
    let drain = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(shared.limits.shutdown_grace, drain)
        .await
        .is_err()
    {
        tracing::debug!("HTTP connections still open after the grace period are dropped");
    }
}

/// The next connection. Accept errors (out of file descriptors, a connection reset before it
/// was accepted) are logged and retried after a pause.
async fn accept(listener: &TcpListener) -> Option<(TcpStream, SocketAddr)> {
    match listener.accept().await {
        Ok(accepted) => Some(accepted),
        Err(error) => {
            tracing::warn!(%error, "HTTP accept failed");
            tokio::time::sleep(Duration::from_millis(50)).await;
            None
        }
    }
}

/// One client connection's view of the server.
#[derive(Clone)]
struct Connection {
    peer: SocketAddr,
    shared: Arc<Shared>,
    activity: Arc<Activity>,
}

impl Connection {
    /// The answer to one request: refused by the access policy, a stream, a write, or a read.
    async fn answer(&self, request: Request<Incoming>, shutdown: watch::Receiver<bool>) -> Answer {
        let _busy = self.activity.begin();
        let routes = &self.shared.routes;
        let (method, path) = (request.method().clone(), request.uri().path().to_owned());
        let write = routes.write_route(&method, &path);
        let kind = match (&write, path.as_str()) {
            (WriteMatch::None, "/health" | "/metrics") => RouteKind::Probe,
            (WriteMatch::None, _) => RouteKind::Read,
            _ => RouteKind::Write,
        };
        if let Err(refusal) = self.admit(&request, kind) {
            let why = serde_json::json!({ "error": refusal.reason });
            return json(refusal.status, &why).map(Either::Left);
        }
        if let Some((route, rest)) = routes.stream_route(&method, &path) {
            return self
                .stream(route, rest, request.uri().query(), shutdown)
                .await;
        }
        if let Some(route) = routes.download_route(&method, &path) {
            return self.download(route, shutdown).await;
        }
        let answer = match write {
            WriteMatch::None => {
                let accept = request.headers().get(ACCEPT).and_then(|v| v.to_str().ok());
                routes.respond(&method, &path, accept)
            }
            WriteMatch::WrongMethod(mut methods) => {
                if routes.downloads.contains_key(&path) {
                    methods.splice(0..0, [Method::GET, Method::HEAD]);
                }
                method_not_allowed(&methods)
            }
            WriteMatch::BadPath => {
                bad_request("malformed percent-encoding or non-UTF-8 bytes in the path")
            }
            WriteMatch::Route(entry, rest) => self.write(entry, rest, request).await,
        };
        answer.map(Either::Left)
    }

    fn admit(&self, request: &Request<Incoming>, kind: RouteKind) -> Result<(), Refusal> {
        let header = |name| request.headers().get(name).and_then(|v| v.to_str().ok());
        // HTTP/1.1 names the host in the header; an absolute-form target names it in the URI.
        let host = header(HOST).or_else(|| request.uri().authority().map(|a| a.as_str()));
        self.shared.access.admit(&Facts {
            peer: self.peer,
            bound: self.shared.bound,
            kind,
            host,
            origin: header(ORIGIN),
            authorization: header(AUTHORIZATION),
        })
    }

    /// Starts the stream route's producer and answers with its chunks as they come.
    async fn stream(
        &self,
        route: super::routes::StreamRoute,
        rest: Option<String>,
        query: Option<&str>,
        shutdown: watch::Receiver<bool>,
    ) -> Answer {
        let Some(rest) = rest else {
            return bad_request("malformed percent-encoding in the path").map(Either::Left);
        };
        let Ok(permit) = self.shared.streams.clone().try_acquire_owned() else {
            return busy("too many streams are open on this node").map(Either::Left);
        };
        let query = query.unwrap_or_default().to_owned();
        match route(StreamRequest { rest, query }).await {
            Ok(chunks) => {
                let body = self.fed(chunks, shutdown, permit);
                let mut response = hyper::Response::new(Either::Right(body));
                typed_fresh(response.headers_mut(), "application/x-ndjson");
                response
            }
            Err((status, value)) => json(status, &value).map(Either::Left),
        }
    }

    /// A download route's bytes, or its error. One download is sent at a time across the
    /// server (503 meanwhile), in pieces, until the client has taken it or stalls: the bytes
    /// of an answer nobody reads are not held for each client that asked.
    async fn download(&self, route: DownloadRoute, shutdown: watch::Receiver<bool>) -> Answer {
        let Ok(permit) = self.shared.downloads.clone().try_acquire_owned() else {
            return busy("another download is being sent by this node").map(Either::Left);
        };
        match route().await {
            Ok(bytes) => {
                let length = HeaderValue::from(bytes.len());
                let body = self.fed(pieces(bytes), shutdown, permit);
                let mut response = hyper::Response::new(Either::Right(body));
                typed_fresh(response.headers_mut(), "application/octet-stream");
                response.headers_mut().insert(CONTENT_LENGTH, length);
                response
            }
            Err((status, value)) => json(status, &value).map(Either::Left),
        }
    }

    /// A body fed from `chunks`, holding `permit` and marking the connection busy while fed.
    fn fed(
        &self,
        chunks: mpsc::Receiver<Bytes>,
        shutdown: watch::Receiver<bool>,
        permit: tokio::sync::OwnedSemaphorePermit,
    ) -> ChannelBody {
        let held = (permit, self.activity.begin());
        forward(
            chunks,
            shutdown,
            self.shared.limits.stream_stall_timeout,
            held,
        )
    }

    /// A write route's answer: the body read within its deadline and size, then the route.
    async fn write(
        &self,
        entry: WriteEntry,
        rest: String,
        request: Request<Incoming>,
    ) -> hyper::Response<Full<Bytes>> {
        let limit = entry.body;
        if let Some(refusal) = body_refusal(request.headers(), limit.max_bytes) {
            return refusal;
        }
        let Ok(_permit) = self.shared.writes.clone().try_acquire_owned() else {
            return busy("too many writes are in progress on this node");
        };
        let _large = if limit.max_bytes > WRITE_BODY_MAX {
            match self.shared.large_bodies.clone().try_acquire_owned() {
                Ok(permit) => Some(permit),
                Err(_) => return busy("another large body is being received by this node"),
            }
        } else {
            None
        };
        let method = request.method().clone();
        let query = request.uri().query().unwrap_or_default().to_owned();
        let body = Limited::new(request.into_body(), limit.max_bytes).collect();
        let deadline = limit
            .read_timeout
            .unwrap_or(self.shared.limits.body_read_timeout);
        let body = match tokio::time::timeout(deadline, body).await {
            Ok(Ok(body)) => body.to_bytes(),
            Ok(Err(error)) if error.is::<LengthLimitError>() => return too_large(limit.max_bytes),
            Ok(Err(error)) => return bad_request(&format!("unreadable body: {error}")),
            Err(_) => {
                let why = serde_json::json!({ "error": "the body did not arrive in time" });
                return json(hyper::StatusCode::REQUEST_TIMEOUT, &why);
            }
        };
        let (status, value) = (entry.route)(WriteRequest {
            method,
            rest,
            query,
            body,
        })
        .await;
        json(status, &value)
    }
}

/// The answer to a write whose headers already rule it out: a declared body over the limit
/// (413), or a body type the API does not take (415). Only JSON and raw bytes are taken: the
/// types a web form can send without the browser asking first are refused.
fn body_refusal(headers: &hyper::HeaderMap, max: usize) -> Option<hyper::Response<Full<Bytes>>> {
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > max as u64) {
        return Some(too_large(max));
    }
    let content_type = headers.get(CONTENT_TYPE)?.to_str().unwrap_or("?");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    let taken = ["application/json", "application/octet-stream"]
        .iter()
        .any(|t| essence.eq_ignore_ascii_case(t));
    (!taken).then(|| {
        let why = serde_json::json!({
            "error": format!("bodies of type {content_type:?} are not taken; send application/json or application/octet-stream")
        });
        json(hyper::StatusCode::UNSUPPORTED_MEDIA_TYPE, &why)
    })
}

fn too_large(max: usize) -> hyper::Response<Full<Bytes>> {
    let why = serde_json::json!({
        "error": format!("the body is over the limit of {max} bytes"),
        "limit": max,
    });
    json(hyper::StatusCode::PAYLOAD_TOO_LARGE, &why)
}

/// Names the body's type and tells caches not to keep it (every answer is the node's state now).
fn typed_fresh(headers: &mut hyper::HeaderMap, content_type: &'static str) {
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

fn bad_request(why: &str) -> hyper::Response<Full<Bytes>> {
    json(
        hyper::StatusCode::BAD_REQUEST,
        &serde_json::json!({ "error": why }),
    )
}

/// 503 with a hint to retry: the node is fine, only this kind of request is at its limit.
fn busy(why: &str) -> hyper::Response<Full<Bytes>> {
    let mut response = json(
        hyper::StatusCode::SERVICE_UNAVAILABLE,
        &serde_json::json!({ "error": why }),
    );
    response
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// Serves one connection until the client closes it, it errs, it gets too old, it must give
/// way to a newer connection, or shutdown.
async fn serve(
    stream: TcpStream,
    connection: Connection,
    signal: watch::Receiver<bool>,
    give_way: oneshot::Receiver<()>,
) {
    let limits = connection.shared.limits;
    let activity = connection.activity.clone();
    let streams_stop = signal.clone();
    let service = service_fn(move |request: Request<Incoming>| {
        let connection = connection.clone();
        let shutdown = streams_stop.clone();
        async move { Ok::<_, Infallible>(connection.answer(request, shutdown).await) }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(HYPER_MIN_BUF));
    let http = builder.serve_connection(TokioIo::new(stream), service);
    let ending = Ending {
        signal,
        give_way,
        activity,
        grace: limits.shutdown_grace,
    };
    tokio::pin!(http);
    let age = limits.max_connection_age;
    let ended = ending.run(http, age, |http| http.graceful_shutdown()).await;
    if let Err(error) = ended {
        // Bad requests and timeouts are the client's problem, not the node's.
        tracing::debug!(%error, "HTTP connection ended with an error");
    }
}

/// How a connection ends: on its own, or closed gracefully (too old, shutdown, chosen to give
/// way while busy), or dropped (chosen to give way while idle).
struct Ending {
    signal: watch::Receiver<bool>,
    give_way: oneshot::Receiver<()>,
    activity: Arc<Activity>,
    grace: Duration,
}

impl Ending {
    /// Drives `http` to its end. Giving way is heeded while the connection closes gracefully
    /// too: a response the client does not read never finishes, and a connection that stayed
    /// open after its table entry was taken for a newcomer would hold its socket and task for
    /// good, uncounted. Once taken, it is dropped as soon as it is idle.
    async fn run<F: std::future::Future<Output = hyper::Result<()>>>(
        mut self,
        mut http: std::pin::Pin<&mut F>,
        age: Duration,
        close: impl Fn(std::pin::Pin<&mut F>),
    ) -> hyper::Result<()> {
        let too_old = tokio::time::sleep(age);
        tokio::pin!(too_old);
        let (mut closing, mut listening, mut taken) = (false, true, false);
        loop {
            tokio::select! {
                result = http.as_mut() => return result,
                _ = self.signal.changed(), if !closing => {}
                _ = &mut too_old, if !closing => {}
                given = &mut self.give_way, if listening => {
                    listening = false;
                    // An error: the table is gone (the server is stopping), nobody asks.
                    taken = given.is_ok();
                    // Requests only start while `http` is polled, which it is not now: closing
                    // an idle connection loses at most a head still being sent, or an answer
                    // the client is not taking.
                    if taken && self.activity.is_idle() {
                        return Ok(());
                    }
                }
                _ = tokio::time::sleep(self.grace), if taken => {
                    if self.activity.is_idle() {
                        return Ok(());
                    }
                }
            }
            if !closing {
                closing = true;
                close(http.as_mut());
            }
        }
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
}
