//! Building blocks of handshake floods: Initial packets that start handshakes nobody finishes,
//! and the process's memory.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The first datagram of a fresh client connection (an Initial packet carrying a TLS
/// ClientHello, padded to 1200 bytes), built with quinn's protocol state machine and thrown away:
/// the flood never reads an answer, so it never finishes a handshake and keeps no state.
pub fn initial(client: &quinn::ClientConfig, to: SocketAddr) -> Vec<u8> {
    let mut endpoint = quinn_proto::Endpoint::new(
        Arc::new(quinn_proto::EndpointConfig::default()),
        None,
        false,
        None,
    );
    let now = Instant::now();
    let (_, mut conn) = endpoint
        .connect(now, client.clone(), to, "orders.foundation")
        .expect("client connection");
    let mut buf = Vec::new();
    let transmit = conn.poll_transmit(now, 1, &mut buf).expect("an Initial");
    buf.truncate(transmit.size);
    buf
}

/// Resident memory of this process, in bytes (Linux); `None` elsewhere.
pub fn rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib << 10)
}

/// Fails if this process grew by more than `max` bytes since its RSS was `before` (when RSS
/// can be read at all).
pub fn assert_grown_at_most(before: Option<u64>, max: u64) {
    if let (Some(before), Some(after)) = (before, rss()) {
        let growth = after.saturating_sub(before);
        assert!(
            growth <= max,
            "the flood grew the process by {} MiB",
            growth >> 20
        );
    }
}

pub async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
