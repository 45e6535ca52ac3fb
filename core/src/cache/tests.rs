use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::*;

const SEC: Duration = Duration::from_secs(1);

fn life(n: u128) -> Life {
    Life {
        node: NodeId::from_u128(n),
        generation: 1,
    }
}

fn candidate(n: u128) -> Candidate {
    Candidate {
        id: NodeId::from_u128(n),
        generation: 1,
        tags: BTreeMap::new(),
    }
}

/// A few machines and a network that delivers every message at once, in order.
struct Net {
    nodes: BTreeMap<NodeId, Caches>,
    events: BTreeMap<NodeId, Vec<CacheEvent>>,
    /// Messages held back instead of delivered (to the node in the key).
    held: Vec<(NodeId, NodeId, CacheMessage)>,
    hold_to: Option<NodeId>,
}

impl Net {
    fn new(n: u128, settings: &CacheSettings) -> Self {
        let mut nodes = BTreeMap::new();
        for i in 1..=n {
            let mut caches = Caches::new(life(i), 0);
            let store: Arc<dyn Store> = Arc::new(MemoryStore::new(settings.max_entries));
            caches
                .declare(Instant::ZERO, settings.clone(), store)
                .expect("declares");
            caches.update_view(Instant::ZERO, (1..=n).map(candidate).collect());
            nodes.insert(NodeId::from_u128(i), caches);
        }
        let mut net = Net {
            nodes,
            events: BTreeMap::new(),
            held: Vec::new(),
            hold_to: None,
        };
        net.settle(Instant::ZERO);
        net
    }

    fn node(&mut self, n: u128) -> &mut Caches {
        self.nodes.get_mut(&NodeId::from_u128(n)).expect("node")
    }

    fn settle(&mut self, now: Instant) {
        loop {
            let mut moved = false;
            let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
            for from in ids {
                let node = self.nodes.get_mut(&from).expect("node");
                let events = node.take_events();
                self.events.entry(from).or_default().extend(events);
                for (to, message) in node.take_messages() {
                    moved = true;
                    if self.hold_to == Some(to) {
                        self.held.push((from, to, message));
                    } else if let Some(target) = self.nodes.get_mut(&to) {
                        target.received(now, from, message);
                    }
                }
            }
            if !moved {
                let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
                for id in ids {
                    let events = self.nodes.get_mut(&id).expect("node").take_events();
                    self.events.entry(id).or_default().extend(events);
                }
                return;
            }
        }
    }

    fn take_events(&mut self, n: u128) -> Vec<CacheEvent> {
        self.events
            .remove(&NodeId::from_u128(n))
            .unwrap_or_default()
    }
}

fn runs(events: &[CacheEvent]) -> Vec<u64> {
    events
        .iter()
        .filter_map(|e| match e {
            CacheEvent::Run { req, .. } => Some(*req),
            _ => None,
        })
        .collect()
}

fn done(events: &[CacheEvent], req: u64) -> Option<Result<Option<Bytes>, CacheError>> {
    events.iter().find_map(|e| match e {
        CacheEvent::Done { req: r, result } if *r == req => Some(result.clone()),
        _ => None,
    })
}

fn pending(started: Result<Started, CacheError>) -> u64 {
    match started {
        Ok(Started::Pending(req)) => req,
        other => panic!("expected a pending request, got {other:?}"),
    }
}

/// A key of `name` that node `owner` owns among nodes 1..=n.
fn key_owned_by(net: &mut Net, name: &str, owner: u128) -> Vec<u8> {
    (0u32..)
        .map(|i| format!("key-{i}").into_bytes())
        .find(|k| net.node(1).owner_of(name, k) == Some(NodeId::from_u128(owner)))
        .expect("some key is owned by every node")
}

#[test]
fn local_get_or_compute_runs_once_and_answers_every_waiter() {
    let settings = CacheSettings::new("c", Mode::Local);
    let mut net = Net::new(1, &settings);
    let now = Instant::ZERO;
    assert_eq!(
        net.node(1).get(now, "c", b"k", SEC),
        Ok(Started::Ready(None))
    );
    let first = pending(net.node(1).get_or_compute(now, "c", b"k", SEC));
    let second = pending(net.node(1).get_or_compute(now, "c", b"k", SEC));
    net.settle(now);
    let events = net.take_events(1);
    assert_eq!(runs(&events), vec![first], "only the first caller computes");
    net.node(1)
        .computed(now, first, Ok((Bytes::from_static(b"v"), None)));
    net.settle(now);
    let events = net.take_events(1);
    assert_eq!(
        done(&events, first),
        Some(Ok(Some(Bytes::from_static(b"v"))))
    );
    assert_eq!(
        done(&events, second),
        Some(Ok(Some(Bytes::from_static(b"v"))))
    );
    assert_eq!(
        net.node(1).get(now, "c", b"k", SEC),
        Ok(Started::Ready(Some(Bytes::from_static(b"v"))))
    );
    assert_eq!(net.node(1).flights("c"), 0);
}

#[test]
fn bad_input_is_refused_with_a_typed_error_and_nothing_changes() {
    let settings = CacheSettings::new("c", Mode::Local).limits(4, 8);
    let mut net = Net::new(1, &settings);
    let now = Instant::ZERO;
    assert_eq!(
        net.node(1).get(now, "nope", b"k", SEC),
        Err(CacheError::Unknown("nope".into()))
    );
    assert_eq!(
        net.node(1).get_or_compute(now, "c", b"too-long", SEC),
        Err(CacheError::KeyTooLarge { len: 8, max: 4 })
    );
    assert_eq!(
        net.node(1)
            .put(now, "c", b"k", Bytes::from_static(b"123456789"), None),
        Err(CacheError::ValueTooLarge { len: 9, max: 8 })
    );
    let other = CacheSettings::new("c", Mode::Partitioned);
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new(10));
    assert_eq!(
        net.node(1).declare(Instant::ZERO, other, store),
        Err(CacheError::Conflict("c".into()))
    );
    assert_eq!(net.node(1).pending(), 0);
}

