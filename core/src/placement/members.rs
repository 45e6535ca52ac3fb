//! The members placement counts and chooses among, in one table: the *agreed* membership
//! (the registrars a quorum is counted among) and the *alive* members (the candidates besides
//! ourselves).
//!
//! The two sets hold nearly the same nodes, and every node holds one entry per member (O(N²)
//! in a simulation of N nodes), so they share one map: one key and one generation per member,
//! and a flag for each set. One generation serves both: a member joins the alive set only
//! together with the agreed membership, at the same generation ([`Placement::view_changed`]
//! agrees to a live member before it adds it), and leaves the alive set without changing it.
//!
//! [`Placement::view_changed`]: super::Placement::view_changed

use crate::packed_map::PackedMap;
use crate::NodeId;

/// One member's entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    /// The latest generation seen of it.
    generation: u64,
    /// In the agreed membership.
    agreed: bool,
    /// Alive in our view (a candidate).
    alive: bool,
}

/// The agreed membership and the live members, by node id (see the module's documentation).
#[derive(Debug, Default)]
pub(super) struct Members {
    entries: PackedMap<NodeId, Entry>,
    /// How many entries are agreed, for the quorum in O(1).
    agreed: usize,
}

impl Members {
    /// A table whose agreed membership is `node`, in life `generation`, alone.
    pub(super) fn with_agreed(node: NodeId, generation: u64) -> Self {
        let mut members = Self::default();
        members.agree(node, generation);
        members
    }

    /// `node` is in the agreed membership, in life `generation`; the generation it was agreed
    /// at before, if it was.
    pub(super) fn agree(&mut self, node: NodeId, generation: u64) -> Option<u64> {
        let before = self.agree_and(node, generation, false);
        self.entries.settle();
        before
    }

    /// [`Self::agree`] and [`Self::set_alive`] at once: one lookup instead of two for each
    /// member a mass join brings up. Many come up at once: [`Self::settle`] packs them after.
    pub(super) fn agree_alive(&mut self, node: NodeId, generation: u64) -> Option<u64> {
        self.agree_and(node, generation, true)
    }

    /// Packs the members [`Self::agree_alive`] added (see [`PackedMap::settle`]).
    pub(super) fn settle(&mut self) {
        self.entries.settle();
    }

    /// [`Self::agree`], and with `alive` [`Self::set_alive`] too; unsettled.
    fn agree_and(&mut self, node: NodeId, generation: u64, alive: bool) -> Option<u64> {
        if let Some(entry) = self.entries.get_mut(&node) {
            let before = entry.agreed.then_some(entry.generation);
            if !entry.agreed {
                self.agreed += 1;
            }
            entry.agreed = true;
            entry.alive |= alive;
            entry.generation = generation;
            return before;
        }
        self.agreed += 1;
        self.entries.insert_absent_unsettled(
            node,
            Entry {
                generation,
                agreed: true,
                alive,
            },
        );
        None
    }

    /// `node` is out of the agreed membership; the generation it was agreed at, if it was.
    pub(super) fn disagree(&mut self, node: NodeId) -> Option<u64> {
        let entry = self.entries.get_mut(&node)?;
        if !entry.agreed {
            return None;
        }
        let generation = entry.generation;
        entry.agreed = false;
        self.agreed -= 1;
        if !entry.alive {
            self.entries.remove(&node);
        }
        Some(generation)
    }

    /// `node` is alive in our view, in life `generation`.
    pub(super) fn set_alive(&mut self, node: NodeId, generation: u64) {
        match self.entries.get_mut(&node) {
            Some(entry) => {
                entry.alive = true;
                entry.generation = generation;
            }
            None => {
                let entry = Entry {
                    generation,
                    agreed: false,
                    alive: true,
                };
                self.entries.insert(node, entry);
            }
        }
    }

    /// `node` is not alive in our view (or never was).
    pub(super) fn set_not_alive(&mut self, node: NodeId) {
        if let Some(entry) = self.entries.get_mut(&node) {
            entry.alive = false;
            if !entry.agreed {
                self.entries.remove(&node);
            }
        }
    }

