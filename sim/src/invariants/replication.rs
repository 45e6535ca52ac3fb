//! Replication invariants: replicas converge on the same data, acknowledged writes survive, and
//! departed writers' bookkeeping is retired.
//!
//! They compare the *live data* of each keyspace (keys and values), never the bookkeeping:
//! tombstones are collected and departed origins retired at different moments on different
//! nodes, so two replicas holding the same data may still differ in tombstones, horizon and
//! seen-sets (`Replication::state_digests` hashes the canonical map, tombstones and horizon
//! included, so it is not the measure here). A keyspace holding only tombstones equals one the
//! node never heard of.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use foundation_core::node::Core;

use super::separations::Separations;
use super::{Check, Invariant, Measurements, ReplicationEpisode};
use crate::faults::{Fault, LEAVE_GRACE};
use crate::trace::Fnv64;
use crate::world::{NodeStatus, World};
use crate::writes::WriteRecord;

fn secs(us: u64) -> f64 {
    us as f64 / 1e6
}

/// Slots whose core is running (not stalled, not down).
pub(crate) fn running(world: &World) -> impl Iterator<Item = (usize, &Core)> + '_ {
    world
        .nodes()
        .iter()
        .enumerate()
        .filter(|(_, n)| n.status() == NodeStatus::Running)
        .filter_map(|(slot, n)| n.core().map(|c| (slot, c)))
}

/// A hash of a node's live data: every keyspace's live keys and values, in order; keyspaces
/// without a live key leave no trace.
fn fingerprint(core: &Core) -> u64 {
    let mut h = Fnv64::new();
    let replication = core.replication();
    for name in replication.keyspace_names() {
        let Some(keyspace) = replication.keyspace(name) else {
            continue;
        };
        let mut live = 0u64;
        for (key, value) in keyspace.iter() {
            if live == 0 {
                h.write(&(name.len() as u64).to_le_bytes());
                h.write(name.as_bytes());
            }
            live += 1;
            h.write(&(key.len() as u64).to_le_bytes());
            h.write(key.as_bytes());
            h.write(&Fnv64::of(value).to_le_bytes());
        }
        if live > 0 {
            h.write(&live.to_le_bytes());
        }
    }
    h.finish()
}

/// Live data of a node: keyspace → key → value.
fn live_data(core: &Core) -> BTreeMap<&str, BTreeMap<&str, &[u8]>> {
    let replication = core.replication();
    replication
        .keyspace_names()
        .filter_map(|name| {
            let keyspace = replication.keyspace(name)?;
            let live: BTreeMap<&str, &[u8]> = keyspace.iter().collect();
            (!live.is_empty()).then_some((name, live))
        })
        .collect()
}

fn show(value: Option<&[u8]>) -> String {
    match value {
        None => "absent".into(),
        Some(v) => {
            let name: String = String::from_utf8_lossy(v)
                .chars()
                .take_while(|c| *c != '.')
                .take(24)
                .collect();
            format!("{name:?}")
        }
    }
}

/// The first difference between two nodes' live data, in words.
fn difference(world: &World, a: usize, b: usize) -> String {
    let (Some(ca), Some(cb)) = (world.node(a).core(), world.node(b).core()) else {
        return format!("n{a} or n{b} is down");
    };
    let (da, db) = (live_data(ca), live_data(cb));
    let names: BTreeSet<&str> = da.keys().chain(db.keys()).copied().collect();
    let empty = BTreeMap::new();
    for name in names {
        let (ka, kb) = (
            da.get(name).unwrap_or(&empty),
            db.get(name).unwrap_or(&empty),
        );
        let keys: BTreeSet<&str> = ka.keys().chain(kb.keys()).copied().collect();
        for key in keys {
            let (va, vb) = (ka.get(key).copied(), kb.get(key).copied());
            if va != vb {
                return format!(
                    "keyspace {name:?}: n{a} has {} live keys, n{b} {}; first difference {key}: {} on n{a}, {} on n{b}",
                    ka.len(),
                    kb.len(),
                    show(va),
                    show(vb)
                );
            }
        }
    }
    format!("n{a} and n{b} differ")
}

/// The first running node whose live data differs from the first running node's.
fn divergence(world: &World) -> Option<String> {
    let mut nodes = running(world);
    let (first, core) = nodes.next()?;
    let reference = fingerprint(core);
    let (other, _) = nodes.find(|(_, c)| fingerprint(c) != reference)?;
    let live = running(world).count();
    Some(format!(
        "{} of {live} running nodes differ from n{first}; {}",
        running(world)
            .filter(|(_, c)| fingerprint(c) != reference)
            .count(),
        difference(world, first, other)
    ))
}

