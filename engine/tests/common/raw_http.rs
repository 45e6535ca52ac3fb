//! Requests written and read byte for byte, so tests can send what no well-behaved client would.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a test waits for any answer.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// A raw HTTP/1.1 response: status code, head (lowercased) and body.
pub struct Raw {
    pub status: u16,
    pub head: String,
    pub body: String,
}

/// Sends `request` as is and reads until the server closes the connection.
pub async fn send_raw(addr: SocketAddr, request: &[u8]) -> Raw {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    // The server may close (or reset) the connection before reading everything when the request
    // is garbage; whatever arrived before that is the answer.
    let _ = stream.write_all(request).await;
    let mut bytes = Vec::new();
    let read = tokio::time::timeout(TIMEOUT, stream.read_to_end(&mut bytes)).await;
    assert!(read.is_ok(), "the server must close the connection");
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Raw {
        status,
        head: head.to_ascii_lowercase(),
        body: body.to_owned(),
    }
}

/// `GET path` naming the server by its address, as a CLI or a probe does.
pub async fn get(addr: SocketAddr, path: &str) -> Raw {
    send_raw(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
}
