//! The standard scenarios, at any cluster size.

use std::time::Duration;

use super::{Check, Scenario};
use crate::faults::{millis, secs, Fault, Identity, Nodes};
use crate::network::LinkModel;

/// Names of the standard scenarios.
pub const NAMES: [&str; 9] = [
    "steady",
    "partition-heal",
    "flaky-network",
    "crash-restart",
    "slow-node",
    "mass-join",
    "rolling-restart",
    "registry-partition",
    "registry-churn",
];

/// The standard scenario `name` with `nodes` nodes.
pub fn by_name(name: &str, nodes: usize) -> Option<Scenario> {
    let scenario = match name {
        "steady" => steady(),
        "partition-heal" => partition_heal(),
        "flaky-network" => flaky_network(),
        "crash-restart" => crash_restart(),
        "slow-node" => slow_node(),
        "mass-join" => mass_join(),
        "registry-partition" => registry_partition(),
        "registry-churn" => registry_churn(),
        "rolling-restart" => return Some(rolling_restart(nodes)),
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

/// The service registry through a partition longer than the reaper's patience, a crash, a
/// restart with the same id and graceful stops (checked by `registry-consistent`).
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
        .describe("services on every node; 40 % cut off for 38 s (both sides reap the other's entries), heal; a crash, a restart with the same id that registers again, a deregistration, graceful stops")
        .duration(secs(125))
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
        .at(secs(102), Fault::Crash(Nodes::One(0)))
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
