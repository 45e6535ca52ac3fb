//! Micro benchmarks: merge time, encoded size, op size, and memory per entry as the number of
//! distinct writers grows. Prints a table; no pass/fail (timing never gates a test).
//!
//! Run: `CARGO_TARGET_DIR=/tmp/target-crdt cargo bench -p foundation-crdt`

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use foundation_crdt::{
    Canonical, GCounter, Hlc, HlcConfig, LwwMap, MvReg, NodeId, OrSet, Timestamp,
};

/// Counts live heap bytes so memory per entry is measured, not estimated.
struct CountingAlloc;

static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only adds bookkeeping.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE_BYTES.fetch_add(new_size, Ordering::Relaxed);
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// Entries per structure in the merge benchmarks (the target size).
const ENTRIES: usize = 10_000;
/// Timed repetitions per measurement; the median is reported.
const RUNS: usize = 21;
/// Writes per key in the writers benchmark, spread over the writer pool.
const WRITES_PER_KEY: usize = 20;

type Map = LwwMap<String, Vec<u8>>;

fn key(i: usize) -> String {
    format!("service.key.{i:05}")
}

fn value(i: usize) -> Vec<u8> {
    (i as u64).to_le_bytes().to_vec()
}

fn node(i: usize) -> NodeId {
    // Spread ids over all 16 bytes like real random ids would.
    NodeId::from_u128((i as u128 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835))
}

fn ts(wall_ms: u64, n: usize) -> Timestamp {
    Timestamp {
        wall_ms: 1_700_000_000_000 + wall_ms,
        logical: 0,
        node: node(n),
    }
}

/// Median time of `f` over `RUNS` runs, each on a fresh input from `setup` (not timed).
fn median<T>(mut setup: impl FnMut() -> T, mut f: impl FnMut(T)) -> Duration {
    let mut times: Vec<Duration> = (0..RUNS)
        .map(|_| {
            let input = setup();
            let start = Instant::now();
            f(input);
            start.elapsed()
        })
        .collect();
    times.sort();
    times[RUNS / 2]
}

