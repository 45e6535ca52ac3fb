//! Caches on real nodes over QUIC on 127.0.0.1: `get_or_compute` runs a function once per key
//! (on one node, and across the cluster in partitioned mode), a partitioned key is read from
//! its owner anywhere, a replicated entry reaches every node, and bad input (unknown cache,
//! oversized key or value, a function that fails, panics or overruns) is a typed error that
//! leaves the node up and the cache as it was. `GET /caches` and `foundation_cache_*` metrics.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use foundation_engine::runtime::caches::{CacheError, CacheSettings, Mode};
use foundation_engine::runtime::{Node, NodeSettings};

const SECRET: &str = "cache test secret";
const WITHIN: Duration = Duration::from_secs(10);

fn settings(seeds: Vec<std::net::SocketAddr>) -> NodeSettings {
    NodeSettings {
        http: Some("127.0.0.1:0".parse().expect("address")),
        ..common::settings("cache-test", SECRET, seeds)
    }
}

async fn one_node() -> Node {
    Node::start(settings(vec![])).await.expect("starts")
}

#[tokio::test]
async fn local_get_or_compute_runs_the_function_once_for_concurrent_callers() {
    let node = one_node().await;
    let cache = node
        .declare_cache(CacheSettings::new("local", Mode::Local))
        .await
        .expect("declares");
    let runs = Arc::new(AtomicUsize::new(0));
    let (release, gate) = tokio::sync::watch::channel(false);
    let mut calls = Vec::new();
    for _ in 0..8 {
        let (cache, runs, mut gate) = (cache.clone(), runs.clone(), gate.clone());
        calls.push(tokio::spawn(async move {
            cache
                .get_or_compute("k", WITHIN, move || async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    let _ = gate.wait_for(|open| *open).await;
                    Ok::<_, String>(b"value".to_vec())
                })
                .await
        }));
    }
    // Every caller is in before the function may finish.
    common::eventually(WITHIN, "the function started", || {
        runs.load(Ordering::SeqCst) == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    release.send_replace(true);
    for call in calls {
        assert_eq!(call.await.expect("joins").expect("a value"), &b"value"[..]);
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(
        cache.get("k", WITHIN).await.expect("reads").as_deref(),
        Some(&b"value"[..])
    );
    assert_eq!(node.cache("local").expect("declared").name(), "local");
    node.abort().await;
}

#[tokio::test]
async fn bad_input_is_a_typed_error_and_the_node_stays_up() {
    let node = one_node().await;
    assert!(matches!(node.cache("nope"), Err(CacheError::Unknown(_))));
    let cache = node
        .declare_cache(CacheSettings::new("bounded", Mode::Local).limits(8, 16))
        .await
        .expect("declares");
    assert!(matches!(
        node.declare_cache(CacheSettings::new("bounded", Mode::Partitioned))
            .await,
        Err(CacheError::Conflict(_))
    ));
    cache.put("k", &b"kept"[..], None).await.expect("puts");
    assert!(matches!(
        cache.get("a key too long", WITHIN).await,
        Err(CacheError::KeyTooLarge { len: 14, max: 8 })
    ));
    assert!(matches!(
        cache.put("k", vec![0u8; 17], None).await,
        Err(CacheError::ValueTooLarge { len: 17, max: 16 })
    ));
    let too_big = cache
        .get_or_compute("big", WITHIN, || async { Ok::<_, String>(vec![0u8; 17]) })
        .await;
    assert!(matches!(too_big, Err(CacheError::ValueTooLarge { .. })));
    let failed = cache
        .get_or_compute("f", WITHIN, || async { Err::<Vec<u8>, _>("backend down") })
        .await;
    assert_eq!(
        failed,
        Err(CacheError::ComputeFailed("backend down".into()))
    );
    let panicked = cache
        .get_or_compute("p", WITHIN, || async {
            if true {
                panic!("a bug in the compute function");
            }
            Ok::<_, String>(vec![])
        })
        .await;
    assert!(matches!(panicked, Err(CacheError::ComputeFailed(_))));
    let slow = cache
        .get_or_compute("s", Duration::from_millis(200), || async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok::<_, String>(vec![1])
        })
        .await;
    assert_eq!(slow, Err(CacheError::Timeout));
    // Nothing lost, and the same keys compute fine afterwards.
    assert_eq!(
        cache.get("k", WITHIN).await.expect("reads").as_deref(),
        Some(&b"kept"[..])
    );
    let again = cache
        .get_or_compute("p", WITHIN, || async { Ok::<_, String>(b"ok".to_vec()) })
        .await;
    assert_eq!(again.expect("a value").as_ref(), b"ok");
    let http = node.http_addr().expect("http");
    let caches = common::raw_http::get(http, "/caches").await;
    assert_eq!(caches.status, 200);
    let caches: serde_json::Value = serde_json::from_str(&caches.body).expect("json");
    assert_eq!(caches["caches"][0]["name"], "bounded");
    assert_eq!(caches["caches"][0]["mode"], "local");
    assert_eq!(caches["caches"][0]["compute_failures"], 4);
    let metrics = common::metrics_text(http).await;
    for family in ["hits", "misses", "evictions", "computes"] {
        assert!(
            metrics.contains(&format!("# TYPE foundation_cache_{family}_total counter")),
            "{family} missing:\n{metrics}"
        );
    }
    assert!(
        metrics.contains("# TYPE foundation_cache_bytes gauge"),
        "{metrics}"
    );
    assert!(metrics.contains("foundation_cache_computes_total{cache=\"bounded\"} 5"));
    node.abort().await;
}

#[tokio::test]
async fn a_size_bound_evicts_and_counts_evictions() {
    let node = one_node().await;
    let cache = node
        .declare_cache(CacheSettings::new("small", Mode::Local).bounds(10, 10 * 1024))
        .await
        .expect("declares");
    for i in 0..100u32 {
        cache
            .put(i.to_le_bytes(), vec![0u8; 64], None)
            .await
            .expect("puts");
    }
    assert!(cache.entries() <= 10, "{} entries", cache.entries());
    let http = node.http_addr().expect("http");
    let metrics = common::metrics_text(http).await;
    let evicted: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("foundation_cache_evictions_total{cache=\"small\"} "))
        .and_then(|v| v.trim().parse().ok())
        .expect("an evictions series");
    assert!(evicted >= 90, "{evicted} evicted");
    node.abort().await;
}

