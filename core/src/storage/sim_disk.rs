//! A simulated disk for the simulator, in the manner of TigerBeetle's: in memory,
//! deterministic, and as unkind as a real one.
//!
//! The medium is one append-only log of frames, `[len u32][xxh3-64 u64][payload]`, the payload
//! a batch's changes (postcard). What `sync` covers is on the device; what was written after
//! the last sync is only in the page cache. Faults, each driven by the caller's seeded RNG:
//!
//! - [`SimDisk::crash`] loses every unsynced write; by [`SimDiskFaults`] it may keep a prefix of
//!   them (they were on their way) and may leave the first write it loses torn, half-written;
//! - [`SimDisk::corrupt`] flips a bit anywhere in the log (a latent sector error);
//! - [`SimDisk::set_capacity`] / [`SimDisk::fill`] make writes fail with a full disk;
//! - [`SimDisk::lose_everything`] is the store's files deleted from under it.
//!
//! Loading replays frames until the first one that is incomplete or fails its checksum, cuts the
//! log there (as a journal's recovery does) and reports what was cut; every record inside is
//! checked again by [`super::record::decode`]. Nothing here reads a clock or iterates a hash map.

use std::collections::BTreeMap;

use rand::Rng;
use xxhash_rust::xxh3::xxh3_64;

use super::batch::Batch;
use super::disk::Disk;
use super::error::StorageError;
use super::record::{self, RawOp};
use super::state::{LoadReport, Loaded};

/// Frame header: payload length and checksum.
const FRAME_HEADER_BYTES: usize = 4 + 8;
/// The log is rewritten as a snapshot of its live records once it is this much larger than
/// after the last rewrite, so a long simulation's memory follows the state, not the history.
const COMPACT_GROWTH_BYTES: usize = 1 << 20;
/// Largest number of changes in one frame of a compacted log.
const COMPACT_FRAME_OPS_MAX: usize = 1024;

/// Fault probabilities applied at a crash. The default has none: a crash loses exactly the
/// unsynced writes.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SimDiskFaults {
    /// Chance that a crash leaves some prefix of the unsynced writes on the device.
    pub crash_keeps_unsynced: f64,
    /// Chance that a crash leaves the first write it loses half-written (torn).
    pub crash_tears: f64,
}

impl SimDiskFaults {
    /// Unsynced writes may survive in part, and the first lost one may be torn: what a real disk
    /// may do.
    pub fn harsh() -> Self {
        Self {
            crash_keeps_unsynced: 0.5,
            crash_tears: 0.5,
        }
    }
}

/// What a crash did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CrashOutcome {
    /// Unsynced bytes that did not survive (a torn write counts as lost).
    pub lost_bytes: usize,
    /// Whether a half-written frame was left at the end of the log.
    pub torn: bool,
}

/// Counters, for the simulator's report and its checks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SimDiskStats {
    /// Batches written.
    pub writes: u64,
    /// Syncs.
    pub syncs: u64,
    /// Bytes appended to the log.
    pub bytes_written: u64,
    /// Writes refused because the disk was full.
    pub refused: u64,
    /// Crashes.
    pub crashes: u64,
    /// Log rewrites.
    pub compactions: u64,
}

/// A deterministic in-memory disk; see the module documentation.
#[derive(Clone, Debug, Default)]
pub struct SimDisk {
    log: Vec<u8>,
    /// Bytes of `log` on the device.
    synced: usize,
    /// Where each unsynced frame ends, in order.
    unsynced_ends: Vec<usize>,
    /// Log size after the last compaction.
    compacted: usize,
    /// The log may end in garbage left by a crash: cut it before appending.
    needs_recovery: bool,
    capacity_bytes: Option<usize>,
    faults: SimDiskFaults,
    /// Drops found while compacting, handed to the next load's report.
    pending: LoadReport,
    stats: SimDiskStats,
}

impl SimDisk {
    /// An empty disk without faults or a size limit.
    pub fn new() -> Self {
        Self::default()
    }

