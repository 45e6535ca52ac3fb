//! Caches on real nodes over QUIC on 127.0.0.1, against peers in the same run:
//!
//! 1. a local hit through `node.cache(name).get` against `moka::sync::Cache::get` alone (the
//!    store under it), one thread, 64-byte values;
//! 2. a partitioned `get` answered by the key's owner on another node (near copies switched
//!    off, so every read crosses) against Redis `GET` on loopback (`redis-server` from
//!    Debian's packages, spoken to over one TCP connection, one request at a time); skipped
//!    with a message when `redis-server` is not installed;
//! 3. the near-cache hit rate of a reader under a skewed workload (keys drawn with a cube-law
//!    skew over 1,000 keys) while the owners change one value in fifty reads (invalidations).
//!
//! `cargo bench -p foundation-engine --bench cache` (`-- quick` for shorter runs). Prints
//! numbers; never pass/fail.

#[path = "common/nodes.rs"]
mod nodes;
#[path = "../../transport/benches/common/percentiles.rs"]
mod percentiles;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use foundation_engine::runtime::caches::{CacheHandle, CacheSettings, Mode};
use percentiles::percentiles;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SECRET: &str = "cache bench secret";
const VALUE: usize = 64;
const WITHIN: Duration = Duration::from_secs(5);

fn main() {
    let quick = std::env::args().any(|a| a == "quick");
    let (hits, remote, skewed) = if quick {
        (200_000, 2_000, 5_000)
    } else {
        (2_000_000, 10_000, 40_000)
    };
    let runtime = nodes::runtime();
    runtime.block_on(async {
        local_hits(hits).await;
        remote_gets(remote).await;
        near_hit_rate(skewed).await;
    });
}

async fn local_hits(n: usize) {
    let moka: moka::sync::Cache<Bytes, Bytes> = moka::sync::Cache::new(10_000);
    let keys: Vec<Bytes> = (0..1000u32)
        .map(|i| Bytes::from(format!("key-{i}")))
        .collect();
    for k in &keys {
        moka.insert(k.clone(), Bytes::from(vec![7u8; VALUE]));
    }
    let start = Instant::now();
    let mut found = 0usize;
    for i in 0..n {
        found += usize::from(moka.get(&keys[i % keys.len()]).is_some());
    }
    let moka_ns = start.elapsed().as_nanos() as f64 / n as f64;
    assert_eq!(found, n);

    let node = nodes::cluster("cache-bench", SECRET, 1).await.remove(0);
    let cache = node
        .declare_cache(CacheSettings::new("local", Mode::Local))
        .await
        .expect("declares");
    for k in &keys {
        cache
            .put(k.clone(), vec![7u8; VALUE], None)
            .await
            .expect("puts");
    }
    let start = Instant::now();
    let mut found = 0usize;
    for i in 0..n {
        let value = cache.get(&keys[i % keys.len()], WITHIN).await;
        found += usize::from(matches!(value, Ok(Some(_))));
    }
    let ours_ns = start.elapsed().as_nanos() as f64 / n as f64;
    assert_eq!(found, n);
    println!("local hit, {n} gets of 1,000 keys, {VALUE}-byte values:");
    println!("  moka::sync::Cache::get alone : {moka_ns:8.0} ns/get");
    println!(
        "  node.cache(\"local\").get     : {ours_ns:8.0} ns/get  ({:.2}x moka)",
        ours_ns / moka_ns
    );
    node.abort().await;
}

async fn remote_gets(n: usize) {
    let nodes = nodes::cluster("cache-bench-remote", SECRET, 2).await;
    let mut settings = CacheSettings::new("remote", Mode::Partitioned);
    // Near copies live a microsecond: every read asks the owner.
    settings.near_ttl = Duration::from_micros(1);
    let mut caches = Vec::new();
    for node in &nodes {
        caches.push(
            node.declare_cache(settings.clone())
                .await
                .expect("declares"),
        );
    }
    // Keys node 1 owns: after a put from node 0, node 0 does not hold them.
    let mut keys = Vec::new();
    for i in 0..400u32 {
        let key = format!("key-{i}");
        caches[0]
            .put(key.clone(), vec![7u8; VALUE], None)
            .await
            .expect("puts");
        if !caches[0].holds(&key) {
            keys.push(key);
        }
    }
    assert!(!keys.is_empty(), "node 1 owns none of 400 keys");
    // Warm up the connection.
    for k in keys.iter().take(100) {
        let _ = caches[0].get(k, WITHIN).await;
    }
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let key = &keys[i % keys.len()];
        let start = Instant::now();
        let value = caches[0].get(key, WITHIN).await.expect("reads");
        samples.push(start.elapsed());
        assert!(value.is_some());
    }
    let ours = percentiles(samples);
    println!(
        "partitioned get from a remote owner ({} keys, {n} gets, one at a time):",
        keys.len()
    );
    println!(
        "  foundation    : p50 {:>7.1} µs  p99 {:>7.1} µs  max {:>8.1} µs  ({} samples)",
        micros(ours.p50),
        micros(ours.p99),
        micros(ours.max),
        ours.n
    );
    match redis_gets(n).await {
        Ok(redis) => println!(
            "  redis GET     : p50 {:>7.1} µs  p99 {:>7.1} µs  max {:>8.1} µs  ({} samples; foundation/redis p50 {:.1}x)",
            micros(redis.p50),
            micros(redis.p99),
            micros(redis.max),
            redis.n,
            micros(ours.p50) / micros(redis.p50)
        ),
        Err(why) => println!("  redis GET     : skipped ({why})"),
    }
    for node in &nodes {
        node.abort().await;
    }
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

