//! The frames waiting to be written on one multiplexed RPC stream.
//!
//! Two ways of writing ([`Writes`]). A responder's outbox is written by whoever queues a frame,
//! under a short lock, together with every frame queued meanwhile, or, while the stream's
//! reader holds it ([`Outbox::hold`]), once the reader has taken every request of one read:
//! handlers that answer without waiting answer there, so a batch's answers share packets
//! without a task to wake. Only when the stream's flow control blocks a write does a writer task take over,
//! waiting for the window while frames keep being queued, and hand writing back once the queue
//! is empty. A caller's outbox is written only by that task, after it has let every task that
//! is ready run first: callers are separate tasks, and each write wakes quinn's connection
//! driver, which tokio runs next, so callers writing their own frames sent a datagram per
//! request (64 callers woken by one batch of answers sent 64 datagrams, each received and
//! answered on its own). The same task finishes the stream when the outbox closes.

use std::future::{poll_fn, Future};
use std::pin::pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use bytes::{Bytes, BytesMut};
use quinn::{SendStream, WriteError};
use tokio::sync::Notify;
use tracing::debug;

use super::codec::MuxFrame;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Frames waiting to be written on one stream.
#[derive(Debug)]
pub(crate) struct Outbox {
    writes: Writes,
    state: Mutex<State>,
    /// Held while writing; a caller that finds it held leaves its frame to the holder.
    send: Mutex<SendStream>,
    /// Wakes the writer task: a write blocked, or the outbox closed.
    wake_writer: Notify,
    /// Wakes whoever waits in [`Outbox::room`]: queued bytes were written, or the outbox closed.
    written: Notify,
}

/// Who writes queued frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Writes {
    /// Whoever queues a frame writes what is queued (a responder: its frames come in runs).
    ByPusher,
    /// The writer task, once every ready task has queued its frame (callers: one task each).
    Coalesced,
}

#[derive(Debug, Default)]
struct State {
    buffer: BytesMut,
    closed: bool,
    /// The writer task owns writing (a write blocked, or closing); callers only queue.
    handed_off: bool,
    /// The writer task has been told about frames it has not taken yet (`Coalesced`).
    flush_pending: bool,
    /// A batch is being answered: frames wait for its end ([`Outbox::hold`], `ByPusher`).
    held: bool,
    /// Bytes the writer task took from `buffer` and is still writing.
    writing: usize,
}

/// What one attempt to write a batch without waiting came to.
enum Attempt {
    Done,
    /// Flow control stopped it; the bytes not written.
    Blocked(Bytes),
    Failed(WriteError),
}

impl Outbox {
    /// An outbox writing to `send`, with `first` (a stream header, or nothing) queued ahead of
    /// every frame; its writer task runs until the outbox closes.
    pub(crate) fn start(send: SendStream, first: &[u8], writes: Writes) -> Arc<Outbox> {
        let outbox = Arc::new(Outbox {
            writes,
            state: Mutex::new(State {
                buffer: BytesMut::from(first),
                ..State::default()
            }),
            send: Mutex::new(send),
            wake_writer: Notify::new(),
            written: Notify::new(),
        });
        tokio::spawn(outbox.clone().writer());
        outbox
    }

    /// Queues one frame; by the pusher, writes what is queued unless someone else is writing or
    /// the outbox is held, coalesced, tells the writer task. `false` once the stream is closed.
    pub(crate) fn push(&self, frame: &MuxFrame) -> bool {
        // Whether to write now (by the pusher) or to tell the writer task (coalesced).
        let act = {
            let mut state = lock(&self.state);
            if state.closed {
                return false;
            }
            frame.encode(&mut state.buffer);
            match self.writes {
                Writes::ByPusher => !state.held,
                Writes::Coalesced => !std::mem::replace(&mut state.flush_pending, true),
            }
        };
        match (self.writes, act) {
            (Writes::ByPusher, true) => self.flush(),
            (Writes::Coalesced, true) => self.wake_writer.notify_one(),
            (_, false) => {}
        }
        true
    }

