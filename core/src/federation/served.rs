//! Calls a gateway served for other clusters, counted by the cluster each started in (what
//! `/federation` shows as `served_by_origin`).
//!
//! A call from a linked cluster counts for that cluster, which the link's handshake proved. A
//! call carried by a hub counts for the origin the hub names, which nothing here can check: a
//! hub naming a new cluster in every call would grow the table without end. So the linked
//! clusters (a configured, bounded set) are always named, at most [`HUB_NAMED_ORIGINS_MAX`]
//! others are, and the calls of origins past that are counted together.

use std::collections::BTreeMap;

use crate::identity::ClusterName;

/// Origins named only by hubs that a gateway counts by name; calls of others beyond are
/// counted together, as `unlisted`.
pub const HUB_NAMED_ORIGINS_MAX: usize = 256;

/// The served calls by origin, bounded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServedCalls {
    by_origin: BTreeMap<ClusterName, u64>,
    /// How many of `by_origin`'s names are not linked clusters.
    hub_named: usize,
    unlisted: u64,
}

impl ServedCalls {
    /// Counts one call that started in `origin`; `linked` says whether `origin` is a cluster
    /// this gateway links to.
    pub fn count(&mut self, origin: &ClusterName, linked: bool) {
        if let Some(calls) = self.by_origin.get_mut(origin) {
            *calls += 1;
        } else if linked || self.hub_named < HUB_NAMED_ORIGINS_MAX {
            self.hub_named += usize::from(!linked);
            self.by_origin.insert(origin.clone(), 1);
        } else {
            self.unlisted += 1;
        }
    }

    /// The calls of each origin counted by name.
    pub fn by_origin(&self) -> &BTreeMap<ClusterName, u64> {
        &self.by_origin
    }

    /// The calls of origins past [`HUB_NAMED_ORIGINS_MAX`], counted together.
    pub fn unlisted(&self) -> u64 {
        self.unlisted
    }
}
