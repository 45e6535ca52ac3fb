//! The services layer on real QUIC nodes on loopback: registry, RPC routing and failover,
//! deadlines, circuit breakers, rate limits, trace context and pub/sub delivery.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::eventually;
use foundation_engine::runtime::services::{
    typed, with_trace, Call, CallOptions, HandlerError, HealthCheck, PublishOptions, RpcConfig,
    RpcError, ServiceOptions, SlowPolicy, SubscribeOptions,
};
use foundation_engine::runtime::{Node, NodeSettings};
use foundation_engine::services::breaker::BreakerConfig;
use foundation_engine::services::rate_limit::RateLimit;
use foundation_engine::services::trace::TraceContext;
use foundation_engine::services::Health;

const SECRET: &str = "services test secret";
const SOON: Duration = Duration::from_secs(10);

fn settings(seeds: Vec<std::net::SocketAddr>) -> NodeSettings {
    common::settings("services-test", SECRET, seeds)
}

/// `n` nodes that all see each other alive.
async fn cluster(n: usize, rpc: RpcConfig) -> Vec<Node> {
    common::cluster(n, |seeds| NodeSettings {
        rpc: rpc.clone(),
        ..settings(seeds)
    })
    .await
}

async fn stop(nodes: &[Node]) {
    for node in nodes {
        node.abort().await;
    }
}

