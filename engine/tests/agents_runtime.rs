//! Agents on real QUIC nodes on loopback: supervision (restart after a panic, giving up after
//! the restart intensity, shutdown order), the cluster-wide directory (lookup by capability
//! from another node, a killed node's agents vanishing) and messages (requests across nodes,
//! multicast, typed errors). No timing is asserted: every wait has a generous deadline.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::eventually;
use foundation_engine::runtime::agents::{
    answer, Agent, AgentEvent, AgentSpec, AgentState, AgentsConfig, AgentsError, Context,
    DeliveryError, HandlerError, Health, Message, StopReason, Strategy, SupervisorConfig,
};
use foundation_engine::runtime::{Node, NodeSettings};

const SOON: Duration = Duration::from_secs(20);
const DEADLINE: Duration = Duration::from_secs(5);

async fn cluster(n: usize) -> Vec<Node> {
    common::cluster(n, |seeds| {
        common::settings("agents-test", "agents test secret", seeds)
    })
    .await
}

async fn stop(nodes: &[Node]) {
    for node in nodes {
        node.abort().await;
    }
}

/// Doubles numbers; panics on 0; sleeps on 1 (to miss deadlines); reports itself degraded.
struct Doubler;

impl Agent for Doubler {
    async fn handle(&mut self, _: &Context, message: Message) -> Result<Bytes, HandlerError> {
        match message.decode::<u64>()? {
            0 => panic!("zero is not allowed"),
            1 => {
                tokio::time::sleep(Duration::from_secs(3)).await;
                answer(&2u64)
            }
            n => answer(&(n * 2)),
        }
    }

    fn health(&self) -> Health {
        Health::Degraded("doubling only".into())
    }
}

fn doubler(name: &str) -> AgentSpec {
    AgentSpec::new(name, || Doubler).capability("math")
}

/// Fails its `init` every time.
struct Broken;

impl Agent for Broken {
    async fn init(&mut self, _: &Context) -> Result<(), HandlerError> {
        Err(HandlerError::new("cannot start"))
    }

    async fn handle(&mut self, _: &Context, _: Message) -> Result<Bytes, HandlerError> {
        Ok(Bytes::new())
    }
}

/// Records the messages it gets and the order of terminations.
struct Recorder {
    name: &'static str,
    log: Arc<Mutex<Vec<String>>>,
}

impl Agent for Recorder {
    async fn handle(&mut self, _: &Context, message: Message) -> Result<Bytes, HandlerError> {
        let text: String = message.decode()?;
        self.log
            .lock()
            .unwrap()
            .push(format!("{}:{text}", self.name));
        Ok(Bytes::new())
    }

    async fn terminate(&mut self, _: &Context, _: StopReason) {
        self.log
            .lock()
            .unwrap()
            .push(format!("terminate:{}", self.name));
    }
}

fn recorder(name: &'static str, log: &Arc<Mutex<Vec<String>>>) -> AgentSpec {
    let log = log.clone();
    AgentSpec::new(name, move || Recorder {
        name,
        log: log.clone(),
    })
    .capability("recorder")
}

