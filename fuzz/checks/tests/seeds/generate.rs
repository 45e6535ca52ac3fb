//! Real encodings for the seed corpora: CRDT states and ops, services messages, a store's
//! records written by a core, and membership datagrams (the ones `core_input`'s seeds captured
//! from three real cores, without their channel byte).

use std::path::Path;

use foundation_core::agents::wire::{AgentReply, AgentRequest, Delivery, DeliveryError};
use foundation_core::replication::{full_state, Map, Value, Write};
use foundation_core::services::trace::parse_traceparent;
use foundation_core::services::wire::{
    BatchBuilder, BatchV0, EventMessage, Published, PublishedV0, Raw, RemoteError, RpcReply,
    RpcRequest, Sequenced,
};
use foundation_core::services::{Health, InstanceRecord, Target};
use foundation_core::storage::{record, Loaded};
use foundation_core::time::Instant;
use foundation_core::Effect;
use foundation_crdt::{
    BoundedCounter, Canonical, GCounter, LwwMap, MvReg, NodeId, OrSet, PnCounter, Timestamp,
};
use foundation_fuzz_checks::storage_records::unparse;

type Seeds = Vec<(String, Vec<u8>)>;

/// Every generated corpus, by target name.
pub fn all(root: &Path) -> Vec<(&'static str, Seeds)> {
    vec![
        ("crdt_canonical", crdt()),
        ("frame_decoder", frames()),
        ("replicated_records", records()),
        ("services_wire", services()),
        ("storage_records", storage()),
        ("membership_datagram", membership(root)),
        ("sealed_datagram", sealed()),
        ("federation_wire", federation()),
        ("agent_sessions", sessions()),
        ("local_adverts", adverts()),
        ("session_wire", session_wire()),
        ("typed_values", typed_values()),
        ("cli_inputs", cli_inputs()),
        ("vars_wire", vars_wire()),
    ]
}

fn named(prefix: &str, items: Vec<Vec<u8>>) -> Seeds {
    let items = items.into_iter().enumerate();
    items
        .map(|(i, b)| (format!("{prefix}-{i:02}"), b))
        .collect()
}

/// Scripts of the check's own format (see `vars_wire::seeds`).
fn vars_wire() -> Seeds {
    let seeds = foundation_fuzz_checks::vars_wire::seeds().into_iter();
    seeds
        .map(|(name, bytes)| (name.to_owned(), bytes))
        .collect()
}

/// First byte: the decoder's maximum (0x81: 1 KiB; 0x10: 16 bytes); then a stream's bytes.
fn frames() -> Seeds {
    use bytes::{Bytes, BytesMut};
    use foundation_core::Channel;
    use foundation_transport::frame::{
        encode_datagram, encode_frame, encode_message, StreamHeader,
    };
    use foundation_transport::rpc::codec::MuxFrame;
    use foundation_transport::wire::Hello;
    let with_max = |max: u8, bytes: &[u8]| [&[max][..], bytes].concat();
    let mut mux = BytesMut::new();
    let payload = Bytes::from_static(b"request body");
    MuxFrame::Request {
        id: 1,
        deadline_ms: 5_000,
        payload: payload.clone(),
    }
    .encode(&mut mux);
    MuxFrame::Response { id: 1, payload }.encode(&mut mux);
    MuxFrame::Cancel { id: 2 }.encode(&mut mux);
    MuxFrame::NoResponse { id: 3 }.encode(&mut mux);
    MuxFrame::Refused { id: 4, code: 2 }.encode(&mut mux);
    let hello = Hello {
        cluster: "prod".into(),
        node: foundation_core::NodeId::from_u128(0x1234),
        advertise: ([10, 0, 0, 7], 7946).into(),
        instance: 99,
        bulk_port: Some(7947),
        sealed_port: Some(7948),
    };
    let hello = encode_message(&hello).unwrap();
    let mut framed = BytesMut::new();
    encode_frame(&mut framed, &hello, 1024).unwrap();
    encode_frame(&mut framed, &[7; 40], 1024).unwrap();
    let headers: Vec<u8> = [
        StreamHeader::HELLO,
        StreamHeader::RPC_MUX,
        StreamHeader::for_channel(Channel::Bulk),
    ]
    .iter()
    .flat_map(|h| h.encode())
    .collect();
    let datagram = encode_datagram(b"membership datagram", 1024).unwrap();
    named(
        "frames",
        vec![
            with_max(0x81, &mux),
            with_max(0x81, &hello),
            with_max(0x81, &framed),
            with_max(0x10, &framed),
            with_max(0x81, &[&headers[..3], &framed[..]].concat()),
            with_max(0x81, &headers),
            with_max(0x81, &datagram),
        ],
    )
}

