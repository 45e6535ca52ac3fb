//! Re-seating: moving a `cas` or `coordinated` variable off acceptor lives that are gone, on
//! its own, so a rolling restart of a majority of its acceptor nodes does not leave it
//! unwritable (each restart makes a new life, which never stands in for the old one).
//!
//! # The rule ([`reseat_to`])
//!
//! A life of the current set is *gone* when membership shows a later life of its node, shows
//! it left, or shows it failed for at least the grace period; a later life is proof the old
//! one is over, so it does not wait. Each gone life is replaced by the later life of its node
//! if that one is alive, else by an alive member that has no life in the set (lowest id
//! first), else it stays: the set keeps its size, so one failure never leaves a smaller set
//! that the next restart can no longer decide. Only the lowest live acceptor proposes, and
//! only while a majority of the current set is alive (it could not decide otherwise).
//!
//! # Why it does not churn
//!
//! Safety is the register's (a move is a decided version: see
//! [`reconfigure`](super::reconfigure)); the rule only keeps moves rare. A side without a
//! majority of the set never proposes, so of a partition's two sides at most one moves; a
//! failure must last the grace period before it counts, so a suspicion refuted in time moves
//! nothing; one proposer per set means live acceptors do not race each other's moves; and a
//! life that comes back after being replaced is not moved back in.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::{Kind, Life, Outgoing, Vars};
use crate::membership::{MemberState, MemberView};
use crate::time::Instant;
use crate::NodeId;

/// When and how a node re-seats the variables it is the proposer for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReseatConfig {
    /// How long a life must stay failed before it is replaced (one that left, or whose node
    /// came back as a later life, is replaced at once).
    pub grace: Duration,
    /// How often the rule is checked.
    pub every: Duration,
    /// How long a move waits for a majority of the current acceptors.
    pub timeout: Duration,
}

impl Default for ReseatConfig {
    /// A grace well above the development profile's failure detection (a second or two), so a
    /// slow node declared failed and back soon is not replaced.
    fn default() -> Self {
        Self {
            grace: Duration::from_secs(10),
            every: Duration::from_secs(1),
            timeout: Duration::from_secs(2),
        }
    }
}

/// What membership shows of one node, as the rule reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seen {
    /// Its latest life membership knows.
    pub generation: u64,
    /// That life's state.
    pub state: MemberState,
    /// Since when, on the driver's clock.
    pub since: Instant,
}

