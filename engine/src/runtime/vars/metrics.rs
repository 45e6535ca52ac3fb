//! `foundation_vars_*` metrics, refreshed from the core's variables machine.

use foundation_transport::Declared;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::runtime::metrics::advance;
use foundation_core::Core;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

/// The variables' metrics of one node.
#[derive(Debug, Default)]
pub(crate) struct VarsMetrics {
    variables: Gauge,
    cas_won: Counter,
    cas_no_majority: Counter,
    lww_writes: Counter,
    draws_insufficient: Counter,
    rights_handed: Counter,
    rights_reclaimed: Counter,
    reseated: Counter,
    refused: Family<ReasonLabels, Counter>,
}

/// Why the machine refused something, as the `reason` label says it.
const REASONS: [&str; 3] = [
    "invalid_value",
    "foreign_message",
    "conflicting_declaration",
];

impl VarsMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        let r = registry.sub_registry_with_prefix("foundation_vars");
        r.register(
            "variables",
            "Variables held here",
            metrics.variables.clone(),
        );
        r.register(
            "cas_won",
            "Compare-and-sets of this node that won their version",
            metrics.cas_won.clone(),
        );
        r.register(
            "cas_no_majority",
            "Compare-and-sets of this node that ended without a majority of acceptors",
            metrics.cas_no_majority.clone(),
        );
        r.register(
            "lww_writes",
            "Writes of lww variables made on this node",
            metrics.lww_writes.clone(),
        );
        r.register(
            "draws_insufficient",
            "Counter draws refused because this node held too few rights",
            metrics.draws_insufficient.clone(),
        );
        r.register(
            "rights_handed",
            "Counter units this node handed to nodes that asked for rights",
            metrics.rights_handed.clone(),
        );
        r.register(
            "rights_reclaimed",
            "Counter units this node took, as heir, from node lives a majority fenced dead",
            metrics.rights_reclaimed.clone(),
        );
        r.register(
            "reseated",
            "Moves of variables off gone acceptor lives that this node made on its own and won",
            metrics.reseated.clone(),
        );
        r.register(
            "refused",
            "What the variables machine refused: values outside their type, messages for another spec or sender, conflicting declarations",
            Declared(metrics.refused.clone()),
        );
        // Every reason shows from the start, so alerts can be written before the first refusal.
        for reason in REASONS {
            let _ = metrics.refused.get_or_create(&ReasonLabels { reason });
        }
        metrics
    }

    /// Brings the metrics up to date with the core.
    pub fn sync(&self, core: &Core) {
        let vars = core.vars();
        let s = vars.stats();
        self.variables
            .set(i64::try_from(vars.names().count()).unwrap_or(i64::MAX));
        advance(&self.cas_won, s.cas_won);
        advance(&self.cas_no_majority, s.cas_no_majority);
        advance(&self.lww_writes, s.lww_writes);
        advance(&self.draws_insufficient, s.insufficient);
        advance(&self.rights_handed, s.rights_handed);
        advance(&self.rights_reclaimed, s.rights_reclaimed);
        advance(&self.reseated, s.reseated);
        let counts = [
            s.invalid_values,
            s.foreign_messages,
            s.conflicting_declarations,
        ];
        for (reason, count) in REASONS.into_iter().zip(counts) {
            advance(&self.refused.get_or_create(&ReasonLabels { reason }), count);
        }
    }
}
