//! Bulk transfers: one unidirectional stream per transfer, on a connection of their own, so a
//! full-state sync never delays urgent traffic.
//!
//! Stream priorities are not enough: quinn orders only data it has not sent yet, and a
//! loss-based congestion controller keeps megabytes of a transfer queued in the socket buffers
//! and in the receiver's backlog, ahead of any urgent packet (issue 16 measured 28 ms at p99 for
//! a 64-byte coordination message, against 169 µs idle). So each node sends its transfers to a
//! peer on a bulk-only connection it dials (ALPN [`BULK_ALPN`](crate::security::BULK_ALPN)),
//! whose congestion controller is delay-based ([`crate::congestion`]) and keeps the queue it
//! builds under [`TransportConfig::bulk_queue_target`](crate::TransportConfig). The bulk
//! connection has no keep-alives and is closed once unused for the idle timeout. When it
//! cannot be dialled (a peer that does not offer the bulk protocol), or when
//! `bulk_queue_target` is `None`, transfers go on the regular connection at the lowest priority.
//!
//! A connection of its own still shared the regular endpoint's UDP socket and the
//! application's tokio workers, where its packets and their processing went ahead of urgent
//! ones: coordination p99 under bulk stayed at 1.4–4.6 ms. So by default
//! ([`TransportConfig::bulk_endpoint`](crate::TransportConfig)) every node also has a bulk
//! endpoint — a second UDP socket, announced in the hello, whose connection drivers run on a
//! thread of their own (`bulk_runtime.rs`) — and bulk connections go from one bulk
//! endpoint to the other. Sending and reading a transfer run on that thread too; the
//! application takes received chunks from a queue in batches.
//!
//! On the wire: the stream header, the transfer's total length (u64), then that many bytes.
//! The receiver checks the length against the limit before accepting anything, and hands the
//! application a reader, so a large transfer never has to sit in memory whole.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use quinn::{Connection, RecvStream, SendStream};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::debug;

use foundation_core::Channel;

use crate::channel::priority;
use crate::connection::reject_stream;
use crate::endpoint::Shared;
use crate::error::{ConnectError, HandshakeFailure, SendError};
use crate::frame::{FrameError, StreamHeader};
use crate::handshake;
use crate::metrics::{Direction, TransportMetrics};
use crate::peer::Peer;
use crate::stream_io::{read_u64, ReadError};
use crate::wire::code;
use foundation_core::identity::NodeId;

/// Why reading a transfer failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransferError {
    /// The sender's stream ended before the announced length.
    #[error("transfer ended after {received} of {expected} bytes")]
    Truncated {
        /// Bytes received.
        received: u64,
        /// Bytes announced.
        expected: u64,
    },
    /// The sender sent more than it announced.
    #[error("transfer longer than the announced {expected} bytes")]
    TooLong {
        /// Bytes announced.
        expected: u64,
    },
    /// The connection failed.
    #[error("transfer interrupted: {0}")]
    Interrupted(String),
}

/// Batches of chunks read ahead of the application, per transfer: the reading runs where the
/// connection's packets are processed (the bulk thread, for a bulk endpoint), and the
/// application only takes finished batches from a queue, never the connection's lock.
const READ_AHEAD: usize = 4;
/// Most chunks (each the data of one received STREAM frame) handed over at once: one hand-over
/// per packet would cost a wake-up of the application's task per 1.2 KB.
const BATCH_CHUNKS: usize = 64;

/// What the reader hands the application: a batch of chunks, the end, or the failure.
type Batch = Result<Option<Vec<Bytes>>, TransferError>;

/// A transfer arriving from a peer.
#[derive(Debug)]
pub struct IncomingTransfer {
    /// The sender.
    pub from: NodeId,
    /// Total bytes announced.
    pub len: u64,
    batches: mpsc::Receiver<Batch>,
    pending: VecDeque<Bytes>,
    /// The outcome once the transfer has ended or failed, repeated to later calls.
    ended: Option<Result<Option<Bytes>, TransferError>>,
}

