//! What a node stores of its replicated state, and the disk contract — the sans-IO half of
//! storage. The engine's `storage` module holds the real store (fjall, group commit).
//!
//! # The seam
//!
//! The replication machine stays sans-IO: it decides *what* must be durable (an entry's new
//! encoding, a keyspace's bookkeeping) as a [`Batch`] of opaque bytes, and the driver decides
//! *how*:
//!
//! - the runtime hands batches to a `Store`, whose committer thread writes them to a
//!   `FjallDisk` and syncs once per group (group commit); a `Receipt` completes when the
//!   batch is done under the `SyncPolicy`;
//! - the simulator writes batches to a [`SimDisk`] directly and syncs it at virtual instants it
//!   chooses; crashes, torn writes, flipped bits and a full disk come from its seeded RNG.
//!
//! Both implement [`Disk`], whose contract (atomic ordered batches, durable after `sync`, a load
//! that never returns a damaged record and never panics, a full disk that refuses writes and
//! keeps reads) the tests check on both.
//!
//! # Driving it (for the replication core)
//!
//! ```text
//!   core ── Effect::Persist { seq, batch } ─▶ driver ── Store::submit / SimDisk::write ─▶ disk
//!   core ◀── Input::Persisted { upto: seq } ── driver ◀── receipt / simulated sync ───────┘
//! ```
//!
//! The core emits a persist effect for every change to a durable keyspace, numbered in order,
//! and holds back what depends on it (the local `set`'s reply, a replica's acknowledgement)
//! until the driver reports that number durable. Receipts complete in submission order, so one
//! number covers every earlier batch. A receipt that fails (a full disk) fails the writes that
//! waited on it: they stay in memory and replicate, but nobody is told they are durable.
//! At start-up the driver loads the [`StoredState`] and hands it to the core before any input.
//!
//! # What is stored
//!
//! Per keyspace, entries (key → encoded entry) and named metadata blobs ("seen", horizon,
//! epoch); per node, named metadata blobs (identity, origin, last HLC). At start-up
//! [`Disk::load`] returns all of it as a [`StoredState`] with a [`LoadReport`] of anything
//! dropped. The layout on disk and the per-record checksum are in [`record`]; the data
//! directory's layout is in `DataDir`.
//!
//! # Damage
//!
//! Every record carries an xxh3 checksum over its key and value, checked at load, on top of
//! fjall's own checks (journal batches at recovery, table blocks on every read). A torn
//! journal tail is cut at the last whole batch; a damaged record is dropped; a store fjall
//! cannot open is recovered step by step, moving damaged files into `quarantine/`. Each step is
//! reported, nothing is deleted, and a node never serves a value that failed its checksum:
//! what it lost, anti-entropy refills from its peers.

mod batch;
mod disk;
mod error;
pub mod record;
pub mod sim_disk;
mod state;

pub use batch::{Batch, Op};
pub use disk::Disk;
pub use error::StorageError;
pub use sim_disk::{CrashOutcome, SimDisk, SimDiskFaults, SimDiskStats};
pub use state::{LoadReport, Loaded, StoredKeyspace, StoredState, DROPPED_DETAILS_MAX};
