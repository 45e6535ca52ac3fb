//! A counter that never goes below zero cluster-wide, though replicas change it without
//! coordinating: a budget or a pool that agents draw from (the escrow technique).
//!
//! Every unit of the counter is a *right* held by one actor. Adding creates rights for the
//! actor who adds; drawing spends the drawer's own rights and fails when it holds too few;
//! rights can be handed to another actor. An actor only ever spends what its own replica shows
//! it holding, so no two replicas can spend the same unit, and the sum of everyone's rights —
//! the value — stays at or above zero however the replicas interleave.
//!
//! Per actor the state keeps running totals that only that actor's replica raises: added,
//! drawn, and handed to each other actor. A replica's rights in any state are
//! `added + received - handed - drawn`. Merging takes each total's maximum.
//!
//! # Why whole states travel, not single totals
//!
//! An actor's draw is justified by the rights it was handed, which are recorded in the giver's
//! totals. A replica that learnt of the draw without the hand-over would show the drawer
//! overdrawn. So the unit of replication is the whole state: every state is the join of states
//! in which each actor's rights were non-negative, and a join keeps them non-negative (the
//! state that holds an actor's latest spending also holds what funded it). That makes
//! "some actor overdrawn" proof that a state did not come from honest replicas:
//! [`BoundedCounter::merge`] refuses it, and nothing of it is taken. So it does a state valid
//! alone whose merge overdraws an actor: honest states agree on each actor's history (one
//! holds a prefix of what the other holds), and a dishonest one need not. The state grows
//! with the number of actors that hand rights to each other, at most its square: a counter is
//! meant for a cluster's nodes, not for every client.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::counter::CounterOverflow;
use crate::encoding::{Canonical, InvariantError};
use crate::NodeId;

/// A draw or hand-over for more rights than the actor holds here. Nothing was changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{actor} holds {holds} here and cannot give up {wanted}; nothing changed")]
pub struct Insufficient {
    /// The actor.
    pub actor: NodeId,
    /// The rights it holds on this replica.
    pub holds: u64,
    /// What it tried to spend or hand over.
    pub wanted: u64,
}

/// Why a change of a bounded counter was refused. Nothing was changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BoundedError {
    /// The actor holds too few rights here.
    #[error(transparent)]
    Insufficient(#[from] Insufficient),
    /// A running total would overflow.
    #[error(transparent)]
    Overflow(#[from] CounterOverflow),
}

/// One actor's running totals, raised only by that actor's replica.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Account {
    added: u64,
    drawn: u64,
    /// Rights handed to each other actor, in total.
    handed: BTreeMap<NodeId, u64>,
}

/// A non-negative counter of rights; see the module docs.
///
/// Normal form: no account with every total zero, no zero hand-over.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoundedCounter {
    accounts: BTreeMap<NodeId, Account>,
}

impl BoundedCounter {
    /// A counter at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// The counter's value: the sum of every actor's rights.
    pub fn value(&self) -> u128 {
        let added: u128 = self.accounts.values().map(|a| u128::from(a.added)).sum();
        let drawn: u128 = self.accounts.values().map(|a| u128::from(a.drawn)).sum();
        // Never below: every actor's rights are non-negative (the type's invariant).
        added.saturating_sub(drawn)
    }

    /// The rights `actor` holds on this replica: what it may draw or hand over without asking
    /// anyone.
    pub fn rights(&self, actor: NodeId) -> u64 {
        u64::try_from(self.balance(actor).max(0)).unwrap_or(u64::MAX)
    }

    /// What `actor` has given up on this replica: drawn plus handed to others, in total.
    pub fn spent(&self, actor: NodeId) -> u64 {
        let Some(own) = self.accounts.get(&actor) else {
            return 0;
        };
        let handed = own
            .handed
            .values()
            .fold(0u64, |sum, t| sum.saturating_add(*t));
        own.drawn.saturating_add(handed)
    }

    /// Adds `by` to the counter, as rights of `actor`. Ship the state afterwards.
    pub fn add(&mut self, actor: NodeId, by: u64) -> Result<(), BoundedError> {
        let account = self.accounts.entry(actor).or_default();
        account.added = raise(actor, account.added, by)?;
        self.normalise(actor);
        Ok(())
    }

    /// Draws `by` from the counter out of `actor`'s rights, or fails without a change.
    pub fn draw(&mut self, actor: NodeId, by: u64) -> Result<(), BoundedError> {
        self.check_holds(actor, by)?;
        let account = self.accounts.entry(actor).or_default();
        account.drawn = raise(actor, account.drawn, by)?;
        self.normalise(actor);
        Ok(())
    }