    /// No member is alive in our view any more.
    pub(super) fn clear_alive(&mut self) {
        let gone: Vec<NodeId> = self
            .entries
            .iter()
            .filter(|(_, e)| e.alive && !e.agreed)
            .map(|(id, _)| *id)
            .collect();
        for node in gone {
            self.entries.remove(&node);
        }
        for (_, entry) in self.entries.iter_mut() {
            entry.alive = false;
        }
    }

    /// The members alive in our view, in node id order, with their generation.
    pub(super) fn alive(&self) -> impl Iterator<Item = (NodeId, u64)> + '_ {
        self.entries
            .iter()
            .filter(|(_, e)| e.alive)
            .map(|(id, e)| (*id, e.generation))
    }

    /// The agreed membership.
    pub(super) fn agreed(&self) -> Agreed<'_> {
        Agreed(self)
    }
}

/// The agreed membership (ourselves included), each member with the latest generation seen of
/// it: a read-only look into placement's table of members.
#[derive(Clone, Copy, Debug)]
pub struct Agreed<'a>(&'a Members);

impl<'a> Agreed<'a> {
    /// How many members, in O(1).
    pub fn len(&self) -> usize {
        self.0.agreed
    }

    /// Whether there are none (never, once the machine has a life).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `node` is a member.
    pub fn contains_key(&self, node: &NodeId) -> bool {
        self.get(node).is_some()
    }

    /// The generation `node` is agreed at, if it is a member.
    pub fn get(&self, node: &NodeId) -> Option<u64> {
        let entry = self.0.entries.get(node)?;
        entry.agreed.then_some(entry.generation)
    }

    /// The members in node id order.
    pub fn keys(&self) -> impl Iterator<Item = &'a NodeId> + 'a {
        self.iter().map(|(id, _)| id)
    }

    /// The members in node id order, with their generation.
    pub fn iter(&self) -> impl Iterator<Item = (&'a NodeId, u64)> + 'a {
        self.0
            .entries
            .iter()
            .filter(|(_, e)| e.agreed)
            .map(|(id, e)| (id, e.generation))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(n: u64) -> NodeId {
        NodeId::from_u128(u128::from(n))
    }

    /// The two sets behave as two separate maps would, and an entry in neither is dropped.
    #[test]
    fn agreed_and_alive_are_independent_sets() {
        let mut m = Members::default();
        assert_eq!(m.agree(node(1), 5), None);
        m.set_alive(node(1), 5);
        m.set_alive(node(2), 7);
        assert_eq!(m.agreed().len(), 1);
        assert!(!m.agreed().contains_key(&node(2)));
        assert_eq!(m.alive().collect::<Vec<_>>(), [(node(1), 5), (node(2), 7)]);
        assert_eq!(m.agree(node(1), 6), Some(5));
        assert_eq!(m.disagree(node(1)), Some(6));
        assert_eq!(m.disagree(node(1)), None);
        assert_eq!(m.agreed().len(), 0);
        assert_eq!(m.alive().count(), 2);
        m.agree(node(3), 1);
        m.clear_alive();
        assert_eq!(m.alive().count(), 0);
        assert_eq!(m.entries.len(), 1, "only the agreed node 3 is left");
        assert_eq!(m.agreed().iter().collect::<Vec<_>>(), [(&node(3), 1)]);
        m.set_not_alive(node(3));
        assert_eq!(m.agreed().get(&node(3)), Some(1));
    }

    /// Agreeing to a live member at once leaves the table as agreeing, then setting it
    /// alive, does: for a new member, one agreed but not alive, and one alive but not agreed.
    #[test]
    fn agree_alive_is_agree_then_set_alive() {
        let mut at_once = Members::default();
        let mut in_two = Members::default();
        for m in [&mut at_once, &mut in_two] {
            m.agree(node(2), 3);
            m.set_alive(node(3), 4);
        }
        for (n, generation) in [(1, 1), (2, 5), (3, 6)] {
            let before = in_two.agree(node(n), generation);
            in_two.set_alive(node(n), generation);
            assert_eq!(at_once.agree_alive(node(n), generation), before);
        }
        assert_eq!(at_once.agreed, in_two.agreed);
        assert_eq!(at_once.entries, in_two.entries);
    }
}
