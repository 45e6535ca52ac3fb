//! Replicated keyspaces: named LWW maps (`String -> bytes`) that every node reads locally and
//! may change, converging after any partition.
//!
//! A local write becomes an op in an [`Envelope`] `(origin, seq, epoch)`, applied here and
//! pushed to [`ReplicationConfig::fanout`] random live members. Anti-entropy repairs the rest:
//! every [`ReplicationConfig::anti_entropy_interval`] a node sends its [`Digest`] (highest
//! contiguous seq per origin per keyspace) to a random live member, which answers with exactly
//! the ops the sender lacks from its op log — or, when the sender is behind the log's horizon
//! (the log was truncated), with the keyspace's full state — and, if it lacks something itself,
//! with its own digest so the sender fills it in turn.
//!
//! A deterministic machine like membership: time comes in as `now`, randomness from a seeded
//! RNG, live members from the caller.

mod keyspace;
#[cfg(test)]
mod tests;
pub mod wire;

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use foundation_crdt::{Canonical, Hlc, HlcConfig, LwwEntry, DEFAULT_MAX_DRIFT_MS};
use foundation_transport::{Channel, NodeAddr};
use rand10::rngs::StdRng;
use rand10::{RngExt, SeedableRng};

pub use keyspace::{Change, Keyspace};
pub use wire::{Digest, Envelope, Map, Op, Origin, ReplicationMessage, Seen};

use crate::effects::{self, Event, Outbox};
use crate::time::Instant;

/// Largest batch of ops in one message, in (estimated) bytes: well under the replication
/// channel's 4 MiB frame limit.
const OPS_MESSAGE_BYTES_MAX: usize = 1 << 20;
/// Largest full state we send on the replication channel (its frame limit is 4 MiB); larger
/// states need the bulk channel, which is not wired yet.
const FULL_STATE_BYTES_MAX: usize = 4 * 1024 * 1024 - 64 * 1024;
/// Longest keyspace name.
const KEYSPACE_NAME_MAX: usize = 64;
/// Per-op overhead of an envelope on the wire beyond key and value, for batching estimates.
const ENVELOPE_OVERHEAD: usize = 64;

/// Replication's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicationConfig {
    /// How many random live members a new op is pushed to.
    pub fanout: usize,
    /// How often a node starts an anti-entropy exchange.
    pub anti_entropy_interval: Duration,
    /// Ops kept per origin per keyspace to answer digests; a peer further behind gets the full
    /// state.
    pub op_log_max: usize,
    /// Largest value, in bytes.
    pub value_size_max: usize,
    /// Largest key, in bytes.
    pub key_size_max: usize,
    /// Most live keys in one keyspace.
    pub keyspace_keys_max: usize,
    /// Most bytes (keys plus values) in one keyspace; keeps a full state within one message.
    pub keyspace_bytes_max: usize,
    /// Most keyspaces.
    pub keyspaces_max: usize,
    /// How far ahead of our wall clock a remote timestamp may be (see [`HlcConfig`]).
    pub max_drift_ms: u64,
    /// Wall-clock time (Unix ms) at the driver's `Instant::ZERO`: HLC timestamps are wall time,
    /// and nodes' monotonic epochs differ. The simulator leaves it 0 (one virtual clock).
    pub wall_ms_at_zero: u64,
}

impl Default for ReplicationConfig {
    fn default() -> Self {
        Self {
            fanout: 3,
            anti_entropy_interval: Duration::from_secs(1),
            op_log_max: 1024,
            value_size_max: 64 * 1024,
            key_size_max: 1024,
            keyspace_keys_max: 10_000,
            keyspace_bytes_max: 2 * 1024 * 1024,
            keyspaces_max: 64,
            max_drift_ms: DEFAULT_MAX_DRIFT_MS,
            wall_ms_at_zero: 0,
        }
    }
}

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
    /// No more keyspaces may be created.
    #[error("cannot create keyspace {keyspace:?}: {max} keyspaces exist (keyspaces_max)")]
    TooManyKeyspaces {
        /// The keyspace.
        keyspace: String,
        /// The limit.
        max: usize,
    },
}

/// Replication's timers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplicationTimer {
    /// Time to send our digest to a random live member.
    AntiEntropy,
}

/// What replication reports to the application.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplicationEvent {
    /// A key's live value changed, by a local write or a remote one (`None`: absent).
    KeyChanged {
        /// The keyspace.
        keyspace: String,
        /// The key.
        key: String,
        /// The value before.
        old: Option<Vec<u8>>,
        /// The value now.
        new: Option<Vec<u8>>,
    },
}