fn crdt() -> Seeds {
    let (a, b, c) = (
        NodeId::from_u128(1),
        NodeId::from_u128(2),
        NodeId::from_u128(3),
    );
    let ts = |ms| Timestamp::at_wall(ms);
    let mut out = Vec::new();
    let mut g = GCounter::new();
    let g_op = g.increment(a, 3).unwrap();
    g.increment(b, 40_000).unwrap();
    out.push(g.encode().unwrap());
    out.push(g_op.encode().unwrap());
    let mut pn = PnCounter::new();
    pn.increment(a, 7).unwrap();
    let pn_op = pn.decrement(c, 2).unwrap();
    out.push(pn.encode().unwrap());
    out.push(pn_op.encode().unwrap());
    let mut map = LwwMap::<String, Vec<u8>>::new();
    map.set("region".into(), b"eu-1".to_vec(), ts(1_000));
    map.set("limit".into(), vec![0xff; 9], ts(2_000));
    let removal = map.remove("region".into(), ts(3_000));
    out.push(map.encode().unwrap());
    out.push(removal.encode().unwrap());
    let mut set = OrSet::<String>::new();
    set.add(a, "gpu".into());
    let added = set.add(b, "pdf".into());
    let removed = set.remove(&"gpu".to_string()).unwrap();
    out.push(set.encode().unwrap());
    out.push(added.encode().unwrap());
    out.push(removed.encode().unwrap());
    let (mut left, mut right) = (MvReg::<Vec<u8>>::new(), MvReg::<Vec<u8>>::new());
    let written = left.write(a, b"one".to_vec());
    right.write(b, b"two".to_vec());
    left.merge(&right);
    out.push(left.encode().unwrap());
    out.push(written.encode().unwrap());
    let mut bounded = BoundedCounter::new();
    bounded.add(a, 100).unwrap();
    bounded.draw(a, 30).unwrap();
    bounded.hand_over(a, b, 20).unwrap();
    out.push(bounded.encode().unwrap());
    out.push(full_state::encode(&keyspace_state()).unwrap());
    named("crdt", out)
}

/// A keyspace's state as replication sends it whole: two values of one life, a tombstone.
fn keyspace_state() -> Map {
    let value = |bytes: &[u8], seq| Value {
        bytes: bytes.to_vec(),
        generation: 3,
        seq,
    };
    let mut map = Map::new();
    map.set(
        "region".into(),
        value(b"eu-1", 1),
        Timestamp::at_wall(1_000),
    );
    map.set(
        "limit".into(),
        value(&[0xff; 9], 2),
        Timestamp::at_wall(2_000),
    );
    map.remove("zone".into(), Timestamp::at_wall(3_000));
    map
}

