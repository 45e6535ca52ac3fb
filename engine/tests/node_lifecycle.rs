//! A stopped node lets go of everything, also when the application's own closures hold the
//! node: real nodes on loopback whose RPC handler, pub/sub subscription and config watcher
//! keep clones of their node leave or abort, and afterwards their UDP port binds again and
//! their shared state is freed.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::sync::Weak;
use std::time::Duration;

use bytes::Bytes;
use common::eventually;
use foundation_engine::runtime::agents::{Agent, AgentSpec, Context, Message};
use foundation_engine::runtime::services::{typed, HandlerError, HealthCheck, ServiceOptions};
use foundation_engine::runtime::{Node, NodeSettings};
use foundation_transport::TransportMetrics;
use prometheus_client::registry::Registry;

const SECRET: &str = "lifecycle test secret";
const SOON: Duration = Duration::from_secs(10);

fn settings(seeds: Vec<SocketAddr>) -> NodeSettings {
    NodeSettings {
        http: Some("127.0.0.1:0".parse().unwrap()),
        ..common::settings("lifecycle-test", SECRET, seeds)
    }
}

/// What must be gone once a stopped node's last handle is dropped.
struct Remains {
    registry: Weak<Registry>,
    transport: Weak<TransportMetrics>,
    udp: SocketAddr,
    http: SocketAddr,
}

impl Remains {
    fn of(node: &Node) -> Self {
        Self {
            registry: std::sync::Arc::downgrade(node.registry()),
            transport: std::sync::Arc::downgrade(node.endpoint().metrics()),
            udp: node.addr(),
            http: node.http_addr().unwrap(),
        }
    }

    /// Waits for every part of the node to be released (tasks end at their next poll, so
    /// not at once), failing the test with what is still held.
    async fn gone(self) {
        eventually(SOON, "the node's registry is freed", || {
            self.registry.strong_count() == 0
        })
        .await;
        eventually(SOON, "the node's transport is freed", || {
            self.transport.strong_count() == 0
        })
        .await;
        eventually(SOON, "the node's UDP port is free", || {
            UdpSocket::bind(self.udp).is_ok()
        })
        .await;
        eventually(SOON, "the node's HTTP port is free", || {
            std::net::TcpListener::bind(self.http).is_ok()
        })
        .await;
    }
}

/// An agent that answers with the number of members its node sees.
struct Counter(Node);

impl Agent for Counter {
    async fn handle(&mut self, _: &Context, _: Message) -> Result<Bytes, HandlerError> {
        Ok(Bytes::from(self.0.members().len().to_string()))
    }
}

/// A node whose application closures all hold a clone of it: a service handler that uses the
/// node — the common pattern — called once from a peer, the service's health check, an agent
/// and a placed workload.
async fn serving_with_its_own_node() -> (Node, Node) {
    let server = Node::start(settings(vec![])).await.unwrap();
    let client = Node::start(settings(vec![server.addr()])).await.unwrap();
    let inner = server.clone();
    let handler = typed(move |n: u64| {
        let node = inner.clone();
        async move {
            let members = node.members().len() as u64;
            Ok::<_, HandlerError>(n + members)
        }
    });
    let held = server.clone();
    let check = HealthCheck::custom(move || {
        let node = held.clone();
        async move { node.http_addr().is_some() }
    });
    server
        .services()
        .register("count", handler, ServiceOptions::default().check(check))
        .await
        .unwrap();
    let held = server.clone();
    let agent = AgentSpec::new("counter", move || Counter(held.clone()));
    server.agents().spawn(agent).await.unwrap();
    let held = server.clone();
    let workload = move || {
        let node = held.clone();
        async move {
            std::future::pending::<()>().await;
            drop(node)
        }
    };
    server.placement().local("holder", workload).await.unwrap();
    eventually(SOON, "the client sees the service", || {
        !client.services().lookup("count").is_empty()
    })
    .await;
    let answer: u64 = client
        .rpc()
        .call("count", &1u64, SOON)
        .await
        .expect("the handler answers");
    assert_eq!(answer, 2, "one member seen by the server, plus one");
    (server, client)
}

/// Stops the node gracefully or as a crash would, drops the test's handle, and waits for
/// everything of it to be freed.
async fn freed_after(leave: bool) {
    let (server, client) = serving_with_its_own_node().await;
    let remains = Remains::of(&server);
    match leave {
        true => server.leave().await,
        false => server.abort().await,
    }
    drop(server);
    remains.gone().await;
    client.abort().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_handler_holds_it_is_freed_after_leave() {
    freed_after(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_handler_holds_it_is_freed_after_abort() {
    freed_after(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_node_starts_on_the_port_of_one_that_left() {
    let (server, client) = serving_with_its_own_node().await;
    let port = server.addr();
    server.leave().await;
    drop(server);
    eventually(SOON, "the port is free", || UdpSocket::bind(port).is_ok()).await;
    let mut settings = settings(vec![client.addr()]);
    settings.transport.bind = port;
    let restarted = Node::start(settings).await.expect("the port is free");
    assert_eq!(restarted.addr(), port);
    restarted.abort().await;
    client.abort().await;
}

/// A start that fails after the node's parts began (its HTTP port is taken) leaves nothing
/// running: the agents' tasks held the endpoint, so its UDP port stayed bound and its tasks
/// ran on, for each failed start, until the process ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_that_fails_leaves_nothing_running() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let udp = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let runtime = tokio::runtime::Handle::current();
    let tasks_before = runtime.metrics().num_alive_tasks();
    let mut refused = settings(vec![]);
    refused.http = Some(taken.local_addr().unwrap());
    refused.transport.bind = udp;
    let failed = Node::start(refused).await;
    assert!(failed.is_err(), "the HTTP port is taken");
    eventually(SOON, "the failed node's UDP port is free", || {
        UdpSocket::bind(udp).is_ok()
    })
    .await;
    eventually(SOON, "the failed node's tasks have ended", || {
        runtime.metrics().num_alive_tasks() <= tasks_before
    })
    .await;
}
