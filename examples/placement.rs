//! Placement on three nodes in one process: a singleton (`scheduler`, exactly one in the
//! cluster) and a sharded workload (`accounts`, 8 shards, each counting the messages routed to
//! it by key, handing its count to the next owner when it moves). Messages are routed by key
//! from one node to whichever node owns the key's shard; then the node running the singleton
//! leaves, and the singleton and its shards move to the nodes that stay — the counts go with
//! them. Each node prints its placement events (`node.placement().events()`) as they happen.
//!
//! Run: `cargo run --example placement`

mod common;

use common::{cluster, wait_until, Error};

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use foundation::engine::placement::WorkloadSpec;
use foundation::engine::runtime::placement::{Inbox, InstanceContext, PlacementNotice};
use foundation::transport::NodeId;
use foundation::Node;

const SHARDS: u32 = 8;
const TTL: Duration = Duration::from_secs(5);

/// Each shard's count of the messages it took, as its latest run reported it.
type Counts = Arc<Mutex<BTreeMap<u32, u64>>>;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let dir = std::env::temp_dir().join(format!("foundation-placement-{}", std::process::id()));
    let nodes = cluster(&dir, "placement-example", &["n1", "n2", "n3"]).await;
    let result = match nodes {
        Ok(nodes) => run(nodes).await,
        Err(e) => Err(e),
    };
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn run(nodes: Vec<Node>) -> Result<(), Error> {
    let names: BTreeMap<NodeId, String> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.id(), format!("n{}", i + 1)))
        .collect();
    let counts = Counts::default();
    let mut printers = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        printers.push(print_events(node, names.clone()));
        declare(node, &format!("n{}", i + 1), counts.clone()).await?;
    }
    wait_until("the singleton and every shard run once", || placed(&nodes)).await?;

    // Routing by key: the key's shard, and who owns it, then the message goes there.
    let sender = nodes[0].placement();
    for user in ["ann", "bob", "cat"] {
        let (shard, owner) = sender.owner_of("accounts", user.as_bytes())?;
        let owner = owner.map_or("nobody".into(), |id| names[&id].clone());
        println!("key {user:?} → accounts/{shard} on {owner}");
    }
    route(&sender, 0..30).await?;
    // `route` returns once a message is in its instance's inbox; the instance counts it next.
    wait_until("the instances counted all 30", || total(&counts) == 30).await?;
    println!(
        "30 messages routed from n1: counts by shard {:?}",
        counts.lock().map(|c| c.clone()).unwrap_or_default()
    );

    // The singleton's node leaves gracefully: its shards hand their counts over first.
    let leaver = (0..3)
        .find(|i| nodes[*i].placement().running_here("scheduler", 0))
        .ok_or("nobody runs the singleton")?;
    println!(
        "\n{} runs the scheduler and leaves the cluster",
        names[&nodes[leaver].id()]
    );
    let left_at = Instant::now();
    nodes[leaver].leave().await;
    let stay: Vec<Node> = (0..3)
        .filter(|i| *i != leaver)
        .map(|i| nodes[i].clone())
        .collect();
    wait_until(
        "the singleton and every shard run once on the two that stay",
        || placed(&stay),
    )
    .await?;
    println!(
        "moved in {} ms after the leave began",
        left_at.elapsed().as_millis()
    );

    route(&stay[0].placement(), 30..60).await?;
    wait_until(
        "the instances counted all 60 (the moved shards kept their counts)",
        || total(&counts) == 60,
    )
    .await?;
    println!(
        "30 more routed from {}: counts by shard {:?}",
        names[&stay[0].id()],
        counts.lock().map(|c| c.clone()).unwrap_or_default()
    );
    // The rest of the shutdown would only move things again.
    for printer in printers {
        printer.abort();
    }
    for node in &stay {
        node.leave().await;
    }
    Ok(())
}

/// The messages counted over every shard.
fn total(counts: &Counts) -> u64 {
    counts.lock().map(|c| c.values().sum()).unwrap_or(0)
}