fn services() -> Seeds {
    let trace = parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        .expect("a valid traceparent");
    let encode = |v: &dyn erased::Encode| v.bytes();
    let request = RpcRequest {
        service: "render".into(),
        instance: 7,
        trace,
        origin: Some("east".into()),
        body: b"{\"page\":3}".to_vec(),
    };
    let published = |seq| PublishedV0 {
        topic: "orders",
        payload: Raw(b"order 17"),
        trace,
        reliable: Some(Sequenced { stream: 9, seq }),
        oldest: 1,
        origin: None,
    };
    // Earlier releases' batch, and the packed one nodes send now.
    let mut items = Vec::new();
    let mut batch = BatchBuilder::default();
    for seq in 1..=3 {
        published(seq).encode_into(&mut items).unwrap();
        batch.push(&Published::from(published(seq))).unwrap();
    }
    let batch_v0 = EventMessage::BatchV0(BatchV0 {
        count: 3,
        items: Raw(&items),
    });
    let agent_request = AgentRequest {
        to: "bidder-3".into(),
        delivery: Delivery::Request,
        body: b"bid 40".to_vec(),
    };
    named(
        "services",
        vec![
            encode(&request),
            encode(&RpcReply::Ok(b"done".to_vec())),
            encode(&RpcReply::Err(RemoteError::RateLimited {
                retry_after_ms: 250,
            })),
            encode(&RpcReply::Err(RemoteError::BadRequest("no body".into()))),
            encode(&EventMessage::Publish(published(1))),
            encode(&EventMessage::Ack { stream: 9, seq: 3 }),
            encode(&batch_v0),
            agent_request.encode(),
            AgentReply::Answer(b"won".to_vec()).encode(),
            AgentReply::Failed(DeliveryError::UnknownAgent("seller".into())).encode(),
            batch.finish().to_vec(),
        ],
    )
}

/// Registry records of a service instance and an agent, variable declarations (one with
/// records nested three deep) and a variable's value.
fn records() -> Seeds {
    use foundation_agents::variable::{Policy, VarType, VarValue};
    use foundation_core::agents::record::{AgentRecord, AgentState, Health as AgentHealth};
    use foundation_core::vars::lww::LwwRecord;
    use foundation_core::vars::{Life, VarSpec};
    let mut instance = InstanceRecord {
        version: "1.4.2".into(),
        weight: 3,
        health: Health::Draining,
        ..InstanceRecord::default()
    };
    instance.tags.insert("zone".into(), "eu-1".into());
    instance.capabilities.insert("gpu".into());
    let endpoint = InstanceRecord {
        target: Target::Endpoint("10.0.0.7:8080".into()),
        ..InstanceRecord::default()
    };
    let agent = AgentRecord {
        capabilities: ["bidder".to_string(), "gpu".to_string()].into(),
        state: AgentState::Restarting,
        health: AgentHealth::Degraded("slow".into()),
    };
    let nest = |inner: VarType| VarType::Record([("inner".to_string(), inner)].into());
    let life = Life {
        node: foundation_core::NodeId::from_u128(5),
        generation: 2,
    };
    let declared = |ty, policy, initial| VarSpec {
        ty,
        policy,
        initial,
        acceptors: [life].into(),
    };
    let rate = declared(
        VarType::Float { min: 0.0, max: 1.0 },
        Policy::Cas,
        VarValue::Float(0.5),
    );
    let deep = declared(
        nest(nest(nest(VarType::Bool))),
        Policy::Lww,
        VarValue::Record([("inner".to_string(), VarValue::Bool(true))].into()),
    );
    let units = declared(
        VarType::Int { min: 0, max: 100 },
        Policy::Counter,
        VarValue::Int(60),
    );
    let value = LwwRecord {
        spec: 77,
        value: VarValue::Choice("fast".into()),
        writer: life,
        seq: 3,
    };
    named(
        "record",
        vec![
            instance.encode(),
            endpoint.encode(),
            agent.encode(),
            rate.encode(),
            deep.encode(),
            units.encode(),
            value.encode(),
        ],
    )
}

/// Postcard bytes of any of the values above (they are of different types).
mod erased {
    pub trait Encode {
        fn bytes(&self) -> Vec<u8>;
    }
    impl<T: serde::Serialize> Encode for T {
        fn bytes(&self) -> Vec<u8> {
            postcard::to_stdvec(self).expect("a seed encodes")
        }
    }
}

