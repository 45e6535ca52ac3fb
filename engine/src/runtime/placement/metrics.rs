//! `foundation_placement_*` metrics, refreshed from the core's placement machine: owner changes
//! (starts, stops by reason), handoffs, routed messages, and the time instances waited here
//! for their lease (this node's part of a failover's time without an owner), by workload, and
//! the duplicates the run-time detector found.

use std::time::Duration;

use foundation_core::placement::StopReason;
use foundation_core::Core;
use foundation_transport::Declared;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};
use std::sync::atomic::AtomicU64;

use crate::runtime::metrics::advance;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WorkloadLabels {
    workload: String,
}

/// 1 ms to about 65 s.
fn wait_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

/// The placement metrics of one node.
#[derive(Debug)]
pub(crate) struct PlacementMetrics {
    running: Gauge,
    starts: Counter,
    stops: Family<ReasonLabels, Counter>,
    handoffs: Family<OutcomeLabels, Counter>,
    routed: Family<OutcomeLabels, Counter>,
    delivered_here: Counter,
    /// Seconds, as Prometheus wants a time; the machine counts microseconds.
    waited: Counter<f64, AtomicU64>,
    without_owner: Family<WorkloadLabels, Histogram, fn() -> Histogram>,
    duplicates: Counter,
}

/// Handoff outcomes, as the `outcome` label says them.
const HANDOFF_OUTCOMES: [&str; 6] = [
    "begun",
    "completed",
    "timed_out",
    "too_large",
    "resumed",
    "taken_back",
];
/// Routed-message outcomes of this node's messages.
const ROUTE_OUTCOMES: [&str; 2] = ["delivered", "failed"];

impl PlacementMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            running: Gauge::default(),
            starts: Counter::default(),
            stops: Family::default(),
            handoffs: Family::default(),
            routed: Family::default(),
            delivered_here: Counter::default(),
            waited: Counter::default(),
            without_owner: Family::new_with_constructor(wait_histogram),
            duplicates: Counter::default(),
        };
        let r = registry.sub_registry_with_prefix("foundation_placement");
        r.register(
            "running",
            "Placed instances running here",
            m.running.clone(),
        );
        r.register("starts", "Instances started here", m.starts.clone());
        r.register(
            "stops",
            "Instances stopped here, by reason (moved, lost-quorum, removed, leaving, renewed)",
            Declared(m.stops.clone()),
        );
        r.register(
            "handoffs",
            "Handoffs from here (begun, completed, timed_out, too_large, taken_back) and states resumed here",
            Declared(m.handoffs.clone()),
        );
        r.register(
            "routed",
            "Messages this node routed by key, by outcome",
            Declared(m.routed.clone()),
        );
        r.register(
            "delivered_here",
            "Routed messages delivered to instances running here",
            m.delivered_here.clone(),
        );
        r.register_with_unit(
            "lease_wait",
            "Time instances this node should own waited for their lease before starting here",
            Unit::Seconds,
            m.waited.clone(),
        );
        r.register_with_unit(
            "without_owner",
            "Per workload, how long each instance that started here was without an owner as this node saw it (from its view naming this node the owner to the start; detection before it not included)",
            Unit::Seconds,
            m.without_owner.clone(),
        );
        r.register(
            "duplicates_detected",
            "Times another node was seen running an instance while it ran here, both under valid leases (should stay 0)",
            m.duplicates.clone(),
        );
        // Every label shows from the start, so alerts can be written before the first event.
        for reason in StopReason::ALL {
            let _ = m.stops.get_or_create(&ReasonLabels {
                reason: reason.name(),
            });
        }
        for outcome in HANDOFF_OUTCOMES {
            let _ = m.handoffs.get_or_create(&OutcomeLabels { outcome });
        }
        for outcome in ROUTE_OUTCOMES {
            let _ = m.routed.get_or_create(&OutcomeLabels { outcome });
        }
        m
    }

    /// Brings the metrics up to date with the core's placement machine.
    pub fn sync(&self, core: &Core) {
        let p = core.placement();
        let s = p.stats();
        let running = p.running().count() + p.running_per_node().count();
        self.running.set(i64::try_from(running).unwrap_or(i64::MAX));
        advance(&self.starts, s.started);
        for reason in StopReason::ALL {
            let labels = ReasonLabels {
                reason: reason.name(),
            };
            advance(
                &self.stops.get_or_create(&labels),
                s.stops_by_reason[reason.index()],
            );
        }
        let h = p.handoff_stats();
        let handoffs = [
            h.begun,
            h.completed,
            h.timed_out,
            h.too_large,
            h.resumed,
            h.taken_back,
        ];
        for (outcome, total) in HANDOFF_OUTCOMES.into_iter().zip(handoffs) {
            advance(
                &self.handoffs.get_or_create(&OutcomeLabels { outcome }),
                total,
            );
        }
        let r = p.route_stats();
        for (outcome, total) in ROUTE_OUTCOMES.into_iter().zip([r.delivered, r.failed]) {
            advance(
                &self.routed.get_or_create(&OutcomeLabels { outcome }),
                total,
            );
        }
        advance(&self.delivered_here, r.delivered_here);
        let waited = s.waited_micros as f64 / 1e6;
        self.waited.inc_by((waited - self.waited.get()).max(0.0));
        advance(&self.duplicates, p.duplicates_detected());
    }

    /// An instance of `workload` started here after `waited` without an owner.
    pub fn without_owner(&self, workload: &str, waited: Duration) {
        let labels = WorkloadLabels {
            workload: workload.to_owned(),
        };
        self.without_owner
            .get_or_create(&labels)
            .observe(waited.as_secs_f64());
    }
}
