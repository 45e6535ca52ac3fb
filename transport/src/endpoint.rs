//! The endpoint: one QUIC endpoint per node, and the API the layers above use without seeing
//! quinn — messages per channel, datagrams, requests, bulk transfers, peer events.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use quinn_proto::HashedConnectionIdGenerator;
use tokio::sync::mpsc::error::{SendTimeoutError, TrySendError};
use tokio::sync::watch;
use tokio::time::timeout;
use tracing::{debug, info};

use crate::admission::{Admission, TurnedAway};
use crate::bulk_quota::BulkQuota;
use crate::bulk_runtime::BulkThread;
use crate::config::{TransportConfig, RPC_STREAMS_MAX};
use crate::congestion::{LedbatConfig, UrgentTraffic};
use crate::error::{ConnectError, RequestError, SendError, StartError};
use crate::frame::{encode_datagram, encode_message};
use crate::handshake::{self, Established};
use crate::inbox::{inbox, streamed_index, Inbox, Inboxes, RequestHandler};
use crate::intruders::IntruderLog;
use crate::metrics::TransportMetrics;
use crate::peer::{send_datagram_now, Peer};
use crate::sealed::SealedSide;
use crate::security::{quic_configs_with_bulk, Credentials, Trust};
use crate::wire::code;
use crate::{bulk, connection, rpc};
use foundation_core::identity::{ClusterName, NodeAddr, NodeId};
use foundation_core::Channel;

/// How long bulk connections keep the shorter queue target after a coordination message.
const URGENT_HOLD: Duration = Duration::from_millis(10);

/// How long [`Endpoint::close`] waits for peers to acknowledge the close.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// What to do when a peer's queue for a channel is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendMode {
    /// Fail at once with [`SendError::QueueFull`].
    NoWait,
    /// Wait up to this long for room, then fail with [`SendError::DeadlineExceeded`].
    Wait(Duration),
}

/// Who this endpoint is.
#[derive(Clone, Debug)]
pub struct LocalIdentity {
    /// This node's id.
    pub id: NodeId,
    /// The cluster it belongs to.
    pub cluster: ClusterName,
}

/// State shared by the endpoint handle and its tasks.
pub(crate) struct Shared {
    pub local: NodeAddr,
    pub cluster: ClusterName,
    pub instance: u64,
    pub config: TransportConfig,
    pub quic: quinn::Endpoint,
    /// Client configuration of bulk-only connections (see [`crate::bulk`]).
    pub bulk_client: quinn::ClientConfig,
    /// The bulk endpoint and its thread, when bulk connections have their own
    /// ([`TransportConfig::bulk_endpoint`]).
    pub bulk: Option<BulkSide>,
    /// The sealed membership socket and its keys ([`TransportConfig::sealed_membership`]).
    pub sealed: Option<SealedSide>,
    /// Marked whenever coordination messages are written; bulk connections yield to it.
    pub urgent: Arc<UrgentTraffic>,
    pub metrics: Arc<TransportMetrics>,
    pub inbox: Inboxes,
    pub shutdown: watch::Sender<bool>,
    /// Refused strangers, told at warn level.
    pub intruders: IntruderLog,
    /// Accepted bulk-only connections per peer.
    pub bulk_quota: Arc<BulkQuota>,
    /// Rounds of the forgetting sweep so far: the clock peer records note their last use on
    /// (a counter read per send, where a clock read would be one per send).
    pub sweeps: Arc<AtomicU64>,
    peers: Mutex<BTreeMap<NodeId, Arc<Peer>>>,
}

/// A second QUIC endpoint, on a UDP socket and a thread of its own, for bulk connections only.
pub(crate) struct BulkSide {
    pub quic: quinn::Endpoint,
    pub thread: BulkThread,
}

/// A node's QUIC endpoint. Cheap to clone; call [`close`](Endpoint::close) to shut it down.
#[derive(Clone)]
pub struct Endpoint {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("local", &self.shared.local)
            .finish_non_exhaustive()
    }
}

