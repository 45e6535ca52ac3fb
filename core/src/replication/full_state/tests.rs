use super::*;

fn ts(wall_ms: u64, logical: u32, node: u128) -> Timestamp {
    Timestamp {
        wall_ms,
        logical,
        node: NodeId::from_u128(node),
    }
}

fn value(bytes: &[u8], generation: u64, seq: u64) -> Value {
    Value {
        bytes: bytes.to_vec(),
        generation,
        seq,
    }
}

/// Values from three nodes, one of them in two lives, two tombstones and a horizon.
fn sample() -> Map {
    let mut map = Map::new();
    map.set("a".into(), value(b"1", 7, 1), ts(1_700_000_000_000, 0, 1));
    map.set("b".into(), value(b"22", 7, 2), ts(1_700_000_000_005, 3, 1));
    map.set("c".into(), value(b"", 8, 1), ts(1_700_000_000_010, 0, 1));
    map.set("d".into(), value(b"444", 1, 9), ts(1_699_999_999_000, 1, 2));
    map.remove("e".into(), ts(1_700_000_000_020, 0, 3));
    map.remove("f".into(), ts(1_700_000_000_030, 2, 2));
    map.gc_tombstones(ts(1_700_000_000_015, 0, 0));
    map
}

fn packed(makers: Vec<Maker>, entries: Vec<Entry<'static>>) -> Vec<u8> {
    let packed = Packed {
        horizon: Timestamp::ZERO,
        newest_ms: 100,
        makers,
        entries,
    };
    postcard::to_extend(&packed, vec![PACKED_STATE_VERSION]).unwrap()
}

fn live(key: &'static str, age_ms: u64, maker: u32) -> Entry<'static> {
    Entry {
        key: Cow::Borrowed(key),
        age_ms,
        logical: 0,
        maker,
        value: Some((Cow::Borrowed(b"v"), 1)),
    }
}

fn maker(node: u128, generation: Option<u64>) -> Maker {
    Maker {
        node: NodeId::from_u128(node),
        generation,
    }
}

#[test]
fn a_packed_state_decodes_to_the_same_map() {
    let map = sample();
    let bytes = encode(&map).unwrap();
    assert_eq!(bytes[0], PACKED_STATE_VERSION);
    assert_eq!(decode(&bytes).unwrap(), map);
    assert_eq!(decode(&encode(&Map::new()).unwrap()).unwrap(), Map::new());
}

/// `sample()` in the canonical encoding, as the release before packed states wrote it (the
/// file was written by that encoding: `Canonical::encode` is unchanged since).
const EARLIER_RELEASE_SAMPLE: &[u8] = include_bytes!("canonical-sample.bin");

#[test]
fn a_canonical_state_from_an_earlier_release_is_still_read() {
    assert_eq!(decode(EARLIER_RELEASE_SAMPLE).unwrap(), sample());
}

#[test]
fn many_keys_by_few_writers_take_far_fewer_bytes_than_the_canonical_encoding() {
    let mut map = Map::new();
    for i in 0..1000u64 {
        let writer = u128::from(i % 4) + 1;
        let stamp = ts(1_700_000_000_000 + i * 3, 0, writer);
        map.set(format!("k{i:05}"), value(&[7; 16], 5, i / 4 + 1), stamp);
    }
    let packed = encode(&map).unwrap().len();
    let canonical = map.encode().unwrap().len();
    assert!(
        packed * 10 < canonical * 7,
        "packed {packed} B, canonical {canonical} B"
    );
    assert_eq!(decode(&encode(&map).unwrap()).unwrap(), map);
}

#[test]
fn what_no_map_could_have_encoded_is_refused() {
    let cases: [(&str, Vec<u8>); 7] = [
        (
            "a maker out of range",
            packed(vec![maker(1, Some(1))], vec![live("a", 0, 1)]),
        ),
        (
            "an age above the newest",
            packed(vec![maker(1, Some(1))], vec![live("a", 101, 0)]),
        ),
        (
            "keys out of order",
            packed(
                vec![maker(1, Some(1))],
                vec![live("b", 0, 0), live("a", 0, 0)],
            ),
        ),
        (
            "a repeated key",
            packed(
                vec![maker(1, Some(1))],
                vec![live("a", 0, 0), live("a", 1, 0)],
            ),
        ),
        (
            "a value whose maker names no life",
            packed(vec![maker(1, None)], vec![live("a", 0, 0)]),
        ),
        ("a tombstone whose maker names a life", {
            let mut tombstone = live("a", 0, 0);
            tombstone.value = None;
            packed(vec![maker(1, Some(1))], vec![tombstone])
        }),
        ("trailing bytes", {
            let mut bytes = encode(&sample()).unwrap();
            bytes.push(0);
            bytes
        }),
    ];
    for (what, bytes) in cases {
        assert!(decode(&bytes).is_err(), "{what} was accepted");
    }
    let tombstone_below_horizon = {
        let mut map = Map::new();
        map.remove("x".into(), ts(50, 0, 1));
        let mut bytes = encode(&map).unwrap();
        // Re-pack with a horizon above the tombstone.
        let (mut packed, _): (Packed<'_>, _) = postcard::take_from_bytes(&bytes[1..]).unwrap();
        packed.horizon = ts(60, 0, 0);
        bytes = postcard::to_extend(&packed, vec![PACKED_STATE_VERSION]).unwrap();
        bytes
    };
    assert!(decode(&tombstone_below_horizon).is_err());
    assert!(matches!(decode(&[]), Err(DecodeError::Empty)));
    assert!(matches!(
        decode(&[0x82]),
        Err(DecodeError::UnsupportedVersion { found: 0x82, .. })
    ));
}

#[test]
fn every_truncation_is_refused_and_no_flipped_byte_panics() {
    let bytes = encode(&sample()).unwrap();
    for len in 0..bytes.len() {
        assert!(
            decode(&bytes[..len]).is_err(),
            "truncated to {len} accepted"
        );
    }
    for i in 0..bytes.len() {
        for bit in 0..8 {
            let mut flipped = bytes.clone();
            flipped[i] ^= 1 << bit;
            if let Ok(map) = decode(&flipped) {
                map.invariants().unwrap();
            }
        }
    }
}
