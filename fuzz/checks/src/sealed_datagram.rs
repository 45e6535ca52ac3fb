//! Arbitrary bytes as packets on the sealed membership socket (`foundation_transport::sealed`):
//! the decoder a stranger reaches with one UDP packet. The input is a run of packets, each
//! after a 2-byte big-endian length, all opened in turn by one receive key (so replays and
//! reordering meet the replay window).
//!
//! Properties: nothing panics; a packet opens only if the key's owner sealed it (sealing its
//! payload again at its counter gives the same bytes); a packet opens at most once.

use foundation_transport::sealed::codec::{self, OpeningKey, Packet, SealingKey, KEY_LEN};
use foundation_transport::sealed::open_with;

/// The receive key of the check; the seeds are sealed with it.
pub const KEY: [u8; KEY_LEN] = [0x42; KEY_LEN];
/// The largest payload taken, as the membership limit.
const MAX: usize = 1200;

/// The input's packets: each after its 2-byte length, the last one cut where the input ends.
pub fn packets(mut data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while let [hi, lo, rest @ ..] = data {
        let len = usize::from(u16::from_be_bytes([*hi, *lo])).min(rest.len());
        let (packet, tail) = rest.split_at(len);
        out.push(packet);
        data = tail;
    }
    out
}

/// Checks the properties above on one input; panics if one fails.
pub fn check(data: &[u8]) {
    let mut key = OpeningKey::new(&KEY);
    let mut opened: Vec<&[u8]> = Vec::new();
    for packet in packets(data) {
        let Ok(payload) = open_with(&mut key, packet, MAX) else {
            continue;
        };
        let Ok(Packet::Sealed {
            key_id, counter, ..
        }) = codec::parse(packet)
        else {
            panic!("opened a packet that does not parse as sealed");
        };
        let resealed = SealingKey::resume(key_id, &KEY, counter).seal(&payload);
        assert_eq!(resealed.as_deref(), Some(packet), "opened a forgery");
        assert!(!opened.contains(&packet), "opened the same packet twice");
        opened.push(packet);
    }
}
