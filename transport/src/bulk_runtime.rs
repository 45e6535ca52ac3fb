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
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use quinn::{AsyncTimer, AsyncUdpSocket, Runtime, TokioRuntime};
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
    /// run on this thread.
    pub fn quinn_runtime(&self) -> Arc<dyn Runtime> {
        Arc::new(OnBulkThread {
            handle: self.handle.clone(),
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

/// quinn's tokio runtime, spawning on the bulk thread instead of the caller's runtime.
#[derive(Debug)]
struct OnBulkThread {
    handle: Handle,
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
        TokioRuntime.wrap_udp_socket(socket)
    }

    fn now(&self) -> Instant {
        TokioRuntime.now()
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
