//! The logical channels that share one QUIC connection, and how each maps onto QUIC.

use std::fmt;

/// A logical channel. Each maps onto QUIC so that traffic on one never waits behind another:
///
/// | channel      | QUIC mapping                                  |
/// |--------------|-----------------------------------------------|
/// | membership   | datagrams (unreliable, ≤ 1200 bytes)          |
/// | coordination | one long-lived stream per direction, highest priority |
/// | replication  | one long-lived stream per direction           |
/// | events       | one long-lived stream per direction           |
/// | rpc          | one bidirectional stream per request          |
/// | bulk         | one stream per transfer, lowest priority      |
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum Channel {
    /// SWIM probes and gossip.
    Membership,
    /// Placement handoff and agent protocol messages: small and urgent.
    Coordination,
    /// CRDT ops and digests.
    Replication,
    /// Pub/sub messages.
    Events,
    /// Request/response.
    Rpc,
    /// Full-state sync and large payloads.
    Bulk,
}

impl Channel {
    /// Every channel, in tag order.
    pub const ALL: [Channel; 6] = [
        Channel::Membership,
        Channel::Coordination,
        Channel::Replication,
        Channel::Events,
        Channel::Rpc,
        Channel::Bulk,
    ];

    /// The channels carried on one long-lived stream per direction.
    pub const STREAMED: [Channel; 3] =
        [Channel::Coordination, Channel::Replication, Channel::Events];

    /// The byte that names this channel at the start of a stream.
    pub const fn tag(self) -> u8 {
        match self {
            Channel::Membership => 1,
            Channel::Coordination => 2,
            Channel::Replication => 3,
            Channel::Events => 4,
            Channel::Rpc => 5,
            Channel::Bulk => 6,
        }
    }

    /// The channel a stream-header tag names, if any.
    pub const fn from_tag(tag: u8) -> Option<Channel> {
        match tag {
            1 => Some(Channel::Membership),
            2 => Some(Channel::Coordination),
            3 => Some(Channel::Replication),
            4 => Some(Channel::Events),
            5 => Some(Channel::Rpc),
            6 => Some(Channel::Bulk),
            _ => None,
        }
    }

    /// A dense index, for per-channel arrays.
    pub const fn index(self) -> usize {
        self.tag() as usize - 1
    }

    /// The QUIC send priority of this channel's streams: higher goes first.
    ///
    /// quinn only reorders data not yet sent, and streams of equal priority already take turns;
    /// the priorities make sure a saturating bulk transfer yields to everything else.
    pub const fn priority(self) -> i32 {
        match self {
            Channel::Coordination => 100,
            Channel::Membership | Channel::Rpc => 50,
            Channel::Replication | Channel::Events => 0,
            Channel::Bulk => -100,
        }
    }

    /// The lowercase name used in logs and metric labels.
    pub const fn name(self) -> &'static str {
        match self {
            Channel::Membership => "membership",
            Channel::Coordination => "coordination",
            Channel::Replication => "replication",
            Channel::Events => "events",
            Channel::Rpc => "rpc",
            Channel::Bulk => "bulk",
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_round_trip_and_indices_are_dense() {
        for (i, channel) in Channel::ALL.into_iter().enumerate() {
            assert_eq!(Channel::from_tag(channel.tag()), Some(channel));
            assert_eq!(channel.index(), i);
        }
        assert_eq!(Channel::from_tag(0), None);
        assert_eq!(Channel::from_tag(7), None);
    }
}
