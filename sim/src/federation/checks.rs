//! The federation checks: nothing unexported leaks into any gateway's directory; exports become
//! visible across every link within the scenario's bound after a heal or a change (measured);
//! at the end every link is up on a running remote gateway.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use foundation_core::federation::{Federation, LinkState};
use foundation_core::identity::ClusterName;
use serde::Serialize;

use super::wan::{gateway_addr, WanCut};
use super::FederationScenario;
use crate::report::{InvariantOutcome, Violation};

/// Violations kept as text over all checks (each check's count goes on).
const VIOLATIONS_KEPT: usize = 20;
/// Violations kept per check in its outcome.
const KEPT_PER_CHECK: usize = 10;

/// Every federation check, as reports name it.
pub const NAMES: [&str; 8] = [
    "federation-no-leak",
    "federation-visible-within",
    "federation-failover",
    "federation-links-up",
    "federation-protocol",
    "federation-call-deadline",
    "federation-not-exported",
    "federation-calls-served",
];

/// What the checks see of one gateway.
pub struct GatewayView<'a> {
    /// Its cluster (index).
    pub cluster: usize,
    /// Its node slot.
    pub slot: usize,
    /// Its machine, while its node is up.
    pub machine: Option<&'a Federation>,
}

/// The addresses of the gateways that run.
fn running(gateways: &[GatewayView<'_>]) -> BTreeSet<SocketAddr> {
    gateways
        .iter()
        .filter(|g| g.machine.is_some())
        .map(|g| gateway_addr(g.cluster, g.slot))
        .collect()
}

/// One measured propagation: a gateway of one cluster came to see another's exports (or, for
/// `failover`, its link moved off a crashed remote gateway onto a running one).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Visibility {
    /// The gateway that saw them (`cluster/n<slot>`).
    pub observer: String,
    /// The exporting (or, for `failover`, the remote) cluster.
    pub exporter: String,
    /// What started the wait: `heal`, `change`, `start` or `failover`.
    pub after: &'static str,
    /// When the wait started, in simulated seconds.
    pub at_secs: f64,
    /// How long it took.
    pub took_secs: f64,
}

/// A gateway waiting to see a linked cluster's current exports.
struct Pending {
    since_us: u64,
    after: &'static str,
    flagged: bool,
}

/// The checks' state across a run.
pub struct Checks {
    names: Vec<ClusterName>,
    exports: Vec<BTreeSet<String>>,
    links: Vec<(usize, usize)>,
    cuts: Vec<WanCut>,
    bound_us: u64,
    /// Waits by (observer cluster, observer slot, exporter cluster).
    pending: BTreeMap<(usize, usize, usize), Pending>,
    /// Pairs a cut separated since their last wait ended.
    were_cut: BTreeSet<(usize, usize, usize)>,
    /// Links whose remote gateway stopped running, by (observer cluster, slot, remote), since.
    stale: BTreeMap<(usize, usize, usize), Pending>,
    violations: Vec<String>,
    outcomes: BTreeMap<&'static str, InvariantOutcome>,
    visibility: Vec<Visibility>,
}

impl Checks {
    /// Checks for `scenario`.
    pub fn new(scenario: &FederationScenario) -> Self {
        Self {
            names: scenario.clusters.iter().map(|c| c.name.clone()).collect(),
            exports: scenario
                .clusters
                .iter()
                .map(|c| c.exports.iter().cloned().collect())
                .collect(),
            links: scenario.links.clone(),
            cuts: scenario.cuts.clone(),
            bound_us: scenario.visible_within.as_micros() as u64,
            pending: BTreeMap::new(),
            were_cut: BTreeSet::new(),
            stale: BTreeMap::new(),
            violations: Vec::new(),
            outcomes: NAMES
                .iter()
                .map(|&name| {
                    let outcome = InvariantOutcome {
                        name: name.into(),
                        violations: 0,
                        first: Vec::new(),
                    };
                    (name, outcome)
                })
                .collect(),
            visibility: Vec::new(),
        }
    }

