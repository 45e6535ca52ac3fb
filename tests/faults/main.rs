//! Five `foundation node` processes (production profile, keyspaces on disk) on hosts made of
//! network namespaces, under real faults while clients write: links taken down, partitions,
//! cuts between two hosts and in one direction only, packet loss, delay and reordering (where
//! the kernel has `netem`), `kill -9` with a restart on the same data directory, and stalls
//! (`SIGSTOP`/`SIGCONT`) shorter than the failure detector tolerates. One fault at a time, from
//! a seeded schedule (`FAULTS_SEED`; the schedule repeats, the timing does not).
//!
//! Checked on the history of the run:
//! - no acknowledged majority write is lost: after each heal, and at the end, every node holds
//!   each one or a later value of its key;
//! - after the last heal with the writers stopped, every node holds the same config within
//!   [`CONVERGE_WITHIN`];
//! - a node only stalled (below the bound) is never declared failed by another;
//! - a killed life's registry entry vanishes from every node within [`VANISH_WITHIN`], and at
//!   the end every node lists exactly the live lives' entries.
//!
//! The short run (one fault of each kind) is part of the suite; `FAULTS_SOAK_SECS=600 cargo
//! test --test faults -- --nocapture` runs rounds of faults for that long. Without root or
//! `ip` the test says why and passes; a kind of fault this machine cannot apply is left out,
//! saying so.

mod cluster;
mod faults;
mod history;
#[path = "../netlab/mod.rs"]
mod netlab;
mod workload;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use cluster::Cluster;
use faults::{Fault, Schedule, Step, Tools};
use history::{Applied, History, Registration, Stall};
use netlab::lan::{Family, Lan};
use workload::Workload;

const NODES: usize = 5;
/// After a heal, how long every node may take to hold every acknowledged majority write, and
/// at the end to hold the same config.
const CONVERGE_WITHIN: Duration = Duration::from_secs(30);
/// How long a killed life's registry entry may stay listed: detection (about 3 s with
/// production timers) and the spread of the news, with room for a loaded machine.
const VANISH_WITHIN: Duration = Duration::from_secs(20);
/// A breath between faults (at least the stall grace, so a late declaration is the stall's).
const BETWEEN: Duration = history::STALL_GRACE;

struct Settings {
    seed: u64,
    /// Run rounds of faults this long; `None`: one round.
    soak: Option<Duration>,
}

impl Settings {
    fn from_env() -> Self {
        let number = |name: &str| {
            std::env::var(name).ok().map(|v| {
                v.trim()
                    .parse::<u64>()
                    .unwrap_or_else(|_| panic!("{name}={v} is not a number"))
            })
        };
        let seed = number("FAULTS_SEED").unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
                % 1_000_000
        });
        Self {
            seed,
            soak: number("FAULTS_SOAK_SECS").map(Duration::from_secs),
        }
    }
}

#[test]
fn five_nodes_under_real_faults_lose_no_acknowledged_majority_write_and_converge() {
    if let Some(why) = netlab::cannot_run() {
        println!("SKIPPED faults: {why}");
        return;
    }
    let settings = Settings::from_env();
    println!(
        "faults: seed {} (FAULTS_SEED={} repeats this schedule), {}",
        settings.seed,
        settings.seed,
        settings
            .soak
            .map_or("one round of every kind".to_owned(), |d| format!(
                "soak for {d:?}"
            ))
    );
    let lan = Lan::create("f", NODES, Family::V4);
    let tools = Tools::probe(&lan);
    for why in tools.missing() {
        println!("SKIPPED fault kinds {why}");
    }
    let mut cluster = Cluster::start(lan);
    let mut history = History::default();
    for host in 0..NODES {
        register(&cluster, &mut history, host);
    }
    let workload = Workload::start(&cluster.lan, &history.writes);
    let mut schedule = Schedule::new(settings.seed, &tools, NODES);
    let started = Instant::now();
    let mut steps = 0;
    loop {
        let done = match settings.soak {
            Some(soak) => started.elapsed() >= soak,
            None => steps >= schedule.round_len(),
        };
        if done {
            break;
        }
        let step = schedule.next_step();
        run_step(&mut cluster, &mut history, &step);
        steps += 1;
        collect_declarations(&cluster, &mut history);
    }
    workload.stop();
    let lost = check_at_end(&cluster, &mut history);
    collect_declarations(&cluster, &mut history);
    // Shown by the test harness only when the run fails.
    println!("faults: timeline of faults and membership changes");
    for line in history.timeline() {
        println!("{line}");
    }
    for line in history.fault_lines() {
        println!("{line}");
    }
    println!("{}", history.summary(settings.seed, lost.len()));
    verdict(&history, &lost, settings.seed);
}

