//! Unit tests of the replication machine: a few machines wired by hand through an in-memory
//! wire the test controls (delivery order, duplication, loss).

use std::time::Duration;

use crate::NodeId;
use bytes::Bytes;
use foundation_crdt::{NodeId as CrdtId, Timestamp, DEFAULT_MAX_DRIFT_MS};

use super::*;
use crate::effects::Effect;
use crate::node::CoreMessage;
use crate::storage::{Disk, Loaded, Op as StoredOp, SimDisk};

struct Peer {
    addr: NodeAddr,
    machine: Replication,
    out: Outbox,
    events: Vec<ReplicationEvent>,
    /// The node's disk, once it persists: batches are written at once, synced by the test.
    disk: Option<SimDisk>,
    /// Batches written and not synced yet, by number.
    unsynced: Vec<u64>,
    /// Every batch handed out, for tests that read them.
    batches: Vec<Batch>,
}

/// Machines plus the messages in flight between them: `(from, to, payload)`.
struct Net {
    peers: Vec<Peer>,
    wire: Vec<(usize, usize, Bytes)>,
    now: Instant,
}

fn ids(nodes: &[usize]) -> Vec<NodeId> {
    nodes.iter().map(|&j| addr(j).id).collect()
}

fn addr(i: usize) -> NodeAddr {
    NodeAddr {
        id: NodeId::from_u128(i as u128 + 1),
        addr: format!("127.0.0.1:{}", 7000 + i).parse().expect("address"),
    }
}

fn origin(i: usize, generation: u64) -> Origin {
    Origin {
        node: CrdtId::from_u128(i as u128 + 1),
        generation,
    }
}

impl Net {
    fn new(n: usize, config: ReplicationConfig) -> Net {
        let peers = (0..n)
            .map(|i| Peer {
                addr: addr(i),
                machine: Replication::new(origin(i, 1), config.clone(), i as u64),
                out: Outbox::default(),
                events: Vec::new(),
                disk: None,
                unsynced: Vec::new(),
                batches: Vec::new(),
            })
            .collect();
        Net {
            peers,
            wire: Vec::new(),
            now: Instant::ZERO + Duration::from_secs(10),
        }
    }

    fn others(&self, i: usize) -> Vec<NodeAddr> {
        (0..self.peers.len())
            .filter(|&j| j != i)
            .map(addr)
            .collect()
    }

    /// Moves node `i`'s queued sends onto the wire and its events into its log.
    fn collect(&mut self, i: usize) {
        while let Some(effect) = self.peers[i].out.pop() {
            match effect {
                Effect::Send { to, payload, .. } => {
                    let to = self.peers.iter().position(|p| p.addr == to).expect("peer");
                    self.wire.push((i, to, payload));
                }
                Effect::Event(Event::Replication(event)) => self.peers[i].events.push(event),
                Effect::Event(_) => {}
                Effect::Persist { seq, batch } => {
                    let p = &mut self.peers[i];
                    let disk = p
                        .disk
                        .as_mut()
                        .expect("batches only from a node with a disk");
                    match disk.write(&batch) {
                        Ok(()) => p.unsynced.push(seq),
                        Err(_) => p.machine.persist_failed(seq),
                    }
                    p.batches.push(batch);
                }
            }
        }
    }

    /// Writes on `i`, pushing to `peers` (all others when `None`).
    fn write(&mut self, i: usize, key: &str, value: Option<&str>, push: bool) {
        self.now = self.now + Duration::from_millis(1);
        let peers = if push { self.others(i) } else { Vec::new() };
        let write = Write {
            keyspace: "ks".into(),
            key: key.into(),
            value: value.map(|v| v.as_bytes().to_vec()),
        };
        let p = &mut self.peers[i];
        p.machine
            .write(self.now, write, &peers, &mut p.out)
            .expect("write accepted");
        self.collect(i);
    }

    fn deliver(&mut self, (from, to, payload): (usize, usize, Bytes)) {
        let Ok(CoreMessage::Replication(message)) = postcard::from_bytes(&payload) else {
            panic!("not a replication message");
        };
        let p = &mut self.peers[to];
        p.machine
            .handle_message(self.now, Some(addr(from)), message, &mut p.out);
        self.collect(to);
    }

    /// Node 0 writes `n` keys every node then holds.
    fn share_keys(&mut self, n: usize) {
        for k in 0..n {
            self.write(0, &format!("shared{k}"), Some("x"), true);
        }
        self.deliver_all();
    }

    fn deliver_all(&mut self) {
        while !self.wire.is_empty() {
            let message = self.wire.remove(0);
            self.deliver(message);
        }
    }

    /// Node `i` starts an anti-entropy exchange with `j`, and the exchange runs to its end.
    fn exchange(&mut self, i: usize, j: usize) {
        let p = &mut self.peers[i];
        p.machine.handle_timer(
            self.now,
            ReplicationTimer::AntiEntropy,
            &[addr(j)],
            &[addr(j).id],
            &mut p.out,
        );
        self.collect(i);
        self.deliver_all();
    }

