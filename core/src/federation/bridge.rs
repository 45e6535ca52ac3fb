//! Pub/sub bridged between linked clusters: the rules, kept here so that the engine's gateway
//! and any simulator decide alike.
//!
//! - Explicit on both sides. A gateway's configuration names, per linked cluster, the topic
//!   patterns it *exports* there (published in this cluster, sent over the link) and the ones
//!   it *imports* from there (published there, delivered here). A message crosses only when
//!   the sender exports and the receiver imports a pattern matching its topic; the sender does
//!   learns what the receiver would deliver from the interest it sends back (`interest.rs`);
//!   until it has heard some, what the receiver does not import is dropped there (and counted).
//! - One hop, no loops. A bridged message carries its origin cluster into the receiving
//!   cluster's pub/sub; a gateway forwards only messages published in its own cluster (no
//!   origin), so nothing goes back where it came from nor onward to a third cluster, whatever
//!   the two sides' patterns are.
//! - One forwarder per cluster. Every gateway of a cluster subscribes to the exported patterns
//!   (so a standby has the traffic already when it takes over), and only the live gateway with
//!   the lowest node id forwards ([`is_forwarder`]).
//! - At most once across the WAN: no acknowledgement or resend between gateways; a message is
//!   dropped (counted) when the link is down, the gateway's queue for the link is full, or the
//!   send fails.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::FederationConfigError;
use crate::identity::{ClusterName, NodeId};
use crate::services::topic::{Pattern, Topic, TopicError};
use crate::services::trace::TraceContext;

/// One linked cluster's bridge, as configured: pattern strings, checked by [`TopicBridges::new`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BridgeConfig {
    /// The linked cluster.
    pub cluster: String,
    /// Patterns of topics published in this cluster that are sent to `cluster`.
    pub export: Vec<String>,
    /// Patterns of topics published in `cluster` that are delivered in this cluster.
    pub import: Vec<String>,
}

/// Why a bridge configuration is unusable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BridgeConfigError {
    /// The bridge names a cluster that no link reaches.
    #[error("the topic bridge names cluster {0:?}, which is not linked (add a [[federation.links]] entry for it)")]
    UnknownCluster(String),
    /// Two bridges to one cluster.
    #[error("two topic bridges to cluster {0}; put all of its patterns in one")]
    Duplicate(ClusterName),
    /// A pattern that does not parse.
    #[error("topic bridge to {cluster}: {direction} pattern {pattern:?}: {source}")]
    Pattern {
        /// The linked cluster.
        cluster: ClusterName,
        /// `export` or `import`.
        direction: &'static str,
        /// The pattern as written.
        pattern: String,
        /// What is wrong with it.
        source: TopicError,
    },
}

/// The checked bridges of one gateway.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TopicBridges {
    exports: BTreeMap<ClusterName, Vec<Pattern>>,
    imports: BTreeMap<ClusterName, Vec<Pattern>>,
    /// Every exported pattern once, in order: what the gateway subscribes to.
    subscriptions: Vec<Pattern>,
}

impl TopicBridges {
    /// Checks `bridges` against the `linked` clusters.
    pub fn new(
        linked: &BTreeSet<ClusterName>,
        bridges: &[BridgeConfig],
    ) -> Result<Self, BridgeConfigError> {
        let mut checked = Self::default();
        for bridge in bridges {
            let cluster = linked
                .iter()
                .find(|c| c.as_str() == bridge.cluster)
                .ok_or_else(|| BridgeConfigError::UnknownCluster(bridge.cluster.clone()))?;
            if checked.exports.contains_key(cluster) {
                return Err(BridgeConfigError::Duplicate(cluster.clone()));
            }
            let export = patterns(cluster, "export", &bridge.export)?;
            let import = patterns(cluster, "import", &bridge.import)?;
            checked.exports.insert(cluster.clone(), export);
            checked.imports.insert(cluster.clone(), import);
        }
        let all: BTreeSet<&Pattern> = checked.exports.values().flatten().collect();
        checked.subscriptions = all.into_iter().cloned().collect();
        Ok(checked)
    }

