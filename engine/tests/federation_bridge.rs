//! Pub/sub bridged between two clusters of real nodes on loopback QUIC. Cluster `a` has two
//! gateways and a publisher, cluster `b` a gateway and a subscriber, none of the publishers or
//! subscribers a gateway. What both sides agree on crosses once, with its trace and origin;
//! what one side does not bridge stays home; nothing echoes back although both sides bridge
//! `news.>` both ways; a cut link drops (counted) and every node goes on. And the receiving
//! cluster's interest travels back: what it imports but nobody there subscribes to stays home
//! until a subscriber appears.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::eventually;
use foundation_engine::federation::wire::{
    self, FederationReply, FederationRequest, RELAY_SERVICE,
};
use foundation_engine::federation::{
    BatchLimits, BridgeConfig, BridgedMessage, LinkState, WanTimers,
};
use foundation_engine::runtime::federation::{FederationSettings, GatewayStartError, LinkSettings};
use foundation_engine::runtime::services::{with_trace, Message, Subscription};
use foundation_engine::runtime::{Node, NodeSettings};
use foundation_engine::services::trace::TraceContext;
use foundation_transport::gateway::{GatewayConfig, GatewayEndpoint, GatewayError, GatewayRequest};
use foundation_transport::security::RemoteRoot;
use foundation_transport::{ClusterName, ClusterSecret, Trust};

const SOON: Duration = Duration::from_secs(10);
/// How long to listen for a message that must not come.
const QUIET: Duration = Duration::from_millis(700);

fn secret_of(cluster: &str) -> String {
    format!("bridge test secret of {cluster}")
}

/// Nodes of `cluster`; the first serves HTTP.
async fn start_cluster(cluster: &str, n: usize) -> Vec<Node> {
    let secret = secret_of(cluster);
    common::cluster(n, |seeds| {
        let http = seeds.is_empty().then(|| "127.0.0.1:0".parse().unwrap());
        NodeSettings {
            http,
            ..common::settings(cluster, &secret, seeds)
        }
    })
    .await
}

fn unused_port() -> SocketAddr {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.local_addr().unwrap()
}

fn strings(patterns: &[&str]) -> Vec<String> {
    patterns.iter().map(|p| p.to_string()).collect()
}

/// A gateway on `bind` linked to `remote`'s gateways, bridging `export` there and `import`
/// from there.
fn bridged(
    bind: SocketAddr,
    remote: &str,
    gateways: Vec<SocketAddr>,
    export: &[&str],
    import: &[&str],
) -> FederationSettings {
    let link = LinkSettings {
        cluster: ClusterName::new(remote).unwrap(),
        gateways,
        root: RemoteRoot::Secret(ClusterSecret::new(secret_of(remote)).unwrap()),
    };
    FederationSettings {
        links: vec![link],
        timers: WanTimers {
            probe_interval: Duration::from_millis(200),
            probe_timeout: Duration::from_millis(400),
            down_after: 3,
        },
        bridges: vec![BridgeConfig {
            cluster: remote.into(),
            export: strings(export),
            import: strings(import),
        }],
        ..FederationSettings::new(bind)
    }
}

/// Starts a gateway, waiting while the OS still holds its port.
async fn open_gateway(node: &Node, settings: FederationSettings) {
    for _ in 0..50 {
        match node.start_gateway(settings.clone()) {
            Err(GatewayStartError::Endpoint(GatewayError::Bind { .. })) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            started => {
                started.expect("the gateway starts");
                return;
            }
        }
    }
    panic!("the gateway's port stayed taken");
}

/// The next message within [`SOON`].
async fn next(subscription: &mut Subscription) -> Message {
    tokio::time::timeout(SOON, subscription.recv())
        .await
        .expect("a message within 10 s")
        .expect("the subscription is open")
}

/// Everything that arrives until [`QUIET`] passes without a message (at most 1,000: a loop
/// between the clusters would never go quiet).
async fn drain(subscription: &mut Subscription) -> Vec<Message> {
    let mut got = Vec::new();
    while let Ok(Some(message)) = tokio::time::timeout(QUIET, subscription.recv()).await {
        got.push(message);
        assert!(got.len() < 1000, "messages keep coming: {:?}", got.last());
    }
    got
}