/// Whether the singleton and every shard run on exactly one of `nodes`.
fn placed(nodes: &[Node]) -> bool {
    let once = |workload: &str, shard: u32| {
        nodes
            .iter()
            .filter(|n| n.placement().running_here(workload, shard))
            .count()
            == 1
    };
    once("scheduler", 0) && (0..SHARDS).all(|s| once("accounts", s))
}

/// Declares both workloads on `node`; a majority of the three must be seen before either
/// starts, so nodes that have not met yet never each start one.
async fn declare(node: &Node, name: &str, counts: Counts) -> Result<(), Error> {
    let here = name.to_owned();
    let singleton = WorkloadSpec {
        min_members: 2,
        ..WorkloadSpec::singleton()
    };
    node.placement()
        .singleton_with("scheduler", singleton, move || {
            let here = here.clone();
            async move {
                println!("    [{here}] scheduler: running");
                std::future::pending::<()>().await;
            }
        })
        .await?;
    let sharded = WorkloadSpec {
        min_members: 2,
        handoff: true,
        ..WorkloadSpec::sharded(SHARDS)
    };
    node.placement()
        .place("accounts", sharded, move |context| {
            account(context, counts.clone())
        })
        .await?;
    Ok(())
}

/// One shard: counts the messages routed to it, starting from the count handed over.
async fn account(mut context: InstanceContext, counts: Counts) {
    let handed = context.handed_over.as_deref().map(<[u8; 8]>::try_from);
    let mut count = match handed {
        Some(Ok(bytes)) => u64::from_le_bytes(bytes),
        _ => 0,
    };
    while let Some(item) = context.recv().await {
        match item {
            Inbox::Message(_) => {
                count += 1;
                if let Ok(mut counts) = counts.lock() {
                    counts.insert(context.shard, count);
                }
            }
            Inbox::HandOff(reply) => {
                if let Err(e) = reply.hand_over(count.to_le_bytes().to_vec()).await {
                    println!("    accounts/{}: hand-over failed: {e}", context.shard);
                }
            }
        }
    }
}

/// Routes one message for each user number in `users` by its key.
async fn route(
    placement: &foundation::engine::runtime::placement::PlacementHandle,
    users: std::ops::Range<u32>,
) -> Result<(), Error> {
    for user in users {
        let key = format!("user-{user}");
        placement
            .route("accounts", key.as_bytes(), b"deposit".to_vec(), TTL)
            .await?;
    }
    Ok(())
}

/// Prints `node`'s placement events as they come, naming nodes n1..n3.
fn print_events(node: &Node, names: BTreeMap<NodeId, String>) -> tokio::task::JoinHandle<()> {
    let me = names[&node.id()].clone();
    let mut events = node.placement().events();
    let name = move |id: &Option<NodeId>| {
        id.map_or("nobody".to_owned(), |id| {
            names.get(&id).cloned().unwrap_or_else(|| id.short())
        })
    };
    tokio::spawn(async move {
        while let Ok(notice) = events.recv().await {
            let line = match notice {
                // Every node's view changes; the new owner's line is enough.
                PlacementNotice::OwnerChanged { instance, from, to } if name(&to) == me => {
                    format!("owner of {instance}: {} → {}", name(&from), name(&to))
                }
                PlacementNotice::OwnerChanged { .. } => continue,
                PlacementNotice::Started {
                    instance,
                    without_owner,
                } => format!(
                    "started {instance} ({} ms without an owner as seen here)",
                    without_owner.as_millis()
                ),
                PlacementNotice::Stopped { instance, reason } => {
                    format!("stopped {instance}: {}", reason.name())
                }
                PlacementNotice::HandoffBegun { instance, to } => {
                    format!("handing {instance} over to {}", name(&Some(to)))
                }
                PlacementNotice::HandoffEnded {
                    instance,
                    from,
                    bytes,
                } => format!(
                    "took {instance}'s state ({bytes} bytes) from {}",
                    name(&Some(from))
                ),
                PlacementNotice::DuplicateDetected { instance, with } => {
                    format!("DUPLICATE: {instance} also ran on {}", name(&Some(with)))
                }
            };
            println!("  [{me}] {line}");
        }
    })
}
