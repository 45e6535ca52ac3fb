//! One remote node as the endpoint sees it: its current connection, its outgoing queues, and
//! the tasks that dial it and drain those queues.
//!
//! Queues live here, not on a connection, so that messages wait across a reconnect and a
//! replaced duplicate connection instead of being tied to one QUIC connection.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use quinn::{Connection, SendStream};
use tokio::sync::{mpsc, watch, Notify};
use tracing::{debug, warn};

use foundation_core::Channel;

use crate::channel::priority;
use crate::endpoint::Shared;
use crate::frame::{encode_frame, StreamHeader, FRAME_PREFIX_LEN};
use crate::metrics::{Direction, DropReason};
use foundation_core::identity::{NodeAddr, NodeId};

/// Most messages a writer takes from its queue for one stream write. Batching many small frames
/// into one write is what makes a million small messages per second possible; the cap bounds the
/// memory of one write and how long one batch can delay the next message.
const WRITE_BATCH_MAX: usize = 1024;

/// Messages at least this large are written as chunks of their own instead of being copied into
/// the write's buffer.
const WRITE_COPY_BELOW: usize = 4096;

/// Longest a writer waits for its old stream to be acknowledged when it moves to another
/// connection. Past it, the old stream's unacknowledged data may arrive after the new one's.
const STREAM_SWITCH_DRAIN_MAX: Duration = Duration::from_secs(1);

/// A connection to the peer that completed the handshake and hello.
#[derive(Clone, Debug)]
pub(crate) struct Live {
    pub conn: Connection,
    /// The node that dialled this connection.
    pub initiator: NodeId,
    /// The peer's per-start instance number, from its hello.
    pub instance: u64,
    /// This connection's multiplexed RPC stream, opened by the first small request.
    pub rpc: Arc<crate::rpc::mux::MuxSlot>,
    /// Streams this node's large requests may hold at once: no more than a peer configured like
    /// this node takes, so they cannot fill the room it keeps for the hello and the
    /// multiplexed streams (small calls would then wait for a stream to open).
    pub own_streams: Arc<tokio::sync::Semaphore>,
}

impl Live {
    pub fn same_connection(&self, other: &Connection) -> bool {
        self.conn.stable_id() == other.stable_id()
    }

    /// Whether this node waits on an answer over this connection: a multiplexed call, or a
    /// large request holding one of the `own_streams_max` streams of its own.
    pub fn awaits_answers(&self, own_streams_max: usize) -> bool {
        self.rpc.in_flight() > 0 || self.own_streams.available_permits() < own_streams_max
    }
}

pub(crate) struct Peer {
    pub id: NodeId,
    addr: Mutex<SocketAddr>,
    /// The port of the peer's bulk endpoint, from its hello.
    bulk_port: Mutex<Option<u16>>,
    /// The current connection; `None` while disconnected.
    pub live: watch::Sender<Option<Live>>,
    /// Outgoing queues of the streamed channels, in `Channel::STREAMED` order.
    pub queues: [mpsc::Sender<Bytes>; 3],
    datagrams: Mutex<VecDeque<Bytes>>,
    datagrams_queued: Notify,
    /// Wakes the dialer.
    pub demand: Notify,
    /// Tasks waiting for a connection; the dialer keeps retrying while there are any.
    waiting: AtomicUsize,
    /// Held by the reader of each streamed channel's incoming stream, in `Channel::STREAMED`
    /// order: one stream per channel is read at a time.
    read_order: [tokio::sync::Mutex<()>; 3],
    /// Our bulk-only connection to the peer, dialled on the first transfer (see [`crate::bulk`]).
    pub bulk: tokio::sync::Mutex<crate::bulk::BulkState>,
    /// How we seal membership datagrams to the peer, once a connection gave us keys (see
    /// [`crate::sealed`]); it outlives that connection.
    sealed: Mutex<Option<crate::sealed::SendKey>>,
    /// Where the last keys had us seal to; kept when a key is dropped, so an ICMP error about
    /// a datagram already sent still names this peer.
    sealed_to: Mutex<Option<SocketAddr>>,
    /// The endpoint's count of forgetting sweeps ([`Shared::sweeps`]).
    sweeps: Arc<AtomicU64>,
    /// The sweep round in which the peer was last sent to, heard from, or connected (see
    /// [`crate::forget`]); the round the record was made in to begin with.
    last_used: AtomicU64,
    /// Set once the record is forgotten: its tasks end, as at shutdown.
    retired: watch::Sender<bool>,
}