/// Publishes `topic` from `node` until `subscription` receives it: the gateways' interest and
/// the link take a moment. Returns what arrived after the first.
async fn publish_until_seen(node: &Node, topic: &str, subscription: &mut Subscription) {
    let started = tokio::time::Instant::now();
    loop {
        node.pubsub()
            .publish(topic, b"ready".to_vec())
            .await
            .unwrap();
        let got = tokio::time::timeout(Duration::from_millis(200), subscription.recv()).await;
        if matches!(got, Ok(Some(m)) if &*m.topic == topic) {
            break;
        }
        assert!(started.elapsed() < SOON, "{topic} never crossed");
    }
    drain(subscription).await;
}

fn metrics(node: &Node) -> String {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, node.registry()).unwrap();
    text
}

/// A counter's value in `node`'s metrics, 0 when absent.
fn counter(node: &Node, series: &str) -> u64 {
    metrics(node)
        .lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0)
}

/// Waits until gateway `node` holds `wanted` as the interest of the other cluster.
async fn heard_from(node: &Node, wanted: &serde_json::Value) {
    let gateway = node.federation().expect("a gateway");
    let cluster = gateway.links()[0].cluster.clone();
    eventually(
        SOON,
        "the gateway hears the other cluster's interest",
        || {
            gateway
                .interest_heard(&cluster)
                .is_some_and(|heard| serde_json::json!(heard) == *wanted)
        },
    )
    .await;
}

