//! The test network: one namespace per host, each joined by a veth link to a bridge in a hub
//! namespace, as machines on one LAN are; IPv4 (`10.77.0.0/24`) or IPv6 (ULA `fd00:77::/64`).
//! The hub's bridge has an address too, where the test's DNS server answers. Deleted on drop.

use std::net::{IpAddr, SocketAddr};
use std::process::{Command, Stdio};

use serde_json::Value;

use super::{BINARY, HTTP_TOKEN};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

pub struct Lan {
    prefix: String,
    pub hosts: usize,
    pub family: Family,
}

impl Lan {
    /// `hosts` namespaces on a bridge; `tag` keeps concurrent networks apart.
    pub fn create(tag: &str, hosts: usize, family: Family) -> Self {
        let lan = Self {
            prefix: format!("fdn{}{tag}", std::process::id() % 100_000),
            hosts,
            family,
        };
        let hub = lan.hub();
        ip(&["netns", "add", &hub]);
        ip(&["-n", &hub, "link", "set", "lo", "up"]);
        // No multicast snooping: mDNS and IPv6 neighbour discovery flood the LAN as a plain
        // switch would.
        ip(&[
            "-n",
            &hub,
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ]);
        ip(&["-n", &hub, "link", "set", "br0", "up"]);
        lan.add_addr(&hub, "br0", lan.hub_ip());
        for i in 0..hosts {
            let host = lan.host(i);
            ip(&["netns", "add", &host]);
            ip(&["-n", &host, "link", "set", "lo", "up"]);
            let (inside, outside) = (format!("e{i}"), format!("p{i}"));
            ip(&[
                "-n", &host, "link", "add", &inside, "type", "veth", "peer", "name", &outside,
                "netns", &hub,
            ]);
            ip(&["-n", &hub, "link", "set", &outside, "master", "br0", "up"]);
            lan.add_addr(&host, &inside, lan.addr(i));
            ip(&["-n", &host, "link", "set", &inside, "up"]);
            // A default route, as a host has: the node derives its advertised address from it.
            let v = if family == Family::V6 { "-6" } else { "-4" };
            ip(&["-n", &host, v, "route", "add", "default", "dev", &inside]);
        }
        lan
    }

