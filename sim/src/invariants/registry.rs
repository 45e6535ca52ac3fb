//! The service registry's invariant, `registry-consistent`: what every live node lists (its
//! [`Directory`]) matches which node lives are alive and what their applications registered.
//!
//! A *life* is one node id with one membership generation; the registry's entries are keyed by
//! it (see [`foundation_core::ephemeral`]). A life ends when its node crashes, stops (leaves
//! gracefully) or restarts, or when the node renews its generation after being declared failed.
//!
//! **(a) Dead lives vanish, and stay gone.**
//! - Once a life has ended, no live node lists any of its instances after the *death bound*:
//!   the crash-detection bound ([`Bounds::detection`]) plus one anti-entropy round plus
//!   [`DELIVERY_SLACK`], counted for a node cut off from the dead one from when it is in reach
//!   again (as [`super::membership::Detection`] counts). For a generation renewal, which is not a crash and which the rest of
//!   the cluster learns through membership convergence, the bound is the *settle bound* below,
//!   counted from the renewal or from the heal if a partition was in force.
//! - Once every other running node has marked a life failed or left (or knows a newer life of
//!   its node), no node that has had that news may ever list the life's instances again: a
//!   node that comes back does so as a new life, under new keys. Checked from that moment on,
//!   without a bound. A node started since that never had the news (it joined through the
//!   owner itself, alive behind a one-way cut) is held to the death bound above once the life
//!   ends, like any node that saw it alive.
//!
//! **(c) Dead lives' entries are reaped.** Hiding is not enough: the keyspace must not keep
//! them forever. Within the *reap bound* after the death bound — the reaper's patience
//! ([`EphemeralConfig::reap_after`]) plus one reconcile interval plus the settle bound for the
//! deletions to reach everyone — no live node's keyspace holds an entry of the ended life.
//! The reaper (the live node with the smallest id) counts its patience from when *it* learned
//! of the death, so when the role passes to a node that started after the death, the clock
//! starts again from that node's start (plus the death bound for it to learn): the check is
//! that a reaper that stays in place gets the job done.
//!
//! **(b) The registry converges.** After every disturbance (heal, crash, restart, stop, stall,
//! join, clock step, a registration or deregistration, a generation renewal, a node declaring
//! a running one failed), within the *settle bound* — the convergence bound
//! ([`Bounds::convergence`]) plus one reconcile interval (an owner repairs its entries) plus one
//! anti-entropy round plus [`DELIVERY_SLACK`] — every live node lists exactly the instances the
//! applications of the live nodes registered and did not deregister, under their nodes' current
//! lives, with the records they registered. While a partition is in force the sides cannot
//! agree, so the clock starts at the heal. A disagreement nothing explains starts the clock
//! too: a transient one is counted, a lasting one fails the run.
//!
//! "Live" means up and not leaving; a stalled node is live (the bound starts when its stall
//! ends). Measured: death → vanished from every live node's directory, death → reaped from
//! every live keyspace, registration → listed by every live node, deregistration → gone
//! everywhere, and every convergence episode.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::Duration;

use foundation_core::ephemeral::{self, EphemeralConfig, Owner, SERVICES_KEYSPACE};
use foundation_core::membership::{MemberState, MembershipEvent};
use foundation_core::node::Core;
use foundation_core::replication::ReplicationConfig;
use foundation_core::services::directory::Directory;
use foundation_core::services::record::InstanceRecord;
use serde::Serialize;

use super::reach::Sides;
use super::{Bounds, Check, Invariant, Measurements};
use crate::faults::{Fault, LEAVE_GRACE};
use crate::world::{Observed, World};

/// Extra time in every registry bound for what the bounds it is built from do not count:
/// delivering the last replication message (stream latency, a retransmission under loss) and
/// the granularity of the checks themselves.
pub const DELIVERY_SLACK: Duration = Duration::from_secs(1);

/// One instance as a node lists it: the owning life, the service, the owner's local number.
type Key = (Owner, String, u64);
/// Everything one node lists.
type Listing = BTreeMap<Key, InstanceRecord>;

