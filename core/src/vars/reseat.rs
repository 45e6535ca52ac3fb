//! Re-seating: moving a `cas` or `coordinated` variable off acceptor lives that are gone, on
//! its own, so a rolling restart of a majority of its acceptor nodes does not leave it
//! unwritable (each restart makes a new life, which never stands in for the old one).
//!
//! # The rule ([`reseat_to`])
//!
//! A life of the current set is *gone* when a later life of its node said hello (below), or
//! membership shows its node left, or failed for at least the grace period; a later life is
//! proof the old one is over, so it does not wait. Each gone life is replaced by the later
//! life of its node if that node is alive, else by an alive member that has no life in the
//! set and whose life this node heard from (lowest id first), else it stays: the set keeps
//! its size, so one failure never leaves a smaller set that the next restart can no longer
//! decide. Only the lowest live acceptor proposes, and only while a majority of the current
//! set is alive (it could not decide otherwise).
//!
//! # Lives come from the variables machines, not from membership
//!
//! Membership's generation of a node is not its variables' life: a node declared failed
//! renews its membership identity (a higher generation) and keeps running, with its promises,
//! as the same life. Taking that generation for a new life would move the variable to a life
//! nobody answers for. So a node's life is what its variables machine says: every message it
//! sends carries it, and a new life that finds a declaration naming an earlier life of its
//! node says hello to that variable's acceptors (again every check, until it holds the
//! variable). Membership tells only whether a node is alive, failed since when, or left.
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

use super::{encode, Kind, Life, Outgoing, Vars, VarsMessage};
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

/// What this node knows of another, as the rule reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seen {
    /// Membership's generation of it (at least that of its variables' life).
    pub generation: u64,
    /// Membership's state of that generation.
    pub state: MemberState,
    /// Since when, on the driver's clock.
    pub since: Instant,
    /// The latest generation of its variables' life this node heard from it, if any.
    pub life: Option<u64>,
}

/// Membership's view by node (without lives: [`Vars::reseat`] adds those it heard).
pub fn seen(members: impl Iterator<Item = MemberView>) -> BTreeMap<NodeId, Seen> {
    members
        .map(|m| {
            let seen = Seen {
                generation: m.generation,
                state: m.state,
                since: m.since,
                life: None,
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
    if let Some(generation) = seen.life.filter(|g| *g > life.generation) {
        let later = Life {
            node: life.node,
            generation,
        };
        return Standing::Gone((seen.state == MemberState::Alive).then_some(later));
    }
    // Alive at a later generation without a hello: a renewal of this life, or a restart not
    // heard of yet (counted alive, the move waits for the hello).
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
        .filter_map(|(node, seen)| {
            let generation = seen.life?;
            Some(Life {
                node: *node,
                generation,
            })
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
    /// The latest generation of each node's variables' life heard from it.
    pub lives: BTreeMap<NodeId, u64>,
    /// Variables not held here whose acceptors name an earlier life of this node: who to say
    /// hello to, by name.
    pub hellos: BTreeMap<String, BTreeSet<Life>>,
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
        let hellos = !self.reseating.hellos.is_empty();
        (registers || hellos).then(|| self.reseating.next.unwrap_or(Instant::ZERO))
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
        self.say_hello(out);
        let members = self.with_lives(members);
        let moves: Vec<(String, BTreeSet<Life>)> = self
            .variables
            .iter()
            .filter_map(|(name, variable)| {
                let Kind::Register { register, request } = &variable.kind else {
                    return None;
                };
                let current = register.acceptors().1;
                let to = reseat_to(self.me, &current, &members, now, config.grace);
                to.filter(|_| request.is_none())
                    .map(|to| (name.clone(), to))
            })
            .collect();
        for (name, to) in moves {
            if let Ok(request) = self.move_acceptors(now, &name, to, config.timeout, out) {
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

impl Vars {
    /// `members` with the lives heard from each.
    fn with_lives(&self, members: &BTreeMap<NodeId, Seen>) -> BTreeMap<NodeId, Seen> {
        let mut members = members.clone();
        for (node, seen) in &mut members {
            seen.life = self.reseating.lives.get(node).copied();
        }
        members
    }

    /// Notes the life a message from `node` says it comes from, if it is that node's.
    pub(super) fn heard(&mut self, node: NodeId, message: &VarsMessage) {
        let life = message.sender();
        if life.node != node {
            return;
        }
        let heard = self.reseating.lives.entry(node).or_default();
        *heard = (*heard).max(life.generation);
    }

    /// A hello from `life` (on node `from`): counted foreign if it names another node.
    pub(super) fn hello(&mut self, from: NodeId, life: Life) {
        if life.node != from {
            self.stats.foreign_messages += 1;
        }
    }

    /// Variable `name`'s declaration names `acceptors`: if this life does not hold it and
    /// they include an earlier life of this node, says hello to them now and at every check.
    pub(super) fn announce(&mut self, name: &str, acceptors: &BTreeSet<Life>) {
        let me = self.me;
        let earlier = acceptors
            .iter()
            .any(|l| l.node == me.node && l.generation < me.generation);
        if !earlier || self.variables.contains_key(name) || self.reseating.config.is_none() {
            self.reseating.hellos.remove(name);
            return;
        }
        self.pending.extend(hellos(me, acceptors));
        self.reseating
            .hellos
            .insert(name.to_owned(), acceptors.clone());
    }

    /// Says hello again for every variable still not held here.
    fn say_hello(&mut self, out: &mut Outgoing) {
        let variables = &self.variables;
        self.reseating
            .hellos
            .retain(|name, _| !variables.contains_key(name));
        let to: BTreeSet<Life> = self.reseating.hellos.values().flatten().copied().collect();
        out.extend(hellos(self.me, &to));
    }
}

/// Hellos from `me` to the other nodes of `to`.
fn hellos(me: Life, to: &BTreeSet<Life>) -> Outgoing {
    let hello = encode(&VarsMessage::Hello { from: me });
    let nodes: BTreeSet<NodeId> = to
        .iter()
        .map(|l| l.node)
        .filter(|n| *n != me.node)
        .collect();
    nodes.into_iter().map(|n| (n, hello.clone())).collect()
}
