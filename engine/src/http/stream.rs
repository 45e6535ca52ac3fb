//! Streaming answers: a route hands the server a channel, and every chunk sent into it goes to
//! the client at once as a chunk of a chunked HTTP/1.1 response (newline-delimited JSON by
//! convention). The client going away drops the receiver, so the producer's next send fails
//! and it stops.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame};
use serde_json::Value;
use tokio::sync::mpsc;

/// Chunks queued for a slow client before the producer waits.
pub const STREAM_BUFFER: usize = 256;

/// A response body fed by a channel; it ends when every sender is gone.
pub(crate) struct ChannelBody(pub(crate) mpsc::Receiver<Bytes>);

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|b| Ok(Frame::data(b))))
    }
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

    #[tokio::test]
    async fn lines_arrive_as_chunks_and_the_body_ends_with_the_senders() {
        let (sender, receiver) = LineSender::channel();
        let body = ChannelBody(receiver);
        assert!(sender.send(&serde_json::json!({"a": 1})).await);
        drop(sender);
        let collected = body.collect().await.expect("infallible").to_bytes();
        assert_eq!(&collected[..], b"{\"a\":1}\n");
    }

    #[tokio::test]
    async fn a_gone_client_fails_the_next_send() {
        let (sender, receiver) = LineSender::channel();
        drop(receiver);
        assert!(!sender.send(&Value::Null).await);
        sender.closed().await;
    }
}
