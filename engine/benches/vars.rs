//! Variables on 5 in-process nodes over QUIC on 127.0.0.1: compare-and-set commit latency of
//! one writer (target p99 ≤ 10 ms), committed versions per second with 64 writers spread over
//! the nodes contending for one variable, `lww` write-to-visible-everywhere latency, and
//! counter draws per second, and the memory a variable costs (`lww` and `cas`, every node's
//! replica). No peer runs the same protocols here; etcd is not packaged for this machine, so
//! no ratio is printed.
//!
//! `cargo bench -p foundation-engine --bench vars` (`-- quick` for fewer rounds).

#[path = "common/host.rs"]
#[allow(dead_code)] // shared with the storage benchmark, which uses the rest
mod host;
#[path = "common/nodes.rs"]
mod nodes;
#[path = "../../transport/benches/common/percentiles.rs"]
mod percentiles;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use foundation_agents::cas::CasOutcome;
use foundation_agents::variable::{Policy, VarType, VarValue};
use foundation_engine::runtime::Node;
use foundation_engine::vars::VarSpec;
use percentiles::percentiles;

const NODES: usize = 5;
const TIMEOUT: Duration = Duration::from_secs(2);

async fn cluster() -> Vec<Node> {
    nodes::cluster("vars-bench", "vars bench secret", NODES).await
}

