//! What can go wrong with durable storage, each error saying what to do about it.

use std::io;
use std::path::{Path, PathBuf};

/// A storage operation that failed. `Clone`, because one failed sync fails every write that
/// was waiting on it.
///
/// Whether state changed: a write whose receipt carries an error may or may not be on disk
/// (the failure may have come after the bytes were written); merging is idempotent, so the
/// replication layer can simply retry or let anti-entropy settle it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    /// The disk (or the volume's quota) is full. Writes are refused until space is freed; reads
    /// and everything in memory go on, and the store retries on its own.
    #[error(
        "disk full writing {path}: writes are refused until space is freed (the node keeps \
         serving reads from memory and retries the disk by itself); free space on that volume \
         or move --data-dir to a larger one"
    )]
    DiskFull {
        /// The store that refused the write.
        path: PathBuf,
    },
    /// Another process holds the store open.
    #[error(
        "data directory {path} is in use by another process: stop that node, or give this one \
         its own --data-dir"
    )]
    Locked {
        /// The store directory.
        path: PathBuf,
    },
    /// An operating-system error other than a full disk.
    #[error(
        "cannot {op} {path}: {message}; check that the path is a directory this user can write"
    )]
    Io {
        /// What was being done (`"create"`, `"open"`, `"write"`, `"sync"`, `"read"`).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The kind of I/O error, for callers that branch on it.
        kind: io::ErrorKind,
        /// The operating system's message.
        message: String,
    },
    /// The store was written by a version of its format this build cannot read.
    #[error(
        "{path} holds a store format this version cannot read ({detail}): run the version \
         that wrote it, or move the directory aside to start this node empty (its peers will \
         refill it)"
    )]
    Incompatible {
        /// The store directory.
        path: PathBuf,
        /// What the store reported.
        detail: String,
    },
    /// The data directory's node-id file does not hold a node id.
    #[error(
        "{path} does not hold a node id ({detail}): fix it, or delete it to start as a new \
         member"
    )]
    BadNodeId {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
    /// The store refuses writes after an earlier failure it could not recover from.
    #[error(
        "the store in {path} refuses writes after an earlier failure ({cause}); restart the \
         node once the cause is fixed"
    )]
    WritesRefused {
        /// The store directory.
        path: PathBuf,
        /// The first failure.
        cause: String,
    },
    /// A key, keyspace name or value larger than the store accepts.
    #[error(
        "{what} is {bytes} bytes; at most {max} are stored: use shorter keys or smaller values"
    )]
    TooLarge {
        /// Which part is too large.
        what: &'static str,
        /// Its size.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// More batches are waiting for the disk than the queue holds.
    #[error(
        "{pending} batches are waiting for the disk, the most the queue holds: the disk is \
         slower than the write rate; retry later or use sync = \"interval\""
    )]
    Overloaded {
        /// How many were waiting.
        pending: usize,
    },
    /// The store has been closed (the node is shutting down).
    #[error("the store is closed: the node is shutting down")]
    Closed,
    /// Any other error reported by the embedded store.
    #[error("store error in {path}: {message}")]
    Store {
        /// The store directory.
        path: PathBuf,
        /// What the store reported.
        message: String,
    },
}

impl StorageError {
    /// An I/O error on `path` while doing `op`; a full disk becomes [`StorageError::DiskFull`].
    pub fn io(op: &'static str, path: &Path, error: &io::Error) -> Self {
        if is_disk_full(error) {
            return StorageError::DiskFull {
                path: path.to_path_buf(),
            };
        }
        StorageError::Io {
            op,
            path: path.to_path_buf(),
            kind: error.kind(),
            message: error.to_string(),
        }
    }

    /// Whether writes may succeed again once the cause goes away (space is freed).
    pub fn is_disk_full(&self) -> bool {
        matches!(self, StorageError::DiskFull { .. })
    }
}

/// ENOSPC and EDQUOT: both mean "free space, then retry".
fn is_disk_full(error: &io::Error) -> bool {
    const ENOSPC: i32 = 28;
    const EDQUOT: i32 = 122;
    matches!(
        error.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    ) || matches!(error.raw_os_error(), Some(ENOSPC | EDQUOT))
}