    /// Until the guard drops, frames queued by the pusher wait and then leave in one write: the
    /// stream's reader holds its outbox while it answers the requests of one read.
    pub(crate) fn hold(&self) -> Held<'_> {
        lock(&self.state).held = true;
        Held(self)
    }

    /// No more frames: the writer task sends what is queued and finishes the stream.
    /// Drops what is queued and resets the stream with `code`: its peer takes nothing more.
    pub(crate) fn reset(&self, code: u32) {
        lock(&self.state).buffer.clear();
        let _ = lock(&self.send).reset(quinn::VarInt::from_u32(code));
        self.close();
    }

    pub(crate) fn close(&self) {
        lock(&self.state).closed = true;
        self.wake_writer.notify_one();
        self.written.notify_waiters();
    }

    /// Whether `limit` bytes or more are queued and not yet taken by the stream. Frames are
    /// queued whatever the stream's flow control says, so a reader that answers a peer waits for
    /// [`room`](Self::room) before reading more from it while this holds: a peer that sends
    /// requests and never reads the answers then meets flow control itself, instead of growing
    /// this queue without end.
    pub(crate) fn backed_up(&self, limit: usize) -> bool {
        let state = lock(&self.state);
        !state.closed && state.buffer.len() + state.writing >= limit
    }

    /// Waits until the outbox is no longer [`backed_up`](Self::backed_up) past `limit`.
    pub(crate) async fn room(&self, limit: usize) {
        loop {
            let mut written = pin!(self.written.notified());
            written.as_mut().enable();
            if !self.backed_up(limit) {
                return;
            }
            written.await;
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        lock(&self.state).closed
    }

    /// Writes what is queued until the queue is empty, a write blocks, or another caller holds
    /// the stream (that caller looks at the queue again after letting go of it).
    fn flush(&self) {
        loop {
            let Ok(mut send) = self.send.try_lock() else {
                return;
            };
            while let Some(batch) = self.take_batch() {
                match write_now(&mut send, batch) {
                    Attempt::Done => self.written.notify_waiters(),
                    Attempt::Blocked(rest) => return self.hand_off(rest),
                    Attempt::Failed(error) => {
                        debug!(%error, "rpc stream write failed");
                        return self.close();
                    }
                }
            }
            drop(send);
            let state = lock(&self.state);
            if state.buffer.is_empty() || state.handed_off {
                return;
            }
        }
    }

    /// The queued bytes, unless the writer task owns writing or nothing is queued.
    fn take_batch(&self) -> Option<Bytes> {
        let mut state = lock(&self.state);
        if state.handed_off || state.buffer.is_empty() {
            return None;
        }
        Some(state.buffer.split().freeze())
    }

    /// Puts `rest` back ahead of what was queued since, and lets the writer task wait for the
    /// window.
    fn hand_off(&self, rest: Bytes) {
        {
            let mut state = lock(&self.state);
            let mut buffer = BytesMut::with_capacity(rest.len() + state.buffer.len());
            buffer.extend_from_slice(&rest);
            buffer.extend_from_slice(&state.buffer);
            state.buffer = buffer;
            state.handed_off = true;
        }
        self.wake_writer.notify_one();
    }

    /// The writer task: writes while callers may not (a blocked write, closing), and finishes
    /// the stream once the outbox is closed and empty.
    async fn writer(self: Arc<Self>) {
        loop {
            self.wake_writer.notified().await;
            if self.writes == Writes::Coalesced {
                // Every task already woken (callers answered by the same batch) queues its
                // request before this one writes them all.
                tokio::task::yield_now().await;
            }
            let closing = {
                let mut state = lock(&self.state);
                state.handed_off |= state.closed;
                state.closed
            };
            if !self.drain().await {
                self.close();
                break;
            }
            if closing {
                break;
            }
        }
        let _ = lock(&self.send).finish();
    }

    /// Writes what is queued, waiting for the window, until the queue is empty; hands writing
    /// back to the callers unless closing. `false` if a write failed.
    async fn drain(&self) -> bool {
        loop {
            let batch = {
                let mut state = lock(&self.state);
                state.flush_pending = false;
                if state.buffer.is_empty() {
                    state.handed_off = state.closed;
                    return true;
                }
                let batch = state.buffer.split().freeze();
                state.writing = batch.len();
                batch
            };
            let written = self.write_all(batch).await;
            lock(&self.state).writing = 0;
            self.written.notify_waiters();
            if let Err(error) = written {
                debug!(%error, "rpc stream write failed");
                return false;
            }
        }
    }

    /// Writes `batch`, waiting for flow control, holding the stream only while polling.
    async fn write_all(&self, batch: Bytes) -> Result<(), WriteError> {
        let mut bufs = [batch];
        while !bufs[0].is_empty() {
            poll_fn(|cx| {
                let mut send = lock(&self.send);
                let write = pin!(send.write_chunks(&mut bufs));
                write.poll(cx)
            })
            .await?;
        }
        Ok(())
    }
}

/// An [`Outbox::hold`]: dropped, it writes what was queued meanwhile.
pub(crate) struct Held<'a>(&'a Outbox);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        lock(&self.0.state).held = false;
        self.0.flush();
    }
}

/// Writes `batch` if the stream takes it without waiting.
fn write_now(send: &mut SendStream, batch: Bytes) -> Attempt {
    let mut bufs = [batch];
    let mut cx = Context::from_waker(Waker::noop());
    while !bufs[0].is_empty() {
        let polled = pin!(send.write_chunks(&mut bufs)).poll(&mut cx);
        match polled {
            Poll::Ready(Ok(_)) => {}
            Poll::Ready(Err(error)) => return Attempt::Failed(error),
            Poll::Pending => {
                let [rest] = bufs;
                return Attempt::Blocked(rest);
            }
        }
    }
    Attempt::Done
}