    /// True when nothing is bridged either way.
    pub fn is_empty(&self) -> bool {
        self.exports
            .values()
            .chain(self.imports.values())
            .all(Vec::is_empty)
    }

    /// The patterns the gateway subscribes to in its own cluster: every exported one, once.
    pub fn subscriptions(&self) -> &[Pattern] {
        &self.subscriptions
    }

    /// The clusters a message of `topic`, received through the gateway's subscription to
    /// `via`, goes to. Nothing for a message that came in over a bridge (`origin` is set):
    /// that is the loop rule. When several subscribed patterns match the topic, the gateway
    /// receives the message once per pattern; only the first pattern's copy is forwarded.
    pub fn forward(&self, via: &Pattern, topic: &Topic, origin: Option<&str>) -> Vec<ClusterName> {
        if origin.is_some() {
            return Vec::new();
        }
        let first = self.subscriptions.iter().find(|p| p.matches(topic));
        if first != Some(via) {
            return Vec::new();
        }
        self.exports
            .iter()
            .filter(|(_, patterns)| patterns.iter().any(|p| p.matches(topic)))
            .map(|(cluster, _)| cluster.clone())
            .collect()
    }

    /// True when this cluster imports `topic` from `from`.
    pub fn imports(&self, from: &ClusterName, topic: &Topic) -> bool {
        self.imports
            .get(from)
            .is_some_and(|patterns| patterns.iter().any(|p| p.matches(topic)))
    }

    /// The patterns this cluster imports from `from`.
    pub fn import_patterns(&self, from: &ClusterName) -> &[Pattern] {
        self.imports.get(from).map_or(&[], Vec::as_slice)
    }

    /// The clusters with a bridge, in order.
    pub fn clusters(&self) -> impl Iterator<Item = &ClusterName> {
        self.exports.keys()
    }
}

fn patterns(
    cluster: &ClusterName,
    direction: &'static str,
    written: &[String],
) -> Result<Vec<Pattern>, BridgeConfigError> {
    written
        .iter()
        .map(|pattern| {
            Pattern::parse(pattern).map_err(|source| BridgeConfigError::Pattern {
                cluster: cluster.clone(),
                direction,
                pattern: pattern.clone(),
                source,
            })
        })
        .collect()
}

/// Whether gateway `me` forwards its cluster's exported messages, given the cluster's live
/// gateways as its services directory shows them: the lowest node id does. A gateway not yet
/// visible to itself counts itself in, so a lone gateway forwards from its first message (two
/// gateways that do not see each other yet may both forward for that moment).
pub fn is_forwarder(me: NodeId, gateways: impl IntoIterator<Item = NodeId>) -> bool {
    gateways.into_iter().all(|other| other >= me)
}

/// One message a gateway sends over a link. Its origin is the sending cluster, which the
/// receiving gateway knows from the link's authenticated connection, so it is not carried.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BridgedMessage {
    /// The topic it was published on.
    pub topic: String,
    /// Its payload.
    pub payload: Vec<u8>,
    /// The publisher's trace, as subscribers in the publishing cluster saw it.
    pub trace: TraceContext,
}

/// The most one batch of [`BridgedMessage`]s holds: what a forwarding gateway puts in one
/// request, and what a receiving gateway takes. The receiver checks too, since its inbound
/// queue holds a number of batches: a batch as large as a frame allows, from a gateway that
/// ignores the limit, would pin four times what the limit says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchLimits {
    /// Most messages in a batch.
    pub messages: usize,
    /// Most payload bytes in a batch, all messages together (a single larger message is not
    /// sent: [`BatchLimits::fits_alone`]).
    pub payload_bytes: usize,
}

impl Default for BatchLimits {
    /// 512 messages, 1 MiB of payload: well under the gateways' 4 MiB frame.
    fn default() -> Self {
        Self {
            messages: 512,
            payload_bytes: 1024 * 1024,
        }
    }
}

