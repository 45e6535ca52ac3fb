//! The library side of `foundation sim`: arguments in, a report (or an error with an exit code)
//! out. The binary parses flags into [`SimArgs`], calls [`run`], prints with
//! [`crate::report::print_summary`] or [`crate::report::SimReport::to_json`], and exits with
//! [`SimError::exit_code`].

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::federation::{self, FederationScenario};
use crate::report::{RunReport, SimReport};
use crate::scenario::file::{self, ScenarioError, ScenarioFile};
use crate::scenario::{standard, RunOptions, Scenario};
use crate::sweep::{sweep, sweep_with};

/// `foundation sim` arguments.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SimArgs {
    /// A standard scenario (`steady`, `partition-heal`, …). Default `steady` when no file.
    pub scenario: Option<String>,
    /// A scenario file (TOML); takes precedence over `scenario`.
    pub file: Option<PathBuf>,
    /// Cluster size; overrides the scenario's. Default 16 for standard scenarios.
    pub nodes: Option<usize>,
    /// One seed. Default 1.
    pub seed: Option<u64>,
    /// A seed range (`1..1000`), run on every core; overrides `seed`.
    pub seeds: Option<SeedRange>,
    /// Print JSON instead of the readable summary (the caller decides; kept here for it).
    pub json: bool,
    /// Keep the trace of the run (or of each failed run of a sweep) in the report.
    pub trace: bool,
    /// Threads for a sweep; 0 or none = every core.
    pub threads: Option<usize>,
    /// Also write a self-contained HTML page with pictures of the run(s) here
    /// ([`crate::html`]).
    pub html: Option<PathBuf>,
}

/// The most nodes a simulated cluster may have. Every node holds every member, so memory grows
/// with the square of the size: 1,000 nodes take about 250 MB (README, *Simulator speed*; 5,000
/// is the largest size measured), 10,000 would take about 25 GB. A larger number is a typo,
/// and would only exhaust memory before the first simulated second.
pub const MAX_NODES: usize = 10_000;

/// A half-open range of seeds, written `start..end`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeedRange(pub Range<u64>);

impl FromStr for SeedRange {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (a, b) = s
            .split_once("..")
            .ok_or_else(|| format!("seeds {s:?}: expected START..END, e.g. 1..1000"))?;
        let parse = |x: &str| {
            x.trim()
                .parse::<u64>()
                .map_err(|_| format!("seeds {s:?}: {x:?} is not a number"))
        };
        let (start, end) = (parse(a)?, parse(b)?);
        if start >= end {
            return Err(format!("seeds {s:?}: the range is empty"));
        }
        Ok(SeedRange(start..end))
    }
}

impl fmt::Display for SeedRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}..{}", self.0.start, self.0.end)
    }
}

/// Why `foundation sim` did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// No standard scenario has this name.
    #[error(
        "unknown scenario {name:?}; the standard ones are: {}, {}",
        standard::NAMES.join(", "),
        federation::standard::NAMES.join(", ")
    )]
    UnknownScenario {
        /// The name given.
        name: String,
    },
    /// The scenario file could not be read.
    #[error("cannot read {path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The scenario file is not valid.
    #[error("{path}: {error}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Where and what.
        error: ScenarioError,
    },
    /// The arguments do not make a valid run.
    #[error("{0}")]
    Args(String),
    /// The HTML report could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// At least one invariant failed; the report says which, with seeds and replay commands.
    #[error("invariants failed for seed(s) {:?}", .0.failed_seeds)]
    InvariantFailed(Box<SimReport>),
}

impl SimError {
    /// The process exit code: 1 when an invariant failed, 2 for bad input.
    pub fn exit_code(&self) -> i32 {
        match self {
            SimError::InvariantFailed(_) => 1,
            _ => 2,
        }
    }
}

