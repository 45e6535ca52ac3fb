//! Which live member each anti-entropy round sends its digest to: the one we sent to longest
//! ago (a member we never sent to first), ties broken at random.
//!
//! Tombstone GC and compaction wait for a recent digest from *every* member. A partner drawn
//! at random each round reaches a given member only by chance: a node heard from all N−1
//! others after about N·ln N rounds (a coupon collector), two hours at N=1000 with one round a
//! second, and tombstones lived that long instead of their ttl. Picking the longest unsent,
//! each member sends its digest to every other within N−1 rounds. A member newly live (joined,
//! or back across a healed partition) has never been sent to or was sent to long ago, so it is
//! among the first picked: news crosses a heal at once. The first round's order is random and
//! differs from node to node, so no two nodes exchange in lockstep.

use std::collections::{BTreeMap, BTreeSet};

use crate::NodeAddr;
use crate::NodeId;
use rand10::rngs::StdRng;
use rand10::RngExt;

/// When we last sent each member a round's digest.
#[derive(Debug, Default)]
pub(super) struct Partners {
    /// Round (counted from 1) of the last digest to each member.
    last_sent: BTreeMap<NodeId, u64>,
    rounds: u64,
}

impl Partners {
    /// This round's partner among `peers` (the live members), remembered as sent to; `None`
    /// with no peers.
    pub fn next(&mut self, peers: &[NodeAddr], rng: &mut StdRng) -> Option<NodeAddr> {
        let sent = |peer: &NodeAddr| self.last_sent.get(&peer.id).copied().unwrap_or(0);
        let oldest = peers.iter().map(sent).min()?;
        let ties = peers.iter().filter(|p| sent(p) == oldest).count();
        let pick = rng.random_range(0..ties);
        let partner = *peers.iter().filter(|p| sent(p) == oldest).nth(pick)?;
        self.rounds += 1;
        self.last_sent.insert(partner.id, self.rounds);
        self.forget_gone(peers);
        Some(partner)
    }

    /// Drops members no longer live once they outnumber the live ones, so the map stays
    /// within twice the membership. A member dropped and seen again counts as never sent to.
    fn forget_gone(&mut self, peers: &[NodeAddr]) {
        if self.last_sent.len() > 2 * peers.len() {
            let live: BTreeSet<NodeId> = peers.iter().map(|p| p.id).collect();
            self.last_sent.retain(|id, _| live.contains(id));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand10::SeedableRng;
    use std::net::SocketAddr;

    fn peer(n: u128) -> NodeAddr {
        NodeAddr {
            id: NodeId::from_u128(n),
            addr: SocketAddr::from(([127, 0, 0, 1], 7000 + n as u16)),
        }
    }

    fn rounds(partners: &mut Partners, peers: &[NodeAddr], n: usize, seed: u64) -> Vec<NodeId> {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..n)
            .filter_map(|_| partners.next(peers, &mut rng))
            .map(|p| p.id)
            .collect()
    }

    /// The property GC rests on: any N−1 consecutive rounds reach every live member.
    #[test]
    fn every_run_of_n_rounds_reaches_every_live_member() {
        let peers: Vec<NodeAddr> = (1..=50).map(peer).collect();
        let mut partners = Partners::default();
        let picks = rounds(&mut partners, &peers, 200, 7);
        for window in picks.windows(peers.len()) {
            assert_eq!(window.iter().collect::<BTreeSet<_>>().len(), peers.len());
        }
    }

    #[test]
    fn nodes_start_in_different_orders() {
        let peers: Vec<NodeAddr> = (1..=20).map(peer).collect();
        let first = rounds(&mut Partners::default(), &peers, 20, 1);
        let second = rounds(&mut Partners::default(), &peers, 20, 2);
        assert_ne!(first, second);
        assert_ne!(first, peers.iter().map(|p| p.id).collect::<Vec<_>>());
    }

    /// A member back across a healed partition (live again after rounds without it) is picked
    /// before every member sent to while it was away.
    #[test]
    fn a_member_back_from_a_partition_is_picked_first() {
        let peers: Vec<NodeAddr> = (1..=10).map(peer).collect();
        let mut partners = Partners::default();
        rounds(&mut partners, &peers, 10, 3);
        let near: Vec<NodeAddr> = peers[..5].to_vec();
        rounds(&mut partners, &near, 20, 4);
        let after_heal = rounds(&mut partners, &peers, 5, 5);
        let far: BTreeSet<NodeId> = peers[5..].iter().map(|p| p.id).collect();
        assert_eq!(after_heal.into_iter().collect::<BTreeSet<_>>(), far);
    }

    #[test]
    fn members_gone_are_never_picked_and_forgotten() {
        let peers: Vec<NodeAddr> = (1..=30).map(peer).collect();
        let mut partners = Partners::default();
        rounds(&mut partners, &peers, 30, 1);
        let few: Vec<NodeAddr> = peers[..3].to_vec();
        let picks = rounds(&mut partners, &few, 9, 2);
        assert!(picks.iter().all(|id| few.iter().any(|p| p.id == *id)));
        assert!(partners.last_sent.len() <= 2 * few.len());
    }

    #[test]
    fn no_peers_no_partner() {
        let mut rng = StdRng::seed_from_u64(1);
        assert!(Partners::default().next(&[], &mut rng).is_none());
    }
}
