//! Arbitrary bytes as what the engine's coordination sessions take off the network around the
//! mechanism (`agent_sessions` covers the mechanism and the answers): a [`Session`] another node
//! asks this one to coordinate (its capability, answer time, ledger commit and placement, then
//! its mechanism run as the coordinator runs it, answers taken from the rest of the input, and
//! the decision written as the ledger outcome the commit names), the coordinator's report as
//! the caller reads it back, and the invitations and notices a participant agent receives.
//!
//! Properties: nothing panics; whatever decodes encodes to bytes that decode and encode the
//! same (compared as bytes: prices and offers may be NaN); a mechanism whose prices are real
//! numbers writes no ledger outcome; an outcome is the session's, its price field is the price
//! paid, and it names only participants.

use std::time::Duration;

use foundation_core::agents::sessions::{ledger_outcome, open, Decision};
use foundation_core::vars::Outcome;
use foundation_engine::runtime::agents::sessions::{
    Commit, Session, SessionMessage, SessionReport,
};

use crate::round_trip_bytes;

/// The participants every session runs with, as the coordinator names them (sorted).
const PARTICIPANTS: [&str; 3] = ["agent-0", "agent-1", "agent-2"];

/// Checks the properties above on one input; panics if one fails.
pub fn check(data: &[u8]) {
    round_trip_bytes::<Session>(data);
    round_trip_bytes::<Result<SessionReport, String>>(data);
    round_trip_bytes::<SessionMessage>(data);
    if let Ok((session, answers)) = postcard::take_from_bytes::<Session>(data) {
        coordinate(&session, answers);
    }
}

/// What a coordinator does with `session` that is decided here and not by the network.
fn coordinate(session: &Session, answers: &[u8]) {
    let names: Vec<String> = PARTICIPANTS.map(String::from).to_vec();
    let within = millis(session.answer_within);
    let driver = match open(session.id, &session.mechanism, &names, within) {
        Ok(driver) => driver,
        Err(why) => return assert!(!why.is_empty(), "a refused mechanism says why"),
    };
    let Some(drove) = crate::agent_sessions::drive(driver, answers, names.len()) else {
        return;
    };
    if let Some(commit) = &session.commit {
        let outcome = ledger_outcome(
            session.id,
            &session.mechanism,
            commit,
            &names,
            &drove.decision,
        );
        if let Some((outcome, paid)) = outcome {
            written(
                session,
                commit,
                &names,
                &drove.decision,
                &outcome,
                paid.minor(),
            );
        }
    }
}

fn written(
    session: &Session,
    commit: &Commit,
    names: &[String],
    decision: &Decision,
    outcome: &Outcome,
    paid: u64,
) {
    use foundation_agents::variable::VarValue;
    assert!(
        session.mechanism.commits(),
        "a real-valued price was committed"
    );
    assert_eq!(outcome.session, session.id, "another session's outcome");
    let winner = outcome.writes.get(&commit.winner_field);
    if let (Some(VarValue::Choice(name)), false) = (winner, is_vote(decision)) {
        assert!(names.contains(name), "a winner that did not take part");
    }
    if let (Some(field), false) = (&commit.price_field, is_vote(decision)) {
        let price = outcome.writes.get(field);
        let paid = i64::try_from(paid).ok().map(VarValue::Int);
        assert_eq!(price, paid.as_ref(), "the price is not what was paid");
    }
}

fn is_vote(decision: &Decision) -> bool {
    matches!(decision, Decision::Vote(_))
}

/// The coordinator's milliseconds: a longer time than fits is as good as forever.
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
