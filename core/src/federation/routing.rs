//! Hub-and-spoke routing, chosen by configuration on top of the direct links (a mesh).
//!
//! Trust stays explicit on both sides:
//! - a *spoke* names some of its links as hubs ([`Routing::hubs`]); it takes in directory
//!   entries of third clusters only from those links, and reaches a cluster it has no direct
//!   link with through a hub that carries it. From a plain link only the linked cluster's own
//!   entry (and this cluster's, whose version it may raise) is taken in, so the directory is
//!   not transitive by accident;
//! - a *hub* names the clusters it carries calls between ([`Routing::transit`], each linked to it
//!   directly); it offers their entries only to the others of them, and forwards a call only
//!   from one of them to another.
//!
//! A hub forwards a call only over a direct link, as a call that names its origin and that the
//! receiver serves in its own cluster and never forwards again: a route has at most one transit
//! hop, so no route can loop, whatever the configurations say.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use super::error::{FederationConfigError, FederationError};
use super::link::{Link, LinkState};
use crate::identity::ClusterName;

/// The default least time between two pushes of a changed directory.
pub const DEFAULT_PUSH_SPACING: Duration = Duration::from_millis(50);

/// A gateway's part in the topology. The default is a mesh member: no hub, no transit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Routing {
    /// Links used as hubs: third clusters' entries are taken in from them only, and a
    /// cluster without a direct link is reached through one of them (in name order).
    pub hubs: BTreeSet<ClusterName>,
    /// As a hub: the clusters this gateway carries calls between (each linked directly).
    pub transit: BTreeSet<ClusterName>,
    /// Least time between two pushes of this gateway's changed directory to its links;
    /// `None`: no push, the probes alone carry changes.
    pub push_spacing: Option<Duration>,
}

impl Default for Routing {
    fn default() -> Self {
        Self {
            hubs: BTreeSet::new(),
            transit: BTreeSet::new(),
            push_spacing: Some(DEFAULT_PUSH_SPACING),
        }
    }
}

/// Where a call to another cluster goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// Over the direct link to the cluster.
    Direct {
        /// The cluster, and the link.
        cluster: ClusterName,
        /// Its current gateway.
        gateway: SocketAddr,
    },
    /// Through a hub that carries the cluster: one transit hop.
    ViaHub {
        /// The hub's cluster, and the link the call leaves on.
        hub: ClusterName,
        /// The hub's current gateway.
        gateway: SocketAddr,
        /// The cluster the call is for.
        target: ClusterName,
    },
}

impl Route {
    /// The link the call leaves on.
    pub fn link(&self) -> &ClusterName {
        match self {
            Route::Direct { cluster, .. } => cluster,
            Route::ViaHub { hub, .. } => hub,
        }
    }

    /// The remote gateway it goes to first.
    pub fn gateway(&self) -> SocketAddr {
        match self {
            Route::Direct { gateway, .. } | Route::ViaHub { gateway, .. } => *gateway,
        }
    }
}

impl Routing {
    /// Hubs and transit clusters must be linked (so neither is this cluster).
    pub(super) fn validate(
        &self,
        links: &BTreeMap<ClusterName, Link>,
    ) -> Result<(), FederationConfigError> {
        if let Some(hub) = self.hubs.iter().find(|h| !links.contains_key(*h)) {
            return Err(FederationConfigError::HubNotLinked(hub.clone()));
        }
        let unlinked = self.transit.iter().find(|c| !links.contains_key(*c));
        if let Some(cluster) = unlinked {
            return Err(FederationConfigError::TransitNotLinked(cluster.clone()));
        }
        match self.push_spacing {
            Some(spacing) if spacing.is_zero() => Err(FederationConfigError::Timers(
                "push_spacing must be above zero",
            )),
            _ => Ok(()),
        }
    }

    /// Whether an entry of `cluster` in a directory from the link to `from` is taken in.
    pub(super) fn accepts(
        &self,
        local: &ClusterName,
        from: &ClusterName,
        cluster: &ClusterName,
    ) -> bool {
        cluster == from || cluster == local || self.hubs.contains(from)
    }

    /// Whether this gateway offers the entry of `cluster` to the link to `to`: its own and
    /// `to`'s always, a third cluster's only as a hub between the two.
    pub(super) fn offers(
        &self,
        local: &ClusterName,
        to: &ClusterName,
        cluster: &ClusterName,
    ) -> bool {
        cluster == local
            || cluster == to
            || (self.transit.contains(to) && self.transit.contains(cluster))
    }

    /// Whether this gateway, as a hub, carries a call from `from` to `to` (both transit
    /// clusters, so both linked directly; never back to the sender or to itself).
    pub(super) fn allows_transit(
        &self,
        local: &ClusterName,
        from: &ClusterName,
        to: &ClusterName,
    ) -> Result<(), FederationError> {
        let allowed =
            from != to && to != local && self.transit.contains(from) && self.transit.contains(to);
        match allowed {
            true => Ok(()),
            false => Err(FederationError::TransitRefused {
                from: from.clone(),
                to: to.clone(),
            }),
        }
    }

    /// The route to `target`: its direct link unless that is down, else the nearest hub that
    /// carries it and is not down (up before connecting, then the lowest smoothed probe RTT,
    /// then name order); `carried` is, per hub, the third clusters its last directory offered.
    pub(super) fn route(
        &self,
        target: &ClusterName,
        links: &BTreeMap<ClusterName, Link>,
        carried: &BTreeMap<ClusterName, BTreeSet<ClusterName>>,
    ) -> Result<Route, FederationError> {
        let direct = links.get(target);
        if let Some(link) = direct.filter(|l| l.state() != LinkState::Down) {
            return Ok(Route::Direct {
                cluster: target.clone(),
                gateway: link.gateway(),
            });
        }
        let hubs: Vec<(&ClusterName, &Link)> = self
            .hubs
            .iter()
            .filter(|hub| carried.get(*hub).is_some_and(|c| c.contains(target)))
            .filter_map(|hub| links.get(hub).map(|link| (hub, link)))
            .collect();
        let nearest = hubs
            .iter()
            .filter(|(_, l)| l.state() != LinkState::Down)
            .min_by_key(|(_, l)| (l.state() != LinkState::Up, l.rtt().is_none(), l.rtt()));
        if let Some((hub, link)) = nearest {
            return Ok(Route::ViaHub {
                hub: (*hub).clone(),
                gateway: link.gateway(),
                target: target.clone(),
            });
        }
        Err(match (direct, hubs.first()) {
            (Some(_), _) => FederationError::LinkDown(target.clone()),
            (None, Some((hub, _))) => FederationError::LinkDown((*hub).clone()),
            (None, None) => FederationError::NotLinked(target.clone()),
        })
    }
}
