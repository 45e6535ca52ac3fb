//! Arbitrary bytes as the files users hand us: a node's TOML configuration (through the same
//! builder `foundation node --config` uses, so cross-field validation runs too) and a simulator
//! scenario file (parsed, then validated as `foundation sim --file` does before running it).
//!
//! Property: nothing panics; a refusal always says something. `tests/hostile_files.rs` runs
//! mutations of valid files in the test suite.

use foundation_engine::config::NodeConfig;
use foundation_sim::scenario::file as scenario_file;

/// Checks the properties above on one input; panics if one fails.
pub fn check(data: &[u8]) {
    // One file per process and thread: the test suite runs checks on several threads.
    let thread = format!("{:?}", std::thread::current().id());
    let name = format!(
        "foundation-fuzz-config-{}-{}.toml",
        std::process::id(),
        thread.trim_start_matches("ThreadId")
    );
    let path = std::env::temp_dir().join(name);
    if std::fs::write(&path, data).is_ok() {
        if let Err(error) = NodeConfig::builder().file(&path).build() {
            assert!(!error.to_string().is_empty());
        }
        let _ = std::fs::remove_file(&path);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        match scenario_file::parse(text, "fuzz.toml") {
            Ok(scenario) => {
                let _ = scenario.validate();
            }
            Err(error) => assert!(!error.problem.is_empty()),
        }
    }
}
