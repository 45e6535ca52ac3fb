//! DNS discovery against a tiny DNS server this test runs on 127.0.0.1.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use foundation_engine::discovery::{
    Candidate, Discovery, DiscoveryMetrics, DnsDiscovery, LocalNode,
};
use foundation_transport::{ClusterName, NodeId};
use hickory_resolver::proto::op::{Message, MessageType, ResponseCode};
use hickory_resolver::proto::rr::rdata::{A, SRV};
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

/// The zone the test server answers from: name → records (A and SRV only).
type Zone = Arc<Mutex<HashMap<(String, RecordType), Vec<RData>>>>;

/// Serves `zone` over UDP on 127.0.0.1 until the test ends; answers NXDOMAIN otherwise.
async fn dns_server(zone: Zone) -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind dns server");
    let addr = socket.local_addr().expect("local addr");
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        loop {
            let Ok((len, from)) = socket.recv_from(&mut buf).await else {
                return;
            };
            let Some(reply) = answer(&zone, &buf[..len]) else {
                continue;
            };
            let _ = socket.send_to(&reply, from).await;
        }
    });
    addr
}

fn answer(zone: &Zone, query: &[u8]) -> Option<Vec<u8>> {
    let query = Message::from_vec(query).ok()?;
    let question = query.queries.first()?.clone();
    let mut reply = Message::response(query.metadata.id, query.metadata.op_code);
    reply.metadata.message_type = MessageType::Response;
    reply.metadata.recursion_desired = query.metadata.recursion_desired;
    reply.metadata.authoritative = true;
    let key = (
        question.name().to_ascii().to_lowercase(),
        question.query_type(),
    );
    let records = zone.lock().ok()?.get(&key).cloned();
    match records {
        Some(records) => {
            for data in records {
                reply.add_answer(Record::from_rdata(question.name().clone(), 0, data));
            }
        }
        None => reply.metadata.response_code = ResponseCode::NXDomain,
    }
    reply.add_query(question);
    reply.to_vec().ok()
}

fn set(zone: &Zone, name: &str, kind: RecordType, records: Vec<RData>) {
    zone.lock()
        .expect("zone")
        .insert((name.to_owned(), kind), records);
}

fn a(ip: [u8; 4]) -> RData {
    RData::A(A(Ipv4Addr::from(ip)))
}

fn me() -> LocalNode {
    LocalNode {
        cluster: ClusterName::new("alpha").expect("cluster"),
        id: NodeId::from_u128(1),
        addr: SocketAddr::from(([127, 0, 0, 1], 7000)),
        http: None,
    }
}

/// Waits until the strategy reports exactly `want` (as a set) in one round.
async fn until_seen(rx: &mut mpsc::Receiver<Candidate>, want: &[SocketAddr]) -> bool {
    let mut want: Vec<SocketAddr> = want.to_vec();
    want.sort();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut seen: Vec<SocketAddr> = Vec::new();
    while let Ok(Some(c)) = tokio::time::timeout_at(deadline, rx.recv()).await {
        seen.push(c.addr);
        let recent: std::collections::BTreeSet<SocketAddr> =
            seen.iter().rev().take(want.len()).copied().collect();
        if recent.into_iter().collect::<Vec<_>>() == want {
            return true;
        }
    }
    false
}

fn addr(ip: [u8; 4], port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::from(ip), port)
}

#[tokio::test]
async fn a_records_are_reported_with_the_port_and_re_resolved() {
    let zone = Zone::default();
    set(
        &zone,
        "nodes.test.",
        RecordType::A,
        vec![a([127, 0, 0, 2]), a([127, 0, 0, 3])],
    );
    let server = dns_server(zone.clone()).await;
    let metrics = DiscoveryMetrics::default();
    let strategy = DnsDiscovery::new("nodes.test.", 7100, false, metrics.clone())
        .expect("dns")
        .with_nameserver(server)
        .with_interval(Duration::from_millis(100));
    let (tx, mut rx) = mpsc::channel(64);
    let handle = Box::new(strategy).start(me(), tx).expect("start");

    let first = [addr([127, 0, 0, 2], 7100), addr([127, 0, 0, 3], 7100)];
    assert!(
        until_seen(&mut rx, &first).await,
        "first answer not reported"
    );

    set(&zone, "nodes.test.", RecordType::A, vec![a([127, 0, 0, 4])]);
    assert!(
        until_seen(&mut rx, &[addr([127, 0, 0, 4], 7100)]).await,
        "changed answer not picked up"
    );
    assert!(metrics.candidates("dns") >= 3);
    handle.stop().await;
}

#[tokio::test]
async fn port_zero_means_our_own_port_and_we_are_not_reported() {
    let zone = Zone::default();
    // The answer includes this node itself (a headless service lists every pod).
    set(
        &zone,
        "nodes.test.",
        RecordType::A,
        vec![a([127, 0, 0, 1]), a([127, 0, 0, 5])],
    );
    let server = dns_server(zone).await;
    let strategy = DnsDiscovery::new("nodes.test.", 0, false, DiscoveryMetrics::default())
        .expect("dns")
        .with_nameserver(server)
        .with_interval(Duration::from_millis(100));
    let (tx, mut rx) = mpsc::channel(64);
    let handle = Box::new(strategy).start(me(), tx).expect("start");
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_millis(500);
    while let Ok(Some(c)) = tokio::time::timeout_at(deadline, rx.recv()).await {
        seen.push(c.addr);
    }
    handle.stop().await;
    assert!(seen.contains(&addr([127, 0, 0, 5], 7000)), "{seen:?}");
    assert!(!seen.contains(&me().addr), "reported ourselves: {seen:?}");
}

