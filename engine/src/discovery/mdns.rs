//! `mdns`: zero-config discovery on the local network with mdns-sd.
//!
//! Each node registers `<node-id>._foundation._udp.local.` with TXT `cluster=<name>` and
//! `id=<node id>`, browses the same type, and reports resolved instances of its own cluster.
//! The daemon's event channel is drained promptly (since mdns-sd 0.21.6 a receiver that falls
//! behind is closed silently); known peers are re-reported periodically instead of blocking.

use std::collections::BTreeMap;
use std::net::{SocketAddr, SocketAddrV6};
use std::time::Duration;

use foundation_transport::NodeId;
use mdns_sd::{
    IfKind, Receiver, ResolvedService, ScopedIp, ServiceDaemon, ServiceEvent, ServiceInfo,
};
use tokio::sync::mpsc;

use super::handle::StopSignal;
use super::report::{Closed, Reporter};
use super::{Candidate, Discovery, DiscoveryError, DiscoveryHandle, DiscoveryMetrics, LocalNode};

const NAME: &str = "mdns";

/// The DNS-SD service type every Foundation node registers.
pub const MDNS_SERVICE_TYPE: &str = "_foundation._udp.local.";

/// How long `stop` waits for the daemon to confirm the unregistration and shutdown.
const STOP_TIMEOUT: Duration = Duration::from_secs(2);

/// mDNS discovery, optionally restricted to some network interfaces.
#[derive(Clone, Debug)]
pub struct MdnsDiscovery {
    interfaces: Vec<String>,
    port: u16,
    interval: Duration,
    metrics: DiscoveryMetrics,
}

impl MdnsDiscovery {
    /// How often known peers are reported again, by default.
    pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);

    /// mDNS on `interfaces` (names such as `"eth0"`; empty: every interface) on port 5353.
    pub fn new(interfaces: Vec<String>, metrics: DiscoveryMetrics) -> Self {
        Self {
            interfaces,
            port: mdns_sd::MDNS_PORT,
            interval: Self::DEFAULT_INTERVAL,
            metrics,
        }
    }

    /// Uses another UDP port than 5353 (every node must use the same one).
    pub fn with_port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Sets how often known peers are reported again.
    pub fn with_interval(mut self, interval: Duration) -> Self {
        self.interval = interval.max(Duration::from_millis(10));
        self
    }

    fn daemon(&self) -> Result<ServiceDaemon, DiscoveryError> {
        let daemon =
            ServiceDaemon::new_with_port(self.port).map_err(mdns_error("start the daemon"))?;
        if !self.interfaces.is_empty() {
            // Commands run in order: the restriction applies before anything is announced.
            daemon
                .disable_interface(IfKind::All)
                .map_err(mdns_error("restrict interfaces"))?;
            let names: Vec<IfKind> = self.interfaces.iter().map(IfKind::from).collect();
            daemon
                .enable_interface(names)
                .map_err(mdns_error("enable the chosen interfaces"))?;
        }
        Ok(daemon)
    }

    fn service(&self, me: &LocalNode) -> Result<ServiceInfo, DiscoveryError> {
        let id = me.id.to_string();
        let txt = [("cluster", me.cluster.as_str()), ("id", id.as_str())];
        let host = format!("{id}.local.");
        let ip = me.addr.ip();
        let info = if ip.is_unspecified() {
            // Bound to every address: advertise whatever the chosen interfaces have.
            ServiceInfo::new(MDNS_SERVICE_TYPE, &id, &host, (), me.addr.port(), &txt[..])
                .map(ServiceInfo::enable_addr_auto)
        } else {
            ServiceInfo::new(MDNS_SERVICE_TYPE, &id, &host, ip, me.addr.port(), &txt[..])
        };
        info.map_err(mdns_error("describe our service"))
    }
}

fn mdns_error(doing: &'static str) -> impl Fn(mdns_sd::Error) -> DiscoveryError {
    move |e| DiscoveryError::Mdns(format!("cannot {doing}: {e}"))
}

