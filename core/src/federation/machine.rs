//! The federation machine of one gateway: its links, the global directory and this cluster's
//! exports. Inputs are method calls with `now`; outputs are probes to send and link changes.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use super::directory::{ExportedService, GlobalDirectory};
use super::error::{FederationConfigError, FederationError};
use super::link::{Link, LinkState, LinkStatus, WanTimers};
use super::push::Pusher;
use super::routing::{Route, Routing};
use super::served::ServedCalls;
use super::wire::RELAY_SERVICE;
use crate::identity::{ClusterName, NodeId};
use crate::services::admission::MAX_CALL_DEADLINE;
use crate::services::router::{attempt_share, retryable, AttemptEnd};
use crate::time::Instant;

/// Attempts of one forwarded call, the first included (see [`Federation::call_ended`]).
pub const MAX_CALL_ATTEMPTS: u32 = 3;

/// One attempt of a forwarded call, as [`Federation::call_ended`] judges it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ForwardedAttempt {
    /// Which attempt this is, from 1.
    pub number: u32,
    /// Whether running the call twice is harmless (the caller's
    /// [`CallOptions::idempotent`](crate::services::router::CallOptions::idempotent)).
    pub idempotent: bool,
    /// When the call's deadline passes.
    pub until: Instant,
}

impl ForwardedAttempt {
    /// How long this attempt may take, sent at `now`: what is left of the deadline, shared
    /// with the attempts after it when the call is idempotent (the services router's rule,
    /// [`attempt_share`]).
    pub fn budget(&self, now: Instant) -> Duration {
        let remaining = MAX_CALL_ATTEMPTS
            .saturating_sub(self.number)
            .saturating_add(1);
        attempt_share(self.until.saturating_since(now), self.idempotent, remaining)
    }
}

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

/// A push the driver is to send: the directory as offered to one link, right after it changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushToSend {
    /// The remote cluster.
    pub cluster: ClusterName,
    /// The remote gateway.
    pub gateway: SocketAddr,
    /// The directory as offered to that link.
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
    routing: Routing,
    /// Per hub, the third clusters its last directory offered (the calls it carries).
    carried: BTreeMap<ClusterName, BTreeSet<ClusterName>>,
    pusher: Pusher,
    /// Calls served for other clusters, by the cluster they started in.
    served: ServedCalls,
    /// The longest a call from another cluster runs here, as a hub or served.
    max_call_deadline: Duration,
    directory: GlobalDirectory,
    exports: BTreeMap<String, ExportedService>,
    next_id: u64,
    changes: Vec<LinkChange>,
}

impl Federation {
    /// A mesh member (no hub, no transit) whose links probe at once.
    pub fn new(config: FederationConfig, now: Instant) -> Result<Self, FederationConfigError> {
        Self::with_routing(config, Routing::default(), now)
    }

    /// A machine in the topology `routing` names, whose links probe at once.
    pub fn with_routing(
        config: FederationConfig,
        routing: Routing,
        now: Instant,
    ) -> Result<Self, FederationConfigError> {
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
        routing.validate(&links)?;
        let mut directory = GlobalDirectory::default();
        directory.write_local(&config.local, config.me, BTreeMap::new());
        Ok(Self {
            local: config.local,
            me: config.me,
            timers: config.timers,
            links,
            pusher: Pusher::new(routing.push_spacing),
            routing,
            carried: BTreeMap::new(),
            served: ServedCalls::default(),
            max_call_deadline: MAX_CALL_DEADLINE,
            directory,
            exports: BTreeMap::new(),
            next_id: 0,
            changes: Vec::new(),
        })
    }

    /// Times out overdue probes and returns the probes now due, each carrying the directory
    /// as offered to its link.
    pub fn poll(&mut self, now: Instant) -> Vec<ProbeToSend> {
        let mut due = Vec::new();
        for (cluster, link) in &mut self.links {
            let before = link.state();
            let probes = link.poll(now, &self.timers, &mut self.next_id);
            note_change(&mut self.changes, cluster, before, link.state());
            due.extend(probes.into_iter().map(|probe| (cluster.clone(), probe)));
        }
        due.into_iter()
            .map(|(cluster, probe)| ProbeToSend {
                directory: self.offered(&cluster),
                cluster,
                id: probe.id,
                gateway: probe.gateway,
            })
            .collect()
    }