#[test]
fn a_failed_or_oversized_computation_passes_the_grant_to_the_next_waiter() {
    let settings = CacheSettings::new("c", Mode::Local).limits(16, 4);
    let mut net = Net::new(1, &settings);
    let now = Instant::ZERO;
    let first = pending(net.node(1).get_or_compute(now, "c", b"k", SEC));
    let second = pending(net.node(1).get_or_compute(now, "c", b"k", SEC));
    let third = pending(net.node(1).get_or_compute(now, "c", b"k", SEC));
    net.settle(now);
    assert_eq!(runs(&net.take_events(1)), vec![first]);
    net.node(1).computed(
        now,
        first,
        Err(CacheError::ComputeFailed("panicked".into())),
    );
    net.settle(now);
    let events = net.take_events(1);
    assert_eq!(
        done(&events, first),
        Some(Err(CacheError::ComputeFailed("panicked".into())))
    );
    assert_eq!(runs(&events), vec![second]);
    net.node(1)
        .computed(now, second, Ok((Bytes::from_static(b"too big"), None)));
    net.settle(now);
    let events = net.take_events(1);
    assert_eq!(
        done(&events, second),
        Some(Err(CacheError::ValueTooLarge { len: 7, max: 4 }))
    );
    assert_eq!(runs(&events), vec![third]);
    net.node(1)
        .computed(now, third, Ok((Bytes::from_static(b"ok"), None)));
    net.settle(now);
    assert_eq!(
        done(&net.take_events(1), third),
        Some(Ok(Some(Bytes::from_static(b"ok"))))
    );
}

#[test]
fn a_computation_past_its_deadline_times_out_and_the_next_waiter_runs() {
    let settings = CacheSettings::new("c", Mode::Local);
    let mut net = Net::new(1, &settings);
    let t0 = Instant::ZERO;
    let first = pending(net.node(1).get_or_compute(t0, "c", b"k", SEC));
    let second = pending(net.node(1).get_or_compute(t0, "c", b"k", 5 * SEC));
    net.settle(t0);
    net.take_events(1);
    assert_eq!(net.node(1).poll_timeout(), Some(t0 + SEC));
    let t1 = t0 + SEC;
    net.node(1).handle_timeout(t1);
    net.settle(t1);
    let events = net.take_events(1);
    assert_eq!(done(&events, first), Some(Err(CacheError::Timeout)));
    assert_eq!(runs(&events), vec![second]);
    // The late result of the first is ignored.
    net.node(1)
        .computed(t1, first, Ok((Bytes::from_static(b"late"), None)));
    net.settle(t1);
    assert!(net.take_events(1).is_empty());
}

#[test]
fn entries_expire_after_their_ttl() {
    let settings = CacheSettings::new("c", Mode::Local).ttl(SEC);
    let mut net = Net::new(1, &settings);
    let t0 = Instant::ZERO;
    net.node(1)
        .put(t0, "c", b"k", Bytes::from_static(b"v"), None)
        .expect("puts");
    net.node(1)
        .put(t0, "c", b"short", Bytes::from_static(b"v"), Some(SEC / 2))
        .expect("puts");
    let half = t0 + SEC / 2;
    assert!(matches!(
        net.node(1).get(half, "c", b"k", SEC),
        Ok(Started::Ready(Some(_)))
    ));
    assert_eq!(
        net.node(1).get(half, "c", b"short", SEC),
        Ok(Started::Ready(None))
    );
    assert_eq!(
        net.node(1).get(t0 + SEC, "c", b"k", SEC),
        Ok(Started::Ready(None))
    );
}

#[test]
fn partitioned_callers_elsewhere_wait_for_the_one_computation_at_the_owner() {
    let settings = CacheSettings::new("p", Mode::Partitioned);
    let mut net = Net::new(3, &settings);
    let now = Instant::ZERO;
    let key = key_owned_by(&mut net, "p", 3);
    let a = pending(net.node(1).get_or_compute(now, "p", &key, SEC));
    net.settle(now);
    let b = pending(net.node(2).get_or_compute(now, "p", &key, SEC));
    net.settle(now);
    assert_eq!(runs(&net.take_events(1)), vec![a], "node 1 asked first");
    assert!(runs(&net.take_events(2)).is_empty(), "node 2 waits");
    assert_eq!(net.node(3).flights("p"), 1);
    net.node(1)
        .computed(now, a, Ok((Bytes::from_static(b"v1"), None)));
    net.settle(now);
    assert_eq!(
        done(&net.take_events(2), b),
        Some(Ok(Some(Bytes::from_static(b"v1"))))
    );
    assert_eq!(net.node(3).flights("p"), 0);
    // The owner holds the value; node 2 holds a near copy and reads it locally.
    assert!(matches!(
        net.node(3).get(now, "p", &key, SEC),
        Ok(Started::Ready(Some(_)))
    ));
    assert_eq!(
        net.node(2).get(now, "p", &key, SEC),
        Ok(Started::Ready(Some(Bytes::from_static(b"v1"))))
    );
}

/// A grant outlives its owner's life: a restarted owner numbers its grants from 1 again, so
/// the previous life's runner giving its grant back must not end the new life's grant of the
/// same number, which would let a second computation of the key start beside it.
#[test]
fn a_grant_of_the_owners_previous_life_given_back_does_not_end_the_new_lifes() {
    let settings = CacheSettings::new("p", Mode::Partitioned);
    let mut net = Net::new(2, &settings);
    let now = Instant::ZERO;
    let key = key_owned_by(&mut net, "p", 2);
    let old = pending(net.node(1).get_or_compute(now, "p", &key, 10 * SEC));
    net.settle(now);
    assert_eq!(runs(&net.take_events(1)), vec![old]);
    // Node 2 restarts (generation 2) while node 1 runs the old life's grant.
    restart_node_2(&mut net, &settings, now);
    // The new life grants the key to a second caller, and holds a third.
    let second = pending(net.node(1).get_or_compute(now, "p", &key, 10 * SEC));
    net.settle(now);
    assert_eq!(runs(&net.take_events(1)), vec![second]);
    let third = pending(net.node(1).get_or_compute(now, "p", &key, 10 * SEC));
    net.settle(now);
    assert!(runs(&net.take_events(1)).is_empty());
    // The old life's runner fails and gives its grant back to the node.
    net.node(1)
        .computed(now, old, Err(CacheError::ComputeFailed("failed".into())));
    net.settle(now);
    assert!(
        !runs(&net.take_events(1)).contains(&third),
        "a second computation of the key while the new life's grant runs"
    );
}

