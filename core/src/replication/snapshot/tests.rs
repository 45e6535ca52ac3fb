//! The snapshot file refuses every damage, and a restore is a CRDT merge that loses nothing
//! newer and changes nothing when refused.

use std::collections::BTreeSet;
use std::time::Duration;

use foundation_crdt::NodeId as CrdtId;
use proptest::prelude::*;

use super::format::{HEADER_LEN, MAGIC};
use super::*;
use crate::replication::{Origin, ReplicationConfig, Write};
use crate::NodeId;

fn machine(i: u128, generation: u64) -> Replication {
    let me = Origin {
        node: CrdtId::from_u128(i),
        generation,
    };
    let config = ReplicationConfig {
        wall_ms_at_zero: 1_700_000_000_000,
        ..ReplicationConfig::default()
    };
    Replication::new(me, config, i as u64)
}

fn at(ms: u64) -> Instant {
    Instant::from_elapsed(Duration::from_millis(ms))
}

fn set(r: &mut Replication, now: Instant, keyspace: &str, key: &str, value: Option<&str>) {
    let write = Write {
        keyspace: keyspace.into(),
        key: key.into(),
        value: value.map(|v| v.as_bytes().to_vec()),
    };
    r.write(now, write, &[], &mut Outbox::default())
        .expect("write");
}

fn values(r: &Replication, keyspace: &str) -> Vec<(String, String)> {
    r.keyspace(keyspace)
        .map(|k| {
            k.iter()
                .map(|(k, v)| (k.to_owned(), String::from_utf8_lossy(v).into_owned()))
                .collect()
        })
        .unwrap_or_default()
}

fn ephemeral() -> BTreeSet<String> {
    ["services".to_owned()].into()
}

/// A machine holding config (a live key, an overwritten one, a deleted one), a second
/// keyspace, and an ephemeral keyspace a snapshot must leave out.
fn source() -> Replication {
    let mut a = machine(1, 7);
    set(&mut a, at(1), "config", "limits.rps", Some("500"));
    set(&mut a, at(2), "config", "checkout", Some("false"));
    set(&mut a, at(3), "config", "checkout", Some("true"));
    set(&mut a, at(4), "config", "gone", Some("1"));
    set(&mut a, at(5), "config", "gone", None);
    set(&mut a, at(6), "vars", "temperature", Some("0.7"));
    set(&mut a, at(7), "services", "x/y", Some("instance"));
    a
}

fn sample() -> Vec<u8> {
    source()
        .snapshot(at(10), &ephemeral())
        .encode()
        .expect("encode")
}

fn restore(
    r: &mut Replication,
    now: Instant,
    snapshot: &Snapshot,
) -> Result<Vec<RestoredKeyspace>, RestoreError> {
    r.restore_snapshot(now, snapshot, &ephemeral(), &[], &mut Outbox::default())
}

#[test]
fn a_snapshot_round_trips_and_leaves_out_ephemeral_keyspaces() {
    let a = source();
    let snapshot = a.snapshot(at(10), &ephemeral());
    let names: Vec<&str> = snapshot.keyspaces.iter().map(|k| k.name.as_str()).collect();
    assert_eq!(names, ["config", "vars"]);
    assert_eq!(snapshot.taken_ms, 1_700_000_000_010);
    let bytes = snapshot.encode().expect("encode");
    assert!(bytes.starts_with(&MAGIC));
    assert_eq!(Snapshot::decode(&bytes).expect("decode"), snapshot);
}

#[test]
fn restoring_into_a_fresh_replica_gives_the_same_values() {
    let a = source();
    let snapshot = Snapshot::decode(&sample()).expect("decode");
    let mut b = machine(2, 1);
    let report = restore(&mut b, at(20), &snapshot).expect("restore");
    assert_eq!(values(&b, "config"), values(&a, "config"));
    assert_eq!(values(&b, "vars"), values(&a, "vars"));
    assert!(b.keyspace("services").is_none());
    assert_eq!(report[0].name, "config");
    assert_eq!(
        (report[0].keys, report[0].changed, report[0].keys_after),
        (2, 2, 2)
    );
    // The snapshot's writers are records, not tracked origins, and the deleted key stays
    // deleted (its tombstone came along).
    assert!(b.origins().is_empty());
    assert_eq!(b.get("config", "gone"), None);
    b.invariants().expect("invariants");
    // A second restore of the same snapshot changes nothing.
    let again = restore(&mut b, at(21), &snapshot).expect("restore");
    assert!(again.iter().all(|k| k.changed == 0));
}

