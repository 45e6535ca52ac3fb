//! Membership and replication metrics, refreshed from the core's counters.

use foundation_transport::Declared;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use foundation_core::membership::MemberState;
use foundation_core::Core;
use tokio::sync::watch;

use super::status::{Demand, KeyspaceSummary};

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
    suspect_checks: Counter,
    suspect_checks_unanswered: Counter,
    suspects_retold: Counter,
    closed_port_checks: Counter,
    closed_port_declarations: Counter,
    declarations_told: Counter,
    declarations_heard: Counter,
    declarations_retold: Counter,
    declarations_stale: Counter,
    declarations_refused: Counter,
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
            Declared(metrics.members.clone()),
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
            "suspect_checks",
            "Suspects this node checked directly, chosen as one of a suspicion's checkers",
            metrics.suspect_checks.clone(),
        );
        registry.register(
            "suspect_checks_unanswered",
            "Direct checks the suspect did not answer in time (each confirmed the suspicion)",
            metrics.suspect_checks_unanswered.clone(),
        );
        registry.register(
            "suspects_retold",
            "Times this node told a member it suspects, again, that it is suspected (each probe period while the suspicion runs)",
            metrics.suspects_retold.clone(),
        );
        registry.register(
            "closed_port_checks",
            "Members checked because their host reported their membership port closed (ICMP)",
            metrics.closed_port_checks.clone(),
        );
        registry.register(
            "closed_port_declarations",
            "Of those, members that did not refute in time and were declared failed",
            metrics.closed_port_declarations.clone(),
        );
        registry.register(
            "declarations_told",
            "Members this node declared failed and told every live member of directly",
            metrics.declarations_told.clone(),
        );
        registry.register(
            "declarations_heard",
            "Failures this node learnt from a member's direct notice before SWIM's gossip",
            metrics.declarations_heard.clone(),
        );
        registry.register(
            "declarations_retold",
            "Members this node declared failed and told every live member of a second time, a probe period later",
            metrics.declarations_retold.clone(),
        );
        registry.register(
            "declarations_stale",
            "Members' direct failure notices that taught this node nothing: the failure known already, refuted since, or of a life it did not hold",
            metrics.declarations_stale.clone(),
        );
        registry.register(
            "declarations_refused",
            "Direct failure notices refused because their sender is not a member this node holds alive",
            metrics.declarations_refused.clone(),
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
        advance(&self.suspect_checks, stats.suspect_checks);
        advance(
            &self.suspect_checks_unanswered,
            stats.suspect_checks_unanswered,
        );
        advance(&self.suspects_retold, stats.suspects_retold);
        advance(&self.closed_port_checks, stats.closed_port_checks);
        advance(
            &self.closed_port_declarations,
            stats.closed_port_declarations,
        );
        advance(&self.declarations_told, stats.declarations_told);
        advance(&self.declarations_heard, stats.declarations_heard);
        advance(&self.declarations_retold, stats.declarations_retold);
        advance(&self.declarations_stale, stats.declarations_stale);
        advance(&self.declarations_refused, stats.declarations_refused);
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
/// Raises `counter` to the core's running `total`.
pub(crate) fn advance(counter: &Counter, total: u64) {
    counter.inc_by(total.saturating_sub(counter.get()));
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KeyspaceLabels {
    // Bounded: at most `keyspaces_max` keyspaces exist.
    keyspace: String,
}

/// `foundation_replication_*` metrics of one node: counters mirror the machine's totals.
#[derive(Debug, Default)]
pub(crate) struct ReplicationMetrics {
    writes: Counter,
    refused_writes: Counter,
    ops_applied: Counter,
    ops_sent: Counter,
    duplicate_ops: Counter,
    rejected: Counter,
    digests_sent: Counter,
    full_states_sent: Counter,
    full_states_merged: Counter,
    sent_bytes: Counter,
    tombstones_collected: Counter,
    origins_retired: Counter,
    epoch_changes: Counter,
    keys: Family<KeyspaceLabels, Gauge>,
    /// Each keyspace's size and digest, for the status page (`status.rs`).
    summaries: watch::Sender<Vec<KeyspaceSummary>>,
    /// Digests are taken only while this was asked recently.
    digests_wanted: Demand,
}

impl ReplicationMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        let r = registry.sub_registry_with_prefix("foundation_replication");
        let counters = [
            ("writes", "Local writes applied", &m.writes),
            (
                "refused_writes",
                "Local writes refused (limits)",
                &m.refused_writes,
            ),
            ("ops_applied", "Remote ops applied", &m.ops_applied),
            (
                "ops_sent",
                "Ops sent (pushes, ack requests, digest answers)",
                &m.ops_sent,
            ),
            ("duplicate_ops", "Remote ops already held", &m.duplicate_ops),
            (
                "rejected",
                "Remote ops and states refused: clock drift, another epoch, undecodable",
                &m.rejected,
            ),
            ("digests_sent", "Anti-entropy digests sent", &m.digests_sent),
            (
                "full_states_sent",
                "Keyspace full states sent",
                &m.full_states_sent,
            ),
            (
                "full_states_merged",
                "Keyspace full states merged",
                &m.full_states_merged,
            ),
            (
                "tombstones_collected",
                "Tombstones collected below an agreed horizon",
                &m.tombstones_collected,
            ),
            (
                "origins_retired",
                "Departed origins' bookkeeping dropped, per keyspace",
                &m.origins_retired,
            ),
            (
                "epoch_changes",
                "Compaction epoch changes",
                &m.epoch_changes,
            ),
        ];
        for (name, help, counter) in counters {
            r.register(name, help, counter.clone());
        }
        r.register_with_unit(
            "sent",
            "Payload bytes of replication messages sent",
            Unit::Bytes,
            m.sent_bytes.clone(),
        );
        r.register("keys", "Live keys per keyspace", Declared(m.keys.clone()));
        m
    }

    /// Each keyspace's size and digest, as of the last [`Self::sync`], and where to ask for
    /// the digests.
    pub fn summaries(&self) -> (watch::Receiver<Vec<KeyspaceSummary>>, Demand) {
        (self.summaries.subscribe(), self.digests_wanted.clone())
    }

    /// Brings the metrics up to date with the core's replication machine.
    pub fn sync(&self, core: &Core) {
        let replication = core.replication();
        let s = replication.stats();
        advance(&self.writes, s.writes);
        advance(&self.refused_writes, s.refused_writes);
        advance(&self.ops_applied, s.ops_applied);
        advance(&self.ops_sent, s.ops_sent);
        advance(&self.duplicate_ops, s.duplicate_ops);
        advance(&self.rejected, s.drift_rejected + s.dropped + s.bad_states);
        advance(&self.digests_sent, s.digests_sent);
        advance(&self.full_states_sent, s.full_states_sent);
        advance(&self.full_states_merged, s.full_states_merged);
        advance(&self.sent_bytes, s.bytes_sent);
        advance(&self.tombstones_collected, s.tombstones_collected);
        advance(&self.origins_retired, s.origins_retired);
        advance(&self.epoch_changes, s.epoch_changes);
        let summaries = super::status::summaries(core, self.digests_wanted.recent());
        for summary in &summaries {
            self.keys
                .get_or_create(&KeyspaceLabels {
                    keyspace: summary.name.clone(),
                })
                .set(i64::try_from(summary.keys).unwrap_or(i64::MAX));
        }
        self.summaries.send_if_modified(|held| {
            let changed = *held != summaries;
            *held = summaries;
            changed
        });
    }
}
