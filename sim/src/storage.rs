//! Simulated disks, TigerBeetle's way: each node keeps its replicated keyspaces on a
//! [`SimDisk`] of the engine, which the world writes at the instant the core asks and syncs a
//! seeded, jittered while later, so crashes find writes that are not durable yet.
//!
//! The driver's half of the storage seam (see `foundation_core::storage`), as the runtime
//! does it with a real store:
//!
//! - the core emits `Effect::Persist { seq, batch }`: the batch goes to the node's disk at once,
//!   and a completion is queued [`StorageConfig::sync_latency`] later (jittered, never before an
//!   earlier one: receipts complete in order);
//! - the completion syncs the disk and feeds `Input::Persisted { upto: seq }`, or, for a batch
//!   the disk refused (full), `Input::PersistFailed { seq }`;
//! - a local write's reply waits for `Replication::durability` as the runtime's does: the world
//!   notes when each write would have returned (`WriteRecord::durable_at_us`);
//! - a crash loses what was not synced (and may keep or tear some of it, as
//!   [`SimDiskFaults`] say); a restart with the same identity loads what the disk kept; a
//!   restart as a new node is a replaced machine and starts from an empty disk;
//! - a graceful stop syncs before it shuts down, as a process that exits cleanly would;
//! - a restart's generation (later than every earlier life's) comes from the world, which
//!   remembers the last one, where the runtime reads it back from its store.
//!
//! Nothing here reads a clock or iterates a hash map; every draw comes from the world's RNG.

use std::collections::BTreeMap;
use std::time::Duration;

use foundation_core::node::Input;
use foundation_core::storage::{Batch, Disk, Loaded, SimDisk, SimDiskFaults, StorageError};
use rand::Rng;
use serde::Serialize;

/// How simulated nodes store their replicated keyspaces.
#[derive(Clone, Debug, PartialEq)]
pub struct StorageConfig {
    /// Mean virtual time from a write to its sync's completion; each is drawn uniformly from
    /// half to one and a half times this.
    pub sync_latency: Duration,
    /// What a crash may do to unsynced writes.
    pub faults: SimDiskFaults,
}

/// Longest sync latency a scenario may ask for: past it, acked writes would time out.
pub const SYNC_LATENCY_MAX: Duration = Duration::from_secs(1);

impl StorageConfig {
    /// Disks that sync `sync_latency` after a write, without crash faults.
    pub fn new(sync_latency: Duration) -> Self {
        Self {
            sync_latency,
            faults: SimDiskFaults::default(),
        }
    }

    /// With these crash faults.
    pub fn faults(mut self, faults: SimDiskFaults) -> Self {
        self.faults = faults;
        self
    }

    /// Checks the latency and the probabilities.
    pub fn validate(&self) -> Result<(), String> {
        if self.sync_latency > SYNC_LATENCY_MAX {
            return Err(format!(
                "storage sync_latency {:?} is over {SYNC_LATENCY_MAX:?}",
                self.sync_latency
            ));
        }
        let f = &self.faults;
        for (name, p) in [
            ("crash_keeps_unsynced", f.crash_keeps_unsynced),
            ("crash_tears", f.crash_tears),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return Err(format!("storage {name} {p} is not within 0..1"));
            }
        }
        Ok(())
    }

    /// One sync's latency in µs, drawn from the world's stream.
    pub(crate) fn sync_delay_us<R: Rng + ?Sized>(&self, rng: &mut R) -> u64 {
        let mean = self.sync_latency.as_micros() as u64;
        mean / 2 + rng.gen_range(0..=mean)
    }
}

/// What the disks did over a run, every node and life.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DiskTotals {
    /// Batches written.
    pub writes: u64,
    /// Syncs.
    pub syncs: u64,
    /// Writes refused (a full disk).
    pub refused: u64,
    /// Crashes of a disk.
    pub crashes: u64,
    /// Crashes that left a torn write.
    pub torn: u64,
    /// Unsynced bytes crashes lost.
    pub lost_bytes: u64,
    /// Loads at a restart that found something stored.
    pub restores: u64,
}