    fn value(&self, i: usize, key: &str) -> Option<String> {
        self.peers[i]
            .machine
            .get("ks", key)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

    fn assert_converged(&self) {
        let first = self.peers[0].machine.state_digests();
        for p in &self.peers {
            assert_eq!(p.machine.state_digests(), first);
            assert_eq!(p.machine.digest(), self.peers[0].machine.digest());
            p.machine.invariants().expect("invariants");
        }
    }
}

#[test]
fn a_write_is_pushed_to_every_live_peer_in_a_small_cluster() {
    let mut net = Net::new(3, ReplicationConfig::default());
    net.write(0, "a", Some("1"), true);
    assert_eq!(net.wire.len(), 2);
    net.deliver_all();
    for i in 1..3 {
        assert_eq!(net.value(i, "a").as_deref(), Some("1"));
        assert_eq!(
            net.peers[i].events,
            vec![ReplicationEvent::KeyChanged {
                keyspace: "ks".into(),
                key: "a".into(),
                old: None,
                new: Some(b"1".to_vec()),
            }]
        );
    }
    net.assert_converged();
}

#[test]
fn a_small_cluster_gets_every_write_in_one_hop() {
    let mut net = Net::new(6, ReplicationConfig::default());
    net.write(0, "a", Some("1"), true);
    assert_eq!(net.wire.len(), 5);
}

#[test]
fn above_push_all_max_the_fanout_limits_the_eager_push() {
    let config = ReplicationConfig {
        push_all_max: 4,
        ..ReplicationConfig::default()
    };
    let mut net = Net::new(6, config);
    net.write(0, "a", Some("1"), true);
    assert_eq!(net.wire.len(), 3);
}

#[test]
fn a_digest_exchange_fills_gaps_both_ways() {
    let mut net = Net::new(2, ReplicationConfig::default());
    // Shared keys first, so the gaps are small next to the keyspace and go as ops.
    net.share_keys(20);
    net.write(0, "a", Some("1"), false);
    net.write(0, "b", Some("2"), false);
    net.write(1, "c", Some("3"), false);
    assert!(net.wire.is_empty());
    // 0 asks 1: 1 sends what 0 lacks and, lacking something itself, its own digest back.
    net.exchange(0, 1);
    assert_eq!(net.value(1, "a").as_deref(), Some("1"));
    assert_eq!(net.value(0, "c").as_deref(), Some("3"));
    net.assert_converged();
    // Once equal, an exchange sends only the digest.
    net.exchange(1, 0);
    let sent: u64 = net.peers.iter().map(|p| p.machine.stats().ops_sent).sum();
    assert_eq!(sent, 20 + 3);
    let states: u64 = net
        .peers
        .iter()
        .map(|p| p.machine.stats().full_states_sent)
        .sum();
    assert_eq!(states, 0);
}

#[test]
fn a_peer_missing_more_than_the_keyspace_holds_gets_the_full_state() {
    let mut net = Net::new(2, ReplicationConfig::default());
    for n in 0..50 {
        net.write(0, "hot", Some(&n.to_string()), false);
    }
    // Fifty ops of one key are far larger than the one-key state.
    net.exchange(1, 0);
    let stats = net.peers[0].machine.stats();
    assert_eq!((stats.ops_sent, stats.full_states_sent), (0, 1));
    assert_eq!(net.value(1, "hot").as_deref(), Some("49"));
    net.assert_converged();
}

#[test]
fn news_from_an_answer_asks_for_another_exchange_and_the_chain_is_capped() {
    let mut net = Net::new(3, ReplicationConfig::default());
    net.share_keys(20);
    for i in 0..3 {
        assert!(
            !net.peers[i].machine.take_chain_request(),
            "pushes are not news to pass on"
        );
    }
    net.write(0, "new", Some("1"), false);
    net.exchange(1, 0);
    assert!(net.peers[1].machine.take_chain_request());
    assert!(!net.peers[1].machine.take_chain_request(), "taken once");
    // Node 1 chains to a member other than the one that taught it: node 2.
    let peers = net.others(1);
    for _ in 0..CHAINED_EXCHANGES_MAX + 2 {
        let p = &mut net.peers[1];
        p.machine
            .chain(net.now, &peers, Some(addr(0).id), &mut p.out);
    }
    net.collect(1);
    assert_eq!(net.wire.len(), CHAINED_EXCHANGES_MAX as usize);
    assert!(net.wire.iter().all(|(_, to, _)| *to == 2));
    net.deliver_all();
    assert_eq!(net.value(2, "new").as_deref(), Some("1"));
    // A new interval allows new chained exchanges.
    net.exchange(1, 2);
    net.wire.clear();
    let p = &mut net.peers[1];
    p.machine.chain(net.now, &peers, None, &mut p.out);
    net.collect(1);
    assert_eq!(net.wire.len(), 1);
}

#[test]
fn a_stateless_node_pulls_from_the_first_member_up_once_per_interval() {
    let mut net = Net::new(3, ReplicationConfig::default());
    net.write(0, "a", Some("1"), false);
    up(&mut net, 2, 0, false);
    up(&mut net, 2, 1, false);
    assert_eq!(net.wire.len(), 1, "one pull per interval");
    net.deliver_all();
    assert_eq!(net.value(2, "a").as_deref(), Some("1"));
    // A node with state leaves a new member to anti-entropy.
    net.now = net.now + Duration::from_secs(5);
    up(&mut net, 0, 1, false);
    up(&mut net, 2, 1, false);
    assert!(net.wire.is_empty());
}

#[test]
fn a_member_that_comes_back_is_asked_for_what_it_wrote_meanwhile_without_a_reply() {
    let mut net = Net::new(2, ReplicationConfig::default());
    net.share_keys(20);
    // Both sides write while apart.
    net.write(0, "mine", Some("0"), false);
    net.write(1, "theirs", Some("1"), false);
    net.now = net.now + Duration::from_secs(5);
    up(&mut net, 0, 1, true);
    net.deliver_all();
    assert_eq!(net.value(0, "theirs").as_deref(), Some("1"));
    assert_eq!(net.value(1, "mine"), None, "a pull asks for no reply");
    up(&mut net, 1, 0, true);
    net.deliver_all();
    net.assert_converged();
}

fn up(net: &mut Net, i: usize, peer: usize, came_back: bool) {
    let now = net.now;
    let p = &mut net.peers[i];
    p.machine.member_up(now, addr(peer), came_back, &mut p.out);
    net.collect(i);
}

#[test]
fn duplicated_and_reordered_ops_converge() {
    let mut net = Net::new(2, ReplicationConfig::default());
    for n in 0..5 {
        net.write(0, &format!("k{}", n % 3), Some(&n.to_string()), true);
    }
    let mut wire = std::mem::take(&mut net.wire);
    wire.reverse();
    let duplicates = wire.clone();
    for message in wire.into_iter().chain(duplicates) {
        net.deliver(message);
    }
    net.assert_converged();
    assert_eq!(net.peers[1].machine.stats().duplicate_ops, 5);
    assert_eq!(net.peers[1].machine.digest()["ks"][&origin(0, 1)], 5);
}

#[test]
fn lost_ops_are_recovered_by_anti_entropy() {
    let mut net = Net::new(3, ReplicationConfig::default());
    for n in 0..10 {
        net.write(n % 3, &format!("k{n}"), Some("v"), true);
        // Lose every other push.
        if n % 2 == 0 {
            net.wire.clear();
        }
        net.deliver_all();
    }
    net.exchange(0, 1);
    net.exchange(2, 0);
    net.exchange(1, 2);
    net.assert_converged();
    assert_eq!(
        net.peers[2].machine.keyspace("ks").map(|k| k.map().len()),
        Some(10)
    );
}

#[test]
fn a_peer_behind_the_log_horizon_gets_the_full_state() {
    let config = ReplicationConfig {
        op_log_max: 2,
        ..ReplicationConfig::default()
    };
    let mut net = Net::new(2, config);
    for n in 0..5 {
        net.write(0, &format!("k{n}"), Some("v"), false);
    }
    net.write(0, "k0", None, false);
    net.exchange(1, 0);
    assert_eq!(net.peers[0].machine.stats().full_states_sent, 1);
    assert_eq!(net.peers[1].machine.stats().full_states_merged, 1);
    net.assert_converged();
    assert_eq!(net.value(1, "k0"), None);
    assert_eq!(net.peers[1].events.len(), 4);
    // Back within the horizon: later ops flow as ops again.
    net.write(0, "k9", Some("v"), true);
    net.deliver_all();
    net.exchange(1, 0);
    assert_eq!(net.peers[0].machine.stats().full_states_sent, 1);
    net.assert_converged();
}

#[test]
fn concurrent_writes_on_both_sides_of_a_partition_converge() {
    let mut net = Net::new(4, ReplicationConfig::default());
    net.write(0, "x", Some("left"), false);
    net.write(1, "x", Some("left-later"), false);
    net.write(2, "x", Some("right"), false);
    net.write(3, "x", None, false);
    net.write(3, "y", Some("only-right"), false);
    for (i, j) in [(0, 1), (2, 3), (1, 2), (0, 3), (3, 1), (2, 0)] {
        net.exchange(i, j);
    }
    net.assert_converged();
    // Last writer wins: node 3's delete was the latest write to x.
    assert_eq!(net.value(0, "x"), None);
    assert_eq!(net.value(0, "y").as_deref(), Some("only-right"));
}

#[test]
fn a_stale_set_does_not_resurrect_a_deleted_key() {
    let mut net = Net::new(2, ReplicationConfig::default());
    net.write(0, "a", Some("1"), true);
    let stale = net.wire.clone();
    net.deliver_all();
    net.write(0, "a", None, true);
    net.deliver_all();
    for message in stale {
        net.deliver(message);
    }
    assert_eq!(net.value(1, "a"), None);
    net.assert_converged();
}

#[test]
fn a_restarted_node_is_a_new_origin_so_its_ops_are_not_taken_for_duplicates() {
    let mut net = Net::new(2, ReplicationConfig::default());
    net.write(0, "a", Some("1"), true);
    net.deliver_all();
    net.peers[0].machine = Replication::new(origin(0, 2), ReplicationConfig::default(), 9);
    net.write(0, "a", Some("2"), true);
    net.deliver_all();
    assert_eq!(net.value(1, "a").as_deref(), Some("2"));
    net.exchange(1, 0);
    net.assert_converged();
}

#[test]
fn ops_stamped_too_far_in_the_future_are_refused() {
    let mut net = Net::new(2, ReplicationConfig::default());
    let future = Timestamp {
        wall_ms: 10_000 + DEFAULT_MAX_DRIFT_MS + 60_000,
        logical: 0,
        node: CrdtId::from_u128(1),
    };
    let envelope = Envelope {
        keyspace: "ks".into(),
        origin: origin(0, 1),
        seq: 1,
        epoch: 0,
        op: Op {
            key: "a".into(),
            entry: LwwEntry {
                ts: future,
                value: Some(b"x".to_vec()),
            },
        },
    };
    let payload = encode(ReplicationMessage::Ops(vec![envelope]));
    net.deliver((0, 1, payload));
    assert_eq!(net.value(1, "a"), None);
    assert_eq!(net.peers[1].machine.stats().drift_rejected, 1);
}

/// A full state from node `from` holding one old value of its own and collected below a
/// horizon at `horizon_ms`: what a node whose clock runs ahead of ours sends.
fn state_collected_at(from: usize, horizon_ms: u64) -> ReplicationMessage {
    let maker = origin(from, 1);
    let mut map = Map::new();
    let ts = Timestamp {
        wall_ms: 1_000,
        logical: 0,
        node: maker.node,
    };
    let value = Value {
        bytes: b"old".to_vec(),
        generation: maker.generation,
        seq: 1,
    };
    map.set("old".into(), value, ts);
    map.gc_tombstones(Timestamp::at_wall(horizon_ms));
    ReplicationMessage::FullState {
        keyspace: "ks".into(),
        epoch: 0,
        state: full_state::encode(&map).expect("encodes"),
        seen: [(maker, 1)].into(),
        retired: Seen::new(),
    }
}

/// A horizon far ahead of our clock would drop every tombstone at once and leave every later
/// delete without one, so an older set arriving after it wins: refused like a stamp that far
/// ahead, and counted.
/// Node 0's entry for `k` is stamped past the horizon taken at `horizon_ms`.
fn assert_stamped_past(net: &Net, horizon_ms: u64) {
    let ts = net.peers[0]
        .machine
        .keyspace("ks")
        .and_then(|k| k.entry("k"))
        .map(|e| e.ts);
    assert!(ts > Some(Timestamp::at_wall(horizon_ms)), "{ts:?}");
}

#[test]
fn a_full_state_collected_past_the_drift_bound_is_refused() {
    let mut net = Net::new(3, ReplicationConfig::default());
    let far = 10_000 + DEFAULT_MAX_DRIFT_MS + 60_000;
    net.deliver((2, 0, encode(state_collected_at(2, far))));
    assert_eq!(net.peers[0].machine.stats().drift_rejected, 1);
    assert_eq!(net.value(0, "old"), None);
}

/// A horizon taken from a peer (within the drift bound, but ahead of our clock) moves our clock
/// past it: a node stamping below a horizon it holds leaves its deletes no tombstone, and a set
/// of the same key delivered after its delete was then taken for new on one replica and not on
/// the other, with equal seen-sets: apart for good.
#[test]
fn writes_after_taking_a_peers_horizon_are_stamped_past_it() {
    let mut net = Net::new(3, ReplicationConfig::default());
    let horizon_ms = 10_000 + 20_000;
    for to in [0, 1] {
        net.deliver((2, to, encode(state_collected_at(2, horizon_ms))));
    }
    net.write(0, "k", Some("v"), true);
    net.write(0, "k", None, true);
    net.wire.retain(|(_, to, _)| *to == 1);
    net.wire.reverse();
    net.deliver_all();
    net.exchange(0, 1);
    net.exchange(1, 0);
    assert_eq!(net.value(0, "k"), None);
    assert_eq!(
        net.value(1, "k"),
        None,
        "the delete beats the set on every replica"
    );
    assert_stamped_past(&net, horizon_ms);
}

#[test]
fn limits_refuse_writes_with_typed_errors() {
    let config = ReplicationConfig {
        value_size_max: 4,
        keyspace_keys_max: 2,
        keyspaces_max: 1,
        ..ReplicationConfig::default()
    };
    let mut machine = Replication::new(origin(0, 1), config, 0);
    let mut out = Outbox::default();
    let mut write = |keyspace: &str, key: &str, value: &str| {
        let write = Write {
            keyspace: keyspace.into(),
            key: key.into(),
            value: Some(value.as_bytes().to_vec()),
        };
        machine.write(Instant::ZERO, write, &[], &mut out)
    };
    assert!(matches!(
        write("ks", "a", "12345"),
        Err(ReplicationError::ValueTooLarge { size: 5, max: 4 })
    ));
    write("ks", "a", "1").expect("fits");
    write("ks", "b", "1").expect("fits");
    write("ks", "a", "2").expect("overwrite needs no room");
    assert!(matches!(
        write("ks", "c", "1"),
        Err(ReplicationError::KeyspaceFull { max: 2, .. })
    ));
    assert!(matches!(
        write("other", "a", "1"),
        Err(ReplicationError::TooManyKeyspaces { max: 1, .. })
    ));
    assert!(matches!(
        write("", "a", "1"),
        Err(ReplicationError::BadKeyspaceName { .. })
    ));
    assert_eq!(machine.stats().refused_writes, 4);
    // A tombstone takes no room: with "b" deleted, a new key fits again, and then no more.
    let mut write = |key: &str, value: Option<&str>| {
        let write = Write {
            keyspace: "ks".into(),
            key: key.into(),
            value: value.map(|v| v.as_bytes().to_vec()),
        };
        machine.write(Instant::ZERO, write, &[], &mut out)
    };
    write("b", None).expect("a delete needs no room");
    write("c", Some("1")).expect("the tombstone's room is free");
    assert!(matches!(
        write("d", Some("1")),
        Err(ReplicationError::KeyspaceFull { max: 2, .. })
    ));
}

#[test]
fn garbage_full_state_is_refused_without_panicking() {
    let mut net = Net::new(2, ReplicationConfig::default());
    let message = ReplicationMessage::FullState {
        keyspace: "ks".into(),
        epoch: 0,
        state: vec![1, 0xff, 0xff, 0xff],
        seen: Seen::new(),
        retired: Seen::new(),
    };
    net.deliver((0, 1, encode(message)));
    assert_eq!(net.peers[1].machine.stats().bad_states, 1);
    assert!(net.peers[1].machine.keyspace("ks").is_none());
}

/// Node 2's full state, claiming that it has seen `claimed`'s every seq up to the last.
fn state_claiming_the_last_seq_of(claimed: Origin) -> Bytes {
    let ReplicationMessage::FullState { state, .. } = state_collected_at(2, 1_000) else {
        unreachable!("a full state");
    };
    encode(ReplicationMessage::FullState {
        keyspace: "ks".into(),
        epoch: 0,
        state,
        seen: [(claimed, u64::MAX)].into(),
        retired: Seen::new(),
    })
}

/// Seqs are a peer's word: the largest one a state can claim is taken without an overflow.
#[test]
fn a_full_state_claiming_the_last_seq_is_merged_without_overflow() {
    let mut net = Net::new(3, ReplicationConfig::default());
    net.deliver((2, 0, state_claiming_the_last_seq_of(origin(2, 1))));
    assert_eq!(net.value(0, "old").as_deref(), Some("old"));
    let keyspace = net.peers[0].machine.keyspace("ks").expect("ks");
    assert_eq!(keyspace.contiguous(&origin(2, 1)), Some(u64::MAX));
    keyspace.invariants().expect("invariants");
}

/// A peer's state claiming our own last seq leaves no seq for our next write: it is refused,
/// not stamped with a wrapped seq every peer takes for one it holds.
#[test]
fn a_write_after_a_state_claimed_our_last_seq_is_refused() {
    let mut net = Net::new(3, ReplicationConfig::default());
    net.deliver((2, 0, state_claiming_the_last_seq_of(origin(0, 1))));
    let refused = net.write_acked_among(0, "k", &[1], 2);
    assert!(
        matches!(&refused, Err(ReplicationError::SeqExhausted { keyspace }) if keyspace == "ks"),
        "{refused:?}"
    );
    assert_eq!(net.value(0, "k"), None, "a refused write changed nothing");
}

#[test]
fn a_small_write_costs_under_a_hundred_bytes_per_peer() {
    let mut net = Net::new(4, ReplicationConfig::default());
    net.write(0, "service.checkout", Some("true"), true);
    let sizes: Vec<usize> = net.wire.iter().map(|(_, _, p)| p.len()).collect();
    eprintln!("push of a 16-byte key, 4-byte value: {sizes:?} bytes per peer");
    assert!(sizes.iter().all(|&s| s < 100), "{sizes:?}");
}

impl Net {
    /// Node `i`'s anti-entropy timer fires with `live` as its live members; whatever it sends
    /// is delivered.
    fn tick(&mut self, i: usize, live: &[usize]) {
        self.tick_with(i, live, live);
    }

