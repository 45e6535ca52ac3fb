//! The lives of the members alive now, with their nodes' names: what `alive_lives` answers,
//! and how an operator's list of members (`move_to: ["api-1", "4f2a09c1"]`) becomes the lives
//! a move names.

use std::collections::{BTreeMap, BTreeSet};

use foundation_core::vars::Life;
use foundation_core::{Core, NodeId};

/// The fewest hex digits read as the start of an id: node ids are hex, so a one-letter name
/// like `c` would otherwise also be the start of one id in sixteen.
pub(crate) const ID_START_MIN: usize = 4;

/// This node and every member it sees alive, each as the life its variables machine answers
/// for, and the names their metadata gives.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct AliveLives {
    pub lives: BTreeSet<Life>,
    names: BTreeMap<NodeId, String>,
}

impl AliveLives {
    /// As `core` sees them now.
    pub fn of(core: &Core) -> Self {
        let lives = core.alive_lives();
        let membership = core.membership();
        let names = lives
            .iter()
            .filter_map(|life| {
                let name = membership.metadata_of(life.node)?.name.clone()?;
                Some((life.node, name))
            })
            .collect();
        Self { lives, names }
    }

    /// The life of the alive member `member` names: its name, its id, or the start of its id
    /// (`foundation members` shows the first 8 digits; at least [`ID_START_MIN`] are needed).
    /// A name is read as a name first, so a member called `dead` is not confused with an id
    /// that starts with `dead`; only a string no member is called is read as an id. A name
    /// that two members share, or a start of two ids, names neither.
    pub fn named(&self, member: &str) -> Result<Life, String> {
        let by_name = self
            .lives
            .iter()
            .filter(|life| self.names.get(&life.node).is_some_and(|n| n == member));
        let by_name: BTreeSet<Life> = by_name.copied().collect();
        if !by_name.is_empty() {
            return Self::the_one(member, by_name);
        }
        let id = member.to_ascii_lowercase();
        let by_id = self
            .lives
            .iter()
            .filter(|life| id.len() >= ID_START_MIN && life.node.to_string().starts_with(&id));
        Self::the_one(member, by_id.copied().collect())
    }

    fn the_one(member: &str, found: BTreeSet<Life>) -> Result<Life, String> {
        let mut found = found.into_iter();
        match (found.next(), found.next()) {
            (Some(life), None) => Ok(life),
            (None, _) => Err(format!(
                "{member:?} is not the name or id of a member alive here"
            )),
            (Some(_), Some(_)) => Err(format!(
                "{member:?} names more than one member alive here: give an id"
            )),
        }
    }

    /// The lives `members` name, as [`Self::named`] reads each.
    pub fn all_named(&self, members: &[String]) -> Result<BTreeSet<Life>, String> {
        members.iter().map(|member| self.named(member)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alive() -> AliveLives {
        let life = |id: u128| Life {
            node: NodeId::from_u128(id),
            generation: 7,
        };
        let lives = [1, 2, 3, 0xab << 96].map(life).into_iter().collect();
        let names = [(1, "api-1"), (2, "api-2"), (3, "api-2")]
            .map(|(id, name)| (NodeId::from_u128(id), name.to_owned()))
            .into_iter()
            .collect();
        AliveLives { lives, names }
    }

    #[test]
    fn members_are_named_by_name_id_or_the_start_of_an_id() {
        let alive = alive();
        let one = alive.named("api-1").expect("a name");
        assert_eq!(one.node, NodeId::from_u128(1));
        let full = NodeId::from_u128(3).to_string();
        assert_eq!(alive.named(&full).map(|l| l.node), Ok(NodeId::from_u128(3)));
        let short = NodeId::from_u128(0xab << 96).short();
        assert_eq!(
            alive
                .named(&short.to_ascii_uppercase())
                .map(|l| l.generation),
            Ok(7)
        );
    }

    /// Node ids are hex, so a one-letter name like `d` is also the start of about one id in
    /// sixteen: the operator test failed in CI when one of the four ids began with `d`.
    #[test]
    fn a_name_wins_over_an_id_that_starts_with_it() {
        let mut alive = alive();
        let other = NodeId::from_u128(0xab << 96);
        let start = other.short();
        alive.names.insert(NodeId::from_u128(1), start.clone());
        assert_eq!(
            alive.named(&start).map(|l| l.node),
            Ok(NodeId::from_u128(1)),
            "the member called {start}, not the one whose id starts so"
        );
        assert_eq!(alive.named(&other.to_string()).map(|l| l.node), Ok(other));
    }

    #[test]
    fn unknown_shared_and_empty_names_are_refused() {
        let alive = alive();
        let shared = alive.named("api-2").expect_err("two members");
        assert!(shared.contains("more than one"), "{shared}");
        let prefix = alive.named("0000").expect_err("the start of three ids");
        assert!(prefix.contains("more than one"), "{prefix}");
        for unknown in ["api-9", "", "0", "000"] {
            let refused = alive.named(unknown).expect_err(unknown);
            assert!(refused.contains("not the name or id"), "{refused}");
        }
        let list = ["api-1".to_owned(), "api-9".to_owned()];
        assert!(alive.all_named(&list).is_err());
    }
}