/// One node slot's disk and the driver's bookkeeping around it.
#[derive(Debug)]
pub(crate) struct NodeDisk {
    disk: SimDisk,
    /// When the last completion is due (world µs): later ones never overtake it.
    due_us: u64,
    /// A write was refused: later batches are refused too until the core's rewrite of the whole
    /// state lands, as the runtime's store does, so none lands after the one that failed. It
    /// matters: a later batch that lands claims (in its seen-sets) the refused one's writes, and
    /// a node restarted from that disk would claim ops it lacks (`seen-backed-by-data` fails
    /// at once when this is switched off and a nearly full disk takes small batches only).
    refusing: bool,
    /// Local writes waiting to be durable, by the batch they wait for (write record indexes).
    waiting: BTreeMap<u64, Vec<usize>>,
    /// The first life whose writes this disk holds: a new identity is a new, empty disk.
    since_life: u64,
    /// Full until this time (world µs), if filled.
    full_until_us: Option<u64>,
    totals: DiskTotals,
}

impl NodeDisk {
    pub fn new(config: &StorageConfig, since_life: u64) -> Self {
        Self {
            disk: SimDisk::new().with_faults(config.faults),
            due_us: 0,
            refusing: false,
            waiting: BTreeMap::new(),
            since_life,
            full_until_us: None,
            totals: DiskTotals::default(),
        }
    }

    /// Whether what life `life` of this slot made durable is still on this disk.
    pub fn holds_life(&self, life: u64) -> bool {
        life >= self.since_life
    }

    /// Writes `batch` now; an error is a refusal the core hears of at the completion.
    pub fn write(&mut self, batch: &Batch) -> Result<(), StorageError> {
        if self.refusing && !batch.is_rewrite() {
            return Err(StorageError::DiskFull {
                path: "sim-disk".into(),
            });
        }
        let result = self.disk.write(batch);
        self.refusing = result.is_err();
        result
    }

    /// When the completion of a write made at `now_us` is due, `delay_us` later but never
    /// before an earlier completion.
    pub fn due(&mut self, now_us: u64, delay_us: u64) -> u64 {
        self.due_us = self.due_us.max(now_us + delay_us);
        self.due_us
    }

    /// Batch `seq` completes: what to tell the core, and the local writes now durable.
    pub fn complete(&mut self, seq: u64, written: bool) -> (Input, Vec<usize>) {
        if written && self.disk.sync().is_ok() {
            let later = self.waiting.split_off(&(seq + 1));
            let ready = std::mem::replace(&mut self.waiting, later);
            return (
                Input::Persisted { upto: seq },
                ready.into_values().flatten().collect(),
            );
        }
        // As the runtime does: a failure fails every write still waiting (later batches are
        // not trusted until the core has written everything again).
        self.waiting.clear();
        (Input::PersistFailed { seq }, Vec::new())
    }

    /// A local write (record `index`) returns once batch `seq` is durable.
    pub fn await_batch(&mut self, seq: u64, index: usize) {
        self.waiting.entry(seq).or_default().push(index);
    }

    /// The machine stops: unsynced writes are lost, some perhaps kept or torn.
    pub fn crash<R: Rng + ?Sized>(&mut self, rng: &mut R) -> String {
        let outcome = self.disk.crash(rng);
        self.totals.crashes += 1;
        self.totals.torn += u64::from(outcome.torn);
        self.totals.lost_bytes += outcome.lost_bytes as u64;
        self.forget_pending();
        let torn = if outcome.torn { ", torn" } else { "" };
        format!("lost {}B unsynced{torn}", outcome.lost_bytes)
    }

    /// The process exits cleanly: everything written is synced first.
    pub fn shut_down(&mut self) {
        let _ = self.disk.sync();
        self.forget_pending();
    }

