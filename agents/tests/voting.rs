//! Properties of the voting methods, weights, quorum and deadlines.

use std::collections::BTreeMap;

use foundation_agents::voting::tally::{self, Ballot};
use foundation_agents::voting::{Election, ElectionConfig, Method, VoteError, VoteMessage};
use foundation_agents::{AgentId, Rejection, Time};
use proptest::prelude::*;

fn election(method: Method, voters: &[(u64, f64)], quorum: f64) -> Election {
    let config = ElectionConfig {
        question: "temperature".into(),
        candidates: vec!["0.2".into(), "0.7".into(), "1.0".into()],
        voters: voters.iter().map(|&(id, w)| (AgentId(id), w)).collect(),
        method,
        quorum,
        deadline: Time(100),
    };
    Election::new(config, Time(0)).expect("valid config")
}

#[test]
fn weighted_plurality_follows_weight_not_headcount() {
    let mut e = election(Method::Plurality, &[(1, 1.0), (2, 1.0), (3, 3.0)], 0.5);
    e.cast(Time(1), AgentId(1), Ballot::Choice(0))
        .expect("valid");
    e.cast(Time(2), AgentId(2), Ballot::Choice(0))
        .expect("valid");
    e.cast(Time(3), AgentId(3), Ballot::Choice(2))
        .expect("valid");
    let outcome = e.close(Time(100)).expect("quorum");
    assert_eq!(
        (outcome.winner, outcome.scores.clone()),
        (2, vec![2.0, 0.0, 3.0])
    );
    assert_eq!(outcome.label, "1.0");
}

#[test]
fn borda_can_elect_a_broadly_liked_compromise_that_plurality_misses() {
    let ballots = [
        vec![0, 1, 2],
        vec![0, 1, 2],
        vec![2, 1, 0],
        vec![2, 1, 0],
        vec![1, 0, 2],
    ];
    let weighted: Vec<(f64, Ballot)> = ballots
        .iter()
        .map(|r| (1.0, Ballot::Ranking(r.clone())))
        .collect();
    let refs: Vec<(f64, &Ballot)> = weighted.iter().map(|(w, b)| (*w, b)).collect();
    assert_eq!(
        tally::argmax(&tally::plurality(3, &refs)),
        Some(0),
        "0 and 2 tie, lowest index wins"
    );
    assert_eq!(tally::argmax(&tally::borda(3, &refs)), Some(1));
}

#[test]
fn approval_counts_every_approved_candidate() {
    let mut e = election(Method::Approval, &[(1, 1.0), (2, 1.0)], 1.0);
    e.cast(Time(1), AgentId(1), Ballot::Approval(vec![0, 1]))
        .expect("valid");
    e.cast(Time(1), AgentId(2), Ballot::Approval(vec![1, 2]))
        .expect("valid");
    assert_eq!(e.close(Time(100)).expect("quorum").winner, 1);
}

#[test]
fn without_quorum_the_election_fails_clearly() {
    let mut e = election(Method::Plurality, &[(1, 1.0), (2, 1.0), (3, 1.0)], 0.5);
    e.cast(Time(1), AgentId(1), Ballot::Choice(1))
        .expect("valid");
    let err = e.close(Time(100)).expect_err("one of three is below half");
    assert!(
        matches!(err, VoteError::NoQuorum { voted_weight, required_weight, .. } if voted_weight == 1.0 && required_weight == 1.5)
    );
}

#[test]
fn with_quorum_the_election_decides_with_those_who_answered() {
    let mut e = election(Method::Schulze, &[(1, 1.0), (2, 1.0), (3, 1.0)], 0.5);
    e.cast(Time(1), AgentId(1), Ballot::Ranking(vec![2, 0, 1]))
        .expect("valid");
    e.cast(Time(2), AgentId(2), Ballot::Ranking(vec![2, 1]))
        .expect("valid");
    let outcome = e.close(Time(100)).expect("two of three is a quorum");
    assert_eq!((outcome.winner, outcome.absent), (2, vec![AgentId(3)]));
}

#[test]
fn bad_ballots_are_rejected_and_change_nothing() {
    let mut e = election(Method::Borda, &[(1, 1.0), (2, 1.0)], 0.0);
    let reject = |r: Result<(), Rejection>| assert!(r.is_err());
    reject(e.cast(Time(1), AgentId(1), Ballot::Ranking(vec![0, 0])));
    reject(e.cast(Time(1), AgentId(1), Ballot::Ranking(vec![5])));
    reject(e.cast(Time(1), AgentId(1), Ballot::Ranking(vec![])));
    reject(e.cast(Time(1), AgentId(1), Ballot::Approval(vec![1])));
    reject(e.cast(Time(1), AgentId(9), Ballot::Ranking(vec![1])));
    reject(e.cast(Time(100), AgentId(2), Ballot::Ranking(vec![2])));
    e.cast(Time(2), AgentId(1), Ballot::Ranking(vec![1, 2, 0]))
        .expect("valid");
    reject(e.cast(Time(3), AgentId(1), Ballot::Ranking(vec![0, 1, 2])));
    let outcome = e.close(Time(100)).expect("quorum 0");
    assert_eq!((outcome.winner, outcome.scores), (1, vec![0.0, 2.0, 1.0]));
    assert!(e
        .cast(Time(101), AgentId(2), Ballot::Ranking(vec![0]))
        .is_err());
}

