//! Federation between clusters of real nodes on loopback: a service exported in cluster `a` is
//! found and called from cluster `b` through their gateways (with the caller's trace); an
//! unexported one stays invisible; a gateway of an unlinked cluster `c` is refused; when the
//! link is cut each cluster keeps working alone, and after the heal the directory converges.
//! Also: calls from nodes that are not gateways (relayed), the link metrics, `GET /federation`.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::eventually;
use foundation_engine::federation::wire::{
    self, FederationReply, FederationRequest, ForwardedCall, RelayReply, RelayRequest,
    RemoteCallError, RELAY_SERVICE,
};
use foundation_engine::federation::{ExportedService, FederationError, LinkState, WanTimers};
use foundation_engine::runtime::federation::{
    CrossClusterError, FederationSettings, GatewayStartError, LinkSettings,
};
use foundation_engine::runtime::services::{
    typed, with_trace, Call, CallOptions, HandlerError, ServiceOptions,
};
use foundation_engine::runtime::{Node, NodeSettings};
use foundation_engine::services::trace::TraceContext;
use foundation_transport::gateway::{GatewayConfig, GatewayEndpoint, GatewayError, GatewayRequest};
use foundation_transport::security::RemoteRoot;
use foundation_transport::{ClusterName, ClusterSecret, Trust};

const SOON: Duration = Duration::from_secs(10);
const DEADLINE: Duration = Duration::from_secs(2);

fn secret(cluster: &str) -> String {
    format!("federation test secret of {cluster}")
}

/// `n` nodes of `cluster`, all alive to each other.
async fn cluster(name: &str, n: usize) -> Vec<Node> {
    let secret = secret(name);
    common::cluster(n, |seeds| common::settings(name, &secret, seeds)).await
}

/// A loopback UDP port free a moment ago: gateways must know each other's address up front.
fn free_addr() -> SocketAddr {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.local_addr().unwrap()
}

fn gateway(bind: SocketAddr, exports: &[&str], links: &[(&str, SocketAddr)]) -> FederationSettings {
    let links = links
        .iter()
        .map(|(cluster, addr)| LinkSettings {
            cluster: ClusterName::new(*cluster).unwrap(),
            gateways: vec![*addr],
            root: RemoteRoot::Secret(ClusterSecret::new(secret(cluster)).unwrap()),
        })
        .collect();
    FederationSettings {
        links,
        exports: exports.iter().map(|s| s.to_string()).collect(),
        timers: WanTimers {
            probe_interval: Duration::from_millis(200),
            probe_timeout: Duration::from_millis(400),
            down_after: 3,
        },
        ..FederationSettings::new(bind)
    }
}

/// Starts a gateway, retrying while the OS still holds a just-closed socket on its port.
async fn start_gateway(node: &Node, settings: FederationSettings) {
    for _ in 0..50 {
        match node.start_gateway(settings.clone()) {
            Ok(_) => return,
            Err(GatewayStartError::Endpoint(GatewayError::Bind { .. })) => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("gateway did not start: {e}"),
        }
    }
    panic!("gateway port stayed taken");
}