/// Node 2 of a two-node net starts again as generation 2, seeing node 1 and itself; the view
/// after it, with node 2's new life, for node 1 to take up.
fn restart_node_2(net: &mut Net, settings: &CacheSettings, now: Instant) -> Vec<Candidate> {
    let new_life = Life {
        node: NodeId::from_u128(2),
        generation: 2,
    };
    let mut restarted = Caches::new(new_life, 0);
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new(100));
    restarted
        .declare(now, settings.clone(), store)
        .expect("declares");
    let view = vec![candidate(1), renewed(2)];
    restarted.update_view(now, view.clone());
    net.nodes.insert(NodeId::from_u128(2), restarted);
    view
}

/// Two nodes of partitioned cache "p", and a key node 2 owns, put there as "v1".
fn v1_put_at_node_2() -> (Net, CacheSettings, Vec<u8>) {
    let settings = CacheSettings::new("p", Mode::Partitioned);
    let mut net = Net::new(2, &settings);
    let key = key_owned_by(&mut net, "p", 2);
    net.node(2)
        .put(Instant::ZERO, "p", &key, Bytes::from_static(b"v1"), None)
        .expect("puts");
    net.settle(Instant::ZERO);
    (net, settings, key)
}

#[test]
fn a_request_to_an_owner_that_restarted_is_asked_again_of_its_new_life() {
    let (mut net, settings, key) = v1_put_at_node_2();
    let now = Instant::ZERO;
    // Node 1 asks node 2, which ends before it answers: the request is lost with its life.
    net.hold_to = Some(NodeId::from_u128(2));
    let read = pending(net.node(1).get(now, "p", &key, 10 * SEC));
    let compute = pending(net.node(1).get_or_compute(now, "p", &key, 10 * SEC));
    net.settle(now);
    net.hold_to = None;
    net.held.clear();
    // Node 2 comes back empty, and node 1's view swaps its lives at once.
    let view = restart_node_2(&mut net, &settings, now);
    let later = now + SEC;
    net.node(1).update_view(later, view);
    net.settle(later);
    let events = net.take_events(1);
    assert_eq!(
        done(&events, read),
        Some(Ok(None)),
        "the read waited out its deadline"
    );
    assert_eq!(
        runs(&events),
        vec![compute],
        "the computation was not granted"
    );
}

/// A key of partitioned cache "p" owned by node 2, put there as "v1" and read from node 1,
/// which keeps a near copy of it.
fn near_copy_on_node_1(net: &mut Net, now: Instant) -> Vec<u8> {
    let key = key_owned_by(net, "p", 2);
    net.node(2)
        .put(now, "p", &key, Bytes::from_static(b"v1"), None)
        .expect("puts");
    let read = pending(net.node(1).get(now, "p", &key, SEC));
    net.settle(now);
    assert_eq!(
        done(&net.take_events(1), read),
        Some(Ok(Some(Bytes::from_static(b"v1"))))
    );
    key
}

#[test]
fn an_owner_change_of_value_invalidates_near_copies() {
    let settings = CacheSettings::new("p", Mode::Partitioned);
    let mut net = Net::new(2, &settings);
    let now = Instant::ZERO;
    let key = near_copy_on_node_1(&mut net, now);
    assert_eq!(
        net.node(1).get(now, "p", &key, SEC),
        Ok(Started::Ready(Some(Bytes::from_static(b"v1")))),
        "a near copy"
    );
    net.node(2)
        .put(now, "p", &key, Bytes::from_static(b"v2"), None)
        .expect("puts");
    net.settle(now);
    let read = pending(net.node(1).get(now, "p", &key, SEC));
    net.settle(now);
    assert_eq!(
        done(&net.take_events(1), read),
        Some(Ok(Some(Bytes::from_static(b"v2"))))
    );
}

#[test]
fn a_put_away_from_the_owner_drops_the_near_copy_so_a_read_there_gets_the_put() {
    let settings = CacheSettings::new("p", Mode::Partitioned);
    let mut net = Net::new(2, &settings);
    let now = Instant::ZERO;
    let key = near_copy_on_node_1(&mut net, now);
    net.node(1)
        .put(now, "p", &key, Bytes::from_static(b"v2"), None)
        .expect("puts");
    // Nothing delivered yet: the owner's invalidation has not come back.
    let read = pending(net.node(1).get(now, "p", &key, SEC));
    net.settle(now);
    assert_eq!(
        done(&net.take_events(1), read),
        Some(Ok(Some(Bytes::from_static(b"v2"))))
    );
}

/// The owner remembers who read a key so that a new value invalidates their near copies. A key
/// read once and then evicted or expired would be remembered as long as the node lives; it is
/// forgotten once no near copy of it can be left.
#[test]
fn an_owner_forgets_the_readers_of_keys_no_near_copy_is_left_of() {
    let mut settings = CacheSettings::new("p", Mode::Partitioned).bounds(16, 1 << 20);
    settings.near_ttl = SEC;
    let mut net = Net::new(2, &settings);
    let mut now = Instant::ZERO;
    let owner = net.node(1).owner_of("p", b"x");
    let keys: Vec<Vec<u8>> = (0u32..)
        .map(|i| format!("key-{i}").into_bytes())
        .filter(|k| net.node(1).owner_of("p", k) == owner)
        .take(1000)
        .collect();
    let (owner_n, reader_n) = if owner == Some(NodeId::from_u128(1)) {
        (1, 2)
    } else {
        (2, 1)
    };
    for key in keys {
        net.node(owner_n)
            .put(now, "p", &key, Bytes::from_static(b"v"), None)
            .expect("puts");
        let read = pending(net.node(reader_n).get(now, "p", &key, SEC));
        net.settle(now);
        assert!(done(&net.take_events(reader_n), read).is_some());
        now = now + Duration::from_millis(100);
    }
    // A near copy lives 1 s, plus the 1 s lease margin for its travel: about 20 of the 1,000
    // keys read may still have one.
    let remembered = net.node(owner_n).readers("p");
    assert!(remembered < 100, "{remembered} keys' readers remembered");
}

