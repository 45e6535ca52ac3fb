//! `foundation transport-demo`: two endpoints on loopback exchange traffic on every channel, and a third
//! with the wrong secret is refused — the transport's whole contract in a few seconds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use foundation_transport::{
    Channel, ClusterName, ClusterSecret, ConnectError, Endpoint, Inbox, LocalIdentity, NodeId,
    SendMode, TransportConfig, TransportMetrics, Trust,
};
use prometheus_client::registry::Registry;

const WAIT: SendMode = SendMode::Wait(Duration::from_secs(2));

/// Runs the demo, printing each step.
pub async fn transport() -> Result<(), Box<dyn std::error::Error>> {
    let cluster = ClusterName::new("demo")?;
    let trust = Trust::Secret(ClusterSecret::new("demo secret: not for production")?);
    let mut registry = Registry::default();
    let metrics = Arc::new(TransportMetrics::register(&mut registry));
    let (a, _) = start(&cluster, &trust, metrics.clone()).await?;
    let (b, mut inbox) =
        start(&cluster, &trust, Arc::new(TransportMetrics::unregistered())).await?;
    println!("node a: {}", a.local());
    println!("node b: {}", b.local());
    let to_b = b.local();

    let started = Instant::now();
    let peer = a.connect(to_b.addr).await?;
    println!(
        "a dialled b: mutual TLS + hello in {:?}, b is {}",
        started.elapsed(),
        peer.id.short()
    );

    a.send_datagram(to_b, Bytes::from_static(b"ping"))?;
    report(
        "membership (datagram)",
        inbox.membership.recv().await.map(|m| m.payload),
    );
    for channel in Channel::STREAMED {
        a.send(
            to_b,
            channel,
            Bytes::from(format!("hello on {channel}")),
            WAIT,
        )
        .await?;
    }
    report(
        "coordination (stream)",
        inbox.coordination.recv().await.map(|m| m.payload),
    );
    report(
        "replication (stream)",
        inbox.replication.recv().await.map(|m| m.payload),
    );
    report(
        "events (stream)",
        inbox.events.recv().await.map(|m| m.payload),
    );

    request_and_bulk(&a, &mut inbox, to_b).await?;
    intruder(&cluster, &b).await?;
    println!("\nmetrics of node a (OpenMetrics):");
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry)?;
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.ends_with(" 0"))
    {
        println!("  {line}");
    }
    a.close().await;
    b.close().await;
    Ok(())
}

async fn start(
    cluster: &ClusterName,
    trust: &Trust,
    metrics: Arc<TransportMetrics>,
) -> Result<(Endpoint, Inbox), Box<dyn std::error::Error>> {
    let identity = LocalIdentity {
        id: NodeId::random(),
        cluster: cluster.clone(),
    };
    Ok(Endpoint::start(identity, trust, TransportConfig::default(), metrics).await?)
}

fn report(what: &str, payload: Option<Bytes>) {
    match payload {
        Some(bytes) => println!(
            "  {what:<24} b received {:?}",
            String::from_utf8_lossy(&bytes)
        ),
        None => println!("  {what:<24} nothing arrived"),
    }
}

async fn request_and_bulk(
    a: &Endpoint,
    inbox: &mut Inbox,
    to_b: foundation_transport::NodeAddr,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut requests = std::mem::replace(&mut inbox.requests, tokio::sync::mpsc::channel(1).1);
    let server = tokio::spawn(async move {
        if let Some(request) = requests.recv().await {
            let answer = format!("{} bytes received", request.payload.len());
            let _ = request.respond(answer.into()).await;
        }
    });
    let started = Instant::now();
    let response = a
        .request(
            to_b,
            Bytes::from_static(b"how big am I?"),
            Duration::from_secs(1),
        )
        .await?;
    println!(
        "  {:<24} b answered {:?} in {:?}",
        "rpc (stream per call)",
        String::from_utf8_lossy(&response),
        started.elapsed()
    );
    let _ = server.await;

    let data = Bytes::from(vec![42u8; 32 << 20]);
    let started = Instant::now();
    let (sent, received) = tokio::join!(a.send_bulk(to_b, data, Duration::from_secs(30)), async {
        match inbox.transfers.recv().await {
            Some(transfer) => transfer
                .read_to_end()
                .await
                .map(|all| all.len())
                .unwrap_or(0),
            None => 0,
        }
    });
    sent?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "  {:<24} b received {} MiB in {secs:.3} s ({:.0} MiB/s)",
        "bulk (stream, lowest)",
        received >> 20,
        (received >> 20) as f64 / secs
    );
    Ok(())
}

async fn intruder(cluster: &ClusterName, b: &Endpoint) -> Result<(), Box<dyn std::error::Error>> {
    let wrong = Trust::Secret(ClusterSecret::new("a different secret entirely")?);
    let (intruder, _) = start(cluster, &wrong, Arc::new(TransportMetrics::unregistered())).await?;
    match intruder.connect(b.local().addr).await {
        Err(ConnectError::Handshake(failure)) => {
            println!("\nnode with the wrong secret was refused: {failure}")
        }
        Err(other) => println!("\nnode with the wrong secret failed: {other}"),
        Ok(_) => println!("\nBUG: a node with the wrong secret got in"),
    }
    intruder.close().await;
    Ok(())
}
