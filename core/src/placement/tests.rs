//! The placement machine alone: a few machines on a hand-driven network whose views the test
//! sets, so partitions, late messages, drifting clocks and wrong views can be tried directly.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use proptest::prelude::*;

use super::*;

fn node(i: u8) -> NodeId {
    NodeId::from_u128(u128::from(i) * 0x1000_0000_0000_0001 + 7)
}

fn candidate(i: u8) -> Candidate {
    Candidate {
        id: node(i),
        generation: 10 + u64::from(i),
        tags: BTreeMap::new(),
    }
}

fn config() -> PlacementConfig {
    PlacementConfig {
        lease: Duration::from_millis(1000),
        renew: Duration::from_millis(250),
        drift_ppm: 100_000,
        split_brain: SplitBrain::KeepMajority,
        handoff_timeout: Duration::from_millis(2000),
        handoff_max_bytes: 1024,
    }
}

fn at(ms: u64) -> Instant {
    Instant::from_elapsed(Duration::from_millis(ms))
}

/// A message in flight: (delivery time ms, from, to, bytes).
type Flight = (u64, usize, usize, Bytes);

/// `n` machines, world time in ms, each with a clock rate (ppm off true time), a network with
/// a fixed delay that drops messages between `cut` pairs, and views the test sets.
struct Cluster {
    machines: Vec<Option<Placement>>,
    rate_ppm: Vec<i64>,
    now: u64,
    delay: u64,
    flights: Vec<Flight>,
    cut: BTreeSet<(usize, usize)>,
    /// (world ms, slot, event)
    events: Vec<(u64, usize, PlacementEvent)>,
    /// Whether the application answers `BeginHandoff` with the instance's state at once.
    answer_handoffs: bool,
    /// Handoffs begun and not answered yet: (slot, instance).
    handoffs_due: Vec<(usize, Instance)>,
}

impl Cluster {
    fn new(n: usize, spec: WorkloadSpec, config: PlacementConfig) -> Self {
        let mut c = Cluster {
            machines: Vec::new(),
            rate_ppm: vec![0; n],
            now: 0,
            delay: 5,
            flights: Vec::new(),
            cut: BTreeSet::new(),
            events: Vec::new(),
            answer_handoffs: true,
            handoffs_due: Vec::new(),
        };
        for i in 0..n {
            let me = Life {
                node: node(i as u8),
                generation: 10 + i as u64,
            };
            let mut p = Placement::new(me, config.clone(), at(0));
            p.declare(at(0), "w", spec.clone()).expect("declares");
            c.machines.push(Some(p));
        }
        c
    }

    fn local(&self, slot: usize) -> Instant {
        let ms = self.now as i64 * (1_000_000 + self.rate_ppm[slot]) / 1_000_000;
        at(ms.max(0) as u64)
    }

    /// Gives `slot` a view in which exactly the slots in `alive` are alive and the others
    /// failed since `failed_since` (ms, world).
    fn view(&mut self, slot: usize, alive: &[usize], failed_since: u64) {
        let members: Vec<(usize, MemberState)> = (0..self.machines.len())
            .filter(|i| *i != slot)
            .map(|i| {
                let alive = alive.contains(&i);
                (
                    i,
                    if alive {
                        MemberState::Alive
                    } else {
                        MemberState::Failed
                    },
                )
            })
            .collect();
        self.view_as(slot, candidate(slot as u8), &members, failed_since);
    }

    /// Gives `slot`, as `me`, a view of each of `members` in its state since world ms `since`.
    fn view_as(
        &mut self,
        slot: usize,
        me: Candidate,
        members: &[(usize, MemberState)],
        since: u64,
    ) {
        let members: Vec<Member> = members
            .iter()
            .map(|&(i, state)| Member {
                candidate: candidate(i as u8),
                state,
                since: at(since),
            })
            .collect();
        let now = self.local(slot);
        if let Some(p) = self.machines[slot].as_mut() {
            p.update_view(now, me, &members);
        }
        self.collect(slot);
    }

    fn all_see(&mut self, alive: &[usize]) {
        for slot in 0..self.machines.len() {
            self.view(slot, alive, 0);
        }
    }

    fn collect(&mut self, slot: usize) {
        let Some(p) = self.machines[slot].as_mut() else {
            return;
        };
        let mut messages = p.take_messages();
        messages.extend(p.take_bulk_messages());
        for (to, bytes) in messages {
            let to = (to.as_u128() - 7) / 0x1000_0000_0000_0001;
            self.flights
                .push((self.now + self.delay, slot, to as usize, bytes));
        }
        for e in p.take_events() {
            if let PlacementEvent::BeginHandoff { instance, .. } = &e {
                self.handoffs_due.push((slot, instance.clone()));
            }
            self.events.push((self.now, slot, e));
        }
    }

    /// Runs to `until` ms in 1 ms steps, checking at every step that no instance runs on two
    /// nodes (each judged on its own clock) — the property everything else serves.
    fn run_to(&mut self, until: u64) {
        while self.now < until {
            self.now += 1;
            let due: Vec<Flight> = self
                .flights
                .iter()
                .filter(|f| f.0 <= self.now)
                .cloned()
                .collect();
            self.flights.retain(|f| f.0 > self.now);
            for (_, from, to, bytes) in due {
                if self.cut.contains(&(from, to)) || self.cut.contains(&(to, from)) {
                    continue;
                }
                let now = self.local(to);
                if let Some(p) = self.machines[to].as_mut() {
                    let Ok(crate::CoreMessage::Placement(m)) = postcard::from_bytes(&bytes) else {
                        panic!("undecodable placement message");
                    };
                    p.received(now, node(from as u8), m);
                }
                self.collect(to);
            }
            if self.answer_handoffs {
                self.answer_handoffs();
            }
            for slot in 0..self.machines.len() {
                let now = self.local(slot);
                let due = self.machines[slot]
                    .as_ref()
                    .and_then(Placement::poll_timeout)
                    .is_some_and(|t| t <= now);
                if due {
                    if let Some(p) = self.machines[slot].as_mut() {
                        p.handle_timeout(now);
                    }
                    self.collect(slot);
                }
            }
            self.check_unique();
        }
    }