#[test]
fn a_restore_keeps_newer_values_and_newer_deletes() {
    let snapshot = Snapshot::decode(&sample()).expect("decode");
    let mut b = machine(2, 1);
    // Written after the snapshot was taken: newer by the clock.
    set(&mut b, at(50), "config", "limits.rps", Some("900"));
    set(&mut b, at(51), "config", "checkout", None);
    set(&mut b, at(52), "config", "only-here", Some("1"));
    restore(&mut b, at(60), &snapshot).expect("restore");
    assert_eq!(b.get("config", "limits.rps"), Some(&b"900"[..]));
    assert_eq!(b.get("config", "checkout"), None);
    assert_eq!(b.get("config", "only-here"), Some(&b"1"[..]));
    assert_eq!(b.get("vars", "temperature"), Some(&b"0.7"[..]));

    // In the cluster that took it: a value written since, and a key deleted since, survive
    // a restore of the older snapshot.
    let mut a = source();
    set(&mut a, at(30), "config", "limits.rps", Some("700"));
    set(&mut a, at(31), "vars", "temperature", None);
    restore(&mut a, at(40), &snapshot).expect("restore");
    assert_eq!(a.get("config", "limits.rps"), Some(&b"700"[..]));
    assert_eq!(a.get("vars", "temperature"), None);
    a.invariants().expect("invariants");
}

#[test]
fn refused_restores_change_nothing() {
    let snapshot = Snapshot::decode(&sample()).expect("decode");
    // An ephemeral keyspace in the snapshot.
    let mut b = machine(2, 1);
    set(&mut b, at(1), "config", "k", Some("v"));
    let before = b.state_digests();
    let with_ephemeral = source().snapshot(at(10), &BTreeSet::new());
    assert_eq!(
        restore(&mut b, at(20), &with_ephemeral),
        Err(RestoreError::Ephemeral {
            keyspace: "services".into()
        })
    );
    assert_eq!(b.state_digests(), before);
    // No room for the snapshot's keyspaces.
    let mut tight = machine(3, 1);
    tight.config.keyspaces_max = 1;
    set(&mut tight, at(1), "other", "k", Some("v"));
    let before = tight.state_digests();
    assert!(matches!(
        restore(&mut tight, at(20), &snapshot),
        Err(RestoreError::TooManyKeyspaces { needed: 3, max: 1 })
    ));
    assert_eq!(tight.state_digests(), before);
    // Writes stamped far ahead of this node's clock.
    let mut future = snapshot.clone();
    let late = source_at(1_700_000_000_000 + 3_600_000);
    future.keyspaces = late.keyspaces;
    let before = b.state_digests();
    assert!(matches!(
        restore(&mut b, at(20), &future),
        Err(RestoreError::ClockAhead(_))
    ));
    assert_eq!(b.state_digests(), before);
}

/// A snapshot of a machine whose wall clock starts at `wall_ms`.
fn source_at(wall_ms: u64) -> Snapshot {
    let mut a = machine(9, 1);
    a.config.wall_ms_at_zero = wall_ms;
    let mut fresh = Replication::new(a.me(), a.config.clone(), 9);
    set(&mut fresh, at(1), "config", "k", Some("v"));
    fresh.snapshot(at(2), &BTreeSet::new())
}