impl Endpoint {
    /// Binds the endpoint and starts accepting connections from nodes of the same cluster.
    pub async fn start(
        identity: LocalIdentity,
        trust: &Trust,
        config: TransportConfig,
        metrics: Arc<TransportMetrics>,
    ) -> Result<(Endpoint, Inbox), StartError> {
        config.validate()?;
        let credentials = Credentials::load(trust, &identity.cluster)?;
        let endpoint_config = endpoint_config(&credentials, identity.id);
        let (mut server, mut client, mut bulk_client) =
            quic_configs_with_bulk(credentials, &identity.cluster)?;
        let transport = Arc::new(quic_transport(&config));
        server.transport_config(transport.clone());
        client.transport_config(transport);
        let urgent = Arc::new(UrgentTraffic::new(URGENT_HOLD));
        if let Some(target) = config.bulk_queue_target {
            bulk_client.transport_config(Arc::new(bulk_transport(&config, target, urgent.clone())));
        }
        let bulk = match config.bulk_queue_target.is_some() && config.bulk_endpoint {
            true => Some(bulk_side(
                &config,
                endpoint_config.clone(),
                server.clone(),
                bulk_client.clone(),
            )?),
            false => None,
        };
        let bind_error = |source| StartError::Bind {
            addr: config.bind,
            source,
        };
        let socket = bind_udp(config.bind, config.udp_buffer).map_err(bind_error)?;
        let mut quic = quinn::Endpoint::new(
            endpoint_config,
            Some(server),
            socket,
            Arc::new(quinn::TokioRuntime),
        )
        .map_err(bind_error)?;
        quic.set_default_client_config(client);
        let bound = quic.local_addr().map_err(bind_error)?;
        let local = NodeAddr {
            id: identity.id,
            addr: crate::advertise::advertised(bound, config.advertise, &config.advertise_toward),
        };
        let sealed = match config.sealed_membership {
            true => Some(sealed_side(&config)?),
            false => None,
        };
        let (senders, inbox) = inbox(&config);
        let shared = Arc::new(Shared {
            local,
            cluster: identity.cluster,
            instance: rand::random(),
            config,
            quic,
            bulk_client,
            bulk,
            sealed,
            urgent,
            metrics,
            inbox: senders,
            shutdown: watch::channel(false).0,
            intruders: IntruderLog::default(),
            bulk_quota: Arc::default(),
            sweeps: Arc::default(),
            peers: Mutex::new(BTreeMap::new()),
        });
        tokio::spawn(accept_connections(
            shared.clone(),
            shared.quic.clone(),
            false,
        ));
        if shared.sealed.is_some() {
            tokio::spawn(crate::sealed::receive(shared.clone()));
        }
        tokio::spawn(crate::forget::sweep(shared.clone()));
        if let Some(bulk) = &shared.bulk {
            bulk.thread
                .spawn(accept_connections(shared.clone(), bulk.quic.clone(), true));
        }
        info!(node = %local, cluster = %shared.cluster, "transport listening");
        Ok((Endpoint { shared }, inbox))
    }

    /// This node's id and advertised address.
    pub fn local(&self) -> NodeAddr {
        self.shared.local
    }

    /// Where peers dial this node's bulk endpoint: the advertised IP on the bulk socket's port;
    /// `None` without a bulk endpoint ([`TransportConfig::bulk_endpoint`]). A firewall must let
    /// this port through as well as the regular one.
    pub fn bulk_addr(&self) -> Option<SocketAddr> {
        let port = self.shared.bulk_port()?;
        Some(SocketAddr::new(self.shared.local.addr.ip(), port))
    }

    /// Where peers send this node sealed membership datagrams: the advertised IP on the sealed
    /// socket's port; `None` without one ([`TransportConfig::sealed_membership`]).
    pub fn sealed_addr(&self) -> Option<SocketAddr> {
        let port = self.shared.sealed.as_ref()?.port()?;
        Some(SocketAddr::new(self.shared.local.addr.ip(), port))
    }

