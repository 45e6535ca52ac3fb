//! What the examples that run several nodes in one process share: starting a development
//! node that finds its peers only in the example's own discovery directory (nothing leaves
//! 127.0.0.1), a few such nodes that see each other, and waiting for a condition with a printed
//! duration.

use std::path::Path;
use std::time::{Duration, Instant};

use foundation::engine::config::DiscoveryChoice;
use foundation::engine::membership::MemberState;
use foundation::{Foundation, Node};

pub type Error = Box<dyn std::error::Error>;

/// Long enough for anything here on a loaded machine; each step prints how long it took.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// A development node of `cluster` named `name` that finds its peers in `dir` only and serves
/// the HTTP API on a free loopback port (printed, so the `foundation` commands work against it).
pub async fn start(dir: &Path, cluster: &str, name: &str) -> Result<Node, Error> {
    let node = Foundation::builder()
        .cluster(cluster)
        .name(name)
        .discovery([DiscoveryChoice::Local {
            dir: Some(dir.to_path_buf()),
        }])
        .http(Some("127.0.0.1:0".parse()?))
        .start()
        .await?;
    let http = node.http_addr().map_or("off".into(), |a| a.to_string());
    println!(
        "{name}: node {} quic {} http {http}",
        node.id().short(),
        node.addr()
    );
    Ok(node)
}

/// Development nodes of `cluster`, one per name, started in `dir`; returns once each sees all
/// the others alive, in its members and in the lives its variables name (published a moment
/// after the members: a variable declared in between would name fewer acceptors).
#[allow(dead_code)] // not every example starts its nodes this way
pub async fn cluster(dir: &Path, cluster: &str, names: &[&str]) -> Result<Vec<Node>, Error> {
    let mut nodes = Vec::new();
    for name in names {
        nodes.push(start(dir, cluster, name).await?);
    }
    let peers = names.len() - 1;
    wait_until("the nodes see each other", || {
        nodes.iter().all(|n| {
            n.members()
                .iter()
                .filter(|m| m.state == MemberState::Alive)
                .count()
                == peers
                && n.vars().alive_lives().len() == names.len()
        })
    })
    .await?;
    Ok(nodes)
}

/// Waits until `condition` holds and prints how long it took; an error after [`PATIENCE`].
pub async fn wait_until(what: &str, condition: impl Fn() -> bool) -> Result<(), Error> {
    let started = Instant::now();
    while !condition() {
        if started.elapsed() > PATIENCE {
            return Err(format!("gave up waiting until {what}").into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("{what} ({} ms)", started.elapsed().as_millis());
    Ok(())
}
