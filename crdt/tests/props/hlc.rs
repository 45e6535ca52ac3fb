//! HLC: monotonic under skewed and backward wall clocks, receive after send, drift bounded.

use foundation_crdt::{Hlc, HlcConfig, NodeId, Timestamp};
use proptest::prelude::*;

use crate::common::*;

const MAX_DRIFT_MS: u64 = 1_000;

#[derive(Clone, Debug)]
enum Event {
    /// A local event on `node` whose wall clock reads `wall_ms`.
    Local { node: usize, wall_ms: u64 },
    /// `to` receives the latest message sent by `from`.
    Receive {
        from: usize,
        to: usize,
        wall_ms: u64,
    },
}

fn event() -> impl Strategy<Value = Event> {
    // Walls jump around (including backwards) and nodes are skewed by whole seconds.
    prop_oneof![
        (0..REPLICAS, 0u64..5_000).prop_map(|(node, wall_ms)| Event::Local { node, wall_ms }),
        (0..REPLICAS, 0..REPLICAS, 0u64..5_000).prop_map(|(from, to, wall_ms)| Event::Receive {
            from,
            to,
            wall_ms
        }),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn monotonic_and_respects_happens_before(
        events in proptest::collection::vec(event(), 0..80),
        skews in proptest::array::uniform3(0u64..3_000),
    ) {
        let config = HlcConfig { max_drift_ms: MAX_DRIFT_MS };
        let mut clocks: Vec<Hlc> = (0..REPLICAS).map(|r| Hlc::new(node(r), config)).collect();
        let mut sent: Vec<Option<Timestamp>> = vec![None; REPLICAS];
        let mut max_wall_seen = [0u64; REPLICAS];
        for event in events {
            let (me, wall, remote) = match event {
                Event::Local { node, wall_ms } => (node, wall_ms + skews[node], None),
                Event::Receive { from, to, wall_ms } => (to, wall_ms + skews[to], sent[from]),
            };
            let before = clocks[me].last();
            max_wall_seen[me] = max_wall_seen[me].max(wall);
            let stamped = match remote {
                None => clocks[me].now(wall),
                Some(remote) => match clocks[me].update(remote, wall) {
                    Ok(ts) => {
                        prop_assert!(ts > remote, "receive must order after send");
                        ts
                    }
                    Err(_) => {
                        prop_assert!(remote.wall_ms > wall + MAX_DRIFT_MS);
                        prop_assert_eq!(clocks[me].last(), before, "rejection changed the clock");
                        continue;
                    }
                },
            };
            prop_assert!(stamped > before, "clock went backwards");
            prop_assert_eq!(stamped.node, node(me));
            // Physical time never runs further ahead than the drift bound allows.
            prop_assert!(stamped.wall_ms <= max_wall_seen[me] + MAX_DRIFT_MS);
            sent[me] = Some(stamped);
        }
    }

    #[test]
    fn timestamps_are_unique_across_nodes(walls in proptest::collection::vec((0..REPLICAS, 0u64..50), 0..60)) {
        let config = HlcConfig::default();
        let mut clocks: Vec<Hlc> = (0..REPLICAS).map(|r| Hlc::new(node(r), config)).collect();
        let mut seen = std::collections::BTreeSet::new();
        for (me, wall) in walls {
            prop_assert!(seen.insert(clocks[me].now(wall)));
        }
    }
}

#[test]
fn timestamps_order_by_wall_then_logical_then_node() {
    let ts = |wall_ms, logical, id| Timestamp {
        wall_ms,
        logical,
        node: NodeId::from_u128(id),
    };
    assert!(ts(1, 9, 9) < ts(2, 0, 0));
    assert!(ts(1, 1, 9) < ts(1, 2, 0));
    assert!(ts(1, 1, 1) < ts(1, 1, 2));
    assert!(Timestamp::at_wall(1) <= ts(1, 0, 0));
}
