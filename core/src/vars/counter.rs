//! Resource counters: a budget or a pool agents draw from, never below zero cluster-wide,
//! built on [`BoundedCounter`] (escrow: every unit is a right held by one node life, which
//! spends it without asking anyone up to an allowance; rights move between lives by
//! hand-over).
//!
//! # Who holds rights
//!
//! The actors of the counter are node *lives*, not node ids: a life keeps its totals in memory,
//! and a restarted node that spent again under its old actor could not know what its earlier
//! life spent last, so it could spend a unit twice. Each life gets a fresh actor; what an
//! ended life held beyond what a majority of the holders allowed it to spend is reclaimed by
//! one heir after that majority fenced it (see [`escrow`](super::escrow)).
//!
//! The declared initial value is created by a *genesis* account every node derives from the
//! spec alone, handed in equal shares to the lives the spec names as holders
//! ([`VarSpec::acceptors`](super::VarSpec::acceptors)). Since every node computes the same
//! genesis totals, declaring again anywhere, or a restarted declarer, never creates more.
//!
//! # How states travel
//!
//! Each life writes its whole counter state under its own key of the
//! [`COUNTERS_KEYSPACE`](super::COUNTERS_KEYSPACE) keyspace after the changes it makes (at most
//! every [`COUNTER_PUBLISH_EVERY`](super::COUNTER_PUBLISH_EVERY), at once for a hand-over); every
//! node merges every key's state into its own. Whole states, because a draw is justified by the
//! hand-overs that funded it (see `foundation_crdt::bounded_counter`): a state that shows an
//! actor overdrawn did not come from honest replicas and is refused whole.

use std::collections::{BTreeMap, BTreeSet};

use foundation_agents::variable::VarValue;
use foundation_crdt::{fnv1a64, BoundedCounter, NodeId as Actor};
use serde::{Deserialize, Serialize};

use super::escrow::Escrow;
use super::Life;
use crate::time::Instant;
use crate::NodeId;

/// What a life writes under its key for a counter.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct CounterRecord {
    /// The variable's spec fingerprint: a state under another spec is not merged.
    pub spec: u64,
    /// The writer's whole state of the counter.
    pub state: BoundedCounter,
}

impl CounterRecord {
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).unwrap_or_default()
    }

    pub fn decode(bytes: &[u8]) -> Option<Self> {
        postcard::from_bytes(bytes).ok()
    }
}

/// The account the declared initial value comes from.
const GENESIS: Actor = Actor::MIN;

/// The counter's actor for one node life: 128 bits of hash of its node id and generation (a
/// life is 192 bits; two lives colliding is as likely as two random node ids).
pub(crate) fn actor(life: Life) -> Actor {
    let mut bytes = life.node.as_u128().to_be_bytes().to_vec();
    bytes.extend_from_slice(&life.generation.to_be_bytes());
    let high = fnv1a64(&[b"counter-actor-high".as_slice(), &bytes].concat());
    let low = fnv1a64(&[b"counter-actor-low".as_slice(), &bytes].concat());
    Actor::from_u128((u128::from(high) << 64) | u128::from(low))
}

/// The genesis state of a counter declared with `initial` units shared among `holders`: the
/// first holder (in order) takes the remainder of an uneven split.
pub(crate) fn genesis(initial: u64, holders: &BTreeSet<Life>) -> BoundedCounter {
    let mut counter = BoundedCounter::new();
    let shares = shares(initial, holders);
    if shares.is_empty() {
        return counter;
    }
    // Cannot fail: one add from zero, hand-overs that sum to exactly what was added.
    let _ = counter.add(GENESIS, initial);
    for (holder, share) in shares {
        let _ = counter.hand_over(GENESIS, actor(holder), share);
    }
    counter
}

/// Each holder's share of `initial` units: the first holder (in order) takes the remainder of
/// an uneven split. Empty when there is nothing to share.
pub(crate) fn shares(initial: u64, holders: &BTreeSet<Life>) -> BTreeMap<Life, u64> {
    let count = holders.len() as u64;
    if initial == 0 || count == 0 {
        return BTreeMap::new();
    }
    let share = |i: usize| initial / count + if i == 0 { initial % count } else { 0 };
    holders
        .iter()
        .enumerate()
        .map(|(i, holder)| (*holder, share(i)))
        .collect()
}