struct Episode {
    since: u64,
    deadline: u64,
    cause: String,
    rounds_at: u64,
}

/// `replicas-converge`: after every disturbance (heal, crash, restart, stop, stall, join), every
/// burst of writes, and the end of every workload, every running node holds the same live data
/// within `bound`. While a partition is in place the sides cannot agree, and while a workload
/// runs new writes keep arriving: the clock starts at the heal, or when the writes stop. Each
/// episode's time to equal is measured, with the anti-entropy rounds it took per running node.
pub struct ReplicasConverge {
    bound: Duration,
    armed: Option<Episode>,
    /// No agreement is expected before this (a stall or a graceful stop is still under way).
    not_before: u64,
    /// Causes waiting for a heal.
    deferred: Option<String>,
    /// Workloads running until this time (world µs), with what to call the episode then.
    writes_until: Option<(u64, String)>,
    records: Vec<ReplicationEpisode>,
}

impl ReplicasConverge {
    /// With this bound.
    pub fn new(bound: Duration) -> Self {
        Self {
            bound,
            armed: None,
            not_before: 0,
            deferred: None,
            writes_until: None,
            records: Vec::new(),
        }
    }

    fn join(earlier: Option<String>, cause: String) -> String {
        match earlier {
            Some(earlier) => format!("{earlier}; {cause}"),
            None => cause,
        }
    }

    /// Starts (or restarts) the clock now, unless the sides are apart or writes keep coming.
    fn disturbed(&mut self, world: &World, extra_us: u64, cause: String) {
        let now = world.now_us();
        let cause = Self::join(self.deferred.take(), cause);
        if !world.network().rules().is_empty() {
            self.deferred = Some(cause);
            return;
        }
        if let Some((until, pending)) = self.writes_until.take() {
            if until > now {
                self.writes_until = Some((until, format!("{pending}; {cause}")));
                return;
            }
            self.writes_until = Some((until, pending));
        }
        self.not_before = self.not_before.max(now + extra_us);
        let cause = match self.armed.take() {
            Some(previous) => format!("{}; {cause}", previous.cause),
            None => cause,
        };
        self.armed = Some(Episode {
            since: now,
            deadline: self.not_before.max(now) + self.bound.as_micros() as u64,
            cause,
            rounds_at: world.anti_entropy_rounds(),
        });
    }

    fn settle(&mut self, world: &World, took_us: Option<u64>) {
        if let Some(episode) = self.armed.take() {
            let nodes = running(world).count().max(1) as f64;
            let rounds = world.anti_entropy_rounds() - episode.rounds_at;
            self.records.push(ReplicationEpisode {
                after: episode.cause,
                at_secs: secs(episode.since),
                took_secs: took_us.map(secs),
                rounds_per_node: rounds as f64 / nodes,
            });
        }
    }

    /// Arms the episode of a workload that has just ended.
    fn writes_ended(&mut self, world: &World) {
        let now = world.now_us();
        if let Some((until, cause)) = self.writes_until.take() {
            if until > now {
                self.writes_until = Some((until, cause));
            } else {
                self.disturbed(world, 0, cause);
            }
        }
    }
}