/// Forgetting readers must not forget one whose near copy may be live: the owner's own entry
/// leaving its store (evicted) is no sign that the reader's has.
#[test]
fn a_reader_of_an_entry_the_owner_evicted_is_still_invalidated_by_a_new_value() {
    let settings = CacheSettings::new("p", Mode::Partitioned).bounds(1, 1 << 20);
    let mut net = Net::new(2, &settings);
    let now = Instant::ZERO;
    let key = near_copy_on_node_1(&mut net, now);
    let other = key_owned_by_other(&mut net, "p", &key);
    net.node(2)
        .put(now, "p", &other, Bytes::from_static(b"x"), None)
        .expect("puts");
    net.settle(now);
    assert_eq!(
        net.node(2).get(now, "p", &key, SEC),
        Ok(Started::Ready(None))
    );
    net.node(2)
        .put(now, "p", &key, Bytes::from_static(b"v2"), None)
        .expect("puts");
    net.settle(now);
    let read = net.node(1).get(now, "p", &key, SEC);
    assert!(
        matches!(read, Ok(Started::Pending(_))),
        "the near copy of v1 was invalidated: {read:?}"
    );
}

/// A key of partitioned cache "p" owned by node 2 and put there as "v1"; node 1's read of
/// it (the request number), and the owner's answer, held back with whatever else is sent to
/// node 1 until `hold_to` is cleared.
fn answer_of_v1_held_back(net: &mut Net, now: Instant) -> (Vec<u8>, u64, (NodeId, CacheMessage)) {
    let key = key_owned_by(net, "p", 2);
    net.node(2)
        .put(now, "p", &key, Bytes::from_static(b"v1"), None)
        .expect("puts");
    let read = pending(net.node(1).get(now, "p", &key, SEC));
    net.hold_to = Some(NodeId::from_u128(1));
    net.settle(now);
    let (from, _, answer) = net.held.pop().expect("the answer");
    (key, read, (from, answer))
}

/// Node 1's read of a key node 2 owns, answered v1 and held back while node 2 takes v2 and its
/// invalidation reaches node 1 first; `between` runs before the held answer arrives. What the
/// read ended with.
fn read_answered_behind_an_invalidation(
    between: impl FnOnce(&mut Net, Instant),
) -> Option<Result<Option<Bytes>, CacheError>> {
    let settings = CacheSettings::new("p", Mode::Partitioned);
    let mut net = Net::new(2, &settings);
    let now = Instant::ZERO;
    let (key, read, (from, answer)) = answer_of_v1_held_back(&mut net, now);
    net.hold_to = None;
    net.node(2)
        .put(now, "p", &key, Bytes::from_static(b"v2"), None)
        .expect("puts");
    let invalidation = CacheMessage::Invalidate {
        cache: "p".into(),
        key: key.clone(),
        owner: life(2),
        version: 2,
    };
    net.node(1).received(now, from, invalidation);
    between(&mut net, now);
    net.node(1).received(now, from, answer);
    net.settle(now);
    done(&net.take_events(1), read)
}

#[test]
fn an_answer_older_than_an_invalidation_that_reached_the_reader_is_not_served() {
    assert_eq!(
        read_answered_behind_an_invalidation(|_, _| {}),
        Some(Ok(Some(Bytes::from_static(b"v2")))),
        "the stale answer was dropped and the owner asked again"
    );
}

/// Node `n` at generation 2: restarted, or the same process whose membership generation
/// renewed (its cache keeps its life).
fn renewed(n: u128) -> Candidate {
    Candidate {
        generation: 2,
        ..candidate(n)
    }
}

#[test]
fn an_invalidation_still_counts_after_the_owners_generation_renewed() {
    // The read is asked again of the renewed owner, and the held answer of v1 arrives first.
    let renewed_view = |net: &mut Net, now| {
        net.node(1).update_view(now, vec![candidate(1), renewed(2)]);
    };
    assert_eq!(
        read_answered_behind_an_invalidation(renewed_view),
        Some(Ok(Some(Bytes::from_static(b"v2")))),
        "v1 was served after v2's invalidation had arrived"
    );
}

#[test]
fn a_caller_that_asks_again_is_queued_once() {
    let settings = CacheSettings::new("p", Mode::Partitioned);
    let mut net = Net::new(3, &settings);
    let now = Instant::ZERO;
    let key = key_owned_by(&mut net, "p", 2);
    let first = pending(net.node(3).get_or_compute(now, "p", &key, 60 * SEC));
    net.settle(now);
    assert_eq!(runs(&net.take_events(3)), vec![first]);
    let waiting = pending(net.node(1).get_or_compute(now, "p", &key, 60 * SEC));
    net.settle(now);
    // Node 1's view renews the owner's generation: it asks again.
    net.node(1)
        .update_view(now, vec![candidate(1), renewed(2), candidate(3)]);
    net.settle(now);
    let failed = || Err(CacheError::ComputeFailed("failed".into()));
    net.node(3).computed(now, first, failed());
    net.settle(now);
    assert_eq!(runs(&net.take_events(1)), vec![waiting]);
    net.node(1).computed(now, waiting, failed());
    net.hold_to = Some(NodeId::from_u128(1));
    net.settle(now);
    let grants = net
        .held
        .iter()
        .filter(|(_, _, m)| matches!(m, CacheMessage::Grant { .. }))
        .count();
    assert_eq!(
        grants, 0,
        "the caller was granted again after its run ended"
    );
    assert_eq!(net.node(2).flights("p"), 0);
}

