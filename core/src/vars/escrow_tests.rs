//! Allowances and reclaiming (see [`escrow`](super::escrow)): a life spends only what a
//! majority allowed it, a dead life's rights beyond that go to one heir, and however messages
//! and states interleave — a crash, a partition with the cut-off life still drawing — no unit
//! is spent twice.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::escrow::{Escrow, Step, ESCROW_RETRY};
use super::tests::{counter_spec, declared, id, life};
use super::*;

/// Nodes holding counter "pool": messages wait on a wire until the test delivers them, and
/// counter states reach every node on the writer's side of the cut when the test flushes.
struct Pool {
    nodes: BTreeMap<NodeId, Vars>,
    wire: Vec<(NodeId, NodeId, Bytes)>,
    cut: BTreeSet<NodeId>,
    now: Instant,
    clock: u64,
    /// Units each node reported drawn.
    drawn: BTreeMap<NodeId, u64>,
    /// The replicated keyspace: each key's latest write, handed to everyone at a heal.
    latest: BTreeMap<String, (foundation_crdt::Timestamp, Vec<u8>)>,
}

impl Pool {
    fn new(n: u128, spec: &VarSpec) -> Self {
        let nodes = declared(n, "pool", spec);
        Self {
            nodes,
            wire: Vec::new(),
            cut: BTreeSet::new(),
            now: Instant::ZERO,
            clock: 0,
            drawn: BTreeMap::new(),
            latest: BTreeMap::new(),
        }
    }

    fn node(&mut self, n: u128) -> &mut Vars {
        self.nodes.get_mut(&id(n)).expect("node")
    }

    fn apart(&self, a: NodeId, b: NodeId) -> bool {
        self.cut.contains(&a) != self.cut.contains(&b)
    }

    /// Queues `out` and whatever else node `from` has to send; a message across the cut is lost.
    fn queue(&mut self, from: NodeId, mut out: Outgoing) {
        out.extend(self.nodes.get_mut(&from).expect("node").take_messages());
        for (to, payload) in out {
            if !self.apart(from, to) {
                self.wire.push((from, to, payload));
            }
        }
    }

    fn deliver(&mut self, index: usize) {
        let (from, to, payload) = self.wire.remove(index);
        let Ok(crate::CoreMessage::Vars(message)) = postcard::from_bytes(&payload) else {
            panic!("a variables message");
        };
        let mut out = Outgoing::new();
        let now = self.now;
        self.nodes
            .get_mut(&to)
            .expect("node")
            .received(now, from, message, &mut out);
        self.queue(to, out);
    }

    fn run(&mut self) {
        while !self.wire.is_empty() {
            self.deliver(0);
        }
    }

    fn draw(&mut self, n: u128, amount: u64) -> Result<(), VarsError> {
        let mut out = Outgoing::new();
        let now = self.now;
        let result = self.node(n).draw(now, "pool", amount, &mut out);
        self.queue(id(n), out);
        if result.is_ok() {
            *self.drawn.entry(id(n)).or_default() += amount;
        }
        result
    }

    /// Node `n` writes its counter state (its batching interval over) and it reaches every
    /// node on its side of the cut, `n` included.
    fn flush(&mut self, n: u128) {
        self.now = self.now + COUNTER_PUBLISH_EVERY;
        let mut out = Outgoing::new();
        let now = self.now;
        self.node(n).handle_timeout(now, &mut out);
        self.queue(id(n), out);
        for write in self.node(n).take_publications() {
            self.clock += 1;
            let ts = foundation_crdt::Timestamp {
                wall_ms: self.clock,
                logical: 0,
                node: foundation_crdt::NodeId::from_u128(n),
            };
            if let Some(bytes) = &write.value {
                self.latest.insert(write.key.clone(), (ts, bytes.clone()));
            }
            let reached: Vec<NodeId> = (self.nodes.keys().copied())
                .filter(|to| !self.apart(id(n), *to))
                .collect();
            for to in reached {
                let vars = self.nodes.get_mut(&to).expect("node");
                vars.entry_changed(now, &write.keyspace, &write.key, ts, write.value.as_deref());
                self.queue(to, Outgoing::new());
            }
        }
    }

    /// Draws, and once more after the holders answered if the allowance was short.
    fn draw_allowed(&mut self, n: u128, amount: u64) -> Result<(), VarsError> {
        match self.draw(n, amount) {
            Err(VarsError::Allowance { .. }) => {
                self.run();
                self.draw(n, amount)
            }
            other => other,
        }
    }

