//! Everything a peer can send, bent out of shape, into a live core: no input from the network
//! may panic a node (debug builds check arithmetic overflow, so an unchecked length or count
//! from the wire fails here), and a node that was sent garbage still works afterwards.
//!
//! The messages are real: three cores join, write, declare variables and gossip, and every
//! payload they send each other is captured. Each case then takes captured payloads and
//! mutates them (bit flips, truncation, splices, bytes overwritten with extreme values, plain
//! random bytes), which reaches deep into the decoders where random bytes alone stop at the
//! first tag.

use std::time::Duration;

use bytes::Bytes;
use foundation_core::ephemeral::PUBSUB_KEYSPACE;
use foundation_core::membership::{MemberId, MembershipConfig, NodeMetadata};
use foundation_core::replication::{ReplicationConfig, Write};
use foundation_core::time::Instant;
use foundation_core::{Channel, Command, Core, CoreConfig, Effect, Input, NodeAddr, NodeId};
use proptest::prelude::*;

const CHANNELS: [Channel; 6] = Channel::ALL;

fn addr(i: u128) -> NodeAddr {
    NodeAddr {
        id: NodeId::from_u128(i),
        addr: ([127, 0, 0, 1], 7000 + i as u16).into(),
    }
}

fn core(i: u128) -> Core {
    let me = addr(i);
    let config = CoreConfig {
        me: MemberId {
            node: me.id,
            addr: me.addr,
            generation: 1,
        },
        membership: MembershipConfig::development(),
        metadata: NodeMetadata::default(),
        seed: i as u64,
    };
    Core::new(config, Instant::ZERO).with_replication(ReplicationConfig::default(), i as u64)
}

/// Three cores on a lossless in-memory network, and every payload they sent.
struct Cluster {
    cores: Vec<Core>,
    now: Instant,
    sent: Vec<(Channel, NodeId, Bytes)>,
}

impl Cluster {
    /// Three cores, of which the first `joined` have joined the first.
    fn new(joined: usize) -> Self {
        let mut cluster = Self {
            cores: (1..=3).map(core).collect(),
            now: Instant::ZERO,
            sent: Vec::new(),
        };
        for i in 1..joined {
            cluster.join(i);
        }
        cluster
    }

    fn join(&mut self, node: usize) {
        let now = self.now;
        self.cores[node].handle(now, Input::Command(Command::Join(addr(1))));
    }

    /// Delivers every pending send, then advances time by `step`, `rounds` times.
    fn run(&mut self, rounds: usize, step: Duration) {
        for _ in 0..rounds {
            for from in 0..self.cores.len() {
                while let Some(effect) = self.cores[from].poll_effect() {
                    let Effect::Send {
                        to,
                        channel,
                        payload,
                    } = effect
                    else {
                        continue;
                    };
                    let sender = addr(from as u128 + 1).id;
                    self.sent.push((channel, sender, payload.clone()));
                    if let Some(target) = self.index_of(to.id) {
                        let input = Input::Received {
                            from: sender,
                            channel,
                            payload,
                        };
                        self.cores[target].handle(self.now, input);
                    }
                }
            }
            self.now = self.now + step;
            for core in &mut self.cores {
                core.handle_timeout(self.now);
            }
        }
    }

    fn index_of(&self, id: NodeId) -> Option<usize> {
        (1..=self.cores.len() as u128).position(|i| addr(i).id == id)
    }

    fn write(&mut self, node: usize, key: &str, value: &[u8]) {
        let write = Write {
            keyspace: "config".into(),
            key: key.into(),
            value: Some(value.to_vec()),
        };
        self.cores[node]
            .write(self.now, write)
            .expect("a valid write");
    }
}

/// Payloads the three cores really sent each other while joining and replicating.
fn corpus() -> &'static [(Channel, NodeId, Bytes)] {
    static CORPUS: std::sync::OnceLock<Vec<(Channel, NodeId, Bytes)>> = std::sync::OnceLock::new();
    CORPUS.get_or_init(|| {
        // Two nodes replicate writes and entries; the third joins late and gets a full state.
        let mut cluster = Cluster::new(2);
        cluster.run(40, Duration::from_millis(100));
        for i in 0..20 {
            cluster.write(i % 2, &format!("key-{i}"), &[i as u8; 40]);
            let now = cluster.now;
            let entry = Some(vec![i as u8; 8]);
            let set =
                cluster.cores[i % 2].set_ephemeral(now, PUBSUB_KEYSPACE, &format!("e-{i}"), entry);
            set.expect("a valid entry");
        }
        cluster.run(20, Duration::from_millis(100));
        cluster.join(2);
        cluster.run(60, Duration::from_millis(100));
        // A metadata change goes out on the coordination channel (a newcomer's metadata rides
        // in push-pulls, so joining alone sends nothing there).
        let renamed = NodeMetadata {
            name: Some("renamed".into()),
            ..NodeMetadata::default()
        };
        let now = cluster.now;
        cluster.cores[0].handle(now, Input::Command(Command::SetMetadata(renamed)));
        cluster.run(10, Duration::from_millis(100));
        let channels: std::collections::BTreeSet<_> = cluster
            .sent
            .iter()
            .map(|(c, _, _)| format!("{c:?}"))
            .collect();
        assert!(
            channels.len() >= 3,
            "several channels carried messages: {channels:?}"
        );
        assert!(
            cluster.sent.len() > 50,
            "the cluster talked: {}",
            cluster.sent.len()
        );
        cluster.sent
    })
}

