//! The federation machine of one gateway: its links, the global directory and this cluster's
//! exports. Inputs are method calls with `now`; outputs are probes to send and link changes.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use super::directory::{DirectoryError, ExportedService, GlobalDirectory};
use super::link::{Link, LinkState, LinkStatus, WanTimers};
use crate::identity::{ClusterName, NodeId};
use crate::time::Instant;

/// One configured link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkConfig {
    /// The remote cluster.
    pub cluster: ClusterName,
    /// Its gateways, tried in this order.
    pub gateways: Vec<SocketAddr>,
}

/// What the machine needs to start.
#[derive(Clone, Debug)]
pub struct FederationConfig {
    /// This gateway's cluster.
    pub local: ClusterName,
    /// This gateway's node id (the writer of the directory entries it writes).
    pub me: NodeId,
    /// The links to other clusters.
    pub links: Vec<LinkConfig>,
    /// Probe pacing.
    pub timers: WanTimers,
}

/// Why a federation configuration is unusable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FederationConfigError {
    /// A link to the gateway's own cluster.
    #[error("a cluster cannot link to itself ({0})")]
    SelfLink(ClusterName),
    /// Two links to one cluster.
    #[error("two links to cluster {0}")]
    DuplicateLink(ClusterName),
    /// A link without gateway addresses.
    #[error("the link to {0} names no gateway address")]
    NoGateways(ClusterName),
    /// Unusable WAN timers.
    #[error("invalid WAN timers: {0}")]
    Timers(&'static str),
}

/// Why a lookup, a call or a remote's input was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum FederationError {
    /// Neither this cluster, nor linked, nor in the global directory.
    #[error("unknown cluster {0}")]
    UnknownCluster(String),
    /// Known from the directory only (reached through another cluster): calls need a link.
    #[error("cluster {0} is not linked to this one (known only through another cluster)")]
    NotLinked(ClusterName),
    /// The link is down: its last probes were missed.
    #[error("the link to cluster {0} is down")]
    LinkDown(ClusterName),
    /// The remote cluster does not export the service (or its export has not arrived yet).
    #[error("cluster {cluster} exports no service {service:?}")]
    NotExported {
        /// The cluster.
        cluster: ClusterName,
        /// The service.
        service: String,
    },
    /// A directory from a peer broke the limits.
    #[error(transparent)]
    BadDirectory(#[from] DirectoryError),
}

/// A probe the driver is to send: to which link's gateway, carrying which directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeToSend {
    /// The remote cluster.
    pub cluster: ClusterName,
    /// The probe's id, for [`Federation::probe_answered`] / [`Federation::probe_failed`].
    pub id: u64,
    /// The remote gateway.
    pub gateway: SocketAddr,
    /// This gateway's directory, pushed with the probe.
    pub directory: GlobalDirectory,
}

/// A link that changed state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkChange {
    /// The remote cluster.
    pub cluster: ClusterName,
    /// The state before.
    pub from: LinkState,
    /// The state now.
    pub to: LinkState,
}

/// One gateway's federation machine.
pub struct Federation {
    local: ClusterName,
    me: NodeId,
    timers: WanTimers,
    links: BTreeMap<ClusterName, Link>,
    directory: GlobalDirectory,
    exports: BTreeMap<String, ExportedService>,
    next_id: u64,
    changes: Vec<LinkChange>,
}

impl Federation {
    /// A machine whose links probe at once.
    pub fn new(config: FederationConfig, now: Instant) -> Result<Self, FederationConfigError> {
        config
            .timers
            .validate()
            .map_err(FederationConfigError::Timers)?;
        let mut links = BTreeMap::new();
        for link in config.links {
            if link.cluster == config.local {
                return Err(FederationConfigError::SelfLink(link.cluster));
            }
            if link.gateways.is_empty() {
                return Err(FederationConfigError::NoGateways(link.cluster));
            }
            if links.contains_key(&link.cluster) {
                return Err(FederationConfigError::DuplicateLink(link.cluster));
            }
            let state = Link::new(link.cluster.clone(), link.gateways, now);
            links.insert(link.cluster, state);
        }
        let mut directory = GlobalDirectory::default();
        directory.write_local(&config.local, config.me, BTreeMap::new());
        Ok(Self {
            local: config.local,
            me: config.me,
            timers: config.timers,
            links,
            directory,
            exports: BTreeMap::new(),
            next_id: 0,
            changes: Vec::new(),
        })
    }

