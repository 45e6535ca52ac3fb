//! The standard scenarios, at any cluster size.

use std::time::Duration;

use foundation_core::replication::ReplicationConfig;

use super::{Check, Scenario};
use crate::agents::{AgentGroup, AgentMessages};
use crate::faults::{millis, secs, Fault, Identity, Nodes};
use crate::invariants::registry::RegistryConsistent;
use crate::invariants::replication::OriginsRetired;
use crate::invariants::Bounds;
use crate::network::LinkModel;
use crate::pubsub::Publishes;
use crate::rpc::Calls;
use crate::writes::{Workload, Writes};

/// Names of the standard scenarios.
pub const NAMES: [&str; 21] = [
    "steady",
    "partition-heal",
    "flaky-network",
    "crash-restart",
    "slow-node",
    "mass-join",
    "rolling-restart",
    "registry-partition",
    "registry-churn",
    "rpc-partition",
    "pubsub-partition",
    "pubsub-burst",
    "split-writes",
    "replicated-chaos",
    "lagging-replica",
    "compaction",
    "skewed-writes",
    "agents-partition",
    "agents-crash",
    "cache-churn",
    "chaos",
];

/// The standard scenario `name` with `nodes` nodes.
pub fn by_name(name: &str, nodes: usize) -> Option<Scenario> {
    let scenario = match name {
        "steady" => steady(),
        "cache-churn" => {
            let mut scenario = crate::cache::churn_scenario().ok()?;
            scenario.replay_source = "--scenario cache-churn".into();
            scenario
        }
        "partition-heal" => partition_heal(),
        "flaky-network" => flaky_network(),
        "crash-restart" => crash_restart(),
        "slow-node" => slow_node(),
        "mass-join" => mass_join(),
        "registry-partition" => registry_partition(),
        "registry-churn" => registry_churn(),
        "rpc-partition" => rpc_partition(),
        "pubsub-partition" => pubsub_partition(),
        "pubsub-burst" => pubsub_burst(),
        "rolling-restart" => return Some(rolling_restart(nodes)),
        "split-writes" => split_writes(),
        "replicated-chaos" => replicated_chaos(),
        "lagging-replica" => return Some(lagging_replica(nodes)),
        "compaction" => return Some(compaction(nodes)),
        "skewed-writes" => skewed_writes(),
        "agents-partition" => agents_partition(),
        "agents-crash" => agents_crash(),
        "chaos" => return Some(super::chaos::scenario(nodes)),
        _ => return None,
    };
    Some(scenario.nodes(nodes))
}

fn steady() -> Scenario {
    Scenario::new("steady")
        .describe("a healthy cluster forms and stays converged; a quarter of the clocks are skewed")
        .duration(secs(40))
        .at(
            secs(5),
            Fault::ClockSkew {
                nodes: Nodes::Share {
                    from: 0.0,
                    to: 0.25,
                },
                offset_us: 250_000,
                drift_ppm: 200,
            },
        )
        .at(
            secs(5),
            Fault::ClockSkew {
                nodes: Nodes::Share {
                    from: 0.25,
                    to: 0.5,
                },
                offset_us: -250_000,
                drift_ppm: -200,
            },
        )
}

fn partition_heal() -> Scenario {
    let (minority, majority) = (
        Nodes::Named("minority".into()),
        Nodes::Named("majority".into()),
    );
    Scenario::new("partition-heal")
        .describe("40 % of the cluster is cut off for 15 s, then the network heals and the cluster must merge")
        .duration(secs(70))
        .group("majority", Nodes::Share { from: 0.0, to: 0.6 })
        .group("minority", Nodes::Share { from: 0.6, to: 1.0 })
        .at(secs(10), Fault::Partition(minority, majority))
        .at(secs(25), Fault::Heal)
        .check(Check::ConvergesWithin(secs(30)))
}