    /// Like [`Self::tick`], with `members` the members not departed (`live` and the failed).
    fn tick_with(&mut self, i: usize, live: &[usize], members: &[usize]) {
        self.fire_anti_entropy(i, live, members);
        self.deliver_all();
    }

    /// Node `i`'s anti-entropy timer fires; what it sends is collected, not delivered.
    fn fire_anti_entropy(&mut self, i: usize, live: &[usize], members: &[usize]) {
        let members = ids(members);
        let live: Vec<NodeAddr> = live.iter().map(|&j| addr(j)).collect();
        let p = &mut self.peers[i];
        let timer = ReplicationTimer::AntiEntropy;
        p.machine
            .handle_timer(self.now, timer, &live, &members, &mut p.out);
        self.collect(i);
    }

    /// Node `i` writes `key` asking `targets` for acks, until `until` from now.
    fn write_acked(&mut self, i: usize, key: &str, targets: &[usize]) -> AckTicket {
        self.write_acked_among(i, key, targets, targets.len() + 1)
            .expect("write accepted")
    }

    /// [`Net::write_acked`] with a majority counted among `group` members.
    fn write_acked_among(
        &mut self,
        i: usize,
        key: &str,
        targets: &[usize],
        group: usize,
    ) -> Result<AckTicket, ReplicationError> {
        let peers: Vec<NodeAddr> = targets.iter().map(|&j| addr(j)).collect();
        let write = Write {
            keyspace: "ks".into(),
            key: key.into(),
            value: Some(b"v".to_vec()),
        };
        let until = self.now + Duration::from_secs(5);
        let p = &mut self.peers[i];
        let ticket = p
            .machine
            .write_acked(self.now, write, &peers, group, until, &mut p.out);
        self.collect(i);
        ticket
    }

    fn acks(&self, i: usize) -> Vec<(usize, usize)> {
        self.peers[i]
            .events
            .iter()
            .filter_map(|e| match e {
                ReplicationEvent::Acked {
                    holders, members, ..
                } => Some((*holders, *members)),
                ReplicationEvent::KeyChanged { .. } => None,
            })
            .collect()
    }

    fn tombstones(&self, i: usize) -> usize {
        self.peers[i]
            .machine
            .keyspace("ks")
            .map_or(0, |k| k.map().tombstones())
    }

    fn advance(&mut self, by: Duration) {
        self.now = self.now + by;
    }