/// The names of the next `n` agents to enter `Running`, sorted.
async fn running_again(
    events: &mut tokio::sync::broadcast::Receiver<AgentEvent>,
    n: usize,
) -> Vec<String> {
    let mut running = Vec::new();
    while running.len() < n {
        let event = tokio::time::timeout(SOON, events.recv())
            .await
            .unwrap()
            .unwrap();
        if let AgentEvent::State {
            name,
            state: AgentState::Running,
        } = event
        {
            running.push(name);
        }
    }
    running.sort();
    running
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_is_reported_and_the_agent_restarted() {
    let nodes = cluster(1).await;
    let agents = nodes[0].agents();
    agents.spawn(doubler("doubler")).await.unwrap();
    let bad = agents.spawn(AgentSpec::new("no/slash", || Doubler)).await;
    assert!(matches!(bad, Err(AgentsError::Bad(_))), "{bad:?}");
    let taken = agents.spawn(doubler("doubler")).await;
    assert!(matches!(taken, Err(AgentsError::NameTaken(_))), "{taken:?}");
    let mut events = agents.events();
    let four: u64 = agents.request("doubler", &2u64, DEADLINE).await.unwrap();
    assert_eq!(four, 4);

    let panicked = agents.request::<_, u64>("doubler", &0u64, DEADLINE).await;
    assert!(
        matches!(&panicked, Err(DeliveryError::Panicked { message, .. }) if message.contains("zero")),
        "{panicked:?}"
    );
    // Restarting, then running again; the next request is answered by a new instance.
    let mut seen = Vec::new();
    while seen.last() != Some(&AgentState::Running) {
        match tokio::time::timeout(SOON, events.recv())
            .await
            .unwrap()
            .unwrap()
        {
            AgentEvent::State { state, .. } => seen.push(state),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(seen, [AgentState::Restarting, AgentState::Running]);
    let six: u64 = agents.request("doubler", &3u64, DEADLINE).await.unwrap();
    assert_eq!(six, 6);
    assert_eq!(
        agents.health("doubler", DEADLINE).await.unwrap(),
        Health::Degraded("doubling only".into())
    );
    let metrics = metrics_text(&nodes[0]);
    assert!(
        metrics.contains("foundation_agent_restarts_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("foundation_agents{state=\"running\"} 1"),
        "{metrics}"
    );
    // Counted as states change: the agent went through `restarting` twice and is there no more.
    assert!(
        metrics.contains("foundation_agents{state=\"restarting\"} 0"),
        "{metrics}"
    );
    stop(&nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_for_all_restarts_every_agent_of_the_group() {
    let nodes = cluster(1).await;
    let agents = nodes[0].agents();
    let log = Arc::new(Mutex::new(Vec::new()));
    let config = SupervisorConfig {
        strategy: Strategy::OneForAll,
        ..SupervisorConfig::default()
    };
    let group = vec![recorder("sibling", &log), doubler("crashy")];
    agents.spawn_group("pair", config, group).await.unwrap();
    let mut events = agents.events();
    let panicked = agents.request::<_, u64>("crashy", &0u64, DEADLINE).await;
    assert!(
        matches!(panicked, Err(DeliveryError::Panicked { .. })),
        "{panicked:?}"
    );
    // The sibling is stopped (terminate runs) and started again along with the one that failed.
    assert_eq!(running_again(&mut events, 2).await, ["crashy", "sibling"]);
    assert_eq!(*log.lock().unwrap(), ["terminate:sibling"]);
    let answer: u64 = agents.request("crashy", &5u64, DEADLINE).await.unwrap();
    assert_eq!(answer, 10);
    stop(&nodes).await;
}

/// An agent added to a running one-for-all group answers at once (also from another node),
/// is restarted with its siblings when it fails, and is stopped first when the group stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_added_to_a_running_group_is_supervised_with_it() {
    let nodes = cluster(2).await;
    let agents = nodes[0].agents();
    let log = Arc::new(Mutex::new(Vec::new()));
    let config = SupervisorConfig {
        strategy: Strategy::OneForAll,
        ..SupervisorConfig::default()
    };
    let first = vec![recorder("first", &log)];
    agents.spawn_group("team", config, first).await.unwrap();
    agents.start_child("team", doubler("joiner")).await.unwrap();
    assert_eq!(agents.state("joiner"), Some(AgentState::Running));
    let far = nodes[1].agents();
    eventually(SOON, "the joiner is in the other node's directory", || {
        far.lookup("joiner").is_some()
    })
    .await;
    let eight: u64 = far.request("joiner", &4u64, DEADLINE).await.unwrap();
    assert_eq!(eight, 8);
    // Refusals: a taken name, a group that does not run here.
    let taken = agents.start_child("team", doubler("first")).await;
    assert!(matches!(taken, Err(AgentsError::NameTaken(_))), "{taken:?}");
    let unknown = agents.start_child("nobody", doubler("x")).await;
    assert!(
        matches!(unknown, Err(AgentsError::UnknownGroup(_))),
        "{unknown:?}"
    );
    // Its failure restarts its sibling: the group's strategy covers it.
    let mut events = agents.events();
    let panicked = agents.request::<_, u64>("joiner", &0u64, DEADLINE).await;
    assert!(
        matches!(panicked, Err(DeliveryError::Panicked { .. })),
        "{panicked:?}"
    );
    assert_eq!(running_again(&mut events, 2).await, ["first", "joiner"]);
    assert_eq!(*log.lock().unwrap(), ["terminate:first"]);
    // Added last, stopped first: the recorder added now terminates before "first".
    agents
        .start_child("team", recorder("last", &log))
        .await
        .unwrap();
    agents.stop("team").await.unwrap();
    assert_eq!(
        *log.lock().unwrap(),
        ["terminate:first", "terminate:last", "terminate:first"]
    );
    let gone = agents.start_child("team", doubler("late")).await;
    assert!(
        matches!(gone, Err(AgentsError::UnknownGroup(_))),
        "{gone:?}"
    );
    stop(&nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_failing_past_its_intensity_is_stopped_and_reported_everywhere() {
    let nodes = cluster(2).await;
    let agents = nodes[0].agents();
    let mut events = agents.events();
    let config = SupervisorConfig {
        max_restarts: 2,
        period_ms: 60_000,
        backoff_initial_ms: 10,
        backoff_max_ms: 50,
        ..SupervisorConfig::default()
    };
    agents
        .spawn_with(AgentSpec::new("broken", || Broken), config)
        .await
        .unwrap();
    agents.spawn(doubler("healthy")).await.unwrap();
    let reason = loop {
        match tokio::time::timeout(SOON, events.recv())
            .await
            .unwrap()
            .unwrap()
        {
            AgentEvent::GaveUp { group, reason } => {
                assert_eq!(group, "broken");
                break reason;
            }
            AgentEvent::State { .. } | AgentEvent::Session { .. } => {}
        }
    };
    assert!(reason.contains("broken"), "{reason}");
    assert_eq!(agents.state("broken"), Some(AgentState::Failed));
    let dead = agents.send("broken", &1u64).await;
    assert!(
        matches!(
            dead,
            Err(DeliveryError::DeadAgent {
                state: AgentState::Failed,
                ..
            })
        ),
        "{dead:?}"
    );

    // The other node sees it failed, and gets the same typed error.
    let remote = nodes[1].agents();
    eventually(SOON, "failed state replicated", || {
        remote
            .lookup("broken")
            .is_some_and(|e| e.record.state == AgentState::Failed)
    })
    .await;
    let dead = remote.request::<_, u64>("broken", &1u64, DEADLINE).await;
    assert!(
        matches!(dead, Err(DeliveryError::DeadAgent { .. })),
        "{dead:?}"
    );

    // Its neighbour was never touched, and stopping the failed one removes it everywhere.
    let ten: u64 = remote.request("healthy", &5u64, DEADLINE).await.unwrap();
    assert_eq!(ten, 10);
    agents.stop("broken").await.unwrap();
    eventually(SOON, "stopped agent leaves the directory", || {
        remote.lookup("broken").is_none()
    })
    .await;
    let metrics = metrics_text(&nodes[0]);
    assert!(
        metrics.contains("foundation_agent_supervisor_gave_up_total 1"),
        "{metrics}"
    );
    stop(&nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_are_found_by_capability_and_messaged_from_other_nodes() {
    let nodes = cluster(3).await;
    let log = Arc::new(Mutex::new(Vec::new()));
    nodes[0]
        .agents()
        .spawn(recorder("rec-a", &log))
        .await
        .unwrap();
    nodes[1]
        .agents()
        .spawn(recorder("rec-b", &log))
        .await
        .unwrap();
    nodes[1].agents().spawn(doubler("doubler")).await.unwrap();
    let far = nodes[2].agents();
    eventually(SOON, "both recorders visible from the third node", || {
        far.with_capability("recorder").len() == 2
    })
    .await;
    let found = far.with_capability("recorder");
    assert_eq!(found[0].name, "rec-a");
    assert_eq!(found[0].node.id, nodes[0].id());
    assert_eq!(found[1].node.id, nodes[1].id());
    assert!(!found[0].local);

    // A request across nodes.
    eventually(SOON, "doubler visible", || far.lookup("doubler").is_some()).await;
    assert_eq!(far.on_node(nodes[1].id()).len(), 2);
    let answer: u64 = far.request("doubler", &21u64, DEADLINE).await.unwrap();
    assert_eq!(answer, 42);

    // Multicast reaches both recorders, on two other nodes.
    let delivered = far
        .multicast("recorder", &"hello".to_owned())
        .await
        .unwrap();
    assert_eq!(delivered.len(), 2);
    assert!(delivered.iter().all(|d| d.result.is_ok()), "{delivered:?}");
    eventually(SOON, "both got it", || log.lock().unwrap().len() == 2).await;
    let mut got = log.lock().unwrap().clone();
    got.sort();
    assert_eq!(got, ["rec-a:hello", "rec-b:hello"]);

    // Typed errors, and the nodes stay up.
    let unknown = far.send("nobody", &1u64).await;
    assert!(
        matches!(unknown, Err(DeliveryError::UnknownAgent(_))),
        "{unknown:?}"
    );
    let late = far
        .request::<_, u64>("doubler", &1u64, Duration::from_millis(200))
        .await;
    assert!(
        matches!(late, Err(DeliveryError::DeadlineExceeded)),
        "{late:?}"
    );
    let huge = vec![7u8; 2 << 20];
    let too_large = far.send_bytes("doubler", huge.into()).await;
    assert!(
        matches!(too_large, Err(DeliveryError::TooLarge { .. })),
        "{too_large:?}"
    );
    let panicked = far.request::<_, u64>("doubler", &0u64, DEADLINE).await;
    assert!(
        matches!(panicked, Err(DeliveryError::Panicked { .. })),
        "{panicked:?}"
    );
    // An empty body does not decode as the number the handler expects: its error comes back.
    let wrong_type = far.request_bytes("doubler", Bytes::new(), DEADLINE).await;
    assert!(
        matches!(wrong_type, Err(DeliveryError::Handler { .. })),
        "{wrong_type:?}"
    );
    eventually(SOON, "doubler back", || {
        nodes[1].agents().state("doubler") == Some(AgentState::Running)
    })
    .await;
    let answer: u64 = far.request("doubler", &4u64, DEADLINE).await.unwrap();
    assert_eq!(answer, 8);
    stop(&nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_nodes_agents_vanish_from_the_other_nodes() {
    let nodes = cluster(3).await;
    nodes[2].agents().spawn(doubler("doomed")).await.unwrap();
    for node in &nodes[..2] {
        let agents = node.agents();
        eventually(SOON, "agent visible", || agents.lookup("doomed").is_some()).await;
    }
    nodes[2].abort().await;
    for node in &nodes[..2] {
        let agents = node.agents();
        eventually(SOON, "killed node's agent gone", || {
            agents.lookup("doomed").is_none()
        })
        .await;
        let gone = agents.request::<_, u64>("doomed", &2u64, DEADLINE).await;
        assert!(
            matches!(gone, Err(DeliveryError::UnknownAgent(_))),
            "{gone:?}"
        );
    }
    stop(&nodes[..2]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaving_stops_agents_in_reverse_order_and_removes_them_everywhere() {
    let nodes = cluster(2).await;
    let log = Arc::new(Mutex::new(Vec::new()));
    let group = vec![
        recorder("first", &log),
        recorder("second", &log),
        recorder("third", &log),
    ];
    nodes[0]
        .agents()
        .spawn_group("pipeline", SupervisorConfig::default(), group)
        .await
        .unwrap();
    nodes[0]
        .agents()
        .spawn(recorder("alone", &log))
        .await
        .unwrap();
    let other = nodes[1].agents();
    eventually(SOON, "four agents visible", || {
        other.with_capability("recorder").len() == 4
    })
    .await;
    nodes[0].leave().await;
    assert_eq!(
        *log.lock().unwrap(),
        [
            "terminate:alone",
            "terminate:third",
            "terminate:second",
            "terminate:first"
        ]
    );
    eventually(SOON, "left node's agents gone", || {
        other.with_capability("recorder").is_empty()
    })
    .await;
    stop(&nodes[1..]).await;
}

/// A leave asked over HTTP (`POST /leave`, as `foundation leave` sends) stops the agents as
/// `Node::leave` does, before the node leaves; before, it stopped the node under them, and
/// they ran on, terminated only if the application called `leave` afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaving_over_http_stops_agents_first_as_leave_does() {
    use foundation_engine::http::{send_json, Method};
    let nodes = common::cluster(2, |seeds| NodeSettings {
        http: seeds.is_empty().then(|| "127.0.0.1:0".parse().unwrap()),
        ..common::settings("agents-test", "agents test secret", seeds)
    })
    .await;
    let log = Arc::new(Mutex::new(Vec::new()));
    let group = vec![recorder("first", &log), recorder("second", &log)];
    nodes[0]
        .agents()
        .spawn_group("pipeline", SupervisorConfig::default(), group)
        .await
        .unwrap();
    let http = nodes[0].http_addr().expect("serves HTTP");
    let left = send_json(http, Method::POST, "/leave", None, SOON).await;
    assert_eq!(left.map(|a| a["left"].clone()).ok(), Some(true.into()));
    assert_eq!(
        *log.lock().unwrap(),
        ["terminate:second", "terminate:first"],
        "stopped by the time the leave is answered"
    );
    let other = nodes[1].agents();
    eventually(SOON, "left node's agents gone", || {
        other.with_capability("recorder").is_empty()
    })
    .await;
    nodes[0].leave().await;
    stop(&nodes[1..]).await;
}

/// An agent that takes a second to stop.
struct SlowToStop;

impl Agent for SlowToStop {
    async fn handle(&mut self, _: &Context, _: Message) -> Result<Bytes, HandlerError> {
        Ok(Bytes::new())
    }

    async fn terminate(&mut self, _: &Context, _: StopReason) {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// A leave asked over HTTP goes through when the client gives up while the agents stop: the
/// handler that stopped them was dropped with the request, so the node was left a member
/// with no agents, never leaving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leave_over_http_goes_through_when_its_client_gives_up() {
    use foundation_engine::http::{send_json, Method};
    let nodes = common::cluster(1, |seeds| NodeSettings {
        http: Some("127.0.0.1:0".parse().unwrap()),
        ..common::settings("agents-test", "agents test secret", seeds)
    })
    .await;
    nodes[0]
        .agents()
        .spawn(AgentSpec::new("slow", || SlowToStop))
        .await
        .unwrap();
    let http = nodes[0].http_addr().expect("serves HTTP");
    let impatient = send_json(
        http,
        Method::POST,
        "/leave",
        None,
        Duration::from_millis(200),
    )
    .await;
    assert!(impatient.is_err(), "{impatient:?}");
    let left = tokio::time::timeout(SOON, nodes[0].stopped()).await;
    assert!(left.is_ok(), "the node never left");
    nodes[0].leave().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_mailbox_refuses_messages_instead_of_waiting() {
    let nodes = common::cluster(1, |seeds| NodeSettings {
        agents: AgentsConfig {
            mailbox: 1,
            ..AgentsConfig::default()
        },
        ..common::settings("agents-test", "agents test secret", seeds)
    })
    .await;
    let agents = nodes[0].agents();
    agents.spawn(doubler("slow")).await.unwrap();
    // Every message keeps the handler busy for seconds: of four sent at once, one is being
    // handled, one fills the slot, and the rest find the mailbox full (whatever their order).
    let busy = agents.clone();
    let slow = tokio::spawn(async move {
        busy.request::<_, u64>("slow", &1u64, DEADLINE)
            .await
            .map(drop)
    });
    let mut outcomes = Vec::new();
    for _ in 0..3 {
        outcomes.push(agents.send("slow", &1u64).await);
    }
    outcomes.push(slow.await.unwrap());
    assert!(
        outcomes
            .iter()
            .any(|o| matches!(o, Err(DeliveryError::MailboxFull(_)))),
        "{outcomes:?}"
    );
    stop(&nodes).await;
}

fn metrics_text(node: &Node) -> String {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, node.registry()).unwrap();
    text
}

/// `GET /agents` lists every agent the node sees, its own and other nodes', with state and
/// capabilities.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_are_listed_over_http() {
    use foundation_engine::http::get_json;
    let nodes = common::cluster(2, |seeds| NodeSettings {
        http: seeds.is_empty().then(|| "127.0.0.1:0".parse().unwrap()),
        ..common::settings("agents-test", "agents test secret", seeds)
    })
    .await;
    nodes[0].agents().spawn(doubler("here")).await.unwrap();
    nodes[1].agents().spawn(doubler("there")).await.unwrap();
    let http = nodes[0].http_addr().expect("serves HTTP");
    let listed = |name: &'static str| async move {
        let answer = get_json(http, "/agents", DEADLINE).await.unwrap();
        answer["agents"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| a["name"] == name)
            .cloned()
    };
    // The remote agent's own health report reaches this node with its directory entry.
    let deadline = tokio::time::Instant::now() + SOON;
    while listed("there")
        .await
        .is_none_or(|a| a["health"] != "degraded")
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the remote agent never listed as degraded: {:?}",
            listed("there").await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let here = listed("here").await.expect("the local agent is listed");
    assert_eq!(here["state"], "running");
    assert_eq!(here["local"], true);
    assert_eq!(here["capabilities"], serde_json::json!(["math"]));
    let there = listed("there").await.expect("listed");
    assert_eq!(there["local"], false);
    assert_eq!(there["node"], nodes[1].id().to_string());
    assert_eq!(there["state"], "running");
    assert_eq!(there["health_reason"], "doubling only");
    stop(&nodes).await;
}

/// A state event is sent once this node's directory shows the state: a subscriber that looks
/// an agent up when told it runs finds it running (it once found nothing, the event having
/// gone out before the directory write).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_is_in_the_directory_when_its_running_event_arrives() {
    const AGENTS: usize = 100;
    let nodes = cluster(1).await;
    let agents = nodes[0].agents();
    let mut events = agents.events();
    let looker = agents.clone();
    let checker = tokio::spawn(async move {
        let (mut seen, mut stale) = (0, Vec::new());
        while seen < AGENTS {
            let event = events.recv().await.expect("no event lost");
            if let AgentEvent::State {
                name,
                state: AgentState::Running,
            } = event
            {
                seen += 1;
                let shown = looker.lookup(&name).map(|a| a.record.state);
                if shown != Some(AgentState::Running) {
                    stale.push(name);
                }
            }
        }
        stale
    });
    for n in 0..AGENTS {
        agents
            .spawn(doubler(&format!("d-{n}")))
            .await
            .expect("spawns");
    }
    let stale = checker.await.expect("joins");
    assert!(stale.is_empty(), "told running before shown: {stale:?}");
    stop(&nodes).await;
}

/// Reports Healthy and Degraded in turn, so every health report changes its directory entry.
struct Flipper(std::sync::atomic::AtomicBool);

impl Agent for Flipper {
    async fn handle(&mut self, _: &Context, _: Message) -> Result<Bytes, HandlerError> {
        Ok(Bytes::new())
    }

    fn health(&self) -> Health {
        if self.0.fetch_xor(true, std::sync::atomic::Ordering::Relaxed) {
            Health::Degraded("flipping".into())
        } else {
            Health::Healthy
        }
    }
}

/// A stopped agent stays out of the directory: a health report read before it stopped is
/// not written back after its entry was deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_agent_is_not_brought_back_by_a_health_report() {
    const AGENTS: usize = 30;
    const ROUNDS: usize = 20;
    let nodes = common::cluster(1, |seeds| NodeSettings {
        agents: AgentsConfig {
            health_interval: Duration::from_millis(1),
            ..AgentsConfig::default()
        },
        ..common::settings("agents-test", "agents test secret", seeds)
    })
    .await;
    let agents = nodes[0].agents();
    let mut back = Vec::new();
    for round in 0..ROUNDS {
        let names: Vec<String> = (0..AGENTS).map(|n| format!("f-{round}-{n}")).collect();
        for name in &names {
            let flipper = || Flipper(std::sync::atomic::AtomicBool::new(false));
            agents.spawn(AgentSpec::new(name, flipper)).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        for name in &names {
            agents.stop(name).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        back.extend(
            names
                .iter()
                .filter_map(|n| agents.lookup(n).map(|a| (n.clone(), a.record))),
        );
    }
    assert!(
        back.is_empty(),
        "back in the directory after stopping: {back:?}"
    );
    stop(&nodes).await;
}

/// A spawn the directory has no room for is refused before the agent runs: an agent nobody can
/// find would take messages from this node only, and stay for good. The agents keyspace takes
/// three entries here; spawns, groups and added agents past them are refused and leave nothing
/// behind, and room freed by a stop is taken again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spawn_the_directory_has_no_room_for_is_refused_and_runs_nothing() {
    let nodes = common::cluster(1, |seeds| {
        let mut settings = common::settings("agents-test", "agents test secret", seeds);
        settings.replication.keyspace_keys_max = 3;
        settings
    })
    .await;
    let agents = nodes[0].agents();
    for name in ["a", "b"] {
        agents.spawn(doubler(name)).await.unwrap();
    }
    let log = Arc::new(Mutex::new(Vec::new()));
    let pair = vec![recorder("c", &log), recorder("d", &log)];
    let group = agents
        .spawn_group("pair", SupervisorConfig::default(), pair)
        .await;
    assert!(matches!(group, Err(AgentsError::Refused(_))), "{group:?}");
    agents.spawn(doubler("c")).await.unwrap();
    let full = agents.spawn(doubler("e")).await;
    assert!(matches!(full, Err(AgentsError::Refused(_))), "{full:?}");
    let added = agents.start_child("a", doubler("f")).await;
    assert!(matches!(added, Err(AgentsError::Refused(_))), "{added:?}");
    for refused in ["d", "e", "f"] {
        assert_eq!(agents.state(refused), None, "{refused} runs unlisted");
        let sent = agents.send(refused, &2u64).await;
        assert!(sent.is_err(), "{refused} takes messages: {sent:?}");
    }
    assert_eq!(agents.local_names(), ["a", "b", "c"]);
    assert!(
        log.lock().unwrap().is_empty(),
        "a refused agent ran: {log:?}"
    );
    agents.stop("b").await.unwrap();
    eventually(SOON, "the stopped agent's entry is gone", || {
        agents.lookup("b").is_none()
    })
    .await;
    agents.spawn(doubler("e")).await.unwrap();
    let ten: u64 = agents.request("e", &5u64, DEADLINE).await.unwrap();
    assert_eq!(ten, 10);
    stop(&nodes).await;
}

/// A request's deadline is the caller's to give, and `Duration::MAX` is one: here and on
/// another node, the request is answered as any other. Its deadline once overflowed the clock
/// and panicked in the caller.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_without_a_practical_deadline_is_answered() {
    let nodes = cluster(2).await;
    nodes[1].agents().spawn(doubler("doubler")).await.unwrap();
    let (near, far) = (nodes[1].agents(), nodes[0].agents());
    eventually(SOON, "doubler visible", || far.lookup("doubler").is_some()).await;
    for agents in [near, far] {
        let request = agents.request::<_, u64>("doubler", &21u64, Duration::MAX);
        let answer = tokio::time::timeout(SOON, request).await;
        assert_eq!(answer.ok().map(Result::ok), Some(Some(42)));
    }
    stop(&nodes).await;
}

/// A request from another node waits there at most `max_request_deadline` for its agent,
/// whatever deadline it carried: a caller cannot hold the receiver's task for years.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peers_request_waits_at_most_the_receivers_cap() {
    let nodes = two_nodes_capping_requests_at(Duration::from_millis(500)).await;
    nodes[1].agents().spawn(doubler("doubler")).await.unwrap();
    let far = nodes[0].agents();
    eventually(SOON, "doubler visible", || far.lookup("doubler").is_some()).await;
    // 1 keeps the handler three seconds, past the receiver's cap of half a second.
    let request = far.request::<_, u64>("doubler", &1u64, Duration::MAX);
    let answer = tokio::time::timeout(SOON, request).await;
    assert!(
        matches!(answer, Ok(Err(DeliveryError::DeadlineExceeded))),
        "{answer:?}"
    );
    stop(&nodes).await;
}

/// `Duration::MAX` as the cap means none: a peer's request is answered (it overflowed the clock
/// and panicked the serving task, so the caller heard nothing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cap_of_duration_max_means_none() {
    let nodes = two_nodes_capping_requests_at(Duration::MAX).await;
    nodes[1].agents().spawn(doubler("doubler")).await.unwrap();
    let far = nodes[0].agents();
    eventually(SOON, "doubler visible", || far.lookup("doubler").is_some()).await;
    let answer = far.request::<_, u64>("doubler", &21u64, DEADLINE).await;
    assert_eq!(answer.ok(), Some(42));
    stop(&nodes).await;
}

/// Two nodes whose agents wait at most `cap` for a peer's request.
async fn two_nodes_capping_requests_at(cap: Duration) -> Vec<Node> {
    common::cluster(2, |seeds| NodeSettings {
        agents: AgentsConfig {
            max_request_deadline: cap,
            ..AgentsConfig::default()
        },
        ..common::settings("agents-test", "agents test secret", seeds)
    })
    .await
}