    /// The application's part of a handoff: the state of each instance being handed over.
    fn answer_handoffs(&mut self) {
        for (slot, instance) in std::mem::take(&mut self.handoffs_due) {
            let now = self.local(slot);
            if let Some(p) = self.machines[slot].as_mut() {
                let _ = p.hand_off(now, &instance, state_of(&instance));
            }
            self.collect(slot);
        }
    }

    /// Has `slot` route `payload` by `key` with `ttl_ms`.
    fn route(&mut self, slot: usize, key: &str, payload: &str, ttl_ms: u64) -> RouteId {
        let now = self.local(slot);
        let id = self.machines[slot]
            .as_mut()
            .expect("up")
            .route(
                now,
                "w",
                key.as_bytes(),
                payload.as_bytes().to_vec(),
                Duration::from_millis(ttl_ms),
            )
            .expect("routed");
        self.collect(slot);
        id
    }

    /// Deliveries so far: (ms, slot, instance, payload).
    fn deliveries(&self) -> Vec<(u64, usize, Instance, String)> {
        self.events
            .iter()
            .filter_map(|(at, slot, e)| match e {
                PlacementEvent::Deliver {
                    instance, payload, ..
                } => Some((
                    *at,
                    *slot,
                    instance.clone(),
                    String::from_utf8_lossy(payload).into_owned(),
                )),
                _ => None,
            })
            .collect()
    }

    /// The outcome of routed message `id`, if it came.
    fn outcome(&self, id: RouteId) -> Option<(u64, Result<(), RouteError>)> {
        self.events.iter().find_map(|(at, _, e)| match e {
            PlacementEvent::Routed { id: got, outcome } if *got == id => Some((*at, *outcome)),
            _ => None,
        })
    }

    fn runners(&self, instance: &Instance) -> Vec<usize> {
        (0..self.machines.len())
            .filter(|s| {
                self.machines[*s]
                    .as_ref()
                    .is_some_and(|p| p.is_running(instance, self.local(*s)))
            })
            .collect()
    }

    fn check_unique(&self) {
        let mut all = BTreeSet::new();
        for p in self.machines.iter().flatten() {
            all.extend(p.running().map(|(i, _)| i.clone()));
        }
        for instance in all {
            let runners = self.runners(&instance);
            assert!(
                runners.len() <= 1,
                "{instance} runs on {runners:?} at {} ms",
                self.now
            );
        }
    }

    fn partition(&mut self, a: &[usize], b: &[usize]) {
        for x in a {
            for y in b {
                self.cut.insert((*x, *y));
            }
        }
    }

    fn running_total(&self, instance: &Instance) -> usize {
        self.runners(instance).len()
    }
}

fn singleton() -> Instance {
    Instance::new("w", 0)
}

fn state_of(instance: &Instance) -> Vec<u8> {
    format!("state of {instance}").into_bytes()
}

#[test]
fn one_singleton_starts_on_the_rendezvous_owner() {
    let mut c = Cluster::new(3, WorkloadSpec::singleton(), config());
    c.all_see(&[0, 1, 2]);
    c.run_to(3000);
    let runners = c.runners(&singleton());
    let candidates: Vec<Candidate> = (0..3).map(candidate).collect();
    let owner = rendezvous::owner(Rule::Rendezvous, "w", 0, &candidates).expect("owner");
    assert_eq!(runners.len(), 1);
    assert_eq!(node(runners[0] as u8), owner);
    // Started once, never stopped while nothing changed.
    assert_eq!(c.events.len(), 1, "{:?}", c.events);
}

#[test]
fn the_oldest_rule_picks_the_lowest_generation() {
    let spec = WorkloadSpec {
        rule: Rule::Oldest,
        ..WorkloadSpec::singleton()
    };
    let mut c = Cluster::new(3, spec, config());
    c.all_see(&[0, 1, 2]);
    c.run_to(3000);
    assert_eq!(c.runners(&singleton()), vec![0]);
}

/// The owner ends up alone on the minority side: it stops when its lease runs out, and the
/// majority's new owner starts only after that (`run_to` checks every millisecond), within
/// about a lease of the views changing.
#[test]
fn a_partitioned_owner_stops_before_the_majority_starts_it_elsewhere() {
    let mut c = Cluster::new(3, WorkloadSpec::singleton(), config());
    c.all_see(&[0, 1, 2]);
    c.run_to(3000);
    let owner = c.runners(&singleton())[0];
    let others: Vec<usize> = (0..3).filter(|s| *s != owner).collect();
    c.partition(&[owner], &others);
    c.run_to(3500);
    // The failure detector takes its time; the views change after it (the minority side's
    // view goes too: it sees the other two failed).
    c.view(owner, &[owner], 3500);
    for s in &others {
        c.view(*s, &others, 3500);
    }
    c.run_to(6000);
    let runners = c.runners(&singleton());
    assert_eq!(runners.len(), 1, "{:?}", c.events);
    assert_ne!(runners[0], owner);
    let stopped = c
        .events
        .iter()
        .find(|(_, s, e)| *s == owner && matches!(e, PlacementEvent::Stop { .. }))
        .expect("the old owner stopped");
    assert!(matches!(
        stopped.2,
        PlacementEvent::Stop {
            reason: StopReason::LostQuorum,
            ..
        }
    ));
    // Heal: everyone sees everyone; exactly one runs, and it stays unique.
    c.cut.clear();
    c.all_see(&[0, 1, 2]);
    c.run_to(9000);
    assert_eq!(c.running_total(&singleton()), 1);
}

