//! Static seeds: resolution, re-reporting, and clear errors for malformed seeds.

use std::net::SocketAddr;
use std::time::Duration;

use foundation_engine::discovery::{
    build, Candidate, Discovery, DiscoveryError, DiscoveryMetrics, DiscoverySpec, Environment,
    LocalNode, StaticSeeds,
};
use foundation_transport::{ClusterName, NodeId};
use tokio::sync::mpsc;

fn me() -> LocalNode {
    LocalNode {
        cluster: ClusterName::new("alpha").expect("cluster"),
        id: NodeId::from_u128(1),
        addr: SocketAddr::from(([127, 0, 0, 1], 7001)),
        http: None,
    }
}

async fn collect(rx: &mut mpsc::Receiver<Candidate>, wait: Duration) -> Vec<Candidate> {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    while let Ok(Some(c)) = tokio::time::timeout_at(deadline, rx.recv()).await {
        seen.push(c);
    }
    seen
}

#[tokio::test]
async fn seeds_resolve_and_are_reported_again_but_never_ourselves() {
    let seeds = vec![
        "127.0.0.1:7002".to_owned(),
        "localhost:7003".to_owned(),
        "127.0.0.1:7001".to_owned(), // our own address: a shared seed list includes it
    ];
    let metrics = DiscoveryMetrics::default();
    let strategy = StaticSeeds::new(&seeds, metrics.clone())
        .expect("valid seeds")
        .with_interval(Duration::from_millis(50));
    let (tx, mut rx) = mpsc::channel(64);
    let handle = Box::new(strategy).start(me(), tx).expect("start");
    let seen = collect(&mut rx, Duration::from_millis(400)).await;
    handle.stop().await;

    let addrs: Vec<SocketAddr> = seen.iter().map(|c| c.addr).collect();
    let seed: SocketAddr = "127.0.0.1:7002".parse().expect("addr");
    assert!(
        addrs.iter().filter(|a| **a == seed).count() >= 2,
        "not re-reported: {addrs:?}"
    );
    assert!(
        addrs
            .iter()
            .any(|a| a.port() == 7003 && a.ip().is_loopback()),
        "localhost not resolved: {addrs:?}"
    );
    assert!(!addrs.contains(&me().addr), "reported ourselves");
    assert!(seen.iter().all(|c| c.source == "static" && c.id.is_none()));
}

#[test]
fn malformed_seeds_are_clear_errors_at_build_time() {
    let env = Environment::default();
    let metrics = DiscoveryMetrics::default();
    for bad in [
        "node-1",
        "node-1:http",
        "::1:7000",
        "10.0.0.1:0",
        "bad host:7000",
    ] {
        let spec = DiscoverySpec::Static {
            seeds: vec!["127.0.0.1:7002".into(), bad.into()],
        };
        let error = build(&spec, &env, &metrics).err().expect("must fail");
        let text = error.to_string();
        assert!(matches!(error, DiscoveryError::BadSeed { .. }), "{text}");
        assert!(
            text.contains(bad) && text.contains("static discovery"),
            "{text}"
        );
        println!("{text}");
    }
    let empty = DiscoverySpec::Static { seeds: vec![] };
    let error = build(&empty, &env, &metrics)
        .err()
        .expect("no seeds must fail");
    assert!(matches!(error, DiscoveryError::NoSeeds), "{error}");
}

#[tokio::test]
async fn an_unresolvable_seed_is_counted_not_fatal() {
    let seeds = vec![
        "127.0.0.1:7002".to_owned(),
        "does-not-exist.invalid:7000".to_owned(),
    ];
    let metrics = DiscoveryMetrics::default();
    let strategy = StaticSeeds::new(&seeds, metrics.clone()).expect("well-formed");
    let (tx, mut rx) = mpsc::channel(64);
    let handle = Box::new(strategy).start(me(), tx).expect("start");
    // The bad seed's lookup may take the system resolver's timeout to fail: poll for it.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while metrics.errors("static") == 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seen = collect(&mut rx, Duration::from_millis(100)).await;
    handle.stop().await;
    assert!(seen.iter().any(|c| c.addr.port() == 7002), "{seen:?}");
    assert!(
        metrics.errors("static") >= 1,
        "unresolvable seed not counted"
    );
}