    /// The pushes due at `now`: after the directory changed, to every gateway of every link
    /// that is not down (at most one round per push spacing; the probes repair a lost one).
    /// Every gateway, not only the one the link probes: each keeps a directory of its own that
    /// its own probes would otherwise refresh only one probe interval later.
    pub fn pushes(&mut self, now: Instant) -> Vec<PushToSend> {
        if !self.pusher.take(now) {
            return Vec::new();
        }
        let up = self
            .links
            .iter()
            .filter(|(_, link)| link.state() != LinkState::Down);
        let mut pushes = Vec::new();
        for (cluster, link) in up {
            let directory = self.offered(cluster);
            pushes.extend(link.gateways().iter().map(|&gateway| PushToSend {
                cluster: cluster.clone(),
                gateway,
                directory: directory.clone(),
            }));
        }
        pushes
    }

    /// When [`pushes`](Federation::pushes) next has work; `None` when nothing is pending.
    pub fn next_push(&self) -> Option<Instant> {
        self.pusher.due()
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
            self.absorb(cluster, directory);
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
    /// with (as offered to `from`). Only linked clusters may probe (the TLS layer already
    /// refused the others).
    pub fn incoming_probe(
        &mut self,
        now: Instant,
        from: &ClusterName,
        directory: &GlobalDirectory,
    ) -> Result<GlobalDirectory, FederationError> {
        self.incoming_push(now, from, directory)?;
        Ok(self.offered(from))
    }

    /// Takes in a directory a gateway of `from` pushed after it changed. Hearing from `from`
    /// proves its cluster reachable again, so a link to it that is not up probes at once rather
    /// than at its next round: after a heal the two ends come up together, not a probe
    /// interval apart, and calls stop meeting `LinkDown` while the directory already shows the
    /// remote's services.
    pub fn incoming_push(
        &mut self,
        now: Instant,
        from: &ClusterName,
        directory: &GlobalDirectory,
    ) -> Result<(), FederationError> {
        let Some(link) = self.links.get_mut(from) else {
            return Err(FederationError::UnknownCluster(from.to_string()));
        };
        directory.validate()?;
        link.heard_from(now);
        self.absorb(from, directory);
        Ok(())
    }

    /// Sets what this cluster exports (the export list filtered by what runs in the cluster).
    /// Returns whether the directory changed; a change is pushed to the links.
    pub fn set_exports(&mut self, mut exports: BTreeMap<String, ExportedService>) -> bool {
        // The relay is this cluster's own way out: exported, it would carry any linked
        // cluster's calls on to our other links as ours, outside the transit rules.
        exports.remove(RELAY_SERVICE);
        self.exports = exports;
        let changed = self
            .directory
            .write_local(&self.local, self.me, self.exports.clone());
        if changed {
            self.pusher.mark();
        }
        changed
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

    /// Where a call to `service` of `cluster` goes: its direct link, or else a hub that
    /// carries it; `NotLinked` when neither exists.
    pub fn route(&self, cluster: &str, service: &str) -> Result<Route, FederationError> {
        let name = self.known(cluster)?;
        let route = self.routing.route(&name, &self.links, &self.carried)?;
        self.exported_by(&name, service)?;
        Ok(route)
    }

    /// As a hub: the gateway of `target` a call from `from` to `service` goes on to, if this
    /// gateway carries calls between the two, its link to `target` is not down and `target`
    /// exports `service`. Only the direct link is used: one transit hop at most.
    pub fn transit(
        &self,
        from: &ClusterName,
        target: &str,
        service: &str,
    ) -> Result<SocketAddr, FederationError> {
        let name = ClusterName::new(target)
            .map_err(|_| FederationError::UnknownCluster(target.to_owned()))?;
        self.routing.allows_transit(&self.local, from, &name)?;
        let link = self
            .links
            .get(&name)
            .ok_or_else(|| FederationError::NotLinked(name.clone()))?;
        if link.state() == LinkState::Down {
            return Err(FederationError::LinkDown(name));
        }
        self.exported_by(&name, service)?;
        Ok(link.gateway())
    }

    /// Admits a call from a gateway of `from` to `service` of this cluster: exported, and, for
    /// a call that started in `origin` and came through `from` as a hub, `from` is one of this
    /// gateway's hubs. Counts it by the cluster it started in, and returns that cluster.
    pub fn admit(
        &mut self,
        from: &ClusterName,
        origin: Option<&str>,
        service: &str,
    ) -> Result<ClusterName, FederationError> {
        let origin = match origin {
            None => from.clone(),
            Some(origin) => {
                let name = ClusterName::new(origin)
                    .map_err(|_| FederationError::UnknownCluster(origin.to_owned()))?;
                if !self.routing.hubs.contains(from) {
                    return Err(FederationError::TransitRefused {
                        from: name,
                        to: self.local.clone(),
                    });
                }
                name
            }
        };
        if !self.exports(service) {
            return Err(FederationError::NotExported {
                cluster: self.local.clone(),
                service: service.to_owned(),
            });
        }
        let linked = self.links.contains_key(&origin);
        self.served.count(&origin, linked);
        Ok(origin)
    }

    /// Calls admitted for other clusters, by the cluster each started in (bounded: see
    /// [`ServedCalls`]).
    pub fn served(&self) -> &ServedCalls {
        &self.served
    }

    /// The same machine, running a call from another cluster for at most `max` (default
    /// [`MAX_CALL_DEADLINE`], as a peer's call inside the cluster).
    pub fn with_max_call_deadline(self, max: Duration) -> Self {
        Self {
            max_call_deadline: max,
            ..self
        }
    }

    /// How long a call from another cluster that asked for `requested` runs here, served or
    /// carried on as a hub: the deadline is the caller's to name, but a linked cluster that
    /// names years would hold a task, and a handler's slot, that long.
    pub fn call_deadline(&self, requested: Duration) -> Duration {
        requested.min(self.max_call_deadline)
    }

    /// The topology this gateway was configured with.
    pub fn routing(&self) -> &Routing {
        &self.routing
    }

    /// The probe pacing.
    pub fn timers(&self) -> WanTimers {
        self.timers
    }

    /// Takes in how attempt `call.number` of a forwarded call to `gateway` of `cluster` ended,
    /// at `now`, and returns whether to try again: by the services router's rule
    /// ([`retryable`]: always when the remote handler certainly did not run, and after a
    /// lost connection or a timeout only for an idempotent call), while attempts
    /// ([`MAX_CALL_ATTEMPTS`] in all) and the deadline remain. A gateway that did not carry
    /// the attempt is skipped: the link moves on to the remote's next gateway, as after a
    /// missed probe, without counting a miss; after no answer (lost connection, timeout) only
    /// to a gateway that has missed no more probes.
    pub fn call_ended(
        &mut self,
        now: Instant,
        cluster: &ClusterName,
        gateway: SocketAddr,
        call: &ForwardedAttempt,
        end: &AttemptEnd,
    ) -> bool {
        match (self.links.get_mut(cluster), end) {
            (Some(link), AttemptEnd::NotDelivered(_)) => link.skip(gateway),
            (Some(link), AttemptEnd::Lost(_)) => link.skip_unanswered(gateway),
            _ => {}
        }
        retryable(end, call.idempotent) && call.number < MAX_CALL_ATTEMPTS && now < call.until
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

    /// Merges what this gateway takes in of a directory from the link to `from` (third
    /// clusters' entries only from a hub, which then carries them, and only while one does),
    /// then writes this cluster's
    /// own view above any remote copy of it that differs (this gateway is an authority for its
    /// own cluster's entry). A hub pushes on what changed of a transit cluster.
    fn absorb(&mut self, from: &ClusterName, directory: &GlobalDirectory) {
        let accepted = directory.restricted(|c| self.routing.accepts(&self.local, from, c));
        if self.routing.hubs.contains(from) {
            let third = accepted
                .clusters()
                .map(|(cluster, _)| cluster)
                .filter(|c| *c != from && **c != self.local)
                .cloned()
                .collect();
            self.carried.insert(from.clone(), third);
            self.forget_uncarried();
        }
        if self.directory.merge(&accepted) && self.routing.transit.contains(from) {
            self.pusher.mark();
        }
        self.directory
            .write_local(&self.local, self.me, self.exports.clone());
    }

    /// Drops the entries of third clusters that no hub carries any more and that this gateway
    /// has no link to: they were only a hub's word, and without it the cluster is unknown here
    /// (`lookup_in` and `call_in` agree on it).
    fn forget_uncarried(&mut self) {
        let (local, links, carried) = (&self.local, &self.links, &self.carried);
        self.directory.retain(|cluster| {
            cluster == local
                || links.contains_key(cluster)
                || carried.values().any(|third| third.contains(cluster))
        });
    }

    /// The directory as offered to the link to `to`.
    fn offered(&self, to: &ClusterName) -> GlobalDirectory {
        self.directory
            .restricted(|c| self.routing.offers(&self.local, to, c))
    }

    /// `Ok` when `cluster`'s entry shows `service`.
    fn exported_by(&self, cluster: &ClusterName, service: &str) -> Result<(), FederationError> {
        let entry = self.directory.cluster(cluster);
        match entry.is_some_and(|e| e.services.contains_key(service)) {
            true => Ok(()),
            false => Err(FederationError::NotExported {
                cluster: cluster.clone(),
                service: service.to_owned(),
            }),
        }
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
        hub_gateway(local, me, links, &[], &[])
    }

    fn names(list: &[&str]) -> BTreeSet<ClusterName> {
        list.iter().map(|c| name(c)).collect()
    }

    /// A gateway that uses `hubs` as hubs and carries calls between `transit`.
    fn hub_gateway(
        local: &str,
        me: u128,
        links: &[&str],
        hubs: &[&str],
        transit: &[&str],
    ) -> Federation {
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
        let routing = Routing {
            hubs: names(hubs),
            transit: names(transit),
            ..Routing::default()
        };
        Federation::with_routing(config, routing, at(0)).unwrap()
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
            if probe.cluster != to.local {
                continue; // for another link: left unanswered
            }
            let reply = to.incoming_probe(now, &local, &probe.directory).unwrap();
            from.probe_answered(now, &probe.cluster, probe.id, &reply)
                .unwrap();
        }
    }

    /// A gateway of `a` linked to `b`'s two gateways, and the one its link uses first.
    fn two_remote_gateways() -> (Federation, SocketAddr, SocketAddr) {
        let (first, second) = (
            "127.0.0.1:9".parse().unwrap(),
            "127.0.0.1:10".parse().unwrap(),
        );
        let config = FederationConfig {
            local: name("a"),
            me: NodeId::from_u128(1),
            links: vec![LinkConfig {
                cluster: name("b"),
                gateways: vec![first, second],
            }],
            timers: WanTimers::default(),
        };
        (Federation::new(config, at(0)).unwrap(), first, second)
    }

    fn attempt(number: u32, idempotent: bool, until_ms: u64) -> ForwardedAttempt {
        ForwardedAttempt {
            number,
            idempotent,
            until: at(until_ms),
        }
    }

    #[test]
    fn a_sent_call_goes_to_the_next_gateway_only_if_idempotent_or_certainly_not_run() {
        use crate::services::wire::{RemoteError, RpcReply};
        let lost = AttemptEnd::Lost("connection lost".into());
        let ends_and_retries = [
            (AttemptEnd::NotDelivered("no handshake".into()), true, true),
            (lost.clone(), false, true),
            (
                AttemptEnd::Reply(RpcReply::Err(RemoteError::Overloaded)),
                true,
                true,
            ),
            (
                AttemptEnd::Reply(RpcReply::Err(RemoteError::DeadlineExceeded)),
                false,
                true,
            ),
            (AttemptEnd::Reply(RpcReply::Ok(vec![1])), false, false),
            (
                AttemptEnd::Reply(RpcReply::Err(RemoteError::Handler("no".into()))),
                false,
                false,
            ),
            (AttemptEnd::TooLarge("big".into()), false, false),
        ];
        let b = name("b");
        for (end, plain, idempotent) in ends_and_retries {
            for (is_idempotent, expected) in [(false, plain), (true, idempotent)] {
                let (mut a, first, _) = two_remote_gateways();
                let call = attempt(1, is_idempotent, 1000);
                let retried = a.call_ended(at(100), &b, first, &call, &end);
                assert_eq!(retried, expected, "{end:?}, idempotent: {is_idempotent}");
            }
        }
        // A gateway that lost or never took the request is skipped: a retry goes to the next.
        let (mut a, first, second) = two_remote_gateways();
        assert!(a.call_ended(at(100), &b, first, &attempt(1, true, 1000), &lost));
        assert_eq!(a.links()[0].gateway, second);
        // One that answered is still the link's gateway.
        let overloaded = AttemptEnd::Reply(RpcReply::Err(RemoteError::Overloaded));
        assert!(a.call_ended(at(100), &b, second, &attempt(2, true, 1000), &overloaded));
        assert_eq!(a.links()[0].gateway, second);
    }

    #[test]
    fn an_unanswered_call_does_not_move_the_link_to_a_gateway_that_missed_more_probes() {
        let b = name("b");
        let (mut a, first, second) = two_remote_gateways();
        let round = |a: &mut Federation, t: u64| a.poll(at(t));
        // The first round goes to both: the first answers, the second's probe is lost.
        let probes = round(&mut a, 0);
        a.probe_answered(at(10), &b, probes[0].id, &GlobalDirectory::default())
            .unwrap();
        a.probe_failed(&b, probes[1].id);
        // Then the first misses twice: probes move to the second, which has missed less, as
        // during a cut.
        for t in [5_000, 10_000] {
            let probe = round(&mut a, t).remove(0);
            a.probe_failed(&b, probe.id);
        }
        let status = &a.links()[0];
        assert_eq!((status.gateway, status.state), (second, LinkState::Up));
        // A call's attempt there got no answer: the first is no better, the probes stay.
        let lost = AttemptEnd::Lost("timed out".into());
        assert!(a.call_ended(at(10_100), &b, second, &attempt(1, true, 11_000), &lost));
        assert_eq!(a.links()[0].gateway, second);
        // A failed handshake is certain: the link moves on.
        let refused = AttemptEnd::NotDelivered("no handshake".into());
        assert!(a.call_ended(at(10_200), &b, second, &attempt(2, true, 11_000), &refused));
        assert_eq!(a.links()[0].gateway, first);
    }

    #[test]
    fn a_forwarded_call_is_not_retried_past_its_attempts_or_its_deadline() {
        let lost = AttemptEnd::Lost("timed out".into());
        let b = name("b");
        let (mut a, first, second) = two_remote_gateways();
        assert!(a.call_ended(at(100), &b, first, &attempt(2, true, 1000), &lost));
        let last = attempt(MAX_CALL_ATTEMPTS, true, 1000);
        assert!(!a.call_ended(at(200), &b, second, &last, &lost));
        let (mut a, first, _) = two_remote_gateways();
        assert!(!a.call_ended(at(1000), &b, first, &attempt(1, true, 1000), &lost));
        let refused = AttemptEnd::NotDelivered("no handshake".into());
        assert!(!a.call_ended(at(1000), &b, first, &attempt(1, false, 1000), &refused));
    }

    #[test]
    fn an_idempotent_forwarded_call_keeps_time_for_its_later_attempts() {
        let ms = Duration::from_millis;
        assert_eq!(attempt(1, true, 900).budget(at(0)), ms(300));
        assert_eq!(attempt(2, true, 900).budget(at(300)), ms(300));
        assert_eq!(attempt(3, true, 900).budget(at(700)), ms(200));
        assert_eq!(attempt(1, false, 900).budget(at(0)), ms(900));
        assert_eq!(attempt(2, true, 900).budget(at(950)), Duration::ZERO);
    }

    /// Named in the export list, the gateways' relay would let any linked cluster have this
    /// gateway call a third cluster's services as its own calls: transit no `transit` allows,
    /// which the third cluster cannot tell from ours.
    #[test]
    fn the_relay_is_never_exported() {
        let (mut a, mut b) = (gateway("a", 1, &["b"]), gateway("b", 2, &["a"]));
        a.set_exports(export(&[RELAY_SERVICE, "billing"]));
        exchange(&mut b, &mut a, at(0));
        assert_eq!(b.lookup("a", RELAY_SERVICE), Ok(None));
        assert!(matches!(
            a.admit(&name("b"), None, RELAY_SERVICE),
            Err(FederationError::NotExported { .. })
        ));
        assert!(a.admit(&name("b"), None, "billing").is_ok());
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
        assert_eq!(
            b.route("a", "billing"),
            Ok(Route::Direct {
                cluster: name("a"),
                gateway: "127.0.0.1:9".parse().unwrap()
            })
        );
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
        let result = a.incoming_probe(at(0), &name("c"), &GlobalDirectory::default());
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
    fn a_down_link_probes_at_once_when_the_remote_is_heard_from() {
        let (mut a, mut b) = (gateway("a", 1, &["b"]), gateway("b", 2, &["a"]));
        exchange(&mut b, &mut a, at(0));
        for t in [1000, 1500, 2000, 2500] {
            b.poll(at(t));
        }
        assert_eq!(b.links()[0].state, LinkState::Down);
        assert!(b.poll(at(2600)).is_empty(), "the next round is due at 3000");
        // The cut heals and a's probe reaches b first: b probes back at once.
        let a_directory = a.directory().clone();
        b.incoming_probe(at(2700), &name("a"), &a_directory)
            .unwrap();
        let probes = b.poll(at(2700));
        assert_eq!(probes.len(), 1);
        let answer = a.incoming_probe(at(2720), &name("b"), &probes[0].directory);
        b.probe_answered(at(2740), &name("a"), probes[0].id, &answer.unwrap())
            .unwrap();
        assert_eq!(b.links()[0].state, LinkState::Up);
        // A link that is up keeps its pace whatever it hears.
        b.incoming_probe(at(2800), &name("a"), &a_directory)
            .unwrap();
        assert!(b.poll(at(2800)).is_empty());
        assert_eq!(b.poll(at(3700)).len(), 1);
    }

    /// Spokes `a` and `c` linked only to `hub`, which carries calls between them (and `b` is a
    /// spoke of `hub` too, but not among the clusters it carries).
    fn star() -> (Federation, Federation, Federation, Federation) {
        let hub = hub_gateway("hub", 1, &["a", "b", "c"], &[], &["a", "c"]);
        let a = hub_gateway("a", 2, &["hub"], &["hub"], &[]);
        let b = hub_gateway("b", 3, &["hub"], &["hub"], &[]);
        let c = hub_gateway("c", 4, &["hub"], &["hub"], &[]);
        (hub, a, b, c)
    }

    #[test]
    fn a_spoke_reaches_a_third_cluster_through_its_hub() {
        let (mut hub, mut a, mut b, mut c) = star();
        c.set_exports(export(&["search"]));
        exchange(&mut c, &mut hub, at(0));
        exchange(&mut a, &mut hub, at(0));
        exchange(&mut b, &mut hub, at(0));
        let via = hub.links()[0].gateway;
        assert_eq!(
            a.route("c", "search"),
            Ok(Route::ViaHub {
                hub: name("hub"),
                gateway: via,
                target: name("c")
            })
        );
        assert_eq!(
            a.lookup("c", "search"),
            Ok(Some(ExportedService { healthy: 1 }))
        );
        assert!(matches!(
            a.route("c", "ledger"),
            Err(FederationError::NotExported { .. })
        ));
        // The hub carries a's call on its direct link to c, and c admits it as a's.
        assert_eq!(hub.transit(&name("a"), "c", "search"), Ok(via));
        assert_eq!(c.admit(&name("hub"), Some("a"), "search"), Ok(name("a")));
        assert_eq!(c.served().by_origin().get(&name("a")), Some(&1));
        // b is not among the clusters the hub carries: it is offered nothing of c.
        assert_eq!(
            b.lookup("c", "search"),
            Err(FederationError::UnknownCluster("c".into()))
        );
    }

    /// A hub names the origin of each call it carries, and nothing checks the name: before
    /// the bound, every name made up stayed in `served` for good.
    #[test]
    fn origins_a_hub_names_are_bounded_in_served() {
        use crate::federation::HUB_NAMED_ORIGINS_MAX;
        let (_, _, _, mut c) = star();
        c.set_exports(export(&["search"]));
        for i in 0..HUB_NAMED_ORIGINS_MAX + 10 {
            let origin = format!("made-up-{i}");
            assert!(c.admit(&name("hub"), Some(&origin), "search").is_ok());
        }
        assert_eq!(c.admit(&name("hub"), None, "search"), Ok(name("hub")));
        assert!(c.admit(&name("hub"), Some("made-up-0"), "search").is_ok());
        let served = c.served();
        assert_eq!(served.by_origin().get(&name("made-up-0")), Some(&2), "kept");
        assert_eq!(served.by_origin().len(), HUB_NAMED_ORIGINS_MAX + 1);
        assert_eq!(served.by_origin().get(&name("hub")), Some(&1), "its link");
        assert_eq!(served.unlisted(), 10);
    }

    #[test]
    fn transit_not_allowed_is_refused_with_a_typed_error() {
        let (mut hub, _, _, mut c) = star();
        c.set_exports(export(&["search"]));
        exchange(&mut c, &mut hub, at(0));
        let refused = |from: &str, to: &str| FederationError::TransitRefused {
            from: name(from),
            to: name(to),
        };
        assert_eq!(
            hub.transit(&name("b"), "c", "search"),
            Err(refused("b", "c"))
        );
        assert_eq!(
            hub.transit(&name("c"), "c", "search"),
            Err(refused("c", "c"))
        );
        assert_eq!(
            hub.transit(&name("a"), "hub", "x"),
            Err(refused("a", "hub"))
        );
        assert!(matches!(
            hub.transit(&name("a"), "c", "ledger"),
            Err(FederationError::NotExported { .. })
        ));
        // A gateway takes a call through another cluster only from a link it uses as a hub.
        let mut mesh = gateway("c", 5, &["b"]);
        mesh.set_exports(export(&["search"]));
        assert_eq!(
            mesh.admit(&name("b"), Some("a"), "search"),
            Err(refused("a", "c"))
        );
        assert_eq!(mesh.admit(&name("b"), None, "search"), Ok(name("b")));
        assert!(mesh.served().by_origin().get(&name("a")).is_none());
    }

    #[test]
    fn third_cluster_entries_from_a_plain_link_are_ignored() {
        // `relay` links to b and c and pretends to be nobody's hub; b does not use it as one.
        let (mut relay, mut b, mut c) = (
            gateway("relay", 1, &["b", "c"]),
            gateway("b", 2, &["relay"]),
            gateway("c", 3, &["relay"]),
        );
        c.set_exports(export(&["search"]));
        exchange(&mut c, &mut relay, at(0));
        exchange(&mut b, &mut relay, at(0));
        assert!(b.directory().cluster(&name("c")).is_none());
        // Even when the plain link sends them anyway, b takes in only relay's own entry.
        let mut lies = relay.directory().clone();
        lies.merge(c.directory());
        b.incoming_push(at(0), &name("relay"), &lies).unwrap();
        assert!(b.directory().cluster(&name("c")).is_none());
        assert!(b.directory().cluster(&name("relay")).is_some());
        assert_eq!(
            b.lookup("c", "search"),
            Err(FederationError::UnknownCluster("c".into()))
        );
    }

    #[test]
    fn between_hubs_that_carry_a_cluster_the_nearest_takes_the_call() {
        let mut far = hub_gateway("far", 1, &["a", "c"], &[], &["a", "c"]);
        let mut near = hub_gateway("near", 2, &["a", "c"], &[], &["a", "c"]);
        let mut a = hub_gateway("a", 3, &["far", "near"], &["far", "near"], &[]);
        let mut c = hub_gateway("c", 4, &["far", "near"], &["far", "near"], &[]);
        c.set_exports(export(&["search"]));
        // c probes both hubs at once: one exchange answers only the probes to its hub, so the
        // other hub's is answered in the next round.
        exchange(&mut c, &mut far, at(0));
        exchange(&mut c, &mut near, at(1000));
        // a's probes: "far" (first in name order) answers in 80 ms, "near" in 10 ms.
        for probe in a.poll(at(2000)) {
            let (hub, took) = match probe.cluster.as_str() {
                "far" => (&mut far, 80),
                _ => (&mut near, 10),
            };
            let reply = hub
                .incoming_probe(at(2000), &name("a"), &probe.directory)
                .unwrap();
            a.probe_answered(at(2000 + took), &probe.cluster, probe.id, &reply)
                .unwrap();
        }
        match a.route("c", "search") {
            Ok(Route::ViaHub { hub, .. }) => assert_eq!(hub, name("near")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_direct_link_wins_over_the_hub_and_the_hub_covers_it_when_down() {
        let mut hub = hub_gateway("hub", 1, &["a", "c"], &[], &["a", "c"]);
        let mut a = hub_gateway("a", 2, &["hub", "c"], &["hub"], &[]);
        let mut c = hub_gateway("c", 3, &["hub", "a"], &["hub"], &[]);
        c.set_exports(export(&["search"]));
        exchange(&mut c, &mut hub, at(0));
        exchange(&mut a, &mut hub, at(0));
        assert!(matches!(a.route("c", "search"), Ok(Route::Direct { .. })));
        // a's probes to c go unanswered until the direct link is down: the hub carries it.
        for t in [1000, 1500, 2000, 2500] {
            exchange(&mut a, &mut hub, at(t));
        }
        assert_eq!(a.links()[0].cluster, name("c"));
        assert_eq!(a.links()[0].state, LinkState::Down);
        assert!(matches!(a.route("c", "search"), Ok(Route::ViaHub { .. })));
        // The hub stops offering c: a's direct link is down, so LinkDown names c; a spoke
        // without a direct link forgets c, which only the hub vouched for.
        let without_c = hub.directory().restricted(|cl| *cl != name("c"));
        a.incoming_push(at(3000), &name("hub"), &without_c).unwrap();
        assert_eq!(
            a.route("c", "search"),
            Err(FederationError::LinkDown(name("c")))
        );
        let (mut hub, mut spoke, _, mut c) = star();
        c.set_exports(export(&["search"]));
        exchange(&mut c, &mut hub, at(0));
        exchange(&mut spoke, &mut hub, at(0));
        assert!(spoke.route("c", "search").is_ok());
        assert!(spoke.lookup("c", "search").unwrap().is_some());
        spoke
            .incoming_push(at(0), &name("hub"), &without_c)
            .unwrap();
        let unknown = FederationError::UnknownCluster("c".into());
        assert_eq!(spoke.route("c", "search"), Err(unknown.clone()));
        assert_eq!(spoke.lookup("c", "search"), Err(unknown));
        assert!(spoke.directory().cluster(&name("c")).is_none());
        assert!(a.directory().cluster(&name("c")).is_some(), "linked to c");
        // The hub carries c again: the spoke learns it again.
        spoke
            .incoming_push(at(10), &name("hub"), hub.directory())
            .unwrap();
        assert!(spoke.lookup("c", "search").unwrap().is_some());
    }

    #[test]
    fn an_export_change_is_pushed_at_once_and_a_burst_coalesced() {
        let (mut hub, mut a, _, mut c) = star();
        exchange(&mut a, &mut hub, at(0));
        exchange(&mut c, &mut hub, at(0));
        assert!(a.pushes(at(100)).is_empty(), "nothing changed");
        c.set_exports(export(&["search"]));
        let pushes = c.pushes(at(100));
        assert_eq!(pushes.len(), 1);
        assert_eq!(pushes[0].cluster, name("hub"));
        // The hub takes it in and pushes it on to a at once, as a transit cluster's change.
        hub.incoming_push(at(100), &name("c"), &pushes[0].directory)
            .unwrap();
        let onward = hub.pushes(at(101));
        let to_a = onward.iter().find(|p| p.cluster == name("a")).unwrap();
        a.incoming_push(at(102), &name("hub"), &to_a.directory)
            .unwrap();
        assert_eq!(
            a.lookup("c", "search"),
            Ok(Some(ExportedService { healthy: 1 }))
        );
        // b is not a transit cluster: what the hub pushes to b holds nothing of c.
        let to_b = onward.iter().find(|p| p.cluster == name("b")).unwrap();
        assert!(to_b.directory.cluster(&name("c")).is_none());
        // Three more changes within the spacing go out as one push, at the spacing.
        for (t, list) in [(110, &["x"][..]), (120, &["x", "y"]), (130, &["y"])] {
            c.set_exports(export(list));
            assert!(c.pushes(at(t)).is_empty());
        }
        assert_eq!(c.next_push(), Some(at(150)));
        let coalesced = c.pushes(at(150));
        assert_eq!(coalesced.len(), 1);
        let sent = coalesced[0].directory.cluster(&name("c")).unwrap();
        assert_eq!(sent.services, export(&["y"]));
        assert_eq!(c.next_push(), None);
    }

    #[test]
    fn a_push_goes_to_every_gateway_of_the_remote_not_only_the_probed_one() {
        let (mut a, first, second) = two_remote_gateways();
        let gateways = vec![first, second];
        a.set_exports(export(&["billing"]));
        let pushes = a.pushes(at(0));
        let to: Vec<SocketAddr> = pushes.iter().map(|p| p.gateway).collect();
        assert_eq!(to, gateways);
        assert!(pushes.iter().all(|p| p.cluster == name("b")));
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
            refused(config(vec![link("b", one.clone()), link("b", one.clone())])),
            Some(FederationConfigError::DuplicateLink(name("b")))
        );
        let routed = |hubs: &[&str], transit: &[&str]| {
            let routing = Routing {
                hubs: names(hubs),
                transit: names(transit),
                ..Routing::default()
            };
            Federation::with_routing(config(vec![link("b", one.clone())]), routing, at(0)).err()
        };
        assert_eq!(
            routed(&["c"], &[]),
            Some(FederationConfigError::HubNotLinked(name("c")))
        );
        assert_eq!(
            routed(&[], &["b", "c"]),
            Some(FederationConfigError::TransitNotLinked(name("c")))
        );
        assert_eq!(routed(&["b"], &["b"]), None);
    }
}
