//! `foundation node` processes on separate "hosts": network namespaces this test creates, joined
//! by veth links to a bridge in another, as machines on one LAN are. Nothing touches the host's
//! own interfaces; without root or `ip` each test says why and passes.
//!
//! Production runs (five hosts, the production profile, a real secret, QUIC and HTTP bound to
//! the unspecified address):
//! - static seeds over IPv4 with no advertised address configured, then a rolling restart
//!   and a host behind a firewall that blocks the bulk port;
//! - discovery by DNS (a tiny authoritative server the test runs in the hub namespace) over
//!   IPv4 with `FOUNDATION_ADVERTISE` set on every node;
//! - discovery by DNS over IPv6 (ULA `fd00:77::/64`) with no advertised address.
//!
//! Each checks that every node lists every other at its own LAN address (never `0.0.0.0`, `::`
//! or loopback), that every pair of nodes is directly connected, that each node's advertised
//! HTTP address is routable from another host and answers with that node's id, that a config
//! write is visible on every node within 100 ms, and that a `kill -9` is seen by every
//! survivor. The development profile's mDNS runs across two namespaces. Figures are printed
//! (`--nocapture`).

mod dns;
#[path = "../netlab/mod.rs"]
mod netlab;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

use netlab::lan::{Family, Lan};
use netlab::nodes::{HostNode, Monitors};
use netlab::{cannot_run, netns};

const NODES: usize = 5;
const SECRET: &str = "multi-host-test-secret-0123456789";
const PATIENCE: Duration = Duration::from_secs(40);
/// Production's default bulk port.
const BULK_PORT: u16 = 7402;
/// The name the test's DNS server answers for.
const DNS_NAME: &str = "nodes.lan.test";
/// The bound for a config write to be visible on every node.
const VISIBLE_WITHIN: Duration = Duration::from_millis(100);

/// The runs share the machine's two cores: one at a time keeps their figures honest.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Takes the lock, or says why the test is skipped.
fn may_run(test: &str) -> Option<std::sync::MutexGuard<'static, ()>> {
    if let Some(why) = cannot_run() {
        println!("SKIPPED multi-host {test}: {why}");
        return None;
    }
    Some(ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner()))
}

#[derive(Clone, Copy)]
enum Discovery {
    Seeds,
    Dns,
}

/// How a production run's nodes are configured.
#[derive(Clone, Copy)]
struct Setup {
    discovery: Discovery,
    advertise: bool,
}

impl Setup {
    fn describe(&self, lan: &Lan) -> String {
        format!(
            "{}, {}, {}",
            match lan.family {
                Family::V4 => "IPv4",
                Family::V6 => "IPv6",
            },
            match self.discovery {
                Discovery::Seeds => "static seeds",
                Discovery::Dns => "DNS",
            },
            if self.advertise {
                "with advertise"
            } else {
                "without advertise"
            }
        )
    }
}

/// The environment of the production node on host `i`.
fn production_env(lan: &Lan, i: usize, setup: Setup) -> Vec<(String, String)> {
    let mut env = lan.production_env(i, "lan", SECRET);
    env.push(("FOUNDATION_STORAGE".into(), "memory".into()));
    match setup.discovery {
        Discovery::Seeds => env.push(lan.seeds()),
        Discovery::Dns => {
            env.push(("FOUNDATION_DNS_NAME".into(), DNS_NAME.into()));
            env.push(("FOUNDATION_DNS_SERVER".into(), lan.hub_ip().to_string()));
        }
    }
    if setup.advertise {
        env.push(("FOUNDATION_ADVERTISE".into(), lan.sock(i, 7400).to_string()));
    }
    env
}

