//! The membership table as the application sees it, and the events that change it.

use crate::packed_map::PackedMap;
use crate::{NodeAddr, NodeId};
use serde::Serialize;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;

use super::identity::MemberId;
use super::metadata::NodeMetadata;
use crate::time::Instant;

/// Membership's timers.
#[derive(Clone, Debug, PartialEq)]
pub enum MembershipTimer {
    /// One of foca's.
    Swim(foca::Timer<MemberId>),
    /// Time for a push-pull exchange with a random member.
    PushPull,
    /// Time to forget stale suspicion reports.
    Prune,
    /// Time to send gossip held back by the eager-gossip rate limit.
    Gossip,
    /// Time to compare digests with a random member, a while after members came back or we
    /// renewed: whatever the push-pulls of the heal did not bring is exchanged then.
    Reconcile,
    /// Time to introduce ourselves to the members learnt a probe period ago whose metadata
    /// has not come since (`introductions`).
    Introduce,
    /// Time to see whether a suspect we checked directly refuted (`checks`): the suspect and
    /// the incarnation it was suspected at.
    Check(MemberId, foca::Incarnation),
    /// Time to tell a member we suspect, again, that it is suspected (`checks`): the suspect
    /// and the incarnation our suspicion holds.
    Retell(MemberId, foca::Incarnation),
    /// Time to see whether a member whose port was reported closed refuted
    /// (`closed_port`): the member and the incarnation it was checked at.
    ClosedPort(MemberId, foca::Incarnation),
    /// Time to tell our declaration of a member a second time (`declarations`): the member
    /// and the incarnation it was declared at.
    RetellDeclared(MemberId, foca::Incarnation),
}

/// What we believe about a member.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberState {
    /// Answering probes.
    Alive,
    /// Declared failed: stopped answering and did not refute the suspicion.
    Failed,
    /// Left the cluster on purpose.
    Left,
}

/// One member, for [`crate::Core::members`] and events.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MemberView {
    /// The node (as hex text in JSON: a 128-bit number does not fit JSON's numbers).
    #[serde(serialize_with = "as_text")]
    pub id: NodeId,
    /// Where it listens.
    pub addr: std::net::SocketAddr,
    /// Which life of the node.
    pub generation: u64,
    /// Its state.
    pub state: MemberState,
    /// What it says about itself, once known (shared with the membership table).
    pub metadata: Option<std::sync::Arc<NodeMetadata>>,
    /// When it entered this state, on the driver's clock.
    #[serde(skip)]
    pub since: Instant,
}

impl MemberView {
    /// The member's transport address.
    pub fn node_addr(&self) -> NodeAddr {
        NodeAddr {
            id: self.id,
            addr: self.addr,
        }
    }

    /// The life this entry describes.
    pub fn member_id(&self) -> MemberId {
        MemberId {
            node: self.id,
            addr: self.addr,
            generation: self.generation,
        }
    }

    pub(crate) fn new(id: &MemberId, state: MemberState, since: Instant) -> Self {
        Self {
            id: id.node,
            addr: id.addr,
            generation: id.generation,
            state,
            metadata: None,
            since,
        }
    }
}

/// Why a member cannot be forced out of the table.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ForceLeaveError {
    /// No member with this id is in the table.
    #[error("no member {0} in the table")]
    Unknown(NodeId),
    /// The member answers probes (or is only suspected): forcing it out would be undone by its
    /// next answer.
    #[error("member {0} is alive; force-leave removes only failed or left members (make it leave with `foundation leave --node` on it)")]
    Alive(NodeId),
    /// This node itself.
    #[error("{0} is this node; use `foundation leave` to make it leave")]
    Myself(NodeId),
}

/// A change in membership.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MembershipEvent {
    /// A member is alive: new, rejoined after failing or leaving, or restarted.
    Up(MemberView),
    /// A member's metadata changed.
    Updated(MemberView),
    /// A member was declared failed.
    Failed(MemberView),
    /// A member left gracefully.
    Left(MemberView),
    /// A failed or departed member was removed from the table: `reap_after` passed, or an
    /// operator forced it out. It is listed again when it comes back.
    Removed(MemberView),
    /// We joined a cluster (have at least one live peer).
    Joined,
    /// We have no live peers left.
    Isolated,
}

/// The member table: each member's [`MemberView`], stored compactly.
///
/// Every node holds one entry per member (O(N²) entries in a simulation of N nodes), and a
/// `MemberView` is 80 bytes, half of it an id the table's key repeats and a `SocketAddr` sized
/// for IPv6. An entry keeps neither, and packs the state beside an IPv4 address: 40 bytes
/// (with its key, 56 instead of 96). Views are built when asked for, with the same contents.
#[derive(Clone, Debug, Default)]
pub(crate) struct View {
    entries: PackedMap<NodeId, Entry>,
}

