//! Several clusters in one simulation, linked by federation gateways over a WAN.
//!
//! The [`crate::world::World`] is one cluster with one network, so several clusters are several
//! worlds: each cluster is a full scenario run (its own nodes, network, faults and every
//! invariant of a one-cluster run), and the runs advance in lockstep on one virtual clock. The
//! gateways of each cluster run `foundation_core::federation::Federation` — the machine the
//! engine drives (`engine/src/runtime/federation`) — fed the same way: exports from the
//! gateway node's own services directory (export list ∩ healthy), `poll` at its deadlines,
//! probes, their answers and the pushes of a changed directory carried by [`wan::Wan`], with
//! its own latency, loss and cuts. A gateway whose node is down has no machine; a restarted one
//! starts a fresh machine.
//!
//! Checked on top of each cluster's own invariants ([`checks`]): nothing unexported appears
//! in any gateway's directory; after a cut heals, and after any change of a cluster's exports,
//! every running gateway linked to it sees its exports within a stated bound (the times are
//! measured and reported); no link stays on a crashed remote gateway longer than the bound;
//! at the end, every link is up.
//! Membership is untouched by WAN events by construction (no WAN message reaches a core), and
//! each cluster's `no-false-positives` and `crash-detection` run as in any scenario.
//!
//! Nodes call services of other clusters ([`calls`]) through their gateways' machines, over the
//! same WAN; [`call_checks`] checks every call against what really happened. A scenario comes
//! from code ([`standard`]) or a file ([`file`](mod@file)), and `foundation sim` reports a run as any run
//! ([`report`]).

pub mod call_checks;
pub mod calls;
pub mod checks;
pub mod file;
pub mod report;
pub mod standard;
mod validate;
pub mod wan;

use std::time::Duration;

use foundation_core::federation::{exported, Federation, FederationConfig, LinkConfig, WanTimers};
use foundation_core::identity::ClusterName;
use foundation_core::time::Instant;
use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::report::RunReport;
use crate::scenario::{RunOptions, Runner, Scenario};
use crate::trace::Fnv64;
use call_checks::Ground;
use calls::{CallRecord, CallSpec, Calls};
use checks::{Checks, Visibility};
use wan::{gateway_addr, Wan, WanCut, WanMessage, WanModel, WanStats};

/// How often gateways take up their node's services directory (the engine does on every
/// change of it; 100 ms of virtual time is the simulator's granularity for that).
const EXPORT_REFRESH: Duration = Duration::from_millis(100);

/// One cluster of a federation scenario.
#[derive(Clone, Debug)]
pub struct ClusterSpec {
    /// The cluster's name.
    pub name: ClusterName,
    /// Its nodes, faults and registrations: a one-cluster scenario (its duration is ignored).
    pub scenario: Scenario,
    /// Node slots that run a gateway, in the order linked clusters try them.
    pub gateways: Vec<usize>,
    /// The export list (a service is exported when named here and healthy in the cluster).
    pub exports: Vec<String>,
}

/// Several clusters, their links and their WAN.
#[derive(Clone, Debug)]
pub struct FederationScenario {
    /// Name, for reports.
    pub name: String,
    /// The clusters.
    pub clusters: Vec<ClusterSpec>,
    /// Linked pairs of clusters (indices); both sides link to each other.
    pub links: Vec<(usize, usize)>,
    /// Every WAN path.
    pub wan: WanModel,
    /// Cuts of the WAN.
    pub cuts: Vec<WanCut>,
    /// Gateway probe pacing.
    pub timers: WanTimers,
    /// Stated bound: exports are visible across a link this long after a heal or a change.
    pub visible_within: Duration,
    /// How long after a cut heals or a gateway starts or stops calls between the clusters may
    /// still fail (the call checks' settle time; see [`call_checks`]).
    pub calls_settle: Duration,
    /// How long the run lasts.
    pub duration: Duration,
    /// Application calls from one cluster to a service of another.
    pub calls: Vec<CallSpec>,
    /// How to name this scenario on a command line (`--scenario x` or `--file x.toml`).
    pub replay_source: String,
}