/// Applies one fault, holds it, heals it, and measures the catch-up.
fn run_step(cluster: &mut Cluster, history: &mut History, step: &Step) {
    let what = step.fault.describe();
    println!("faults: {what} for {:?}", step.hold);
    let from = Instant::now();
    match step.fault {
        Fault::Kill { host } => kill_and_restart(cluster, history, host, step.hold),
        Fault::Stall { host } => {
            cluster.signal(host, "STOP");
            std::thread::sleep(step.hold);
            cluster.signal(host, "CONT");
            history.stalls.push(Stall {
                id: cluster.ids[host].clone(),
                from,
                to: Instant::now(),
            });
        }
        ref network => {
            faults::apply(&cluster.lan, network).unwrap_or_else(|e| panic!("{what}: {e}"));
            std::thread::sleep(step.hold);
            faults::heal(&cluster.lan, network).unwrap_or_else(|e| panic!("heal {what}: {e}"));
        }
    }
    let healed = Instant::now();
    let caught_up = catch_up(cluster, history, healed);
    await_vanishing(cluster, history);
    history.faults.push(Applied {
        kind: step.fault.kind(),
        what,
        held: step.hold,
        from,
        healed,
        caught_up,
    });
    std::thread::sleep(BETWEEN);
}

/// `kill -9` of `host`'s node; after `down`, a restart on its data directory, which registers
/// the new life's endpoint.
fn kill_and_restart(cluster: &mut Cluster, history: &mut History, host: usize, down: Duration) {
    cluster.kill(host);
    let killed = Instant::now();
    for r in &mut history.registrations {
        if r.host == host && r.killed.is_none() {
            r.killed = Some(killed);
        }
    }
    std::thread::sleep(down);
    cluster.restart(host);
    register(cluster, history, host);
}