/// What a registry measurement is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RegistryKind {
    /// A registration: until every live node listed every instance it added.
    Register,
    /// A deregistration: until no live node listed any instance it removed.
    Deregister,
    /// A node life ended: until no live node listed any of its instances.
    Death,
    /// A disturbance: until every live node listed exactly what is registered.
    Convergence,
    /// A node life ended: until no live node's keyspace held any of its entries.
    Reaped,
}

/// One registry measurement.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RegistryRecord {
    /// What is measured.
    pub kind: RegistryKind,
    /// What happened.
    pub what: String,
    /// When, in simulated seconds.
    pub at_secs: f64,
    /// How long until done, if it was.
    pub took_secs: Option<f64>,
}

fn secs(us: u64) -> f64 {
    us as f64 / 1e6
}

fn micros(d: Duration) -> u64 {
    d.as_micros() as u64
}

/// How a node life ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ending {
    Crashed,
    Stopped,
    Restarted,
    /// The node took a new generation (after learning it was declared failed).
    Renewed,
}

impl std::fmt::Display for Ending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Ending::Crashed => "crashed",
            Ending::Stopped => "stopped",
            Ending::Restarted => "was restarted",
            Ending::Renewed => "renewed its generation",
        })
    }
}

/// How a tracked life ended.
struct End {
    at_us: u64,
    how: Ending,
    /// No live node may list it after this; `None` while a partition defers the clock.
    deadline: Option<u64>,
    /// When no live node listed it any more (reset if one lists it again before everyone has
    /// marked it dead: entries may still be spreading while a node still believes it alive).
    vanished_us: Option<u64>,
    late_reported: bool,
    /// When no live node's keyspace held its entries any more.
    reaped_us: Option<u64>,
    reap_reported: bool,
    reap_recorded: bool,
}

struct Life {
    slot: usize,
    end: Option<End>,
    /// Whether a live node other than itself ever listed one of its instances.
    listed: bool,
    /// Whether a live node's keyspace ever held one of its entries.
    held: bool,
    /// When every other running node had marked it failed or left.
    dead_everywhere_us: Option<u64>,
    /// From then on, the observer lives that have had the news (marked it failed or left, or
    /// know a newer life of its node): (a)'s "never again" binds them.
    told: BTreeSet<Owner>,
    resurrection_reported: bool,
    recorded: bool,
}

impl Life {
    /// The `listers` whose current life has had the news of this one's death.
    fn told_among(&self, world: &World, listers: &[usize]) -> Vec<usize> {
        listers
            .iter()
            .copied()
            .filter(|&s| owner_of(world, s).is_some_and(|o| self.told.contains(&o)))
            .collect()
    }
}

struct Episode {
    since: u64,
    not_before: u64,
    deadline: u64,
    cause: String,
}

/// Instances a registration or deregistration touched, until they are listed (gone) everywhere.
struct Pending {
    kind: RegistryKind,
    what: String,
    at_us: u64,
    /// `(slot, service, local)`.
    items: Vec<(usize, String, u64)>,
}

/// The `registry-consistent` invariant; see the module documentation.
pub struct RegistryConsistent {
    death_us: u64,
    settle_us: u64,
    /// From the death bound to every live keyspace rid of the entries.
    reap_us: u64,
    /// The life each slot runs (or last ran), as last seen.
    current: Vec<Option<Owner>>,
    lives: BTreeMap<Owner, Life>,
    sides: Sides,
    episode: Option<Episode>,
    /// Disturbances while a partition was in force, to arm at the heal.
    deferred: Option<String>,
    pending: Vec<Pending>,
    records: Vec<RegistryRecord>,
    /// Disagreements no disturbance explained (they had to settle like any other).
    unexplained: u64,
    active: bool,
    /// Between disturbances the directories are compared this often.
    quiet_us: u64,
    next_quiet_check: u64,
}

impl RegistryConsistent {
    /// With the simulator's bounds and the cores' replication and ephemeral settings.
    pub fn new(
        bounds: &Bounds,
        replication: &ReplicationConfig,
        ephemeral: &EphemeralConfig,
    ) -> Self {
        let round = replication.anti_entropy_interval + DELIVERY_SLACK;
        let settle = bounds.convergence + ephemeral.reconcile_interval + round;
        Self {
            death_us: micros(bounds.detection + round),
            settle_us: micros(settle),
            reap_us: micros(ephemeral.reap_after + ephemeral.reconcile_interval + settle),
            current: Vec::new(),
            lives: BTreeMap::new(),
            sides: Sides::default(),
            episode: None,
            deferred: None,
            pending: Vec::new(),
            records: Vec::new(),
            unexplained: 0,
            active: false,
            quiet_us: micros(ephemeral.reconcile_interval),
            next_quiet_check: 0,
        }
    }

