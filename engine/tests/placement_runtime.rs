//! Placement on real nodes over QUIC on 127.0.0.1: a singleton runs on exactly one of three
//! nodes, moves to another when its node is killed, never runs twice at once, and is started
//! again after it panics; shards run once each and every node routes a key to the same owner;
//! `GET /placement` lists them.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use foundation_core::placement::Instance;
use foundation_core::placement::{PlacementError, WorkloadSpec};
use foundation_engine::runtime::placement::{
    Inbox, InstanceContext, PlacementCallError, PlacementNotice,
};
use foundation_engine::runtime::NodeSettings;
use tokio::sync::broadcast;

const SECRET: &str = "placement test secret";
const SOON: Duration = Duration::from_secs(15);

fn settings(seeds: Vec<std::net::SocketAddr>) -> NodeSettings {
    NodeSettings {
        http: Some("127.0.0.1:0".parse().expect("address")),
        ..common::settings("placement-test", SECRET, seeds)
    }
}

/// Who runs what, across every node of the test (they share the process): each running
/// instance holds a guard that counts it and uncounts it when its future is dropped (an abort
/// drops it, at the task's next turn: a run aborted on a node may still be dropping while the
/// same node starts the instance again, so runs are told apart by a number).
#[derive(Default)]
struct Runs {
    /// (workload, shard) → (node index, run) of each run now.
    now: Mutex<BTreeMap<(String, u32), Vec<Run>>>,
    /// The most distinct nodes that ever ran one instance at once.
    most: AtomicUsize,
    next: AtomicUsize,
}

/// (node index, run number).
type Run = (usize, usize);

struct Guard {
    runs: Arc<Runs>,
    key: (String, u32),
    run: Run,
}

impl Runs {
    fn enter(self: &Arc<Self>, workload: &str, shard: u32, node: usize) -> Guard {
        let key = (workload.to_owned(), shard);
        let mut now = self.now.lock().expect("lock");
        let runners = now.entry(key.clone()).or_default();
        let run = (node, self.next.fetch_add(1, Ordering::SeqCst));
        runners.push(run);
        let mut nodes: Vec<usize> = runners.iter().map(|(n, _)| *n).collect();
        nodes.dedup();
        self.most.fetch_max(nodes.len(), Ordering::SeqCst);
        Guard {
            runs: self.clone(),
            key,
            run,
        }
    }

    fn runners(&self, workload: &str, shard: u32) -> Vec<usize> {
        let now = self.now.lock().expect("lock");
        let mut nodes: Vec<usize> = now
            .get(&(workload.to_owned(), shard))
            .into_iter()
            .flatten()
            .map(|(n, _)| *n)
            .collect();
        nodes.sort_unstable();
        nodes.dedup();
        nodes
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Ok(mut now) = self.runs.now.lock() {
            if let Some(runners) = now.get_mut(&self.key) {
                runners.retain(|r| *r != self.run);
            }
        }
    }
}

/// The notices a subscriber has received so far.
fn drain(events: &mut broadcast::Receiver<PlacementNotice>) -> Vec<PlacementNotice> {
    let mut got = Vec::new();
    while let Ok(notice) = events.try_recv() {
        got.push(notice);
    }
    got
}

/// A node alone in its cluster.
async fn lone_node() -> foundation_engine::runtime::Node {
    foundation_engine::runtime::Node::start(settings(vec![]))
        .await
        .expect("started")
}

/// Declares replicated workload `edge-{n}`, which runs only where tag `zone` is `zone-{n}`;
/// its name, and the metadata that carries that tag.
async fn zoned_workload(
    placement: &foundation_engine::runtime::placement::PlacementHandle,
    n: usize,
) -> (String, foundation_engine::membership::NodeMetadata) {
    let (name, zone) = (format!("edge-{n}"), format!("zone-{n}"));
    let require = BTreeMap::from([("zone".to_owned(), zone.clone())]);
    placement
        .replicated(&name, require, std::future::pending::<()>)
        .await
        .expect("declared");
    let mut tagged = foundation_engine::membership::NodeMetadata::default();
    tagged.tags.insert("zone".to_owned(), zone);
    (name, tagged)
}