/// The records a core writes while taking writes and removals, as its store holds them: one
/// seed with every record sealed as stored, one with the payloads for the target to seal, and
/// one per keyspace's records.
fn storage() -> Seeds {
    let mut core = foundation_fuzz_checks::core_input::core();
    core.start_persisting(Instant::ZERO, &Loaded::default());
    let mut now = Instant::ZERO;
    for i in 0..6u8 {
        let value = (i != 4).then(|| vec![i; 12]);
        let key = format!("key-{}", i % 5);
        let write = Write {
            keyspace: "config".into(),
            key,
            value,
        };
        core.write(now, write).expect("a valid write");
        now = now + std::time::Duration::from_millis(50);
        core.handle_timeout(now);
    }
    let mut store = std::collections::BTreeMap::new();
    while let Some(effect) = core.poll_effect() {
        if let Effect::Persist { batch, .. } = effect {
            record::apply(&mut store, &batch.lower().expect("a batch lowers"));
        }
    }
    let sealed: Vec<(Vec<u8>, Vec<u8>)> = store.into_iter().collect();
    assert!(
        sealed.len() >= 4,
        "the core stored its writes: {}",
        sealed.len()
    );
    let opened: Vec<(Vec<u8>, Vec<u8>)> = sealed
        .iter()
        .map(|(k, v)| (k.clone(), record::open(k, v).expect("intact").to_vec()))
        .collect();
    let mut out = vec![unparse(0, &sealed), unparse(1, &opened)];
    out.extend(opened.chunks(3).map(|chunk| unparse(1, chunk)));
    named("store", out)
}

/// The membership-channel seeds of `core_input` (first byte 0: channel 0, sender 2), which
/// this target reads the same way (first byte: the sender).
fn membership(root: &Path) -> Seeds {
    let dir = root.join("core_input");
    let mut seeds: Seeds = std::fs::read_dir(&dir)
        .expect("core_input's seeds")
        .map(|e| e.expect("an entry").path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("ch0-"))
        })
        .map(|p| {
            let name = p
                .file_name()
                .unwrap()
                .to_string_lossy()
                .replace("ch0", "datagram");
            (name, std::fs::read(&p).expect("a seed"))
        })
        .collect();
    seeds.extend(declared());
    seeds.sort();
    seeds
}

/// Declaration notices (first byte: sent by node 2): one naming the receiver's own life (node
/// 1), then one about a member it does not know, from one it does not know.
fn declared() -> Seeds {
    use foundation_core::membership::{DeclaredNotice, MemberId};
    let member = |n: u16| MemberId {
        node: foundation_core::NodeId::from_u128(u128::from(n)),
        addr: ([127, 0, 0, 1], 7000 + n).into(),
        generation: 1,
    };
    let notice = |declarer: u16, declared: u16| {
        let notice = DeclaredNotice {
            declarer: member(declarer),
            member: member(declared),
            incarnation: 0,
        };
        [&[5][..], &postcard::to_stdvec(&notice).expect("a notice")].concat()
    };
    let run = [&[0][..], &notice(2, 1), &[0xF5], &notice(3, 4)].concat();
    vec![("declared-00".to_owned(), run)]
}

/// Runs of packets, each after its 2-byte length, for the key of the check: genuine ones in
/// and out of order, a replay, tampered ones, another key's, a notice, garbage.
fn sealed() -> Seeds {
    use foundation_fuzz_checks::sealed_datagram::KEY;
    use foundation_transport::sealed::codec::{notice, SealingKey, KEY_LEN};
    let mut ours = SealingKey::new(0x0102_0304, &KEY);
    let genuine: Vec<Vec<u8>> = [&b"ping"[..], &[7; 300], b"", b"ack"]
        .iter()
        .filter_map(|p| ours.seal(p))
        .collect();
    let run = |packets: &[&[u8]]| -> Vec<u8> {
        packets
            .iter()
            .flat_map(|p| [&(p.len() as u16).to_be_bytes()[..], p].concat())
            .collect()
    };
    let mut tampered = genuine[0].clone();
    tampered[14] ^= 1;
    let other = SealingKey::new(0x0102_0304, &[1; KEY_LEN])
        .seal(b"forged")
        .unwrap_or_default();
    named(
        "sealed",
        vec![
            run(&[&genuine[0], &genuine[1]]),
            run(&[&genuine[2], &genuine[0], &genuine[0], &genuine[3]]),
            run(&[&tampered, &other, &genuine[1]]),
            run(&[&notice(7), b"\x5a short", &genuine[3]]),
            run(&[&genuine[3][..20]]),
        ],
    )
}