fn flaky_network() -> Scenario {
    Scenario::new("flaky-network")
        .describe(
            "30 s of 5 % loss, 2 % duplicates and 5 % reordering, then a crash on the bad network",
        )
        .duration(secs(60))
        .at(secs(10), Fault::Network(LinkModel::flaky()))
        .at(secs(20), Fault::Crash(Nodes::Share { from: 0.9, to: 1.0 }))
        .at(secs(40), Fault::Network(LinkModel::lan()))
}

fn crash_restart() -> Scenario {
    let some = Nodes::Share { from: 0.8, to: 0.9 };
    let last = Nodes::Share {
        from: 0.95,
        to: 1.0,
    };
    Scenario::new("crash-restart")
        .describe("10 % crash and come back with the same id; another 5 % crash and come back as new nodes")
        .duration(secs(70))
        .at(secs(10), Fault::Crash(some.clone()))
        .at(secs(25), Fault::Restart(some, Identity::Same))
        .at(secs(35), Fault::Crash(last.clone()))
        .at(secs(45), Fault::Restart(last, Identity::New))
}

fn slow_node() -> Scenario {
    let slow = Nodes::One(1);
    let mut scenario = Scenario::new("slow-node")
        .describe("one node has 60 ms links and stalls for 0.3 s every 3 s: it must not get healthy nodes declared failed")
        .duration(secs(50))
        .at(secs(5), Fault::Link(slow.clone(), Nodes::All, slow_link()))
        .at(secs(5), Fault::Link(Nodes::All, slow.clone(), slow_link()));
    for i in 0..10u64 {
        scenario = scenario.at(secs(8 + 3 * i), Fault::Stall(slow.clone(), millis(300)));
    }
    scenario
}

fn slow_link() -> LinkModel {
    LinkModel {
        latency: Duration::from_millis(60),
        jitter: Duration::from_millis(20),
        ..LinkModel::lan()
    }
}

fn mass_join() -> Scenario {
    Scenario::new("mass-join")
        .describe("every node joins through node 0 at the same instant; all must agree within 30 s")
        .duration(secs(40))
        .check(Check::ConvergesWithin(secs(30)))
}

/// Every node in turn leaves gracefully and comes back with the same id, 2 s apart.
fn rolling_restart(nodes: usize) -> Scenario {
    const GAP: u64 = 2_000;
    let mut scenario = Scenario::new("rolling-restart")
        .describe(
            "every node in turn leaves gracefully and restarts with the same id, one every 2 s",
        )
        .nodes(nodes)
        .duration(Duration::from_millis(10_000 + GAP * nodes as u64 + 30_000));
    for slot in 0..nodes {
        let at = millis(10_000 + GAP * slot as u64);
        scenario = scenario.at(at, Fault::Stop(Nodes::One(slot))).at(
            at + millis(1_500),
            Fault::Restart(Nodes::One(slot), Identity::Same),
        );
    }
    scenario
}

/// Both sides of a partition write, delete and overwrite the same keys; after the heal every
/// replica must hold the last writer's value of each key, and no write that must survive is
/// lost.
fn split_writes() -> Scenario {
    let (left, right) = (Nodes::Named("left".into()), Nodes::Named("right".into()));
    Scenario::new("split-writes")
        .describe("both sides of a 60/40 partition write, overwrite and delete the same keys for 15 s; after the heal every replica holds the same data and no acknowledged write is lost")
        .duration(secs(70))
        .group("left", Nodes::Share { from: 0.0, to: 0.6 })
        .group("right", Nodes::Share { from: 0.6, to: 1.0 })
        .at(secs(5), Fault::Write(Writes::new(Nodes::One(0), 0..30).acked()))
        .at(secs(10), Fault::Partition(left.clone(), right.clone()))
        .at(secs(13), Fault::Write(Writes::new(left, 10..40)))
        .at(secs(14), Fault::Write(Writes::new(right.clone(), 20..50).acked()))
        .at(secs(15), Fault::Delete(Writes::new(right, 5..15)))
        .at(
            secs(11),
            Fault::Workload(
                Workload::new(Nodes::All, 30.0, 60, secs(13))
                    .deletes(0.1)
                    .acked(0.2),
            ),
        )
        .at(secs(25), Fault::Heal)
        .check(Check::ConvergesWithin(secs(30)))
}

