//! Replicated keyspaces: named LWW maps (`String -> bytes`) that every node reads locally and
//! may change, converging after any partition.
//!
//! A local write becomes an op in an [`Envelope`] `(origin, seq, epoch)`, applied here and
//! pushed at once to every live member while the cluster has at most
//! [`ReplicationConfig::push_all_max`] of them, else to [`ReplicationConfig::fanout`] random
//! ones. Pushing to all costs no more bytes than letting anti-entropy carry the op (each
//! member receives it once either way) and makes a write visible everywhere in one hop instead
//! of a few anti-entropy intervals; above the threshold the writer's own send cost wins, and
//! anti-entropy spreads the op. Anti-entropy repairs the rest:
//! every [`ReplicationConfig::anti_entropy_interval`] a node sends its [`Digest`] (highest
//! contiguous seq per origin per keyspace) to a live member, which answers with exactly
//! the ops the sender lacks from its op log — or, when the sender is behind the log's horizon
//! (the log was truncated), with the keyspace's full state — and, if it lacks something itself,
//! with its own digest so the sender fills it in turn. The member is the live one we sent to
//! longest ago (`partners`), so every member hears from every other within N−1 intervals
//! (tombstone GC waits for that), and a member back from a partition is among the first.
//!
//! Two things make anti-entropy faster than one exchange per interval where it matters:
//!
//! - **Chained exchanges.** Ops (or a full state) learnt in answer to a digest are news the
//!   rest of the cluster may lack too, and eager pushes never carry them on. A node that learns
//!   something from an answer starts another exchange at once with another random live member,
//!   up to [`CHAINED_EXCHANGES_MAX`] per interval, so news crosses a healed partition in round
//!   trips instead of intervals; an exchange that teaches nothing ends the chain.
//! - **Pull on contact.** A node with no state (new, or restarted) sends its empty digest to the
//!   first member it sees come up, and any node sends its digest to a member that comes back
//!   after being failed or gone (a healed partition), at most once per interval, rather than
//!   waiting for a random pick. Such a digest asks for no reply: the other side pulls for itself
//!   when it sees us come back, and a fresh node asked by every member for their gaps would
//!   otherwise draw a full state from each of them.
//!
//! A digest answer is either the missing ops or, when those would be larger than the whole
//! keyspace (a peer far behind), the keyspace's full state.
//!
//! # Acknowledged writes
//!
//! [`Replication::write_acked`] pushes the op to *every* live member as an
//! [`ReplicationMessage::AckRequest`]; a member that holds the op afterwards (applied now, or a
//! duplicate) answers [`ReplicationMessage::Ack`]. Each new holder is reported as
//! [`ReplicationEvent::Acked`] with the count of distinct holders, ourselves included, and the
//! size of the group a majority is counted in; members that have not answered are asked again
//! on every anti-entropy round until the caller's deadline. Counting a majority is the caller's
//! job ([`AckTicket::majority`]). The group is the caller's too: the core passes the *agreed*
//! membership (placement's: members leave it only by leaving gracefully), not who is visible
//! now, and a write whose visible members cannot make a majority of it is refused
//! ([`ReplicationError::MinoritySide`]), so a node cut off on a minority side never confirms
//! one with too few copies.
//!
//! A node with storage lets its stamps out (pushes, asks, anti-entropy answers) only below a
//! clock ceiling stored on its disk, and a restart starts its clock there, so a write of a past
//! life that a peer holds never wins over a later write of the next life: see `clock_bound`
//! for the rule, what it costs (no sync per write), and why not wait for peers' clocks instead.
//!
//! # Which writes a replica holds, and removing what it saw removed
//!
//! Every live value keeps the name of the write that made it: its origin (the timestamp's node,
//! and a generation) and seq ([`Value`]). Each keyspace knows which writes its state reflects:
//! per tracked origin, every seq up to its contiguous seen plus those applied out of order; per
//! retired origin, a record of the seq its state includes ([`Keyspace::retired`]). A full
//! state carries both, so a merge judges a live value only one side holds exactly: the other
//! side either saw that write and removed it since (drop it), or never saw it (keep it). No
//! horizon and no clock enters that judgement, so a merge never drops a write a replica has not
//! seen, however long the two were apart. An op is applied once per replica, by its seq.
//!
//! # Tombstone GC: the rule that makes it safe
//!
//! A remove leaves a tombstone so that an older write of the key, arriving later, loses to it.
//! The tombstone may go once no such write can still arrive: a replica may collect tombstones
//! stamped before a horizon `H` only when
//!
//! 1. every member not departed (alive, or failed or left less than
//!    [`ReplicationConfig::departed_after`] ago: [`Replication::handle_timer`]'s `members`) has
//!    sent us a digest in our epoch;
//! 2. `H` is at most each of those digests' `clock` — the sender's clock when it sent it —
//!    so every write any of them made before `H` is counted in a digest we hold (a member cut
//!    off since, writing on the other side of a partition, holds `H` at its last digest);
//! 3. every one of those digests, and ours, holds every op stamped before `H` that any of them
//!    holds: for a view that lacks origin `o`'s op `s + 1`, that op's timestamp bounds `H`
//!    (timestamps grow with seqs); if our log no longer has it, nothing is collected; and
//! 4. `H` is at least [`ReplicationConfig::tombstone_ttl`] old.
//!
//! Then every replica that is not departed has every write stamped before `H`, so none can
//! arrive late and be mistaken for new. A horizon travels with full states and the receiver
//! collects below it too: the sender's agreement included the receiver unless the receiver was
//! departed to it. Rule 4 only keeps deletes around for a while; rules 1–3 are the safety.
//!
//! **What departure gives up.** A member gone for `departed_after` no longer holds GC back. If
//! it was cut off rather than dead and comes back, its writes are kept (they are new to us),
//! but one stamped before a delete of the same key that we already collected wins over that
//! delete, where last-writer-wins would have had the delete win: concurrent writes and deletes
//! across a partition longer than `departed_after` resolve for the write. Nothing is lost, and
//! every replica reaches the same value.
//!
//! # Departed origins and epochs
//!
//! Every origin (node life) that ever wrote leaves an op log and a seen entry in each keyspace.
//! [`Replication::retire`] (the core calls it each anti-entropy round) drops them for origins
//! that are gone for good — a node not alive for [`ReplicationConfig::departed_after`], or a
//! past life of a restarted node — once every member's digest shows the same seq for it, so no
//! live replica lacks an op of it (dropping the bookkeeping never loses data). What stays is a
//! record of the seq the state includes (32 bytes, at most [`RETIRED_RECORDS_MAX`] per
//! keyspace, oldest first out), so a replica that comes back holding a value we removed still
//! sees it dropped, and one holding writes we never saw keeps them. Retiring moves us to a new
//! epoch: a count of compactions, so an epoch is newer than the one it came
//! from, and a hash of the old epoch and the retired origins, so nodes that retire the same
//! origins agree without talking. The epoch guarantees:
//!
//! - ops of another epoch are refused: a node that still tracks a retired origin would otherwise
//!   re-send its ops and grow the bookkeeping back;
//! - a digest of another epoch is answered with full states, and a full state of another epoch is
//!   merged (a state merge is always safe) and answered with ours, so the two sides reconcile
//!   both ways; the side with the older epoch adopts the newer one and drops the origins the
//!   newer state no longer tracks (keeping their records; a live one is tracked again from its
//!   owner's next op), and the side with the newer epoch takes no bookkeeping back from the
//!   older state (it would be the origins it retired), only records.
//!
//! This is the simplest version that keeps memory bounded by the origins still alive (plus those
//! not yet agreed on, and the bounded records), at the cost of a round of full states whenever
//! two nodes' epochs differ.
//!
//! # Large states
//!
//! A full state larger than [`ReplicationConfig::bulk_threshold`] goes on [`Channel::Bulk`]: its
//! own stream at the lowest priority, so it neither waits behind nor delays ops and digests.
//!
//! A deterministic machine like membership: time comes in as `now`, randomness from a seeded
//! RNG, live members from the caller.

mod acks;
mod clock_bound;
mod config;
mod durable;
pub mod events;
pub mod full_state;
mod horizon;
mod keyspace;
mod partners;
pub mod snapshot;
#[cfg(test)]
mod tests;
pub mod wire;

