//! Shared test harness: endpoints on 127.0.0.1 with short timers.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use foundation_transport::{
    ClusterName, ClusterSecret, Endpoint, Inbox, LocalIdentity, Message, NodeId, PeerEvent,
    TransportConfig, TransportMetrics, Trust,
};
use tokio::sync::mpsc;

pub mod flood;
pub mod raw;

pub const SECRET: &str = "test secret of sufficient length";

pub fn secret(text: &str) -> Trust {
    Trust::Secret(ClusterSecret::new(text).expect("secret long enough"))
}

pub fn fast_config() -> TransportConfig {
    TransportConfig {
        keep_alive: Duration::from_millis(200),
        idle_timeout: Duration::from_millis(1500),
        handshake_timeout: Duration::from_secs(2),
        reconnect_min: Duration::from_millis(20),
        reconnect_max: Duration::from_millis(200),
        ..TransportConfig::default()
    }
}

pub struct Node {
    pub endpoint: Endpoint,
    pub inbox: Inbox,
}

pub async fn node_with(cluster: &str, trust: &Trust, config: TransportConfig) -> Node {
    let identity = LocalIdentity {
        id: NodeId::random(),
        cluster: ClusterName::new(cluster).unwrap(),
    };
    let metrics = Arc::new(TransportMetrics::unregistered());
    let (endpoint, inbox) = Endpoint::start(identity, trust, config, metrics)
        .await
        .expect("endpoint starts");
    Node { endpoint, inbox }
}

pub async fn node(cluster: &str) -> Node {
    node_with(cluster, &secret(SECRET), fast_config()).await
}

/// The next item from `rx`, failing the test after `limit`.
pub async fn within<T>(limit: Duration, rx: &mut mpsc::Receiver<T>) -> T {
    tokio::time::timeout(limit, rx.recv())
        .await
        .expect("timed out waiting")
        .expect("queue closed")
}

pub async fn next_message(rx: &mut mpsc::Receiver<Message>) -> Message {
    within(Duration::from_secs(5), rx).await
}

pub async fn next_peer_event(inbox: &mut Inbox) -> PeerEvent {
    within(Duration::from_secs(5), &mut inbox.peers).await
}

/// Polls `condition` every 10 ms until it holds, failing after `limit`.
pub async fn eventually(limit: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let start = tokio::time::Instant::now();
    while !condition() {
        assert!(start.elapsed() < limit, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A UDP relay between one client and `target` that can be cut: a peer behind it that is cut
/// off is dead as far as QUIC can tell (no close frame ever arrives), like a killed process.
/// It can also lose every n-th datagram from the client.
pub struct Relay {
    pub addr: std::net::SocketAddr,
    faults: Arc<RelayFaults>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct RelayFaults {
    cut: std::sync::atomic::AtomicBool,
    /// Lose every n-th datagram from the client (0: none).
    lose_every: std::sync::atomic::AtomicU32,
}

impl Relay {
    pub async fn start(target: std::net::SocketAddr) -> Relay {
        let socket = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let addr = socket.local_addr().unwrap();
        let faults = Arc::new(RelayFaults::default());
        let task = tokio::spawn(relay(socket, target, faults.clone()));
        Relay { addr, faults, task }
    }

    pub fn cut(&self) {
        self.faults
            .cut
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn heal(&self) {
        self.faults
            .cut
            .store(false, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn lose_every(&self, n: u32) {
        self.faults
            .lose_every
            .store(n, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn relay(
    socket: Arc<tokio::net::UdpSocket>,
    target: std::net::SocketAddr,
    faults: Arc<RelayFaults>,
) {
    use std::sync::atomic::Ordering::SeqCst;
    let (mut client, mut from_client) = (None, 0u32);
    let mut buf = vec![0u8; 65536];
    while let Ok((len, from)) = socket.recv_from(&mut buf).await {
        if faults.cut.load(SeqCst) {
            continue;
        }
        let to = if from == target {
            client
        } else {
            client = Some(from);
            from_client = from_client.wrapping_add(1);
            let n = faults.lose_every.load(SeqCst);
            (n == 0 || from_client % n != 0).then_some(target)
        };
        if let Some(to) = to {
            let _ = socket.send_to(&buf[..len], to).await;
        }
    }
}

/// An endpoint on a runtime of its own: `crash` drops the runtime before the endpoint, so not a
/// packet more leaves it (no close, no reset), as when its process is killed.
pub struct Crashable {
    thread: std::thread::JoinHandle<()>,
    crash: tokio::sync::oneshot::Sender<()>,
}

impl Crashable {
    pub fn start(identity: LocalIdentity, config: TransportConfig) -> Self {
        let (crash, crashed) = tokio::sync::oneshot::channel();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let endpoint = runtime.block_on(async move {
                let metrics = Arc::new(TransportMetrics::unregistered());
                let (endpoint, _inbox) =
                    Endpoint::start(identity, &secret(SECRET), config, metrics)
                        .await
                        .unwrap();
                let _ = crashed.await;
                endpoint
            });
            drop(runtime);
            drop(endpoint);
        });
        Self { thread, crash }
    }

    pub fn crash(self) {
        let _ = self.crash.send(());
        self.thread.join().unwrap();
    }
}

/// The answer the echoing test servers give: the request's payload reversed, so a caller that
/// got another call's answer, or its own request back, would see it.
pub fn reversed(payload: &[u8]) -> bytes::Bytes {
    payload.iter().rev().copied().collect()
}