    /// The cluster this endpoint serves.
    pub fn cluster(&self) -> &ClusterName {
        &self.shared.cluster
    }

    /// The endpoint's metrics.
    pub fn metrics(&self) -> &Arc<TransportMetrics> {
        &self.shared.metrics
    }

    /// Dials an address whose node id is not known yet (a seed), returning who answered.
    pub async fn connect(&self, addr: SocketAddr) -> Result<NodeAddr, ConnectError> {
        if self.shared.is_shut_down() {
            return Err(ConnectError::ShutDown);
        }
        let established = handshake::dial(&self.shared, addr).await?;
        let peer = self.shared.peer(NodeAddr {
            id: established.hello.node,
            addr: established.hello.advertise,
        });
        let found = peer.node_addr();
        connection::install(&self.shared, &peer, established);
        Ok(found)
    }

    /// Queues `payload` for `to` on `channel`: membership goes out as a datagram, coordination,
    /// replication and events on the peer's long-lived stream for that channel, in order.
    /// Connects on first use.
    pub async fn send(
        &self,
        to: NodeAddr,
        channel: Channel,
        payload: Bytes,
        mode: SendMode,
    ) -> Result<(), SendError> {
        if channel == Channel::Membership {
            return self.send_datagram(to, payload);
        }
        let index = streamed_index(channel).ok_or(SendError::Encode(format!(
            "{channel} is not a message channel: use request or send_bulk"
        )))?;
        let max = self.shared.config.limits.of(channel);
        if payload.len() > max {
            return Err(SendError::TooLarge {
                len: payload.len(),
                max,
            });
        }
        let queue = &self.shared.peer(to).queues[index];
        // The common case — room in the queue — takes no timer: try first, wait only when full.
        let payload = match queue.try_send(payload) {
            Ok(()) => return Ok(()),
            Err(TrySendError::Closed(_)) => return Err(SendError::ShutDown),
            Err(TrySendError::Full(payload)) => payload,
        };
        match mode {
            SendMode::NoWait => Err(SendError::QueueFull),
            SendMode::Wait(limit) => {
                queue
                    .send_timeout(payload, limit)
                    .await
                    .map_err(|e| match e {
                        SendTimeoutError::Timeout(_) => SendError::DeadlineExceeded,
                        SendTimeoutError::Closed(_) => SendError::ShutDown,
                    })
            }
        }
    }

    /// Encodes `message` and sends it as [`send`](Endpoint::send) does.
    pub async fn send_message<T: serde::Serialize>(
        &self,
        to: NodeAddr,
        channel: Channel,
        message: &T,
        mode: SendMode,
    ) -> Result<(), SendError> {
        let payload = encode_message(message).map_err(|e| SendError::Encode(e.to_string()))?;
        self.send(to, channel, payload.into(), mode).await
    }

    /// Sends a membership datagram: unreliable, unordered, at most the membership limit.
    /// Sealed on the membership socket once a connection to the peer gave us its keys
    /// ([`crate::sealed`]); otherwise a QUIC datagram, which waits in a small queue that drops
    /// the oldest when full while no connection is up.
    pub fn send_datagram(&self, to: NodeAddr, payload: Bytes) -> Result<(), SendError> {
        let max = self.shared.config.limits.membership;
        if payload.len() < max && !self.shared.is_shut_down() {
            let peer = self.shared.peer(to);
            if crate::sealed::send(&self.shared, &peer, &payload) {
                return Ok(());
            }
        }
        let datagram = encode_datagram(&payload, max).map_err(|_| SendError::TooLarge {
            len: payload.len() + 1,
            max,
        })?;
        if self.shared.is_shut_down() {
            return Err(SendError::ShutDown);
        }
        let peer = self.shared.peer(to);
        match peer.current() {
            Some(live) => send_datagram_now(&self.shared, &live.conn, datagram),
            None => peer.queue_datagram(&self.shared, datagram),
        }
        Ok(())
    }

