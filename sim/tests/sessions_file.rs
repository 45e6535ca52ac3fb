//! Coordination sessions from a scenario file (`sim/scenarios/sessions-partition.toml`), run
//! the way `foundation sim --file` runs them: every run passes its session checks and the
//! tallies show the checks looked at something; and each check fails on the bug it is for,
//! planted by a fault switch, through the file.
//!
//! A switch is on for the thread that engaged it, so these runs use `run` on the test's own
//! thread, never `sweep`.

use foundation_core::fault_switch::{self, FaultSwitch};
use foundation_sim::cli::{self, SimArgs, SimError};
use foundation_sim::report::{print_summary, RunReport, SimReport};
use foundation_sim::scenario::sessions::SessionCounts;
use foundation_sim::scenario::{file, run, RunOptions, Scenario};

const PATH: &str = "sim/scenarios/sessions-partition.toml";

fn scenario() -> Scenario {
    let text = include_str!("../scenarios/sessions-partition.toml");
    file::parse(text, PATH).expect("the file parses")
}

fn failures(report: &RunReport) -> String {
    let failed = report.invariants.iter().filter(|i| i.violations > 0);
    let lines: Vec<String> = failed
        .map(|i| format!("{}: {:?}", i.name, i.first))
        .collect();
    format!(
        "{} {:?} — replay: {}",
        lines.join("; "),
        report.panic,
        report.replay
    )
}

#[test]
fn sessions_from_a_file_hold_through_a_partition_a_heal_and_a_crash() {
    let scenario = scenario();
    let mut sum = SessionCounts::default();
    for seed in 1..=3 {
        let report = run(&scenario, seed, &RunOptions::default());
        assert!(report.passed, "seed {seed}: {}", failures(&report));
        sum.add(
            report
                .measurements
                .sessions
                .as_ref()
                .expect("session counts"),
        );
    }
    eprintln!("{sum}");
    assert!(sum.committed >= 30, "outcomes commit: {sum}");
    assert!(sum.aborted >= 1, "lost coordinators' sessions abort: {sum}");
    assert!(sum.lost >= 1, "the crash loses sessions: {sum}");
    assert!(sum.answers_refused >= 10, "bad answers are refused: {sum}");
    assert!(sum.converged >= 20, "tatonnements converge: {sum}");
}

#[test]
fn the_summary_the_json_and_the_html_carry_the_session_tallies() {
    let report = run(&scenario(), 1, &RunOptions::default());
    let page = foundation_sim::html::page(std::slice::from_ref(&report), None);
    assert!(page.contains("<p id=\"sessions\">sessions: "), "{page}");
    let summary = SimReport::of(vec![report.clone(), report]);
    let mut text = Vec::new();
    print_summary(&summary, &mut text).expect("prints");
    let text = String::from_utf8(text).expect("utf-8");
    assert!(text.contains("sessions: "), "{text}");
    assert!(summary.to_json().contains("\"answers_refused\""));
}

/// `foundation sim --file <the file> --seed <seed>`, with `switch` on if there is one.
fn sim(seed: u64, switch: Option<FaultSwitch>) -> Result<SimReport, SimError> {
    let file = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scenarios/sessions-partition.toml"
    );
    let args = SimArgs {
        file: Some(file.into()),
        seed: Some(seed),
        ..SimArgs::default()
    };
    let _on = switch.map(fault_switch::engage);
    cli::run(args)
}

/// `check` fails with `switch` on in one of seeds 1 to 6 of the file, the summary names it
/// with the seed's replay command, and that seed passes with the switch off.
fn caught(switch: FaultSwitch, check: &str) {
    for seed in 1..=6 {
        let report = match sim(seed, Some(switch)) {
            Err(SimError::InvariantFailed(report)) => report,
            Ok(_) => continue,
            Err(e) => panic!("{e}"),
        };
        let run = &report.details[0];
        let Some(outcome) = run
            .invariants
            .iter()
            .find(|i| i.name == check && i.violations > 0)
        else {
            continue;
        };
        eprintln!(
            "{switch:?} caught by {check} in seed {seed}: {:?}",
            outcome.first[0]
        );
        let mut text = Vec::new();
        print_summary(&report, &mut text).expect("prints");
        let text = String::from_utf8(text).expect("utf-8");
        assert!(text.contains(&format!("{check}: ")), "{text}");
        let replay = format!(
            "replay: foundation sim --file {}",
            env!("CARGO_MANIFEST_DIR")
        );
        assert!(text.contains(&replay), "{text}");
        let sound = sim(seed, None);
        assert!(sound.is_ok(), "switch off, seed {seed}: {sound:?}");
        return;
    }
    panic!("{switch:?}: {check} failed in none of seeds 1 to 6");
}

#[test]
fn a_ledger_that_ignores_which_session_wrote_it_takes_two_outcomes() {
    caught(
        FaultSwitch::OutcomeIgnoresSessionOrder,
        "one-outcome-per-session",
    );
}

#[test]
fn a_debit_that_empties_the_budget_instead_of_refusing_overspends() {
    caught(FaultSwitch::DebitSaturatesAtFloor, "within-budget");
}

#[test]
fn answers_credited_to_the_wrong_participant_change_the_outcome() {
    caught(FaultSwitch::SessionAnswerFromWrongAgent, "matches-machine");
}

#[test]
fn silence_taken_as_zero_demand_claims_a_convergence_nobody_answered() {
    caught(
        FaultSwitch::SessionSilenceAsZeroDemand,
        "silence-is-not-convergence",
    );
}

#[test]
fn an_uncertain_commit_reported_as_committed_shows_on_the_minority_side() {
    caught(
        FaultSwitch::SessionUncertainAsCommitted,
        "no-minority-commit",
    );
}