    /// Uses these crash faults.
    pub fn with_faults(mut self, faults: SimDiskFaults) -> Self {
        self.faults = faults;
        self
    }

    /// Counters.
    pub fn stats(&self) -> SimDiskStats {
        self.stats
    }

    /// Bytes in the log, synced or not.
    pub fn len_bytes(&self) -> usize {
        self.log.len()
    }

    /// Bytes written since the last sync.
    pub fn unsynced_bytes(&self) -> usize {
        self.log.len() - self.synced
    }

    /// Limits the log to `bytes` (`None`: unlimited); writes beyond it are refused.
    pub fn set_capacity(&mut self, bytes: Option<usize>) {
        self.capacity_bytes = bytes;
    }

    /// Makes the disk full as it stands: the next write is refused.
    pub fn fill(&mut self) {
        self.capacity_bytes = Some(self.log.len());
    }

    /// The machine stops: unsynced writes are lost, except what the faults keep or tear.
    pub fn crash<R: Rng + ?Sized>(&mut self, rng: &mut R) -> CrashOutcome {
        self.stats.crashes += 1;
        let unsynced = self.log.len() - self.synced;
        let kept_frames = if chance(rng, self.faults.crash_keeps_unsynced) {
            rng.gen_range(0..=self.unsynced_ends.len())
        } else {
            0
        };
        let kept_to = match kept_frames {
            0 => self.synced,
            n => self.unsynced_ends[n - 1],
        };
        let lost_bytes = unsynced - (kept_to - self.synced);
        let mut cut_at = kept_to;
        let mut torn = false;
        if let Some(&next_end) = self.unsynced_ends.get(kept_frames) {
            if chance(rng, self.faults.crash_tears) && next_end - kept_to > 1 {
                cut_at += rng.gen_range(1..next_end - kept_to);
                torn = true;
            }
        }
        self.log.truncate(cut_at);
        self.synced = cut_at;
        self.unsynced_ends.clear();
        self.needs_recovery = true;
        CrashOutcome { lost_bytes, torn }
    }

    /// Flips one random bit anywhere in the log; returns its byte offset (none if empty).
    pub fn corrupt<R: Rng + ?Sized>(&mut self, rng: &mut R) -> Option<usize> {
        if self.log.is_empty() {
            return None;
        }
        let offset = rng.gen_range(0..self.log.len());
        self.corrupt_at(offset, 1 << rng.gen_range(0..8));
        Some(offset)
    }

    /// XORs the byte at `offset` with `mask` (nothing if past the end).
    pub fn corrupt_at(&mut self, offset: usize, mask: u8) {
        if let Some(byte) = self.log.get_mut(offset) {
            *byte ^= mask;
        }
    }

    /// The files are gone: the next load finds nothing.
    pub fn lose_everything(&mut self) {
        self.log.clear();
        self.synced = 0;
        self.compacted = 0;
        self.unsynced_ends.clear();
    }

    /// Replays intact frames into a map of store keys; returns it and where they end.
    fn replay(&self, report: &mut LoadReport) -> (BTreeMap<Vec<u8>, Vec<u8>>, usize) {
        let mut map = BTreeMap::new();
        let mut at = 0;
        while at < self.log.len() {
            match read_frame(&self.log[at..]) {
                Ok((ops, len)) => {
                    record::apply(&mut map, &ops);
                    at += len;
                }
                Err(reason) => {
                    let cut = self.log.len() - at;
                    report.drop_tail(
                        cut,
                        format!("cut {cut} bytes of log at byte {at}: {reason}"),
                    );
                    break;
                }
            }
        }
        (map, at)
    }

    /// Cuts the log after its last intact frame.
    fn recover_tail(&mut self, report: &mut LoadReport) -> BTreeMap<Vec<u8>, Vec<u8>> {
        let (map, end) = self.replay(report);
        self.log.truncate(end);
        self.synced = self.synced.min(end);
        self.unsynced_ends.retain(|&e| e <= end);
        self.needs_recovery = false;
        map
    }

