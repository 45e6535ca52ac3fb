//! The runtime's store: a committer thread in front of a [`Disk`], so that concurrent writers
//! share one sync (group commit) and the async driver never blocks on the disk.
//!
//! ```text
//!   submit(batch) ──▶ queue ──▶ committer: write every queued batch, then one sync ──▶ receipts
//! ```
//!
//! Batches are written in the order they were submitted and each gets a sequence number; a
//! receipt completes when its batch is done under the [`SyncPolicy`], so "durable up to `seq`"
//! always covers every batch before it.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::policy::SyncPolicy;
use super::Batch;
use super::Disk;
use super::Loaded;
use super::StorageError;

/// Batches that may wait for the disk at once; more are refused with
/// [`StorageError::Overloaded`] rather than queued without bound.
pub const QUEUE_BATCHES_MAX: usize = 16_384;
/// Most batches folded into one sync, so one group's latency stays bounded when the queue is
/// long.
pub const GROUP_BATCHES_MAX: usize = 4_096;
/// After a full disk, how long the store waits before trying the disk again.
pub const DISK_FULL_RETRY: Duration = Duration::from_secs(1);

/// A batch that is done under the store's sync policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Persisted {
    /// The batch's sequence number: every batch up to it is done too.
    pub seq: u64,
    /// Whether it is synced to the device (always so under [`SyncPolicy::Always`]); otherwise it
    /// is with the operating system and survives a crash of this process, not of the machine.
    pub synced: bool,
}

/// Completes when a submitted batch is done. Await it from async code, or [`Receipt::wait`]
/// from a plain thread.
#[derive(Debug)]
pub struct Receipt {
    seq: u64,
    rx: oneshot::Receiver<Result<Persisted, StorageError>>,
}

impl Receipt {
    /// The batch's sequence number.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Blocks until the batch is done. Not from inside an async runtime: await it there.
    pub fn wait(self) -> Result<Persisted, StorageError> {
        self.rx.blocking_recv().unwrap_or(Err(StorageError::Closed))
    }
}

impl std::future::Future for Receipt {
    type Output = Result<Persisted, StorageError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.rx)
            .poll(cx)
            .map(|result| result.unwrap_or(Err(StorageError::Closed)))
    }
}

enum Job {
    Write {
        seq: u64,
        batch: Batch,
        reply: oneshot::Sender<Result<Persisted, StorageError>>,
    },
    Sync {
        seq: u64,
        reply: oneshot::Sender<Result<Persisted, StorageError>>,
    },
}

/// Hands out sequence numbers in queue order.
struct Submitter {
    next_seq: u64,
    tx: SyncSender<Job>,
    /// A batch was refused here (the queue was full), so the committer never saw it fail:
    /// ordinary batches are refused with this error until a rewrite is queued, as the
    /// committer refuses them after a failed write.
    refused: Option<StorageError>,
}

impl Submitter {
    fn enqueue(
        &mut self,
        job: impl FnOnce(u64, oneshot::Sender<Result<Persisted, StorageError>>) -> Job,
    ) -> Result<Receipt, StorageError> {
        let (reply, rx) = oneshot::channel();
        let seq = self.next_seq;
        match self.tx.try_send(job(seq, reply)) {
            Ok(()) => {
                self.next_seq += 1;
                Ok(Receipt { seq, rx })
            }
            Err(TrySendError::Full(_)) => Err(StorageError::Overloaded {
                pending: QUEUE_BATCHES_MAX,
            }),
            Err(TrySendError::Disconnected(_)) => Err(StorageError::Closed),
        }
    }

    /// Queues a batch, unless an earlier one was refused and this is not the rewrite.
    fn write(&mut self, batch: Batch) -> Result<Receipt, StorageError> {
        let rewrite = batch.is_rewrite();
        if let Some(error) = self.refused.as_ref().filter(|_| !rewrite) {
            return Err(error.clone());
        }
        let queued = self.enqueue(|seq, reply| Job::Write { seq, batch, reply });
        match &queued {
            Ok(_) if rewrite => self.refused = None,
            Ok(_) => {}
            Err(error) => self.refused = Some(error.clone()),
        }
        queued
    }
}