impl BatchLimits {
    /// Whether a batch of `messages` messages and `payload_bytes` bytes may take one more
    /// message of `next_payload` bytes (a sender's rule; an empty batch takes any message,
    /// since a sender drops one that does not fit alone first: [`BatchLimits::fits_alone`]).
    pub fn has_room(&self, messages: usize, payload_bytes: usize, next_payload: usize) -> bool {
        messages == 0
            || (messages < self.messages
                && payload_bytes.saturating_add(next_payload) <= self.payload_bytes)
    }

    /// Refuses limits under which no batch could be taken: zero, or a payload as large as the
    /// gateways' largest frame (`max_frame`), which a full batch and its topics would not fit.
    pub fn validate(&self, max_frame: usize) -> Result<(), FederationConfigError> {
        if self.messages == 0 || self.payload_bytes == 0 {
            return Err(FederationConfigError::Limit(
                "a bridged batch must hold at least one message and one byte",
            ));
        }
        if self.payload_bytes >= max_frame {
            return Err(FederationConfigError::Limit(
                "a bridged batch's payload must be smaller than the gateways' max_frame",
            ));
        }
        Ok(())
    }

    /// Whether a message of `payload` bytes fits a batch alone: one that does not would be
    /// refused by a receiver with the same limits, so a sender drops it instead.
    pub fn fits_alone(&self, payload: usize) -> bool {
        payload <= self.payload_bytes
    }

    /// Refuses a received batch over the limits.
    pub fn check(&self, batch: &[BridgedMessage]) -> Result<(), BatchTooLarge> {
        let payload_bytes = batch.iter().map(|m| m.payload.len()).sum();
        if batch.len() <= self.messages && payload_bytes <= self.payload_bytes {
            return Ok(());
        }
        Err(BatchTooLarge {
            messages: batch.len(),
            payload_bytes,
            limits: *self,
        })
    }
}

/// A received batch over the receiver's [`BatchLimits`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "bridged batch of {messages} messages and {payload_bytes} payload bytes refused: over this \
     gateway's limit of {} messages and {} bytes",
    limits.messages,
    limits.payload_bytes
)]
pub struct BatchTooLarge {
    /// Messages in the batch.
    pub messages: usize,
    /// Their payload bytes.
    pub payload_bytes: usize,
    /// The receiver's limits.
    pub limits: BatchLimits,
}

