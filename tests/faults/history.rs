//! The record of a run — every write the clients attempted and how it ended, every fault with
//! its times, every service registration and every failure declaration the monitors saw — and
//! the checks made on it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::faults::Kind;

/// A failure declared within this long after a stall ended is still the stall's doing.
pub const STALL_GRACE: Duration = Duration::from_secs(3);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Acknowledged,
    /// The node answered with this status (a majority write without a majority: 503).
    Refused(u16),
    /// No answer in time (the node was killed, stopped or its answer lost).
    NoAnswer,
}

/// One `PUT /config/{key}` a client made.
#[derive(Clone, Debug)]
pub struct Write {
    pub key: String,
    /// Each client's values grow, and each key has one client: a greater value is a later one.
    pub value: u64,
    pub majority: bool,
    pub outcome: Outcome,
    /// When the answer came (or the client gave up).
    pub ended: Instant,
}

/// Writes shared between the clients and the checker.
pub type Writes = Arc<Mutex<Vec<Write>>>;

/// A fault as it was applied.
pub struct Applied {
    pub kind: Kind,
    pub what: String,
    pub held: Duration,
    pub from: Instant,
    pub healed: Instant,
    /// From the heal (or the restart) until every node held every majority write acknowledged
    /// before it; `None` if not within the bound.
    pub caught_up: Option<Duration>,
}

/// A stall of one node life: declared failed in this window is a false positive.
pub struct Stall {
    pub id: String,
    pub from: Instant,
    pub to: Instant,
}

/// An endpoint registered through a node (`PUT /services/faults`), owned by that node's life.
/// Its instance id is `node.generation/number`; the generation grows when the node rejoins
/// after being declared failed (the entry is announced again under it) and starts far higher
/// after a restart, so an entry of `node` with a generation below the current life's
/// registration is a dead life's.
pub struct Registration {
    pub host: usize,
    pub node: String,
    pub generation: u64,
    pub number: u64,
    /// When its node was killed (the life ended), and how long until no node listed it.
    pub killed: Option<Instant>,
    pub vanished_after: Option<Duration>,
}

impl Registration {
    /// From the instance id its node listed.
    pub fn new(host: usize, instance: &str) -> Option<Self> {
        let (node, generation, number) = parse_instance(instance)?;
        Some(Self {
            host,
            node,
            generation,
            number,
            killed: None,
            vanished_after: None,
        })
    }

    /// Whether `instance` is this registration, under any later generation of the same life.
    pub fn is(&self, instance: &str) -> bool {
        parse_instance(instance).is_some_and(|(node, generation, number)| {
            node == self.node && generation >= self.generation && number == self.number
        })
    }
}

/// `node.generation/number` as its parts.
pub fn parse_instance(instance: &str) -> Option<(String, u64, u64)> {
    let (life, number) = instance.split_once('/')?;
    let (node, generation) = life.rsplit_once('.')?;
    Some((
        node.to_owned(),
        generation.parse().ok()?,
        number.parse().ok()?,
    ))
}

/// Whether `listed` (one node's entries) holds exactly one entry per live registration and
/// nothing else.
pub fn exactly_live(live: &[&Registration], listed: &BTreeSet<String>) -> bool {
    listed.len() == live.len()
        && live
            .iter()
            .all(|r| listed.iter().filter(|i| r.is(i)).count() == 1)
}

#[derive(Default)]
pub struct History {
    pub writes: Writes,
    pub faults: Vec<Applied>,
    pub stalls: Vec<Stall>,
    pub registrations: Vec<Registration>,
    /// (declaring host, when, declared id) from the monitors' `member failed` lines.
    pub declared_failed: Vec<(usize, Instant, String)>,
    /// (host, when, line): every membership line the monitors printed, for the timeline a
    /// failed run shows.
    pub member_lines: Vec<(usize, Instant, String)>,
    /// Monitors that fell behind and missed events (their declarations may be missing).
    pub monitor_lags: usize,
    pub final_convergence: Option<Duration>,
    pub registry_convergence: Option<Duration>,
    /// What the nodes listed when the registry was last seen not converged.
    pub registry_last_seen: String,
}

impl History {
    /// Per key, the greatest value acknowledged by a majority write that ended before `until`.
    pub fn acked_majority(&self, until: Instant) -> BTreeMap<String, u64> {
        let writes = self.writes.lock().unwrap_or_else(|e| e.into_inner());
        let mut acked = BTreeMap::new();
        for w in writes.iter() {
            if w.majority && w.outcome == Outcome::Acknowledged && w.ended <= until {
                let last = acked.entry(w.key.clone()).or_insert(w.value);
                *last = (*last).max(w.value);
            }
        }
        acked
    }

