//! Speed probe: `cargo run --release -p foundation-sim --example speed -- N SECONDS [check]`
//! (with a third argument, each core's `invariants()` also runs after every step).

use foundation_sim::faults::secs;
use foundation_sim::scenario::{run, Check, RunOptions, Scenario};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let nodes = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(100);
    let seconds = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(20);
    let scenario = Scenario::new("speed")
        .nodes(nodes)
        .duration(secs(seconds))
        .check(Check::CoreInvariants(args.len() > 3));
    let r = run(&scenario, 1, &RunOptions::default());
    let formed = r.measurements.convergence.first().and_then(|c| c.took_secs);
    println!(
        "N={nodes}: {:.1} s simulated in {:.2} s = {:.0}x · {} trace lines · {:.1} msg/s/node · {:.0} B/s/node · formed in {formed:?} s · passed {}",
        r.simulated_secs,
        r.wall_secs,
        r.simulated_secs / r.wall_secs,
        r.trace_lines,
        r.traffic.messages_per_node_per_sec,
        r.traffic.membership_bytes_per_node_per_sec,
        r.passed
    );
}