impl IncomingTransfer {
    /// The next chunk; `Ok(None)` once all announced bytes have arrived.
    pub async fn read_chunk(&mut self) -> Result<Option<Bytes>, TransferError> {
        loop {
            if let Some(chunk) = self.pending.pop_front() {
                return Ok(Some(chunk));
            }
            if let Some(ended) = &self.ended {
                return ended.clone();
            }
            let next = self.batches.recv().await.unwrap_or_else(|| {
                Err(TransferError::Interrupted("transfer reader stopped".into()))
            });
            match next {
                Ok(Some(batch)) => self.pending.extend(batch),
                Ok(None) => self.ended = Some(Ok(None)),
                Err(error) => self.ended = Some(Err(error)),
            }
        }
    }

    /// Reads the whole transfer into memory.
    pub async fn read_to_end(mut self) -> Result<Vec<u8>, TransferError> {
        let mut all = Vec::with_capacity(usize::try_from(self.len).unwrap_or(0).min(64 << 20));
        while let Some(chunk) = self.read_chunk().await? {
            all.extend_from_slice(&chunk);
        }
        Ok(all)
    }
}

/// Reads one transfer's stream, checking its length, into the application's queue.
struct TransferReader {
    len: u64,
    received: u64,
    recv: RecvStream,
    metrics: Arc<TransportMetrics>,
}

impl TransferReader {
    /// Reads until the transfer ends, fails, or the application drops it.
    async fn pump(mut self, out: mpsc::Sender<Batch>) {
        loop {
            let next = tokio::select! {
                next = self.read_batch() => next,
                _ = out.closed() => return,
            };
            let last = !matches!(next, Ok(Some(_)));
            if out.send(next).await.is_err() || last {
                return;
            }
        }
    }

    /// The chunks that have arrived, at least one; `Ok(None)` at the announced end.
    async fn read_batch(&mut self) -> Batch {
        let mut chunks: [Bytes; BATCH_CHUNKS] = std::array::from_fn(|_| Bytes::new());
        let read = self.recv.read_chunks(&mut chunks).await;
        match read.map_err(|e| TransferError::Interrupted(e.to_string()))? {
            Some(n) => {
                let batch = chunks.into_iter().take(n).collect::<Vec<_>>();
                for chunk in &batch {
                    self.account(chunk.len())?;
                }
                Ok(Some(batch))
            }
            None if self.received == self.len => Ok(None),
            None => Err(TransferError::Truncated {
                received: self.received,
                expected: self.len,
            }),
        }
    }

    fn account(&mut self, len: usize) -> Result<(), TransferError> {
        self.received += len as u64;
        if self.received > self.len {
            let _ = self.recv.stop(code::TOO_LARGE.into());
            return Err(TransferError::TooLong { expected: self.len });
        }
        self.metrics
            .traffic(Channel::Bulk, Direction::Received, 0, len as u64);
        if self.received == self.len {
            self.metrics
                .traffic(Channel::Bulk, Direction::Received, 1, 0);
        }
        Ok(())
    }
}

/// How long a peer whose bulk connection could not be dialled gets its transfers on the regular
/// connection before the next attempt: a peer that does not offer the bulk protocol is not
/// dialled again for every transfer.
const BULK_RETRY_AFTER: Duration = Duration::from_secs(30);

/// How long a bulk handshake may take before the transfer goes on the regular connection
/// instead: a fixed allowance (one retransmission of a lost first packet, and the handshake's
/// CPU on a busy host) plus a few round trips of the regular connection, which has just proved
/// the peer reachable. A firewall that drops the bulk port then costs about a second, not the
/// whole handshake timeout.
fn bulk_dial_limit(rtt: Duration) -> Duration {
    Duration::from_secs(1) + rtt.saturating_mul(8)
}

/// Our bulk connection to one peer, if any, and when to try again after a failed dial.
#[derive(Debug, Default)]
pub(crate) struct BulkState {
    link: Option<BulkLink>,
    retry_after: Option<Instant>,
}

/// Our bulk-only connection to one peer, and how much it is in use.
#[derive(Clone, Debug)]
pub(crate) struct BulkLink {
    conn: Connection,
    usage: Arc<Usage>,
}

#[derive(Debug)]
struct Usage {
    /// Transfers under way.
    active: AtomicUsize,
    /// When the last transfer ended.
    idle_since: Mutex<Instant>,
}

