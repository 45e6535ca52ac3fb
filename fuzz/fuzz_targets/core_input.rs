//! Arbitrary bytes from a peer into a live core, on any channel, from a member or a stranger:
//! the whole network-ingress surface of a node (membership datagrams, replication ops,
//! digests and full states, variables, placement, agents). The first byte picks the channel
//! and the sender; the rest is split into up to four messages at bytes the input chooses.
//!
//! Property: nothing panics (overflow checks are on), and the core still takes a local write.

#![no_main]

use std::time::Duration;

use bytes::Bytes;
use foundation_core::membership::{MemberId, MembershipConfig, NodeMetadata};
use foundation_core::replication::{ReplicationConfig, Write};
use foundation_core::time::Instant;
use foundation_core::{Channel, Core, CoreConfig, Input, NodeId};
use libfuzzer_sys::fuzz_target;

const CHANNELS: [Channel; 6] = Channel::ALL;

fn core() -> Core {
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

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let mut core = core();
    let channel = CHANNELS[usize::from(first % 6)];
    let from = NodeId::from_u128(u128::from(first / 6 % 4) + 2);
    let mut now = Instant::ZERO;
    for message in rest.split(|b| *b == 0xF5).take(4) {
        let payload = Bytes::copy_from_slice(message);
        core.handle(now, Input::Received { from, channel, payload });
        now = now + Duration::from_millis(250);
        core.handle_timeout(now);
        while core.poll_effect().is_some() {}
    }
    let write = Write {
        keyspace: "config".into(),
        key: "after".into(),
        value: Some(b"works".to_vec()),
    };
    assert!(core.write(now, write).is_ok(), "a node fed garbage still takes writes");
});
