//! Embedding a Foundation node in a service: a registered service, an RPC call, a subscription
//! and a config watch, between two nodes of one cluster.
//!
//! In your own crate's `Cargo.toml` (Foundation is not published yet; point at a checkout):
//!
//! ```toml
//! [dependencies]
//! foundation = { path = "../foundation" }
//! tokio = { version = "1", features = ["macros", "rt-multi-thread"] }
//! ```
//!
//! A real service starts one node per process with `Foundation::builder().start().await?`
//! (zero config on a laptop; `FOUNDATION_*` or a TOML file in production). To be runnable alone,
//! this example starts two nodes in one process, which find each other through a local
//! discovery directory of their own (nothing leaves 127.0.0.1). Each serves the HTTP API on a
//! free loopback port, printed at start, so the `foundation` commands work against it while it
//! runs (`foundation members --node ADDR`, `foundation monitor --node ADDR`).
//!
//! Run: `cargo run --example embedded_service`

mod common;

use common::{start, wait_until, Error, PATIENCE};

use std::path::Path;
use std::time::{Duration, Instant};

use foundation::engine::runtime::services::{typed, HandlerError, ServiceOptions};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let dir = std::env::temp_dir().join(format!("foundation-example-{}", std::process::id()));
    let result = run(&dir).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn run(dir: &Path) -> Result<(), Error> {
    let shop = start(dir, "example", "shop").await?;
    let billing = start(dir, "example", "billing").await?;
    wait_until("the two nodes see each other", || {
        shop.members().iter().any(|m| m.id == billing.id())
            && billing.members().iter().any(|m| m.id == shop.id())
    })
    .await?;

    // A service: registered on one node, callable from every node by name.
    let double = typed(|cents: u64| async move { Ok::<_, HandlerError>(cents * 2) });
    let options = ServiceOptions::default()
        .version("1.4.0")
        .tag("zone", "eu-1");
    billing
        .services()
        .register("billing", double, options)
        .await?;
    wait_until("the shop sees the billing service", || {
        !shop.services().healthy("billing").is_empty()
    })
    .await?;
    let doubled: u64 = shop
        .rpc()
        .call("billing", &21u64, Duration::from_millis(500))
        .await?;
    println!("rpc: billing doubled 21 to {doubled}");

    // Pub/sub: the subscription's interest reaches the publisher's node in one replication
    // push; until then a publish finds no subscriber (at most once), so publish until it lands.
    let mut created = billing.pubsub().subscribe("orders.*.created").await?;
    let started = Instant::now();
    let message = loop {
        shop.pubsub()
            .publish("orders.eu.created", b"order 17".to_vec())
            .await?;
        let wait = tokio::time::timeout(Duration::from_millis(200), created.recv());
        if let Ok(Some(message)) = wait.await {
            break message;
        }
        if started.elapsed() > PATIENCE {
            return Err("the published order never arrived".into());
        }
    };
    let text = String::from_utf8_lossy(&message.payload);
    println!("pub/sub: {} received {text:?}", message.topic);

    // Config: a cluster-wide key set on one node, watched on another.
    let mut changes = billing.config().watch("checkout.");
    shop.config().set("checkout.enabled", true).await?;
    let change = tokio::time::timeout(PATIENCE, changes.next())
        .await?
        .ok_or("the node stopped")?;
    println!("config: {} is now {:?}", change.key, change.new);
    let enabled: Option<bool> = billing.config().get("checkout.enabled")?;
    println!("config: billing reads checkout.enabled = {enabled:?}");

    // Leaving gracefully: the other node records "left", not "failed".
    billing.leave().await;
    shop.leave().await;
    Ok(())
}
