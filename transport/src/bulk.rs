//! Bulk transfers: one unidirectional stream per transfer at the lowest priority, so a full-state
//! sync never delays urgent traffic on the same connection.
//!
//! On the wire: the stream header, the transfer's total length (u64), then that many bytes.
//! The receiver checks the length against the limit before accepting anything, and hands the
//! application a reader, so a large transfer never has to sit in memory whole.

use bytes::Bytes;
use quinn::{RecvStream, SendStream};

use foundation_core::Channel;

use crate::channel::priority;
use crate::connection::reject_stream;
use crate::endpoint::Shared;
use crate::error::SendError;
use crate::frame::{FrameError, StreamHeader};
use crate::metrics::{Direction, TransportMetrics};
use crate::peer::Live;
use crate::stream_io::{read_u64, ReadError};
use crate::wire::code;
use foundation_core::identity::NodeId;

/// Largest chunk handed to the application at once.
const CHUNK_MAX: usize = 1 << 20;

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

/// A transfer arriving from a peer.
#[derive(Debug)]
pub struct IncomingTransfer {
    /// The sender.
    pub from: NodeId,
    /// Total bytes announced.
    pub len: u64,
    received: u64,
    recv: RecvStream,
    metrics: std::sync::Arc<TransportMetrics>,
}

impl IncomingTransfer {
    /// The next chunk; `Ok(None)` once all announced bytes have arrived.
    pub async fn read_chunk(&mut self) -> Result<Option<Bytes>, TransferError> {
        let chunk = self.recv.read_chunk(CHUNK_MAX, true).await;
        match chunk.map_err(|e| TransferError::Interrupted(e.to_string()))? {
            Some(chunk) => self.account(chunk.bytes).map(Some),
            None if self.received == self.len => Ok(None),
            None => Err(TransferError::Truncated {
                received: self.received,
                expected: self.len,
            }),
        }
    }

    fn account(&mut self, chunk: Bytes) -> Result<Bytes, TransferError> {
        self.received += chunk.len() as u64;
        if self.received > self.len {
            let _ = self.recv.stop(code::TOO_LARGE.into());
            return Err(TransferError::TooLong { expected: self.len });
        }
        self.metrics
            .traffic(Channel::Bulk, Direction::Received, 0, chunk.len() as u64);
        if self.received == self.len {
            self.metrics
                .traffic(Channel::Bulk, Direction::Received, 1, 0);
        }
        Ok(chunk)
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

/// Writes one transfer on a new stream and waits until the peer has received all of it.
pub(crate) async fn send(shared: &Shared, live: &Live, data: Bytes) -> Result<(), SendError> {
    let lost = |e: &dyn std::fmt::Display| SendError::ConnectionLost(e.to_string());
    let mut send: SendStream = live.conn.open_uni().await.map_err(|e| lost(&e))?;
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
    let transfer = IncomingTransfer {
        from,
        len,
        received: 0,
        recv,
        metrics: shared.metrics.clone(),
    };
    if let Err(refused) = shared.inbox.transfers.try_send(transfer) {
        let _ = refused.into_inner().recv.stop(code::UNAVAILABLE.into());
    }
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