/// Retries `call` until it succeeds (a gateway's relay takes a moment to be seen), for 10 s.
async fn retry<T, E: std::fmt::Debug, F: std::future::Future<Output = Result<T, E>>>(
    mut call: impl FnMut() -> F,
) -> T {
    let start = tokio::time::Instant::now();
    loop {
        match call().await {
            Ok(value) => return value,
            Err(e) if start.elapsed() > SOON => panic!("still failing after {SOON:?}: {e:?}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Looks `service` of `cluster` up from `node` until it is there (an export, or a gateway's
/// relay, takes a moment to be seen), for 10 s.
async fn found(node: &Node, cluster: &str, service: &str) -> ExportedService {
    retry(|| async {
        match node.services().lookup_in(cluster, service).await {
            Ok(Some(entry)) => Ok(entry),
            other => Err(other),
        }
    })
    .await
}

fn doubler() -> impl foundation_engine::runtime::services::Handler {
    typed(|n: u64| async move { Ok::<_, HandlerError>(n * 2) })
}

/// Stops every node's gateway, then the node.
async fn stop(clusters: &[&[Node]]) {
    for node in clusters.iter().flat_map(|nodes| nodes.iter()) {
        node.stop_gateway();
        node.abort().await;
    }
}

fn metrics(node: &Node) -> String {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, node.registry()).unwrap();
    text
}

fn link_state(node: &Node, cluster: &str) -> Option<LinkState> {
    let links = node.federation()?.links();
    let link = links.iter().find(|l| l.cluster.as_str() == cluster)?;
    Some(link.state)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clusters_find_and_call_exported_services_and_survive_a_cut() {
    let (a, b, c) = (
        cluster("a", 2).await,
        cluster("b", 2).await,
        cluster("c", 1).await,
    );
    let (a_gw, b_gw, c_gw) = (free_addr(), free_addr(), free_addr());
    let seen = Arc::new(Mutex::new(None));
    let traced_doubler = {
        let seen = seen.clone();
        move |call: Call| {
            *seen.lock().unwrap() = Some((call.trace, call.origin.clone()));
            let n: Result<u64, _> = call.decode();
            async move { Ok(Bytes::from(postcard::to_stdvec(&(n? * 2)).unwrap())) }
        }
    };
    let options = ServiceOptions::default;
    a[1].services()
        .register("billing", traced_doubler, options())
        .await
        .unwrap();
    a[1].services()
        .register("ledger", doubler(), options())
        .await
        .unwrap();
    b[1].services()
        .register("search", doubler(), options())
        .await
        .unwrap();
    let a_settings = gateway(a_gw, &["billing", "audit"], &[("b", b_gw)]);
    start_gateway(&a[0], a_settings.clone()).await;
    start_gateway(&b[0], gateway(b_gw, &["search"], &[("a", a_gw)])).await;
    // c trusts a, but a has no link to c.
    start_gateway(&c[0], gateway(c_gw, &[], &[("a", a_gw)])).await;

    // Exported services cross the link; unexported ones do not exist on the other side.
    assert_eq!(found(&b[0], "a", "billing").await.healthy, 1);
    found(&a[0], "b", "search").await;
    let ledger = b[0].services().lookup_in("a", "ledger").await;
    assert!(matches!(ledger, Ok(None)), "{ledger:?}");
    let root = TraceContext::new_root(&mut rand10::rng(), true);
    let rpc = b[0].rpc();
    let doubled: u64 = with_trace(root, rpc.call_in("a", "billing", &21u64, DEADLINE))
        .await
        .unwrap();
    assert_eq!(doubled, 42);
    let (trace, origin) = seen.lock().unwrap().clone().expect("the handler in a ran");
    assert_eq!(
        trace.trace_id, root.trace_id,
        "the caller's trace crosses the link"
    );
    assert_eq!(
        origin,
        Some(ClusterName::new("b").unwrap()),
        "the calling cluster"
    );
    let unexported = rpc.call_in::<_, u64>("a", "ledger", &1u64, DEADLINE).await;
    assert!(
        matches!(
            unexported,
            Err(CrossClusterError::Federation(
                FederationError::NotExported { .. }
            ))
        ),
        "{unexported:?}"
    );
    // A node that is not a gateway looks up through its cluster's gateway, same answers.
    assert_eq!(found(&b[1], "a", "billing").await.healthy, 1);
    for node in [&b[0], &b[1]] {
        let unknown = node.services().lookup_in("nowhere", "billing").await;
        assert!(
            matches!(
                unknown,
                Err(CrossClusterError::Federation(
                    FederationError::UnknownCluster(_)
                ))
            ),
            "{unknown:?}"
        );
        let ledger = node.services().lookup_in("a", "ledger").await;
        assert!(matches!(ledger, Ok(None)), "{ledger:?}");
    }
    // A node that is not a gateway calls through its cluster's gateway, trace kept.
    let relayed = retry(|| async {
        let rpc = b[1].rpc();
        with_trace(root, rpc.call_in::<_, u64>("a", "billing", &8u64, DEADLINE)).await
    })
    .await;
    assert_eq!(relayed, 16);
    let (trace, origin) = seen.lock().unwrap().clone().unwrap();
    assert_eq!(trace.trace_id, root.trace_id);
    assert_eq!(
        origin,
        Some(ClusterName::new("b").unwrap()),
        "relayed, still b's"
    );
    let relayed_refusal = b[1]
        .rpc()
        .call_in::<_, u64>("a", "ledger", &1u64, DEADLINE)
        .await;
    assert!(
        matches!(
            relayed_refusal,
            Err(CrossClusterError::Federation(
                FederationError::NotExported { .. }
            ))
        ),
        "{relayed_refusal:?}"
    );
    let a_gateway = a[0].federation().unwrap();
    let link = &b[0].federation().unwrap().links()[0];
    assert!(link.rtt.is_some() && link.state == LinkState::Up);
    assert!(
        b[0].federation()
            .unwrap()
            .bytes(&ClusterName::new("a").unwrap())
            .sent
            > 0
    );

    // c's gateway is refused by a, counted there; a's directory knows nothing of c.
    eventually(SOON, "c refused and its link down", || {
        a_gateway.refused() >= 1 && link_state(&c[0], "a") == Some(LinkState::Down)
    })
    .await;
    let from_c = c[0].services().lookup_in("a", "billing").await;
    assert!(matches!(from_c, Ok(None)), "{from_c:?}");
    let c_name = ClusterName::new("c").unwrap();
    assert!(a_gateway.directory().cluster(&c_name).is_none());

    // The metrics per link, and the refusal counted.
    eventually(SOON, "link metrics", || {
        let text = metrics(&b[0]);
        text.contains("foundation_federation_link_up{cluster=\"a\"} 1")
            && text.contains("foundation_federation_link_rtt_seconds{cluster=\"a\"}")
            && !text.contains(
                "foundation_federation_link_bytes_total{cluster=\"a\",direction=\"sent\"} 0",
            )
            && text.contains(
                "foundation_federation_link_bytes_total{cluster=\"a\",direction=\"sent\"}",
            )
    })
    .await;
    eventually(SOON, "refusal counted", || {
        let text = metrics(&a[0]);
        text.contains("foundation_federation_refused_handshakes_total ")
            && !text.contains("foundation_federation_refused_handshakes_total 0")
    })
    .await;

    // The cut: a's gateway stops (its socket is freed once the last handle is dropped).
    drop(a_gateway);
    // b's link goes down; each cluster goes on alone.
    a[0].stop_gateway();
    eventually(SOON, "b's link down", || {
        link_state(&b[0], "a") == Some(LinkState::Down)
    })
    .await;
    eventually(SOON, "link_up 0", || {
        metrics(&b[0]).contains("foundation_federation_link_up{cluster=\"a\"} 0")
    })
    .await;
    let cut = rpc.call_in::<_, u64>("a", "billing", &1u64, DEADLINE).await;
    assert!(
        matches!(
            cut,
            Err(CrossClusterError::Federation(FederationError::LinkDown(_)))
        ),
        "{cut:?}"
    );
    let relayed_cut = b[1]
        .rpc()
        .call_in::<_, u64>("a", "billing", &1u64, DEADLINE)
        .await;
    assert!(
        matches!(
            relayed_cut,
            Err(CrossClusterError::Federation(FederationError::LinkDown(_)))
        ),
        "{relayed_cut:?}"
    );
    // a's only gateway is gone: its relay leaves a's registry, and a's nodes are told so.
    retry(|| async {
        match a[1]
            .rpc()
            .call_in::<_, u64>("b", "search", &1u64, DEADLINE)
            .await
        {
            Err(CrossClusterError::NoGateway) => Ok(()),
            other => Err(other),
        }
    })
    .await;
    let no_gateway = a[1].services().lookup_in("b", "search").await;
    assert!(
        matches!(no_gateway, Err(CrossClusterError::NoGateway)),
        "{no_gateway:?}"
    );
    let inside_a: u64 = a[0].rpc().call("billing", &5u64, DEADLINE).await.unwrap();
    let inside_b: u64 = b[0].rpc().call("search", &6u64, DEADLINE).await.unwrap();
    assert_eq!((inside_a, inside_b), (10, 12));
    assert_eq!(a[0].members().len(), 1, "a's membership untouched");
    assert_eq!(b[0].members().len(), 1, "b's membership untouched");
    // While cut, a starts exporting another service.
    a[1].services()
        .register("audit", doubler(), options())
        .await
        .unwrap();

    // The heal: the gateway comes back on its address; the directories converge.
    start_gateway(&a[0], a_settings).await;
    found(&b[0], "a", "audit").await;
    found(&b[1], "a", "audit").await;
    eventually(SOON, "directories equal", || {
        a[0].federation().unwrap().directory() == b[0].federation().unwrap().directory()
    })
    .await;
    // The returning gateway's push can bring the directory before b's next probe is answered,
    // and until then the link is down (calls get `LinkDown`): wait for that probe.
    eventually(SOON, "b's link to a up again", || {
        link_state(&b[0], "a") == Some(LinkState::Up)
    })
    .await;
    let healed: u64 = rpc.call_in("a", "audit", &4u64, DEADLINE).await.unwrap();
    assert_eq!(healed, 8);

    stop(&[&a, &b, &c]).await;
}

/// A gateway endpoint of cluster `local` that `linked`'s gateways accept, sending what a test
/// writes.
fn gateway_of(
    local: &str,
    linked: &str,
) -> (GatewayEndpoint, tokio::sync::mpsc::Receiver<GatewayRequest>) {
    let trust = Trust::Secret(ClusterSecret::new(secret(local)).unwrap());
    let root = RemoteRoot::Secret(ClusterSecret::new(secret(linked)).unwrap());
    let config = GatewayConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        keep_alive: Duration::from_millis(500),
        idle_timeout: Duration::from_secs(5),
        max_frame: 1 << 20,
    };
    let links = [(ClusterName::new(linked).unwrap(), root)];
    let name = ClusterName::new(local).unwrap();
    GatewayEndpoint::start(&config, &trust, &name, &links).unwrap()
}

/// A call of `service` with 3 as its body, asking for `deadline_micros`.
fn call_of(service: &str, deadline_micros: u64) -> FederationRequest {
    FederationRequest::Call {
        service: service.into(),
        body: postcard::to_stdvec(&3u64).unwrap(),
        deadline_micros,
        trace: TraceContext::new_root(&mut rand10::rng(), false),
        idempotent: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_refuses_what_is_not_exported_and_garbage_and_reports_on_http() {
    // A gateway of b that lies: it asks a's gateway directly for a service a does not export.
    let with_http = |seeds| NodeSettings {
        http: Some("127.0.0.1:0".parse().unwrap()),
        ..common::settings("a", &secret("a"), seeds)
    };
    let a = common::cluster(1, with_http).await;
    let http = a[0].http_addr().unwrap();
    let before = common::raw_http::get(http, "/federation").await;
    let before: serde_json::Value = serde_json::from_str(&before.body).unwrap();
    assert_eq!(before, serde_json::json!({ "gateway": false }));
    let a_gw = free_addr();
    let options = ServiceOptions::default;
    a[0].services()
        .register("ledger", doubler(), options())
        .await
        .unwrap();
    a[0].services()
        .register("billing", doubler(), options())
        .await
        .unwrap();
    start_gateway(&a[0], gateway(a_gw, &["billing"], &[("b", free_addr())])).await;
    let a_name = ClusterName::new("a").unwrap();
    let (liar, _inbox) = gateway_of("b", "a");
    let ask = |service: &str| call_of(service, 2_000_000);
    let send = |request: Vec<u8>| liar.request(&a_name, a_gw, request.into(), DEADLINE);
    let reply = send(postcard::to_stdvec(&ask("ledger")).unwrap())
        .await
        .unwrap();
    let reply: FederationReply = postcard::from_bytes(&reply).unwrap();
    assert_eq!(
        reply,
        FederationReply::Call(Err(RemoteCallError::NotExported))
    );
    eventually(SOON, "billing exported", || {
        a[0].federation()
            .unwrap()
            .directory()
            .cluster(&a_name)
            .is_some_and(|e| e.services.contains_key("billing"))
    })
    .await;
    let reply = send(postcard::to_stdvec(&ask("billing")).unwrap())
        .await
        .unwrap();
    let reply: FederationReply = postcard::from_bytes(&reply).unwrap();
    let six = postcard::to_stdvec(&6u64).unwrap();
    assert_eq!(reply, FederationReply::Call(Ok(six)));
    let reply = send(vec![0xff; 64]).await.unwrap();
    let reply: FederationReply = postcard::from_bytes(&reply).unwrap();
    assert!(matches!(reply, FederationReply::Refused(_)), "{reply:?}");
    // The frames above are unversioned, as older releases write them; one of a newer wire
    // version (its trailer's last two bytes) is refused, saying so, though its body reads.
    let mut newer = wire::encode(&ask("billing")).unwrap();
    let at = newer.len() - 2;
    newer[at..].copy_from_slice(&(wire::WIRE_VERSION + 1).to_be_bytes());
    let reply = wire::decode(&send(newer).await.unwrap());
    let Ok(FederationReply::Refused(why)) = reply else {
        panic!("a newer wire version was not refused: {reply:?}");
    };
    assert!(why.contains("newer than this gateway's"), "{why}");
    let status = common::raw_http::get(http, "/federation").await;
    let status: serde_json::Value = serde_json::from_str(&status.body).unwrap();
    assert_eq!(status["gateway"], true);
    assert_eq!(status["links"][0]["cluster"], "b");
    assert_eq!(
        status["directory"]["a"]["services"]["billing"]["healthy"],
        1
    );
    assert!(status["directory"]["a"]["services"].get("ledger").is_none());
    a[0].stop_gateway();
    a[0].abort().await;
}

/// A linked cluster names its call's deadline, but not past the gateway's cap: a call asking
/// for u64::MAX µs (585,000 years) runs two seconds. Before the cap its handler was given all
/// of it, holding a task and a handler's slot as long as it ran.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_linked_clusters_deadline_is_capped_by_the_gateway() {
    let a = cluster("a", 1).await;
    let time_left = |call: Call| {
        let left = call.deadline - tokio::time::Instant::now();
        let millis = u64::try_from(left.as_millis()).unwrap_or(u64::MAX);
        async move { Ok(Bytes::from(postcard::to_stdvec(&millis).unwrap())) }
    };
    a[0].services()
        .register("time-left", time_left, ServiceOptions::default())
        .await
        .unwrap();
    let a_gw = free_addr();
    let settings = FederationSettings {
        max_call_deadline: Duration::from_secs(2),
        ..gateway(a_gw, &["time-left"], &[("b", free_addr())])
    };
    start_gateway(&a[0], settings).await;
    let a_name = ClusterName::new("a").unwrap();
    eventually(SOON, "time-left exported", || {
        a[0].federation()
            .unwrap()
            .directory()
            .cluster(&a_name)
            .is_some_and(|e| e.services.contains_key("time-left"))
    })
    .await;
    let (b, _inbox) = gateway_of("b", "a");
    let request = wire::encode(&call_of("time-left", u64::MAX)).unwrap();
    let reply = b.request(&a_name, a_gw, request.into(), DEADLINE).await;
    let reply = wire::decode(&reply.unwrap());
    let Ok(FederationReply::Call(Ok(body))) = reply else {
        panic!("the call failed: {reply:?}");
    };
    let given: u64 = postcard::from_bytes(&body).unwrap();
    assert!(
        given <= 2_000,
        "the handler was given {given} ms, over the cap"
    );
    a[0].stop_gateway();
    a[0].abort().await;
}

/// A node and its cluster's gateway speak the federation wire's versioned frames: a relay
/// request of a newer release is refused, saying so, and one of a release before the version
/// is still served, its reply readable there. Before, the gateway read a newer request by its
/// own schema (and served it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_request_of_a_newer_wire_version_is_refused() {
    let a = cluster("a", 2).await;
    start_gateway(&a[0], gateway(free_addr(), &[], &[("b", free_addr())])).await;
    eventually(SOON, "the relay registered", || {
        a[1].services().healthy(RELAY_SERVICE).len() == 1
    })
    .await;
    let lookup = RelayRequest::Lookup {
        cluster: "b".into(),
        service: "billing".into(),
    };
    let (rpc, options) = (a[1].rpc(), CallOptions::default());
    let older = postcard::to_stdvec(&lookup).unwrap();
    let reply = rpc.call_bytes(RELAY_SERVICE, older.into(), DEADLINE, &options);
    let reply = reply.await.expect("an older node's request is served");
    let read_there: RelayReply = postcard::from_bytes(&reply).unwrap();
    assert!(read_there.is_ok(), "{read_there:?}");
    let mut newer = wire::encode(&lookup).unwrap();
    let at = newer.len() - 2;
    newer[at..].copy_from_slice(&(wire::WIRE_VERSION + 1).to_be_bytes());
    let refused = rpc.call_bytes(RELAY_SERVICE, newer.into(), DEADLINE, &options);
    let refused = refused.await.expect_err("a newer request was served");
    assert!(
        refused.to_string().contains("newer than this gateway's"),
        "{refused}"
    );
    stop(&[&a]).await;
}

/// Cluster a (2 nodes, `billing` on the second) with a gateway on each node, and cluster b
/// (1 node, or `b_nodes`) whose gateway (on its first node) links to both of a's, with
/// `timers` if given. A gateway of a also exports `held`.
struct TwoGatewaysOfA {
    a: Vec<Node>,
    b: Vec<Node>,
    a_gateways: [SocketAddr; 2],
    b_gateway: SocketAddr,
}

impl TwoGatewaysOfA {
    async fn start(timers: Option<WanTimers>) -> Self {
        Self::start_with(timers, 1).await
    }

    async fn start_with(timers: Option<WanTimers>, b_nodes: usize) -> Self {
        let (a, b) = (cluster("a", 2).await, cluster("b", b_nodes).await);
        let (a_gateways, b_gw) = ([free_addr(), free_addr()], free_addr());
        a[1].services()
            .register("billing", doubler(), ServiceOptions::default())
            .await
            .unwrap();
        let setup = Self {
            a,
            b,
            a_gateways,
            b_gateway: b_gw,
        };
        for node in &setup.a {
            start_gateway(node, setup.a_settings(node)).await;
        }
        let mut b_settings = gateway(b_gw, &[], &[("a", a_gateways[0])]);
        b_settings.links[0].gateways.push(a_gateways[1]);
        if let Some(timers) = timers {
            b_settings.timers = timers;
        }
        start_gateway(&setup.b[0], b_settings).await;
        setup
    }

    /// The gateway settings of `node`, one of a's.
    fn a_settings(&self, node: &Node) -> FederationSettings {
        let index = usize::from(node.id() == self.a[1].id());
        let exports = ["billing", "held"];
        gateway(self.a_gateways[index], &exports, &[("b", self.b_gateway)])
    }

    /// The node of a whose gateway does not run.
    fn stopped_gateway(&self) -> &Node {
        self.a.iter().find(|n| n.federation().is_none()).unwrap()
    }

    /// The gateway of a that b's link uses now: the node that runs it, and the other address.
    fn in_use(&self) -> (&Node, SocketAddr) {
        let [a0_gw, a1_gw] = self.a_gateways;
        match self.b[0].federation().unwrap().links()[0].gateway {
            gw if gw == a0_gw => (&self.a[0], a1_gw),
            _ => (&self.a[1], a0_gw),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_fails_over_to_the_remote_clusters_other_gateway() {
    let setup = TwoGatewaysOfA::start(None).await;
    let rpc = setup.b[0].rpc();
    let before: u64 = retry(|| rpc.call_in("a", "billing", &2u64, DEADLINE)).await;
    assert_eq!(before, 4);
    let gateway_in_use = |node: &Node| node.federation().unwrap().links()[0].gateway;
    // The link comes up on whichever gateway answered b's first round first.
    let (in_use, other) = setup.in_use();

    // That gateway stops: b's probes miss it and move the link to a's other gateway.
    in_use.stop_gateway();
    let after: u64 = retry(|| rpc.call_in("a", "billing", &3u64, DEADLINE)).await;
    assert_eq!(after, 6);
    assert_eq!(gateway_in_use(&setup.b[0]), other);
    assert_eq!(link_state(&setup.b[0], "a"), Some(LinkState::Up));
    stop(&[&setup.a, &setup.b]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_comes_up_on_the_gateway_that_answers_whatever_the_order_listed() {
    let (a, b) = (cluster("a", 1).await, cluster("b", 1).await);
    let (a_gw, b_gw, nobody) = (free_addr(), free_addr(), free_addr());
    start_gateway(&a[0], gateway(a_gw, &[], &[("b", b_gw)])).await;
    // b lists first a gateway of a where nothing listens; its probe there waits out a long
    // timeout, but a link that is not up probes every gateway, so a's answer brings it up.
    let mut b_settings = gateway(b_gw, &[], &[("a", nobody)]);
    b_settings.links[0].gateways.push(a_gw);
    b_settings.timers = WanTimers {
        probe_interval: Duration::from_millis(500),
        probe_timeout: Duration::from_secs(30),
        down_after: 3,
    };
    start_gateway(&b[0], b_settings).await;
    retry(|| async {
        match link_state(&b[0], "a") {
            Some(LinkState::Up) => Ok(()),
            other => Err(other),
        }
    })
    .await;
    assert_eq!(b[0].federation().unwrap().links()[0].gateway, a_gw);
    stop(&[&a, &b]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_that_cannot_reach_one_gateway_is_retried_on_the_next() {
    // When the gateway b's link uses stops, b's probe of it fails only after a dial gives up
    // (3 probe intervals, 3 s), so the link still points at it when the call is made; the
    // call's own dial fails as soon, and leaves it 5 s for the other gateway.
    let setup = TwoGatewaysOfA::start(Some(WanTimers {
        probe_interval: Duration::from_secs(1),
        probe_timeout: Duration::from_secs(30),
        down_after: 3,
    }))
    .await;
    let b = &setup.b;
    found(&b[0], "a", "billing").await;
    let (stopped, other) = setup.in_use();
    stopped.stop_gateway();
    // Its close reaches b within a loopback round trip. A call made before that would find the
    // connection open and send its request, and a sent request of a call that is not
    // idempotent is never retried (the gateway may have served it): not the case under test.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let doubled: u64 = b[0]
        .rpc()
        .call_in("a", "billing", &5u64, Duration::from_secs(8))
        .await
        .unwrap();
    assert_eq!(
        doubled, 10,
        "answered by a's other gateway after the failed handshake"
    );
    assert_eq!(b[0].federation().unwrap().links()[0].gateway, other);
    stop(&[&setup.a, &setup.b]).await;
}

fn names(list: &[&str]) -> std::collections::BTreeSet<ClusterName> {
    list.iter().map(|c| ClusterName::new(*c).unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spoke_calls_a_third_cluster_through_its_hub() {
    // a and c are linked only to the hub h, which carries calls between them (not for b).
    let (a, h, c) = (
        cluster("a", 2).await,
        cluster("h", 1).await,
        cluster("c", 2).await,
    );
    let (a_gw, h_gw, c_gw) = (free_addr(), free_addr(), free_addr());
    let seen = Arc::new(Mutex::new(None));
    let traced_doubler = {
        let seen = seen.clone();
        move |call: Call| {
            let left = call.deadline - tokio::time::Instant::now();
            *seen.lock().unwrap() = Some((call.trace, left, call.origin.clone()));
            let n: Result<u64, _> = call.decode();
            async move { Ok(Bytes::from(postcard::to_stdvec(&(n? * 2)).unwrap())) }
        }
    };
    let options = ServiceOptions::default;
    c[1].services()
        .register("search", traced_doubler, options())
        .await
        .unwrap();
    c[1].services()
        .register("ledger", doubler(), options())
        .await
        .unwrap();
    let mut a_settings = gateway(a_gw, &[], &[("h", h_gw)]);
    a_settings.routing.hubs = names(&["h"]);
    let mut h_settings = gateway(h_gw, &[], &[("a", a_gw), ("c", c_gw), ("b", free_addr())]);
    h_settings.routing.transit = names(&["a", "c"]);
    let mut c_settings = gateway(c_gw, &["search"], &[("h", h_gw)]);
    c_settings.routing.hubs = names(&["h"]);
    start_gateway(&a[0], a_settings).await;
    start_gateway(&h[0], h_settings).await;
    start_gateway(&c[0], c_settings).await;

    // a's node that is not a gateway finds c's export and calls it, through a's gateway and h.
    assert_eq!(found(&a[1], "c", "search").await.healthy, 1);
    let root = TraceContext::new_root(&mut rand10::rng(), true);
    let doubled: u64 = retry(|| async {
        let rpc = a[1].rpc();
        with_trace(root, rpc.call_in::<_, u64>("c", "search", &21u64, DEADLINE)).await
    })
    .await;
    assert_eq!(doubled, 42);
    let (trace, left, origin) = seen.lock().unwrap().clone().expect("the handler in c ran");
    assert_eq!(trace.trace_id, root.trace_id, "the trace crosses both hops");
    assert!(left <= DEADLINE, "the caller's deadline carried: {left:?}");
    assert_eq!(
        origin,
        Some(ClusterName::new("a").unwrap()),
        "a's call, not h's"
    );
    // Inside c the same handler sees no origin.
    let local: u64 = c[0].rpc().call("search", &1u64, DEADLINE).await.unwrap();
    assert_eq!(local, 2);
    let (_, _, origin) = seen.lock().unwrap().clone().unwrap();
    assert_eq!(origin, None, "a call from c's own member");
    // c's gateway admitted it as a's call, not h's: the origin is visible on the callee side.
    let served = c[0].federation().unwrap().served();
    let by_origin = served.by_origin();
    assert!(
        by_origin[&ClusterName::new("a").unwrap()] >= 1,
        "{served:?}"
    );
    assert!(!by_origin.contains_key(&ClusterName::new("h").unwrap()));
    assert_eq!(served.unlisted(), 0);
    // The same typed answers as over a direct link.
    let ledger = a[1].services().lookup_in("c", "ledger").await;
    assert!(matches!(ledger, Ok(None)), "{ledger:?}");
    let unexported = a[0]
        .rpc()
        .call_in::<_, u64>("c", "ledger", &1u64, DEADLINE)
        .await;
    assert!(
        matches!(
            unexported,
            Err(CrossClusterError::Federation(
                FederationError::NotExported { .. }
            ))
        ),
        "{unexported:?}"
    );

    // b is linked to h but not among the clusters h carries: h offers it nothing of c, and a
    // call b asks h to carry to c is refused, typed.
    let h_name = ClusterName::new("h").unwrap();
    let b_name = ClusterName::new("b").unwrap();
    let (b, _inbox) = gateway_of("b", "h");
    let ask = |request: &FederationRequest| {
        let payload = postcard::to_stdvec(request).unwrap();
        b.request(&h_name, h_gw, payload.into(), DEADLINE)
    };
    let probe = FederationRequest::Probe {
        directory: Default::default(),
    };
    let reply: FederationReply = postcard::from_bytes(&ask(&probe).await.unwrap()).unwrap();
    let FederationReply::Probe { directory } = reply else {
        panic!("{reply:?}")
    };
    assert!(directory.cluster(&h_name).is_some());
    assert!(directory.cluster(&ClusterName::new("c").unwrap()).is_none());
    let transit = FederationRequest::Transit {
        target: "c".into(),
        call: ForwardedCall {
            service: "search".into(),
            body: postcard::to_stdvec(&3u64).unwrap(),
            deadline_micros: 2_000_000,
            trace: root,
            idempotent: false,
        },
    };
    let reply: FederationReply = postcard::from_bytes(&ask(&transit).await.unwrap()).unwrap();
    let refused = FederationError::TransitRefused {
        from: b_name,
        to: ClusterName::new("c").unwrap(),
    };
    assert_eq!(
        reply,
        FederationReply::Call(Err(RemoteCallError::Federation(refused)))
    );
    stop(&[&a, &h, &c]).await;
}

/// A service that holds the next call it is told to (until its budget runs out) and answers the
/// others at once, counting every run.
#[derive(Clone, Default)]
struct Holding {
    hold_next: Arc<std::sync::atomic::AtomicBool>,
    holding: Arc<tokio::sync::Notify>,
    runs: Arc<std::sync::atomic::AtomicU32>,
}

impl Holding {
    fn handler(&self) -> impl foundation_engine::runtime::services::Handler {
        let this = self.clone();
        typed(move |n: u64| {
            let this = this.clone();
            async move {
                use std::sync::atomic::Ordering::SeqCst;
                this.runs.fetch_add(1, SeqCst);
                if this.hold_next.swap(false, SeqCst) {
                    this.holding.notify_one();
                    tokio::time::sleep(Duration::from_secs(60)).await;
                }
                Ok::<_, HandlerError>(n * 2)
            }
        })
    }

    fn runs(&self) -> u32 {
        self.runs.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Makes the call `call` from another task, and once the handler holds it (the request
    /// has crossed), stops the gateway of a that b's link sends it through; returns the answer.
    async fn lose_gateway_under<T: Send + 'static>(
        &self,
        setup: &TwoGatewaysOfA,
        call: impl std::future::Future<Output = T> + Send + 'static,
    ) -> T {
        self.hold_next
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let call = tokio::spawn(call);
        self.holding.notified().await;
        setup.in_use().0.stop_gateway();
        call.await.unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sent_call_whose_gateway_stops_is_retried_on_the_next_only_when_idempotent() {
    let setup = TwoGatewaysOfA::start_with(None, 2).await;
    let held = Holding::default();
    let a = &setup.a;
    a[1].services()
        .register("held", held.handler(), ServiceOptions::default())
        .await
        .unwrap();
    // b's second node calls through b's gateway (relayed): the options cross both hops.
    let b1 = setup.b[1].clone();
    found(&b1, "a", "held").await;
    let (rpc, deadline) = (b1.rpc(), Duration::from_secs(6));
    let idempotent = CallOptions::default().idempotent();
    let call = async move {
        rpc.call_in_with::<_, u64>("a", "held", &5u64, deadline, &idempotent)
            .await
    };
    let answer = held.lose_gateway_under(&setup, call).await;
    assert_eq!(answer.unwrap(), 10, "answered through a's other gateway");
    assert_eq!(held.runs(), 2);

    // The stopped gateway comes back; the call that is not idempotent loses the other one.
    let stopped = setup.stopped_gateway();
    start_gateway(stopped, setup.a_settings(stopped)).await;
    eventually(SOON, "the returned gateway exports held", || {
        let a_name = ClusterName::new("a").unwrap();
        let directory = stopped.federation().unwrap().directory();
        directory
            .cluster(&a_name)
            .is_some_and(|e| e.services.contains_key("held"))
    })
    .await;
    let rpc = b1.rpc();
    let call = async move { rpc.call_in::<_, u64>("a", "held", &7u64, deadline).await };
    let started = tokio::time::Instant::now();
    let answer = held.lose_gateway_under(&setup, call).await;
    assert!(answer.is_err(), "{answer:?}");
    assert_eq!(held.runs(), 3, "not run a second time");
    assert!(started.elapsed() < deadline, "ended when the gateway went");
    stop(&[&setup.a, &setup.b]).await;
}
