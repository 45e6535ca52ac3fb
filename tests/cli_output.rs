//! What `foundation` commands write, against a fake node: one canned HTTP answer per test, so
//! each case (a refusal carrying an escape sequence, a stream that ends early, a reader that
//! goes away) is exact and needs no cluster.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Output, Stdio};

use common::BINARY;

/// Answers every connection with `response` (status line, headers and body, as sent), after
/// reading the request, then closes it: the end of a stream without a length.
fn fake_node(response: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let mut reader = BufReader::new(stream);
            read_request(&mut reader);
            let _ = reader.get_mut().write_all(response.as_bytes());
        }
    });
    addr
}

/// Reads a request's head and body: closing with unread bytes would reset the connection.
fn read_request(reader: &mut BufReader<std::net::TcpStream>) {
    let mut length = 0;
    let mut line = String::new();
    while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
        let lower = line.to_ascii_lowercase();
        if let Some(value) = lower.strip_prefix("content-length:") {
            length = value.trim().parse().unwrap_or(0);
        }
        line.clear();
    }
    let mut body = vec![0; length];
    let _ = reader.read_exact(&mut body);
}

fn foundation(node: SocketAddr, args: &[&str]) -> Output {
    Command::new(BINARY)
        .args(args)
        .args(["--node", &node.to_string()])
        .env_clear()
        .output()
        .expect("foundation runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

const ANSWER: &str = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                      content-length: 16\r\nconnection: close\r\n\r\n{\"data\":\"hello\"}";

const STREAM: &str = "HTTP/1.1 200 OK\r\ncontent-type: application/x-ndjson\r\n\
                      connection: close\r\n\r\n\
                      {\"kind\":\"subscribed\"}\n\
                      {\"kind\":\"message\",\"topic\":\"orders.one\",\"data\":\"first\"}\n";

/// `foundation call x y | head -c 0`: stdout is closed before the answer is written. Rust
/// ignores SIGPIPE, so the write fails, and `println!` panicked on it (status 101).
#[test]
fn a_closed_stdout_ends_the_command_quietly() {
    for (response, args) in [
        (ANSWER, &["call", "greeter", "world"][..]),
        (STREAM, &["subscribe", "orders.>"][..]),
    ] {
        let node = fake_node(response);
        let mut child = Command::new(BINARY)
            .args(args)
            .args(["--node", &node.to_string()])
            .env_clear()
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("foundation runs");
        drop(child.stdout.take());
        let output = child.wait_with_output().expect("it ends");
        let stderr = stderr(&output);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_eq!(output.status.code(), Some(0), "{args:?}: {stderr}");
    }
}

/// A node's refusal carries text any member may have written: it reaches the operator's
/// terminal escaped, not as an escape sequence that clears the screen.
#[test]
fn a_refusal_is_shown_escaped() {
    let node = fake_node(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n\
         content-length: 21\r\nconnection: close\r\n\r\n{\"error\":\"\\u001b[2J\"}",
    );
    let refused = foundation(node, &["call", "greeter", "world"]);
    assert_eq!(refused.status.code(), Some(1));
    let stderr = stderr(&refused);
    assert!(!stderr.contains('\u{1b}'), "raw: {stderr:?}");
    assert!(stderr.contains(r"refused (400): \u{1b}[2J"), "{stderr}");
}

/// `--count N` promises N messages: a stream the node ends after fewer is an error a script can
/// see, and `--count 0` (which printed one message) is refused.
#[test]
fn a_subscription_that_ends_before_its_count_fails() {
    let node = fake_node(STREAM);
    let short = foundation(node, &["subscribe", "orders.>", "--count", "2"]);
    assert_eq!(short.status.code(), Some(1), "{}", stderr(&short));
    assert!(String::from_utf8_lossy(&short.stdout).contains("orders.one first"));
    assert!(
        stderr(&short).contains("ended the subscription after 1 of 2 messages"),
        "{}",
        stderr(&short)
    );
    let enough = foundation(node, &["subscribe", "orders.>", "--count", "1"]);
    assert!(enough.status.success(), "{}", stderr(&enough));

    let zero = foundation(node, &["subscribe", "orders.>", "--count", "0"]);
    assert_eq!(zero.status.code(), Some(2), "a usage error");
    assert!(stderr(&zero).contains("--count"), "{}", stderr(&zero));
}
