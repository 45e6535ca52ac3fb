//! The services part of `foundation demo`: a service registered on three nodes and called
//! from another, a publish reaching a subscriber on another node, and a cluster-wide setting.

use std::time::{Duration, Instant};

use foundation_engine::runtime::services::{typed, CallOptions, HandlerError, ServiceOptions};
use foundation_engine::runtime::Node;

use super::cluster::{wait_until, Error};

/// The service the demo registers.
pub const GREETER: &str = "greeter";

/// Registers `greeter` on each of `hosts`, answering with the host's name.
pub async fn register_greeters(hosts: &[Node], names: &[String]) -> Result<(), Error> {
    for (node, name) in hosts.iter().zip(names) {
        let me = name.clone();
        let handler = typed(move |who: String| {
            let me = me.clone();
            async move { Ok::<_, HandlerError>(format!("hello {who}, from {me}")) }
        });
        let options = ServiceOptions::default()
            .version("1.0.0")
            .tag("demo", "yes");
        node.services().register(GREETER, handler, options).await?;
    }
    Ok(())
}

/// Waits until `caller` sees `count` greeters, then calls the service a few times.
pub async fn call_greeters(caller: &Node, count: usize) -> Result<(), Error> {
    let since = Instant::now();
    let what = format!("{count} instance(s) of \"{GREETER}\" visible from the caller");
    wait_until(&what, since, || {
        caller.services().lookup(GREETER).len() == count
    })
    .await?;
    let options = CallOptions::default().idempotent();
    for _ in 0..count.max(1) {
        let started = Instant::now();
        let answer: String = caller
            .rpc()
            .call_with(
                GREETER,
                &"demo".to_owned(),
                Duration::from_secs(2),
                &options,
            )
            .await?;
        println!(
            "  rpc: {answer:?} in {:.2} ms",
            started.elapsed().as_secs_f64() * 1e3
        );
    }
    Ok(())
}

/// Subscribes on `subscriber`, publishes on `publisher`, and prints what arrives.
pub async fn publish_and_receive(publisher: &Node, subscriber: &Node) -> Result<(), Error> {
    let mut orders = subscriber.pubsub().subscribe("orders.>").await?;
    let since = Instant::now();
    wait_until("the subscription is known to the publisher", since, || {
        !publisher.services().directory().interest().is_empty()
    })
    .await?;
    for topic in ["orders.eu.created", "orders.us.created"] {
        publisher
            .pubsub()
            .publish(topic, topic.as_bytes().to_vec())
            .await?;
        let message = tokio::time::timeout(Duration::from_secs(5), orders.recv())
            .await?
            .ok_or("subscription closed")?;
        println!("  pubsub: {} received on another node", message.topic);
    }
    Ok(())
}

/// Sets a config key on `writer` and waits until `reader` sees it.
pub async fn share_config(writer: &Node, reader: &Node) -> Result<(), Error> {
    writer.config().set("checkout.enabled", true).await?;
    let since = Instant::now();
    wait_until(
        "a config change set on one node is read on another",
        since,
        || {
            reader
                .config()
                .get::<bool>("checkout.enabled")
                .ok()
                .flatten()
                == Some(true)
        },
    )
    .await
}
