//! Variables on real nodes over QUIC on 127.0.0.1: compare-and-set decided by a majority of
//! acceptors, one winner per version, typed refusals.

mod common;

use std::time::Duration;

use foundation_agents::cas::CasOutcome;
use foundation_agents::variable::{Policy, VarType, VarValue};
use foundation_engine::runtime::{Node, NodeSettings, VarsCallError};
use foundation_engine::vars::reseat::ReseatConfig;
use foundation_engine::vars::{Life, VarSpec, VarsError};

const SECRET: &str = "vars test secret";
const SOON: Duration = Duration::from_secs(10);

async fn cluster(n: usize) -> Vec<Node> {
    cluster_reseating(n, Some(ReseatConfig::default())).await
}

/// `n` nodes that move variables off gone acceptor lives with `reseat` (`None`: only by hand).
async fn cluster_reseating(n: usize, reseat: Option<ReseatConfig>) -> Vec<Node> {
    let settings = |seeds| NodeSettings {
        vars_reseat: reseat,
        ..common::settings("vars-test", SECRET, seeds)
    };
    common::cluster(n, settings).await
}

/// Declares "slots" (an integer in 0..=100) from the first node, with every node's life an
/// acceptor, and waits until every node has taken the declaration up.
async fn declare(nodes: &[Node]) -> VarSpec {
    let spec = VarSpec {
        ty: VarType::Int { min: 0, max: 100 },
        policy: Policy::Cas,
        initial: VarValue::Int(0),
        acceptors: nodes[0].vars().alive_lives(),
    };
    assert_eq!(spec.acceptors.len(), nodes.len());
    nodes[0]
        .vars()
        .declare("slots", spec.clone())
        .await
        .unwrap();
    for node in nodes {
        let deadline = tokio::time::Instant::now() + SOON;
        while node.vars().get("slots").is_none() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the declaration never arrived"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // Declaring the same spec again is fine; another spec for the name is a conflict.
    nodes[1]
        .vars()
        .declare("slots", spec.clone())
        .await
        .unwrap();
    let other = VarSpec {
        initial: VarValue::Int(1),
        ..spec.clone()
    };
    assert!(matches!(
        nodes[2].vars().declare("slots", other).await,
        Err(VarsCallError::Refused(VarsError::Conflict(_)))
    ));
    spec
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_writers_on_every_node_expecting_one_version_exactly_one_wins() {
    let nodes = cluster(3).await;
    declare(&nodes).await;
    let writes = nodes.iter().enumerate().map(|(i, node)| {
        let vars = node.vars();
        async move {
            let value = VarValue::Int(10 * (i as i64 + 1));
            vars.compare_and_set("slots", 0, value, Duration::from_secs(5))
                .await
        }
    });
    let outcomes = futures_join(writes).await;
    let won: Vec<_> = outcomes
        .iter()
        .enumerate()
        .filter(|(_, o)| matches!(o, Ok(CasOutcome::Won { version: 1 })))
        .collect();
    assert_eq!(won.len(), 1, "{outcomes:?}");
    let expected = VarValue::Int(10 * (won[0].0 as i64 + 1));
    for node in &nodes {
        let deadline = tokio::time::Instant::now() + SOON;
        while node.vars().get("slots") != Some((1, expected.clone())) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "a node never learned version 1"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    for node in &nodes {
        node.abort().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_writes_are_typed_errors_and_a_minority_cannot_write() {
    let nodes = cluster(3).await;
    declare(&nodes).await;
    let vars = nodes[0].vars();
    let cas = |name: &'static str, expected, value| {
        let vars = vars.clone();
        async move {
            vars.compare_and_set(name, expected, value, Duration::from_secs(1))
                .await
        }
    };
    assert!(matches!(
        cas("nope", 0, VarValue::Int(1)).await,
        Err(VarsCallError::Refused(VarsError::Unknown(_)))
    ));
    assert!(matches!(
        cas("slots", 0, VarValue::Int(101)).await,
        Err(VarsCallError::Refused(VarsError::Invalid(_)))
    ));
    assert!(matches!(
        cas("slots", 0, VarValue::Bool(true)).await,
        Err(VarsCallError::Refused(VarsError::Invalid(_)))
    ));
    assert!(matches!(
        cas("slots", 4, VarValue::Int(1)).await,
        Err(VarsCallError::Refused(VarsError::VersionMismatch {
            current: 0
        }))
    ));
    // Two of three acceptors gone: the survivor is a minority and its write fails typed.
    nodes[1].abort().await;
    nodes[2].abort().await;
    assert!(matches!(
        cas("slots", 0, VarValue::Int(5)).await,
        Ok(CasOutcome::NoMajority)
    ));
    assert_eq!(vars.get("slots"), Some((0, VarValue::Int(0))));
    nodes[0].abort().await;
}

/// Writers on one node race as writers on different nodes do: a second write of the node waits
/// for the one under way, then wins or loses the version, instead of being refused as busy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_on_one_node_expecting_one_version_race_like_any_others() {
    let nodes = cluster(3).await;
    declare(&nodes).await;
    let writes = (1..=4).map(|i| {
        let vars = nodes[0].vars();
        async move {
            vars.compare_and_set("slots", 0, VarValue::Int(i), Duration::from_secs(5))
                .await
        }
    });
    let outcomes = futures_join(writes).await;
    let won = outcomes
        .iter()
        .filter(|o| matches!(o, Ok(CasOutcome::Won { version: 1 })))
        .count();
    assert_eq!(won, 1, "{outcomes:?}");
    for outcome in &outcomes {
        let raced = matches!(
            outcome,
            Ok(CasOutcome::Won { .. } | CasOutcome::Lost { .. })
                | Err(VarsCallError::Refused(VarsError::VersionMismatch {
                    current: 1
                }))
        );
        assert!(raced, "{outcomes:?}");
    }
    for node in &nodes {
        node.abort().await;
    }
}

/// Runs the futures concurrently on the test's runtime.
async fn futures_join<F: std::future::Future + Send + 'static>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut outputs = Vec::new();
    for handle in handles {
        outputs.push(handle.await.expect("the write task ran"));
    }
    outputs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn variables_are_listed_and_written_over_http_with_typed_answers() {
    use foundation_engine::http::{get_json, send_json, HttpError, Method};
    use serde_json::json;

    let nodes = common::cluster(3, |seeds: Vec<_>| NodeSettings {
        http: seeds.is_empty().then(|| "127.0.0.1:0".parse().unwrap()),
        ..common::settings("vars-test", SECRET, seeds)
    })
    .await;
    let seed = nodes[0].clone();
    declare(&nodes).await;
    let http = seed.http_addr().expect("serves HTTP");
    let limit = Duration::from_secs(5);
    let post = |body: serde_json::Value| async move {
        send_json(http, Method::POST, "/variables/slots", Some(&body), limit).await
    };
    let status = |result: Result<serde_json::Value, HttpError>| match result {
        Err(HttpError::Status { status, .. }) => status,
        other => panic!("expected an error status, got {other:?}"),
    };

    let won = post(json!({ "expected": 0, "value": 7 })).await.unwrap();
    assert_eq!(won, json!({ "won": true, "version": 1 }));
    assert_eq!(
        status(post(json!({ "expected": 0, "value": 8 })).await),
        409
    );
    assert_eq!(
        status(post(json!({ "expected": 1, "value": 500 })).await),
        400
    );
    assert_eq!(
        status(post(json!({ "expected": 1, "value": "eight" })).await),
        400
    );
    assert_eq!(status(post(json!({ "value": 8 })).await), 400);
    let missing = send_json(
        http,
        Method::POST,
        "/variables/nope",
        Some(&json!({})),
        limit,
    )
    .await;
    assert_eq!(status(missing), 404);
    // Moving to the lives alive now, which are its acceptors already, changes nothing; a
    // target other than "alive" is refused.
    assert_eq!(status(post(json!({ "move_to": "alive" })).await), 400);
    assert_eq!(status(post(json!({ "move_to": "mars" })).await), 400);

    let all = get_json(http, "/variables", limit).await.unwrap();
    assert_eq!(all["slots"]["version"], 1);
    assert_eq!(all["slots"]["value"], 7);
    assert_eq!(all["slots"]["type"], json!({ "int": [0, 100] }));
    assert_eq!(all["slots"]["acceptors"].as_array().map(Vec::len), Some(3));
    assert_eq!(all["slots"]["acceptors_from"], 1);
    assert_eq!(status(get_json(http, "/variables/nope", limit).await), 404);
    let metrics = common::metrics_text(http).await;
    for line in [
        "foundation_vars_variables 1",
        "foundation_vars_cas_won_total 1",
        "foundation_vars_refused_total{reason=\"invalid_value\"} 0",
    ] {
        assert!(metrics.contains(line), "{line} missing from:\n{metrics}");
    }

    // An lww variable and a counter, declared and written by policy.
    let send = |method, path: &'static str, body: serde_json::Value| async move {
        send_json(http, method, path, Some(&body), limit).await
    };
    let lww = json!({ "policy": "lww", "type": { "int": [0, 10] }, "initial": 1 });
    send(Method::PUT, "/variables/mode", lww).await.unwrap();
    let written = send(Method::POST, "/variables/mode", json!({ "value": 5 })).await;
    let written = written.unwrap();
    assert_eq!(written["value"], 5);
    assert_eq!(written["history"][0]["value"], 5);
    let out_of_range = send(Method::POST, "/variables/mode", json!({ "value": 11 })).await;
    assert_eq!(status(out_of_range), 400);
    // Watched as a stream: the current value, then a change with the value before it.
    let watching = tokio::spawn(async move {
        let mut lines = Vec::new();
        let _ =
            foundation_engine::http::stream_lines(http, "/watch/variables/mode", limit, |line| {
                lines.push(line);
                lines.len() < 2
            })
            .await;
        lines
    });
    let writer = nodes[1].vars();
    let deadline = tokio::time::Instant::now() + SOON;
    while !watching.is_finished() {
        assert!(tokio::time::Instant::now() < deadline, "no change streamed");
        let _ = writer.set("mode", VarValue::Int(3)).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let lines = watching.await.unwrap();
    assert_eq!(lines[0]["kind"], "current");
    // The watch may start before or after the first write of 3 arrives: either way a change
    // names the value it replaced.
    assert_eq!(lines[1]["kind"], "changed");
    assert_eq!(lines[1]["old"], lines[0]["value"]);
    assert_eq!(lines[1]["value"], 3);
    let missing =
        foundation_engine::http::stream_lines(http, "/watch/variables/nope", limit, |_| true).await;
    assert_eq!(status(missing.map(|()| json!(null))), 404);
    // Watched by prefix: the current value of each variable under it, then changes, each
    // line naming its variable.
    let watching = tokio::spawn(async move {
        let mut lines = Vec::new();
        let path = "/watch/variables?prefix=mo";
        let _ = foundation_engine::http::stream_lines(http, path, limit, |line| {
            lines.push(line);
            lines.len() < 2
        })
        .await;
        lines
    });
    let deadline = tokio::time::Instant::now() + SOON;
    while !watching.is_finished() {
        assert!(tokio::time::Instant::now() < deadline, "no change streamed");
        let _ = writer.set("mode", VarValue::Int(4)).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let lines = watching.await.unwrap();
    assert_eq!(
        (&lines[0]["kind"], &lines[0]["name"]),
        (&json!("current"), &json!("mode"))
    );
    assert_eq!(
        (&lines[1]["kind"], &lines[1]["name"]),
        (&json!("changed"), &json!("mode"))
    );
    assert_eq!(lines[1]["value"], 4);
    let unknown = "/watch/variables?pattern=x";
    let refused = foundation_engine::http::stream_lines(http, unknown, limit, |_| true).await;
    assert_eq!(status(refused.map(|()| json!(null))), 400);
    let counter = json!({ "policy": "counter", "initial": 3 });
    send(Method::PUT, "/variables/pool", counter).await.unwrap();
    let drawn = send(Method::POST, "/variables/pool", json!({ "draw": 1 })).await;
    let drawn = drawn.unwrap();
    assert_eq!(
        (drawn["value"].clone(), drawn["rights"].clone()),
        (json!(2), json!(0))
    );
    let short = send(Method::POST, "/variables/pool", json!({ "draw": 100 })).await;
    assert_eq!(status(short), 409);
    for node in &nodes {
        node.abort().await;
    }
}

/// Waits until `check` holds on every node.
async fn on_every_node(nodes: &[Node], what: &str, check: impl Fn(&Node) -> bool) {
    let deadline = tokio::time::Instant::now() + SOON;
    while !nodes.iter().all(&check) {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A counter of `initial` units, every node's life a holder.
fn counter_spec(initial: i64, nodes: &[Node]) -> VarSpec {
    VarSpec {
        ty: VarType::Int {
            min: 0,
            max: i64::MAX,
        },
        policy: Policy::Counter,
        initial: VarValue::Int(initial),
        acceptors: nodes[0].vars().alive_lives(),
    }
}

/// Declares `name` with `spec` from the first node and waits until every node holds it.
async fn declare_spec(nodes: &[Node], name: &str, spec: VarSpec) {
    nodes[0].vars().declare(name, spec).await.unwrap();
    on_every_node(nodes, "the declaration arrived", |n| {
        n.vars().get(name).is_some()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lww_writes_show_everywhere_and_coordinated_variables_refuse_direct_writes() {
    let nodes = cluster(3).await;
    let lww = VarSpec {
        ty: VarType::Int { min: 0, max: 100 },
        policy: Policy::Lww,
        initial: VarValue::Int(0),
        acceptors: Default::default(),
    };
    declare_spec(&nodes, "mode", lww).await;
    for (writer, value) in [(1, 42), (2, 7), (0, 9)] {
        nodes[writer]
            .vars()
            .set("mode", VarValue::Int(value))
            .await
            .unwrap();
        on_every_node(&nodes, "the write shows", |n| {
            n.vars().get("mode").map(|(_, v)| v) == Some(VarValue::Int(value))
        })
        .await;
    }
    assert!(matches!(
        nodes[1].vars().set("mode", VarValue::Int(101)).await,
        Err(VarsCallError::Refused(VarsError::Invalid(_)))
    ));
    let history = nodes[2].vars().history("mode").expect("declared");
    let seen: Vec<_> = history
        .iter()
        .map(|c| (c.value.clone(), c.writer))
        .collect();
    assert_eq!(
        seen.last(),
        Some(&(VarValue::Int(9), nodes[0].vars().me())),
        "{seen:?}"
    );

    let coordinated = VarSpec {
        ty: VarType::Int { min: 0, max: 100 },
        policy: Policy::Coordinated,
        initial: VarValue::Int(0),
        acceptors: nodes[0].vars().alive_lives(),
    };
    declare_spec(&nodes, "plan", coordinated).await;
    let direct = nodes[1].vars().set("plan", VarValue::Int(1)).await;
    assert!(matches!(
        direct,
        Err(VarsCallError::Refused(VarsError::WrongPolicy { .. }))
    ));
    let cas = nodes[1]
        .vars()
        .compare_and_set("plan", 0, VarValue::Int(1), SOON)
        .await;
    assert!(matches!(
        cas,
        Err(VarsCallError::Refused(VarsError::WrongPolicy { .. }))
    ));
    for node in &nodes {
        node.abort().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_counter_draws_locally_moves_rights_on_request_and_never_overdraws() {
    let nodes = cluster(3).await;
    let counter = counter_spec(6, &nodes);
    declare_spec(&nodes, "gpu", counter).await;
    let vars = nodes[0].vars();
    vars.draw("gpu", 2).await.expect("two of its own");
    // Short now: refused, and it asks the others; a retry succeeds once rights arrive.
    assert!(matches!(
        vars.draw("gpu", 3).await,
        Err(VarsCallError::Refused(VarsError::Insufficient {
            holds: 0,
            wanted: 3
        }))
    ));
    let deadline = tokio::time::Instant::now() + SOON;
    while vars.draw("gpu", 2).await.is_err() {
        assert!(tokio::time::Instant::now() < deadline, "no rights arrived");
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    on_every_node(&nodes, "2 units left", |n| {
        n.vars().get("gpu").map(|(_, v)| v) == Some(VarValue::Int(2))
    })
    .await;
    nodes[1].vars().refill("gpu", 5).await.unwrap();
    on_every_node(&nodes, "7 units after the refill", |n| {
        n.vars().get("gpu").map(|(_, v)| v) == Some(VarValue::Int(7))
    })
    .await;
    // Nobody can draw more than the pool holds, however long it asks.
    for _ in 0..5 {
        assert!(nodes[2].vars().draw("gpu", 8).await.is_err());
        tokio::time::sleep(Duration::from_millis(120)).await;
    }
    assert!(matches!(
        nodes[2].vars().set("gpu", VarValue::Int(1)).await,
        Err(VarsCallError::Refused(VarsError::WrongPolicy { .. }))
    ));
    for node in &nodes {
        node.abort().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefix_watch_follows_every_variable_under_it_with_old_values_and_writers() {
    let nodes = cluster(2).await;
    let lww = || VarSpec {
        ty: VarType::Int { min: 0, max: 100 },
        policy: Policy::Lww,
        initial: VarValue::Int(0),
        acceptors: Default::default(),
    };
    declare_spec(&nodes, "room.a", lww()).await;
    declare_spec(&nodes, "hall.x", lww()).await;
    let mut watch = nodes[1].vars().watch_prefix("room.");
    assert_eq!(
        watch.current().keys().collect::<Vec<_>>(),
        ["room.a"],
        "only names under the prefix"
    );
    let writer = nodes[0].vars();
    writer.set("hall.x", VarValue::Int(1)).await.unwrap();
    writer.set("room.a", VarValue::Int(5)).await.unwrap();
    declare_spec(&nodes, "room.b", lww()).await;
    writer.set("room.b", VarValue::Int(6)).await.unwrap();
    let mut changes = Vec::new();
    while changes.len() < 2 {
        let change = tokio::time::timeout(SOON, watch.next())
            .await
            .expect("a change in time")
            .expect("the node runs");
        changes.push(change);
    }
    let a = changes
        .iter()
        .find(|c| c.name == "room.a")
        .expect("room.a changed");
    assert_eq!(
        (a.old.clone(), a.value.clone()),
        (Some(VarValue::Int(0)), VarValue::Int(5))
    );
    assert_eq!(a.writer, writer.me());
    let b = changes
        .iter()
        .find(|c| c.name == "room.b")
        .expect("room.b, declared later");
    assert_eq!(b.value, VarValue::Int(6));
    assert!(changes.iter().all(|c| c.name.starts_with("room.")));
    for node in &nodes {
        node.abort().await;
    }
}

/// The rights a counter's node held beyond what its holders allowed it to spend come back
/// when it dies: a majority of the holders fences the dead life and one heir takes them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_nodes_counter_rights_beyond_its_allowance_go_to_one_heir() {
    let nodes = cluster(3).await;
    let counter = counter_spec(30, &nodes);
    declare_spec(&nodes, "pool", counter).await;
    // Each holds 10 and may give up 5 from the start; the victim draws 2.
    nodes[2].vars().draw("pool", 2).await.expect("its own");
    on_every_node(&nodes, "28 units left", |n| {
        n.vars().get("pool").map(|(_, v)| v) == Some(VarValue::Int(28))
    })
    .await;
    let rights = |n: &Node| n.vars().all().get("pool").and_then(|v| v.rights);
    let before: u64 = nodes[..2].iter().filter_map(rights).sum();
    nodes[2].abort().await;
    let survivors = &nodes[..2];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let now: u64 = survivors.iter().filter_map(rights).sum();
        if now > before {
            // What the dead life was given (10) beyond what it was ever allowed: at least the
            // 5 of its first allowance, unless a raise was allowed before it died.
            assert!(
                now - before <= 10 - 2,
                "took {} of a life that held 8",
                now - before
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the dead node's rights never came back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The value is unchanged, and the survivors can spend what came back.
    for node in survivors {
        assert_eq!(
            node.vars().get("pool").map(|(_, v)| v),
            Some(VarValue::Int(28))
        );
    }
    // Dropping the dead holder from the holders is not built: a typed error says so.
    let alive = survivors[0].vars().alive_lives();
    assert!(matches!(
        survivors[0]
            .vars()
            .change_acceptors("pool", alive, SOON)
            .await,
        Err(VarsCallError::Refused(VarsError::Reconfiguration { .. }))
    ));
    let heir = survivors
        .iter()
        .max_by_key(|n| rights(n))
        .expect("two survivors");
    let all = rights(heir).expect("a counter");
    heir.vars()
        .draw("pool", all)
        .await
        .expect("every right it holds");
    for node in survivors {
        node.abort().await;
    }
}

/// A declaration shows in this node's reads as soon as `declare` returns: `PUT /variables/…`
/// reads it back at once to answer (it once answered 404 now and then for a declaration that
/// had succeeded, when it read before the driver handled the declaration's event).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declaration_shows_here_as_soon_as_declare_returns() {
    let nodes = cluster(1).await;
    let vars = nodes[0].vars();
    for n in 0..300 {
        let name = format!("mode-{n}");
        let spec = VarSpec {
            ty: VarType::Int { min: 0, max: 10 },
            policy: Policy::Lww,
            initial: VarValue::Int(1),
            acceptors: Default::default(),
        };
        vars.declare(&name, spec).await.unwrap();
        assert!(vars.all().contains_key(&name), "{name} not shown yet");
    }
}

/// A rolling restart's step: node 2 restarts (same id, a new life), the variable is moved to
/// the lives alive now, the new life takes it up, and it is written with node 1 gone too —
/// which, without the move, would leave one of the three declared lives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_the_variable_moves_to_the_new_lives_and_is_written_without_the_old() {
    // Moved by hand: re-seating off, or it would move the variable first.
    let nodes = cluster_reseating(3, None).await;
    declare(&nodes).await;
    let write = |node: &Node, expected, value| {
        let vars = node.vars();
        async move {
            vars.compare_and_set("slots", expected, VarValue::Int(value), SOON)
                .await
        }
    };
    assert_eq!(
        write(&nodes[0], 0, 7).await.ok(),
        Some(CasOutcome::Won { version: 1 })
    );
    let restarted = restart(&nodes[2], &nodes[0], None).await;
    let new = restarted.vars().me();
    let moved_to = [nodes[0].vars().me(), nodes[1].vars().me(), new];
    common::eventually(SOON, "the new life is seen alive", || {
        nodes[0].vars().alive_lives() == moved_to.into()
    })
    .await;
    let alive = nodes[0].vars().alive_lives();
    let moved = nodes[0].vars().change_acceptors("slots", alive, SOON).await;
    assert_eq!(moved.ok(), Some(CasOutcome::Won { version: 2 }));
    common::eventually(SOON, "the new life takes the variable up", || {
        restarted.vars().get("slots") == Some((2, VarValue::Int(7)))
    })
    .await;
    let held = restarted.vars().all().get("slots").cloned().expect("held");
    assert_eq!(held.acceptors, Some((3, moved_to.into())));
    nodes[1].abort().await;
    assert_eq!(
        write(&restarted, 2, 8).await.ok(),
        Some(CasOutcome::Won { version: 3 })
    );
    common::eventually(SOON, "node 0 learns version 3", || {
        nodes[0].vars().get("slots") == Some((3, VarValue::Int(8)))
    })
    .await;
    restarted.abort().await;
    nodes[0].abort().await;
}

/// Stops `node` and starts it again (same id, so a new life of it) with `reseat`, joining
/// through `seed`.
async fn restart(node: &Node, seed: &Node, reseat: Option<ReseatConfig>) -> Node {
    let old = node.vars().me();
    node.abort().await;
    let mut settings = common::settings("vars-test", SECRET, vec![seed.addr()]);
    settings.identity.id = old.node;
    settings.vars_reseat = reseat;
    let restarted = Node::start(settings).await.unwrap();
    assert!(
        restarted.vars().me().generation > old.generation,
        "a new life"
    );
    restarted
}

/// Re-seating that checks often, so a test sees a move soon after a restart.
fn quick_reseat() -> Option<ReseatConfig> {
    Some(ReseatConfig {
        every: Duration::from_millis(100),
        ..ReseatConfig::default()
    })
}

/// A rolling deploy of three acceptor nodes, in id order: nodes 2 then 1 restart one after the
/// other, each started once the previous one is seen alive and `settled` says so; node 0, the
/// lowest, stays (so it proposes every move). Returns the nodes standing after it (node 0,
/// then the new lives of 2 and 1), the variable written once.
async fn rolling_deploy<F>(reseat: Option<ReseatConfig>, settled: impl Fn(Node) -> F) -> Vec<Node>
where
    F: std::future::Future<Output = ()>,
{
    let mut nodes = cluster_reseating(3, reseat).await;
    nodes.sort_by_key(|n| n.vars().me());
    declare(&nodes).await;
    let wrote = nodes[0]
        .vars()
        .compare_and_set("slots", 0, VarValue::Int(7), SOON)
        .await;
    assert_eq!(wrote.ok(), Some(CasOutcome::Won { version: 1 }));
    let mut standing = vec![nodes[0].clone()];
    for old in [&nodes[2], &nodes[1]] {
        let restarted = restart(old, &nodes[0], reseat).await;
        let new = restarted.vars().me();
        common::eventually(SOON, "the new life is seen alive", || {
            nodes[0].vars().alive_lives().contains(&new)
        })
        .await;
        settled(restarted.clone()).await;
        standing.push(restarted);
    }
    standing
}

/// The lives of `nodes`.
fn lives(nodes: &[Node]) -> std::collections::BTreeSet<Life> {
    nodes.iter().map(|n| n.vars().me()).collect()
}

/// Nothing but restarts: each new life is re-seated in its earlier life's place, takes the
/// variable up, and after two of three acceptor nodes restarted it is still written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_of_two_of_three_acceptor_nodes_moves_the_variable_on_its_own() {
    let standing = rolling_deploy(quick_reseat(), |restarted| async move {
        common::eventually(SOON, "the new life takes the variable up", || {
            restarted.vars().get("slots").is_some()
        })
        .await;
    })
    .await;
    let (version, _) = standing[0].vars().get("slots").expect("held");
    let held = standing[0]
        .vars()
        .all()
        .get("slots")
        .cloned()
        .expect("held");
    assert_eq!(held.acceptors.map(|a| a.1), Some(lives(&standing)));
    let wrote = standing[2]
        .vars()
        .compare_and_set("slots", version, VarValue::Int(8), SOON)
        .await;
    assert_eq!(
        wrote.ok(),
        Some(CasOutcome::Won {
            version: version + 1
        })
    );
    let moves = |n: &Node| common::metric(n, "foundation_vars_reseated_total");
    common::eventually(SOON, "the lowest acceptor counts both moves", || {
        moves(&standing[0]) == 2.0
    })
    .await;
    assert_eq!(
        moves(&standing[1]) + moves(&standing[2]),
        0.0,
        "one proposer"
    );
    for node in standing {
        node.abort().await;
    }
}

/// The same deploy with re-seating off: the variable stays with the old lives, one of which is
/// left, and no write is decided any more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_re_seating_the_same_rolling_restart_leaves_the_variable_unwritable() {
    let standing = rolling_deploy(None, |_| async {
        // A deploy's pause between nodes, ten times what re-seating above needs to move.
        tokio::time::sleep(Duration::from_secs(1)).await;
    })
    .await;
    assert_eq!(standing[1].vars().get("slots"), None, "never taken up");
    let wrote = standing[0]
        .vars()
        .compare_and_set("slots", 1, VarValue::Int(8), Duration::from_secs(1))
        .await;
    assert_eq!(wrote.ok(), Some(CasOutcome::NoMajority));
    for node in standing {
        node.abort().await;
    }
}
