//! Ballot rounds a peer names: a register takes its next round above the highest it saw, so a
//! round no honest register reaches (one attempt at a time, from 1) must not be taken in, or
//! the next write's round overflows: a panic in debug builds, and in release a wrap back to
//! round 0 that loses to every promise and can reuse a ballot of an earlier attempt.

use std::collections::BTreeSet;

use foundation_agents::cas::{Ballot, CasMessage, CasRegister};
use foundation_agents::Time;

fn register() -> CasRegister<u8, i64> {
    CasRegister::new(1, BTreeSet::from([1, 2, 3]), 0)
}

/// The round of the prepare `sends` carry (one per acceptor, all the same).
fn prepared_round(sends: &[(u8, CasMessage<u8, i64>)]) -> Option<u64> {
    sends.iter().find_map(|(_, m)| match m {
        CasMessage::Prepare { ballot, .. } => Some(ballot.round),
        _ => None,
    })
}

#[test]
fn a_prepare_at_the_last_round_is_refused_and_the_next_write_still_prepares() {
    let mut register = register();
    let last = Ballot {
        round: u64::MAX,
        proposer: 2,
    };
    let prepare = CasMessage::Prepare {
        slot: 1,
        ballot: last,
    };
    let (answer, _) = register.handle(Time(0), 2, prepare);
    assert!(answer.is_empty(), "promised round u64::MAX: {answer:?}");
    let sends = register.compare_and_set(Time(0), 0, 5, Time(1_000));
    assert_eq!(sends.ok().as_deref().and_then(prepared_round), Some(1));
}

#[test]
fn a_rejection_naming_the_last_round_does_not_overflow_the_next_ballot() {
    let mut register = register();
    let sends = register
        .compare_and_set(Time(0), 0, 5, Time(1_000))
        .unwrap();
    let ours = Ballot {
        round: prepared_round(&sends).unwrap(),
        proposer: 1,
    };
    let rejected = CasMessage::Rejected {
        slot: 1,
        ballot: ours,
        promised: Ballot {
            round: u64::MAX,
            proposer: 3,
        },
    };
    // Refused, the rejection leaves our attempt as it was: promises for our ballot still
    // carry it to phase 2.
    let _ = register.handle(Time(1), 2, rejected);
    let mut sends = Vec::new();
    for from in [2, 3] {
        let promise = CasMessage::Promise {
            slot: 1,
            ballot: ours,
            accepted: None,
        };
        sends.extend(register.handle(Time(2), from, promise).0);
    }
    let accepts = sends
        .iter()
        .filter(|(_, m)| matches!(m, CasMessage::Accept { ballot, .. } if *ballot == ours));
    assert_eq!(accepts.count(), 3, "{sends:?}");
}
