//! `foundation_services_*`, `foundation_rpc_*` and `foundation_pubsub_*` metrics of one node.

use foundation_transport::Declared;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct Outcome {
    pub service: String,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct Service {
    pub service: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct State {
    pub state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct Reason {
    pub reason: &'static str,
}

pub(crate) fn latency_histogram() -> Histogram {
    // 50 µs to about 50 s.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 21))
}

/// The services layer's metrics; cheap to clone (every field is a shared handle).
#[derive(Clone, Debug)]
pub(crate) struct ServicesMetrics {
    /// Visible instances in the directory.
    pub instances: Gauge,
    /// Calls this node made, by service and outcome.
    pub calls: Family<Outcome, Counter>,
    /// Duration of calls this node made, attempts and retries included.
    pub call_seconds: Family<Service, Histogram, fn() -> Histogram>,
    /// Attempts beyond the first.
    pub retries: Family<Service, Counter>,
    /// Calls this node's instances answered, by service and outcome.
    pub served: Family<Outcome, Counter>,
    /// Circuit breaker transitions, by the state entered.
    pub breaker_transitions: Family<State, Counter>,
    /// Calls refused by a caller's rate limit.
    pub rate_limited: Counter,
    /// Messages published from this node.
    pub published: Counter,
    /// Messages handed to local subscribers.
    pub delivered: Counter,
    /// Messages not delivered, by reason.
    pub dropped: Family<Reason, Counter>,
    /// Messages sent again because no acknowledgement came.
    pub redelivered: Counter,
    /// Local subscriptions.
    pub subscriptions: Gauge,
}

impl ServicesMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            instances: Gauge::default(),
            calls: Family::default(),
            call_seconds: Family::new_with_constructor(latency_histogram),
            retries: Family::default(),
            served: Family::default(),
            breaker_transitions: Family::default(),
            rate_limited: Counter::default(),
            published: Counter::default(),
            delivered: Counter::default(),
            dropped: Family::default(),
            redelivered: Counter::default(),
            subscriptions: Gauge::default(),
        };
        let services = registry.sub_registry_with_prefix("foundation_services");
        services.register(
            "instances",
            "Visible service instances",
            metrics.instances.clone(),
        );
        let rpc = registry.sub_registry_with_prefix("foundation_rpc");
        rpc.register(
            "calls",
            "Calls made, by service and outcome",
            Declared(metrics.calls.clone()),
        );
        rpc.register(
            "call_duration_seconds",
            "Duration of calls made, retries included",
            Declared(metrics.call_seconds.clone()),
        );
        rpc.register(
            "retries",
            "Attempts beyond the first",
            Declared(metrics.retries.clone()),
        );
        rpc.register(
            "served",
            "Calls answered, by service and outcome",
            Declared(metrics.served.clone()),
        );
        rpc.register(
            "breaker_transitions",
            "Circuit breaker transitions, by state entered",
            Declared(metrics.breaker_transitions.clone()),
        );
        rpc.register(
            "rate_limited",
            "Calls refused by the caller's rate limit",
            metrics.rate_limited.clone(),
        );
        let pubsub = registry.sub_registry_with_prefix("foundation_pubsub");
        pubsub.register(
            "published",
            "Messages published here",
            metrics.published.clone(),
        );
        pubsub.register(
            "delivered",
            "Messages handed to local subscribers",
            metrics.delivered.clone(),
        );
        pubsub.register(
            "dropped",
            "Messages not delivered, by reason",
            Declared(metrics.dropped.clone()),
        );
        pubsub.register(
            "redelivered",
            "Reliable messages sent again for lack of an acknowledgement",
            metrics.redelivered.clone(),
        );
        pubsub.register(
            "subscriptions",
            "Local subscriptions",
            metrics.subscriptions.clone(),
        );
        metrics
    }

    pub fn drop_reason(&self, reason: &'static str) {
        self.dropped.get_or_create(&Reason { reason }).inc();
    }
}