    /// Times out overdue probes and returns the probes now due, each carrying the directory.
    pub fn poll(&mut self, now: Instant) -> Vec<ProbeToSend> {
        let mut out = Vec::new();
        for (cluster, link) in &mut self.links {
            let before = link.state();
            let probe = link.poll(now, &self.timers, &mut self.next_id);
            note_change(&mut self.changes, cluster, before, link.state());
            if let Some(probe) = probe {
                out.push(ProbeToSend {
                    cluster: cluster.clone(),
                    id: probe.id,
                    gateway: probe.gateway,
                    directory: self.directory.clone(),
                });
            }
        }
        out
    }

    /// When [`poll`](Federation::poll) next has work; `None` without links.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.links
            .values()
            .map(|link| link.next_deadline(&self.timers))
            .min()
    }

    /// Takes in the answer to probe `id` of the link to `cluster`, with the remote's directory.
    pub fn probe_answered(
        &mut self,
        now: Instant,
        cluster: &ClusterName,
        id: u64,
        directory: &GlobalDirectory,
    ) -> Result<(), FederationError> {
        directory.validate()?;
        let Some(link) = self.links.get_mut(cluster) else {
            return Err(FederationError::UnknownCluster(cluster.to_string()));
        };
        let before = link.state();
        if link.answered(now, id) {
            note_change(&mut self.changes, cluster, before, link.state());
            self.absorb(directory);
        }
        Ok(())
    }

    /// Takes in a probe that could not be delivered or answered.
    pub fn probe_failed(&mut self, cluster: &ClusterName, id: u64) {
        if let Some(link) = self.links.get_mut(cluster) {
            let before = link.state();
            link.failed(id, &self.timers);
            note_change(&mut self.changes, cluster, before, link.state());
        }
    }

    /// Takes in a probe from a gateway of `from` and returns this gateway's directory to answer
    /// with. Only linked clusters may probe (the TLS layer already refused the others).
    pub fn incoming_probe(
        &mut self,
        from: &ClusterName,
        directory: &GlobalDirectory,
    ) -> Result<GlobalDirectory, FederationError> {
        if !self.links.contains_key(from) {
            return Err(FederationError::UnknownCluster(from.to_string()));
        }
        directory.validate()?;
        self.absorb(directory);
        Ok(self.directory.clone())
    }

    /// Sets what this cluster exports (the export list filtered by what runs in the cluster).
    /// Returns whether the directory changed.
    pub fn set_exports(&mut self, exports: BTreeMap<String, ExportedService>) -> bool {
        self.exports = exports;
        self.directory
            .write_local(&self.local, self.me, self.exports.clone())
    }

    /// Whether this cluster exports `service`: a forwarded call to anything else is refused.
    pub fn exports(&self, service: &str) -> bool {
        self.exports.contains_key(service)
    }

    /// The exported service `service` of `cluster`: `Ok(None)` when the cluster is known but
    /// does not (or not yet visibly) export it.
    pub fn lookup(
        &self,
        cluster: &str,
        service: &str,
    ) -> Result<Option<ExportedService>, FederationError> {
        let name = self.known(cluster)?;
        Ok(self
            .directory
            .cluster(&name)
            .and_then(|exports| exports.services.get(service).cloned()))
    }

    /// The remote gateway a call to `service` of `cluster` goes to.
    pub fn route(&self, cluster: &str, service: &str) -> Result<SocketAddr, FederationError> {
        let name = self.known(cluster)?;
        let Some(link) = self.links.get(&name) else {
            return Err(FederationError::NotLinked(name));
        };
        if link.state() == LinkState::Down {
            return Err(FederationError::LinkDown(name));
        }
        if self.lookup(cluster, service)?.is_none() {
            return Err(FederationError::NotExported {
                cluster: name,
                service: service.to_owned(),
            });
        }
        Ok(link.gateway())
    }

    /// The probe pacing.
    pub fn timers(&self) -> WanTimers {
        self.timers
    }

    /// Takes in a call that could not reach `gateway` of `cluster` (no handshake): the link
    /// moves on to the remote's next gateway, as after a missed probe, without counting a miss.
    pub fn call_failed(&mut self, cluster: &ClusterName, gateway: SocketAddr) {
        if let Some(link) = self.links.get_mut(cluster) {
            link.skip(gateway);
        }
    }

    /// Every link's status, in cluster order.
    pub fn links(&self) -> Vec<LinkStatus> {
        self.links.values().map(Link::status).collect()
    }

    /// The linked clusters.
    pub fn linked(&self) -> BTreeSet<ClusterName> {
        self.links.keys().cloned().collect()
    }

    /// The global directory as this gateway holds it.
    pub fn directory(&self) -> &GlobalDirectory {
        &self.directory
    }

    /// Link state changes since the last call.
    pub fn take_changes(&mut self) -> Vec<LinkChange> {
        std::mem::take(&mut self.changes)
    }

    /// Merges a remote directory, then writes this cluster's own view above any remote copy of
    /// it that differs (this gateway is an authority for its own cluster's entry).
    fn absorb(&mut self, directory: &GlobalDirectory) {
        self.directory.merge(directory);
        self.directory
            .write_local(&self.local, self.me, self.exports.clone());
    }

    fn known(&self, cluster: &str) -> Result<ClusterName, FederationError> {
        let unknown = || FederationError::UnknownCluster(cluster.to_owned());
        let name = ClusterName::new(cluster).map_err(|_| unknown())?;
        let known = name == self.local
            || self.links.contains_key(&name)
            || self.directory.cluster(&name).is_some();
        match known {
            true => Ok(name),
            false => Err(unknown()),
        }
    }
}