/// Counters for metrics and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
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
    /// Remote ops or states of an older epoch, or for a keyspace we have no room for.
    pub dropped: u64,
    /// Ops sent (eager pushes and digest answers).
    pub ops_sent: u64,
    /// Digests sent.
    pub digests_sent: u64,
    /// Full states sent.
    pub full_states_sent: u64,
    /// Full states merged.
    pub full_states_merged: u64,
    /// Full states that did not decode, or that were too large to send.
    pub bad_states: u64,
}

/// One node's replicated keyspaces.
pub struct Replication {
    me: Origin,
    config: ReplicationConfig,
    hlc: Hlc,
    rng: StdRng,
    keyspaces: BTreeMap<String, Keyspace>,
    /// The compaction epoch; always 0 until compaction exists.
    epoch: u32,
    /// Whether the anti-entropy timer is armed. It starts with the first state, so a node (or a
    /// simulated cluster) that never replicates anything sends nothing.
    ticking: bool,
    stats: ReplicationStats,
}

impl Replication {
    /// A machine for `me` holding nothing yet; `seed` drives every random choice.
    pub fn new(me: Origin, config: ReplicationConfig, seed: u64) -> Self {
        let hlc = Hlc::new(
            me.node,
            HlcConfig {
                max_drift_ms: config.max_drift_ms,
            },
        );
        Self {
            me,
            config,
            hlc,
            rng: StdRng::seed_from_u64(seed),
            keyspaces: BTreeMap::new(),
            epoch: 0,
            ticking: false,
            stats: ReplicationStats::default(),
        }
    }

    /// Who we write as.
    pub fn me(&self) -> Origin {
        self.me
    }

    /// The live value of `key` in `keyspace`.
    pub fn get(&self, keyspace: &str, key: &str) -> Option<&[u8]> {
        self.keyspaces
            .get(keyspace)
            .and_then(|k| k.map().get(&key.to_owned()))
            .map(Vec::as_slice)
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

    /// Applies a local write and pushes it to up to `fanout` of `peers` (the live members).
    pub fn write(
        &mut self,
        now: Instant,
        write: Write,
        peers: &[NodeAddr],
        out: &mut Outbox,
    ) -> Result<(), ReplicationError> {
        if let Err(error) = self.check(&write) {
            self.stats.refused_writes += 1;
            return Err(error);
        }
        let ts = self.hlc.now(self.wall_ms(now));
        let keyspace = self.keyspaces.entry(write.keyspace.clone()).or_default();
        let envelope = Envelope {
            seq: keyspace.next_seq(self.me),
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
        self.push(envelope, peers, out);
        self.start_ticking(now, out);
        Ok(())
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
                for envelope in &envelopes {
                    self.apply_remote(now, envelope, out);
                }
            }
            ReplicationMessage::Digest { digest, reply } => {
                if let Some(from) = from {
                    self.answer_digest(from, &digest, reply, out);
                }
            }
            ReplicationMessage::FullState {
                keyspace,
                epoch,
                state,
                seen,
            } => self.merge_full_state(now, &keyspace, epoch, &state, &seen, out),
        }
        if !self.keyspaces.is_empty() {
            self.start_ticking(now, out);
        }
    }

