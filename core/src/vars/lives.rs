//! Which variables life answers for a member: what [`Vars::life_of`] and the node's
//! `alive_lives` name.
//!
//! A node's variables life is the membership generation it started with, and stays so while
//! the process runs: a node declared failed renews its membership identity (a higher
//! generation) but keeps its promises in memory, as the same life. So a member's membership
//! generation names its life except after a renewal, and only the renewed node knows it
//! renewed: it tells [`VarsMessage::Renewed`] (its life, its new generation) to every member
//! it sees alive when it renews and to every member that comes up afterwards. A member then
//! maps that generation to that life.
//!
//! Why this and not the lives heard in variables messages, nor node metadata: a member this
//! node never exchanged a variables message with (one that just joined) still has the right
//! life, its membership generation, with no message at all, so a mass join costs nothing;
//! and neither a heard life nor metadata tells a renewal from a restart (both show a
//! generation above the life last known, and a restart's metadata can lose to its earlier
//! life's higher version), where the renewal message names the generations it covers. What
//! is left: from the moment a node sees a member's renewed identity until that member's
//! message arrives (a round trip at most after the member sees the node again), it names
//! the renewed generation.
//!
//! A renewal follows a partition, just when connections drop and one-way cuts heal late, so
//! one message may well be lost: and a member that missed it would name the renewed
//! generation for good. So the members told are told again [`RETELLS`] times, at gaps that
//! double from [`RETELL_FIRST`] (1, 2, 4, 8 and 16 s: the last word goes 31 s after the
//! renewal), a few bytes to each. A member that comes up afterwards is told at once, and
//! again with the rest.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::{encode, Life, Vars, VarsMessage};
use crate::time::Instant;
use crate::NodeId;

/// How long after a renewal its members are told again the first time.
pub const RETELL_FIRST: Duration = Duration::from_secs(1);
/// How many times the members told of a renewal are told again, each gap twice the last.
pub const RETELLS: u32 = 5;

/// What members said of their renewals.
#[derive(Debug, Default)]
pub(super) struct Lives {
    /// By node: its life, and the highest membership generation it said that life goes by.
    renewed: BTreeMap<NodeId, (u64, u64)>,
    /// Bumped when `renewed` changes, so a driver republishes only then.
    version: u64,
    /// This node's own renewal, told again (see the module docs).
    retell: Retell,
}

/// The members told of this node's renewal, and when they are told again.
#[derive(Debug, Default)]
struct Retell {
    told: BTreeSet<NodeId>,
    next: Option<Instant>,
    /// Words left after `next`.
    left: u32,
}

impl Vars {
    /// The variables life that answers for `node` at membership generation `generation`: the
    /// life it said it keeps under that generation, else the generation itself (see the
    /// module docs).
    pub fn life_of(&self, node: NodeId, generation: u64) -> Life {
        let told = self.lives.renewed.get(&node);
        let covered = told.filter(|(life, identity)| (*life..=*identity).contains(&generation));
        Life {
            node,
            generation: covered.map_or(generation, |(life, _)| *life),
        }
    }

    /// Changes whenever [`Self::life_of`] may answer differently for a generation.
    pub fn lives_version(&self) -> u64 {
        self.lives.version
    }

    /// Membership renewed this node's identity to generation `identity` at `now`: tells the
    /// members `alive` that this life goes by it, now and again later.
    pub fn renewed(
        &mut self,
        now: Instant,
        identity: u64,
        alive: impl IntoIterator<Item = NodeId>,
    ) {
        if identity <= self.identity {
            return;
        }
        self.identity = identity;
        self.lives.retell = Retell {
            next: Some(now + RETELL_FIRST),
            left: RETELLS - 1,
            ..Retell::default()
        };
        for node in alive {
            self.tell_renewal(node);
        }
    }

    /// When the members told of this node's renewal are next told again.
    pub(super) fn retell_due(&self) -> Option<Instant> {
        self.lives.retell.next
    }

    /// Tells the renewal again if that is due at `now`.
    pub(super) fn retell(&mut self, now: Instant) {
        let retell = &mut self.lives.retell;
        if retell.next.is_none_or(|at| at > now) {
            return;
        }
        let gap = RETELL_FIRST * 2u32.pow(RETELLS - retell.left);
        retell.next = (retell.left > 0).then(|| now + gap);
        retell.left = retell.left.saturating_sub(1);
        let told: Vec<NodeId> = retell.told.iter().copied().collect();
        for node in told {
            self.tell_renewal(node);
        }
    }