/// A majority of three must be seen before anything starts, so nodes that have not joined yet
/// never each start one.
fn majority() -> WorkloadSpec {
    WorkloadSpec {
        min_members: 2,
        ..WorkloadSpec::singleton()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_singleton_restarts_elsewhere_and_never_runs_twice() {
    let nodes = common::cluster(3, settings).await;
    let mut events: Vec<_> = nodes.iter().map(|n| n.placement().events()).collect();
    let runs = Arc::new(Runs::default());
    // The first run anywhere panics: the supervisor starts it again.
    let panicked = Arc::new(AtomicBool::new(false));
    for (index, node) in nodes.iter().enumerate() {
        let (runs, panicked) = (runs.clone(), panicked.clone());
        node.placement()
            .singleton_with("ticker", majority(), move || {
                let (runs, panicked) = (runs.clone(), panicked.clone());
                async move {
                    if !panicked.swap(true, Ordering::SeqCst) {
                        panic!("the first run fails on purpose");
                    }
                    let _guard = runs.enter("ticker", 0, index);
                    std::future::pending::<()>().await;
                }
            })
            .await
            .expect("declared");
    }
    common::eventually(SOON, "the singleton runs", || {
        runs.runners("ticker", 0).len() == 1
    })
    .await;
    let first = runs.runners("ticker", 0)[0];
    assert!(
        nodes[first].placement().restarts() >= 1,
        "the panic was restarted"
    );
    assert!(nodes[first].placement().running_here("ticker", 0));
    // Another spec under the same name is refused with a typed error.
    let other = nodes[0]
        .placement()
        .sharded("ticker", 4, |_| async {})
        .await;
    assert!(matches!(other, Err(PlacementCallError::Refused(_))));

    nodes[first].abort().await;
    let deadline = tokio::time::Instant::now() + SOON;
    loop {
        let runners = runs.runners("ticker", 0);
        if runners.len() == 1 && runners[0] != first {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            let views: Vec<String> = nodes
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != first)
                .map(|(i, n)| {
                    let p = n.placement();
                    let states: Vec<_> = n.members().iter().map(|m| (m.id, m.state)).collect();
                    format!(
                        "n{i} {:?} started {} restarts {} panics {} members {states:?}",
                        p.all(),
                        p.started(),
                        p.restarts(),
                        p.panics()
                    )
                })
                .collect();
            panic!("no failover within {SOON:?}: runners {runners:?}; {views:#?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Let it settle, then check no duplicate ever ran.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(runs.runners("ticker", 0).len(), 1);
    assert_eq!(runs.most.load(Ordering::SeqCst), 1, "a duplicate ran");
    // The new owner's stream says its view moved the singleton to it, and that it started here
    // after a while without an owner; no node reports a duplicate.
    let second = runs.runners("ticker", 0)[0];
    let ticker = Instance::new("ticker", 0);
    let (first_id, second_id) = (
        nodes[first].placement().me(),
        nodes[second].placement().me(),
    );
    let seen = drain(&mut events[second]);
    assert!(
        seen.contains(&PlacementNotice::OwnerChanged {
            instance: ticker.clone(),
            from: Some(first_id),
            to: Some(second_id),
        }),
        "{seen:?}"
    );
    let waited = seen.iter().find_map(|n| match n {
        PlacementNotice::Started {
            instance,
            without_owner,
        } if *instance == ticker => Some(*without_owner),
        _ => None,
    });
    assert!(waited.is_some(), "{seen:?}");
    for (i, stream) in events.iter_mut().enumerate() {
        let duplicates = drain(stream)
            .into_iter()
            .filter(|n| matches!(n, PlacementNotice::DuplicateDetected { .. }))
            .count();
        assert_eq!(duplicates, 0, "n{i} detected a duplicate");
    }
    for (i, node) in nodes.iter().enumerate() {
        if i != first {
            node.abort().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_run_once_each_and_every_node_routes_a_key_to_the_same_owner() {
    const SHARDS: u32 = 6;
    let nodes = common::cluster(3, settings).await;
    let runs = Arc::new(Runs::default());
    for (index, node) in nodes.iter().enumerate() {
        let runs = runs.clone();
        let spec = WorkloadSpec {
            min_members: 2,
            ..WorkloadSpec::sharded(SHARDS)
        };
        node.placement()
            .sharded_with("orders", spec, move |shard| {
                let runs = runs.clone();
                async move {
                    let _guard = runs.enter("orders", shard, index);
                    std::future::pending::<()>().await;
                }
            })
            .await
            .expect("declared");
    }
    common::eventually(SOON, "every shard runs once", || {
        (0..SHARDS).all(|s| runs.runners("orders", s).len() == 1)
    })
    .await;
    for key in ["customer-1", "customer-2", "customer-3", "x"] {
        let answers: Vec<_> = nodes
            .iter()
            .map(|n| {
                n.placement()
                    .owner_of("orders", key.as_bytes())
                    .expect("known")
            })
            .collect();
        assert!(
            answers.windows(2).all(|w| w[0] == w[1]),
            "{key}: {answers:?}"
        );
        let (shard, owner) = answers[0];
        let owner = owner.expect("an owner");
        let runner = runs.runners("orders", shard)[0];
        assert_eq!(nodes[runner].id(), owner, "{key} is routed where it runs");
    }
    assert!(matches!(
        nodes[0].placement().owner_of("nope", b"k"),
        Err(PlacementCallError::Refused(_))
    ));
    // GET /placement lists the workload, its owners and what runs here.
    let http = nodes[0].http_addr().expect("http");
    let body = common::raw_http::get(http, "/placement").await.body;
    let json: serde_json::Value = serde_json::from_str(&body).expect("json");
    let instances = json["workloads"]["orders"]["instances"]
        .as_array()
        .expect("instances");
    assert_eq!(instances.len(), SHARDS as usize);
    assert!(instances.iter().all(|i| i["owner"].is_string()));
    assert_eq!(json["duplicates_detected"], 0);
    assert_eq!(runs.most.load(Ordering::SeqCst), 1, "a duplicate ran");
    for node in &nodes {
        node.abort().await;
    }
}

/// Messages routed by key reach each shard's instance on whichever node runs it; when a node
/// leaves gracefully, its shards hand their state — the count of messages each took — to their
/// next owners, so the counts still add up to every message sent. A state over the limit is
/// refused with a typed error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routed_messages_and_handed_over_state_survive_a_graceful_leave() {
    const SHARDS: u32 = 4;
    let nodes = common::cluster(3, settings).await;
    let mut events: Vec<_> = nodes.iter().map(|n| n.placement().events()).collect();
    // Shard → the count its latest run reported; how many runs started with a state.
    let counts: Arc<Mutex<BTreeMap<u32, u64>>> = Arc::default();
    let resumed = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(AtomicUsize::new(0));
    for node in &nodes {
        let (counts, resumed, refused) = (counts.clone(), resumed.clone(), refused.clone());
        let spec = WorkloadSpec {
            min_members: 2,
            handoff: true,
            ..WorkloadSpec::sharded(SHARDS)
        };
        node.placement()
            .place("acc", spec, move |mut context: InstanceContext| {
                let (counts, resumed, refused) = (counts.clone(), resumed.clone(), refused.clone());
                async move {
                    let handed = context.handed_over.as_deref().map(<[u8; 8]>::try_from);
                    let mut count = match handed {
                        Some(Ok(bytes)) => {
                            resumed.fetch_add(1, Ordering::SeqCst);
                            u64::from_le_bytes(bytes)
                        }
                        _ => 0,
                    };
                    while let Some(item) = context.recv().await {
                        match item {
                            Inbox::Message(_) => {
                                count += 1;
                                counts.lock().expect("lock").insert(context.shard, count);
                            }
                            Inbox::HandOff(reply) => {
                                // 20 MiB is over the 16 MiB default limit.
                                let big = reply.hand_over(vec![0; 20 << 20]).await;
                                if matches!(
                                    big,
                                    Err(PlacementCallError::Refused(
                                        PlacementError::TooLarge { .. }
                                    ))
                                ) {
                                    refused.fetch_add(1, Ordering::SeqCst);
                                }
                                reply
                                    .hand_over(count.to_le_bytes().to_vec())
                                    .await
                                    .expect("handed over");
                            }
                        }
                    }
                }
            })
            .await
            .expect("declared");
    }
    let placed = |nodes: &[foundation_engine::runtime::Node]| {
        (0..SHARDS).all(|s| {
            nodes
                .iter()
                .filter(|n| n.placement().running_here("acc", s))
                .count()
                == 1
        })
    };
    common::eventually(SOON, "every shard runs once", || placed(&nodes)).await;
    // The node running the most shards leaves (node ids are random, so which one varies);
    // their states are handed over. Another node sends.
    let running = |i: usize| {
        (0..SHARDS)
            .filter(|&s| nodes[i].placement().running_here("acc", s))
            .count()
    };
    let leaver = (0..3).max_by_key(|&i| running(i)).expect("three nodes");
    let moved = running(leaver);
    let sender = usize::from(leaver == 0);
    let send = |round: usize| {
        let sender = nodes[sender].placement();
        async move {
            for i in 0..20 {
                let key = format!("key-{round}-{i}");
                sender
                    .route("acc", key.as_bytes(), b"m".to_vec(), SOON)
                    .await
                    .expect("delivered");
            }
        }
    };
    send(1).await;
    nodes[leaver].leave().await;
    let stay: Vec<_> = (0..3).filter(|&i| i != leaver).map(|i| &nodes[i]).collect();
    common::eventually(SOON, "every shard runs once after the leave", || {
        (0..SHARDS).all(|s| {
            stay.iter()
                .filter(|n| n.placement().running_here("acc", s))
                .count()
                == 1
        })
    })
    .await;
    send(2).await;
    // The leaver's stream began a handoff for each of its shards, and the nodes that stay
    // ended as many.
    let begun = drain(&mut events[leaver])
        .iter()
        .filter(|n| matches!(n, PlacementNotice::HandoffBegun { .. }))
        .count();
    assert_eq!(begun, moved);
    let ended: usize = (0..3)
        .filter(|&i| i != leaver)
        .map(|i| {
            drain(&mut events[i])
                .iter()
                .filter(|n| matches!(n, PlacementNotice::HandoffEnded { bytes: 8, .. }))
                .count()
        })
        .sum();
    assert_eq!(ended, moved);
    // `route` returns once a message is in its instance's inbox: the count follows.
    let total = || counts.lock().expect("lock").values().sum::<u64>();
    common::eventually(
        SOON,
        "every message counted once, across the handoff",
        || total() >= 40,
    )
    .await;
    assert_eq!(
        total(),
        40,
        "every message counted once, across the handoff"
    );
    assert_eq!(
        resumed.load(Ordering::SeqCst),
        moved,
        "each moved shard resumed"
    );
    assert_eq!(
        refused.load(Ordering::SeqCst),
        moved,
        "each oversized state refused"
    );
    // The sender's metrics count its 40 messages delivered (refreshed every second).
    let http = nodes[sender].http_addr().expect("http");
    let deadline = tokio::time::Instant::now() + SOON;
    loop {
        let body = common::raw_http::get(http, "/metrics").await.body;
        if body.contains("foundation_placement_routed_total{outcome=\"delivered\"} 40") {
            assert!(body.contains("foundation_placement_stops_total{reason=\"lost-quorum\"} 0"));
            assert!(body.contains("foundation_placement_duplicates_detected_total 0"));
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "metrics: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The time without an owner of each start, by workload, on a node that started some.
    let starter = stay
        .iter()
        .find(|n| n.placement().started() > 0)
        .expect("the nodes that stay run the shards");
    let body = common::raw_http::get(starter.http_addr().expect("http"), "/metrics")
        .await
        .body;
    assert!(
        body.contains("foundation_placement_without_owner_seconds_count{workload=\"acc\"}"),
        "{body}"
    );
    assert_eq!(
        nodes[sender]
            .placement()
            .route("nope", b"k", Vec::new(), SOON)
            .await
            .err()
            .map(|e| e.to_string()),
        Some(PlacementError::Unknown("nope".into()).to_string())
    );
    for node in stay {
        node.abort().await;
    }
}

/// A replicated workload runs once on every member; a local one on the node that declared it
/// only; both are listed as running there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicated_runs_on_every_member_and_local_on_its_node() {
    let nodes = common::cluster(3, settings).await;
    let runs = Arc::new(Runs::default());
    for (index, node) in nodes.iter().enumerate() {
        let runs = runs.clone();
        node.placement()
            .replicated("everywhere", BTreeMap::new(), move || {
                let runs = runs.clone();
                async move {
                    let _guard = runs.enter("everywhere", 0, index);
                    std::future::pending::<()>().await;
                }
            })
            .await
            .expect("declared");
    }
    let only = runs.clone();
    nodes[1]
        .placement()
        .local("mine", move || {
            let runs = only.clone();
            async move {
                let _guard = runs.enter("mine", 0, 1);
                std::future::pending::<()>().await;
            }
        })
        .await
        .expect("declared");
    common::eventually(SOON, "one run on every node, and the local one", || {
        runs.runners("everywhere", 0) == vec![0, 1, 2] && runs.runners("mine", 0) == vec![1]
    })
    .await;
    assert!(nodes
        .iter()
        .all(|n| n.placement().running_here("everywhere", 0)));
    assert!(nodes[1].placement().running_here("mine", 0));
    assert_eq!(nodes[1].placement().all()["mine"].kind, "local");
    for node in &nodes {
        node.abort().await;
    }
}

/// A declared workload is in the node's view once the declaration returns: `owner_of` and
/// `GET /placement` read it back at once (a declaration answered before the view was
/// published read as `Unknown` now and then).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declaration_shows_here_as_soon_as_it_returns() {
    let node = lone_node().await;
    let placement = node.placement();
    for n in 0..300 {
        let name = format!("shards-{n}");
        placement
            .sharded(&name, 4, |_| std::future::pending::<()>())
            .await
            .expect("declared");
        let read = placement.owner_of(&name, b"key");
        assert!(read.is_ok(), "{name} not shown yet: {read:?}");
        assert_eq!(placement.all()[&name].instances.len(), 4);
    }
    node.abort().await;
}

/// Setting this node's tags is done once `set_metadata` returns: a replicated workload that
/// requires them runs here (and shows so) at once, and stops once they are gone again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_tags_place_here_as_soon_as_set_metadata_returns() {
    use foundation_engine::membership::NodeMetadata;
    let node = lone_node().await;
    let placement = node.placement();
    for n in 0..50 {
        let (name, tagged) = zoned_workload(&placement, n).await;
        assert!(!placement.running_here(&name, 0), "{name} runs untagged");
        node.set_metadata(tagged).await;
        assert!(placement.running_here(&name, 0), "{name} not placed yet");
        node.set_metadata(NodeMetadata::default()).await;
        assert!(!placement.running_here(&name, 0), "{name} still placed");
    }
    node.abort().await;
}

/// A start or stop notice goes out once the node's view shows it: a subscriber that reads
/// `running_here` on the news reads what it says. The subscriber's verdict on each notice is
/// awaited before the next change, so it reads the state the notice is about.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn started_and_stopped_notices_agree_with_running_here() {
    use foundation_engine::membership::NodeMetadata;
    let node = lone_node().await;
    let placement = node.placement();
    let mut notices = placement.events();
    let reader = placement.clone();
    let (verdicts, mut verdict) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(notice) = notices.recv().await {
            let (instance, started) = match notice {
                PlacementNotice::Started { instance, .. } => (instance, true),
                PlacementNotice::Stopped { instance, .. } => (instance, false),
                _ => continue,
            };
            let shown = reader.running_here(&instance.workload, instance.shard);
            let _ = verdicts.send((instance.workload, started, shown));
        }
    });
    let mut disagreed = Vec::new();
    for n in 0..50 {
        let (name, tagged) = zoned_workload(&placement, n).await;
        for metadata in [tagged, NodeMetadata::default()] {
            node.set_metadata(metadata).await;
            let (workload, told, shown) = verdict.recv().await.expect("a notice");
            assert_eq!(workload, name);
            if told != shown {
                disagreed.push((workload, told));
            }
        }
    }
    assert!(disagreed.is_empty(), "told before shown: {disagreed:?}");
    node.abort().await;
}

/// Two leaves asked at once while the node hands its instance over (an operator's
/// `POST /leave` and the application's `leave`) are both answered once it has left: the second
/// took the first's place, whose caller was told the node had already stopped (409).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_leaves_during_a_handoff_are_both_answered() {
    use foundation_engine::http::{send_json, Method};
    let nodes = common::cluster(2, settings).await;
    for node in &nodes {
        let spec = WorkloadSpec {
            min_members: 1,
            handoff: true,
            ..WorkloadSpec::singleton()
        };
        node.placement()
            .place(
                "slow-handoff",
                spec,
                |mut context: InstanceContext| async move {
                    while let Some(item) = context.recv().await {
                        if let Inbox::HandOff(reply) = item {
                            tokio::time::sleep(Duration::from_millis(500)).await;
                            let _ = reply.hand_over(b"state".to_vec()).await;
                        }
                    }
                },
            )
            .await
            .expect("declared");
    }
    common::eventually(SOON, "the singleton runs", || {
        nodes
            .iter()
            .any(|n| n.placement().running_here("slow-handoff", 0))
    })
    .await;
    let leaver = &nodes[usize::from(!nodes[0].placement().running_here("slow-handoff", 0))];
    let http = leaver.http_addr().expect("serves HTTP");
    let asked = send_json(http, Method::POST, "/leave", None, SOON);
    let also = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        leaver.leave().await;
    };
    let (asked, ()) = tokio::join!(asked, also);
    assert_eq!(asked.map(|a| a["left"].clone()).ok(), Some(true.into()));
    for node in &nodes {
        node.abort().await;
    }
}
