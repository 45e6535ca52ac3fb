//! Membership messages that travel outside foca's own packets.

use bytes::Bytes;
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
    /// A [`super::DigestDatagram`]: the periodic digest check, which fits a datagram and
    /// needs no connection (a stream would redial an idle one every interval).
    pub const DIGEST: u8 = 3;
    /// Nothing: sent to the next alive member each probe period, so that a crashed member's
    /// host is asked to answer with ICMP every period (see `closed_port`).
    pub const TOUCH: u8 = 4;
    /// A [`super::DeclaredNotice`]. A node from before this kind counts it as a bad datagram
    /// and learns the declaration from SWIM's gossip, as it did.
    pub const DECLARED: u8 = 5;
}

/// The periodic digest check as a datagram: what [`MembershipMessage::Digest`] says on a
/// stream. Lost now and then, it is sent again at the next interval.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestDatagram {
    /// The sender, with the address to answer at.
    pub from: MemberId,
    /// See [`super::Membership::digest`].
    pub digest: u64,
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

/// "I declared `member` failed at `incarnation`" (by my suspicion timer or a closed port's
/// check): sent once to every live member, so the declaration reaches those its gossip misses
/// (see `super::declarations`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeclaredNotice {
    /// Who declared it.
    pub declarer: MemberId,
    /// The life declared failed.
    pub member: MemberId,
    /// The incarnation it was declared at.
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

/// Whether the membership datagram `payload` is one its receiver never answers: SWIM's acks,
/// gossip, feeds and broadcasts, a ping request (answered only if its target answers the
/// helper), suspect reports, declaration notices, leave notices, digest checks and touches. A
/// transport that takes a peer's silence after a datagram as a sign it stopped listening must
/// not count these. Anything it cannot read is
/// taken to expect an answer.
pub fn expects_no_answer(payload: &[u8]) -> bool {
    use foca::Message;
    match payload.split_first() {
        Some((&datagram_kind::SWIM, packet)) => {
            match postcard::take_from_bytes::<foca::Header<MemberId>>(packet) {
                Ok((header, _)) => !matches!(
                    header.message,
                    Message::Ping(_) | Message::IndirectPing { .. } | Message::Announce
                ),
                Err(_) => false,
            }
        }
        Some((
            &datagram_kind::SUSPECT_REPORT
            | &datagram_kind::LEAVING
            | &datagram_kind::DIGEST
            | &datagram_kind::TOUCH
            | &datagram_kind::DECLARED,
            _,
        )) => true,
        _ => false,
    }
}

pub(crate) fn tagged(kind: u8, body: &[u8]) -> Bytes {
    // A `Vec` of exactly its length becomes `Bytes` as it is; a `BytesMut` checked for room
    // at each put and converted at `freeze` cost a third more, once per datagram sent.
    let mut out = Vec::with_capacity(body.len() + 1);
    out.push(kind);
    out.extend_from_slice(body);
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use foca::{Header, Message};

    fn swim(message: Message<MemberId>) -> Bytes {
        let member = |n: u16| MemberId {
            node: NodeId::from_u128(u128::from(n)),
            addr: std::net::SocketAddr::from(([127, 0, 0, 1], n)),
            generation: 1,
        };
        let header = Header {
            src: member(1),
            src_incarnation: 0,
            dst: member(2),
            message,
        };
        let mut packet = postcard::to_allocvec(&header).unwrap();
        packet.extend_from_slice(&[7; 20]); // piggybacked updates follow the header
        tagged(datagram_kind::SWIM, &packet)
    }

    #[test]
    fn probes_and_announces_expect_an_answer_the_rest_do_not() {
        let target = MemberId {
            node: NodeId::from_u128(3),
            addr: std::net::SocketAddr::from(([127, 0, 0, 1], 3)),
            generation: 1,
        };
        for message in [
            Message::Ping(4),
            Message::IndirectPing {
                origin: target,
                probe_number: 4,
            },
            Message::Announce,
        ] {
            assert!(!expects_no_answer(&swim(message.clone())), "{message:?}");
        }
        for message in [
            Message::Ack(4),
            Message::Gossip,
            Message::Feed,
            Message::Broadcast,
            Message::PingReq {
                target,
                probe_number: 4,
            },
            Message::ForwardedAck {
                origin: target,
                probe_number: 4,
            },
        ] {
            assert!(expects_no_answer(&swim(message.clone())), "{message:?}");
        }
        assert!(expects_no_answer(&[datagram_kind::SUSPECT_REPORT, 1, 2]));
        // A touch is never answered: counted as expecting one, a member's touches would move
        // its successor's membership off the sealed socket.
        assert!(expects_no_answer(&[datagram_kind::TOUCH]));
        assert!(expects_no_answer(&[datagram_kind::DECLARED, 1, 2]));
    }

    #[test]
    fn what_cannot_be_read_is_taken_to_expect_an_answer() {
        for payload in [
            &b""[..],
            b"\x00",
            b"\x00\xff\xff",
            b"old",
            b"\x09 other kind",
        ] {
            assert!(!expects_no_answer(payload), "{payload:?}");
        }
    }
}
