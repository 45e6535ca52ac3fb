//! Durable storage for a node's replicated state: the real store.
//!
//! What is stored, the [`Disk`] contract and the simulator's disk are the core's
//! (`foundation_core::storage`, re-exported here). This module holds the store the runtime
//! uses: a [`Store`] whose committer thread writes batches to a [`FjallDisk`] and syncs once per
//! group (group commit); a [`Receipt`] completes when the batch is done under the
//! [`SyncPolicy`]. The data directory's layout is in [`DataDir`].
//!
//! # Choosing the store
//!
//! fjall over redb, by measurement on this machine (CRATE-NOTES.md, "fjall"): about 1.7× the
//! durable writes per second at every concurrency, one journal append and one `fdatasync` per
//! group commit; redb reopens faster and uses less memory, which matters less here than write
//! latency on every acknowledged write.

mod fjall_disk;
mod layout;
mod policy;
mod store;

pub use foundation_core::storage::{
    record, sim_disk, Batch, CrashOutcome, Disk, LoadReport, Loaded, Op, SimDisk, SimDiskFaults,
    SimDiskStats, StorageError, StoredKeyspace, StoredState, DROPPED_DETAILS_MAX,
};

pub use fjall_disk::FjallDisk;
pub use layout::DataDir;
pub use policy::SyncPolicy;
pub use store::{Persisted, Receipt, Store, DISK_FULL_RETRY, GROUP_BATCHES_MAX, QUEUE_BATCHES_MAX};

#[cfg(test)]
mod tests;
