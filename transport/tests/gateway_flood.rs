//! A flood of QUIC handshake starts at a federation gateway, which anyone who can reach it may
//! send: the gateway keeps at most its limit of handshakes in progress, tells the rest to prove
//! their address with Retry, and a linked gateway is still served.
//!
//! Alone in its own test binary so the process's memory is this test's alone.

mod common;

use std::net::UdpSocket;
use std::time::Duration;

use bytes::Bytes;
use common::flood::{assert_grown_at_most, initial, rss, wait_until};
use foundation_transport::gateway::{
    GatewayConfig, GatewayEndpoint, GatewayRequest, GATEWAY_HANDSHAKES_MAX,
};
use foundation_transport::security::{federation_tls, RemoteRoot};
use foundation_transport::{ClusterName, ClusterSecret, Trust};
use tokio::sync::mpsc;

/// Handshake starts sent by the flood.
const FLOOD: usize = 2_000;
/// How much the process may grow during the flood. Without the limit every start holds its
/// handshake state (≈ 100 KB) until the handshake times out: ≈ 200 MB for this flood.
const RSS_GROWTH_MAX: u64 = 48 << 20;

fn name(n: &str) -> ClusterName {
    ClusterName::new(n).unwrap()
}

fn secret(n: &str) -> ClusterSecret {
    ClusterSecret::new(format!("the secret of cluster {n}")).unwrap()
}

/// A gateway of cluster `local` linked to `remote`; its idle timeout, which ends a handshake
/// nobody finishes, outlasts the test.
fn gateway(local: &str, remote: &str) -> (GatewayEndpoint, mpsc::Receiver<GatewayRequest>) {
    let config = GatewayConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        keep_alive: Duration::from_millis(500),
        idle_timeout: Duration::from_secs(30),
        max_frame: 1 << 20,
    };
    let links = [(name(remote), RemoteRoot::Secret(secret(remote)))];
    GatewayEndpoint::start(&config, &Trust::Secret(secret(local)), &name(local), &links).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_unfinished_handshakes_at_a_gateway_is_bounded_and_links_keep_working() {
    let (a, mut a_inbox) = gateway("a", "b");
    let (b, _b_inbox) = gateway("b", "a");
    let a_addr = a.local_addr().unwrap();
    tokio::spawn(async move {
        while let Some(request) = a_inbox.recv().await {
            let reply = request.payload.clone();
            request.respond(reply);
        }
    });

    // The flood: fresh handshake starts from a few source ports, by a stranger to both clusters
    // who offers the gateway's protocol (a handshake offering another ends at once).
    let stranger = federation_tls(
        &Trust::Secret(secret("stranger")),
        &name("stranger"),
        &[(name("a"), RemoteRoot::Secret(secret("stranger")))],
    )
    .expect("the stranger's configs");
    let client = &stranger.clients[&name("a")];
    let sockets: Vec<UdpSocket> = (0..4)
        .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    let before = rss();
    let mut most_in_progress = 0;
    for i in 0..FLOOD {
        let _ = sockets[i % sockets.len()].send_to(&initial(client, a_addr), a_addr);
        if i % 64 == 0 {
            tokio::task::yield_now().await;
            most_in_progress = most_in_progress.max(a.handshakes_in_progress());
        }
    }
    // Loopback may drop some of the flood; half of it looked at is plenty to see a bound.
    wait_until("the flood is looked at", || {
        let in_progress = a.handshakes_in_progress();
        most_in_progress = most_in_progress.max(in_progress);
        in_progress as u64 + a.turned_away() >= FLOOD as u64 / 2
    })
    .await;
    assert!(
        most_in_progress <= GATEWAY_HANDSHAKES_MAX,
        "{most_in_progress} handshakes in progress, limit {GATEWAY_HANDSHAKES_MAX}"
    );
    assert_grown_at_most(before, RSS_GROWTH_MAX);

    // The linked gateway still gets through while the flood's handshakes hold their permits:
    // it answers the Retry.
    let reply = b
        .request(
            &name("a"),
            a_addr,
            Bytes::from_static(b"still here"),
            Duration::from_secs(5),
        )
        .await
        .expect("a linked gateway is served during the flood");
    assert_eq!(&reply[..], b"still here");
}
