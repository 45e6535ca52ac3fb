use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::{any, prop_assert, prop_assert_eq, proptest, TestCaseError};

use super::*;

type Register = CasRegister<u8, u32>;

/// A breakage of the register's safety rule a test may switch on, to show it catches it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Fault {
    None,
    /// A decision heard from another node does not teach who decides next: a learner keeps
    /// the acceptors it knew.
    IgnoreNext,
    /// A decision told outside the messages (a seat) older than the learner's version still
    /// teaches who decides after the learner's version.
    OldSeatsTeach,
    /// A restarted node comes back as the life it was (an identity from an old or lost disk),
    /// having forgotten what that life promised and accepted.
    RestartKeepsLife,
}

thread_local! {
    pub(super) static FAULT: Cell<Fault> = const { Cell::new(Fault::None) };
}
/// Acceptors that accepted one ballot's proposal, and the proposal.
type Votes = (usize, Proposal<u8, u32>);

/// Registers on `n` nodes and the messages in flight: `(from, to, message)`.
struct Cluster {
    now: Time,
    nodes: Vec<Register>,
    wire: Vec<(u8, u8, CasMessage<u8, u32>)>,
    outcomes: Vec<(u8, CasOutcome<u8>)>,
    /// The value a majority of acceptors accepted first in each slot: chosen, whoever learns it.
    chosen: BTreeMap<u64, Proposal<u8, u32>>,
    /// Every decision any node learnt so far, kept after that node forgot it (its window
    /// moved on, or it restarted).
    learnt: BTreeMap<u64, Proposal<u8, u32>>,
    /// The first acceptors.
    initial: BTreeSet<u8>,
    /// Every seat written so far (a decided version, its proposal, the acceptors after it),
    /// as a variable's declaration carries them: read later, an old one arrives late.
    seats: Vec<(u64, Proposal<u8, u32>, BTreeSet<u8>)>,
}

impl Cluster {
    fn new(n: u8) -> Self {
        Self::with(n, (0..n).collect())
    }

    /// `n` registers of which `members` are the first acceptors.
    fn with(n: u8, members: BTreeSet<u8>) -> Self {
        let nodes = (0..n)
            .map(|i| CasRegister::new(i, members.clone(), 0))
            .collect();
        Self {
            initial: members,
            now: Time(0),
            nodes,
            wire: Vec::new(),
            outcomes: Vec::new(),
            chosen: BTreeMap::new(),
            learnt: BTreeMap::new(),
            seats: Vec::new(),
        }
    }

    /// The life node `slot` runs now: `slot` until it restarts, then `n` more each time.
    fn life(&self, slot: u8) -> u8 {
        self.nodes[slot as usize].me
    }

    /// The node a message to `life` reaches (whichever life it runs now, as the transport
    /// addresses nodes, not lives).
    fn slot_of(&self, life: u8) -> usize {
        life as usize % self.nodes.len()
    }

    fn cas(&mut self, node: u8, expected: u64, value: u32) -> Option<CasOutcome<u8>> {
        let deadline = self.now.plus_ms(1_000);
        match self.nodes[node as usize].compare_and_set(self.now, expected, value, deadline) {
            Ok(sends) => {
                self.queue(self.life(node), sends);
                None
            }
            Err(outcome) => Some(outcome),
        }
    }

    fn reconfigure(&mut self, node: u8, expected: u64, to: &[u8]) -> Option<CasOutcome<u8>> {
        let deadline = self.now.plus_ms(1_000);
        let set = to.iter().copied().collect();
        match self.nodes[node as usize].reconfigure(self.now, expected, set, deadline) {
            Ok(sends) => {
                self.queue(self.life(node), sends);
                None
            }
            Err(outcome) => Some(outcome),
        }
    }

