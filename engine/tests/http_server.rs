//! The node's HTTP server against real sockets on 127.0.0.1: routes, status codes, bounds and
//! bad input, and the client the CLI uses.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use foundation_engine::http::{
    get_json, stream_lines, Health, HttpError, HttpHandle, HttpServer, Limits,
    CLASSIC_CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE,
};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use serde_json::json;
use tokio::net::TcpStream;

mod common;

use common::raw_http::{get, send_raw, TIMEOUT};

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

fn server_with_routes(healthy: Arc<AtomicBool>) -> (HttpServer, Counter) {
    let mut registry = Registry::default();
    let counter = Counter::<u64>::default();
    registry.register(
        "foundation_test_requests",
        "Requests seen by the test",
        counter.clone(),
    );
    let server = HttpServer::builder(loopback())
        .metrics(Arc::new(registry))
        .health(move || {
            if healthy.load(Ordering::SeqCst) {
                Health::healthy("member of 3").detail("members", 3)
            } else {
                Health::unhealthy("not part of a cluster")
            }
        })
        .json(
            "/members",
            || json!([{ "id": "0a1b2c3d", "state": "alive" }]),
        )
        .build();
    (server, counter)
}

fn start() -> (HttpHandle, Arc<AtomicBool>, Counter) {
    let healthy = Arc::new(AtomicBool::new(true));
    let (server, counter) = server_with_routes(healthy.clone());
    (server.start().expect("start"), healthy, counter)
}

/// Prometheus asks for OpenMetrics and gets it; a scraper that asks for nothing gets the
/// classic text format, whose TYPE line names the counter as its samples do.
#[tokio::test]
async fn metrics_speak_openmetrics_when_asked_and_the_classic_format_otherwise() {
    let (handle, _, counter) = start();
    counter.inc_by(7);
    let addr = handle.local_addr();
    let request = format!(
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nAccept: application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.3\r\nConnection: close\r\n\r\n"
    );
    let open = send_raw(addr, request.as_bytes()).await;
    assert_eq!(open.status, 200);
    let content_type = |raw: &common::raw_http::Raw, expected: &str| {
        assert!(
            raw.head.contains(&format!("content-type: {expected}")),
            "{}",
            raw.head
        );
    };
    content_type(&open, OPENMETRICS_CONTENT_TYPE);
    assert!(open
        .body
        .contains("# TYPE foundation_test_requests counter"));
    assert!(open.body.contains("foundation_test_requests_total 7"));
    assert!(open.body.trim_end().ends_with("# EOF"), "{}", open.body);
    let classic = get(addr, "/metrics").await;
    content_type(&classic, CLASSIC_CONTENT_TYPE);
    assert!(
        classic.body.contains(
            "# TYPE foundation_test_requests_total counter\nfoundation_test_requests_total 7\n"
        ),
        "{}",
        classic.body
    );
    assert!(!classic.body.contains("# EOF"), "{}", classic.body);
    handle.shutdown().await;
}

#[tokio::test]
async fn a_registry_behind_a_lock_can_change_while_serving() {
    let registry = Arc::new(Mutex::new(Registry::default()));
    let handle = HttpServer::builder(loopback())
        .metrics(registry.clone())
        .start()
        .expect("start");
    let counter = Counter::<u64>::default();
    registry.lock().expect("lock").register(
        "foundation_late",
        "Registered after start",
        counter.clone(),
    );
    counter.inc();
    let response = get(handle.local_addr(), "/metrics").await;
    assert!(
        response.body.contains("foundation_late_total 1"),
        "{}",
        response.body
    );
    handle.shutdown().await;
}

#[tokio::test]
async fn health_is_200_when_healthy_and_503_otherwise() {
    let (handle, healthy, _) = start();
    let addr = handle.local_addr();
    let response = get(addr, "/health").await;
    assert_eq!(response.status, 200);
    assert!(
        response.head.contains("content-type: application/json"),
        "{}",
        response.head
    );
    let body: serde_json::Value = serde_json::from_str(&response.body).expect("json");
    assert_eq!(
        body,
        json!({ "healthy": true, "status": "member of 3", "details": { "members": 3 } })
    );

    healthy.store(false, Ordering::SeqCst);
    let response = get(addr, "/health").await;
    assert_eq!(response.status, 503);
    assert!(
        response.body.contains("not part of a cluster"),
        "{}",
        response.body
    );
    handle.shutdown().await;
}

