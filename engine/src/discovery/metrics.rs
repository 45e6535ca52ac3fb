//! Discovery metrics: what each strategy found, and how often it failed.

use foundation_transport::Declared;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// The label on every discovery metric: the strategy's name (a fixed, small set).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StrategyLabel {
    strategy: &'static str,
}

/// Counters shared by all strategies of one node. Cloning shares the counters.
///
/// `Default` gives counters that are not registered anywhere (handy in tests).
#[derive(Clone, Debug, Default)]
pub struct DiscoveryMetrics {
    candidates: Family<StrategyLabel, Counter>,
    errors: Family<StrategyLabel, Counter>,
}

impl DiscoveryMetrics {
    /// Creates the counters and registers them in `registry`:
    /// `foundation_discovery_candidates_total{strategy}` and
    /// `foundation_discovery_errors_total{strategy}`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "foundation_discovery_candidates",
            "Candidate peer addresses reported by discovery (re-reports included)",
            Declared(metrics.candidates.clone()),
        );
        registry.register(
            "foundation_discovery_errors",
            "Discovery failures: lookups that failed, malformed advertisements, daemon errors",
            Declared(metrics.errors.clone()),
        );
        metrics
    }

    /// Counts one reported candidate.
    pub fn candidate(&self, strategy: &'static str) {
        self.candidates
            .get_or_create(&StrategyLabel { strategy })
            .inc();
    }

    /// Counts one failure.
    pub fn error(&self, strategy: &'static str) {
        self.errors.get_or_create(&StrategyLabel { strategy }).inc();
    }

    /// Candidates reported so far by `strategy`.
    pub fn candidates(&self, strategy: &'static str) -> u64 {
        self.candidates
            .get_or_create(&StrategyLabel { strategy })
            .get()
    }

    /// Failures counted so far for `strategy`.
    pub fn errors(&self, strategy: &'static str) -> u64 {
        self.errors.get_or_create(&StrategyLabel { strategy }).get()
    }
}