    /// The cut heals: every node takes up every key's latest write (replication's catch-up).
    fn heal(&mut self) {
        self.cut.clear();
        let latest = self.latest.clone();
        for (key, (ts, bytes)) in latest {
            let now = self.now;
            let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
            for to in ids {
                let vars = self.nodes.get_mut(&to).expect("node");
                vars.entry_changed(now, COUNTERS_KEYSPACE, &key, ts, Some(&bytes));
                self.queue(to, Outgoing::new());
            }
        }
    }

    fn flush_all(&mut self) {
        let ids: Vec<u128> = self.nodes.keys().map(|n| n.as_u128()).collect();
        for n in ids {
            self.flush(n);
        }
    }

    /// Nodes `on` hear that node `dead` is down (its generation 1 life over).
    fn down(&mut self, dead: u128, on: &[u128]) {
        for n in on {
            let now = self.now;
            self.node(*n).member_down(now, id(dead), 1);
            self.queue(id(*n), Outgoing::new());
        }
    }

    /// Nodes `on` hear that node `node` is up at membership generation `generation`.
    fn up(&mut self, node: u128, generation: u64, on: &[u128]) {
        for n in on {
            let now = self.now;
            self.node(*n).member_up(now, id(node), generation);
            self.queue(id(*n), Outgoing::new());
        }
    }

    fn value(&self, n: u128) -> u64 {
        match self.nodes[&id(n)].get("pool") {
            Some((_, VarValue::Int(v))) => *v as u64,
            other => panic!("{other:?}"),
        }
    }

    fn reclaimed(&self) -> u64 {
        self.nodes
            .values()
            .map(|v| v.stats().rights_reclaimed)
            .sum()
    }
}

#[test]
fn a_life_draws_within_its_allowance_without_waiting_and_raises_it_ahead_of_need() {
    // 12 units, 4 per holder; each may give up 2 from the start.
    let mut pool = Pool::new(3, &counter_spec(12, 3));
    pool.draw(1, 2).expect("within its allowance");
    let refused = pool.draw(1, 1);
    assert_eq!(
        refused,
        Err(VarsError::Allowance {
            allowed: 0,
            wanted: 1
        }),
        "the raise it asked for ahead of need is not allowed yet"
    );
    assert!(!pool.wire.is_empty(), "it asked the holders");
    pool.run();
    // Raises keep about half of what it holds allowed ahead (what it loses if it dies).
    pool.draw(1, 1).expect("allowed by a majority now");
    assert!(matches!(pool.draw(1, 1), Err(VarsError::Allowance { .. })));
    pool.run();
    pool.draw(1, 1).expect("allowed by a majority now");
    assert_eq!(
        pool.draw(1, 1),
        Err(VarsError::Insufficient {
            holds: 0,
            wanted: 1
        })
    );
    pool.run();
    pool.flush_all();
    for n in 1..=3 {
        assert_eq!(pool.value(n), 8, "node {n}");
    }
}

#[test]
fn a_short_life_asks_the_richest_for_rights_and_gets_what_its_allowance_lets_it_hand() {
    let mut pool = Pool::new(3, &counter_spec(9, 3));
    assert_eq!(pool.node(1).rights("pool"), Some(3));
    pool.draw(1, 2).expect("within its rights and allowance");
    pool.run();
    pool.flush_all();
    // 5 more than node 1 holds: refused, and it asks the richest other node for the rest.
    assert_eq!(
        pool.draw(1, 5),
        Err(VarsError::Insufficient {
            holds: 1,
            wanted: 5
        })
    );
    pool.run();
    pool.flush_all();
    // Node 2 (3 units, 2 of them allowed) handed 2 and asked to be allowed the third.
    assert_eq!(pool.node(1).rights("pool"), Some(3));
    pool.run();
    pool.now = pool.now + RIGHTS_ASK_INTERVAL;
    assert_eq!(
        pool.draw(1, 4),
        Err(VarsError::Insufficient {
            holds: 3,
            wanted: 4
        })
    );
    pool.run();
    pool.flush_all();
    pool.draw_allowed(1, 4)
        .expect("now within rights and allowance");
    pool.run();
    pool.flush_all();
    for n in 1..=3 {
        assert_eq!(pool.value(n), 3, "node {n}");
        pool.nodes[&id(n)].invariants().expect("nobody overdrawn");
    }
    let statistics = pool.nodes[&id(1)].statistics("pool").cloned();
    let statistics = statistics.expect("declared");
    assert_eq!((statistics.drawn, statistics.insufficient), (6, 2));
    // A refill is this node's to spend.
    let now = pool.now;
    pool.node(2).refill(now, "pool", 10).expect("refills");
    pool.flush(2);
    assert_eq!(pool.value(3), 13);
    assert_eq!(
        pool.node(2).rights("pool"),
        Some(11),
        "its last unit and the 10 it added"
    );
}

