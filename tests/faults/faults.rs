//! The faults: what this machine can apply, a seeded schedule of them, and applying and healing
//! the network ones. Network faults live in one place, the bridge of the hub namespace every
//! packet between hosts crosses: `nft` rules there drop packets silently (no error reaches the
//! sender, as on a real cut), `tc netem` on the bridge ports delays and reorders them. Process
//! faults (`kill -9`, `SIGSTOP`) are the cluster's (`cluster.rs`).

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::netlab::lan::Lan;

/// The longest stall applied: well below what the production profile survives, about
/// `probe_period + suspect_to_down_min + probe_rtt` = 2.4 s (2.2 s measured in the simulator).
pub const MAX_STALL: Duration = Duration::from_millis(1500);

/// What this machine can do beyond `ip`.
pub struct Tools {
    pub nft: bool,
    pub netem: bool,
}

impl Tools {
    /// Tries each tool in the hub namespace (the kernel may lack a module even when the
    /// command is installed) and leaves the `nft` table the faults use in place.
    pub fn probe(lan: &Lan) -> Self {
        let nft = nft(lan, "add table bridge faults").is_ok()
            && nft(
                lan,
                "add chain bridge faults cut { type filter hook forward priority 0 ; policy accept ; }",
            )
            .is_ok();
        let netem = tc(
            &lan.hub(),
            &["qdisc", "add", "dev", "p0", "root", "netem", "delay", "1ms"],
        )
        .is_ok();
        let _ = tc(&lan.hub(), &["qdisc", "del", "dev", "p0", "root"]);
        Self { nft, netem }
    }

    /// Why some kinds of fault are left out of the schedule, one line each.
    pub fn missing(&self) -> Vec<String> {
        let mut why = Vec::new();
        if !self.nft {
            why.push(
                "partition, cut, one-way and loss: `nft` (nftables, bridge family) is not \
                 available here (apt-get install nftables)"
                    .to_owned(),
            );
        }
        if !self.netem {
            why.push(
                "delay and reordering: `tc qdisc ... netem` is not available (iproute2 missing, \
                 or a kernel without sch_netem)"
                    .to_owned(),
            );
        }
        why
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Isolate,
    Partition,
    Cut,
    OneWay,
    Loss,
    Delay,
    Kill,
    Stall,
}

impl Kind {
    pub const ALL: [Kind; 8] = [
        Kind::Isolate,
        Kind::Partition,
        Kind::Cut,
        Kind::OneWay,
        Kind::Loss,
        Kind::Delay,
        Kind::Kill,
        Kind::Stall,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Isolate => "isolate (link down)",
            Kind::Partition => "partition 2|3",
            Kind::Cut => "cut between two",
            Kind::OneWay => "one-way cut",
            Kind::Loss => "loss",
            Kind::Delay => "delay+reorder",
            Kind::Kill => "kill -9 + restart",
            Kind::Stall => "SIGSTOP/SIGCONT",
        }
    }

    fn available(self, tools: &Tools) -> bool {
        match self {
            Kind::Partition | Kind::Cut | Kind::OneWay | Kind::Loss => tools.nft,
            Kind::Delay => tools.netem,
            Kind::Isolate | Kind::Kill | Kind::Stall => true,
        }
    }
}

#[derive(Clone, Debug)]
pub enum Fault {
    /// Host's link to the bridge down: cut off from every other host.
    Isolate { host: usize },
    /// No packet between the minority and the rest, either way.
    Partition { minority: Vec<usize> },
    /// No packet between two hosts, either way; each still reaches the others.
    Cut { a: usize, b: usize },
    /// Packets from `from` to `to` dropped; the other direction flows.
    OneWay { from: usize, to: usize },
    /// A share of every packet to and from the host dropped.
    Loss { host: usize, percent: u32 },
    /// Every packet to and from the host delayed (with jitter), a share reordered.
    Delay {
        host: usize,
        ms: u32,
        jitter_ms: u32,
    },
    /// `kill -9`, then a restart on the same data directory after the hold.
    Kill { host: usize },
    /// `SIGSTOP` for the hold (at most [`MAX_STALL`]), then `SIGCONT`.
    Stall { host: usize },
}

