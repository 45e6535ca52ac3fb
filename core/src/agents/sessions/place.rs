//! Where a session is coordinated when it is placed: on the live member with the highest
//! rendezvous weight of the session id — the placement layer's hash
//! ([`crate::placement::rendezvous::weight`]), so sessions spread over the cluster and every
//! node that sees the same members picks the same one, whatever order it lists them in.

use crate::vars::SessionId;
use crate::NodeAddr;

/// The rendezvous choice among `candidates` (the caller and the members it sees alive) for
/// `session`; `None` without candidates.
pub fn coordinator(
    session: SessionId,
    candidates: impl Iterator<Item = NodeAddr>,
) -> Option<NodeAddr> {
    let workload = format!("session-{}", session.0);
    candidates.max_by_key(|c| {
        (
            crate::placement::rendezvous::weight(&workload, 0, c.id),
            c.id,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NodeId;

    fn addr(i: u128) -> NodeAddr {
        NodeAddr {
            id: NodeId::from_u128(i),
            addr: ([127, 0, 0, 1], 7000).into(),
        }
    }

    #[test]
    fn sessions_spread_over_members_and_the_choice_ignores_their_order() {
        let nodes: Vec<NodeAddr> = (1..=5).map(addr).collect();
        let mut chosen = std::collections::BTreeSet::new();
        for id in 0..200 {
            let forward = coordinator(SessionId(id), nodes.iter().copied());
            let backward = coordinator(SessionId(id), nodes.iter().rev().copied());
            assert_eq!(forward, backward);
            chosen.extend(forward.map(|n| n.id));
        }
        assert_eq!(chosen.len(), 5, "every member coordinates some sessions");
    }
}
