//! A deliberately broken invariant is caught, reported with its seed and a replay command; a
//! panic inside a run is caught too; the CLI entry point maps failures to exit code 1.

use std::collections::BTreeMap;
use std::time::Duration;

use foundation_core::ephemeral::{EphemeralConfig, SERVICES_KEYSPACE};
use foundation_core::membership::MembershipConfig;

use foundation_core::replication::ReplicationConfig;
use foundation_sim::cli::{self, SimArgs, SimError};
use foundation_sim::faults::{Fault, Nodes};
use foundation_sim::invariants::pubsub::Delivery;
use foundation_sim::invariants::registry::RegistryConsistent;
use foundation_sim::invariants::{Bounds, Check, Invariant};
use foundation_sim::scenario::{run, standard, RunOptions, Scenario};
use foundation_sim::services::record_for;
use foundation_sim::sweep::sweep;
use foundation_sim::world::{AppRequest, World, WorldConfig};

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
        // One cluster or several federated ones, as `foundation sim --file` reads them.
        let parsed = foundation_sim::scenario::file::parse_any(&text, "x");
        assert!(parsed.is_ok(), "{}: {:?}", path.display(), parsed.err());
    }
    assert!(standard::by_name("partition-heal", 4).is_some());
}

/// Runs `world` until `until_us`, feeding `invariant` the way the runner does; returns the
/// violations it reported, with their times.
fn drive(world: &mut World, invariant: &mut dyn Invariant, until_us: u64) -> Vec<(u64, String)> {
    const TICK_US: u64 = 100_000;
    let mut violations = Vec::new();
    let mut next_tick = world.now_us() + TICK_US;
    loop {
        let event = world.next_time().unwrap_or(u64::MAX);
        if event.min(next_tick) > until_us {
            break;
        }
        if next_tick < event {
            world.advance_to(next_tick);
            if let Err(e) = invariant.on_tick(world) {
                violations.push((world.now_us(), e));
            }
            next_tick += TICK_US;
            continue;
        }
        if let Some(slot) = world.step() {
            if let Err(e) = invariant.after_step(world, slot) {
                violations.push((world.now_us(), e));
            }
        }
        for observed in world.take_observed() {
            if let Err(e) = invariant.on_event(world, &observed) {
                violations.push((world.now_us(), e));
            }
        }
    }
    violations
}

/// `nodes` nodes with the development membership profile on a LAN, from `seed`.
fn lan_world(seed: u64, nodes: usize) -> World {
    World::new(WorldConfig::lan(seed, nodes))
}

fn apply(world: &mut World, invariant: &mut dyn Invariant, fault: Fault) {
    let slots = world
        .apply(&fault, &BTreeMap::new())
        .expect("the fault fits");
    invariant.on_fault(world, &fault, &slots);
}

/// A node writes a service entry its application never registered (a write behind the
/// registry's back): every node lists an instance nobody registered, and the invariant says so
/// once the settle bound has passed — not before, and not for the registered ones.
#[test]
fn the_registry_invariant_catches_an_instance_nobody_registered() {
    let mut world = lan_world(3, 8);
    let mut registry = RegistryConsistent::for_simulator(&Bounds::default());
    let (_, settle) = registry.bounds();
    apply(&mut world, &mut registry, Fault::Join(Nodes::All, 0));
    apply(
        &mut world,
        &mut registry,
        Fault::Register {
            nodes: Nodes::All,
            service: "api".into(),
            instances: 2,
        },
    );
    let clean = drive(&mut world, &mut registry, 10_000_000);
    assert!(clean.is_empty(), "a clean cluster passes: {clean:?}");

    let rogue = record_for(3, "rogue", 7).encode();
    world.request_after(
        3,
        0,
        AppRequest::Ephemeral {
            keyspace: SERVICES_KEYSPACE.into(),
            name: "rogue/7".into(),
            value: Some(rogue),
        },
    );
    let written_us = world.now_us();
    let caught = drive(&mut world, &mut registry, 60_000_000);
    assert!(!caught.is_empty(), "the rogue instance went unnoticed");
    let (at_us, message) = &caught[0];
    assert!(
        *at_us > written_us + settle.as_micros() as u64,
        "reported before the settle bound: {caught:?}"
    );
    assert!(
        message.contains("did not converge")
            && message.contains("1 extra")
            && message.contains("rogue/7 of n3"),
        "{message}"
    );
}