#[tokio::test]
async fn json_routes_and_the_status_page() {
    let (handle, _, _) = start();
    let addr = handle.local_addr();
    let members = get(addr, "/members?verbose=1").await;
    assert_eq!(members.status, 200);
    assert!(members.body.contains("\"alive\""), "{}", members.body);

    let status = get(addr, "/status").await;
    assert_eq!(status.status, 200);
    assert!(
        status.head.contains("content-type: text/html"),
        "{}",
        status.head
    );
    assert!(status.body.contains("/status.json"), "{}", status.body);
    // What the page draws: the health and every JSON route, for a server without its own.
    let drawn = get(addr, "/status.json").await;
    assert_eq!(drawn.status, 200);
    assert!(drawn.body.contains("\"/members\""), "{}", drawn.body);
    assert!(drawn.body.contains("0a1b2c3d"), "{}", drawn.body);
    assert!(drawn.body.contains("\"health\""), "{}", drawn.body);
    handle.shutdown().await;
}

#[tokio::test]
async fn unknown_paths_are_404_and_other_methods_405() {
    let (handle, _, _) = start();
    let addr = handle.local_addr();
    assert_eq!(get(addr, "/nope").await.status, 404);
    let post = send_raw(
        addr,
        b"POST /health HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
    )
    .await;
    assert_eq!(post.status, 405);
    assert!(post.head.contains("allow: get"), "{}", post.head);
    let delete = send_raw(
        addr,
        b"DELETE /members HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(delete.status, 405);
    handle.shutdown().await;
}

#[tokio::test]
async fn garbage_is_refused_and_the_server_keeps_serving() {
    let (handle, _, _) = start();
    let addr = handle.local_addr();
    let garbage: &[&[u8]] = &[
        b"\x00\xff\xfe garbage \x01\x02\r\n\r\n",
        b"GET / HTTP/9.9\r\n\r\n",
        b"GET /health HTTP/1.1\r\nHost: t\r\nBad Header Without Colon\r\n\r\n",
        &[b'A'; 70_000],
    ];
    for bytes in garbage {
        let response = send_raw(addr, bytes).await;
        assert!(
            response.status == 0 || response.status >= 400,
            "status {}",
            response.status
        );
    }
    let long_header = format!(
        "GET /health HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
        "b".repeat(40_000)
    );
    let response = send_raw(addr, long_header.as_bytes()).await;
    assert_eq!(response.status, 431, "a head over the limit");
    assert_eq!(get(addr, "/health").await.status, 200);
    handle.shutdown().await;
}

#[tokio::test]
async fn silent_connections_time_out_and_free_their_slot() {
    let limits = Limits {
        max_connections: 1,
        header_read_timeout: Duration::from_millis(200),
        ..Limits::default()
    };
    let handle = HttpServer::builder(loopback())
        .limits(limits)
        .json("/members", || json!([{ "state": "alive" }]))
        .start()
        .expect("start");
    let addr = handle.local_addr();
    let _silent = TcpStream::connect(addr).await.expect("connect");
    tokio::time::sleep(Duration::from_millis(50)).await;
    // The only slot is held by a client that says nothing; it is cut off after the header read
    // timeout and this request gets through.
    let answer = get_json(addr, "/members", TIMEOUT)
        .await
        .expect("served after the timeout");
    assert_eq!(answer[0]["state"], "alive");
    handle.shutdown().await;
}

#[tokio::test]
async fn get_json_round_trip_and_errors() {
    let (handle, healthy, _) = start();
    let addr = handle.local_addr();
    let members = get_json(addr, "/members", TIMEOUT).await.expect("members");
    assert_eq!(members, json!([{ "id": "0a1b2c3d", "state": "alive" }]));

    healthy.store(false, Ordering::SeqCst);
    match get_json(addr, "/health", TIMEOUT).await {
        Err(HttpError::Status {
            status: 503, body, ..
        }) => assert!(body.contains("not part of a cluster"), "{body}"),
        other => panic!("expected 503, got {other:?}"),
    }
    assert!(matches!(
        get_json(addr, "/nope", TIMEOUT).await,
        Err(HttpError::Status { status: 404, .. })
    ));
    assert!(matches!(
        get_json(addr, "/metrics", TIMEOUT).await,
        Err(HttpError::Json { .. })
    ));
    assert!(matches!(
        get_json(addr, "members", TIMEOUT).await,
        Err(HttpError::InvalidPath(_))
    ));
    handle.shutdown().await;

    let refused = get_json(addr, "/members", TIMEOUT).await;
    assert!(
        matches!(refused, Err(HttpError::Connect { .. })),
        "{refused:?}"
    );
}

#[tokio::test]
async fn get_json_gives_up_after_its_timeout() {
    let listener = tokio::net::TcpListener::bind(loopback())
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let result = get_json(addr, "/members", Duration::from_millis(200)).await;
    assert!(
        matches!(result, Err(HttpError::Timeout { .. })),
        "{result:?}"
    );
    drop(listener);
}

#[tokio::test]
async fn binding_a_taken_port_is_an_error_naming_the_address() {
    let (handle, _, _) = start();
    let taken = handle.local_addr();
    let error = HttpServer::builder(taken)
        .start()
        .expect_err("port is taken");
    assert!(error.to_string().contains(&taken.to_string()), "{error}");
    handle.shutdown().await;
}

#[test]
fn starting_outside_a_runtime_is_an_error() {
    let error = HttpServer::builder(loopback())
        .start()
        .expect_err("no runtime");
    assert!(matches!(error, HttpError::NoRuntime));
}

/// A server that refuses a stream and then never finishes saying why: the client reports the
/// refusal once its timeout has passed instead of waiting for the body for good.
#[tokio::test]
async fn a_refused_stream_whose_body_never_ends_is_reported_within_the_timeout() {
    use tokio::io::AsyncWriteExt;
    let listener = tokio::net::TcpListener::bind(loopback())
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.expect("accept");
        let head = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 100\r\n\r\n{\"err";
        socket.write_all(head).await.expect("answer");
        std::future::pending::<()>().await;
    });
    let streamed = stream_lines(addr, "/monitor", Duration::from_millis(300), |_| true);
    let result = tokio::time::timeout(Duration::from_secs(10), streamed)
        .await
        .expect("the client gave up on the refusal's body");
    assert!(
        matches!(result, Err(HttpError::Status { status: 503, .. })),
        "{result:?}"
    );
    server.abort();
}

