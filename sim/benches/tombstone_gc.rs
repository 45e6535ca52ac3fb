//! Tombstone GC at scale: how long a delete's tombstone lives, against the `tombstone_ttl` it
//! is promised, as the cluster grows. Prints numbers, never fails.
//!
//! `cargo bench -p foundation-sim --bench tombstone_gc` (add sizes and seeds: `-- 100 300
//! seeds=1`; the default runs 32, 100, 200 and 300 nodes, three seeds each).
//!
//! Real cores on the simulator's virtual clock, the LAN world, replication at its defaults
//! (`tombstone_ttl` 15 min, GC rounds every ttl/16, anti-entropy every second). A key is set,
//! deleted 10 s later, and the run goes on, with a write every 5 s from a random node, until no
//! node holds the tombstone. A tombstone may go once every member's digest, sent after it,
//! shows it seen (and it is ttl old): above `push_all_max` members a node hears digests only
//! from the members whose anti-entropy partner it is and from the GC rounds' `fanout`. With
//! the partner drawn at random each second, the last member's came after about N·ln N
//! seconds (N=200: the tombstone lived 1,696 s, 1.88× the ttl); with the partner the one sent
//! to longest ago, within N−1 seconds (N=200: 958 s, 1.06×).

use std::collections::BTreeMap;

use foundation_core::replication::{ReplicationConfig, Write};
use foundation_sim::faults::{Fault, Nodes};
use foundation_sim::world::{AppRequest, World, WorldConfig};

const KEYSPACE: &str = "gc";
const SEC: u64 = 1_000_000;
/// How often the tombstone is looked for, in simulated microseconds.
const CHECK_US: u64 = SEC;
/// A write from a random node this often keeps every origin's ops moving.
const WRITE_EVERY_US: u64 = 5 * SEC;
/// Runs give up after this many ttls.
const TTLS_MAX: u64 = 12;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let seeds = args
        .iter()
        .find_map(|a| a.strip_prefix("seeds=")?.parse().ok())
        .unwrap_or(3);
    let sizes: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let sizes = if sizes.is_empty() {
        vec![32, 100, 200, 300]
    } else {
        sizes
    };
    let config = ReplicationConfig::default();
    let ttl_s = config.tombstone_ttl.as_secs_f64();
    let round_s = ttl_s / 16.0;
    println!(
        "tombstone GC: a delete's tombstone gone from every node, seconds after the delete \
         (tombstone_ttl {ttl_s:.0} s, GC round {round_s:.0} s: ideal ≈ {:.0}–{:.0} s)",
        ttl_s,
        ttl_s + round_s
    );
    for n in sizes {
        let mut lives = Vec::new();
        for seed in 1..=seeds {
            let started = std::time::Instant::now();
            let life = tombstone_life(seed, n, &config);
            let cpu = started.elapsed().as_secs_f64();
            match life {
                Some(s) => println!(
                    "  N={n:4} seed {seed}: {s:6.0} s ({:.2}× ttl; run {cpu:.1} s)",
                    s / ttl_s
                ),
                None => println!(
                    "  N={n:4} seed {seed}: still held after {TTLS_MAX} ttls (run {cpu:.1} s)"
                ),
            }
            lives.extend(life);
        }
        if let (Some(lo), Some(hi)) = (
            lives.iter().copied().reduce(f64::min),
            lives.iter().copied().reduce(f64::max),
        ) {
            println!(
                "  N={n:4}: {lo:.0}–{hi:.0} s, {:.2}–{:.2}× ttl",
                lo / ttl_s,
                hi / ttl_s
            );
        }
    }
}

/// Seconds from the delete until no node holds its tombstone; `None` past [`TTLS_MAX`] ttls.
fn tombstone_life(seed: u64, n: usize, config: &ReplicationConfig) -> Option<f64> {
    let mut world = World::new(WorldConfig::lan(seed, n));
    world.set_replication(config.clone());
    if let Err(problem) = world.apply(&Fault::Join(Nodes::All, 0), &BTreeMap::new()) {
        println!("  (join refused: {problem})");
        return None;
    }
    run_for(&mut world, 20 * SEC);
    world.request_after(0, 0, AppRequest::Write(write("doomed", Some(b"v"))));
    run_for(&mut world, 10 * SEC);
    world.request_after(0, 0, AppRequest::Write(write("doomed", None)));
    let deleted = world.now_us();
    let give_up = deleted + TTLS_MAX * config.tombstone_ttl.as_micros() as u64;
    let mut next_write = deleted + WRITE_EVERY_US;
    let mut serial = 0u64;
    run_for(&mut world, CHECK_US);
    while world.now_us() < give_up {
        if !tombstone_held(&world, n) {
            return Some((world.now_us() - deleted) as f64 / SEC as f64);
        }
        while next_write <= world.now_us() + CHECK_US {
            serial += 1;
            let slot = world.random_below(n as u64) as usize;
            let value = serial.to_be_bytes();
            let after = next_write.saturating_sub(world.now_us());
            let key = format!("k{}", serial % 64);
            world.request_after(slot, after, AppRequest::Write(write(&key, Some(&value))));
            next_write += WRITE_EVERY_US;
        }
        run_for(&mut world, CHECK_US);
    }
    None
}

fn write(key: &str, value: Option<&[u8]>) -> Write {
    Write {
        keyspace: KEYSPACE.into(),
        key: key.into(),
        value: value.map(<[u8]>::to_vec),
    }
}

/// Whether some running node still holds a tombstone in the keyspace.
fn tombstone_held(world: &World, n: usize) -> bool {
    (0..n).any(|slot| {
        world.node(slot).core().is_some_and(|core| {
            core.replication()
                .keyspace(KEYSPACE)
                .is_some_and(|k| k.map().tombstones() > 0)
        })
    })
}

fn run_for(world: &mut World, us: u64) {
    let until = world.now_us() + us;
    while world.next_time().is_some_and(|t| t <= until) {
        world.step();
    }
    world.advance_to(until);
    world.take_observed();
}