impl Invariant for ReplicasConverge {
    fn name(&self) -> &'static str {
        "replicas-converge"
    }

    fn on_fault(&mut self, world: &World, fault: &Fault, _slots: &[usize]) {
        match fault {
            Fault::Partition(..) | Fault::PartitionOneWay(..) => {
                if let Some(episode) = self.armed.take() {
                    self.deferred = Some(Self::join(self.deferred.take(), episode.cause));
                }
            }
            Fault::Workload(w) => {
                let until = world.now_us() + w.duration.as_micros() as u64;
                let mut cause = format!("writes ended ({fault})");
                // An episode under way now ends with the writes.
                if let Some(episode) = self.armed.take() {
                    cause = format!("{}; {cause}", episode.cause);
                }
                self.writes_until = Some(match self.writes_until.take() {
                    Some((t, earlier)) => (t.max(until), format!("{earlier}; {cause}")),
                    None => (until, cause),
                });
            }
            f if f.writes() || f.disturbs() => {
                let extra = match f {
                    Fault::Stall(_, d) => d.as_micros() as u64,
                    Fault::Stop(_) => LEAVE_GRACE.as_micros() as u64,
                    _ => 0,
                };
                self.disturbed(world, extra, f.to_string());
            }
            _ => {}
        }
    }

    fn on_tick(&mut self, world: &World) -> Check {
        self.writes_ended(world);
        let Some(episode) = &self.armed else {
            return Ok(());
        };
        let (since, deadline) = (episode.since, episode.deadline);
        let now = world.now_us();
        if now <= self.not_before {
            return Ok(());
        }
        match divergence(world) {
            None => {
                self.settle(world, Some(now - since));
                Ok(())
            }
            Some(example) if now > deadline => {
                let cause = episode.cause.clone();
                self.settle(world, None);
                Err(format!(
                    "replicas still differ {:?} after \"{cause}\": {example}",
                    self.bound
                ))
            }
            Some(_) => Ok(()),
        }
    }

    fn at_end(&mut self, world: &World) -> Check {
        self.writes_ended(world);
        let Some(episode) = &self.armed else {
            return Ok(());
        };
        let (since, cause) = (episode.since, episode.cause.clone());
        match divergence(world) {
            None => {
                self.settle(world, Some(world.now_us() - since));
                Ok(())
            }
            Some(example) => {
                self.settle(world, None);
                Err(format!(
                    "the run ended before the replicas converged after \"{cause}\": {example}"
                ))
            }
        }
    }

    fn measure(&self, out: &mut Measurements) {
        out.replication.extend(self.records.iter().cloned());
    }
}

/// Whether a write must still be there at the end: it was applied by a core that is still
/// running (the writer holds it, so anti-entropy must spread it), or it was acknowledged by a
/// majority and some life seen holding it, or that acknowledged it, is still running (an ack
/// says "I hold it": a running acker that lacks it lost it). Without storage, a write whose
/// every known holder went down may be lost: nodes keep nothing across a crash.
///
/// With storage, a write also survives on disk ([`durable_on_a_running_disk`]), whole-cluster
/// crashes included.
pub fn must_survive(world: &World, record: &WriteRecord) -> bool {
    survives_in_memory(world, record) || durable_on_a_running_disk(world, record)
}

/// The first two reasons of [`must_survive`]: a life that holds the write still runs.
fn survives_in_memory(world: &World, record: &WriteRecord) -> bool {
    if world.node(record.slot).is_up_in(record.life) {
        return true;
    }
    record.acked.as_ref().is_some_and(|a| {
        a.majority_at_us.is_some()
            && a.holder_lives
                .iter()
                .chain(&a.acker_lives)
                .any(|&(slot, life)| world.node(slot).is_up_in(life))
    })
}

/// With storage: some node made the write durable and runs now on the same disk (a restart
/// with the same identity; a new identity is a new machine with an empty disk). The durable
/// copies are the writer's once its reply could be given (`durable_at_us`: its batch synced),
/// and each acknowledger's (a replica acknowledges only once its batch synced). A majority
/// write whose reply came is therefore owed after any crash of every node, and so is every
/// plain write that returned on its writer, as long as that node comes back.
pub fn durable_on_a_running_disk(world: &World, record: &WriteRecord) -> bool {
    if world.storage().is_none() {
        return false;
    }
    let writer = record
        .durable_at_us
        .map(|_| (record.slot, record.life))
        .into_iter();
    let ackers = record
        .acked
        .iter()
        .flat_map(|a| a.acker_lives.iter().copied());
    writer
        .chain(ackers)
        .any(|(slot, life)| world.node(slot).up_with_disk_of(life))
}

/// `acknowledged-writes-present`: at the end, for every key with a write that must survive
/// ([`must_survive`]), every running node's entry is explained by a write no older (in
/// last-writer-wins order) than the newest such write: it holds the value of that write or of a
/// later one, or the key is absent and a delete at least as new was made. A value no write made,
/// an older write winning over an acknowledged newer one, or a key missing without a delete to
/// account for it, is a violation.
///
/// Concurrent writes across a partition are not violations: the later one legitimately wins,
/// and the check only asks the winner be at least as new as every write that must survive.
///
/// One documented exception (the replication module's "What departure gives up"): a set and a
/// newer delete of the same key, made on two sides of a partition that lasted longer than
/// `departed_after`, may resolve for the set — the side that deleted may have taken the other
/// for gone and collected its tombstone. Only that pair of writes is excused, and only when
/// the world really kept their writers apart that long.
#[derive(Default)]
pub struct AcknowledgedWritesPresent {
    checked: u64,
    kept_by_disks: u64,
    excused: BTreeSet<(String, String)>,
    separations: Separations,
}

