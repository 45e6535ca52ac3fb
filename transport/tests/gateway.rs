//! Gateway links between clusters on loopback: a linked gateway is served, a gateway of an
//! unlinked cluster is refused and counted, and a root trusted for one cluster cannot vouch for
//! a certificate naming another.

use std::time::Duration;

use bytes::Bytes;
use foundation_transport::gateway::{GatewayConfig, GatewayEndpoint, GatewayError, GatewayRequest};
use foundation_transport::security::RemoteRoot;
use foundation_transport::{ClusterName, ClusterSecret, HandshakeFailure, Trust};
use tokio::sync::mpsc;

fn name(n: &str) -> ClusterName {
    ClusterName::new(n).unwrap()
}

fn secret(n: &str) -> ClusterSecret {
    ClusterSecret::new(format!("the secret of cluster {n}")).unwrap()
}

fn config() -> GatewayConfig {
    GatewayConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        keep_alive: Duration::from_millis(500),
        idle_timeout: Duration::from_secs(5),
        max_frame: 1 << 20,
    }
}

/// A gateway of `local` proving itself with `own` secret, linked to `links` by their secrets.
fn gateway(
    local: &str,
    own: &str,
    links: &[&str],
) -> (GatewayEndpoint, mpsc::Receiver<GatewayRequest>) {
    let links: Vec<_> = links
        .iter()
        .map(|c| (name(c), RemoteRoot::Secret(secret(c))))
        .collect();
    GatewayEndpoint::start(&config(), &Trust::Secret(secret(own)), &name(local), &links).unwrap()
}

/// Answers every request with its payload reversed, saying who asked.
fn echo(mut inbox: mpsc::Receiver<GatewayRequest>) -> mpsc::UnboundedReceiver<ClusterName> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(request) = inbox.recv().await {
            let mut reply = request.payload.to_vec();
            reply.reverse();
            let _ = tx.send(request.from.clone());
            request.respond(reply.into());
        }
    });
    rx
}

#[tokio::test]
async fn linked_gateways_talk_and_others_are_refused() {
    let (a, a_inbox) = gateway("a", "a", &["b"]);
    let mut callers = echo(a_inbox);
    let a_addr = a.local_addr().unwrap();
    let (b, _b_inbox) = gateway("b", "b", &["a"]);
    let deadline = Duration::from_secs(5);

    let reply = b
        .request(&name("a"), a_addr, Bytes::from_static(b"abc"), deadline)
        .await
        .unwrap();
    assert_eq!(&reply[..], b"cba");
    assert_eq!(callers.recv().await, Some(name("b")));
    assert_eq!(b.bytes(&name("a")).sent, 3);
    assert_eq!(b.bytes(&name("a")).received, 3);
    assert_eq!(a.refused(), 0);

    // c trusts a, but a has no link to c: refused in the handshake, and counted by a.
    let (c, _c_inbox) = gateway("c", "c", &["a"]);
    let refused = c
        .request(&name("a"), a_addr, Bytes::from_static(b"x"), deadline)
        .await;
    assert!(
        refused.is_err(),
        "an unlinked cluster was served: {refused:?}"
    );
    // A certificate naming c signed by b's CA: b's root is trusted for b only.
    let (forged, _f_inbox) = gateway("c", "b", &["a"]);
    let forged = forged
        .request(&name("a"), a_addr, Bytes::from_static(b"x"), deadline)
        .await;
    assert!(forged.is_err(), "b's root vouched for c: {forged:?}");
    wait_for(|| a.refused() == 2).await;
    assert_eq!(callers.try_recv().ok(), None, "nothing reached the engine");

    // A request to a cluster with no link is a typed error, not a dial.
    let not_linked = b
        .request(&name("z"), a_addr, Bytes::from_static(b"x"), deadline)
        .await;
    assert!(matches!(not_linked, Err(GatewayError::NotLinked(c)) if c == name("z")));
}

#[tokio::test]
async fn a_gateway_that_does_not_trust_the_remote_refuses_it_as_a_client() {
    let (a, _a_inbox) = gateway("a", "a", &["b"]);
    // d claims to dial b at a's address: a's certificate does not name b.
    let (d, _d_inbox) = gateway("d", "d", &["b"]);
    let result = d
        .request(
            &name("b"),
            a.local_addr().unwrap(),
            Bytes::from_static(b"x"),
            Duration::from_secs(5),
        )
        .await;
    match result {
        Err(GatewayError::Handshake { failure, .. }) => assert!(matches!(
            failure,
            HandshakeFailure::UntrustedCertificate | HandshakeFailure::ForeignCluster
        )),
        other => panic!("expected a refused handshake, got {other:?}"),
    }
}

async fn wait_for(mut done: impl FnMut() -> bool) {
    for _ in 0..100 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(done(), "condition not reached in 2 s");
}
