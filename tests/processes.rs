//! Real `foundation node` processes on loopback: zero-config clustering through the local
//! discovery directory, kill -9, restart with the same id, and configuration errors.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{
    config_cli, config_cli_at, eventually, members, scratch_dir, start, state_of, BINARY,
};

#[test]
fn three_zero_config_processes_cluster_detect_a_kill_and_take_the_node_back() {
    let dir = scratch_dir("cluster");
    let cluster = format!("proc-{}", std::process::id());
    let a = start(&dir, &cluster, "a", None);
    let b = start(&dir, &cluster, "b", None);
    let mut c = start(&dir, &cluster, "c", None);
    for node in [&a, &b, &c] {
        eventually(
            Duration::from_secs(15),
            "each node sees two live peers",
            || {
                members(node)
                    .iter()
                    .filter(|m| m["state"] == "alive")
                    .count()
                    == 2
            },
        );
    }
    let c_id = c.id.clone();
    c.child.kill().unwrap(); // SIGKILL: no goodbye
    let _ = c.child.wait();
    for node in [&a, &b] {
        eventually(
            Duration::from_secs(15),
            "the killed node is marked failed",
            || state_of(node, &c_id).as_deref() == Some("failed"),
        );
    }
    drop(c);
    let c_again = start(&dir, &cluster, "c", Some(&c_id));
    for node in [&a, &b] {
        eventually(
            Duration::from_secs(15),
            "the restarted node is alive again",
            || state_of(node, &c_id).as_deref() == Some("alive"),
        );
    }
    drop(c_again);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn production_without_a_secret_refuses_to_start_with_a_clear_message() {
    let output = Command::new(BINARY)
        .args([
            "node",
            "--profile",
            "production",
            "--seed",
            "127.0.0.1:7400",
        ])
        .env_clear()
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("FOUNDATION_SECRET"),
        "message names what to set: {stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "one clear line: {stderr}");
}

#[test]
fn production_without_a_data_dir_refuses_to_start_naming_the_setting() {
    let output = Command::new(BINARY)
        .args([
            "node",
            "--profile",
            "production",
            "--seed",
            "127.0.0.1:7400",
        ])
        .env_clear()
        .env("FOUNDATION_SECRET", "a-production-secret-of-32-bytes!")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--data-dir"), "names the flag: {stderr}");
    assert!(
        stderr.contains("storage = \"memory\""),
        "names the way out: {stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "one clear line: {stderr}");
}

#[test]
fn a_malformed_config_file_is_reported_with_its_line() {
    let dir = scratch_dir("badconfig");
    let file = dir.join("node.toml");
    std::fs::write(
        &file,
        "cluster = \"ok\"\n[membership]\nprobe_rtt = \"fast\"\n",
    )
    .unwrap();
    let output = Command::new(BINARY)
        .args(["node", "--config"])
        .arg(&file)
        .env_clear()
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("line 3") && stderr.contains("probe_rtt"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn config_set_on_one_process_is_read_on_another_and_deleted() {
    let dir = scratch_dir("config");
    let a = start(&dir, "config-cli", "a", None);
    let b = start(&dir, "config-cli", "b", None);
    eventually(Duration::from_secs(20), "a and b see each other", || {
        state_of(&a, &b.id).as_deref() == Some("alive")
    });
    config_cli(&a, &["set", "limits.api", r#"{"rps":5}"#]).expect("set");
    eventually(Duration::from_secs(10), "b reads a's write", || {
        config_cli(&b, &["get", "limits.api"]).as_deref() == Ok(r#"{"rps":5}"#)
    });
    // With two live members a majority is both: the answer waits for b's acknowledgement.
    config_cli(&b, &["set", "limits.db", "7", "--majority", "5000"]).expect("majority set");
    assert_eq!(config_cli(&a, &["get", "limits.db"]).as_deref(), Ok("7"));
    config_cli(&b, &["delete", "limits.api"]).expect("delete");
    eventually(Duration::from_secs(10), "the delete reaches a", || {
        config_cli(&a, &["get", "limits.api"]).is_err_and(|e| e.contains("no key"))
    });
    let unreachable = config_cli_at("127.0.0.1:1".parse().unwrap(), &["get"]);
    assert!(unreachable.is_err_and(|e| e.contains("127.0.0.1:1")));
}