    /// Records a violation of `check` (one of [`NAMES`]).
    pub fn violation(&mut self, now_us: u64, check: &'static str, message: String) {
        let at_secs = now_us as f64 / 1e6;
        if self.violations.len() < VIOLATIONS_KEPT {
            self.violations
                .push(format!("{at_secs:.3}s: {check}: {message}"));
        }
        let outcome = self.outcomes.entry(check).or_insert(InvariantOutcome {
            name: check.into(),
            violations: 0,
            first: Vec::new(),
        });
        outcome.violations += 1;
        if outcome.first.len() < KEPT_PER_CHECK {
            outcome.first.push(Violation { at_secs, message });
        }
    }

    /// Looks at every gateway after a step.
    pub fn observe(&mut self, now_us: u64, gateways: &[GatewayView<'_>]) {
        let running = running(gateways);
        for view in gateways {
            let Some(machine) = view.machine else {
                let gone = |k: &(usize, usize, usize)| (k.0, k.1) == (view.cluster, view.slot);
                self.pending.retain(|k, _| !gone(k));
                self.stale.retain(|k, _| !gone(k));
                continue;
            };
            self.no_leak(now_us, view, machine);
            self.failover(now_us, view, machine, &running);
            for exporter in self.linked(view.cluster) {
                self.visible(now_us, view, machine, exporter, gateways);
            }
        }
    }

    /// Measures how long each link of `view` that is up goes on a remote gateway that no longer
    /// runs before it moves to one that does. A link that is not up uses no gateway: it probes
    /// all of the remote's, and the first to answer carries it.
    fn failover(
        &mut self,
        now_us: u64,
        view: &GatewayView<'_>,
        machine: &Federation,
        running: &BTreeSet<SocketAddr>,
    ) {
        for link in machine.links() {
            let Some(remote) = self.names.iter().position(|n| *n == link.cluster) else {
                continue;
            };
            let key = (view.cluster, view.slot, remote);
            if link.state != LinkState::Up {
                self.stale.remove(&key);
            } else if !running.contains(&link.gateway) {
                let wait = self.stale.entry(key).or_insert(Pending {
                    since_us: now_us,
                    after: "failover",
                    flagged: false,
                });
                if now_us - wait.since_us > self.bound_us && !wait.flagged {
                    wait.flagged = true;
                    let who = self.who(view);
                    self.violation(
                        now_us,
                        "federation-failover",
                        format!(
                            "{who}'s link to {} stays on {} (down)",
                            link.cluster, link.gateway
                        ),
                    );
                }
            } else if let Some(done) = self.stale.remove(&key) {
                self.visibility.push(Visibility {
                    observer: self.who(view),
                    exporter: link.cluster.to_string(),
                    after: done.after,
                    at_secs: done.since_us as f64 / 1e6,
                    took_secs: (now_us - done.since_us) as f64 / 1e6,
                });
            }
        }
    }

    /// Every entry of the directory names only services its cluster's export list names.
    fn no_leak(&mut self, now_us: u64, view: &GatewayView<'_>, machine: &Federation) {
        let mut leaks = Vec::new();
        for (cluster, entry) in machine.directory().clusters() {
            let Some(index) = self.names.iter().position(|n| n == cluster) else {
                leaks.push(format!("cluster {cluster} is no cluster of the scenario"));
                continue;
            };
            for service in entry.services.keys() {
                if !self.exports[index].contains(service) {
                    leaks.push(format!("{cluster}/{service} is not exported"));
                }
            }
        }
        for leak in leaks {
            let who = self.who(view);
            self.violation(now_us, "federation-no-leak", format!("{who} holds {leak}"));
        }
    }

    /// Measures how long `view` takes to see `exporter`'s current exports.
    fn visible(
        &mut self,
        now_us: u64,
        view: &GatewayView<'_>,
        machine: &Federation,
        exporter: usize,
        gateways: &[GatewayView<'_>],
    ) {
        let key = (view.cluster, view.slot, exporter);
        if self.cut(view.cluster, exporter, now_us) {
            self.pending.remove(&key);
            self.were_cut.insert(key);
            return;
        }
        let Some(wanted) = self.authoritative(exporter, gateways) else {
            self.pending.remove(&key);
            return;
        };
        let seen: BTreeSet<String> = machine
            .directory()
            .cluster(&self.names[exporter])
            .map(|e| e.services.keys().cloned().collect())
            .unwrap_or_default();
        if seen == wanted {
            self.were_cut.remove(&key);
            if let Some(done) = self.pending.remove(&key) {
                self.visibility.push(Visibility {
                    observer: self.who(view),
                    exporter: self.names[exporter].to_string(),
                    after: done.after,
                    at_secs: done.since_us as f64 / 1e6,
                    took_secs: (now_us - done.since_us) as f64 / 1e6,
                });
            }
            return;
        }
        let after = match (
            self.were_cut.contains(&key),
            self.pending.contains_key(&key),
        ) {
            (true, _) => "heal",
            (false, _) if machine.directory().cluster(&self.names[exporter]).is_none() => "start",
            _ => "change",
        };
        let wait = self.pending.entry(key).or_insert(Pending {
            since_us: now_us,
            after,
            flagged: false,
        });
        if now_us - wait.since_us > self.bound_us && !wait.flagged {
            wait.flagged = true;
            let (who, of) = (self.who(view), self.names[exporter].clone());
            let bound = Duration::from_micros(self.bound_us);
            self.violation(
                now_us,
                "federation-visible-within",
                format!(
                    "{who} does not see {of}'s exports {wanted:?} within {bound:?} (sees {seen:?})"
                ),
            );
        }
    }

    /// What `exporter` exports now, as its first running gateway writes it.
    fn authoritative(
        &self,
        exporter: usize,
        gateways: &[GatewayView<'_>],
    ) -> Option<BTreeSet<String>> {
        let machine = gateways
            .iter()
            .filter(|g| g.cluster == exporter)
            .find_map(|g| g.machine)?;
        let own = machine.directory().cluster(&self.names[exporter]);
        Some(
            own.map(|e| e.services.keys().cloned().collect())
                .unwrap_or_default(),
        )
    }

    /// At the end: every running gateway's links are up, each on a running remote gateway.
    pub fn at_end(&mut self, now_us: u64, gateways: &[GatewayView<'_>]) {
        let running = running(gateways);
        for view in gateways {
            let Some(machine) = view.machine else {
                continue;
            };
            for link in machine.links() {
                // A link on a crashed gateway is the `failover` check's, which allows it the
                // bound: one lost probe sends a link back to a crashed gateway for a round.
                let on = match running.contains(&link.gateway) {
                    true => "running",
                    false => "not running",
                };
                if link.state != LinkState::Up {
                    let who = self.who(view);
                    let message = format!(
                        "{who}'s link to {} is {:?} on {} ({on})",
                        link.cluster, link.state, link.gateway
                    );
                    self.violation(now_us, "federation-links-up", message);
                }
            }
        }
    }

    /// The violations and the measured propagations.
    pub fn into_parts(self) -> (Vec<String>, Vec<Visibility>) {
        (self.violations, self.visibility)
    }

    /// Every check's outcome, in [`NAMES`] order.
    pub fn outcomes(&self) -> Vec<InvariantOutcome> {
        NAMES
            .iter()
            .filter_map(|name| self.outcomes.get(name).cloned())
            .collect()
    }

    fn linked(&self, cluster: usize) -> Vec<usize> {
        super::linked(&self.links, cluster)
    }

    fn cut(&self, a: usize, b: usize, us: u64) -> bool {
        self.cuts.iter().any(|c| c.separates(a, b, us))
    }

    fn who(&self, view: &GatewayView<'_>) -> String {
        format!("{}/n{}", self.names[view.cluster], view.slot)
    }
}