use std::collections::{BTreeMap, BTreeSet};

use crate::{Channel, ChannelLimits, NodeAddr, NodeId};
use bytes::Bytes;
use foundation_crdt::{Canonical, Hlc, LwwEntry, Timestamp};
use rand10::rngs::StdRng;
use rand10::{RngExt, SeedableRng};

pub use acks::{AckTicket, Written};
pub use config::{ReplicationConfig, ReplicationConfigError};
pub use events::{ReplicationEvent, ReplicationTimer};
pub use keyspace::{Change, Keyspace, RETIRED_RECORDS_MAX};
pub use snapshot::{RestoreError, RestoredKeyspace, Snapshot, SnapshotError, SNAPSHOT_BYTES_MAX};
pub use wire::{Digest, Envelope, Map, Op, Origin, ReplicationMessage, Seen, Value};

use crate::effects::{Event, Outbox};
use crate::envelope;
use crate::storage::{Batch, StoredState};
use crate::time::Instant;
use acks::{PendingAck, PENDING_ACKS_MAX};
use clock_bound::{ClockBound, Held};
use durable::{HeldAck, Persistence};
use horizon::PeerDigests;
use keyspace::Coverage;
use partners::Partners;

/// Largest batch of ops in one message, in (estimated) bytes: well under the replication
/// channel's 4 MiB frame limit.
pub(crate) const OPS_MESSAGE_BYTES_MAX: usize = 1 << 20;
/// Largest full state we send at all (on the bulk channel; the transport's bulk limit is 1 GiB).
/// A keyspace is kept well under it by [`ReplicationConfig::keyspace_bytes_max`].
pub const FULL_STATE_BYTES_MAX: usize = 256 * 1024 * 1024;
/// Longest keyspace name.
pub(crate) const KEYSPACE_NAME_MAX: usize = 64;
/// Per-op overhead of an envelope on the wire beyond key and value, for batching estimates.
pub(crate) const ENVELOPE_OVERHEAD: usize = 64;
/// Per-entry overhead of a packed full state beyond key and value (an age, a maker's index, a
/// seq and framing: 10–16 bytes for recent writes), for choosing between ops and a full state.
pub(crate) const STATE_ENTRY_OVERHEAD: usize = 16;
// An op message and a full state fit their channels' default frame limits.
const _: () = assert!(OPS_MESSAGE_BYTES_MAX < ChannelLimits::DEFAULT.replication);
const _: () = assert!(FULL_STATE_BYTES_MAX + 64 * 1024 <= ChannelLimits::DEFAULT.bulk);

/// Most exchanges a node starts in one anti-entropy interval because an answer taught it
/// something: each takes news one hop further; the cap bounds the traffic a burst can cause.
pub const CHAINED_EXCHANGES_MAX: u32 = 4;

/// A local write: `value: None` deletes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Write {
    /// The keyspace (created on first write).
    pub keyspace: String,
    /// The key.
    pub key: String,
    /// The new value, or `None` to delete.
    pub value: Option<Vec<u8>>,
}

/// Why a local write was refused. Nothing changed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReplicationError {
    /// The value is over the limit; replicate a reference to large data instead.
    #[error("value of {size} bytes exceeds the limit of {max} bytes (value_size_max)")]
    ValueTooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The key is over the limit.
    #[error("key of {size} bytes exceeds the limit of {max} bytes (key_size_max)")]
    KeyTooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The keyspace name is empty or too long.
    #[error("keyspace name {name:?} must be 1 to {KEYSPACE_NAME_MAX} bytes")]
    BadKeyspaceName {
        /// The name.
        name: String,
    },
    /// The keyspace has as many keys as allowed; delete some or raise `keyspace_keys_max`.
    #[error("keyspace {keyspace:?} is full: {max} keys (keyspace_keys_max)")]
    KeyspaceFull {
        /// The keyspace.
        keyspace: String,
        /// The limit.
        max: usize,
    },
    /// The write would take the keyspace over its byte limit.
    #[error("keyspace {keyspace:?} would hold {size} bytes, over its limit of {max} (keyspace_bytes_max)")]
    KeyspaceTooLarge {
        /// The keyspace.
        keyspace: String,
        /// Its size after the write.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// This life of the node has used the last sequence number in the keyspace (a peer's full
    /// state claimed it had); a restart, which starts a new life, writes again. Nothing changed.
    #[error("this node's life has no sequence number left in keyspace {keyspace:?}; restart it to write there; nothing was written")]
    SeqExhausted {
        /// The keyspace.
        keyspace: String,
    },
    /// Too many acknowledged writes are waiting for answers; retry later.
    #[error("{max} acknowledged writes are already waiting for answers")]
    TooManyPendingAcks {
        /// The limit.
        max: usize,
    },
    /// The write is applied and replicating, but could not be made durable here (the disk is
    /// full or failing); it is not known to survive a restart of this node.
    #[error("the write is applied but not durable here: {reason}")]
    NotDurable {
        /// What the storage reported.
        reason: String,
    },
    /// A write that asks for a majority was refused because the members this node sees alive
    /// (itself included) are fewer than a majority of the agreed membership: this node is on a
    /// minority side of a partition, or most members are down. Nothing changed.
    #[error(
        "no majority reachable: {visible} of {agreed} agreed members are alive here, {needed} are needed; nothing was written"
    )]
    MinoritySide {
        /// Members alive in this node's view, itself included.
        visible: usize,
        /// The agreed membership a majority is counted in.
        agreed: usize,
        /// A majority of it.
        needed: usize,
    },
    /// No more keyspaces may be created.
    #[error("cannot create keyspace {keyspace:?}: {max} keyspaces exist (keyspaces_max)")]
    TooManyKeyspaces {
        /// The keyspace.
        keyspace: String,
        /// The limit.
        max: usize,
    },
}

/// When a local write to a keyspace is durable here (see [`Replication::durability`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// Already, or never: the node keeps no storage, or the keyspace does not persist.
    Now,
    /// Once storage reports this batch durable.
    After(u64),
    /// Not until storage recovers from a failed batch: the write is applied and replicating,
    /// but not durable here.
    Failing,
}

/// Counters for metrics and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReplicationStats {
    /// Local writes applied.
    pub writes: u64,
    /// Local writes refused (limits).
    pub refused_writes: u64,
    /// Remote ops applied.
    pub ops_applied: u64,
    /// Remote ops already seen.
    pub duplicate_ops: u64,
    /// Remote ops or states refused: timestamp too far ahead of our clock.
    pub drift_rejected: u64,
    /// Remote ops of another epoch.
    pub dropped: u64,
    /// Remote ops that contradict themselves (seq 0, or a timestamp of another node than the
    /// origin's): refused.
    pub malformed: u64,
    /// Ops sent (eager pushes and digest answers).
    pub ops_sent: u64,
    /// Digests sent.
    pub digests_sent: u64,
    /// Anti-entropy rounds started (one per anti-entropy timer).
    pub anti_entropy_rounds: u64,
    /// Full states sent.
    pub full_states_sent: u64,
    /// Full states merged.
    pub full_states_merged: u64,
    /// Full states that did not decode, or that were too large to send.
    pub bad_states: u64,
    /// Full states sent on the bulk channel (also counted in `full_states_sent`).
    pub bulk_states_sent: u64,
    /// Payload bytes of every message sent.
    pub bytes_sent: u64,
    /// Acks sent for ops we hold.
    pub acks_sent: u64,
    /// New acks received for our writes.
    pub acks_received: u64,
    /// Tombstones collected below an agreed horizon.
    pub tombstones_collected: u64,
    /// Per-origin bookkeeping dropped for departed origins (one per origin per keyspace).
    pub origins_retired: u64,
    /// Times our compaction epoch changed (new departures, or adopting a peer's).
    pub epoch_changes: u64,
    /// Storage batches handed to the driver.
    pub batches_persisted: u64,
    /// Storage batches that failed (then everything is written again).
    pub persist_failures: u64,
    /// Records left out of a restore because they did not decode.
    pub restore_skipped: u64,
}