    fn append(&mut self, ops: &[RawOp]) -> Result<(), StorageError> {
        let frame = encode_frame(ops)?;
        if let Some(capacity) = self.capacity_bytes {
            if self.log.len() + frame.len() > capacity {
                self.stats.refused += 1;
                return Err(StorageError::DiskFull {
                    path: "sim-disk".into(),
                });
            }
        }
        self.log.extend_from_slice(&frame);
        self.unsynced_ends.push(self.log.len());
        self.stats.writes += 1;
        self.stats.bytes_written += frame.len() as u64;
        Ok(())
    }

    /// Rewrites the synced log as a snapshot of its live records once it has grown enough.
    fn maybe_compact(&mut self) -> Result<(), StorageError> {
        if self.log.len() < self.compacted.saturating_mul(2) + COMPACT_GROWTH_BYTES {
            return Ok(());
        }
        let mut report = std::mem::take(&mut self.pending);
        let map = self.recover_tail(&mut report);
        self.pending = report;
        let ops: Vec<RawOp> = map.into_iter().map(|(k, v)| RawOp::Put(k, v)).collect();
        let mut log = Vec::new();
        for chunk in ops.chunks(COMPACT_FRAME_OPS_MAX) {
            log.extend_from_slice(&encode_frame(chunk)?);
        }
        self.log = log;
        self.synced = self.log.len();
        self.compacted = self.log.len();
        self.stats.compactions += 1;
        Ok(())
    }
}

impl Disk for SimDisk {
    fn write(&mut self, batch: &Batch) -> Result<(), StorageError> {
        let ops = batch.lower()?;
        if self.needs_recovery {
            let mut report = std::mem::take(&mut self.pending);
            self.recover_tail(&mut report);
            self.pending = report;
        }
        self.append(&ops)
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        self.synced = self.log.len();
        self.unsynced_ends.clear();
        self.stats.syncs += 1;
        self.maybe_compact()
    }

    fn load(&mut self) -> Result<Loaded, StorageError> {
        let mut report = std::mem::take(&mut self.pending);
        let map = self.recover_tail(&mut report);
        let state = record::decode(map.iter().map(|(k, v)| (&k[..], &v[..])), &mut report);
        Ok(Loaded { state, report })
    }
}

fn chance<R: Rng + ?Sized>(rng: &mut R, probability: f64) -> bool {
    probability > 0.0 && rng.gen::<f64>() < probability
}

fn encode_frame(ops: &[RawOp]) -> Result<Vec<u8>, StorageError> {
    let payload = postcard::to_stdvec(ops).map_err(|e| StorageError::Store {
        path: "sim-disk".into(),
        message: format!("cannot encode a batch: {e}"),
    })?;
    let len = u32::try_from(payload.len()).map_err(|_| StorageError::TooLarge {
        what: "a batch",
        bytes: payload.len(),
        max: u32::MAX as usize,
    })?;
    let mut frame = Vec::with_capacity(FRAME_HEADER_BYTES + payload.len());
    frame.extend_from_slice(&len.to_le_bytes());
    frame.extend_from_slice(&xxh3_64(&payload).to_le_bytes());
    frame.extend_from_slice(&payload);
    Ok(frame)
}

/// The changes of the frame at the start of `bytes`, and the frame's length.
fn read_frame(bytes: &[u8]) -> Result<(Vec<RawOp>, usize), &'static str> {
    let (header, rest) = bytes
        .split_at_checked(FRAME_HEADER_BYTES)
        .ok_or("torn frame header")?;
    let mut len = [0u8; 4];
    len.copy_from_slice(&header[..4]);
    let len = u32::from_le_bytes(len) as usize;
    let mut sum = [0u8; 8];
    sum.copy_from_slice(&header[4..]);
    let payload = rest
        .get(..len)
        .ok_or("torn frame (shorter than its length)")?;
    if xxh3_64(payload) != u64::from_le_bytes(sum) {
        return Err("frame checksum mismatch");
    }
    let ops = postcard::from_bytes(payload).map_err(|_| "frame does not decode")?;
    Ok((ops, FRAME_HEADER_BYTES + len))
}
