//! The QUIC endpoint of a federation gateway: a socket of its own, TLS that trusts each linked
//! cluster's root for that link only (see [`crate::security::federation_tls`]), and one
//! request/reply per bidirectional stream. It knows nothing of what the bytes say; the engine
//! drives the federation machine over it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tokio::time::timeout;
use tracing::{debug, warn};

use crate::admission::Admission;
use crate::error::HandshakeFailure;
use crate::handshake::classify;
use crate::security::{cluster_of, federation_tls, RemoteRoot, SecurityError, Trust};
use foundation_core::identity::ClusterName;

/// Requests waiting for the engine before a gateway stops reading more.
const REQUEST_QUEUE: usize = 256;

/// Handshakes a gateway lets run at once; once half of them run, a sender must first prove it
/// receives at its address (a QUIC Retry). A gateway is open to anyone who can reach it, and a
/// cluster links to a few others, each with a few gateways: this is far more than they need,
/// and bounds what strangers starting handshakes can hold.
pub const GATEWAY_HANDSHAKES_MAX: usize = 64;
/// Longest a handshake may hold one of the [`GATEWAY_HANDSHAKES_MAX`] places: a stranger who
/// answers the Retry and goes quiet would otherwise hold it until the idle timeout (three
/// probe intervals), and a few packets a second would shut linked gateways out.
pub const GATEWAY_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Settings of a gateway endpoint.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    /// Where to listen for gateways of linked clusters.
    pub bind: SocketAddr,
    /// Keep-alive on idle links, so a dead remote gateway is noticed within the idle timeout.
    pub keep_alive: Duration,
    /// A link with no packet for this long is closed (and redialled on next use).
    pub idle_timeout: Duration,
    /// Largest request or reply.
    pub max_frame: usize,
}

/// Why a gateway could not start or a request failed.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// TLS material could not be set up.
    #[error(transparent)]
    Security(#[from] SecurityError),
    /// The socket could not be bound.
    #[error("cannot bind the gateway address {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// No link to that cluster is configured.
    #[error("no link to cluster {0}")]
    NotLinked(ClusterName),
    /// The remote refused us, or we refused it, in the TLS handshake.
    #[error("handshake with the gateway at {addr} failed: {failure}")]
    Handshake {
        /// The remote gateway.
        addr: SocketAddr,
        /// Why.
        failure: HandshakeFailure,
    },
    /// The connection or stream failed after the handshake.
    #[error("gateway at {addr} unreachable: {reason}")]
    Unreachable {
        /// The remote gateway.
        addr: SocketAddr,
        /// Why.
        reason: String,
    },
    /// The deadline passed.
    #[error("deadline exceeded")]
    DeadlineExceeded,
    /// The request or reply exceeds the frame limit.
    #[error("{len} bytes exceed the gateway frame limit of {max}")]
    TooLarge {
        /// Its size.
        len: usize,
        /// The limit.
        max: usize,
    },
}

/// A request from a gateway of a linked cluster; answer it with [`respond`](Self::respond).
#[derive(Debug)]
pub struct GatewayRequest {
    /// The linked cluster the caller's certificate names.
    pub from: ClusterName,
    /// The request's bytes.
    pub payload: Bytes,
    reply: oneshot::Sender<Bytes>,
}

impl GatewayRequest {
    /// Sends the reply (dropped silently if the caller has gone).
    pub fn respond(self, reply: Bytes) {
        let _ = self.reply.send(reply);
    }
}

/// Bytes carried on one link, both ways.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkBytes {
    /// Bytes of requests and replies sent to that cluster's gateways.
    pub sent: u64,
    /// Bytes received from them.
    pub received: u64,
}

/// A connection is per linked cluster and remote gateway address.
type LinkKey = (ClusterName, SocketAddr);

struct Shared {
    quic: quinn::Endpoint,
    clients: BTreeMap<ClusterName, quinn::ClientConfig>,
    connections: Mutex<BTreeMap<LinkKey, quinn::Connection>>,
    bytes: Mutex<BTreeMap<ClusterName, LinkBytes>>,
    refused: AtomicU64,
    admission: Admission,
    /// Incoming connections asked to retry or refused before their handshake began.
    turned_away: AtomicU64,
    max_frame: usize,
}

impl Shared {
    fn count(&self, cluster: &ClusterName, sent: usize, received: usize) {
        let mut bytes = self.bytes.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = bytes.entry(cluster.clone()).or_default();
        entry.sent += sent as u64;
        entry.received += received as u64;
    }