impl ReplicationStats {
    /// Adds another machine's counters (totals over nodes, or over a node's lives).
    pub fn add(&mut self, other: &Self) {
        let Self {
            writes,
            refused_writes,
            ops_applied,
            duplicate_ops,
            drift_rejected,
            dropped,
            malformed,
            ops_sent,
            digests_sent,
            anti_entropy_rounds,
            full_states_sent,
            full_states_merged,
            bad_states,
            bulk_states_sent,
            bytes_sent,
            acks_sent,
            acks_received,
            tombstones_collected,
            origins_retired,
            epoch_changes,
            batches_persisted,
            persist_failures,
            restore_skipped,
        } = other;
        self.writes += writes;
        self.refused_writes += refused_writes;
        self.ops_applied += ops_applied;
        self.duplicate_ops += duplicate_ops;
        self.drift_rejected += drift_rejected;
        self.dropped += dropped;
        self.malformed += malformed;
        self.ops_sent += ops_sent;
        self.digests_sent += digests_sent;
        self.anti_entropy_rounds += anti_entropy_rounds;
        self.full_states_sent += full_states_sent;
        self.full_states_merged += full_states_merged;
        self.bad_states += bad_states;
        self.bulk_states_sent += bulk_states_sent;
        self.bytes_sent += bytes_sent;
        self.acks_sent += acks_sent;
        self.acks_received += acks_received;
        self.tombstones_collected += tombstones_collected;
        self.origins_retired += origins_retired;
        self.epoch_changes += epoch_changes;
        self.batches_persisted += batches_persisted;
        self.persist_failures += persist_failures;
        self.restore_skipped += restore_skipped;
    }
}

/// One node's replicated keyspaces.
pub struct Replication {
    me: Origin,
    config: ReplicationConfig,
    hlc: Hlc,
    rng: StdRng,
    keyspaces: BTreeMap<String, Keyspace>,
    /// The compaction epoch: changes when members depart; see the module docs.
    epoch: u32,
    /// Our writes waiting for acks, by (keyspace, origin, seq) — the origin changes when we
    /// renew our identity, and seqs start again.
    pending: BTreeMap<(String, Origin, u64), PendingAck>,
    /// What each member told us it has seen.
    peer_digests: PeerDigests,
    /// When tombstone GC runs next.
    next_gc: Instant,
    /// Whom each anti-entropy round's digest goes to.
    partners: Partners,
    /// The peer and epoch we last adopted, so every keyspace it sends in that epoch is pruned.
    adopted_from: Option<(NodeId, u32)>,
    /// Whether the anti-entropy timer is armed. It starts with the first state, so a node (or a
    /// simulated cluster) that never replicates anything sends nothing.
    ticking: bool,
    /// Exchanges started this interval because an answer taught us something.
    chained: u32,
    /// Whether an answer taught us something and another exchange should start.
    chain_wanted: bool,
    /// When a stateless node last pulled from a member that came up.
    last_pull: Option<Instant>,
    /// Restored from storage and not yet caught up: pull from the first member that comes up,
    /// as a node with no state would.
    pull_first: bool,
    /// What is written to storage, and the acks that wait for it.
    persistence: Persistence,
    /// The stored ceiling our stamps stay under, and the sends that wait for it.
    bound: ClockBound,
    stats: ReplicationStats,
}

impl Replication {
    /// A machine for `me` holding nothing yet; `seed` drives every random choice.
    pub fn new(me: Origin, config: ReplicationConfig, seed: u64) -> Self {
        let hlc = Hlc::new(me.node, config.hlc());
        Self {
            me,
            config,
            hlc,
            rng: StdRng::seed_from_u64(seed),
            keyspaces: BTreeMap::new(),
            epoch: 0,
            pending: BTreeMap::new(),
            peer_digests: PeerDigests::default(),
            next_gc: Instant::ZERO,
            partners: Partners::default(),
            adopted_from: None,
            ticking: false,
            chained: 0,
            chain_wanted: false,
            last_pull: None,
            pull_first: false,
            persistence: Persistence::default(),
            bound: ClockBound::default(),
            stats: ReplicationStats::default(),
        }
    }

    /// Who we write as.
    pub fn me(&self) -> Origin {
        self.me
    }

    /// Writes from now on as `origin`: a new life of our node (membership renewed our
    /// identity after others took us for failed). Our previous origin becomes a past life that
    /// every replica retires once all hold its ops, once — where writing on as an origin others
    /// count as past would have them retire it, track it again from our next op, and retire it
    /// again, forever. Seqs of the new origin start at 1.
    pub fn renew(&mut self, origin: Origin) {
        debug_assert_eq!(origin.node, self.me.node, "a node renews its own identity");
        self.me = origin;
    }

    /// The live value of `key` in `keyspace`.
    pub fn get(&self, keyspace: &str, key: &str) -> Option<&[u8]> {
        self.keyspaces.get(keyspace).and_then(|k| k.get(key))
    }

    /// A keyspace's replica, for reads (`map().iter()`) and tests.
    pub fn keyspace(&self, name: &str) -> Option<&Keyspace> {
        self.keyspaces.get(name)
    }

    /// Names of the keyspaces held here.
    pub fn keyspace_names(&self) -> impl Iterator<Item = &str> {
        self.keyspaces.keys().map(String::as_str)
    }

    /// A hash of each keyspace's canonical state: equal on two nodes iff their states are equal.
    pub fn state_digests(&self) -> BTreeMap<String, u64> {
        self.keyspaces
            .iter()
            .map(|(name, k)| (name.clone(), k.map().digest().unwrap_or(0)))
            .collect()
    }

    /// What we have seen: highest contiguous seq per origin per keyspace.
    pub fn digest(&self) -> Digest {
        self.keyspaces
            .iter()
            .map(|(name, k)| (name.clone(), k.seen()))
            .collect()
    }

    /// Counters.
    pub fn stats(&self) -> &ReplicationStats {
        &self.stats
    }

    /// Starts persisting: from now on, what changes in a keyspace not in `volatile` is written
    /// as numbered batches ([`crate::Effect::Persist`], one per [`Self::flush_persistence`]),
    /// and acks of writes in those keyspaces wait until their batch is durable
    /// ([`Self::persisted`]). Call before any input, and before [`Self::restore`].
    pub fn enable_persistence(&mut self, volatile: BTreeSet<String>) {
        self.persistence.enabled = true;
        self.persistence.volatile = volatile;
        self.bound.enable();
    }

    /// Whether writes to `keyspace` persist.
    pub fn persists(&self, keyspace: &str) -> bool {
        self.persistence.durable(keyspace)
    }

    /// Whether this node persists anything (it has storage).
    pub fn persisting(&self) -> bool {
        self.persistence.enabled
    }

    /// Keeps a node-level record for another machine (placement's agreed membership): written
    /// in the next batch, whole, and again whenever everything is written again, so it is as
    /// durable as the keyspaces' batches around it. Nothing without persistence.
    pub fn keep_node_record(&mut self, name: &str, value: Vec<u8>) {
        self.persistence.keep_node_record(name, value);
    }

    /// Takes up what a previous life of this node stored (persistence enabled first): its
    /// keyspaces, with the writes each includes, its epoch and its clock ceiling. The clock
    /// moves past every stored write and GC horizon and to the ceiling, so ours order after
    /// every write of that life any peer holds (see `clock_bound`) and below no horizon, and the
    /// first member to come up is asked for what we missed. `whole`: storage kept every record
    /// of what it was given (a prefix of the batches; see
    /// [`crate::storage::LoadReport::partial`]); if not, no keyspace's record
    /// of which writes it includes is trusted (see `durable::read`), and the first batch,
    /// handed out at once, writes such keyspaces again as held. Returns how many records did
    /// not decode (left out: peers refill them).
    pub fn restore(
        &mut self,
        now: Instant,
        stored: &StoredState,
        whole: bool,
        out: &mut Outbox,
    ) -> usize {
        let mut skipped = 0;
        for (name, stored) in &stored.keyspaces {
            if !self.persistence.durable(name) {
                continue; // entries owned by a past life: never restored
            }
            let (mut keyspace, bad) = durable::read(stored, whole);
            keyspace.track_changes();
            if !whole || bad > 0 {
                // The seen-sets left on disk claim writes whose entries are gone, and the next
                // start may find the store clean (repaired) and trust them: replace them first.
                keyspace.mark_all_dirty();
            }
            skipped += bad;
            if let Some(newest) = newest_stamp(keyspace.map()) {
                let wall = self.wall_ms(now).max(newest.wall_ms);
                let _ = self.hlc.update(newest, wall);
            }
            self.keyspaces.insert(name.clone(), keyspace);
        }
        match stored
            .node
            .get(durable::EPOCH)
            .map(|b| postcard::from_bytes(b))
        {
            Some(Ok(epoch)) => {
                self.epoch = epoch;
                self.persistence.epoch_written = epoch;
            }
            Some(Err(_)) => skipped += 1,
            None => {}
        }
        skipped += self.restore_clock(now, stored);
        self.stats.restore_skipped += skipped as u64;
        if !self.keyspaces.is_empty() {
            self.pull_first = true;
            self.start_ticking(now, out);
        }
        self.flush_persistence(out);
        skipped
    }

