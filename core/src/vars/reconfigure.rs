//! Moving a `cas` or `coordinated` variable to other acceptors ("reconfiguration"), so a
//! variable outlives the lives that first decided it (a rolling restart makes every node a
//! new life, and a restarted node never stands in for its earlier self).
//!
//! # How
//!
//! The change is a decided version of the register (see `foundation_agents::cas`, "Changing
//! the acceptors"): [`Vars::change_acceptors`] proposes, among the current acceptors, version
//! `v + 1` holding the value of `v` unchanged and naming the acceptors of every version from
//! `v + 2` on. It ends like a compare-and-set ([`VarsEvent::CasDone`](super::VarsEvent)): won
//! (the new acceptors decide from the next version on), lost to a write of the same version
//! (nothing changed: ask again), or no majority of the *current* acceptors by the deadline
//! (nothing changed yet, but like a write it may still be decided later, carried by another
//! writer's proposal: read the variable's acceptors to see).
//!
//! # Why it is safe
//!
//! The acceptors of a version are those the decided versions before it name, and every way a
//! node learns a decision carries them, so all writers of a version count a majority of the
//! same set; the old majority decides the version that names the new set, so no version is
//! ever decided by majorities of two sets. The spec and its fingerprint, which every message
//! carries, stay those declared: old and new acceptors keep talking about one variable.
//!
//! # Taking it up
//!
//! A life added to the acceptors that does not hold the variable takes it up from the
//! replicated declaration: every holder that learns of a change rewrites the declaration as
//! the spec followed by a [`Seat`] (a decided version, its proposal and the acceptors from the
//! next version on), and a life the seat names starts its register there. It never promised
//! anything for the versions it joins (it did not hold the variable), which is what makes
//! starting from a decided version safe. Lives removed from the set keep the variable: they
//! stop answering for versions they are not acceptors of, still learn when they write, and
//! their writes are decided by the new acceptors. A holder behind the seat learns it as the
//! decision it is (`CasRegister::learn_decided`), so one cut off during a move whose old
//! lives are all gone by the time it is back still finds the new acceptors.
//!
//! # Refused
//!
//! `lww` variables have no acceptors ([`VarsError::WrongPolicy`]); counters' holders carry
//! escrowed rights that a change of holders would have to hand over, which is not built
//! ([`VarsError::Reconfiguration`]); an empty set could never decide again; the set a variable
//! already has changes nothing; a set of which fewer than a majority are lives this node knows
//! alive ([`VarsError::NotAlive`]: its own life and, for each member membership shows alive,
//! the life that answers for it, see [`lives`](super::lives)) could leave the variable where no
//! majority ever answers. Re-seating is not asked this: it moves only to lives it heard from
//! and only while it sees a majority of the current set (see [`reseat`](super::reseat)).
//!
//! A node that already holds [`VARIABLES_MAX`](super::VARIABLES_MAX) variables takes a seat up
//! all the same: the limit bounds the variables declared on a node, not those other nodes
//! name it for (the mover cannot know how many it holds; refusing left the variable an
//! acceptor short for good).

use std::collections::BTreeSet;
use std::time::Duration;

use foundation_agents::cas::{CasRegister, Proposal, SLOT_MAX};
use foundation_agents::variable::{Policy, VarValue};
use serde::{Deserialize, Serialize};

use super::{Kind, Life, Outgoing, Source, VarSpec, Vars, VarsError, VARS_KEYSPACE};
use crate::replication::Write;
use crate::time::Instant;

/// Where a life added to a variable's acceptors starts: replicated after the spec in the
/// variable's declaration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Seat {
    /// A decided version.
    pub version: u64,
    /// Its proposal (value and writer).
    pub decided: Proposal<Life, VarValue>,
    /// The first version the acceptors below decide, as the writer of the seat knew it (one
    /// that learnt of them by jumping over versions knows a later one, and one that jumped
    /// over a move away and back an earlier one): informative only, seats are ordered by
    /// `version` (see `Vars::adopt_seat`).
    pub from: u64,
    /// The acceptors of every version from `from` on (as far as the writer of the seat knew).
    pub acceptors: BTreeSet<Life>,
}

/// A declaration's bytes: the spec, then a seat once the acceptors changed. Nodes that read
/// only the spec still read it (the seat trails it).
pub fn encode_declaration(spec: &VarSpec, seat: &Seat) -> Vec<u8> {
    let mut bytes = spec.encode();
    bytes.extend(postcard::to_stdvec(seat).unwrap_or_default());
    bytes
}

/// The spec and the seat, if any, of a declaration's bytes.
pub fn decode_declaration(bytes: &[u8]) -> Option<(VarSpec, Option<Seat>)> {
    let (spec, rest) = postcard::take_from_bytes::<VarSpec>(bytes).ok()?;
    let seat = match rest.is_empty() {
        true => None,
        false => Some(postcard::from_bytes::<Seat>(rest).ok()?),
    };
    Some((spec, seat))
}

