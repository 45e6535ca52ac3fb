//! Routing by key on real nodes over QUIC on 127.0.0.1: two nodes in this process run a sharded
//! workload (32 shards, each instance counting what its inbox takes); node 0 routes messages by
//! key with `placement().route` to keys whose shard runs on node 0 itself (same node) and on
//! node 1 (across nodes). Each call returns once the owner's instance took the message into
//! its inbox (an answer crosses back for the remote case). Printed: the latency of one call at
//! a time (p50/p99), then the throughput with many calls in flight and their latency under
//! that load. Then a third node joins: how many shards changed runner against the minimum (the
//! shards whose owner is now the newcomer), and how long until every shard ran once on the owner
//! every node's view names (time to settle).
//!
//! `cargo bench -p foundation-engine --bench placement_route` (`-- quick` for shorter runs).
//! Prints numbers; never pass/fail.

#[path = "common/nodes.rs"]
mod nodes;
#[path = "../../transport/benches/common/percentiles.rs"]
mod percentiles;
#[path = "common/wait.rs"]
mod wait;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use foundation_core::placement::WorkloadSpec;
use foundation_engine::membership::MemberState;
use foundation_engine::runtime::placement::{Inbox, InstanceContext, PlacementHandle};
use foundation_engine::runtime::Node;
use percentiles::percentiles;

const SECRET: &str = "placement route bench secret";
const SHARDS: u32 = 32;
const TTL: Duration = Duration::from_secs(10);
const PAYLOAD: usize = 64;
/// Callers step through the keys by a prime, so they spread over the shards.
const STRIDE: usize = 7;

struct Plan {
    sequential: usize,
    in_flight: usize,
    load_for: Duration,
}

fn main() {
    let quick = std::env::args().any(|a| a == "quick");
    let plan = if quick {
        Plan {
            sequential: 500,
            in_flight: 64,
            load_for: Duration::from_secs(1),
        }
    } else {
        Plan {
            sequential: 5_000,
            in_flight: 64,
            load_for: Duration::from_secs(5),
        }
    };
    nodes::runtime().block_on(bench(plan));
}

const CLUSTER: &str = "placement-route-bench";

async fn bench(plan: Plan) {
    let mut nodes = nodes::cluster(CLUSTER, SECRET, 2).await;
    let taken = Arc::new(AtomicU64::new(0));
    for node in &nodes {
        declare(node, taken.clone()).await;
    }
    let placed = wait::wait_until(Duration::from_secs(30), || settled(&nodes).is_some()).await;
    assert!(placed, "the shards did not settle within 30 s");
    let sender = nodes[0].placement();
    let (here, there) = keys(&sender, nodes[1].id());
    println!(
        "routing by key, 2 nodes on 127.0.0.1, {SHARDS} shards, {PAYLOAD}-byte payloads, load average {}",
        load_average()
    );
    for (name, keys) in [("same node", &here), ("across nodes", &there)] {
        sequential(&sender, name, keys, plan.sequential).await;
        loaded(&sender, name, keys, &plan).await;
    }
    println!(
        "  messages taken by instances: {}",
        taken.load(Ordering::Relaxed)
    );
    join_third(&mut nodes, taken).await;
    for node in &nodes {
        node.abort().await;
    }
}

/// Each shard's runner (an index into `nodes`), if every shard runs on exactly one node and
/// that node is the owner every node's view names.
fn settled(nodes: &[Node]) -> Option<Vec<usize>> {
    let views: Vec<_> = nodes.iter().map(|n| n.placement().all()).collect();
    (0..SHARDS)
        .map(|shard| {
            let runners: Vec<usize> = (0..nodes.len())
                .filter(|&i| nodes[i].placement().running_here("kv", shard))
                .collect();
            let [runner] = runners[..] else { return None };
            let owner = Some(nodes[runner].id());
            let agreed = views.iter().all(|view| {
                view.get("kv")
                    .and_then(|w| w.instances.get(shard as usize))
                    .is_some_and(|i| i.owner == owner)
            });
            agreed.then_some(runner)
        })
        .collect()
}