#[test]
fn a_counter_without_holders_spends_without_allowances() {
    let mut pool = Pool::new(2, &counter_spec(0, 0));
    let now = pool.now;
    pool.node(1).refill(now, "pool", 10).expect("refills");
    pool.draw(1, 10)
        .expect("all of it, no allowance to ask for");
    assert!(pool.wire.is_empty(), "nobody to ask");
}

#[test]
fn a_crashed_lifes_rights_beyond_its_allowance_go_to_one_heir() {
    // 30 units, 10 per holder; node 3 may give up 5 from the start and draws 3.
    let mut pool = Pool::new(3, &counter_spec(30, 3));
    pool.draw(3, 3).expect("within its allowance");
    pool.wire.clear(); // It dies before its raise leaves.
    pool.flush(3);
    pool.cut.insert(id(3));
    pool.down(3, &[1, 2]);
    pool.run();
    // Node 1 (the lowest holder alive) fenced it with node 2: it may have given up 5 in all,
    // so the 5 beyond are node 1's.
    assert_eq!(pool.reclaimed(), 5);
    assert_eq!(pool.nodes[&id(1)].stats().rights_reclaimed, 5);
    assert_eq!(pool.node(1).rights("pool"), Some(15));
    pool.flush_all();
    assert_eq!(
        (pool.value(1), pool.value(2)),
        (27, 27),
        "reclaiming changes no total"
    );
    // Hearing of the death again reclaims nothing more.
    pool.down(3, &[1, 2]);
    pool.run();
    assert_eq!(pool.reclaimed(), 5);
    for vars in pool.nodes.values() {
        vars.invariants().expect("nobody overdrawn");
    }
}

/// A node restarted quicker than failure detection: membership never reports its first life
/// failed, only its second one up (foca renames the member), and the first life's rights
/// beyond its allowance still go to one heir rather than staying with a life that is gone.
#[test]
fn a_life_restarted_before_it_was_seen_down_has_its_rights_reclaimed() {
    let mut pool = Pool::new(3, &counter_spec(30, 3));
    pool.draw(3, 3).expect("within its allowance");
    pool.wire.clear(); // It restarts before its raise leaves.
    pool.flush(3);
    pool.cut.insert(id(3)); // The first life's process is gone.
    pool.up(3, 2, &[1, 2]);
    pool.run();
    assert_eq!(pool.nodes[&id(1)].stats().rights_reclaimed, 5);
    assert_eq!(pool.node(1).rights("pool"), Some(15));
    // The second life coming up again, or the first reported down late, reclaims no more.
    pool.up(3, 2, &[1, 2]);
    pool.down(3, &[1, 2]);
    pool.run();
    assert_eq!(pool.reclaimed(), 5);
    pool.flush_all();
    for n in [1, 2] {
        assert_eq!(pool.value(n), 27, "reclaiming changes no total");
        pool.nodes[&id(n)].invariants().expect("nobody overdrawn");
    }
}

/// A node renewed its membership identity, keeping its life (it was declared failed): its
/// life up at the renewed generation is not an earlier life over, so nobody fences it for
/// that — while a later life of it, a restart, ends it.
#[test]
fn a_renewed_life_up_under_its_new_generation_is_not_fenced_for_it() {
    let mut pool = Pool::new(3, &counter_spec(30, 3));
    pool.node(1).heard_renewal(id(3), life(3), 2);
    pool.up(3, 2, &[1]);
    assert!(pool.wire.is_empty(), "no fence: {:?}", pool.wire);
    pool.up(3, 3, &[1]);
    assert_eq!(pool.wire.len(), 3, "a restart: the heir fences life 1");
}