/// Random writes and deletes on every node over a lossy, duplicating, reordering network while
/// nodes crash, stall and restart (as themselves and as new nodes).
fn replicated_chaos() -> Scenario {
    let crashed = Nodes::Share { from: 0.1, to: 0.2 };
    let replaced = Nodes::Share { from: 0.8, to: 0.9 };
    Scenario::new("replicated-chaos")
        .describe("40 s of random writes (15 % deletes, 25 % acknowledged) on every node over a flaky network, with crashes, a stall and restarts as the same and as new nodes")
        .duration(secs(80))
        .at(secs(5), Fault::Network(LinkModel::flaky()))
        .at(
            secs(5),
            Fault::Workload(
                Workload::new(Nodes::All, 40.0, 100, secs(40))
                    .deletes(0.15)
                    .acked(0.25)
                    .value_size(32),
            ),
        )
        .at(secs(12), Fault::Crash(crashed.clone()))
        .at(secs(16), Fault::Stall(Nodes::One(1), millis(2_000)))
        .at(secs(22), Fault::Restart(crashed, Identity::Same))
        .at(secs(28), Fault::Crash(replaced.clone()))
        .at(secs(36), Fault::Restart(replaced, Identity::New))
        .at(secs(45), Fault::Network(LinkModel::lan()))
}

/// One node is cut off and another crashed while two writers each make more updates than the
/// op log keeps (1024 per origin): both can only catch up through full states (large enough for
/// the bulk channel). Meant for 4 or more nodes.
fn lagging_replica(nodes: usize) -> Scenario {
    let last = nodes.saturating_sub(1);
    let laggard = Nodes::One(last);
    let crashed = Nodes::One(last.saturating_sub(1));
    let rest = Nodes::Range {
        start: 0,
        end: last,
    };
    Scenario::new("lagging-replica")
        .describe("a node cut off and a node crashed for 24 s or more while two writers make 2000 updates each (over the 1024-op log) of 100-byte values on 800 keys; both catch up from full states")
        .nodes(nodes)
        .duration(secs(70))
        .at(secs(3), Fault::Write(Writes::new(Nodes::All, 0..5)))
        // The crash comes first, so the node about to be cut off sees it too: 4 s is enough to
        // detect it at 16 nodes (at 64 it is not), with the last call's extra round trip.
        .at(secs(5), Fault::Crash(crashed.clone()))
        .at(secs(9), Fault::Partition(laggard, rest))
        .at(
            secs(10),
            Fault::Workload(Workload::new(Nodes::List(vec![0, 1]), 200.0, 800, secs(20)).value_size(96)),
        )
        .at(secs(33), Fault::Heal)
        .at(secs(33), Fault::Restart(crashed, Identity::Same))
        .check(Check::ConvergesWithin(secs(30)))
}

/// Replication settings of the compaction scenario: tombstones may go after 5 s, a member not
/// alive for 10 s is gone for good.
pub fn compaction_config() -> ReplicationConfig {
    ReplicationConfig {
        tombstone_ttl: secs(5),
        departed_after: secs(10),
        ..ReplicationConfig::default()
    }
}

/// Every node writes; then one leaves for good, one crashes for good and one restarts: with a
/// short `departed_after`, their origins must be retired everywhere (a new epoch), tombstones
/// collected, and the replicas stay equal throughout. Meant for 4 to about 16 nodes: retiring
/// waits for a digest from every live member in the current epoch, and with one random digest
/// per node per round that takes about N·ln N rounds (some 5 minutes at 64 nodes), beyond the
/// bound checked here.
fn compaction(nodes: usize) -> Scenario {
    let config = compaction_config();
    let last = nodes.saturating_sub(1);
    let (leaver, crasher) = (Nodes::One(last), Nodes::One(last.saturating_sub(1)));
    let restarted = Nodes::One(last.saturating_sub(2));
    // Departure is declared after `departed_after`; detection and agreeing on every member's
    // digest take a few more rounds.
    let retired_within = config.departed_after + secs(15) + config.anti_entropy_interval * 10;
    Scenario::new("compaction")
        .describe("with departed_after 10 s: one node leaves and one crashes for good, one restarts; their origins are retired everywhere, tombstones collected, replicas equal")
        .nodes(nodes)
        .duration(secs(75))
        .replication(config)
        .at(secs(3), Fault::Write(Writes::new(Nodes::All, 0..5)))
        .at(
            secs(5),
            Fault::Workload(Workload::new(Nodes::All, 30.0, 50, secs(20)).deletes(0.3)),
        )
        .at(secs(12), Fault::Stop(leaver))
        .at(secs(12), Fault::Crash(crasher))
        .at(secs(15), Fault::Crash(restarted.clone()))
        .at(secs(18), Fault::Restart(restarted, Identity::Same))
        .invariant(move || Box::new(OriginsRetired::new(retired_within)))
}