fn wait_for(what: &str, mut condition: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !condition() {
        assert!(
            started.elapsed() < PATIENCE,
            "not within {PATIENCE:?}: {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    started.elapsed()
}

/// Whether host `i` sees `others` other nodes alive, each at its own LAN address.
fn sees_everyone_at_lan_addresses(lan: &Lan, i: usize, others: usize) -> bool {
    let members = lan.members(i);
    let alive: Vec<&Value> = members.iter().filter(|m| m["state"] == "alive").collect();
    alive.len() == others
        && alive
            .iter()
            .all(|m| m["addr"].as_str().is_some_and(|a| lan.is_lan_addr(a)))
}

/// Each host's open peer connections (a duplicate from a simultaneous dial counts until it
/// is retired, two seconds after the tie-break).
fn connections(lan: &Lan, hosts: usize) -> Vec<usize> {
    (0..hosts)
        .map(|i| {
            lan.metric(i, "foundation_transport_connections")
                .expect("metrics answer") as usize
        })
        .collect()
}

/// What one production run measured.
struct Figures {
    formed: Duration,
    connections_at_formation: Vec<usize>,
    connected: Duration,
    visible: Duration,
    visible_from_cli: Duration,
    detected: Duration,
}

/// Starts a node on every host, then checks the cluster as the module documentation says.
fn form_and_check(lan: &Lan, setup: Setup) -> (Vec<HostNode>, Figures) {
    let started = Instant::now();
    let nodes: Vec<HostNode> = (0..lan.hosts)
        .map(|i| HostNode::start(lan, i, &production_env(lan, i, setup)))
        .collect();
    for i in 0..lan.hosts {
        wait_for("every node sees every other at its LAN address", || {
            sees_everyone_at_lan_addresses(lan, i, lan.hosts - 1)
        });
    }
    let formed = started.elapsed();
    let connections_at_formation = connections(lan, lan.hosts);

    each_advertised_http_address_answers_as_its_node(lan, &nodes);

    let monitors = Monitors::start(lan, 0..lan.hosts);
    // The monitors are listening once they all print one write (a new value each try: a
    // value written again is no change, so no event).
    let mut tries = 0;
    wait_for("the monitors see a write", || {
        tries += 1;
        let value = tries.to_string();
        lan.cli(0, &["config", "set", "warm-up", &value]).is_some()
            && monitors
                .arrivals(
                    &format!("config warm-up = {value}"),
                    lan.hosts,
                    Duration::from_secs(2),
                )
                .iter()
                .all(Option::is_some)
    });
    let before = Instant::now();
    lan.cli(0, &["config", "set", "region", "eu"])
        .expect("write");
    let arrivals = monitors.arrivals("config region", lan.hosts, PATIENCE);
    let arrivals: Vec<Instant> = arrivals
        .into_iter()
        .enumerate()
        .map(|(i, at)| at.unwrap_or_else(|| panic!("the write never reached host {i}")))
        .collect();
    let first = arrivals.iter().min().copied().expect("hosts");
    let last = arrivals.iter().max().copied().expect("hosts");
    // From the first node's change event (the writer's, but for the monitors' own jitter) to
    // the last node's: propagation, as the monitors (one per node, alike) see it.
    let visible = last.saturating_duration_since(first);
    let visible_from_cli = last.saturating_duration_since(before);
    drop(monitors);
    assert!(
        visible < VISIBLE_WITHIN,
        "a config write took {visible:?} to be visible on every node ({})",
        setup.describe(lan)
    );
    // Every node holds exactly one connection to each other node: every pair is directly
    // connected (none relies on gossip through a third node), duplicates retired.
    wait_for("every node is connected to every other, once", || {
        connections(lan, lan.hosts)
            .iter()
            .all(|&open| open == lan.hosts - 1)
    });
    let connected = started.elapsed();

    let mut nodes = nodes;
    let victim = nodes.pop().expect("nodes");
    let victim_id = victim.id.clone();
    drop(victim); // SIGKILL
    let detected = wait_for("the killed node is seen failed by every survivor", || {
        (0..lan.hosts - 1).all(|i| {
            lan.members(i)
                .iter()
                .any(|m| m["id"] == victim_id && m["state"] == "failed")
        })
    });
    let figures = Figures {
        formed,
        connections_at_formation,
        connected,
        visible,
        visible_from_cli,
        detected,
    };
    println!(
        "multi-host ({}): {} hosts whole in {:?}, every member at its LAN address; open \
         connections per node when whole {:?}, all {} pairs directly connected (one connection \
         each) {:?} after start; a write visible on all in {:?} after the first node's event \
         ({:?} from the CLI's start); kill -9 seen failed by all in {:?}",
        setup.describe(lan),
        lan.hosts,
        figures.formed,
        figures.connections_at_formation,
        lan.hosts * (lan.hosts - 1) / 2,
        figures.connected,
        figures.visible,
        figures.visible_from_cli,
        figures.detected,
    );
    (nodes, figures)
}

/// Every node's HTTP address, as the others' membership lists it, is on the LAN (never the
/// unspecified address) and answers from another host with that node's id.
fn each_advertised_http_address_answers_as_its_node(lan: &Lan, nodes: &[HostNode]) {
    for (i, node) in nodes.iter().enumerate() {
        let asker = (i + 1) % nodes.len();
        let members = lan.members(asker);
        let member = members
            .iter()
            .find(|m| m["id"] == node.id.as_str())
            .unwrap_or_else(|| panic!("host{asker} lists host{i}"));
        let http = member["metadata"]["http"]
            .as_str()
            .unwrap_or_else(|| panic!("host{i} advertises no HTTP address: {member}"));
        assert!(
            lan.is_lan_addr(http) && http.ends_with(":7401"),
            "host{i} advertises HTTP at {http}, not its LAN address"
        );
        let answer = lan.members_json_at(asker, http).unwrap_or_else(|| {
            panic!("host{i}'s advertised HTTP {http} is unreachable from host{asker}")
        });
        assert_eq!(
            answer["self"]["id"], node.id,
            "{http} answered as another node"
        );
    }
}

#[test]
fn five_hosts_by_static_seeds_over_ipv4_without_advertise_lose_no_write_through_a_rolling_restart()
{
    let Some(_one) = may_run("static seeds") else {
        return;
    };
    let lan = Lan::create("s", NODES, Family::V4);
    let setup = Setup {
        discovery: Discovery::Seeds,
        advertise: false,
    };
    let (mut nodes, _) = form_and_check(&lan, setup);

    // Rolling restart of hosts 1..=3 under writes; each comes back as the same member.
    let mut written = vec!["region".to_owned()];
    for (i, node) in nodes.iter_mut().enumerate().take(4).skip(1) {
        let id = node.id.clone();
        node.stop();
        let mut env = production_env(&lan, i, setup);
        env.push(("FOUNDATION_NODE_ID".into(), id.clone()));
        *node = HostNode::start(&lan, i, &env);
        let key = format!("during-restart-{i}");
        lan.cli(0, &["config", "set", &key, &i.to_string()])
            .expect("write during the restart");
        written.push(key);
        wait_for("the restarted node is alive again", || {
            lan.members(0)
                .iter()
                .any(|m| m["id"] == id && m["state"] == "alive")
        });
    }
    let rolled = wait_for("every write is on every live node", || {
        (0..NODES - 1).all(|i| written.iter().all(|k| lan.config_get(i, k).is_some()))
    });
    println!(
        "multi-host: rolling restart of 3 under writes: {} writes, 0 lost (all on every node \
         {rolled:?} after the last restart)",
        written.len()
    );
    a_host_whose_bulk_port_is_blocked_still_gets_the_full_state(&lan, &mut nodes, setup);
}

#[test]
fn five_hosts_by_dns_over_ipv4_with_advertise() {
    let Some(_one) = may_run("DNS IPv4") else {
        return;
    };
    by_dns(Family::V4, true);
}

#[test]
fn five_hosts_by_dns_over_ipv6_without_advertise() {
    let Some(_one) = may_run("DNS IPv6") else {
        return;
    };
    by_dns(Family::V6, false);
}

fn by_dns(family: Family, advertise: bool) {
    let tag = if family == Family::V4 { "d4" } else { "d6" };
    let lan = Lan::create(tag, NODES, family);
    let ips = (0..NODES).map(|i| lan.addr(i)).collect();
    let server = dns::DnsServer::start(
        &lan.hub(),
        std::net::SocketAddr::new(lan.hub_ip(), 53),
        DNS_NAME,
        ips,
    );
    let setup = Setup {
        discovery: Discovery::Dns,
        advertise,
    };
    let (_nodes, _) = form_and_check(&lan, setup);
    // Every node asked (none had a seed): the cluster formed through the test's server.
    assert!(
        server.queries() >= NODES,
        "the DNS server answered only {} queries",
        server.queries()
    );
    println!(
        "multi-host ({}): the DNS server answered {} queries",
        setup.describe(&lan),
        server.queries()
    );
}

/// The development profile's mDNS across two hosts: they find each other with no seed, at
/// their LAN addresses, and each says loudly that a member joined from another host while the
/// cluster uses the development secret.
#[test]
fn two_development_hosts_find_each_other_by_mdns() {
    let Some(_one) = may_run("mDNS") else {
        return;
    };
    let lan = Lan::create("m", 2, Family::V4);
    let started = Instant::now();
    let nodes: Vec<HostNode> = (0..2)
        .map(|i| {
            let env: Vec<(String, String)> = [
                ("FOUNDATION_PROFILE", "development".to_owned()),
                ("FOUNDATION_CLUSTER", "lan-dev".to_owned()),
                ("FOUNDATION_BIND", "0.0.0.0:7400".to_owned()),
                ("FOUNDATION_HTTP", "127.0.0.1:7401".to_owned()),
                ("FOUNDATION_DISCOVERY", "mdns".to_owned()),
                ("FOUNDATION_MDNS_INTERFACE", format!("e{i}")),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
            HostNode::start(&lan, i, &env)
        })
        .collect();
    for i in 0..2 {
        wait_for("each development node finds the other by mDNS", || {
            sees_everyone_at_lan_addresses(&lan, i, 1)
        });
    }
    let formed = started.elapsed();
    for node in &nodes {
        wait_for("the open-secret warning", || {
            node.logs().contains("joined from another host")
        });
    }
    println!(
        "multi-host (development, mDNS, 2 hosts): whole in {formed:?}; both warned that a member \
         joined from another host under the development secret"
    );
}

/// A firewall that lets 7400/udp through but not the bulk port: the host restarted behind it
/// must still receive a full state too large for the regular channel, sent instead on the
/// regular connection once the bulk handshake gives up.
fn a_host_whose_bulk_port_is_blocked_still_gets_the_full_state(
    lan: &Lan,
    nodes: &mut Vec<HostNode>,
    setup: Setup,
) {
    let blocked = NODES - 1;
    if let Err(why) = lan.block_udp_towards(blocked, BULK_PORT) {
        println!("SKIPPED blocked-bulk-port check: {why}");
        return;
    }
    // Two values of 40 kB: together past the 64 KiB above which a full state goes on bulk.
    let big = format!("\"{}\"", "x".repeat(40_000));
    for key in ["big-1", "big-2"] {
        lan.cli(0, &["config", "set", key, &big])
            .expect("big write");
    }
    let fallbacks = |lan: &Lan| -> u64 {
        (0..blocked)
            .map(|i| {
                lan.metric(i, "foundation_transport_bulk_fallbacks_total")
                    .expect("metrics answer") as u64
            })
            .sum()
    };
    let before = fallbacks(lan);
    nodes.push(HostNode::start(
        lan,
        blocked,
        &production_env(lan, blocked, setup),
    ));
    let received = wait_for("the host behind the firewall gets the full state", || {
        ["big-1", "big-2"].iter().all(|key| {
            lan.config_get(blocked, key)
                .is_some_and(|v| v.len() > 40_000)
        })
    });
    let after = fallbacks(lan);
    assert!(
        after > before,
        "the full state went on the regular connection"
    );
    println!(
        "multi-host: bulk port {BULK_PORT}/udp blocked towards host{blocked}: full state \
         ({} kB) received in {received:?}, {} transfers fell back to 7400",
        2 * big.len() / 1000,
        after - before
    );
}