/// One member, without its id (the key).
#[derive(Clone, Debug)]
struct Entry {
    generation: u64,
    since: Instant,
    metadata: Option<Arc<NodeMetadata>>,
    place: Place,
}

/// Where a member listens, and its state (packed together: the state fills the address's
/// spare bytes). IPv6 addresses are boxed: rare, and twice the size of the rest.
#[derive(Clone, Debug)]
enum Place {
    V4 {
        ip: [u8; 4],
        port: u16,
        state: MemberState,
    },
    Other {
        addr: Box<SocketAddr>,
        state: MemberState,
    },
}

impl Entry {
    fn of(view: &MemberView) -> Self {
        let state = view.state;
        let place = match view.addr {
            SocketAddr::V4(addr) => Place::V4 {
                ip: addr.ip().octets(),
                port: addr.port(),
                state,
            },
            addr => Place::Other {
                addr: Box::new(addr),
                state,
            },
        };
        Self {
            generation: view.generation,
            since: view.since,
            metadata: view.metadata.clone(),
            place,
        }
    }

    fn state(&self) -> MemberState {
        match &self.place {
            Place::V4 { state, .. } | Place::Other { state, .. } => *state,
        }
    }

    fn view(&self, id: NodeId) -> MemberView {
        let (addr, state) = match &self.place {
            Place::V4 { ip, port, state } => {
                (SocketAddrV4::new(Ipv4Addr::from(*ip), *port).into(), *state)
            }
            Place::Other { addr, state } => (**addr, *state),
        };
        MemberView {
            id,
            addr,
            generation: self.generation,
            state,
            metadata: self.metadata.clone(),
            since: self.since,
        }
    }
}

impl View {
    /// How many members.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether `node` is in the table.
    pub(crate) fn contains_key(&self, node: &NodeId) -> bool {
        self.entries.contains_key(node)
    }

    /// The state of `node`, if it is in the table: without building its view (an address,
    /// the metadata's count), for the checks that read only that, after every step.
    pub(crate) fn state(&self, node: &NodeId) -> Option<MemberState> {
        self.entries.get(node).map(Entry::state)
    }

    /// The view of `node`, if it is in the table.
    pub(crate) fn get(&self, node: &NodeId) -> Option<MemberView> {
        self.entries.get(node).map(|entry| entry.view(*node))
    }

    /// Sets the view of `node` (`view.id`), new or changed; the one it replaced, if any.
    pub(crate) fn insert(&mut self, node: NodeId, view: MemberView) -> Option<MemberView> {
        debug_assert_eq!(node, view.id);
        let before = self.entries.insert(node, Entry::of(&view))?;
        Some(before.view(node))
    }

    /// Every member's state, in node id order (without building its view).
    pub(crate) fn states(&self) -> impl Iterator<Item = (NodeId, MemberState)> + '_ {
        self.entries.iter().map(|(id, entry)| (*id, entry.state()))
    }

    /// Sets the view of `node` (`view.id`), new or changed; the state of the one it replaced,
    /// if any (building the whole view costs a copy, and a lookup before it a search).
    pub(crate) fn put(&mut self, node: NodeId, view: &MemberView) -> Option<MemberState> {
        debug_assert_eq!(node, view.id);
        let before = self.entries.insert_unsettled(node, Entry::of(view))?;
        Some(before.state())
    }

    /// Packs what [`View::put`] added since the last call (see [`PackedMap::settle`]).
    pub(crate) fn settle(&mut self) {
        self.entries.settle();
    }

    /// Gives `node`'s entry, if any, this metadata; its view then.
    pub(crate) fn set_metadata(
        &mut self,
        node: &NodeId,
        metadata: Arc<NodeMetadata>,
    ) -> Option<MemberView> {
        let entry = self.entries.get_mut(node)?;
        entry.metadata = Some(metadata);
        Some(entry.view(*node))
    }

    /// Takes `node` out of the table; its view, if it was in.
    pub(crate) fn remove(&mut self, node: &NodeId) -> Option<MemberView> {
        self.entries.remove(node).map(|entry| entry.view(*node))
    }

    /// Every member's view, in node id order.
    pub(crate) fn values(&self) -> impl Iterator<Item = MemberView> + '_ {
        self.entries.iter().map(|(id, entry)| entry.view(*id))
    }

    /// The first alive member after `node` in node id order, wrapping around; never `node`.
    pub(crate) fn alive_after(&self, node: &NodeId) -> Option<MemberView> {
        let alive = |(id, entry): (&NodeId, &Entry)| {
            (id != node && entry.state() == MemberState::Alive).then(|| entry.view(*id))
        };
        let after = self.entries.iter_after(node).find_map(alive);
        after.or_else(|| self.entries.iter().find_map(alive))
    }

    /// The `n`th alive member in node id order (counting from 0), as `alive().nth(n)` over
    /// views would find it, without building a view (and cloning its metadata) for each
    /// member passed over.
    pub(crate) fn nth_alive(&self, n: usize, all_alive: bool) -> Option<MemberView> {
        if all_alive {
            // A formed cluster's periodic digest picks its peer here: no walk of 1,000 entries.
            return self.entries.nth(n).map(|(id, entry)| entry.view(*id));
        }
        self.entries
            .iter()
            .filter(|(_, entry)| entry.state() == MemberState::Alive)
            .nth(n)
            .map(|(id, entry)| entry.view(*id))
    }

    /// How many calls so far could have changed the table (see [`PackedMap::writes`]).
    pub(crate) fn writes(&self) -> u64 {
        self.entries.writes()
    }
}