/// One way to bend a payload.
#[derive(Clone, Debug)]
enum Mutation {
    Flip {
        at: usize,
        bit: u8,
    },
    Truncate {
        to: usize,
    },
    Overwrite {
        at: usize,
        byte: u8,
    },
    Splice {
        at: usize,
        donor: usize,
        from: usize,
    },
    Random(Vec<u8>),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Mutation::Flip { at, bit }),
        any::<usize>().prop_map(|to| Mutation::Truncate { to }),
        (
            any::<usize>(),
            prop_oneof![Just(0u8), Just(0x7f), Just(0x80), Just(0xff)]
        )
            .prop_map(|(at, byte)| Mutation::Overwrite { at, byte }),
        (any::<usize>(), any::<usize>(), any::<usize>())
            .prop_map(|(at, donor, from)| Mutation::Splice { at, donor, from }),
        proptest::collection::vec(any::<u8>(), 0..64).prop_map(Mutation::Random),
    ]
}

fn apply(payload: &[u8], mutation: &Mutation, corpus: &[(Channel, NodeId, Bytes)]) -> Vec<u8> {
    let mut bytes = payload.to_vec();
    let index = |at: usize, len: usize| if len == 0 { 0 } else { at % len };
    match mutation {
        Mutation::Flip { at, bit } if !bytes.is_empty() => {
            let i = index(*at, bytes.len());
            bytes[i] ^= 1 << bit;
        }
        Mutation::Truncate { to } => bytes.truncate(index(*to, bytes.len() + 1)),
        Mutation::Overwrite { at, byte } if !bytes.is_empty() => {
            let i = index(*at, bytes.len());
            bytes[i] = *byte;
        }
        Mutation::Splice { at, donor, from } => {
            let donor = &corpus[index(*donor, corpus.len())].2;
            bytes.truncate(index(*at, bytes.len() + 1));
            bytes.extend_from_slice(&donor[index(*from, donor.len() + 1)..]);
        }
        Mutation::Random(random) => bytes = random.clone(),
        _ => {}
    }
    bytes
}

/// 128 cases in the test suite; `HOSTILE_CASES=4000` for a longer run.
fn cases() -> u32 {
    std::env::var("HOSTILE_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(128)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    /// Mutated real messages, on their own channel or another, from a member or a stranger:
    /// nothing panics, and afterwards the core still replicates a write to its peers.
    #[test]
    fn bent_messages_never_panic_a_node(
        picks in proptest::collection::vec((any::<usize>(), mutation(), 0usize..7, any::<bool>()), 1..12),
    ) {
        let corpus = corpus();
        let mut cluster = Cluster::new(3);
        cluster.run(30, Duration::from_millis(100));
        for (pick, mutation, channel, stranger) in &picks {
            let (original_channel, sender, payload) = &corpus[pick % corpus.len()];
            let channel = CHANNELS.get(*channel).copied().unwrap_or(*original_channel);
            let from = if *stranger { NodeId::from_u128(0xbad) } else { *sender };
            let bytes = apply(payload, mutation, corpus);
            let input = Input::Received { from, channel, payload: Bytes::from(bytes) };
            let now = cluster.now;
            cluster.cores[0].handle(now, input);
            cluster.cores[0].handle_timeout(now + Duration::from_millis(1));
        }
        // A bent message from a member can be a well-formed lie ("node 2 left"): SWIM heals it
        // (the node refutes) and anti-entropy repairs what was not pushed, within seconds.
        cluster.write(0, "after", b"still works");
        cluster.run(100, Duration::from_millis(100));
        for peer in &cluster.cores[1..] {
            let value = peer.replication().keyspace("config").and_then(|k| k.get("after"));
            prop_assert_eq!(value.map(|v| v.to_vec()), Some(b"still works".to_vec()));
        }
    }
}

/// Writes real payloads as seeds for the `core_input` fuzz target (first byte: the channel),
/// into the directory `FUZZ_SEED_DIR` names: `FUZZ_SEED_DIR=$PWD/fuzz/seeds/core_input cargo test
/// -p foundation-core --test hostile_input -- --ignored`.
#[test]
#[ignore]
fn write_fuzz_seeds() {
    let Ok(dir) = std::env::var("FUZZ_SEED_DIR") else {
        return;
    };
    let mut per_channel = std::collections::BTreeMap::<usize, usize>::new();
    for (channel, _, payload) in corpus() {
        let index = CHANNELS.iter().position(|c| c == channel).unwrap_or(0);
        let count = per_channel.entry(index).or_default();
        if *count >= 12 {
            continue;
        }
        *count += 1;
        let mut seed = vec![index as u8];
        seed.extend_from_slice(payload);
        let path = std::path::Path::new(&dir).join(format!("ch{index}-{count:02}"));
        std::fs::write(path, seed).expect("write a seed");
    }
}