struct Redis(Child);

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn redis_gets(n: usize) -> Result<percentiles::Percentiles, String> {
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        probe.local_addr().map_err(|e| e.to_string())?.port()
    };
    let child = Command::new("redis-server")
        .args([
            "--bind",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| {
            format!("redis-server is not installed ({e}); apt-get install redis-server")
        })?;
    let _redis = Redis(child);
    let mut stream = None;
    for _ in 0..100 {
        if let Ok(s) = TcpStream::connect(("127.0.0.1", port)).await {
            stream = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut stream = stream.ok_or("redis-server did not listen")?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let keys: Vec<String> = (0..200).map(|i| format!("key-{i}")).collect();
    let value = "x".repeat(VALUE);
    for k in &keys {
        let set = format!(
            "*3\r\n$3\r\nSET\r\n${}\r\n{k}\r\n${}\r\n{value}\r\n",
            k.len(),
            value.len()
        );
        stream
            .write_all(set.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        read_reply(&mut stream, 5).await?;
    }
    let mut samples = Vec::with_capacity(n);
    for i in 0..n + 100 {
        let k = &keys[i % keys.len()];
        let get = format!("*2\r\n$3\r\nGET\r\n${}\r\n{k}\r\n", k.len());
        let start = Instant::now();
        stream
            .write_all(get.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        // "$64\r\n" + 64 bytes + "\r\n"
        read_reply(&mut stream, 5 + VALUE + 2).await?;
        if i >= 100 {
            samples.push(start.elapsed());
        }
    }
    Ok(percentiles(samples))
}

/// Reads exactly `len` bytes of a reply whose length the benchmark knows.
async fn read_reply(stream: &mut TcpStream, len: usize) -> Result<(), String> {
    let mut buf = vec![0u8; len];
    stream
        .read_exact(&mut buf)
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}

async fn near_hit_rate(n: usize) {
    let nodes = nodes::cluster("cache-bench-near", SECRET, 3).await;
    let mut caches: Vec<CacheHandle> = Vec::new();
    for node in &nodes {
        caches.push(
            node.declare_cache(CacheSettings::new("near", Mode::Partitioned))
                .await
                .expect("declares"),
        );
    }
    const KEYS: u64 = 1000;
    for i in 0..KEYS {
        caches[1]
            .put(format!("key-{i}"), vec![7u8; VALUE], None)
            .await
            .expect("puts");
    }
    let (hits0, misses0, _, _) = caches[0].counts();
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        // xorshift: a fixed sequence, the same every run.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let start = Instant::now();
    for i in 0..n {
        let u = next();
        let key = format!("key-{}", ((u * u * u) * KEYS as f64) as u64);
        if i % 50 == 49 {
            // Another node changes the value: its owner invalidates the near copies.
            caches[2]
                .put(key, vec![8u8; VALUE], None)
                .await
                .expect("puts");
        } else {
            caches[0].get(key, WITHIN).await.expect("reads");
        }
    }
    let took = start.elapsed();
    let (hits, misses, _, _) = caches[0].counts();
    let (hits, misses) = (hits - hits0, misses - misses0);
    println!("near cache, skewed reads (cube-law over {KEYS} keys), a write every 50 operations:");
    println!(
        "  reader: {hits} hits, {misses} misses: hit rate {:.1}%  ({:.0} ops/s)",
        100.0 * hits as f64 / (hits + misses).max(1) as f64,
        n as f64 / took.as_secs_f64()
    );
    for node in &nodes {
        node.abort().await;
    }
}
