//! Arbitrary bytes as membership datagrams (SWIM packets, suspicion reports, leave notices),
//! straight into the membership channel of a live core: the decoder a stranger reaches with one
//! UDP packet. The first byte picks the sender; the rest is split into up to four datagrams at
//! the byte 0xF5.
//!
//! Properties: nothing panics (overflow checks are on in the test suite), and the core still
//! takes a local write.

use foundation_core::{Channel, NodeId};

use crate::core_input::feed;

/// Checks the properties above on one input; panics if one fails.
pub fn check(data: &[u8]) {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let from = NodeId::from_u128(u128::from(first % 4) + 2);
    feed(Channel::Membership, from, rest);
}
