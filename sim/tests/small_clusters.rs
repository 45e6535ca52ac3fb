//! Every standard scenario at the smallest sizes `foundation sim --nodes` accepts: one and two
//! nodes leave no peer to fail over to, no majority beyond everyone, no one to partition from.
//! A run may pass, fail an invariant, or be refused with a clear argument error; it must never
//! panic (the runner reports a panic as the failed `no-panics` check, with its message).

use foundation_sim::cli::{self, SimArgs, SimError};
use foundation_sim::federation;
use foundation_sim::scenario::standard;

/// What a run of `name` on `nodes` nodes did, or the panic it ended in.
fn outcome(name: &str, nodes: usize) -> Result<(), String> {
    let args = SimArgs {
        scenario: Some(name.into()),
        nodes: Some(nodes),
        seed: Some(1),
        ..SimArgs::default()
    };
    let run = std::panic::catch_unwind(move || cli::run(args));
    let panics: Vec<String> = match run {
        Err(_) => vec!["panicked outside the run".into()],
        Ok(Err(SimError::InvariantFailed(report))) => {
            report.details.into_iter().filter_map(|r| r.panic).collect()
        }
        Ok(Ok(_) | Err(SimError::Args(_))) => Vec::new(),
        Ok(Err(other)) => vec![format!("an unexpected error: {other}")],
    };
    match panics.is_empty() {
        true => Ok(()),
        false => Err(format!("{name} at {nodes}: {}", panics.join("; "))),
    }
}

#[test]
fn no_standard_scenario_panics_on_one_or_two_nodes() {
    let names = standard::NAMES.iter().chain(&federation::standard::NAMES);
    let mut panicked = Vec::new();
    for name in names {
        for nodes in [1, 2] {
            panicked.extend(outcome(name, nodes).err());
        }
    }
    assert!(panicked.is_empty(), "{panicked:#?}");
}