#[tokio::test]
async fn partitioned_keys_are_computed_once_cluster_wide_and_read_from_the_owner() {
    let nodes = common::cluster(3, settings).await;
    let mut caches = Vec::new();
    for node in &nodes {
        caches.push(
            node.declare_cache(CacheSettings::new("users", Mode::Partitioned))
                .await
                .expect("declares"),
        );
    }
    let runs = Arc::new(AtomicUsize::new(0));
    let (release, gate) = tokio::sync::watch::channel(false);
    let mut calls = Vec::new();
    for cache in &caches {
        for _ in 0..3 {
            let (cache, runs, mut gate) = (cache.clone(), runs.clone(), gate.clone());
            calls.push(tokio::spawn(async move {
                cache
                    .get_or_compute("user:42", WITHIN, move || async move {
                        runs.fetch_add(1, Ordering::SeqCst);
                        let _ = gate.wait_for(|open| *open).await;
                        Ok::<_, String>(b"alice".to_vec())
                    })
                    .await
            }));
        }
    }
    common::eventually(WITHIN, "one function started", || {
        runs.load(Ordering::SeqCst) >= 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    release.send_replace(true);
    for call in calls {
        assert_eq!(call.await.expect("joins").expect("a value"), &b"alice"[..]);
    }
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "one computation cluster-wide"
    );
    // A plain put at one node is read at every node (from the owner, or a near copy that the
    // owner invalidates on change).
    caches[0]
        .put("user:7", &b"bob"[..], None)
        .await
        .expect("puts");
    for cache in &caches {
        let mut value = None;
        for _ in 0..50 {
            value = cache.get("user:7", WITHIN).await.expect("reads");
            if value.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(value.as_deref(), Some(&b"bob"[..]));
    }
    caches[1]
        .put("user:7", &b"carol"[..], None)
        .await
        .expect("puts");
    for cache in &caches {
        let mut value = None;
        for _ in 0..100 {
            value = cache.get("user:7", WITHIN).await.expect("reads");
            if value.as_deref() == Some(&b"carol"[..]) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            value.as_deref(),
            Some(&b"carol"[..]),
            "near copies invalidated"
        );
    }
    for node in &nodes {
        node.abort().await;
    }
}

#[tokio::test]
async fn replicated_entries_reach_every_node() {
    let nodes = common::cluster(2, settings).await;
    let mut caches = Vec::new();
    for node in &nodes {
        caches.push(
            node.declare_cache(
                CacheSettings::new("flags", Mode::Replicated).ttl(Duration::from_secs(60)),
            )
            .await
            .expect("declares"),
        );
    }
    caches[0].put("f", &b"on"[..], None).await.expect("puts");
    let mut value = None;
    for _ in 0..100 {
        value = caches[1].get("f", WITHIN).await.expect("reads");
        if value.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(value.as_deref(), Some(&b"on"[..]));
    for node in &nodes {
        node.abort().await;
    }
}

/// Live keys of keyspace `name` on the node serving HTTP at `http` (0 when not listed).
async fn live_keys(http: std::net::SocketAddr, name: &str) -> u64 {
    let document = foundation_engine::http::get_json(http, "/keyspaces", Duration::from_secs(2))
        .await
        .expect("/keyspaces");
    document["keyspaces"]
        .as_array()
        .and_then(|k| k.iter().find(|k| k["name"] == name))
        .and_then(|k| k["keys"].as_u64())
        .unwrap_or(0)
}

#[tokio::test]
async fn expired_replicated_entries_leave_the_keyspace_on_every_node() {
    let nodes = common::cluster(2, settings).await;
    let mut caches = Vec::new();
    for node in &nodes {
        let settings =
            CacheSettings::new("short", Mode::Replicated).ttl(Duration::from_millis(300));
        caches.push(node.declare_cache(settings).await.expect("declares"));
    }
    caches[0].put("k", &b"v"[..], None).await.expect("puts");
    let http = |i: usize| nodes[i].http_addr().expect("serving HTTP");
    let mut seen = 0;
    for _ in 0..100 {
        seen = live_keys(http(1), "cache/short").await;
        if seen == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(seen, 1, "the entry reached node 1's keyspace");
    // Expired after 300 ms, deleted by its purger a grace (1 s) later, everywhere.
    let mut left = (1, 1);
    for _ in 0..100 {
        left = (
            live_keys(http(0), "cache/short").await,
            live_keys(http(1), "cache/short").await,
        );
        if left == (0, 0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(left, (0, 0), "live keys of cache/short on nodes 0 and 1");
    // The deletes are counted where they were made: in `/metrics` and `/caches`.
    let mut purged = 0;
    for i in 0..2 {
        let metrics = common::metrics_text(http(i)).await;
        let counted = series(&metrics, "foundation_cache_purged_total", "short");
        assert_eq!(cache_field(http(i), "short", "purged").await, counted);
        purged += counted;
    }
    assert!(purged >= 1, "{purged} purged");
    for node in &nodes {
        node.abort().await;
    }
}

/// The value of metric `name` for cache `cache` in a `/metrics` text (0 when absent).
fn series(metrics: &str, name: &str, cache: &str) -> u64 {
    let prefix = format!("{name}{{cache=\"{cache}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Field `field` of cache `cache` in `/caches` on the node serving HTTP at `http`.
async fn cache_field(http: std::net::SocketAddr, cache: &str, field: &str) -> u64 {
    let body = common::raw_http::get(http, "/caches").await.body;
    let document: serde_json::Value = serde_json::from_str(&body).expect("json");
    document["caches"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == cache))
        .and_then(|c| c[field].as_u64())
        .expect("the cache and its field")
}

#[tokio::test]
async fn a_joining_node_takes_over_its_keys_and_both_sides_count_it() {
    let first = Node::start(settings(vec![])).await.expect("starts");
    let moving = CacheSettings::new("moving", Mode::Partitioned);
    let cache = first.declare_cache(moving.clone()).await.expect("declares");
    for i in 0..32u32 {
        cache
            .put(i.to_le_bytes(), &b"v"[..], None)
            .await
            .expect("puts");
    }
    // The joiner declares its cache only once it runs: handoffs that reach it first are kept
    // for the declaration.
    let second = Node::start(settings(vec![first.addr()]))
        .await
        .expect("starts");
    second.declare_cache(moving).await.expect("declares");
    let http = |node: &Node| node.http_addr().expect("serving HTTP");
    let mut counts = (0, 0);
    for _ in 0..20 {
        let handed = series(
            &common::metrics_text(http(&first)).await,
            "foundation_cache_handed_off_total",
            "moving",
        );
        let taken = series(
            &common::metrics_text(http(&second)).await,
            "foundation_cache_taken_over_total",
            "moving",
        );
        counts = (handed, taken);
        if handed > 0 && taken == handed {
            break;
        }
    }
    assert!(
        counts.0 > 0 && counts.0 == counts.1,
        "handed off, taken over: {counts:?}"
    );
    assert_eq!(
        cache_field(http(&first), "moving", "handed_off").await,
        counts.0
    );
    assert_eq!(
        cache_field(http(&second), "moving", "taken_over").await,
        counts.1
    );
    first.abort().await;
    second.abort().await;
}

/// A put at a node that is not the key's owner is read back at that node as soon as the put
/// returns, even where the node held a near copy of the value before (that copy once answered
/// until the owner's invalidation came back, a round trip later).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_is_read_back_at_once_where_a_near_copy_was_held() {
    let nodes = common::cluster(2, settings).await;
    let mut caches = Vec::new();
    for node in &nodes {
        let settings = CacheSettings::new("profiles", Mode::Partitioned);
        caches.push(node.declare_cache(settings).await.expect("declares"));
    }
    let reader = &caches[0];
    let mut remote = 0;
    for n in 0..200 {
        let key = format!("profile:{n}");
        reader.put(&key, &b"old"[..], None).await.expect("puts");
        if reader.holds(&key) {
            continue; // owned here: no near copy to go stale
        }
        // Read from the owner, which leaves a near copy here.
        let mut near = None;
        for _ in 0..100 {
            near = reader.get(&key, WITHIN).await.expect("reads");
            if reader.holds(&key) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(near.as_deref(), Some(&b"old"[..]));
        assert!(reader.holds(&key), "no near copy of {key}");
        reader.put(&key, &b"new"[..], None).await.expect("puts");
        let read = reader.get(&key, WITHIN).await.expect("reads");
        assert_eq!(read.as_deref(), Some(&b"new"[..]), "{key} read stale");
        remote += 1;
    }
    assert!(remote > 20, "only {remote} keys owned by the other node");
    for node in &nodes {
        node.abort().await;
    }
}

/// Declarations of one cache made at once from several tasks all hand back the store this
/// node's machine writes: a put through any of them is held in every one (a declaration that
/// lost the race once handed back a store of its own, which the machine never wrote).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_declarations_of_a_cache_share_the_store_the_node_writes() {
    let node = one_node().await;
    for n in 0..200 {
        let name = format!("shared-{n}");
        let declarations: Vec<_> = (0..4)
            .map(|_| {
                let (node, settings) = (node.clone(), CacheSettings::new(&name, Mode::Local));
                tokio::spawn(async move { node.declare_cache(settings).await })
            })
            .collect();
        let mut handles = Vec::new();
        for declaration in declarations {
            handles.push(declaration.await.expect("joins").expect("declares"));
        }
        handles[0].put("k", &b"v"[..], None).await.expect("puts");
        for handle in &handles {
            assert!(handle.holds("k"), "{name}: a handle on another store");
        }
        assert!(node.cache(&name).expect("declared").holds("k"));
    }
    node.abort().await;
}