/// Clocks a quarter of a second ahead and behind (and drifting) while every node overwrites and
/// deletes the same few keys, several times a second: a node whose clock is behind often writes
/// a key right after applying a write of it stamped ahead of its own clock. Its write must still
/// win (`causal-order`: the hybrid logical clock moves past every receive), and the replicas
/// agree on the last writer.
fn skewed_writes() -> Scenario {
    let skew = |from: f64, to: f64, offset_us: i64, drift_ppm: i64| Fault::ClockSkew {
        nodes: Nodes::Share { from, to },
        offset_us,
        drift_ppm,
    };
    Scenario::new("skewed-writes")
        .describe("a quarter of the clocks 250 ms ahead, a quarter 250 ms behind, both drifting; 20 s of writes and deletes on 12 keys from every node, a stall; every write wins over what its writer had applied")
        .duration(secs(45))
        .at(secs(2), skew(0.0, 0.25, 250_000, 300))
        .at(secs(2), skew(0.25, 0.5, -250_000, -300))
        .at(
            secs(5),
            Fault::Workload(
                Workload::new(Nodes::All, 40.0, 12, secs(20))
                    .deletes(0.2)
                    .acked(0.1),
            ),
        )
        .at(secs(12), Fault::Stall(Nodes::One(1), millis(1_500)))
}

/// When the last life of `registry_partition` ends.
const REGISTRY_PARTITION_LAST_DEATH: Duration = Duration::from_secs(102);

/// The service registry through a partition longer than the reaper's patience, a crash, a
/// restart with the same id and graceful stops (checked by `registry-consistent`). The run goes
/// on until the last death's reap bound has passed, so a reaper that never deletes fails it.
fn registry_partition() -> Scenario {
    let (minority, majority) = (
        Nodes::Named("minority".into()),
        Nodes::Named("majority".into()),
    );
    let register = |nodes: Nodes, service: &str, instances: u64| Fault::Register {
        nodes,
        service: service.into(),
        instances,
    };
    Scenario::new("registry-partition")
        .describe("services on every node; 40 % cut off for 38 s (both sides reap the other's entries), heal; a crash, a restart with the same id that registers again, a deregistration, graceful stops; until the reaper must have deleted the last dead life's entries")
        .duration(registry_reaped_by(REGISTRY_PARTITION_LAST_DEATH))
        .group("majority", Nodes::Share { from: 0.0, to: 0.6 })
        .group("minority", Nodes::Share { from: 0.6, to: 1.0 })
        .at(secs(4), register(Nodes::All, "api", 2))
        .at(secs(4), register(Nodes::Share { from: 0.0, to: 0.5 }, "billing", 1))
        .at(secs(12), Fault::Partition(minority, majority))
        .at(secs(50), Fault::Heal)
        .at(secs(75), Fault::Crash(Nodes::One(1)))
        .at(secs(85), Fault::Restart(Nodes::One(1), Identity::Same))
        .at(secs(92), Fault::Deregister { nodes: Nodes::One(2), service: "billing".into() })
        .at(secs(92), register(Nodes::One(3), "api", 1))
        .at(secs(97), Fault::Stop(Nodes::One(4)))
        .at(REGISTRY_PARTITION_LAST_DEATH, Fault::Crash(Nodes::One(0)))
}