/// A life asks for rights and dies before the ask arrives: the holder, which heard it is
/// down (and whose heir already reclaimed from it), hands it nothing, since units handed to a
/// life that is over are never reclaimed.
#[test]
fn a_late_ask_for_rights_from_a_life_that_is_over_gets_nothing() {
    let mut pool = Pool::new(3, &counter_spec(30, 3));
    assert!(matches!(
        pool.draw(3, 11),
        Err(VarsError::Insufficient { holds: 10, .. })
    ));
    let late = std::mem::take(&mut pool.wire);
    assert_eq!(late.len(), 1, "its ask to the richest holder, node 1");
    pool.cut.insert(id(3));
    pool.down(3, &[1, 2]);
    pool.run();
    assert_eq!(
        pool.node(1).rights("pool"),
        Some(15),
        "5 of node 3's reclaimed"
    );
    pool.wire.extend(late);
    pool.run();
    assert_eq!(pool.node(1).rights("pool"), Some(15), "nothing handed");
    assert_eq!(pool.nodes[&id(1)].stats().rights_handed, 0);
}

#[test]
fn a_life_cut_off_and_fenced_cannot_spend_what_its_heir_reclaimed() {
    let mut pool = Pool::new(3, &counter_spec(30, 3));
    pool.cut.insert(id(3));
    // Cut off, node 3 spends its allowance; its raise reaches nobody.
    pool.draw(3, 5).expect("within its allowance");
    pool.down(3, &[1, 2]);
    pool.run();
    assert_eq!(
        pool.node(1).rights("pool"),
        Some(15),
        "5 of node 3's reclaimed"
    );
    // Node 3 keeps trying: refused, its rights are allowed to nobody.
    for _ in 0..3 {
        assert!(matches!(
            pool.draw(3, 1),
            Err(VarsError::Allowance { allowed: 0, .. })
        ));
        pool.now = pool.now + ESCROW_RETRY;
        pool.flush(3);
        pool.run();
    }
    // The cut heals: node 3's raise reaches the holders, which fenced it.
    pool.heal();
    pool.now = pool.now + ESCROW_RETRY;
    pool.flush(3);
    pool.run();
    assert!(pool.draw(3, 1).is_err(), "fenced: never allowed more");
    pool.flush_all();
    let drawn: u64 = pool.drawn.values().sum();
    for n in 1..=3 {
        assert_eq!(pool.value(n), 30 - drawn, "node {n}");
        pool.nodes[&id(n)].invariants().expect("nobody overdrawn");
    }
}

/// Two holders each think they are the heir of holder 5 (their views of who is dead differ);
/// in every order the other holders can hear them in, at most one gets a majority, and one
/// does whenever three holders heard it first.
#[test]
fn a_life_one_holder_fenced_by_mistake_keeps_raising_with_the_others() {
    let holders: BTreeSet<Life> = (1..=3).map(life).collect();
    let shares: BTreeMap<Life, u64> = holders.iter().map(|h| (*h, 10)).collect();
    let mut me = Escrow::new(life(3), &holders, &shares);
    let mut counter = counter::genesis(30, &holders);
    counter
        .draw(counter::actor(life(3)), 5)
        .expect("its allowance");
    let steps = me.plan_raise(Instant::ZERO, &counter, 0);
    let Some((_, Step::Raise { ceiling })) = steps.first().cloned() else {
        panic!("a raise: {steps:?}");
    };
    // Holder 1 fenced it (it alone saw it dead); holder 2 and itself allow the raise.
    me.allowed(life(1), 5, true);
    me.allowed(life(2), ceiling, false);
    me.allowed(life(3), ceiling, false);
    assert_eq!(me.headroom(&counter), ceiling - 5, "a majority allowed it");
    // A second holder fenced it: no majority is left to allow more, so it stops asking.
    me.allowed(life(2), ceiling, true);
    counter
        .draw(counter::actor(life(3)), ceiling - 5)
        .expect("allowed");
    assert!(me.plan_raise(Instant::ZERO, &counter, 1).is_empty());
}