#[test]
fn an_owner_whose_generation_renewed_keeps_its_own_entries() {
    let (mut net, _, key) = v1_put_at_node_2();
    let now = Instant::ZERO;
    // Membership renewed node 2's generation; its cache keeps its life.
    net.node(2).update_view(now, vec![candidate(1), renewed(2)]);
    assert_eq!(
        net.node(2).get(now, "p", &key, SEC),
        Ok(Started::Ready(Some(Bytes::from_static(b"v1")))),
        "the owner dropped its own entry"
    );
}

/// A read in flight when this node puts the key may be answered with the value from before
/// the put: the caller gets it (it asked first), but it is not kept as a near copy, which
/// would serve it after the put until the owner's invalidation came back.
#[test]
fn an_answer_overtaken_by_our_own_put_is_not_kept_as_a_near_copy() {
    let settings = CacheSettings::new("p", Mode::Partitioned);
    let mut net = Net::new(2, &settings);
    let now = Instant::ZERO;
    // The owner answers v1, and the answer is held back ...
    let (key, first, (from, answer)) = answer_of_v1_held_back(&mut net, now);
    // ... while node 1 puts v2 (the owner's invalidation of it is held back too).
    net.node(1)
        .put(now, "p", &key, Bytes::from_static(b"v2"), None)
        .expect("puts");
    net.settle(now);
    net.node(1).received(now, from, answer);
    net.hold_to = None;
    net.settle(now);
    assert_eq!(
        done(&net.take_events(1), first),
        Some(Ok(Some(Bytes::from_static(b"v1")))),
        "the read asked before the put"
    );
    let second = net.node(1).get(now, "p", &key, SEC);
    let Ok(Started::Pending(second)) = second else {
        panic!("a read after the put asks the owner, not a near copy from before it: {second:?}");
    };
    net.settle(now);
    assert_eq!(
        done(&net.take_events(1), second),
        Some(Ok(Some(Bytes::from_static(b"v2"))))
    );
}

#[test]
fn when_the_owner_leaves_waiters_ask_the_new_owner_and_near_copies_go() {
    let settings = CacheSettings::new("p", Mode::Partitioned);
    let mut net = Net::new(3, &settings);
    let now = Instant::ZERO;
    let key = key_owned_by(&mut net, "p", 3);
    net.node(3)
        .put(now, "p", &key, Bytes::from_static(b"v1"), None)
        .expect("puts");
    let read = pending(net.node(1).get(now, "p", &key, SEC));
    net.settle(now);
    assert!(done(&net.take_events(1), read).is_some());
    assert_eq!(net.node(1).store("p").map(|s| s.len()), Some(1));
    // Node 3 is gone: node 1 drops its near copy, and asks the new owner.
    net.nodes.remove(&NodeId::from_u128(3));
    for n in 1..=2 {
        net.node(n)
            .update_view(now, vec![candidate(1), candidate(2)]);
    }
    assert_eq!(net.node(1).store("p").map(|s| s.len()), Some(0));
    let c = pending(net.node(1).get_or_compute(now, "p", &key, SEC));
    net.settle(now);
    let new_owner = net.node(1).owner_of("p", &key).expect("an owner");
    assert_ne!(new_owner, NodeId::from_u128(3));
    assert_eq!(runs(&net.take_events(1)), vec![c]);
}

#[test]
fn replicated_entries_travel_through_the_keyspace_with_their_expiry() {
    let settings = CacheSettings::new("r", Mode::Replicated).ttl(SEC);
    let mut a = Caches::new(life(1), 1_000_000);
    let mut b = Caches::new(life(2), 1_000_000);
    for m in [&mut a, &mut b] {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new(10));
        m.declare(Instant::ZERO, settings.clone(), store)
            .expect("declares");
    }
    let now = Instant::ZERO;
    a.put(now, "r", b"k", Bytes::from_static(b"v"), None)
        .expect("puts");
    let writes = a.take_publications();
    assert_eq!(writes.len(), 1);
    let write = &writes[0];
    assert_eq!(write.keyspace, "cache/r");
    b.replicated_changed(now, &write.keyspace, &write.key, write.value.as_deref());
    assert_eq!(
        b.get(now, "r", b"k", SEC),
        Ok(Started::Ready(Some(Bytes::from_static(b"v"))))
    );
    assert_eq!(b.get(now + SEC, "r", b"k", SEC), Ok(Started::Ready(None)));
}

#[test]
fn expired_replicated_entries_are_deleted_from_the_keyspace_by_their_purger_then_anyone() {
    let settings = CacheSettings::new("r", Mode::Replicated).ttl(SEC);
    let mut nodes: Vec<Caches> = (1..=2)
        .map(|n| {
            let mut m = Caches::new(life(n), 1_000_000);
            let store: Arc<dyn Store> = Arc::new(MemoryStore::new(10));
            m.declare(Instant::ZERO, settings.clone(), store)
                .expect("declares");
            m.update_view(Instant::ZERO, vec![candidate(1), candidate(2)]);
            m
        })
        .collect();
    let now = Instant::ZERO;
    nodes[0]
        .put(now, "r", b"k", Bytes::from_static(b"v"), None)
        .expect("puts");
    let write = nodes[0].take_publications().remove(0);
    for m in &mut nodes {
        m.replicated_changed(now, &write.keyspace, &write.key, write.value.as_deref());
        assert_eq!(m.purge_tracked("r"), 1);
        assert_eq!(m.poll_timeout(), Some(now + SEC + PURGE_GRACE));
    }
    // Due a grace after the expiry: not before, and then only at the key's purger.
    let due = now + SEC + PURGE_GRACE;
    let mut deletes = Vec::new();
    for (i, m) in nodes.iter_mut().enumerate() {
        m.handle_timeout(now + (SEC + PURGE_GRACE - Duration::from_millis(1)));
        assert!(m.take_publications().is_empty(), "not due yet");
        m.handle_timeout(due);
        deletes.extend(m.take_publications().into_iter().map(|w| (i, w)));
    }
    assert_eq!(deletes.len(), 1, "one node deletes: {deletes:?}");
    let (purger, delete) = deletes.remove(0);
    assert_eq!(
        (delete.key.as_str(), delete.value),
        (write.key.as_str(), None)
    );
    // Had the delete been lost, the other node deletes the key a retry later.
    let other = 1 - purger;
    assert_eq!(nodes[other].poll_timeout(), Some(due + PURGE_RETRY));
    nodes[other].handle_timeout(due + PURGE_RETRY);
    let retried = nodes[other].take_publications();
    assert_eq!(retried.len(), 1);
    assert_eq!(retried[0].value, None);
    // Once the keyspace says the key is gone, nothing is tracked and no timer is left.
    for m in &mut nodes {
        m.replicated_changed(due, &write.keyspace, &write.key, None);
        assert_eq!(m.purge_tracked("r"), 0);
        assert_eq!(m.poll_timeout(), None);
        assert_eq!(m.stats("r").map(|s| s.purged), Some(1));
    }
}