impl FederationScenario {
    /// The clusters `cluster` links to.
    pub fn linked(&self, cluster: usize) -> Vec<usize> {
        linked(&self.links, cluster)
    }
}

fn linked(links: &[(usize, usize)], cluster: usize) -> Vec<usize> {
    links
        .iter()
        .filter_map(|&(a, b)| match (a == cluster, b == cluster) {
            (true, _) => Some(b),
            (_, true) => Some(a),
            _ => None,
        })
        .collect()
}

/// What a federation run found.
#[derive(Debug)]
pub struct FederationReport {
    /// The seed.
    pub seed: u64,
    /// Each cluster's own run, with its invariants.
    pub clusters: Vec<RunReport>,
    /// Violations of the federation checks.
    pub violations: Vec<String>,
    /// Every measured propagation of exports to a gateway of another cluster.
    pub visibility: Vec<Visibility>,
    /// WAN counts.
    pub wan: WanStats,
    /// Every cross-cluster call.
    pub calls: Vec<CallRecord>,
    /// Every federation check's outcome.
    pub checks: Vec<crate::report::InvariantOutcome>,
    /// Hash of every cluster's trace and of the WAN's events.
    pub trace_hash: u64,
    /// Every check of every cluster, and of the federation, held.
    pub passed: bool,
}

/// One gateway: where it runs and its machine while its node is up.
struct Gateway {
    cluster: usize,
    slot: usize,
    life: u64,
    machine: Option<Federation>,
}

/// The gateway whose address is `to`, running or not.
fn listening_at(gateways: &[Gateway], to: std::net::SocketAddr) -> Option<usize> {
    gateways
        .iter()
        .position(|g| gateway_addr(g.cluster, g.slot) == to)
}

/// The runner of a federation scenario.
struct Harness<'a> {
    scenario: &'a FederationScenario,
    runners: Vec<Runner<'a>>,
    gateways: Vec<Gateway>,
    wan: Wan,
    checks: Checks,
    calls: Calls,
    ground: Ground,
    trace: Fnv64,
    seed: u64,
    now_us: u64,
}

/// Runs `scenario` with `seed`.
pub fn run(scenario: &FederationScenario, seed: u64) -> FederationReport {
    Harness::new(scenario, seed).run()
}

fn instant(us: u64) -> Instant {
    Instant::from_elapsed(Duration::from_micros(us))
}

impl<'a> Harness<'a> {
    fn new(scenario: &'a FederationScenario, seed: u64) -> Self {
        let options = RunOptions::default();
        let runners = scenario
            .clusters
            .iter()
            .enumerate()
            .map(|(i, c)| Runner::new(&c.scenario, cluster_seed(seed, i), &options))
            .collect();
        let gateways = scenario
            .clusters
            .iter()
            .enumerate()
            .flat_map(|(cluster, c)| {
                c.gateways.iter().map(move |&slot| Gateway {
                    cluster,
                    slot,
                    life: u64::MAX,
                    machine: None,
                })
            })
            .collect();
        let rng = StdRng::seed_from_u64(seed ^ 0x5741_4e5f_6665_6473);
        let call_rng = StdRng::seed_from_u64(seed ^ 0x4341_4c4c_5f66_6564);
        let ground = Ground {
            settle_us: scenario.calls_settle.as_micros() as u64,
            cuts: scenario.cuts.clone(),
            links: scenario.links.clone(),
            export_lists: scenario
                .clusters
                .iter()
                .map(|c| c.exports.iter().cloned().collect())
                .collect(),
            ..Ground::default()
        };
        Self {
            scenario,
            runners,
            gateways,
            wan: Wan::new(scenario.wan.clone(), scenario.cuts.clone(), rng),
            checks: Checks::new(scenario),
            calls: Calls::new(&scenario.calls, call_rng),
            ground,
            trace: Fnv64::new(),
            seed,
            now_us: 0,
        }
    }