#[test]
fn every_flipped_byte_and_every_truncation_is_refused() {
    let bytes = sample();
    for i in 0..bytes.len() {
        for bit in [0x01, 0x80] {
            let mut damaged = bytes.clone();
            damaged[i] ^= bit;
            let error = Snapshot::decode(&damaged).expect_err("a flipped byte is refused");
            assert!(!error.to_string().is_empty());
            if i >= HEADER_LEN {
                assert!(
                    matches!(error, SnapshotError::ChecksumMismatch { .. }),
                    "byte {i}: {error}"
                );
            }
        }
    }
    for len in 0..bytes.len() {
        let error = Snapshot::decode(&bytes[..len]).expect_err("a truncation is refused");
        assert!(
            matches!(
                error,
                SnapshotError::Truncated { .. } | SnapshotError::NotASnapshot
            ),
            "{len} bytes: {error}"
        );
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert_eq!(
        Snapshot::decode(&longer),
        Err(SnapshotError::TrailingBytes { extra: 1 })
    );
}

#[test]
fn wrong_magic_and_future_versions_are_named() {
    let bytes = sample();
    let mut other = bytes.clone();
    other[..8].copy_from_slice(b"SQLite f");
    assert_eq!(Snapshot::decode(&other), Err(SnapshotError::NotASnapshot));
    let mut future = bytes.clone();
    future[8] = 2;
    let error = Snapshot::decode(&future).expect_err("version 2");
    assert_eq!(
        error,
        SnapshotError::UnsupportedVersion {
            found: 2,
            supported: 1
        }
    );
    assert!(error.to_string().contains("version 2"), "{error}");
    let mut huge = bytes.clone();
    huge[12..20].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(matches!(
        Snapshot::decode(&huge),
        Err(SnapshotError::TooLarge { .. })
    ));
}

/// A body under a header that checks, so the body decoder is reached.
fn with_body(body: &[u8]) -> Vec<u8> {
    super::format::frame(body)
}

#[test]
fn a_valid_checksum_over_a_bad_body_is_still_refused() {
    let bytes = sample();
    let body = &bytes[HEADER_LEN..];
    // The config state's own version byte changed, under a correct checksum: the first
    // keyspace's name, then its state's length (a varint), then the state's version byte.
    let mut damaged = body.to_vec();
    let name = damaged
        .windows(6)
        .position(|w| w == b"config")
        .expect("the first keyspace's name");
    let mut at = name + 6;
    while damaged[at] & 0x80 != 0 {
        at += 1;
    }
    assert_eq!(damaged[at + 1], foundation_crdt::FORMAT_VERSION);
    damaged[at + 1] = 9;
    let error = Snapshot::decode(&with_body(&damaged)).expect_err("a bad state");
    assert!(
        matches!(&error, SnapshotError::BadKeyspace { name, .. } if name == "config"),
        "{error}"
    );
    // Keyspaces out of order.
    let mut snapshot = Snapshot::decode(&bytes).expect("decode");
    snapshot.keyspaces.reverse();
    let error = Snapshot::decode(&snapshot.encode().expect("encode")).expect_err("unsorted");
    assert!(
        matches!(error, SnapshotError::BadKeyspace { .. }),
        "{error}"
    );
    assert_eq!(NodeId::from_u128(1).as_u128(), snapshot.node.as_u128());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Arbitrary bytes, with or without a valid header and checksum in front: refused or
    /// decoded, never a panic.
    #[test]
    fn the_decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512), framed in any::<bool>()) {
        let input = if framed { with_body(&bytes) } else { bytes };
        if let Err(error) = Snapshot::decode(&input) {
            prop_assert!(!error.to_string().is_empty());
        }
    }

    /// A real body with bytes changed, under a checksum that matches: refused or decoded,
    /// never a panic, and whatever decodes encodes again.
    #[test]
    fn mutated_bodies_never_panic(flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
        let bytes = sample();
        let mut body = bytes[HEADER_LEN..].to_vec();
        for (at, xor) in flips {
            let i = at % body.len();
            body[i] ^= xor;
        }
        if let Ok(snapshot) = Snapshot::decode(&with_body(&body)) {
            prop_assert!(snapshot.encode().is_ok());
        }
    }
}

/// Writes the seeds of the `snapshot_file` fuzz target (run with `--ignored`): a snapshot
/// with two keyspaces, tombstones and retired records, an empty one, and one cut short.
#[test]
#[ignore]
fn write_snapshot_fuzz_seeds() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/snapshot_file");
    std::fs::create_dir_all(&dir).expect("seed directory");
    let mut retiring = source();
    let me = retiring.me();
    retiring
        .keyspaces
        .get_mut("config")
        .expect("config")
        .retire(&me);
    let seeds = [
        ("two-keyspaces.fsnap", sample()),
        (
            "retired.fsnap",
            retiring
                .snapshot(at(20), &ephemeral())
                .encode()
                .expect("encode"),
        ),
        (
            "empty.fsnap",
            machine(5, 1)
                .snapshot(at(1), &ephemeral())
                .encode()
                .expect("encode"),
        ),
        ("truncated.fsnap", sample()[..40].to_vec()),
    ];
    for (name, bytes) in seeds {
        std::fs::write(dir.join(name), bytes).expect("seed written");
    }
}
