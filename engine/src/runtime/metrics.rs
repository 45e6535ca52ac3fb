//! Membership metrics, refreshed from the core's counters.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::membership::MemberState;
use crate::Core;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

/// `foundation_membership_*` metrics of one node.
#[derive(Debug, Default)]
pub(crate) struct MembershipMetrics {
    members: Family<StateLabels, Gauge>,
    probe_failures: Counter,
    suspect_reports: Counter,
    push_pulls: Counter,
    bad_inputs: Counter,
    late_timers: Counter,
    local_health: Gauge,
}

impl MembershipMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        let registry = registry.sub_registry_with_prefix("foundation_membership");
        registry.register(
            "members",
            "Known members by state (ourselves excluded)",
            metrics.members.clone(),
        );
        registry.register(
            "probe_failures",
            "Our probes that got no answer (a suspicion started)",
            metrics.probe_failures.clone(),
        );
        registry.register(
            "suspect_reports",
            "Independent suspicion reports received",
            metrics.suspect_reports.clone(),
        );
        registry.register(
            "push_pulls",
            "Full-state exchanges received",
            metrics.push_pulls.clone(),
        );
        registry.register(
            "bad_inputs",
            "Membership datagrams and messages refused as malformed or stale",
            metrics.bad_inputs.clone(),
        );
        registry.register(
            "late_timers",
            "Probe timers that fired late (this node was stalled)",
            metrics.late_timers.clone(),
        );
        registry.register(
            "local_health",
            "Local-health multiplier stretching our timeouts (1 = healthy)",
            metrics.local_health.clone(),
        );
        metrics
    }

    /// Brings the metrics up to date with the core.
    pub fn sync(&mut self, core: &Core) {
        for (state, name) in [
            (MemberState::Alive, "alive"),
            (MemberState::Failed, "failed"),
            (MemberState::Left, "left"),
        ] {
            let count = core.members().filter(|m| m.state == state).count();
            self.members
                .get_or_create(&StateLabels { state: name })
                .set(count as i64);
        }
        let (core_stats, stats) = core.stats();
        advance(&self.probe_failures, stats.probe_failures);
        advance(&self.suspect_reports, stats.suspect_reports);
        advance(&self.push_pulls, stats.push_pulls);
        advance(&self.late_timers, stats.late_timers);
        advance(
            &self.bad_inputs,
            stats.bad_datagrams + core_stats.bad_messages,
        );
        self.local_health
            .set(i64::from(core.membership().local_health()));
    }
}

/// Moves `counter` up to the core's running `total` (the core counts; the metric mirrors it).
fn advance(counter: &Counter, total: u64) {
    counter.inc_by(total.saturating_sub(counter.get()));
}
