//! `foundation check` as an operator runs it: a report line per check, and a non-zero exit
//! when something would stop the node (here: its HTTP port is taken, its configuration is bad).

use std::process::Command;

fn check(args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_foundation"))
        .arg("check")
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .expect("foundation runs");
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), text)
}

#[test]
fn a_development_node_passes_with_warnings() {
    let (passed, text) = check(&[], &[]);
    assert!(passed, "{text}");
    assert!(
        text.contains("WARN secret: the development secret"),
        "{text}"
    );
    assert!(text.contains("0 failed"), "{text}");
}

#[test]
fn a_taken_port_and_a_bad_setting_fail_the_check() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let http = taken.local_addr().unwrap().to_string();
    let env = [
        ("FOUNDATION_SECRET", "0123456789abcdef0123456789abcdef"),
        ("FOUNDATION_SEEDS", "127.0.0.1:7400"),
        ("FOUNDATION_HTTP", http.as_str()),
    ];
    let (passed, text) = check(&["--profile", "production", "--storage", "memory"], &env);
    assert!(!passed, "{text}");
    assert!(
        text.contains(&format!("FAIL HTTP port {http}: cannot bind")),
        "{text}"
    );
    assert!(text.contains("fix: stop what holds it"), "{text}");
    let (passed, text) = check(&["--profile", "production"], &[]);
    assert!(!passed, "{text}");
    assert!(text.contains("FAIL configuration:"), "{text}");
}