    /// Node `writer` writes down its latest decision as a seat, and node `reader` reads the
    /// seat `pick` chooses among all those written (the newest, or an older one late).
    fn seat(&mut self, writer: u8, reader: u8, pick: usize) {
        let register = &self.nodes[writer as usize];
        let (version, _) = register.current();
        if let Some(decided) = register.decided(version) {
            let seat = (version, decided.clone(), register.acceptors().1);
            self.seats.push(seat);
        }
        let (version, decided, next) = self.seats[pick % self.seats.len()].clone();
        let outcome = self.nodes[reader as usize].learn_decided(version, decided, next);
        let reader = self.life(reader);
        self.outcomes.extend(outcome.map(|o| (reader, o)));
    }

    /// Node `slot` restarts: a new life (`n` above its last) that holds nothing its earlier
    /// lives promised or accepted, taking the register up from seat `pick` of those written
    /// (or from the declaration, if none was), as a life a move added takes it up. Messages
    /// in flight to the earlier life reach the new one, which answers as itself. With
    /// [`Fault::RestartKeepsLife`], it comes back as the same life, and forgets all the same.
    fn restart(&mut self, slot: u8, pick: usize) {
        let old = self.life(slot);
        let life = match FAULT.with(Cell::get) {
            Fault::RestartKeepsLife => old,
            _ => match old.checked_add(self.nodes.len() as u8) {
                Some(life) => life,
                None => return,
            },
        };
        let register = match self.seats.is_empty() {
            true => CasRegister::new(life, self.initial.clone(), 0),
            false => {
                let (version, decided, next) = self.seats[pick % self.seats.len()].clone();
                CasRegister::starting_at(life, version, decided, next)
            }
        };
        self.nodes[slot as usize] = register;
    }

    /// Delivers, in order, every message between nodes of `up`, dropping the rest, and fires
    /// deadlines, until no write is under way.
    fn deliver_among(&mut self, up: &[u8]) {
        loop {
            while !self.wire.is_empty() {
                let (from, to, _) = self.wire[0];
                match up.contains(&from) && up.contains(&to) {
                    true => self.deliver(0),
                    false => drop(self.wire.remove(0)),
                }
            }
            if !self.tick() {
                return;
            }
        }
    }

    fn queue(&mut self, from: u8, sends: Sends<u8, u32>) {
        self.wire
            .extend(sends.into_iter().map(|(to, m)| (from, to, m)));
    }

    fn deliver(&mut self, index: usize) {
        let (from, to, message) = self.wire.remove(index);
        let slot = self.slot_of(to);
        let me = self.nodes[slot].me;
        let (sends, outcome) = self.nodes[slot].handle(self.now, from, message);
        self.queue(me, sends);
        if let Some(outcome) = outcome {
            self.outcomes.push((me, outcome));
        }
    }

    /// Moves time to the earliest retry or deadline of any node and fires it.
    fn tick(&mut self) -> bool {
        let Some(next) = self.nodes.iter().filter_map(Register::poll_timeout).min() else {
            return false;
        };
        self.now = self.now.max(next);
        for i in 0..self.nodes.len() {
            let me = self.nodes[i].me;
            let (sends, outcome) = self.nodes[i].handle_timeout(self.now);
            self.queue(me, sends);
            if let Some(outcome) = outcome {
                self.outcomes.push((me, outcome));
            }
        }
        true
    }

    /// Delivers everything, firing retries and deadlines when the wire is empty, until no
    /// write is under way.
    fn deliver_all(&mut self) {
        loop {
            while !self.wire.is_empty() {
                self.deliver(0);
            }
            if !self.tick() {
                return;
            }
        }
    }

