//! The node's HTTP server — `/metrics`, `/health`, `/status` and JSON routes the engine
//! registers — and a tiny client for the CLI.
//!
//! ```text
//!   HttpServer::builder(addr)
//!       .metrics(registry)                     GET /metrics  OpenMetrics or classic text
//!       .health(|| Health::healthy("member"))  GET /health   JSON, 200 or 503
//!       .json("/members", || json!([...]))     GET /members  JSON
//!       .status(|| json!({...}))               GET /status.json  what the page draws
//!       .download("/snapshot", || ...)         GET /snapshot  bytes (application/octet-stream)
//!       .start()? -> HttpHandle                GET /status   live page (fetches /status.json)
//! ```
//!
//! Routes are closures, so a new feature adds a route without touching the server. The server
//! is bounded (connections that give way when idle, head and body deadlines and sizes, writes
//! and streams at once, connection age), answers `GET` and `HEAD`, plus the methods each write
//! route documents under its prefix (`.write("/config/", &[PUT, DELETE], ...)`) as the
//! [`Access`] policy allows (token, `Host`, `Origin`), and streams newline-delimited JSON from
//! stream routes (`.stream("/monitor", ...)`) as chunked responses that last until the client or
//! the producer goes away.

mod access;
mod client;
mod connections;
mod error;
mod exposition;
mod health;
mod routes;
mod server;
mod status_page;
mod stream;

pub use access::Access;
pub use client::get_json;
pub use client::send_bytes;
pub use client::send_json;
pub use client::stream_lines;
pub use client::{get_bytes, post_file};
pub use error::HttpError;
pub use exposition::{CLASSIC_CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE};
pub use health::Health;
/// The request method of [`send_json`] and [`WriteRequest`].
pub use hyper::Method;
pub use routes::{
    percent_decode, percent_encode, BodyLimit, DownloadAnswer, MetricsSource, StreamAnswer,
    StreamRequest, WriteAnswer, WriteRequest,
};
pub use server::{HttpHandle, HttpServer, HttpServerBuilder, Limits};
pub use stream::{LineSender, STREAM_BUFFER};
