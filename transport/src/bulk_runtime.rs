//! The thread that does all of a node's bulk work: its bulk endpoint's socket, the QUIC
//! connection drivers (packet encryption, decryption, acknowledgements) of its bulk connections,
//! and the tasks that write and read transfers.
//!
//! Sharing the application's tokio workers, a saturating transfer keeps those workers busy with
//! packet processing, and an urgent message's tasks wait in the same run queues behind it: tokio
//! has no priorities. On a thread of its own, bulk work competes with urgent work only in the
//! kernel's scheduler, which runs a thread woken by an urgent packet ahead of one that has been
//! busy, and the thread can be given a lower priority still (`bulk_thread_nice`).

use std::future::Future;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncTimer, AsyncUdpSocket, Runtime, TokioRuntime, UdpPoller};
use tokio::runtime::Handle;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tracing::debug;

/// A current-thread tokio runtime on a thread of its own, stopped when this is dropped.
#[derive(Debug)]
pub(crate) struct BulkThread {
    handle: Handle,
    _stop: oneshot::Sender<()>,
}

impl BulkThread {
    /// Starts the thread, with its scheduling priority lowered by `nice` (0: unchanged).
    pub fn start(nice: i32) -> io::Result<BulkThread> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("foundation-bulk".into())
            .spawn(move || {
                lower_priority(nice);
                runtime.block_on(async {
                    let _ = stopped.await;
                });
            })?;
        Ok(BulkThread {
            handle,
            _stop: stop,
        })
    }

    /// The runtime to hand to quinn, so that the drivers of the endpoint and its connections
    /// run on this thread; `max_payload` is the endpoint's largest UDP payload.
    pub fn quinn_runtime(&self, max_payload: u16) -> Arc<dyn Runtime> {
        Arc::new(OnBulkThread {
            handle: self.handle.clone(),
            max_payload: usize::from(max_payload),
        })
    }

    /// Runs `task` on this thread until it ends or the thread stops.
    pub fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.handle.spawn(task);
    }

    /// Runs `task` on this thread; dropping the returned guard aborts it.
    pub fn run<F>(&self, task: F) -> Running<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        Running(self.handle.spawn(task))
    }

    /// Enters the thread's runtime, for quinn calls that register a socket with its reactor.
    pub fn enter(&self) -> tokio::runtime::EnterGuard<'_> {
        self.handle.enter()
    }
}

/// A task on the bulk thread, aborted when dropped (a caller that gave up — a deadline, a
/// cancelled future — takes its transfer with it).
pub(crate) struct Running<T>(JoinHandle<T>);

impl<T> Running<T> {
    /// The task's result; `None` if it panicked or the thread stopped.
    pub async fn result(mut self) -> Option<T> {
        (&mut self.0).await.ok()
    }
}

impl<T> Drop for Running<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// quinn's tokio runtime, spawning on the bulk thread instead of the caller's runtime, with
/// its sockets wrapped in [`BulkSocket`].
#[derive(Debug)]
struct OnBulkThread {
    handle: Handle,
    max_payload: usize,
}

impl Runtime for OnBulkThread {
    fn new_timer(&self, i: Instant) -> Pin<Box<dyn AsyncTimer>> {
        let _on = self.handle.enter();
        TokioRuntime.new_timer(i)
    }

    fn spawn(&self, future: Pin<Box<dyn Future<Output = ()> + Send>>) {
        self.handle.spawn(future);
    }

    fn wrap_udp_socket(&self, socket: std::net::UdpSocket) -> io::Result<Arc<dyn AsyncUdpSocket>> {
        let _on = self.handle.enter();
        Ok(Arc::new(BulkSocket {
            inner: TokioRuntime.wrap_udp_socket(socket)?,
            max_payload: self.max_payload,
        }))
    }

    fn now(&self) -> Instant {
        TokioRuntime.now()
    }
}