    /// Seals `payload` as the next membership datagram to `to` and returns the packet instead
    /// of sending it; `None` without a key for `to`. For tests that replay, tamper with and
    /// forge sealed packets.
    #[doc(hidden)]
    pub fn seal_membership_for_test(&self, to: NodeId, payload: &[u8]) -> Option<Vec<u8>> {
        let peer = self.shared.existing_peer(to)?;
        let packet = peer.sealed_slot().as_mut()?.seal_for_test(payload);
        packet
    }

    /// Sends a request and waits for the response until `deadline` has passed.
    pub async fn request(
        &self,
        to: NodeAddr,
        payload: Bytes,
        deadline: Duration,
    ) -> Result<Bytes, RequestError> {
        let max = self.shared.config.limits.rpc;
        if payload.len() > max {
            return Err(RequestError::TooLarge {
                len: payload.len(),
                max,
            });
        }
        // The wire carries the deadline in u32 milliseconds (≈ 49 days); a longer one, up to
        // `Duration::MAX` for "none", would also overflow the clock.
        let deadline = deadline.min(Duration::from_millis(u32::MAX.into()));
        let ends = tokio::time::Instant::now() + deadline;
        let peer = self.shared.peer(to);
        timeout(deadline, async {
            let Some(live) = peer.connected(&self.shared).await else {
                return Err(self.no_connection());
            };
            rpc::call(&self.shared, &live, &payload, ends).await
        })
        .await
        .unwrap_or(Err(RequestError::DeadlineExceeded))
    }

    /// Why a wait for a connection ended without one: the endpoint shut down, or the peer was
    /// forgotten — then nothing was sent, and the caller may try another.
    fn no_connection(&self) -> RequestError {
        if self.shared.is_shut_down() {
            RequestError::ShutDown
        } else {
            RequestError::Unreachable(
                "the peer was forgotten while waiting for a connection".into(),
            )
        }
    }

    /// From now on hands each request to `handler` in the task that read it off the stream,
    /// instead of queueing it on [`Inbox::requests`] (requests already queued stay there): no
    /// task to wake per batch of requests, and answers written during a batch leave together
    /// after it. `handler` must not block; work that waits belongs in a task of its own.
    /// `false` if a handler was already set or the endpoint has closed. The endpoint holds
    /// `handler` until it closes, then drops it with the inbox's queues.
    pub fn serve_requests(&self, handler: RequestHandler) -> bool {
        self.shared.inbox.serve(handler)
    }

    /// Sends `data` as one bulk transfer and waits until the peer has received all of it, or
    /// until `deadline`.
    pub async fn send_bulk(
        &self,
        to: NodeAddr,
        data: Bytes,
        deadline: Duration,
    ) -> Result<(), SendError> {
        let max = self.shared.config.limits.bulk;
        if data.len() > max {
            return Err(SendError::TooLarge {
                len: data.len(),
                max,
            });
        }
        let peer = self.shared.peer(to);
        timeout(deadline, bulk::send_to(&self.shared, &peer, data))
            .await
            .unwrap_or(Err(SendError::DeadlineExceeded))
    }

    /// Peers with a live connection, in node id order.
    pub fn connected_peers(&self) -> Vec<NodeAddr> {
        self.shared
            .peers_snapshot()
            .into_iter()
            .filter(|p| p.current().is_some())
            .map(|p| p.node_addr())
            .collect()
    }

    /// Whether a connection to `peer` is up.
    pub fn is_connected(&self, peer: NodeId) -> bool {
        self.shared
            .existing_peer(peer)
            .is_some_and(|p| p.current().is_some())
    }

    /// Closes the connection to `peer`, if any, telling it why.
    pub fn disconnect(&self, peer: NodeId) {
        let Some(peer) = self.shared.existing_peer(peer) else {
            return;
        };
        if let Some(live) = peer.current() {
            live.conn.close(code::NORMAL.into(), b"disconnect");
        }
        bulk::close(&peer);
    }