    /// Moves the clock to the stored ceiling and wants a new one written in the first batch;
    /// returns 1 if the record did not decode (then it counts as absent).
    fn restore_clock(&mut self, now: Instant, stored: &StoredState) -> usize {
        let record = stored.node.get(clock_bound::CLOCK_CEILING);
        let restored = self.bound.restore(record.map(Vec::as_slice));
        let ceiling = restored.as_ref().ok().copied().flatten();
        if let Some(ceiling) = ceiling.filter(|_| !fault_on!(RestartIgnoresClockCeiling)) {
            // Past every stamp that life let out; the drift rule is for peers, not our disk.
            let wall = self.wall_ms(now).max(ceiling);
            let _ = self.hlc.update(Timestamp::at_wall(ceiling), wall);
        }
        let start = self.hlc.last().wall_ms.max(self.wall_ms(now));
        self.bound.started(start);
        usize::from(restored.is_err())
    }

    /// Writes what changed since the last call as one batch, and sends the acks that no
    /// longer wait. Call after every input. After a failed batch nothing is written until the
    /// next anti-entropy round, which writes everything again in one batch. Returns false
    /// when there was nothing to do and nothing changed (the core's checks rely on it).
    pub fn flush_persistence(&mut self, out: &mut Outbox) -> bool {
        // Most inputs of a formed cluster (a probe, its answer) leave nothing to write, number
        // or acknowledge: then the rest would only take empty sets and build an empty batch.
        let p = &self.persistence;
        let ceiling_due = self.bound.wants_write() && (!p.rewrite_wanted || p.rewrite_due);
        if p.idle(self.epoch) && !ceiling_due && !self.keyspaces.values().any(|k| k.is_dirty()) {
            return false;
        }
        let p = &mut self.persistence;
        let rewrite = p.rewrite_wanted && std::mem::take(&mut p.rewrite_due);
        let write = p.enabled && (rewrite || !p.rewrite_wanted);
        let mut batch = Batch::new();
        for (name, keyspace) in &mut self.keyspaces {
            if rewrite {
                keyspace.mark_all_dirty();
            }
            let dirty = keyspace.take_dirty();
            if write && self.persistence.durable(name) && !dirty.is_empty() {
                durable::write_changes(name, keyspace, &dirty, &mut batch);
            }
        }
        if write && (rewrite || self.epoch != self.persistence.epoch_written) {
            if let Ok(epoch) = postcard::to_stdvec(&self.epoch) {
                batch.put_node_meta(durable::EPOCH, &epoch);
            }
            self.persistence.epoch_written = self.epoch;
        }
        let ceiling = if write {
            self.bound.write(&mut batch)
        } else {
            None
        };
        self.persistence
            .write_node_records(write, rewrite, &mut batch);
        if rewrite {
            batch.mark_rewrite();
        }
        let (seq, ready) = self.persistence.number(!batch.is_empty(), rewrite);
        for ack in ready {
            self.send_ack(ack, out);
        }
        if let Some(seq) = seq {
            if let Some(ceiling) = ceiling {
                self.bound.numbered(seq, ceiling);
            }
            self.stats.batches_persisted += 1;
            out.persist(seq, batch);
        }
        true
    }

    /// Every batch up to `upto` is durable: sends the acks that waited for them, and our ops
    /// whose stamps waited for a durable ceiling.
    pub fn persisted(&mut self, upto: u64, out: &mut Outbox) {
        for ack in self.persistence.persisted(upto) {
            self.send_ack(ack, out);
        }
        for held in self.bound.persisted(upto) {
            self.release(held, out);
        }
    }

    fn release(&mut self, held: Held, out: &mut Outbox) {
        match held {
            Held::Push {
                mut envelope,
                targets,
            } => {
                // A compaction while it waited changed the epoch: peers would refuse the old
                // one, and the op would wait for anti-entropy (asks are re-stamped alike).
                envelope.epoch = self.epoch;
                self.send_push(envelope, targets, out);
            }
            Held::Ask(key) => {
                if let Some(pending) = self.pending.remove(&key) {
                    self.request_acks(&pending, out);
                    self.pending.insert(key, pending);
                }
            }
        }
    }

    /// Batch `seq` failed (a full or failing disk): acks waiting on any batch so far are
    /// dropped (their writers ask again), and everything is written again next round.
    pub fn persist_failed(&mut self, seq: u64) {
        self.stats.persist_failures += 1;
        self.persistence.failed(seq);
        self.bound.failed(seq);
    }

    /// When a local write to `keyspace` made just now is durable here.
    pub fn durability(&self, keyspace: &str) -> Durability {
        if !self.persistence.durable(keyspace) || fault_on!(AckBeforeDurable) {
            return Durability::Now;
        }
        if self.persistence.rewrite_wanted {
            return Durability::Failing;
        }
        match self.persistence.pending() {
            Some(seq) => Durability::After(seq),
            None => Durability::Now,
        }
    }

    /// Applies a local write and pushes it to `peers` (the live members): to all of them, or to
    /// `fanout` of them when there are more than `push_all_max`.
    pub fn write(
        &mut self,
        now: Instant,
        write: Write,
        peers: &[NodeAddr],
        out: &mut Outbox,
    ) -> Result<Written, ReplicationError> {
        let envelope = self.apply_local(now, write, out)?;
        let written = Written::of(&envelope);
        self.push(envelope, peers, out);
        Ok(written)
    }

    /// Applies a local write and asks every one of `peers` (the live members) to acknowledge
    /// it. Each new holder is reported as [`ReplicationEvent::Acked`]; members that have not
    /// answered are asked again on every anti-entropy round until `until`.
    ///
    /// `group` is the membership a majority is counted in, ourselves included (at least
    /// `peers.len() + 1` is counted whatever it says). When `peers` and we cannot make a
    /// majority of it the write is refused before it is applied.
    pub fn write_acked(
        &mut self,
        now: Instant,
        write: Write,
        peers: &[NodeAddr],
        group: usize,
        until: Instant,
        out: &mut Outbox,
    ) -> Result<AckTicket, ReplicationError> {
        let visible = peers.len() + 1;
        let agreed = group.max(visible);
        let needed = agreed / 2 + 1;
        if visible < needed && !fault_on!(MajorityOfVisible) {
            self.stats.refused_writes += 1;
            return Err(ReplicationError::MinoritySide {
                visible,
                agreed,
                needed,
            });
        }
        if self.pending.len() >= PENDING_ACKS_MAX {
            self.stats.refused_writes += 1;
            return Err(ReplicationError::TooManyPendingAcks {
                max: PENDING_ACKS_MAX,
            });
        }
        let envelope = self.apply_local(now, write, out)?;
        let group = if fault_on!(MajorityOfVisible) {
            visible
        } else {
            agreed
        };
        let pending = PendingAck::new(envelope.clone(), peers, group, until);
        let ticket = AckTicket {
            keyspace: envelope.keyspace.clone(),
            origin: envelope.origin,
            seq: envelope.seq,
            ts: envelope.op.entry.ts,
            members: pending.members(),
        };
        if !peers.is_empty() {
            let key = (ticket.keyspace.clone(), ticket.origin, ticket.seq);
            // `request_acks` asks nothing above the durable ceiling: the first ask then waits.
            if !self.bound.backs(ticket.ts) {
                self.bound.hold(ticket.ts, Held::Ask(key.clone()));
            }
            self.request_acks(&pending, out);
            self.pending.insert(key, pending);
        }
        Ok(ticket)
    }