    fn forget_pending(&mut self) {
        self.due_us = 0;
        self.refusing = false;
        self.waiting.clear();
    }

    /// What a starting core takes up.
    pub fn load(&mut self) -> Loaded {
        // `SimDisk::load` cannot fail today; if it ever does, the node starts empty and its
        // peers refill it, as after a lost disk.
        let loaded = self.disk.load().unwrap_or_default();
        self.totals.restores += u64::from(!loaded.state.is_empty());
        loaded
    }

    /// The disk is full until `until_us`: every write is refused.
    pub fn fill(&mut self, until_us: u64) {
        self.disk.fill();
        self.full_until_us = Some(self.full_until_us.unwrap_or(0).max(until_us));
    }

    /// Room again at `now_us`, unless a later fill is still on.
    pub fn free(&mut self, now_us: u64) {
        if self.full_until_us.is_some_and(|until| until <= now_us) {
            self.full_until_us = None;
            self.disk.set_capacity(None);
        }
    }

    /// The machine is replaced: a new, empty disk that holds lives from `since_life` on.
    pub fn replace(&mut self, config: &StorageConfig, since_life: u64) {
        self.totals = self.totals();
        self.disk = SimDisk::new().with_faults(config.faults);
        self.since_life = since_life;
        self.forget_pending();
    }

    /// The counters, with the disk's own (of every disk this slot had).
    pub fn totals(&self) -> DiskTotals {
        let stats = self.disk.stats();
        let mut totals = self.totals;
        totals.writes += stats.writes;
        totals.syncs += stats.syncs;
        totals.refused += stats.refused;
        totals
    }
}

impl DiskTotals {
    /// Adds another disk's counters.
    pub fn add(&mut self, other: DiskTotals) {
        self.writes += other.writes;
        self.syncs += other.syncs;
        self.refused += other.refused;
        self.crashes += other.crashes;
        self.torn += other.torn;
        self.lost_bytes += other.lost_bytes;
        self.restores += other.restores;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(key: &[u8], bytes: usize) -> Batch {
        let mut batch = Batch::new();
        batch.put_entry("kv", key, &vec![7; bytes]);
        batch
    }

    #[test]
    fn after_a_refused_batch_nothing_lands_until_the_rewrite_of_everything() {
        let mut disk = NodeDisk::new(&StorageConfig::new(Duration::from_millis(2)), 0);
        disk.disk.set_capacity(Some(200));
        assert!(disk.write(&batch(b"big", 500)).is_err());
        let small = batch(b"small", 1);
        assert!(
            disk.write(&small).is_err(),
            "a later batch that fits must not land after the refused one"
        );
        assert_eq!(disk.complete(1, false).0, Input::PersistFailed { seq: 1 });
        assert!(
            disk.write(&small).is_err(),
            "not even once the core heard of it"
        );
        let mut rewrite = small.clone();
        rewrite.mark_rewrite();
        assert!(disk.write(&rewrite).is_ok());
        assert!(
            disk.write(&small).is_ok(),
            "ordinary batches land after the rewrite"
        );
    }

    #[test]
    fn a_completion_answers_the_writes_up_to_its_batch_and_a_crash_forgets_the_rest() {
        let mut disk = NodeDisk::new(&StorageConfig::new(Duration::from_millis(2)), 0);
        for (seq, index) in [(1, 10), (2, 20), (3, 30)] {
            disk.write(&batch(b"k", 8)).expect("room");
            disk.await_batch(seq, index);
        }
        let (input, ready) = disk.complete(2, true);
        assert_eq!((input, ready), (Input::Persisted { upto: 2 }, vec![10, 20]));
        disk.crash(&mut <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(1));
        assert!(
            disk.complete(3, true).1.is_empty(),
            "the crash lost batch 3's waiter"
        );
        assert_eq!(disk.due(100, 5), 105);
        assert_eq!(
            disk.due(101, 1),
            105,
            "completions never overtake earlier ones"
        );
    }
}