impl Fault {
    pub fn kind(&self) -> Kind {
        match self {
            Fault::Isolate { .. } => Kind::Isolate,
            Fault::Partition { .. } => Kind::Partition,
            Fault::Cut { .. } => Kind::Cut,
            Fault::OneWay { .. } => Kind::OneWay,
            Fault::Loss { .. } => Kind::Loss,
            Fault::Delay { .. } => Kind::Delay,
            Fault::Kill { .. } => Kind::Kill,
            Fault::Stall { .. } => Kind::Stall,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Fault::Isolate { host } => format!("isolate h{host} (link down)"),
            Fault::Partition { minority } => format!("partition {minority:?} | rest"),
            Fault::Cut { a, b } => format!("cut h{a} <-> h{b}"),
            Fault::OneWay { from, to } => format!("one-way cut h{from} -> h{to}"),
            Fault::Loss { host, percent } => format!("{percent}% loss at h{host}"),
            Fault::Delay {
                host,
                ms,
                jitter_ms,
            } => {
                format!("delay {ms}±{jitter_ms} ms, 25% reordered, at h{host}")
            }
            Fault::Kill { host } => format!("kill -9 h{host}, restart"),
            Fault::Stall { host } => format!("SIGSTOP h{host}"),
        }
    }
}

/// One fault and how long it is held.
pub struct Step {
    pub fault: Fault,
    pub hold: Duration,
}

/// splitmix64: the schedule depends on the seed alone, not on timing.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn millis(&mut self, from: u64, to: u64) -> Duration {
        Duration::from_millis(from + self.next() % (to - from + 1))
    }

    /// Two different hosts.
    fn pair(&mut self, hosts: usize) -> (usize, usize) {
        let a = self.below(hosts);
        (a, (a + 1 + self.below(hosts - 1)) % hosts)
    }
}

/// Rounds of every available kind in a seeded order, each with seeded targets and holds.
pub struct Schedule {
    rng: Rng,
    kinds: Vec<Kind>,
    round: Vec<Kind>,
    hosts: usize,
}

impl Schedule {
    pub fn new(seed: u64, tools: &Tools, hosts: usize) -> Self {
        let kinds = Kind::ALL
            .into_iter()
            .filter(|k| k.available(tools))
            .collect();
        Self {
            rng: Rng::new(seed),
            kinds,
            round: Vec::new(),
            hosts,
        }
    }

    /// Kinds in one round (every available kind once).
    pub fn round_len(&self) -> usize {
        self.kinds.len()
    }

    pub fn next_step(&mut self) -> Step {
        if self.round.is_empty() {
            self.round = self.kinds.clone();
            // Fisher-Yates, drawn from the seed.
            for i in (1..self.round.len()).rev() {
                let j = self.rng.below(i + 1);
                self.round.swap(i, j);
            }
        }
        let kind = self.round.pop().expect("at least one kind is available");
        let hosts = self.hosts;
        let host = self.rng.below(hosts);
        let fault = match kind {
            Kind::Isolate => Fault::Isolate { host },
            Kind::Partition => {
                let (a, b) = self.rng.pair(hosts);
                let mut minority = vec![a, b];
                minority.sort_unstable();
                Fault::Partition { minority }
            }
            Kind::Cut => {
                let (a, b) = self.rng.pair(hosts);
                Fault::Cut { a, b }
            }
            Kind::OneWay => {
                let (from, to) = self.rng.pair(hosts);
                Fault::OneWay { from, to }
            }
            Kind::Loss => Fault::Loss {
                host,
                percent: 10 + self.rng.below(31) as u32,
            },
            Kind::Delay => Fault::Delay {
                host,
                ms: 20 + self.rng.below(81) as u32,
                jitter_ms: 10 + self.rng.below(21) as u32,
            },
            Kind::Kill => Fault::Kill { host },
            Kind::Stall => Fault::Stall { host },
        };
        let hold = match kind {
            Kind::Stall => self.rng.millis(400, MAX_STALL.as_millis() as u64),
            // Down shorter and longer than failure detection (about 3 s with production timers).
            Kind::Kill => self.rng.millis(500, 6000),
            _ => self.rng.millis(2000, 5000),
        };
        Step { fault, hold }
    }
}