/// Whether `spec`'s variable `name` can be moved to `acceptors`, now decided by `current`.
pub fn check_acceptor_change(
    name: &str,
    spec: &VarSpec,
    current: &BTreeSet<Life>,
    acceptors: &BTreeSet<Life>,
) -> Result<(), VarsError> {
    let refuse = |why| {
        Err(VarsError::Reconfiguration {
            name: name.to_owned(),
            why,
        })
    };
    match spec.policy {
        Policy::Lww => Err(VarsError::WrongPolicy {
            name: name.to_owned(),
            policy: spec.policy,
            why: "an lww variable has no acceptors: every node writes",
        }),
        Policy::Counter => refuse("a counter's holders carry escrowed rights, and handing them to other holders is not built; declare a new counter"),
        _ if acceptors.is_empty() => refuse("an empty set of acceptors could never decide again"),
        _ if acceptors == current => refuse("these are already its acceptors"),
        _ => Ok(()),
    }
}

/// Whether a majority of `acceptors` are among the lives known `alive`.
fn check_known_alive(
    name: &str,
    acceptors: &BTreeSet<Life>,
    alive: &BTreeSet<Life>,
) -> Result<(), VarsError> {
    let named = acceptors.len();
    let known = acceptors.intersection(alive).count();
    let needed = named / 2 + 1;
    if known >= needed {
        return Ok(());
    }
    Err(VarsError::NotAlive {
        name: name.to_owned(),
        named,
        known,
        needed,
    })
}

impl Vars {
    /// Moves `cas` or `coordinated` variable `name` to `acceptors`, decided by a majority of
    /// its current acceptors within `timeout` (see the module docs), if a majority of
    /// `acceptors` are lives this node knows `alive` (the node's `alive_lives`): otherwise
    /// [`VarsError::NotAlive`], since the variable could be left where no majority answers.
    /// Returns the request number its [`VarsEvent::CasDone`](super::VarsEvent) will carry.
    pub fn change_acceptors(
        &mut self,
        now: Instant,
        name: &str,
        (acceptors, alive): (BTreeSet<Life>, &BTreeSet<Life>),
        timeout: Duration,
        out: &mut Outgoing,
    ) -> Result<u64, VarsError> {
        self.movable(name, &acceptors)?;
        check_known_alive(name, &acceptors, alive)?;
        self.move_acceptors(now, name, acceptors, timeout, out)
    }

    /// Whether `name` may be moved to `acceptors` at all (see [`check_acceptor_change`]).
    fn movable(&self, name: &str, acceptors: &BTreeSet<Life>) -> Result<(), VarsError> {
        let variable = self
            .variables
            .get(name)
            .ok_or_else(|| VarsError::Unknown(name.to_owned()))?;
        let current = acceptors_of(&variable.kind).unwrap_or_default().1;
        check_acceptor_change(name, &variable.spec, &current, acceptors)
    }

    /// [`Self::change_acceptors`] without asking that the lives be known alive: re-seating
    /// moves to lives it chose by its own rule (see [`reseat`](super::reseat)).
    pub(super) fn move_acceptors(
        &mut self,
        now: Instant,
        name: &str,
        acceptors: BTreeSet<Life>,
        timeout: Duration,
        out: &mut Outgoing,
    ) -> Result<u64, VarsError> {
        self.movable(name, &acceptors)?;
        self.start_step(now, name, timeout, out, |register, now, deadline| {
            let (expected, _) = register.current();
            register.reconfigure(now, expected, acceptors, deadline)
        })
    }

    /// The acceptors of the next version of `cas` or `coordinated` variable `name` as this node
    /// knows them, and the first version they decide.
    pub fn acceptors(&self, name: &str) -> Option<(u64, BTreeSet<Life>)> {
        acceptors_of(&self.variables.get(name)?.kind)
    }

    /// After a step of `name`'s register, or a declaration read: if this node knows a later
    /// version than the declaration's seat and other acceptors after it, rewrites the
    /// declaration with a seat, so added lives take it up. Equal acceptors need no rewrite:
    /// an older seat naming the set in force is still a decided version and the set after it.
    pub(super) fn publish_seat(&mut self, name: &str) {
        let Some(variable) = self.variables.get_mut(name) else {
            return;
        };
        let Kind::Register { register, .. } = &variable.kind else {
            return;
        };
        let (version, _) = register.current();
        let (from, acceptors) = register.acceptors();
        if version <= variable.seat.0 || acceptors == variable.seat.1 {
            return;
        }
        let Some(decided) = register.decided(version).cloned() else {
            return;
        };
        variable.seat = (version, acceptors.clone());
        let seat = Seat {
            version,
            decided,
            from,
            acceptors,
        };
        self.publications.push(Write {
            keyspace: VARS_KEYSPACE.to_owned(),
            key: name.to_owned(),
            value: Some(encode_declaration(&variable.spec, &seat)),
        });
    }

