//! The global directory: which services each cluster exports, as a CRDT that gateways swap
//! whole on every WAN probe (push-pull), so that after a cut heals one probe round converges it.
//!
//! Each cluster's entry is a max-register ordered by `(version, writer)`: merging keeps the
//! greater, which is commutative, associative and idempotent. A gateway is the authority for its
//! own cluster's entry: a remote copy of it with a higher version only raises the counter, and
//! the gateway writes its own view above it (so two gateways of one cluster that agree stop
//! writing, and one that lags is overwritten as soon as it catches up).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::identity::{ClusterName, NodeId};

/// Most clusters one directory holds: more from a peer is refused as hostile.
pub const MAX_CLUSTERS: usize = 256;
/// Most exported services per cluster.
pub const MAX_SERVICES: usize = 4096;
/// Longest service name accepted from a peer.
pub const MAX_SERVICE_NAME: usize = 256;
/// Highest entry version accepted from a peer, and written: far above what one raise per
/// change reaches, so only a forged entry meets it.
pub const MAX_VERSION: u64 = u64::MAX / 2;

/// What a cluster says about one exported service.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ExportedService {
    /// Healthy instances in the exporting cluster when its gateway last wrote the entry.
    pub healthy: u32,
}

/// One cluster's exports and the version that orders them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterExports {
    /// Raised by the cluster's gateways on every change.
    pub version: u64,
    /// The gateway that wrote this version (breaks ties between two gateways of one cluster).
    pub writer: NodeId,
    /// Exported services by name.
    pub services: BTreeMap<String, ExportedService>,
}

impl ClusterExports {
    /// Checks `cluster`'s entry from a peer against the limits.
    fn validate(&self, cluster: &ClusterName) -> Result<(), DirectoryError> {
        if self.version > MAX_VERSION {
            return Err(DirectoryError::BadVersion {
                cluster: cluster.as_str().to_owned(),
                version: self.version,
            });
        }
        if self.services.len() > MAX_SERVICES {
            return Err(DirectoryError::TooManyServices {
                cluster: cluster.as_str().to_owned(),
                count: self.services.len(),
            });
        }
        let bad = self
            .services
            .keys()
            .find(|name| name.is_empty() || name.len() > MAX_SERVICE_NAME);
        match bad {
            Some(name) => Err(DirectoryError::BadService(name.len())),
            None => Ok(()),
        }
    }

    fn order(&self) -> (u64, NodeId, &BTreeMap<String, ExportedService>) {
        (self.version, self.writer, &self.services)
    }
}

/// Why a directory from a peer was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum DirectoryError {
    /// More clusters than [`MAX_CLUSTERS`].
    #[error("directory names {0} clusters, at most {MAX_CLUSTERS} accepted")]
    TooManyClusters(usize),
    /// More services in one cluster than [`MAX_SERVICES`].
    #[error("cluster {cluster} exports {count} services, at most {MAX_SERVICES} accepted")]
    TooManyServices {
        /// The cluster.
        cluster: String,
        /// How many it claimed.
        count: usize,
    },
    /// A cluster name that is not a valid [`ClusterName`].
    #[error("invalid cluster name in directory: {0:?}")]
    BadCluster(String),
    /// An empty or overlong service name.
    #[error("invalid service name in directory (length {0})")]
    BadService(usize),
    /// An entry's version above [`MAX_VERSION`], which no gateway reaches by its changes.
    #[error("cluster {cluster}'s entry has version {version}, at most {MAX_VERSION} accepted")]
    BadVersion {
        /// The cluster.
        cluster: String,
        /// The version it claimed.
        version: u64,
    },
}

/// The global directory of exported services, by cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GlobalDirectory {
    clusters: BTreeMap<ClusterName, ClusterExports>,
}

impl GlobalDirectory {
    /// The entry of `cluster`, if any gateway of it has written one that reached us.
    pub fn cluster(&self, cluster: &ClusterName) -> Option<&ClusterExports> {
        self.clusters.get(cluster)
    }

