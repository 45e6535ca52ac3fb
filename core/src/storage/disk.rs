//! The interface every medium implements: the real disk ([`super::FjallDisk`]) and the
//! simulator's ([`super::SimDisk`]). Synchronous and free of time, so the simulator can call it
//! from its single thread at virtual instants, and the runtime's [`super::Store`] can call it
//! from its committer thread.

use super::batch::Batch;
use super::error::StorageError;
use super::state::Loaded;

/// A medium for a node's durable state.
///
/// The contract every implementation keeps, and the tests check:
/// - `write` applies a batch atomically on top of earlier writes, in order; it is visible to
///   `load` at once but may be lost in a crash until `sync` returns;
/// - `sync` makes every earlier write durable;
/// - `load` returns every intact record and never a damaged one, with a report of what was
///   dropped; it never panics, whatever the bytes on the medium;
/// - a full medium refuses `write` with [`StorageError::DiskFull`], and `load` still works.
pub trait Disk: Send + 'static {
    /// Applies `batch` after every earlier write; durable only after the next [`Disk::sync`].
    fn write(&mut self, batch: &Batch) -> Result<(), StorageError>;

    /// Makes every write so far durable.
    fn sync(&mut self) -> Result<(), StorageError>;

    /// Hands written data to the operating system without waiting for the device, so a crash
    /// of this process (not of the machine) loses nothing. Default: nothing to do.
    fn flush(&mut self) -> Result<(), StorageError> {
        Ok(())
    }

    /// Everything stored, checked record by record.
    fn load(&mut self) -> Result<Loaded, StorageError>;

    /// Called after a write failed with [`StorageError::DiskFull`], before writing again, so a
    /// store that stops accepting writes after a failure can reopen. Default: nothing to do.
    fn recover_writes(&mut self) -> Result<(), StorageError> {
        Ok(())
    }
}