    /// Hands `by` of `from`'s rights to `to` (so `to` may draw them), or fails without a change.
    pub fn hand_over(&mut self, from: NodeId, to: NodeId, by: u64) -> Result<(), BoundedError> {
        self.check_holds(from, by)?;
        if from == to {
            return Ok(());
        }
        let account = self.accounts.entry(from).or_default();
        let handed = account.handed.entry(to).or_default();
        *handed = raise(from, *handed, by)?;
        self.normalise(from);
        Ok(())
    }

    /// Merges another replica's state (each total's maximum), unless it, or the merge, shows an
    /// actor overdrawn — which no honest replica's state can — in which case nothing of it is
    /// taken.
    /// Returns whether the counter changed.
    pub fn merge(&mut self, other: &BoundedCounter) -> Result<bool, InvariantError> {
        other.invariants()?;
        let mut merged = self.clone();
        for (&actor, theirs) in &other.accounts {
            let mine = merged.accounts.entry(actor).or_default();
            mine.added = mine.added.max(theirs.added);
            mine.drawn = mine.drawn.max(theirs.drawn);
            for (&to, &total) in &theirs.handed {
                let handed = mine.handed.entry(to).or_default();
                *handed = (*handed).max(total);
            }
        }
        // A state valid alone can still overdraw an actor here, if it disagrees with ours on
        // that actor's history (honest states never do: see the module docs).
        merged.invariants()?;
        let changed = merged != *self;
        *self = merged;
        Ok(changed)
    }

    /// Checks that no actor is overdrawn and the state is in normal form.
    pub fn invariants(&self) -> Result<(), InvariantError> {
        for (&actor, account) in &self.accounts {
            let balance = self.balance(actor);
            InvariantError::check(balance >= 0, || {
                format!("{actor} is overdrawn by {}", -balance)
            })?;
            let empty = account.added == 0 && account.drawn == 0 && account.handed.is_empty();
            InvariantError::check(!empty, || format!("{actor} has an empty account"))?;
            InvariantError::check(!account.handed.values().any(|&t| t == 0), || {
                format!("{actor} records a zero hand-over")
            })?;
        }
        Ok(())
    }

    /// `actor`'s rights as a signed sum, in a type wide enough for any totals.
    fn balance(&self, actor: NodeId) -> i128 {
        let received: i128 = self
            .accounts
            .values()
            .filter_map(|a| a.handed.get(&actor))
            .map(|&t| i128::from(t))
            .sum();
        let Some(own) = self.accounts.get(&actor) else {
            return received;
        };
        let handed: i128 = own.handed.values().map(|&t| i128::from(t)).sum();
        i128::from(own.added) + received - handed - i128::from(own.drawn)
    }

    fn check_holds(&self, actor: NodeId, wanted: u64) -> Result<(), Insufficient> {
        let holds = self.rights(actor);
        if wanted > holds {
            return Err(Insufficient {
                actor,
                holds,
                wanted,
            });
        }
        Ok(())
    }

    /// Drops `actor`'s account if a zero-sized change left it empty.
    fn normalise(&mut self, actor: NodeId) {
        if let Some(account) = self.accounts.get_mut(&actor) {
            account.handed.retain(|_, t| *t > 0);
            if account.added == 0 && account.drawn == 0 && account.handed.is_empty() {
                self.accounts.remove(&actor);
            }
        }
    }
}

/// `total + by`, or the overflow error naming `actor`.
fn raise(actor: NodeId, total: u64, by: u64) -> Result<u64, CounterOverflow> {
    total
        .checked_add(by)
        .ok_or(CounterOverflow { actor, total, by })
}