impl AcknowledgedWritesPresent {
    /// A fresh check.
    pub fn new() -> Self {
        Self::default()
    }
}

/// How a write that must survive was acknowledged, for a violation's message.
fn acked(record: &WriteRecord) -> String {
    let returned = record
        .durable_at_us
        .map(|t| format!(", returned at {:.3}s", secs(t)))
        .unwrap_or_default();
    let majority = match &record.acked {
        Some(a) if a.majority_at_us.is_some() => {
            format!(", acked by a majority ({} of {})", a.holders, a.members)
        }
        _ => String::new(),
    };
    format!("{returned}{majority}")
}

/// Problems kept in one violation's message.
const PROBLEMS_SHOWN: usize = 4;

impl Invariant for AcknowledgedWritesPresent {
    fn name(&self) -> &'static str {
        "acknowledged-writes-present"
    }

    fn on_fault(&mut self, world: &World, fault: &Fault, _slots: &[usize]) {
        self.separations.on_fault(world, fault);
    }

    fn at_end(&mut self, world: &World) -> Check {
        let excused = |set: &WriteRecord, delete: &WriteRecord| {
            self.separations.set_may_beat_delete(world, set, delete)
        };
        let mut by_key: BTreeMap<(&str, &str), Vec<&WriteRecord>> = BTreeMap::new();
        for record in world.writes() {
            by_key
                .entry((record.keyspace.as_str(), record.key.as_str()))
                .or_default()
                .push(record);
        }
        let nodes: Vec<(usize, &Core)> = running(world).collect();
        let mut problems = Vec::new();
        let mut count = 0usize;
        for ((keyspace, key), writes) in &by_key {
            let Some(newest) = writes
                .iter()
                .filter(|r| must_survive(world, r))
                .max_by_key(|r| r.ts)
            else {
                continue;
            };
            self.checked += 1;
            if !survives_in_memory(world, newest) {
                self.kept_by_disks += 1;
            }
            for &(slot, core) in &nodes {
                let entry = core
                    .replication()
                    .keyspace(keyspace)
                    .and_then(|k| k.entry(key));
                let problem = match entry.and_then(|e| e.value.as_ref().map(|v| (e.ts, &v.bytes))) {
                    Some((ts, value)) => match writes.iter().find(|r| r.value.as_ref() == Some(value)) {
                        None => Some(format!(
                            "n{slot} holds {} for {keyspace}/{key}, a value no write made",
                            show(Some(value))
                        )),
                        Some(w) if w.ts != ts => Some(format!(
                            "n{slot} holds w{} for {keyspace}/{key} with another timestamp than it was written with",
                            w.id
                        )),
                        Some(w) if w.ts < newest.ts && excused(w, newest) => {
                            self.excused.insert(((*keyspace).to_owned(), (*key).to_owned()));
                            None
                        }
                        Some(w) if w.ts < newest.ts => Some(format!(
                            "n{slot} holds w{} (written by n{} at {:.3}s) for {keyspace}/{key}, older than w{} (by n{} at {:.3}s{}) that must have survived",
                            w.id, w.slot, secs(w.at_us), newest.id, newest.slot, secs(newest.at_us), acked(newest)
                        )),
                        Some(_) => None,
                    },
                    None if newest.value.is_none() => None,
                    None if writes.iter().any(|r| r.value.is_none() && r.ts >= newest.ts) => None,
                    None => Some(format!(
                        "{keyspace}/{key} is absent on n{slot}, but w{} (by n{} at {:.3}s{}) must have survived and no later delete was made",
                        newest.id,
                        newest.slot,
                        secs(newest.at_us),
                        acked(newest)
                    )),
                };
                if let Some(problem) = problem {
                    count += 1;
                    if problems.len() < PROBLEMS_SHOWN {
                        problems.push(problem);
                    }
                }
            }
        }
        if count == 0 {
            return Ok(());
        }
        Err(format!(
            "{count} entries on running nodes contradict writes that must have survived: {}",
            problems.join("; ")
        ))
    }

    fn measure(&self, out: &mut Measurements) {
        out.writes_checked += self.checked;
        out.writes_kept_by_disks += self.kept_by_disks;
        out.sets_won_after_departure += self.excused.len() as u64;
    }
}

/// `departed-origins-retired`: at the end, no running node still tracks an origin (a writer's
/// life) that ended more than `after` ago — the engine's `departed_after` plus time to detect
/// the departure and to agree on it — and all running nodes are in one compaction epoch. If
/// such a writer life exists, at least one retirement must have happened.
pub struct OriginsRetired {
    after: Duration,
}