/// What the receiving gateway did with a batch of [`BridgedMessage`]s.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BridgeReceipt {
    /// Published in the receiving cluster.
    pub accepted: u32,
    /// Dropped: not imported from the sender, or a topic that does not parse.
    pub refused: u32,
    /// Dropped: the receiving gateway's inbound queue was full.
    pub overloaded: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> ClusterName {
        ClusterName::new(s).unwrap()
    }

    fn linked() -> BTreeSet<ClusterName> {
        ["eu", "us"].into_iter().map(name).collect()
    }

    fn bridge(cluster: &str, export: &[&str], import: &[&str]) -> BridgeConfig {
        BridgeConfig {
            cluster: cluster.into(),
            export: export.iter().map(|s| s.to_string()).collect(),
            import: import.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn topic(s: &str) -> Topic {
        Topic::parse(s).unwrap()
    }

    fn pattern(s: &str) -> Pattern {
        Pattern::parse(s).unwrap()
    }

    fn message(payload: usize) -> BridgedMessage {
        use rand10::SeedableRng;
        BridgedMessage {
            topic: "news.sport".into(),
            payload: vec![0; payload],
            trace: TraceContext::new_root(&mut rand10::rngs::StdRng::seed_from_u64(1), true),
        }
    }

    #[test]
    fn a_batch_over_either_limit_is_refused_and_a_sender_stays_within_them() {
        let limits = BatchLimits {
            messages: 3,
            payload_bytes: 100,
        };
        let at_limit = vec![message(50), message(30), message(20)];
        assert_eq!(limits.check(&at_limit), Ok(()));
        let too_many = vec![message(1); 4];
        let refused = limits.check(&too_many).unwrap_err();
        assert_eq!((refused.messages, refused.payload_bytes), (4, 4));
        assert!(refused
            .to_string()
            .contains("limit of 3 messages and 100 bytes"));
        let too_big = vec![message(60), message(41)];
        assert_eq!(limits.check(&too_big).unwrap_err().payload_bytes, 101);
        assert!(
            limits.has_room(0, 0, 1_000),
            "an empty batch takes any message"
        );
        assert!(limits.has_room(2, 80, 20));
        assert!(!limits.has_room(2, 80, 21));
        assert!(!limits.has_room(3, 0, 0));
    }

    #[test]
    fn unknown_clusters_bad_patterns_and_duplicates_are_errors() {
        let unknown = TopicBridges::new(&linked(), &[bridge("asia", &["a"], &[])]);
        assert_eq!(
            unknown,
            Err(BridgeConfigError::UnknownCluster("asia".into()))
        );
        let bad = TopicBridges::new(&linked(), &[bridge("eu", &[], &["orders.>.x"])]);
        assert!(matches!(
            bad,
            Err(BridgeConfigError::Pattern {
                direction: "import",
                source: TopicError::TailNotLast { .. },
                ..
            })
        ));
        let twice = TopicBridges::new(
            &linked(),
            &[bridge("eu", &["a"], &[]), bridge("eu", &[], &["b"])],
        );
        assert_eq!(twice, Err(BridgeConfigError::Duplicate(name("eu"))));
    }

    #[test]
    fn a_topic_goes_to_the_clusters_that_export_it_once_per_message() {
        let bridges = TopicBridges::new(
            &linked(),
            &[
                bridge("eu", &["orders.>"], &[]),
                bridge("us", &["orders.us.*", "prices.*"], &[]),
            ],
        )
        .unwrap();
        let subscribed: Vec<&str> = bridges
            .subscriptions()
            .iter()
            .map(Pattern::as_str)
            .collect();
        assert_eq!(subscribed, ["orders.>", "orders.us.*", "prices.*"]);
        let us_order = topic("orders.us.created");
        // Received through both matching subscriptions: only the first copy goes out.
        assert_eq!(
            bridges.forward(&pattern("orders.>"), &us_order, None),
            [name("eu"), name("us")]
        );
        assert!(bridges
            .forward(&pattern("orders.us.*"), &us_order, None)
            .is_empty());
        assert_eq!(
            bridges.forward(&pattern("orders.>"), &topic("orders.eu.x"), None),
            [name("eu")]
        );
        assert_eq!(
            bridges.forward(&pattern("prices.*"), &topic("prices.oil"), None),
            [name("us")]
        );
    }

    #[test]
    fn a_message_that_came_over_a_bridge_is_never_forwarded() {
        let bridges =
            TopicBridges::new(&linked(), &[bridge("eu", &["news.>"], &["news.>"])]).unwrap();
        let news = topic("news.today");
        assert_eq!(
            bridges.forward(&pattern("news.>"), &news, None),
            [name("eu")]
        );
        assert!(bridges
            .forward(&pattern("news.>"), &news, Some("eu"))
            .is_empty());
        assert!(bridges
            .forward(&pattern("news.>"), &news, Some("us"))
            .is_empty());
    }

    #[test]
    fn only_imported_topics_from_the_named_cluster_are_accepted() {
        let bridges = TopicBridges::new(&linked(), &[bridge("eu", &[], &["prices.*"])]).unwrap();
        assert!(bridges.imports(&name("eu"), &topic("prices.oil")));
        assert!(!bridges.imports(&name("eu"), &topic("prices.oil.brent")));
        assert!(!bridges.imports(&name("us"), &topic("prices.oil")));
        assert!(bridges.subscriptions().is_empty());
        assert!(!bridges.is_empty());
        assert!(TopicBridges::new(&linked(), &[]).unwrap().is_empty());
    }

    #[test]
    fn the_lowest_live_gateway_forwards() {
        let (a, b) = (NodeId::from_u128(1), NodeId::from_u128(2));
        assert!(is_forwarder(a, [a, b]));
        assert!(!is_forwarder(b, [a, b]));
        assert!(is_forwarder(b, [b]));
        assert!(is_forwarder(b, []));
    }
}
