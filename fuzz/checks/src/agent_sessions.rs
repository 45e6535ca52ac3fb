//! Arbitrary bytes as what a coordination session takes from the network: the session's
//! mechanism (a node that places a session on this one sends it) and the participants'
//! answers (each a reply from an agent, possibly on another node), driven through the
//! session driver as the engine's coordinator does.
//!
//! Input: one byte for the number of participants (1 to 5), a postcard `Mechanism`, then, for
//! each ask in turn, a postcard `SessionAnswer` (an ask whose bytes do not decode eats one byte
//! and is heard as malformed or silent; once the input is spent every ask is silent). The
//! driver's timeouts fire between rounds, for at most `STEPS` rounds.
//!
//! Properties: nothing panics; a mechanism refused says why; a driver that decided keeps its
//! decision, counts no more participants as answered than there are, and its decision encodes.

use foundation_core::agents::sessions::{
    open, Drove, Heard, Mechanism, SessionAnswer, SessionDriver,
};
use foundation_core::vars::SessionId;

/// Rounds driven at most: a clock auction may need more, and that is not a failure.
const STEPS: usize = 64;

/// Each answer is due within this many milliseconds of its ask.
const WITHIN_MS: u64 = 100;

/// Checks the properties above on one input; panics if one fails.
pub fn check(data: &[u8]) {
    run(data);
}

/// What driving the session `data` describes gave, if it decided.
pub fn run(data: &[u8]) -> Option<Drove> {
    let (&first, rest) = data.split_first()?;
    let names: Vec<String> = (0..=first % 5).map(|i| format!("agent-{i}")).collect();
    let (mechanism, answers) = postcard::take_from_bytes::<Mechanism>(rest).ok()?;
    match open(SessionId(7), &mechanism, &names, WITHIN_MS) {
        Ok(driver) => drive(driver, answers, names.len()),
        Err(why) => {
            assert!(!why.is_empty(), "a refused mechanism says why");
            None
        }
    }
}

/// Drives `driver` with answers taken from `answers` in turn (see the module's input).
pub(crate) fn drive(
    mut driver: SessionDriver,
    mut answers: &[u8],
    participants: usize,
) -> Option<Drove> {
    let mut now: u64 = 0;
    for _ in 0..STEPS {
        for ask in driver.take_asks() {
            let (heard, tail) = next_answer(answers);
            answers = tail;
            // An answer time too long for milliseconds wakes the driver at the end of time.
            driver.hear(now.saturating_add(1), ask.id, heard);
        }
        if driver.finished() {
            break;
        }
        let Some(wake) = driver.poll_timeout() else {
            break;
        };
        now = wake.max(now);
        driver.handle_timeout(now);
    }
    let drove = driver.drove()?;
    assert!(drove.answered <= participants, "more answered than asked");
    // Compared as bytes: a real-valued decision may hold NaN, which is not equal to itself.
    let encoded = postcard::to_stdvec(&drove.decision).expect("a decision encodes");
    let kept = driver
        .decision()
        .map(|d| postcard::to_stdvec(d).expect("encodes"));
    assert_eq!(kept, Some(encoded), "the driver changed its decision");
    Some(drove)
}

/// The next ask's answer from `answers`, and what is left of them.
fn next_answer(answers: &[u8]) -> (Heard, &[u8]) {
    match postcard::take_from_bytes::<SessionAnswer>(answers) {
        Ok((answer, tail)) => (Heard::Answer(answer), tail),
        Err(_) => match answers.split_first() {
            Some((byte, tail)) if byte % 2 == 0 => (Heard::Malformed("bytes".into()), tail),
            Some((_, tail)) => (Heard::Silent, tail),
            None => (Heard::Silent, answers),
        },
    }
}

#[cfg(test)]
mod tests {
    use foundation_agents::auction::sealed::Pricing;
    use foundation_agents::Money;
    use foundation_core::agents::sessions::Answer;

    use super::*;

    /// Answers in the input reach the mechanism, so the check exercises more than `open`.
    #[test]
    fn a_sealed_bid_from_the_input_decides_on_its_bids() {
        let mechanism = Mechanism::SealedBid {
            item: "slot".into(),
            pricing: Pricing::FirstPrice,
            reserve: Money(1),
        };
        let mut data = vec![1];
        data.extend(postcard::to_stdvec(&mechanism).unwrap());
        for bid in [Money(5), Money(9)] {
            let answer = SessionAnswer {
                session: SessionId(7),
                answer: Answer::Bid(bid),
            };
            data.extend(postcard::to_stdvec(&answer).unwrap());
        }
        let drove = run(&data).expect("decided");
        assert_eq!(drove.answered, 2);
    }
}