/// Views that disagree (each side believes it is the owner) never produce two runners: the
/// registrars decide.
#[test]
fn disagreeing_views_never_run_two() {
    let mut c = Cluster::new(3, WorkloadSpec::singleton(), config());
    c.all_see(&[0, 1, 2]);
    c.run_to(2000);
    let owner = c.runners(&singleton())[0];
    // Every other node wrongly thinks the owner failed and one of them should own it.
    for s in (0..3).filter(|s| *s != owner) {
        let alive: Vec<usize> = (0..3).filter(|x| *x != owner).collect();
        c.view(s, &alive, 2000);
    }
    c.run_to(6000);
    assert_eq!(c.running_total(&singleton()), 1);
}

/// A node alone can never own with keep-majority of three, however long it waits.
#[test]
fn an_isolated_node_never_owns() {
    let mut c = Cluster::new(3, WorkloadSpec::singleton(), config());
    c.all_see(&[0, 1, 2]);
    c.run_to(100);
    // Slot 2 alone, cut off before anything started; its agreed membership still has 3.
    c.partition(&[2], &[0, 1]);
    c.view(2, &[2], 100);
    c.view(0, &[0, 1], 100);
    c.view(1, &[0, 1], 100);
    c.run_to(8000);
    assert!(c.events.iter().all(|(_, s, _)| *s != 2), "{:?}", c.events);
    // It keeps the members it cannot see: it never shrank its way into a majority.
    let two = c.machines[2].as_ref().expect("up");
    assert_eq!(two.agreed().len(), 3);
    assert_eq!(c.running_total(&singleton()), 1);
}

/// A force-leave notice about an earlier life of a node (late, or sent before the node came
/// back) leaves its later life in the agreed membership; one about that life removes it.
#[test]
fn forgetting_an_earlier_life_keeps_the_later_one_agreed() {
    let mut c = Cluster::new(3, WorkloadSpec::singleton(), config());
    c.all_see(&[0, 1, 2]);
    let zero = c.machines[0].as_mut().expect("up");
    let agreed_life = candidate(2).generation;
    zero.forget_member(at(10), node(2), agreed_life - 1);
    assert_eq!(zero.agreed().get(&node(2)), Some(agreed_life));
    zero.forget_member(at(10), node(2), agreed_life);
    assert_eq!(zero.agreed().get(&node(2)), None);
    assert_eq!(zero.agreed().len(), 2);
}

#[test]
fn static_quorum_counts_registrars_not_the_membership() {
    let config = PlacementConfig {
        split_brain: SplitBrain::StaticQuorum(3),
        ..config()
    };
    let mut c = Cluster::new(4, WorkloadSpec::singleton(), config);
    c.all_see(&[0, 1, 2, 3]);
    c.run_to(100);
    // 2 | 2: neither side reaches three registrars, so nothing starts.
    let split = |c: &mut Cluster, a: &[usize], b: &[usize]| {
        c.cut.clear();
        c.partition(a, b);
        for s in a {
            c.view(*s, a, c.now);
        }
        for s in b {
            c.view(*s, b, c.now);
        }
    };
    split(&mut c, &[0, 1], &[2, 3]);
    c.run_to(5000);
    assert!(c.events.is_empty(), "{:?}", c.events);
    // 3 | 1: the side of three owns.
    split(&mut c, &[0, 1, 2], &[3]);
    c.run_to(8000);
    let runners = c.runners(&singleton());
    assert_eq!(runners.len(), 1);
    assert_ne!(runners[0], 3);
}

#[test]
fn a_graceful_leave_hands_over_within_a_few_rounds() {
    let mut c = Cluster::new(3, WorkloadSpec::singleton(), config());
    c.all_see(&[0, 1, 2]);
    c.run_to(2000);
    let owner = c.runners(&singleton())[0];
    let now = c.local(owner);
    c.machines[owner].as_mut().expect("up").leave(now);
    c.collect(owner);
    let others: Vec<usize> = (0..3).filter(|s| *s != owner).collect();
    for s in &others {
        c.view(*s, &others, 2000);
    }
    // Well under a lease (1 s): the release reached the registrars, no expiry was awaited.
    c.run_to(2100);
    let runners = c.runners(&singleton());
    assert_eq!(runners.len(), 1);
    assert_ne!(runners[0], owner);
}

/// Shards spread, each runs exactly once, and a join moves only shards to the new member.
#[test]
fn shards_spread_and_a_join_moves_only_what_must_move() {
    let mut c = Cluster::new(4, WorkloadSpec::sharded(32), config());
    c.all_see(&[0, 1, 2]);
    c.view(3, &[3], 0);
    c.run_to(2000);
    let before: BTreeMap<u32, usize> = (0..32)
        .map(|s| {
            let r = c.runners(&Instance::new("w", s));
            assert_eq!(r.len(), 1, "shard {s}: {r:?}");
            (s, r[0])
        })
        .collect();
    assert!(before.values().all(|s| *s < 3));
    c.all_see(&[0, 1, 2, 3]);
    c.run_to(5000);
    for s in 0..32 {
        let r = c.runners(&Instance::new("w", s));
        assert_eq!(r.len(), 1, "shard {s}: {r:?}");
        assert!(
            r[0] == before[&s] || r[0] == 3,
            "shard {s} moved between old members"
        );
    }
    assert!((0..32).any(|s| c.runners(&Instance::new("w", s)) == vec![3]));
}

#[test]
fn min_members_holds_everything_back_until_enough_are_seen() {
    let spec = WorkloadSpec {
        min_members: 3,
        ..WorkloadSpec::singleton()
    };
    let mut c = Cluster::new(3, spec, config());
    c.view(0, &[0, 1], 0);
    c.view(1, &[0, 1], 0);
    c.view(2, &[2], 0);
    c.run_to(3000);
    assert!(c.events.is_empty(), "{:?}", c.events);
    c.all_see(&[0, 1, 2]);
    c.run_to(5000);
    assert_eq!(c.running_total(&singleton()), 1);
}

