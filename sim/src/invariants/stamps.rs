//! `stamps-follow-lives`: every stamp a node lets out is above every stamp its earlier lives
//! let out, and within a life its writes' stamps rise with their seqs.
//!
//! A stamp a node sent may be kept by any peer, and last-writer-wins orders by stamp alone: a
//! later write of the same key stamped at or below it loses to it everywhere. So a restarted
//! node that took up its disk must stamp above everything its past lives sent — also the writes
//! it pushed and then lost in the crash before they were durable, which its disk cannot show
//! (`foundation_core::replication`'s stored clock ceiling is what keeps to this). The
//! `acknowledged-writes-present` check cannot see the breach: it decides which write should
//! win by the stamps themselves. This one reads the stamps off the messages the nodes send
//! ([`crate::stamps`]), as a peer would, and compares them by node and life.
//!
//! The rule across lives holds only for a life that took up the disk of the life before: a node
//! without a disk (or with a new one) comes back as a new writer, knowing nothing of its past.
//!
//! State per node id: the highest stamp its running life let out, the highest of its earlier
//! lives', and per keyspace the highest seq let out with its stamp (the within-life order: a
//! higher seq must carry a higher stamp, and a resend of a seq the same stamp).

use std::collections::BTreeMap;

use foundation_crdt::{NodeId, Timestamp};

use super::{Check, Invariant, Measurements};
use crate::stamps::LetOut;
use crate::world::World;

/// The `stamps-follow-lives` invariant; see the module docs.
#[derive(Default)]
pub struct StampsFollowLives {
    writers: BTreeMap<NodeId, Writer>,
    checked: u64,
}

/// What one node id's lives let out.
struct Writer {
    life: u64,
    /// The op with the highest stamp the running life let out.
    newest: LetOut,
    /// The op with the highest stamp an earlier life let out, if the running life took up its
    /// disk.
    before: Option<LetOut>,
    /// Per origin generation and keyspace, the highest seq the running life let out and its
    /// stamp (a renewal within the life starts a new origin, whose seqs start again at 1).
    seqs: BTreeMap<(u64, String), (u64, Timestamp)>,
}

impl StampsFollowLives {
    /// A fresh check.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Writer {
    fn new(op: &LetOut) -> Self {
        Self {
            life: op.life,
            newest: op.clone(),
            before: None,
            seqs: BTreeMap::new(),
        }
    }

    /// Moves on to the life that sent `op`; the past lives' newest stamp stays only if that
    /// life runs on their disk.
    fn next_life(&mut self, op: &LetOut, on_their_disk: bool) {
        let past = std::mem::replace(&mut self.newest, op.clone());
        self.before = match self.before.take() {
            _ if !on_their_disk => None,
            Some(older) if older.ts > past.ts => Some(older),
            _ => Some(past),
        };
        self.life = op.life;
        self.seqs.clear();
    }

    fn check(&mut self, op: &LetOut) -> Check {
        let beneath_a_past_life = self.before.as_ref().filter(|b| op.ts <= b.ts);
        let result = match beneath_a_past_life {
            Some(before) => Err(format!(
                "{} is not above {} of its life {}",
                show(op),
                show(before),
                before.life
            )),
            None => self.in_seq_order(op),
        };
        if op.ts > self.newest.ts {
            self.newest = op.clone();
        }
        result
    }

    /// A higher seq than any let out carries a higher stamp; a lower or equal one, a stamp no
    /// higher (equal for the same seq).
    fn in_seq_order(&mut self, op: &LetOut) -> Check {
        let key = (op.origin.generation, op.keyspace.clone());
        let Some(&(seq, ts)) = self.seqs.get(&key) else {
            self.seqs.insert(key, (op.seq, op.ts));
            return Ok(());
        };
        let ordered = match op.seq.cmp(&seq) {
            std::cmp::Ordering::Greater => op.ts > ts,
            std::cmp::Ordering::Equal => op.ts == ts,
            std::cmp::Ordering::Less => op.ts < ts,
        };
        if op.seq > seq {
            self.seqs.insert(key, (op.seq, op.ts));
        }
        match ordered {
            true => Ok(()),
            false => Err(format!(
                "{} is out of order with seq {seq} of the same life, stamped {}",
                show(op),
                show_ts(ts)
            )),
        }
    }
}

fn show(op: &LetOut) -> String {
    format!(
        "n{} life {} (gen {})'s {} of {} seq {} at {:.3}s stamped {}",
        op.slot,
        op.life,
        op.origin.generation,
        op.how,
        op.keyspace,
        op.seq,
        op.at_us as f64 / 1e6,
        show_ts(op.ts)
    )
}

fn show_ts(ts: Timestamp) -> String {
    format!(
        "{}.{:03}s+{}",
        ts.wall_ms / 1000,
        ts.wall_ms % 1000,
        ts.logical
    )
}

impl Invariant for StampsFollowLives {
    fn name(&self) -> &'static str {
        "stamps-follow-lives"
    }

    fn on_let_out(&mut self, world: &World, op: &LetOut) -> Check {
        self.checked += 1;
        let writer = self
            .writers
            .entry(op.origin.node)
            .or_insert_with(|| Writer::new(op));
        if writer.life != op.life {
            let on_their_disk = world.node(op.slot).up_with_disk_of(writer.life);
            writer.next_life(op, on_their_disk);
        }
        writer.check(op)
    }

    fn measure(&self, out: &mut Measurements) {
        out.stamps_checked += self.checked;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use foundation_core::replication::Origin;

    fn op(generation: u64, seq: u64, wall_ms: u64) -> LetOut {
        LetOut {
            at_us: wall_ms * 1000,
            slot: 1,
            life: 1,
            origin: Origin {
                node: NodeId::from_u128(1),
                generation,
            },
            keyspace: "kv".into(),
            seq,
            ts: Timestamp {
                wall_ms,
                logical: 0,
                node: NodeId::from_u128(1),
            },
            how: "push",
        }
    }

    /// A node declared failed renews its origin within the same life, and the new origin's
    /// seqs start at 1 again: that is not a write out of order.
    #[test]
    fn a_renewed_origin_starts_its_own_seq_order() {
        let mut writer = Writer::new(&op(7, 1, 100));
        for (generation, seq, wall_ms) in [(7, 1, 100), (7, 2, 200), (7, 3, 300), (8, 1, 400)] {
            assert_eq!(writer.check(&op(generation, seq, wall_ms)), Ok(()));
        }
        assert!(
            writer.check(&op(8, 2, 350)).is_err(),
            "a higher seq of the renewed origin stamped lower"
        );
    }
}