    fn connections(&self) -> std::sync::MutexGuard<'_, BTreeMap<LinkKey, quinn::Connection>> {
        self.connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// A gateway's endpoint. Cheap to clone.
#[derive(Clone)]
pub struct GatewayEndpoint {
    shared: Arc<Shared>,
}

impl GatewayEndpoint {
    /// Binds the gateway of `local` and starts accepting gateways of the `links`' clusters.
    pub fn start(
        config: &GatewayConfig,
        trust: &Trust,
        local: &ClusterName,
        links: &[(ClusterName, RemoteRoot)],
    ) -> Result<(GatewayEndpoint, mpsc::Receiver<GatewayRequest>), GatewayError> {
        let tls = federation_tls(trust, local, links)?;
        let transport = Arc::new(transport_config(config));
        let mut server = tls.server;
        server.transport_config(transport.clone());
        let clients = tls
            .clients
            .into_iter()
            .map(|(cluster, mut client)| {
                client.transport_config(transport.clone());
                (cluster, client)
            })
            .collect();
        let quic =
            quinn::Endpoint::server(server, config.bind).map_err(|source| GatewayError::Bind {
                addr: config.bind,
                source,
            })?;
        let shared = Arc::new(Shared {
            quic,
            clients,
            connections: Mutex::new(BTreeMap::new()),
            bytes: Mutex::new(BTreeMap::new()),
            refused: AtomicU64::new(0),
            admission: Admission::new(GATEWAY_HANDSHAKES_MAX),
            turned_away: AtomicU64::new(0),
            max_frame: config.max_frame,
        });
        let (requests, inbox) = mpsc::channel(REQUEST_QUEUE);
        let linked: Vec<ClusterName> = links.iter().map(|(c, _)| c.clone()).collect();
        tokio::spawn(accept(shared.clone(), requests, Arc::new(linked)));
        Ok((GatewayEndpoint { shared }, inbox))
    }

    /// The bound address.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.shared.quic.local_addr().ok()
    }

    /// Handshakes refused so far: gateways of unlinked clusters, untrusted certificates.
    pub fn refused(&self) -> u64 {
        self.shared.refused.load(Ordering::Relaxed)
    }

    /// Incoming connections turned away before their handshake began, so far: asked to prove
    /// their address while many handshakes ran, or refused while [`GATEWAY_HANDSHAKES_MAX`]
    /// did.
    pub fn turned_away(&self) -> u64 {
        self.shared.turned_away.load(Ordering::Relaxed)
    }

    /// Handshakes in progress now, at most [`GATEWAY_HANDSHAKES_MAX`].
    pub fn handshakes_in_progress(&self) -> usize {
        self.shared.admission.in_progress()
    }

    /// Bytes carried on the link to `cluster` so far.
    pub fn bytes(&self, cluster: &ClusterName) -> LinkBytes {
        let bytes = self
            .shared
            .bytes
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        bytes.get(cluster).copied().unwrap_or_default()
    }

    /// Sends `payload` to the gateway at `gateway` of `cluster` and waits for its reply until
    /// `deadline`. Dials on first use; a failed connection is redialled by the next request.
    pub async fn request(
        &self,
        cluster: &ClusterName,
        gateway: SocketAddr,
        payload: Bytes,
        deadline: Duration,
    ) -> Result<Bytes, GatewayError> {
        let max = self.shared.max_frame;
        if payload.len() > max {
            return Err(GatewayError::TooLarge {
                len: payload.len(),
                max,
            });
        }
        let sent = payload.len();
        let exchange = async {
            let connection = self.connection(cluster, gateway).await?;
            let reply = exchange(&connection, &payload, max).await;
            if reply.is_err() {
                self.shared
                    .connections()
                    .remove(&(cluster.clone(), gateway));
            }
            reply.map_err(|reason| GatewayError::Unreachable {
                addr: gateway,
                reason,
            })
        };
        let reply = timeout(deadline, exchange)
            .await
            .unwrap_or(Err(GatewayError::DeadlineExceeded))?;
        self.shared.count(cluster, sent, reply.len());
        Ok(reply)
    }

    /// Stops accepting and closes every link.
    pub fn close(&self) {
        self.shared.quic.close(0u32.into(), b"gateway closed");
        self.shared.connections().clear();
    }