    /// Records what a majority of acceptors has accepted in one ballot (chosen, in Paxos's
    /// sense), and fails if a slot ever has two chosen values.
    fn note_chosen(&mut self) -> Result<(), String> {
        let mut votes: BTreeMap<(u64, Ballot<u8>), Votes> = BTreeMap::new();
        for node in &self.nodes {
            for (&slot, state) in &node.slots {
                if let Some((ballot, proposal)) = &state.accepted {
                    let vote = votes
                        .entry((slot, *ballot))
                        .or_insert((0, proposal.clone()));
                    vote.0 += 1;
                }
            }
        }
        let mut voters: BTreeMap<(u64, Ballot<u8>), BTreeSet<u8>> = BTreeMap::new();
        for node in &self.nodes {
            for (&slot, state) in &node.slots {
                if let Some((ballot, _)) = &state.accepted {
                    voters.entry((slot, *ballot)).or_default().insert(node.me);
                }
            }
        }
        for ((slot, ballot), (_, proposal)) in votes {
            // In slot order, so the set a slot's acceptors come from is known when it counts.
            let Some(acceptors) = self.acceptors_of(slot) else {
                continue;
            };
            let count = voters[&(slot, ballot)].intersection(&acceptors).count();
            if count < acceptors.len() / 2 + 1 {
                continue;
            }
            match self.chosen.get(&slot) {
                Some(first) if *first != proposal => {
                    return Err(format!("slot {slot}: chose {first:?}, then {proposal:?}"))
                }
                _ => {
                    self.chosen.insert(slot, proposal);
                }
            }
        }
        Ok(())
    }

    /// The acceptors of `slot` by the chosen decisions before it (the truth, whatever the
    /// registers believe), if every one of them is known.
    fn acceptors_of(&self, slot: u64) -> Option<BTreeSet<u8>> {
        let mut set = self.initial.clone();
        for s in 1..slot {
            if let Some(next) = &self.chosen.get(&s)?.acceptors {
                set = next.clone();
            }
        }
        Some(set)
    }

    /// Every version decided anywhere was decided the same everywhere and whenever it was
    /// known, and is the value chosen. Returns every decision learnt so far.
    fn agreement(&mut self) -> Result<BTreeMap<u64, Proposal<u8, u32>>, String> {
        self.note_chosen()?;
        let seen = &mut self.learnt;
        for node in &self.nodes {
            for version in 1..=node.version + SLOT_WINDOW {
                let Some(decided) = node.decided(version) else {
                    continue;
                };
                match seen.get(&version) {
                    Some(other) if other != decided => {
                        return Err(format!("version {version}: {other:?} and {decided:?}"))
                    }
                    _ => {
                        seen.insert(version, decided.clone());
                    }
                }
                if let Some(chosen) = self.chosen.get(&version) {
                    if chosen != decided {
                        return Err(format!(
                            "version {version}: learnt {decided:?}, chose {chosen:?}"
                        ));
                    }
                }
            }
        }
        Ok(seen.clone())
    }
}

#[test]
fn a_lone_writer_wins_and_everyone_learns_the_value() {
    let mut cluster = Cluster::new(5);
    assert_eq!(cluster.cas(2, 0, 7), None);
    cluster.deliver_all();
    assert_eq!(cluster.outcomes, vec![(2, CasOutcome::Won { version: 1 })]);
    for node in &cluster.nodes {
        assert_eq!(node.current(), (1, &7));
    }
}

#[test]
fn of_two_writers_expecting_the_same_version_exactly_one_wins() {
    let mut cluster = Cluster::new(5);
    cluster.cas(0, 0, 10);
    cluster.cas(4, 0, 40);
    cluster.deliver_all();
    let won: Vec<_> = cluster
        .outcomes
        .iter()
        .filter(|(_, o)| matches!(o, CasOutcome::Won { .. }))
        .collect();
    assert_eq!(won.len(), 1, "{:?}", cluster.outcomes);
    let lost = cluster
        .outcomes
        .iter()
        .find(|(_, o)| matches!(o, CasOutcome::Lost { .. }));
    assert!(
        lost.is_some(),
        "the other learns it lost: {:?}",
        cluster.outcomes
    );
    cluster.agreement().expect("agreement");
}

