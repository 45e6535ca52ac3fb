//! Membership messages that travel outside foca's own packets.

use bytes::{BufMut, Bytes, BytesMut};
use foca::{Incarnation, Member};
use serde::{Deserialize, Serialize};

use super::identity::MemberId;
use super::metadata::Versioned;
use crate::NodeId;

/// First byte of a membership datagram: what follows.
pub(crate) mod datagram_kind {
    /// A foca packet.
    pub const SWIM: u8 = 0;
    /// A [`super::SuspectReport`].
    pub const SUSPECT_REPORT: u8 = 1;
    /// A [`super::MemberId`] leaving on purpose (also sent on the coordination stream).
    pub const LEAVING: u8 = 2;
}

/// "My probe of `member` failed": an independent confirmation that shortens everyone else's
/// suspicion timeout (Lifeguard).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SuspectReport {
    /// Who reports.
    pub reporter: NodeId,
    /// Who is suspected.
    pub member: MemberId,
    /// At which incarnation.
    pub incarnation: Incarnation,
}

/// Messages on the coordination and replication channels.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum MembershipMessage {
    /// A full view of membership and metadata; `reply` asks the receiver to answer with its own.
    PushPull {
        /// Every member the sender knows, in any state.
        members: Vec<Member<MemberId>>,
        /// Every node's metadata the sender knows.
        metadata: Vec<(NodeId, Versioned)>,
        /// Whether the receiver should send its own view back.
        reply: bool,
    },
    /// The sender's metadata changed.
    Metadata {
        /// Whose.
        node: NodeId,
        /// The new value.
        metadata: Versioned,
    },
    /// The sender is leaving the cluster on purpose.
    Leaving(MemberId),
    /// The sender learnt of the receiver without its metadata: here is the sender's own, and
    /// the receiver answers with [`MembershipMessage::Metadata`]. Two small messages per pair,
    /// instead of a full push-pull per newly seen member.
    Introduce {
        /// The sender, with the address to answer at.
        member: MemberId,
        /// The sender's metadata.
        metadata: Versioned,
    },
    /// An operator removed this failed or departed member from the sender's table
    /// (`foundation force-leave`): remove it too, unless it is alive here or in a newer life.
    Forget(MemberId),
    /// The periodic push-pull's opening: a digest of the sender's live membership. A receiver
    /// whose own digest differs answers with a full [`MembershipMessage::PushPull`] asking for
    /// the sender's; one whose digest matches has nothing to exchange. Clusters that agree —
    /// nearly always — then pay a few dozen bytes per interval instead of the whole table.
    Digest {
        /// The sender, with the address to answer at.
        from: MemberId,
        /// See [`super::Membership::digest`].
        digest: u64,
    },
}

pub(crate) fn tagged(kind: u8, body: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(body.len() + 1);
    out.put_u8(kind);
    out.put_slice(body);
    out.freeze()
}