impl Discovery for MdnsDiscovery {
    fn name(&self) -> &'static str {
        NAME
    }

    fn start(
        self: Box<Self>,
        me: LocalNode,
        found: mpsc::Sender<Candidate>,
    ) -> Result<DiscoveryHandle, DiscoveryError> {
        let daemon = self.daemon()?;
        let service = self.service(&me)?;
        let fullname = service.get_fullname().to_owned();
        let started = daemon
            .register(service)
            .map_err(mdns_error("register our service"))
            .and_then(|()| {
                daemon
                    .browse(MDNS_SERVICE_TYPE)
                    .map_err(mdns_error("browse"))
            });
        let events = match started {
            Ok(events) => events,
            Err(error) => {
                let _ = daemon.shutdown();
                return Err(error);
            }
        };
        let reporter = Reporter::new(NAME, me, found, self.metrics.clone());
        let running = Running {
            daemon,
            fullname,
            peers: Peers::default(),
            reporter,
        };
        Ok(DiscoveryHandle::spawn(NAME, move |stop| {
            running.run(events, self.interval, stop)
        }))
    }
}

/// A peer resolved through mDNS.
#[derive(Debug)]
struct Peer {
    id: NodeId,
    addrs: Vec<SocketAddr>,
}

/// The most peers kept for re-reporting. Anyone on the link who reads a cluster's name off an
/// advert can announce instances of it under random names and a TTL that never runs out; past
/// the bound the instance resolved longest ago makes room, so a peer that announces itself gets
/// in whatever the flood holds.
const MAX_PEERS: usize = 512;

/// The most addresses kept (and reported) per peer; a node has a few.
const MAX_ADDRS: usize = 8;

/// The most peers re-reported per interval, from where the last round stopped: a full table's
/// 4,096 addresses would overrun the candidate channel every round, always past the same
/// names, so those would never be reported again.
const PEERS_PER_ROUND: usize = 64;

/// Known same-cluster peers by instance full name, bounded by [`MAX_PEERS`].
#[derive(Debug, Default)]
struct Peers {
    /// Each peer with when it last resolved, in resolutions counted by `resolved`.
    by_name: BTreeMap<String, (Peer, u64)>,
    resolved: u64,
    /// Where the next round of re-reports starts.
    cursor: usize,
}

impl Peers {
    /// Keeps `peer` under `fullname` (replacing what that name said); in a full table, in place
    /// of the peer resolved longest ago.
    fn insert(&mut self, fullname: &str, peer: Peer) {
        if self.by_name.len() >= MAX_PEERS && !self.by_name.contains_key(fullname) {
            let oldest = self.by_name.iter().min_by_key(|(_, (_, at))| *at);
            if let Some(name) = oldest.map(|(name, _)| name.clone()) {
                self.by_name.remove(&name);
            }
        }
        self.resolved += 1;
        self.by_name
            .insert(fullname.to_owned(), (peer, self.resolved));
    }

    fn remove(&mut self, fullname: &str) {
        self.by_name.remove(fullname);
    }

    /// The next [`PEERS_PER_ROUND`] peers, going round the table.
    fn next_round(&mut self) -> Vec<&Peer> {
        let len = self.by_name.len();
        let start = if self.cursor < len { self.cursor } else { 0 };
        let count = len.min(PEERS_PER_ROUND);
        self.cursor = start + count;
        let peers = self.by_name.values().map(|(peer, _)| peer);
        peers.cycle().skip(start).take(count).collect()
    }
}

/// The strategy's task state.
struct Running {
    daemon: ServiceDaemon,
    fullname: String,
    /// Known same-cluster peers, re-reported every interval.
    peers: Peers,
    reporter: Reporter,
}

impl Running {
    async fn run(
        mut self,
        mut events: Receiver<ServiceEvent>,
        interval: Duration,
        mut stop: StopSignal,
    ) {
        let mut ticker = tokio::time::interval(interval);
        loop {
            let outcome = tokio::select! {
                _ = stop.stopped() => break,
                _ = ticker.tick() => self.report_round(),
                event = events.recv_async() => match event {
                    Ok(event) => self.on_event(event),
                    Err(_) => match self.browse_again(&mut stop).await {
                        Some(fresh) => {
                            events = fresh;
                            Ok(())
                        }
                        None => break,
                    },
                },
            };
            if outcome.is_err() {
                break;
            }
        }
        self.withdraw().await;
    }