/// A durable store for one node: see the module documentation.
pub struct Store<D: Disk> {
    disk: Arc<Mutex<D>>,
    submitter: Mutex<Option<Submitter>>,
    committer: Option<JoinHandle<()>>,
    policy: SyncPolicy,
}

impl<D: Disk> Store<D> {
    /// Starts the committer thread over `disk`.
    pub fn new(disk: D, policy: SyncPolicy) -> Result<Self, StorageError> {
        Self::with_retry(disk, policy, DISK_FULL_RETRY)
    }

    /// As [`Store::new`], trying the disk again `retry` after it was full (tests use a short one).
    pub fn with_retry(disk: D, policy: SyncPolicy, retry: Duration) -> Result<Self, StorageError> {
        let disk = Arc::new(Mutex::new(disk));
        let (tx, rx) = mpsc::sync_channel(QUEUE_BATCHES_MAX);
        let committer = Committer {
            disk: Arc::clone(&disk),
            rx,
            policy,
            retry,
            refusing: None,
            failed: None,
            next_sync: None,
        };
        let handle = std::thread::Builder::new()
            .name("foundation-store".into())
            .spawn(move || committer.run())
            .map_err(|e| StorageError::Store {
                path: "store".into(),
                message: format!("cannot start the committer thread: {e}"),
            })?;
        Ok(Self {
            disk,
            submitter: Mutex::new(Some(Submitter {
                next_seq: 1,
                tx,
                refused: None,
            })),
            committer: Some(handle),
            policy,
        })
    }

    /// The sync policy.
    pub fn policy(&self) -> SyncPolicy {
        self.policy
    }

    /// Queues `batch`; the receipt completes when it is done under the policy. Never blocks:
    /// a full queue is an error, and so is every later batch until a rewrite of the whole
    /// state ([`Batch::is_rewrite`]) is queued, as after a failed write.
    pub fn submit(&self, batch: Batch) -> Result<Receipt, StorageError> {
        let mut guard = lock(&self.submitter);
        guard.as_mut().ok_or(StorageError::Closed)?.write(batch)
    }

    /// Syncs everything submitted so far, whatever the policy (before a clean shutdown, or
    /// where a caller needs one write durable under `interval` or `never`).
    pub fn sync(&self) -> Result<Receipt, StorageError> {
        let mut guard = lock(&self.submitter);
        let submitter = guard.as_mut().ok_or(StorageError::Closed)?;
        submitter.enqueue(|seq, reply| Job::Sync { seq, reply })
    }

    /// Reads everything stored, as of the batches written so far. Works while writes are
    /// refused (a full disk): reads go on.
    pub fn load(&self) -> Result<Loaded, StorageError> {
        lock(&self.disk).load()
    }

    /// Runs `f` on the disk, between groups (its counters, a fault in tests).
    pub fn with_disk<R>(&self, f: impl FnOnce(&mut D) -> R) -> R {
        f(&mut lock(&self.disk))
    }

    /// Writes what is queued, syncs, and stops the committer.
    pub fn close(mut self) -> Result<(), StorageError> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), StorageError> {
        let Some(submitter) = lock(&self.submitter).take() else {
            return Ok(());
        };
        drop(submitter);
        if let Some(handle) = self.committer.take() {
            let _ = handle.join();
        }
        lock(&self.disk).sync()
    }
}

impl<D: Disk> Drop for Store<D> {
    fn drop(&mut self) {
        if let Err(error) = self.shutdown() {
            tracing::warn!(%error, "the store could not sync while closing");
        }
    }
}

/// A poisoned lock means a thread panicked while holding it; the data (a disk handle, a
/// sender) is still usable, and storage must not turn one panic into many.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The committer thread's state.
struct Committer<D: Disk> {
    disk: Arc<Mutex<D>>,
    rx: Receiver<Job>,
    policy: SyncPolicy,
    retry: Duration,
    /// Since when writes have been refused because the disk was full, and why.
    refusing: Option<(Instant, StorageError)>,
    /// A batch failed: every later batch is refused with this error until a rewrite of the
    /// whole state lands ([`Batch::is_rewrite`]), whatever the disk could take meanwhile.
    failed: Option<StorageError>,
    /// Under `interval`: when the next sync is due, if anything is unsynced.
    next_sync: Option<Instant>,
}

