//! How we know the checks can fail: for every invariant, a deliberately broken engine variant
//! (a `FaultSwitch`, compiled only into test builds through the `fault-injection` feature) that
//! fails it, and the same run passing with the switch off. The table is in the crate docs.
//!
//! A switch is on for the thread that engaged it, so these runs use `run` on the test's own
//! thread, never `sweep`.

use foundation_core::fault_switch::{self, FaultSwitch};
use foundation_sim::faults::{millis, secs, Fault, Identity, Nodes};
use foundation_sim::report::RunReport;
use foundation_sim::scenario::{file, run, standard, Check, RunOptions, Scenario};
use foundation_sim::storage::StorageConfig;
use foundation_sim::writes::Writes;

/// Runs `scenario` with `seed` and `switch` on.
fn broken(switch: FaultSwitch, scenario: &Scenario, seed: u64) -> RunReport {
    let _on = fault_switch::engage(switch);
    run(scenario, seed, &RunOptions::default())
}

/// `invariant` fails with `switch` on (for `no-panics`: the run panicked) and the same run passes
/// with it off. Returns the first violation.
fn caught(switch: FaultSwitch, scenario: &Scenario, seed: u64, invariant: &str) -> String {
    let first = caught_with_switch_on(switch, scenario, seed, invariant);
    let sound = run(scenario, seed, &RunOptions::default());
    assert!(
        sound.passed,
        "{switch:?} off: {} seed {seed} failed: {:?} {:?}",
        scenario.name, sound.invariants, sound.panic
    );
    first
}

/// `invariant` fails with `switch` on in some seed of `seeds`, and that seed's run passes with
/// it off; returns the seed. For bugs only some runs meet: a change elsewhere in the engine
/// reshuffles which seeds those are, while the check must still catch the bug in a few.
fn caught_in_one_of(
    switch: FaultSwitch,
    scenario: &Scenario,
    seeds: std::ops::RangeInclusive<u64>,
    invariant: &str,
) -> u64 {
    for seed in seeds.clone() {
        let report = broken(switch, scenario, seed);
        let failed = report
            .invariants
            .iter()
            .any(|i| i.name == invariant && i.violations > 0);
        if failed {
            let sound = run(scenario, seed, &RunOptions::default());
            assert!(
                sound.passed,
                "{switch:?} off: {} seed {seed} failed: {:?} {:?}",
                scenario.name, sound.invariants, sound.panic
            );
            eprintln!("{switch:?} caught by {invariant} in seed {seed}");
            return seed;
        }
    }
    panic!(
        "{switch:?}: {invariant} failed in none of {} seeds {seeds:?}",
        scenario.name
    );
}

/// `invariant` fails with `switch` on; for runs whose switch-off twin a scenario test already
/// runs (named at the call). Returns the first violation.
fn caught_with_switch_on(
    switch: FaultSwitch,
    scenario: &Scenario,
    seed: u64,
    invariant: &str,
) -> String {
    let report = broken(switch, scenario, seed);
    let first = match invariant {
        "no-panics" => report.panic.clone(),
        name => report
            .invariants
            .iter()
            .find(|i| i.name == name && i.violations > 0)
            .and_then(|i| i.first.first())
            .map(|v| format!("at {:.3}s: {}", v.at_secs, v.message)),
    };
    let Some(first) = first else {
        panic!(
            "{switch:?}: {invariant} did not fail in {} seed {seed}: {:?} {:?}",
            scenario.name, report.invariants, report.panic
        );
    };
    // Shown with --nocapture: what the check says about the bug.
    eprintln!("{switch:?} caught by {invariant}: {first}");
    first
}

/// `nodes` nodes; the last one crashes at 3 s.
fn one_crash(nodes: usize, duration_secs: u64) -> Scenario {
    Scenario::new("one-crash")
        .nodes(nodes)
        .duration(secs(duration_secs))
        .at(secs(3), Fault::Crash(Nodes::One(nodes - 1)))
}