#[test]
fn a_value_a_majority_accepted_is_the_one_a_later_writer_decides() {
    let mut cluster = Cluster::new(5);
    cluster.cas(0, 0, 10);
    // Node 0's prepare reaches 0, 1 and 2, who promise; its accept reaches them too, and
    // every answer to node 0 after that is lost: a is chosen, and nobody knows it.
    type Pick = dyn Fn(u8, u8, &CasMessage<u8, u32>) -> bool;
    let deliver_where = |cluster: &mut Cluster, pick: &Pick| {
        while let Some(i) = cluster.wire.iter().position(|(f, t, m)| pick(*f, *t, m)) {
            cluster.deliver(i);
        }
    };
    let phase_one = |f: u8, t: u8, m: &CasMessage<u8, u32>| match m {
        CasMessage::Prepare { .. } => f == 0 && t <= 2,
        CasMessage::Promise { .. } => t == 0 && f <= 2,
        _ => false,
    };
    deliver_where(&mut cluster, &phase_one);
    deliver_where(&mut cluster, &|f, t, m| {
        matches!(m, CasMessage::Accept { .. }) && f == 0 && t <= 2
    });
    cluster.wire.clear();
    assert!(cluster.outcomes.is_empty(), "node 0 has not heard back");
    cluster.agreement().expect("one value chosen");
    assert_eq!(cluster.chosen.get(&1).map(|p| p.value), Some(10));
    // Node 4 now writes for the same version through 2, 3 and 4.
    cluster.cas(4, 0, 40);
    deliver_where(&mut cluster, &|f, t, _| {
        (2..=4).contains(&f) && (2..=4).contains(&t)
    });
    cluster.agreement().expect("the chosen value stays chosen");
    assert_eq!(
        cluster.outcomes,
        vec![(
            4,
            CasOutcome::Lost {
                version: 1,
                winner: 0
            }
        )]
    );
    assert_eq!(cluster.nodes[4].current(), (1, &10));
}

#[test]
fn a_stale_version_is_refused_at_once_and_a_second_write_waits_its_turn() {
    let mut cluster = Cluster::new(3);
    cluster.cas(0, 0, 1);
    assert_eq!(cluster.cas(0, 0, 2), Some(CasOutcome::Busy));
    cluster.deliver_all();
    assert_eq!(
        cluster.cas(1, 0, 3),
        Some(CasOutcome::VersionMismatch { current: 1 })
    );
}

#[test]
fn a_minority_side_never_decides_and_times_out() {
    let mut cluster = Cluster::new(5);
    cluster.cas(0, 0, 1);
    // Only nodes 0 and 1 are reachable from node 0's side.
    while let Some(i) = cluster.wire.iter().position(|(f, t, _)| *f < 2 && *t < 2) {
        cluster.deliver(i);
    }
    assert!(cluster.outcomes.is_empty());
    assert_eq!(cluster.nodes[0].poll_timeout(), Some(Time(1_000)));
    assert_eq!(
        cluster.nodes[0].handle_timeout(Time(1_000)),
        (Vec::new(), Some(CasOutcome::NoMajority))
    );
    assert_eq!(cluster.nodes[0].current(), (0, &0));
}

/// A node cut off while the others decide more versions than its window holds catches up by
/// jumping to the latest decision when it next writes; nobody decides an old slot again.
#[test]
fn a_writer_far_behind_jumps_to_the_latest_version_and_decides_nothing_twice() {
    let mut cluster = Cluster::new(3);
    let versions = SLOT_WINDOW + 4;
    for v in 0..versions {
        cluster.cas(0, v, v as u32 + 1);
        // Node 2 hears nothing.
        while let Some(i) = cluster.wire.iter().position(|(f, t, _)| *f < 2 && *t < 2) {
            cluster.deliver(i);
        }
        cluster.wire.clear();
    }
    assert_eq!(cluster.nodes[0].current().0, versions);
    assert_eq!(cluster.nodes[2].current(), (0, &0));
    cluster.cas(2, 0, 99);
    cluster.deliver_all();
    assert_eq!(cluster.nodes[2].current(), (versions, &(versions as u32)));
    let (_, last) = cluster.outcomes.last().expect("node 2's write ended");
    assert_eq!(last, &CasOutcome::Superseded { current: versions });
    cluster.agreement().expect("no slot decided twice");
}