    /// Every pair of `nodes` exchanges digests, twice, so each ends up synced and holding the
    /// others' up-to-date digests.
    fn agree(&mut self, nodes: &[usize]) {
        for _ in 0..2 {
            for &i in nodes {
                for &j in nodes {
                    if i != j {
                        self.exchange(i, j);
                    }
                }
            }
        }
    }
}

#[test]
fn an_acked_write_reports_each_new_holder() {
    let mut net = Net::new(3, ReplicationConfig::default());
    let ticket = net.write_acked(0, "a", &[1, 2]);
    assert_eq!((ticket.members, ticket.majority()), (3, 2));
    assert_eq!(net.wire.len(), 2);
    net.deliver_all();
    assert_eq!(net.acks(0), vec![(2, 3), (3, 3)]);
    // A duplicate ack (the retry raced the answer) counts once.
    let duplicate = ReplicationMessage::Ack {
        keyspace: "ks".into(),
        origin: origin(0, 1),
        seq: ticket.seq,
    };
    net.deliver((1, 0, encode(duplicate)));
    assert_eq!(net.acks(0).len(), 2);
    assert_eq!(net.value(2, "a").as_deref(), Some("v"));
}

#[test]
fn a_lost_ack_request_is_retried_on_the_anti_entropy_timer() {
    let mut net = Net::new(3, ReplicationConfig::default());
    net.write_acked(0, "a", &[1, 2]);
    // The request to node 2 is lost.
    net.wire.retain(|(_, to, _)| *to != 2);
    net.deliver_all();
    assert_eq!(net.acks(0), vec![(2, 3)]);
    net.tick(0, &[]);
    assert_eq!(net.acks(0), vec![(2, 3), (3, 3)]);
    // Fully acked: nothing is asked again.
    net.tick(0, &[]);
    assert!(net.wire.is_empty());
    assert_eq!(net.peers[0].machine.stats().acks_received, 2);
}

#[test]
fn acks_stop_at_the_deadline_and_foreign_acks_are_ignored() {
    let mut net = Net::new(2, ReplicationConfig::default());
    let ticket = net.write_acked(0, "a", &[1]);
    net.wire.clear();
    // An ack for someone else's write, or from a member that was not asked, changes nothing.
    let foreign = ReplicationMessage::Ack {
        keyspace: "ks".into(),
        origin: origin(1, 1),
        seq: ticket.seq,
    };
    net.deliver((1, 0, encode(foreign)));
    assert!(net.acks(0).is_empty());
    net.advance(Duration::from_secs(6));
    net.tick(0, &[]);
    assert!(net.wire.is_empty(), "no retry after the deadline");
}

#[test]
fn a_write_acked_with_no_live_peers_needs_only_us() {
    let mut net = Net::new(1, ReplicationConfig::default());
    let ticket = net.write_acked(0, "a", &[]);
    assert_eq!((ticket.members, ticket.majority()), (1, 1));
}

/// The majority is of the agreed group, not of who is visible: alone out of three, a majority
/// write is refused and nothing is applied; with one of the two others visible it is taken,
/// and needs that one's ack.
#[test]
fn a_majority_write_counts_the_agreed_group_and_is_refused_on_a_minority_side() {
    let mut net = Net::new(3, ReplicationConfig::default());
    let refused = net.write_acked_among(0, "a", &[], 3);
    assert_eq!(
        refused,
        Err(ReplicationError::MinoritySide {
            visible: 1,
            agreed: 3,
            needed: 2
        })
    );
    assert_eq!(net.value(0, "a"), None, "nothing applied");
    assert!(net.wire.is_empty());
    let ticket = net.write_acked_among(0, "b", &[1], 3).expect("taken");
    assert_eq!((ticket.members, ticket.majority()), (3, 2));
    net.deliver_all();
    assert_eq!(net.acks(0), vec![(2, 3)]);
    // A group smaller than who is visible counts who is visible.
    let ticket = net.write_acked_among(0, "c", &[1, 2], 1).expect("taken");
    assert_eq!(ticket.members, 3);
}

fn gc_config() -> ReplicationConfig {
    ReplicationConfig {
        tombstone_ttl: Duration::from_secs(1),
        op_log_max: 2,
        ..ReplicationConfig::default()
    }
}

#[test]
fn a_tombstone_is_kept_while_a_live_member_has_not_seen_it() {
    let mut net = Net::new(3, gc_config());
    net.write(0, "a", Some("1"), true);
    net.deliver_all();
    // Node 2 tells node 0 what it has, then misses the delete.
    net.exchange(2, 0);
    net.write(0, "a", None, false);
    net.agree(&[0, 1]);
    net.advance(Duration::from_secs(5));
    net.tick(0, &[1, 2]);
    // Node 0's tick sent node 2 a digest, not the delete: node 2 still lacks it.
    assert_eq!(net.tombstones(0), 1);
    // Once node 2 has it and says so, node 0 may collect.
    net.exchange(2, 0);
    net.exchange(2, 0);
    net.advance(Duration::from_secs(1));
    net.tick(0, &[1, 2]);
    assert_eq!(net.tombstones(0), 0);
    assert_eq!(net.peers[0].machine.stats().tombstones_collected, 1);
}

/// Issue 21's loss, in miniature: a side of a partition agreed on a GC horizon among itself,
/// because only live members' digests were required, and a member cut off before it ever sent
/// a digest counted for nothing. Every member not departed must have told us its digest.
#[test]
fn a_member_cut_off_before_it_sent_a_digest_holds_gc_back_until_it_departs() {
    let mut net = Net::new(3, gc_config());
    net.write(0, "a", Some("1"), true);
    net.write(0, "a", None, true);
    net.wire.retain(|(_, to, _)| *to != 2);
    net.deliver_all();
    net.agree(&[0, 1]);
    net.advance(Duration::from_secs(5));
    // Node 2 failed (cut off), not departed: no agreement without its digest.
    net.tick_with(0, &[1], &[1, 2]);
    assert_eq!(net.tombstones(0), 1);
    // Departed: it no longer holds GC back.
    net.advance(Duration::from_secs(1));
    net.tick_with(0, &[1], &[1]);
    assert_eq!(net.tombstones(0), 0);
}

/// A member's writes after its last digest are stamped after that digest's clock, so the
/// horizon stays below the clock even when the member's view showed every op: the member
/// may have written meanwhile, and its clock need not have moved past what it received.
#[test]
fn the_horizon_stays_below_every_members_last_clock() {
    let mut net = Net::new(3, gc_config());
    net.agree(&[0, 1, 2]);
    net.advance(Duration::from_secs(3));
    net.write(0, "a", Some("1"), true);
    net.write(0, "a", None, true);
    net.deliver_all();
    net.agree(&[0, 1]);
    net.advance(Duration::from_secs(5));
    // Node 2 has the delete but has said nothing since before it: its clock holds the horizon.
    net.tick_with(0, &[1], &[1, 2]);
    assert_eq!(net.tombstones(0), 1);
    let horizon = net.peers[0]
        .machine
        .keyspace("ks")
        .expect("ks")
        .map()
        .horizon();
    assert!(horizon < Timestamp::at_wall(13_000), "{horizon:?}");
    net.agree(&[0, 1, 2]);
    net.advance(Duration::from_secs(2));
    net.tick(0, &[1, 2]);
    assert_eq!(net.tombstones(0), 0);
}

/// The documented price of departure: a set made by a writer taken for gone, older than a
/// delete the others already collected, comes back and wins — on every replica alike.
#[test]
fn after_departure_an_older_concurrent_set_wins_over_a_collected_delete_everywhere() {
    let mut net = Net::new(3, gc_config());
    net.write(0, "k", Some("before"), true);
    net.deliver_all();
    net.agree(&[0, 1, 2]);
    // Node 2, cut off, sets `k`; then node 0 deletes it, later in LWW order.
    net.write(2, "k", Some("cut-off"), false);
    net.advance(Duration::from_millis(5));
    net.write(0, "k", None, true);
    net.wire.retain(|(_, to, _)| *to != 2);
    net.deliver_all();
    // Node 2 departs for 0 and 1; they agree and collect the delete.
    for i in [0, 1] {
        let other = 1 - i;
        net.peers[i]
            .machine
            .retire(&[addr(2).id].into(), &BTreeSet::new(), &[addr(other).id]);
    }
    net.agree(&[0, 1]);
    net.advance(Duration::from_secs(5));
    net.tick(0, &[1]);
    net.tick(1, &[0]);
    assert_eq!((net.tombstones(0), net.tombstones(1)), (0, 0));
    // Node 2 comes back: its set is new to them, and no tombstone is left to beat it.
    net.exchange(2, 0);
    net.exchange(0, 2);
    net.exchange(2, 1);
    net.exchange(1, 2);
    for i in 0..3 {
        assert_eq!(net.value(i, "k").as_deref(), Some("cut-off"), "node {i}");
    }
}

#[test]
fn a_renewed_node_writes_as_its_new_life_and_still_counts_acks_of_the_old_one() {
    let mut net = Net::new(2, ReplicationConfig::default());
    let before = net.write_acked(0, "a", &[1]);
    net.peers[0].machine.renew(origin(0, 2));
    let after = net.write_acked(0, "b", &[1]);
    assert_eq!((before.origin, after.origin), (origin(0, 1), origin(0, 2)));
    assert_eq!(
        (before.seq, after.seq),
        (1, 1),
        "the new life counts from 1"
    );
    net.deliver_all();
    assert_eq!(net.acks(0), vec![(2, 2), (2, 2)]);
    assert_eq!(net.value(1, "a").as_deref(), Some("v"));
    assert_eq!(net.value(1, "b").as_deref(), Some("v"));
}

/// Above `push_all_max` members a node hears digests from its anti-entropy partners and a few
/// GC announces, and GC waits for every member's. With partners drawn at random each interval,
/// the last member's came after about N·ln N intervals, and tombstones outlived their ttl by
/// that much (at 100 members, ttl 160 s: about 400 s); the partner is now the member sent to
/// longest ago, so each member's digest arrives within N−1 intervals.
#[test]
fn above_push_all_max_every_tombstone_goes_within_the_ttl_and_one_cycle_of_members() {
    const N: usize = 100;
    let config = ReplicationConfig {
        tombstone_ttl: Duration::from_secs(160),
        ..ReplicationConfig::default()
    };
    assert!(N > config.push_all_max);
    let interval = config.anti_entropy_interval;
    let bound = config.tombstone_ttl + interval * N as u32 + config.tombstone_ttl / 8;
    let mut net = Net::new(N, config);
    net.write(0, "a", Some("1"), true);
    net.write(0, "a", None, true);
    net.deliver_all();
    let deleted = net.now;
    while (0..N).any(|i| net.tombstones(i) > 0) {
        let held = net.now.saturating_since(deleted);
        assert!(
            held <= bound,
            "a tombstone still held {held:?} after the delete"
        );
        net.advance(interval);
        for i in 0..N {
            let live: Vec<usize> = (0..N).filter(|&j| j != i).collect();
            net.tick(i, &live);
        }
    }
}

#[test]
fn a_tombstone_younger_than_the_ttl_is_kept() {
    let mut net = Net::new(2, gc_config());
    net.write(0, "a", Some("1"), true);
    net.write(0, "a", None, true);
    net.deliver_all();
    net.agree(&[0, 1]);
    net.tick(0, &[1]);
    assert_eq!(net.tombstones(0), 1);
}

#[test]
fn a_removed_key_does_not_resurrect_when_a_lagging_peer_syncs_after_gc() {
    let mut net = Net::new(3, gc_config());
    net.write(0, "a", Some("1"), true);
    net.deliver_all();
    // Node 2 drops out and departs; 0 and 1 delete `a`, write on (past the op log), agree.
    net.peers[0]
        .machine
        .retire(&[addr(2).id].into(), &BTreeSet::new(), &[addr(1).id]);
    net.write(0, "a", None, false);
    for n in 0..3 {
        net.write(0, &format!("k{n}"), Some("v"), false);
    }
    net.agree(&[0, 1]);
    net.advance(Duration::from_secs(5));
    net.tick(0, &[1]);
    assert_eq!(net.tombstones(0), 0, "collected");
    // Node 2 comes back holding `a = 1` and syncs both ways.
    assert_eq!(net.value(2, "a").as_deref(), Some("1"));
    net.exchange(2, 0);
    net.exchange(0, 2);
    net.exchange(1, 2);
    net.exchange(2, 1);
    for i in 0..3 {
        assert_eq!(net.value(i, "a"), None, "node {i}");
    }
    assert_eq!(net.value(2, "k2").as_deref(), Some("v"));
    // Its stale push of `a = 1`, replayed, is a duplicate to node 0.
    let stale = Envelope {
        keyspace: "ks".into(),
        origin: origin(0, 1),
        seq: 1,
        epoch: 0,
        op: Op {
            key: "a".into(),
            entry: LwwEntry {
                ts: Timestamp {
                    wall_ms: 10_001,
                    logical: 0,
                    node: CrdtId::from_u128(1),
                },
                value: Some(b"1".to_vec()),
            },
        },
    };
    net.deliver((2, 0, encode(ReplicationMessage::Ops(vec![stale]))));
    assert_eq!(net.value(0, "a"), None);
}

/// A write new to a replica is a write, whatever the horizon says: a writer that was taken
/// for gone (a partition longer than `departed_after`) may come back with writes stamped below
/// the horizon the others agreed on without it. They are kept, here and everywhere.
#[test]
fn a_write_new_here_is_kept_even_below_the_horizon_and_everywhere() {
    let mut net = Net::new(2, gc_config());
    net.write(0, "x", Some("1"), true);
    net.write(0, "x", None, true);
    net.deliver_all();
    net.agree(&[0, 1]);
    net.advance(Duration::from_secs(5));
    net.tick(0, &[1]);
    assert_eq!(net.tombstones(0), 0, "collected");
    let horizon = net.peers[0]
        .machine
        .keyspace("ks")
        .expect("ks")
        .map()
        .horizon();
    assert!(horizon > Timestamp::at_wall(10_000), "{horizon:?}");
    let old = Envelope {
        keyspace: "ks".into(),
        origin: origin(1, 1),
        seq: 1,
        epoch: 0,
        op: Op {
            key: "late".into(),
            entry: LwwEntry {
                ts: Timestamp {
                    wall_ms: 10_000,
                    logical: 0,
                    node: origin(1, 1).node,
                },
                value: Some(b"v".to_vec()),
            },
        },
    };
    net.deliver((1, 0, encode(ReplicationMessage::Ops(vec![old]))));
    net.deliver_all();
    assert_eq!(net.value(0, "late").as_deref(), Some("v"));
    // A full state carries it on to a replica that never saw it, horizon or not.
    net.exchange(1, 0);
    net.exchange(0, 1);
    assert_eq!(net.value(1, "late").as_deref(), Some("v"));
}

/// An op whose timestamp is another node's than its origin's, or with seq 0, would be
/// misjudged in merges: refused, and counted.
#[test]
fn an_op_that_contradicts_itself_is_refused() {
    let mut net = Net::new(2, ReplicationConfig::default());
    let op = |seq: u64, node: u128| Envelope {
        keyspace: "ks".into(),
        origin: origin(1, 1),
        seq,
        epoch: 0,
        op: Op {
            key: "k".into(),
            entry: LwwEntry {
                ts: Timestamp {
                    wall_ms: 10_000,
                    logical: 0,
                    node: CrdtId::from_u128(node),
                },
                value: Some(b"v".to_vec()),
            },
        },
    };
    let ops = vec![op(0, 2), op(1, 7)];
    net.deliver((1, 0, encode(ReplicationMessage::Ops(ops))));
    assert_eq!(net.peers[0].machine.stats().malformed, 2);
    assert_eq!(net.value(0, "k"), None);
    net.deliver((1, 0, encode(ReplicationMessage::Ops(vec![op(1, 2)]))));
    assert_eq!(net.value(0, "k").as_deref(), Some("v"));
}

/// Nodes 0–2 stay; nodes 3.. each write once and depart.
fn transient_writers(writers: usize) -> Net {
    let mut net = Net::new(3 + writers, ReplicationConfig::default());
    net.write(0, "mine", Some("0"), false);
    for w in 3..3 + writers {
        net.write(w, &format!("w{w}"), Some("v"), false);
        // A second keyspace, so compaction and epoch adoption cover more than one.
        let p = &mut net.peers[w];
        let other = Write {
            keyspace: "other".into(),
            key: "k".into(),
            value: Some(vec![1]),
        };
        p.machine
            .write(net.now, other, &[], &mut p.out)
            .expect("fits");
        net.exchange(w, 0);
    }
    net.agree(&[0, 1, 2]);
    net
}

fn departed(writers: usize) -> (BTreeSet<NodeId>, BTreeSet<Origin>) {
    let nodes = (3..3 + writers).map(|w| addr(w).id).collect();
    let origins = (3..3 + writers).map(|w| origin(w, 1)).collect();
    (nodes, origins)
}

fn origin_logs(net: &Net, i: usize) -> usize {
    net.peers[i]
        .machine
        .keyspace("ks")
        .map_or(0, Keyspace::origin_count)
}

#[test]
fn departed_origins_are_compacted_so_bookkeeping_does_not_grow_with_writers() {
    for writers in [5, 20] {
        let mut net = transient_writers(writers);
        assert_eq!(origin_logs(&net, 0), 1 + writers);
        let (nodes, gone) = departed(writers);
        for i in 0..3 {
            let live: Vec<NodeId> = (0..3).filter(|&j| j != i).map(|j| addr(j).id).collect();
            let mut gone = gone.clone();
            // A live member's origin is never retired, even if asked to.
            gone.insert(origin(1, 1));
            net.peers[i].machine.retire(&nodes, &gone, &live);
        }
        for i in 0..3 {
            assert_eq!(origin_logs(&net, i), 1, "{writers} writers, node {i}");
            assert_eq!(net.value(i, "w3").as_deref(), Some("v"), "data kept");
        }
        let epoch = net.peers[0].machine.epoch();
        assert_ne!(epoch, 0);
        assert!((0..3).all(|i| net.peers[i].machine.epoch() == epoch));
        // A departed origin's op of the old epoch, offered again, is refused: nothing regrows.
        let replay = net.peers[3]
            .machine
            .keyspace("ks")
            .map(|k| k.missing_for("ks", None, 0).ops)
            .unwrap_or_default();
        net.deliver((3, 1, encode(ReplicationMessage::Ops(replay))));
        assert_eq!(origin_logs(&net, 1), 1);
        // The survivors still replicate in the new epoch.
        net.write(1, "after", Some("1"), false);
        net.agree(&[0, 1, 2]);
        assert!((0..3).all(|i| origin_logs(&net, i) == 2));
        for i in 0..3 {
            assert_eq!(net.value(i, "after").as_deref(), Some("1"));
        }
    }
}

#[test]
fn an_origin_some_member_lacks_ops_of_is_not_retired() {
    let mut net = Net::new(4, ReplicationConfig::default());
    net.write(3, "w", Some("1"), true);
    net.write(3, "w", Some("2"), true);
    // Node 0 got both ops, node 1 only the first and told node 0 so.
    net.wire.retain(|(_, to, _)| *to == 0);
    net.deliver_all();
    let first = net.peers[0]
        .machine
        .keyspace("ks")
        .expect("ks")
        .missing_for("ks", None, 0);
    net.deliver((
        0,
        1,
        encode(ReplicationMessage::Ops(first.ops[..1].to_vec())),
    ));
    net.wire.clear();
    let p = &mut net.peers[1];
    p.machine.handle_timer(
        net.now,
        ReplicationTimer::AntiEntropy,
        &[addr(0)],
        &[addr(0).id],
        &mut p.out,
    );
    net.collect(1);
    // Deliver node 1's digest only; node 0's answer is lost.
    let digest = net.wire.remove(0);
    net.wire.clear();
    net.deliver(digest);
    net.wire.clear();
    net.peers[0]
        .machine
        .retire(&[addr(3).id].into(), &[origin(3, 1)].into(), &[addr(1).id]);
    assert_eq!(
        origin_logs(&net, 0),
        1,
        "node 1 still lacks an op of node 3"
    );
    assert_eq!(net.peers[0].machine.epoch(), 0);
}

#[test]
fn a_node_of_an_older_epoch_catches_up_through_full_states() {
    let writers = 3;
    let mut net = transient_writers(writers);
    let (nodes, gone) = departed(writers);
    // Only node 0 compacts; node 1 writes on in the old epoch meanwhile.
    net.peers[0]
        .machine
        .retire(&nodes, &gone, &[addr(1).id, addr(2).id]);
    net.write(1, "old-epoch", Some("1"), true);
    net.deliver_all();
    assert_eq!(net.value(0, "old-epoch"), None, "refused across epochs");
    net.exchange(1, 0);
    net.exchange(0, 1);
    assert_eq!(net.peers[1].machine.epoch(), net.peers[0].machine.epoch());
    assert_eq!(origin_logs(&net, 1), origin_logs(&net, 0));
    for i in 0..2 {
        let other = net.peers[i].machine.keyspace("other").expect("other");
        assert_eq!(
            other.origin_count(),
            0,
            "node {i}: departed writers dropped everywhere"
        );
    }
    assert_eq!(net.value(0, "old-epoch").as_deref(), Some("1"));
    assert_eq!(
        net.peers[0].machine.state_digests(),
        net.peers[1].machine.state_digests()
    );
}

/// Found by the simulator (`compaction`, seed 1): epochs were ordered by their hash, so a node
/// that compacted a second time could take a state of the epoch it came from for the newer one,
/// adopt it back with the origins it had just retired, retire them again, and so on: the
/// cluster never agreed on an epoch, and tombstone GC (which needs one) never ran.
#[test]
fn a_node_that_compacted_again_keeps_its_epoch_and_does_not_take_back_what_it_retired() {
    // Several second waves, so the epochs' hashes fall both ways.
    for wave in 1..=6 {
        let mut net = transient_writers(3 + wave);
        let (nodes, _) = departed(3 + wave);
        let first: BTreeSet<Origin> = (3..6).map(|w| origin(w, 1)).collect();
        let second: BTreeSet<Origin> = (6..6 + wave).map(|w| origin(w, 1)).collect();
        for i in 0..3 {
            let live: Vec<NodeId> = (0..3).filter(|&j| j != i).map(|j| addr(j).id).collect();
            net.peers[i].machine.retire(&nodes, &first, &live);
        }
        let e1 = net.peers[0].machine.epoch();
        assert!((0..3).all(|i| net.peers[i].machine.epoch() == e1));
        net.agree(&[0, 1, 2]);
        // Only node 0 retires the second wave.
        net.peers[0]
            .machine
            .retire(&nodes, &second, &[addr(1).id, addr(2).id]);
        let e2 = net.peers[0].machine.epoch();
        assert_ne!(e2, e1);
        assert_eq!(origin_logs(&net, 0), 1);
        // Node 0 gets node 1's state of the older epoch, and node 1 gets node 0's.
        net.exchange(0, 1);
        net.exchange(1, 0);
        for i in 0..2 {
            let epoch = net.peers[i].machine.epoch();
            assert_eq!(epoch, e2, "wave {wave}: node {i} is in the newest epoch");
            assert_eq!(
                origin_logs(&net, i),
                1,
                "wave {wave}: node {i} tracks a departed writer"
            );
        }
        net.agree(&[0, 1, 2]);
        for i in 0..3 {
            assert_eq!(net.peers[i].machine.epoch(), e2, "wave {wave}: node {i}");
            assert_eq!(origin_logs(&net, i), 1, "wave {wave}: node {i}");
            assert_eq!(net.value(i, "w8").as_deref(), (wave >= 3).then_some("v"));
            assert_eq!(
                net.peers[i].machine.state_digests(),
                net.peers[0].machine.state_digests()
            );
        }
    }
}

/// Found by the simulator (`lagging-replica`, seed 3): a node that restarted empty (so it does
/// not tick, and sends no digest of its own) answered a digest of another epoch with its full
/// states — none — and nothing else, so it never received the cluster's data once the cluster
/// had compacted.
#[test]
fn an_empty_node_catches_up_with_a_cluster_in_a_later_epoch() {
    let mut net = transient_writers(2);
    let (nodes, gone) = departed(2);
    for i in 0..3 {
        let live: Vec<NodeId> = (0..3).filter(|&j| j != i).map(|j| addr(j).id).collect();
        net.peers[i].machine.retire(&nodes, &gone, &live);
    }
    let epoch = net.peers[0].machine.epoch();
    assert_ne!(epoch, 0);
    // Node 3 comes back as a new life with nothing, and node 0 happens to pick it.
    net.peers[3].machine = Replication::new(origin(3, 2), ReplicationConfig::default(), 33);
    net.exchange(0, 3);
    assert_eq!(net.value(3, "mine").as_deref(), Some("0"));
    assert_eq!(net.value(3, "w4").as_deref(), Some("v"));
    assert_eq!(net.peers[3].machine.epoch(), epoch);
    assert_eq!(
        net.peers[3].machine.state_digests(),
        net.peers[0].machine.state_digests()
    );
}

#[test]
fn a_compaction_epoch_is_newer_than_the_one_it_came_from_even_when_the_count_wraps() {
    let retired: BTreeSet<Origin> = [origin(9, 1)].into();
    let mut epoch = 0;
    for _ in 0..70_000 {
        let next = next_epoch(epoch, &retired);
        assert!(newer_epoch(next, epoch) && !newer_epoch(epoch, next));
        assert!(!newer_epoch(epoch, epoch));
        epoch = next;
    }
}

#[test]
fn a_large_full_state_goes_on_the_bulk_channel() {
    let config = ReplicationConfig {
        op_log_max: 1,
        bulk_threshold: 100,
        ..ReplicationConfig::default()
    };
    let mut machine = Replication::new(origin(0, 1), config, 0);
    let mut out = Outbox::default();
    for n in 0..4 {
        let write = Write {
            keyspace: if n < 2 { "small" } else { "large" }.into(),
            key: format!("k{n}"),
            value: Some(vec![7; if n < 2 { 4 } else { 200 }]),
        };
        machine
            .write(Instant::ZERO, write, &[], &mut out)
            .expect("fits");
    }
    while out.pop().is_some() {}
    let ask = ReplicationMessage::Digest {
        digest: Digest::new(),
        reply: false,
        epoch: 0,
        clock: Timestamp::ZERO,
        retired: BTreeMap::new(),
    };
    machine.handle_message(Instant::ZERO, Some(addr(1)), ask, &mut out);
    let mut channels = Vec::new();
    while let Some(effect) = out.pop() {
        if let Effect::Send {
            channel, payload, ..
        } = effect
        {
            let Ok(CoreMessage::Replication(ReplicationMessage::FullState { keyspace, .. })) =
                postcard::from_bytes(&payload)
            else {
                continue;
            };
            channels.push((keyspace, channel));
        }
    }
    assert_eq!(
        channels,
        vec![
            ("large".to_owned(), Channel::Bulk),
            ("small".to_owned(), Channel::Replication)
        ]
    );
    assert_eq!(machine.stats().bulk_states_sent, 1);
}

#[test]
fn the_op_log_limit_covers_all_origins_together() {
    let config = ReplicationConfig {
        op_log_max: 4,
        ..ReplicationConfig::default()
    };
    let mut net = Net::new(3, config);
    for i in 0..3 {
        for n in 0..4 {
            net.write(i, &format!("n{i}k{n}"), Some("x"), true);
        }
    }
    net.deliver_all();
    let keyspace = net.peers[0].machine.keyspace("ks").expect("ks");
    // Twelve ops by three origins, four logged: a peer that has seen nothing is past the log.
    assert!(keyspace.missing_for("ks", None, 0).needs_full_state);
    // A peer missing only the newest op is still served from the log.
    let mut seen = keyspace.seen();
    let newest = net.peers[0].machine.digest()["ks"].clone();
    let (origin, seq) = newest
        .iter()
        .last()
        .map(|(o, s)| (*o, *s))
        .expect("an origin");
    seen.insert(origin, seq - 1);
    let missing = keyspace.missing_for("ks", Some(&seen), 0);
    assert!(!missing.needs_full_state);
    assert_eq!(missing.ops.len(), 1);
}

// Persistence: what a node writes to its disk, what it reads back, and when it acknowledges.

impl Net {
    /// Gives node `i` a disk; `volatile` keyspaces do not persist.
    fn persist(&mut self, i: usize, volatile: &[&str]) {
        let p = &mut self.peers[i];
        p.disk = Some(SimDisk::new());
        let volatile = volatile.iter().map(|v| v.to_string()).collect();
        p.machine.enable_persistence(volatile);
    }