impl Peer {
    /// Creates the peer and starts its dialer and queue writers.
    pub fn spawn(shared: &Arc<Shared>, peer: NodeAddr) -> Arc<Peer> {
        let mut receivers = Vec::with_capacity(Channel::STREAMED.len());
        let queues = std::array::from_fn(|_| {
            let (tx, rx) = mpsc::channel(shared.config.stream_queue);
            receivers.push(rx);
            tx
        });
        let (live, _) = watch::channel(None);
        let this = Arc::new(Peer {
            id: peer.id,
            addr: Mutex::new(peer.addr),
            bulk_port: Mutex::new(None),
            live,
            queues,
            datagrams: Mutex::new(VecDeque::new()),
            datagrams_queued: Notify::new(),
            demand: Notify::new(),
            waiting: AtomicUsize::new(0),
            read_order: Default::default(),
            bulk: tokio::sync::Mutex::new(Default::default()),
            sealed: Mutex::new(None),
            sealed_to: Mutex::new(None),
            sweeps: shared.sweeps.clone(),
            last_used: AtomicU64::new(shared.sweeps.load(Ordering::Relaxed)),
            retired: watch::channel(false).0,
        });
        for (channel, rx) in Channel::STREAMED.into_iter().zip(receivers) {
            tokio::spawn(write_stream(this.clone(), shared.clone(), channel, rx));
        }
        tokio::spawn(flush_datagrams(this.clone(), shared.clone()));
        tokio::spawn(dial_on_demand(this.clone(), shared.clone()));
        this
    }

    /// Notes that the peer is in use now: sent to, heard from, or connected.
    pub fn touch(&self) {
        let round = self.sweeps.load(Ordering::Relaxed);
        self.last_used.fetch_max(round, Ordering::Relaxed);
    }

    /// Whole sweep rounds since the peer was last used, as of round `now`.
    pub fn unused_rounds(&self, now: u64) -> u64 {
        now.saturating_sub(self.last_used.load(Ordering::Relaxed))
    }

    /// Ends the record's tasks (see [`crate::forget`]).
    pub fn retire(&self) {
        self.retired.send_replace(true);
    }

    /// Completes when the endpoint shuts down or the record is forgotten.
    pub async fn ended(&self, shared: &Shared) {
        let mut retired = self.retired.subscribe();
        tokio::select! {
            _ = shared.stopped() => {}
            _ = retired.wait_for(|retired| *retired) => {}
        }
    }

    fn is_ended(&self, shared: &Shared) -> bool {
        shared.is_shut_down() || self.is_retired()
    }

    /// Whether the record has been forgotten.
    pub fn is_retired(&self) -> bool {
        *self.retired.borrow()
    }

    /// Whether anything waits on this record: a task waiting for a connection, or messages or
    /// datagrams queued for the peer.
    pub fn has_work(&self) -> bool {
        let queued = self.queues.iter().any(|q| q.capacity() < q.max_capacity());
        let datagrams = !self
            .datagrams
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_empty();
        self.waiting.load(Ordering::SeqCst) > 0 || queued || datagrams
    }