/// When `rpc_partition`'s last disturbance happens.
const RPC_PARTITION_LAST_DISTURBANCE: Duration = Duration::from_secs(44);

/// RPC calls from every node through a partition, a crash and restart, a lossy spell and a
/// stall, then a quiet stretch long enough for the registry to settle (checked by
/// `rpc-calls`: deadlines kept, no second run of a call that is not idempotent, and calls on
/// the quiet cluster succeed).
fn rpc_partition() -> Scenario {
    let (minority, majority) = (
        Nodes::Named("minority".into()),
        Nodes::Named("majority".into()),
    );
    let register = |nodes: Nodes, service: &str| Fault::Register {
        nodes,
        service: service.into(),
        instances: 1,
    };
    let settle = RegistryConsistent::for_simulator(&Bounds::default())
        .bounds()
        .1;
    let end = RPC_PARTITION_LAST_DISTURBANCE + settle + secs(10);
    let calls = |service: &str, rate: f64| {
        Fault::Calls(Calls::new(Nodes::All, service, rate, end - secs(5)))
    };
    Scenario::new("rpc-partition")
        .describe("calls from every node to a service on every node, one on half and a slow one (handlers of 20–700 ms against 500 ms deadlines); 40 % cut off for 14 s with a crash and restart inside, heal; a crash and restart, a lossy spell, a stall; then quiet until the registry must have settled, when every call must reach a handler")
        .duration(end)
        .group("majority", Nodes::Share { from: 0.0, to: 0.6 })
        .group("minority", Nodes::Share { from: 0.6, to: 1.0 })
        .at(secs(3), register(Nodes::All, "api"))
        .at(secs(3), register(Nodes::Share { from: 0.0, to: 0.5 }, "billing"))
        .at(secs(3), register(Nodes::All, "slow-report"))
        .at(secs(5), calls("api", 200.0))
        .at(secs(5), calls("billing", 100.0))
        .at(secs(5), calls("slow-report", 40.0))
        .at(secs(10), Fault::Partition(minority, majority))
        .at(secs(16), Fault::Crash(Nodes::One(3)))
        .at(secs(20), Fault::Restart(Nodes::One(3), Identity::Same))
        .at(secs(24), Fault::Heal)
        .at(secs(28), Fault::Crash(Nodes::One(1)))
        .at(secs(33), Fault::Restart(Nodes::One(1), Identity::Same))
        .at(secs(36), Fault::Network(LinkModel::flaky()))
        .at(secs(40), Fault::Network(LinkModel::lan()))
        .at(RPC_PARTITION_LAST_DISTURBANCE, Fault::Stall(Nodes::One(2), millis(1500)))
}

/// Publications from every node, half reliable, to subscribers on every node (a wildcard
/// pattern) and on a third (a literal topic), through a partition, a crash and restart, a lossy
/// spell and a stall (checked by `pubsub-delivery`).
fn pubsub_partition() -> Scenario {
    let (minority, majority) = (
        Nodes::Named("minority".into()),
        Nodes::Named("majority".into()),
    );
    let subscribe = |nodes: Nodes, pattern: &str| Fault::Subscribe {
        nodes,
        pattern: pattern.into(),
    };
    let topics = ["orders.eu.created", "orders.us.created", "audit"];
    Scenario::new("pubsub-partition")
        .describe("publications from every node, half reliable, to a wildcard subscriber on every node and a literal one on a third; 40 % cut off for 10 s, heal; a crash and restart, a lossy spell, a stall; quiet to the end")
        .duration(secs(60))
        .group("majority", Nodes::Share { from: 0.0, to: 0.6 })
        .group("minority", Nodes::Share { from: 0.6, to: 1.0 })
        .at(secs(3), subscribe(Nodes::All, "orders.*.created"))
        .at(secs(3), subscribe(Nodes::Share { from: 0.3, to: 0.65 }, "audit"))
        .at(secs(5), Fault::Publish(Publishes::new(Nodes::All, &topics, 150.0, secs(50))))
        .at(secs(12), Fault::Partition(minority, majority))
        .at(secs(22), Fault::Heal)
        .at(secs(26), Fault::Crash(Nodes::One(1)))
        .at(secs(30), Fault::Restart(Nodes::One(1), Identity::Same))
        .at(secs(34), Fault::Network(LinkModel::flaky()))
        .at(secs(38), Fault::Network(LinkModel::lan()))
        .at(secs(42), Fault::Stall(Nodes::One(2), millis(1500)))
}