    /// With the settings the simulator's cores run (the engine's defaults).
    pub fn for_simulator(bounds: &Bounds) -> Self {
        Self::new(
            bounds,
            &ReplicationConfig::default(),
            &EphemeralConfig::default(),
        )
    }

    /// The death bound (a) and the settle bound (b).
    pub fn bounds(&self) -> (Duration, Duration) {
        (
            Duration::from_micros(self.death_us),
            Duration::from_micros(self.settle_us),
        )
    }

    /// How long after a life's death bound its entries may still be in a live keyspace (c).
    pub fn reap_bound(&self) -> Duration {
        Duration::from_micros(self.reap_us)
    }

    /// Starts tracking the life `slot` runs now, if it is a new one; ends the one it ran
    /// before (if not ended yet) as `how`.
    fn track(&mut self, world: &World, slot: usize, how: Ending) {
        if self.current.len() < world.nodes().len() {
            self.current.resize(world.nodes().len(), None);
        }
        let now = owner_of(world, slot);
        if now.is_some() && now == self.current[slot] {
            return;
        }
        if let Some(old) = self.current[slot] {
            self.end(world, old, how);
        }
        if let Some(owner) = now {
            self.current[slot] = Some(owner);
            self.lives.entry(owner).or_insert(Life {
                slot,
                end: None,
                listed: false,
                held: false,
                dead_everywhere_us: None,
                told: BTreeSet::new(),
                resurrection_reported: false,
                recorded: false,
            });
        }
    }

    fn end(&mut self, world: &World, owner: Owner, how: Ending) {
        let partitioned = !world.network().rules().is_empty();
        let at_us = world.now_us();
        let deadline = match how {
            // The rest of the cluster learns of a renewal by membership convergence.
            Ending::Renewed if partitioned => None,
            Ending::Renewed => Some(at_us + self.settle_us),
            Ending::Crashed | Ending::Stopped | Ending::Restarted => Some(at_us + self.death_us),
        };
        if let Some(life) = self.lives.get_mut(&owner) {
            life.end.get_or_insert(End {
                at_us,
                how,
                deadline,
                vanished_us: None,
                late_reported: false,
                reaped_us: None,
                reap_reported: false,
                reap_recorded: false,
            });
        }
    }

    fn arm(&mut self, world: &World, extra_us: u64, cause: String) {
        let now = world.now_us();
        // A stalled node cannot catch up before its stall ends.
        let stalls_end = world
            .nodes()
            .iter()
            .filter(|n| n.is_up())
            .filter_map(|n| n.stalls().last().map(|s| s.1))
            .max()
            .unwrap_or(0);
        let not_before = (now + extra_us).max(stalls_end);
        let deadline = not_before + self.settle_us;
        match &mut self.episode {
            Some(e) => {
                e.not_before = e.not_before.max(not_before);
                e.deadline = e.deadline.max(deadline);
                e.cause = join_causes(&e.cause, &cause);
            }
            None => {
                self.episode = Some(Episode {
                    since: now,
                    not_before,
                    deadline,
                    cause,
                })
            }
        }
    }

    /// Arms (b) for `cause`, or keeps it for the heal while a partition is in force.
    fn disturbed(&mut self, world: &World, extra_us: u64, cause: String) {
        let cause = match self.deferred.take() {
            Some(earlier) => join_causes(&earlier, &cause),
            None => cause,
        };
        if !world.network().rules().is_empty() {
            self.deferred = Some(cause);
            return;
        }
        self.arm(world, extra_us, cause);
    }

    fn settle(&mut self, took_us: Option<u64>) {
        if let Some(e) = self.episode.take() {
            self.records.push(RegistryRecord {
                kind: RegistryKind::Convergence,
                what: e.cause,
                at_secs: secs(e.since),
                took_secs: took_us.map(secs),
            });
        }
    }