    pub fn addr(&self) -> SocketAddr {
        *self.addr.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn set_addr(&self, addr: SocketAddr) {
        *self.addr.lock().unwrap_or_else(PoisonError::into_inner) = addr;
    }

    pub fn set_bulk_port(&self, port: Option<u16>) {
        *self
            .bulk_port
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = port;
    }

    /// Where to dial our bulk connection: the peer's bulk endpoint, or its regular one if it
    /// announced none.
    pub fn bulk_addr(&self) -> SocketAddr {
        let port = *self
            .bulk_port
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let addr = self.addr();
        port.map_or(addr, |port| SocketAddr::new(addr.ip(), port))
    }

    pub fn set_sealed(&self, key: Option<crate::sealed::SendKey>) {
        if let Some(key) = &key {
            let to = Some(key.to());
            *self
                .sealed_to
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = to;
        }
        *self.sealed_slot() = key;
    }

    /// Whether our sealed datagrams to this peer went to `addr` (under its latest keys).
    pub fn seals_to(&self, addr: SocketAddr) -> bool {
        *self
            .sealed_to
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            == Some(addr)
    }

    pub fn sealed_slot(&self) -> std::sync::MutexGuard<'_, Option<crate::sealed::SendKey>> {
        self.sealed.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn node_addr(&self) -> NodeAddr {
        NodeAddr {
            id: self.id,
            addr: self.addr(),
        }
    }

    /// The lock that keeps `channel`'s incoming streams from this peer read one at a time.
    pub fn read_order(&self, channel: Channel) -> Option<&tokio::sync::Mutex<()>> {
        crate::inbox::streamed_index(channel).map(|i| &self.read_order[i])
    }

    pub fn current(&self) -> Option<Live> {
        self.live.borrow().clone()
    }

    /// The current connection, dialling if there is none; `None` once the endpoint shuts down.
    pub async fn connected(&self, shared: &Shared) -> Option<Live> {
        if let Some(live) = self.current() {
            return Some(live);
        }
        let mut live = self.live.subscribe();
        // Counted until this wait ends or is dropped (a caller's deadline drops it): a count
        // left behind kept the dialer redialling a dead peer for good and the record from
        // ever being forgotten.
        let _waiting = Waiting::count(&self.waiting);
        self.demand.notify_one();
        tokio::select! {
            found = live.wait_for(Option::is_some) => found.ok().and_then(|l| l.clone()),
            _ = self.ended(shared) => None,
        }
    }

    fn wants_connection(&self) -> bool {
        self.waiting.load(Ordering::SeqCst) > 0 && self.live.borrow().is_none()
    }

    /// Queues a datagram for when the connection is up, dropping the oldest if the queue is full.
    pub fn queue_datagram(&self, shared: &Shared, datagram: Bytes) {
        let mut queue = self
            .datagrams
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if queue.len() >= shared.config.datagram_queue {
            queue.pop_front();
            shared
                .metrics
                .dropped(Channel::Membership, DropReason::QueueFull, 1);
        }
        queue.push_back(datagram);
        drop(queue);
        self.datagrams_queued.notify_one();
    }

    fn next_datagram(&self) -> Option<Bytes> {
        self.datagrams
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop_front()
    }
}

/// Sends a datagram on a live connection, counting what quinn will discard to make room.
pub(crate) fn send_datagram_now(shared: &Shared, conn: &Connection, datagram: Bytes) {
    let len = datagram.len();
    match conn.max_datagram_size() {
        Some(max) if len <= max => {}
        _ => {
            shared
                .metrics
                .dropped(Channel::Membership, DropReason::Oversized, 1);
            return;
        }
    }
    if conn.datagram_send_buffer_space() < len {
        // quinn makes room by discarding the oldest queued datagrams: count the loss.
        shared
            .metrics
            .dropped(Channel::Membership, DropReason::QueueFull, 1);
    }
    match conn.send_datagram(datagram) {
        Ok(()) => shared
            .metrics
            .traffic(Channel::Membership, Direction::Sent, 1, len as u64),
        Err(_) => shared
            .metrics
            .dropped(Channel::Membership, DropReason::ConnectionLost, 1),
    }
}

async fn flush_datagrams(peer: Arc<Peer>, shared: Arc<Shared>) {
    loop {
        tokio::select! {
            _ = peer.datagrams_queued.notified() => {}
            _ = peer.ended(&shared) => return,
        }
        let Some(live) = peer.connected(&shared).await else {
            return;
        };
        while let Some(datagram) = peer.next_datagram() {
            send_datagram_now(&shared, &live.conn, datagram);
        }
    }
}

/// Dials whenever someone waits for a connection, backing off exponentially between failures.
async fn dial_on_demand(peer: Arc<Peer>, shared: Arc<Shared>) {
    let mut backoff = shared.config.reconnect_min;
    loop {
        tokio::select! {
            _ = peer.demand.notified() => {}
            _ = peer.ended(&shared) => return,
        }
        while peer.wants_connection() && !peer.is_ended(&shared) {
            match shared.dial_peer(&peer).await {
                Ok(()) => backoff = shared.config.reconnect_min,
                Err(error) => {
                    debug!(peer = %peer.node_addr(), %error, ?backoff, "dial failed");
                    tokio::select! {
                        _ = tokio::time::sleep(jittered(backoff)) => {}
                        _ = peer.ended(&shared) => return,
                    }
                    backoff = (backoff * 2).min(shared.config.reconnect_max);
                }
            }
        }
    }
}

/// Spreads reconnects of many nodes over time: between half and all of `backoff`.
fn jittered(backoff: Duration) -> Duration {
    backoff.mul_f64(0.5 + rand::random::<f64>() * 0.5)
}

/// Drains one streamed channel's queue into a long-lived stream on the current connection.
async fn write_stream(
    peer: Arc<Peer>,
    shared: Arc<Shared>,
    channel: Channel,
    mut queue: mpsc::Receiver<Bytes>,
) {
    let mut batch = Vec::with_capacity(WRITE_BATCH_MAX);
    let mut chunks = Vec::new();
    let mut stream: Option<(Connection, SendStream)> = None;
    let max = shared.config.limits.of(channel);
    loop {
        batch.clear();
        let first = tokio::select! {
            first = queue.recv() => first,
            _ = peer.ended(&shared) => None,
        };
        let Some(first) = first else {
            return count_left_behind(&shared, channel, &queue);
        };
        // Only one message leaves the queue before a connection is up, so the queue's
        // capacity is what bounds memory (and what senders wait on) while disconnected.
        let Some(live) = peer.connected(&shared).await else {
            shared
                .metrics
                .dropped(channel, DropReason::ConnectionLost, 1);
            return count_left_behind(&shared, channel, &queue);
        };
        batch.push(first);
        while batch.len() < WRITE_BATCH_MAX {
            match queue.try_recv() {
                Ok(message) => batch.push(message),
                Err(_) => break,
            }
        }
        let taken = batch.len();
        let bytes = frame_chunks(&mut batch, max, &mut chunks);
        if channel == Channel::Coordination {
            shared.urgent.mark(std::time::Instant::now());
        }
        match write_batch(&mut stream, &live, channel, &mut chunks).await {
            Ok(()) => shared
                .metrics
                .traffic(channel, Direction::Sent, taken as u64, bytes),
            Err(error) => {
                warn!(peer = %peer.node_addr(), %channel, %error, lost = taken, "stream write failed");
                stream = None;
                shared
                    .metrics
                    .dropped(channel, DropReason::ConnectionLost, taken as u64);
            }
        }
    }
}

/// Counts the messages still queued for a peer whose record was forgotten (or at shutdown)
/// as lost with their connection: nothing will send them.
fn count_left_behind(shared: &Shared, channel: Channel, queue: &mpsc::Receiver<Bytes>) {
    let left = queue.len() as u64;
    if left > 0 {
        shared
            .metrics
            .dropped(channel, DropReason::ConnectionLost, left);
    }
}

/// Frames `batch` (emptying it) as the chunks of one stream write, into `chunks` (emptied
/// first: one vector serves every write), and counts its bytes. Small messages are copied,
/// behind their length prefixes, into one buffer; a large one (a pub/sub batch frame) follows
/// its prefix as a chunk of its own, written without a copy.
fn frame_chunks(batch: &mut Vec<Bytes>, max: usize, chunks: &mut Vec<Bytes>) -> u64 {
    let copied = batch.iter().map(|m| FRAME_PREFIX_LEN + copy_len(m)).sum();
    // Sized once: growing it by doubling copied the batch several times over.
    let mut out = BytesMut::with_capacity(copied);
    chunks.clear();
    let mut bytes = 0;
    for message in batch.drain(..) {
        bytes += message.len() as u64;
        if copy_len(&message) > 0 {
            // Sizes were checked when the message was queued, so this cannot fail.
            let _ = encode_frame(&mut out, &message, max);
            continue;
        }
        out.put_u32(message.len() as u32);
        chunks.push(out.split().freeze());
        chunks.push(message);
    }
    if !out.is_empty() {
        chunks.push(out.freeze());
    }
    bytes
}

/// Bytes of `message` copied into a write's buffer: all of a small one, none of a large one.
fn copy_len(message: &Bytes) -> usize {
    if message.len() < WRITE_COPY_BELOW {
        message.len()
    } else {
        0
    }
}

async fn write_batch(
    stream: &mut Option<(Connection, SendStream)>,
    live: &Live,
    channel: Channel,
    chunks: &mut [Bytes],
) -> Result<(), String> {
    let reusable = matches!(stream, Some((conn, _)) if live.same_connection(conn));
    if !reusable {
        if let Some((_, mut old)) = stream.take() {
            // Moving to another connection: let the old stream be delivered completely first,
            // so the receiver can keep the channel in order.
            let _ = old.finish();
            let _ = tokio::time::timeout(STREAM_SWITCH_DRAIN_MAX, old.stopped()).await;
        }
        let mut send = live.conn.open_uni().await.map_err(|e| e.to_string())?;
        let _ = send.set_priority(priority(channel));
        send.write_all(&StreamHeader::for_channel(channel).encode())
            .await
            .map_err(|e| e.to_string())?;
        *stream = Some((live.conn.clone(), send));
    }
    match stream {
        Some((_, send)) => send
            .write_all_chunks(chunks)
            .await
            .map_err(|e| e.to_string()),
        None => Err("no stream".into()),
    }
}

/// One task counted as waiting for a connection while this lives.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn count(waiting: &'a AtomicUsize) -> Self {
        waiting.fetch_add(1, Ordering::SeqCst);
        Self(waiting)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}