/// One counter as this node holds it.
#[derive(Clone, Debug)]
pub(crate) struct CounterVar {
    pub counter: BoundedCounter,
    /// Changes of the value seen here.
    pub version: u64,
    pub value: VarValue,
    /// The life behind each actor seen, so rights can be asked of whoever holds them.
    pub lives: BTreeMap<Actor, Life>,
    /// When this node last asked for rights, so a burst of refused draws asks once.
    pub asked: Option<Instant>,
    /// When the first change of this life's state not yet written was made.
    pub unpublished: Option<Instant>,
    /// What this life may give up, and the reclaiming of dead lives' rights.
    pub escrow: Box<Escrow>,
}

impl CounterVar {
    pub fn new(me: Life, initial: u64, holders: &BTreeSet<Life>) -> Self {
        let counter = genesis(initial, holders);
        let lives = holders.iter().map(|l| (actor(*l), *l)).collect();
        Self {
            value: shown(&counter),
            counter,
            version: 0,
            lives,
            asked: None,
            unpublished: None,
            escrow: Box::new(Escrow::new(me, holders, &shares(initial, holders))),
        }
    }

    /// Takes up a change of the state; returns whether the value changed.
    pub fn refresh(&mut self) -> bool {
        let value = shown(&self.counter);
        if value == self.value {
            return false;
        }
        self.value = value;
        self.version += 1;
        true
    }

    /// The life other than `me` that holds the most rights here, if any holds some.
    pub fn richest_other(&self, me: Life) -> Option<(Life, u64)> {
        self.lives
            .iter()
            .filter(|(_, life)| **life != me)
            .map(|(a, life)| (*life, self.counter.rights(*a)))
            .filter(|(_, rights)| *rights > 0)
            .max_by_key(|(life, rights)| (*rights, std::cmp::Reverse(*life)))
    }
}

/// The value a counter shows: its units, within the integer type (a pool beyond `i64::MAX`
/// shows as `i64::MAX`).
pub(crate) fn shown(counter: &BoundedCounter) -> VarValue {
    VarValue::Int(i64::try_from(counter.value()).unwrap_or(i64::MAX))
}

/// The key life `life` writes counter `name` under.
pub(crate) fn key(name: &str, life: Life) -> String {
    format!("{name}\0{}.{}", life.node, life.generation)
}

/// The counter and writer life a key names, if it is well formed.
pub(crate) fn parse_key(key: &str) -> Option<(&str, Life)> {
    let (name, life) = key.rsplit_once('\0')?;
    let (node, generation) = life.split_once('.')?;
    let life = Life {
        node: node.parse::<NodeId>().ok()?,
        generation: generation.parse().ok()?,
    };
    Some((name, life))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn life(n: u128, generation: u64) -> Life {
        Life {
            node: NodeId::from_u128(n),
            generation,
        }
    }

    #[test]
    fn genesis_shares_the_initial_value_and_is_the_same_wherever_it_is_derived() {
        let holders: BTreeSet<Life> = (1..=3).map(|n| life(n, 1)).collect();
        let counter = genesis(10, &holders);
        assert_eq!(counter.value(), 10);
        let rights: Vec<u64> = holders.iter().map(|h| counter.rights(actor(*h))).collect();
        assert_eq!(rights, vec![4, 3, 3]);
        let mut again = genesis(10, &holders);
        assert_eq!(
            again.merge(&counter),
            Ok(false),
            "merging it again adds nothing"
        );
    }

    #[test]
    fn a_restarted_node_is_a_new_actor_without_its_earlier_lifes_rights() {
        assert_ne!(actor(life(1, 1)), actor(life(1, 2)));
        assert_ne!(actor(life(1, 1)), actor(life(2, 1)));
        let holders = BTreeSet::from([life(1, 1)]);
        let counter = CounterVar::new(life(1, 2), 5, &holders);
        assert_eq!(counter.counter.rights(actor(life(1, 2))), 0);
        assert_eq!(counter.richest_other(life(1, 2)), Some((life(1, 1), 5)));
        assert_eq!(counter.richest_other(life(1, 1)), None);
    }

    #[test]
    fn keys_name_their_counter_and_life() {
        let l = life(0xfe, 7);
        assert_eq!(parse_key(&key("pool", l)), Some(("pool", l)));
        assert_eq!(parse_key("pool\0fe"), None);
        assert_eq!(parse_key("pool\0fe.x"), None);
    }
}