    async fn connection(
        &self,
        cluster: &ClusterName,
        gateway: SocketAddr,
    ) -> Result<quinn::Connection, GatewayError> {
        let client = self
            .shared
            .clients
            .get(cluster)
            .ok_or_else(|| GatewayError::NotLinked(cluster.clone()))?;
        let key = (cluster.clone(), gateway);
        let cached = self.shared.connections().get(&key).cloned();
        if let Some(connection) = cached.filter(|c| c.close_reason().is_none()) {
            return Ok(connection);
        }
        let unreachable = |reason: String| GatewayError::Unreachable {
            addr: gateway,
            reason,
        };
        let connecting = self
            .shared
            .quic
            .connect_with(client.clone(), gateway, &cluster.certificate_dns_name())
            .map_err(|e| unreachable(e.to_string()))?;
        let connection = connecting.await.map_err(|e| GatewayError::Handshake {
            addr: gateway,
            failure: classify(&e),
        })?;
        self.shared.connections().insert(key, connection.clone());
        Ok(connection)
    }
}

/// One request and its reply on a fresh bidirectional stream.
async fn exchange(
    connection: &quinn::Connection,
    payload: &[u8],
    max: usize,
) -> Result<Bytes, String> {
    let (mut send, mut receive) = connection.open_bi().await.map_err(|e| e.to_string())?;
    send.write_all(payload).await.map_err(|e| e.to_string())?;
    send.finish().map_err(|e| e.to_string())?;
    let reply = receive.read_to_end(max).await.map_err(|e| e.to_string())?;
    Ok(Bytes::from(reply))
}

fn transport_config(config: &GatewayConfig) -> quinn::TransportConfig {
    let mut transport = quinn::TransportConfig::default();
    transport.keep_alive_interval(Some(config.keep_alive));
    transport.max_idle_timeout(quinn::IdleTimeout::try_from(config.idle_timeout).ok());
    transport
}

async fn accept(
    shared: Arc<Shared>,
    requests: mpsc::Sender<GatewayRequest>,
    linked: Arc<Vec<ClusterName>>,
) {
    while let Some(incoming) = shared.quic.accept().await {
        let Ok((incoming, permit)) = shared.admission.admit(incoming) else {
            shared.turned_away.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let (shared, requests, linked) = (shared.clone(), requests.clone(), linked.clone());
        tokio::spawn(async move {
            let remote = incoming.remote_address();
            let handshake = tokio::time::timeout(GATEWAY_HANDSHAKE_TIMEOUT, incoming).await;
            drop(permit);
            match handshake {
                Ok(Ok(connection)) => serve(shared, connection, requests, &linked).await,
                Ok(Err(error)) => {
                    shared.refused.fetch_add(1, Ordering::Relaxed);
                    warn!(%remote, failure = %classify(&error), "gateway refused a connection");
                }
                Err(_) => {
                    shared.refused.fetch_add(1, Ordering::Relaxed);
                    warn!(%remote, "gateway refused a connection: its handshake took too long");
                }
            }
        });
    }
}

/// Serves one linked gateway's streams until the connection ends.
async fn serve(
    shared: Arc<Shared>,
    connection: quinn::Connection,
    requests: mpsc::Sender<GatewayRequest>,
    linked: &[ClusterName],
) {
    let Some(from) = peer_cluster(&connection, linked) else {
        // The verifier accepted the chain for a link, so this cannot name none; refuse anyway.
        shared.refused.fetch_add(1, Ordering::Relaxed);
        connection.close(1u32.into(), b"unlinked cluster");
        return;
    };
    while let Ok((send, receive)) = connection.accept_bi().await {
        let (shared, requests, from) = (shared.clone(), requests.clone(), from.clone());
        tokio::spawn(async move {
            if let Err(error) = answer(&shared, send, receive, requests, from).await {
                debug!(%error, "gateway request dropped");
            }
        });
    }
}

async fn answer(
    shared: &Shared,
    mut send: quinn::SendStream,
    mut receive: quinn::RecvStream,
    requests: mpsc::Sender<GatewayRequest>,
    from: ClusterName,
) -> Result<(), String> {
    let payload = receive
        .read_to_end(shared.max_frame)
        .await
        .map_err(|e| e.to_string())?;
    let received = payload.len();
    let (reply, replied) = oneshot::channel();
    let request = GatewayRequest {
        from: from.clone(),
        payload: payload.into(),
        reply,
    };
    requests
        .send(request)
        .await
        .map_err(|_| "gateway stopped".to_string())?;
    let reply = replied.await.map_err(|_| "no reply".to_string())?;
    send.write_all(&reply).await.map_err(|e| e.to_string())?;
    send.finish().map_err(|e| e.to_string())?;
    shared.count(&from, reply.len(), received);
    Ok(())
}

fn peer_cluster(connection: &quinn::Connection, linked: &[ClusterName]) -> Option<ClusterName> {
    let identity = connection.peer_identity()?;
    let chain = identity
        .downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
        .ok()?;
    cluster_of(chain.first()?, linked)
}