fn doubler() -> impl foundation_engine::runtime::services::Handler {
    typed(|n: u64| async move { Ok::<_, HandlerError>(n * 2) })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registered_service_is_found_and_called_from_every_node() {
    let nodes = cluster(3, RpcConfig::default()).await;
    let mut watch = nodes[2].services().watch("double");
    let options = ServiceOptions::default()
        .version("1.0.0")
        .tag("zone", "eu-1")
        .capability("math");
    nodes[0]
        .services()
        .register("double", doubler(), options)
        .await
        .unwrap();
    assert_eq!(
        nodes[0].services().lookup("double").len(),
        1,
        "seen locally at once"
    );
    let seen = tokio::time::timeout(SOON, watch.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].id.node, nodes[0].id());
    assert_eq!(seen[0].record.version, "1.0.0");
    for node in &nodes {
        eventually(SOON, "lookup everywhere", || {
            node.services().lookup("double").len() == 1
        })
        .await;
        assert_eq!(node.services().with_capability("math").len(), 1);
        assert_eq!(node.services().with_tag("zone", "eu-1").len(), 1);
        let answer: u64 = node
            .rpc()
            .call("double", &21u64, Duration::from_secs(2))
            .await
            .unwrap();
        assert_eq!(answer, 42);
    }
    let missing = nodes[1]
        .rpc()
        .call::<u64, u64>("triple", &1, Duration::from_millis(200))
        .await;
    assert!(
        matches!(missing, Err(RpcError::NoInstances { .. })),
        "{missing:?}"
    );
    stop(&nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_nodes_instances_vanish_and_calls_go_elsewhere() {
    let nodes = cluster(3, RpcConfig::default()).await;
    let (a, b, caller) = (&nodes[0], &nodes[1], &nodes[2]);
    a.services()
        .register("echo", echo(), ServiceOptions::default())
        .await
        .unwrap();
    b.services()
        .register("echo", echo(), ServiceOptions::default())
        .await
        .unwrap();
    eventually(SOON, "both instances visible", || {
        caller.services().lookup("echo").len() == 2
    })
    .await;
    a.abort().await;
    eventually(SOON, "the failed node's instance gone", || {
        let instances = caller.services().lookup("echo");
        instances.len() == 1 && instances[0].id.node == b.id()
    })
    .await;
    for _ in 0..5 {
        let reply = caller
            .rpc()
            .call_bytes(
                "echo",
                Bytes::from_static(b"hi"),
                Duration::from_secs(2),
                &CallOptions::default(),
            )
            .await
            .unwrap();
        assert_eq!(&reply[..], b"hi");
    }
    b.abort().await;
    caller.abort().await;
}

fn echo() -> impl foundation_engine::runtime::services::Handler {
    |call: Call| async move { Ok(call.body) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unhealthy_instances_get_no_calls_and_deregistered_ones_disappear() {
    let nodes = cluster(2, RpcConfig::default()).await;
    let registration = nodes[0]
        .services()
        .register("echo", echo(), ServiceOptions::default())
        .await
        .unwrap();
    let other = &nodes[1];
    eventually(SOON, "visible", || {
        other.services().healthy("echo").len() == 1
    })
    .await;
    registration.set_health(Health::Unhealthy).await.unwrap();
    eventually(SOON, "unhealthy seen", || {
        other.services().healthy("echo").is_empty()
    })
    .await;
    assert_eq!(other.services().lookup("echo").len(), 1, "still listed");
    let refused = other
        .rpc()
        .call_bytes(
            "echo",
            Bytes::new(),
            Duration::from_millis(300),
            &CallOptions::default(),
        )
        .await;
    assert!(
        matches!(refused, Err(RpcError::NoInstances { .. })),
        "{refused:?}"
    );
    registration.deregister().await.unwrap();
    eventually(SOON, "gone", || other.services().lookup("echo").is_empty()).await;
    stop(&nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_run_check_turns_an_instance_unhealthy_and_healthy_again_everywhere() {
    let nodes = cluster(2, RpcConfig::default()).await;
    let up = Arc::new(AtomicBool::new(true));
    let probe = up.clone();
    let check = HealthCheck::custom(move || {
        let up = probe.load(Ordering::SeqCst);
        async move { up }
    })
    .every(Duration::from_millis(20))
    .thresholds(2, 2);
    let _registration = nodes[0]
        .services()
        .register("checked", echo(), ServiceOptions::default().check(check))
        .await
        .unwrap();
    let other = &nodes[1];
    let healthy = |n: usize| other.services().healthy("checked").len() == n;
    eventually(SOON, "visible and healthy", || healthy(1)).await;
    up.store(false, Ordering::SeqCst);
    eventually(SOON, "the failing check is seen", || healthy(0)).await;
    up.store(true, Ordering::SeqCst);
    eventually(SOON, "healthy again", || healthy(1)).await;
    stop(&nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_handler_fails_the_call_at_its_deadline() {
    let nodes = cluster(2, RpcConfig::default()).await;
    let slow = |_call: Call| async move {
        tokio::time::sleep(Duration::from_secs(5)).await;
        Ok(Bytes::new())
    };
    nodes[0]
        .services()
        .register("slow", slow, ServiceOptions::default())
        .await
        .unwrap();
    eventually(SOON, "visible", || {
        nodes[1].services().lookup("slow").len() == 1
    })
    .await;
    let started = tokio::time::Instant::now();
    let result = nodes[1]
        .rpc()
        .call_bytes(
            "slow",
            Bytes::new(),
            Duration::from_millis(300),
            &CallOptions::default(),
        )
        .await;
    let took = started.elapsed();
    assert!(
        matches!(
            result,
            Err(RpcError::DeadlineExceeded { .. }) | Err(RpcError::Unavailable { .. })
        ),
        "{result:?}"
    );
    assert!(
        took < Duration::from_secs(2),
        "returned after {took:?}, not at the deadline"
    );
    stop(&nodes).await;
}

/// A caller that drops its call long before the deadline stops the handler on the other node:
/// the transport's cancel frame reaches the serving side, which drops the handler's future.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_the_caller_drops_stops_its_handler_on_the_other_node() {
    struct SetOnDrop(Arc<AtomicBool>);
    impl Drop for SetOnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let nodes = cluster(2, RpcConfig::default()).await;
    let (started, stopped) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let handler = {
        let (started, stopped) = (started.clone(), stopped.clone());
        move |_call: Call| {
            let (started, stopped) = (started.clone(), stopped.clone());
            async move {
                let _guard = SetOnDrop(stopped);
                started.store(true, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_secs(60)).await;
                Ok(Bytes::new())
            }
        }
    };
    nodes[0]
        .services()
        .register("long", handler, ServiceOptions::default())
        .await
        .unwrap();
    eventually(SOON, "visible", || {
        nodes[1].services().lookup("long").len() == 1
    })
    .await;
    let rpc = nodes[1].rpc();
    let call = tokio::spawn(async move {
        rpc.call_bytes(
            "long",
            Bytes::new(),
            Duration::from_secs(60),
            &CallOptions::default(),
        )
        .await
    });
    eventually(SOON, "handler started", || started.load(Ordering::SeqCst)).await;
    assert!(!stopped.load(Ordering::SeqCst));
    call.abort();
    // The deadline is a minute away: only the cancellation can stop the handler this soon.
    eventually(SOON, "handler stopped by the cancellation", || {
        stopped.load(Ordering::SeqCst)
    })
    .await;
    stop(&nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_instance_trips_its_breaker_which_recovers_when_it_heals() {
    let rpc = RpcConfig {
        breaker: BreakerConfig {
            consecutive_failures: Some(3),
            failure_rate: None,
            open_for: Duration::from_millis(500),
            ..BreakerConfig::default()
        },
        ..RpcConfig::default()
    };
    let nodes = cluster(2, rpc).await;
    let broken = Arc::new(AtomicBool::new(true));
    let handler = {
        let broken = broken.clone();
        move |call: Call| {
            let broken = broken.load(Ordering::SeqCst);
            async move {
                if broken {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
                Ok(call.body)
            }
        }
    };
    nodes[0]
        .services()
        .register("flaky", handler, ServiceOptions::default())
        .await
        .unwrap();
    let caller = &nodes[1];
    eventually(SOON, "visible", || {
        caller.services().lookup("flaky").len() == 1
    })
    .await;
    let options = CallOptions::default().idempotent();
    let rpc = caller.rpc();
    let call = || {
        rpc.call_bytes(
            "flaky",
            Bytes::from_static(b"x"),
            Duration::from_millis(150),
            &options,
        )
    };
    for _ in 0..3 {
        assert!(call().await.is_err());
    }
    let started = tokio::time::Instant::now();
    let open = call().await;
    assert!(
        matches!(open, Err(RpcError::CircuitOpen { .. })),
        "{open:?}"
    );
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "an open breaker fails fast"
    );
    broken.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        &call().await.unwrap()[..],
        b"x",
        "the half-open trial succeeds"
    );
    assert_eq!(&call().await.unwrap()[..], b"x", "and the breaker closed");
    stop(&nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_over_its_rate_limit_is_refused() {
    let rpc = RpcConfig {
        rate_limit: Some(RateLimit::per_second(1, 2).unwrap()),
        ..RpcConfig::default()
    };
    let nodes = cluster(2, rpc).await;
    nodes[0]
        .services()
        .register("echo", echo(), ServiceOptions::default())
        .await
        .unwrap();
    let caller = &nodes[1];
    eventually(SOON, "visible", || {
        caller.services().lookup("echo").len() == 1
    })
    .await;
    let (rpc, options) = (caller.rpc(), CallOptions::default());
    let call = || rpc.call_bytes("echo", Bytes::new(), Duration::from_secs(1), &options);
    assert!(call().await.is_ok());
    assert!(call().await.is_ok());
    let limited = call().await;
    assert!(
        matches!(&limited, Err(RpcError::Unavailable { last, .. }) if last.contains("rate limited")),
        "{limited:?}"
    );
    stop(&nodes).await;
}

/// A handler that answers how long it was given, in milliseconds.
fn time_left() -> impl foundation_engine::runtime::services::Handler {
    move |call: Call| {
        let left = call.deadline - tokio::time::Instant::now();
        let millis = u64::try_from(left.as_millis()).unwrap_or(u64::MAX);
        async move { Ok(Bytes::from(postcard::to_stdvec(&millis).unwrap())) }
    }
}

/// A peer names its call's deadline, but not past what the serving node allows: an hour asked
/// for runs two seconds (before the cap, the handler was given the whole hour).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peers_deadline_is_capped_by_the_serving_node() {
    let cap = Duration::from_secs(2);
    let rpc = RpcConfig {
        max_call_deadline: cap,
        ..RpcConfig::default()
    };
    let nodes = cluster(2, rpc).await;
    nodes[0]
        .services()
        .register("time-left", time_left(), ServiceOptions::default())
        .await
        .unwrap();
    eventually(SOON, "visible", || {
        nodes[1].services().lookup("time-left").len() == 1
    })
    .await;
    let (rpc, options) = (nodes[1].rpc(), CallOptions::default());
    let hour = Duration::from_secs(3600);
    let reply = rpc.call_bytes("time-left", Bytes::new(), hour, &options);
    let given: u64 = postcard::from_bytes(&reply.await.unwrap()).unwrap();
    assert!(
        given <= 2_000,
        "the handler was given {given} ms, over the cap"
    );
    let second = Duration::from_secs(1);
    let reply = rpc.call_bytes("time-left", Bytes::new(), second, &options);
    let given: u64 = postcard::from_bytes(&reply.await.unwrap()).unwrap();
    assert!(
        given <= 1_000,
        "a deadline under the cap is the caller's: {given} ms"
    );
    stop(&nodes).await;
}

/// `Duration::MAX` as a call's deadline ("no deadline") is answered, on the node serving the
/// instance and from another one (it overflowed the clock: a panic in the caller).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_without_a_practical_deadline_is_answered() {
    let nodes = cluster(2, RpcConfig::default()).await;
    nodes[0]
        .services()
        .register("double", doubler(), ServiceOptions::default())
        .await
        .unwrap();
    eventually(SOON, "visible", || {
        nodes[1].services().lookup("double").len() == 1
    })
    .await;
    for node in &nodes {
        let rpc = node.rpc();
        let call = rpc.call::<u64, u64>("double", &21, Duration::MAX);
        let answer = tokio::time::timeout(SOON, call).await;
        assert_eq!(answer.ok().map(Result::ok), Some(Some(42)));
    }
    stop(&nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trace_travels_with_the_call() {
    let nodes = cluster(2, RpcConfig::default()).await;
    let seen = Arc::new(std::sync::Mutex::new(None));
    let handler = {
        let seen = seen.clone();
        move |call: Call| {
            *seen.lock().unwrap() = Some(call.trace);
            async move { Ok(Bytes::new()) }
        }
    };
    nodes[0]
        .services()
        .register("traced", handler, ServiceOptions::default())
        .await
        .unwrap();
    eventually(SOON, "visible", || {
        nodes[1].services().lookup("traced").len() == 1
    })
    .await;
    let root = TraceContext::new_root(&mut rand10::rng(), true);
    let rpc = nodes[1].rpc();
    with_trace(root, async {
        rpc.call_bytes(
            "traced",
            Bytes::new(),
            Duration::from_secs(2),
            &CallOptions::default(),
        )
        .await
        .unwrap()
    })
    .await;
    let seen = seen.lock().unwrap().expect("handler ran");
    assert_eq!(seen.trace_id, root.trace_id, "same trace");
    assert_ne!(seen.span_id, root.span_id, "a child span");
    stop(&nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_messages_reach_exactly_the_matching_subscribers() {
    let nodes = cluster(3, RpcConfig::default()).await;
    let mut eu = nodes[0].pubsub().subscribe("orders.eu.*").await.unwrap();
    let mut all = nodes[1].pubsub().subscribe("orders.>").await.unwrap();
    let mut other = nodes[1].pubsub().subscribe("invoices.>").await.unwrap();
    let publisher = &nodes[2];
    eventually(SOON, "interest replicated", || {
        let directory = publisher.services().directory();
        directory.interest().len() == 3
    })
    .await;
    for i in 0..10u8 {
        let topic = if i % 2 == 0 {
            "orders.eu.created"
        } else {
            "orders.us.created"
        };
        publisher.pubsub().publish(topic, vec![i]).await.unwrap();
    }
    let mut got_all = Vec::new();
    for _ in 0..10 {
        got_all.push(
            tokio::time::timeout(SOON, all.recv())
                .await
                .unwrap()
                .unwrap()
                .payload[0],
        );
    }
    assert_eq!(
        got_all,
        (0..10).collect::<Vec<u8>>(),
        "every message, in publish order"
    );
    let mut got_eu = Vec::new();
    for _ in 0..5 {
        got_eu.push(
            tokio::time::timeout(SOON, eu.recv())
                .await
                .unwrap()
                .unwrap()
                .payload[0],
        );
    }
    assert_eq!(got_eu, vec![0, 2, 4, 6, 8]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(eu.try_recv().is_none(), "no extra deliveries");
    assert!(all.try_recv().is_none(), "no duplicates");
    assert!(
        other.try_recv().is_none(),
        "no deliveries to a pattern that does not match"
    );
    stop(&nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reliable_messages_are_delivered_once_each() {
    let nodes = cluster(2, RpcConfig::default()).await;
    let mut sub = nodes[0].pubsub().subscribe("jobs.>").await.unwrap();
    eventually(SOON, "interest replicated", || {
        nodes[1].services().directory().interest().len() == 1
    })
    .await;
    let reliable = PublishOptions { reliable: true };
    for i in 0..100u8 {
        nodes[1]
            .pubsub()
            .publish_with("jobs.new", vec![i], reliable)
            .await
            .unwrap();
    }
    for i in 0..100u8 {
        let message = tokio::time::timeout(SOON, sub.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(message.payload[0], i);
        assert_eq!(message.publisher, nodes[1].id());
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        sub.try_recv().is_none(),
        "no redelivered duplicates once acknowledged"
    );
    stop(&nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_subscribers_lose_the_oldest_or_are_disconnected() {
    let nodes = cluster(1, RpcConfig::default()).await;
    let pubsub = nodes[0].pubsub();
    let mut dropping = pubsub
        .subscribe_with(
            "t",
            SubscribeOptions {
                capacity: 2,
                policy: SlowPolicy::DropOldest,
            },
        )
        .await
        .unwrap();
    let mut cut = pubsub
        .subscribe_with(
            "t",
            SubscribeOptions {
                capacity: 2,
                policy: SlowPolicy::Disconnect,
            },
        )
        .await
        .unwrap();
    for i in 0..5u8 {
        pubsub.publish("t", vec![i]).await.unwrap();
    }
    assert_eq!(dropping.recv().await.unwrap().payload[0], 3);
    assert_eq!(dropping.recv().await.unwrap().payload[0], 4);
    assert_eq!(cut.recv().await.unwrap().payload[0], 0);
    assert_eq!(cut.recv().await.unwrap().payload[0], 1);
    assert!(
        cut.recv().await.is_none(),
        "disconnected when it fell behind"
    );
    stop(&nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_arrives_complete_and_in_order_across_batches() {
    let nodes = cluster(2, RpcConfig::default()).await;
    let n = 20_000u32;
    let mut sub = nodes[0]
        .pubsub()
        .subscribe_with(
            "burst.>",
            SubscribeOptions {
                capacity: n as usize,
                policy: SlowPolicy::Disconnect,
            },
        )
        .await
        .unwrap();
    eventually(SOON, "interest replicated", || {
        nodes[1].services().directory().interest().len() == 1
    })
    .await;
    let publisher = nodes[1].pubsub();
    // Small messages fill many batches; a large one in the middle travels in a frame of its
    // own and must not overtake or fall behind its neighbours.
    for i in 0..n {
        let mut payload = i.to_le_bytes().to_vec();
        if i == n / 2 {
            payload.resize(100 << 10, 0xee);
        }
        publisher.publish("burst.data", payload).await.unwrap();
    }
    let mut got = Vec::new();
    let mut buffer = Vec::new();
    while got.len() < n as usize {
        let more = tokio::time::timeout(SOON, sub.recv_many(&mut buffer, 4096))
            .await
            .expect("messages keep coming");
        assert!(more > 0, "the subscription stayed open");
        for message in buffer.drain(..) {
            assert_eq!(&*message.topic, "burst.data");
            assert_eq!(message.publisher, nodes[1].id());
            got.push(u32::from_le_bytes(message.payload[..4].try_into().unwrap()));
            if got.len() == n as usize / 2 + 1 {
                assert_eq!(message.payload.len(), 100 << 10);
            }
        }
    }
    assert_eq!(
        got,
        (0..n).collect::<Vec<_>>(),
        "every message once, in order"
    );
    stop(&nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_reliable_messages_arrive_once_in_order() {
    let nodes = cluster(2, RpcConfig::default()).await;
    let n = 5_000u32;
    let mut sub = nodes[0]
        .pubsub()
        .subscribe_with(
            "jobs.>",
            SubscribeOptions {
                capacity: n as usize,
                policy: SlowPolicy::Disconnect,
            },
        )
        .await
        .unwrap();
    eventually(SOON, "interest replicated", || {
        nodes[1].services().directory().interest().len() == 1
    })
    .await;
    let reliable = PublishOptions { reliable: true };
    for i in 0..n {
        let topic = if i % 2 == 0 { "jobs.even" } else { "jobs.odd" };
        nodes[1]
            .pubsub()
            .publish_with(topic, i.to_le_bytes().to_vec(), reliable)
            .await
            .unwrap();
    }
    for i in 0..n {
        let message = tokio::time::timeout(SOON, sub.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            u32::from_le_bytes(message.payload[..].try_into().unwrap()),
            i
        );
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(sub.try_recv().is_none(), "no redelivered duplicates");
    stop(&nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_follow_subscriptions_made_and_dropped_after_publishing_began() {
    let nodes = cluster(2, RpcConfig::default()).await;
    let publisher = nodes[1].pubsub();
    // Published with nobody subscribed: the topic's route is now known (and empty).
    publisher.publish("late.topic", vec![0]).await.unwrap();

    // A subscriber on the publishing node gets what is published after it subscribed.
    let mut local = publisher.subscribe("late.topic").await.unwrap();
    publisher.publish("late.topic", vec![1]).await.unwrap();
    assert_eq!(local.recv().await.unwrap().payload[0], 1);

    // So does one on another node, once its interest has reached the publisher.
    let mut remote = nodes[0].pubsub().subscribe("late.*").await.unwrap();
    eventually(SOON, "interest replicated", || {
        nodes[1].services().directory().interest().len() == 2
    })
    .await;
    publisher.publish("late.topic", vec![2]).await.unwrap();
    let got = tokio::time::timeout(SOON, remote.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.payload[0], 2);
    assert_eq!(local.recv().await.unwrap().payload[0], 2);

    // A dropped local subscription gets nothing more; a new one on the same topic does.
    drop(local);
    let mut again = publisher.subscribe("late.topic").await.unwrap();
    publisher.publish("late.topic", vec![3]).await.unwrap();
    assert_eq!(again.recv().await.unwrap().payload[0], 3);
    let got = tokio::time::timeout(SOON, remote.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.payload[0], 3);

    // A remote subscription dropped: its interest leaves the directory and the publisher
    // stops sending there.
    drop(remote);
    eventually(SOON, "interest withdrawn", || {
        nodes[1].services().directory().interest().len() == 1
    })
    .await;
    publisher.publish("late.topic", vec![4]).await.unwrap();
    assert_eq!(again.recv().await.unwrap().payload[0], 4);
    stop(&nodes).await;
}

/// A membership event goes out once the services directory follows it: a subscriber that
/// looks a service up when told a member failed no longer finds that member's instance (it
/// once could, the event having gone out before the directory was republished). Members
/// crash (one that leaves withdraws its instances before it goes); the subscriber is a thread
/// of its own, woken at once, as an application's may be.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_members_instances_are_gone_when_its_event_arrives() {
    use foundation_engine::membership::MembershipEvent;
    const ROUNDS: usize = 3;
    const CRASHING: usize = 4;
    let mut stale = Vec::new();
    for _ in 0..ROUNDS {
        let nodes = cluster(CRASHING + 1, RpcConfig::default()).await;
        for node in &nodes[1..] {
            let options = ServiceOptions::default();
            node.services()
                .register("double", doubler(), options)
                .await
                .unwrap();
        }
        eventually(SOON, "node 0 sees every instance", || {
            nodes[0].services().lookup("double").len() == CRASHING
        })
        .await;
        let mut events = nodes[0].membership_events();
        let looker = nodes[0].clone();
        let checker = std::thread::spawn(move || {
            let mut shown_failed = Vec::new();
            for _ in 0..CRASHING {
                let failed = loop {
                    match events.blocking_recv().expect("no event lost") {
                        MembershipEvent::Failed(view) => break view.id,
                        _ => continue,
                    }
                };
                let instances = looker.services().lookup("double");
                shown_failed.extend(
                    instances
                        .iter()
                        .filter(|i| i.id.node == failed)
                        .map(|_| failed),
                );
            }
            shown_failed
        });
        stop(&nodes[1..]).await;
        let checked = tokio::task::spawn_blocking(move || checker.join());
        let shown_failed = tokio::time::timeout(SOON, checked)
            .await
            .expect("told within SOON")
            .expect("joins")
            .expect("checker ran");
        stale.extend(shown_failed);
        nodes[0].abort().await;
    }
    assert!(
        stale.is_empty(),
        "told failed before the directory showed it: {stale:?}"
    );
}

/// Panics on "boom" as it is called (before making its future), on "bang" when first polled,
/// and echoes anything else.
fn fragile() -> impl foundation_engine::runtime::services::Handler {
    |call: Call| {
        assert_ne!(&call.body[..], b"boom", "a handler's bug");
        async move {
            assert_ne!(&call.body[..], b"bang", "a handler's bug");
            Ok(call.body)
        }
    }
}

/// A handler that panics fails its own call with a clear error and nothing else: before, the
/// panic unwound through the transport's task serving the stream, so the calls read with it
/// were never answered, and a local call's panic reached the caller.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_panics_fails_its_own_call_only() {
    let nodes = cluster(2, RpcConfig::default()).await;
    nodes[0]
        .services()
        .register("fragile", fragile(), ServiceOptions::default())
        .await
        .unwrap();
    eventually(SOON, "visible", || {
        nodes[1].services().lookup("fragile").len() == 1
    })
    .await;
    let once = CallOptions {
        max_attempts: 1,
        ..CallOptions::default()
    };
    for caller in [&nodes[1], &nodes[0]] {
        let rpc = caller.rpc();
        let call = |body: &'static str| {
            rpc.call_bytes(
                "fragile",
                Bytes::from_static(body.as_bytes()),
                Duration::from_secs(3),
                &once,
            )
        };
        let (a, boom, b, bang, c) =
            tokio::join!(call("a"), call("boom"), call("b"), call("bang"), call("c"));
        for (answer, body) in [(a, "a"), (b, "b"), (c, "c")] {
            assert_eq!(answer.as_deref().ok(), Some(body.as_bytes()), "{answer:?}");
        }
        for failed in [boom, bang] {
            assert!(
                matches!(&failed, Err(RpcError::Handler { message, .. }) if message.contains("panicked")),
                "{failed:?}"
            );
        }
    }
    stop(&nodes).await;
}