/// Applies a network fault; process faults are the caller's.
pub fn apply(lan: &Lan, fault: &Fault) -> Result<(), String> {
    let addr = |i: usize| lan.addr(i).to_string();
    let drop = |from: usize, to: usize| {
        nft(
            lan,
            &format!(
                "add rule bridge faults cut ip saddr {} ip daddr {} drop",
                addr(from),
                addr(to)
            ),
        )
    };
    match fault {
        Fault::Isolate { host } => {
            lan.set_link(*host, false);
            Ok(())
        }
        Fault::Partition { minority } => {
            for &a in minority {
                for b in (0..lan.hosts).filter(|b| !minority.contains(b)) {
                    drop(a, b)?;
                    drop(b, a)?;
                }
            }
            Ok(())
        }
        Fault::Cut { a, b } => drop(*a, *b).and_then(|()| drop(*b, *a)),
        Fault::OneWay { from, to } => drop(*from, *to),
        Fault::Loss { host, percent } => ["saddr", "daddr"].iter().try_for_each(|side| {
            nft(
                lan,
                &format!(
                    "add rule bridge faults cut ip {side} {} numgen random mod 100 < {percent} drop",
                    addr(*host)
                ),
            )
        }),
        Fault::Delay { host, ms, jitter_ms } => {
            // Both directions: the hub's port towards the host and the host's own link.
            let netem = |ns: &str, dev: &str| {
                tc(
                    ns,
                    &[
                        "qdisc", "add", "dev", dev, "root", "netem", "delay", &format!("{ms}ms"),
                        &format!("{jitter_ms}ms"), "reorder", "25%", "50%",
                    ],
                )
            };
            netem(&lan.hub(), &format!("p{host}"))?;
            netem(&lan.host(*host), &format!("e{host}"))
        }
        Fault::Kill { .. } | Fault::Stall { .. } => Ok(()),
    }
}

/// Undoes every network fault: rules flushed, links up, queues back to the default.
pub fn heal(lan: &Lan, fault: &Fault) -> Result<(), String> {
    match fault {
        Fault::Isolate { host } => lan.set_link(*host, true),
        Fault::Delay { host, .. } => {
            tc(
                &lan.hub(),
                &["qdisc", "del", "dev", &format!("p{host}"), "root"],
            )?;
            tc(
                &lan.host(*host),
                &["qdisc", "del", "dev", &format!("e{host}"), "root"],
            )?;
        }
        Fault::Partition { .. } | Fault::Cut { .. } | Fault::OneWay { .. } | Fault::Loss { .. } => {
            nft(lan, "flush chain bridge faults cut")?;
        }
        Fault::Kill { .. } | Fault::Stall { .. } => {}
    }
    Ok(())
}

/// One `nft` command in the hub namespace.
fn nft(lan: &Lan, command: &str) -> Result<(), String> {
    run(&["netns", "exec", &lan.hub(), "nft", command])
}

/// `tc ARGS` in namespace `ns`.
fn tc(ns: &str, args: &[&str]) -> Result<(), String> {
    let mut all = vec!["netns", "exec", ns, "tc"];
    all.extend_from_slice(args);
    run(&all)
}

/// `ip ARGS`; the error names the command and what it printed.
fn run(args: &[&str]) -> Result<(), String> {
    let output = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if output.status.success() {
        return Ok(());
    }
    Err(format!(
        "`ip {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr).trim()
    ))
}