/// The bulk endpoint's UDP socket: quinn's, with each send kept within what one `sendmsg` may
/// carry.
///
/// quinn batches up to ten datagrams of the path MTU into one segmentation-offload (GSO) send,
/// and Linux refuses a send above 64 KiB with `EMSGSIZE`, which quinn-udp drops silently (it
/// expects that error only from MTU probes). With the larger datagrams bulk connections probe
/// for ([`TransportConfig::bulk_max_udp_payload`](crate::TransportConfig)) ten of them exceed
/// it, so a batch is split here into sends of at most 64 KiB. quinn also sizes its receive
/// buffer as payload × segments per receive (64 with GRO) × 32: the segments reported here keep
/// each receive's room at what quinn's default 1472-byte payload gets, so a larger payload does
/// not multiply that buffer (2 MiB → 32 MiB at 16 KiB).
#[derive(Debug)]
struct BulkSocket {
    inner: Arc<dyn AsyncUdpSocket>,
    max_payload: usize,
}

/// Largest UDP payload of one send (IPv4's 16-bit length, less the IP and UDP headers).
const MAX_SEND: usize = 65_507;
/// Room for one coalesced receive with quinn's defaults: 64 segments of 1472 bytes.
const RECEIVE_ROOM: usize = 64 * 1472;

impl AsyncUdpSocket for BulkSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        self.inner.clone().create_io_poller()
    }

    fn try_send(&self, transmit: &Transmit) -> io::Result<()> {
        let segment = match transmit.segment_size {
            Some(segment) if transmit.contents.len() > MAX_SEND => segment,
            _ => return self.inner.try_send(transmit),
        };
        // If a later part would block, quinn sends the whole batch again: the peer discards the
        // packets it already has, and nothing is lost.
        for part in transmit
            .contents
            .chunks((MAX_SEND / segment).max(1) * segment)
        {
            self.inner.try_send(&Transmit {
                contents: part,
                segment_size: (part.len() > segment).then_some(segment),
                ..*transmit
            })?;
        }
        Ok(())
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        self.inner.poll_recv(cx, bufs, meta)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    fn max_transmit_segments(&self) -> usize {
        self.inner.max_transmit_segments()
    }

    fn max_receive_segments(&self) -> usize {
        let enough = RECEIVE_ROOM.div_ceil(self.max_payload);
        self.inner.max_receive_segments().min(enough)
    }

    fn may_fragment(&self) -> bool {
        self.inner.may_fragment()
    }
}

/// Lowers the calling thread's priority by `nice` below the priority it was created with
/// (Linux gives each thread its own nice value). Failure only costs the separation from urgent
/// work some of its strength, so it is logged, not returned.
fn lower_priority(nice: i32) {
    if nice == 0 {
        return;
    }
    #[cfg(target_os = "linux")]
    {
        // SAFETY: errno is thread-local; nice(2) changes only the calling thread's nice value on
        // Linux, and -1 is an error only when errno says so.
        let failed = unsafe {
            *libc::__errno_location() = 0;
            libc::nice(nice) == -1 && *libc::__errno_location() != 0
        };
        if failed {
            debug!(nice, error = %io::Error::last_os_error(), "bulk thread priority unchanged");
        }
    }
    #[cfg(not(target_os = "linux"))]
    debug!(nice, "bulk thread priority is only lowered on Linux");
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, UdpSocket};
    use std::time::Duration;

    #[test]
    fn a_batch_larger_than_one_send_arrives_whole() {
        let thread = BulkThread::start(0).expect("bulk thread");
        let bound = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
        let socket = thread
            .quinn_runtime(16 << 10)
            .wrap_udp_socket(bound)
            .expect("wrap");
        if socket.max_transmit_segments() < 2 {
            // Without segmentation offload quinn sends one datagram at a time: nothing to split.
            return;
        }
        let peer = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
        peer.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        // Six datagrams of 12,000 bytes: 72,000 bytes, more than one sendmsg may carry.
        let (segment, count) = (12_000, 6);
        let contents: Vec<u8> = (0..segment * count).map(|i| (i / segment) as u8).collect();
        let transmit = Transmit {
            destination: peer.local_addr().expect("addr"),
            ecn: None,
            contents: &contents,
            segment_size: Some(segment),
            src_ip: None,
        };
        // The socket counts as writable once the bulk thread's reactor has seen it so.
        let mut sent = socket.try_send(&transmit);
        for _ in 0..100 {
            match &sent {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(10));
                    sent = socket.try_send(&transmit);
                }
                _ => break,
            }
        }
        sent.expect("send");
        let mut buf = vec![0u8; 65_536];
        for i in 0..count {
            let n = peer.recv(&mut buf).expect("datagram");
            assert_eq!((n, buf[0]), (segment, i as u8));
        }
    }
}