    /// Takes up a declaration's `seat` for `name`, declared `spec` here or not: a life it names
    /// that does not hold the variable starts its register at the seat; a holder behind it
    /// learns it as the decision it is (a node cut off during a move whose old lives are all
    /// gone has nobody else to learn it from), and writes a newer seat back if this one is
    /// older than what it knows.
    ///
    /// Seats are ordered by their decided `version`: a later decided version is later
    /// knowledge, and the acceptors a seat names are exactly those of the version after it,
    /// so of two seats the later version's names the set in force at least as late (two of
    /// one version carry one decision). Not by `from`: a node that jumped over a move away
    /// and back records the set's first version from before the moves, so a later seat can
    /// have an earlier `from`.
    pub(super) fn adopt_seat(&mut self, now: Instant, name: &str, spec: VarSpec, seat: Seat) {
        if seat.version > SLOT_MAX || seat.from > SLOT_MAX {
            // No register gets there; the versions after it would not exist.
            self.stats.invalid_values += 1;
            return;
        }
        let fits = spec.ty.validate().is_ok() && spec.ty.check(&seat.decided.value).is_ok();
        if let Some(variable) = self.variables.get_mut(name) {
            if variable.fingerprint != spec.fingerprint() {
                self.stats.conflicting_declarations += 1;
                return;
            }
            return self.learn_seat(now, name, seat, fits);
        }
        let registered = matches!(spec.policy, Policy::Cas | Policy::Coordinated);
        if !registered || !seat.acceptors.contains(&self.me) {
            return;
        }
        if !fits {
            self.stats.invalid_values += 1;
            return;
        }
        let known = (seat.version, seat.acceptors.clone());
        let register =
            CasRegister::starting_at(self.me, seat.version, seat.decided, seat.acceptors);
        let kind = Kind::Register {
            register: Box::new(register),
            request: None,
        };
        // Cannot conflict (not held here), nor be refused for room (another node's).
        if self
            .hold(name, spec, kind, known, Source::Replicated)
            .is_err()
        {
            self.stats.conflicting_declarations += 1;
        }
    }

    /// A holder of `name` reads `seat` in its declaration: notes it as what the declaration
    /// holds now (an older seat may have won a race of writes), learns it if newer than its
    /// register (an older one teaches nothing), and writes a newer seat back if it knows one.
    fn learn_seat(&mut self, now: Instant, name: &str, seat: Seat, fits: bool) {
        let Some(variable) = self.variables.get_mut(name) else {
            return;
        };
        let Kind::Register { register, .. } = &mut variable.kind else {
            return;
        };
        if !fits {
            self.stats.invalid_values += 1;
            variable.statistics.refused += 1;
            return;
        }
        variable.seat = (seat.version, seat.acceptors.clone());
        let outcome = register.learn_decided(seat.version, seat.decided, seat.acceptors);
        self.settle(now, name, outcome);
        self.publish_seat(name);
    }
}

fn acceptors_of(kind: &Kind) -> Option<(u64, BTreeSet<Life>)> {
    match kind {
        Kind::Register { register, .. } => Some(register.acceptors()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vars::tests::life;
    use foundation_agents::variable::VarType;

    fn spec(policy: Policy, acceptors: &[u128]) -> VarSpec {
        VarSpec {
            ty: VarType::Int { min: 0, max: 9 },
            policy,
            initial: VarValue::Int(0),
            acceptors: acceptors.iter().map(|n| life(*n)).collect(),
        }
    }

    fn set(lives: &[u128]) -> BTreeSet<Life> {
        lives.iter().map(|n| life(*n)).collect()
    }

    #[test]
    fn lww_counters_an_empty_set_and_the_same_set_are_refused_with_a_typed_error() {
        let cas = spec(Policy::Cas, &[1, 2, 3]);
        let now = set(&[1, 2, 3]);
        let moved = set(&[1, 2, 4]);
        assert_eq!(check_acceptor_change("x", &cas, &now, &moved), Ok(()));
        let refused = |r| matches!(r, Err(VarsError::Reconfiguration { .. }));
        assert!(refused(check_acceptor_change("x", &cas, &now, &now)));
        assert!(refused(check_acceptor_change("x", &cas, &now, &set(&[]))));
        let counter = spec(Policy::Counter, &[1]);
        assert!(refused(check_acceptor_change(
            "pool", &counter, &now, &moved
        )));
        assert!(matches!(
            check_acceptor_change("t", &spec(Policy::Lww, &[]), &now, &moved),
            Err(VarsError::WrongPolicy { .. })
        ));
    }

    #[test]
    fn a_declaration_reads_back_with_its_seat_and_the_spec_alone_still_decodes() {
        let spec = spec(Policy::Cas, &[1, 2, 3]);
        let seat = Seat {
            version: 4,
            decided: Proposal {
                writer: life(1),
                request: 2,
                value: VarValue::Int(7),
                acceptors: Some(set(&[1, 2, 4])),
            },
            from: 5,
            acceptors: set(&[1, 2, 4]),
        };
        let bytes = encode_declaration(&spec, &seat);
        assert_eq!(decode_declaration(&bytes), Some((spec.clone(), Some(seat))));
        assert_eq!(VarSpec::decode(&bytes), Some(spec.clone()));
        assert_eq!(decode_declaration(&spec.encode()), Some((spec, None)));
        assert_eq!(decode_declaration(&bytes[..bytes.len() - 1]), None);
    }
}