/// Bursts of publications larger than an outbox holds, batched into frames and held to the
/// outbox's bound, through a partition that stops the frames to the cut-off side (checked by
/// `pubsub-delivery`, whose bounds part a batching or bound bug breaks).
fn pubsub_burst() -> Scenario {
    let (minority, majority) = (
        Nodes::Named("minority".into()),
        Nodes::Named("majority".into()),
    );
    let topics = ["burst.a", "burst.b"];
    let bursts = Publishes::new(Nodes::All, &topics, 1.0, secs(20)).bursts(1200, 1024);
    Scenario::new("pubsub-burst")
        .describe("a burst per second of 1,200 publications of 1 KiB (more than an outbox's 1 MiB) from a random node, half reliable, to subscribers on a third of the nodes; 40 % cut off for 6 s while bursts pile up, heal; quiet to the end")
        .duration(secs(32))
        .group("majority", Nodes::Share { from: 0.0, to: 0.6 })
        .group("minority", Nodes::Share { from: 0.6, to: 1.0 })
        .at(
            secs(3),
            Fault::Subscribe {
                nodes: Nodes::Share {
                    from: 0.3,
                    to: 0.65,
                },
                pattern: "burst.*".into(),
            },
        )
        .at(secs(5), Fault::Publish(bursts))
        .at(secs(10), Fault::Partition(minority, majority))
        .at(secs(16), Fault::Heal)
}

/// When `registry-consistent` must have seen the entries of a life that ended at `death` reaped
/// everywhere (its death bound plus its reap bound), and one more check interval to look.
fn registry_reaped_by(death: Duration) -> Duration {
    let registry = RegistryConsistent::for_simulator(&Bounds::default());
    death + registry.bounds().0 + registry.reap_bound() + Bounds::default().interval
}

/// Crashes, restarts (same and new ids), graceful stops, a stall and registrations on a lossy,
/// duplicating, reordering network (checked by `registry-consistent`).
fn registry_churn() -> Scenario {
    let last = Nodes::Share { from: 0.9, to: 1.0 };
    let middle = Nodes::Share { from: 0.3, to: 0.4 };
    let register = |nodes: Nodes, service: &str, instances: u64| Fault::Register {
        nodes,
        service: service.into(),
        instances,
    };
    Scenario::new("registry-churn")
        .describe("services on every node while nodes crash, restart with the same or a new id, stop and stall, on a network with loss, duplicates and reordering")
        .duration(secs(120))
        .at(secs(3), register(Nodes::All, "api", 2))
        .at(secs(3), register(Nodes::Share { from: 0.0, to: 0.5 }, "cache", 1))
        .at(secs(6), Fault::Network(LinkModel::flaky()))
        .at(secs(10), Fault::Crash(last.clone()))
        .at(secs(14), Fault::Stop(Nodes::One(2)))
        .at(secs(20), Fault::Restart(last, Identity::Same))
        .at(secs(24), Fault::Restart(Nodes::One(2), Identity::New))
        .at(secs(28), Fault::Crash(Nodes::One(0)))
        .at(secs(33), Fault::Deregister { nodes: Nodes::Share { from: 0.0, to: 0.25 }, service: "cache".into() })
        .at(secs(38), Fault::Restart(Nodes::One(0), Identity::Same))
        .at(secs(42), register(Nodes::Share { from: 0.5, to: 0.75 }, "api", 1))
        .at(secs(46), Fault::Stall(Nodes::One(4), millis(3_000)))
        .at(secs(52), Fault::Crash(middle.clone()))
        .at(secs(90), Fault::Restart(middle, Identity::Same))
        .at(secs(95), Fault::Network(LinkModel::lan()))
        .at(secs(98), register(Nodes::One(1), "cache", 1))
}