/// A reply owed once the group is done.
type Reply = (u64, oneshot::Sender<Result<Persisted, StorageError>>);

impl<D: Disk> Committer<D> {
    fn run(mut self) {
        while let Some(first) = self.next_job() {
            let mut group = vec![first];
            while group.len() < GROUP_BATCHES_MAX {
                match self.rx.try_recv() {
                    Ok(job) => group.push(job),
                    Err(_) => break,
                }
            }
            self.commit(group);
        }
    }

    /// The next job; under `interval`, syncs when one is due while waiting. `None`: closed.
    fn next_job(&mut self) -> Option<Job> {
        loop {
            let Some(due) = self.next_sync else {
                return self.rx.recv().ok();
            };
            let wait = due.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(wait) {
                Ok(job) => return Some(job),
                Err(RecvTimeoutError::Timeout) => self.sync_due(),
                Err(RecvTimeoutError::Disconnected) => return None,
            }
        }
    }

    fn sync_due(&mut self) {
        self.next_sync = None;
        if let Err(error) = lock(&self.disk).sync() {
            tracing::warn!(%error, "periodic sync failed");
        }
    }

    /// Writes every batch of the group, then syncs or flushes once, then replies.
    fn commit(&mut self, group: Vec<Job>) {
        let shared = Arc::clone(&self.disk);
        let mut disk = lock(&shared);
        let mut written: Vec<Reply> = Vec::with_capacity(group.len());
        let mut force_sync = false;
        for job in group {
            match job {
                Job::Write { seq, batch, reply } => match self.write(&mut *disk, &batch) {
                    Ok(()) => written.push((seq, reply)),
                    Err(error) => {
                        let _ = reply.send(Err(error));
                    }
                },
                Job::Sync { seq, reply } => {
                    force_sync = true;
                    written.push((seq, reply));
                }
            }
        }
        let synced = force_sync || self.policy == SyncPolicy::Always;
        let outcome = if synced { disk.sync() } else { disk.flush() };
        drop(disk);
        self.after_commit(synced, &outcome);
        for (seq, reply) in written {
            let _ = reply.send(outcome.clone().map(|()| Persisted { seq, synced }));
        }
    }

    /// One batch, unless an earlier one failed and this is not the rewrite, or writes are being
    /// refused after a full disk.
    fn write(&mut self, disk: &mut D, batch: &Batch) -> Result<(), StorageError> {
        match &self.failed {
            Some(error) if !batch.is_rewrite() => return Err(error.clone()),
            _ => {}
        }
        let result = self.write_through(disk, batch);
        match &result {
            Ok(()) if batch.is_rewrite() => self.failed = None,
            Ok(()) => {}
            Err(error) => self.failed = Some(error.clone()),
        }
        result
    }

    fn write_through(&mut self, disk: &mut D, batch: &Batch) -> Result<(), StorageError> {
        if let Some((since, error)) = &self.refusing {
            if since.elapsed() < self.retry {
                return Err(error.clone());
            }
            if let Err(error) = disk.recover_writes() {
                self.refusing = Some((Instant::now(), error.clone()));
                return Err(error);
            }
            tracing::info!("the disk has room again: writes resume");
            self.refusing = None;
        }
        let result = disk.write(batch);
        if let Err(error) = &result {
            self.note_failure(error);
        }
        result
    }

    fn after_commit(&mut self, synced: bool, outcome: &Result<(), StorageError>) {
        match outcome {
            Err(error) => {
                self.failed = Some(error.clone());
                self.note_failure(error);
            }
            Ok(()) if synced => self.next_sync = None,
            Ok(()) => {
                if let SyncPolicy::Interval(every) = self.policy {
                    self.next_sync.get_or_insert_with(|| Instant::now() + every);
                }
            }
        }
    }

    fn note_failure(&mut self, error: &StorageError) {
        if error.is_disk_full() && self.refusing.is_none() {
            tracing::error!(%error, "writes refused");
            self.refusing = Some((Instant::now(), error.clone()));
        }
    }
}