    /// Every cluster's entry, in name order.
    pub fn clusters(&self) -> impl Iterator<Item = (&ClusterName, &ClusterExports)> {
        self.clusters.iter()
    }

    /// Checks a directory received from a peer against the limits (serde does not validate
    /// cluster names).
    pub fn validate(&self) -> Result<(), DirectoryError> {
        if self.clusters.len() > MAX_CLUSTERS {
            return Err(DirectoryError::TooManyClusters(self.clusters.len()));
        }
        for (cluster, exports) in &self.clusters {
            if ClusterName::new(cluster.as_str()).is_err() {
                return Err(DirectoryError::BadCluster(cluster.as_str().to_owned()));
            }
            exports.validate(cluster)?;
        }
        Ok(())
    }

    /// The entries of the clusters `keep` names: what one link is offered or takes in.
    pub fn restricted(&self, keep: impl Fn(&ClusterName) -> bool) -> GlobalDirectory {
        let clusters = self
            .clusters
            .iter()
            .filter(|(cluster, _)| keep(cluster))
            .map(|(cluster, exports)| (cluster.clone(), exports.clone()))
            .collect();
        GlobalDirectory { clusters }
    }

    /// Drops the entries of the clusters `keep` does not name.
    pub(super) fn retain(&mut self, keep: impl Fn(&ClusterName) -> bool) {
        self.clusters.retain(|cluster, _| keep(cluster));
    }

    /// Joins `other` into `self`: per cluster the greater entry. Returns whether `self` changed.
    pub fn merge(&mut self, other: &GlobalDirectory) -> bool {
        let mut changed = false;
        for (cluster, theirs) in &other.clusters {
            match self.clusters.get_mut(cluster) {
                Some(ours) if ours.order() >= theirs.order() => {}
                Some(ours) => {
                    *ours = theirs.clone();
                    changed = true;
                }
                None => {
                    self.clusters.insert(cluster.clone(), theirs.clone());
                    changed = true;
                }
            }
        }
        changed
    }

