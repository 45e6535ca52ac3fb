//! The operator's side of real `foundation` processes on loopback: commands that find the local
//! node without being told its address, signals that make a node leave gracefully, and logs
//! fit for a file. Nodes use local discovery only (never mDNS), in a directory of the test's.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{eventually, get, scratch_dir, start, state_of, NodeProcess, BINARY};

/// Generous: these wait for states, they do not measure anything.
const PATIENCE: Duration = Duration::from_secs(30);

/// Runs `foundation ARGS` as an operator on this machine would: same runtime directory and
/// cluster as the nodes, nothing else configured.
fn foundation(runtime_dir: &Path, cluster: Option<&str>, args: &[&str]) -> Output {
    let mut command = Command::new(BINARY);
    command
        .args(args)
        .env_clear()
        .env("XDG_RUNTIME_DIR", runtime_dir)
        .env("FOUNDATION_DISCOVERY", "local");
    if let Some(cluster) = cluster {
        command.env("FOUNDATION_CLUSTER", cluster);
    }
    command.output().expect("foundation binary runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The advertisement local discovery keeps for a node while it runs.
fn discovery_file(runtime_dir: &Path, cluster: &str, id: &str) -> PathBuf {
    runtime_dir
        .join("foundation")
        .join(cluster)
        .join(format!("{id}.json"))
}

fn send_signal(node: &NodeProcess, signal: &str) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &node.child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -{signal} failed");
}

/// Waits for the process to exit and returns its exit code.
fn wait_for_exit(node: &mut NodeProcess, what: &str) -> Option<i32> {
    let start = Instant::now();
    loop {
        if let Some(status) = node.child.try_wait().expect("try_wait") {
            return status.code();
        }
        assert!(
            start.elapsed() < PATIENCE,
            "not within {PATIENCE:?}: {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn members_without_flags_finds_the_local_node_of_the_cluster() {
    let dir = scratch_dir("op-find");
    let cluster = format!("find-{}", std::process::id());
    let a = start(&dir, &cluster, "a", None);

    let found = foundation(&dir, Some(&cluster), &["members"]);
    assert!(found.status.success(), "{}", stderr(&found));
    let table = stdout(&found);
    assert!(
        table
            .lines()
            .any(|l| l.contains(&a.id) && l.contains("(this node)")),
        "lists the node it found:\n{table}"
    );

    // --cluster says which cluster's node, as for `foundation node`.
    let by_flag = foundation(&dir, None, &["members", "--cluster", &cluster, "--json"]);
    assert!(by_flag.status.success(), "{}", stderr(&by_flag));
    let json: serde_json::Value = serde_json::from_slice(&by_flag.stdout).expect("JSON");
    assert_eq!(json["self"]["id"], a.id.as_str());

    // config and services find it the same way.
    let set = foundation(&dir, Some(&cluster), &["config", "set", "op.k", "42"]);
    assert!(set.status.success(), "{}", stderr(&set));
    let read = foundation(&dir, Some(&cluster), &["config", "get", "op.k"]);
    assert_eq!(stdout(&read).trim(), "42", "{}", stderr(&read));
    assert_eq!(get(a.http, "/config/op.k"), Some(serde_json::json!(42)));
    assert_eq!(
        get(a.http, "/config/op.missing"),
        None,
        "404 for a missing key"
    );
    let missing = foundation(&dir, Some(&cluster), &["config", "get", "op.missing"]);
    assert!(
        stderr(&missing).contains("no key \"op.missing\""),
        "{}",
        stderr(&missing)
    );
    let services = foundation(&dir, Some(&cluster), &["services"]);
    assert!(services.status.success(), "{}", stderr(&services));

    // The address as the node prints it, with or without the scheme.
    for form in [format!("http://{}/", a.http), a.http.to_string()] {
        let given = foundation(
            &dir,
            Some("some-other-cluster"),
            &["members", "--node", &form],
        );
        assert!(given.status.success(), "--node {form}: {}", stderr(&given));
        assert!(stdout(&given).contains(&a.id));
    }
    drop(a);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A member's name is whatever that member set: `foundation members` shows an escape sequence
/// and a newline in one escaped, on that member's own row, instead of writing them to the
/// operator's terminal.
#[test]
fn a_name_with_control_characters_is_shown_escaped() {
    let dir = scratch_dir("op-escape");
    let cluster = format!("escape-{}", std::process::id());
    let a = start(&dir, &cluster, "a", None);
    let odd = start(&dir, &cluster, "odd\u{1b}[2J\nname", None);
    eventually(PATIENCE, "a sees the odd one alive", || {
        state_of(&a, &odd.id).as_deref() == Some("alive")
    });

    let listed = foundation(&dir, None, &["members", "--node", &a.http.to_string()]);
    assert!(listed.status.success(), "{}", stderr(&listed));
    let table = stdout(&listed);
    assert!(
        !table.contains('\u{1b}'),
        "a raw escape reached the terminal:\n{table}"
    );
    let row = table
        .lines()
        .find(|l| l.contains(&odd.id))
        .expect("its row");
    assert!(row.ends_with(r"odd\u{1b}[2J\nname"), "{row}");

    // `foundation node` prints its peers' events under their names too.
    let mut event = None;
    eventually(PATIENCE, "a prints the odd one's event", || {
        let lines = a.output.lock().unwrap();
        event = lines.try_iter().find(|l| l.contains("odd"));
        event.is_some()
    });
    let event = event.unwrap();
    assert!(event.ends_with(r"odd\u{1b}[2J\nname"), "{event:?}");
    drop((a, odd));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn without_a_node_or_with_a_bad_address_the_error_says_how_to_fix_it() {
    let dir = scratch_dir("op-none");
    let missing = foundation(&dir, Some("nobody-runs-this"), &["members"]);
    assert!(!missing.status.success());
    let message = stderr(&missing);
    assert!(
        message.contains("no running node of cluster \"nobody-runs-this\"")
            && message.contains("foundation node")
            && message.contains("--node"),
        "says what is missing and how to fix it: {message}"
    );
    assert_eq!(message.trim().lines().count(), 1, "one line: {message}");

    let bad = foundation(&dir, None, &["members", "--node", "not-an-address"]);
    assert!(!bad.status.success());
    let message = stderr(&bad);
    assert!(
        message.contains("HOST:PORT") && message.contains("not-an-address"),
        "{message}"
    );
    let https = foundation(
        &dir,
        None,
        &["config", "get", "--node", "https://127.0.0.1:7401"],
    );
    assert!(!https.status.success());
    assert!(stderr(&https).contains("plain HTTP"), "{}", stderr(&https));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A configuration file names the cluster: when it cannot be read or parsed the command fails
/// and names it, rather than reaching the node of the cluster it would guess without it (here
/// the one FOUNDATION_CLUSTER names). A file that parses but would not start a node (production
/// without a secret, which an operator's shell need not hold) still names the cluster.
#[test]
fn a_config_file_that_cannot_be_read_is_an_error_not_another_clusters_node() {
    let dir = scratch_dir("op-config");
    let cluster = format!("config-{}", std::process::id());
    let a = start(&dir, &cluster, "a", None);
    let missing = dir.join("missing.toml");
    let typo = dir.join("typo.toml");
    std::fs::write(&typo, format!("clustr = \"{cluster}\"\n")).unwrap();
    for file in [&missing, &typo] {
        let file = file.to_str().unwrap();
        let run = foundation(&dir, Some(&cluster), &["members", "--config", file]);
        assert!(
            !run.status.success(),
            "{file}: reached a node:\n{}",
            stdout(&run)
        );
        assert!(stderr(&run).contains(file), "{}", stderr(&run));
    }

    let production = dir.join("production.toml");
    let text = format!("cluster = \"{cluster}\"\nprofile = \"production\"\n");
    std::fs::write(&production, text).unwrap();
    let production = production.to_str().unwrap();
    let found = foundation(&dir, None, &["members", "--json", "--config", production]);
    assert!(found.status.success(), "{}", stderr(&found));
    let json: serde_json::Value = serde_json::from_slice(&found.stdout).expect("JSON");
    assert_eq!(json["self"]["id"], a.id.as_str());
    drop(a);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sigterm_makes_a_node_leave_gracefully_and_withdraw_its_discovery_file() {
    let dir = scratch_dir("op-term");
    let cluster = format!("term-{}", std::process::id());
    let a = start(&dir, &cluster, "a", None);
    let mut b = start(&dir, &cluster, "b", None);
    eventually(PATIENCE, "a and b see each other alive", || {
        state_of(&a, &b.id).as_deref() == Some("alive")
            && state_of(&b, &a.id).as_deref() == Some("alive")
    });
    let b_file = discovery_file(&dir, &cluster, &b.id);
    assert!(
        b_file.exists(),
        "b advertises itself in {}",
        b_file.display()
    );

    send_signal(&b, "TERM");
    let code = wait_for_exit(&mut b, "b exits after SIGTERM");
    assert_eq!(code, Some(0), "a graceful leave exits 0");
    eventually(PATIENCE, "a records b as left, not failed", || {
        state_of(&a, &b.id).as_deref() == Some("left")
    });
    assert!(!b_file.exists(), "b's discovery file is removed");
    drop(a);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sigint_makes_a_node_leave_gracefully_too() {
    let dir = scratch_dir("op-int");
    let cluster = format!("int-{}", std::process::id());
    let a = start(&dir, &cluster, "a", None);
    let mut b = start(&dir, &cluster, "b", None);
    eventually(PATIENCE, "a sees b alive", || {
        state_of(&a, &b.id).as_deref() == Some("alive")
    });
    send_signal(&b, "INT");
    assert_eq!(wait_for_exit(&mut b, "b exits after SIGINT"), Some(0));
    eventually(PATIENCE, "a records b as left", || {
        state_of(&a, &b.id).as_deref() == Some("left")
    });
    assert!(!discovery_file(&dir, &cluster, &b.id).exists());
    drop(a);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn foundation_leave_makes_a_running_node_leave_and_refuses_to_guess_which() {
    let dir = scratch_dir("op-leave");
    let cluster = format!("leave-{}", std::process::id());
    let a = start(&dir, &cluster, "a", None);
    let mut b = start(&dir, &cluster, "b", None);
    eventually(PATIENCE, "a sees b alive", || {
        state_of(&a, &b.id).as_deref() == Some("alive")
    });

    let ambiguous = foundation(&dir, Some(&cluster), &["leave"]);
    assert!(!ambiguous.status.success(), "two local nodes: which one?");
    let message = stderr(&ambiguous);
    assert!(
        message.contains("2 nodes") && message.contains("--node") && message.contains(&b.id),
        "{message}"
    );
    assert_eq!(state_of(&a, &b.id).as_deref(), Some("alive"), "nobody left");

    let left = foundation(
        &dir,
        None,
        &["leave", "--node", &format!("http://{}/", b.http)],
    );
    assert!(left.status.success(), "{}", stderr(&left));
    assert!(stdout(&left).contains(&b.id), "{}", stdout(&left));
    assert_eq!(wait_for_exit(&mut b, "b's process exits"), Some(0));
    eventually(PATIENCE, "a records b as left", || {
        state_of(&a, &b.id).as_deref() == Some("left")
    });
    assert!(!discovery_file(&dir, &cluster, &b.id).exists());

    // One node left: no need to say which.
    let mut a = a;
    let last = foundation(&dir, Some(&cluster), &["leave"]);
    assert!(last.status.success(), "{}", stderr(&last));
    assert_eq!(wait_for_exit(&mut a, "a's process exits"), Some(0));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn logs_into_a_file_have_timestamps_and_no_colour_and_the_discovery_choice_is_printed() {
    let dir = scratch_dir("op-logs");
    let cluster = format!("logs-{}", std::process::id());
    let log_path = dir.join("node.log");
    let out_path = dir.join("node.out");
    let mut child = Command::new(BINARY)
        .args(["node", "--name", "logged"])
        .env_clear()
        .env("XDG_RUNTIME_DIR", &dir)
        .env("FOUNDATION_CLUSTER", &cluster)
        .env("FOUNDATION_DISCOVERY", "local")
        .env("FOUNDATION_LOG", "info")
        .stdout(std::fs::File::create(&out_path).expect("out file"))
        .stderr(std::fs::File::create(&log_path).expect("log file"))
        .stdin(Stdio::null())
        .spawn()
        .expect("foundation binary runs");
    let read = |path: &Path| {
        let mut text = String::new();
        if let Ok(mut file) = std::fs::File::open(path) {
            let _ = file.read_to_string(&mut text);
        }
        text
    };
    eventually(PATIENCE, "the node prints its HTTP address", || {
        read(&out_path).contains("members  foundation members")
    });
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let start = Instant::now();
    while child.try_wait().expect("try_wait").is_none() {
        assert!(start.elapsed() < PATIENCE, "the node exits after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }

    let out = read(&out_path);
    // (What `auto` chose and why is checked by a unit test: here it would start mDNS.)
    let local_dir = dir.join("foundation").join(&cluster);
    assert!(
        out.lines().any(|l| l.starts_with("discover local:")
            && l.contains(&local_dir.display().to_string())
            && l.ends_with("(configured)")),
        "the discovery choice and where it came from are printed:\n{out}"
    );
    assert!(out.contains("SIGTERM: leaving the cluster"), "{out}");
    let log = read(&log_path);
    assert!(!log.is_empty(), "FOUNDATION_LOG=info logs something");
    assert!(!log.contains('\u{1b}'), "no colour codes in a file:\n{log}");
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        assert!(
            starts_with_timestamp(line),
            "line without a timestamp: {line}"
        );
    }
    for line in out
        .lines()
        .filter(|l| l.contains("leaving") || l.ends_with(" left"))
    {
        assert!(
            starts_with_timestamp(line),
            "event without a timestamp: {line}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `2026-01-02T03:04:05.678901Z …`
fn starts_with_timestamp(line: &str) -> bool {
    let b = line.as_bytes();
    b.len() > 20
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && line
            .split_whitespace()
            .next()
            .is_some_and(|t| t.ends_with('Z'))
}

#[test]
fn a_mistyped_command_gets_a_suggestion_and_help_shows_examples() {
    let dir = scratch_dir("op-help");
    let typo = foundation(&dir, None, &["memebrs"]);
    assert_eq!(typo.status.code(), Some(2));
    assert!(stderr(&typo).contains("'members'"), "{}", stderr(&typo));
    let nested = foundation(&dir, None, &["config", "gte", "k"]);
    assert!(stderr(&nested).contains("'get'"), "{}", stderr(&nested));
    let flag = foundation(&dir, None, &["members", "--nod", "127.0.0.1:1"]);
    assert!(stderr(&flag).contains("'--node'"), "{}", stderr(&flag));
    for command in [
        &["--help"][..],
        &["members", "--help"],
        &["leave", "--help"],
        &["node", "--help"],
        &["force-leave", "--help"],
        &["publish", "--help"],
        &["subscribe", "--help"],
        &["call", "--help"],
        &["register", "--help"],
        &["deregister", "--help"],
        &["monitor", "--help"],
    ] {
        let help = foundation(&dir, None, command);
        assert!(help.status.success());
        assert!(
            stdout(&help).contains("Examples:"),
            "{command:?}: {}",
            stdout(&help)
        );
    }
    assert!(stdout(&foundation(&dir, None, &["--help"])).contains("FOUNDATION_LOG"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Nodes of `cluster` that never move a variable on their own (re-seating off), so only the
/// operator's `foundation vars move` does.
fn start_unseated(dir: &Path, cluster: &str, name: &str) -> NodeProcess {
    common::start_with(dir, cluster, name, None, &[], &RESEAT_OFF)
}

/// Automatic re-seating off, so only a move by hand changes a variable's acceptors.
const RESEAT_OFF: [(&str, &str); 1] = [("FOUNDATION_VARS_RESEAT_AFTER", "off")];

/// The node ids of the acceptors `node` shows for variable `name`.
fn acceptor_ids(node: &NodeProcess, name: &str) -> Vec<String> {
    let state = get(node.http, &format!("/variables/{name}")).unwrap_or_default();
    let acceptors = state["acceptors"].as_array().cloned().unwrap_or_default();
    let ids = acceptors.iter().filter_map(|l| l["node"].as_str());
    ids.map(str::to_owned).collect()
}

/// `foundation vars move NAME --to alive`: a `cas` variable declared on three nodes is moved
/// by hand, after one of them is killed for good and a new node joins, to the lives alive now;
/// another to the same lives named in a list (`--to a,<start of b's id>,d`), and a list naming
/// the killed node is refused. Then a second original node is killed: a write of each moved
/// variable still wins (this node and the new one are a majority of its acceptors), while one
/// declared alongside them and left on the old lives has no majority. A counter, an `lww` variable and an unknown name are
/// refused with one line saying why.
#[test]
fn vars_move_hands_a_variable_to_the_alive_lives_from_the_command_line() {
    let dir = scratch_dir("op-vars-move");
    let cluster = format!("vars-move-{}", std::process::id());
    let [a, mut b, mut c] = three_nodes_with(&dir, &cluster, &[], &RESEAT_OFF);
    let node = format!("{}", a.http);
    let vars = |args: &[&str]| {
        let mut all = vec!["vars", "--node", node.as_str()];
        all.extend_from_slice(args);
        foundation(&dir, Some(&cluster), &all)
    };
    for name in ["seats", "stay", "named"] {
        let declared = vars(&[
            "declare",
            name,
            "--type",
            r#"{"int": [0, 8]}"#,
            "--initial",
            "0",
        ]);
        assert!(declared.status.success(), "{}", stderr(&declared));
    }
    eventually(PATIENCE, "the declarations reach b and c", || {
        let held = |n: &&NodeProcess| ["seats", "stay", "named"].map(|v| acceptor_ids(n, v).len());
        [&b, &c].iter().all(|n| held(n) == [3; 3])
    });

    c.kill();
    let d = start_unseated(&dir, &cluster, "d");
    eventually(PATIENCE, "a sees c gone and d alive", || {
        state_of(&a, &c.id).as_deref() != Some("alive")
            && state_of(&a, &d.id).as_deref() == Some("alive")
    });
    let moved = vars(&["move", "seats", "--to", "alive"]);
    assert!(moved.status.success(), "{}", stderr(&moved));
    assert!(
        stdout(&moved).contains("\"won\": true"),
        "{}",
        stdout(&moved)
    );
    let mut expected = vec![a.id.clone(), b.id.clone(), d.id.clone()];
    expected.sort();
    let mut now = acceptor_ids(&a, "seats");
    now.sort();
    assert_eq!(now, expected, "seats moved to a, b and d");
    eventually(PATIENCE, "d takes the moved variable up", || {
        acceptor_ids(&d, "seats").contains(&d.id)
    });
    // The same by a list: a and d by name, b by the start of its id.
    let listed = format!("a,{},d", &b.id[..8]);
    let moved = vars(&["move", "named", "--to", &listed]);
    assert!(
        stdout(&moved).contains("\"won\": true"),
        "{}",
        stderr(&moved)
    );
    let mut now = acceptor_ids(&a, "named");
    now.sort();
    assert_eq!(now, expected, "named moved to a, b and d");
    let refused = vars(&["move", "named", "--to", "a,c"]);
    assert!(!refused.status.success(), "{}", stdout(&refused));
    assert!(
        stderr(&refused).contains("\"c\" is not the name or id of a member alive here"),
        "{}",
        stderr(&refused)
    );

    b.kill();
    for name in ["seats", "named"] {
        let won = vars(&["set", name, "5", "--expected", "1"]);
        assert!(won.status.success(), "{}", stderr(&won));
        assert!(stdout(&won).contains("\"won\": true"), "{}", stdout(&won));
    }
    let stuck = vars(&["set", "stay", "5", "--expected", "0"]);
    assert!(!stuck.status.success());
    assert!(stderr(&stuck).contains("no majority"), "{}", stderr(&stuck));

    let counter = vars(&["declare", "pool", "--policy", "counter", "--initial", "3"]);
    assert!(counter.status.success(), "{}", stderr(&counter));
    let lww = [
        "declare",
        "mode",
        "--policy",
        "lww",
        "--type",
        r#"{"int": [0, 9]}"#,
    ];
    let lww = vars(&[&lww[..], &["--initial", "1"]].concat());
    assert!(lww.status.success(), "{}", stderr(&lww));
    for (name, why) in [
        ("pool", "a counter's holders carry escrowed rights"),
        ("mode", "an lww variable has no acceptors"),
        ("nope", "no variable \"nope\""),
    ] {
        let refused = vars(&["move", name, "--to", "alive"]);
        assert!(!refused.status.success(), "{}", stdout(&refused));
        let line = stderr(&refused);
        assert!(
            line.contains(why) && line.trim().lines().count() == 1,
            "{line}"
        );
    }

    let help = foundation(&dir, None, &["vars", "move", "--help"]);
    assert!(help.status.success(), "{}", stderr(&help));
    for part in ["--to <TO>", "alive", "majority", "--timeout-ms"] {
        assert!(stdout(&help).contains(part), "{part}: {}", stdout(&help));
    }
    drop((a, d));
    let _ = std::fs::remove_dir_all(&dir);
}

/// `foundation vars`: declare a variable through one node of three, see every node take the
/// declaration up, win a compare-and-set, lose the next one that expects the old version, and
/// get typed refusals for a bad value and an unknown variable.
#[test]
fn vars_are_declared_set_and_refused_from_the_command_line() {
    let dir = scratch_dir("op-vars");
    let cluster = format!("vars-{}", std::process::id());
    let [a, b, c] = three_nodes(&dir, &cluster, &[]);
    let node = format!("{}", a.http);
    let vars = |args: &[&str]| {
        let mut all = vec!["vars", "--node", node.as_str()];
        all.extend_from_slice(args);
        foundation(&dir, Some(&cluster), &all)
    };
    let declared = vars(&[
        "declare",
        "gpu.slots",
        "--type",
        r#"{"int": [0, 8]}"#,
        "--initial",
        "8",
    ]);
    assert!(declared.status.success(), "{}", stderr(&declared));
    for other in [&b, &c] {
        eventually(PATIENCE, "the declaration reaches every acceptor", || {
            get(other.http, "/variables/gpu.slots").is_some()
        });
    }
    let won = vars(&["set", "gpu.slots", "7", "--expected", "0"]);
    assert!(won.status.success(), "{}", stderr(&won));
    assert!(stdout(&won).contains("\"won\": true"), "{}", stdout(&won));
    let stale = vars(&["set", "gpu.slots", "6", "--expected", "0"]);
    assert!(!stale.status.success());
    assert!(
        stderr(&stale).contains("version mismatch"),
        "{}",
        stderr(&stale)
    );
    let out_of_range = vars(&["set", "gpu.slots", "9", "--expected", "1"]);
    assert!(
        stderr(&out_of_range).contains("outside"),
        "{}",
        stderr(&out_of_range)
    );
    let unknown = vars(&["get", "nope"]);
    assert!(
        stderr(&unknown).contains("no variable"),
        "{}",
        stderr(&unknown)
    );
    eventually(PATIENCE, "every node learns version 1", || {
        [&a, &b, &c].iter().all(|n| {
            get(n.http, "/variables/gpu.slots")
                .is_some_and(|v| v["version"] == 1 && v["value"] == 7)
        })
    });

    // An lww variable written through one node and watched through another; a counter drawn
    // from until this node's rights run out.
    let on_b = format!("{}", b.http);
    let declared = vars(&[
        "declare",
        "mode",
        "--policy",
        "lww",
        "--type",
        r#"{"int": [0, 9]}"#,
        "--initial",
        "1",
    ]);
    assert!(declared.status.success(), "{}", stderr(&declared));
    eventually(PATIENCE, "the lww declaration reaches b", || {
        get(b.http, "/variables/mode").is_some()
    });
    let written = vars(&["set", "mode", "4"]);
    assert!(written.status.success(), "{}", stderr(&written));
    let watched = foundation(
        &dir,
        Some(&cluster),
        &["vars", "--node", &on_b, "watch", "mode", "--count", "1"],
    );
    assert!(watched.status.success(), "{}", stderr(&watched));
    assert!(
        stdout(&watched).contains("value 4 (current)"),
        "{}",
        stdout(&watched)
    );
    // By prefix: each line names its variable.
    let by_prefix = foundation(
        &dir,
        Some(&cluster),
        &[
            "vars", "--node", &on_b, "watch", "--prefix", "mode", "--count", "1",
        ],
    );
    assert!(by_prefix.status.success(), "{}", stderr(&by_prefix));
    assert!(
        stdout(&by_prefix).contains("mode version") && stdout(&by_prefix).contains("(current)"),
        "{}",
        stdout(&by_prefix)
    );
    let declared = vars(&["declare", "budget", "--policy", "counter", "--initial", "3"]);
    assert!(declared.status.success(), "{}", stderr(&declared));
    let drawn = vars(&["draw", "budget", "1"]);
    assert!(
        stdout(&drawn).contains("\"value\": 2"),
        "{}",
        stderr(&drawn)
    );
    let short = vars(&["draw", "budget", "5"]);
    assert!(
        stderr(&short).contains("cannot draw 5"),
        "{}",
        stderr(&short)
    );
    drop((a, b, c));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A node started on a data directory keeps its id across restarts: a restart is the same
/// member coming back, not a new one.
#[test]
fn a_node_on_a_data_directory_keeps_its_id_across_restarts() {
    let dir = scratch_dir("op-id");
    let cluster = format!("id-{}", std::process::id());
    let data = dir.join("data");
    let args = [std::ffi::OsStr::new("--data-dir"), data.as_os_str()];
    let mut first = common::start_with(&dir, &cluster, "a", None, &args, &[]);
    let id = first.id.clone();
    send_signal(&first, "TERM");
    wait_for_exit(&mut first, "the first life");
    let stored = std::fs::read_to_string(data.join("node-id")).expect("the id is kept");
    assert_eq!(stored.trim(), id.trim());
    let second = common::start_with(&dir, &cluster, "a", None, &args, &[]);
    assert_eq!(second.id, id, "the restarted node is the same member");
    drop(second);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Three nodes that see each other alive.
fn three_nodes(dir: &Path, cluster: &str, args: &[&std::ffi::OsStr]) -> [NodeProcess; 3] {
    three_nodes_with(dir, cluster, args, &[])
}

/// [`three_nodes`] with `FOUNDATION_*` variables.
fn three_nodes_with(
    dir: &Path,
    cluster: &str,
    args: &[&std::ffi::OsStr],
    env: &[(&str, &str)],
) -> [NodeProcess; 3] {
    let nodes = ["a", "b", "c"].map(|name| common::start_with(dir, cluster, name, None, args, env));
    for observer in &nodes {
        for other in &nodes {
            if observer.id != other.id {
                eventually(PATIENCE, "the three nodes see each other", || {
                    state_of(observer, &other.id).as_deref() == Some("alive")
                });
            }
        }
    }
    nodes
}

/// A `foundation` command that runs until stopped (subscribe, monitor), its stdout lines
/// arriving on a channel. Killed when dropped.
struct Follower {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Follower {
    fn start(runtime_dir: &Path, args: &[&str]) -> Self {
        Self::start_in(runtime_dir, None, args)
    }

    /// As [`start`](Self::start), finding the node of `cluster` as an operator would.
    fn start_in(runtime_dir: &Path, cluster: Option<&str>, args: &[&str]) -> Self {
        use std::io::BufRead;
        let mut command = Command::new(BINARY);
        command
            .args(args)
            .env_clear()
            .env("XDG_RUNTIME_DIR", runtime_dir)
            .env("FOUNDATION_DISCOVERY", "local");
        if let Some(cluster) = cluster {
            command.env("FOUNDATION_CLUSTER", cluster);
        }
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .stdin(Stdio::null())
            .spawn()
            .expect("foundation binary runs");
        let stdout = child.stdout.take().expect("piped");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                let _ = tx.send(line);
            }
        });
        Self { child, lines }
    }

    /// The first line, within PATIENCE, for which `wanted` holds; fails the test otherwise.
    fn line_where(&self, what: &str, wanted: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        let mut seen = Vec::new();
        while start.elapsed() < PATIENCE {
            match self.lines.recv_timeout(Duration::from_millis(200)) {
                Ok(line) if wanted(&line) => return line,
                Ok(line) => seen.push(line),
                Err(_) => {}
            }
        }
        panic!(
            "no line {what} within {PATIENCE:?}; saw:\n{}",
            seen.join("\n")
        );
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A node configuration file in `dir` holding `toml`.
fn config_file(dir: &Path, toml: &str) -> PathBuf {
    let path = dir.join("node.toml");
    std::fs::write(&path, toml).expect("config file");
    path
}

fn member_ids(node: &NodeProcess) -> Vec<String> {
    common::members(node)
        .iter()
        .filter_map(|m| m["id"].as_str().map(str::to_owned))
        .collect()
}

/// With `reap_after = "3s"`, a killed member is listed failed, then removed from every table;
/// a node that joins afterwards never lists it; the node restarted with its id is the same
/// member again, alive.
#[test]
fn failed_members_are_reaped_from_every_table_and_come_back_as_the_same_member() {
    let dir = scratch_dir("op-reap");
    let cluster = format!("reap-{}", std::process::id());
    let config = config_file(&dir, "[membership]\nreap_after = \"3s\"\n");
    let args = [std::ffi::OsStr::new("--config"), config.as_os_str()];
    let [a, b, mut c] = three_nodes(&dir, &cluster, &args);
    let c_id = c.id.clone();
    c.kill();
    eventually(PATIENCE, "a and b list c failed, then remove it", || {
        [&a, &b].iter().all(|n| !member_ids(n).contains(&c_id))
    });
    // The transport lets go of c's record with it, not forget_peers_after (10 min) later.
    let forgotten = "foundation_transport_peers_forgotten_total";
    eventually(PATIENCE, "a and b forget c's peer record", || {
        [&a, &b]
            .iter()
            .all(|n| common::metric(n.http, forgotten) == Some(1.0))
    });
    let d = common::start_with(&dir, &cluster, "d", None, &args, &[]);
    eventually(PATIENCE, "d joins and sees a and b", || {
        state_of(&d, &a.id).as_deref() == Some("alive")
            && state_of(&d, &b.id).as_deref() == Some("alive")
    });
    assert!(
        !member_ids(&d).contains(&c_id),
        "d never lists the reaped c"
    );

    let c = common::start_with(&dir, &cluster, "c", Some(&c_id), &args, &[]);
    assert_eq!(c.id, c_id);
    eventually(
        PATIENCE,
        "every node lists c alive again, under its id",
        || {
            [&a, &b, &d]
                .iter()
                .all(|n| state_of(n, &c_id).as_deref() == Some("alive"))
        },
    );
    drop((a, b, c, d));
    let _ = std::fs::remove_dir_all(&dir);
}

/// `foundation force-leave` removes a failed member from every live node's table at once
/// (the default reap interval is 15 minutes), and refuses an alive member or a bad id clearly.
#[test]
fn force_leave_removes_a_failed_member_from_every_table_now() {
    let dir = scratch_dir("op-force");
    let cluster = format!("force-{}", std::process::id());
    let [a, b, mut c] = three_nodes(&dir, &cluster, &[]);
    let at_a = format!("{}", a.http);
    let force = |id: &str| foundation(&dir, None, &["force-leave", id, "--node", &at_a]);

    let alive = force(&b.id);
    assert!(!alive.status.success());
    assert!(stderr(&alive).contains("is alive"), "{}", stderr(&alive));
    let bad = force("not-an-id");
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("not a node id"), "{}", stderr(&bad));

    let c_id = c.id.clone();
    c.kill();
    eventually(PATIENCE, "a and b list c failed", || {
        [&a, &b]
            .iter()
            .all(|n| state_of(n, &c_id).as_deref() == Some("failed"))
    });
    // c's host (this one) answered datagrams to its closed port: at least one of a and b
    // declared it on that evidence rather than after a suspicion timeout.
    if cfg!(target_os = "linux") {
        let closed = "foundation_membership_closed_port_declarations_total";
        eventually(PATIENCE, closed, || {
            let declared: f64 = [&a, &b]
                .iter()
                .filter_map(|n| common::metric(n.http, closed))
                .sum();
            declared >= 1.0
        });
    }
    let removed = force(&c_id);
    assert!(removed.status.success(), "{}", stderr(&removed));
    assert!(stdout(&removed).contains(&c_id), "{}", stdout(&removed));
    assert!(!member_ids(&a).contains(&c_id), "gone from a at once");
    eventually(PATIENCE, "b was told and removed c too", || {
        !member_ids(&b).contains(&c_id)
    });
    let again = force(&c_id);
    assert!(stderr(&again).contains("no member"), "{}", stderr(&again));
    drop((a, b));
    let _ = std::fs::remove_dir_all(&dir);
}

/// `foundation subscribe` on one node prints, with a timestamp, a message `foundation publish`
/// sent through another; a malformed topic is refused with the reason.
#[test]
fn a_message_published_on_one_node_is_printed_by_a_subscriber_on_another() {
    let dir = scratch_dir("op-pubsub");
    let cluster = format!("pubsub-{}", std::process::id());
    let [a, b, c] = three_nodes(&dir, &cluster, &[]);
    let at_b = format!("{}", b.http);
    let subscriber = Follower::start(
        &dir,
        &[
            "subscribe",
            "orders.*.created",
            "--count",
            "1",
            "--node",
            &at_b,
        ],
    );
    let at_a = format!("{}", a.http);
    // The subscription's interest spreads to a in a replication push; publish until it has.
    let mut printed = None;
    let start = Instant::now();
    while printed.is_none() && start.elapsed() < PATIENCE {
        let sent = foundation(
            &dir,
            None,
            &["publish", "orders.eu.created", "order 17", "--node", &at_a],
        );
        assert!(sent.status.success(), "{}", stderr(&sent));
        printed = subscriber
            .lines
            .recv_timeout(Duration::from_millis(300))
            .ok();
    }
    let line = printed.expect("the subscriber prints the message");
    assert!(starts_with_timestamp(&line), "{line}");
    assert!(line.ends_with(" orders.eu.created order 17"), "{line}");

    let bad = foundation(
        &dir,
        None,
        &["publish", "orders..created", "x", "--node", &at_a],
    );
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("refused (400)"), "{}", stderr(&bad));
    drop((a, b, c));
    let _ = std::fs::remove_dir_all(&dir);
}

/// `foundation call` reaches a service served by another node and prints its answer; a
/// missing service and a bad timeout are refused with the reason.
#[test]
fn foundation_call_reaches_a_service_on_another_node() {
    let dir = scratch_dir("op-call");
    let cluster = format!("call-{}", std::process::id());
    let echo = [
        std::ffi::OsStr::new("--echo-service"),
        std::ffi::OsStr::new("echo"),
    ];
    let a = start(&dir, &cluster, "a", None);
    let b = common::start_with(&dir, &cluster, "b", None, &echo, &[]);
    let at_a = format!("{}", a.http);
    eventually(PATIENCE, "a sees b's echo service", || {
        get(a.http, "/services").is_some_and(|s| s["services"]["echo"].is_array())
    });
    let answered = foundation(
        &dir,
        None,
        &[
            "call",
            "echo",
            "hello there",
            "--timeout",
            "2s",
            "--node",
            &at_a,
        ],
    );
    assert!(answered.status.success(), "{}", stderr(&answered));
    assert_eq!(stdout(&answered).trim(), "hello there");

    let missing = foundation(&dir, None, &["call", "nobody", "x", "--node", &at_a]);
    assert!(!missing.status.success());
    assert!(
        stderr(&missing).contains("no healthy instance of \"nobody\""),
        "{}",
        stderr(&missing)
    );
    let bad = foundation(&dir, None, &["call", "echo", "x", "--timeout", "forever"]);
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    drop((a, b));
    let _ = std::fs::remove_dir_all(&dir);
}

/// `foundation register` puts an outside endpoint in the registry, seen from every node with
/// its address and tags; `deregister` removes it, and a second `deregister` says there is none.
#[test]
fn an_outside_endpoint_is_registered_and_deregistered_from_the_command_line() {
    let dir = scratch_dir("op-register");
    let cluster = format!("register-{}", std::process::id());
    let a = start(&dir, &cluster, "a", None);
    let b = start(&dir, &cluster, "b", None);
    eventually(PATIENCE, "a sees b", || {
        state_of(&a, &b.id).as_deref() == Some("alive")
    });
    let at_a = format!("{}", a.http);
    let registered = foundation(
        &dir,
        None,
        &[
            "register",
            "pg",
            "--addr",
            "10.0.0.5:5432",
            "--tag",
            "role=primary",
            "--node",
            &at_a,
        ],
    );
    assert!(registered.status.success(), "{}", stderr(&registered));
    let at_b = format!("{}", b.http);
    let listed = || {
        stdout(&foundation(
            &dir,
            None,
            &["services", "pg", "--node", &at_b],
        ))
    };
    eventually(PATIENCE, "b lists the endpoint", || {
        let table = listed();
        table.contains("10.0.0.5:5432") && table.contains("role=primary")
    });

    let removed = foundation(&dir, None, &["deregister", "pg", "--node", &at_a]);
    assert!(removed.status.success(), "{}", stderr(&removed));
    eventually(PATIENCE, "b no longer lists it", || {
        !listed().contains("10.0.0.5")
    });
    let again = foundation(&dir, None, &["deregister", "pg", "--node", &at_a]);
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("no endpoint of \"pg\""),
        "{}",
        stderr(&again)
    );
    let bad_tag = foundation(
        &dir,
        None,
        &["register", "pg", "--addr", "x:1", "--tag", "oops"],
    );
    assert_eq!(bad_tag.status.code(), Some(2), "{}", stderr(&bad_tag));
    drop((a, b));
    let _ = std::fs::remove_dir_all(&dir);
}

/// `foundation monitor` prints membership, config and service events as they happen.
#[test]
fn foundation_monitor_prints_members_config_and_services_as_they_change() {
    let dir = scratch_dir("op-monitor");
    let cluster = format!("monitor-{}", std::process::id());
    let a = start(&dir, &cluster, "a", None);
    let at_a = format!("{}", a.http);
    let monitor = Follower::start(&dir, &["monitor", "--node", &at_a]);
    monitor.line_where("saying it monitors a", |l| l.contains("monitoring node"));

    let mut b = start(&dir, &cluster, "b", None);
    let up = monitor.line_where("for b coming up", |l| {
        l.contains("member up") && l.contains(&b.id)
    });
    assert!(starts_with_timestamp(&up), "{up}");
    let set = foundation(
        &dir,
        None,
        &["config", "set", "mon.k", "7", "--node", &at_a],
    );
    assert!(set.status.success(), "{}", stderr(&set));
    monitor.line_where("for the config change", |l| l.ends_with("config mon.k = 7"));
    let registered = foundation(
        &dir,
        None,
        &["register", "web", "--addr", "127.0.0.1:9", "--node", &at_a],
    );
    assert!(registered.status.success(), "{}", stderr(&registered));
    monitor.line_where("for the new instance", |l| {
        l.contains("service up web") && l.ends_with("127.0.0.1:9")
    });
    b.kill();
    monitor.line_where("for b failing", |l| {
        l.contains("member failed") && l.contains(&b.id)
    });
    drop(a);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The status page as headless Chromium draws it after `budget` of (virtual) time, or `None`
/// when Chromium is not installed. The flags keep it off the network and away from the
/// user's profile.
fn chromium_dom(scratch: &Path, url: &str, budget: Duration) -> Option<String> {
    const CHROMIUM: &str = "/usr/bin/chromium";
    if !Path::new(CHROMIUM).exists() {
        return None;
    }
    let profile = scratch.join(format!("chromium-{}", std::process::id()));
    let output = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--virtual-time-budget={}", budget.as_millis()))
        .args(["--dump-dom", url])
        .stderr(Stdio::null())
        .output()
        .expect("chromium runs");
    Some(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The page drawn by headless Chromium once it shows `shown`, or its last drawing after a few
/// loads. The page's convergence column compares digests asked up to a second apart, so one
/// load can catch a write between them and say "unknown" on a cluster that has converged.
fn chromium_dom_showing(
    scratch: &Path,
    url: &str,
    budget: Duration,
    shown: impl Fn(&str) -> bool,
) -> Option<String> {
    let mut page = chromium_dom(scratch, url, budget)?;
    for _ in 1..4 {
        if shown(&page) {
            break;
        }
        page = chromium_dom(scratch, url, budget)?;
    }
    Some(page)
}

/// The attributes of the page's row for member `id`, as drawn.
fn drawn_row<'p>(page: &'p str, id: &str) -> Option<&'p str> {
    drawn_row_by(page, "data-id", id)
}

/// The attributes of the page's row whose `attribute` is `value`, as drawn.
fn drawn_row_by<'p>(page: &'p str, attribute: &str, value: &str) -> Option<&'p str> {
    let found = page.find(&format!("{attribute}=\"{value}\""))?;
    let at = page[..found].rfind("<tr")?;
    let end = page[at..].find('>')?;
    Some(&page[at..at + end])
}

/// The status page's row for `keyspace`, as `/status.json` gives it.
fn status_keyspace(node: &NodeProcess, keyspace: &str) -> Option<serde_json::Value> {
    get(node.http, "/status.json")?["keyspaces"]
        .as_array()?
        .iter()
        .find(|k| k["name"] == keyspace)
        .cloned()
}

fn status_row(node: &NodeProcess, id: &str) -> Option<serde_json::Value> {
    get(node.http, "/status.json")?["members"]
        .as_array()?
        .iter()
        .find(|m| m["id"] == id)
        .cloned()
}

/// `/status` in a real browser: three members with this node marked, traffic per channel, the
/// config keyspace the same on every member, a stopped (SIGSTOP) node shown suspect, then
/// alive again once it answers, and a killed node shown failed. With
/// Chromium absent only `/status.json` is checked, and the test says so.
#[test]
fn the_status_page_shows_members_suspicion_and_failure_live() {
    let dir = scratch_dir("op-status");
    let cluster = format!("status-{}", std::process::id());
    // Suspicion lasts 8 s, however many confirm it: long enough to watch.
    let toml = "[membership]\nsuspect_to_down_after = \"8s\"\nsuspect_to_down_min = \"8s\"\n";
    let config = config_file(&dir, toml);
    let args = [std::ffi::OsStr::new("--config"), config.as_os_str()];
    let [a, b, mut c] = three_nodes(&dir, &cluster, &args);
    let url = format!("http://{}/status", a.http);
    // A config write replicates; the page shows the keyspace the same on the two others (their
    // digests, asked while the page is watched), and traffic on every channel.
    common::config_cli(&a, &["set", "status.check", "1"]).expect("config set");
    eventually(
        PATIENCE,
        "the config keyspace is the same on all three",
        || {
            status_keyspace(&a, "config").is_some_and(|k| {
                k["keys"].as_u64() >= Some(1) && k["agree"] == 2 && k["converged"] == true
            })
        },
    );
    let traffic = get(a.http, "/status.json").expect("status")["traffic"].clone();
    let channels: Vec<&str> = traffic
        .as_array()
        .expect("traffic per channel")
        .iter()
        .filter_map(|t| t["channel"].as_str())
        .collect();
    assert_eq!(channels.len(), 6, "{traffic}");
    let membership = traffic
        .as_array()
        .and_then(|t| t.iter().find(|t| t["channel"] == "membership"))
        .expect("membership traffic");
    assert!(membership["bytes_sent"].as_u64() > Some(0), "{membership}");
    assert!(
        membership["bytes_received"].as_u64() > Some(0),
        "{membership}"
    );
    let config_converged = |page: &str| {
        drawn_row_by(page, "data-keyspace", "config")
            .is_some_and(|row| row.contains("data-converged=\"converged\""))
    };
    let page = chromium_dom_showing(&dir, &url, Duration::from_secs(3), config_converged);
    match &page {
        Some(page) => {
            let own = drawn_row(page, &a.id).expect("a row for the node itself");
            assert!(own.contains("class=\"self\""), "{own}");
            for other in [&b, &c] {
                let row = drawn_row(page, &other.id).expect("a row per member");
                assert!(row.contains("data-state=\"alive\""), "{row}");
            }
            assert!(page.contains("Members (3)"), "{page}");
            assert!(page.contains("Traffic (6)"), "{page}");
            let row = drawn_row_by(page, "data-channel", "membership").expect("membership row");
            assert!(!row.contains("data-sent=\"0\""), "{row}");
            let row = drawn_row_by(page, "data-keyspace", "config").expect("config row");
            assert!(row.contains("data-converged=\"converged\""), "{row}");
            assert!(page.contains("same on all 2 other members"), "{page}");
        }
        None => eprintln!("/usr/bin/chromium is not installed: checking /status.json only"),
    }
    let html = Command::new("curl").arg("-s").arg(&url).output();
    if let Ok(html) = html {
        assert!(stdout(&html).contains("fetch(\"/status.json\""));
    }

    send_signal(&c, "STOP");
    eventually(PATIENCE, "a suspects the stopped c", || {
        status_row(&a, &c.id).is_some_and(|m| m["suspect"] == true && m["state"] == "alive")
    });
    if let Some(page) = chromium_dom(&dir, &url, Duration::from_secs(2)) {
        let row = drawn_row(&page, &c.id).expect("c's row");
        assert!(row.contains("data-suspect=\"yes\""), "{row}");
    }
    send_signal(&c, "CONT");
    eventually(PATIENCE, "c refutes and is no longer suspected", || {
        status_row(&a, &c.id).is_some_and(|m| m["suspect"] == false && m["state"] == "alive")
    });

    c.kill();
    eventually(PATIENCE, "a declares c failed", || {
        status_row(&a, &c.id).is_some_and(|m| m["state"] == "failed")
    });
    if let Some(page) = chromium_dom(&dir, &url, Duration::from_secs(2)) {
        let row = drawn_row(&page, &c.id).expect("c's row");
        assert!(row.contains("data-state=\"failed\""), "{row}");
    }
    drop((a, b));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Without `--node`, `foundation monitor` follows another local node of the cluster when its
/// node stops, and goes on printing that node's events.
#[test]
fn foundation_monitor_follows_another_local_node_when_its_node_stops() {
    let dir = scratch_dir("op-monitor-next");
    let cluster = format!("monitor-next-{}", std::process::id());
    let mut a = start(&dir, &cluster, "a", None);
    let mut b = start(&dir, &cluster, "b", None);
    eventually(PATIENCE, "a sees b", || {
        state_of(&a, &b.id).as_deref() == Some("alive")
    });
    let monitor = Follower::start_in(&dir, Some(&cluster), &["monitor"]);
    let first = monitor.line_where("saying which node it follows", |l| {
        l.contains("monitoring node")
    });
    let (followed, other) = if first.contains(&a.id) {
        (&mut a, &mut b)
    } else {
        (&mut b, &mut a)
    };
    send_signal(followed, "TERM");
    wait_for_exit(followed, "the followed node leaves");
    let other_id = other.id.clone();
    monitor.line_where("following the other node", |l| {
        l.contains("monitoring node") && l.contains(&other_id)
    });
    let at_other = format!("{}", other.http);
    let set = foundation(
        &dir,
        None,
        &["config", "set", "next.k", "1", "--node", &at_other],
    );
    assert!(set.status.success(), "{}", stderr(&set));
    monitor.line_where("for the change on the other node", |l| {
        l.ends_with("config next.k = 1")
    });
    drop((a, b));
    let _ = std::fs::remove_dir_all(&dir);
}

/// `foundation placement` lists what a node declared; a node started from the command line
/// declares nothing (workloads are declared in code), and says so.
#[test]
fn placement_lists_what_a_node_declared() {
    let dir = scratch_dir("op-placement");
    let cluster = format!("placement-{}", std::process::id());
    let a = start(&dir, &cluster, "a", None);
    let node = format!("{}", a.http);
    let listed = foundation(
        &dir,
        Some(&cluster),
        &["placement", "--node", node.as_str()],
    );
    assert!(listed.status.success(), "{}", stderr(&listed));
    assert!(
        stdout(&listed).contains("no workloads declared"),
        "{}",
        stdout(&listed)
    );
    let json = foundation(
        &dir,
        Some(&cluster),
        &["placement", "--node", node.as_str(), "--json"],
    );
    let answer: serde_json::Value = serde_json::from_slice(&json.stdout).expect("json");
    assert_eq!(answer["node"], a.id.as_str());
    assert!(answer["workloads"]
        .as_object()
        .is_some_and(|w| w.is_empty()));
    assert_eq!(answer["duplicates_detected"], 0);
    drop(a);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `foundation sim --html` writes the pictures, says where on stderr (stdout keeps the JSON
/// report alone), and a path it cannot write is bad input (exit 2) naming the path.
#[test]
fn foundation_sim_writes_pictures_next_to_its_json_report() {
    let dir = scratch_dir("op-sim-html");
    let page = dir.join("report.html");
    let page_arg = page.to_str().expect("a UTF-8 path");
    let args = [
        "sim",
        "--scenario",
        "steady",
        "--nodes",
        "3",
        "--seed",
        "2",
        "--json",
        "--html",
    ];
    let ran = foundation(&dir, None, &[&args[..], &[page_arg]].concat());
    assert!(ran.status.success(), "{}", stderr(&ran));
    let report: serde_json::Value = serde_json::from_slice(&ran.stdout).expect("JSON alone");
    assert_eq!(report["scenario"], "steady");
    assert!(stderr(&ran).contains(&format!("pictures written to {page_arg}")));
    let html = std::fs::read_to_string(&page).expect("the page");
    assert!(html.starts_with("<!DOCTYPE html>"), "{html}");
    assert!(html.contains("<section id=\"timeline\">") && html.contains("<svg"));

    let unwritable = dir.join("missing-dir").join("report.html");
    let args = ["sim", "--scenario", "steady", "--nodes", "3", "--html"];
    let refused = foundation(
        &dir,
        None,
        &[&args[..], &[unwritable.to_str().unwrap()]].concat(),
    );
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("missing-dir"),
        "{}",
        stderr(&refused)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `foundation federation` shows a gateway's links and directory; a node started from
/// `[federation]` in its TOML is a gateway, one without is told it is not.
#[test]
fn federation_shows_a_gateways_links_and_directory() {
    let dir = scratch_dir("op-federation");
    let cluster = format!("federation-{}", std::process::id());
    let config = dir.join("gateway.toml");
    std::fs::write(
        &config,
        "[federation]\nbind = \"127.0.0.1:0\"\nexports = [\"billing\"]\n\
         [[federation.links]]\ncluster = \"far-away\"\ngateways = [\"127.0.0.1:9\"]\n\
         secret = \"the far cluster's secret\"\nhub = true\n\
         [[federation.bridges]]\ncluster = \"far-away\"\nexport = [\"orders.>\"]\n",
    )
    .unwrap();
    let path = config.display().to_string();
    let gateway = common::start_with(
        &dir,
        &cluster,
        "gw",
        None,
        &[],
        &[("FOUNDATION_CONFIG", path.as_str())],
    );
    let node = format!("{}", gateway.http);
    let listed = foundation(
        &dir,
        Some(&cluster),
        &["federation", "--node", node.as_str()],
    );
    assert!(listed.status.success(), "{}", stderr(&listed));
    let out = stdout(&listed);
    assert!(
        out.contains("far-away") && out.contains("127.0.0.1:9"),
        "{out}"
    );
    assert!(
        out.contains(&cluster),
        "its own cluster's directory entry: {out}"
    );
    assert!(out.contains("refused handshakes: 0"), "{out}");
    assert!(out.contains("BRIDGE") && out.contains("MSGS_OUT"), "{out}");
    assert!(out.contains("hubs: far-away   transit: -"), "{out}");
    let json = foundation(
        &dir,
        Some(&cluster),
        &["federation", "--node", node.as_str(), "--json"],
    );
    let answer: serde_json::Value = serde_json::from_slice(&json.stdout).expect("json");
    assert_eq!(answer["gateway"], true);
    assert_eq!(answer["links"][0]["cluster"], "far-away");
    assert_eq!(answer["links"][0]["bridged"]["messages_out"], 0);
    drop(gateway);
    let plain = start(&dir, &cluster, "plain", None);
    let node = format!("{}", plain.http);
    let listed = foundation(
        &dir,
        Some(&cluster),
        &["federation", "--node", node.as_str()],
    );
    assert!(
        stdout(&listed).contains("not a federation gateway"),
        "{}",
        stdout(&listed)
    );
    drop(plain);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_snapshot_saved_from_one_cluster_is_restored_into_another_and_a_damaged_one_is_refused() {
    let dir = scratch_dir("op-snapshot");
    let (from, to) = (
        format!("snap-from-{}", std::process::id()),
        format!("snap-to-{}", std::process::id()),
    );
    let _a = start(&dir, &from, "a", None);
    let _b = start(&dir, &to, "b", None);
    let run = |cluster: &str, args: &[&str]| {
        let output = foundation(&dir, Some(cluster), args);
        assert!(output.status.success(), "{args:?}: {}", stderr(&output));
        stdout(&output)
    };
    run(&from, &["config", "set", "limits.rps", "500"]);
    run(&from, &["config", "set", "checkout", "true"]);
    let file = dir.join("backup.fsnap");
    let file_arg = file.to_str().expect("a UTF-8 path");
    let saved = run(&from, &["snapshot", "save", file_arg]);
    assert!(saved.contains("config: 2 keys"), "{saved}");
    // Written on the other cluster after the save: newer, so it stays.
    run(&to, &["config", "set", "checkout", "false"]);
    let restored = run(&to, &["snapshot", "restore", file_arg]);
    assert!(
        restored.contains("config") && restored.contains("restored"),
        "{restored}"
    );
    let config: serde_json::Value =
        serde_json::from_str(&run(&to, &["config", "get"])).expect("JSON");
    assert_eq!(
        config,
        serde_json::json!({ "limits.rps": 500, "checkout": false })
    );

    let bytes = std::fs::read(&file).expect("saved");
    let cut = dir.join("cut.fsnap");
    std::fs::write(&cut, &bytes[..bytes.len() - 3]).expect("written");
    let refused = foundation(
        &dir,
        Some(&to),
        &["snapshot", "restore", cut.to_str().expect("a UTF-8 path")],
    );
    assert!(!refused.status.success());
    let why = stderr(&refused);
    assert!(
        why.contains("truncated") && why.contains("nothing was restored"),
        "{why}"
    );
}