    /// Forgets `peer`: closes its connections, drops what is queued for it (counted as lost
    /// with the connection), its sealed keys and its record. Call it once the peer is gone for
    /// good (membership removed it); a later send dials it afresh. Records nobody uses are
    /// forgotten anyway after [`TransportConfig::forget_peers_after`].
    pub fn forget(&self, peer: NodeId) {
        if let Some(peer) = self.shared.take_peer(peer) {
            crate::forget::let_go(&self.shared, &peer);
        }
    }

    /// Peer records held: connected peers, and others not yet forgotten.
    pub fn peer_records(&self) -> usize {
        self.shared
            .peers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Peers this node holds sealed membership receive keys of.
    pub fn sealed_peers(&self) -> usize {
        self.shared
            .sealed
            .as_ref()
            .map_or(0, SealedSide::peers_keyed)
    }

    /// Shuts down: closes every connection with a normal close, stops all tasks, ends the
    /// [`Inbox`]'s queues, drops the request handler, and waits briefly for peers to
    /// acknowledge. The socket is released once the last clone of the endpoint is dropped.
    pub async fn close(&self) {
        self.shared.shutdown.send_replace(true);
        self.shared.inbox.close();
        self.shared.quic.close(code::NORMAL.into(), b"shutdown");
        let bulk = self.shared.bulk.as_ref().map(|bulk| {
            bulk.quic.close(code::NORMAL.into(), b"shutdown");
            bulk.quic.clone()
        });
        let _ = timeout(CLOSE_GRACE, async {
            self.shared.quic.wait_idle().await;
            if let Some(bulk) = bulk {
                bulk.wait_idle().await;
            }
        })
        .await;
        self.shared
            .peers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

impl Shared {
    /// The peer `to.id`, created on first use; its address is updated to `to.addr`.
    pub(crate) fn peer(self: &Arc<Self>, to: NodeAddr) -> Arc<Peer> {
        let mut peers = self.peers.lock().unwrap_or_else(PoisonError::into_inner);
        match peers.get(&to.id) {
            Some(peer) => {
                peer.touch();
                if peer.addr() != to.addr {
                    peer.set_addr(to.addr);
                }
                peer.clone()
            }
            None => {
                let peer = Peer::spawn(self, to);
                peers.insert(to.id, peer.clone());
                peer
            }
        }
    }

    /// Takes `id`'s record out of the table.
    pub(crate) fn take_peer(&self, id: NodeId) -> Option<Arc<Peer>> {
        self.peers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id)
    }

    /// Takes the records `forget` picks out of the table. Decided under the table's lock,
    /// which [`peer`](Self::peer) takes to hand a record out and mark it used.
    pub(crate) fn take_peers(&self, forget: impl Fn(&Peer) -> bool) -> Vec<Arc<Peer>> {
        let mut peers = self.peers.lock().unwrap_or_else(PoisonError::into_inner);
        let gone: Vec<NodeId> = peers
            .values()
            .filter(|peer| forget(peer))
            .map(|peer| peer.id)
            .collect();
        gone.iter().filter_map(|id| peers.remove(id)).collect()
    }

    pub(crate) fn existing_peer(&self, id: NodeId) -> Option<Arc<Peer>> {
        self.peers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&id)
            .cloned()
    }

    pub(crate) fn peers_snapshot(&self) -> Vec<Arc<Peer>> {
        self.peers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    /// The port of our bulk endpoint, announced in hellos.
    pub(crate) fn bulk_port(&self) -> Option<u16> {
        let bulk = self.bulk.as_ref()?;
        bulk.quic.local_addr().ok().map(|a| a.port())
    }

    pub(crate) fn is_shut_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Completes when the endpoint shuts down.
    pub(crate) async fn stopped(&self) {
        let mut shutdown = self.shutdown.subscribe();
        let _ = shutdown.wait_for(|down| *down).await;
    }

    /// Dials `peer` at its known address and installs the connection.
    pub(crate) async fn dial_peer(self: &Arc<Self>, peer: &Arc<Peer>) -> Result<(), ConnectError> {
        let established = handshake::dial(self, peer.addr()).await?;
        established.expect_node(peer.id)?;
        connection::install(self, peer, established);
        Ok(())
    }

    fn install_accepted(self: &Arc<Self>, established: Established) {
        let hello = &established.hello;
        let peer = self.peer(NodeAddr {
            id: hello.node,
            addr: hello.advertise,
        });
        connection::install(self, &peer, established);
    }
}

/// Accepts incoming connections, at most `max_pending_handshakes` handshaking at once (see
/// [`Admission`]).
///
/// The bulk endpoint runs its own loop, with its own limit, and serves bulk connections only.
async fn accept_connections(shared: Arc<Shared>, quic: quinn::Endpoint, bulk_only: bool) {
    let admission = Admission::new(shared.config.max_pending_handshakes);
    while let Some(incoming) = quic.accept().await {
        let (incoming, permit) = match admission.admit(incoming) {
            Ok(admitted) => admitted,
            Err(TurnedAway::Retried) => {
                shared.metrics.retried_incoming();
                continue;
            }
            Err(TurnedAway::Refused) => {
                shared.metrics.refused_incoming();
                continue;
            }
        };
        shared.metrics.handshake_started();
        let shared = shared.clone();
        tokio::spawn(async move {
            let remote = incoming.remote_address();
            let result = handshake::accept(&shared, incoming).await;
            shared.metrics.handshake_ended();
            drop(permit);
            match result {
                Ok(established) if established.bulk => connection::serve_bulk(&shared, established),
                Ok(established) if bulk_only => {
                    established
                        .conn
                        .close(code::BAD_HELLO.into(), b"bulk endpoint");
                }
                Ok(established) => shared.install_accepted(established),
                Err(error) => debug!(%remote, %error, "refused incoming connection"),
            }
        });
    }
}

/// Binds the endpoint's UDP socket with `buffer` bytes of receive and send buffer requested.
/// A refused size is not an error: the kernel's default still works, only with more loss under
/// bursts.
fn bind_udp(addr: SocketAddr, buffer: usize) -> std::io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if let Err(error) = socket.set_recv_buffer_size(buffer) {
        debug!(%error, buffer, "UDP receive buffer size refused");
    }
    if let Err(error) = socket.set_send_buffer_size(buffer) {
        debug!(%error, buffer, "UDP send buffer size refused");
    }
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// Starts the bulk thread and binds the bulk endpoint on the bound IP, any port.
fn bulk_side(
    config: &TransportConfig,
    mut endpoint_config: quinn::EndpointConfig,
    mut server: quinn::ServerConfig,
    client: quinn::ClientConfig,
) -> Result<BulkSide, StartError> {
    let thread = BulkThread::start(config.bulk_thread_nice).map_err(StartError::BulkThread)?;
    let addr = SocketAddr::new(config.bind.ip(), config.bulk_port);
    let bind_error = |source| StartError::BindBulk { addr, source };
    let socket = bind_udp(addr, config.udp_buffer).map_err(bind_error)?;
    // Announced to peers: bulk connections to this endpoint may use datagrams this large.
    let max_payload = config.bulk_max_udp_payload;
    endpoint_config
        .max_udp_payload_size(max_payload)
        .map_err(|e| bind_error(std::io::Error::other(e.to_string())))?;
    let mut receive = quic_transport(config);
    receive.keep_alive_interval(None);
    server.transport_config(Arc::new(receive));
    let mut quic = {
        let _on = thread.enter();
        quinn::Endpoint::new(
            endpoint_config,
            Some(server),
            socket,
            thread.quinn_runtime(max_payload),
        )
        .map_err(bind_error)?
    };
    quic.set_default_client_config(client);
    Ok(BulkSide { quic, thread })
}

/// Binds the sealed membership socket on the bound IP (see [`crate::sealed`]).
fn sealed_side(config: &TransportConfig) -> Result<SealedSide, StartError> {
    let addr = SocketAddr::new(config.bind.ip(), config.sealed_port);
    let bind_error = |source| StartError::BindSealed { addr, source };
    let socket = bind_udp(addr, SEALED_UDP_BUFFER).map_err(bind_error)?;
    SealedSide::bind(socket).map_err(bind_error)
}

/// Receive and send buffer of the sealed membership socket: membership datagrams are small and
/// few, so far less than the QUIC socket's.
const SEALED_UDP_BUFFER: usize = 256 << 10;

/// quinn's endpoint defaults, with a stateless-reset key this node has in every life, so a
/// peer still holding a connection to an earlier life learns at once that it is gone.
fn endpoint_config(credentials: &Credentials, id: NodeId) -> quinn::EndpointConfig {
    let mut config = quinn::EndpointConfig::new(Arc::new(credentials.reset.key(id)));
    let cid_key = credentials.reset.connection_id_key(id);
    config.cid_generator(move || Box::new(HashedConnectionIdGenerator::from_key(cid_key)));
    config
}

fn quic_transport(config: &TransportConfig) -> quinn::TransportConfig {
    let mut transport = quinn::TransportConfig::default();
    // With sealed membership, liveness is membership's and the connection carries only what
    // else is sent: an idle one stays silent and closes after the idle timeout.
    let keep_alive = (!config.sealed_membership).then_some(config.keep_alive);
    transport.keep_alive_interval(keep_alive);
    // validate() bounds idle_timeout to 600 s, well inside QUIC's varint range.
    transport.max_idle_timeout(quinn::IdleTimeout::try_from(config.idle_timeout).ok());
    // The hello, the multiplexed RPC streams, and requests too large for them, each on a stream of
    // its own. quinn keeps an entry per allowed stream in two hash maps of every connection
    // (≈ 80 KB per connection at 1025 streams, 2.3 MB per node in a 30-member mesh), so large
    // requests get far fewer streams than the mux gets calls; a caller past it waits for one.
    // Multiplexed streams: as many as any peer's `rpc_streams` may ask, since the peer's
    // setting is not known here.
    let own_stream_requests = config.own_stream_requests();
    transport
        .max_concurrent_bidi_streams((own_stream_requests + 1 + u32::from(RPC_STREAMS_MAX)).into());
    // The three long-lived channel streams, plus concurrent bulk transfers.
    transport.max_concurrent_uni_streams((config.max_concurrent_transfers + 3).into());
    // Windows sized for bulk throughput on fast links: a 16 MiB stream window covers the
    // bandwidth-delay product of 10 Gbit/s at ≈ 13 ms.
    transport.stream_receive_window(quinn::VarInt::from_u32(16 << 20));
    transport.receive_window(quinn::VarInt::from_u32(64 << 20));
    transport.send_window(64 << 20);
    transport.datagram_receive_buffer_size(Some(1 << 20));
    transport.datagram_send_buffer_size(1 << 20);
    transport
}

/// The transport settings of the bulk-only connections this node dials: the regular ones, with
/// the delay-based congestion controller (which yields to this node's coordination traffic),
/// and without keep-alives (an unused bulk connection is closed, not kept).
fn bulk_transport(
    config: &TransportConfig,
    target: Duration,
    urgent: Arc<UrgentTraffic>,
) -> quinn::TransportConfig {
    let mut transport = quic_transport(config);
    transport.keep_alive_interval(None);
    if config.bulk_endpoint {
        // Only a bulk endpoint's socket splits batches of large datagrams into sends Linux
        // takes (`bulk_runtime::BulkSocket`); a peer's regular endpoint announces 1472 anyway.
        let mut mtu = quinn::MtuDiscoveryConfig::default();
        mtu.upper_bound(config.bulk_max_udp_payload);
        transport.mtu_discovery_config(Some(mtu));
    }
    transport.congestion_controller_factory(Arc::new(LedbatConfig {
        target,
        urgent: Some(urgent),
        yield_target: config.bulk_yield_target.unwrap_or(target),
        ..LedbatConfig::default()
    }));
    transport
}
