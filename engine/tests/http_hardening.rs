//! The HTTP server against hostile clients on 127.0.0.1: slow and silent connections that must
//! not silence `/health`, cross-site and DNS-rebinding writes, the write token, and the status
//! code of each kind of bad request. A refused write never reaches its route.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use foundation_engine::http::{Access, HttpHandle, HttpServer, Limits, LineSender, Method};
use hyper::StatusCode;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

mod common;

use common::raw_http::{get, send_raw, Raw};

/// A server with a `/config/` write route (PUT, DELETE) that counts what reaches it, and a
/// `/forever/` stream that never ends.
fn start(limits: Limits, access: Access) -> (HttpHandle, Arc<AtomicUsize>) {
    let writes = Arc::new(AtomicUsize::new(0));
    let seen = writes.clone();
    let handle = HttpServer::builder(SocketAddr::from(([127, 0, 0, 1], 0)))
        .limits(limits)
        .access(access)
        .json("/members", || json!([]))
        .write("/config/", &[Method::PUT, Method::DELETE], move |request| {
            seen.fetch_add(1, Ordering::SeqCst);
            let key = request.rest;
            Box::pin(async move { (StatusCode::OK, json!({ "key": key })) })
        })
        .stream("/forever/", |_| {
            Box::pin(async {
                let (lines, chunks) = LineSender::channel();
                // The sender lives as long as the stream would: forever, for the test.
                tokio::spawn(async move {
                    let _lines = lines;
                    std::future::pending::<()>().await;
                });
                Ok(chunks)
            })
        })
        .start()
        .expect("start");
    (handle, writes)
}