/// A gateway's requests and replies as a linked cluster's gateway sends them, and the relay
/// service's, carrying directories with entries for the receiver, its hub and a third cluster.
fn federation() -> Seeds {
    use std::collections::BTreeMap;

    use foundation_core::federation::wire::{
        FederationReply, FederationRequest, ForwardedCall, RelayError, RelayReply, RelayRequest,
        RemoteCallError,
    };
    use foundation_core::federation::{
        BridgeReceipt, BridgedMessage, ExportedService, FederationError, GlobalDirectory,
    };
    use foundation_core::ClusterName;
    let mut directory = GlobalDirectory::default();
    for (i, cluster) in ["hub", "edge", "home", "far"].into_iter().enumerate() {
        let services = BTreeMap::from([
            ("orders".to_owned(), ExportedService { healthy: 3 }),
            (format!("svc-{i}"), ExportedService { healthy: 0 }),
        ]);
        let cluster = ClusterName::new(cluster).unwrap();
        let writer = foundation_core::NodeId::from_u128(i as u128 + 7);
        directory.write_local(&cluster, writer, services);
    }
    let trace = parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        .expect("a traceparent");
    let call = ForwardedCall {
        service: "orders".into(),
        body: b"request".to_vec(),
        deadline_micros: 2_000_000,
        trace,
        idempotent: true,
    };
    let requests = [
        FederationRequest::Probe {
            directory: directory.clone(),
        },
        FederationRequest::Push {
            directory: directory.clone(),
        },
        FederationRequest::Call {
            service: call.service.clone(),
            body: call.body.clone(),
            deadline_micros: call.deadline_micros,
            trace,
            idempotent: false,
        },
        FederationRequest::Bridge(vec![BridgedMessage {
            topic: "orders.created".into(),
            payload: b"{}".to_vec(),
            trace,
        }]),
        FederationRequest::Transit {
            target: "edge".into(),
            call: call.clone(),
        },
        FederationRequest::Via {
            origin: "far".into(),
            call,
        },
    ];
    let replies = [
        FederationReply::Probe { directory },
        FederationReply::Call(Ok(b"answer".to_vec())),
        FederationReply::Call(Err(RemoteCallError::Federation(
            FederationError::UnknownCluster("nowhere".into()),
        ))),
        FederationReply::Pushed,
        FederationReply::Refused("not linked".into()),
        FederationReply::Bridged(BridgeReceipt {
            accepted: 1,
            refused: 2,
            overloaded: 3,
        }),
    ];
    let relays = [
        RelayRequest::Call {
            cluster: "hub".into(),
            service: "orders".into(),
            body: vec![1, 2],
            idempotent: true,
        },
        RelayRequest::Lookup {
            cluster: "edge".into(),
            service: "orders".into(),
        },
    ];
    let relay_replies: [RelayReply; 2] = [
        Ok(b"body".to_vec()),
        Err(RelayError::Remote(RemoteCallError::DeadlineExceeded)),
    ];
    let lookup = Some(ExportedService { healthy: 5 });
    let encode = |v: &dyn erased::Encode| v.bytes();
    let mut items: Vec<Vec<u8>> = Vec::new();
    items.extend(requests.iter().map(|r| encode(r)));
    items.extend(replies.iter().map(|r| encode(r)));
    items.extend(relays.iter().map(|r| encode(r)));
    items.extend(relay_replies.iter().map(|r| encode(r)));
    items.push(encode(&lookup));
    // After the others, so that their seeds keep their names.
    let interest = FederationRequest::Interest(vec!["news.weather".into(), "prices.*".into()]);
    items.push(encode(&interest));
    named("federation", items)
}