    /// Node `i` ends an input: its changes become a batch.
    fn flush(&mut self, i: usize) {
        let p = &mut self.peers[i];
        p.machine.flush_persistence(&mut p.out);
        self.collect(i);
    }

    /// Node `i`'s disk syncs, and the machine hears that its batches are durable.
    fn sync(&mut self, i: usize) {
        let p = &mut self.peers[i];
        p.disk.as_mut().expect("a disk").sync().expect("sync");
        if let Some(&upto) = p.unsynced.iter().max() {
            p.unsynced.clear();
            p.machine.persisted(upto, &mut p.out);
        }
        self.collect(i);
    }

    /// Node `i` crashes (unsynced writes lost) and starts again as `generation`, from its disk.
    fn restart(&mut self, i: usize, generation: u64) {
        self.restart_with(i, generation, |_| {});
    }

    /// As [`Self::restart`], with `damage` done to what the disk loaded.
    fn restart_with(&mut self, i: usize, generation: u64, damage: impl FnOnce(&mut Loaded)) {
        use rand::SeedableRng;
        let config = self.peers[i].machine.config().clone();
        let mut disk = self.peers[i].disk.take().expect("a disk");
        disk.crash(&mut rand::rngs::StdRng::seed_from_u64(7));
        let mut loaded = disk.load().expect("load");
        damage(&mut loaded);
        let p = &mut self.peers[i];
        p.machine = Replication::new(origin(i, generation), config, 99);
        p.machine.enable_persistence(Default::default());
        let whole = !loaded.report.partial;
        let skipped = p
            .machine
            .restore(self.now, &loaded.state, whole, &mut p.out);
        assert_eq!(skipped, 0, "every record decodes");
        p.disk = Some(disk);
        p.unsynced.clear();
        self.collect(i);
    }

