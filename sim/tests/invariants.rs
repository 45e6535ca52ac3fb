//! A deliberately broken invariant is caught, reported with its seed and a replay command; a
//! panic inside a run is caught too; the CLI entry point maps failures to exit code 1.

use foundation_sim::cli::{self, SimArgs, SimError};
use foundation_sim::invariants::{Check, Invariant};
use foundation_sim::scenario::{run, standard, RunOptions, Scenario};
use foundation_sim::sweep::sweep;
use foundation_sim::world::World;

/// Claims no node ever sees more than three others alive: false in any cluster of five or more.
struct AtMostThreeAlive;

impl Invariant for AtMostThreeAlive {
    fn name(&self) -> &'static str {
        "at-most-three-alive"
    }

    fn after_step(&mut self, world: &World, slot: usize) -> Check {
        let alive = world
            .node(slot)
            .core()
            .map_or(0, |c| c.membership().alive().count());
        if alive > 3 {
            return Err(format!("n{slot} sees {alive} alive"));
        }
        Ok(())
    }
}

#[test]
fn a_broken_invariant_is_caught_and_reported_with_its_seed() {
    let scenario = Scenario::new("broken")
        .nodes(8)
        .duration(std::time::Duration::from_secs(5))
        .invariant(|| Box::new(AtMostThreeAlive));
    let reports = sweep(&scenario, 10..13, 2, true);
    assert_eq!(
        reports.iter().map(|r| r.seed).collect::<Vec<_>>(),
        vec![10, 11, 12]
    );
    for report in &reports {
        assert!(!report.passed);
        let broken = report
            .invariants
            .iter()
            .find(|i| i.name == "at-most-three-alive")
            .unwrap();
        assert!(broken.violations > 0 && !broken.first.is_empty());
        assert_eq!(
            report.replay,
            format!(
                "foundation sim --scenario broken --nodes 8 --seed {}",
                report.seed
            )
        );
        assert!(
            report.trace.as_ref().is_some_and(|t| !t.is_empty()),
            "failed runs keep their trace"
        );
    }
}

struct Panics;

impl Invariant for Panics {
    fn name(&self) -> &'static str {
        "panics"
    }

    fn on_tick(&mut self, world: &World) -> Check {
        assert!(world.now_us() < 1_000_000, "deliberate panic at 1 s");
        Ok(())
    }
}

#[test]
fn a_panic_inside_a_run_is_caught_and_fails_the_run() {
    let scenario = Scenario::new("panics")
        .nodes(4)
        .invariant(|| Box::new(Panics));
    let report = run(&scenario, 5, &RunOptions::default());
    assert!(!report.passed);
    assert!(
        report
            .panic
            .as_deref()
            .is_some_and(|p| p.contains("deliberate")),
        "{:?}",
        report.panic
    );
}

#[test]
fn the_cli_runs_a_standard_scenario_and_refuses_unknown_ones() {
    let args = SimArgs {
        scenario: Some("crash-restart".into()),
        nodes: Some(8),
        seed: Some(3),
        ..SimArgs::default()
    };
    let report = cli::run(args).expect("crash-restart passes");
    assert_eq!((report.runs, report.nodes), (1, 8));
    assert!(report.to_json().contains("\"scenario\": \"crash-restart\""));
    let mut text = Vec::new();
    foundation_sim::report::print_summary(&report, &mut text).unwrap();
    assert!(String::from_utf8(text)
        .unwrap()
        .contains("replay: foundation sim --scenario crash-restart --nodes 8 --seed 3"));

    let unknown = cli::run(SimArgs {
        scenario: Some("nope".into()),
        ..SimArgs::default()
    })
    .unwrap_err();
    assert_eq!(unknown.exit_code(), 2);
    assert!(unknown.to_string().contains("partition-heal"));
}

#[test]
fn a_scenario_file_with_an_error_is_refused_with_its_line() {
    let path = std::env::temp_dir().join(format!("foundation-sim-bad-{}.toml", std::process::id()));
    std::fs::write(
        &path,
        "nodes = 4\nduration = \"10s\"\n\n[[at]]\ntime = \"1s\"\ncrash = \"nobody\"\n",
    )
    .unwrap();
    let err = cli::run(SimArgs {
        file: Some(path.clone()),
        ..SimArgs::default()
    })
    .unwrap_err();
    let _ = std::fs::remove_file(&path);
    assert!(matches!(err, SimError::Parse { .. }), "{err}");
    assert!(
        err.to_string().contains("line 4") && err.to_string().contains("nobody"),
        "{err}"
    );
}

#[test]
fn every_standard_scenario_shipped_as_a_file_parses() {
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let parsed = foundation_sim::scenario::file::parse(&text, "x");
        assert!(parsed.is_ok(), "{}: {:?}", path.display(), parsed.err());
    }
    assert!(standard::by_name("partition-heal", 4).is_some());
}