#[test]
fn messages_from_outside_the_members_are_ignored() {
    let mut register: Register = CasRegister::new(0, [0, 1, 2].into(), 0);
    let forged = CasMessage::Decided {
        slot: 1,
        proposal: Proposal {
            writer: 9,
            request: 1,
            value: 666,
            acceptors: None,
        },
        next: [0, 1, 2].into(),
    };
    let (sends, outcome) = register.handle(Time(0), 9, forged);
    assert!(sends.is_empty() && outcome.is_none());
    assert_eq!(register.current(), (0, &0));
}

#[test]
fn after_a_change_of_acceptors_only_the_new_majority_decides() {
    let mut cluster = Cluster::with(5, [0, 1, 2].into());
    cluster.cas(1, 0, 7);
    cluster.deliver_all();
    // Nodes 3 and 4 are not acceptors yet: the decision is not sent to them.
    assert_eq!(cluster.nodes[3].current(), (0, &0));
    assert_eq!(cluster.reconfigure(0, 1, &[0, 3, 4]), None);
    cluster.deliver_all();
    assert_eq!(
        cluster.outcomes.last(),
        Some(&(0, CasOutcome::Won { version: 2 }))
    );
    for node in &cluster.nodes {
        assert_eq!(node.current(), (2, &7), "the change keeps the value");
        assert_eq!(node.acceptors(), (3, [0, 3, 4].into()));
    }
    // 1 and 2, a majority of the old acceptors, are gone: the new majority writes alone.
    cluster.cas(3, 2, 8);
    cluster.deliver_among(&[0, 3, 4]);
    assert_eq!(
        cluster.outcomes.last(),
        Some(&(3, CasOutcome::Won { version: 3 }))
    );
    // The old acceptors 1 and 2 alone no longer decide anything...
    cluster.cas(1, 2, 9);
    cluster.deliver_among(&[1, 2]);
    assert_eq!(cluster.outcomes.last(), Some(&(1, CasOutcome::NoMajority)));
    // ...and with 0 of the new set they learn what was decided instead of forking it.
    cluster.cas(1, 2, 9);
    cluster.deliver_among(&[0, 1, 2]);
    let lost = CasOutcome::Lost {
        version: 3,
        winner: 3,
    };
    assert_eq!(cluster.outcomes.last(), Some(&(1, lost)));
    assert_eq!(cluster.nodes[1].current(), (3, &8));
    cluster.agreement().expect("agreement");
}

#[test]
fn a_learner_that_jumps_over_a_change_knows_the_new_acceptors() {
    let mut cluster = Cluster::with(5, [0, 1, 2].into());
    cluster.reconfigure(0, 0, &[2, 3, 4]);
    cluster.deliver_among(&[0, 2, 3, 4]);
    assert_eq!(cluster.nodes[1].acceptors(), (1, [0, 1, 2].into()));
    cluster.cas(3, 1, 5);
    cluster.deliver_among(&[2, 3, 4]);
    // Node 1 missed both; the decision of version 2 it now hears names who decides next.
    let decided = cluster.nodes[3].decided(2).cloned().expect("decided");
    let next = [2, 3, 4].into();
    let (sends, _) = cluster.nodes[1].handle(
        cluster.now,
        3,
        CasMessage::Decided {
            slot: 2,
            proposal: decided,
            next,
        },
    );
    assert!(sends.is_empty());
    assert_eq!(cluster.nodes[1].current(), (2, &5));
    assert_eq!(cluster.nodes[1].acceptors(), (3, [2, 3, 4].into()));
}