#[test]
fn schulze_resolves_a_condorcet_cycle_deterministically() {
    // A majority cycle: 0 beats 1 (9–3), 1 beats 2 (8–4), 2 beats 0 (7–5); the strongest paths favour 0.
    let profile = [
        (5.0, vec![0, 1, 2]),
        (3.0, vec![1, 2, 0]),
        (4.0, vec![2, 0, 1]),
    ];
    let ballots: Vec<(f64, Ballot)> = profile
        .iter()
        .map(|(w, r)| (*w, Ballot::Ranking(r.clone())))
        .collect();
    let refs: Vec<(f64, &Ballot)> = ballots.iter().map(|(w, b)| (*w, b)).collect();
    assert_eq!(tally::condorcet_winner(3, &refs), None);
    let scores = tally::schulze(3, &refs);
    assert_eq!(tally::argmax(&scores), Some(0));
}

fn profile() -> impl Strategy<Value = Vec<(f64, Vec<usize>)>> {
    let ranking = Just((0..4usize).collect::<Vec<_>>()).prop_shuffle();
    prop::collection::vec(
        (1u32..4, ranking).prop_map(|(w, r)| (f64::from(w), r)),
        1..12,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn schulze_elects_the_condorcet_winner_whenever_one_exists(profile in profile()) {
        let ballots: Vec<(f64, Ballot)> = profile.into_iter().map(|(w, r)| (w, Ballot::Ranking(r))).collect();
        let refs: Vec<(f64, &Ballot)> = ballots.iter().map(|(w, b)| (*w, b)).collect();
        if let Some(c) = tally::condorcet_winner(4, &refs) {
            prop_assert_eq!(tally::argmax(&tally::schulze(4, &refs)), Some(c));
        }
    }

    #[test]
    fn the_result_does_not_depend_on_the_order_ballots_arrive(profile in profile(), seed in any::<u64>()) {
        let voters: BTreeMap<AgentId, f64> = profile.iter().enumerate().map(|(i, (w, _))| (AgentId(i as u64), *w)).collect();
        let run = |order: &[usize]| {
            let config = ElectionConfig {
                question: "q".into(),
                candidates: (0..4).map(|c| c.to_string()).collect(),
                voters: voters.clone(),
                method: Method::Schulze,
                quorum: 0.0,
                deadline: Time(1_000),
            };
            let mut e = Election::new(config, Time(0)).expect("valid");
            for &i in order {
                let ballot = Ballot::Ranking(profile[i].1.clone());
                e.handle(Time(i as u64), AgentId(i as u64), VoteMessage::Cast { ballot }).expect("valid");
                assert_eq!(e.invariants(), Ok(()));
            }
            let outcome = e.handle_timeout(Time(1_000)).expect("deadline").expect("quorum 0");
            assert_eq!(e.invariants(), Ok(()));
            outcome
        };
        let forward: Vec<usize> = (0..profile.len()).collect();
        let mut shuffled = forward.clone();
        shuffled.rotate_left((seed as usize) % profile.len());
        prop_assert_eq!(run(&forward), run(&shuffled));
    }
}

#[test]
fn weights_that_add_up_beyond_f64s_range_are_refused_at_configuration() {
    // Each weight is finite, but three of them for one candidate and two for another both
    // add up to infinity: counted, the two would tie and the lower index would win. Borda
    // multiplies weights by points, so it is refused with the weights plurality could count.
    let config = |method, voters: &[f64]| ElectionConfig {
        question: "temperature".into(),
        candidates: vec!["0.2".into(), "0.7".into(), "1.0".into()],
        voters: (0..).map(AgentId).zip(voters.iter().copied()).collect(),
        method,
        quorum: 0.0,
        deadline: Time(100),
    };
    let huge = [f64::MAX; 5];
    let refused = Election::new(config(Method::Plurality, &huge), Time(0));
    assert!(
        matches!(
            refused,
            Err(foundation_agents::error::ConfigError::Parameter { name: "weight", .. })
        ),
        "{refused:?}"
    );
    let borda = [f64::MAX / 3.0, f64::MAX / 3.0];
    assert!(Election::new(config(Method::Plurality, &borda), Time(0)).is_ok());
    assert!(Election::new(config(Method::Borda, &borda), Time(0)).is_err());
}