/// A third node joins the two: shards moved against the minimum, and the time to settle.
async fn join_third(nodes: &mut Vec<Node>, taken: Arc<AtomicU64>) {
    let before = settled(nodes).expect("settled before the join");
    let started = Instant::now();
    let settings = nodes::settings(CLUSTER, SECRET, vec![nodes[0].addr()]);
    let third = Node::start(settings).await.expect("the third node starts");
    declare(&third, taken).await;
    nodes.push(third);
    let ready = |nodes: &[Node]| {
        let all_see_all = nodes.iter().all(|n| {
            n.members()
                .iter()
                .filter(|m| m.state == MemberState::Alive)
                .count()
                == 2
        });
        all_see_all.then(|| settled(nodes)).flatten()
    };
    let mut after = None;
    let done = wait::wait_until(Duration::from_secs(30), || {
        after = ready(nodes);
        after.is_some()
    })
    .await;
    let Some(after) = after.filter(|_| done) else {
        println!("a third node joins: not settled within 30 s");
        return;
    };
    let moved = before.iter().zip(&after).filter(|(b, a)| b != a).count();
    let minimum = after.iter().filter(|runner| **runner == 2).count();
    println!(
        "a third node joins: {moved} of {SHARDS} shards moved, minimum {minimum} (the newcomer's); settled {} ms after its start, load average {}",
        started.elapsed().as_millis(),
        load_average()
    );
}

/// Declares the sharded workload whose instances count what they take.
async fn declare(node: &Node, taken: Arc<AtomicU64>) {
    let spec = WorkloadSpec {
        min_members: 2,
        ..WorkloadSpec::sharded(SHARDS)
    };
    node.placement()
        .place("kv", spec, move |mut context: InstanceContext| {
            let taken = taken.clone();
            async move {
                while let Some(item) = context.recv().await {
                    if let Inbox::Message(_) = item {
                        taken.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        })
        .await
        .expect("declared");
}

/// Keys whose shard node 0's view puts on node 0, and on `other`.
fn keys(
    sender: &PlacementHandle,
    other: foundation_transport::NodeId,
) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let (mut here, mut there) = (Vec::new(), Vec::new());
    for i in 0..10_000u32 {
        let key = format!("key-{i}").into_bytes();
        match sender.owner_of("kv", &key).expect("declared").1 {
            Some(owner) if owner == sender.me() => here.push(key),
            Some(owner) if owner == other => there.push(key),
            _ => {}
        }
    }
    assert!(
        !here.is_empty() && !there.is_empty(),
        "both nodes own shards"
    );
    (here, there)
}

/// One call at a time.
async fn sequential(sender: &PlacementHandle, name: &str, keys: &[Vec<u8>], n: usize) {
    let mut samples = Vec::with_capacity(n);
    let started = Instant::now();
    for i in 0..n {
        let at = Instant::now();
        sender
            .route("kv", &keys[i % keys.len()], vec![7; PAYLOAD], TTL)
            .await
            .expect("delivered");
        samples.push(at.elapsed());
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    let p = percentiles(samples);
    println!(
        "  {name:<13} one at a time: {rate:>8.0} msg/s, p50 {:?} p99 {:?} max {:?} ({} calls)",
        p.p50, p.p99, p.max, p.n
    );
}

/// `in_flight` callers routing in a loop for `load_for`.
async fn loaded(sender: &PlacementHandle, name: &str, keys: &[Vec<u8>], plan: &Plan) {
    let keys = Arc::new(keys.to_vec());
    let until = Instant::now() + plan.load_for;
    let callers: Vec<_> = (0..plan.in_flight)
        .map(|caller| {
            let (sender, keys) = (sender.clone(), keys.clone());
            tokio::spawn(async move {
                let (mut samples, mut failed) = (Vec::new(), 0u64);
                let mut i = caller;
                while Instant::now() < until {
                    let at = Instant::now();
                    let sent = sender
                        .route("kv", &keys[i % keys.len()], vec![7; PAYLOAD], TTL)
                        .await;
                    match sent {
                        Ok(()) => samples.push(at.elapsed()),
                        Err(_) => failed += 1,
                    }
                    i += STRIDE;
                }
                (samples, failed)
            })
        })
        .collect();
    let started = Instant::now();
    let (mut samples, mut failed) = (Vec::new(), 0);
    for caller in callers {
        let (s, f) = caller.await.expect("caller");
        samples.extend(s);
        failed += f;
    }
    let rate = samples.len() as f64 / started.elapsed().as_secs_f64();
    let p = percentiles(samples);
    println!(
        "  {name:<13} {} in flight: {rate:>8.0} msg/s, p50 {:?} p99 {:?} max {:?} ({} delivered, {failed} failed)",
        plan.in_flight, p.p50, p.p99, p.max, p.n
    );
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "n/a".into())
}