/// A writer left behind before a change asks about a slot the acceptors still remember but
/// whose following acceptors they no longer keep: they answer with the latest decision, so
/// the writer learns the current acceptors, not an empty set.
#[test]
fn a_writer_behind_a_change_learns_the_current_acceptors_from_an_old_slot() {
    let mut cluster = Cluster::with(4, [0, 1, 2].into());
    let up = [0, 1, 3];
    cluster.cas(0, 0, 5);
    cluster.deliver_among(&up);
    cluster.reconfigure(0, 1, &up);
    cluster.deliver_among(&up);
    cluster.cas(0, 2, 6);
    cluster.deliver_among(&up);
    assert_eq!(cluster.nodes[2].current(), (0, &0));
    cluster.cas(2, 0, 9);
    cluster.deliver_among(&[0, 1, 2, 3]);
    assert_eq!(cluster.nodes[2].current(), (3, &6));
    assert_eq!(cluster.nodes[2].acceptors(), (4, [0, 1, 3].into()));
    cluster.agreement().expect("agreement");
}

#[test]
fn an_empty_set_of_acceptors_is_refused() {
    let mut cluster = Cluster::new(3);
    assert_eq!(cluster.reconfigure(0, 0, &[]), Some(CasOutcome::NoMajority));
    assert!(cluster.wire.is_empty());
}

