//! The wire envelope of the stream channels: one tag byte naming the machine a message is for,
//! then that machine's message. The node's `CoreMessage` decodes the whole (a postcard enum is
//! its variant index, then the variant); each machine encodes its own variant here without
//! naming its parent's type, so no machine imports the node that composes it.

use bytes::Bytes;
use serde::Serialize;

/// The membership machine's tag (`CoreMessage::Membership`).
pub const MEMBERSHIP: u8 = 0;
/// The replication machine's tag (`CoreMessage::Replication`).
pub const REPLICATION: u8 = 1;
/// The variables machine's tag (`CoreMessage::Vars`).
pub const VARS: u8 = 2;
/// The placement machine's tag (`CoreMessage::Placement`).
pub const PLACEMENT: u8 = 3;
/// The caches' tag (`CoreMessage::Cache`).
pub const CACHE: u8 = 4;

/// Encodes `message` behind `tag`. Encoding these types into a `Vec` cannot fail; if it ever
/// did, the empty payload would be refused by the receiver, never misread.
///
/// The buffer grows by doubling as it is written, so a large message (a push-pull's whole
/// membership) would keep up to twice its size for as long as it is queued or in flight; it is
/// shrunk to fit when the slack is worth a reallocation.
pub fn encode<T: Serialize>(tag: u8, message: &T) -> Bytes {
    postcard::to_extend(message, vec![tag])
        .map(finish)
        .unwrap_or_default()
}

/// An encoded message as it is sent, shrunk to fit when the slack is worth a reallocation
/// (see [`encode`]); for machines that encode a message of theirs without serde.
pub fn finish(mut bytes: Vec<u8>) -> Bytes {
    if bytes.capacity() - bytes.len() >= SLACK_KEPT {
        bytes.shrink_to_fit();
    }
    Bytes::from(bytes)
}

/// Unused capacity an encoded message may keep: below this, shrinking costs more than it saves.
const SLACK_KEPT: usize = 1024;