/// Membership's view by node, for [`reseat_to`].
pub fn seen(members: impl Iterator<Item = MemberView>) -> BTreeMap<NodeId, Seen> {
    members
        .map(|m| {
            let seen = Seen {
                generation: m.generation,
                state: m.state,
                since: m.since,
            };
            (m.id, seen)
        })
        .collect()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Standing {
    Alive,
    /// Over; with the later life of its node, if that one is alive.
    Gone(Option<Life>),
    /// Not known alive, not gone yet (failed within the grace, or not in the view).
    Waiting,
}

fn standing(
    life: Life,
    me: Life,
    members: &BTreeMap<NodeId, Seen>,
    now: Instant,
    grace: Duration,
) -> Standing {
    if life == me {
        return Standing::Alive;
    }
    if life.node == me.node && life.generation < me.generation {
        return Standing::Gone(Some(me));
    }
    let Some(seen) = members.get(&life.node) else {
        return Standing::Waiting;
    };
    if seen.generation > life.generation {
        let later = Life {
            node: life.node,
            generation: seen.generation,
        };
        return Standing::Gone((seen.state == MemberState::Alive).then_some(later));
    }
    match seen.state {
        _ if seen.generation < life.generation => Standing::Waiting,
        MemberState::Alive => Standing::Alive,
        MemberState::Left => Standing::Gone(None),
        MemberState::Failed if now.saturating_since(seen.since) >= grace => Standing::Gone(None),
        MemberState::Failed => Standing::Waiting,
    }
}

/// The acceptors `me` should move a variable decided by `current` to, if `me` is its
/// proposer and a gone life has a replacement (see the module docs). `members` is
/// membership's view without `me`.
pub fn reseat_to(
    me: Life,
    current: &BTreeSet<Life>,
    members: &BTreeMap<NodeId, Seen>,
    now: Instant,
    grace: Duration,
) -> Option<BTreeSet<Life>> {
    let standings: BTreeMap<Life, Standing> = current
        .iter()
        .map(|l| (*l, standing(*l, me, members, now, grace)))
        .collect();
    let alive: Vec<Life> = standings
        .iter()
        .filter(|(_, s)| **s == Standing::Alive)
        .map(|(l, _)| *l)
        .collect();
    if alive.len() * 2 <= current.len() || alive.first() != Some(&me) {
        return None;
    }
    let taken: BTreeSet<NodeId> = current.iter().map(|l| l.node).collect();
    let mut spares = members
        .iter()
        .filter(|(node, seen)| seen.state == MemberState::Alive && !taken.contains(node))
        .map(|(node, seen)| Life {
            node: *node,
            generation: seen.generation,
        });
    let next: BTreeSet<Life> = standings
        .into_iter()
        .map(|(life, standing)| match standing {
            Standing::Gone(Some(later)) => later,
            Standing::Gone(None) => spares.next().unwrap_or(life),
            _ => life,
        })
        .collect();
    (next != *current).then_some(next)
}

/// Re-seating's state in the variables machine.
#[derive(Debug, Default)]
pub(super) struct Reseating {
    /// Off when `None`.
    pub config: Option<ReseatConfig>,
    /// When the rule is next checked; `None`: at the first chance.
    pub next: Option<Instant>,
    /// Our moves under way, by request number.
    pub moves: BTreeSet<u64>,
}

impl Vars {
    /// Turns re-seating on with `config`, or off with `None` (on by default).
    pub fn set_reseat(&mut self, config: Option<ReseatConfig>) {
        self.reseating.config = config;
        self.reseating.next = None;
    }

    /// When re-seating is next due, if on and a register is held here.
    pub(super) fn reseat_due(&self) -> Option<Instant> {
        self.reseating.config?;
        let registers = self.variables.values().any(|v| v.register().is_some());
        registers.then(|| self.reseating.next.unwrap_or(Instant::ZERO))
    }

    /// Whether [`Self::reseat`] has something to check at `now` (the caller builds the
    /// membership view only then).
    pub fn reseat_now(&self, now: Instant) -> bool {
        self.reseat_due().is_some_and(|at| at <= now)
    }

    /// Starts a move of every variable this life is the proposer for and whose acceptors
    /// include a gone life with a replacement (see the module docs), given membership's view
    /// `members`; one with a write of ours under way waits for the next check.
    pub fn reseat(&mut self, now: Instant, members: &BTreeMap<NodeId, Seen>, out: &mut Outgoing) {
        let Some(config) = self.reseating.config else {
            return;
        };
        self.reseating.next = Some(now + config.every);
        let moves: Vec<(String, BTreeSet<Life>)> = self
            .variables
            .iter()
            .filter_map(|(name, variable)| {
                let Kind::Register { register, request } = &variable.kind else {
                    return None;
                };
                let current = register.acceptors().1;
                let to = reseat_to(self.me, &current, members, now, config.grace);
                to.filter(|_| request.is_none())
                    .map(|to| (name.clone(), to))
            })
            .collect();
        for (name, to) in moves {
            if let Ok(request) = self.change_acceptors(now, &name, to, config.timeout, out) {
                self.reseating.moves.insert(request);
            }
        }
    }

    /// A write of ours ended: counts it if it was a move of ours that won.
    pub(super) fn reseat_ended(&mut self, request: u64, won: bool) {
        if self.reseating.moves.remove(&request) && won {
            self.stats.reseated += 1;
        }
    }
}