    /// Runs the clusters and the WAN in lockstep: each step goes to the next WAN arrival,
    /// gateway deadline, call step or export refresh, whichever is first (deadlines are at least 1 µs
    /// ahead and the WAN's delay is above zero, so the clock always moves).
    fn run(mut self) -> FederationReport {
        for runner in &mut self.runners {
            runner.begin();
        }
        let end_us = self.scenario.duration.as_micros() as u64;
        let refresh_us = EXPORT_REFRESH.as_micros() as u64;
        let mut next_refresh = 0;
        while self.now_us < end_us {
            let next = [
                self.wan.next_time(),
                self.next_deadline(),
                self.calls.next_time(),
                Some(next_refresh),
            ]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(end_us)
            .clamp(self.now_us, end_us);
            for runner in &mut self.runners {
                runner.run_until(next);
            }
            self.now_us = next;
            self.deliver();
            let refresh = next >= next_refresh;
            if refresh {
                next_refresh = next + refresh_us;
            }
            self.drive(refresh);
            self.run_calls();
            self.checks.observe(self.now_us, &views(&self.gateways));
        }
        self.finish()
    }

    /// The earliest poll deadline of any running gateway.
    fn next_deadline(&self) -> Option<u64> {
        self.gateways
            .iter()
            .filter_map(|g| {
                let machine = g.machine.as_ref()?;
                let push = machine.next_push();
                machine.next_deadline().into_iter().chain(push).min()
            })
            .map(|at| at.elapsed().as_micros() as u64)
            .map(|us| us.max(self.now_us + 1))
            .min()
    }

    /// Hands every message due now to its gateway.
    fn deliver(&mut self) {
        while let Some(message) = self.wan.deliver(self.now_us) {
            note(&mut self.trace, format_args!("{} {message:?}", self.now_us));
            match message {
                WanMessage::Probe {
                    from,
                    life,
                    cluster,
                    link,
                    id,
                    to,
                    directory,
                } => self.answer(from, life, cluster, link, id, to, &directory),
                WanMessage::Push {
                    cluster,
                    to,
                    directory,
                } => self.take_push(&cluster, to, &directory),
                WanMessage::Answer {
                    to,
                    life,
                    link,
                    id,
                    directory,
                } => {
                    let now = instant(self.now_us);
                    let gateway = &mut self.gateways[to];
                    match gateway.machine.as_mut() {
                        Some(machine) if gateway.life == life => {
                            if let Err(e) = machine.probe_answered(now, &link, id, &directory) {
                                let message = format!("answer refused: {e}");
                                self.checks
                                    .violation(self.now_us, "federation-protocol", message);
                            }
                        }
                        _ => self.wan.stats.unanswered += 1,
                    }
                }
                WanMessage::Call {
                    leg,
                    service,
                    deadline_us,
                } => self.call_arrived(leg, &service, deadline_us),
                WanMessage::CallReply {
                    leg,
                    outcome,
                    taken_by,
                } => self.reply_arrived(leg, outcome, taken_by),
            }
        }
    }

    /// A probe reached the gateway listening on `to`: it answers if it runs.
    #[allow(clippy::too_many_arguments)]
    fn answer(
        &mut self,
        from: usize,
        life: u64,
        cluster: ClusterName,
        link: ClusterName,
        id: u64,
        to: std::net::SocketAddr,
        directory: &foundation_core::federation::GlobalDirectory,
    ) {
        let Some(target) = listening_at(&self.gateways, to).map(|i| &mut self.gateways[i]) else {
            self.wan.stats.unanswered += 1;
            return;
        };
        let target_cluster = target.cluster;
        let Some(machine) = target.machine.as_mut() else {
            // No process listens: the prober's timeout counts the miss.
            self.wan.stats.unanswered += 1;
            return;
        };
        match machine.incoming_probe(instant(self.now_us), &cluster, directory) {
            Ok(reply) => {
                let answer = WanMessage::Answer {
                    to: from,
                    life,
                    link,
                    id,
                    directory: reply,
                };
                let from_cluster = self.gateways[from].cluster;
                self.wan
                    .send(self.now_us, target_cluster, from_cluster, answer);
            }
            Err(e) => self.checks.violation(
                self.now_us,
                "federation-protocol",
                format!("probe from {cluster} refused: {e}"),
            ),
        }
    }