    /// Writes `services` as `local`'s exports by `writer`, above any version seen, unless the
    /// entry already says exactly that. Returns whether it wrote.
    pub fn write_local(
        &mut self,
        local: &ClusterName,
        writer: NodeId,
        services: BTreeMap<String, ExportedService>,
    ) -> bool {
        let version = match self.clusters.get(local) {
            Some(current) if current.services == services => return false,
            // Capped so what this gateway sends stays acceptable to its peers: only a peer
            // that forged this cluster's entry at the cap can hold it there.
            Some(current) => current.version.saturating_add(1).min(MAX_VERSION),
            None => 1,
        };
        let exports = ClusterExports {
            version,
            writer,
            services,
        };
        self.clusters.insert(local.clone(), exports);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cluster(name: &str) -> ClusterName {
        ClusterName::new(name).unwrap()
    }

    fn services(names: &[(&str, u32)]) -> BTreeMap<String, ExportedService> {
        names
            .iter()
            .map(|(n, h)| (n.to_string(), ExportedService { healthy: *h }))
            .collect()
    }

    fn written(writes: &[(u8, u8, u8)]) -> GlobalDirectory {
        let mut directory = GlobalDirectory::default();
        for (c, w, s) in writes {
            let name = cluster(&format!("c{}", c % 3));
            let list = services(&[(&format!("s{}", s % 4), u32::from(*s))]);
            directory.write_local(&name, NodeId::from_u128(u128::from(*w % 2)), list);
        }
        directory
    }

    /// Found by the `federation_wire` fuzz target: a peer's copy of this gateway's own entry
    /// at `u64::MAX` made the gateway's next write of it overflow, and one at the cap made it
    /// write a version its peers refuse.
    #[test]
    fn an_entry_version_no_gateway_reaches_is_refused() {
        let home = cluster("home");
        let mut theirs = written(&[]);
        theirs.write_local(&home, NodeId::from_u128(2), services(&[("a", 1)]));
        theirs.clusters.get_mut(&home).unwrap().version = u64::MAX;
        assert!(matches!(
            theirs.validate(),
            Err(DirectoryError::BadVersion {
                version: u64::MAX,
                ..
            })
        ));
        theirs.clusters.get_mut(&home).unwrap().version = MAX_VERSION;
        assert_eq!(theirs.validate(), Ok(()));
        let mut ours = written(&[]);
        ours.merge(&theirs);
        assert!(ours.write_local(&home, NodeId::from_u128(1), services(&[("b", 1)])));
        assert_eq!(ours.cluster(&home).unwrap().version, MAX_VERSION);
        assert_eq!(
            ours.validate(),
            Ok(()),
            "what it sends its peers stays acceptable"
        );
    }

    proptest! {
        #[test]
        fn merge_is_a_join(a in prop::collection::vec(any::<(u8, u8, u8)>(), 0..6),
                           b in prop::collection::vec(any::<(u8, u8, u8)>(), 0..6),
                           c in prop::collection::vec(any::<(u8, u8, u8)>(), 0..6)) {
            let (a, b, c) = (written(&a), written(&b), written(&c));
            let mut ab = a.clone();
            ab.merge(&b);
            let mut ba = b.clone();
            ba.merge(&a);
            prop_assert_eq!(&ab, &ba);
            let mut ab_c = ab.clone();
            ab_c.merge(&c);
            let mut bc = b.clone();
            bc.merge(&c);
            let mut a_bc = a.clone();
            a_bc.merge(&bc);
            prop_assert_eq!(&ab_c, &a_bc);
            let mut aa = a.clone();
            prop_assert!(!aa.merge(&a));
            prop_assert_eq!(aa, a);
        }
    }

    #[test]
    fn a_gateway_writes_its_own_view_above_a_remote_copy() {
        let a = cluster("a");
        let mut g1 = GlobalDirectory::default();
        let mut g2 = GlobalDirectory::default();
        g1.write_local(&a, NodeId::from_u128(1), services(&[("billing", 2)]));
        g1.write_local(&a, NodeId::from_u128(1), services(&[("billing", 3)]));
        // g2 lags: it sees no service yet, and learns g1's version 2 through a remote cluster.
        g2.write_local(&a, NodeId::from_u128(2), services(&[]));
        g2.merge(&g1);
        assert!(g2.write_local(&a, NodeId::from_u128(2), services(&[])));
        assert_eq!(g2.cluster(&a).unwrap().version, 3);
        // Once both agree, neither writes again.
        g1.merge(&g2);
        assert!(g1.write_local(&a, NodeId::from_u128(1), services(&[("billing", 3)])));
        g2.merge(&g1);
        assert!(!g2.write_local(&a, NodeId::from_u128(2), services(&[("billing", 3)])));
        assert!(!g1.write_local(&a, NodeId::from_u128(1), services(&[("billing", 3)])));
    }

    #[test]
    fn hostile_directories_are_refused() {
        let mut d = GlobalDirectory::default();
        d.write_local(&cluster("a"), NodeId::from_u128(1), services(&[("", 1)]));
        assert_eq!(d.validate(), Err(DirectoryError::BadService(0)));
        let bad: GlobalDirectory = serde_json::from_str(
            r#"{"clusters":{"Not A Name":{"version":1,"writer":1,"services":{}}}}"#,
        )
        .unwrap();
        assert!(matches!(bad.validate(), Err(DirectoryError::BadCluster(_))));
        let many: BTreeMap<_, _> = (0..=MAX_SERVICES)
            .map(|i| (format!("s{i}"), ExportedService { healthy: 1 }))
            .collect();
        let mut d = GlobalDirectory::default();
        d.write_local(&cluster("a"), NodeId::from_u128(1), many);
        assert!(matches!(
            d.validate(),
            Err(DirectoryError::TooManyServices { .. })
        ));
    }
}