    fn add_addr(&self, ns: &str, dev: &str, addr: IpAddr) {
        match addr {
            // No duplicate address detection: the address is usable at once, not after ~1 s.
            IpAddr::V6(_) => ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{addr}/64"),
                "dev",
                dev,
                "nodad",
            ]),
            IpAddr::V4(_) => ip(&["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", dev]),
        }
    }

    pub fn hub(&self) -> String {
        format!("{}-hub", self.prefix)
    }

    pub fn host(&self, i: usize) -> String {
        format!("{}-h{i}", self.prefix)
    }

    /// Host `i`'s address on the LAN.
    pub fn addr(&self, i: usize) -> IpAddr {
        let n = u8::try_from(i + 1).expect("few hosts");
        match self.family {
            Family::V4 => IpAddr::from([10, 77, 0, n]),
            Family::V6 => IpAddr::from([0xfd00, 0x77, 0, 0, 0, 0, 0, u16::from(n)]),
        }
    }

    /// The hub's address on the LAN (where the DNS server listens).
    pub fn hub_ip(&self) -> IpAddr {
        match self.family {
            Family::V4 => IpAddr::from([10, 77, 0, 254]),
            Family::V6 => IpAddr::from([0xfd00, 0x77, 0, 0, 0, 0, 0, 0xfe]),
        }
    }

    pub fn sock(&self, i: usize, port: u16) -> SocketAddr {
        SocketAddr::new(self.addr(i), port)
    }

    /// Whether `text` is an address of this LAN (`ip:port`).
    pub fn is_lan_addr(&self, text: &str) -> bool {
        text.parse::<SocketAddr>()
            .is_ok_and(|a| (0..self.hosts).any(|i| a.ip() == self.addr(i)))
    }

    /// The unspecified address of the family, to bind.
    pub fn any(&self, port: u16) -> String {
        match self.family {
            Family::V4 => format!("0.0.0.0:{port}"),
            Family::V6 => format!("[::]:{port}"),
        }
    }

    /// Where the CLI on a host reaches the node there.
    pub fn local_http(&self) -> &'static str {
        match self.family {
            Family::V4 => "127.0.0.1:7401",
            Family::V6 => "[::1]:7401",
        }
    }

    /// `foundation ARGS --node NODE` run on host `i`; stdout when it succeeds.
    pub fn cli_at(&self, i: usize, node: &str, args: &[&str]) -> Option<String> {
        let output = Command::new("ip")
            .args(["netns", "exec", &self.host(i), BINARY])
            .args(args)
            .args(["--node", node])
            .env_clear()
            .env("FOUNDATION_HTTP_TOKEN", HTTP_TOKEN)
            .output()
            .ok()?;
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// `foundation ARGS` run on host `i`, talking to the node there.
    pub fn cli(&self, i: usize, args: &[&str]) -> Option<String> {
        self.cli_at(i, self.local_http(), args)
    }

    /// `foundation members --json` of the node at `node`, as seen from host `i`.
    pub fn members_json_at(&self, i: usize, node: &str) -> Option<Value> {
        self.cli_at(i, node, &["members", "--json"])
            .and_then(|text| serde_json::from_str::<Value>(&text).ok())
    }

    pub fn members(&self, i: usize) -> Vec<Value> {
        self.members_json_at(i, self.local_http())
            .and_then(|v| v["members"].as_array().cloned())
            .unwrap_or_default()
    }

    pub fn config_get(&self, i: usize, key: &str) -> Option<String> {
        self.cli(i, &["config", "get", key])
            .map(|text| text.trim().to_owned())
    }

    /// The value of the unlabelled metric `name` on host `i`'s node.
    pub fn metric(&self, i: usize, name: &str) -> Option<f64> {
        let addr: SocketAddr = self.local_http().parse().ok()?;
        let text = super::netns::http_get(&self.host(i), addr, "/metrics")?;
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|value| value.trim().parse::<f64>().ok())
    }

    /// What every production node on host `i` is started with: the production profile, a real
    /// secret, QUIC and HTTP bound to every address (writes need the test's token).
    pub fn production_env(&self, i: usize, cluster: &str, secret: &str) -> Vec<(String, String)> {
        [
            ("FOUNDATION_PROFILE", "production".to_owned()),
            ("FOUNDATION_SECRET", secret.to_owned()),
            ("FOUNDATION_CLUSTER", cluster.to_owned()),
            ("FOUNDATION_NAME", format!("host{i}")),
            ("FOUNDATION_BIND", self.any(7400)),
            ("FOUNDATION_HTTP", self.any(7401)),
            ("FOUNDATION_HTTP_TOKEN", HTTP_TOKEN.to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// `FOUNDATION_SEEDS` naming the first two hosts.
    pub fn seeds(&self) -> (String, String) {
        let seeds = format!("{},{}", self.sock(0, 7400), self.sock(1, 7400));
        ("FOUNDATION_SEEDS".to_owned(), seeds)
    }

    /// Takes host `i`'s link to the bridge down (the host is cut off from every other, its
    /// routes through the link gone) or up again with its default route.
    pub fn set_link(&self, i: usize, up: bool) {
        let (host, dev) = (self.host(i), format!("e{i}"));
        ip(&[
            "-n",
            &host,
            "link",
            "set",
            &dev,
            if up { "up" } else { "down" },
        ]);
        if up {
            let v = if self.family == Family::V6 {
                "-6"
            } else {
                "-4"
            };
            ip(&["-n", &host, v, "route", "replace", "default", "dev", &dev]);
        }
    }

    /// Discards UDP to `port` of host `i` as it leaves every other host, as a firewall in front
    /// of host `i` would drop it (a routing rule: this kernel may lack tc's drop action).
    pub fn block_udp_towards(&self, i: usize, port: u16) -> Result<(), String> {
        let (to, port) = (self.addr(i).to_string(), port.to_string());
        for other in (0..self.hosts).filter(|&other| other != i) {
            let host = self.host(other);
            let rule = [
                "-n",
                &host,
                "rule",
                "add",
                "pref",
                "100",
                "to",
                &to,
                "ipproto",
                "udp",
                "dport",
                &port,
                "blackhole",
            ];
            let status = Command::new("ip").args(rule).stderr(Stdio::null()).status();
            if !status.is_ok_and(|s| s.success()) {
                return Err("`ip rule ... dport` is not supported here".into());
            }
        }
        Ok(())
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for i in 0..self.hosts {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.host(i)])
                .status();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.hub()])
            .status();
    }
}

fn ip(args: &[&str]) {
    let status = Command::new("ip").args(args).status().expect("run ip");
    assert!(status.success(), "`ip {}` failed: {status}", args.join(" "));
}
