//! Decoders never panic: arbitrary bytes, and valid encodings with bytes flipped, give either a
//! valid value or a typed error.

use foundation_crdt::{
    Canonical, DecodeError, GCounter, GCounterOp, LwwMap, LwwOp, MvReg, MvRegOp, OrSet, OrSetOp,
    PnCounter, PnCounterOp, FORMAT_VERSION,
};
use proptest::prelude::*;

use crate::common::*;

/// Decodes with `T`; a success must re-encode and validate.
fn try_decode<T: Canonical>(bytes: &[u8]) {
    if let Ok(value) = T::decode(bytes) {
        value.validate().expect("decoded values are valid");
        value.encode().expect("decoded values encode");
    }
}

fn try_all(bytes: &[u8]) {
    try_decode::<LwwMap<String, Vec<u8>>>(bytes);
    try_decode::<LwwOp<String, Vec<u8>>>(bytes);
    try_decode::<LwwMap<u8, u8>>(bytes);
    try_decode::<OrSet<String>>(bytes);
    try_decode::<OrSetOp<String>>(bytes);
    try_decode::<OrSet<u8>>(bytes);
    try_decode::<GCounter>(bytes);
    try_decode::<GCounterOp>(bytes);
    try_decode::<PnCounter>(bytes);
    try_decode::<PnCounterOp>(bytes);
    try_decode::<MvReg<u8>>(bytes);
    try_decode::<MvRegOp<Vec<u8>>>(bytes);
}

/// Arbitrary bytes, half of them behind the right version byte so the body parser is reached.
fn arbitrary_bytes() -> impl Strategy<Value = Vec<u8>> {
    (
        any::<bool>(),
        proptest::collection::vec(any::<u8>(), 0..200),
    )
        .prop_map(|(versioned, body)| {
            if versioned {
                let mut out = vec![FORMAT_VERSION];
                out.extend(body);
                out
            } else {
                body
            }
        })
}

/// A valid state's encoding with a few bytes overwritten.
fn corrupted(seed: u64, bytes: Vec<u8>) -> Vec<u8> {
    let mut rng = Rng(seed);
    let mut out = bytes;
    for _ in 0..=rng.below(3) {
        if out.is_empty() {
            break;
        }
        let at = rng.below(out.len());
        out[at] = rng.next() as u8;
    }
    out.truncate(out.len() - rng.below(2).min(out.len()));
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic_any_decoder(bytes in arbitrary_bytes()) {
        try_all(&bytes);
    }

    #[test]
    fn corrupted_encodings_never_panic(
        steps in steps(0u8..6, 20),
        seed in any::<u64>(),
    ) {
        let (_, r) = run::<OrSet<u8>, u8>(&steps, |me, replica, &e, _| {
            Some(me.state.add(node(replica), e))
        });
        try_all(&corrupted(seed, bytes(&r[0].state)));
        let (_, r) = run::<MvReg<u8>, u8>(&steps, |me, replica, &v, _| {
            Some(me.state.write(node(replica), v))
        });
        try_all(&corrupted(seed, bytes(&r[1].state)));
        let (_, r) = run::<LwwMap<u8, u8>, u8>(&steps, |me, _, &k, wall| {
            let ts = me.hlc.now(wall);
            Some(if k % 2 == 0 { me.state.set(k, k, ts) } else { me.state.remove(k, ts) })
        });
        try_all(&corrupted(seed, bytes(&r[2].state)));
    }
}

fn round_trips<T: Canonical + PartialEq + std::fmt::Debug>(value: &T) {
    let bytes = value.encode().expect("encodes");
    assert_eq!(bytes[0], FORMAT_VERSION);
    assert_eq!(&T::decode(&bytes).expect("decodes"), value);
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn ops_round_trip(steps in steps(0u8..6, 20)) {
        let (ops, _) = run::<OrSet<u8>, u8>(&steps, |me, replica, &e, _| {
            if e % 3 == 0 { me.state.remove(&e) } else { Some(me.state.add(node(replica), e)) }
        });
        ops.iter().for_each(round_trips);
        let (ops, _) = run::<MvReg<u8>, u8>(&steps, |me, replica, &v, _| {
            Some(me.state.write(node(replica), v))
        });
        ops.iter().for_each(round_trips);
        let (ops, _) = run::<PnCounter, u8>(&steps, |me, replica, &by, _| {
            me.state.decrement(node(replica), u64::from(by)).ok()
        });
        ops.iter().for_each(round_trips);
        let (ops, _) = run::<LwwMap<u8, u8>, u8>(&steps, |me, _, &k, wall| {
            Some(me.state.set(k, k, me.hlc.now(wall)))
        });
        ops.iter().for_each(round_trips);
    }
}

#[test]
fn errors_are_typed() {
    assert!(matches!(GCounter::decode(&[]), Err(DecodeError::Empty)));
    assert!(matches!(
        GCounter::decode(&[FORMAT_VERSION + 1, 0]),
        Err(DecodeError::UnsupportedVersion { .. })
    ));
    assert!(matches!(
        GCounter::decode(&[FORMAT_VERSION, 0, 7]),
        Err(DecodeError::TrailingBytes(1))
    ));
    // One slot (actor 0) holding zero: well-formed postcard, but not in normal form.
    let mut zero_slot = vec![FORMAT_VERSION, 1];
    zero_slot.extend([0u8; 16]);
    zero_slot.push(0);
    assert!(matches!(
        GCounter::decode(&zero_slot),
        Err(DecodeError::Invalid(_))
    ));
}