#[test]
fn declarations_are_checked() {
    let mut p = Placement::new(
        Life {
            node: node(0),
            generation: 1,
        },
        config(),
        at(0),
    );
    p.declare(at(0), "w", WorkloadSpec::sharded(4)).expect("ok");
    p.declare(at(0), "w", WorkloadSpec::sharded(4))
        .expect("same again");
    assert_eq!(
        p.declare(at(0), "w", WorkloadSpec::sharded(8)),
        Err(PlacementError::Conflict("w".into()))
    );
    assert!(matches!(
        p.declare(at(0), "", WorkloadSpec::singleton()),
        Err(PlacementError::Invalid(_))
    ));
    assert!(matches!(
        p.declare(at(0), "z", WorkloadSpec::sharded(0)),
        Err(PlacementError::Invalid(_))
    ));
    assert_eq!(
        p.remove(at(0), "nope"),
        Err(PlacementError::Unknown("nope".into()))
    );
    assert!(matches!(
        p.owner(&Instance::new("w", 9)),
        Err(PlacementError::Invalid(_))
    ));
    let (instance, _) = p.owner_of_key("w", b"customer-7").expect("known");
    assert!(instance.shard < 4);
    assert!(config().validate().is_ok());
    let bad = PlacementConfig {
        renew: Duration::from_millis(800),
        ..config()
    };
    assert!(bad.validate().is_err());
}

#[test]
fn a_registrar_ignores_late_rounds_and_grants_nothing_while_quiet() {
    let mut r = Registrar::new(at(0), Duration::from_secs(1));
    let a = Life {
        node: node(1),
        generation: 1,
    };
    let b = Life {
        node: node(2),
        generation: 1,
    };
    let x: BTreeSet<Instance> = [singleton()].into();
    assert_eq!(r.claim(at(10), a, 1, &x), Some(vec![]), "quiet after start");
    assert_eq!(r.claim(at(1500), a, 2, &x), Some(vec![singleton()]));
    assert_eq!(r.claim(at(1600), b, 1, &x), Some(vec![]), "held by a");
    assert_eq!(r.claim(at(1700), a, 2, &BTreeSet::new()), None, "late");
    // An older life's late round must not release what the newer life holds.
    let a2 = Life { generation: 2, ..a };
    assert_eq!(r.claim(at(1800), a2, 1, &x), Some(vec![singleton()]));
    assert_eq!(r.claim(at(1900), a, 3, &BTreeSet::new()), None);
    assert_eq!(r.holder(&singleton()).map(|(l, _)| l), Some(a2));
    // Released, b gets it at once.
    assert_eq!(r.claim(at(2000), a2, 2, &BTreeSet::new()), Some(vec![]));
    assert_eq!(r.claim(at(2001), b, 2, &x), Some(vec![singleton()]));
}

proptest! {
    /// Adding a member moves a shard only to that member (rendezvous hashing's bounded
    /// movement), and removing one moves only that member's shards.
    #[test]
    fn rendezvous_moves_only_what_must_move(
        ids in proptest::collection::btree_set(1u128..1_000_000, 2..12),
        shards in 1u32..200,
    ) {
        let all: Vec<Candidate> = ids.iter().map(|i| Candidate {
            id: NodeId::from_u128(*i), generation: 1, tags: BTreeMap::new(),
        }).collect();
        let fewer = &all[..all.len() - 1];
        let new = all[all.len() - 1].id;
        for s in 0..shards {
            let before = rendezvous::owner(Rule::Rendezvous, "w", s, fewer);
            let after = rendezvous::owner(Rule::Rendezvous, "w", s, &all);
            prop_assert!(after == before || after == Some(new));
        }
    }

    /// Random partitions, heals, wrong views and clock rates within the drift margin: no
    /// instance ever runs on two nodes at once (checked every simulated millisecond).
    #[test]
    fn never_two_runners_under_random_disturbances(
        steps in proptest::collection::vec((0u8..5, 0u8..32, 100u64..1500), 1..8),
        rates in proptest::collection::vec(-40_000i64..40_000, 5),
        shards in 1u32..4,
    ) {
        let mut c = Cluster::new(5, WorkloadSpec::sharded(shards), config());
        c.rate_ppm = rates;
        c.all_see(&[0, 1, 2, 3, 4]);
        c.run_to(1500);
        for (kind, mask, wait) in steps {
            let side: Vec<usize> = (0..5).filter(|i| mask & (1 << i) != 0).collect();
            let rest: Vec<usize> = (0..5).filter(|i| mask & (1 << i) == 0).collect();
            match kind {
                0 => {
                    c.partition(&side, &rest);
                    for s in &side { c.view(*s, &side, c.now); }
                    for s in &rest { c.view(*s, &rest, c.now); }
                }
                1 => { c.cut.clear(); c.all_see(&[0, 1, 2, 3, 4]); }
                // A wrong view on one side only: no network change.
                2 => { for s in &side { c.view(*s, &side, c.now); } }
                3 => c.partition(&side, &rest),
                _ => c.delay = 1 + u64::from(mask) * 10,
            }
            let until = c.now + wait;
            c.run_to(until);
        }
        c.cut.clear();
        c.delay = 5;
        c.all_see(&[0, 1, 2, 3, 4]);
        let until = c.now + 4000;
        c.run_to(until);
        for s in 0..shards {
            prop_assert_eq!(c.running_total(&Instance::new("w", s)), 1);
        }
    }
}

fn handoff_shards(shards: u32) -> WorkloadSpec {
    WorkloadSpec {
        handoff: true,
        ..WorkloadSpec::sharded(shards)
    }
}