#[test]
fn a_replicated_entry_rewritten_without_expiry_is_not_deleted() {
    let settings = CacheSettings::new("r", Mode::Replicated).ttl(SEC);
    let mut m = Caches::new(life(1), 1_000_000);
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new(10));
    m.declare(Instant::ZERO, settings, store).expect("declares");
    let now = Instant::ZERO;
    m.put(now, "r", b"k", Bytes::from_static(b"v"), None)
        .expect("puts");
    assert_eq!(m.purge_tracked("r"), 1);
    // A later write of the key without expiry reaches the keyspace.
    let value = encode_replicated(None, b"v2");
    m.take_publications();
    m.replicated_changed(now, "cache/r", &hex(b"k"), Some(&value));
    assert_eq!(m.purge_tracked("r"), 0);
    m.handle_timeout(now + SEC + PURGE_GRACE);
    assert!(m.take_publications().is_empty());
}

#[test]
fn after_a_join_the_new_owner_serves_keys_computed_before_without_computing_again() {
    let settings = CacheSettings::new("p", Mode::Partitioned);
    let mut net = Net::new(3, &settings);
    let now = Instant::ZERO;
    // A key node 3 owns once it is in the view; until then node 3 is not a member.
    let key = key_owned_by(&mut net, "p", 3);
    for n in 1..=3 {
        net.node(n)
            .update_view(now, vec![candidate(1), candidate(2)]);
    }
    net.settle(now);
    let first = pending(net.node(1).get_or_compute(now, "p", &key, SEC));
    net.settle(now);
    assert_eq!(runs(&net.take_events(1)), vec![first]);
    net.node(1)
        .computed(now, first, Ok((Bytes::from_static(b"computed"), None)));
    net.settle(now);
    net.take_events(1);
    // Node 3 joins: the previous owner hands the key over.
    let all = vec![candidate(1), candidate(2), candidate(3)];
    for n in 1..=3 {
        net.node(n).update_view(now, all.clone());
    }
    net.settle(now);
    assert_eq!(net.node(3).stats("p").map(|s| s.taken_over), Some(1));
    for n in 1..=2 {
        let read = pending(net.node(n).get_or_compute(now, "p", &key, SEC));
        net.settle(now);
        let events = net.take_events(n);
        assert!(runs(&events).is_empty(), "node {n} computed again");
        assert_eq!(
            done(&events, read),
            Some(Ok(Some(Bytes::from_static(b"computed"))))
        );
    }
    assert!(runs(&net.take_events(3)).is_empty());
}

#[test]
fn a_handoff_does_not_replace_the_new_owners_own_value() {
    let settings = CacheSettings::new("p", Mode::Partitioned);
    let mut net = Net::new(2, &settings);
    let now = Instant::ZERO;
    let key = key_owned_by(&mut net, "p", 2);
    net.node(2)
        .put(now, "p", &key, Bytes::from_static(b"new"), None)
        .expect("puts");
    net.settle(now);
    // A stale handoff from node 1 (say, from an older view) arrives afterwards.
    let stale = CacheMessage::Handoff {
        cache: "p".into(),
        key: key.clone(),
        value: b"old".to_vec(),
        ttl_ms: None,
    };
    net.node(2).received(now, NodeId::from_u128(1), stale);
    assert_eq!(
        net.node(2).get(now, "p", &key, SEC),
        Ok(Started::Ready(Some(Bytes::from_static(b"new"))))
    );
    assert_eq!(net.node(2).stats("p").map(|s| s.taken_over), Some(0));
}

/// A put sent by a node that has not seen a join yet reaches the key's previous owner after
/// that owner handed its older value to the joiner: it must not leave the joiner serving the
/// value from before the put.
#[test]
fn a_put_that_reaches_the_previous_owner_after_its_handoff_is_not_lost_to_the_older_value() {
    let settings = CacheSettings::new("p", Mode::Partitioned);
    let mut net = Net::new(3, &settings);
    let now = Instant::ZERO;
    let all = vec![candidate(1), candidate(2), candidate(3)];
    let before = vec![candidate(1), candidate(2)];
    let me = NodeId::from_u128(1);
    let key = (0u32..)
        .map(|i| format!("key-{i}").into_bytes())
        .find(|k| {
            owner_among("p", k, &before, me) == NodeId::from_u128(1)
                && owner_among("p", k, &all, me) == NodeId::from_u128(3)
        })
        .expect("a key that moves from node 1 to node 3");
    for n in 1..=3 {
        net.node(n).update_view(now, before.clone());
    }
    net.node(1)
        .put(now, "p", &key, Bytes::from_static(b"old"), None)
        .expect("puts");
    net.settle(now);
    // Node 1 sees node 3 join and hands the key over; node 2 has not seen the join yet ...
    net.node(1).update_view(now, all.clone());
    net.settle(now);
    assert_eq!(net.node(3).stats("p").map(|s| s.taken_over), Some(1));
    // ... and puts a newer value at node 1, which owned the key in its view.
    net.node(2)
        .put(now, "p", &key, Bytes::from_static(b"new"), None)
        .expect("puts");
    net.settle(now);
    net.node(2).update_view(now, all);
    net.settle(now);
    for n in 1..=3 {
        let read = net.node(n).get(now, "p", &key, SEC);
        let value = match read {
            Ok(Started::Ready(value)) => value,
            Ok(Started::Pending(req)) => {
                net.settle(now);
                done(&net.take_events(n), req)
                    .and_then(Result::ok)
                    .flatten()
            }
            Err(e) => panic!("node {n}: {e}"),
        };
        assert_eq!(value, Some(Bytes::from_static(b"new")), "read on node {n}");
    }
}