impl OriginsRetired {
    /// Origins whose life ended more than `after` before the end must be retired everywhere.
    pub fn new(after: Duration) -> Self {
        Self { after }
    }
}

impl Invariant for OriginsRetired {
    fn name(&self) -> &'static str {
        "departed-origins-retired"
    }

    fn at_end(&mut self, world: &World) -> Check {
        let now = world.now_us();
        let after = self.after.as_micros() as u64;
        let mut lives = BTreeMap::new();
        for r in world.writes() {
            lives.insert(r.origin, (r.slot, r.life));
        }
        let ended_long_ago = |slot: usize, life: u64| {
            world
                .node(slot)
                .life_ended_us(life)
                .is_some_and(|t| t + after < now)
        };
        let mut problems = Vec::new();
        let epochs: BTreeSet<u32> = running(world)
            .map(|(_, c)| c.replication().epoch())
            .collect();
        if epochs.len() > 1 {
            problems.push(format!(
                "running nodes are in {} compaction epochs",
                epochs.len()
            ));
        }
        for (slot, core) in running(world) {
            for origin in core.replication().origins() {
                let Some(&(writer, life)) = lives.get(&origin) else {
                    continue;
                };
                if ended_long_ago(writer, life) {
                    let ended = world.node(writer).life_ended_us(life).unwrap_or(0);
                    problems.push(format!(
                        "n{slot} still tracks the origin of n{writer}'s life that ended at {:.3}s",
                        secs(ended)
                    ));
                }
            }
        }
        let departed = lives
            .values()
            .any(|&(slot, life)| ended_long_ago(slot, life));
        if departed && world.replication_totals().origins_retired == 0 {
            problems.push("a writer departed long ago, but no origin was ever retired".into());
        }
        if problems.is_empty() {
            return Ok(());
        }
        problems.truncate(PROBLEMS_SHOWN);
        Err(problems.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use foundation_core::replication::Write;

    use super::*;
    use crate::faults::{Identity, Nodes};
    use crate::storage::StorageConfig;
    use crate::world::WorldConfig;
    use crate::writes::{WriteRequest, DEFAULT_KEYSPACE};

    /// Three nodes that joined through node 0 and ran for 3 s.
    fn world() -> World {
        world_with(None)
    }

    /// As [`world`], the nodes keeping their keyspaces on disks as `storage` says.
    fn world_with(storage: Option<StorageConfig>) -> World {
        let mut world = World::new(WorldConfig::lan(5, 3));
        if let Some(storage) = storage {
            world.set_storage(storage);
        }
        apply(&mut world, Fault::Join(Nodes::All, 0));
        run_until(&mut world, 3.0);
        world
    }

    fn apply(world: &mut World, fault: Fault) {
        world
            .apply(&fault, &BTreeMap::new())
            .expect("fault applies");
    }

    fn run_until(world: &mut World, secs: f64) {
        let until = (secs * 1e6) as u64;
        while world.next_time().is_some_and(|t| t <= until) {
            world.step();
        }
        world.advance_to(until);
    }

    fn set(world: &mut World, slot: usize, key: &str) -> u64 {
        let request = WriteRequest {
            keyspace: DEFAULT_KEYSPACE.into(),
            key: key.into(),
            delete: false,
            acked: None,
            value_size: 0,
        };
        world.write(slot, request).expect("the node is up")
    }

    fn check(world: &World) -> Check {
        AcknowledgedWritesPresent::new().at_end(world)
    }

    fn cut_off_n0() -> Fault {
        Fault::Partition(Nodes::One(0), Nodes::Range { start: 1, end: 3 })
    }

    #[test]
    fn a_write_of_a_running_node_that_never_spread_is_reported_missing_until_it_does() {
        let mut world = world();
        apply(&mut world, cut_off_n0());
        let id = set(&mut world, 0, "a");
        run_until(&mut world, 5.0);
        let e = check(&world).unwrap_err();
        assert!(
            e.contains(&format!("w{id}")) && e.contains("absent on n1"),
            "{e}"
        );
        apply(&mut world, Fault::Heal);
        run_until(&mut world, 20.0);
        check(&world).expect("spread after the heal");
        assert!(divergence(&world).is_none());
    }

    #[test]
    fn data_no_write_explains_is_reported() {
        let mut world = world();
        set(&mut world, 0, "a");
        set(&mut world, 0, "b");
        run_until(&mut world, 6.0);
        check(&world).expect("both writes everywhere");
        // A corrupted world: a delete and a set the log knows nothing of, which replicate.
        world.write_unrecorded(
            1,
            Write {
                keyspace: DEFAULT_KEYSPACE.into(),
                key: "a".into(),
                value: None,
            },
        );
        world.write_unrecorded(
            2,
            Write {
                keyspace: DEFAULT_KEYSPACE.into(),
                key: "b".into(),
                value: Some(b"forged".to_vec()),
            },
        );
        run_until(&mut world, 10.0);
        let e = check(&world).unwrap_err();
        assert!(e.contains("kv/a is absent on n0"), "{e}");
        assert!(e.contains("a value no write made"), "{e}");
    }

    #[test]
    fn the_later_of_two_concurrent_writes_wins_and_a_crashed_writers_loss_is_allowed() {
        let mut world = world();
        apply(&mut world, cut_off_n0());
        run_until(&mut world, 4.0);
        let older = set(&mut world, 0, "k");
        run_until(&mut world, 4.5);
        let newer = set(&mut world, 1, "k");
        // n2, cut off from everyone too, writes and crashes before anyone got it: not owed.
        apply(&mut world, Fault::Partition(Nodes::One(2), Nodes::One(1)));
        set(&mut world, 2, "lost");
        apply(&mut world, Fault::Crash(Nodes::One(2)));
        apply(&mut world, Fault::Heal);
        run_until(&mut world, 20.0);
        check(&world).expect("the newer write won everywhere; the crashed writer's is not owed");
        let winner = format!("w{newer}");
        for slot in [0, 1] {
            let core = world.node(slot).core().expect("up");
            let value = core.replication().get(DEFAULT_KEYSPACE, "k").expect("set");
            assert!(value.starts_with(winner.as_bytes()), "n{slot}");
        }
        let ts = |id: u64| world.writes().iter().find(|w| w.id == id).map(|w| w.ts);
        assert!(
            ts(older) < ts(newer),
            "the write on n1 came later in LWW order"
        );
        assert!(world.writes().iter().any(|w| w.key == "lost"));
    }

    #[test]
    fn with_disks_what_returned_outlives_every_node_and_what_did_not_is_not_owed() {
        let mut world = world_with(Some(StorageConfig::new(Duration::from_millis(20))));
        let kept = set(&mut world, 0, "kept");
        run_until(&mut world, 3.5);
        // Written and crashed in the same instant: not synced, not even sent.
        let lost = set(&mut world, 1, "lost");
        apply(&mut world, Fault::Crash(Nodes::All));
        apply(&mut world, Fault::Restart(Nodes::All, Identity::Same));
        run_until(&mut world, 15.0);
        let record = |id: u64| world.writes().iter().find(|w| w.id == id).expect("made");
        let (kept, lost) = (record(kept), record(lost));
        assert!(kept.durable_at_us.is_some() && lost.durable_at_us.is_none());
        assert!(must_survive(&world, kept) && !must_survive(&world, lost));
        check(&world).expect("what returned came back from the disks");
        for slot in 0..3 {
            let core = world.node(slot).core().expect("restarted");
            let value = core.replication().get(DEFAULT_KEYSPACE, "kept");
            assert!(value.is_some(), "n{slot} lacks the write that returned");
        }
        assert!(
            world.disk_totals().restores >= 3,
            "{:?}",
            world.disk_totals()
        );
    }

    #[test]
    fn replicas_that_differ_past_the_bound_are_reported() {
        let mut world = world();
        let mut converge = ReplicasConverge::new(Duration::ZERO);
        apply(&mut world, cut_off_n0());
        set(&mut world, 0, "a");
        // The writes are deferred while the sides are apart, then the clock starts at the heal.
        let write = Fault::Write(crate::writes::Writes::new(Nodes::One(0), 0..1));
        converge.on_fault(&world, &write, &[0]);
        assert!(converge.on_tick(&world).is_ok());
        apply(&mut world, Fault::Heal);
        converge.on_fault(&world, &Fault::Heal, &[]);
        run_until(&mut world, 3.1);
        let e = converge.on_tick(&world).unwrap_err();
        assert!(
            e.contains("differ from n0") || e.contains("first difference"),
            "{e}"
        );
        let mut measured = Measurements::default();
        converge.measure(&mut measured);
        assert_eq!(measured.replication.len(), 1);
        assert_eq!(measured.replication[0].took_secs, None);
    }
}