    /// Failure declarations of a life while it was only stalled (or just after).
    pub fn stalled_declared_failed(&self) -> Vec<String> {
        let mut wrong = Vec::new();
        for stall in &self.stalls {
            for (host, at, id) in &self.declared_failed {
                if *id == stall.id && *at >= stall.from && *at <= stall.to + STALL_GRACE {
                    wrong.push(format!(
                        "h{host} declared {id} failed {:?} into a stall of {:?}",
                        at.duration_since(stall.from),
                        stall.to.duration_since(stall.from)
                    ));
                }
            }
        }
        wrong
    }

    /// The summary printed after every run.
    pub fn summary(&self, seed: u64, lost: usize) -> String {
        let writes = self.writes.lock().unwrap_or_else(|e| e.into_inner());
        let count = |majority: bool, outcome: Option<Outcome>| {
            writes
                .iter()
                .filter(|w| w.majority == majority && outcome.is_none_or(|o| w.outcome == o))
                .count()
        };
        let refused = |majority: bool| {
            writes
                .iter()
                .filter(|w| w.majority == majority && matches!(w.outcome, Outcome::Refused(_)))
                .count()
        };
        let mut by_kind: BTreeMap<Kind, usize> = BTreeMap::new();
        for f in &self.faults {
            *by_kind.entry(f.kind).or_default() += 1;
        }
        let kinds: Vec<String> = by_kind
            .iter()
            .map(|(k, n)| format!("{} {n}", k.name()))
            .collect();
        let caught: Vec<Duration> = self.faults.iter().filter_map(|f| f.caught_up).collect();
        let vanished: Vec<Duration> = self
            .registrations
            .iter()
            .filter_map(|r| r.vanished_after)
            .collect();
        let ack = Some(Outcome::Acknowledged);
        let none = Some(Outcome::NoAnswer);
        format!(
            "faults: seed {seed}: {} faults ({}); writes plain {} attempted, {} acknowledged, {} \
             refused, {} unanswered; majority {} attempted, {} acknowledged, {} refused, {} \
             unanswered; lost = {lost}; catch-up after heal median {:?}, max {:?} ({} of {} \
             within bound); final convergence {:?}; registry converged {:?}; dead lives' \
             entries gone after median {:?}, max {:?} ({} kills); stalls {} (0 may be \
             declared failed), failure declarations seen {}, monitor lags {}",
            self.faults.len(),
            kinds.join(", "),
            count(false, None),
            count(false, ack),
            refused(false),
            count(false, none),
            count(true, None),
            count(true, ack),
            refused(true),
            count(true, none),
            median(&caught),
            caught.iter().max(),
            caught.len(),
            self.faults.len(),
            self.final_convergence,
            self.registry_convergence,
            median(&vanished),
            vanished.iter().max(),
            self.registrations
                .iter()
                .filter(|r| r.killed.is_some())
                .count(),
            self.stalls.len(),
            self.declared_failed.len(),
            self.monitor_lags,
        )
    }

    /// The faults and the monitors' membership lines in the order they happened, each with its
    /// time since the first fault began: what a failed run needs to be understood.
    pub fn timeline(&self) -> Vec<String> {
        let Some(start) = self.faults.iter().map(|f| f.from).min() else {
            return Vec::new();
        };
        let since = |at: Instant| at.saturating_duration_since(start).as_secs_f64();
        let mut events: Vec<(Instant, String)> = self
            .faults
            .iter()
            .flat_map(|f| {
                [
                    (f.from, format!("{:9.3}s fault: {}", since(f.from), f.what)),
                    (
                        f.healed,
                        format!("{:9.3}s healed: {}", since(f.healed), f.what),
                    ),
                ]
            })
            .collect();
        events.extend(
            self.member_lines
                .iter()
                .map(|(host, at, line)| (*at, format!("{:9.3}s h{host}: {line}", since(*at)))),
        );
        events.sort_by_key(|(at, _)| *at);
        events.into_iter().map(|(_, line)| line).collect()
    }

    /// One line per fault, in order, with what it did: the majority writes that did not
    /// succeed while it was held, and the failures declared then or just after.
    pub fn fault_lines(&self) -> Vec<String> {
        let writes = self.writes.lock().unwrap_or_else(|e| e.into_inner());
        self.faults
            .iter()
            .enumerate()
            .map(|(n, f)| {
                let within = |at: &Instant| *at >= f.from && *at <= f.healed + STALL_GRACE;
                let failed_majority = writes
                    .iter()
                    .filter(|w| w.majority && w.outcome != Outcome::Acknowledged)
                    .filter(|w| within(&w.ended))
                    .count();
                let declared = self
                    .declared_failed
                    .iter()
                    .filter(|(_, at, _)| within(at))
                    .count();
                format!(
                    "  {n:>3}. {} held {:?}: {failed_majority} majority writes not acknowledged, \
                     {declared} failure declarations; all acknowledged majority writes on every \
                     node {:?} after the heal",
                    f.what, f.held, f.caught_up
                )
            })
            .collect()
    }
}