    /// Handles a message from `from` (`None` if we cannot address the sender yet, in which
    /// case nothing is answered).
    pub fn handle_message(
        &mut self,
        now: Instant,
        from: Option<NodeAddr>,
        message: ReplicationMessage,
        out: &mut Outbox,
    ) {
        match message {
            ReplicationMessage::Ops(envelopes) => {
                self.apply_ops(now, from, &envelopes, false, out);
            }
            ReplicationMessage::AckRequest(envelopes) => {
                self.apply_ops(now, from, &envelopes, true, out);
            }
            ReplicationMessage::Repair(envelopes) => {
                if self.apply_ops(now, from, &envelopes, false, out) {
                    self.chain_wanted = true;
                }
            }
            ReplicationMessage::Ack {
                keyspace,
                origin,
                seq,
            } => self.acked(from, keyspace, origin, seq, out),
            ReplicationMessage::Digest {
                digest,
                reply,
                epoch,
                clock,
                retired,
            } => {
                if let Some(from) = from {
                    let theirs = TheirDigest {
                        digest,
                        epoch,
                        clock,
                        retired,
                    };
                    self.answer_digest(now, from, theirs, reply, out);
                }
            }
            ReplicationMessage::FullState {
                keyspace,
                epoch,
                state,
                seen,
                retired,
            } => {
                let coverage = Coverage {
                    seen: &seen,
                    retired: &retired,
                };
                self.merge_full_state(now, from, &keyspace, epoch, &state, &coverage, out)
            }
        }
        if !self.keyspaces.is_empty() {
            self.start_ticking(now, out);
        }
    }

    /// Handles a timer; `peers` are the live members, `members` every member not departed
    /// (alive, or failed or left less than [`ReplicationConfig::departed_after`] ago): the ones
    /// whose digests tombstone GC waits for.
    pub fn handle_timer(
        &mut self,
        now: Instant,
        timer: ReplicationTimer,
        peers: &[NodeAddr],
        members: &[NodeId],
        out: &mut Outbox,
    ) {
        match timer {
            ReplicationTimer::AntiEntropy => {
                self.stats.anti_entropy_rounds += 1;
                self.chained = 0;
                self.persistence.rewrite_due = self.persistence.rewrite_wanted;
                self.arm_anti_entropy(now, out);
                self.retry_acks(now, out);
                let partner = self.partners.next(peers, &mut self.rng);
                if now >= self.next_gc {
                    self.next_gc = now + self.config.tombstone_ttl / GC_ROUNDS_PER_TTL;
                    self.collect_tombstones(now, members);
                    self.announce_digest(now, peers, partner, out);
                }
                if let Some(peer) = partner {
                    self.send_digest(now, peer, true, out);
                }
            }
        }
    }

    /// Whether an answer taught us something since the last call, so the caller should call
    /// [`Self::chain`] with the live members.
    pub fn take_chain_request(&mut self) -> bool {
        std::mem::take(&mut self.chain_wanted)
    }

    /// Starts another exchange with a random live member other than `after` (who taught us the
    /// news), unless this interval's chained exchanges are used up.
    pub fn chain(
        &mut self,
        now: Instant,
        peers: &[NodeAddr],
        after: Option<NodeId>,
        out: &mut Outbox,
    ) {
        if self.chained >= CHAINED_EXCHANGES_MAX {
            return;
        }
        let others: Vec<NodeAddr> = peers
            .iter()
            .filter(|p| Some(p.id) != after)
            .copied()
            .collect();
        if let Some(&peer) = self.choose(&others, 1).first() {
            self.chained += 1;
            self.send_digest(now, peer, true, out);
        }
    }

    /// A member came up; `came_back` if we had seen it failed or gone before. A node holding no
    /// state yet asks it for everything, and any node asks a member that came back for what it
    /// missed meanwhile — at most once per interval, instead of waiting for a random pick.
    pub fn member_up(&mut self, now: Instant, peer: NodeAddr, came_back: bool, out: &mut Outbox) {
        let recent = self
            .last_pull
            .is_some_and(|at| now.saturating_since(at) < self.config.anti_entropy_interval);
        if recent || !(self.keyspaces.is_empty() || self.pull_first || came_back) {
            return;
        }
        self.last_pull = Some(now);
        self.pull_first = false;
        self.send_digest(now, peer, false, out);
    }

    /// Compaction: forgets what we know of departed members and drops the bookkeeping of
    /// `gone` origins (lives of departed or restarted nodes) in every keyspace where each
    /// member's digest shows it holds all of their ops, moving to a new epoch if any was
    /// dropped. `departed` are nodes not alive for [`ReplicationConfig::departed_after`];
    /// `members` every member not departed. Call it before each
    /// [`ReplicationTimer::AntiEntropy`].
    pub fn retire(
        &mut self,
        departed: &BTreeSet<NodeId>,
        gone: &BTreeSet<Origin>,
        members: &[NodeId],
    ) {
        self.peer_digests.forget(departed);
        let mut retired = BTreeSet::new();
        for (name, keyspace) in &mut self.keyspaces {
            let Some(agreement) = self.peer_digests.agreement(members, self.epoch, name) else {
                continue;
            };
            let mut views = agreement.views;
            views.push(keyspace.seen());
            let held: BTreeSet<Origin> = keyspace
                .origins()
                .filter(|o| gone.contains(o) && **o != self.me)
                .copied()
                .collect();
            for origin in horizon::settled(&held, &views) {
                keyspace.retire(&origin);
                self.stats.origins_retired += 1;
                retired.insert(origin);
            }
        }
        if !retired.is_empty() {
            self.adopted_from = None;
            self.epoch = next_epoch(self.epoch, &retired);
            self.stats.epoch_changes += 1;
        }
    }

    /// Every origin with bookkeeping in some keyspace.
    pub fn origins(&self) -> BTreeSet<Origin> {
        self.keyspaces
            .values()
            .flat_map(|k| k.origins().copied())
            .collect()
    }

    /// The compaction epoch.
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// The settings.
    pub fn config(&self) -> &ReplicationConfig {
        &self.config
    }

    /// Checks every keyspace's bookkeeping.
    pub fn invariants(&self) -> Result<(), String> {
        for (name, keyspace) in &self.keyspaces {
            keyspace
                .invariants()
                .map_err(|e| format!("keyspace {name:?}: {e}"))?;
        }
        Ok(())
    }

    fn check(&self, write: &Write) -> Result<(), ReplicationError> {
        let c = &self.config;
        let name = &write.keyspace;
        if name.is_empty() || name.len() > KEYSPACE_NAME_MAX {
            return Err(ReplicationError::BadKeyspaceName { name: name.clone() });
        }
        if write.key.len() > c.key_size_max {
            return Err(ReplicationError::KeyTooLarge {
                size: write.key.len(),
                max: c.key_size_max,
            });
        }
        let size = write.value.as_ref().map_or(0, Vec::len);
        if size > c.value_size_max {
            return Err(ReplicationError::ValueTooLarge {
                size,
                max: c.value_size_max,
            });
        }
        match self.keyspaces.get(name) {
            Some(keyspace) => self.check_room(name, keyspace, write),
            None if self.keyspaces.len() >= c.keyspaces_max => {
                Err(ReplicationError::TooManyKeyspaces {
                    keyspace: name.clone(),
                    max: c.keyspaces_max,
                })
            }
            None => Ok(()),
        }
    }

    fn check_room(
        &self,
        name: &str,
        keyspace: &Keyspace,
        write: &Write,
    ) -> Result<(), ReplicationError> {
        let Some(value) = &write.value else {
            return Ok(()); // a delete never grows a keyspace
        };
        let old = keyspace.get(&write.key);
        let max_keys = self.config.keyspace_keys_max;
        // Counting live keys is O(n) (tombstones are skipped): only when the O(1) count of
        // every held key, tombstones included, says the limit may be reached.
        if old.is_none() && keyspace.map().entry_count() >= max_keys && keyspace.len() >= max_keys {
            return Err(ReplicationError::KeyspaceFull {
                keyspace: name.to_owned(),
                max: max_keys,
            });
        }
        let old_size = old.map_or(0, |v| write.key.len() + v.len());
        let size =
            keyspace.bytes() - old_size.min(keyspace.bytes()) + write.key.len() + value.len();
        if size > self.config.keyspace_bytes_max {
            return Err(ReplicationError::KeyspaceTooLarge {
                keyspace: name.to_owned(),
                size,
                max: self.config.keyspace_bytes_max,
            });
        }
        Ok(())
    }

