//! Pub/sub fan-out (issue 16, item 2): one publisher, 8 subscribers on 4 nodes, against NATS
//! with 8 subscriber connections in the same run. Included by path from `services.rs`.
//!
//! Foundation runs 5 nodes: the publisher alone on the first, two subscribers on each of the
//! other four, so every delivery crosses the network (the publisher's node holds none). A
//! publish goes once to each of the 4 nodes, which hand it to their 2 local queues. NATS gets
//! 8 subscriber connections and one publisher connection to one server. Both report deliveries
//! per second summed over the 8 subscribers (from the first publish to the last delivery
//! anywhere), messages lost (8 × published − delivered), and CPU per delivered message.
//!
//! Foundation runs twice: the four subscribing nodes and the tasks counting their deliveries on
//! two threads of their own (as nats-server has a process of its own next to the benchmark's
//! runtime), then all five nodes on the benchmark's runtime. Under other work on the machine
//! the rate is the CPU share a side's threads get over its CPU per message, so each burst also
//! prints its threads' running and runnable-waiting shares.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::task::JoinHandle;

use crate::threads::Threads;
use crate::wait::wait_until;
use crate::{
    count_nats_messages, count_subscription, cpu_spent, cpu_time, load_average, nats_connect,
    nats_cpu, nats_publish_burst, nats_subscribe, nodes, publish_burst, subscribe, thousands,
    verdict, warm_up, Home, NatsServer, Placement, Plan, SECRET, SMALL,
};
use foundation_engine::runtime::Node;

/// Subscribers in all.
const SUBSCRIBERS: usize = 8;
/// Nodes the subscribers are spread over (the publisher's node is not one of them).
const SUBSCRIBER_NODES: usize = 4;

/// What one fan-out burst delivered, summed over the subscribers.
struct FanOut {
    published: u64,
    delivered: u64,
    cpu: Option<Duration>,
    /// From the first publish to the last delivery to any subscriber.
    elapsed: Duration,
    /// The measured processes' threads when the burst started and when it ended.
    threads: (Threads, Threads),
}