async fn federation_json(node: &Node) -> serde_json::Value {
    let status = common::raw_http::get(node.http_addr().unwrap(), "/federation").await;
    serde_json::from_str(&status.body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridged_topics_cross_once_with_their_trace_and_nothing_else_crosses() {
    let (a, b) = (start_cluster("a", 3).await, start_cluster("b", 2).await);
    let (a_gws, b_gw) = ([unused_port(), unused_port()], unused_port());
    // a sends news and sports (b does not import sports); b imports news and weather (a does
    // not export weather). Both bridge news back the other way: the echo test.
    for (node, bind) in a.iter().zip(a_gws) {
        let settings = bridged(bind, "b", vec![b_gw], &["news.>", "sports.>"], &["news.>"]);
        open_gateway(node, settings).await;
    }
    let b_settings = bridged(
        b_gw,
        "a",
        a_gws.to_vec(),
        &["news.>"],
        &["news.>", "weather.>"],
    );
    open_gateway(&b[0], b_settings).await;
    eventually(SOON, "both gateways of a are visible in a", || {
        a[2].services().healthy(RELAY_SERVICE).len() == 2
    })
    .await;

    let (publisher, subscriber) = (&a[2], &b[1]);
    let mut everything_in_b = subscriber.pubsub().subscribe(">").await.unwrap();
    let mut news_in_a = publisher.pubsub().subscribe("news.*").await.unwrap();
    publish_until_seen(publisher, "news.ready", &mut everything_in_b).await;
    drain(&mut news_in_a).await;

    // A bridged topic: once in b, from a, with the publisher's trace.
    let trace = TraceContext::new_root(&mut rand10::rng(), true);
    let pubsub = publisher.pubsub();
    for i in 0..20u8 {
        let publish = pubsub.publish("news.eu", vec![i]);
        with_trace(trace, publish).await.unwrap();
    }
    let mut arrived = Vec::new();
    for _ in 0..20 {
        arrived.push(next(&mut everything_in_b).await);
    }
    let payloads: Vec<u8> = arrived.iter().map(|m| m.payload[0]).collect();
    assert_eq!(
        payloads,
        (0..20).collect::<Vec<u8>>(),
        "in order, each once"
    );
    for message in &arrived {
        assert_eq!(&*message.topic, "news.eu");
        assert_eq!(message.trace.trace_id, trace.trace_id);
        assert_eq!(message.origin.as_deref(), Some("a"));
    }

    // Exported but not imported, imported but not exported: neither arrives. Once a's
    // gateways heard b's interest, a keeps sports home.
    let b_wants = serde_json::json!(["news.>", "weather.>"]);
    for gateway in &a[..2] {
        heard_from(gateway, &b_wants).await;
    }
    publisher
        .pubsub()
        .publish("sports.final", b"x".to_vec())
        .await
        .unwrap();
    publisher
        .pubsub()
        .publish("weather.rain", b"x".to_vec())
        .await
        .unwrap();
    let unwanted =
        r#"foundation_federation_bridge_dropped_total{cluster="b",reason="no_interest"}"#;
    eventually(SOON, "a keeps sports home", || {
        counter(&a[0], unwanted) + counter(&a[1], unwanted) >= 1
    })
    .await;
    let leaked = drain(&mut everything_in_b).await;
    assert!(leaked.is_empty(), "nothing more crossed: {leaked:?}");

    // No echo: a's subscriber had each of a's messages once, none back from b.
    let at_home = drain(&mut news_in_a).await;
    assert_eq!(at_home.len(), 20, "a's own news, once each");
    assert!(at_home.iter().all(|m| m.origin.is_none()));

    // The other way: b's news reaches a once, and does not come back into b.
    subscriber
        .pubsub()
        .publish("news.b", b"from b".to_vec())
        .await
        .unwrap();
    let from_b = next(&mut news_in_a).await;
    assert_eq!(
        (&*from_b.topic, from_b.origin.as_deref()),
        ("news.b", Some("b"))
    );
    let in_b = drain(&mut everything_in_b).await;
    assert_eq!(in_b.len(), 1, "b's own message once, no echo: {in_b:?}");
    assert!(drain(&mut news_in_a).await.is_empty(), "once in a");

    let status = federation_json(&b[0]).await;
    let link = &status["links"][0]["bridged"];
    assert!(link["messages_in"].as_u64().unwrap() >= 21, "{status}");
    assert_eq!(link["messages_out"], 1, "{status}");
    assert!(link["bytes_in"].as_u64().unwrap() >= 20);
    assert_eq!(link["dropped"]["not_imported"], 0, "{status}");
    assert_eq!(status["links"][0]["interest"]["told"], b_wants, "{status}");

    // Cut: b's gateway stops. a's forwarder counts what it cannot send; a goes on.
    b[0].stop_gateway();
    eventually(SOON, "a sees the link down", || {
        a.iter()
            .take(2)
            .all(|gw| gw.federation().unwrap().links()[0].state == LinkState::Down)
    })
    .await;
    let down = r#"foundation_federation_bridge_dropped_total{cluster="b",reason="link_down"}"#;
    for i in 0..5u8 {
        publisher
            .pubsub()
            .publish("news.cut", vec![i])
            .await
            .unwrap();
    }
    eventually(SOON, "a counts the messages it could not send", || {
        counter(&a[0], down) + counter(&a[1], down) >= 5
    })
    .await;
    assert_eq!(
        drain(&mut news_in_a).await.len(),
        5,
        "a's own subscribers still served"
    );
    let status = federation_json(&a[0]).await;
    assert_eq!(
        status["gateway"], true,
        "the gateway still answers: {status}"
    );

    for node in a.iter().chain(&b) {
        node.stop_gateway();
        node.abort().await;
    }
}

/// b imports `news.>` but subscribes only to `news.weather` (its gateway's own subscription to
/// `news.>`, for export, does not count): a sends only that, counts what it keeps home, and
/// sends `news.sport` once a subscriber for it appears in b.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_what_the_receiving_cluster_subscribes_to_crosses() {
    let (a, b) = (start_cluster("a", 2).await, start_cluster("b", 2).await);
    let (a_gw, b_gw) = (unused_port(), unused_port());
    open_gateway(&a[0], bridged(a_gw, "b", vec![b_gw], &["news.>"], &[])).await;
    // b's gateway exports `news.>` too, so it subscribes to it in b: that subscription sends
    // b's news out and delivers nothing in b, so it is no interest of b's.
    let b_settings = bridged(b_gw, "a", vec![a_gw], &["news.>"], &["news.>"]);
    open_gateway(&b[0], b_settings).await;
    let (publisher, subscriber) = (&a[1], &b[1]);
    let mut weather = subscriber.pubsub().subscribe("news.weather").await.unwrap();
    heard_from(&a[0], &serde_json::json!(["news.weather"])).await;

    for i in 0..5u8 {
        for topic in ["news.sport", "news.weather"] {
            publisher
                .pubsub()
                .publish(topic, vec![i; 100])
                .await
                .unwrap();
        }
    }
    let arrived: Vec<Message> = drain(&mut weather).await;
    assert_eq!(arrived.len(), 5, "{arrived:?}");
    let unwanted =
        r#"foundation_federation_bridge_dropped_total{cluster="b",reason="no_interest"}"#;
    assert_eq!(
        counter(&a[0], unwanted),
        5,
        "a kept every sport message home"
    );
    let unsent = r#"foundation_federation_bridge_unwanted_bytes_total{cluster="b"}"#;
    assert_eq!(counter(&a[0], unsent), 500);
    let b_link = federation_json(&b[0]).await["links"][0]["bridged"].clone();
    assert_eq!(
        b_link["messages_in"], 5,
        "only the weather came in: {b_link}"
    );
    assert_eq!(b_link["dropped"]["not_imported"], 0, "{b_link}");

    let mut sport = subscriber.pubsub().subscribe("news.sport").await.unwrap();
    heard_from(&a[0], &serde_json::json!(["news.sport", "news.weather"])).await;
    publish_until_seen(publisher, "news.sport", &mut sport).await;
    assert_eq!(counter(&a[0], unwanted), 5, "nothing more kept home");

    for node in a.iter().chain(&b) {
        node.stop_gateway();
        node.abort().await;
    }
}

/// A gateway of `b` that a's gateways accept, sending what the test writes.
fn gateway_of_b() -> (GatewayEndpoint, tokio::sync::mpsc::Receiver<GatewayRequest>) {
    let trust = Trust::Secret(ClusterSecret::new(secret_of("b")).unwrap());
    let root = RemoteRoot::Secret(ClusterSecret::new(secret_of("a")).unwrap());
    let config = GatewayConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        keep_alive: Duration::from_millis(500),
        idle_timeout: Duration::from_secs(5),
        max_frame: wire::MAX_FRAME,
    };
    let links = [(ClusterName::new("a").unwrap(), root)];
    let b = ClusterName::new("b").unwrap();
    GatewayEndpoint::start(&config, &trust, &b, &links).unwrap()
}