async fn declare(nodes: &[Node], name: &str) {
    let spec = VarSpec {
        ty: VarType::Int {
            min: 0,
            max: i64::MAX,
        },
        policy: Policy::Cas,
        initial: VarValue::Int(0),
        acceptors: nodes[0].vars().alive_lives(),
    };
    nodes[0].vars().declare(name, spec).await.expect("declares");
    for node in nodes {
        while node.vars().get(name).is_none() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// One writer, one write at a time: each write expects the version the last one made.
async fn commit_latency(nodes: &[Node], rounds: usize) {
    declare(nodes, "solo").await;
    let vars = nodes[0].vars();
    let mut samples = Vec::with_capacity(rounds);
    for version in 0..rounds as u64 {
        let start = Instant::now();
        let outcome = vars
            .compare_and_set("solo", version, VarValue::Int(version as i64 + 1), TIMEOUT)
            .await
            .expect("answered");
        assert_eq!(
            outcome,
            CasOutcome::Won {
                version: version + 1
            }
        );
        samples.push(start.elapsed());
    }
    let p = percentiles(samples);
    println!(
        "cas commit, 1 writer, {NODES} nodes: p50 {:?} p99 {:?} max {:?} (n={}; target p99 ≤ 10 ms)",
        p.p50, p.p99, p.max, p.n
    );
}

/// `writers` tasks spread over the nodes, each reading the version and trying to move it on.
async fn contended(nodes: &[Node], writers: usize, run_for: Duration) {
    declare(nodes, "hot").await;
    let won = Arc::new(AtomicU64::new(0));
    let attempts = Arc::new(AtomicU64::new(0));
    let end = Instant::now() + run_for;
    let tasks: Vec<_> = (0..writers)
        .map(|i| {
            let vars = nodes[i % nodes.len()].vars();
            let (won, attempts) = (won.clone(), attempts.clone());
            tokio::spawn(async move {
                while Instant::now() < end {
                    let (version, _) = vars.get("hot").expect("declared");
                    let value = VarValue::Int(version as i64 + 1);
                    attempts.fetch_add(1, Ordering::Relaxed);
                    if let Ok(CasOutcome::Won { .. }) =
                        vars.compare_and_set("hot", version, value, TIMEOUT).await
                    {
                        won.fetch_add(1, Ordering::Relaxed);
                    } else {
                        tokio::task::yield_now().await;
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("writer ran");
    }
    let (won, attempts) = (
        won.load(Ordering::Relaxed),
        attempts.load(Ordering::Relaxed),
    );
    let (version, _) = nodes[0].vars().get("hot").expect("declared");
    println!(
        "cas contended, {writers} writers on {NODES} nodes: {:.0} committed versions/s ({won} won of {attempts} attempts; version {version})",
        won as f64 / run_for.as_secs_f64()
    );
}

async fn declare_spec(nodes: &[Node], name: &str, spec: VarSpec) {
    nodes[0].vars().declare(name, spec).await.expect("declares");
    for node in nodes {
        while node.vars().get(name).is_none() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Each round one node (in turn) writes a new value of an `lww` variable; the sample is the
/// time until every node shows it (each node's change events, so no polling delay).
async fn lww_visible_everywhere(nodes: &[Node], rounds: usize) {
    let spec = VarSpec {
        ty: VarType::Int {
            min: 0,
            max: i64::MAX,
        },
        policy: Policy::Lww,
        initial: VarValue::Int(0),
        acceptors: Default::default(),
    };
    declare_spec(nodes, "lww", spec).await;
    let mut watchers: Vec<_> = nodes.iter().map(|n| n.vars().watch()).collect();
    let mut samples = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let value = VarValue::Int(round as i64 + 1);
        let start = Instant::now();
        let writer = nodes[round % nodes.len()].vars();
        writer.set("lww", value.clone()).await.expect("writes");
        for (node, events) in nodes.iter().zip(watchers.iter_mut()) {
            shows(node, events, &value).await;
        }
        samples.push(start.elapsed());
    }
    let p = percentiles(samples);
    println!(
        "lww write visible on all {NODES} nodes: p50 {:?} p99 {:?} max {:?} (n={})",
        p.p50, p.p99, p.max, p.n
    );
}

/// Waits until `node` shows `value` for the `lww` variable.
async fn shows(
    node: &Node,
    events: &mut tokio::sync::broadcast::Receiver<foundation_engine::vars::VarsEvent>,
    value: &VarValue,
) {
    use tokio::sync::broadcast::error::RecvError;
    while node.vars().get("lww").map(|(_, v)| v).as_ref() != Some(value) {
        // The view is published before the event is sent: after any event, look again.
        match tokio::time::timeout(TIMEOUT, events.recv()).await {
            Ok(Ok(_) | Err(RecvError::Lagged(_))) => {}
            Ok(Err(RecvError::Closed)) | Err(_) => panic!("the write never showed"),
        }
    }
}

/// `per_node` tasks on every node draw one unit at a time from a counter large enough never to
/// run out: draws need no coordination, so this is the local path plus replicating each
/// node's state.
async fn counter_draws(nodes: &[Node], per_node: usize, run_for: Duration) {
    let spec = VarSpec {
        ty: VarType::Int {
            min: 0,
            max: i64::MAX,
        },
        policy: Policy::Counter,
        initial: VarValue::Int(1 << 40),
        acceptors: nodes[0].vars().alive_lives(),
    };
    declare_spec(nodes, "pool", spec).await;
    let drawn = Arc::new(AtomicU64::new(0));
    let end = Instant::now() + run_for;
    let tasks: Vec<_> = (0..per_node * nodes.len())
        .map(|i| {
            let vars = nodes[i % nodes.len()].vars();
            let drawn = drawn.clone();
            tokio::spawn(async move {
                while Instant::now() < end {
                    if vars.draw("pool", 1).await.is_ok() {
                        drawn.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("drawer ran");
    }
    let drawn = drawn.load(Ordering::Relaxed);
    // Every node's view converges on the same value once the states have spread.
    let expected = VarValue::Int((1 << 40) - drawn as i64);
    let settle = Instant::now();
    while !nodes
        .iter()
        .all(|n| n.vars().get("pool").map(|(_, v)| v).as_ref() == Some(&expected))
    {
        assert!(
            settle.elapsed() < Duration::from_secs(10),
            "never converged"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    println!(
        "counter draws, {} drawers on {NODES} nodes: {:.0} draws/s ({drawn} units; all nodes agree {:?} after the last)",
        per_node * nodes.len(),
        drawn as f64 / run_for.as_secs_f64(),
        settle.elapsed()
    );
}

/// Resident memory grown by declaring `n` variables of `policy` from one node and waiting
/// until all five nodes (one process) hold them, divided by `n`: the cost of one variable on
/// every node of the cluster. RSS includes allocator slack, so this is an upper bound.
async fn memory_per_variable(nodes: &[Node], n: usize, policy: Policy) {
    let spec = VarSpec {
        ty: VarType::Int {
            min: 0,
            max: i64::MAX,
        },
        policy,
        initial: VarValue::Int(0),
        acceptors: match policy {
            Policy::Lww => Default::default(),
            _ => nodes[0].vars().alive_lives(),
        },
    };
    let names: Vec<String> = (0..n).map(|i| format!("mem-{policy:?}-{i}")).collect();
    let before = host::memory_kib("VmRSS:");
    for name in &names {
        nodes[0]
            .vars()
            .declare(name, spec.clone())
            .await
            .expect("declares");
    }
    for node in nodes {
        while names.iter().any(|name| node.vars().get(name).is_none()) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let grown = host::memory_kib("VmRSS:").saturating_sub(before);
    println!(
        "memory, {n} {policy:?} variables on {NODES} nodes: RSS +{grown} KiB, about {:.0} B per variable with its {NODES} replicas (upper bound)",
        grown as f64 * 1024.0 / n as f64
    );
}

fn main() {
    let quick = std::env::args().any(|a| a == "quick");
    let runtime = nodes::runtime();
    runtime.block_on(async {
        let nodes = cluster().await;
        commit_latency(&nodes, if quick { 300 } else { 2_000 }).await;
        contended(&nodes, 64, Duration::from_secs(if quick { 2 } else { 5 })).await;
        lww_visible_everywhere(&nodes, if quick { 300 } else { 2_000 }).await;
        counter_draws(&nodes, 4, Duration::from_secs(if quick { 2 } else { 5 })).await;
        let variables = if quick { 500 } else { 2_000 };
        memory_per_variable(&nodes, variables, Policy::Lww).await;
        memory_per_variable(&nodes, variables, Policy::Cas).await;
        for node in &nodes {
            node.abort().await;
        }
    });
}
