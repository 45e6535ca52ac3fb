//! The standard federation scenario: three clusters in a mesh, an isolating WAN cut that
//! heals, and the crash of a cluster's first gateway.

use std::time::Duration;

use foundation_core::federation::WanTimers;
use foundation_core::identity::ClusterName;

use super::calls::CallSpec;
use super::wan::{WanCut, WanModel};
use super::{ClusterSpec, FederationScenario};
use crate::faults::{millis, secs, Fault, Nodes};
use crate::scenario::Scenario;

/// The standard federation scenarios, for `foundation sim --scenario`.
pub const NAMES: [&str; 1] = ["federation-cut-failover"];

/// The standard federation scenario named `name`.
pub fn by_name(name: &str) -> Option<FederationScenario> {
    match name {
        "federation-cut-failover" => Some(cut_and_failover()),
        _ => None,
    }
}

/// Calls from `from` to `service` of `to`, 20 a second from 4 s to 44 s, deadline 500 ms.
fn calls(from: usize, to: usize, service: &str) -> CallSpec {
    CallSpec {
        from,
        to,
        service: service.into(),
        start: secs(4),
        stop: secs(44),
        rate: 20.0,
        deadline: millis(500),
        idempotent: false,
    }
}

/// When the WAN cut isolating `east` starts and heals.
pub const CUT: (Duration, Duration) = (Duration::from_secs(10), Duration::from_millis(20_300));
/// When `west`'s first gateway crashes.
pub const GATEWAY_CRASH: Duration = Duration::from_secs(30);

fn register(slots: Vec<usize>, service: &str) -> Fault {
    Fault::Register {
        nodes: Nodes::List(slots),
        service: service.into(),
        instances: 1,
    }
}

fn cluster(
    name: &str,
    nodes: usize,
    gateways: Vec<usize>,
    exports: &[&str],
    duration: Duration,
) -> (ClusterSpec, Scenario) {
    let scenario = Scenario::new(name).nodes(nodes).duration(duration);
    let spec = ClusterSpec {
        name: ClusterName::new(name).expect("a valid cluster name"),
        scenario: scenario.clone(),
        gateways,
        exports: exports.iter().map(|s| s.to_string()).collect(),
    };
    (spec, scenario)
}

/// `federation-cut-failover`: `east` (5 nodes, gateways n0 n1), `west` (5 nodes, gateways n0
/// n1) and `north` (3 nodes, gateway n0), all linked. Each registers exported and unexported
/// services; `east` is cut off from both others 10–20.3 s (off the probes’ phase) and registers `search` meanwhile; `west`'s
/// first gateway crashes at 30 s and `west` registers `inventory` at 36 s. From 4 s to 44 s,
/// nodes of each cluster call an exported service of another (west → east `billing`, east →
/// west `profiles`, north → west `inventory`, which appears at 36 s) and an unexported one
/// (east → west `secrets`).
pub fn cut_and_failover() -> FederationScenario {
    let duration = secs(45);
    let (mut east, s) = cluster("east", 5, vec![0, 1], &["billing", "search"], duration);
    east.scenario = s
        .at(secs(2), register(vec![2, 3], "billing"))
        .at(secs(2), register(vec![4], "ledger"))
        .at(secs(14), register(vec![3], "search"));
    let (mut west, s) = cluster("west", 5, vec![0, 1], &["profiles", "inventory"], duration);
    west.scenario = s
        .at(secs(2), register(vec![2], "profiles"))
        .at(secs(2), register(vec![3], "secrets"))
        .at(GATEWAY_CRASH, Fault::Crash(Nodes::One(0)))
        .at(secs(36), register(vec![4], "inventory"));
    let (mut north, s) = cluster("north", 3, vec![0], &["maps"], duration);
    north.scenario = s
        .at(secs(2), register(vec![1, 2], "maps"))
        .at(secs(3), register(vec![2], "tiles"));
    FederationScenario {
        name: "federation-cut-failover".into(),
        clusters: vec![east, west, north],
        links: vec![(0, 1), (0, 2), (1, 2)],
        wan: WanModel {
            latency: millis(40),
            jitter: millis(20),
            loss: 0.01,
        },
        cuts: vec![WanCut {
            from: CUT.0,
            to: CUT.1,
            side: vec![0],
            other: vec![1, 2],
        }],
        timers: WanTimers {
            probe_interval: secs(1),
            probe_timeout: millis(500),
            down_after: 3,
        },
        // A probe within the interval after the heal, its round trip (at most 120 ms here),
        // and one more round for a lost probe or answer.
        visible_within: secs(3),
        // The default of a file: the bound and two probe intervals (see `call_checks`).
        calls_settle: secs(5),
        duration,
        calls: vec![
            calls(1, 0, "billing"),
            calls(0, 1, "profiles"),
            calls(2, 1, "inventory"),
            calls(0, 1, "secrets"),
        ],
        replay_source: "--scenario federation-cut-failover".into(),
    }
}