    /// The seq this life's next write to `keyspace` takes. Only a peer's claim can have used up
    /// the last one (we adopt what peers say we wrote, so a disk that lost our tail never reuses
    /// a seq); refusing beats wrapping to a seq every peer already holds.
    fn next_own_seq(&self, keyspace: &str) -> Result<u64, ReplicationError> {
        self.keyspaces
            .get(keyspace)
            .map_or(Some(1), |k| k.next_seq(self.me))
            .ok_or_else(|| ReplicationError::SeqExhausted {
                keyspace: keyspace.to_owned(),
            })
    }

    /// Checks and applies a local write; returns its envelope, ready to push.
    fn apply_local(
        &mut self,
        now: Instant,
        write: Write,
        out: &mut Outbox,
    ) -> Result<Envelope, ReplicationError> {
        let seq = match self
            .check(&write)
            .and_then(|()| self.next_own_seq(&write.keyspace))
        {
            Ok(seq) => seq,
            Err(error) => {
                self.stats.refused_writes += 1;
                return Err(error);
            }
        };
        let ts = self.hlc.now(self.wall_ms(now));
        self.bound.stamped(ts);
        let keyspace = open(&mut self.keyspaces, &self.persistence, &write.keyspace);
        let envelope = Envelope {
            seq,
            keyspace: write.keyspace,
            origin: self.me,
            epoch: self.epoch,
            op: Op {
                key: write.key,
                entry: LwwEntry {
                    ts,
                    value: write.value,
                },
            },
        };
        if let Some(change) = keyspace.apply(&envelope, self.config.op_log_max) {
            emit(&envelope.keyspace, change, out);
        }
        self.stats.writes += 1;
        self.start_ticking(now, out);
        Ok(envelope)
    }

    /// Applies remote ops; with `ack`, answers for each op we hold. Returns whether any op was
    /// new here.
    fn apply_ops(
        &mut self,
        now: Instant,
        from: Option<NodeAddr>,
        envelopes: &[Envelope],
        ack: bool,
        out: &mut Outbox,
    ) -> bool {
        let mut news = false;
        for envelope in envelopes {
            let outcome = match ack && fault_on!(AckWithoutApplying) {
                true => Outcome::Duplicate,
                false => self.apply_remote(now, envelope, out),
            };
            news |= outcome == Outcome::Applied;
            if let (true, Some(to), true) = (ack, from, outcome != Outcome::Refused) {
                self.ack_when_durable(to, envelope, out);
            }
        }
        news
    }

    fn apply_remote(&mut self, now: Instant, envelope: &Envelope, out: &mut Outbox) -> Outcome {
        // An op names its write by origin and seq, and its value keeps the name with the
        // timestamp's node as the origin's: an op that disagrees would be misjudged in merges.
        if envelope.seq == 0 || envelope.op.entry.ts.node != envelope.origin.node {
            self.stats.malformed += 1;
            return Outcome::Refused;
        }
        // Another epoch's ops may come from a node that has not dropped a departed origin yet;
        // the sender's next digest gets it full states instead. A keyspace new here is taken
        // past `keyspaces_max` (see `merge_full_state`).
        if envelope.epoch != self.epoch {
            self.stats.dropped += 1;
            return Outcome::Refused;
        }
        if self
            .keyspaces
            .get(&envelope.keyspace)
            .is_some_and(|k| k.has(envelope))
        {
            self.stats.duplicate_ops += 1;
            return Outcome::Duplicate;
        }
        // The drift check refuses an op stamped far in the future: it would win every conflict
        // until real time caught up. Refused ops stay unseen, so they are offered again.
        let remote = match fault_on!(HlcIgnoresReceive) {
            true => Timestamp::ZERO,
            false => envelope.op.entry.ts,
        };
        if self.hlc.update(remote, self.wall_ms(now)).is_err() {
            self.stats.drift_rejected += 1;
            return Outcome::Refused;
        }
        let keyspace = open(&mut self.keyspaces, &self.persistence, &envelope.keyspace);
        self.stats.ops_applied += 1;
        if let Some(change) = keyspace.apply(envelope, self.config.op_log_max) {
            emit(&envelope.keyspace, change, out);
        }
        Outcome::Applied
    }

    /// Acknowledges an op we hold: at once for a keyspace that does not persist, else once
    /// the batch that holds it is durable (see [`Self::flush_persistence`]), so an acked write
    /// survives a restart of every node that acked it.
    fn ack_when_durable(&mut self, to: NodeAddr, envelope: &Envelope, out: &mut Outbox) {
        let held = HeldAck {
            to,
            keyspace: envelope.keyspace.clone(),
            origin: envelope.origin,
            seq: envelope.seq,
        };
        if self.persistence.durable(&envelope.keyspace) && !fault_on!(AckBeforeDurable) {
            self.persistence.fresh.push(held);
        } else {
            self.send_ack(held, out);
        }
    }

    fn send_ack(&mut self, ack: HeldAck, out: &mut Outbox) {
        self.stats.acks_sent += 1;
        let message = ReplicationMessage::Ack {
            keyspace: ack.keyspace,
            origin: ack.origin,
            seq: ack.seq,
        };
        self.send(ack.to, Channel::Replication, encode(message), out);
    }

    fn acked(
        &mut self,
        from: Option<NodeAddr>,
        keyspace: String,
        origin: Origin,
        seq: u64,
        out: &mut Outbox,
    ) {
        let Some(from) = from else {
            return;
        };
        let key = (keyspace, origin, seq);
        let Some(pending) = self.pending.get_mut(&key) else {
            return;
        };
        if !pending.acked_by(from.id) {
            return;
        }
        self.stats.acks_received += 1;
        let (holders, members) = (pending.holders(), pending.members());
        if pending.all_answered() {
            self.pending.remove(&key);
        }
        out.event(Event::Replication(ReplicationEvent::Acked {
            keyspace: key.0,
            origin,
            seq,
            holders,
            members,
        }));
    }

    /// Asks the members that have not answered; not while the write's stamp is above the
    /// durable ceiling (its first ask waits for it, retries come every round).
    fn request_acks(&mut self, pending: &PendingAck, out: &mut Outbox) {
        if !self.bound.backs(pending.envelope.op.entry.ts) {
            return;
        }
        let mut envelope = pending.envelope.clone();
        envelope.epoch = self.epoch;
        let payload = encode(ReplicationMessage::AckRequest(vec![envelope]));
        for to in pending.waiting() {
            self.stats.ops_sent += 1;
            self.send(to, Channel::Replication, payload.clone(), out);
        }
    }

    /// Asks members that have not acked yet again; forgets writes past their deadline.
    fn retry_acks(&mut self, now: Instant, out: &mut Outbox) {
        self.pending.retain(|_, p| p.until > now);
        let pending = std::mem::take(&mut self.pending);
        for p in pending.values() {
            self.request_acks(p, out);
        }
        self.pending = pending;
    }

    /// Drops tombstones below the horizon of the GC rule (see the module docs): older than the
    /// TTL, older than every member's last clock, and held by every member.
    fn collect_tombstones(&mut self, now: Instant, members: &[NodeId]) {
        let age_ms = u64::try_from(self.config.tombstone_ttl.as_millis()).unwrap_or(u64::MAX);
        let aged = Timestamp::at_wall(self.wall_ms(now).saturating_sub(age_ms));
        for (name, keyspace) in &mut self.keyspaces {
            let Some(agreement) = self.peer_digests.agreement(members, self.epoch, name) else {
                continue;
            };
            let ceiling = agreement.witness.map_or(aged, |w| w.min(aged));
            let mut views = agreement.views;
            views.push(keyspace.seen());
            if let Some(horizon) = horizon::stable_before(keyspace, &views, ceiling) {
                self.stats.tombstones_collected += keyspace.gc(horizon) as u64;
            }
        }
    }