/// Registers an endpoint through `host`'s node (retrying while the node settles).
fn register(cluster: &Cluster, history: &mut History, host: usize) {
    let mut last = String::new();
    for _ in 0..50 {
        match cluster.register(host) {
            Ok(instance) => {
                let registration = Registration::new(host, &instance)
                    .unwrap_or_else(|| panic!("h{host} listed its instance as {instance:?}"));
                history.registrations.push(registration);
                return;
            }
            Err(why) => last = why,
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("could not register through h{host}: {last}");
}

/// How long after `healed` every node held every majority write acknowledged before it.
fn catch_up(cluster: &Cluster, history: &History, healed: Instant) -> Option<Duration> {
    let acked = history.acked_majority(healed);
    while healed.elapsed() < CONVERGE_WITHIN {
        let all = (0..cluster.hosts()).all(|i| {
            cluster
                .config(i)
                .is_some_and(|snapshot| history::lost(&acked, &snapshot).is_empty())
        });
        if all {
            return Some(healed.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// Waits until no node lists a killed life's endpoint (any entry of its node with a generation
/// below the restarted life's registration), and records when.
fn await_vanishing(cluster: &Cluster, history: &mut History) {
    let current: BTreeMap<String, u64> = history
        .registrations
        .iter()
        .filter(|r| r.killed.is_none())
        .map(|r| (r.node.clone(), r.generation))
        .collect();
    for r in history.registrations.iter_mut() {
        let (Some(killed), None) = (r.killed, r.vanished_after) else {
            continue;
        };
        let Some(&since) = current.get(&r.node) else {
            continue;
        };
        let dead = |instance: &String| {
            history::parse_instance(instance)
                .is_some_and(|(node, generation, _)| node == r.node && generation < since)
        };
        while killed.elapsed() < VANISH_WITHIN {
            let gone = (0..cluster.hosts()).all(|i| {
                cluster
                    .instances(i)
                    .is_some_and(|set| !set.iter().any(dead))
            });
            if gone {
                r.vanished_after = Some(killed.elapsed());
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Moves the monitors' `member failed` lines into the history.
fn collect_declarations(cluster: &Cluster, history: &mut History) {
    for (host, at, line) in cluster.monitors.take() {
        if line.contains("missed") && line.contains("fell behind") {
            history.monitor_lags += 1;
        }
        if let Some(id) = history::failed_id(&line) {
            history.declared_failed.push((host, at, id.to_owned()));
        }
        if line.contains(" member ") {
            history.member_lines.push((host, at, line));
        }
    }
}

/// With the writers stopped: the time until every node holds the same config and lists the
/// same endpoints (exactly the live lives'); the acknowledged majority writes each node lacks.
fn check_at_end(cluster: &Cluster, history: &mut History) -> Vec<String> {
    let stopped = Instant::now();
    let mut snapshots: Vec<Option<BTreeMap<String, serde_json::Value>>> = Vec::new();
    while stopped.elapsed() < CONVERGE_WITHIN {
        snapshots = (0..cluster.hosts()).map(|i| cluster.config(i)).collect();
        if snapshots.iter().all(|s| s.is_some() && *s == snapshots[0]) {
            history.final_convergence = Some(stopped.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let live: Vec<&Registration> = history
        .registrations
        .iter()
        .filter(|r| r.killed.is_none())
        .collect();
    while stopped.elapsed() < CONVERGE_WITHIN {
        let listed: Vec<_> = (0..cluster.hosts()).map(|i| cluster.instances(i)).collect();
        let same = listed.iter().all(|l| *l == listed[0]);
        if same
            && listed[0]
                .as_ref()
                .is_some_and(|l| history::exactly_live(&live, l))
        {
            history.registry_convergence = Some(stopped.elapsed());
            break;
        }
        let live: Vec<_> = live
            .iter()
            .map(|r| format!("{}.{}/{}", r.node, r.generation, r.number))
            .collect();
        history.registry_last_seen = format!("live lives' entries {live:?}, listed {listed:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let acked = history.acked_majority(stopped);
    snapshots
        .iter()
        .enumerate()
        .flat_map(|(i, snapshot)| match snapshot {
            Some(snapshot) => history::lost(&acked, snapshot)
                .into_iter()
                .map(|lost| format!("h{i} {lost}"))
                .collect(),
            None => vec![format!("h{i} did not answer")],
        })
        .collect()
}

/// Each check, failing with the seed and what it found.
fn verdict(history: &History, lost: &[String], seed: u64) {
    assert!(
        lost.is_empty(),
        "LOST ACKNOWLEDGED MAJORITY WRITES (seed {seed}): {} e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
    let slow: Vec<&String> = history
        .faults
        .iter()
        .filter(|f| f.caught_up.is_none())
        .map(|f| &f.what)
        .collect();
    assert!(
        slow.is_empty(),
        "NO CATCH-UP within {CONVERGE_WITHIN:?} after (seed {seed}): {slow:?}"
    );
    assert!(
        history.final_convergence.is_some(),
        "NO CONVERGENCE within {CONVERGE_WITHIN:?} after the last heal (seed {seed})"
    );
    let stalled = history.stalled_declared_failed();
    assert!(
        stalled.is_empty(),
        "STALLED BELOW THE BOUND YET DECLARED FAILED (seed {seed}): {stalled:?}"
    );
    let lingering: Vec<String> = history
        .registrations
        .iter()
        .filter(|r| r.killed.is_some() && r.vanished_after.is_none())
        .map(|r| format!("{}.{}/{}", r.node, r.generation, r.number))
        .collect();
    assert!(
        lingering.is_empty(),
        "DEAD LIVES' ENTRIES STILL LISTED after {VANISH_WITHIN:?} (seed {seed}): {lingering:?}"
    );
    assert!(
        history.registry_convergence.is_some(),
        "THE REGISTRY DID NOT CONVERGE to the live lives' entries (seed {seed}): {}",
        history.registry_last_seen
    );
    let writes = history.writes.lock().unwrap_or_else(|e| e.into_inner());
    let acked = |majority: bool| {
        writes
            .iter()
            .filter(|w| w.majority == majority && w.outcome == history::Outcome::Acknowledged)
            .count()
    };
    assert!(
        acked(true) >= 50 && acked(false) >= 50,
        "the clients barely wrote: {} majority and {} plain writes acknowledged",
        acked(true),
        acked(false)
    );
}