/// The agent groups of the agents scenarios: three workers on every node (one-for-one, 0.5 %
/// of messages make one panic), two flaky agents on a quarter of the nodes (one-for-all, each
/// instance fails after 0.4 s on average, so their supervisors soon give up), and a planner on
/// the other half that fails every 8 s on average and is restarted.
fn agent_groups(scenario: Scenario) -> Scenario {
    use foundation_core::agents::supervisor::Strategy;
    let workers = AgentGroup::new(Nodes::All, "worker", 3).failure(0.005);
    let flaky = AgentGroup::new(
        Nodes::Share {
            from: 0.0,
            to: 0.25,
        },
        "flaky",
        2,
    )
    .strategy(Strategy::OneForAll)
    .failure(0.0)
    .crash_every(millis(400));
    let planners = AgentGroup::new(Nodes::Share { from: 0.5, to: 1.0 }, "planner", 1)
        .failure(0.0)
        .crash_every(secs(8));
    scenario
        .at(secs(3), Fault::Agents(workers))
        .at(secs(3), Fault::Agents(flaky))
        .at(secs(3), Fault::Agents(planners))
}

/// Agents on every node send and request across a partition, a crash and restart inside it,
/// a replaced node and a stall (checked by `agents-vanish`, `agent-requests` and
/// `supervisor-intensity`).
fn agents_partition() -> Scenario {
    let (minority, majority) = (
        Nodes::Named("minority".into()),
        Nodes::Named("majority".into()),
    );
    let scenario = Scenario::new("agents-partition")
        .describe("supervised agents on every node (workers that panic on 0.5 % of messages, flaky ones whose supervisors give up, planners restarted now and then) exchange sends and requests with 500 ms deadlines; 40 % cut off for 12 s with a crash and restart inside, heal; a node replaced, a stall")
        .duration(secs(55))
        .group("majority", Nodes::Share { from: 0.0, to: 0.6 })
        .group("minority", Nodes::Share { from: 0.6, to: 1.0 });
    agent_groups(scenario)
        .at(
            secs(5),
            Fault::AgentMessages(AgentMessages::new(Nodes::All, 150.0, secs(45))),
        )
        .at(secs(12), Fault::Partition(minority, majority))
        .at(secs(16), Fault::Crash(Nodes::One(3)))
        .at(secs(20), Fault::Restart(Nodes::One(3), Identity::Same))
        .at(secs(24), Fault::Heal)
        .at(secs(30), Fault::Crash(Nodes::One(1)))
        .at(secs(35), Fault::Restart(Nodes::One(1), Identity::New))
        .at(secs(38), Fault::Stall(Nodes::One(2), millis(1500)))
}

/// Agents through crashes, a graceful stop, restarts as the same and as new nodes, and a lossy
/// spell: every dead life's agents must vanish from every directory within the detection bound.
fn agents_crash() -> Scenario {
    let crashed = Nodes::Share {
        from: 0.25,
        to: 0.4,
    };
    let replaced = Nodes::Share { from: 0.9, to: 1.0 };
    let scenario = Scenario::new("agents-crash")
        .describe("supervised agents on every node exchange messages while 15 % crash and come back, one leaves, 10 % are replaced by new nodes, and the network turns lossy for 4 s")
        .duration(secs(55));
    agent_groups(scenario)
        .at(
            secs(5),
            Fault::AgentMessages(AgentMessages::new(Nodes::All, 100.0, secs(45))),
        )
        .at(secs(10), Fault::Crash(crashed.clone()))
        .at(secs(14), Fault::Stop(Nodes::One(4)))
        .at(secs(20), Fault::Restart(crashed, Identity::Same))
        .at(secs(26), Fault::Crash(replaced.clone()))
        .at(secs(32), Fault::Restart(replaced, Identity::New))
        .at(secs(36), Fault::Network(LinkModel::flaky()))
        .at(secs(40), Fault::Network(LinkModel::lan()))
}