/// One session per mechanism: a participant count byte, the mechanism, then answers of the
/// kind it asks for, one per ask in the order the driver asks them.
fn sessions() -> Seeds {
    use foundation_core::agents::sessions::SessionAnswer;
    use foundation_core::vars::SessionId;
    let items = session_cases()
        .into_iter()
        .map(|(participants, mechanism, answers)| {
            let mut bytes = vec![participants];
            bytes.extend(postcard::to_stdvec(&mechanism).expect("a mechanism encodes"));
            for answer in answers {
                let answer = SessionAnswer {
                    session: SessionId(7),
                    answer,
                };
                bytes.extend(postcard::to_stdvec(&answer).expect("an answer encodes"));
            }
            bytes
        })
        .collect();
    named("session", items)
}

/// A participant count (less one), a mechanism, and answers of the kind it asks for.
type SessionCase = (
    u8,
    foundation_core::agents::sessions::Mechanism,
    Vec<foundation_core::agents::sessions::Answer>,
);

/// One case per mechanism, each deciding on its answers.
fn session_cases() -> Vec<SessionCase> {
    use foundation_agents::auction::sealed::Pricing;
    use foundation_agents::auction::vcg::BundleBid;
    use foundation_agents::market::double::{ClearingRule, Side};
    use foundation_agents::negotiation::strategy::Role;
    use foundation_agents::voting::{Ballot, Method};
    use foundation_agents::Money;
    use foundation_core::agents::sessions::{Answer, Mechanism};
    let text = String::from;
    let cases: Vec<SessionCase> = vec![
        (
            3,
            Mechanism::SealedBid {
                item: text("slot"),
                pricing: Pricing::SecondPrice,
                reserve: Money(10),
            },
            vec![
                Answer::Bid(Money(50)),
                Answer::Bid(Money(80)),
                Answer::Decline,
                Answer::Bid(Money(5)),
            ],
        ),
        (
            2,
            Mechanism::Vote {
                question: text("mode"),
                candidates: vec![text("a"), text("b"), text("c")],
                method: Method::Schulze,
                quorum: 0.5,
            },
            vec![
                Answer::Ballot(Ballot::Ranking(vec![2, 0, 1])),
                Answer::Ballot(Ballot::Ranking(vec![0, 2])),
                Answer::Ballot(Ballot::Approval(vec![1])),
            ],
        ),
        (
            1,
            Mechanism::English {
                item: text("slot"),
                start: Money(10),
                increment: Money(5),
            },
            vec![Answer::Accept; 6],
        ),
        (
            2,
            Mechanism::Dutch {
                item: text("slot"),
                start: Money(100),
                decrement: Money(10),
                floor: Money(20),
            },
            vec![
                Answer::Decline,
                Answer::Decline,
                Answer::Decline,
                Answer::Accept,
            ],
        ),
        (
            2,
            Mechanism::ContractNet {
                task: text("build"),
                max_cost: Some(Money(500)),
            },
            vec![
                Answer::Bid(Money(300)),
                Answer::Bid(Money(200)),
                Answer::Decline,
            ],
        ),
        (
            1,
            Mechanism::Combinatorial {
                name: text("spectrum"),
                items: vec![text("a"), text("b")],
            },
            vec![
                Answer::Bundles(vec![
                    BundleBid {
                        bundle: 0b01,
                        value: Money(10),
                    },
                    BundleBid {
                        bundle: 0b11,
                        value: Money(25),
                    },
                ]),
                Answer::Bundles(vec![BundleBid {
                    bundle: 0b10,
                    value: Money(12),
                }]),
            ],
        ),
        (
            1,
            Mechanism::Negotiation {
                subject: text("price"),
                buyer: text("agent-0"),
                seller: text("agent-1"),
                first_mover: Role::Buyer,
                rounds_max: 4,
            },
            vec![
                Answer::Offer(10.0),
                Answer::Offer(30.0),
                Answer::Offer(20.0),
                Answer::Accept,
            ],
        ),
        (
            3,
            Mechanism::Market {
                name: text("power"),
                rule: ClearingRule::McAfee,
            },
            vec![
                Answer::Order {
                    side: Side::Buy,
                    quantity: 5,
                    limit: 12.5,
                },
                Answer::Order {
                    side: Side::Sell,
                    quantity: 3,
                    limit: 10.0,
                },
                Answer::Order {
                    side: Side::Buy,
                    quantity: 1,
                    limit: f64::NAN,
                },
                Answer::Order {
                    side: Side::Sell,
                    quantity: u64::MAX,
                    limit: 1.0,
                },
            ],
        ),
        (
            1,
            Mechanism::Tatonnement {
                market: text("grain"),
                supply: vec![10.0, 4.0],
                step: 0.1,
                tolerance: 0.01,
                rounds_max: 8,
            },
            (0..8)
                .map(|i| Answer::Excess(vec![1.0 / f64::from(i + 1), -0.5]))
                .collect(),
        ),
    ];
    cases
}