/// Writers and changes of acceptors on six nodes (three acceptors at first), with the
/// network delivering in any order, dropping and duplicating, and nodes reading seats (the
/// latest decision a node wrote down, newest or late), and with `restarts`, nodes restarting
/// as new lives: no slot is ever chosen twice (counted against the acceptors the chosen
/// chain gives that slot), nodes never learn different values for a version, and at most one
/// writer wins each.
fn race_writes_and_changes(steps: Vec<(u8, u16, u8)>, restarts: bool) -> Result<(), TestCaseError> {
    let mut cluster = Cluster::with(6, [0, 1, 2].into());
    let mut value = 0;
    for (kind, pick, node) in steps {
        let node = node % 6;
        let expected = cluster.nodes[node as usize].current().0;
        match kind {
            0 => {
                value += 1;
                cluster.cas(node, expected, value);
            }
            1 => {
                // A set of one to six of the nodes' current lives, from the pick's bits.
                let set: Vec<u8> = (0..6)
                    .filter(|i| pick & (1 << i) != 0)
                    .map(|i| cluster.life(i))
                    .collect();
                let set = if set.is_empty() {
                    vec![cluster.life(node)]
                } else {
                    set
                };
                cluster.reconfigure(node, expected, &set);
            }
            2 if !cluster.wire.is_empty() => {
                let i = pick as usize % cluster.wire.len();
                cluster.wire.remove(i); // lost
            }
            3 if !cluster.wire.is_empty() => {
                let i = pick as usize % cluster.wire.len();
                let copy = cluster.wire[i].clone();
                cluster.wire.push(copy); // duplicated
            }
            4..=28 if !cluster.wire.is_empty() => {
                let i = pick as usize % cluster.wire.len();
                cluster.deliver(i);
            }
            29 => cluster.seat((pick % 6) as u8, node, usize::from(pick >> 3)),
            30 if restarts => cluster.restart(node, usize::from(pick)),
            _ => {
                // Time passes without jumping to deadlines: retries fire, writes go on.
                cluster.now = cluster.now.plus_ms(u64::from(pick % 256));
                for i in 0..cluster.nodes.len() {
                    let me = cluster.nodes[i].me;
                    let (sends, outcome) = cluster.nodes[i].handle_timeout(cluster.now);
                    cluster.queue(me, sends);
                    cluster.outcomes.extend(outcome.map(|o| (me, o)));
                }
            }
        }
        cluster.agreement().map_err(TestCaseError::fail)?;
    }
    cluster.deliver_all();
    let decided = cluster.agreement().map_err(TestCaseError::fail)?;
    let mut winners: BTreeMap<u64, u8> = BTreeMap::new();
    for (node, outcome) in &cluster.outcomes {
        if let CasOutcome::Won { version } = outcome {
            prop_assert!(
                winners.insert(*version, *node).is_none(),
                "two winners of {}",
                version
            );
            prop_assert_eq!(decided.get(version).map(|p| p.writer), Some(*node));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(proptest::test_runner::Config::with_cases(512))]
    #[test]
    fn writes_racing_changes_of_acceptors_decide_one_value_per_version(
        steps in proptest::collection::vec((0..32u8, any::<u16>(), 0..6u8), 1..400),
    ) {
        race_writes_and_changes(steps, false)?;
    }

    /// The same race with nodes restarting as new lives now and then: a new life answers
    /// prepares and accepts sent to its earlier life, as itself, with nothing promised.
    #[test]
    fn writes_racing_changes_and_restarts_decide_one_value_per_version(
        steps in proptest::collection::vec((0..32u8, any::<u16>(), 0..6u8), 1..400),
    ) {
        race_writes_and_changes(steps, true)?;
    }
}

proptest! {
    /// Writers on five nodes propose for whatever version they last saw, while the network
    /// delivers in any order, drops and duplicates: no two nodes ever learn different values
    /// for one version, at most one writer is told it won each version, and its value is the
    /// one decided.
    #[test]
    fn any_schedule_decides_one_value_per_version(
        steps in proptest::collection::vec((0..4u8, any::<u16>(), 0..5u8), 1..300),
    ) {
        let mut cluster = Cluster::new(5);
        let mut value = 0;
        for (kind, pick, node) in steps {
            match kind {
                0 => {
                    value += 1;
                    let expected = cluster.nodes[node as usize].current().0;
                    cluster.cas(node, expected, value);
                }
                1 if !cluster.wire.is_empty() => {
                    let i = pick as usize % cluster.wire.len();
                    cluster.wire.remove(i); // lost
                }
                2 if !cluster.wire.is_empty() => {
                    let i = pick as usize % cluster.wire.len();
                    let copy = cluster.wire[i].clone();
                    cluster.wire.push(copy); // duplicated
                }
                _ if !cluster.wire.is_empty() => {
                    let i = pick as usize % cluster.wire.len();
                    cluster.deliver(i);
                }
                _ => {
                    cluster.now = cluster.now.plus_ms(u64::from(pick % 64));
                    cluster.tick();
                }
            }
            cluster.agreement().map_err(TestCaseError::fail)?;
        }
        cluster.deliver_all();
        let decided = cluster.agreement().map_err(TestCaseError::fail)?.clone();
        let mut winners: BTreeMap<u64, u8> = BTreeMap::new();
        for (node, outcome) in &cluster.outcomes {
            if let CasOutcome::Won { version } = outcome {
                prop_assert!(winners.insert(*version, *node).is_none(), "two winners of {}", version);
                prop_assert_eq!(decided.get(version).map(|p| p.writer), Some(*node));
            }
        }
    }
}

/// Random schedules from a seed, for the fault tests below (no proptest shrinking needed).
fn schedule(seed: u64) -> Vec<(u8, u16, u8)> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..400)
        .map(|_| {
            let r = next();
            ((r % 32) as u8, (r >> 8) as u16, ((r >> 24) % 6) as u8)
        })
        .collect()
}

/// How many of `seeds` random schedules (with restarts, if `restarts`) break agreement with
/// `fault` switched on.
fn broken_schedules(fault: Fault, seeds: u64, restarts: bool) -> usize {
    FAULT.with(|f| f.set(fault));
    let broken = (0..seeds)
        .filter(|&seed| {
            let run =
                std::panic::catch_unwind(|| race_writes_and_changes(schedule(seed), restarts));
            !matches!(run, Ok(Ok(())))
        })
        .count();
    FAULT.with(|f| f.set(Fault::None));
    broken
}

