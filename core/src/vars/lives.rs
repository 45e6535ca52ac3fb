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

use std::collections::BTreeMap;

use super::{encode, Life, Vars, VarsMessage};
use crate::NodeId;

/// What members said of their renewals.
#[derive(Debug, Default)]
pub(super) struct Lives {
    /// By node: its life, and the highest membership generation it said that life goes by.
    renewed: BTreeMap<NodeId, (u64, u64)>,
    /// Bumped when `renewed` changes, so a driver republishes only then.
    version: u64,
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

    /// Membership renewed this node's identity to generation `identity`: tells the members
    /// `alive` that this life goes by it.
    pub fn renewed(&mut self, identity: u64, alive: impl IntoIterator<Item = NodeId>) {
        if identity <= self.identity {
            return;
        }
        self.identity = identity;
        for node in alive {
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
        vars.member_up(id(2), 1);
        assert!(vars.take_messages().is_empty());
        vars.renewed(2, [id(2), id(3)]);
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
        vars.member_up(id(4), 1);
        assert_eq!(vars.take_messages().len(), 1);
        assert_eq!(vars.identity(), 2);
    }
}