    /// Handles a timer; `peers` are the live members.
    pub fn handle_timer(
        &mut self,
        now: Instant,
        timer: ReplicationTimer,
        peers: &[NodeAddr],
        out: &mut Outbox,
    ) {
        match timer {
            ReplicationTimer::AntiEntropy => {
                self.arm_anti_entropy(now, out);
                if let Some(&peer) = self.choose(peers, 1).first() {
                    self.send_digest(peer, true, out);
                }
            }
        }
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
        let old = keyspace.map().get(&write.key);
        let max_keys = self.config.keyspace_keys_max;
        if old.is_none() && keyspace.map().len() >= max_keys {
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

    fn apply_remote(&mut self, now: Instant, envelope: &Envelope, out: &mut Outbox) {
        let room = self.keyspaces.contains_key(&envelope.keyspace)
            || self.keyspaces.len() < self.config.keyspaces_max;
        if envelope.epoch < self.epoch || !room {
            self.stats.dropped += 1;
            return;
        }
        if self
            .keyspaces
            .get(&envelope.keyspace)
            .is_some_and(|k| k.has(envelope))
        {
            self.stats.duplicate_ops += 1;
            return;
        }
        // The drift check refuses an op stamped far in the future: it would win every conflict
        // until real time caught up. Refused ops stay unseen, so they are offered again.
        if self
            .hlc
            .update(envelope.op.entry.ts, self.wall_ms(now))
            .is_err()
        {
            self.stats.drift_rejected += 1;
            return;
        }
        let keyspace = self.keyspaces.entry(envelope.keyspace.clone()).or_default();
        self.stats.ops_applied += 1;
        if let Some(change) = keyspace.apply(envelope, self.config.op_log_max) {
            emit(&envelope.keyspace, change, out);
        }
    }

    fn answer_digest(&mut self, to: NodeAddr, theirs: &Digest, reply: bool, out: &mut Outbox) {
        let mut ops = Vec::new();
        let mut full = Vec::new();
        for (name, keyspace) in &self.keyspaces {
            let missing = keyspace.missing_for(name, theirs.get(name));
            if missing.needs_full_state {
                full.push(name.clone());
            }
            ops.extend(missing.ops);
        }
        self.send_ops(to, ops, out);
        for name in full {
            self.send_full_state(to, &name, out);
        }
        if reply && self.lacks(theirs) {
            self.send_digest(to, false, out);
        }
    }

    /// Whether a peer with digest `theirs` has ops we have not seen.
    fn lacks(&self, theirs: &Digest) -> bool {
        theirs
            .iter()
            .any(|(name, seen)| match self.keyspaces.get(name) {
                Some(keyspace) => keyspace.lacks_from(seen),
                None => !seen.is_empty(),
            })
    }

    fn merge_full_state(
        &mut self,
        now: Instant,
        name: &str,
        epoch: u32,
        bytes: &[u8],
        seen: &Seen,
        out: &mut Outbox,
    ) {
        let room =
            self.keyspaces.contains_key(name) || self.keyspaces.len() < self.config.keyspaces_max;
        if epoch < self.epoch || !room {
            self.stats.dropped += 1;
            return;
        }
        let Ok(state) = Map::decode(bytes) else {
            self.stats.bad_states += 1;
            return;
        };
        if !self.accept_timestamps(now, &state) {
            self.stats.drift_rejected += 1;
            return;
        }
        let keyspace = self.keyspaces.entry(name.to_owned()).or_default();
        let changes = keyspace.merge_full(&state, seen);
        self.stats.full_states_merged += 1;
        for change in changes {
            emit(name, change, out);
        }
    }

    /// Passes the newest timestamp of a state through the HLC (the same drift rule as ops).
    fn accept_timestamps(&mut self, now: Instant, state: &Map) -> bool {
        let newest = state
            .iter()
            .filter_map(|(k, _)| state.entry(k).map(|e| e.ts))
            .max();
        match newest {
            Some(ts) => self.hlc.update(ts, self.wall_ms(now)).is_ok(),
            None => true,
        }
    }

    fn push(&mut self, envelope: Envelope, peers: &[NodeAddr], out: &mut Outbox) {
        let targets = self.choose(peers, self.config.fanout);
        if targets.is_empty() {
            return;
        }
        let payload = encode(ReplicationMessage::Ops(vec![envelope]));
        for to in targets {
            self.stats.ops_sent += 1;
            out.send(to, Channel::Replication, payload.clone());
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
        let message = ReplicationMessage::Ops(std::mem::take(batch));
        out.send(to, Channel::Replication, encode(message));
    }

    fn send_full_state(&mut self, to: NodeAddr, name: &str, out: &mut Outbox) {
        let Some(keyspace) = self.keyspaces.get(name) else {
            return;
        };
        let state = match keyspace.map().encode() {
            Ok(state) if state.len() <= FULL_STATE_BYTES_MAX => state,
            _ => {
                self.stats.bad_states += 1;
                return;
            }
        };
        let message = ReplicationMessage::FullState {
            keyspace: name.to_owned(),
            epoch: self.epoch,
            state,
            seen: keyspace.seen(),
        };
        self.stats.full_states_sent += 1;
        out.send(to, Channel::Replication, encode(message));
    }

    fn send_digest(&mut self, to: NodeAddr, reply: bool, out: &mut Outbox) {
        self.stats.digests_sent += 1;
        let message = ReplicationMessage::Digest {
            digest: self.digest(),
            reply,
        };
        out.send(to, Channel::Replication, encode(message));
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
            effects::Timer::Replication(ReplicationTimer::AntiEntropy),
        );
    }

    fn wall_ms(&self, now: Instant) -> u64 {
        let elapsed = u64::try_from(now.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.config.wall_ms_at_zero.saturating_add(elapsed)
    }
}

fn emit(keyspace: &str, change: Change, out: &mut Outbox) {
    out.event(Event::Replication(ReplicationEvent::KeyChanged {
        keyspace: keyspace.to_owned(),
        key: change.key,
        old: change.old,
        new: change.new,
    }));
}

fn envelope_size(envelope: &Envelope) -> usize {
    let value = envelope.op.entry.value.as_ref().map_or(0, Vec::len);
    ENVELOPE_OVERHEAD + envelope.keyspace.len() + envelope.op.key.len() + value
}

/// Encodes a replication message as a core message.
pub fn encode(message: ReplicationMessage) -> Bytes {
    crate::core::encode_message(&crate::core::CoreMessage::Replication(message))
}
