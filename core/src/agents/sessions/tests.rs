//! The session driver and settle rule on their own, time given by hand.

use foundation_agents::auction::sealed::Pricing;
use foundation_agents::cas::CasOutcome;
use foundation_agents::voting::{Ballot, Method};
use foundation_agents::Money;

use super::*;
use crate::vars::{SessionId, VarsError};

const SESSION: SessionId = SessionId(7);

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("agent-{i}")).collect()
}

fn sealed() -> Mechanism {
    Mechanism::SealedBid {
        item: "slot".into(),
        pricing: Pricing::SecondPrice,
        reserve: Money(10),
    }
}

fn said(answer: Answer) -> Heard {
    Heard::Answer(SessionAnswer {
        session: SESSION,
        answer,
    })
}

#[test]
fn answers_are_taken_or_refused_with_a_reason_and_only_taken_ones_decide() {
    let mut driver = open(SESSION, &sealed(), &names(4), 100).expect("valid");
    let asks = driver.take_asks();
    assert_eq!(asks.len(), 4, "everyone is asked at once");
    assert!(asks
        .iter()
        .all(|a| a.within_ms == 100 && a.wait_ms == 100 + LATE_GRACE_MS));
    assert_eq!(driver.rounds(), 1);
    driver.hear(10, asks[0].id, said(Answer::Bid(Money(50))));
    let replay = SessionAnswer {
        session: SessionId(6),
        answer: Answer::Bid(Money(900)),
    };
    driver.hear(20, asks[1].id, Heard::Answer(replay));
    driver.hear(30, asks[2].id, said(Answer::Accept));
    assert!(driver.decision().is_none(), "one ask is still out");
    driver.hear(150, asks[3].id, said(Answer::Bid(Money(800))));
    let drove = driver.drove().expect("decided once nobody is left to hear");
    assert!(driver.finished());
    let Decision::Auction(auction) = &drove.decision else {
        panic!("an auction decides an auction: {drove:?}");
    };
    let award = auction.award.as_ref().expect("sold");
    assert_eq!(award.winner.0, 0, "the replayed and late bids do not count");
    assert_eq!(
        award.price,
        Money(10),
        "alone above the reserve: pays the reserve"
    );
    assert_eq!(drove.answered, 1);
    assert_eq!(drove.acknowledged.len(), 1);
    let reasons: Vec<&str> = drove.rejected.iter().map(|(_, r)| r.as_str()).collect();
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    assert!(reasons[0].contains("names session"), "{reasons:?}");
    assert!(reasons[1].contains("wrong kind"), "{reasons:?}");
    assert!(reasons[2].contains("after the deadline"), "{reasons:?}");
}

#[test]
fn the_deadline_decides_without_the_silent_and_their_late_answer_is_still_heard() {
    let mut driver = open(SESSION, &sealed(), &names(2), 100).expect("valid");
    let asks = driver.take_asks();
    driver.hear(5, asks[0].id, said(Answer::Bid(Money(40))));
    assert_eq!(driver.poll_timeout(), Some(100));
    driver.handle_timeout(100);
    assert!(driver.decision().is_some(), "decided at the deadline");
    assert!(!driver.finished(), "an ask is still out");
    assert_eq!(driver.poll_timeout(), None);
    driver.hear(120, asks[1].id, Heard::Silent);
    let drove = driver.drove().expect("decided");
    assert!(driver.finished());
    assert_eq!((drove.answered, drove.rejected.len()), (1, 0));
}