/// Runs what `args` ask for.
pub fn run(args: SimArgs) -> Result<SimReport, SimError> {
    let scenario = match load(&args)? {
        ScenarioFile::Cluster(scenario) => *scenario,
        ScenarioFile::Federation(federation) => return run_federation(&args, &federation),
    };
    let seeds = seeds(&args)?;
    let runs = if seeds.end - seeds.start == 1 {
        let options = RunOptions {
            keep_trace: args.trace,
            record_views: args.html.is_some(),
        };
        vec![crate::scenario::run(&scenario, seeds.start, &options)]
    } else {
        sweep(&scenario, seeds, args.threads.unwrap_or(0), args.trace)
    };
    if let Some(path) = &args.html {
        write_html(&scenario, &runs, path)?;
    }
    verdict(runs)
}

/// The seeds `args` ask for: `--seeds`, else `--seed`, else 1. Never empty: a sweep of no seed
/// would pass without having run anything.
fn seeds(args: &SimArgs) -> Result<Range<u64>, SimError> {
    let range = match (&args.seeds, args.seed) {
        (Some(range), _) => range.0.clone(),
        (None, seed) => {
            let seed = seed.unwrap_or(1);
            let end = seed.checked_add(1).ok_or_else(|| {
                SimError::Args(format!(
                    "--seed {seed}: the largest seed is {}",
                    u64::MAX - 1
                ))
            })?;
            seed..end
        }
    };
    if range.is_empty() {
        return Err(SimError::Args(format!(
            "seeds {}..{}: the range is empty",
            range.start, range.end
        )));
    }
    Ok(range)
}

/// Passed only when runs were made and every one passed.
fn verdict(runs: Vec<RunReport>) -> Result<SimReport, SimError> {
    if runs.is_empty() {
        return Err(SimError::Args("no seed was run".into()));
    }
    let report = SimReport::of(runs);
    if report.passed() {
        Ok(report)
    } else {
        Err(SimError::InvariantFailed(Box::new(report)))
    }
}

/// Runs a federation scenario on the seeds `args` ask for ([`crate::federation::report`]).
fn run_federation(args: &SimArgs, scenario: &FederationScenario) -> Result<SimReport, SimError> {
    let given = [
        ("--nodes", args.nodes.is_some()),
        ("--html", args.html.is_some()),
        ("--trace", args.trace),
    ];
    let given: Vec<&str> = given
        .iter()
        .filter(|(_, on)| *on)
        .map(|(flag, _)| *flag)
        .collect();
    if !given.is_empty() {
        return Err(SimError::Args(format!(
            "{} not for federation scenario {}: each [[cluster]] has its own size, and a \
             federation run records neither a trace nor views to picture",
            given.join(", "),
            scenario.name
        )));
    }
    let run_one = |seed| crate::federation::report::run_report(scenario, seed);
    verdict(sweep_with(seeds(args)?, args.threads.unwrap_or(0), run_one))
}

/// Writes the pictures of `runs` to `path`. The pictured run is the single run, or for a sweep
/// the first failed seed (else the first), run once more recording views: the same seed gives
/// the same run.
fn write_html(scenario: &Scenario, runs: &[RunReport], path: &Path) -> Result<(), SimError> {
    let chosen = runs.iter().find(|r| !r.passed).or(runs.first());
    let rerun = chosen.filter(|r| r.views.is_none()).map(|r| {
        let options = RunOptions {
            keep_trace: false,
            record_views: true,
        };
        crate::scenario::run(scenario, r.seed, &options)
    });
    let pictured = rerun.as_ref().or(chosen);
    std::fs::write(path, crate::html::page(runs, pictured)).map_err(|source| SimError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// The scenario `args` name, sized by `--nodes`: one cluster, or a federation of several.
pub fn load(args: &SimArgs) -> Result<ScenarioFile, SimError> {
    if let Some(nodes) = args.nodes {
        within_bound(nodes, "--nodes")?;
    }
    let loaded = match &args.file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| SimError::File {
                path: path.clone(),
                source,
            })?;
            let parsed = file::parse_any(&text, &path.display().to_string());
            parsed.map_err(|error| SimError::Parse {
                path: path.clone(),
                error,
            })?
        }
        None => {
            let name = args.scenario.as_deref().unwrap_or("steady");
            let nodes = args.nodes.unwrap_or(16);
            let federation =
                federation::standard::by_name(name).map(|f| ScenarioFile::Federation(Box::new(f)));
            standard::by_name(name, nodes)
                .map(|s| ScenarioFile::Cluster(Box::new(s)))
                .or(federation)
                .ok_or_else(|| SimError::UnknownScenario { name: name.into() })?
        }
    };
    match loaded {
        ScenarioFile::Cluster(scenario) => {
            sized(*scenario, args).map(|s| ScenarioFile::Cluster(Box::new(s)))
        }
        ScenarioFile::Federation(federation) => {
            let sizes = federation.clusters.iter().map(|c| c.scenario.nodes);
            let nodes = sizes.fold(0, usize::saturating_add);
            within_bound(nodes, &federation.name)?;
            Ok(ScenarioFile::Federation(federation))
        }
    }
}

