//! What a federation scenario must be for the harness to run it: every name, index and
//! number checked, so a scenario from a file is refused with a reason, never a panic.

use std::collections::BTreeSet;

use foundation_core::services::record::check_service_name;

use super::calls::CallSpec;
use super::wan::WanCut;
use super::FederationScenario;

/// Most clusters (a gateway's simulated address holds the cluster in one byte).
pub const CLUSTERS_MAX: usize = 16;
/// Highest gateway slot (its address holds the slot in one byte).
pub const GATEWAY_SLOT_MAX: usize = 255;
/// Most calls per second of one `[[calls]]` stream.
pub const CALL_RATE_MAX: f64 = 10_000.0;

impl FederationScenario {
    /// Whether the harness can run this scenario; the reason when not.
    pub fn validate(&self) -> Result<(), String> {
        if !(2..=CLUSTERS_MAX).contains(&self.clusters.len()) {
            return Err(format!(
                "a federation needs 2 to {CLUSTERS_MAX} clusters, got {}",
                self.clusters.len()
            ));
        }
        if self.duration.is_zero() || self.visible_within.is_zero() {
            return Err("duration and visible_within must be above zero".into());
        }
        self.timers.validate().map_err(|e| format!("wan: {e}"))?;
        if !(0.0..=1.0).contains(&self.wan.loss) {
            return Err(format!(
                "wan: loss must be within 0..1, got {}",
                self.wan.loss
            ));
        }
        let mut names = BTreeSet::new();
        for cluster in &self.clusters {
            if !names.insert(cluster.name.as_str()) {
                return Err(format!("two clusters are named {}", cluster.name));
            }
            cluster_ok(cluster).map_err(|e| format!("cluster {}: {e}", cluster.name))?;
        }
        self.links_ok()?;
        self.cuts_ok()?;
        self.calls_ok()
    }

    fn links_ok(&self) -> Result<(), String> {
        let mut seen = BTreeSet::new();
        for &(a, b) in &self.links {
            let n = self.clusters.len();
            if a >= n || b >= n || a == b {
                return Err(format!("link {a}-{b}: a link joins two distinct clusters"));
            }
            if !seen.insert((a.min(b), a.max(b))) {
                return Err(format!("link {a}-{b} is given twice"));
            }
        }
        Ok(())
    }

    fn cuts_ok(&self) -> Result<(), String> {
        for cut in &self.cuts {
            cut_ok(cut, self.clusters.len()).map_err(|e| format!("cut at {:?}: {e}", cut.from))?;
        }
        Ok(())
    }

    fn calls_ok(&self) -> Result<(), String> {
        for calls in &self.calls {
            call_ok(calls, self.clusters.len())
                .map_err(|e| format!("calls at {:?}: {e}", calls.start))?;
        }
        Ok(())
    }
}

/// One cut, among `clusters` clusters.
pub(super) fn cut_ok(cut: &WanCut, clusters: usize) -> Result<(), String> {
    let known = |side: &[usize]| side.iter().all(|&c| c < clusters);
    if cut.from >= cut.to {
        return Err("it must heal after it starts".into());
    }
    if cut.side.is_empty() || cut.other.is_empty() || !known(&cut.side) || !known(&cut.other) {
        return Err("both sides need clusters".into());
    }
    if cut.side.iter().any(|c| cut.other.contains(c)) {
        return Err("a cluster is on both sides".into());
    }
    Ok(())
}

/// One stream of calls, among `clusters` clusters.
pub(super) fn call_ok(calls: &CallSpec, clusters: usize) -> Result<(), String> {
    if calls.from >= clusters || calls.to >= clusters || calls.from == calls.to {
        return Err("calls go from one cluster to another".into());
    }
    check_service_name(&calls.service).map_err(|e| e.to_string())?;
    if !(calls.rate > 0.0 && calls.rate <= CALL_RATE_MAX) {
        return Err(format!("rate must be above 0 and at most {CALL_RATE_MAX}"));
    }
    if calls.deadline.is_zero() || calls.start >= calls.stop {
        return Err("a call stream needs a deadline and a `for` above zero".into());
    }
    Ok(())
}

/// One cluster: its own scenario, its gateways and its exports.
pub(super) fn cluster_ok(cluster: &super::ClusterSpec) -> Result<(), String> {
    cluster.scenario.validate()?;
    if cluster.gateways.is_empty() {
        return Err("it needs at least one gateway".into());
    }
    let mut seen = BTreeSet::new();
    for &slot in &cluster.gateways {
        if slot >= cluster.scenario.nodes || slot > GATEWAY_SLOT_MAX || !seen.insert(slot) {
            return Err(format!(
                "gateway {slot}: gateways are distinct slots of its {} nodes",
                cluster.scenario.nodes
            ));
        }
    }
    for service in &cluster.exports {
        check_service_name(service).map_err(|e| format!("export: {e}"))?;
    }
    Ok(())
}