    fn answer_digest(
        &mut self,
        now: Instant,
        to: NodeAddr,
        theirs: TheirDigest,
        reply: bool,
        out: &mut Outbox,
    ) {
        let epoch = theirs.epoch;
        if epoch != self.epoch {
            // Their bookkeeping is of another compaction: whole states reconcile both ways.
            let names: Vec<String> = self.keyspaces.keys().cloned().collect();
            for name in names {
                self.send_full_state(to, &name, out);
            }
            // Each state we send is answered with theirs; for a keyspace we lack (all of them
            // on a node that starts empty), our digest asks for their states instead.
            if reply
                && theirs
                    .digest
                    .keys()
                    .any(|name| !self.keyspaces.contains_key(name))
            {
                self.send_digest(now, to, false, out);
            }
            return;
        }
        let mut ops = Vec::new();
        let mut full = Vec::new();
        for (name, keyspace) in &self.keyspaces {
            let missing = keyspace.missing_for(name, theirs.digest.get(name), self.epoch);
            let ops_size: usize = missing.ops.iter().map(envelope_size).sum();
            let records_differ = theirs.records_differ(name, keyspace);
            if missing.needs_full_state || records_differ || ops_size > state_size(keyspace) {
                full.push(name.clone());
            } else {
                ops.extend(missing.ops);
            }
        }
        if !self.bound.backs_all() {
            let me = self.me.node;
            ops.retain(|e| !self.bound.withholds(me, e.op.entry.ts));
        }
        self.send_ops(to, ops, out);
        for name in full {
            self.send_full_state(to, &name, out);
        }
        if reply && self.lacks(&theirs) {
            self.send_digest(now, to, false, out);
        }
        self.peer_digests
            .record(to.id, epoch, theirs.digest, theirs.clock);
    }

    /// Whether a peer with digest `theirs` has ops we have not seen, or records we lack.
    fn lacks(&self, theirs: &TheirDigest) -> bool {
        let ops = theirs
            .digest
            .iter()
            .any(|(name, seen)| match self.keyspaces.get(name) {
                Some(keyspace) => keyspace.lacks_from(seen),
                None => !seen.is_empty(),
            });
        let records = theirs
            .retired
            .keys()
            .any(|name| match self.keyspaces.get(name) {
                Some(keyspace) => theirs.records_differ(name, keyspace),
                None => true,
            });
        ops || records
    }

    #[allow(clippy::too_many_arguments)] // one message's fields, unpacked
    fn merge_full_state(
        &mut self,
        now: Instant,
        from: Option<NodeAddr>,
        name: &str,
        epoch: u32,
        bytes: &[u8],
        theirs: &Coverage<'_>,
        out: &mut Outbox,
    ) {
        // No room check: `keyspaces_max` bounds the keyspaces this node creates, as the other
        // limits bound its own writes. Two nodes one short of it can each create a different
        // one at once; refusing the other's here kept them apart for good, each re-offering
        // its keyspace at every exchange.
        let state = match full_state::decode(bytes) {
            Ok(state) if names_its_writes(&state) => state,
            _ => {
                self.stats.bad_states += 1;
                return;
            }
        };
        if !self.accept_timestamps(now, &state) {
            self.stats.drift_rejected += 1;
            return;
        }
        let ours = self.epoch;
        let keyspace = open(&mut self.keyspaces, &self.persistence, name);
        // An older epoch's state may still track origins we retired: take its data, and only
        // a record of those origins' progress.
        let state = if fault_on!(SeenWithoutApplying) {
            Map::default()
        } else {
            state
        };
        let merged = keyspace.merge_full(&state, theirs, !newer_epoch(ours, epoch));
        // The sender's other keyspaces arrive after we adopted its epoch: prune those too.
        let adopting = from.map(|f| (f.id, epoch));
        if newer_epoch(epoch, ours) || (adopting.is_some() && adopting == self.adopted_from) {
            self.adopted_from = adopting;
            self.adopt_epoch(name, epoch, theirs.seen);
        }
        self.stats.full_states_merged += 1;
        self.chain_wanted |= !merged.changes.is_empty();
        for change in merged.changes {
            emit(name, change, out);
        }
        // A merge is one-way: when the sender may hold what we lack (another epoch's state, or
        // values we saw removed) it gets ours back, and the two converge.
        if let (Some(to), true) = (from, merged.sender_stale || epoch != ours) {
            self.send_full_state(to, name, out);
        }
    }

    /// Moves to a newer epoch a peer is in: origins its state does not track were retired
    /// there, so we drop them too (a live one is rebuilt from its owner's next digest).
    fn adopt_epoch(&mut self, name: &str, epoch: u32, seen: &Seen) {
        if self.epoch != epoch {
            self.epoch = epoch;
            self.stats.epoch_changes += 1;
        }
        let me = self.me;
        if let Some(keyspace) = self.keyspaces.get_mut(name) {
            let dropped: Vec<Origin> = keyspace
                .origins()
                .filter(|o| **o != me && !seen.contains_key(o))
                .copied()
                .collect();
            for origin in dropped {
                keyspace.retire(&origin);
                self.stats.origins_retired += 1;
            }
        }
    }

    /// Passes the newest timestamp of a state through the HLC (the same drift rule as ops).
    fn accept_timestamps(&mut self, now: Instant, state: &Map) -> bool {
        match newest_stamp(state) {
            Some(ts) => self.hlc.update(ts, self.wall_ms(now)).is_ok(),
            None => true,
        }
    }

    fn push(&mut self, envelope: Envelope, peers: &[NodeAddr], out: &mut Outbox) {
        let targets = self.push_targets(peers);
        if targets.is_empty() {
            return;
        }
        let ts = envelope.op.entry.ts;
        match self.bound.backs(ts) {
            true => self.send_push(envelope, targets, out),
            false => self.bound.hold(ts, Held::Push { envelope, targets }),
        }
    }

    fn send_push(&mut self, envelope: Envelope, targets: Vec<NodeAddr>, out: &mut Outbox) {
        let payload = encode(ReplicationMessage::Ops(vec![envelope]));
        for to in targets {
            self.stats.ops_sent += 1;
            self.send(to, Channel::Replication, payload.clone(), out);
        }
    }

    /// Whom news goes to at once: every live member, or `fanout` random ones above
    /// `push_all_max`.
    fn push_targets(&mut self, peers: &[NodeAddr]) -> Vec<NodeAddr> {
        if peers.len() <= self.config.push_all_max {
            peers.to_vec()
        } else {
            self.choose(peers, self.config.fanout)
        }
    }

    fn send_ops(&mut self, to: NodeAddr, ops: Vec<Envelope>, out: &mut Outbox) {
        let mut batch = Vec::new();
        let mut size = 0;
        for envelope in ops {
            let len = envelope_size(&envelope);
            if !batch.is_empty() && size + len > OPS_MESSAGE_BYTES_MAX {
                self.flush(to, &mut batch, out);
                size = 0;
            }
            size += len;
            batch.push(envelope);
        }
        self.flush(to, &mut batch, out);
    }

    fn flush(&mut self, to: NodeAddr, batch: &mut Vec<Envelope>, out: &mut Outbox) {
        if batch.is_empty() {
            return;
        }
        self.stats.ops_sent += batch.len() as u64;
        let message = ReplicationMessage::Repair(std::mem::take(batch));
        self.send(to, Channel::Replication, encode(message), out);
    }

    /// Sends a keyspace's state: on the bulk channel when large, so it neither waits behind
    /// nor delays the ops and digests on the replication stream.
    fn send_full_state(&mut self, to: NodeAddr, name: &str, out: &mut Outbox) {
        let Some(keyspace) = self.keyspaces.get(name) else {
            return;
        };
        if self.withholds_state(keyspace) {
            return;
        }
        let state = match full_state::encode(keyspace.map()) {
            Ok(state) if state.len() <= FULL_STATE_BYTES_MAX => state,
            _ => {
                self.stats.bad_states += 1;
                return;
            }
        };
        let channel = if state.len() > self.config.bulk_threshold {
            self.stats.bulk_states_sent += 1;
            Channel::Bulk
        } else {
            Channel::Replication
        };
        let message = ReplicationMessage::FullState {
            keyspace: name.to_owned(),
            epoch: self.epoch,
            state,
            seen: keyspace.seen(),
            retired: keyspace.retired(),
        };
        self.stats.full_states_sent += 1;
        self.send(to, channel, encode(message), out);
    }