    /// Checks (a) for every life; the first violation found.
    fn check_lives(&mut self, world: &World, listings: &BTreeMap<usize, Listing>) -> Check {
        let now = world.now_us();
        let mut first_error = None;
        for (owner, life) in &mut self.lives {
            let listers: Vec<usize> = listings
                .iter()
                .filter(|(slot, listing)| {
                    owner_of(world, **slot) != Some(*owner) && lists_life(listing, *owner)
                })
                .map(|(slot, _)| *slot)
                .collect();
            life.listed |= !listers.is_empty();
            if life.dead_everywhere_us.is_none() && marked_dead_everywhere(world, *owner) {
                life.dead_everywhere_us = Some(now);
            }
            if life.dead_everywhere_us.is_some() {
                life.told.extend(told(world, *owner));
            }
            let who = describe_life(*owner, life);
            if let Some(end) = &mut life.end {
                if listers.is_empty() {
                    end.vanished_us.get_or_insert(now);
                } else if life.dead_everywhere_us.is_none() {
                    end.vanished_us = None;
                }
                let late = end.deadline.is_some_and(|d| now > d);
                let late_listers: Vec<usize> = match end.how {
                    _ if !late => Vec::new(),
                    Ending::Renewed => listers.clone(),
                    _ => listers
                        .iter()
                        .copied()
                        .filter(|&l| {
                            self.sides
                                .reachable_since(world, l, life.slot, end.at_us)
                                .is_some_and(|since| now > since + self.death_us)
                        })
                        .collect(),
                };
                if !late_listers.is_empty() && !end.late_reported && first_error.is_none() {
                    end.late_reported = true;
                    first_error = Some(format!(
                        "{who} {} at {:.3}s; {:.3}s later (bound {:?}) {} list its instances (e.g. {})",
                        end.how,
                        secs(end.at_us),
                        secs(now - end.at_us),
                        Duration::from_micros(end.deadline.unwrap_or(now) - end.at_us),
                        slots(&late_listers),
                        example_of(listings, late_listers[0], *owner),
                    ));
                }
            }
            if let Some(dead_us) = life.dead_everywhere_us {
                let again = life.told_among(world, &listers);
                if !again.is_empty() && !life.resurrection_reported && first_error.is_none() {
                    life.resurrection_reported = true;
                    first_error = Some(format!(
                        "{who} was marked failed or left by every other running node at {:.3}s, yet {} list its instances again (e.g. {})",
                        secs(dead_us),
                        slots(&again),
                        example_of(listings, again[0], *owner),
                    ));
                }
                let vanished = life.end.as_ref().is_some_and(|e| e.vanished_us.is_some());
                if let (Some(end), false, true) = (&life.end, life.recorded, vanished) {
                    if life.listed {
                        self.records.push(RegistryRecord {
                            kind: RegistryKind::Death,
                            what: format!("{who} {}", end.how),
                            at_secs: secs(end.at_us),
                            took_secs: end.vanished_us.map(|v| secs(v - end.at_us)),
                        });
                    }
                    life.recorded = true;
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Checks (c): the reaper (or the owner's next life) deletes a dead life's entries, and
    /// the deletions reach every live node.
    fn check_reaping(&mut self, world: &World) -> Check {
        let now = world.now_us();
        let mut holders: BTreeMap<Owner, Vec<usize>> = BTreeMap::new();
        for slot in live_slots(world) {
            let Some(core) = world.node(slot).core() else {
                continue;
            };
            let owners: BTreeSet<Owner> = core
                .replication()
                .keyspace(SERVICES_KEYSPACE)
                .into_iter()
                .flat_map(|space| space.iter())
                .filter_map(|(key, _)| ephemeral::parse(key).map(|(owner, _)| owner))
                .collect();
            for owner in owners {
                holders.entry(owner).or_default().push(slot);
            }
        }
        // The reaper as the engine picks it, and when it started.
        let reaper_start = live_slots(world)
            .into_iter()
            .min_by_key(|&s| world.node(s).id())
            .map_or(0, |s| world.node(s).started_us());
        let mut first_error = None;
        for (owner, life) in &mut self.lives {
            let holding = holders.get(owner).map_or(&[][..], Vec::as_slice);
            life.held |= !holding.is_empty();
            let who = describe_life(*owner, life);
            let Some(end) = &mut life.end else { continue };
            if holding.is_empty() {
                end.reaped_us.get_or_insert(now);
            } else {
                end.reaped_us = None;
            }
            let Some(deadline) = end
                .deadline
                .map(|d| d.max(reaper_start + self.death_us) + self.reap_us)
            else {
                continue;
            };
            if now <= deadline {
                continue;
            }
            if !holding.is_empty() && !end.reap_reported && first_error.is_none() {
                end.reap_reported = true;
                first_error = Some(format!(
                    "{who} {} at {:.3}s; {:.3}s later (bound {:?}) its entries are still in the keyspace of {}",
                    end.how,
                    secs(end.at_us),
                    secs(now - end.at_us),
                    Duration::from_micros(deadline - end.at_us),
                    slots(holding),
                ));
            }
            if !end.reap_recorded && life.held {
                end.reap_recorded = true;
                self.records.push(RegistryRecord {
                    kind: RegistryKind::Reaped,
                    what: format!("{who} {}", end.how),
                    at_secs: secs(end.at_us),
                    took_secs: end.reaped_us.map(|r| secs(r - end.at_us)),
                });
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Checks (b) when armed; notices unexplained disagreement when not.
    fn check_convergence(&mut self, world: &World, listings: &BTreeMap<usize, Listing>) -> Check {
        let now = world.now_us();
        if !world.network().rules().is_empty() {
            return Ok(());
        }
        let expected = expected(world);
        let disagreement = disagreement(world, &expected, listings);
        let Some(episode) = &self.episode else {
            if let Some(example) = disagreement {
                self.unexplained += 1;
                self.arm(world, 0, format!("unexplained disagreement: {example}"));
            }
            return Ok(());
        };
        if now <= episode.not_before {
            return Ok(());
        }
        let (since, deadline) = (episode.since, episode.deadline);
        match disagreement {
            None => {
                self.settle(Some(now - since));
                Ok(())
            }
            Some(example) if now > deadline => {
                let cause = episode.cause.clone();
                self.settle(None);
                Err(format!(
                    "the registry did not converge within {:?} after \"{cause}\": {example}",
                    Duration::from_micros(deadline - since)
                ))
            }
            Some(_) => Ok(()),
        }
    }

    /// Settles registrations and deregistrations that are now listed (gone) everywhere.
    fn check_pending(&mut self, world: &World, listings: &BTreeMap<usize, Listing>) {
        let now = world.now_us();
        let live = live_slots(world);
        let mut done = Vec::new();
        for (i, p) in self.pending.iter().enumerate() {
            let finished = match p.kind {
                RegistryKind::Register => {
                    let items: Vec<_> = p
                        .items
                        .iter()
                        .filter(|(slot, _, _)| live.contains(slot))
                        .collect();
                    if items.is_empty() {
                        // Every node it registered on went down first: nothing to measure.
                        done.push((i, None));
                        continue;
                    }
                    items.iter().all(|(slot, service, local)| {
                        let Some(owner) = owner_of(world, *slot) else {
                            return false;
                        };
                        let key = (owner, service.clone(), *local);
                        live.iter()
                            .all(|v| listings.get(v).is_some_and(|l| l.contains_key(&key)))
                    })
                }
                _ => p.items.iter().all(|(slot, service, local)| {
                    let node = world.node(*slot).id();
                    live.iter().all(|v| {
                        listings.get(v).is_none_or(|l| {
                            !l.keys()
                                .any(|(o, s, n)| o.node == node && s == service && n == local)
                        })
                    })
                }),
            };
            if finished {
                done.push((i, Some(now - p.at_us)));
            }
        }
        for (i, took) in done.into_iter().rev() {
            let p = self.pending.remove(i);
            if let Some(took) = took {
                self.records.push(RegistryRecord {
                    kind: p.kind,
                    what: p.what,
                    at_secs: secs(p.at_us),
                    took_secs: Some(secs(took)),
                });
            }
        }
    }
}

/// The life `slot` runs now, if it is up.
fn owner_of(world: &World, slot: usize) -> Option<Owner> {
    world
        .node(slot)
        .core()
        .map(|c| Owner::from(c.membership().me()))
}

/// Up and not leaving.
fn live_slots(world: &World) -> BTreeSet<usize> {
    (0..world.nodes().len())
        .filter(|&s| world.node(s).is_up() && world.node(s).leaving_us().is_none())
        .collect()
}

/// What `core` lists, from its directory.
pub fn listing(core: &Core) -> BTreeMap<(Owner, String, u64), InstanceRecord> {
    Directory::build(core)
        .all()
        .map(|i| {
            let owner = Owner {
                node: i.id.node,
                generation: i.id.generation,
            };
            ((owner, i.service.clone(), i.id.local), i.record.clone())
        })
        .collect()
}

/// What every live node should list: the registrations of every live node under its current
/// life.
fn expected(world: &World) -> Listing {
    let mut all = Listing::new();
    for slot in live_slots(world) {
        let Some(owner) = owner_of(world, slot) else {
            continue;
        };
        for r in world.registrations().of(slot) {
            all.insert((owner, r.service.clone(), r.local), r.record.clone());
        }
    }
    all
}

fn lists_life(listing: &Listing, owner: Owner) -> bool {
    listing
        .range((owner, String::new(), 0)..)
        .next()
        .is_some_and(|((o, _, _), _)| *o == owner)
}

/// Whether `core`'s node has had the news that `owner` is dead: it marked the life failed or
/// left, or knows a newer life of its node (or is one).
fn knows_dead(core: &Core, owner: Owner) -> bool {
    let me = Owner::from(core.membership().me());
    if me.node == owner.node {
        return me.generation > owner.generation;
    }
    core.membership().member(owner.node).is_some_and(|m| {
        m.generation > owner.generation
            || (m.generation == owner.generation && m.state != MemberState::Alive)
    })
}

/// The running node lives, other than `owner` itself, that have had the news of its death.
///
/// Only they break (a)'s "never again" by listing it. A node started since every other had the
/// news may have joined through the owner itself, alive behind a one-way cut that had everyone
/// else declare it failed, which rightly tells it the life is alive; when that life then ends,
/// such a node learns of it like any survivor of a death, within the death bound (`--scenario
/// chaos --nodes 16`: seed 95, n15 joined through n8; seeds 71 and 256, n0 and n3 joined
/// through n7 and n2, which crashed and renewed later;
/// `sim/scenarios/restart-through-declared-failed.toml`).
fn told(world: &World, owner: Owner) -> Vec<Owner> {
    world
        .nodes()
        .iter()
        .filter_map(|n| n.core())
        .filter(|c| Owner::from(c.membership().me()) != owner && knows_dead(c, owner))
        .map(|c| Owner::from(c.membership().me()))
        .collect()
}

/// Whether every running node other than the life itself has marked `owner` failed or left, or
/// knows a newer life of its node. `false` when there is no such node and the life still runs.
fn marked_dead_everywhere(world: &World, owner: Owner) -> bool {
    let mut viewers = 0;
    for node in world.nodes() {
        let Some(core) = node.core() else { continue };
        if Owner::from(core.membership().me()) == owner {
            continue;
        }
        viewers += 1;
        if !knows_dead(core, owner) {
            return false;
        }
    }
    let still_runs = world
        .nodes()
        .iter()
        .filter_map(|n| n.core())
        .any(|c| Owner::from(c.membership().me()) == owner);
    viewers > 0 || !still_runs
}

/// The first live node whose listing differs from `expected`, described.
fn disagreement(
    world: &World,
    expected: &Listing,
    listings: &BTreeMap<usize, Listing>,
) -> Option<String> {
    for slot in live_slots(world) {
        let Some(listing) = listings.get(&slot) else {
            continue;
        };
        if listing == expected {
            continue;
        }
        let missing: Vec<&Key> = expected
            .keys()
            .filter(|k| !listing.contains_key(*k))
            .collect();
        let extra: Vec<&Key> = listing
            .keys()
            .filter(|k| !expected.contains_key(*k))
            .collect();
        let stale: Vec<&Key> = listing
            .iter()
            .filter(|(k, v)| expected.get(*k).is_some_and(|e| e != *v))
            .map(|(k, _)| k)
            .collect();
        let mut text = format!(
            "n{slot} lists {} instance(s), {} expected",
            listing.len(),
            expected.len()
        );
        for (what, keys) in [
            ("missing", &missing),
            ("extra", &extra),
            ("with an old record", &stale),
        ] {
            if let Some(k) = keys.first() {
                let _ = write!(
                    text,
                    "; {} {what} (e.g. {})",
                    keys.len(),
                    key_text(world, k)
                );
            }
        }
        return Some(text);
    }
    None
}

fn key_text(world: &World, (owner, service, local): &Key) -> String {
    let node = world
        .slot_of(owner.node)
        .map_or_else(|| owner.node.short(), |s| format!("n{s}"));
    format!("{service}/{local} of {node} gen {}", owner.generation)
}

fn example_of(listings: &BTreeMap<usize, Listing>, slot: usize, owner: Owner) -> String {
    listings
        .get(&slot)
        .and_then(|l| l.keys().find(|(o, _, _)| *o == owner))
        .map_or_else(String::new, |(_, service, local)| {
            format!("n{slot} lists {service}/{local}")
        })
}

fn end_reap_recorded(life: &Life) -> bool {
    life.end.as_ref().is_some_and(|e| e.reap_recorded)
}

fn describe_life(owner: Owner, life: &Life) -> String {
    format!("n{} gen {}", life.slot, owner.generation)
}

fn slots(list: &[usize]) -> String {
    let shown: Vec<String> = list.iter().take(8).map(|s| format!("n{s}")).collect();
    let more = list.len().saturating_sub(8);
    if more > 0 {
        format!("{} and {more} more", shown.join(", "))
    } else {
        shown.join(", ")
    }
}

impl RegistryConsistent {
    /// Everything, now.
    fn check(&mut self, world: &World) -> Check {
        let listings: BTreeMap<usize, Listing> = (0..world.nodes().len())
            .filter(|&s| world.node(s).leaving_us().is_none())
            .filter_map(|s| world.node(s).core().map(|c| (s, listing(c))))
            .collect();
        self.check_pending(world, &listings);
        let lives = self.check_lives(world, &listings);
        let reaped = self.check_reaping(world);
        let converged = self.check_convergence(world, &listings);
        lives.and(reaped).and(converged)
    }
}

/// `earlier; later`, cut short once long enough to say what happened.
fn join_causes(earlier: &str, later: &str) -> String {
    const LONG: usize = 300;
    if earlier.len() >= LONG {
        if earlier.ends_with('…') {
            earlier.to_owned()
        } else {
            format!("{earlier}; …")
        }
    } else {
        format!("{earlier}; {later}")
    }
}

impl Invariant for RegistryConsistent {
    fn name(&self) -> &'static str {
        "registry-consistent"
    }

    fn after_step(&mut self, world: &World, slot: usize) -> Check {
        let before = self.current.get(slot).copied().flatten();
        self.track(world, slot, Ending::Renewed);
        let after = self.current.get(slot).copied().flatten();
        if before.is_some() && before != after && self.active {
            self.disturbed(world, 0, format!("n{slot} renewed its generation"));
        }
        Ok(())
    }

    fn on_event(&mut self, world: &World, observed: &Observed) -> Check {
        let (MembershipEvent::Failed(view) | MembershipEvent::Left(view)) = &observed.event else {
            return Ok(());
        };
        let Some(slot) = world.slot_of(view.id) else {
            return Ok(());
        };
        let node = world.node(slot);
        // Only news about a live node's current life changes what live nodes should list;
        // across a partition it is expected, and the heal starts the clock anyway.
        if self.active
            && world.network().rules().is_empty()
            && node.is_up()
            && node.leaving_us().is_none()
            && node.generation() == view.generation
        {
            let cause = format!("n{} declared n{slot} failed", observed.observer);
            self.disturbed(world, 0, cause);
        }
        Ok(())
    }

    fn on_fault(&mut self, world: &World, fault: &Fault, slots: &[usize]) {
        match fault {
            Fault::Stop(_) => {
                // Still running until its goodbye is out, but its life is over.
                for &slot in slots {
                    self.track(world, slot, Ending::Stopped);
                    if let Some(owner) = owner_of(world, slot) {
                        self.end(world, owner, Ending::Stopped);
                    }
                }
            }
            Fault::Crash(_) | Fault::Restart(..) => {
                let how = if matches!(fault, Fault::Crash(_)) {
                    Ending::Crashed
                } else {
                    Ending::Restarted
                };
                for &slot in slots {
                    // The core is gone (or replaced): end the life the slot ran, then track the
                    // new one, if any.
                    if let Some(old) = self.current.get_mut(slot).and_then(Option::take) {
                        self.end(world, old, how);
                    }
                    self.track(world, slot, how);
                }
            }
            Fault::Heal => {
                let deadline = world.now_us() + self.settle_us;
                for life in self.lives.values_mut() {
                    if let Some(end) = &mut life.end {
                        end.deadline.get_or_insert(deadline);
                    }
                }
            }
            Fault::Register { service, .. } | Fault::Deregister { service, .. } => {
                self.active = true;
                let kind = if matches!(fault, Fault::Register { .. }) {
                    RegistryKind::Register
                } else {
                    RegistryKind::Deregister
                };
                let items: Vec<(usize, String, u64)> = slots
                    .iter()
                    .flat_map(|&slot| {
                        let service = service.clone();
                        world
                            .registrations()
                            .touched(slot)
                            .iter()
                            .map(move |&local| (slot, service.clone(), local))
                            .collect::<Vec<_>>()
                    })
                    .collect();
                if !items.is_empty() {
                    self.pending.push(Pending {
                        kind,
                        what: fault.to_string(),
                        at_us: world.now_us(),
                        items,
                    });
                }
            }
            _ => {}
        }
        if matches!(fault, Fault::Partition(..) | Fault::PartitionOneWay(..)) {
            if let Some(e) = self.episode.take() {
                self.deferred = Some(e.cause);
            }
            return;
        }
        let registry = matches!(fault, Fault::Register { .. } | Fault::Deregister { .. });
        if !(fault.disturbs() || registry) || !self.active {
            return;
        }
        let extra = match fault {
            Fault::Stall(_, d) => micros(*d),
            Fault::Stop(_) => micros(LEAVE_GRACE),
            _ => 0,
        };
        self.disturbed(world, extra, fault.to_string());
    }

    fn on_tick(&mut self, world: &World) -> Check {
        if !self.active {
            return Ok(());
        }
        // Every tick while something is settling; between disturbances once a quiet interval.
        let settling = self.episode.is_some()
            || !self.pending.is_empty()
            || self.lives.values().any(|l| l.end.is_some() && !l.recorded);
        let now = world.now_us();
        if !settling && now < self.next_quiet_check {
            return Ok(());
        }
        self.next_quiet_check = now + self.quiet_us;
        self.check(world)
    }

    fn at_end(&mut self, world: &World) -> Check {
        if !self.active {
            return Ok(());
        }
        let result = self.check(world);
        for p in std::mem::take(&mut self.pending) {
            self.records.push(RegistryRecord {
                kind: p.kind,
                what: p.what,
                at_secs: secs(p.at_us),
                took_secs: None,
            });
        }
        for (owner, life) in &self.lives {
            if let (Some(end), false, true) = (&life.end, end_reap_recorded(life), life.held) {
                self.records.push(RegistryRecord {
                    kind: RegistryKind::Reaped,
                    what: format!("{} {}", describe_life(*owner, life), end.how),
                    at_secs: secs(end.at_us),
                    took_secs: end.reaped_us.map(|r| secs(r - end.at_us)),
                });
            }
            let (Some(end), false, true) = (&life.end, life.recorded, life.listed) else {
                continue;
            };
            self.records.push(RegistryRecord {
                kind: RegistryKind::Death,
                what: format!("{} {}", describe_life(*owner, life), end.how),
                at_secs: secs(end.at_us),
                took_secs: end.vanished_us.map(|v| secs(v - end.at_us)),
            });
        }
        if let Some(e) = &self.episode {
            if world.network().rules().is_empty() {
                let cause = e.cause.clone();
                self.settle(None);
                result?;
                return Err(format!(
                    "the run ended before the registry converged after \"{cause}\""
                ));
            }
        }
        result
    }

    fn measure(&self, out: &mut Measurements) {
        out.registry.extend(self.records.iter().cloned());
        out.registry_unexplained += self.unexplained;
    }
}
