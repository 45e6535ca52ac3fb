//! `foundation demo`: five nodes in this process form a cluster through zero-config local
//! discovery, serve, publish, share config and run an auction between agents, then one leaves
//! gracefully and one crashes — watched from the others, who go on serving and auctioning.

use std::path::Path;
use std::time::{Duration, Instant};

use foundation_engine::config::{DiscoveryChoice, NodeConfig, Profile};
use foundation_engine::membership::MemberState;
use foundation_engine::runtime::{Node, NodeSettings};

use super::{agents, services};

pub(crate) type Error = Box<dyn std::error::Error>;

pub(crate) const NODES: usize = 5;
const PATIENCE: Duration = Duration::from_secs(30);

/// Runs the demo, printing each step and how long it took.
pub async fn cluster() -> Result<(), Error> {
    let dir = std::env::temp_dir().join(format!("foundation-demo-{}", std::process::id()));
    let result = run(&dir).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn run(dir: &Path) -> Result<(), Error> {
    println!(
        "starting {NODES} nodes of cluster \"demo\" (development profile, local discovery in {})",
        dir.display()
    );
    let started = Instant::now();
    let mut nodes = Vec::new();
    for i in 1..=NODES {
        nodes.push(start(dir, i).await?);
    }
    wait_until("every node sees the other four alive", started, || {
        nodes.iter().all(|n| alive(n) == NODES - 1)
    })
    .await?;
    print_table(&nodes[0]);
    demonstrate_services(&nodes).await?;
    agents::start_bidders(&nodes).await?;
    agents::auction(1, &nodes[0], &nodes[1]).await?;

    let leaver = nodes.pop().ok_or("no node to stop")?;
    println!("\n{} leaves gracefully", name(&leaver));
    let left_at = Instant::now();
    leaver.leave().await;
    wait_until("every node records it as left", left_at, || {
        nodes
            .iter()
            .all(|n| state(n, &leaver) == Some(MemberState::Left))
    })
    .await?;
    services::call_greeters(&nodes[0], 2).await?;

    let crashed = nodes.pop().ok_or("no node to crash")?;
    println!("\n{} crashes (stops without a goodbye)", name(&crashed));
    let crashed_at = Instant::now();
    crashed.abort().await;
    wait_until("every survivor marks it failed", crashed_at, || {
        nodes
            .iter()
            .all(|n| state(n, &crashed) == Some(MemberState::Failed))
    })
    .await?;
    services::call_greeters(&nodes[0], 1).await?;
    println!(
        "\nagents: the two gone nodes' bidders drop out; the three left are a majority of the ledger's acceptors"
    );
    agents::auction(2, &nodes[0], &nodes[2]).await?;
    print_table(&nodes[0]);
    for node in &nodes {
        node.leave().await;
    }
    println!("\ndone: the survivors left gracefully");
    Ok(())
}

/// Registry, RPC, pub/sub and config across the formed cluster. The greeters run on the
/// last three nodes: the two that later leave and crash, and one that stays.
async fn demonstrate_services(nodes: &[Node]) -> Result<(), Error> {
    println!(
        "\nservices: \"{}\" registered on node-3, node-4 and node-5",
        services::GREETER
    );
    let names: Vec<String> = (3..=NODES).map(|i| format!("node-{i}")).collect();
    services::register_greeters(&nodes[2..], &names).await?;
    services::call_greeters(&nodes[0], 3).await?;
    services::publish_and_receive(&nodes[0], &nodes[1]).await?;
    services::share_config(&nodes[0], &nodes[2]).await
}

async fn start(dir: &Path, i: usize) -> Result<Node, Error> {
    let config = NodeConfig::builder()
        .profile(Profile::Development)
        .cluster("demo")
        .name(format!("node-{i}"))
        .discovery([DiscoveryChoice::Local {
            dir: Some(dir.to_path_buf()),
        }])
        .http(None)
        .build()?;
    let node = Node::start(NodeSettings::from_config(&config)?).await?;
    println!("  node-{i}  {}  quic {}", node.id().short(), node.addr());
    Ok(node)
}

pub(crate) async fn wait_until(
    what: &str,
    since: Instant,
    condition: impl Fn() -> bool,
) -> Result<(), Error> {
    while !condition() {
        if since.elapsed() > PATIENCE {
            return Err(format!("gave up after {PATIENCE:?} waiting until {what}").into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("  {what}: {:.2} s", since.elapsed().as_secs_f64());
    Ok(())
}

fn alive(node: &Node) -> usize {
    node.members()
        .iter()
        .filter(|m| m.state == MemberState::Alive)
        .count()
}

fn state(observer: &Node, of: &Node) -> Option<MemberState> {
    observer
        .members()
        .into_iter()
        .find(|m| m.id == of.id())
        .map(|m| m.state)
}

fn name(node: &Node) -> String {
    format!("node {}", node.id().short())
}

fn print_table(observer: &Node) {
    println!("\nmembers as {} sees them:", name(observer));
    for member in observer.members() {
        let who = member
            .metadata
            .as_ref()
            .and_then(|m| m.name.clone())
            .unwrap_or_default();
        println!(
            "  {}  {:<8} {:<21} {:?}",
            member.id.short(),
            who,
            member.addr.to_string(),
            member.state
        );
    }
}