#[test]
fn the_race_check_passes_the_rule_and_catches_it_broken() {
    assert_eq!(broken_schedules(Fault::None, 200, false), 0);
    assert!(broken_schedules(Fault::IgnoreNext, 300, false) > 0);
    assert!(broken_schedules(Fault::IgnoreNext, 200, false) > 0);
    assert!(broken_schedules(Fault::OldSeatsTeach, 300, false) > 0);
}

/// Restarts as new lives keep one value per version; a restart that comes back as the life
/// it was, with its promises forgotten, lets two values be chosen for one version.
#[test]
fn the_race_check_passes_restarts_as_new_lives_and_catches_a_life_reused() {
    assert_eq!(broken_schedules(Fault::None, 300, true), 0);
    let broken = broken_schedules(Fault::RestartKeepsLife, 300, true);
    assert!(broken > 0, "{broken} of 300");
}

/// A decision older than the version a node jumped to says nothing about the acceptors after
/// that version: the acceptors may have moved away (5 → B) and back (8 → A) in between. Taken
/// up, it made a writer send slot 11 to B, which decided it while A could decide it too.
#[test]
fn an_old_decision_arriving_after_a_jump_changes_nothing() {
    let a: BTreeSet<u8> = [0, 1, 2].into();
    let b: BTreeSet<u8> = [3, 4, 5].into();
    let mut register: Register = CasRegister::new(9, a.clone(), 0);
    let decision =
        |slot, writer, acceptors: Option<BTreeSet<u8>>, next: &BTreeSet<u8>| CasMessage::Decided {
            slot,
            proposal: Proposal {
                writer,
                request: slot,
                value: slot as u32,
                acceptors,
            },
            next: next.clone(),
        };
    register.handle(Time(0), 0, decision(10, 0, None, &a));
    assert_eq!(register.current(), (10, &10));
    register.handle(Time(0), 1, decision(5, 1, Some(b.clone()), &b));
    assert_eq!(register.current(), (10, &10));
    assert_eq!(register.acceptors().1, a, "slot 11 is still A's");
    let sends = register
        .compare_and_set(Time(0), 10, 99, Time(100))
        .unwrap();
    assert!(sends.iter().all(|(to, _)| a.contains(to)), "{sends:?}");
}

/// A slot at the end of the counter's range, from anyone, is refused before any arithmetic
/// on it: the next version would not exist.
#[test]
fn a_slot_at_the_end_of_the_range_is_refused_without_a_panic() {
    let mut register: Register = CasRegister::new(0, [0, 1, 2].into(), 0);
    let ballot = Ballot {
        round: 1,
        proposer: 1,
    };
    let prepare = CasMessage::Prepare {
        slot: u64::MAX,
        ballot,
    };
    assert!(register.handle(Time(0), 1, prepare).0.is_empty());
    let decided = CasMessage::Decided {
        slot: u64::MAX,
        proposal: Proposal {
            writer: 1,
            request: 1,
            value: 1,
            acceptors: None,
        },
        next: [0, 1, 2].into(),
    };
    register.handle(Time(0), 1, decided);
    assert_eq!(register.current(), (0, &0));
}

/// A writer that is not an acceptor (a life moved out of the set still writes) tells the
/// acceptors its decision, and they take it: each accepted its proposal in its ballot.
#[test]
fn a_decision_by_a_writer_outside_the_set_is_learnt_by_the_acceptors() {
    let mut cluster = Cluster::with(4, [0, 1, 2].into());
    cluster.cas(3, 0, 7);
    cluster.deliver_all();
    assert_eq!(
        cluster.outcomes.last(),
        Some(&(3, CasOutcome::Won { version: 1 }))
    );
    for node in &cluster.nodes {
        assert_eq!(node.current(), (1, &7));
    }
}
