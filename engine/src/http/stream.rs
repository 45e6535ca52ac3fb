//! Streaming answers: a route hands the server a channel, and every chunk sent into it goes to
//! the client at once as a chunk of a chunked HTTP/1.1 response (newline-delimited JSON by
//! convention). The client going away drops the receiver, so the producer's next send fails
//! and it stops.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame};
use serde_json::Value;
use tokio::sync::{mpsc, watch};

/// Chunks queued for a slow client before the producer waits.
pub const STREAM_BUFFER: usize = 256;

/// The size of the pieces a download is sent in: the connection holds a few of them, never a
/// copy of the whole.
const PIECE_BYTES: usize = 64 << 10;

/// A response body fed by [`forward`]. It ends when the producer ends (its sender is gone, or
/// the server shuts down), and fails when the client stopped taking it, so that the client
/// sees a broken answer rather than a whole-looking short one.
pub(crate) struct ChannelBody {
    chunks: mpsc::Receiver<Bytes>,
    cut: Arc<AtomicBool>,
}

/// Why a body was cut short: its client stopped reading.
#[derive(Debug, thiserror::Error)]
#[error("the client stopped reading the answer")]
pub(crate) struct Stalled;

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Stalled;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Stalled>>> {
        self.chunks.poll_recv(cx).map(|chunk| match chunk {
            Some(bytes) => Some(Ok(Frame::data(bytes))),
            None if self.cut.load(Ordering::SeqCst) => Some(Err(Stalled)),
            None => None,
        })
    }
}

/// A body of the chunks of `source` until the source ends, the server shuts down, or the
/// client leaves a chunk untaken for `stall`. Without the first two bounds every open stream
/// would hold a graceful shutdown for its whole grace period; without the last, a client that
/// stops reading would hold its stream (and `held`: a permit, its connection's busy mark)
/// until the node stops. `held` lasts as long as the body is fed.
pub(crate) fn forward<Held: Send + 'static>(
    mut source: mpsc::Receiver<Bytes>,
    mut shutdown: watch::Receiver<bool>,
    stall: Duration,
    held: Held,
) -> ChannelBody {
    let (tx, chunks) = mpsc::channel(1);
    let cut = Arc::new(AtomicBool::new(false));
    let cutting = cut.clone();
    tokio::spawn(async move {
        let _held = held;
        loop {
            let chunk = tokio::select! {
                chunk = source.recv() => chunk,
                _ = shutdown.wait_for(|stop| *stop) => None,
                // A client that leaves a quiet stream is heard of at once, not at the next
                // event: its stream's permit comes back.
                () = tx.closed() => None,
            };
            let Some(chunk) = chunk else { return };
            match tokio::time::timeout(stall, tx.send(chunk)).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return,
                Err(_) => {
                    tracing::debug!(?stall, "HTTP answer cut: its client stopped reading");
                    cutting.store(true, Ordering::SeqCst);
                    return;
                }
            }
        }
    });
    ChannelBody { chunks, cut }
}

/// `bytes` as a source for [`forward`], in pieces copied out one at a time, so that the whole
/// is dropped once its last piece is taken (a piece that shared the whole's buffer would keep
/// it alive in the connection) or the body is dropped.
pub(crate) fn pieces(bytes: Bytes) -> mpsc::Receiver<Bytes> {
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(async move {
        for piece in bytes.chunks(PIECE_BYTES) {
            if tx.send(Bytes::copy_from_slice(piece)).await.is_err() {
                return;
            }
        }
    });
    rx
}

/// The sending side of a stream route's answer: one JSON document per line.
#[derive(Clone, Debug)]
pub struct LineSender(mpsc::Sender<Bytes>);

impl LineSender {
    /// A sender and the receiver a stream route returns to the server.
    pub fn channel() -> (Self, mpsc::Receiver<Bytes>) {
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        (Self(tx), rx)
    }

    /// Sends `value` as one line; false once the client has gone.
    pub async fn send(&self, value: &Value) -> bool {
        let mut line = value.to_string();
        line.push('\n');
        self.0.send(Bytes::from(line)).await.is_ok()
    }

    /// Resolves when the client has gone, so a producer that has nothing to send notices.
    pub async fn closed(&self) {
        self.0.closed().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    /// A body fed from `source`, and the server's shutdown switch, which must outlive it.
    fn forwarded(source: mpsc::Receiver<Bytes>) -> (ChannelBody, watch::Sender<bool>) {
        let (stop, shutdown) = watch::channel(false);
        (forward(source, shutdown, Duration::from_secs(5), ()), stop)
    }

    #[tokio::test]
    async fn lines_arrive_as_chunks_and_the_body_ends_with_the_senders() {
        let (sender, receiver) = LineSender::channel();
        let (body, _stop) = forwarded(receiver);
        assert!(sender.send(&serde_json::json!({"a": 1})).await);
        drop(sender);
        let collected = body.collect().await.expect("whole").to_bytes();
        assert_eq!(&collected[..], b"{\"a\":1}\n");
    }

    #[tokio::test]
    async fn bytes_sent_in_pieces_arrive_whole() {
        let whole = Bytes::from(
            (0..PIECE_BYTES * 2 + 7)
                .map(|i| i as u8)
                .collect::<Vec<_>>(),
        );
        let (body, _stop) = forwarded(pieces(whole.clone()));
        let arrived = body.collect().await.expect("whole").to_bytes();
        assert!(
            arrived == whole,
            "{} bytes of {}",
            arrived.len(),
            whole.len()
        );
    }

    #[tokio::test]
    async fn a_body_its_client_stops_taking_fails() {
        let (_stop, shutdown) = watch::channel(false);
        let mut body = forward(
            pieces(Bytes::from(vec![0; PIECE_BYTES * 4])),
            shutdown,
            Duration::from_millis(50),
            (),
        );
        // Take nothing until the stall has passed, then read on: the rest is cut.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let failed = loop {
            match body.frame().await {
                Some(Ok(_)) => continue,
                Some(Err(_)) => break true,
                None => break false,
            }
        };
        assert!(failed, "the body ended as if whole");
    }

    /// A client that leaves a stream with nothing to send gives back what the stream held at
    /// once; it was held until the next event, or the node's stop (review).
    #[tokio::test]
    async fn a_client_that_leaves_a_quiet_stream_frees_it_at_once() {
        let (_stop, shutdown) = watch::channel(false);
        let (_quiet, source) = mpsc::channel::<Bytes>(1);
        let (held, released) = tokio::sync::oneshot::channel::<()>();
        let body = forward(source, shutdown, Duration::from_secs(5), held);
        drop(body);
        let freed = tokio::time::timeout(Duration::from_secs(5), released).await;
        assert!(freed.is_ok(), "the stream still held its permit");
    }

    #[tokio::test]
    async fn a_gone_client_fails_the_next_send() {
        let (sender, receiver) = LineSender::channel();
        drop(receiver);
        assert!(!sender.send(&Value::Null).await);
        sender.closed().await;
    }
}
