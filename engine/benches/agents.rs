//! Agents benchmark on real runtime nodes on 127.0.0.1: request round trip to an agent on the
//! same node and on another node (p50/p99), supervisor restart time after a panic, and memory
//! per idle agent.
//!
//! ```sh
//! cargo bench -p foundation-engine --bench agents            # full run
//! cargo bench -p foundation-engine --bench agents -- quick   # smaller counts
//! cargo bench -p foundation-engine --bench agents -- agents=5000 subscriptions=5000   # spawns beside pub/sub interest
//! ```
//!
//! Prints numbers; never fails on timing (timing is not a pass/fail test).

#[path = "common/host.rs"]
#[allow(dead_code)] // shared with the storage benchmark, which uses the rest
mod host;
#[path = "common/nodes.rs"]
mod nodes;
#[path = "../../transport/benches/common/percentiles.rs"]
mod percentiles;

use std::time::{Duration, Instant};

use bytes::Bytes;
use foundation_engine::runtime::agents::{
    Agent, AgentEvent, AgentSpec, AgentState, Context, DeliveryError, HandlerError, Message,
    SupervisorConfig,
};
use foundation_engine::runtime::Node;
use percentiles::percentiles;

const SECRET: &str = "agents benchmark secret, long enough";
const DEADLINE: Duration = Duration::from_secs(5);

/// Answers with its message; panics on an empty one.
struct Echo;

impl Agent for Echo {
    async fn handle(&mut self, _: &Context, message: Message) -> Result<Bytes, HandlerError> {
        assert!(!message.body.is_empty(), "{EXPECTED_PANIC}");
        Ok(message.body)
    }
}

/// The panic [`Echo`] is made to throw, thousands of times: kept out of the output.
const EXPECTED_PANIC: &str = "an empty message";

fn main() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if info.payload().downcast_ref::<String>().map(String::as_str) != Some(EXPECTED_PANIC) {
            default_hook(info);
        }
    }));
    let quick = std::env::args().any(|a| a == "quick");
    let (requests, restarts, mut idle_agents) = if quick {
        (500, 50, 500)
    } else {
        (5_000, 300, 2_000)
    };
    // `agents=N` spawns N idle agents instead, to see how spawning scales.
    if let Some(n) = std::env::args().find_map(|a| a.strip_prefix("agents=")?.parse().ok()) {
        idle_agents = n;
    }
    // `subscriptions=M`: M topic patterns subscribed first, so the directory that every spawn
    // updates holds that much pub/sub interest too.
    let subscriptions = std::env::args()
        .find_map(|a| a.strip_prefix("subscriptions=")?.parse().ok())
        .unwrap_or(0);
    let runtime = nodes::runtime();
    runtime.block_on(async {
        let nodes = nodes::cluster("agents-bench", SECRET, 2).await;
        round_trips(&nodes, requests).await;
        restart_time(&nodes[0], restarts).await;
        let _interest = subscribe(&nodes[0], subscriptions).await;
        memory_per_agent(&nodes[1], idle_agents).await;
        for node in &nodes {
            node.abort().await;
        }
    });
}

async fn round_trips(nodes: &[Node], n: usize) {
    nodes[0]
        .agents()
        .spawn(AgentSpec::new("echo", || Echo))
        .await
        .expect("spawn");
    let far = nodes[1].agents();
    while far.lookup("echo").is_none() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let body = Bytes::from(vec![7u8; 64]);
    for (label, caller) in [("same node ", nodes[0].agents()), ("other node", far)] {
        let mut samples = Vec::with_capacity(n);
        for _ in 0..n {
            let start = Instant::now();
            caller
                .request_bytes("echo", body.clone(), DEADLINE)
                .await
                .expect("answer");
            samples.push(start.elapsed());
        }
        report(&format!("request    64 B round trip, {label}"), samples);
    }
}

fn report(what: &str, samples: Vec<Duration>) {
    let p = percentiles(samples);
    println!(
        "{what}: p50 {:?} p99 {:?} max {:?} (n = {})",
        p.p50, p.p99, p.max, p.n
    );
}

/// From the panicking request's error to the restarted agent's first answer, with no backoff
/// (the supervisor's own work, not its configured delay).
async fn restart_time(node: &Node, n: usize) {
    let agents = node.agents();
    let config = SupervisorConfig {
        max_restarts: u32::MAX,
        backoff_initial_ms: 0,
        backoff_max_ms: 0,
        ..SupervisorConfig::default()
    };
    agents
        .spawn_with(AgentSpec::new("crasher", || Echo), config)
        .await
        .expect("spawn");
    let mut events = agents.events();
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        let crash = agents
            .request_bytes("crasher", Bytes::new(), DEADLINE)
            .await;
        assert!(
            matches!(crash, Err(DeliveryError::Panicked { .. })),
            "{crash:?}"
        );
        loop {
            match events.recv().await {
                Ok(AgentEvent::State { name, state })
                    if name == "crasher" && state == AgentState::Running =>
                {
                    break
                }
                Ok(_) => {}
                Err(e) => panic!("events: {e}"),
            }
        }
        agents
            .request_bytes("crasher", Bytes::from_static(b"x"), DEADLINE)
            .await
            .expect("restarted agent answers");
        samples.push(start.elapsed());
    }
    report(
        "restart    panic -> restarted agent answers (no backoff)",
        samples,
    );
}

/// Subscribes `n` patterns on `node`; the subscriptions last as long as what is returned.
async fn subscribe(node: &Node, n: usize) -> Vec<impl Sized> {
    let pubsub = node.pubsub();
    let mut held = Vec::with_capacity(n);
    for i in 0..n {
        held.push(
            pubsub
                .subscribe(&format!("bench.topic{i}.>"))
                .await
                .expect("subscribe"),
        );
    }
    if n > 0 {
        println!("interest   {n} patterns subscribed on the other node first");
    }
    held
}

/// Resident memory grown by spawning `n` idle agents (each with its task, mailbox, supervisor
/// machine and directory entry, replicated to the other node of this process too), divided by
/// `n`. RSS includes allocator slack, so this is an upper bound, not an exact size.
async fn memory_per_agent(node: &Node, n: usize) {
    let agents = node.agents();
    let before = host::memory_kib("VmRSS:");
    let start = Instant::now();
    let mut n = n;
    for i in 0..n {
        let spawned = agents
            .spawn(AgentSpec::new(format!("idle-{i}"), || Echo).capability("idle"))
            .await;
        if let Err(refused) = spawned {
            println!("spawn      refused after {i} idle agents: {refused}");
            n = i;
            break;
        }
    }
    let spawned = start.elapsed();
    let after = host::memory_kib("VmRSS:");
    let per_agent = (after.saturating_sub(before) as f64 * 1024.0) / n as f64;
    println!(
        "memory     {n} idle agents: RSS +{} KiB, about {per_agent:.0} B per agent (both nodes' share; upper bound)",
        after.saturating_sub(before)
    );
    println!(
        "spawn      {n} agents one after another: {:?} ({:.0} per second)",
        spawned,
        n as f64 / spawned.as_secs_f64()
    );
    println!(
        "directory  {n} idle agents spawned: {} in this node's directory",
        agents.with_capability("idle").len()
    );
}