/// Three members own 16 shards; a fourth joins. Each shard that moves is handed over: the old
/// owner begins the handoff, the new one gets the state (`EndHandoff`) right before its
/// `Start`, and never are two running (`run_to` checks every millisecond).
#[test]
fn a_shard_that_moves_on_a_join_hands_its_state_to_the_next_owner() {
    let mut c = Cluster::new(4, handoff_shards(16), config());
    c.all_see(&[0, 1, 2]);
    c.view(3, &[3], 0);
    c.run_to(2000);
    c.events.clear();
    c.all_see(&[0, 1, 2, 3]);
    c.run_to(4000);
    let moved: Vec<Instance> = (0..16)
        .map(|s| Instance::new("w", s))
        .filter(|i| c.runners(i) == vec![3])
        .collect();
    assert!(!moved.is_empty(), "the join moved nothing");
    for instance in &moved {
        let begun = c.events.iter().any(|(_, _, e)| {
            matches!(e, PlacementEvent::BeginHandoff { instance: i, to } if i == instance && *to == node(3))
        });
        assert!(begun, "{instance}: no handoff began");
        let on_3: Vec<&PlacementEvent> = c
            .events
            .iter()
            .filter(|(_, s, e)| *s == 3 && event_instance(e) == Some(instance))
            .map(|(_, _, e)| e)
            .collect();
        match on_3.as_slice() {
            [PlacementEvent::EndHandoff { state, .. }, PlacementEvent::Start { .. }] => {
                assert_eq!(state.as_ref(), state_of(instance).as_slice());
            }
            other => panic!("{instance} on the new owner: {other:?}"),
        }
    }
    assert_eq!(
        c.machines[3].as_ref().expect("up").handoff_stats().resumed,
        moved.len() as u64
    );
}

fn event_instance(e: &PlacementEvent) -> Option<&Instance> {
    match e {
        PlacementEvent::Start { instance, .. }
        | PlacementEvent::Duplicate { instance, .. }
        | PlacementEvent::Stop { instance, .. }
        | PlacementEvent::BeginHandoff { instance, .. }
        | PlacementEvent::EndHandoff { instance, .. }
        | PlacementEvent::Deliver { instance, .. } => Some(instance),
        PlacementEvent::Routed { .. } => None,
    }
}

/// Two members and one shard with handoff, whose owner starts leaving at 1.5 s with the
/// application not answering handoffs yet: (cluster, owner, the other member).
fn owner_leaving() -> (Cluster, usize, usize) {
    let mut c = Cluster::new(2, handoff_shards(1), config());
    c.answer_handoffs = false;
    c.all_see(&[0, 1]);
    // Registrars grant nothing in their first lease (they may have promised something in a
    // previous life).
    c.run_to(1500);
    let owner = c.runners(&Instance::new("w", 0))[0];
    let now = c.local(owner);
    c.machines[owner].as_mut().expect("up").leave(now);
    c.collect(owner);
    (c, owner, 1 - owner)
}

/// A state over `handoff_max_bytes` is refused with a typed error; the handoff then times out,
/// the old owner stops, and the next owner starts without a state.
#[test]
fn a_state_over_the_limit_is_refused_and_the_handoff_times_out() {
    let (mut c, owner, other) = owner_leaving();
    let instance = Instance::new("w", 0);
    let (_, slot, _) = c
        .events
        .iter()
        .find(|(_, _, e)| matches!(e, PlacementEvent::BeginHandoff { .. }))
        .expect("a handoff began");
    assert_eq!(*slot, owner);
    let now = c.local(owner);
    let p = c.machines[owner].as_mut().expect("up");
    assert_eq!(
        p.hand_off(now, &instance, vec![0; 2000]),
        Err(PlacementError::TooLarge {
            size: 2000,
            max: 1024
        })
    );
    assert!(p.is_handing_off());
    // handoff_timeout is 2 s: still running (and unique) meanwhile, stopped after.
    c.run_to(3000);
    assert_eq!(c.runners(&instance), vec![owner]);
    c.view(other, &[other], 3000);
    c.run_to(6000);
    assert_eq!(c.runners(&instance), vec![other]);
    let p = c.machines[owner].as_ref().expect("up");
    assert_eq!(p.handoff_stats().timed_out, 1);
    assert!(!c
        .events
        .iter()
        .any(|(_, _, e)| matches!(e, PlacementEvent::EndHandoff { .. })));
    let again = c.machines[owner]
        .as_mut()
        .expect("up")
        .hand_off(at(6000), &instance, vec![1]);
    assert_eq!(again, Err(PlacementError::NotHandingOff(instance)));
}

/// Messages routed by key reach the instance's owner once, and the origin hears so.
#[test]
fn routed_messages_reach_the_owner_once() {
    let mut c = Cluster::new(3, WorkloadSpec::sharded(8), config());
    c.all_see(&[0, 1, 2]);
    c.run_to(1000);
    let ids: Vec<RouteId> = (0..40)
        .map(|k| c.route(k % 3, &format!("key-{k}"), &format!("m{k}"), 500))
        .collect();
    c.run_to(1100);
    let deliveries = c.deliveries();
    assert_eq!(deliveries.len(), 40, "each delivered once");
    for (_, slot, instance, _) in &deliveries {
        assert_eq!(c.runners(instance), vec![*slot], "delivered where it runs");
    }
    for id in ids {
        assert_eq!(c.outcome(id).map(|(_, o)| o), Some(Ok(())));
    }
}

