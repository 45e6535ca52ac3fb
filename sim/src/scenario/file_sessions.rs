//! The `[[ledger]]` and `[[session]]` tables of a scenario file; their reference is in
//! [`super::sessions`].

use std::time::Duration;

use foundation_agents::auction::sealed::Pricing;
use foundation_agents::voting::Method;
use foundation_agents::Money;
use foundation_core::agents::sessions::Mechanism;
use serde::Deserialize;

use super::file::{duration, selection, RawNodes, RawShare};
use super::sessions::{LedgerDecl, LedgerKind, SessionDecl};

/// The mechanisms whose answers the simulated agents give (`crate::sessions::answer_of`).
const MECHANISMS: [&str; 3] = ["sealed_bid", "vote", "tatonnement"];
const ANSWER_WITHIN: Duration = Duration::from_millis(200);
const COMMIT_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLedger {
    name: String,
    kind: String,
    time: String,
    on: Option<usize>,
    budget: Option<i64>,
    candidates: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSession {
    time: String,
    id: u64,
    count: Option<u64>,
    every: Option<String>,
    caller: RawNodes,
    mechanism: String,
    capability: String,
    answer_within: Option<String>,
    commit: Option<String>,
    commit_timeout: Option<String>,
    placed: Option<RawShare>,
    item: Option<String>,
    pricing: Option<String>,
    reserve: Option<u64>,
    question: Option<String>,
    candidates: Option<Vec<String>>,
    method: Option<String>,
    quorum: Option<f64>,
    market: Option<String>,
    supply: Option<Vec<f64>>,
    step: Option<f64>,
    tolerance: Option<f64>,
    rounds_max: Option<usize>,
}

/// A `[[ledger]]` table.
pub(crate) fn ledger(raw: &RawLedger, line: usize) -> Result<LedgerDecl, String> {
    let kind = match raw.kind.as_str() {
        "auction" if raw.candidates.is_some() => {
            return Err("candidates belong to a vote ledger".into())
        }
        "auction" => LedgerKind::Auction {
            budget: raw
                .budget
                .ok_or("an auction ledger needs `budget = <minor units>`")?,
        },
        "vote" if raw.budget.is_some() => return Err("budget belongs to an auction ledger".into()),
        "vote" => LedgerKind::Vote {
            candidates: raw
                .candidates
                .clone()
                .ok_or("a vote ledger needs `candidates = [\"<label>\", …]`")?,
        },
        other => {
            return Err(format!(
                "ledger kind {other:?} is not \"auction\" or \"vote\""
            ))
        }
    };
    Ok(LedgerDecl {
        name: raw.name.clone(),
        kind,
        at: duration(&raw.time)?,
        on: raw.on.unwrap_or(0),
        line: Some(line),
    })
}

/// A `[[session]]` table.
pub(crate) fn session(raw: &RawSession, line: usize) -> Result<SessionDecl, String> {
    let or = |text: &Option<String>, default| text.as_deref().map_or(Ok(default), duration);
    let placed = match raw.placed {
        None => 0.0,
        Some(RawShare::Flag(flag)) => f64::from(u8::from(flag)),
        Some(RawShare::Share(share)) => share,
    };
    Ok(SessionDecl {
        at: duration(&raw.time)?,
        id: raw.id,
        count: raw.count.unwrap_or(1),
        every: or(&raw.every, Duration::ZERO)?,
        caller: selection(&raw.caller)?,
        mechanism: mechanism(raw)?,
        capability: raw.capability.clone(),
        answer_within: or(&raw.answer_within, ANSWER_WITHIN)?,
        commit: raw.commit.clone(),
        commit_timeout: or(&raw.commit_timeout, COMMIT_TIMEOUT)?,
        placed,
        line: Some(line),
    })
}

/// The mechanism and its parameters; a parameter of another mechanism is refused.
fn mechanism(raw: &RawSession) -> Result<Mechanism, String> {
    if !MECHANISMS.contains(&raw.mechanism.as_str()) {
        return Err(format!(
            "mechanism {:?} is not one scenario files run ({})",
            raw.mechanism,
            MECHANISMS.join(", ")
        ));
    }
    let given = [
        ("item", raw.item.is_some(), "sealed_bid"),
        ("pricing", raw.pricing.is_some(), "sealed_bid"),
        ("reserve", raw.reserve.is_some(), "sealed_bid"),
        ("question", raw.question.is_some(), "vote"),
        ("candidates", raw.candidates.is_some(), "vote"),
        ("method", raw.method.is_some(), "vote"),
        ("quorum", raw.quorum.is_some(), "vote"),
        ("market", raw.market.is_some(), "tatonnement"),
        ("supply", raw.supply.is_some(), "tatonnement"),
        ("step", raw.step.is_some(), "tatonnement"),
        ("tolerance", raw.tolerance.is_some(), "tatonnement"),
        ("rounds_max", raw.rounds_max.is_some(), "tatonnement"),
    ];
    let stray = given
        .iter()
        .find(|(_, set, owner)| *set && *owner != raw.mechanism);
    if let Some((field, _, owner)) = stray {
        return Err(format!(
            "{field} belongs to a {owner} session, not {:?}",
            raw.mechanism
        ));
    }
    match raw.mechanism.as_str() {
        "vote" => vote(raw),
        "tatonnement" => Ok(Mechanism::Tatonnement {
            market: raw.market.clone().unwrap_or_else(|| "market".into()),
            supply: raw
                .supply
                .clone()
                .ok_or("a tatonnement needs `supply = [<units of each good>, …]`")?,
            step: raw.step.unwrap_or(0.5),
            tolerance: raw.tolerance.unwrap_or(1e-2),
            rounds_max: raw.rounds_max.unwrap_or(40),
        }),
        _ => sealed_bid(raw), // The one of MECHANISMS left.
    }
}

fn sealed_bid(raw: &RawSession) -> Result<Mechanism, String> {
    let pricing = match raw.pricing.as_deref() {
        None | Some("second") => Pricing::SecondPrice,
        Some("first") => Pricing::FirstPrice,
        Some(other) => return Err(format!("pricing {other:?} is not \"first\" or \"second\"")),
    };
    Ok(Mechanism::SealedBid {
        item: raw.item.clone().unwrap_or_else(|| "item".into()),
        pricing,
        reserve: Money(raw.reserve.unwrap_or(0)),
    })
}

fn vote(raw: &RawSession) -> Result<Mechanism, String> {
    // The simulated agents cast a choice or an approval ballot (`crate::sessions::answer_of`).
    let method = match raw.method.as_deref() {
        None | Some("plurality") => Method::Plurality,
        Some("approval") => Method::Approval,
        Some(other) => {
            return Err(format!(
                "method {other:?}: simulated voters cast \"plurality\" or \"approval\" ballots"
            ))
        }
    };
    Ok(Mechanism::Vote {
        question: raw.question.clone().unwrap_or_else(|| "vote".into()),
        candidates: raw
            .candidates
            .clone()
            .ok_or("a vote needs `candidates = [\"<label>\", …]`")?,
        method,
        quorum: raw.quorum.unwrap_or(0.0),
    })
}

#[cfg(test)]
mod tests {
    use super::super::file::parse;
    use super::super::sessions::{LedgerKind, SessionWorkload};
    use super::*;
    use crate::faults::Nodes;

    const SESSIONS: &str = r#"
nodes = 4
duration = "20s"

[[at]]
time = "0s"
agents = "all"
agent = "bidder"

[[at]]
time = "0s"
agents = "all"
agent = "voter"

[[ledger]]
name = "gpu"
kind = "auction"
budget = 100
time = "2s"

[[ledger]]
name = "mode"
kind = "vote"
candidates = ["a", "b"]
time = "2s"

[[session]]
time = "3s"
id = 1
count = 3
every = "1s"
caller = "all"
mechanism = "sealed_bid"
capability = "bidder"
pricing = "first"
commit = "gpu"

[[session]]
time = "3s"
id = 10
caller = 2
mechanism = "vote"
capability = "voter"
candidates = ["a", "b"]
commit = "mode"
placed = true
"#;

    /// The line of the `nth` (0-based) `header` in `text`.
    fn header_line(text: &str, header: &str, nth: usize) -> usize {
        let (offset, _) = text.match_indices(header).nth(nth).expect("the header");
        text[..offset].matches('\n').count() + 1
    }

    fn workload(text: &str) -> SessionWorkload {
        parse(text, "s.toml")
            .expect("parses")
            .sessions
            .expect("sessions")
    }

    #[test]
    fn ledgers_and_sessions_parse() {
        let w = workload(SESSIONS);
        assert_eq!(w.ledgers.len(), 2);
        assert_eq!(w.ledgers[0].kind, LedgerKind::Auction { budget: 100 });
        assert_eq!(w.ledgers[1].at, Duration::from_secs(2));
        let (auction, vote) = (&w.sessions[0], &w.sessions[1]);
        assert_eq!(
            (auction.id, auction.count, auction.every),
            (1, 3, Duration::from_secs(1))
        );
        assert_eq!(auction.caller, Nodes::All);
        assert!(matches!(
            auction.mechanism,
            Mechanism::SealedBid {
                pricing: Pricing::FirstPrice,
                ..
            }
        ));
        assert_eq!(
            (auction.placed, auction.answer_within),
            (0.0, ANSWER_WITHIN)
        );
        assert_eq!((vote.caller.clone(), vote.placed), (Nodes::One(2), 1.0));
        assert_eq!(vote.commit.as_deref(), Some("mode"));
        assert_eq!(vote.line, Some(header_line(SESSIONS, "[[session]]", 1)));
        let none = SESSIONS.split("[[ledger]]").next().expect("the head");
        assert!(parse(none, "s.toml").expect("parses").sessions.is_none());
    }

    #[test]
    fn bad_sessions_and_ledgers_are_refused_on_their_line() {
        let first = header_line(SESSIONS, "[[session]]", 0);
        let second = header_line(SESSIONS, "[[session]]", 1);
        let gpu = header_line(SESSIONS, "[[ledger]]", 0);
        let mode = header_line(SESSIONS, "[[ledger]]", 1);
        let tatonnement = "mechanism = \"tatonnement\"\ncapability = \"bidder\"\nsupply = [1.0]";
        let cases = [
            (
                "\"sealed_bid\"",
                "\"dutch\"",
                first,
                "mechanism \"dutch\" is not one",
            ),
            ("caller = 2", "caller = 9", second, "node 9"),
            (
                "time = \"3s\"\nid = 1\n",
                "time = \"1s\"\nid = 1\n",
                first,
                "before its ledger",
            ),
            ("id = 10", "id = 3", second, "session id 3 is taken"),
            (
                "commit = \"gpu\"",
                "commit = \"gpx\"",
                first,
                "no [[ledger]]",
            ),
            (
                "commit = \"gpu\"",
                "commit = \"mode\"",
                first,
                "cannot commit",
            ),
            (
                "[\"a\", \"b\"]\ncommit",
                "[\"a\", \"c\"]\ncommit",
                second,
                "candidate \"c\"",
            ),
            (
                "placed = true",
                "placed = true\nitem = \"x\"",
                second,
                "item belongs to a sealed_bid",
            ),
            (
                "\"voter\"\ncandidates",
                "\"voterz\"\ncandidates",
                second,
                "no [[at]] agents",
            ),
            ("every = \"1s\"\n", "", first, "needs `every`"),
            (
                "placed = true",
                "placed = true\nmethod = \"borda\"",
                second,
                "method \"borda\"",
            ),
            ("placed = true", "placed = 1.5", second, "not within 0..1"),
            ("id = 1\n", "id = 0\n", first, "start at 1"),
            (
                "name = \"mode\"",
                "name = \"gpu\"",
                mode,
                "a second [[ledger]] named",
            ),
            (
                "kind = \"auction\"",
                "kind = \"escrow\"",
                gpu,
                "kind \"escrow\"",
            ),
            (
                "budget = 100\n",
                "budget = 100\non = 7\n",
                gpu,
                "declared on node 7",
            ),
            ("budget = 100\n", "budget = -1\n", gpu, "below zero"),
            ("budget = 100\n", "", gpu, "needs `budget"),
            (
                "[\"a\", \"b\"]\ntime",
                "[\"a\", \"a\"]\ntime",
                mode,
                "distinct candidates",
            ),
            (
                "[\"a\", \"b\"]\ntime",
                "[\"nobody\"]\ntime",
                mode,
                "\"nobody\"",
            ),
        ];
        for (from, to, line, problem) in cases {
            let text = SESSIONS.replacen(from, to, 1);
            assert_ne!(text, SESSIONS, "{from:?} is in the file");
            let e = parse(&text, "s.toml").unwrap_err();
            assert!(e.problem.contains(problem), "{from:?} -> {e}");
            assert_eq!(e.line, line, "{from:?} -> {e}");
        }
        let reported = SESSIONS.replacen(
            "mechanism = \"vote\"\ncapability = \"voter\"\ncandidates = [\"a\", \"b\"]",
            tatonnement,
            1,
        );
        let e = parse(&reported, "s.toml").unwrap_err();
        assert!(e.problem.contains("drop `commit`"), "{e}");
        assert_eq!(e.line, second, "{e}");
        // Another auction on the same ledger: ids 1, 2 and 3 open at 3, 4 and 5 s.
        let auction = |at: &str, id: u64| {
            format!("{SESSIONS}\n[[session]]\ntime = \"{at}\"\nid = {id}\ncaller = 0\nmechanism = \"sealed_bid\"\ncapability = \"bidder\"\ncommit = \"gpu\"\n")
        };
        assert!(parse(&auction("6s", 4), "s.toml").is_ok());
        // Id 3 at 5 s would come after id 5 at 4 s.
        let text = auction("4s", 5);
        let e = parse(&text, "s.toml").unwrap_err();
        assert!(e.problem.contains("increasing id order"), "{e}");
        assert_eq!(e.line, header_line(&text, "[[session]]", 0), "{e}");
        // An auction ledger's holder is a choice among its bidders, and a choice is bounded.
        let crowd = SESSIONS.replacen("nodes = 4", "nodes = 9", 1).replacen(
            "agent = \"bidder\"",
            "agent = \"bidder\"\ncount = 32",
            1,
        );
        let e = parse(&crowd, "s.toml").unwrap_err();
        assert!(
            e.problem.contains("ledger \"gpu\"") && e.problem.contains("256"),
            "{e}"
        );
        assert_eq!(e.line, gpu + 1, "{e}");
        let unknown = SESSIONS.replacen("placed = true", "placed = true\nbids = 3", 1);
        let e = parse(&unknown, "s.toml").unwrap_err();
        assert!(e.problem.contains("unknown field"), "{e}");
    }
}