/// The scenario file `name` of `sim/scenarios/`.
fn shipped(name: &str) -> Scenario {
    let path = format!("{}/scenarios/{name}.toml", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect("a shipped scenario file");
    file::parse(&text, &path).expect("the file parses")
}

/// The 1 s partition of issue 21, item 6 (`sim/scenarios/short-partition.toml`).
fn short_partition() -> Scenario {
    shipped("short-partition")
}

#[test]
fn core_invariants_catch_a_member_table_that_disagrees_with_swim() {
    let scenario = one_crash(6, 8);
    caught(
        FaultSwitch::ViewKeepsDownMembers,
        &scenario,
        1,
        "core-invariants",
    );
}

#[test]
fn transport_limits_catch_full_datagrams_without_room_for_framing() {
    // At 64 nodes the membership feed a joiner gets fills a whole packet.
    let scenario = standard::by_name("mass-join", 64)
        .expect("a standard scenario")
        .duration(secs(3));
    caught(
        FaultSwitch::PacketSizeWithoutFraming,
        &scenario,
        1,
        "transport-limits",
    );
}

#[test]
fn convergence_catches_sides_that_never_contact_the_members_they_declared_down() {
    let (minority, majority) = (
        Nodes::Range { start: 5, end: 8 },
        Nodes::Range { start: 0, end: 5 },
    );
    let scenario = Scenario::new("split-and-heal")
        .nodes(8)
        .duration(secs(28))
        .at(secs(4), Fault::Partition(minority, majority))
        .at(secs(12), Fault::Heal)
        .check(Check::ConvergesWithin(secs(15)));
    caught(
        FaultSwitch::NoAnnounceToDownMembers,
        &scenario,
        1,
        "convergence",
    );
}

#[test]
fn crash_detection_catches_suspicions_that_never_expire() {
    let scenario = one_crash(6, 15);
    caught(
        FaultSwitch::SuspicionNeverExpires,
        &scenario,
        1,
        "crash-detection",
    );
}

#[test]
fn crash_detection_catches_suspicions_that_never_expire_on_a_stalled_survivor() {
    // The survivor's stalls stop its clock, not forever: alone with the crashed node, it must
    // still declare it by its own suspicion.
    let scenario = shipped("stalled-observer-crash");
    caught(
        FaultSwitch::SuspicionNeverExpires,
        &scenario,
        1,
        "crash-detection",
    );
}

#[test]
fn crash_detection_catches_a_leave_recorded_as_a_failure_and_never_corrected() {
    // A survivor's word on a leaver waits for the notice: one that never corrects a failure
    // recorded first still fails, in the seeds where SWIM's packet overtakes the notice.
    let scenario = shipped("leave-notice-overtaken");
    caught_in_one_of(
        FaultSwitch::LeaveNeverCorrectsFailure,
        &scenario,
        1..=8,
        "crash-detection",
    );
}

#[test]
fn no_false_positives_catches_a_suspect_never_told_again_after_a_short_partition() {
    // Since the direct checks tell a suspect at once, most suspicions across this short cut are
    // refuted before any reminder: only in a few seeds does telling it again save the member.
    caught_in_one_of(
        FaultSwitch::SuspectNeverToldAgain,
        &short_partition(),
        1..=24,
        "no-false-positives",
    );
}

#[test]
fn no_false_positives_catches_a_suspicion_made_while_cut_off_that_nobody_retold() {
    let scenario = shipped("isolate-then-stall");
    caught_in_one_of(
        FaultSwitch::NoRetell,
        &scenario,
        1..=24,
        "no-false-positives",
    );
}

#[test]
fn no_false_positives_catches_a_forged_closed_port_taken_at_its_word() {
    let scenario = shipped("detect-process-crash");
    caught(
        FaultSwitch::ClosedPortTrusted,
        &scenario,
        1,
        "no-false-positives",
    );
}

#[test]
fn no_needless_renewal_catches_a_member_that_renews_when_merely_suspected() {
    caught(
        FaultSwitch::RenewWhenSuspected,
        &short_partition(),
        2,
        "no-needless-renewal",
    );
}

#[test]
fn no_panics_catches_a_panic_on_a_repeated_leave_notice() {
    let scenario = Scenario::new("one-stop")
        .nodes(5)
        .duration(secs(8))
        .at(secs(3), Fault::Stop(Nodes::One(4)));
    caught(FaultSwitch::PanicOnRepeatedLeave, &scenario, 1, "no-panics");
}

#[test]
fn registry_consistent_catches_a_reaper_that_never_deletes() {
    // Switched off, this run is `registry_partition_holds` (8 nodes, seed 3).
    let scenario = standard::by_name("registry-partition", 8).expect("a standard scenario");
    caught_with_switch_on(
        FaultSwitch::ReaperNeverDeletes,
        &scenario,
        3,
        "registry-consistent",
    );
}

#[test]
fn registry_consistent_catches_a_directory_that_lists_lives_held_failed() {
    // Switched off, this run is in `a_node_that_joined_through_a_life_held_failed_drops_it_…`
    // (tests/scenarios.rs, seed 1), where a node that never had the news of a death is excused:
    // the nodes that had it must still never list the life again.
    let scenario = shipped("restart-through-declared-failed");
    let first = caught_with_switch_on(
        FaultSwitch::DirectoryShowsFailedLives,
        &scenario,
        1,
        "registry-consistent",
    );
    assert!(first.contains("list its instances again"), "{first}");
}

#[test]
fn replicas_converge_catches_a_digest_answered_from_one_op_too_far() {
    // n5 writes one key while cut off for 0.6 s (too short for anyone to be declared failed,
    // so no full state follows): only the op path can repair the gap.
    let rest = Nodes::Range { start: 0, end: 5 };
    let scenario = Scenario::new("one-op-gap")
        .nodes(6)
        .duration(secs(16))
        .at(secs(3), Fault::Partition(Nodes::One(5), rest))
        .at(
            millis(3_200),
            Fault::Write(Writes::new(Nodes::One(5), 0..1)),
        )
        .at(millis(3_600), Fault::Heal)
        .check(Check::ReplicasConvergeWithin(secs(10)));
    caught(
        FaultSwitch::DigestAnswerOffByOne,
        &scenario,
        1,
        "replicas-converge",
    );
}

#[test]
fn acknowledged_writes_present_catches_acks_without_applying() {
    // n0's acknowledged writes, then its crash before any anti-entropy round: only the nodes
    // that acknowledged can still hold them.
    let scenario = Scenario::new("acked-then-crash")
        .nodes(5)
        .duration(secs(10))
        .at(
            secs(3),
            Fault::Write(Writes::new(Nodes::One(0), 0..5).acked()),
        )
        .at(millis(3_300), Fault::Crash(Nodes::One(0)));
    caught(
        FaultSwitch::AckWithoutApplying,
        &scenario,
        1,
        "acknowledged-writes-present",
    );
}

/// `sim/scenarios/whole-cluster-crash.toml`: nodes on disks, a stream of writes (a third of
/// them acked), and every node crashing at once, then restarting from its disk.
fn whole_cluster_crash() -> Scenario {
    shipped("whole-cluster-crash")
}

#[test]
fn acknowledged_writes_present_catches_acks_before_durable_across_a_whole_cluster_crash() {
    // With the switch, replicas acknowledge and writers answer before their batch synced: the
    // crash of every node loses writes that had returned. Without it, what returned was synced
    // on some disk the cluster comes back with.
    // Only writes acknowledged shortly before the crash are owed: some seeds have none. The
    // clock ceiling and the stored agreed membership together moved which seeds those are:
    // 17 of seeds 1..=60 catch it, the first 11 (none of 1..=8, the range before).
    caught_in_one_of(
        FaultSwitch::AckBeforeDurable,
        &whole_cluster_crash(),
        1..=24,
        "acknowledged-writes-present",
    );
}

#[test]
fn acknowledged_writes_present_catches_a_majority_ack_lost_with_the_whole_cluster() {
    // n0's acked writes reach a majority within milliseconds, long before a 20 ms sync; every
    // node crashes at 10 ms. With the switch the majority acked from memory, so the writes are
    // owed and lost; without it nobody acked yet, so nothing returned and nothing is owed.
    // n0 wrote half a second before, so its clock ceiling is fresh and the asks go at once
    // (after a lease without writes they would wait for the 20 ms sync, past the crash).
    let scenario = Scenario::new("majority-then-whole-cluster-crash")
        .nodes(5)
        .duration(secs(12))
        .storage(StorageConfig::new(millis(20)))
        .at(
            millis(2_500),
            Fault::Write(Writes::new(Nodes::One(0), 5..6)),
        )
        .at(
            secs(3),
            Fault::Write(Writes::new(Nodes::One(0), 0..5).acked()),
        )
        .at(millis(3_010), Fault::Crash(Nodes::All))
        .at(secs(5), Fault::Restart(Nodes::All, Identity::Same));
    let first = caught(
        FaultSwitch::AckBeforeDurable,
        &scenario,
        1,
        "acknowledged-writes-present",
    );
    assert!(first.contains("acked by a majority"), "{first}");
}

/// `sim/scenarios/clock-ahead-restarts.toml`.
fn clock_ahead_restarts() -> Scenario {
    shipped("clock-ahead-restarts")
}

/// The first violation of `invariant` in `report`, if it failed.
fn first_violation(report: &RunReport, invariant: &str) -> Option<String> {
    let outcome = report.invariants.iter().find(|i| i.name == invariant)?;
    let first = outcome.first.first()?;
    Some(format!("at {:.3}s: {}", first.at_secs, first.message))
}

#[test]
fn stamps_follow_lives_catches_a_restart_that_ignores_its_clock_ceiling() {
    // n0's clock runs 5 s ahead, so every node stamps by it. A node whose disk refuses its
    // writes for half a second before it crashes has pushed writes its disk never kept; it
    // restarts cut off from its peers. With the switch, its clock starts from its disk's
    // entries, and the writes it makes alone, sent once the cut heals, are stamped below the
    // ones it lost. The off runs show the ceiling keeping every life above the last.
    let scenario = clock_ahead_restarts();
    let seeds = 1..=10u64;
    let caught: Vec<u64> = seeds
        .clone()
        .filter(|&seed| {
            let report = broken(FaultSwitch::RestartIgnoresClockCeiling, &scenario, seed);
            let first = first_violation(&report, "stamps-follow-lives");
            if let Some(first) = &first {
                eprintln!("RestartIgnoresClockCeiling, seed {seed}: {first}");
            }
            first.is_some()
        })
        .collect();
    for seed in seeds.clone() {
        let sound = run(&scenario, seed, &RunOptions::default());
        assert!(
            sound.passed,
            "switch off: {} seed {seed} failed: {:?} {:?}",
            scenario.name, sound.invariants, sound.panic
        );
        assert!(sound.measurements.stamps_checked > 1_000, "seed {seed}");
    }
    assert!(
        caught.len() * 3 >= seeds.count() * 2,
        "stamps-follow-lives caught the switch only in seeds {caught:?}"
    );
}

#[test]
fn seen_backed_by_data_catches_a_full_state_marked_seen_but_not_merged() {
    // n4 comes back empty and pulls: its answer is a full state (cheaper than 25 ops).
    let scenario = Scenario::new("restart-and-pull")
        .nodes(5)
        .duration(secs(12))
        .at(secs(3), Fault::Write(Writes::new(Nodes::All, 0..5)))
        .at(secs(4), Fault::Crash(Nodes::One(4)))
        .at(secs(6), Fault::Restart(Nodes::One(4), Identity::Same));
    caught(
        FaultSwitch::SeenWithoutApplying,
        &scenario,
        1,
        "seen-backed-by-data",
    );
}

#[test]
fn causal_order_catches_a_clock_that_does_not_advance_on_receive() {
    let scenario = standard::by_name("skewed-writes", 8).expect("a standard scenario");
    caught(FaultSwitch::HlcIgnoresReceive, &scenario, 1, "causal-order");
}

#[test]
fn departed_origins_retired_catches_origins_never_retired() {
    // Switched off, this run is `compaction_retires_departed_writers_and_collects_tombstones`
    // (8 nodes, seed 1).
    let scenario = standard::by_name("compaction", 8).expect("a standard scenario");
    caught_with_switch_on(
        FaultSwitch::NeverRetire,
        &scenario,
        1,
        "departed-origins-retired",
    );
}

#[test]
fn rpc_calls_catch_a_router_that_retries_calls_whose_handler_may_have_run() {
    // Only a call lost after its handler ran shows the second run: most seeds have one.
    let scenario = standard::by_name("rpc-partition", 8).expect("a standard scenario");
    caught_in_one_of(
        FaultSwitch::RetryEveryLostCall,
        &scenario,
        1..=12,
        "rpc-calls",
    );
}

#[test]
fn rpc_calls_catch_attempts_that_overrun_the_call_deadline() {
    // Switched off, this run is `rpc_partition_holds` (8 nodes, seed 1).
    let scenario = standard::by_name("rpc-partition", 8).expect("a standard scenario");
    caught_with_switch_on(
        FaultSwitch::BudgetIgnoresDeadline,
        &scenario,
        1,
        "rpc-calls",
    );
}

#[test]
fn pubsub_delivery_catches_reliable_messages_never_resent() {
    // Switched off, this run is `pubsub_partition_holds` (8 nodes, seed 1).
    let scenario = standard::by_name("pubsub-partition", 8).expect("a standard scenario");
    caught_with_switch_on(
        FaultSwitch::ReliableNeverResends,
        &scenario,
        1,
        "pubsub-delivery",
    );
}

#[test]
fn pubsub_delivery_catches_a_receiver_that_skips_gaps() {
    // Switched off, this run is `pubsub_partition_holds` (8 nodes, seed 1).
    let scenario = standard::by_name("pubsub-partition", 8).expect("a standard scenario");
    caught_with_switch_on(
        FaultSwitch::ReliableAcceptsGaps,
        &scenario,
        1,
        "pubsub-delivery",
    );
}

#[test]
fn pubsub_delivery_catches_an_outbox_without_a_bound() {
    // Switched off, this run is `pubsub_burst_holds` (8 nodes, seed 1).
    let scenario = standard::by_name("pubsub-burst", 8).expect("a standard scenario");
    caught_with_switch_on(
        FaultSwitch::OutboxIgnoresBound,
        &scenario,
        1,
        "pubsub-delivery",
    );
}

#[test]
fn pubsub_delivery_catches_an_outbox_that_drops_batched_plain_messages() {
    // Switched off, this run is `pubsub_burst_holds` (8 nodes, seed 1); caught: plain
    // publications lost on a quiet network from a publisher that ran on.
    let scenario = standard::by_name("pubsub-burst", 8).expect("a standard scenario");
    let first = caught_with_switch_on(
        FaultSwitch::OutboxDropsBatchedPlainMessages,
        &scenario,
        1,
        "pubsub-delivery",
    );
    assert!(first.contains("reliable=false"), "{first}");
}

#[test]
fn supervisor_intensity_catches_a_supervisor_that_never_gives_up() {
    // Switched off, this run is `agents_partition_holds` in tests/agents.rs (8 nodes, seed 1).
    let scenario = standard::by_name("agents-partition", 8).expect("a standard scenario");
    caught_with_switch_on(
        FaultSwitch::SupervisorNeverGivesUp,
        &scenario,
        1,
        "supervisor-intensity",
    );
}

#[test]
fn agents_vanish_catches_a_directory_that_shows_dead_lives() {
    // Switched off, this run is `agents_crash_holds` in tests/agents.rs (8 nodes, seed 1).
    let scenario = standard::by_name("agents-crash", 8).expect("a standard scenario");
    caught_with_switch_on(
        FaultSwitch::AgentDirectoryShowsDeadLives,
        &scenario,
        1,
        "agents-vanish",
    );
}

#[test]
fn agent_requests_catch_requests_that_never_expire() {
    // Switched off, this run is `agents_partition_holds` in tests/agents.rs (8 nodes, seed 1).
    let scenario = standard::by_name("agents-partition", 8).expect("a standard scenario");
    caught_with_switch_on(
        FaultSwitch::AgentRequestsNeverExpire,
        &scenario,
        1,
        "agent-requests",
    );
}

#[test]
fn cache_single_flight_catches_an_owner_that_grants_every_caller() {
    let sound = foundation_sim::cache::run_churn(3).expect("runs");
    assert!(sound.passed(), "{:?}", sound.violations);
    let _on = fault_switch::engage(FaultSwitch::CacheFlightAdmitsAll);
    let broken = foundation_sim::cache::run_churn(3).expect("runs");
    let first = broken.first("cache-single-flight");
    assert!(first.is_some(), "not caught: {broken:?}");
    eprintln!("CacheFlightAdmitsAll caught by cache-single-flight: {first:?}");
}

#[test]
fn cache_near_fresh_catches_a_reader_that_ignores_invalidations() {
    let sound = foundation_sim::cache::run_churn(3).expect("runs");
    assert!(sound.passed(), "{:?}", sound.violations);
    let _on = fault_switch::engage(FaultSwitch::CacheNearIgnoresInvalidation);
    let broken = foundation_sim::cache::run_churn(3).expect("runs");
    let first = broken.first("cache-near-fresh");
    assert!(first.is_some(), "not caught: {broken:?}");
    eprintln!("CacheNearIgnoresInvalidation caught by cache-near-fresh: {first:?}");
}

#[test]
fn cache_one_compute_catches_a_quorum_rule_without_its_fence() {
    let sound = foundation_sim::cache::run_partition(SEED_QUORUM).expect("runs");
    assert!(sound.passed(), "{:?}", sound.violations);
    let _on = fault_switch::engage(FaultSwitch::CacheQuorumNoFence);
    let broken = foundation_sim::cache::run_partition(SEED_QUORUM).expect("runs");
    let first = broken.first(foundation_sim::cache::QUORUM_CHECK);
    assert!(first.is_some(), "not caught: {broken:?}");
    eprintln!("CacheQuorumNoFence caught by cache-one-compute: {first:?}");
}

/// A seed of `cache-partition` whose run the planted fault breaks.
const SEED_QUORUM: u64 = 1;
