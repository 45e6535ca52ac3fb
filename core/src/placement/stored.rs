//! The agreed membership as a node stores it, so a restart counts its majorities among the
//! same members as the life before it.
//!
//! **Why.** Placement's keep-majority quorum and `set_majority` count a majority of the agreed
//! membership. Kept in memory only, that table would start each life with this node alone and
//! grow as members are met: a node restarted while cut off from the other two of three would
//! count 1 of 1, grant itself leases and confirm a majority write with its own copy.
//!
//! **What is stored.** One node-level record ([`AGREED_RECORD`]): every other member of the
//! agreed membership with the generation it was last agreed at, in node id order. Our own
//! entry is left out: a node always counts itself, and its generation changes every life. The
//! core writes the record again, whole, in the batch that follows any change to it (a member
//! agreed, agreed at a new generation, or removed), and in every rewrite after a failed batch;
//! the members of one record are few and change seldom, while one record per member would
//! leave removals in a failed batch behind on disk with nothing to clear them. At start the
//! core seeds placement's table from it before any input, so before any majority is counted.
//!
//! **Removals follow.** A member leaves the agreed membership only by a graceful leave or an
//! operator's `force-leave` (a failed or reaped member stays: see `Placement::update_agreed`),
//! and the record is rewritten without it in the next batch, so a restart does not bring back
//! a member the cluster let go.
//!
//! **A node that others removed meanwhile.** If this node was force-left while it was down,
//! the others no longer count it, while its own record still counts them and itself: its group
//! is larger than theirs, so it needs at least as many holders as they do — it errs towards
//! refusing, never towards confirming with fewer copies. The others count it again once they
//! see it alive (members join when seen alive), and the two agree again. Likewise a member that
//! left gracefully while this node was down leaves this node's table when its `Left` notice
//! reaches it (members keep a departed member's notice until they reap it); one reaped
//! everywhere before this node returns keeps counting here until an operator's `force-leave`
//! here ([`crate::Core::force_leave`]), which removes a member only the agreed membership
//! counts though no members table lists it any more, and tells the live members (a member
//! reaped as failed stays agreed on every node, so it may count there too). That costs
//! availability only when the live members are no majority of the larger group — two of three
//! members replaced while this node was down leave it counting 2 of 4, refused every majority
//! write — and it is the side that a lost notice should err on. It reaches beyond this node
//! too: a registrar's grant carries its count, and a claimant needs a majority of the largest
//! it hears of. After a normal restart with everybody reachable, every stored member is seen
//! alive again, and the count is what it was.
//!
//! **Why the cluster does not tell it by itself.** Placement exchanges counts, never sets, and
//! no node keeps a departure: a `Left` notice lives until it is reaped, a force-leave's message
//! is sent once. Inferring one from the others' sets — drop X once a majority of the stored
//! group answered without it — would be unsound, for a member's set lacks X also when it never
//! agreed to X in its present life (a node without storage, or with a store older than this
//! record, counts only the members it met since it started), not only when X left or was
//! forced out. Taking such an absence here lowers this node's count for a member that merely
//! failed or is alive beyond a partition: with {R, A, B} | {X, Y} and A and B restarted
//! without storage, R would drop X and Y and count 3 of 3; should B then cross over, {R, A}
//! holds 2 of 3 here while {B, X, Y} holds 3 of 5 there, two majorities. A sound version needs
//! positive evidence: departures by decision (a leave or a force-leave, with the generation)
//! kept beside this record for as long as a member may stay down, and handed to a restarted
//! member that asks, so that a node without them says nothing rather than "absent". That is
//! not built; the operator's `force-leave` on the restarted node is the remedy.
//!
//! **Old and damaged stores.** A store without the record (written before it existed, or by
//! a node without storage) loads as before: this node alone, growing as members are met — the
//! old behaviour, which the record then replaces at the first change. A record that does not
//! decode is left out and counted among the records that did not decode (the engine warns);
//! one that failed its checksum is dropped by storage and named in the load report. Either
//! way the node starts as it would without the record, never with a made-up membership. A
//! record from a partial load ([`crate::storage::LoadReport::partial`]) is used: it is a
//! whole record of some earlier state, and every member it names was agreed then — at worst
//! it lacks members agreed after it was written (the old behaviour, for those alone) or names
//! members removed since (a stricter count).

use crate::NodeId;

use super::members::Agreed;

/// The node-level record that holds the agreed membership. A new format takes a new name.
pub const AGREED_RECORD: &str = "placement.agreed";