/// The one-cluster scenario `args` name, sized by `--nodes`.
pub fn scenario(args: &SimArgs) -> Result<Scenario, SimError> {
    match load(args)? {
        ScenarioFile::Cluster(scenario) => Ok(*scenario),
        ScenarioFile::Federation(f) => Err(SimError::Args(format!(
            "{} is a federation scenario, not one cluster",
            f.name
        ))),
    }
}

fn sized(mut scenario: Scenario, args: &SimArgs) -> Result<Scenario, SimError> {
    if let Some(nodes) = args.nodes {
        scenario.nodes = nodes;
    }
    within_bound(scenario.nodes, &scenario.name)?;
    scenario.validate().map_err(SimError::Args)?;
    Ok(scenario)
}

/// Refuses a cluster larger than [`MAX_NODES`]; `what` names where the size came from.
fn within_bound(nodes: usize, what: &str) -> Result<(), SimError> {
    if nodes > MAX_NODES {
        return Err(SimError::Args(format!(
            "{what}: {nodes} nodes; the simulator runs at most {MAX_NODES} (every node holds \
             every member: 1,000 nodes take about 250 MB, and memory grows with the square)"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(scenario: &str) -> SimArgs {
        SimArgs {
            scenario: Some(scenario.into()),
            nodes: Some(3),
            ..SimArgs::default()
        }
    }

    fn refusal(args: SimArgs) -> String {
        match run(args) {
            Err(SimError::Args(message)) => message,
            other => panic!("expected an argument error, got {other:?}"),
        }
    }

    #[test]
    fn the_last_seed_is_refused_rather_than_run_as_no_seed() {
        let message = refusal(SimArgs {
            seed: Some(u64::MAX),
            ..args("steady")
        });
        assert!(message.contains("--seed 18446744073709551615"), "{message}");
        let federation = SimArgs {
            seed: Some(u64::MAX),
            ..SimArgs::default()
        };
        let message = refusal(SimArgs {
            scenario: Some("federation-cut-failover".into()),
            ..federation
        });
        assert!(message.contains("largest seed"), "{message}");
    }

    #[test]
    fn an_empty_range_of_seeds_never_passes() {
        let message = refusal(SimArgs {
            seeds: Some(SeedRange(5..5)),
            ..args("steady")
        });
        assert!(message.contains("empty"), "{message}");
    }

    #[test]
    fn a_cluster_too_large_to_hold_is_refused_before_it_is_built() {
        // rolling-restart computes its schedule from the size: usize::MAX overflowed there.
        for (scenario, nodes) in [("rolling-restart", usize::MAX), ("steady", 100_000_000)] {
            let message = refusal(SimArgs {
                nodes: Some(nodes),
                ..args(scenario)
            });
            assert!(
                message.contains(&format!("at most {MAX_NODES}")),
                "{message}"
            );
        }
    }

    #[test]
    fn a_federation_refuses_the_flags_it_cannot_honour() {
        let federation = SimArgs {
            scenario: Some("federation-cut-failover".into()),
            trace: true,
            ..SimArgs::default()
        };
        let message = refusal(federation);
        assert!(
            message.starts_with("--trace not for federation"),
            "{message}"
        );
    }
}
