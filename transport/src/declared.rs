//! Families that are listed before their first sample.
//!
//! `prometheus_client` leaves a labelled family out of the exposition, HELP and TYPE included,
//! until some label set is first used. Dashboards and alerts are built against what `/metrics`
//! shows, so a family that appears only after the first failed call cannot be alerted on before
//! that failure. Wrapping a family in [`Declared`] when registering it keeps its HELP and TYPE
//! in every exposition, with no samples until there are some (both text formats allow that).

use prometheus_client::encoding::{EncodeMetric, MetricEncoder};
use prometheus_client::metrics::{MetricType, TypedMetric};

/// A metric (typically a `Family`) whose descriptor is always exposed; see the module.
#[derive(Clone, Debug, Default)]
pub struct Declared<M>(pub M);

impl<M: EncodeMetric> EncodeMetric for Declared<M> {
    fn encode(&self, encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        self.0.encode(encoder)
    }

    fn metric_type(&self) -> MetricType {
        self.0.metric_type()
    }

    fn is_empty(&self) -> bool {
        false
    }
}

impl<M: TypedMetric> TypedMetric for Declared<M> {
    const TYPE: MetricType = M::TYPE;
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::EncodeLabelSet;
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::family::Family;
    use prometheus_client::registry::Registry;

    #[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
    struct Outcome {
        outcome: &'static str,
    }

    #[test]
    fn an_unused_family_is_listed_with_help_and_type() {
        let mut registry = Registry::default();
        let plain = Family::<Outcome, Counter>::default();
        let declared = Family::<Outcome, Counter>::default();
        registry.register("plain", "Hidden until used", plain.clone());
        registry.register("calls", "Calls by outcome", Declared(declared.clone()));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(!text.contains("plain"), "{text}");
        assert!(
            text.contains("# HELP calls Calls by outcome.\n# TYPE calls counter\n"),
            "{text}"
        );
        declared.get_or_create(&Outcome { outcome: "ok" }).inc();
        text.clear();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(text.contains("calls_total{outcome=\"ok\"} 1"), "{text}");
    }
}
