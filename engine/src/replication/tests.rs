//! Unit tests of the replication machine: a few machines wired by hand through an in-memory
//! wire the test controls (delivery order, duplication, loss).

use std::time::Duration;

use bytes::Bytes;
use foundation_crdt::{NodeId as CrdtId, Timestamp};
use foundation_transport::NodeId;

use super::*;
use crate::core::CoreMessage;
use crate::effects::Effect;

struct Peer {
    addr: NodeAddr,
    machine: Replication,
    out: Outbox,
    events: Vec<ReplicationEvent>,
}

/// Machines plus the messages in flight between them: `(from, to, payload)`.
struct Net {
    peers: Vec<Peer>,
    wire: Vec<(usize, usize, Bytes)>,
    now: Instant,
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
                Effect::Event(_) | Effect::Timer { .. } => {}
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
fn a_write_is_pushed_to_every_peer_within_the_fanout() {
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
fn fanout_limits_the_eager_push() {
    let mut net = Net::new(6, ReplicationConfig::default());
    net.write(0, "a", Some("1"), true);
    assert_eq!(net.wire.len(), 3);
}

#[test]
fn a_digest_exchange_fills_gaps_both_ways() {
    let mut net = Net::new(2, ReplicationConfig::default());
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
    assert_eq!(sent, 3);
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
}

#[test]
fn garbage_full_state_is_refused_without_panicking() {
    let mut net = Net::new(2, ReplicationConfig::default());
    let message = ReplicationMessage::FullState {
        keyspace: "ks".into(),
        epoch: 0,
        state: vec![1, 0xff, 0xff, 0xff],
        seen: Seen::new(),
    };
    net.deliver((0, 1, encode(message)));
    assert_eq!(net.peers[1].machine.stats().bad_states, 1);
    assert!(net.peers[1].machine.keyspace("ks").is_none());
}

#[test]
fn a_small_write_costs_under_a_hundred_bytes_per_peer() {
    let mut net = Net::new(4, ReplicationConfig::default());
    net.write(0, "service.checkout", Some("true"), true);
    let sizes: Vec<usize> = net.wire.iter().map(|(_, _, p)| p.len()).collect();
    eprintln!("push of a 16-byte key, 4-byte value: {sizes:?} bytes per peer");
    assert!(sizes.iter().all(|&s| s < 100), "{sizes:?}");
}
