//! The membership table as the application sees it, and the events that change it.

use crate::{NodeAddr, NodeId};
use serde::Serialize;

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
    /// Time to see whether a suspect we checked directly refuted (`checks`): the suspect and
    /// the incarnation it was suspected at.
    Check(MemberId, foca::Incarnation),
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

fn as_text<S: serde::Serializer>(id: &NodeId, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(id)
}