impl Canonical for BoundedCounter {
    fn validate(&self) -> Result<(), InvariantError> {
        self.invariants()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn node(i: u8) -> NodeId {
        NodeId::from_u128(u128::from(i) + 1)
    }

    #[test]
    fn an_actor_draws_only_what_it_holds_and_hands_rights_on() {
        let (a, b) = (node(0), node(1));
        let mut counter = BoundedCounter::new();
        counter.add(a, 10).expect("add");
        assert_eq!(counter.rights(a), 10);
        assert_eq!(counter.rights(b), 0);
        let refused = counter.draw(b, 1).expect_err("b holds nothing");
        assert_eq!(
            refused,
            BoundedError::Insufficient(Insufficient {
                actor: b,
                holds: 0,
                wanted: 1
            })
        );
        counter.hand_over(a, b, 4).expect("a holds 10");
        counter.draw(b, 4).expect("b holds 4");
        assert_eq!((counter.rights(a), counter.rights(b)), (6, 0));
        assert_eq!(
            (counter.spent(a), counter.spent(b)),
            (4, 4),
            "handed, drawn"
        );
        assert_eq!(counter.value(), 6);
        counter.invariants().expect("invariants");
    }

    #[test]
    fn two_replicas_cannot_spend_the_same_rights() {
        let (a, b) = (node(0), node(1));
        let mut shared = BoundedCounter::new();
        shared.add(a, 5).expect("add");
        let (mut on_a, mut on_b) = (shared.clone(), shared);
        // Only a's replica may spend a's rights: b's replica spends b's, which it has none of.
        on_a.draw(a, 5).expect("a draws its five");
        assert!(on_b.draw(b, 1).is_err());
        on_b.merge(&on_a).expect("honest");
        on_a.merge(&on_b).expect("honest");
        assert_eq!((on_a.value(), on_b.value()), (0, 0));
    }

    #[test]
    fn a_state_that_shows_an_actor_overdrawn_is_refused_whole() {
        let (a, b) = (node(0), node(1));
        let mut forged = BoundedCounter::new();
        forged.accounts.insert(
            a,
            Account {
                added: 1,
                drawn: 0,
                handed: BTreeMap::new(),
            },
        );
        forged.accounts.insert(
            b,
            Account {
                added: 0,
                drawn: 3,
                handed: BTreeMap::new(),
            },
        );
        let mut mine = BoundedCounter::new();
        mine.add(a, 2).expect("add");
        let before = mine.clone();
        assert!(mine.merge(&forged).is_err());
        assert_eq!(mine, before, "nothing of a refused state is taken");
    }

    /// One step of a random run: `(replica, kind, amount, other)`.
    type Step = (usize, u8, u64, usize);

    const REPLICAS: usize = 4;

    fn run(steps: &[Step]) -> Vec<BoundedCounter> {
        let mut replicas = vec![BoundedCounter::new(); REPLICAS];
        for &(i, kind, amount, j) in steps {
            let (i, j) = (i % REPLICAS, j % REPLICAS);
            let me = node(i as u8);
            // A refused change is part of the behaviour under test: it leaves the state as is.
            let _ = match kind % 4 {
                0 => replicas[i].add(me, amount),
                1 => replicas[i].draw(me, amount),
                2 => replicas[i].hand_over(me, node(j as u8), amount),
                _ => {
                    let theirs = replicas[j].clone();
                    replicas[i]
                        .merge(&theirs)
                        .map(|_| ())
                        .map_err(|e| panic!("{e}"))
                }
            };
            for replica in &replicas {
                replica
                    .invariants()
                    .expect("no actor overdrawn, in any replica");
            }
        }
        replicas
    }

    proptest! {
        #[test]
        fn no_interleaving_overdraws_and_every_replica_converges(
            steps in proptest::collection::vec((0..REPLICAS, 0..4u8, 0..20u64, 0..REPLICAS), 0..80)
        ) {
            let mut replicas = run(&steps);
            let mut all = BoundedCounter::new();
            for replica in &replicas {
                all.merge(replica).expect("honest");
            }
            for replica in &mut replicas {
                replica.merge(&all).expect("honest");
                prop_assert_eq!(&*replica, &all);
            }
            // What was drawn never exceeds what was added, over the whole cluster.
            let added: u128 = all.accounts.values().map(|a| u128::from(a.added)).sum();
            let drawn: u128 = all.accounts.values().map(|a| u128::from(a.drawn)).sum();
            prop_assert!(drawn <= added);
        }

        #[test]
        fn merge_is_commutative_associative_and_idempotent(
            steps in proptest::collection::vec((0..REPLICAS, 0..4u8, 0..20u64, 0..REPLICAS), 0..60),
        ) {
            // Replicas of one history (each actor's totals raised by its own replica only).
            let replicas = run(&steps);
            let (x, y, z) = (&replicas[0], &replicas[1], &replicas[2]);
            let merged = |a: &BoundedCounter, b: &BoundedCounter| {
                let mut ab = a.clone();
                ab.merge(b).expect("honest");
                ab
            };
            prop_assert_eq!(merged(x, y), merged(y, x));
            prop_assert_eq!(merged(&merged(x, y), z), merged(x, &merged(y, z)));
            let xy = merged(x, y);
            let mut again = xy.clone();
            prop_assert!(!again.merge(x).expect("honest"));
            prop_assert_eq!(again, xy);
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = BoundedCounter::decode(&bytes);
        }
    }
}
