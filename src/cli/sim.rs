//! `foundation sim`: run a scenario of the deterministic simulator on the real engine core.

use std::path::PathBuf;

use foundation_sim::cli::{SeedRange, SimArgs, SimError};
use foundation_sim::report::{print_summary, SimReport};

/// Options of `foundation sim`.
#[derive(clap::Args, Debug)]
pub struct SimCommand {
    /// A standard scenario: steady, partition-heal, flaky-network, crash-restart, slow-node,
    /// mass-join, rolling-restart, registry-partition, registry-churn; services: rpc-partition,
    /// pubsub-partition; with replicated writes: split-writes, replicated-chaos,
    /// lagging-replica, compaction, skewed-writes; agents: agents-partition, agents-crash;
    /// caches: cache-churn; a fault schedule drawn from the seed: chaos; several federated
    /// clusters: federation-cut-failover.
    #[arg(long, conflicts_with = "file")]
    pub scenario: Option<String>,
    /// A scenario file (TOML), one cluster or (with `[[cluster]]` tables) a federation; see
    /// sim/scenarios/ for examples.
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// Cluster size (overrides the scenario's).
    #[arg(long)]
    pub nodes: Option<usize>,
    /// The seed of one run.
    #[arg(long, conflicts_with = "seeds")]
    pub seed: Option<u64>,
    /// A range of seeds, START..END, run on every core.
    #[arg(long)]
    pub seeds: Option<SeedRange>,
    /// Print JSON instead of the readable summary.
    #[arg(long)]
    pub json: bool,
    /// Include the trace of the run (of each failed run, for a range); not for a federation.
    #[arg(long)]
    pub trace: bool,
    /// Also write a self-contained HTML page with pictures (each node's view over time with
    /// partition sides, detection and convergence distributions, bytes per node over time).
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
}

/// Runs the simulation and returns the process exit code: 0 passed, 1 an invariant failed,
/// 2 bad input.
pub fn run(command: SimCommand) -> i32 {
    let json = command.json;
    let html = command.html.clone();
    let args = SimArgs {
        scenario: command.scenario,
        file: command.file,
        nodes: command.nodes,
        seed: command.seed,
        seeds: command.seeds,
        json,
        trace: command.trace,
        threads: None,
        html: command.html,
    };
    let outcome = foundation_sim::cli::run(args);
    if let (Some(path), Ok(_) | Err(SimError::InvariantFailed(_))) = (&html, &outcome) {
        // On stderr: with --json, stdout holds the report alone.
        eprintln!("pictures written to {}", path.display());
    }
    match outcome {
        Ok(report) => printed(&report, json, 0),
        Err(SimError::InvariantFailed(report)) => printed(&report, json, 1),
        Err(error) => {
            eprintln!("foundation sim: {error}");
            error.exit_code()
        }
    }
}

/// Prints the report and returns `verdict`, the exit code of the run. A reader that stopped
/// reading does not change the verdict; output that could not be written otherwise is an error.
fn printed(report: &SimReport, json: bool, verdict: i32) -> i32 {
    match print(report, json) {
        Ok(()) => verdict,
        Err(error) if super::stdout_closed(&error) => verdict,
        Err(error) => {
            eprintln!("foundation sim: cannot write to stdout: {error}");
            2
        }
    }
}

fn print(report: &SimReport, json: bool) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        use std::io::Write;
        writeln!(out, "{}", report.to_json())
    } else {
        print_summary(report, &mut out)
    }
}

#[cfg(test)]
mod tests {
    use super::SimCommand;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Sim {
        #[command(flatten)]
        command: SimCommand,
    }

    /// Of two flags that each choose the same thing, one was silently dropped.
    #[test]
    fn flags_that_choose_the_same_thing_conflict() {
        for pair in [
            ["--seed", "3", "--seeds", "1..9"],
            ["--scenario", "steady", "--file", "x.toml"],
        ] {
            let error = Sim::try_parse_from(std::iter::once("sim").chain(pair)).unwrap_err();
            assert_eq!(
                error.kind(),
                clap::error::ErrorKind::ArgumentConflict,
                "{pair:?}"
            );
        }
        assert!(Sim::try_parse_from(["sim", "--seed", "3", "--scenario", "steady"]).is_ok());
    }
}