impl FanOut {
    fn rate(&self) -> f64 {
        self.delivered as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn owed(&self) -> u64 {
        self.published * SUBSCRIBERS as u64
    }

    fn lost(&self) -> u64 {
        self.owed().saturating_sub(self.delivered)
    }

    /// CPU time per delivered message, if the CPU time is known.
    fn cpu_per_message(&self) -> Option<f64> {
        let cpu = self.cpu?;
        Some(cpu.as_secs_f64() / self.delivered.max(1) as f64)
    }

    fn print(&self, who: &str) {
        println!(
            "{who:<22} {:>12} msg/s delivered in all   {:>10} published  {:>10} lost of {} ({:.2}%)",
            thousands(self.rate()),
            thousands(self.published as f64),
            thousands(self.lost() as f64),
            thousands(self.owed() as f64),
            100.0 * self.lost() as f64 / self.owed().max(1) as f64,
        );
        if let (Some(cpu), Some(each)) = (self.cpu, self.cpu_per_message()) {
            println!(
                "{:<22} CPU {:.2} s in all = {:.2} µs per delivered message",
                "",
                cpu.as_secs_f64(),
                each * 1e6
            );
        }
        let (before, after) = &self.threads;
        after.print_since(before);
    }
}

/// Runs the fan-out for Foundation in both placements and, when `nats` is given, for NATS;
/// prints each and the ratios.
pub async fn fanout(plan: &Plan, nats: Option<&NatsServer>) {
    println!();
    println!(
        "== pub/sub fan-out: {SMALL} B messages, one publisher, {SUBSCRIBERS} subscribers on {SUBSCRIBER_NODES} other nodes (2 each, none on the publisher's node), burst of {}; load average {} ==",
        thousands(plan.burst as f64),
        load_average()
    );
    println!(
        "(Foundation: the {SUBSCRIBER_NODES} subscribing nodes on two threads of their own, as nats-server has its own; \
         \"1 runtime\": all five nodes share the benchmark's two workers)"
    );
    let mut ours = Vec::new();
    for placement in [Placement::OwnThreads, Placement::Shared] {
        let burst = foundation_fanout(plan, placement).await;
        burst.print(placement.label());
        ours.push((placement, burst));
    }
    let Some(server) = nats else { return };
    let nats = match nats_fanout(server, plan).await {
        Ok(nats) => nats,
        Err(e) => return println!("NATS fan-out: skipped: {e}"),
    };
    nats.print("NATS (8 connections)");
    for (placement, foundation) in &ours {
        compare(placement.label(), foundation, &nats);
    }
}

/// Prints `foundation`'s rate and CPU per message against `nats`'s.
fn compare(label: &str, foundation: &FanOut, nats: &FanOut) {
    let ratio = foundation.rate() / nats.rate().max(1e-9);
    let cpu_ratio = foundation
        .cpu_per_message()
        .zip(nats.cpu_per_message())
        .map_or("n/a".to_owned(), |(f, n)| {
            format!("{:.2}×", f / n.max(1e-12))
        });
    println!(
        "{label}/NATS fan-out delivered rate: {ratio:.2}×, CPU per delivered message {cpu_ratio}  (target ≥ 1× with zero loss: {}); load average {}",
        verdict(ratio >= 1.0 && foundation.lost() == 0),
        load_average()
    );
}

/// `-- fanout` without `pubsub`: the fan-out alone, with a NATS server of its own.
pub async fn fanout_alone(plan: &Plan) {
    let server = match crate::skip_peers() {
        true => None,
        false => NatsServer::start()
            .await
            .map_err(|e| println!("NATS: skipped: {e}"))
            .ok(),
    };
    fanout(plan, server.as_ref()).await;
}

/// The publisher's node on the benchmark's runtime, the subscribing nodes, their subscriptions
/// and the tasks counting deliveries placed as `placement` says.
async fn foundation_fanout(plan: &Plan, placement: Placement) -> FanOut {
    let home = Home::new(placement, "subscribers");
    let publisher = Node::start(nodes::settings("services-bench", SECRET, vec![]))
        .await
        .expect("publishing node starts");
    let seeds = vec![publisher.addr()];
    let start_subscribers = async move {
        let mut nodes = Vec::with_capacity(SUBSCRIBER_NODES);
        for _ in 0..SUBSCRIBER_NODES {
            let settings = nodes::settings("services-bench", SECRET, seeds.clone());
            nodes.push(
                Node::start(settings)
                    .await
                    .expect("subscribing node starts"),
            );
        }
        let mut subscriptions = Vec::with_capacity(SUBSCRIBERS);
        for i in 0..SUBSCRIBERS {
            subscriptions.push(subscribe(&nodes[i % SUBSCRIBER_NODES]).await);
        }
        (nodes, subscriptions)
    };
    let (subscribers, mut subscriptions) = home.run(start_subscribers).await;
    let everyone: Vec<Node> = std::iter::once(publisher.clone())
        .chain(subscribers.iter().cloned())
        .collect();
    nodes::all_alive(&everyone).await;
    let every_node_interested = || {
        let directory = publisher.services().directory();
        let nodes: BTreeSet<_> = directory.interest().iter().map(|i| i.node).collect();
        nodes.len() == SUBSCRIBER_NODES
    };
    assert!(
        wait_until(Duration::from_secs(10), every_node_interested).await,
        "the interest of every subscriber node did not reach the publisher"
    );
    let payload = Bytes::from(vec![0x5a; SMALL]);
    let pubsub = publisher.pubsub();
    warm_up(&pubsub, &payload, &mut subscriptions).await;

    let target = Arc::new(AtomicU64::new(u64::MAX));
    let counters: Vec<_> = subscriptions
        .into_iter()
        .map(|s| count_subscription(&home.handle(), s, target.clone()))
        .collect();
    let (cpu_before, threads_before) = (cpu_time("self"), Threads::read(&["self"]));
    let start = Instant::now();
    let published = publish_burst(&pubsub, &payload, plan, start).await;
    target.store(published, Ordering::Release);
    let (delivered, last) = sum_counts(counters).await;
    let cpu = cpu_spent(cpu_before, cpu_time("self"));
    let threads = (threads_before, Threads::read(&["self"]));
    publisher.abort().await;
    home.stop_all(subscribers).await;
    FanOut {
        published,
        delivered,
        cpu,
        elapsed: last.unwrap_or(start).saturating_duration_since(start),
        threads,
    }
}

async fn nats_fanout(server: &NatsServer, plan: &Plan) -> Result<FanOut, String> {
    let io = |e: std::io::Error| e.to_string();
    let target = Arc::new(AtomicU64::new(u64::MAX));
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut counters = Vec::with_capacity(SUBSCRIBERS);
    for _ in 0..SUBSCRIBERS {
        let (sub, parser) = nats_subscribe(server.addr).await.map_err(io)?;
        counters.push(count_nats_messages(
            sub,
            parser,
            target.clone(),
            errors.clone(),
        ));
    }
    let mut publisher = nats_connect(server.addr).await.map_err(io)?;
    let server_pid = server.child.id().to_string();
    let measured = ["self", server_pid.as_str()];
    let (cpu_before, threads_before) = (nats_cpu(&server_pid), Threads::read(&measured));
    let start = Instant::now();
    let published = nats_publish_burst(&mut publisher, plan, start)
        .await
        .map_err(io)?;
    target.store(published, Ordering::Release);
    let (delivered, last) = sum_counts(counters).await;
    let cpu = cpu_spent(cpu_before, nats_cpu(&server_pid));
    let threads = (threads_before, Threads::read(&measured));
    for error in errors.lock().unwrap().iter() {
        println!("  nats-server told a subscriber: {error}");
    }
    Ok(FanOut {
        published,
        delivered,
        cpu,
        elapsed: last.unwrap_or(start).saturating_duration_since(start),
        threads,
    })
}

/// Deliveries summed over the counting tasks, and the last delivery's time (`None` if none).
async fn sum_counts(counters: Vec<JoinHandle<(u64, Instant)>>) -> (u64, Option<Instant>) {
    let mut delivered = 0;
    let mut last: Option<Instant> = None;
    for counter in counters {
        let (n, at) = counter.await.expect("counting task");
        delivered += n;
        if n > 0 {
            last = Some(last.map_or(at, |l| l.max(at)));
        }
    }
    (delivered, last)
}