    fn on_event(&mut self, event: ServiceEvent) -> Result<(), Closed> {
        match event {
            ServiceEvent::ServiceResolved(service) => self.on_resolved(&service),
            ServiceEvent::ServiceRemoved(_, fullname) => {
                self.peers.remove(&fullname);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn on_resolved(&mut self, service: &ResolvedService) -> Result<(), Closed> {
        if service.fullname == self.fullname {
            return Ok(());
        }
        let Some(peer) = parse_peer(service, self.reporter.me().cluster.as_str()) else {
            return Ok(()); // another cluster, or not a Foundation node we can use
        };
        for addr in &peer.addrs {
            self.reporter.report(*addr, Some(peer.id))?;
        }
        self.peers.insert(&service.fullname, peer);
        Ok(())
    }

    fn report_round(&mut self) -> Result<(), Closed> {
        for peer in self.peers.next_round() {
            for addr in &peer.addrs {
                self.reporter.report(*addr, Some(peer.id))?;
            }
        }
        Ok(())
    }

    /// The event channel closed (we fell behind, or the daemon failed): browse afresh. `None`
    /// when stop was asked before a browse succeeded.
    async fn browse_again(&self, stop: &mut StopSignal) -> Option<Receiver<ServiceEvent>> {
        self.reporter.error();
        tracing::warn!("mdns discovery: event channel closed; browsing again");
        let _ = self.daemon.stop_browse(MDNS_SERVICE_TYPE);
        let failed = |error: &mdns_sd::Error| {
            self.reporter.error();
            tracing::warn!(%error, "mdns discovery: cannot browse; retrying");
        };
        until_ok(stop, || self.daemon.browse(MDNS_SERVICE_TYPE), failed).await
    }

    /// Unregisters our service (peers see it go) and shuts the daemon down.
    async fn withdraw(self) {
        if let Ok(status) = self.daemon.unregister(&self.fullname) {
            let _ = tokio::time::timeout(STOP_TIMEOUT, status.recv_async()).await;
        }
        if let Ok(status) = self.daemon.shutdown() {
            let _ = tokio::time::timeout(STOP_TIMEOUT, status.recv_async()).await;
        }
    }
}

/// The first wait before trying a failed browse again; it doubles up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_secs(1);

/// The longest wait between two tries of a failed browse.
const RETRY_MAX: Duration = Duration::from_secs(30);

/// Calls `attempt` until it succeeds, backing off after each failure; `None` once stop is
/// asked. A daemon whose thread has ended refuses every command for good, and the node must
/// still be able to stop (it waits for its strategies when it leaves).
async fn until_ok<T>(
    stop: &mut StopSignal,
    mut attempt: impl FnMut() -> Result<T, mdns_sd::Error>,
    failed: impl Fn(&mdns_sd::Error),
) -> Option<T> {
    let mut wait = RETRY_FIRST;
    loop {
        match attempt() {
            Ok(done) => return Some(done),
            Err(error) => failed(&error),
        }
        tokio::select! {
            _ = stop.stopped() => return None,
            _ = tokio::time::sleep(wait) => {}
        }
        wait = (wait * 2).min(RETRY_MAX);
    }
}

/// A same-cluster peer from a resolved service, or `None` for anything else. TXT values come
/// from the network: they are parsed, never trusted.
fn parse_peer(service: &ResolvedService, cluster: &str) -> Option<Peer> {
    if service.get_property_val_str("cluster") != Some(cluster) || service.port == 0 {
        return None;
    }
    let id: NodeId = service.get_property_val_str("id")?.parse().ok()?;
    let mut addrs: Vec<SocketAddr> = service
        .addresses
        .iter()
        .map(|ip| socket_addr(ip, service.port))
        .filter(|a| !a.ip().is_unspecified())
        .collect();
    addrs.sort();
    addrs.dedup();
    addrs.truncate(MAX_ADDRS);
    (!addrs.is_empty()).then_some(Peer { id, addrs })
}

/// The address to dial; an IPv6 link-local address needs the interface it was seen on.
fn socket_addr(ip: &ScopedIp, port: u16) -> SocketAddr {
    match ip {
        ScopedIp::V6(v6) if v6.addr().is_unicast_link_local() => {
            SocketAddr::V6(SocketAddrV6::new(*v6.addr(), port, 0, v6.scope_id().index))
        }
        other => SocketAddr::new(other.to_ip_addr(), port),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(n: u128) -> Peer {
        Peer {
            id: NodeId::from_u128(n),
            addrs: vec![SocketAddr::from(([127, 0, 0, 1], 7000))],
        }
    }

    /// A flood of instances under fresh names fills the table to its bound and no further;
    /// a name already known is still updated.
    #[test]
    fn the_peer_table_is_bounded_under_a_flood_of_names() {
        let mut peers = Peers::default();
        for n in 0..(MAX_PEERS as u128 + 100) {
            peers.insert(&format!("flood-{n}._foundation._udp.local."), peer(n));
        }
        assert_eq!(peers.by_name.len(), MAX_PEERS);
        peers.insert("flood-0._foundation._udp.local.", peer(u128::MAX));
        assert!(ids(&peers).contains(&u128::MAX));
        assert_eq!(peers.by_name.len(), MAX_PEERS);
    }

    fn ids(peers: &Peers) -> Vec<u128> {
        let all = peers.by_name.values();
        all.map(|(peer, _)| peer.id.as_u128()).collect()
    }

    /// A flood that fills the table first does not keep a real peer out: its resolution takes
    /// the place of the entry resolved longest ago (it was refused before).
    #[test]
    fn a_peer_resolved_into_a_full_table_is_kept_in_place_of_the_oldest() {
        let mut peers = Peers::default();
        for n in 0..MAX_PEERS as u128 {
            peers.insert(&format!("flood-{n}._foundation._udp.local."), peer(n));
        }
        peers.insert("flood-0._foundation._udp.local.", peer(0)); // refreshed
        peers.insert("real._foundation._udp.local.", peer(u128::MAX));
        let kept = ids(&peers);
        assert_eq!(kept.len(), MAX_PEERS);
        assert!(kept.contains(&u128::MAX), "the real peer is kept");
        assert!(kept.contains(&0), "a refreshed entry stays");
        assert!(!kept.contains(&1), "the one resolved longest ago made room");
    }

    /// Re-reports go round the table a bounded number at a time, so every peer of a full table
    /// is reported within a few rounds (the same first names were reported every round before,
    /// and the rest overran the candidate channel).
    #[test]
    fn rounds_of_re_reports_go_round_the_whole_table() {
        let mut peers = Peers::default();
        for n in 0..MAX_PEERS as u128 {
            peers.insert(&format!("flood-{n}._foundation._udp.local."), peer(n));
        }
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..MAX_PEERS.div_ceil(PEERS_PER_ROUND) {
            let round = peers.next_round();
            assert_eq!(round.len(), PEERS_PER_ROUND);
            seen.extend(round.iter().map(|p| p.id.as_u128()));
        }
        assert_eq!(seen.len(), MAX_PEERS);
        let mut few = Peers::default();
        few.insert("a._foundation._udp.local.", peer(1));
        few.insert("b._foundation._udp.local.", peer(2));
        assert_eq!(few.next_round().len(), 2, "a small table is reported whole");
        assert_eq!(few.next_round().len(), 2);
    }

    /// The daemon's thread can end (its own panic, a socket it cannot poll); every browse then
    /// fails. The strategy retries, and a stop still ends it: the node's leave waits for it.
    #[tokio::test(start_paused = true)]
    async fn a_browse_that_keeps_failing_still_lets_the_strategy_stop() {
        let (tried, mut tries) = mpsc::unbounded_channel();
        let handle = DiscoveryHandle::spawn(NAME, |mut stop| async move {
            let attempt = || {
                let _ = tried.send(());
                Err::<(), _>(mdns_sd::Error::DaemonShutdown)
            };
            assert!(until_ok(&mut stop, attempt, |_| {}).await.is_none());
        });
        for _ in 0..3 {
            tries.recv().await.expect("it tries again");
        }
        // Virtual time: an hour of retries passes at once if the stop is not heard.
        tokio::time::timeout(Duration::from_secs(3600), handle.stop())
            .await
            .expect("the stop ended the retries");
    }
}
