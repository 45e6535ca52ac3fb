//! Agents in the simulator: the agents scenarios pass their invariants, the supervisors and
//! messages did what the scenarios set out to make them do, and a sweep over many seeds.

mod common;

use common::check_all_pass_at;
use foundation_sim::report::RunReport;
use foundation_sim::scenario::file;
use foundation_sim::sweep::sweep;

fn outcome(report: &RunReport, name: &str) -> u64 {
    report
        .measurements
        .agent_messages
        .get(name)
        .copied()
        .unwrap_or(0)
}

/// What every agents run must show: answered messages, refusals by dead agents (the flaky
/// groups' supervisors gave up), restarts, and every ended life's agents gone.
fn assert_agents_exercised(reports: &[RunReport]) {
    for r in reports {
        let m = &r.measurements;
        assert!(
            outcome(r, "ok") > 1000,
            "seed {}: {:?}",
            r.seed,
            m.agent_messages
        );
        assert!(
            outcome(r, "dead_agent") > 0,
            "seed {}: {:?}",
            r.seed,
            m.agent_messages
        );
        assert!(
            m.agent_restarts > 10,
            "seed {}: {} restarts",
            r.seed,
            m.agent_restarts
        );
        assert!(
            m.agent_give_ups > 0,
            "seed {}: no supervisor gave up",
            r.seed
        );
        assert!(
            m.agents_vanished.len() >= 2,
            "seed {}: ended lives measured {:?}",
            r.seed,
            m.agents_vanished
        );
    }
}

#[test]
fn agents_partition_holds() {
    let reports = check_all_pass_at("agents-partition", 8, 1..3);
    assert_agents_exercised(&reports);
    for r in &reports {
        // Messages into the cut-off side fail fast, never hang past their deadline.
        assert!(
            outcome(r, "unreachable") > 0,
            "seed {}: {:?}",
            r.seed,
            r.measurements.agent_messages
        );
    }
}

#[test]
fn agents_crash_holds() {
    let reports = check_all_pass_at("agents-crash", 8, 1..3);
    assert_agents_exercised(&reports);
}

/// Both agents scenarios over many seeds at 8 and 16 nodes: `cargo test --release -p
/// foundation-sim --test agents -- --ignored`. `AGENTS_SEEDS=N` sets the count (default 100).
#[test]
#[ignore = "minutes in a debug build; run with --release"]
fn agents_over_many_seeds() {
    let seeds: u64 = std::env::var("AGENTS_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    for name in ["agents-partition", "agents-crash"] {
        let mut outcomes = std::collections::BTreeMap::<String, u64>::new();
        let (mut restarts, mut give_ups, mut slowest) = (0, 0, 0.0f64);
        for nodes in [8, 16] {
            for r in check_all_pass_at(name, nodes, 1..seeds + 1) {
                for (outcome, n) in &r.measurements.agent_messages {
                    *outcomes.entry(outcome.clone()).or_default() += n;
                }
                restarts += r.measurements.agent_restarts;
                give_ups += r.measurements.agent_give_ups;
                slowest = r
                    .measurements
                    .agents_vanished
                    .iter()
                    .fold(slowest, |a, &t| a.max(t));
            }
        }
        eprintln!("{name}: {seeds} seeds at 8 and at 16 nodes passed; messages {outcomes:?}, {restarts} restarts, {give_ups} supervisors gave up, a dead life's agents gone everywhere within {slowest:.2} s at worst");
    }
}

#[test]
fn agents_from_a_scenario_file_hold_on_a_flaky_network() {
    let path = format!("{}/scenarios/agents-flaky.toml", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect("the scenario file");
    let scenario = file::parse(&text, &path).expect("a valid scenario");
    for r in sweep(&scenario, 1..2, 0, false) {
        assert!(
            r.passed,
            "seed {}: {:?} {:?}",
            r.seed, r.invariants, r.panic
        );
        assert!(
            outcome(&r, "ok") > 500,
            "{:?}",
            r.measurements.agent_messages
        );
        assert!(
            r.measurements.agent_give_ups > 0,
            "the fragile groups gave up"
        );
    }
}

#[test]
fn agent_entries_in_a_scenario_file_are_checked() {
    let refused = |entry: &str, expected: &str| {
        let text = format!("name = \"x\"\nnodes = 4\n[[at]]\ntime = \"1s\"\n{entry}\n");
        let error = file::parse(&text, "x.toml").expect_err(entry);
        assert!(error.problem.contains(expected), "{entry}: {error}");
    };
    refused("agents = \"all\"", "agents needs `agent");
    refused(
        "agents = \"all\"\nagent = \"w\"\nstrategy = \"rest_for_one\"",
        "rest_for_one",
    );
    refused(
        "agents = \"all\"\nagent = \"w\"\ncount = 0",
        "1 to 32 agents",
    );
    refused("agents = \"all\"\nagent = \"w/x\"", "agent name");
    refused("crash = 1\nfailure = 0.5", "belong to agents");
    refused("agent_messages = \"all\"\nfor = \"2s\"", "rate");
    refused(
        "crash = 1\nrequests = 0.5",
        "requests belongs to agent_messages",
    );
}