    /// Whether `keyspace` holds a write of ours stamped above the durable ceiling: its state
    /// waits (the peer asks again next round), since leaving the entry out while the seen-set
    /// claims it would have the peer take it for one we removed.
    fn withholds_state(&self, keyspace: &Keyspace) -> bool {
        let me = self.me.node;
        !self.bound.backs_all()
            && keyspace
                .map()
                .entries()
                .any(|(_, e)| self.bound.withholds(me, e.ts))
    }

    /// Sends our digest to every live member but this round's `partner` (to `fanout` random
    /// ones above `push_all_max`), asking no reply, once per GC round: GC needs a recent digest
    /// from every member, and anti-entropy alone takes N−1 intervals to bring them all.
    fn announce_digest(
        &mut self,
        now: Instant,
        peers: &[NodeAddr],
        partner: Option<NodeAddr>,
        out: &mut Outbox,
    ) {
        let others: Vec<NodeAddr> = peers
            .iter()
            .filter(|p| Some(**p) != partner)
            .copied()
            .collect();
        let targets = if others.len() <= self.config.push_all_max {
            others
        } else {
            self.choose(&others, self.config.fanout)
        };
        for to in targets {
            self.send_digest(now, to, false, out);
        }
    }

    fn send_digest(&mut self, now: Instant, to: NodeAddr, reply: bool, out: &mut Outbox) {
        self.stats.digests_sent += 1;
        let retired = self
            .keyspaces
            .iter()
            .map(|(name, k)| (name.clone(), k.retired_fingerprint()))
            .filter(|(_, fingerprint)| *fingerprint != 0)
            .collect();
        let message = ReplicationMessage::Digest {
            digest: self.digest(),
            reply,
            epoch: self.epoch,
            clock: self.hlc.now(self.wall_ms(now)),
            retired,
        };
        self.send(to, Channel::Replication, encode(message), out);
    }

    fn send(&mut self, to: NodeAddr, channel: Channel, payload: Bytes, out: &mut Outbox) {
        self.stats.bytes_sent += payload.len() as u64;
        out.send(to, channel, payload);
    }

    /// Up to `n` distinct members of `peers`, at random.
    fn choose(&mut self, peers: &[NodeAddr], n: usize) -> Vec<NodeAddr> {
        let mut pool = peers.to_vec();
        let n = n.min(pool.len());
        for i in 0..n {
            let j = self.rng.random_range(i..pool.len());
            pool.swap(i, j);
        }
        pool.truncate(n);
        pool
    }

    fn start_ticking(&mut self, now: Instant, out: &mut Outbox) {
        if !self.ticking {
            self.ticking = true;
            self.arm_anti_entropy(now, out);
        }
    }

    fn arm_anti_entropy(&mut self, now: Instant, out: &mut Outbox) {
        // ±10% jitter keeps nodes that started together from exchanging in lockstep.
        let jitter = 0.9 + 0.2 * self.rng.random::<f64>();
        let after = self.config.anti_entropy_interval.mul_f64(jitter);
        out.timer(
            now + after,
            crate::Timer::Replication(ReplicationTimer::AntiEntropy),
        );
    }

    fn wall_ms(&self, now: Instant) -> u64 {
        let elapsed = u64::try_from(now.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.config.wall_ms_at_zero.saturating_add(elapsed)
    }
}

/// A digest as a peer sent it.
struct TheirDigest {
    digest: Digest,
    epoch: u32,
    clock: Timestamp,
    retired: BTreeMap<String, u64>,
}

impl TheirDigest {
    /// Whether their retired records of `keyspace` differ from `ours`.
    fn records_differ(&self, keyspace: &str, ours: &Keyspace) -> bool {
        self.retired.get(keyspace).copied().unwrap_or(0) != ours.retired_fingerprint()
    }
}

/// What became of a remote op.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    /// Applied now.
    Applied,
    /// Applied before.
    Duplicate,
    /// Not applied (malformed, another epoch, clock drift); a well-formed one will be
    /// offered again.
    Refused,
}

/// Tombstone GC runs this many times per [`ReplicationConfig::tombstone_ttl`].
const GC_ROUNDS_PER_TTL: u32 = 16;

/// The epoch after retiring `retired` in `epoch`: one more compaction in the high 16 bits, so
/// it is newer than `epoch` ([`newer_epoch`]), and a hash of `epoch` and the retired origins in
/// the low 16, so nodes that retire the same origins from the same epoch agree on the next one
/// without talking, and any two that did not (almost always) differ and reconcile with full
/// states. (A hash alone does not say which of two epochs is newer: a node could go back to the
/// epoch it came from, taking back the origins it had retired.)
fn next_epoch(epoch: u32, retired: &BTreeSet<Origin>) -> u32 {
    let mut bytes = epoch.to_be_bytes().to_vec();
    for origin in retired {
        bytes.extend_from_slice(&origin.node.as_u128().to_be_bytes());
        bytes.extend_from_slice(&origin.generation.to_be_bytes());
    }
    let hash = foundation_crdt::fnv1a64(&bytes) as u32 & 0xFFFF;
    let count = (epoch >> 16).wrapping_add(1) & 0xFFFF;
    count << 16 | hash
}

/// Whether epoch `a` is newer than `b`: it counts more compactions (in serial-number arithmetic,
/// so the 16-bit count may wrap), or as many with a higher hash, so two nodes that compacted
/// differently from one epoch pick the same of their two.
fn newer_epoch(a: u32, b: u32) -> bool {
    let (count_a, count_b) = ((a >> 16) as u16, (b >> 16) as u16);
    if count_a == count_b {
        a & 0xFFFF > b & 0xFFFF
    } else {
        count_a.wrapping_sub(count_b) as i16 > 0
    }
}

/// The keyspace called `name`, created if new; its changes are tracked if it persists.
fn open<'a>(
    keyspaces: &'a mut BTreeMap<String, Keyspace>,
    persistence: &Persistence,
    name: &str,
) -> &'a mut Keyspace {
    keyspaces.entry(name.to_owned()).or_insert_with(|| {
        let mut keyspace = Keyspace::default();
        if persistence.durable(name) {
            keyspace.track_changes();
        }
        keyspace
    })
}

fn emit(keyspace: &str, change: Change, out: &mut Outbox) {
    out.event(Event::Replication(ReplicationEvent::KeyChanged {
        keyspace: keyspace.to_owned(),
        key: change.key,
        old: change.old,
        new: change.new,
    }));
}

/// Estimated encoded size of a keyspace's full state.
fn state_size(keyspace: &Keyspace) -> usize {
    let map = keyspace.map();
    keyspace.bytes() + (map.len() + map.tombstones()) * STATE_ENTRY_OVERHEAD
}

/// The newest stamp a state holds, for the clock to move past: its entries' (tombstones count: a
/// delete taken from a state orders our later writes after it too) and its GC horizon. A write
/// stamped below a horizon its replicas hold breaks the GC rule: a delete leaves no tombstone
/// there, so a set of the key that arrives after it is taken for new on one replica and not on
/// another, and nothing in their seen-sets shows it.
fn newest_stamp(state: &Map) -> Option<Timestamp> {
    let horizon = Some(state.horizon()).filter(|h| *h > Timestamp::ZERO);
    state.entries().map(|(_, e)| e.ts).chain(horizon).max()
}

/// Whether every live value of a state names a write (seqs start at 1): a value that names
/// none would pass for one every replica has seen and removed.
fn names_its_writes(state: &Map) -> bool {
    state.iter().all(|(_, value)| value.seq > 0)
}

fn envelope_size(envelope: &Envelope) -> usize {
    let value = envelope.op.entry.value.as_ref().map_or(0, Vec::len);
    ENVELOPE_OVERHEAD + envelope.keyspace.len() + envelope.op.key.len() + value
}

/// Encodes a replication message in the core's envelope.
pub fn encode(message: ReplicationMessage) -> Bytes {
    envelope::encode(envelope::REPLICATION, &message)
}