fn note_change(
    changes: &mut Vec<LinkChange>,
    cluster: &ClusterName,
    from: LinkState,
    to: LinkState,
) {
    if from != to {
        changes.push(LinkChange {
            cluster: cluster.clone(),
            from,
            to,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(ms: u64) -> Instant {
        Instant::from_elapsed(Duration::from_millis(ms))
    }

    fn name(n: &str) -> ClusterName {
        ClusterName::new(n).unwrap()
    }

    fn gateway(local: &str, me: u128, links: &[&str]) -> Federation {
        let links = links
            .iter()
            .map(|c| LinkConfig {
                cluster: name(c),
                gateways: vec!["127.0.0.1:9".parse().unwrap()],
            })
            .collect();
        let timers = WanTimers {
            probe_interval: Duration::from_millis(1000),
            probe_timeout: Duration::from_millis(500),
            down_after: 2,
        };
        let config = FederationConfig {
            local: name(local),
            me: NodeId::from_u128(me),
            links,
            timers,
        };
        Federation::new(config, at(0)).unwrap()
    }

    fn export(names: &[&str]) -> BTreeMap<String, ExportedService> {
        names
            .iter()
            .map(|n| (n.to_string(), ExportedService { healthy: 1 }))
            .collect()
    }

    /// Delivers `from`'s due probes to `to` and their answers back, at `now`.
    fn exchange(from: &mut Federation, to: &mut Federation, now: Instant) {
        let local = from.local.clone();
        for probe in from.poll(now) {
            let reply = to.incoming_probe(&local, &probe.directory).unwrap();
            from.probe_answered(now, &probe.cluster, probe.id, &reply)
                .unwrap();
        }
    }

    #[test]
    fn exported_services_cross_the_link_and_unexported_ones_do_not_exist_there() {
        let (mut a, mut b) = (gateway("a", 1, &["b"]), gateway("b", 2, &["a"]));
        a.set_exports(export(&["billing"]));
        exchange(&mut b, &mut a, at(0));
        assert_eq!(
            b.lookup("a", "billing"),
            Ok(Some(ExportedService { healthy: 1 }))
        );
        assert_eq!(b.lookup("a", "ledger"), Ok(None));
        assert_eq!(b.route("a", "billing"), Ok("127.0.0.1:9".parse().unwrap()));
        assert!(matches!(
            b.route("a", "ledger"),
            Err(FederationError::NotExported { .. })
        ));
        assert_eq!(
            b.lookup("c", "billing"),
            Err(FederationError::UnknownCluster("c".into()))
        );
        assert_eq!(
            b.lookup("Not A Name", "x"),
            Err(FederationError::UnknownCluster("Not A Name".into()))
        );
        assert_eq!(b.links()[0].state, LinkState::Up);
        assert_eq!(
            b.take_changes(),
            vec![LinkChange {
                cluster: name("a"),
                from: LinkState::Connecting,
                to: LinkState::Up
            }]
        );
    }

    #[test]
    fn an_unlinked_cluster_cannot_probe() {
        let mut a = gateway("a", 1, &["b"]);
        let result = a.incoming_probe(&name("c"), &GlobalDirectory::default());
        assert_eq!(result, Err(FederationError::UnknownCluster("c".into())));
        assert!(a.directory().cluster(&name("c")).is_none());
    }

    #[test]
    fn a_cut_takes_the_link_down_and_the_directory_converges_after_the_heal() {
        let (mut a, mut b) = (gateway("a", 1, &["b"]), gateway("b", 2, &["a"]));
        a.set_exports(export(&["billing"]));
        exchange(&mut b, &mut a, at(0));
        // The cut: probes time out; b routes nothing to a once the link is down.
        for t in [1000, 1500, 2000, 2500] {
            assert!(b.poll(at(t)).len() <= 1);
        }
        assert_eq!(b.links()[0].state, LinkState::Down);
        assert_eq!(
            b.route("a", "billing"),
            Err(FederationError::LinkDown(name("a")))
        );
        // Meanwhile a changes its exports, and b its own.
        a.set_exports(export(&["billing", "ledger"]));
        b.set_exports(export(&["search"]));
        // The heal: one probe round each way converges both directories.
        exchange(&mut b, &mut a, at(3000));
        assert_eq!(a.directory(), b.directory());
        assert_eq!(
            b.lookup("a", "ledger"),
            Ok(Some(ExportedService { healthy: 1 }))
        );
        assert_eq!(
            a.lookup("b", "search"),
            Ok(Some(ExportedService { healthy: 1 }))
        );
        assert_eq!(b.links()[0].state, LinkState::Up);
    }

    #[test]
    fn transit_entries_are_visible_but_not_callable_without_a_link() {
        let (mut hub, mut b, mut c) = (
            gateway("hub", 1, &["b", "c"]),
            gateway("b", 2, &["hub"]),
            gateway("c", 3, &["hub"]),
        );
        c.set_exports(export(&["search"]));
        exchange(&mut c, &mut hub, at(0));
        exchange(&mut b, &mut hub, at(0));
        assert_eq!(
            b.lookup("c", "search"),
            Ok(Some(ExportedService { healthy: 1 }))
        );
        assert_eq!(
            b.route("c", "search"),
            Err(FederationError::NotLinked(name("c")))
        );
    }

    #[test]
    fn bad_configurations_are_refused() {
        let link = |c: &str, gateways: Vec<SocketAddr>| LinkConfig {
            cluster: name(c),
            gateways,
        };
        let config = |links| FederationConfig {
            local: name("a"),
            me: NodeId::from_u128(1),
            links,
            timers: WanTimers::default(),
        };
        let one = vec!["127.0.0.1:9".parse().unwrap()];
        let refused = |c| Federation::new(c, at(0)).err();
        assert_eq!(
            refused(config(vec![link("a", one.clone())])),
            Some(FederationConfigError::SelfLink(name("a")))
        );
        assert_eq!(
            refused(config(vec![link("b", vec![])])),
            Some(FederationConfigError::NoGateways(name("b")))
        );
        assert_eq!(
            refused(config(vec![link("b", one.clone()), link("b", one)])),
            Some(FederationConfigError::DuplicateLink(name("b")))
        );
    }
}
