//! How each logical channel maps onto QUIC (the channels themselves are the core's).

use foundation_core::Channel;

/// The QUIC send priority of `channel`'s streams: higher goes first.
///
/// quinn only reorders data not yet sent, and streams of equal priority already take turns;
/// the priorities make sure a saturating bulk transfer yields to everything else.
pub(crate) const fn priority(channel: Channel) -> i32 {
    match channel {
        Channel::Coordination => 100,
        Channel::Membership | Channel::Rpc => 50,
        Channel::Replication | Channel::Events => 0,
        Channel::Bulk => -100,
    }
}