    /// A push reached the gateway listening on `to`: taken in if it runs, else lost.
    fn take_push(
        &mut self,
        cluster: &ClusterName,
        to: std::net::SocketAddr,
        directory: &foundation_core::federation::GlobalDirectory,
    ) {
        let target = listening_at(&self.gateways, to).map(|i| &mut self.gateways[i]);
        let Some(machine) = target.and_then(|t| t.machine.as_mut()) else {
            self.wan.stats.unanswered += 1;
            return;
        };
        if let Err(e) = machine.incoming_push(instant(self.now_us), cluster, directory) {
            let message = format!("push from {cluster} refused: {e}");
            self.checks
                .violation(self.now_us, "federation-protocol", message);
        }
    }

    /// Starts or stops machines with their nodes, takes up exports, sends the probes due.
    fn drive(&mut self, refresh: bool) {
        for index in 0..self.gateways.len() {
            self.follow_node(index);
            if refresh {
                self.refresh_exports(index);
            }
            self.send_probes(index);
        }
        if refresh {
            self.note_exports();
        }
    }

    /// What each cluster exports now, as its first running gateway has it, for the call
    /// checks.
    fn note_exports(&mut self) {
        for (cluster, spec) in self.scenario.clusters.iter().enumerate() {
            let machine = self
                .gateways
                .iter()
                .filter(|g| g.cluster == cluster)
                .find_map(|g| g.machine.as_ref());
            for service in &spec.exports {
                let on = machine.is_some_and(|m| m.exports(service));
                self.ground.set_exported(self.now_us, cluster, service, on);
            }
        }
    }

    /// A gateway's machine lives and dies with its node's life.
    fn follow_node(&mut self, index: usize) {
        let (cluster, slot) = (self.gateways[index].cluster, self.gateways[index].slot);
        let node = self.runners[cluster].world_mut().node(slot);
        let (up, life, id) = (node.is_up(), node.life(), node.id());
        let gateway = &self.gateways[index];
        if !up {
            if self.gateways[index].machine.take().is_some() {
                self.ground.gateway_changes.push((self.now_us, cluster));
            }
        } else if gateway.machine.is_none() || gateway.life != life {
            self.ground.gateway_changes.push((self.now_us, cluster));
            let machine = self.machine(cluster, id);
            let gateway = &mut self.gateways[index];
            gateway.life = life;
            gateway.machine = Some(machine);
        }
    }

    fn machine(&self, cluster: usize, me: foundation_core::identity::NodeId) -> Federation {
        let links = self
            .scenario
            .linked(cluster)
            .into_iter()
            .map(|remote| LinkConfig {
                cluster: self.scenario.clusters[remote].name.clone(),
                gateways: self.scenario.clusters[remote]
                    .gateways
                    .iter()
                    .map(|&slot| gateway_addr(remote, slot))
                    .collect(),
            })
            .collect();
        let config = FederationConfig {
            local: self.scenario.clusters[cluster].name.clone(),
            me,
            links,
            timers: self.scenario.timers,
        };
        Federation::new(config, instant(self.now_us)).expect("a valid federation scenario")
    }

