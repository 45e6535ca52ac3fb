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
        let _ = coordinate(&session, answers);
    }
}

/// What a coordinator does with `session` that is decided here and not by the network; the
/// ledger outcome it writes, if any.
fn coordinate(session: &Session, answers: &[u8]) -> Option<Outcome> {
    let names: Vec<String> = PARTICIPANTS.map(String::from).to_vec();
    let within = millis(session.answer_within);
    let driver = match open(session.id, &session.mechanism, &names, within) {
        Ok(driver) => driver,
        Err(why) => {
            assert!(!why.is_empty(), "a refused mechanism says why");
            return None;
        }
    };
    let drove = crate::agent_sessions::drive(driver, answers, names.len())?;
    let commit = session.commit.as_ref()?;
    let decision = &drove.decision;
    let writes = ledger_outcome(session.id, &session.mechanism, commit, &names, decision);
    let (outcome, paid) = writes.ok().flatten()?;
    written(session, commit, &names, decision, &outcome, paid.minor());
    Some(outcome)
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

#[cfg(test)]
mod tests {
    use foundation_agents::auction::sealed::Pricing;
    use foundation_agents::variable::VarValue;
    use foundation_agents::Money;
    use foundation_core::agents::sessions::{Answer, Mechanism, SessionAnswer};
    use foundation_core::vars::SessionId;
    use foundation_engine::runtime::agents::sessions::Coordinator;

    use super::*;

    /// A sealed-bid session's answers reach its ledger outcome, so the check exercises the
    /// commit and not only the decoding.
    #[test]
    fn a_placed_sealed_bid_writes_its_winner_and_price() {
        let session = Session {
            id: SessionId(7),
            mechanism: Mechanism::SealedBid {
                item: "slot".into(),
                pricing: Pricing::FirstPrice,
                reserve: Money(1),
            },
            capability: "bidder".into(),
            answer_within: Duration::from_millis(100),
            commit: Some(Commit {
                ledger: "slots".into(),
                winner_field: "winner".into(),
                price_field: Some("price".into()),
                budget_field: None,
                counter: None,
                elected_writes: Default::default(),
                timeout: Duration::from_secs(1),
            }),
            coordinator: Coordinator::Rendezvous,
        };
        let mut data = postcard::to_stdvec(&session).unwrap();
        for answer in [
            Answer::Bid(Money(5)),
            Answer::Bid(Money(9)),
            Answer::Decline,
        ] {
            let answer = SessionAnswer {
                session: SessionId(7),
                answer,
            };
            data.extend(postcard::to_stdvec(&answer).unwrap());
        }
        check(&data);
        let (session, answers) = postcard::take_from_bytes::<Session>(&data).unwrap();
        let outcome = coordinate(&session, answers).expect("an outcome");
        assert_eq!(outcome.writes["price"], VarValue::Int(9));
        assert_eq!(outcome.writes["winner"], VarValue::Choice("agent-1".into()));
    }
}