fn row(what: &str, figure: String, note: &str) {
    println!("{what:<58} {figure:>14}  {note}");
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

/// Two 10k-key replicas that share every key; the other side wrote half of them later, so the
/// merge does real replacements rather than only comparisons.
fn lww_pair() -> (Map, Map) {
    let mut a = Map::new();
    let mut b = Map::new();
    for i in 0..ENTRIES {
        let op = a.set(key(i), value(i), ts(i as u64, 0));
        b.apply(&op);
        if i % 2 == 0 {
            b.set(key(i), value(i + 1), ts(ENTRIES as u64 + i as u64, 1));
        }
    }
    (a, b)
}

fn orset_pair() -> (OrSet<String>, OrSet<String>) {
    let mut a = OrSet::new();
    let mut b = OrSet::new();
    for i in 0..ENTRIES {
        let op = a.add(node(0), key(i));
        b.apply(&op);
    }
    for i in (0..ENTRIES).step_by(2) {
        b.add(node(1), key(i));
    }
    for i in (1..ENTRIES).step_by(10) {
        b.remove(&key(i));
    }
    (a, b)
}

fn bench_merges() {
    let (a, b) = lww_pair();
    let t = median(|| a.clone(), |mut x| x.merge(black_box(&b)));
    row(
        "LWW map: merge two 10k-entry states",
        ms(t),
        "target <= 5 ms",
    );
    let (sa, sb) = orset_pair();
    let t = median(|| sa.clone(), |mut x| x.merge(black_box(&sb)));
    row("OR-set: merge two 10k-element states", ms(t), "");
    let bytes = b.encode().unwrap_or_default();
    let t = median(|| (), |_| drop(black_box(b.digest())));
    row("LWW map: encode + digest of 10k entries", ms(t), "");
    let t = median(|| (), |_| drop(black_box(Map::decode(&bytes))));
    row("LWW map: decode + validate of 10k entries", ms(t), "");
}

fn size(value: &impl Canonical) -> usize {
    value.encode().map_or(0, |b| b.len())
}

fn bench_sizes() {
    let (a, _) = lww_pair();
    let per = size(&a) as f64 / ENTRIES as f64;
    row(
        "LWW map: encoded bytes per entry",
        format!("{per:.1} B"),
        "key 17 B + value 8 B incl.",
    );
    let (s, _) = orset_pair();
    let per = size(&s) as f64 / ENTRIES as f64;
    row(
        "OR-set: encoded bytes per element",
        format!("{per:.1} B"),
        "element 17 B incl.",
    );
    let mut m = Map::new();
    let set = m.set(key(1), value(1), ts(1, 0));
    let rm = m.remove(key(1), ts(2, 0));
    row(
        "LWW op: set (17 B key, 8 B value)",
        format!("{} B", size(&set)),
        "",
    );
    row("LWW op: remove", format!("{} B", size(&rm)), "");
    let mut o = OrSet::new();
    let first = o.add(node(0), key(1));
    let re_add = o.add(node(1), key(1));
    let remove = o.remove(&key(1));
    row("OR-set op: first add", format!("{} B", size(&first)), "");
    row(
        "OR-set op: re-add (observes 1 dot)",
        format!("{} B", size(&re_add)),
        "",
    );
    let remove_size = remove.as_ref().map_or(0, size);
    row(
        "OR-set op: remove (observes 1 dot)",
        format!("{remove_size} B"),
        "",
    );
    let mut g = GCounter::new();
    let inc = g.increment(node(0), 1);
    let inc_size = inc.as_ref().map_or(0, size);
    row("GCounter op: increment", format!("{inc_size} B"), "");
    let mut r = MvReg::new();
    r.write(node(0), value(1));
    let w = r.write(node(1), value(2));
    row(
        "MV register op: write over 1 sibling",
        format!("{} B", size(&w)),
        "",
    );
}

/// Builds a 10k-key LWW map where each key got `WRITES_PER_KEY` writes from a pool of `writers`
/// nodes (each with its own HLC); returns (heap bytes, encoded bytes) per entry.
fn lww_with_writers(writers: usize) -> (f64, f64) {
    let mut clocks: Vec<Hlc> = (0..writers)
        .map(|w| Hlc::new(node(w), HlcConfig::default()))
        .collect();
    let before = LIVE_BYTES.load(Ordering::Relaxed);
    let mut map = Map::new();
    for round in 0..WRITES_PER_KEY {
        for i in 0..ENTRIES {
            let w = (i * 7 + round * 13) % writers;
            let stamp = clocks[w].now(round as u64);
            map.set(key(i), value(i + round), stamp);
        }
    }
    let heap = LIVE_BYTES.load(Ordering::Relaxed).saturating_sub(before);
    let encoded = size(&map);
    drop(black_box(map));
    (
        heap as f64 / ENTRIES as f64,
        encoded as f64 / ENTRIES as f64,
    )
}

/// The same for an OR-set; also reports the encoded size after every writer but the first ten
/// left for good and was compacted into one epoch actor.
fn orset_with_writers(writers: usize) -> (f64, f64, f64) {
    let before = LIVE_BYTES.load(Ordering::Relaxed);
    let mut set = OrSet::new();
    for round in 0..WRITES_PER_KEY {
        for i in 0..ENTRIES {
            set.add(node((i * 7 + round * 13) % writers), key(i));
        }
    }
    let heap = LIVE_BYTES.load(Ordering::Relaxed).saturating_sub(before);
    let encoded = size(&set);
    for w in 10..writers {
        set.compact_actor(node(w), node(usize::MAX));
    }
    let compacted = size(&set);
    let n = ENTRIES as f64;
    (heap as f64 / n, encoded as f64 / n, compacted as f64 / n)
}

fn bench_writers() {
    for writers in [10, 1_000] {
        let (heap, enc) = lww_with_writers(writers);
        let what = format!("LWW map, {writers:>4} writers: heap / encoded bytes per entry");
        row(&what, format!("{heap:.1} / {enc:.1}"), "");
    }
    for writers in [10, 1_000] {
        let (heap, enc, compacted) = orset_with_writers(writers);
        let what = format!("OR-set,  {writers:>4} writers: heap / encoded bytes per element");
        row(&what, format!("{heap:.1} / {enc:.1}"), "");
        let what = format!("OR-set,  {writers:>4} writers: encoded, all but 10 compacted");
        row(&what, format!("{compacted:.1} B"), "");
    }
}

fn main() {
    // `cargo test --benches` runs this with `--bench` absent; keep that path instant.
    if !std::env::args().any(|a| a == "--bench") {
        println!("merge bench: skipped (run with `cargo bench -p foundation-crdt`)");
        return;
    }
    println!(
        "{:<58} {:>14}",
        "foundation-crdt micro benchmarks", "figure"
    );
    bench_merges();
    bench_sizes();
    bench_writers();
}
