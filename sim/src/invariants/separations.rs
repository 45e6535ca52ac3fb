//! When the world kept pairs of nodes apart, for the one exception replication documents to
//! last-writer-wins: a set and a newer delete of the same key, made on two sides of a
//! partition that lasted longer than `departed_after`, may resolve for the set (the side that
//! deleted may have taken the other for gone and collected its tombstone; see the replication
//! module's "What departure gives up"). Invariants that compare data with the write log use it
//! to excuse exactly that pair, and only when the world really kept their writers apart that
//! long.

use std::collections::BTreeMap;

use crate::faults::Fault;
use crate::world::World;
use crate::writes::WriteRecord;

/// When pairs of slots were cut off from each other both ways.
#[derive(Default)]
pub struct Separations {
    /// Pairs `(a, b)`, `a < b`, cut off now, since when (world µs).
    open: BTreeMap<(usize, usize), u64>,
    /// Pairs that were cut off, and over which interval.
    closed: Vec<((usize, usize), u64, u64)>,
}

impl Separations {
    /// Takes note of the network after a partition or a heal.
    pub fn on_fault(&mut self, world: &World, fault: &Fault) {
        if matches!(
            fault,
            Fault::Partition(..) | Fault::PartitionOneWay(..) | Fault::Heal
        ) {
            self.update(world);
        }
    }

    fn update(&mut self, world: &World) {
        let now = world.now_us();
        let network = world.network();
        let n = world.nodes().len();
        for a in 0..n {
            for b in a + 1..n {
                let cut = network.blocked(a, b) && network.blocked(b, a);
                match (cut, self.open.get(&(a, b)).copied()) {
                    (true, None) => {
                        self.open.insert((a, b), now);
                    }
                    (false, Some(since)) => {
                        self.open.remove(&(a, b));
                        self.closed.push(((a, b), since, now));
                    }
                    _ => {}
                }
            }
        }
    }

    /// Whether `set` may legitimately beat the newer `delete`: their writers were cut off from
    /// each other over both writes by one separation longer than `departed_after`.
    pub fn set_may_beat_delete(
        &self,
        world: &World,
        set: &WriteRecord,
        delete: &WriteRecord,
    ) -> bool {
        let longer_than = world.replication_config().departed_after.as_micros() as u64;
        let during = (set.at_us.min(delete.at_us), set.at_us.max(delete.at_us));
        set.value.is_some()
            && delete.value.is_none()
            && self.apart(set.slot, delete.slot, during, longer_than, world.now_us())
    }

    /// Whether slots `a` and `b` were cut off from each other over all of `[from, to]`, by one
    /// separation that lasted longer than `longer_than` (µs); open ones count until `now`.
    fn apart(
        &self,
        a: usize,
        b: usize,
        (from, to): (u64, u64),
        longer_than: u64,
        now: u64,
    ) -> bool {
        let pair = (a.min(b), a.max(b));
        let open = self.open.get(&pair).map(|&since| (pair, since, now));
        self.closed
            .iter()
            .copied()
            .chain(open)
            .any(|(p, since, until)| {
                p == pair && since <= from && to <= until && until - since > longer_than
            })
    }
}
