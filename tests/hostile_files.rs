//! The files users hand us as hostile input: a node's configuration file and the simulator's
//! scenario files, valid ones mutated byte by byte (flips, deletions, insertions of TOML's own
//! punctuation, duplicated lines, truncation, invalid UTF-8), are either accepted or refused
//! with a message; nothing panics. The fuzz target `config_files` (`fuzz/`) runs the same
//! parsers on arbitrary bytes for longer.

use std::path::{Path, PathBuf};

use foundation_engine::config::NodeConfig;
use foundation_sim::scenario::file as scenario_file;
use proptest::prelude::*;

/// Every section and most keys the file accepts, with valid values.
const FULL: &str = r#"cluster = "payments"
profile = "production"
node_id = "0000000000000000000000000000abcd"
bind = "0.0.0.0:7400"
advertise = "10.0.0.7:7400"
http = "127.0.0.1:7401"
data_dir = "/var/lib/foundation"
storage = "disk"
sync = "interval"
sync_interval = "5ms"

[security]
secret = "a-production-secret-of-32-bytes!"

[[discovery]]
kind = "static"
seeds = ["10.0.0.1:7400", "10.0.0.2:7400"]

[[discovery]]
kind = "dns"
name = "foundation.default.svc.cluster.local"
port = 7400
srv = false
interval = "10s"

[membership]
probe_period = "1s"
probe_rtt = "400ms"
indirect_probes = 3
suspect_to_down_after = "4s"
suspicion_confirmations = 3
suspect_to_down_min = "1s"
local_health_max = 8
push_pull_interval = "30s"
gossip_interval = "200ms"
gossip_fanout = 3
remember_down_for = "60s"
reap_after = "15m"
max_packet_size = 1200

[replication]
fanout = 4
push_all_max = 32
anti_entropy_interval = "2s"
op_log_max = 2048
value_size_max = 65536
key_size_max = 1024
keyspace_keys_max = 20000
keyspace_bytes_max = 4194304
keyspaces_max = 64
max_drift_ms = 60000
tombstone_ttl = "30m"
departed_after = "1h"
bulk_threshold = 65536

[transport]
keep_alive = "2s"
idle_timeout = "10s"
bulk_port = "auto"

[metadata]
name = "payments-1"
version = "1.2.3"
tags = { zone = "eu-west-1a", role = "api" }
"#;

/// Bytes that make TOML's grammar take other paths: quotes, brackets, escapes, separators, a
/// NUL, and the first byte of a multi-byte UTF-8 sequence.
const PUNCTUATION: &[u8] = b"\"'[]{}=,.#\\\n\t 0-+e:\x00\xc3\xff";

#[derive(Clone, Debug)]
enum Edit {
    Flip { at: usize, bit: u8 },
    Delete { at: usize, len: usize },
    Insert { at: usize, byte: u8 },
    DuplicateLine { at: usize },
    Truncate { at: usize },
}

/// An edit somewhere in the first `len` bytes (edits past the end of a shorter text clamp).
fn edit(len: usize) -> impl Strategy<Value = Edit> {
    let at = 0..len;
    prop_oneof![
        (at.clone(), 0u8..8).prop_map(|(at, bit)| Edit::Flip { at, bit }),
        (at.clone(), 1usize..24).prop_map(|(at, len)| Edit::Delete { at, len }),
        (at.clone(), prop::sample::select(PUNCTUATION))
            .prop_map(|(at, byte)| Edit::Insert { at, byte }),
        at.clone().prop_map(|at| Edit::DuplicateLine { at }),
        at.prop_map(|at| Edit::Truncate { at }),
    ]
}