#[test]
fn a_vote_everyone_answered_is_decided_at_once() {
    let vote = Mechanism::Vote {
        question: "mode".into(),
        candidates: vec!["a".into(), "b".into()],
        method: Method::Plurality,
        quorum: 0.5,
    };
    let mut driver = open(SESSION, &vote, &names(3), 1_000).expect("valid");
    for (i, ask) in driver.take_asks().into_iter().enumerate() {
        driver.hear(
            1,
            ask.id,
            said(Answer::Ballot(Ballot::Choice(usize::from(i > 0)))),
        );
    }
    assert!(
        driver.finished(),
        "nothing left to wait for: the deadline is now"
    );
    match driver.drove().map(|d| d.decision) {
        Some(Decision::Vote(Ok(vote))) => assert_eq!(vote.label, "b"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_english_auction_asks_round_after_round_until_one_stays() {
    let english = Mechanism::English {
        item: "slot".into(),
        start: Money(10),
        increment: Money(5),
    };
    let mut driver = open(SESSION, &english, &names(2), 100).expect("valid");
    let mut t = 0;
    while !driver.finished() {
        t += 1;
        for ask in driver.take_asks() {
            let Ask::Stay { price, .. } = ask.ask else {
                panic!("an English auction asks to stay: {ask:?}");
            };
            // Agent 0 stays up to 20, agent 1 up to 30.
            let limit = if ask.agent == 0 { 20 } else { 30 };
            let stays = price.0 <= limit;
            let answer = if stays {
                Answer::Accept
            } else {
                Answer::Decline
            };
            driver.hear(t, ask.id, said(answer));
        }
        assert!(t < 100, "the clock moves");
    }
    let drove = driver.drove().expect("decided");
    assert!(drove.rounds >= 3, "rounds: {}", drove.rounds);
    let Decision::Auction(auction) = drove.decision else {
        panic!("an auction");
    };
    assert_eq!(auction.award.map(|a| a.winner.0), Some(1));
}

#[test]
fn a_proposal_lost_to_another_outcome_is_made_again_and_a_decided_session_is_found() {
    let lost = CasOutcome::Lost {
        version: 3,
        winner: (),
    };
    assert_eq!(Landing::of(Proposed::Cas(lost)), None);
    let decided = VarsError::SessionDecided {
        session: SESSION,
        version: 4,
    };
    let landing = Landing::of(Proposed::<()>::Refused(decided)).expect("settled");
    assert_eq!(landing.clone().settled(), Settled::Decided { version: 4 });
    assert!(landing.refunds());
    let uncertain = Landing::of(Proposed::<()>::Cas(CasOutcome::NoMajority)).expect("ends");
    assert!(
        !uncertain.refunds(),
        "it may still be decided: units stay drawn"
    );
    assert!(matches!(
        uncertain.commit_state(None),
        CommitState::NotCommitted(_)
    ));
}

/// A proposal whose fate this node never learned (the register moved past its version
/// unseen) may be the one decided: what the next proposal finds — the session decided, or a
/// later session first — no longer says the outcome certainly did not land, so units drawn
/// for it stay drawn. They were refilled while the ledger took the debit.
#[test]
fn after_a_proposal_whose_fate_went_unlearned_nothing_refills_the_escrow() {
    let unseen = || Proposed::<()>::Cas(CasOutcome::Superseded { current: 9 });
    let decided = Proposed::<()>::Refused(VarsError::SessionDecided {
        session: SESSION,
        version: 8,
    });
    let mut attempts = Attempts::default();
    assert_eq!(attempts.after(unseen()), None, "proposed again");
    let found = attempts.after(decided).expect("settled");
    assert!(!found.refunds(), "the decided outcome may be this one");
    assert_eq!(
        found.clone().commit_state(None),
        CommitState::AlreadyCommitted { version: 8 }
    );
    assert_eq!(found.settled(), Settled::Decided { version: 8 });

    let stale = Proposed::<()>::Refused(VarsError::SessionStale {
        session: SESSION,
        last: 12,
    });
    let mut attempts = Attempts::default();
    assert_eq!(attempts.after(unseen()), None);
    let closed = attempts.after(stale).expect("settled");
    assert!(!closed.refunds(), "it may have landed before session 12");
    assert_eq!(closed.settled(), Settled::Closed { last: 12 });

    let mut attempts = Attempts::default();
    let outrun = (0..COMMIT_ATTEMPTS).find_map(|_| attempts.after(unseen()));
    assert!(matches!(outrun, Some(Landing::Uncertain(_))), "{outrun:?}");
}

#[test]
fn proposals_lost_to_other_outcomes_are_made_again_at_most_commit_attempts_times() {
    let lost = || {
        Proposed::Cas(CasOutcome::Lost {
            version: 3,
            winner: (),
        })
    };
    let mut attempts = Attempts::default();
    let proposals = (1..=COMMIT_ATTEMPTS).find(|_| attempts.after(lost()).is_some());
    assert_eq!(proposals, Some(COMMIT_ATTEMPTS));
    let decided = Proposed::<()>::Refused(VarsError::SessionDecided {
        session: SESSION,
        version: 4,
    });
    let mut attempts = Attempts::default();
    assert_eq!(attempts.after(lost()), None);
    let landing = attempts.after(decided).expect("settled");
    assert!(landing.refunds(), "a loss is certain: another outcome won");
}