    /// Writes on `i` as an input: applied, pushed, and flushed to its disk.
    fn durable_write(&mut self, i: usize, key: &str, value: &str) {
        self.write(i, key, Some(value), true);
        self.flush(i);
    }

    fn deliver_flushing(&mut self) {
        while !self.wire.is_empty() {
            let (from, to, payload) = self.wire.remove(0);
            self.deliver((from, to, payload));
            self.flush(to);
        }
    }

    fn acks_on_wire(&self) -> usize {
        self.wire
            .iter()
            .filter(|(_, _, payload)| {
                matches!(
                    postcard::from_bytes(payload),
                    Ok(CoreMessage::Replication(ReplicationMessage::Ack { .. }))
                )
            })
            .count()
    }
}

#[test]
fn a_restarted_node_has_what_it_synced_and_asks_only_for_what_it_missed() {
    let mut net = Net::new(2, ReplicationConfig::default());
    net.persist(1, &[]);
    for k in 0..10 {
        net.durable_write(0, &format!("k{k}"), "before");
    }
    net.deliver_flushing();
    net.sync(1);
    // While node 1 is down, node 0 writes three more.
    net.wire.clear();
    for k in 0..3 {
        net.write(0, &format!("late{k}"), Some("during"), false);
    }
    net.restart(1, 2);
    assert_eq!(net.value(1, "k9").as_deref(), Some("before"));
    assert_eq!(net.value(1, "late0"), None);
    let before = net.peers[0].machine.stats().clone();
    let p = &mut net.peers[1];
    p.machine.member_up(net.now, addr(0), false, &mut p.out);
    net.collect(1);
    net.deliver_flushing();
    let after = net.peers[0].machine.stats();
    assert_eq!(net.value(1, "late2").as_deref(), Some("during"));
    assert_eq!(
        after.full_states_sent, before.full_states_sent,
        "no full state"
    );
    assert_eq!(after.ops_sent - before.ops_sent, 3, "only the missed ops");
    net.assert_converged();
}

#[test]
fn a_restarted_node_writes_after_everything_it_stored() {
    let mut net = Net::new(1, ReplicationConfig::default());
    net.persist(0, &[]);
    net.durable_write(0, "k", "old");
    net.sync(0);
    // The wall clock went back across the restart: the new write must still win.
    net.now = Instant::ZERO + Duration::from_secs(1);
    net.restart(0, 2);
    net.durable_write(0, "k", "new");
    assert_eq!(net.value(0, "k").as_deref(), Some("new"));
    net.sync(0);
    net.restart(0, 3);
    assert_eq!(net.value(0, "k").as_deref(), Some("new"));
}

/// A horizon stored from a peer's state is one the clock passes on restart too (the GC rule's
/// condition 2): the node may have issued no stamp past it, so no ceiling covers it.
#[test]
fn a_restarted_node_writes_after_the_horizon_it_stored() {
    let mut net = Net::new(3, ReplicationConfig::default());
    net.persist(0, &[]);
    let horizon_ms = 10_000 + 20_000;
    net.deliver((2, 0, encode(state_collected_at(2, horizon_ms))));
    net.flush(0);
    net.sync(0);
    net.restart(0, 2);
    net.durable_write(0, "k", "new");
    assert_stamped_past(&net, horizon_ms);
}

#[test]
fn what_was_not_synced_is_gone_after_a_crash_and_peers_refill_it() {
    let mut net = Net::new(2, ReplicationConfig::default());
    net.persist(1, &[]);
    net.durable_write(0, "synced", "1");
    net.deliver_flushing();
    net.sync(1);
    net.durable_write(0, "unsynced", "2");
    net.deliver_flushing();
    net.restart(1, 2);
    assert_eq!(net.value(1, "synced").as_deref(), Some("1"));
    assert_eq!(
        net.value(1, "unsynced"),
        None,
        "an unsynced write does not survive"
    );
    net.exchange(1, 0);
    assert_eq!(net.value(1, "unsynced").as_deref(), Some("2"));
    net.assert_converged();
}

#[test]
fn a_replica_acknowledges_only_once_the_write_is_durable_on_its_disk() {
    let mut net = Net::new(2, ReplicationConfig::default());
    net.persist(1, &[]);
    net.now = net.now + Duration::from_millis(1);
    let write = Write {
        keyspace: "ks".into(),
        key: "k".into(),
        value: Some(b"v".to_vec()),
    };
    let p = &mut net.peers[0];
    let until = net.now + Duration::from_secs(5);
    p.machine
        .write_acked(net.now, write, &[addr(1)], 2, until, &mut p.out)
        .expect("write");
    net.collect(0);
    let request = net.wire.remove(0);
    net.deliver(request);
    net.flush(1);
    assert_eq!(net.value(1, "k").as_deref(), Some("v"));
    assert_eq!(net.acks_on_wire(), 0, "applied but not durable: no ack yet");
    assert_eq!(net.peers[1].machine.durability("ks"), Durability::After(1));
    net.sync(1);
    assert_eq!(net.acks_on_wire(), 1);
    assert_eq!(net.peers[1].machine.durability("ks"), Durability::Now);
}

#[test]
fn a_volatile_keyspace_acknowledges_at_once_and_writes_nothing() {
    let mut net = Net::new(2, ReplicationConfig::default());
    net.persist(1, &["ks"]);
    net.durable_write(0, "k", "v");
    net.deliver_flushing();
    assert_eq!(net.value(1, "k").as_deref(), Some("v"));
    assert!(net.peers[1].batches.is_empty());
    assert_eq!(net.peers[1].machine.durability("ks"), Durability::Now);
}

#[test]
fn after_a_failed_batch_nothing_is_written_until_everything_is_written_again() {
    let mut net = Net::new(1, ReplicationConfig::default());
    net.persist(0, &[]);
    net.durable_write(0, "a", "1");
    net.sync(0);
    net.peers[0].disk.as_mut().expect("disk").fill();
    net.durable_write(0, "b", "2");
    assert_eq!(net.peers[0].machine.durability("ks"), Durability::Failing);
    let written = net.peers[0].batches.len();
    net.durable_write(0, "c", "3");
    assert_eq!(
        net.peers[0].batches.len(),
        written,
        "no batch on top of a lost one"
    );
    net.peers[0].disk.as_mut().expect("disk").set_capacity(None);
    let p = &mut net.peers[0];
    p.machine
        .handle_timer(net.now, ReplicationTimer::AntiEntropy, &[], &[], &mut p.out);
    net.flush(0);
    let rewrite = net.peers[0].batches.last().expect("a rewrite").clone();
    assert!(matches!(rewrite.ops()[0], StoredOp::ClearKeyspace { .. }));
    net.sync(0);
    assert_eq!(net.peers[0].machine.durability("ks"), Durability::Now);
    net.restart(0, 2);
    for (key, value) in [("a", "1"), ("b", "2"), ("c", "3")] {
        assert_eq!(net.value(0, key).as_deref(), Some(value));
    }
}

/// A node record another machine keeps here (placement's agreed membership) is written in the
/// next batch, and again in the rewrite after a failed batch, so the value a failed batch held
/// is not lost, and a later one is not skipped.
#[test]
fn a_kept_node_record_is_written_again_after_a_failed_batch() {
    let mut net = Net::new(1, ReplicationConfig::default());
    net.persist(0, &[]);
    let stored = |net: &mut Net| {
        let disk = net.peers[0].disk.as_mut().expect("disk");
        disk.load()
            .expect("loads")
            .state
            .node
            .get("agreed")
            .cloned()
    };
    net.peers[0]
        .machine
        .keep_node_record("agreed", b"1".to_vec());
    net.flush(0);
    net.sync(0);
    assert_eq!(stored(&mut net).as_deref(), Some(&b"1"[..]));
    net.peers[0].disk.as_mut().expect("disk").fill();
    net.peers[0]
        .machine
        .keep_node_record("agreed", b"2".to_vec());
    net.flush(0);
    assert_eq!(net.peers[0].machine.durability("ks"), Durability::Failing);
    assert_eq!(stored(&mut net).as_deref(), Some(&b"1"[..]), "refused");
    net.peers[0].disk.as_mut().expect("disk").set_capacity(None);
    let p = &mut net.peers[0];
    p.machine
        .handle_timer(net.now, ReplicationTimer::AntiEntropy, &[], &[], &mut p.out);
    net.flush(0);
    assert!(net.peers[0].batches.last().expect("a rewrite").is_rewrite());
    net.sync(0);
    assert_eq!(stored(&mut net).as_deref(), Some(&b"2"[..]));
}

#[test]
fn a_record_lost_from_the_middle_of_a_store_comes_back_from_peers_and_is_dropped_nowhere() {
    let mut net = Net::new(2, ReplicationConfig::default());
    net.persist(1, &[]);
    for k in 0..6 {
        net.durable_write(0, &format!("k{k}"), "v");
    }
    net.deliver_flushing();
    net.sync(1);
    // A damaged record: the store drops it and says what it loaded is not a prefix.
    net.restart_with(1, 2, |loaded| {
        let keyspace = loaded.state.keyspaces.get_mut("ks").expect("stored");
        keyspace.entries.remove(&b"k3"[..]).expect("k3 stored");
        loaded.report.partial = true;
    });
    assert_eq!(net.value(1, "k3"), None);
    assert!(
        net.peers[1]
            .machine
            .keyspace("ks")
            .expect("ks")
            .seen()
            .is_empty(),
        "a partial store's seen-sets are not trusted"
    );
    net.exchange(1, 0);
    net.exchange(0, 1);
    for i in 0..2 {
        assert_eq!(net.value(i, "k3").as_deref(), Some("v"), "node {i}");
    }
    net.assert_converged();
}

#[test]
fn a_restored_keyspace_keeps_tombstones_records_and_the_epoch() {
    let mut net = Net::new(1, ReplicationConfig::default());
    net.persist(0, &[]);
    net.durable_write(0, "gone", "1");
    net.write(0, "gone", None, true);
    net.flush(0);
    net.sync(0);
    let before = net.peers[0].machine.keyspace("ks").expect("ks").clone();
    net.restart(0, 2);
    let after = net.peers[0].machine.keyspace("ks").expect("ks");
    assert_eq!(
        after.entry("gone"),
        before.entry("gone"),
        "the tombstone is back"
    );
    assert_eq!(after.seen(), before.seen());
    assert_eq!(after.retired(), before.retired());
    after.invariants().expect("invariants");
}

mod stored_bytes {
    //! Whatever bytes a damaged or foreign store hands back, a restore never panics and never
    //! yields a keyspace that breaks its invariants; what does not decode is counted and left
    //! out.

    use proptest::prelude::*;

    use super::*;
    use crate::storage::StoredKeyspace;