#[test]
fn of_two_would_be_heirs_at_most_one_gets_a_majority() {
    let holders: BTreeSet<Life> = (1..=5).map(life).collect();
    let shares: BTreeMap<Life, u64> = holders.iter().map(|h| (*h, 10)).collect();
    let dead = life(5);
    let now = Instant::ZERO;
    for mask in 0..16u32 {
        let mut escrows: BTreeMap<Life, Escrow> = holders
            .iter()
            .map(|h| (*h, Escrow::new(*h, &holders, &shares)))
            .collect();
        for heir in [life(1), life(2)] {
            escrows.get_mut(&heir).expect("heir").start_fence(now, dead);
        }
        // Holder i (1 to 4) hears heir 1 first when bit i-1 of the mask is clear.
        let mut won = Vec::new();
        for i in 1..=4u128 {
            let first = match mask >> (i - 1) & 1 {
                0 => [life(1), life(2)],
                _ => [life(2), life(1)],
            };
            for heir in first {
                let holder = escrows.get_mut(&life(i)).expect("holder");
                let answer = holder.fence_asked(heir, dead, true);
                let Some(Step::Fenced {
                    heir: named,
                    ceiling,
                    ..
                }) = answer
                else {
                    panic!("a holder that sees it dead answers");
                };
                let asker = escrows.get_mut(&heir).expect("heir");
                if let Some(c) = asker.fenced(life(i), dead, named, ceiling) {
                    won.push((heir, c));
                }
            }
        }
        let firsts_of_1 = 4 - mask.count_ones();
        let expected = match firsts_of_1 {
            3.. => vec![(life(1), 5)],
            0..=1 => vec![(life(2), 5)],
            2 => vec![],
        };
        assert_eq!(won, expected, "mask {mask:04b}");
    }
}

/// One step of a random run on three holders, node 3 the one that dies or is cut off.
#[derive(Clone, Debug)]
enum Action {
    Draw(u128, u64),
    Deliver(usize),
    Flush(u128),
    Retry,
    /// Node 3 is cut off (and keeps running) or crashes.
    Isolate {
        crash: bool,
    },
    /// Node 1 or 2 hears that node 3 is down.
    Down(u128),
    Heal,
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        4 => (1..=3u128, 1..=4u64).prop_map(|(n, k)| Action::Draw(n, k)),
        6 => (0..64usize).prop_map(Action::Deliver),
        2 => (1..=3u128).prop_map(Action::Flush),
        1 => Just(Action::Retry),
        1 => any::<bool>().prop_map(|crash| Action::Isolate { crash }),
        1 => (1..=2u128).prop_map(Action::Down),
        1 => Just(Action::Heal),
    ]
}

proptest! {
    #[test]
    fn however_steps_interleave_no_unit_is_spent_twice(
        actions in proptest::collection::vec(action(), 1..120)
    ) {
        let mut pool = Pool::new(3, &counter_spec(24, 3));
        let mut crashed = false;
        for action in actions {
            match action {
                Action::Draw(3, _) | Action::Flush(3) if crashed => {}
                Action::Draw(n, k) => {
                    let _ = pool.draw(n, k);
                }
                Action::Deliver(i) if !pool.wire.is_empty() => {
                    let i = i % pool.wire.len();
                    let to_crashed = crashed && pool.wire[i].1 == id(3);
                    match to_crashed {
                        true => drop(pool.wire.remove(i)),
                        false => pool.deliver(i),
                    }
                }
                Action::Deliver(_) => {}
                Action::Flush(n) => pool.flush(n),
                Action::Retry => {
                    pool.now = pool.now + ESCROW_RETRY;
                    let ids: Vec<u128> = (1..=3).filter(|n| !crashed || *n != 3).collect();
                    for n in ids {
                        pool.flush(n);
                    }
                }
                Action::Isolate { crash } => {
                    pool.cut.insert(id(3));
                    pool.wire.retain(|(from, to, _)| *from != id(3) && *to != id(3));
                    crashed |= crash;
                }
                Action::Down(n) => pool.down(3, &[n]),
                Action::Heal => pool.heal(),
            }
            for vars in pool.nodes.values() {
                prop_assert!(vars.invariants().is_ok(), "{:?}", vars.invariants());
            }
            let drawn: u64 = pool.drawn.values().sum();
            prop_assert!(drawn <= 24, "{drawn} units drawn of 24");
        }
        // Every live node's state reaches everyone: replicas agree and nobody shows anyone
        // overdrawn; without a crash, they show every unit drawn.
        if crashed {
            pool.node(3).take_publications();
            pool.latest.retain(|key, _| counter::parse_key(key).is_some_and(|(_, l)| l != life(3)));
        }
        pool.heal();
        let live: Vec<u128> = (1..=3).filter(|n| !crashed || *n != 3).collect();
        for _ in 0..2 {
            for n in &live {
                pool.flush(*n);
            }
        }
        let drawn: u64 = pool.drawn.values().sum();
        let shown = pool.value(1);
        for n in live {
            prop_assert_eq!(pool.value(n), shown, "node {}", n);
            prop_assert_eq!(pool.nodes[&id(n)].stats().invalid_values, 0);
        }
        if !crashed {
            prop_assert_eq!(shown, 24 - drawn);
        }
    }
}