    fn refresh_exports(&mut self, index: usize) {
        let (cluster, slot) = (self.gateways[index].cluster, self.gateways[index].slot);
        if self.gateways[index].machine.is_none() {
            return;
        }
        let exports = &self.scenario.clusters[cluster].exports;
        let Some((directory, _)) = self.runners[cluster].world_mut().directory(slot) else {
            return;
        };
        let exported = exported(&directory, exports);
        if let Some(machine) = self.gateways[index].machine.as_mut() {
            let names: Vec<_> = exported.keys().cloned().collect();
            if machine.set_exports(exported) {
                note(
                    &mut self.trace,
                    format_args!("{} gw{index} exports {names:?}", self.now_us),
                );
            }
        }
    }

    fn send_probes(&mut self, index: usize) {
        let now = instant(self.now_us);
        let (cluster, life) = (self.gateways[index].cluster, self.gateways[index].life);
        let Some(machine) = self.gateways[index].machine.as_mut() else {
            return;
        };
        let probes = machine.poll(now);
        let pushes = machine.pushes(now);
        let changes = machine.take_changes();
        let local = self.scenario.clusters[cluster].name.clone();
        for change in changes {
            note(
                &mut self.trace,
                format_args!(
                    "{} gw{index} link {} {:?} -> {:?}",
                    self.now_us, change.cluster, change.from, change.to
                ),
            );
        }
        for probe in probes {
            let remote = self.cluster_index(&probe.cluster);
            let message = WanMessage::Probe {
                from: index,
                life,
                cluster: local.clone(),
                link: probe.cluster,
                id: probe.id,
                to: probe.gateway,
                directory: probe.directory,
            };
            self.wan.send(self.now_us, cluster, remote, message);
        }
        for push in pushes {
            let remote = self.cluster_index(&push.cluster);
            let message = WanMessage::Push {
                cluster: local.clone(),
                to: push.gateway,
                directory: push.directory,
            };
            self.wan.send(self.now_us, cluster, remote, message);
        }
    }

    fn cluster_index(&self, name: &ClusterName) -> usize {
        self.scenario
            .clusters
            .iter()
            .position(|c| &c.name == name)
            .expect("links name clusters of the scenario")
    }

    fn finish(mut self) -> FederationReport {
        self.checks.at_end(self.now_us, &views(&self.gateways));
        self.ground.lost = std::mem::take(&mut self.wan.lost_calls);
        let names: Vec<String> = self
            .scenario
            .clusters
            .iter()
            .map(|c| c.name.to_string())
            .collect();
        let found = call_checks::check(&self.calls.records, &self.ground, &names, self.now_us);
        for (at, check, message) in found {
            self.checks.violation(at, check, message);
        }
        for (id, call) in self.calls.records.iter().enumerate() {
            note(&mut self.trace, format_args!("call {id} {call:?}"));
        }
        let checks = self.checks.outcomes();
        let clusters: Vec<RunReport> = self.runners.into_iter().map(Runner::end).collect();
        let mut hash = Fnv64::new();
        for report in &clusters {
            hash.write(report.trace_hash.as_bytes());
        }
        hash.write(&self.trace.finish().to_le_bytes());
        let (violations, visibility) = self.checks.into_parts();
        let passed = violations.is_empty() && clusters.iter().all(|c| c.passed);
        FederationReport {
            seed: self.seed,
            clusters,
            violations,
            visibility,
            calls: self.calls.records,
            checks,
            wan: self.wan.stats,
            trace_hash: hash.finish(),
            passed,
        }
    }
}

/// What the checks look at.
fn views(gateways: &[Gateway]) -> Vec<checks::GatewayView<'_>> {
    gateways
        .iter()
        .map(|g| checks::GatewayView {
            cluster: g.cluster,
            slot: g.slot,
            machine: g.machine.as_ref(),
        })
        .collect()
}

/// Adds a line to the WAN's trace hash.
fn note(trace: &mut Fnv64, args: std::fmt::Arguments<'_>) {
    trace.write(args.to_string().as_bytes());
    trace.write(b"\n");
}

/// Each cluster's own seed: distinct per cluster, all from the run's seed.
fn cluster_seed(seed: u64, cluster: usize) -> u64 {
    seed.wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .wrapping_add(cluster as u64)
}