/// A put passed on by a key's previous owner took two hops; a put its writer sent straight to
/// the owner since then may arrive first, and the one passed on must not replace it.
#[test]
fn a_put_passed_on_does_not_replace_one_its_writer_put_since() {
    let settings = CacheSettings::new("p", Mode::Partitioned);
    let mut net = Net::new(2, &settings);
    let now = Instant::ZERO;
    let key = key_owned_by(&mut net, "p", 2);
    net.node(1)
        .put(now, "p", &key, Bytes::from_static(b"newer"), None)
        .expect("puts");
    net.settle(now);
    let older = CacheMessage::Forward {
        cache: "p".into(),
        key: key.clone(),
        value: b"older".to_vec(),
        ttl_ms: None,
    };
    net.node(2).received(now, NodeId::from_u128(1), older);
    let held = net.node(2).get(now, "p", &key, SEC);
    assert_eq!(held, Ok(Started::Ready(Some(Bytes::from_static(b"newer")))));
}

/// A put passed on by a node that does not own its key is passed on once: where views
/// disagree it is dropped rather than sent round in a circle.
#[test]
fn a_put_passed_on_is_not_passed_on_again() {
    let settings = CacheSettings::new("p", Mode::Partitioned);
    let mut net = Net::new(2, &settings);
    let now = Instant::ZERO;
    let key = key_owned_by(&mut net, "p", 2);
    // Node 2, whose view gave the key to node 1, passed a put on: node 1's view gives it to
    // node 2.
    let forward = CacheMessage::Forward {
        cache: "p".into(),
        key: key.clone(),
        value: b"v".to_vec(),
        ttl_ms: None,
    };
    net.node(1).received(now, NodeId::from_u128(2), forward);
    assert_eq!(net.node(1).take_messages(), Vec::new(), "not passed on");
    assert_eq!(
        net.node(1).store("p").map(|s| s.len()),
        Some(0),
        "not taken"
    );
}

#[test]
fn a_handoff_that_arrives_before_the_cache_is_declared_is_taken_on_declare() {
    let settings = CacheSettings::new("p", Mode::Partitioned);
    let mut net = Net::new(2, &settings);
    let now = Instant::ZERO;
    let key = key_owned_by(&mut net, "p", 2);
    // Node 2 restarted and has not declared "p" yet; node 1 hands two keys over.
    let mut restarted = Caches::new(life(2), 0);
    restarted.adopt_view(vec![candidate(1), candidate(2)]);
    let handoff = |key: &[u8], value: &[u8], ttl_ms| CacheMessage::Handoff {
        cache: "p".into(),
        key: key.to_vec(),
        value: value.to_vec(),
        ttl_ms,
    };
    let from = NodeId::from_u128(1);
    restarted.received(now, from, handoff(&key, b"kept", Some(5_000)));
    let short = key_owned_by_other(&mut net, "p", &key);
    restarted.received(now, from, handoff(&short, b"expires", Some(100)));
    assert_eq!(restarted.early_handoffs(), 2);
    // Declared 60 ms later: both are taken, each with what is left of its TTL.
    let later = now + Duration::from_millis(60);
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new(100));
    restarted
        .declare(later, settings.clone(), store)
        .expect("declares");
    assert_eq!(restarted.early_handoffs(), 0);
    assert_eq!(restarted.stats("p").map(|s| s.taken_over), Some(2));
    assert_eq!(
        restarted.get(later, "p", &key, SEC),
        Ok(Started::Ready(Some(Bytes::from_static(b"kept"))))
    );
    let gone = later + Duration::from_millis(41);
    assert_eq!(
        restarted.get(gone, "p", &short, SEC),
        Ok(Started::Ready(None))
    );
}

#[test]
fn early_handoffs_are_bounded_expire_and_give_way_to_a_newer_write() {
    let settings = CacheSettings::new("p", Mode::Partitioned);
    let now = Instant::ZERO;
    let mut node = Caches::new(life(1), 0);
    let from = NodeId::from_u128(2);
    let handoff = |i: usize, cache: &str| CacheMessage::Handoff {
        cache: cache.into(),
        key: format!("k{i}").into_bytes(),
        value: b"v".to_vec(),
        ttl_ms: None,
    };
    for i in 0..handoff::MAX_EARLY + 10 {
        node.received(now, from, handoff(i, "p"));
    }
    assert_eq!(node.early_handoffs(), handoff::MAX_EARLY, "bounded");
    // Past the hold, a new arrival drops the old ones.
    let late = now + handoff::EARLY_HOLD;
    node.received(late, from, handoff(0, "q"));
    assert_eq!(node.early_handoffs(), 1);
    // A put for the key before the declaration: the kept (older) value is not taken.
    node.received(late, from, handoff(1, "p"));
    let put = CacheMessage::Put {
        cache: "p".into(),
        key: b"k1".to_vec(),
        token: 0,
        granted_by: None,
        value: b"newer".to_vec(),
        ttl_ms: None,
    };
    node.received(late, from, put);
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new(100));
    node.declare(late, settings, store).expect("declares");
    assert_eq!(node.stats("p").map(|s| s.taken_over), Some(0));
    assert_eq!(node.early_handoffs(), 1, "the other cache's stays");
    // Past its hold, declaring a cache takes nothing.
    let q = CacheSettings::new("q", Mode::Partitioned);
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new(100));
    node.declare(late + handoff::EARLY_HOLD, q, store)
        .expect("declares");
    assert_eq!(node.stats("q").map(|s| s.taken_over), Some(0));
    assert_eq!(node.early_handoffs(), 0);
}

