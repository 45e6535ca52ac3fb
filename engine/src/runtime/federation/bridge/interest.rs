//! Interest back over the links, the gateway's I/O; what it is and when it goes are
//! `foundation_core::federation`'s (`InterestSender`, `HeardInterest`).
//!
//! Out: on every turn of the gateway's task, this cluster's forwarder works out from the
//! services directory what this cluster would deliver from each linked cluster (its imports,
//! narrowed to the subscription patterns in the directory that are not a gateway's own bridge)
//! and sends what the machine says is due, one request per remote gateway, answered `Pushed`.
//! In: what a linked gateway says is held for the forwarder's filter (`route`).

use std::collections::{BTreeMap, BTreeSet};

use foundation_core::federation::wire::{self, FederationReply, FederationRequest};
use foundation_core::federation::{
    BridgeInterest, InterestError, InterestSender, InterestSent, InterestToSend, LinkState,
};
use foundation_core::services::topic::Pattern;
use foundation_core::services::Directory;
use foundation_transport::ClusterName;

use super::{forwarder, Bridge, FederationHandle};
use crate::runtime::services::lock;

/// The sender of interest, and the interest last worked out with the directory it came from.
pub(super) struct Telling {
    sender: InterestSender,
    /// The directory's pub/sub interest is shared between its copies until it changes, so an
    /// unchanged list is recognised by its address (the held copy keeps it alive).
    cached: Option<(Directory, BTreeMap<ClusterName, BridgeInterest>)>,
}

impl Telling {
    pub(super) fn new(sender: InterestSender) -> Self {
        Self {
            sender,
            cached: None,
        }
    }

    /// What this cluster would deliver from each of `linked`, as `directory` shows it.
    fn wanted(
        &mut self,
        bridge: &Bridge,
        directory: &Directory,
        linked: &BTreeSet<ClusterName>,
    ) -> BTreeMap<ClusterName, BridgeInterest> {
        if let Some((held, wanted)) = &self.cached {
            let same = std::ptr::eq(held.interest(), directory.interest());
            if same && wanted.keys().eq(linked.iter()) {
                return wanted.clone();
            }
        }
        let subscribed = subscribed(directory);
        let wanted: BTreeMap<_, _> = linked
            .iter()
            .map(|c| (c.clone(), bridge.rules.interest(c, &subscribed)))
            .collect();
        self.cached = Some((directory.clone(), wanted.clone()));
        wanted
    }
}

/// Every subscription pattern of the cluster that delivers to a subscriber here, once.
fn subscribed(directory: &Directory) -> BTreeSet<Pattern> {
    directory
        .interest()
        .iter()
        .filter(|i| !i.bridge)
        .filter_map(|i| Pattern::parse(&i.pattern).ok())
        .collect()
}

/// Sends the interest due now: this cluster's, if this gateway is its forwarder, to the
/// gateways of every linked cluster whose link is up. Forgets what a cluster whose link went
/// down had said, so that after it comes back everything crosses until it speaks again.
pub(in crate::runtime::federation) fn tell_interest(
    handle: &FederationHandle,
    directory: &Directory,
) {
    let bridge = &handle.inner.bridge;
    let links = handle.links();
    let up: BTreeSet<ClusterName> = links
        .iter()
        .filter(|l| l.state == LinkState::Up)
        .map(|l| l.cluster.clone())
        .collect();
    {
        let mut heard = lock(&bridge.heard);
        for link in links.iter().filter(|l| l.state == LinkState::Down) {
            heard.forget(&link.cluster);
        }
    }
    let now = handle.inner.now();
    let sends = {
        let mut telling = lock(&bridge.telling);
        let wanted = if forwarder(bridge.me, directory) {
            let linked = links.iter().map(|l| l.cluster.clone()).collect();
            telling.wanted(bridge, directory, &linked)
        } else {
            BTreeMap::new()
        };
        telling.sender.poll(now, &up, &wanted)
    };
    for send in sends {
        tokio::spawn(tell_one(handle.clone(), send));
    }
}

/// One request; the machine hears how it ended.
async fn tell_one(handle: FederationHandle, send: InterestToSend) {
    let request = FederationRequest::Interest(send.interest.to_wire());
    let timeout = handle.inner.machine().timers().probe_timeout;
    let outcome = match wire::encode(&request) {
        Ok(payload) => {
            let endpoint = &handle.inner.endpoint;
            let reply = endpoint.request(&send.cluster, send.gateway, payload.into(), timeout);
            match reply.await.as_deref().map(wire::decode) {
                Ok(Ok(FederationReply::Pushed)) => InterestSent::Taken,
                Ok(answer) => {
                    tracing::debug!(cluster = %send.cluster, ?answer, "interest not taken");
                    InterestSent::Refused
                }
                Err(_) => InterestSent::Failed,
            }
        }
        Err(_) => InterestSent::Failed,
    };
    let now = handle.inner.now();
    let bridge = &handle.inner.bridge;
    lock(&bridge.telling).sender.answered(now, &send, outcome);
    bridge.interest_answered.notify_one();
}

impl Bridge {
    /// When an interest may next fall due without a change in the directory or the links.
    pub(in crate::runtime::federation) fn next_interest(
        &self,
    ) -> Option<foundation_core::time::Instant> {
        lock(&self.telling).sender.next_deadline()
    }

    /// Takes in what `from` said it would deliver.
    pub(in crate::runtime::federation) fn heard_interest(
        &self,
        now: foundation_core::time::Instant,
        from: &ClusterName,
        patterns: &[String],
    ) -> Result<(), InterestError> {
        lock(&self.heard).heard(now, from, patterns)
    }

    /// What `cluster` said it would deliver, if that holds now (`None`: everything crosses).
    pub(in crate::runtime::federation) fn interest_heard(
        &self,
        now: foundation_core::time::Instant,
        cluster: &ClusterName,
    ) -> Option<Vec<String>> {
        lock(&self.heard)
            .current(now, cluster)
            .map(BridgeInterest::to_wire)
    }

    /// For `GET /federation`: what `cluster` said (`None`: nothing holds, everything crosses)
    /// and what its gateways were told.
    pub(in crate::runtime::federation) fn interest_json(
        &self,
        now: foundation_core::time::Instant,
        cluster: &ClusterName,
    ) -> serde_json::Value {
        let heard = self.interest_heard(now, cluster);
        let told = lock(&self.telling)
            .sender
            .told(cluster)
            .map(BridgeInterest::to_wire);
        serde_json::json!({ "heard": heard, "told": told })
    }
}
