//! The logical channels between two nodes, and the largest frame each accepts. The transport
//! maps each onto QUIC; the protocols only name them.

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
/// | bulk         | one stream per transfer, on a connection of its own whose congestion control yields to queueing delay |
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

/// Largest membership datagram: the size QUIC can carry before path-MTU discovery has run
/// (quinn reports ≈ 1162 bytes of datagram payload right after the handshake).
pub const MEMBERSHIP_DATAGRAM_MAX: usize = 1200;

/// The largest frame each channel accepts, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChannelLimits {
    /// Membership datagram, envelope included. Default and maximum 1200.
    pub membership: usize,
    /// Default 64 KiB: coordination messages are small and urgent.
    pub coordination: usize,
    /// Default 4 MiB.
    pub replication: usize,
    /// Default 1 MiB.
    pub events: usize,
    /// Request and response each. Default 4 MiB.
    pub rpc: usize,
    /// A whole bulk transfer. Default 1 GiB.
    pub bulk: usize,
}

impl ChannelLimits {
    /// The limit of `channel`.
    pub const fn of(&self, channel: Channel) -> usize {
        match channel {
            Channel::Membership => self.membership,
            Channel::Coordination => self.coordination,
            Channel::Replication => self.replication,
            Channel::Events => self.events,
            Channel::Rpc => self.rpc,
            Channel::Bulk => self.bulk,
        }
    }
}

impl ChannelLimits {
    /// The defaults, as a constant so limits above the transport can be checked against them
    /// at compile time.
    pub const DEFAULT: Self = Self {
        membership: MEMBERSHIP_DATAGRAM_MAX,
        coordination: 64 << 10,
        replication: 4 << 20,
        events: 1 << 20,
        rpc: 4 << 20,
        bulk: 1 << 30,
    };
}

impl Default for ChannelLimits {
    fn default() -> Self {
        Self::DEFAULT
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