/// During a handoff the old owner does not deliver; the message waits at the next owner and
/// is delivered there once it runs, with the state handed over.
#[test]
fn a_message_routed_during_a_handoff_waits_for_the_next_owner() {
    let (mut c, _, other) = owner_leaving();
    let instance = Instance::new("w", 0);
    c.view(other, &[other], 1500);
    c.run_to(1510);
    let id = c.route(other, "k", "during", 3000);
    c.run_to(1600);
    assert!(c.deliveries().is_empty(), "nothing runs to take it yet");
    // The application hands the state over now.
    c.answer_handoffs = true;
    c.run_to(2000);
    assert_eq!(c.runners(&instance), vec![other]);
    let deliveries = c.deliveries();
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0].1, other);
    assert_eq!(c.outcome(id).map(|(_, o)| o), Some(Ok(())));
}

/// With too few members nothing owns the key's shard: the message is not delivered, and the
/// origin hears so by its deadline.
#[test]
fn a_message_with_no_owner_fails_by_its_deadline() {
    let spec = WorkloadSpec {
        min_members: 3,
        ..WorkloadSpec::sharded(4)
    };
    let mut c = Cluster::new(3, spec, config());
    c.view(0, &[0, 1], 0);
    c.view(1, &[0, 1], 0);
    c.run_to(100);
    let id = c.route(0, "k", "lost", 300);
    c.run_to(1000);
    assert!(c.deliveries().is_empty());
    let (when, outcome) = c.outcome(id).expect("an outcome");
    assert_eq!(outcome, Err(RouteError::NotDelivered));
    assert!(when <= 100 + 300, "by the deadline: {when} ms");
    let unknown = c.machines[0].as_mut().expect("up").route(
        at(1000),
        "nope",
        b"k",
        Vec::new(),
        Duration::from_millis(10),
    );
    assert_eq!(unknown, Err(PlacementError::Unknown("nope".into())));
}

fn tagged(i: u8, role: &str) -> Candidate {
    Candidate {
        tags: BTreeMap::from([("role".to_owned(), role.to_owned())]),
        ..candidate(i)
    }
}

fn starts_and_stops(p: &mut Placement) -> Vec<String> {
    p.take_events()
        .iter()
        .map(|e| match e {
            PlacementEvent::Start { instance, .. } => format!("start {instance}"),
            PlacementEvent::Stop { instance, reason } => format!("stop {instance} {reason:?}"),
            other => format!("{other:?}"),
        })
        .collect()
}

/// A replicated workload runs on each member carrying its tags, once enough of them are seen,
/// without waiting for any lease; a local one runs here whatever the members; both stop on a
/// leave.
#[test]
fn replicated_runs_on_every_eligible_member_and_local_runs_here() {
    let me = Life {
        node: node(0),
        generation: 10,
    };
    let mut p = Placement::new(me, config(), at(0));
    let workers = WorkloadSpec {
        require: BTreeMap::from([("role".to_owned(), "worker".to_owned())]),
        min_members: 2,
        ..WorkloadSpec::replicated()
    };
    p.declare(at(0), "agent", workers).expect("declared");
    p.declare(at(0), "cache", WorkloadSpec::local())
        .expect("declared");
    let alone = p.take_events();
    assert_eq!(alone.len(), 1, "only the local one runs: {alone:?}");
    let worker = |i: u8, state| Member {
        candidate: tagged(i, "worker"),
        state,
        since: at(0),
    };
    // One eligible member is too few; a second one (not ourselves: a web node) changes
    // nothing either; with another worker there are two.
    p.update_view(at(1), tagged(0, "worker"), &[]);
    assert!(starts_and_stops(&mut p).is_empty());
    p.update_view(at(2), tagged(0, "worker"), &[worker(1, MemberState::Alive)]);
    assert_eq!(starts_and_stops(&mut p), vec!["start agent/0"]);
    assert_eq!(p.owner(&Instance::new("agent", 0)), Ok(Some(node(0))));
    assert!(p.is_running(&Instance::new("agent", 0), at(2)));
    assert!(
        p.take_messages().is_empty(),
        "no claims for per-node workloads"
    );
    // Not a worker any more: it stops here.
    p.update_view(at(3), tagged(0, "web"), &[worker(1, MemberState::Alive)]);
    assert_eq!(starts_and_stops(&mut p), vec!["stop agent/0 Moved"]);
    p.leave(at(4));
    assert_eq!(starts_and_stops(&mut p), vec!["stop cache/0 Leaving"]);
}

/// A new life stops the old life's per-node instances and counts those stops as it counts every
/// other, so started minus stopped is what runs here.
#[test]
fn a_new_life_counts_the_per_node_instances_it_stops() {
    let mut p = Placement::new(
        Life {
            node: node(0),
            generation: 10,
        },
        config(),
        at(0),
    );
    p.declare(at(0), "cache", WorkloadSpec::local())
        .expect("declared");
    p.update_view(at(1), candidate(0), &[]);
    let renewed = Candidate {
        generation: 11,
        ..candidate(0)
    };
    p.update_view(at(2), renewed, &[]);
    assert_eq!(
        starts_and_stops(&mut p),
        vec!["start cache/0", "stop cache/0 Renewed", "start cache/0"]
    );
    let stats = p.stats();
    assert_eq!(stats.started, 2);
    assert_eq!(stats.stops_by_reason[StopReason::Renewed.index()], 1);
    assert_eq!(stats.stops_by_reason.iter().sum::<u64>(), 1);
    assert_eq!(
        stats.moved, 1,
        "a renewal is counted with the moves, as for leased instances"
    );
}