    /// A valid stored keyspace: a node's batches after a few writes, deletes and an exchange.
    fn valid() -> StoredState {
        let mut net = Net::new(2, ReplicationConfig::default());
        net.persist(1, &[]);
        for k in 0..6 {
            net.durable_write(0, &format!("k{k}"), "value");
        }
        net.write(0, "k1", None, true);
        net.flush(0);
        net.deliver_flushing();
        net.sync(1);
        net.peers[1]
            .disk
            .as_mut()
            .expect("disk")
            .load()
            .expect("load")
            .state
    }

    fn meta_name() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("horizon".to_owned()),
            Just("retired".to_owned()),
            Just(format!("seen.{:032x}.1", 1)),
            "seen\\.[0-9a-f]{0,33}\\.[0-9]{0,3}",
            ".{0,12}",
        ]
    }

    fn stored() -> impl Strategy<Value = StoredKeyspace> {
        let bytes = || proptest::collection::vec(any::<u8>(), 0..48);
        (
            proptest::collection::btree_map(bytes(), bytes(), 0..8),
            proptest::collection::btree_map(meta_name(), bytes(), 0..6),
        )
            .prop_map(|(entries, meta)| StoredKeyspace { meta, entries })
    }

    fn restore(state: &StoredState) -> Replication {
        let mut machine = Replication::new(origin(0, 2), ReplicationConfig::default(), 1);
        machine.enable_persistence(Default::default());
        machine.restore(Instant::ZERO, state, true, &mut Outbox::default());
        machine
            .invariants()
            .expect("a restored keyspace keeps its invariants");
        machine
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn arbitrary_records_restore_without_panicking(keyspace in stored(), epoch in proptest::collection::vec(any::<u8>(), 0..6)) {
            let mut state = StoredState::default();
            state.keyspaces.insert("ks".into(), keyspace);
            state.node.insert("replication.epoch".into(), epoch);
            restore(&state);
        }

        #[test]
        fn flipped_bytes_in_valid_records_restore_without_panicking(picks in proptest::collection::vec((any::<usize>(), any::<usize>(), any::<u8>()), 1..6)) {
            let mut state = valid();
            let keyspace = state.keyspaces.get_mut("ks").expect("stored");
            for (which, at, mask) in picks {
                let values: Vec<&mut Vec<u8>> =
                    keyspace.entries.values_mut().chain(keyspace.meta.values_mut()).collect();
                let count = values.len();
                if let Some(value) = values.into_iter().nth(which % count.max(1)) {
                    if !value.is_empty() {
                        let i = at % value.len();
                        value[i] ^= mask | 1;
                    }
                }
            }
            restore(&state);
        }
    }

    #[test]
    fn a_valid_store_restores_every_record() {
        let state = valid();
        let machine = restore(&state);
        assert_eq!(machine.stats().restore_skipped, 0);
        assert_eq!(machine.get("ks", "k5"), Some(&b"value"[..]));
        assert_eq!(machine.get("ks", "k1"), None);
    }
}

/// Two nodes at `keyspaces_max` less one each create a different keyspace at once: the limit
/// is a node's own, checked on its writes, so each must still take the other's keyspace, as
/// it takes keys past `keyspace_keys_max` from its peers; refusing it left the two apart for
/// good, re-offered every exchange.
#[test]
fn keyspaces_created_at_once_at_the_limit_reach_every_node() {
    let config = ReplicationConfig {
        keyspaces_max: 2,
        ..ReplicationConfig::default()
    };
    let mut net = Net::new(2, config);
    net.share_keys(1);
    for (i, keyspace) in [(0, "left"), (1, "right")] {
        let write = Write {
            keyspace: keyspace.into(),
            key: "k".into(),
            value: Some(b"v".to_vec()),
        };
        let p = &mut net.peers[i];
        p.machine
            .write(net.now, write, &[], &mut p.out)
            .expect("room for one more here");
        net.collect(i);
    }
    for _ in 0..3 {
        net.exchange(0, 1);
        net.exchange(1, 0);
    }
    net.assert_converged();
    let sent = net.peers[0].machine.stats().bytes_sent;
    net.exchange(0, 1);
    net.exchange(1, 0);
    let again = net.peers[0].machine.stats().bytes_sent - sent;
    assert!(
        again < 200,
        "{again} bytes for an exchange between equal nodes"
    );
}

/// A store that lost records from its middle is reported partial once, then repaired (fjall
/// moves the damaged store aside and writes what it read into a fresh one: every seen-set, some
/// entries). The node must not leave those seen-sets on disk for its next life: a clean load
/// would trust them, and the lost write would count as one it saw and removed — missing here
/// for good (digests agree, so nobody sends it) and dropped from any replica that takes this
/// node's full state.
#[test]
fn seen_sets_distrusted_after_a_partial_load_are_not_trusted_again_at_the_next_start() {
    let mut net = Net::new(2, ReplicationConfig::default());
    net.persist(1, &[]);
    for k in 0..6 {
        net.durable_write(0, &format!("k{k}"), "v");
    }
    net.deliver_flushing();
    net.sync(1);
    // The repair: k3's record is gone from the store, its seen-set is not.
    let disk = net.peers[1].disk.as_mut().expect("disk");
    let mut lost = Batch::new();
    lost.remove_entry("ks", b"k3");
    disk.write(&lost).expect("write");
    disk.sync().expect("sync");
    net.restart_with(1, 2, |loaded| loaded.report.partial = true);
    // Its first input writes what it holds; the next start finds the store clean.
    net.flush(1);
    net.sync(1);
    net.restart(1, 3);
    net.exchange(1, 0);
    net.exchange(0, 1);
    assert_eq!(net.value(1, "k3").as_deref(), Some("v"), "k3 came back");
    net.assert_converged();
}

/// A store that lost records from its middle is restored as a replica that has seen nothing,
/// so every op a peer sends it counts as new — including a set older than a delete whose
/// tombstone this node collected before the crash. Its stored GC horizon said "a write older
/// than me to an absent key was deleted", and that no longer holds once the seen-sets behind
/// it are gone: ops are applied in the order the peer lists them (by origin), the delete
/// first, found nothing to beat, and the older set took the key. The peer's digest then
/// matched ours, so nothing ever sent the state that would have dropped it again.
#[test]
fn a_set_older_than_a_collected_delete_stays_deleted_after_a_partial_load() {
    let config = ReplicationConfig {
        tombstone_ttl: Duration::from_secs(1),
        ..ReplicationConfig::default()
    };
    let mut net = Net::new(3, config);
    net.persist(1, &[]);
    // Node 2 sets `k`, then node 0 deletes it; node 0's ops come first in any answer.
    net.durable_write(2, "k", "deleted");
    net.deliver_flushing();
    net.write(0, "k", None, true);
    net.deliver_flushing();
    net.agree(&[0, 1, 2]);
    net.advance(Duration::from_secs(5));
    net.tick(1, &[0, 2]);
    net.flush(1);
    assert_eq!(net.tombstones(1), 0, "node 1 collected the delete");
    net.sync(1);
    net.restart_with(1, 2, |loaded| loaded.report.partial = true);
    // Its new life writes a value larger than the ops it lacks, so a peer answers with ops.
    net.durable_write(1, "big", &"x".repeat(4096));
    net.sync(1);
    net.deliver_flushing();
    let before = net.peers[0].machine.stats().full_states_sent;
    net.exchange(1, 0);
    assert_eq!(
        net.peers[0].machine.stats().full_states_sent,
        before,
        "answered with ops"
    );
    assert_eq!(net.value(1, "k"), None, "the deleted value came back");
    // Node 1 keeps the tombstone until it collects it itself; the live values agree.
    net.exchange(1, 2);
    let live = |i: usize| -> Vec<(String, Vec<u8>)> {
        let keyspace = net.peers[i].machine.keyspace("ks").expect("ks");
        keyspace
            .iter()
            .map(|(k, v)| (k.to_owned(), v.to_vec()))
            .collect()
    };
    for i in [0, 2] {
        assert_eq!(live(1), live(i), "node {i}");
    }
}

/// A snapshot's GC horizon is another replica set's: its own members had passed it, ours need
/// not have. Here a member away for moments (not departed: it holds GC back) set `k` before
/// node 0 deleted it; a snapshot of another cluster, with a horizon past the delete, is
/// restored on node 0. Taking its horizon dropped the delete's tombstone our own GC rule still
/// kept, and the away member's older set then came back as a write new to node 0 — and through
/// node 0's state to everyone: the newer delete was lost.
#[test]
fn a_restored_snapshot_does_not_lift_the_gc_horizon_past_a_delete_a_member_lacks() {
    let mut net = Net::new(3, ReplicationConfig::default());
    net.write(2, "k", Some("older"), false);
    net.write(0, "k", None, true);
    net.wire.retain(|(_, to, _)| *to != 2);
    net.deliver_all();
    let wall = net.now.elapsed().as_millis() as u64;
    let foreign = CrdtId::from_u128(99);
    let mut map = Map::default();
    map.apply(&foundation_crdt::LwwOp {
        key: "restored".into(),
        entry: LwwEntry {
            ts: Timestamp {
                wall_ms: wall,
                logical: 0,
                node: foreign,
            },
            value: Some(Value {
                bytes: b"v".to_vec(),
                generation: 1,
                seq: 1,
            }),
        },
    });
    map.gc_tombstones(Timestamp::at_wall(wall + 1));
    let snapshot = Snapshot {
        node: foreign,
        taken_ms: wall,
        keyspaces: vec![snapshot::KeyspaceSnapshot {
            name: "ks".into(),
            map,
            seen: Seen::new(),
            retired: [(
                Origin {
                    node: foreign,
                    generation: 1,
                },
                1,
            )]
            .into(),
        }],
    };
    let p = &mut net.peers[0];
    p.machine
        .restore_snapshot(net.now, &snapshot, &BTreeSet::new(), &[], &mut p.out)
        .expect("restored");
    net.collect(0);
    // Node 2 is back.
    net.exchange(2, 0);
    net.exchange(0, 2);
    net.exchange(1, 0);
    net.exchange(0, 1);
    for i in 0..3 {
        assert_eq!(
            net.value(i, "k"),
            None,
            "node {i}: the newer delete was lost"
        );
        assert_eq!(net.value(i, "restored").as_deref(), Some("v"), "node {i}");
    }
}

/// A node whose clock a peer's pushed ahead (within the drift bound) writes and crashes before
/// syncing the write; it restarts before its wall clock has caught up. Its next write — durable
/// here and acknowledged by a majority — must win: the old write's stamp was past the stored
/// clock ceiling, so it waited for the batch raising it and never left the node. (It was pushed
/// at once, and came back from the peer over the majority write, when the clock restarted from
/// the stored entries only.)
#[test]
fn a_majority_write_after_a_restart_loses_to_an_unsynced_write_of_the_previous_life() {
    let mut net = Net::new(2, ReplicationConfig::default());
    net.persist(0, &[]);
    net.persist(1, &[]);
    let behind = net.now;
    net.advance(Duration::from_secs(30));
    net.write(1, "other", Some("x"), true);
    // Node 1's push waits for its first ceiling to be durable.
    net.flush(1);
    net.sync(1);
    net.now = behind;
    net.deliver_flushing();
    // Node 0's clock now reads node 1's; its own sync never comes.
    net.durable_write(0, "k", "old");
    net.deliver_flushing();
    net.sync(1);
    net.restart(0, 2);
    let ticket = net.write_acked_among(0, "k", &[1], 2).expect("taken");
    net.flush(0);
    net.sync(0);
    net.deliver_flushing();
    net.sync(1);
    net.deliver_flushing();
    assert_eq!(net.acks(0), vec![(2, 2)], "held by both: {ticket:?}");
    net.exchange(0, 1);
    net.exchange(1, 0);
    for i in 0..2 {
        assert_eq!(net.value(i, "k").as_deref(), Some("v"), "node {i}");
    }
}