/// The record of `agreed` without `me` (`None` only if postcard failed, which a list of ids
/// and integers never makes it do: the stored record then stays as it was).
pub fn encode(agreed: Agreed<'_>, me: NodeId) -> Option<Vec<u8>> {
    let members: Vec<(NodeId, u64)> = agreed
        .iter()
        .filter(|(id, _)| **id != me)
        .map(|(id, generation)| (*id, generation))
        .collect();
    postcard::to_stdvec(&members).ok()
}

/// The members a record names, or why it does not decode.
pub fn decode(bytes: &[u8]) -> Result<Vec<(NodeId, u64)>, postcard::Error> {
    postcard::from_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::time::Duration;

    use super::*;
    use crate::membership::{
        ForceLeaveError, MemberId, MemberState, MembershipConfig, NodeMetadata,
    };
    use crate::node::{Command, Core, CoreConfig, ForceLeft, Input};
    use crate::replication::{ReplicationError, Write};
    use crate::storage::{Disk, Loaded, SimDisk};
    use crate::time::Instant;
    use crate::Effect;

    fn id(slot: usize) -> MemberId {
        MemberId {
            node: NodeId::from_u128(0x100 + slot as u128),
            addr: format!("127.0.0.1:{}", 7000 + slot)
                .parse()
                .expect("address"),
            generation: 1,
        }
    }

    /// Cores on disks that sync at once, over a network that delivers every message 1 ms
    /// later, except to or from a node cut off. Enough to form a cluster and restart a member.
    /// Time in µs, the cores' own grain (a coarser one would leave a timer due between two
    /// steps and never fire it).
    struct Cluster {
        cores: Vec<Option<Core>>,
        disks: Vec<SimDisk>,
        generations: Vec<u64>,
        cut: BTreeSet<usize>,
        /// (due µs, to slot, input), in the order sent.
        flights: Vec<(u64, usize, Input)>,
        now: u64,
    }

    impl Cluster {
        /// `n` nodes, every one joined through node 0, after `ms` of running.
        fn formed(n: usize, ms: u64) -> Self {
            let mut c = Cluster {
                cores: (0..n).map(|_| None).collect(),
                disks: vec![SimDisk::new(); n],
                generations: vec![0; n],
                cut: BTreeSet::new(),
                flights: Vec::new(),
                now: 0,
            };
            for slot in 0..n {
                c.start(slot);
            }
            for slot in 1..n {
                let seed = id(0).node_addr();
                c.input(slot, Input::Command(Command::Join(seed)));
            }
            c.run(ms);
            c
        }

        fn at(&self) -> Instant {
            Instant::from_elapsed(Duration::from_micros(self.now))
        }

        /// A new life of `slot` on what its disk holds; returns how many records did not
        /// decode.
        fn start(&mut self, slot: usize) -> usize {
            self.generations[slot] += 1;
            let config = CoreConfig {
                me: MemberId {
                    generation: self.generations[slot],
                    ..id(slot)
                },
                membership: MembershipConfig::development(),
                metadata: NodeMetadata::default(),
                seed: slot as u64,
            };
            let mut core = Core::new(config, self.at());
            let loaded = self.disks[slot].load().expect("the sim disk loads");
            let skipped = core.start_persisting(self.at(), &loaded);
            self.cores[slot] = Some(core);
            self.drain(slot);
            skipped
        }

        fn core(&mut self, slot: usize) -> &mut Core {
            self.cores[slot].as_mut().expect("up")
        }

        fn input(&mut self, slot: usize, input: Input) {
            let now = self.at();
            self.core(slot).handle(now, input);
            self.drain(slot);
        }

        /// Carries out `slot`'s effects: sends fly, batches are written and synced at once.
        fn drain(&mut self, slot: usize) {
            let mut synced = None;
            while let Some(effect) = self.core(slot).poll_effect() {
                match effect {
                    Effect::Send {
                        to,
                        channel,
                        payload,
                    } => {
                        let Some(to_slot) = (0..self.cores.len()).find(|s| id(*s).node == to.id)
                        else {
                            continue;
                        };
                        if self.cut.contains(&slot) || self.cut.contains(&to_slot) {
                            continue;
                        }
                        let from = id(slot).node;
                        let received = Input::Received {
                            from,
                            channel,
                            payload,
                        };
                        self.flights.push((self.now + 1_000, to_slot, received));
                    }
                    Effect::Persist { seq, batch } => {
                        self.disks[slot].write(&batch).expect("written");
                        self.disks[slot].sync().expect("synced");
                        synced = Some(seq);
                    }
                    Effect::Event(_) => {}
                }
            }
            if let Some(upto) = synced {
                self.input(slot, Input::Persisted { upto });
            }
        }

        /// Delivers messages and fires timers until `ms` from now.
        fn run(&mut self, ms: u64) {
            let until = self.now + ms * 1_000;
            while let Some(next) = self.next_due().filter(|t| *t <= until) {
                self.now = next;
                self.step();
            }
            self.now = until;
        }

        fn next_due(&self) -> Option<u64> {
            let timers = self.cores.iter().flatten().filter_map(|c| c.poll_timeout());
            let timers = timers.map(|t| t.elapsed().as_micros() as u64);
            let flights = self.flights.iter().map(|(due, _, _)| *due);
            timers.chain(flights).min()
        }

        fn step(&mut self) {
            let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.flights)
                .into_iter()
                .partition(|f| f.0 <= self.now);
            self.flights = later;
            for (_, slot, input) in due {
                if self.cores[slot].is_some() {
                    self.input(slot, input);
                }
            }
            let now = self.at();
            for slot in 0..self.cores.len() {
                let Some(core) = self.cores[slot].as_mut() else {
                    continue;
                };
                if core.poll_timeout().is_some_and(|t| t <= now) {
                    core.handle_timeout(now);
                    self.drain(slot);
                }
            }
        }

        /// `slot` joins through `seed` and waits until it sees `seed` alive.
        fn rejoin(&mut self, slot: usize, seed: usize) {
            self.input(slot, Input::Command(Command::Join(id(seed).node_addr())));
            self.run_until_seen(slot, id(seed).node, MemberState::Alive);
        }

        /// `slot` crashes and comes back cut off from everyone.
        fn restart_alone(&mut self, slot: usize) -> usize {
            self.cores[slot] = None;
            self.cut.insert(slot);
            self.start(slot)
        }

        fn agreed(&mut self, slot: usize) -> Vec<NodeId> {
            self.core(slot)
                .placement()
                .agreed()
                .keys()
                .copied()
                .collect()
        }

        /// A majority write of one key on `slot`, given a second to complete.
        fn write(
            &mut self,
            slot: usize,
        ) -> Result<crate::replication::AckTicket, ReplicationError> {
            let now = self.at();
            let write = Write {
                keyspace: "config".into(),
                key: "k".into(),
                value: Some(vec![1]),
            };
            let until = now + Duration::from_secs(1);
            let result = self.core(slot).write_acked(now, write, until);
            self.drain(slot);
            result
        }

        /// Until `slot` sees `node` in `state` (at most 30 s).
        fn run_until_seen(&mut self, slot: usize, node: NodeId, state: MemberState) {
            for _ in 0..300 {
                if self.core(slot).membership().member(node).map(|m| m.state) == Some(state) {
                    return;
                }
                self.run(100);
            }
            panic!("n{slot} never saw {node:?} {state:?}");
        }
    }

    fn ids(slots: &[usize]) -> Vec<NodeId> {
        slots.iter().map(|s| id(*s).node).collect()
    }

    /// A member restarted while cut off counts the three it had agreed to, each at the
    /// generation last seen, and is refused a majority write (before: it counted 1 of 1).
    #[test]
    fn the_agreed_membership_outlives_a_restart() {
        let mut c = Cluster::formed(3, 5_000);
        assert_eq!(c.agreed(0), ids(&[0, 1, 2]), "formed");
        assert_eq!(c.restart_alone(0), 0, "every record decodes");
        assert_eq!(c.agreed(0), ids(&[0, 1, 2]));
        let agreed = c.core(0).placement().agreed();
        assert_eq!(agreed.get(&id(1).node), Some(1));
        assert_eq!(
            agreed.get(&id(0).node),
            Some(2),
            "our own entry is this life's"
        );
        let refused = c.write(0);
        assert!(
            matches!(
                refused,
                Err(ReplicationError::MinoritySide { agreed: 3, .. })
            ),
            "{refused:?}"
        );
    }

    /// A graceful leave and a force-leave take their members out of the stored record too: a
    /// restart does not bring back a member the cluster let go.
    #[test]
    fn a_removal_is_stored_too() {
        let mut c = Cluster::formed(4, 5_000);
        assert_eq!(c.agreed(0), ids(&[0, 1, 2, 3]), "formed");
        c.input(2, Input::Command(Command::Leave));
        c.run_until_seen(0, id(2).node, MemberState::Left);
        c.cores[3] = None;
        c.run_until_seen(0, id(3).node, MemberState::Failed);
        let now = c.at();
        c.core(0).force_leave(now, id(3).node).expect("removed");
        c.drain(0);
        assert_eq!(c.agreed(0), ids(&[0, 1]), "in memory");
        c.restart_alone(0);
        assert_eq!(c.agreed(0), ids(&[0, 1]), "after the restart");
    }

    /// Two of four members are replaced while node 0 is down: it comes back counting them
    /// (2 of 4 alive: majority writes refused), and no table of its membership knows them any
    /// more. An operator's force-leave there removes them, and the stored record follows.
    #[test]
    fn force_leave_removes_a_stored_member_nobody_knows_any_more() {
        let mut c = Cluster::formed(4, 5_000);
        c.cores[0] = None;
        c.cores[2] = None;
        c.cores[3] = None;
        for gone in [2, 3] {
            c.run_until_seen(1, id(gone).node, MemberState::Failed);
            let now = c.at();
            c.core(1)
                .force_leave(now, id(gone).node)
                .expect("failed: removed");
            c.drain(1);
        }
        assert_eq!(
            c.agreed(1),
            ids(&[0, 1]),
            "the rest of the cluster let them go"
        );
        c.start(0);
        c.rejoin(0, 1);
        assert_eq!(
            c.agreed(0),
            ids(&[0, 1, 2, 3]),
            "the stored record still counts them"
        );
        assert!(
            matches!(
                c.write(0),
                Err(ReplicationError::MinoritySide { agreed: 4, .. })
            ),
            "2 of 4"
        );
        for gone in [2, 3] {
            assert!(c.core(0).membership().member(id(gone).node).is_none());
            let now = c.at();
            let left = c.core(0).force_leave(now, id(gone).node);
            let agreed = ForceLeft::Agreed {
                id: id(gone).node,
                generation: 1,
            };
            assert_eq!(left, Ok(agreed), "n{gone}");
            c.drain(0);
        }
        assert_eq!(c.agreed(0), ids(&[0, 1]), "in memory");
        let now = c.at();
        let again = c.core(0).force_leave(now, id(2).node);
        assert_eq!(
            again,
            Err(ForceLeaveError::Unknown(id(2).node)),
            "in neither"
        );
        assert!(c.write(0).is_ok(), "2 of 2");
        c.restart_alone(0);
        assert_eq!(c.agreed(0), ids(&[0, 1]), "after the next restart");
    }

    /// The force-leave of a member only the agreed membership counts reaches the live members
    /// too: one that still holds it failed removes it from its table and its agreed
    /// membership, though the message names no address.
    #[test]
    fn force_leave_of_an_agreed_member_tells_the_live_ones() {
        let mut c = Cluster::formed(3, 5_000);
        c.cores[0] = None;
        c.cores[2] = None;
        c.run_until_seen(1, id(2).node, MemberState::Failed);
        c.start(0);
        c.rejoin(0, 1);
        assert!(c.core(0).membership().member(id(2).node).is_none());
        let now = c.at();
        let left = c
            .core(0)
            .force_leave(now, id(2).node)
            .expect("agreed: removed");
        assert_eq!(left.id(), id(2).node);
        c.drain(0);
        c.run(10);
        assert!(c.core(1).membership().member(id(2).node).is_none(), "told");
        assert_eq!(c.agreed(1), ids(&[0, 1]));
    }

    /// A store without the record (an older version's) starts as before: this node alone; one
    /// whose record does not decode starts alone too and counts it, without a panic.
    #[test]
    fn a_missing_or_undecodable_record_starts_alone() {
        for (record, bad) in [(None, 0), (Some(vec![0xff; 3]), 1)] {
            let mut loaded = Loaded::default();
            if let Some(bytes) = record {
                loaded.state.node.insert(AGREED_RECORD.into(), bytes);
            }
            let mut core = crate::node::lone_core();
            assert_eq!(core.start_persisting(Instant::ZERO, &loaded), bad);
            assert_eq!(core.placement().agreed().len(), 1);
        }
    }

    /// The record names every agreed member but us, in node id order, and reads back as such.
    #[test]
    fn a_record_reads_back_as_written() {
        let me = crate::vars::Life {
            node: NodeId::from_u128(5),
            generation: 2,
        };
        let config =
            super::super::PlacementConfig::for_membership(&MembershipConfig::development());
        let mut placement = super::super::Placement::new(me, config, Instant::ZERO);
        let members = [
            (NodeId::from_u128(9), 1),
            (NodeId::from_u128(3), 7),
            (me.node, 1),
        ];
        placement.seed_agreed(Instant::ZERO, &members);
        assert!(
            !placement.take_agreed_changed(),
            "seeding is no change to store"
        );
        let record = encode(placement.agreed(), me.node).expect("encodes");
        let others = [(NodeId::from_u128(3), 7), (NodeId::from_u128(9), 1)];
        assert_eq!(decode(&record).expect("decodes"), others);
        assert_eq!(
            placement.agreed().get(&me.node),
            Some(2),
            "ours stays this life's"
        );
    }
}
