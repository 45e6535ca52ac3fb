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

/// `foundation vars`: declare a variable through one node of three, see every node take the
/// declaration up, win a compare-and-set, lose the next one that expects the old version, and
/// get typed refusals for a bad value and an unknown variable.
#[test]
fn vars_are_declared_set_and_refused_from_the_command_line() {
    let dir = scratch_dir("op-vars");
    let cluster = format!("vars-{}", std::process::id());
    let a = start(&dir, &cluster, "a", None);
    let b = start(&dir, &cluster, "b", None);
    let c = start(&dir, &cluster, "c", None);
    for (observer, other) in [(&a, &b), (&a, &c), (&b, &c)] {
        eventually(PATIENCE, "the three nodes see each other", || {
            state_of(observer, &other.id).as_deref() == Some("alive")
                && state_of(other, &observer.id).as_deref() == Some("alive")
        });
    }
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
    drop(a);
    let _ = std::fs::remove_dir_all(&dir);
}