/// Label values come from peers and users (service names, topics): quotes, backslashes,
/// newlines and what marks an exemplar (` # `) come out escaped and whole in both formats, and
/// promtool accepts the classic text.
#[tokio::test]
async fn hostile_label_values_are_escaped_and_the_text_still_parses() {
    use prometheus_client::metrics::family::Family;
    let mut registry = Registry::default();
    let calls = Family::<Vec<(String, String)>, Counter>::default();
    registry.register("foundation_test_calls", "Calls by service", calls.clone());
    let hostile = "a # b \"q\" \\ c\nd} # {e";
    calls
        .get_or_create(&vec![("service".to_owned(), hostile.to_owned())])
        .inc();
    let handle = HttpServer::builder(loopback())
        .metrics(Arc::new(registry))
        .start()
        .expect("start");
    let addr = handle.local_addr();
    let escaped = r#"service="a # b \"q\" \\ c\nd} # {e""#;
    let classic = get(addr, "/metrics").await.body;
    let sample = format!("foundation_test_calls_total{{{escaped}}} 1\n");
    assert!(classic.contains(&sample), "{classic}");
    common::promtool::promtool_accepts(&classic);
    let request = format!(
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nAccept: application/openmetrics-text\r\nConnection: close\r\n\r\n"
    );
    let open = send_raw(addr, request.as_bytes()).await.body;
    assert!(open.contains(&sample), "{open}");
    handle.shutdown().await;
}