/// keep-referee: the side with the referee owns, even when it is the smaller one; the other
/// side never runs it again once its lease is out (`run_to` checks uniqueness throughout).
#[test]
fn keep_referee_gives_ownership_to_the_referees_side() {
    let config = PlacementConfig {
        split_brain: SplitBrain::KeepReferee(node(2)),
        ..config()
    };
    let mut c = Cluster::new(3, WorkloadSpec::singleton(), config);
    c.all_see(&[0, 1, 2]);
    c.run_to(3000);
    assert_eq!(c.running_total(&singleton()), 1);
    c.partition(&[0, 1], &[2]);
    c.run_to(3500);
    c.view(0, &[0, 1], 3500);
    c.view(1, &[0, 1], 3500);
    c.view(2, &[2], 3500);
    c.run_to(7000);
    assert_eq!(c.runners(&singleton()), vec![2]);
    c.cut.clear();
    c.all_see(&[0, 1, 2]);
    c.run_to(10_000);
    assert_eq!(c.running_total(&singleton()), 1);
}

/// Three members under keep-oldest, with the singleton running after 3 s.
fn keep_oldest_singleton() -> Cluster {
    let config = PlacementConfig {
        split_brain: SplitBrain::KeepOldest,
        ..config()
    };
    let mut c = Cluster::new(3, WorkloadSpec::singleton(), config);
    c.all_see(&[0, 1, 2]);
    c.run_to(3000);
    c
}

/// keep-oldest: the side with the oldest member (slot 0, the lowest generation) owns, even
/// alone against two; once it leaves gracefully the next oldest decides, a lease later.
#[test]
fn keep_oldest_gives_ownership_to_the_oldest_members_side() {
    let mut c = keep_oldest_singleton();
    assert_eq!(c.running_total(&singleton()), 1);
    c.partition(&[0], &[1, 2]);
    c.run_to(3500);
    c.view(0, &[0], 3500);
    c.view(1, &[1, 2], 3500);
    c.view(2, &[1, 2], 3500);
    c.run_to(7000);
    assert_eq!(
        c.runners(&singleton()),
        vec![0],
        "the oldest's side keeps it"
    );
    // Slot 0 leaves gracefully: the others record it left, slot 1 is the oldest now.
    let now = c.local(0);
    c.machines[0].as_mut().expect("up").leave(now);
    c.collect(0);
    for slot in [1, 2] {
        let members = [(0, MemberState::Left), (3 - slot, MemberState::Alive)];
        c.view_as(slot, candidate(slot as u8), &members, 7000);
    }
    c.cut.clear();
    c.run_to(12_000);
    assert_eq!(c.running_total(&singleton()), 1);
    assert!(c.runners(&singleton())[0] != 0);
}

/// `slot` takes a new life (it had been declared failed): the same view, its own generation
/// one higher.
fn renew(c: &mut Cluster, slot: usize, alive: &[usize]) {
    let members: Vec<(usize, MemberState)> = alive
        .iter()
        .filter(|i| **i != slot)
        .map(|i| (*i, MemberState::Alive))
        .collect();
    let me = Candidate {
        generation: candidate(slot as u8).generation + 1,
        ..candidate(slot as u8)
    };
    c.view_as(slot, me, &members, 0);
}

/// A key of "w" whose shard another node than `slot` owns in `slot`'s view.
fn key_owned_elsewhere(c: &Cluster, slot: usize) -> String {
    let p = c.machines[slot].as_ref().expect("up");
    (0..)
        .map(|k| format!("key-{k}"))
        .find(|k| {
            let (_, owner) = p.owner_of_key("w", k.as_bytes()).expect("declared");
            owner.is_some_and(|o| o != node(slot as u8))
        })
        .expect("some key is owned elsewhere")
}

/// A routed message's outcome names it as `route` did, even when its origin took a new life
/// while the message was out: the caller waits for that id (the runtime's `route` has no other
/// deadline), and the owner's answer, sent to that id, is the outcome.
#[test]
fn a_routed_message_keeps_its_id_across_a_new_life_of_its_origin() {
    let spec = WorkloadSpec {
        min_members: 2,
        ..WorkloadSpec::sharded(8)
    };
    let mut c = Cluster::new(3, spec, config());
    c.all_see(&[0, 1, 2]);
    c.run_to(3000);
    // One message with the owner, one not sent yet: no owner while only slot 0 is seen.
    let key = key_owned_elsewhere(&c, 0);
    let out = c.route(0, &key, "out", 500);
    c.view(0, &[0], 0);
    let due = c.route(0, &key, "due", 500);
    renew(&mut c, 0, &[0, 1, 2]);
    c.run_to(3600);
    assert_eq!(c.outcome(out).map(|(_, o)| o), Some(Ok(())));
    assert_eq!(c.outcome(due).map(|(_, o)| o), Some(Ok(())));
    assert_eq!(c.deliveries().len(), 2, "each once: {:?}", c.deliveries());
}

/// Three members own 16 shards with handoff; a fourth joins, and while the application has
/// not yet given the states of the shards that move to it, a fifth joins and becomes the next
/// owner of some of them. Every shard that moved starts on its new owner with its state: a
/// state given after the fifth joined goes to the owner the view names then, not to the one
/// it named when the handoff began (which would take it, let the old owner stop, and keep it
/// while the fifth started afresh).
#[test]
fn a_handoff_follows_the_next_owner_when_it_changes_before_the_state_is_given() {
    let mut c = Cluster::new(5, handoff_shards(16), config());
    c.all_see(&[0, 1, 2]);
    c.view(3, &[3], 0);
    c.view(4, &[4], 0);
    c.run_to(2000);
    c.answer_handoffs = false;
    c.events.clear();
    for slot in 0..4 {
        c.view(slot, &[0, 1, 2, 3], 0);
    }
    c.run_to(2100);
    let begun: Vec<Instance> = c
        .events
        .iter()
        .filter_map(|(_, _, e)| match e {
            PlacementEvent::BeginHandoff { instance, .. } => Some(instance.clone()),
            _ => None,
        })
        .collect();
    c.all_see(&[0, 1, 2, 3, 4]);
    c.answer_handoffs = true;
    c.run_to(5000);
    let retargeted: Vec<&Instance> = begun.iter().filter(|i| c.runners(i) == vec![4]).collect();
    assert!(
        !retargeted.is_empty(),
        "the fifth took none of the shards handed to the fourth: {begun:?}"
    );
    for instance in begun {
        let [owner] = c.runners(&instance)[..] else {
            panic!("{instance} runs on {:?}", c.runners(&instance));
        };
        let resumed = c.events.iter().any(|(_, s, e)| {
            *s == owner
                && matches!(e, PlacementEvent::EndHandoff { instance: i, state, .. }
                    if *i == instance && state.as_ref() == state_of(i).as_slice())
        });
        assert!(resumed, "{instance} started on n{owner} without its state");
    }
}

