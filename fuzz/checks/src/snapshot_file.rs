//! Arbitrary bytes as a snapshot file (`foundation snapshot restore FILE`, `POST /snapshot`),
//! twice: as they are (the header's magic, version, length and checksum checks), and, when the
//! first byte is odd, the rest framed under a valid header and checksum, so the body's decoder
//! (postcard, every keyspace's canonical state, names, seqs) is reached too. What decodes is
//! restored into a fresh replication machine.
//!
//! Properties: nothing panics; a refusal says something; a decoded snapshot encodes back to a
//! file that decodes to the same snapshot; a restore either is refused or leaves the machine's
//! invariants intact.

use std::collections::BTreeSet;

use foundation_core::effects::Outbox;
use foundation_core::replication::snapshot::format::frame;
use foundation_core::replication::{Origin, Replication, ReplicationConfig, Snapshot};
use foundation_core::time::Instant;

/// The property on one input: the bytes as a file, and (first byte odd) the rest as a body
/// under a header that checks.
pub fn check(data: &[u8]) {
    check_file(data);
    if let Some((&first, body)) = data.split_first() {
        if first & 1 == 1 {
            check_file(&frame(body));
        }
    }
}

fn check_file(bytes: &[u8]) {
    match Snapshot::decode(bytes) {
        Err(error) => assert!(!error.to_string().is_empty()),
        Ok(snapshot) => {
            let again = snapshot.encode().expect("a decoded snapshot encodes");
            assert_eq!(Snapshot::decode(&again).as_ref(), Ok(&snapshot));
            restore(&snapshot);
        }
    }
}

fn restore(snapshot: &Snapshot) {
    // The snapshot's own node, in another life: its writes come back as another's.
    let me = Origin {
        node: snapshot.node,
        generation: u64::MAX,
    };
    let config = ReplicationConfig {
        wall_ms_at_zero: 1 << 60,
        ..ReplicationConfig::default()
    };
    let mut machine = Replication::new(me, config, 7);
    let ephemeral: BTreeSet<String> = ["services".to_owned()].into();
    let mut out = Outbox::default();
    if machine
        .restore_snapshot(Instant::ZERO, snapshot, &ephemeral, &[], &mut out)
        .is_ok()
    {
        machine
            .invariants()
            .expect("a restore keeps the invariants");
    }
}