    /// Membership's generation of this node as the variables machine last heard it.
    pub fn identity(&self) -> u64 {
        self.identity
    }

    /// `node` came up: if this node's identity was renewed, it learns which life answers for
    /// it (it may have joined, or been cut off, after the renewal).
    pub(super) fn tell_renewal(&mut self, node: NodeId) {
        if self.identity == self.me.generation || node == self.me.node {
            return;
        }
        let message = VarsMessage::Renewed {
            from: self.me,
            identity: self.identity,
        };
        self.pending.push((node, encode(&message)));
        self.lives.retell.told.insert(node);
    }

    /// `life` (on node `from`) says it goes by membership generation `identity`. Counted
    /// foreign if it names another node or a generation below its own life.
    pub(super) fn heard_renewal(&mut self, from: NodeId, life: Life, identity: u64) {
        if life.node != from || identity < life.generation {
            self.stats.foreign_messages += 1;
            return;
        }
        let known = self.lives.renewed.get(&from);
        if known.is_some_and(|(_, highest)| *highest >= identity) {
            return;
        }
        self.lives.renewed.insert(from, (life.generation, identity));
        self.lives.version += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vars::tests::{id, life};

    fn at(generation: u64) -> Life {
        Life {
            node: id(2),
            generation,
        }
    }

    /// Life 2@1 renewed to generation 3: generations 1 to 3 are that life; a later one (a
    /// restart, or a renewal not told yet) is its own; an older message, or one naming another
    /// node or a generation below its life, changes nothing.
    #[test]
    fn a_told_renewal_covers_the_generations_up_to_it_and_nothing_else() {
        let mut vars = Vars::new(life(1));
        assert_eq!(vars.life_of(id(2), 3), at(3));
        vars.heard_renewal(id(2), at(1), 3);
        assert_eq!(vars.life_of(id(2), 3), at(1));
        assert_eq!(vars.life_of(id(2), 1), at(1));
        assert_eq!(vars.life_of(id(2), 4), at(4));
        let version = vars.lives_version();
        vars.heard_renewal(id(2), at(1), 2);
        vars.heard_renewal(id(3), at(1), 5);
        vars.heard_renewal(id(2), at(6), 5);
        assert_eq!(vars.life_of(id(2), 3), at(1));
        assert_eq!(vars.lives_version(), version);
        assert_eq!(vars.stats().foreign_messages, 2);
    }

    /// A renewed node tells the members alive at once, and each member that comes up later;
    /// one never renewed tells nobody.
    #[test]
    fn only_a_renewed_node_tells_and_it_tells_each_member_that_comes_up() {
        let mut vars = Vars::new(life(1));
        vars.member_up(Instant::ZERO, id(2), 1);
        assert!(vars.take_messages().is_empty());
        vars.renewed(Instant::ZERO, 2, [id(2), id(3)]);
        let told = vars.take_messages();
        assert_eq!(
            told.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
            [id(2), id(3)]
        );
        let message = postcard::from_bytes(&told[0].1);
        let renewed = VarsMessage::Renewed {
            from: life(1),
            identity: 2,
        };
        assert!(matches!(message, Ok(crate::CoreMessage::Vars(m)) if m == renewed));
        vars.member_up(Instant::ZERO, id(4), 1);
        assert_eq!(vars.take_messages().len(), 1);
        assert_eq!(vars.identity(), 2);
    }

    /// The members told, at the renewal and as they came up, are told again 1, 3, 7, 15 and
    /// 31 s after it, and then no more; a later renewal starts again.
    #[test]
    fn a_renewal_is_told_again_at_doubling_gaps_then_no_more() {
        let mut vars = Vars::new(life(1));
        let start = Instant::ZERO + Duration::from_secs(10);
        vars.renewed(start, 2, [id(2)]);
        vars.member_up(Instant::ZERO, id(3), 1);
        assert_eq!(vars.take_messages().len(), 2);
        let mut told = Vec::new();
        while let Some(at) = vars.poll_timeout() {
            vars.handle_timeout(at, &mut crate::vars::Outgoing::new());
            told.push(((at - start).as_secs(), vars.take_messages().len()));
        }
        assert_eq!(told, [(1, 2), (3, 2), (7, 2), (15, 2), (31, 2)]);
        vars.renewed(start + Duration::from_secs(60), 3, []);
        assert_eq!(
            vars.poll_timeout(),
            Some(start + Duration::from_secs(61)),
            "a later renewal has words of its own"
        );
    }
}