/// The batch limit holds on receipt too: a gateway that ignores it (here a batch of 3 MiB,
/// which a 4 MiB frame carries) is refused, saying why, and counted; a batch at the limit is
/// taken. Before, the receiver took any batch a frame could carry, so one linked gateway
/// could pin 64 of 4 MiB in the inbound queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_over_the_limit_is_refused_on_receipt() {
    let a = start_cluster("a", 1).await;
    let a_gw = unused_port();
    open_gateway(
        &a[0],
        bridged(a_gw, "b", vec![unused_port()], &[], &["news.>"]),
    )
    .await;
    let (b, _inbox) = gateway_of_b();
    let a_name = ClusterName::new("a").unwrap();
    let limits = BatchLimits::default();
    let batch = |n: usize, payload: usize| {
        let trace = TraceContext::new_root(&mut rand10::rng(), false);
        let message = BridgedMessage {
            topic: "news.sport".into(),
            payload: vec![7; payload],
            trace,
        };
        wire::encode(&FederationRequest::Bridge(vec![message; n])).unwrap()
    };
    let send = |frame: Vec<u8>| b.request(&a_name, a_gw, frame.into(), SOON);
    let per_message = limits.payload_bytes / limits.messages;
    let at_limit = send(batch(limits.messages, per_message)).await.unwrap();
    let Ok(FederationReply::Bridged(receipt)) = wire::decode(&at_limit) else {
        panic!("a batch at the limit was not taken: {at_limit:?}");
    };
    assert_eq!(receipt.accepted as usize, limits.messages);
    let oversized = send(batch(3, 1024 * 1024 - 64)).await.unwrap();
    let reply = wire::decode(&oversized);
    let Ok(FederationReply::Refused(why)) = reply else {
        panic!("an oversized batch was not refused: {reply:?}");
    };
    assert!(why.contains("over this gateway's limit"), "{why}");
    let too_many = send(batch(limits.messages + 1, 1)).await.unwrap();
    let reply = wire::decode(&too_many);
    assert!(
        matches!(reply, Ok(FederationReply::Refused(_))),
        "{reply:?}"
    );
    let series = r#"foundation_federation_bridge_dropped_total{cluster="b",reason="oversized"}"#;
    assert_eq!(counter(&a[0], series), 3 + limits.messages as u64 + 1);
    let link = &federation_json(&a[0]).await["links"][0]["bridged"];
    assert_eq!(
        link["dropped"]["oversized"],
        3 + limits.messages + 1,
        "{link}"
    );
    a[0].stop_gateway();
    a[0].abort().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_larger_than_a_batch_is_dropped_by_the_sender_not_refused_by_the_receiver() {
    let (a, b) = (start_cluster("a", 1).await, start_cluster("b", 1).await);
    let (a_gw, b_gw) = (unused_port(), unused_port());
    let small_batches = BatchLimits {
        messages: 512,
        payload_bytes: 1024,
    };
    let a_settings = FederationSettings {
        bridge_batch: small_batches,
        ..bridged(a_gw, "b", vec![b_gw], &["news.>"], &[])
    };
    let b_settings = FederationSettings {
        bridge_batch: small_batches,
        ..bridged(b_gw, "a", vec![a_gw], &[], &["news.>"])
    };
    open_gateway(&a[0], a_settings).await;
    open_gateway(&b[0], b_settings).await;
    let mut news_in_b = b[0].pubsub().subscribe("news.>").await.unwrap();
    publish_until_seen(&a[0], "news.ready", &mut news_in_b).await;

    let pubsub = a[0].pubsub();
    pubsub.publish("news.big", vec![1; 2048]).await.unwrap();
    pubsub.publish("news.small", vec![2; 16]).await.unwrap();
    let arrived = next(&mut news_in_b).await;
    assert_eq!(
        &*arrived.topic, "news.small",
        "only the small message crosses"
    );
    let dropped = |node: &Node, reason: &str| {
        let cluster = if std::ptr::eq(node, &a[0]) { "b" } else { "a" };
        let series = format!(
            r#"foundation_federation_bridge_dropped_total{{cluster="{cluster}",reason="{reason}"}}"#
        );
        counter(node, &series)
    };
    assert_eq!(dropped(&a[0], "too_large"), 1, "the sender counts it");
    assert_eq!(
        dropped(&a[0], "send_failed"),
        0,
        "nothing was sent to be refused"
    );
    assert_eq!(dropped(&b[0], "oversized"), 0, "the receiver never saw it");
    for node in [&a[0], &b[0]] {
        node.stop_gateway();
    }
    a[0].abort().await;
    b[0].abort().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_that_would_refuse_every_batch_or_call_do_not_start_a_gateway() {
    let a = start_cluster("a", 1).await;
    let base = bridged(unused_port(), "b", vec![unused_port()], &["news.>"], &[]);
    let refusing = [
        FederationSettings {
            bridge_batch: BatchLimits {
                messages: 0,
                ..BatchLimits::default()
            },
            ..base.clone()
        },
        FederationSettings {
            bridge_batch: BatchLimits {
                payload_bytes: 0,
                ..BatchLimits::default()
            },
            ..base.clone()
        },
        FederationSettings {
            max_call_deadline: Duration::ZERO,
            ..base.clone()
        },
        FederationSettings {
            max_frame: BatchLimits::default().payload_bytes,
            ..base.clone()
        },
    ];
    for settings in refusing {
        let why = match a[0].start_gateway(settings) {
            Err(GatewayStartError::Config(why)) => why,
            Err(other) => panic!("refused for another reason: {other}"),
            Ok(_) => panic!("a gateway started with limits that refuse everything"),
        };
        assert!(why.to_string().starts_with("invalid limit"), "{why}");
    }
    a[0].abort().await;
}