/// Survivors that take a minute to notice a crash keep listing the dead node's instances: the
/// invariant reports it once the death bound (derived from the detection bound) has passed.
#[test]
fn the_registry_invariant_catches_a_dead_life_still_listed() {
    let slow_detector = MembershipConfig {
        suspect_to_down_after: Duration::from_secs(60),
        suspect_to_down_min: Duration::from_secs(50),
        ..MembershipConfig::development()
    };
    let scenario = Scenario::new("slow-detector")
        .nodes(8)
        .duration(Duration::from_secs(30))
        .membership(slow_detector)
        .at(
            Duration::from_secs(2),
            Fault::Register {
                nodes: Nodes::All,
                service: "api".into(),
                instances: 1,
            },
        )
        .at(Duration::from_secs(8), Fault::Crash(Nodes::One(3)));
    let (death, _) = RegistryConsistent::for_simulator(&scenario.bounds).bounds();
    let report = run(&scenario, 11, &RunOptions::default());
    assert!(!report.passed);
    let registry = report
        .invariants
        .iter()
        .find(|i| i.name == "registry-consistent")
        .expect("the registry invariant runs when the scenario registers");
    let first = registry.first.first().expect("a violation");
    assert!(
        first.at_secs > 8.0 + death.as_secs_f64(),
        "reported before the death bound: {first:?}"
    );
    assert!(
        first.message.contains("n3 gen")
            && first.message.contains("crashed at 8.000s")
            && first.message.contains("list its instances"),
        "{}",
        first.message
    );
}

/// An invariant told the reaper is far quicker than the cores' (1 s and a tight convergence
/// bound instead of 30 s): the crashed node's entries are still in the keyspaces when it expects
/// them gone, and it says so.
#[test]
fn the_registry_invariant_catches_entries_left_unreaped() {
    let impatient = || {
        let bounds = Bounds {
            convergence: Duration::from_secs(1),
            ..Bounds::default()
        };
        let ephemeral = EphemeralConfig {
            reap_after: Duration::from_secs(1),
            ..EphemeralConfig::default()
        };
        RegistryConsistent::new(&bounds, &ReplicationConfig::default(), &ephemeral)
    };
    let scenario = Scenario::new("impatient-reaper")
        .nodes(8)
        .duration(Duration::from_secs(32))
        .at(
            Duration::from_secs(2),
            Fault::Register {
                nodes: Nodes::All,
                service: "api".into(),
                instances: 1,
            },
        )
        .at(Duration::from_secs(5), Fault::Crash(Nodes::One(6)))
        .invariant(move || Box::new(impatient()));
    let (death, _) = impatient().bounds();
    let reap = impatient().reap_bound();
    let report = run(&scenario, 4, &RunOptions::default());
    let outcomes: Vec<_> = report
        .invariants
        .iter()
        .filter(|i| i.name == "registry-consistent")
        .collect();
    assert_eq!(outcomes.len(), 2, "the default one and the impatient one");
    assert_eq!(outcomes[0].violations, 0, "{:?}", outcomes[0].first);
    let unreaped = outcomes[1]
        .first
        .iter()
        .find(|v| v.message.contains("still in the keyspace"))
        .expect("the lingering entries are reported");
    assert!(
        unreaped.at_secs > 5.0 + (death + reap).as_secs_f64(),
        "{unreaped:?}"
    );
    assert!(unreaped.message.starts_with("n6 gen"), "{unreaped:?}");
}

/// A plain publication is sent at most once: a publisher that stops with it still in its
/// outbox takes it along, and `pubsub-delivery` owes it to nobody (`--scenario chaos --nodes
/// 32 --seed 160`: the publisher crashed 0.8 ms after publishing). The same publication from
/// a publisher that runs on reaches the subscriber.
#[test]
fn a_plain_publication_its_publisher_took_down_unsent_is_owed_to_nobody() {
    let publish_then = |crash: bool| {
        let mut world = lan_world(5, 3);
        let mut delivery = Delivery::new();
        apply(&mut world, &mut delivery, Fault::Join(Nodes::All, 0));
        let subscribe = Fault::Subscribe {
            nodes: Nodes::One(2),
            pattern: "orders.*".into(),
        };
        apply(&mut world, &mut delivery, subscribe);
        drive(&mut world, &mut delivery, 8_000_000);
        let id = world.publish(0, "orders.created", false).expect("n0 runs");
        assert_eq!(world.publications()[id as usize].route, vec![2]);
        if crash {
            apply(&mut world, &mut delivery, Fault::Crash(Nodes::One(0)));
        }
        drive(&mut world, &mut delivery, 20_000_000);
        let delivered = !world.publications()[id as usize].deliveries.is_empty();
        (delivered, delivery.at_end(&world))
    };
    assert_eq!(publish_then(false), (true, Ok(())), "the publisher ran on");
    assert_eq!(publish_then(true), (false, Ok(())), "the publisher crashed");
}
