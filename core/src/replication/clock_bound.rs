//! The stored clock bound: a ceiling, kept on this node's disk, that every stamp the node lets
//! out stays under, so that a restarted node stamps after every write of its past life a peer
//! may hold.
//!
//! # The gap it closes
//!
//! A write is pushed before its batch is durable (for latency: a push does not wait for a
//! sync). A peer's clock may push ours ahead (within `max_drift_ms`), so such a write can carry
//! a stamp well past our wall clock. If the node crashes before the batch syncs, its next life
//! read its clock from the entries on its disk only: behind the lost write, which a peer still
//! holds. A write of the same key by the new life — durable here, acknowledged by a majority —
//! was stamped below it, and the older write came back from the peer and won everywhere.
//!
//! # The rule
//!
//! A stamp of ours leaves the node (a push, an ask for acknowledgements, an anti-entropy answer)
//! only when its wall time is below a ceiling that is durable here. On restart the clock starts
//! at the stored ceiling, so every stamp of the new life is above every stamp of the old one
//! that anyone saw. Sends of a stamp above the durable ceiling wait for the batch that raises
//! it; anti-entropy answers leave such ops out (they are the newest of our origin, so the
//! contiguous seq a peer takes stays right) and send no full state holding one, as if the
//! message were lost: the peer asks again next round.
//!
//! # What it costs
//!
//! The ceiling is renewed to the newest stamp plus [`CLOCK_LEASE_MS`] once less than half the
//! lease is left, in the batch that goes anyway (the write's own): no batch and no sync per
//! write. A send waits for a sync only when its stamp is past the durable ceiling: the first
//! write after a lease without writes, writes before a starting node's first batch is durable,
//! a write after a peer pushed our clock ahead by more than the lease left, and writes while
//! the disk fails (until everything is written again). A restart within a lease of the last
//! renewal starts the clock up to a lease ahead of the wall clock (far below the drift a peer
//! accepts); a longer lease makes held sends rarer and that lead longer.
//!
//! # Why not take the peers' clocks after a restart
//!
//! The other way — a restarted node waits for its peers' clocks before it stamps a write —
//! delays every write after a restart by a round trip, cannot work for a node that restarts
//! alone (no peer to ask, and its writes must still order after its past life's), and is only
//! as good as the peers that answer (one that never got the lost write knows nothing of it).
//! The ceiling needs no peer, and its syncs ride on batches that are written anyway.
//!
//! # Stores without the record
//!
//! A store written before this record existed, or one whose every batch was lost (a crash
//! before the first sync), has none: the clock is taken from the stored entries as before,
//! and the first batch, handed out at once by the restore, writes a ceiling. Only writes of
//! the life before such a start can still come back over a later one. A record that does not
//! decode is counted with the records that did not (the restore's caller logs them) and is
//! treated as absent; one that failed its checksum never reaches us (the load drops it and
//! reports a partial store).

use std::collections::{BTreeMap, VecDeque};

use foundation_crdt::Timestamp;

use super::wire::Envelope;
use super::Origin;
use crate::storage::Batch;
use crate::NodeAddr;

/// Node metadata blob: the clock ceiling, a wall time in ms (exclusive) no stamp we let out
/// reaches.
pub(super) const CLOCK_CEILING: &str = "replication.clock_ceiling";

/// How far past the newest stamp a renewed ceiling reaches. Two seconds: a busy node renews it
/// once a second (one small record in a batch written anyway), an idle one pays a sync on its
/// first push after two seconds, and a quick restart starts at most two seconds ahead.
pub(super) const CLOCK_LEASE_MS: u64 = 2_000;

/// A send of our own op that waits for its stamp to be under a durable ceiling.
#[derive(Debug)]
pub(super) enum Held {
    /// The eager push of a write to these members.
    Push {
        envelope: Envelope,
        targets: Vec<NodeAddr>,
    },
    /// The first ask for acknowledgements of the pending write with this key.
    Ask((String, Origin, u64)),
}

/// The ceiling as written and as durable, and the sends that wait for it.
#[derive(Debug, Default)]
pub(super) struct ClockBound {
    /// Only a node with storage bounds its clock: one without comes back as a new node.
    enabled: bool,
    /// Every stamp we let out has a wall time below this: it is in a durable batch.
    durable: u64,
    /// The highest ceiling handed to a batch.
    written: u64,
    /// A ceiling to write in the next batch.
    wanted: Option<u64>,
    /// Ceilings handed out and not durable yet, by batch.
    pending: BTreeMap<u64, u64>,
    /// The newest stamp we issued.
    last: Timestamp,
    /// Sends waiting, oldest (lowest stamp) first.
    held: VecDeque<(Timestamp, Held)>,
}