/// A key of cache `name` other than `key` with the same owner.
fn key_owned_by_other(net: &mut Net, name: &str, key: &[u8]) -> Vec<u8> {
    let owner = net.node(1).owner_of(name, key);
    (0u32..)
        .map(|i| format!("other-{i}").into_bytes())
        .find(|k| net.node(1).owner_of(name, k) == owner)
        .expect("another key of the same owner")
}

/// A partitioned cache with the quorum rule: 1 s runs, 1 s lease margin, 1 s settle (a 3 s
/// fence).
fn quorum_settings() -> CacheSettings {
    let rule = QuorumRule {
        max_run: SEC,
        settle: SEC,
        min_members: 1,
    };
    CacheSettings::new("q", Mode::Partitioned).with_quorum(rule)
}

fn run_until(events: &[CacheEvent]) -> Vec<Instant> {
    events
        .iter()
        .filter_map(|e| match e {
            CacheEvent::Run { until, .. } => Some(*until),
            _ => None,
        })
        .collect()
}

/// Three nodes with a quorum cache declared at zero, and node 1's computation of a key it owns
/// asked at 1 s: held, since nothing is known before the declaration (a 3 s fence).
fn caller_held_by_the_first_fence() -> (Net, u64) {
    let settings = quorum_settings();
    let mut net = Net::new(3, &settings);
    let key = key_owned_by(&mut net, "q", 1);
    let now = Instant::ZERO + SEC;
    let req = pending(net.node(1).get_or_compute(now, "q", &key, 10 * SEC));
    net.settle(now);
    let events = net.take_events(1);
    assert!(runs(&events).is_empty(), "granted inside the fence");
    (net, req)
}

#[test]
fn a_quorum_cache_grants_after_its_fence_and_caps_runs_at_max_run() {
    let (mut net, req) = caller_held_by_the_first_fence();
    assert_eq!(net.node(1).poll_timeout(), Some(Instant::ZERO + 3 * SEC));
    let fence_end = Instant::ZERO + 3 * SEC;
    net.node(1).handle_timeout(fence_end);
    net.settle(fence_end);
    let events = net.take_events(1);
    assert_eq!(runs(&events), vec![req]);
    assert_eq!(
        run_until(&events),
        vec![fence_end + SEC],
        "capped at max_run"
    );
}

#[test]
fn without_a_majority_computes_are_refused_and_reads_still_answer() {
    let settings = quorum_settings();
    let mut net = Net::new(3, &settings);
    let key = key_owned_by(&mut net, "q", 3);
    let now = Instant::ZERO + 4 * SEC;
    net.node(1)
        .put(now, "q", &key, Bytes::from_static(b"held"), None)
        .expect("puts");
    net.settle(now);
    // Node 3 is cut off: it sees only itself, not a majority of the three agreed members.
    net.node(3).set_majority(false);
    net.node(3).update_view(now, vec![candidate(3)]);
    let other = key_owned_by_other(&mut net, "q", &key);
    let refused = pending(net.node(3).get_or_compute(now, "q", &other, SEC));
    net.settle(now);
    let events = net.take_events(3);
    assert!(runs(&events).is_empty());
    assert_eq!(done(&events, refused), Some(Err(CacheError::NoQuorum)));
    assert_eq!(net.node(3).stats("q").map(|s| s.refused), Some(1));
    // What it holds it still serves, computes included: a value needs no grant.
    assert_eq!(
        net.node(3).get_or_compute(now, "q", &key, SEC),
        Ok(Started::Ready(Some(Bytes::from_static(b"held"))))
    );
}

#[test]
fn a_key_that_moves_is_granted_by_its_new_owner_only_a_fence_later() {
    let settings = quorum_settings();
    let mut net = Net::new(3, &settings);
    let key = key_owned_by(&mut net, "q", 3);
    // Node 3 grants the key at 4 s, then is cut off from nodes 1 and 2 (still a majority).
    let t = Instant::ZERO + 4 * SEC;
    let first = pending(net.node(3).get_or_compute(t, "q", &key, 10 * SEC));
    net.settle(t);
    assert_eq!(runs(&net.take_events(3)), vec![first]);
    let cut = t + Duration::from_millis(100);
    for n in 1..=2 {
        net.node(n)
            .update_view(cut, vec![candidate(1), candidate(2)]);
    }
    let new_owner = net.node(1).owner_of("q", &key).expect("declared");
    assert_ne!(new_owner, NodeId::from_u128(3));
    let asker = if new_owner == NodeId::from_u128(1) {
        2
    } else {
        1
    };
    let second = pending(net.node(asker).get_or_compute(cut, "q", &key, 10 * SEC));
    net.settle(cut);
    assert!(
        runs(&net.take_events(asker)).is_empty(),
        "granted while node 3's may run"
    );
    // Node 3's grant ran at most 1 s + 1 s margin; the new owner waits 3 s from the cut.
    let owner_node = net.nodes.get_mut(&new_owner).expect("node");
    assert_eq!(owner_node.poll_timeout(), Some(cut + 3 * SEC));
    owner_node.handle_timeout(cut + 3 * SEC);
    net.settle(cut + 3 * SEC);
    assert_eq!(runs(&net.take_events(asker)), vec![second]);
}

#[test]
fn callers_held_by_the_fence_are_refused_when_the_majority_goes() {
    let (mut net, held) = caller_held_by_the_first_fence();
    let now = Instant::ZERO + SEC;
    net.node(1).set_majority(false);
    net.node(1).update_view(now, vec![candidate(1)]);
    net.settle(now);
    assert_eq!(
        done(&net.take_events(1), held),
        Some(Err(CacheError::NoQuorum))
    );
    assert_eq!(net.node(1).flights("q"), 0);
}

#[test]
fn the_quorum_rule_is_for_partitioned_caches() {
    let mut settings = quorum_settings();
    settings.mode = Mode::Local;
    assert!(matches!(settings.validate(), Err(CacheError::Invalid(_))));
}