/// Counts a transfer as under way until dropped.
struct InUse<'a>(&'a Usage);

impl<'a> InUse<'a> {
    fn new(usage: &'a Usage) -> Self {
        usage.active.fetch_add(1, Ordering::SeqCst);
        Self(usage)
    }
}

impl Drop for InUse<'_> {
    fn drop(&mut self) {
        *self
            .0
            .idle_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Instant::now();
        self.0.active.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Sends one transfer to `peer`: on our bulk connection to it when bulk connections are on and
/// it can be had, else on the regular connection. With a bulk endpoint, everything about the
/// bulk connection — dialling, writing, waiting for the acknowledgement — runs on the bulk
/// thread.
pub(crate) async fn send_to(
    shared: &Arc<Shared>,
    peer: &Arc<Peer>,
    data: Bytes,
) -> Result<(), SendError> {
    // The regular connection first: it proves the peer is up and tells us where it listens.
    let live = peer.connected(shared).await.ok_or(SendError::ShutDown)?;
    if shared.config.bulk_queue_target.is_none() {
        return send(shared, &live.conn, data).await;
    }
    let limit = bulk_dial_limit(live.conn.rtt());
    let outcome = match &shared.bulk {
        Some(side) => {
            let (shared, peer) = (shared.clone(), peer.clone());
            let task = async move { on_bulk_link(&shared, &peer, data, limit).await };
            side.thread
                .run(task)
                .result()
                .await
                .ok_or(SendError::ShutDown)?
        }
        None => on_bulk_link(shared, peer, data, limit).await,
    };
    let (error, data) = match outcome {
        Ok(sent) => return sent,
        Err(unsent) => unsent,
    };
    debug!(
        peer = %peer.node_addr(), %error,
        "no bulk connection: sending the transfer on the regular connection"
    );
    shared.metrics.bulk_fallback();
    send(shared, &live.conn, data).await
}

/// Sends the transfer on our bulk connection to `peer`; the data comes back unsent if there is
/// no such connection to be had.
async fn on_bulk_link(
    shared: &Arc<Shared>,
    peer: &Arc<Peer>,
    data: Bytes,
    dial_limit: Duration,
) -> Result<Result<(), SendError>, (ConnectError, Bytes)> {
    match bulk_link(shared, peer, dial_limit).await {
        Ok(link) => {
            let _in_use = InUse::new(&link.usage);
            Ok(send(shared, &link.conn, data).await)
        }
        Err(error) => Err((error, data)),
    }
}

/// Our bulk connection to `peer`, dialled if there is none.
async fn bulk_link(
    shared: &Arc<Shared>,
    peer: &Arc<Peer>,
    dial_limit: Duration,
) -> Result<BulkLink, ConnectError> {
    let mut state = peer.bulk.lock().await;
    if let Some(link) = state
        .link
        .as_ref()
        .filter(|l| l.conn.close_reason().is_none())
    {
        return Ok(link.clone());
    }
    if let Some(after) = state.retry_after.filter(|after| Instant::now() < *after) {
        return Err(ConnectError::Handshake(HandshakeFailure::Other(format!(
            "bulk connection failed recently; next attempt in {:?}",
            after - Instant::now()
        ))));
    }
    let established = match handshake::dial_bulk(shared, peer.bulk_addr(), dial_limit).await {
        Ok(established) => established,
        Err(error) => {
            state.retry_after = Some(Instant::now() + BULK_RETRY_AFTER);
            return Err(error);
        }
    };
    established.expect_node(peer.id)?;
    let link = BulkLink {
        conn: established.conn,
        usage: Arc::new(Usage {
            active: AtomicUsize::new(0),
            idle_since: Mutex::new(Instant::now()),
        }),
    };
    shared.metrics.bulk_connection_opened(true);
    tokio::spawn(close_when_unused(shared.clone(), link.clone()));
    *state = BulkState {
        link: Some(link.clone()),
        retry_after: None,
    };
    Ok(link)
}

/// Whether a transfer to `peer` is under way, or a bulk connection to it being dialled.
pub(crate) fn busy(peer: &Peer) -> bool {
    match peer.bulk.try_lock() {
        Ok(state) => state
            .link
            .as_ref()
            .is_some_and(|link| link.usage.active.load(Ordering::SeqCst) > 0),
        Err(_) => true,
    }
}

/// Closes our bulk connection to `peer`, if there is one and no dial is under way.
pub(crate) fn close(peer: &Peer) {
    if let Ok(mut state) = peer.bulk.try_lock() {
        if let Some(link) = state.link.take() {
            link.conn.close(code::NORMAL.into(), b"disconnect");
        }
    }
}

/// Closes a bulk connection once no transfer has used it for the idle timeout, and counts its
/// path's losses every idle timeout and when it ends (losses show on the dialling side, which
/// sends the transfers).
async fn close_when_unused(shared: Arc<Shared>, link: BulkLink) {
    let idle = shared.config.idle_timeout;
    let mut path = quinn::PathStats::default();
    loop {
        path = shared.metrics.observe_path(path, &link.conn);
        let since = *link
            .usage
            .idle_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let in_use = link.usage.active.load(Ordering::SeqCst) > 0;
        if !in_use && since.elapsed() >= idle {
            link.conn
                .close(code::NORMAL.into(), b"bulk connection unused");
            break;
        }
        // While a transfer runs, look again in one idle timeout.
        let check = if in_use { Instant::now() } else { since } + idle;
        tokio::select! {
            _ = tokio::time::sleep_until(check) => {}
            _ = link.conn.closed() => break,
            _ = shared.stopped() => break,
        }
    }
    shared.metrics.observe_path(path, &link.conn);
}

/// Writes one transfer on a new stream and waits until the peer has received all of it.
async fn send(shared: &Shared, conn: &Connection, data: Bytes) -> Result<(), SendError> {
    let lost = |e: &dyn std::fmt::Display| SendError::ConnectionLost(e.to_string());
    let mut send: SendStream = conn.open_uni().await.map_err(|e| lost(&e))?;
    let _ = send.set_priority(priority(Channel::Bulk));
    let mut head = Vec::with_capacity(11);
    head.extend_from_slice(&StreamHeader::for_channel(Channel::Bulk).encode());
    head.extend_from_slice(&(data.len() as u64).to_be_bytes());
    send.write_all(&head).await.map_err(|e| lost(&e))?;
    let len = data.len() as u64;
    send.write_chunk(data).await.map_err(|e| lost(&e))?;
    send.finish().map_err(|e| lost(&e))?;
    match send.stopped().await {
        Ok(None) => {
            shared
                .metrics
                .traffic(Channel::Bulk, Direction::Sent, 1, len);
            Ok(())
        }
        Ok(Some(code)) => Err(SendError::ConnectionLost(format!(
            "peer stopped the transfer with code {code}"
        ))),
        Err(e) => Err(lost(&e)),
    }
}

/// Accepts a transfer stream after its header: checks the announced length, then hands the
/// stream to the application as an [`IncomingTransfer`].
pub(crate) async fn receive(shared: &Shared, from: NodeId, mut recv: RecvStream) {
    let len = match announced_len(shared, &mut recv).await {
        Ok(len) => len,
        Err(error) => return reject_stream(shared, from, Some(Channel::Bulk), &mut recv, &error),
    };
    let (batches, queue) = mpsc::channel(READ_AHEAD);
    let transfer = IncomingTransfer {
        from,
        len,
        batches: queue,
        pending: VecDeque::new(),
        ended: None,
    };
    let taken = match shared.inbox.senders() {
        Some(inbox) => inbox.transfers.try_send(transfer).is_ok(),
        None => false,
    };
    if !taken {
        let _ = recv.stop(code::UNAVAILABLE.into());
        return;
    }
    let reader = TransferReader {
        len,
        received: 0,
        recv,
        metrics: shared.metrics.clone(),
    };
    tokio::spawn(reader.pump(batches));
}

async fn announced_len(shared: &Shared, recv: &mut RecvStream) -> Result<u64, ReadError> {
    let len = read_u64(recv).await?;
    let max = shared.config.limits.bulk;
    match usize::try_from(len) {
        Ok(len) if len <= max => Ok(len as u64),
        _ => Err(FrameError::Oversized {
            len: usize::try_from(len).unwrap_or(usize::MAX),
            max,
        }
        .into()),
    }
}