fn as_text<S: serde::Serializer>(id: &NodeId, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(id: u128, addr: &str, state: MemberState) -> MemberView {
        MemberView {
            id: NodeId::from_u128(id),
            addr: addr.parse().expect("an address"),
            generation: 7,
            state,
            metadata: Some(Arc::new(NodeMetadata::default())),
            since: Instant::from_elapsed(std::time::Duration::from_nanos(5)),
        }
    }

    /// The next alive member after a node: in id order, skipping members not alive and the
    /// node itself, wrapping around; none when nobody else is alive.
    #[test]
    fn the_next_alive_member_wraps_around() {
        let mut table = View::default();
        for (id, state) in [
            (1, MemberState::Alive),
            (3, MemberState::Failed),
            (5, MemberState::Alive),
            (7, MemberState::Left),
        ] {
            table.insert(NodeId::from_u128(id), view(id, "10.0.0.1:7000", state));
        }
        let after =
            |table: &View, id: u128| table.alive_after(&NodeId::from_u128(id)).map(|v| v.id);
        assert_eq!(after(&table, 1), Some(NodeId::from_u128(5)));
        assert_eq!(after(&table, 3), Some(NodeId::from_u128(5)));
        assert_eq!(after(&table, 5), Some(NodeId::from_u128(1)));
        assert_eq!(after(&table, 9), Some(NodeId::from_u128(1)));
        table.remove(&NodeId::from_u128(5));
        assert_eq!(after(&table, 1), None);
    }

    /// A view comes back out of the table as it went in, for IPv4 and IPv6 addresses, and
    /// in key order.
    #[test]
    fn views_come_back_unchanged() {
        let v4 = view(2, "10.0.0.9:7000", MemberState::Failed);
        let v6 = view(1, "[fe80::1%3]:7001", MemberState::Left);
        let mut table = View::default();
        assert_eq!(table.insert(v4.id, v4.clone()), None);
        assert_eq!(table.insert(v6.id, v6.clone()), None);
        assert_eq!(table.get(&v4.id), Some(v4.clone()));
        assert_eq!(table.values().collect::<Vec<_>>(), [v6.clone(), v4.clone()]);
        let mut alive = v4.clone();
        alive.state = MemberState::Alive;
        assert_eq!(table.insert(v4.id, alive.clone()), Some(v4));
        assert_eq!(table.remove(&v6.id), Some(v6.clone()));
        assert_eq!(table.len(), 1);
        assert!(table.contains_key(&alive.id));
        let shared = Arc::new(NodeMetadata {
            version: "2".into(),
            ..NodeMetadata::default()
        });
        let mut updated = alive.clone();
        updated.metadata = Some(shared.clone());
        assert_eq!(
            table.set_metadata(&alive.id, shared.clone()),
            Some(updated.clone())
        );
        assert_eq!(table.get(&alive.id), Some(updated));
        assert_eq!(table.set_metadata(&v6.id, shared), None);
        assert_eq!(table.put(alive.id, &alive), Some(MemberState::Alive));
        assert_eq!(table.get(&alive.id), Some(alive.clone()));
        assert_eq!(
            table.get(&alive.id).map(|v| v.state),
            Some(MemberState::Alive)
        );
        assert_eq!(table.get(&v6.id), None);
        assert_eq!(
            table.states().collect::<Vec<_>>(),
            [(alive.id, MemberState::Alive)]
        );
        assert_eq!(std::mem::size_of::<Entry>(), 40);
    }
}