#[tokio::test]
async fn srv_records_give_targets_and_ports() {
    let zone = Zone::default();
    let target = |n: &str| Name::from_str(n).expect("name");
    set(
        &zone,
        "_foundation._udp.nodes.test.",
        RecordType::SRV,
        vec![
            RData::SRV(SRV::new(0, 0, 7201, target("n1.nodes.test."))),
            RData::SRV(SRV::new(0, 0, 7202, target("n2.nodes.test."))),
        ],
    );
    set(
        &zone,
        "n1.nodes.test.",
        RecordType::A,
        vec![a([127, 0, 0, 11])],
    );
    set(
        &zone,
        "n2.nodes.test.",
        RecordType::A,
        vec![a([127, 0, 0, 12])],
    );
    let server = dns_server(zone.clone()).await;
    let strategy = DnsDiscovery::new(
        "_foundation._udp.nodes.test.",
        0,
        true,
        DiscoveryMetrics::default(),
    )
    .expect("dns")
    .with_nameserver(server)
    .with_interval(Duration::from_millis(100));
    let (tx, mut rx) = mpsc::channel(64);
    let handle = Box::new(strategy).start(me(), tx).expect("start");
    let want = [addr([127, 0, 0, 11], 7201), addr([127, 0, 0, 12], 7202)];
    assert!(until_seen(&mut rx, &want).await, "SRV answer not reported");

    set(
        &zone,
        "n2.nodes.test.",
        RecordType::A,
        vec![a([127, 0, 0, 13])],
    );
    let want = [addr([127, 0, 0, 11], 7201), addr([127, 0, 0, 13], 7202)];
    assert!(
        until_seen(&mut rx, &want).await,
        "changed target address not picked up"
    );
    handle.stop().await;
}

#[tokio::test]
async fn a_failing_lookup_is_counted_and_retried() {
    let zone = Zone::default();
    let server = dns_server(zone.clone()).await;
    let metrics = DiscoveryMetrics::default();
    let strategy = DnsDiscovery::new("later.test.", 7300, false, metrics.clone())
        .expect("dns")
        .with_nameserver(server)
        .with_interval(Duration::from_millis(100));
    let (tx, mut rx) = mpsc::channel(64);
    let handle = Box::new(strategy).start(me(), tx).expect("start");
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert!(metrics.errors("dns") >= 1, "NXDOMAIN not counted");
    set(
        &zone,
        "later.test.",
        RecordType::A,
        vec![a([127, 0, 0, 20])],
    );
    assert!(
        until_seen(&mut rx, &[addr([127, 0, 0, 20], 7300)]).await,
        "recovered answer not reported"
    );
    handle.stop().await;
}

#[test]
fn an_empty_or_invalid_name_is_a_clear_error() {
    for bad in ["", "   "] {
        let error =
            DnsDiscovery::new(bad, 1, false, DiscoveryMetrics::default()).expect_err("must fail");
        assert!(error.to_string().starts_with("dns discovery:"), "{error}");
    }
}

/// A node that leaves stops its strategies first: a lookup waiting on a name server that never
/// answers (2 s per try here, with retries) must not hold the stop up. The stop abandons the
/// lookup, so its failure is never counted; a stop that waited for it would count it.
#[tokio::test]
async fn stop_does_not_wait_for_a_lookup_the_server_never_answers() {
    let silent = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let metrics = DiscoveryMetrics::default();
    let strategy = DnsDiscovery::new("silent.test.", 7300, false, metrics.clone())
        .expect("dns")
        .with_nameserver(silent.local_addr().expect("addr"))
        .with_interval(Duration::from_millis(10));
    let (tx, _rx) = mpsc::channel(64);
    let handle = Box::new(strategy).start(me(), tx).expect("start");
    let mut query = [0u8; 512];
    silent.recv_from(&mut query).await.expect("the lookup asks");
    handle.stop().await;
    assert_eq!(
        metrics.errors("dns"),
        0,
        "stop waited for the unanswered lookup to fail"
    );
}

/// `FOUNDATION_DISCOVERY=dns` with a name and no port: the A records are dialled at the port
/// this node advertises, as under `auto` in Kubernetes and as `DiscoverySpec::Dns` documents
/// for port 0, not at a fixed 7400 a node bound elsewhere would never be reached at.
#[tokio::test]
async fn a_dns_strategy_configured_without_a_port_dials_our_own() {
    let zone = Zone::default();
    set(
        &zone,
        "peers.test.",
        RecordType::A,
        vec![a([127, 0, 0, 30])],
    );
    let server = dns_server(zone).await.to_string();
    let config = foundation_engine::config::NodeConfig::builder()
        .env([
            ("FOUNDATION_DISCOVERY", "dns"),
            // A fixed port: without one there is no port of ours to dial (a config error).
            ("FOUNDATION_BIND", "127.0.0.1:7000"),
            ("FOUNDATION_DNS_NAME", "peers.test."),
            ("FOUNDATION_DNS_SERVER", server.as_str()),
        ])
        .build()
        .expect("config");
    let metrics = DiscoveryMetrics::default();
    let mut strategies =
        foundation_engine::discovery::build(&config.discovery[0], &Default::default(), &metrics)
            .expect("build");
    let (tx, mut rx) = mpsc::channel(64);
    let handle = strategies.remove(0).start(me(), tx).expect("start");
    let first = rx.recv().await.expect("a candidate");
    assert_eq!(first.addr, addr([127, 0, 0, 30], me().addr.port()));
    handle.stop().await;
}