// The stored clock ceiling (`clock_bound`): stamps leave only under a durable ceiling, and a
// restart starts the clock there.

/// Node 0's clock, pushed `ahead` of its wall clock by a write of node 1.
fn clock_pushed_ahead(net: &mut Net, ahead: Duration) {
    let behind = net.now;
    net.advance(ahead);
    net.write(1, "other", Some("x"), true);
    net.now = behind;
    net.deliver_flushing();
}

fn pushes_on_wire(net: &Net) -> usize {
    net.wire
        .iter()
        .filter(|(_, _, payload)| {
            matches!(
                postcard::from_bytes(payload),
                Ok(CoreMessage::Replication(ReplicationMessage::Ops(_)))
            )
        })
        .count()
}

#[test]
fn a_write_stamped_past_the_durable_ceiling_is_pushed_once_the_batch_raising_it_lands() {
    let mut net = Net::new(2, ReplicationConfig::default());
    net.persist(0, &[]);
    net.durable_write(0, "first", "1");
    net.sync(0);
    net.deliver_flushing();
    clock_pushed_ahead(&mut net, Duration::from_secs(30));
    net.durable_write(0, "k", "ahead");
    assert_eq!(
        pushes_on_wire(&net),
        0,
        "held: its stamp is past the ceiling"
    );
    // Anti-entropy does not carry it either.
    net.exchange(1, 0);
    assert_eq!(net.value(1, "k"), None);
    net.sync(0);
    assert_eq!(pushes_on_wire(&net), 1, "the raised ceiling is durable");
    net.deliver_flushing();
    assert_eq!(net.value(1, "k").as_deref(), Some("ahead"));
}

#[test]
fn the_clock_ceiling_is_stored_and_a_restarted_node_stamps_above_every_write_it_let_out() {
    let mut net = Net::new(2, ReplicationConfig::default());
    net.persist(0, &[]);
    net.durable_write(0, "first", "1");
    net.sync(0);
    net.deliver_flushing();
    let stored = net.peers[0].machine.bound.durable();
    assert!(stored > 0, "the first batch carries a ceiling");
    // Under the ceiling: pushed at once, and lost here with its batch.
    net.durable_write(0, "k", "old");
    assert_eq!(pushes_on_wire(&net), 1);
    net.deliver_flushing();
    net.now = Instant::ZERO + Duration::from_secs(1);
    net.restart(0, 2);
    assert_eq!(net.value(0, "k"), None, "its batch never synced");
    assert_eq!(net.peers[0].machine.bound.durable(), stored, "read back");
    net.durable_write(0, "k", "new");
    let ts = |i: usize| {
        let keyspace = net.peers[i].machine.keyspace("ks").expect("ks");
        keyspace
            .map()
            .entries()
            .find(|(k, _)| *k == "k")
            .expect("k")
            .1
            .ts
    };
    assert!(ts(0) > ts(1), "new {:?} above old {:?}", ts(0), ts(1));
    net.sync(0);
    net.deliver_flushing();
    net.exchange(1, 0);
    for i in 0..2 {
        assert_eq!(net.value(i, "k").as_deref(), Some("new"), "node {i}");
    }
}

#[test]
fn a_busy_node_renews_its_ceiling_in_the_batches_it_writes_anyway() {
    let mut net = Net::new(2, ReplicationConfig::default());
    net.persist(0, &[]);
    let writes = 400;
    for k in 0..writes {
        net.advance(Duration::from_millis(9)); // 10 ms a write, with the harness's 1 ms
        net.durable_write(0, &format!("k{k}"), "v");
        if k > 0 {
            assert_eq!(pushes_on_wire(&net), 1, "write {k} pushed before its sync");
        }
        net.sync(0);
        net.deliver_flushing();
    }
    let batches = &net.peers[0].batches;
    let ceilings = batches
        .iter()
        .flat_map(|b| b.ops())
        .filter(|op| matches!(op, StoredOp::PutNodeMeta { name, .. } if name == "replication.clock_ceiling"))
        .count();
    eprintln!(
        "{writes} writes over 4 s: {} batches, {ceilings} ceilings",
        batches.len()
    );
    assert_eq!(batches.len(), writes, "one batch a write, no more");
    assert!(ceilings <= 5, "renewed once per half lease: {ceilings}");
    assert_eq!(
        net.peers[0].machine.stats().batches_persisted,
        writes as u64
    );
}

#[test]
fn a_store_without_a_ceiling_restores_the_clock_from_its_entries_and_writes_one_at_once() {
    let mut net = Net::new(1, ReplicationConfig::default());
    net.persist(0, &[]);
    net.durable_write(0, "k", "old");
    net.sync(0);
    // As an older version stored it: no ceiling record.
    net.restart_with(0, 2, |loaded| {
        loaded
            .state
            .node
            .remove("replication.clock_ceiling")
            .expect("stored");
    });
    assert_eq!(net.peers[0].machine.bound.durable(), 0);
    let first = net.peers[0]
        .batches
        .last()
        .expect("the start's first batch");
    assert!(first.ops().iter().any(
        |op| matches!(op, StoredOp::PutNodeMeta { name, .. } if name == "replication.clock_ceiling")
    ));
    net.sync(0);
    assert!(net.peers[0].machine.bound.durable() > 0);
    net.durable_write(0, "k", "new");
    assert_eq!(net.value(0, "k").as_deref(), Some("new"));
}

#[test]
fn a_ceiling_that_does_not_decode_is_counted_and_taken_for_absent() {
    let mut net = Net::new(1, ReplicationConfig::default());
    net.persist(0, &[]);
    net.durable_write(0, "k", "old");
    net.sync(0);
    let mut disk = net.peers[0].disk.take().expect("disk");
    let mut loaded = disk.load().expect("load");
    loaded
        .state
        .node
        .insert("replication.clock_ceiling".into(), vec![0xff; 11]);
    let mut machine = Replication::new(origin(0, 2), ReplicationConfig::default(), 5);
    machine.enable_persistence(Default::default());
    let mut out = Outbox::default();
    let skipped = machine.restore(net.now, &loaded.state, true, &mut out);
    assert_eq!(skipped, 1, "the record is reported");
    assert_eq!(machine.bound.durable(), 0, "and not trusted");
    assert_eq!(machine.get("ks", "k"), Some(&b"old"[..]));
}

mod random_delivery {
    //! The machine's laws under any delivery: writes and deletes on three nodes, messages
    //! delivered in any order, duplicated or lost, anti-entropy rounds, tombstone GC and full
    //! states (the op log is tiny) in between. Once everything heals, every replica holds, for
    //! each key, the write with the greatest timestamp (absent for a delete).

    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    const NODES: usize = 3;

    #[derive(Clone, Debug)]
    enum Step {
        /// Node writes key (a delete when `None`), pushing to everyone.
        Write(usize, u8, Option<u8>),
        /// The message at this index of the wire arrives; `copy` leaves it on the wire too.
        Deliver(usize, bool),
        /// The message at this index of the wire is lost.
        Lose(usize),
        /// The node's anti-entropy timer fires; what it sends waits on the wire.
        Tick(usize),
        /// Time passes (in ms).
        Advance(u64),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            4 => (0..NODES, 0u8..4, proptest::option::weighted(0.7, 0u8..3))
                .prop_map(|(n, k, v)| Step::Write(n, k, v)),
            6 => (any::<usize>(), proptest::bool::weighted(0.2)).prop_map(|(i, c)| Step::Deliver(i, c)),
            1 => any::<usize>().prop_map(Step::Lose),
            2 => (0..NODES).prop_map(Step::Tick),
            2 => (0u64..700).prop_map(Step::Advance),
        ]
    }

    fn all_but(i: usize) -> Vec<usize> {
        (0..NODES).filter(|&j| j != i).collect()
    }

    impl Net {
        /// Node `i`'s anti-entropy timer fires with `live` its live members and everyone a
        /// member; nothing is delivered yet.
        fn tick_only(&mut self, i: usize, live: &[usize]) {
            self.fire_anti_entropy(i, live, &all_but(i));
        }

        /// Every node exchanges with every other, everything delivered, time passing.
        fn heal(&mut self) {
            for i in 0..NODES {
                for j in all_but(i) {
                    self.tick_only(i, &[j]);
                    self.deliver_all();
                }
            }
            self.advance(Duration::from_millis(300));
        }
    }

    /// Runs `steps`; returns the net and, per key, the last writer's value by timestamp.
    fn run(steps: &[Step]) -> (Net, BTreeMap<String, Option<String>>) {
        let config = ReplicationConfig {
            tombstone_ttl: Duration::from_secs(1),
            op_log_max: 2,
            ..ReplicationConfig::default()
        };
        let mut net = Net::new(NODES, config);
        let mut last: BTreeMap<String, (Timestamp, Option<String>)> = BTreeMap::new();
        for step in steps {
            match *step {
                Step::Write(i, k, v) => {
                    let (key, value) = (format!("k{k}"), v.map(|v| format!("v{v}")));
                    net.write(i, &key, value.as_deref(), true);
                    let keyspace = net.peers[i].machine.keyspace("ks").expect("ks");
                    let ts = keyspace.entry(&key).map_or(Timestamp::ZERO, |e| e.ts);
                    if last.get(&key).is_none_or(|(t, _)| *t < ts) {
                        last.insert(key, (ts, value));
                    }
                }
                Step::Deliver(at, copy) if !net.wire.is_empty() => {
                    let at = at % net.wire.len();
                    let message = match copy {
                        true => net.wire[at].clone(),
                        false => net.wire.remove(at),
                    };
                    net.deliver(message);
                }
                Step::Lose(at) if !net.wire.is_empty() => {
                    let at = at % net.wire.len();
                    net.wire.remove(at);
                }
                Step::Tick(i) => net.tick_only(i, &all_but(i)),
                Step::Advance(ms) => net.advance(Duration::from_millis(ms)),
                Step::Deliver(..) | Step::Lose(_) => {}
            }
        }
        let expected = last.into_iter().map(|(k, (_, v))| (k, v)).collect();
        (net, expected)
    }

    fn live(net: &Net, i: usize) -> BTreeMap<String, Option<String>> {
        (0..4)
            .map(|k| format!("k{k}"))
            .map(|key| {
                let value = net.value(i, &key);
                (key, value)
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn every_replica_ends_with_the_last_write_of_each_key(
            steps in proptest::collection::vec(step(), 0..80),
        ) {
            let (mut net, expected) = run(&steps);
            net.deliver_all();
            for _ in 0..3 {
                net.heal();
            }
            let mut expected_live: BTreeMap<String, Option<String>> =
                (0..4).map(|k| (format!("k{k}"), None)).collect();
            expected_live.extend(expected);
            for i in 0..NODES {
                prop_assert_eq!(&live(&net, i), &expected_live, "node {}", i);
                prop_assert_eq!(net.peers[i].machine.digest(), net.peers[0].machine.digest());
                net.peers[i].machine.invariants().map_err(TestCaseError::fail)?;
            }
        }
    }
}