fn put(addr: SocketAddr, path: &str, headers: &str, body: &str) -> Vec<u8> {
    format!(
        "PUT {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\n{headers}Connection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

async fn assert_probes_answer(addr: SocketAddr) {
    for path in ["/health", "/metrics", "/members"] {
        let status = get(addr, path).await.status;
        assert!(status == 200 || status == 404, "{path}: {status}");
    }
    assert_eq!(get(addr, "/health").await.status, 200);
}

/// The attack: writers that send a head and one byte of a 100-byte body, far more of
/// them than the server has slots. `/health` keeps answering, the writers beyond the write
/// limit are told 503 at once, and those admitted are cut off at the body deadline with 408.
#[tokio::test]
async fn slow_writers_cannot_silence_health() {
    let limits = Limits {
        max_connections: 16,
        max_writes: 4,
        body_read_timeout: Duration::from_millis(400),
        ..Limits::default()
    };
    let (handle, writes) = start(limits, Access::default());
    let addr = handle.local_addr();
    let mut writers = Vec::new();
    for _ in 0..64 {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let head = format!(
            "PUT /config/k HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{"
        );
        stream.write_all(head.as_bytes()).await.expect("send");
        writers.push(stream);
    }
    assert_probes_answer(addr).await;
    let mut statuses = Vec::new();
    for mut writer in writers {
        let mut answer = vec![0u8; 512];
        let read = tokio::time::timeout(Duration::from_secs(5), writer.read(&mut answer)).await;
        let text = match read {
            Ok(Ok(n)) => String::from_utf8_lossy(&answer[..n]).into_owned(),
            _ => String::new(),
        };
        statuses.push(text.split(' ').nth(1).unwrap_or("closed").to_owned());
    }
    let count = |s: &str| statuses.iter().filter(|x| *x == s).count();
    assert!(count("503") > 0, "{statuses:?}");
    assert!(count("408") > 0 && count("408") <= 4, "{statuses:?}");
    assert_eq!(
        writes.load(Ordering::SeqCst),
        0,
        "no partial body was written"
    );
    handle.shutdown().await;
}

/// Silent connections, many more than the connection limit and with a header timeout far
/// longer than the test: the oldest idle one gives way to each newcomer.
#[tokio::test]
async fn silent_connections_beyond_the_limit_give_way() {
    let limits = Limits {
        max_connections: 8,
        header_read_timeout: Duration::from_secs(60),
        ..Limits::default()
    };
    let (handle, _) = start(limits, Access::default());
    let addr = handle.local_addr();
    let mut silent = Vec::new();
    for _ in 0..50 {
        silent.push(TcpStream::connect(addr).await.expect("connect"));
    }
    assert_probes_answer(addr).await;
    handle.shutdown().await;
}

#[tokio::test]
async fn cross_site_and_rebinding_requests_are_refused() {
    let (handle, writes) = start(Limits::default(), Access::default());
    let addr = handle.local_addr();
    let json_type = "Content-Type: application/json\r\n";
    let cross_site = format!("{json_type}Origin: https://evil.example\r\n");
    let refused = send_raw(addr, &put(addr, "/config/k", &cross_site, "1")).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    let rebound = b"GET /members HTTP/1.1\r\nHost: evil.example:80\r\nConnection: close\r\n\r\n";
    assert_eq!(send_raw(addr, rebound).await.status, 403);
    let rebound_write: &[u8] = b"PUT /config/k HTTP/1.1\r\nHost: evil.example\r\nContent-Length: 1\r\nConnection: close\r\n\r\n1";
    assert_eq!(send_raw(addr, rebound_write).await.status, 403);
    assert_eq!(
        writes.load(Ordering::SeqCst),
        0,
        "nothing reached the route"
    );
    // Probes answer under any name; the node's own page may write.
    let probe = b"GET /health HTTP/1.1\r\nHost: node-3.cluster.local\r\nConnection: close\r\n\r\n";
    assert_eq!(send_raw(addr, probe).await.status, 200);
    let own = format!("{json_type}Origin: http://{addr}\r\n");
    assert_eq!(
        send_raw(addr, &put(addr, "/config/k", &own, "1"))
            .await
            .status,
        200
    );
    assert_eq!(writes.load(Ordering::SeqCst), 1);
    handle.shutdown().await;
}

#[tokio::test]
async fn each_bad_request_gets_its_own_status() {
    let (handle, writes) = start(Limits::default(), Access::default());
    let addr = handle.local_addr();
    let post = format!(
        "POST /config/k HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 1\r\nConnection: close\r\n\r\n1"
    );
    let wrong_method = send_raw(addr, post.as_bytes()).await;
    assert_eq!(wrong_method.status, 405);
    assert!(
        wrong_method.head.contains("allow: put, delete"),
        "{}",
        wrong_method.head
    );
    let huge = format!(
        "PUT /config/k HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        4 << 20
    );
    assert_eq!(send_raw(addr, huge.as_bytes()).await.status, 413);
    let mut chunked = format!(
        "PUT /config/k HTTP/1.1\r\nHost: {addr}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    for _ in 0..20 {
        chunked.push_str(&format!("10000\r\n{}\r\n", "a".repeat(0x10000)));
    }
    chunked.push_str("0\r\n\r\n");
    assert_eq!(send_raw(addr, chunked.as_bytes()).await.status, 413);
    for form in [
        "application/x-www-form-urlencoded",
        "text/plain",
        "multipart/form-data",
    ] {
        let headers = format!("Content-Type: {form}\r\n");
        let answer = send_raw(addr, &put(addr, "/config/k", &headers, "a=1")).await;
        assert_eq!(answer.status, 415, "{form}");
    }
    let bad_key = send_raw(addr, &put(addr, "/config/%FF%FE", "", "1")).await;
    assert_eq!(bad_key.status, 400, "{}", bad_key.body);
    let no_host = b"GET /members HTTP/1.0\r\n\r\n";
    assert_eq!(send_raw(addr, no_host).await.status, 400);
    assert_eq!(writes.load(Ordering::SeqCst), 0);
    let head = format!("HEAD /health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let head = send_raw(addr, head.as_bytes()).await;
    assert_eq!((head.status, head.body.as_str()), (200, ""));
    handle.shutdown().await;
}

#[tokio::test]
async fn a_token_guards_writes() {
    let access = Access {
        token: Some("0123456789abcdef-token".into()),
        ..Access::default()
    };
    let (handle, writes) = start(Limits::default(), access);
    let addr = handle.local_addr();
    let write = |auth: &str| put(addr, "/config/k", auth, "1");
    let answer = |raw: Raw| raw.status;
    assert_eq!(answer(send_raw(addr, &write("")).await), 401);
    let wrong = "Authorization: Bearer 0123456789abcdef-toke\r\n";
    assert_eq!(answer(send_raw(addr, &write(wrong)).await), 401);
    assert_eq!(writes.load(Ordering::SeqCst), 0);
    let right = "Authorization: Bearer 0123456789abcdef-token\r\n";
    assert_eq!(answer(send_raw(addr, &write(right)).await), 200);
    assert_eq!(writes.load(Ordering::SeqCst), 1);
    // Reads need no token.
    assert_eq!(get(addr, "/members").await.status, 200);
    handle.shutdown().await;
}

#[tokio::test]
async fn streams_beyond_their_limit_are_refused() {
    let limits = Limits {
        max_streams: 1,
        ..Limits::default()
    };
    let (handle, _) = start(limits, Access::default());
    let addr = handle.local_addr();
    let mut open = TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET /forever/a HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    open.write_all(request.as_bytes()).await.expect("send");
    let mut head = [0u8; 64];
    let n = open.read(&mut head).await.expect("the stream's head");
    assert!(String::from_utf8_lossy(&head[..n]).contains(" 200 "));
    let second = get(addr, "/forever/b").await;
    assert_eq!(second.status, 503);
    assert!(second.head.contains("retry-after"), "{}", second.head);
    assert_probes_answer(addr).await;
    handle.shutdown().await;
}

/// A write route with its own body limit takes bodies over the default 1 MiB up to its limit,
/// answers 413 naming the limit above it (declared or streamed), and reads one such body at a
/// time (503 for another meanwhile); a download route answers bytes.
#[tokio::test]
async fn a_large_body_route_has_its_own_limit_and_one_large_body_is_read_at_a_time() {
    use foundation_engine::http::BodyLimit;
    const LIMIT: usize = 2 << 20;
    let handle = HttpServer::builder(SocketAddr::from(([127, 0, 0, 1], 0)))
        .write_with(
            "/upload",
            &[Method::POST],
            BodyLimit {
                max_bytes: LIMIT,
                read_timeout: Some(Duration::from_secs(5)),
            },
            |request| {
                let len = request.body.len();
                Box::pin(async move { (StatusCode::OK, json!({ "len": len })) })
            },
        )
        .download("/file", || {
            Box::pin(async { Ok(bytes::Bytes::from_static(b"\x00\x01bytes")) })
        })
        .start()
        .expect("start");
    let addr = handle.local_addr();
    let post = |len: usize, body: &str| {
        format!(
            "POST /upload HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/octet-stream\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n{body}"
        )
    };
    let big = "a".repeat(3 << 19);
    let taken = send_raw(addr, post(big.len(), &big).as_bytes()).await;
    assert_eq!(taken.status, 200, "{}", taken.body);
    assert!(
        taken.body.contains(&big.len().to_string()),
        "{}",
        taken.body
    );
    let declared = send_raw(addr, post(LIMIT + 1, "").as_bytes()).await;
    assert_eq!(declared.status, 413);
    assert!(
        declared.body.contains(&LIMIT.to_string()),
        "{}",
        declared.body
    );
    let mut chunked = format!(
        "POST /upload HTTP/1.1\r\nHost: {addr}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    for _ in 0..40 {
        chunked.push_str(&format!("10000\r\n{}\r\n", "a".repeat(0x10000)));
    }
    chunked.push_str("0\r\n\r\n");
    assert_eq!(send_raw(addr, chunked.as_bytes()).await.status, 413);

    // A slow large body holds the one permit: another large body is turned away meanwhile.
    let mut slow = TcpStream::connect(addr).await.expect("connect");
    slow.write_all(post(LIMIT, "abc").as_bytes())
        .await
        .expect("head sent");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let second = send_raw(addr, post(10, "0123456789").as_bytes()).await;
    assert_eq!(second.status, 503, "{}", second.body);
    drop(slow);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after = send_raw(addr, post(10, "0123456789").as_bytes()).await;
    assert_eq!(after.status, 200, "{}", after.body);

    let file = get(addr, "/file").await;
    assert_eq!(file.status, 200);
    assert!(
        file.head.contains("content-type: application/octet-stream"),
        "{}",
        file.head
    );
    assert!(file.body.ends_with("bytes"));
    handle.shutdown().await;
}

/// Clients that ask for an answer larger than the sockets hold and never read it, kept open
/// well past the connection age: each still gives way to a newcomer when the table is full, so
/// together they hold no more than the table's connections. Before, a connection closing
/// gracefully for its age waited for good on the unread answer and no longer heeded giving way:
/// taken from the table for a newcomer, it kept its socket and task, uncounted, one per client.
#[tokio::test]
async fn unread_answers_past_the_connection_age_still_give_way() {
    const TABLE: usize = 2;
    const CLIENTS: usize = 8;
    let limits = Limits {
        max_connections: TABLE,
        max_connection_age: Duration::from_millis(100),
        ..Limits::default()
    };
    // More than the server's send buffer (4 MiB at most here) and the client's receive buffer.
    let answer = "x".repeat(8 << 20);
    let handle = HttpServer::builder(SocketAddr::from(([127, 0, 0, 1], 0)))
        .limits(limits)
        .json("/big", move || json!(answer))
        .start()
        .expect("start");
    let addr = handle.local_addr();
    let tasks = || {
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks()
    };
    let before = tasks();
    let mut unread = Vec::new();
    for _ in 0..CLIENTS {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(4096).expect("buffer size");
        let mut stream = socket.connect(addr).await.expect("connect");
        let request = format!("GET /big HTTP/1.1\r\nHost: {addr}\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("send");
        unread.push(stream);
        // Past the connection's age, so it is closing gracefully when the next one comes.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while tasks() > before + TABLE && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let open = tasks() - before;
    assert!(
        open <= TABLE,
        "{open} connections of {CLIENTS} unread clients are still served; the table holds {TABLE}"
    );
    assert_eq!(get(addr, "/health").await.status, 200);
    drop(unread);
    handle.shutdown().await;
}

/// A client that opens a stream and stops reading it: once the buffers between are full and a
/// line waits untaken past the stall timeout, the stream ends and its slot serves another
/// client. Before, it held the slot until the node stopped (`max_streams` such clients shut
/// every stream out).
#[tokio::test]
async fn a_stream_whose_client_stops_reading_frees_its_slot() {
    let limits = Limits {
        max_streams: 1,
        stream_stall_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let handle = HttpServer::builder(SocketAddr::from(([127, 0, 0, 1], 0)))
        .limits(limits)
        .stream("/flood", |_| {
            Box::pin(async {
                let (lines, chunks) = LineSender::channel();
                let line = json!("x".repeat(64 << 10));
                tokio::spawn(async move { while lines.send(&line).await {} });
                Ok(chunks)
            })
        })
        .start()
        .expect("start");
    let addr = handle.local_addr();
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("buffer size");
    let mut stalled = socket.connect(addr).await.expect("connect");
    let request = format!("GET /flood HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    stalled.write_all(request.as_bytes()).await.expect("send");
    let mut head = [0u8; 64];
    let n = stalled.read(&mut head).await.expect("the stream's head");
    assert!(String::from_utf8_lossy(&head[..n]).contains(" 200 "));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut statuses = Vec::new();
    loop {
        let mut other = TcpStream::connect(addr).await.expect("connect");
        other.write_all(request.as_bytes()).await.expect("send");
        let mut head = [0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(5), other.read(&mut head))
            .await
            .expect("an answer")
            .expect("read");
        let status = String::from_utf8_lossy(&head[..n])
            .split(' ')
            .nth(1)
            .map(str::to_owned);
        statuses.push(status.unwrap_or_default());
        if statuses.last().is_some_and(|s| s == "200") || tokio::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        statuses.last().map(String::as_str),
        Some("200"),
        "{statuses:?}"
    );
    assert_eq!(
        statuses[0], "503",
        "the stalled stream held the slot at first"
    );
    drop(stalled);
    handle.shutdown().await;
}

/// Bytes whose live copies are counted, so a test sees what the server still holds.
struct Counted(Vec<u8>, Arc<AtomicUsize>);

impl AsRef<[u8]> for Counted {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.1.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Clients that ask for a download (a snapshot, in a node) and never read it: the server holds
/// one download's bytes at a time, whoever does not take them, and ends a download whose
/// client stalls. Before, each such client pinned its own whole copy in the connection's write
/// buffer (a snapshot is up to 256 MiB; 256 connections) until the table needed its slot.
#[tokio::test]
async fn downloads_nobody_reads_hold_one_copy_and_end_when_stalled() {
    const CLIENTS: usize = 6;
    const SIZE: usize = 8 << 20;
    let limits = Limits {
        stream_stall_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let live = Arc::new(AtomicUsize::new(0));
    let copies = live.clone();
    let handle = HttpServer::builder(SocketAddr::from(([127, 0, 0, 1], 0)))
        .limits(limits)
        .download("/big", move || {
            copies.fetch_add(1, Ordering::SeqCst);
            let bytes = bytes::Bytes::from_owner(Counted(vec![b'x'; SIZE], copies.clone()));
            Box::pin(async move { Ok(bytes) })
        })
        .start()
        .expect("start");
    let addr = handle.local_addr();
    let request = format!("GET /big HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    let mut unread = Vec::new();
    for _ in 0..CLIENTS {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(4096).expect("buffer size");
        let mut stream = socket.connect(addr).await.expect("connect");
        stream.write_all(request.as_bytes()).await.expect("send");
        unread.push(stream);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let held = live.load(Ordering::SeqCst);
    assert!(
        held <= 1,
        "{held} copies held for {CLIENTS} clients that read nothing"
    );
    // The stalled download ends, and a client that reads gets the whole answer.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let whole = loop {
        let answer = get(addr, "/big").await;
        if answer.status == 200 || tokio::time::Instant::now() > deadline {
            break answer;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(whole.status, 200, "{}", whole.body);
    assert_eq!(whole.body.len(), SIZE);
    drop(unread);
    handle.shutdown().await;
}