fn apply(text: &mut Vec<u8>, edit: &Edit) {
    let clamp = |at: usize, text: &Vec<u8>| at.min(text.len());
    match *edit {
        Edit::Flip { at, bit } if at < text.len() => text[at] ^= 1 << bit,
        Edit::Flip { .. } => {}
        Edit::Delete { at, len } => {
            let at = clamp(at, text);
            let end = (at + len).min(text.len());
            text.drain(at..end);
        }
        Edit::Insert { at, byte } => text.insert(clamp(at, text), byte),
        Edit::DuplicateLine { at } => {
            let at = clamp(at, text);
            let start = text[..at]
                .iter()
                .rposition(|b| *b == b'\n')
                .map_or(0, |i| i + 1);
            let end = text[at..]
                .iter()
                .position(|b| *b == b'\n')
                .map_or(text.len(), |i| at + i + 1);
            let line = text[start..end].to_vec();
            text.splice(end..end, line);
        }
        Edit::Truncate { at } => text.truncate(at),
    }
}

fn config_file(case: usize, bytes: &[u8]) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("foundation-hostile-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(format!("config-{case}.toml"));
    std::fs::write(&path, bytes).expect("write config");
    path
}

fn load(path: &PathBuf) -> Result<NodeConfig, String> {
    NodeConfig::builder()
        .file(path)
        .build()
        .map_err(|error| error.to_string())
}

/// The unmutated file is valid: the mutations below start from an accepted configuration, so a
/// refusal is the mutation's doing.
#[test]
fn the_full_file_is_accepted() {
    let path = config_file(0, FULL.as_bytes());
    let config = load(&path).expect("the full file is valid");
    assert_eq!(config.cluster.as_str(), "payments");
    assert_eq!(config.membership.probe_rtt.as_millis(), 400);
    assert_eq!(config.replication.keyspace_keys_max, 20_000);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Any mutation is accepted or refused with a message that says something; nothing panics.
    #[test]
    fn a_mutated_file_is_accepted_or_refused_with_a_message(
        edits in prop::collection::vec(edit(FULL.len()), 1..6),
        case in 1usize..64,
    ) {
        let mut bytes = FULL.as_bytes().to_vec();
        for edit in &edits {
            apply(&mut bytes, edit);
        }
        let path = config_file(case, &bytes);
        if let Err(message) = load(&path) {
            prop_assert!(message.len() > 10, "an empty refusal: {message:?}");
        }
    }

    /// Any mutation of any shipped scenario file parses, or is refused with a line inside the
    /// file and a problem; a parsed one validates or is refused with a reason. Nothing panics.
    #[test]
    fn a_mutated_scenario_is_parsed_or_refused_with_its_line(
        which in any::<prop::sample::Index>(),
        edits in prop::collection::vec(edit(4096), 1..6),
    ) {
        let scenarios = shipped_scenarios();
        let (name, text) = &scenarios[which.index(scenarios.len())];
        let mut bytes = text.as_bytes().to_vec();
        for edit in &edits {
            apply(&mut bytes, edit);
        }
        // The CLI reads scenario files as UTF-8 text and refuses anything else before parsing.
        let text = String::from_utf8_lossy(&bytes);
        match scenario_file::parse_any(&text, name) {
            Ok(scenario) => {
                if let Err(reason) = scenario.validate() {
                    prop_assert!(!reason.is_empty());
                }
            }
            Err(error) => {
                let lines = text.lines().count().max(1);
                prop_assert!(error.line >= 1 && error.line <= lines + 1, "{name}: {error:?}");
                prop_assert!(!error.problem.is_empty(), "{name}: {error:?}");
            }
        }
    }
}

/// The scenario files in `sim/scenarios/`, by name, in name order.
fn shipped_scenarios() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("sim/scenarios");
    let mut files: Vec<(String, String)> = std::fs::read_dir(&dir)
        .expect("sim/scenarios")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "toml"))
        .map(|path| {
            let text = std::fs::read_to_string(&path).expect("scenario");
            (path.display().to_string(), text)
        })
        .collect();
    files.sort();
    assert!(files.len() >= 5, "scenario files found: {}", files.len());
    files
}

/// Every shipped scenario parses and validates unmutated.
#[test]
fn every_shipped_scenario_is_accepted() {
    for (name, text) in shipped_scenarios() {
        let scenario =
            scenario_file::parse_any(&text, &name).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        scenario
            .validate()
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}
