//! Arbitrary bytes from a peer into a live core, on any channel, from a member or a stranger:
//! the whole network-ingress surface of a node (membership datagrams, replication ops,
//! digests and full states, variables, placement, agents). The first byte picks the channel
//! and the sender; the rest is split into up to four messages at bytes the input chooses.
//!
//! Properties: nothing panics (overflow checks are on), the core still takes a local write,
//! and the membership's own push-pull decoder agrees with postcard's decoding of each message.

use std::time::Duration;

use bytes::Bytes;
use foundation_core::membership::decode_push_pull;
use foundation_core::membership::{MemberId, MembershipConfig, NodeMetadata};
use foundation_core::replication::{ReplicationConfig, Write};
use foundation_core::time::Instant;
use foundation_core::{Channel, Core, CoreConfig, CoreMessage, Input, NodeId};

const CHANNELS: [Channel; 6] = Channel::ALL;

/// A fresh core with replication, node 1 of a cluster of one.
pub fn core() -> Core {
    let config = CoreConfig {
        me: MemberId {
            node: NodeId::from_u128(1),
            addr: ([127, 0, 0, 1], 7001).into(),
            generation: 1,
        },
        membership: MembershipConfig::development(),
        metadata: NodeMetadata::default(),
        seed: 1,
    };
    Core::new(config, Instant::ZERO).with_replication(ReplicationConfig::default(), 1)
}

/// Checks the properties above on one input; panics if one fails.
pub fn check(data: &[u8]) {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let channel = CHANNELS[usize::from(first % 6)];
    let from = NodeId::from_u128(u128::from(first / 6 % 4) + 2);
    feed(channel, from, rest);
}

/// Feeds a fresh core up to four messages from `from` on `channel` (`input` split at the byte
/// 0xF5), firing its timers between them; then checks that it still takes a local write.
pub(crate) fn feed(channel: Channel, from: NodeId, input: &[u8]) {
    let mut core = core();
    let mut now = Instant::ZERO;
    for message in input.split(|b| *b == 0xF5).take(4) {
        decoders_agree(message);
        let payload = Bytes::copy_from_slice(message);
        core.handle(
            now,
            Input::Received {
                from,
                channel,
                payload,
            },
        );
        now = now + Duration::from_millis(250);
        core.handle_timeout(now);
        while core.poll_effect().is_some() {}
    }
    assert_takes_a_write(&mut core, now, "a node fed garbage");
}

/// A stream payload the push-pull decoder takes decodes as postcard decodes it: the same
/// message, or an error where postcard fails.
fn decoders_agree(payload: &[u8]) {
    let Some(ours) = decode_push_pull(payload) else {
        return;
    };
    match (ours, postcard::from_bytes::<CoreMessage>(payload)) {
        (Ok(ours), Ok(CoreMessage::Membership(theirs))) => assert_eq!(ours, theirs),
        (ours, theirs) => assert_eq!(ours.is_ok(), theirs.is_ok(), "{payload:?}"),
    }
}

/// The property every check that feeds a live core ends with: the node still takes a local
/// write, so whatever it was fed left it working.
pub fn assert_takes_a_write(core: &mut Core, now: Instant, fed: &str) {
    let write = Write {
        keyspace: "config".into(),
        key: "after".into(),
        value: Some(b"works".to_vec()),
    };
    assert!(core.write(now, write).is_ok(), "{fed} still takes writes");
}