/// The acknowledged majority writes `snapshot` lacks: the key absent, or an earlier value.
pub fn lost(acked: &BTreeMap<String, u64>, snapshot: &BTreeMap<String, Value>) -> Vec<String> {
    acked
        .iter()
        .filter_map(|(key, &value)| {
            let held = snapshot.get(key).and_then(Value::as_u64);
            held.is_none_or(|held| held < value)
                .then(|| format!("{key}: acknowledged {value}, holds {held:?}"))
        })
        .collect()
}

fn median(values: &[Duration]) -> Option<Duration> {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    sorted.get(sorted.len() / 2).copied()
}

/// The declared id in a monitor line `TIME member failed ID ADDR gen N`.
pub fn failed_id(line: &str) -> Option<&str> {
    let mut words = line.split_whitespace().skip_while(|w| *w != "member");
    (words.next()? == "member" && words.next()? == "failed").then_some(())?;
    words.next()
}

/// The checks fail on histories that break them.
mod checks {
    use super::*;

    fn write(key: &str, value: u64, majority: bool, outcome: Outcome, ended: Instant) -> Write {
        Write {
            key: key.into(),
            value,
            majority,
            outcome,
            ended,
        }
    }

    #[test]
    fn a_missing_or_older_acknowledged_majority_write_is_lost() {
        let now = Instant::now();
        let history = History::default();
        history.writes.lock().unwrap().extend([
            write("a", 1, true, Outcome::Acknowledged, now),
            write("a", 3, true, Outcome::Acknowledged, now),
            write("b", 2, true, Outcome::Acknowledged, now),
            // Neither a plain write nor an unacknowledged one must survive.
            write("c", 5, false, Outcome::Acknowledged, now),
            write("d", 6, true, Outcome::NoAnswer, now),
        ]);
        let acked = history.acked_majority(now);
        let snapshot = |pairs: &[(&str, u64)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), Value::from(*v)))
                .collect::<BTreeMap<_, _>>()
        };
        assert!(lost(&acked, &snapshot(&[("a", 3), ("b", 4)])).is_empty());
        assert_eq!(lost(&acked, &snapshot(&[("a", 2), ("b", 2)])).len(), 1);
        assert_eq!(lost(&acked, &snapshot(&[("a", 3)])).len(), 1);
        // A write acknowledged after the moment asked about does not count yet.
        assert!(history
            .acked_majority(now - Duration::from_millis(1))
            .is_empty());
    }

    #[test]
    fn a_declaration_during_or_just_after_a_stall_is_caught() {
        let from = Instant::now();
        let to = from + Duration::from_secs(1);
        let mut history = History::default();
        history.stalls.push(Stall {
            id: "n1".into(),
            from,
            to,
        });
        history
            .declared_failed
            .push((0, to + STALL_GRACE * 2, "n1".into()));
        history.declared_failed.push((0, to, "n2".into()));
        assert!(history.stalled_declared_failed().is_empty());
        history
            .declared_failed
            .push((2, to + Duration::from_millis(500), "n1".into()));
        assert_eq!(history.stalled_declared_failed().len(), 1);
    }

    #[test]
    fn the_registry_must_list_exactly_the_live_lives() {
        let a = Registration::new(0, "aaaa.100/1").unwrap();
        let b = Registration::new(1, "bbbb.200/1").unwrap();
        let live = [&a, &b];
        let set = |ids: &[&str]| ids.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        assert!(exactly_live(&live, &set(&["aaaa.100/1", "bbbb.200/1"])));
        // Announced again under a later generation (after a rejoin): the same life.
        assert!(exactly_live(&live, &set(&["aaaa.101/1", "bbbb.200/1"])));
        // A dead life's entry left behind, or a live one missing.
        assert!(!exactly_live(
            &live,
            &set(&["aaaa.100/1", "aaaa.50/1", "bbbb.200/1"])
        ));
        assert!(!exactly_live(&live, &set(&["aaaa.100/1"])));
        assert_eq!(
            failed_id("2026-12-04T13:00:00.000Z member failed n1 10.77.0.2:7400 gen 3"),
            Some("n1")
        );
        assert_eq!(
            failed_id("2026-12-04T13:00:00.000Z member up n1 x gen 3"),
            None
        );
    }
}