/// A fourth member joins and crashes before it takes the states handed to it; once the view
/// drops it, each old owner owns its shard again and restarts it at once from the state its
/// application gave, instead of waiting out `handoff_timeout` (2 s) and restarting without it.
#[test]
fn a_handoff_our_view_gives_back_restarts_here_with_its_own_state() {
    let mut c = Cluster::new(4, handoff_shards(16), config());
    c.all_see(&[0, 1, 2]);
    c.view(3, &[3], 0);
    c.run_to(2000);
    c.events.clear();
    c.machines[3] = None;
    for slot in 0..3 {
        c.view(slot, &[0, 1, 2, 3], 0);
    }
    c.run_to(2200);
    let begun: Vec<(usize, Instance)> = c
        .events
        .iter()
        .filter_map(|(_, slot, e)| match e {
            PlacementEvent::BeginHandoff { instance, .. } => Some((*slot, instance.clone())),
            _ => None,
        })
        .collect();
    assert!(!begun.is_empty(), "the join moved nothing");
    c.all_see(&[0, 1, 2]);
    c.run_to(2400);
    for (owner, instance) in &begun {
        assert_eq!(c.runners(instance), vec![*owner], "{instance} is not back");
        let resumed = c.events.iter().any(|(at, s, e)| {
            *at >= 2200
                && s == owner
                && matches!(e, PlacementEvent::EndHandoff { instance: i, state, from }
                    if i == instance && *from == node(*owner as u8)
                        && state.as_ref() == state_of(i).as_slice())
        });
        assert!(
            resumed,
            "{instance} restarted on n{owner} without its state"
        );
    }
    let stats: Vec<&HandoffStats> = (0..3)
        .map(|s| c.machines[s].as_ref().expect("up").handoff_stats())
        .collect();
    assert_eq!(stats.iter().map(|s| s.timed_out).sum::<u64>(), 0);
    let taken_back: u64 = stats.iter().map(|s| s.taken_back).sum();
    assert_eq!(taken_back, begun.len() as u64);
}

/// keep-oldest: the oldest member (slot 0) leaves gracefully while a partition cuts slot 1 off
/// from the others. Slot 1 hears of the leave, is the oldest then, and grants itself a lease
/// later; slot 2 has not heard of it and still takes slot 0 for the oldest. An oldest that
/// left grants nothing any more: were slot 0 to keep answering claims while it finishes
/// stopping, its grant would let slot 2 run the singleton while slot 1 runs it on its own.
#[test]
fn an_oldest_member_that_left_grants_nothing() {
    let mut c = keep_oldest_singleton();
    c.partition(&[1], &[0, 2]);
    let now = c.local(0);
    c.machines[0].as_mut().expect("up").leave(now);
    c.collect(0);
    use MemberState::{Failed, Left};
    c.view_as(1, candidate(1), &[(0, Left), (2, Failed)], 3000);
    // Slot 2 lost slot 0 and slot 1 in its view (it can still reach slot 0).
    c.view_as(2, candidate(2), &[(0, Failed), (1, Failed)], 3000);
    c.run_to(8000);
    assert_eq!(
        c.runners(&singleton()),
        vec![1],
        "the side that heard of the leave"
    );
}

/// A registrar's answer to a round of an earlier life of the claimant grants nothing to the
/// present one. A restarted process numbers its rounds from 1 again, so a late answer to the
/// old life's round n would count for the new life's round n: a lease no registrar promised
/// this life, and counted from this life's round, sent after the one the registrar answered —
/// so it outlasts the registrar's promise, after which the registrar grants another claimant.
#[test]
fn a_grant_to_an_earlier_life_of_the_claimant_counts_nothing_for_the_present_one() {
    let candidates: Vec<Candidate> = (0..3).map(candidate).collect();
    let owner = rendezvous::owner(Rule::Rendezvous, "w", 0, &candidates).expect("owner");
    let slot = (0..3).find(|i| node(*i) == owner).expect("a slot owns it");
    let before = candidate(slot);
    let restarted = Candidate {
        generation: before.generation + 100,
        ..before.clone()
    };
    let mut p = Placement::new(
        Life {
            node: owner,
            generation: restarted.generation,
        },
        config(),
        at(0),
    );
    p.declare(at(0), "w", WorkloadSpec::singleton())
        .expect("declared");
    let others: Vec<Member> = (0..3)
        .filter(|i| *i != slot)
        .map(|i| Member {
            candidate: candidate(i),
            state: MemberState::Alive,
            since: at(0),
        })
        .collect();
    p.update_view(at(0), restarted.clone(), &others);
    assert!(!p.take_messages().is_empty(), "round 1 of the new life");
    let answer = |generation| PlacementMessage::Granted {
        round: 1,
        granted: vec![singleton()],
        members: 3,
        generation,
        running: Vec::new(),
    };
    for m in &others {
        p.received(at(10), m.candidate.id, answer(before.generation));
    }
    assert!(
        !p.is_running(&singleton(), at(10)),
        "started on grants made to its previous life"
    );
    // The same answers to this life's round are a quorum.
    for m in &others {
        p.received(at(20), m.candidate.id, answer(restarted.generation));
    }
    assert!(p.is_running(&singleton(), at(20)));
}