impl ClockBound {
    pub fn enable(&mut self) {
        self.enabled = true;
    }

    /// Whether `ts` may leave the node now.
    pub fn backs(&self, ts: Timestamp) -> bool {
        !self.enabled || ts.wall_ms < self.durable
    }

    /// Whether every stamp this life issued may leave: then nothing needs checking.
    pub fn backs_all(&self) -> bool {
        self.last == Timestamp::ZERO || self.backs(self.last)
    }

    /// Whether `ts` is one of ours that must not leave yet (`node`: ours).
    pub fn withholds(&self, node: foundation_crdt::NodeId, ts: Timestamp) -> bool {
        ts.node == node && !self.backs(ts)
    }

    /// We issued `ts`: renews the ceiling once less than half the lease is left of it.
    pub fn stamped(&mut self, ts: Timestamp) {
        self.last = self.last.max(ts);
        let asked = self.wanted.unwrap_or(0).max(self.written);
        if self.enabled && ts.wall_ms.saturating_add(CLOCK_LEASE_MS / 2) >= asked {
            self.renew_from(ts.wall_ms);
        }
    }

    /// Wants a ceiling a lease past `wall_ms` written.
    fn renew_from(&mut self, wall_ms: u64) {
        let ceiling = wall_ms.saturating_add(CLOCK_LEASE_MS);
        self.wanted = Some(self.wanted.map_or(ceiling, |w| w.max(ceiling)));
    }

    /// Whether a ceiling waits to be written.
    pub fn wants_write(&self) -> bool {
        self.enabled && self.wanted.is_some()
    }

    /// Adds the wanted ceiling to `batch`; returns it, to be tied to the batch's number.
    pub fn write(&mut self, batch: &mut Batch) -> Option<u64> {
        let ceiling = self.wanted.filter(|_| self.enabled)?;
        let bytes = postcard::to_stdvec(&ceiling).ok()?;
        batch.put_node_meta(CLOCK_CEILING, &bytes);
        self.wanted = None;
        self.written = self.written.max(ceiling);
        Some(ceiling)
    }

    /// `ceiling` went in batch `seq`.
    pub fn numbered(&mut self, seq: u64, ceiling: u64) {
        self.pending.insert(seq, ceiling);
    }

    /// Batches up to `upto` are durable: the sends whose stamps are now under the ceiling.
    pub fn persisted(&mut self, upto: u64) -> Vec<Held> {
        let later = self.pending.split_off(&(upto + 1));
        let landed = std::mem::replace(&mut self.pending, later);
        if let Some(ceiling) = landed.into_values().max() {
            self.durable = self.durable.max(ceiling);
        }
        let mut ready = Vec::new();
        while let Some((ts, _)) = self.held.front() {
            if !self.backs(*ts) {
                break;
            }
            ready.extend(self.held.pop_front().map(|(_, held)| held));
        }
        ready
    }

    /// Batches up to `upto` failed: their ceilings may not be stored, so the highest one
    /// handed out goes in the batch that writes everything again. Held sends are dropped —
    /// anti-entropy carries those ops once they are under a durable ceiling, and asks for
    /// acknowledgements are retried every round — so a disk that fails for long holds nothing.
    pub fn failed(&mut self, upto: u64) {
        let later = self.pending.split_off(&(upto + 1));
        self.pending = later;
        if self.written > self.durable {
            self.renew_to(self.written);
        }
        self.held.clear();
    }

    fn renew_to(&mut self, ceiling: u64) {
        self.wanted = Some(self.wanted.map_or(ceiling, |w| w.max(ceiling)));
    }

    /// Waits `held` until `ts` is under a durable ceiling.
    pub fn hold(&mut self, ts: Timestamp, held: Held) {
        self.held.push_back((ts, held));
    }

    /// Takes the stored ceiling (`None`: no record), which is durable.
    pub fn restore(&mut self, stored: Option<&[u8]>) -> Result<Option<u64>, postcard::Error> {
        let ceiling = stored.map(postcard::from_bytes::<u64>).transpose()?;
        if let Some(ceiling) = ceiling {
            self.durable = self.durable.max(ceiling);
            self.written = self.written.max(ceiling);
        }
        Ok(ceiling)
    }

    /// The restored clock reads `wall_ms`: a ceiling a lease past it goes in the start's first
    /// batch, so writes made once that batch lands go out without waiting.
    pub fn started(&mut self, wall_ms: u64) {
        if self.enabled {
            self.renew_from(wall_ms);
        }
    }

    /// The ceiling that is durable (0: none yet).
    #[cfg(test)]
    pub fn durable(&self) -> u64 {
        self.durable
    }
}