/// Advertisement files as a node of cluster `fuzz` writes them (serde's field order, compact),
/// of a live process (pid 1) so they are taken up, with and without an HTTP address; then the
/// ones a reader must pass over: another cluster, an unspecified address, a dead pid, an id
/// spelled in upper case (once taken up: the same node under a second file).
fn adverts() -> Seeds {
    let canonical = "0123456789abcdef0123456789abcdef";
    let file = |cluster: &str, addr: &str, pid: u32, http: &str| {
        advert(canonical, cluster, addr, pid, http)
    };
    let items = vec![
        file("fuzz", "127.0.0.1:7946", 1, r#","http":"127.0.0.1:8080""#),
        file("fuzz", "[::1]:7946", 1, ""),
        file("fuzz", "10.0.0.7:40001", 1, r#","http":"[fe80::1]:9100""#),
        file("other", "127.0.0.1:7946", 1, ""),
        file("fuzz", "0.0.0.0:7946", 1, ""),
        file("fuzz", "127.0.0.1:7946", u32::MAX, ""),
        advert(&canonical.to_uppercase(), "fuzz", "127.0.0.1:7946", 1, ""),
    ];
    named("advert", items)
}

/// An advertisement file's bytes.
fn advert(id: &str, cluster: &str, addr: &str, pid: u32, http: &str) -> Vec<u8> {
    format!(
        r#"{{"cluster":"{cluster}","id":"{id}","addr":"{addr}","pid":{pid},"started":1764979200{http}}}"#
    )
    .into_bytes()
}

/// What the engine's sessions send around the mechanism: a session placed on a coordinator
/// (each case's mechanism with a ledger commit where it commits, then its answers), the
/// coordinator's reports of those sessions and a refusal, and a participant's invitation and
/// notice.
fn session_wire() -> Seeds {
    use foundation_core::agents::sessions::{Ask, CommitState, SessionAnswer};
    use foundation_core::vars::SessionId;
    use foundation_engine::runtime::agents::sessions::{
        Coordinator, Session, SessionMessage, SessionReport,
    };
    use std::time::Duration;
    let mut items = Vec::new();
    for (_, mechanism, answers) in session_cases() {
        let commit = mechanism.commits().then(ledger_commit);
        let session = Session {
            id: SessionId(7),
            mechanism,
            capability: "bidder".into(),
            answer_within: Duration::from_millis(250),
            commit,
            coordinator: Coordinator::Rendezvous,
        };
        let mut bytes = postcard::to_stdvec(&session).expect("a session encodes");
        for answer in answers {
            let answer = SessionAnswer {
                session: SessionId(7),
                answer,
            };
            bytes.extend(postcard::to_stdvec(&answer).expect("an answer encodes"));
        }
        items.push(bytes);
    }
    for (_, seed) in sessions() {
        let Some(drove) = foundation_fuzz_checks::agent_sessions::run(&seed) else {
            continue;
        };
        let report: Result<SessionReport, String> = Ok(SessionReport {
            session: SessionId(7),
            participants: (0..=seed[0] % 5).map(|i| format!("agent-{i}")).collect(),
            answered: drove.answered,
            rejected: drove.rejected,
            rounds: drove.rounds,
            decision: drove.decision,
            commit: CommitState::Committed { version: 3 },
        });
        items.push(postcard::to_stdvec(&report).expect("a report encodes"));
    }
    let refused: Result<SessionReport, String> = Err("no agent has capability \"gpu\"".into());
    items.push(postcard::to_stdvec(&refused).expect("a refusal encodes"));
    let invite = SessionMessage::Invite {
        session: SessionId(7),
        ask: Ask::Bid {
            item: "slot".into(),
            reserve: foundation_agents::Money(10),
        },
        within_ms: 250,
        ledger: Some("slots".into()),
        commit_ms: 2_000,
    };
    let notice = SessionMessage::Notice {
        session: SessionId(7),
        decided: "agent-1 wins slot at 50".into(),
        committed: Some(3),
    };
    for message in [invite, notice] {
        items.push(postcard::to_stdvec(&message).expect("a message encodes"));
    }
    named("session-wire", items)
}

/// A ledger commit naming every field a decision can write, and a vote's extra writes.
fn ledger_commit() -> foundation_core::agents::sessions::Commit {
    use foundation_agents::variable::VarValue;
    use std::collections::BTreeMap;
    let temperature = BTreeMap::from([("temperature".to_owned(), VarValue::Float(0.5))]);
    foundation_core::agents::sessions::Commit {
        ledger: "slots".into(),
        winner_field: "winner".into(),
        price_field: Some("price".into()),
        budget_field: Some("budget".into()),
        counter: Some("escrow".into()),
        elected_writes: BTreeMap::from([("a".to_owned(), temperature)]),
        timeout: std::time::Duration::from_secs(2),
    }
}

/// Config values as `ConfigHandle::set` writes them (JSON of a flag, a count, a ratio, a name,
/// a list, an object), and message payloads as the transport's senders encode them.
fn typed_values() -> Seeds {
    use foundation_core::services::wire::{RemoteError, RpcReply};
    use serde_json::json;
    let config = [
        json!(true),
        json!(-42),
        json!(0.125),
        json!("eu-west"),
        json!([1, "two", null, {"three": 3.5}]),
        json!({"limit": 100, "burst": {"max": 250, "ratio": 1e-3}, "tags": ["a", "b"]}),
    ];
    let mut items: Vec<Vec<u8>> = config
        .iter()
        .map(|v| serde_json::to_vec(v).expect("JSON encodes"))
        .collect();
    let payloads = [
        postcard::to_stdvec(&u64::MAX),
        postcard::to_stdvec("orders.created"),
        postcard::to_stdvec(&("key".to_owned(), vec![1u8, 2, 3])),
        postcard::to_stdvec(&RpcReply::Ok(b"done".to_vec())),
        postcard::to_stdvec(&RpcReply::Err(RemoteError::Handler("no stock".into()))),
    ];
    items.extend(payloads.into_iter().map(|p| p.expect("a payload encodes")));
    named("typed", items)
}

/// A certificate as `rcgen` writes it (what `foundation check` reads), and the same with its
/// notAfter's second to fourth digits replaced by a character of three bytes (which once
/// panicked the reader), each as PEM text and as DER; a node's refusals and payloads as its
/// HTTP API answers them.
fn cli_inputs() -> Seeds {
    let mut params = rcgen::CertificateParams::new(vec!["x.foundation".into()]).expect("params");
    params.not_after = rcgen::date_time_ymd(2031, 6, 15);
    let key = rcgen::KeyPair::generate().expect("a key");
    let certificate = params.self_signed(&key).expect("a certificate");
    let mut der = certificate.der().to_vec();
    let at = der
        .windows(13)
        .position(|w| w == b"310615000000Z")
        .expect("notAfter as UTCTime");
    der[at..at + 13].copy_from_slice("3\u{20ac}15000000Z".as_bytes());
    let texts = [
        certificate.pem(),
        foundation_fuzz_checks::cli_inputs::pem(&der),
        r#"{"error":"no key: use /config/{key}"}"#.to_owned(),
        "majority_ms must be between 1 and 60000".to_owned(),
        r#"{"topic":"orders.created","data":"order 7"}"#.to_owned(),
        r#"{"topic":"blobs","data_hex":"00ff10"}"#.to_owned(),
        r#"{"limit":100,"tags":["a"]}"#.to_owned(),
    ];
    let mut items = texts.map(String::into_bytes).to_vec();
    items.extend([certificate.der().to_vec(), der]);
    named("cli", items)
}
