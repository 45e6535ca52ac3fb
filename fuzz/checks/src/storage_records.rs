//! Arbitrary bytes as the records of a node's store (what a disk hands back at start-up: a file
//! is input too), through the record decoder and into a core that takes up its previous life
//! from them, as `foundation node` does with what its store loaded.
//!
//! Input: one flags byte, then records, each a little-endian u16 key length, the key, a
//! little-endian u16 value length and the value (a record cut short ends the list). With flag
//! bit 0 set every value is a payload and is sealed under its key first, so the checksum passes
//! and the bytes reach the decoders of entries, seen-sets and horizons behind it; without it
//! values are taken as stored, and nearly all fail their checksum.
//!
//! Properties: nothing panics; every record is either loaded or dropped and counted; the state
//! written back out as records loads again to the same state with nothing dropped; the core
//! takes up the state and then still takes a local write.

use foundation_core::storage::{record, LoadReport, Loaded, StoredState};
use foundation_core::time::Instant;

use crate::core_input::{assert_takes_a_write, core};

/// Checks the properties above on one input; panics if one fails.
pub fn check(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let mut records = parse(rest);
    if flags & 1 == 1 {
        for (key, value) in &mut records {
            *value = record::seal(key, value);
        }
    }
    let mut report = LoadReport::default();
    let pairs = records.iter().map(|(k, v)| (&k[..], &v[..]));
    let state = record::decode(pairs, &mut report);
    assert_eq!(
        report.records + report.dropped_records,
        records.len(),
        "every record is loaded or dropped"
    );
    written_back_loads_the_same(&state);
    let mut core = core();
    core.start_persisting(Instant::ZERO, &Loaded { state, report });
    while core.poll_effect().is_some() {}
    assert_takes_a_write(&mut core, Instant::ZERO, "a node restored from garbage");
}

/// Splits the input into (key, value) records; see the module comment.
pub fn parse(mut rest: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut records = Vec::new();
    while let (Some(key), Some(value)) = (take(&mut rest), take(&mut rest)) {
        records.push((key.to_vec(), value.to_vec()));
    }
    records
}

/// The inverse of [`parse`], for seeds.
pub fn unparse(flags: u8, records: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut out = vec![flags];
    for (key, value) in records {
        for part in [key, value] {
            let len = u16::try_from(part.len()).expect("a seed's record fits in a u16");
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(part);
        }
    }
    out
}

/// One length-prefixed byte string from the front of `rest`.
fn take<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
    let (len, tail) = rest.split_at_checked(2)?;
    let len = usize::from(u16::from_le_bytes([len[0], len[1]]));
    let (part, tail) = tail.split_at_checked(len)?;
    *rest = tail;
    Some(part)
}

fn written_back_loads_the_same(state: &StoredState) {
    let Ok(ops) = record::encode(state) else {
        return; // a name too long to be a store key: the store would have refused it too
    };
    let mut map = std::collections::BTreeMap::new();
    record::apply(&mut map, &ops);
    let mut report = LoadReport::default();
    let again = record::decode(map.iter().map(|(k, v)| (&k[..], &v[..])), &mut report);
    assert!(
        report.is_clean(),
        "a written-back state loads cleanly: {report}"
    );
    assert_eq!(&again, state, "a written-back state loads the same");
}
