//! The runtime's side of durable keyspaces: opening a node's store at start, handing the core's
//! batches to it, and telling the core when they are durable.
//!
//! ```text
//!   core ── Effect::Persist{seq} ─▶ NodeStorage::submit ─▶ Store (group commit) ─▶ fjall
//!   core ◀── Input::Persisted{upto} ── driver ◀── BatchOutcome{seq} ◀── receipt task
//! ```

use std::path::PathBuf;

use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::storage::{Batch, DataDir, FjallDisk, Loaded, StorageError, Store, SyncPolicy};

/// Node metadata blob: the generation (node life) of the last start, so the next one is later
/// even if the wall clock went back.
const GENERATION: &str = "node.generation";
/// Generations left to a life's renewals: membership renews a life in memory (+1 each time the
/// cluster declared it failed) and writes as each renewed one, so a start whose wall clock is
/// behind goes at least this far past the last stored start. A renewal waits for a failure
/// detection (seconds), so no life reaches 2^20 of them.
const RENEWALS_MAX: u64 = 1 << 20;

/// Where and how a node keeps its durable keyspaces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StorageSettings {
    /// The data directory (created if missing).
    pub data_dir: PathBuf,
    /// When a write counts as durable.
    pub sync: SyncPolicy,
}

/// A node's open store.
pub(crate) struct NodeStorage {
    store: Store<FjallDisk>,
    outcomes: mpsc::UnboundedSender<BatchOutcome>,
}

/// What became of the core's batch `seq`.
pub(crate) struct BatchOutcome {
    pub seq: u64,
    pub result: Result<(), StorageError>,
}

/// What opening found.
pub(crate) struct Opened {
    pub storage: NodeStorage,
    /// What the previous lives stored, and what loading it had to drop.
    pub loaded: Loaded,
    /// This life's generation: at least `wanted`, and after every earlier life's (renewals
    /// included).
    pub generation: u64,
}

/// Runs `work`, which blocks on the disk, telling a multi-threaded runtime to move its other
/// tasks off this thread meanwhile. A current-thread runtime has no other thread: the work
/// runs in place there (`block_in_place` panics on one).
fn blocking<T>(work: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::current().runtime_flavor() {
        RuntimeFlavor::MultiThread => tokio::task::block_in_place(work),
        _ => work(),
    }
}

/// Opens the store in `settings.data_dir`, loads it, and records this life's generation
/// (durably, before the node says anything to anyone). Batch outcomes go to `outcomes`.
pub(crate) async fn open(
    settings: &StorageSettings,
    wanted: u64,
    outcomes: mpsc::UnboundedSender<BatchOutcome>,
) -> Result<Opened, StorageError> {
    let dir = DataDir::create(&settings.data_dir)?;
    let disk = blocking(|| dir.open_disk())?;
    let store = Store::new(disk, settings.sync)?;
    let loaded = blocking(|| store.load())?;
    if loaded.report.is_clean() {
        info!(dir = %dir.root().display(), report = %loaded.report, "storage opened");
    } else {
        warn!(dir = %dir.root().display(), report = %loaded.report, "storage opened with damage; peers refill what was dropped");
    }
    let previous = loaded
        .state
        .node
        .get(GENERATION)
        .and_then(|bytes| <[u8; 8]>::try_from(bytes.as_slice()).ok())
        .map(u64::from_be_bytes);
    let generation = previous.map_or(wanted, |p| after(p, wanted));
    let mut batch = Batch::new();
    batch.put_node_meta(GENERATION, &generation.to_be_bytes());
    store.submit(batch)?.await?;
    store.sync()?.await?;
    Ok(Opened {
        storage: NodeStorage { store, outcomes },
        loaded,
        generation,
    })
}

/// The generation of a start at wall-clock `wanted` after a life stored as `previous`: the
/// clock's, unless that is not past every generation the previous life's renewals may have
/// taken. Then the floor past them, offset by the clock: a disk rolled back (restored from a
/// snapshot or backup, a volume that reverted) shows the same `previous` to two starts, and
/// the floor alone gave both one generation — one variables life, whose promises the second
/// start does not hold, answering for both (a `cas` acceptor must never be two processes).
fn after(previous: u64, wanted: u64) -> u64 {
    let floor = previous.saturating_add(RENEWALS_MAX);
    match wanted > floor {
        true => wanted,
        false => floor.saturating_add(wanted % RENEWALS_MAX),
    }
}

impl NodeStorage {
    /// Queues the core's batch `seq`; its outcome comes back as a [`BatchOutcome`].
    pub fn submit(&self, seq: u64, batch: Batch) {
        let outcomes = self.outcomes.clone();
        let receipt = self.store.submit(batch);
        tokio::spawn(async move {
            let result = match receipt {
                Ok(receipt) => receipt.await.map(|_| ()),
                Err(error) => Err(error),
            };
            let _ = outcomes.send(BatchOutcome { seq, result });
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A life renews its generation in memory (+1 each time membership declares it failed),
    /// writing as each new one; only its start generation is stored. A restart with the wall
    /// clock behind must still pick a generation none of those renewals took, or the new life
    /// writes seqs 1, 2, … again under a name the old one already used for other writes.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_restart_with_the_clock_behind_skips_every_generation_a_renewal_may_have_taken() {
        let dir =
            std::env::temp_dir().join(format!("foundation-generation-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let settings = StorageSettings {
            data_dir: dir.clone(),
            sync: SyncPolicy::Always,
        };
        let first = open(&settings, 1_000, mpsc::unbounded_channel().0)
            .await
            .expect("open");
        assert_eq!(first.generation, 1_000);
        drop(first);
        // The first life renewed twice (1_001, 1_002); the clock then went back.
        let second = open(&settings, 500, mpsc::unbounded_channel().0)
            .await
            .expect("reopen");
        let _ = std::fs::remove_dir_all(&dir);
        assert!(second.generation > 1_002, "reused {}", second.generation);
    }

    /// Two starts from one rolled-back disk (the same stored generation) at different times
    /// within the renewals' margin take different generations: one life per process.
    #[test]
    fn two_starts_from_the_same_rolled_back_disk_take_different_generations() {
        let stored = 1_000;
        let (first, second) = (after(stored, 2_000), after(stored, 3_000));
        assert_ne!(first, second, "both starts are generation {first}");
        for generation in [first, second] {
            assert!(generation >= stored + RENEWALS_MAX);
        }
        assert_eq!(
            after(stored, stored + RENEWALS_MAX + 1),
            stored + RENEWALS_MAX + 1
        );
    }
}
