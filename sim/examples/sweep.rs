//! The large sweep, outside the normal test run:
//! `cargo run --release -p foundation-sim --example sweep -- partition-heal 100 1..200`;
//! a scenario file works too (`sim/scenarios/whole-cluster-crash.toml 5 1..61`).
//! Prints the summary (failed seeds with their replay command) and exits 1 on a failure.

use foundation_sim::cli::{self, SimArgs, SimError};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let name = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "partition-heal".into());
    let file = name.ends_with(".toml").then(|| name.clone().into());
    let sim_args = SimArgs {
        scenario: Some(name),
        file,
        nodes: args.get(2).and_then(|s| s.parse().ok()),
        seeds: args.get(3).and_then(|s| s.parse().ok()),
        ..SimArgs::default()
    };
    let (report, code) = match cli::run(sim_args) {
        Ok(report) => (report, 0),
        Err(SimError::InvariantFailed(report)) => (*report, 1),
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(e.exit_code());
        }
    };
    let _ = foundation_sim::report::print_summary(&report, &mut std::io::stdout());
    std::process::exit(code);
}
