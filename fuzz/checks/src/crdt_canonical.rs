//! Arbitrary bytes as the canonical encoding of every CRDT state and op (the instantiations the
//! core puts on the wire and on disk: string keys, byte values).
//!
//! Properties, for each type the bytes decode as: nothing panics; the value re-encodes, and
//! those bytes decode to the same value and encode to themselves (the encoding is a fixed
//! point, which digests rely on); a decoded state merged with itself is unchanged. The same
//! for the bytes as a keyspace's full state packed for the wire
//! (`foundation_core::replication::full_state`).
//!
//! The decoder may accept a non-canonical spelling of a value (postcard reads an over-long
//! varint), so the input bytes themselves need not equal the re-encoding.

use std::fmt::Debug;

use foundation_core::replication::full_state;
use foundation_crdt::{
    BoundedCounter, Canonical, GCounter, GCounterOp, LwwMap, LwwOp, MvReg, MvRegOp, OrSet, OrSetOp,
    PnCounter, PnCounterOp,
};

/// Checks the properties above on one input; panics if one fails.
pub fn check(data: &[u8]) {
    merges_idempotently::<GCounter>(data, |a, b| a.merge(b));
    merges_idempotently::<PnCounter>(data, |a, b| a.merge(b));
    merges_idempotently::<LwwMap<String, Vec<u8>>>(data, |a, b| a.merge(b));
    merges_idempotently::<OrSet<String>>(data, |a, b| a.merge(b));
    merges_idempotently::<MvReg<Vec<u8>>>(data, |a, b| a.merge(b));
    merges_idempotently::<BoundedCounter>(data, |a, b| {
        a.merge(b).expect("a valid counter merges with itself");
    });
    round_trip::<GCounterOp>(data);
    round_trip::<PnCounterOp>(data);
    round_trip::<LwwOp<String, Vec<u8>>>(data);
    round_trip::<OrSetOp<String>>(data);
    round_trip::<MvRegOp<Vec<u8>>>(data);
    packed_full_state(data);
}

/// A packed full state that decodes re-packs to bytes that decode to it and pack to themselves.
fn packed_full_state(data: &[u8]) {
    let Ok(state) = full_state::decode(data) else {
        return;
    };
    let bytes = full_state::encode(&state).expect("a decoded state packs");
    let again = full_state::decode(&bytes).expect("a packed state decodes");
    assert_eq!(again, state, "unpack(pack(s)) != s");
    assert_eq!(
        full_state::encode(&again).unwrap(),
        bytes,
        "packing is not a fixed point"
    );
}

/// Decodes `data` as `T`; if it decodes, checks the round trip and returns the value.
fn round_trip<T: Canonical + PartialEq + Debug>(data: &[u8]) -> Option<T> {
    let value = T::decode(data).ok()?;
    let bytes = value.encode().expect("a decoded value encodes");
    let again = T::decode(&bytes).expect("an encoding decodes");
    assert_eq!(again, value, "decode(encode(v)) != v");
    let bytes_again = again.encode().expect("a decoded value encodes");
    assert_eq!(bytes_again, bytes, "the encoding is not a fixed point");
    Some(value)
}

/// The round trip, then: a state merged with itself is unchanged.
fn merges_idempotently<T: Canonical + PartialEq + Debug + Clone>(
    data: &[u8],
    merge: impl Fn(&mut T, &T),
) {
    if let Some(state) = round_trip::<T>(data) {
        let mut merged = state.clone();
        merge(&mut merged, &state);
        assert_eq!(merged, state, "merging a state with itself changed it");
    }
}
