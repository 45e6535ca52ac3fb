//! A handful of agents share one GPU slot and agree on a model temperature.
//!
//! 1. They bid for the slot in a Vickrey auction with a reserve: bidding your true value is the best
//!    you can do, and the winner pays the second-highest bid (or the reserve).
//! 2. They vote on the temperature with the Schulze method; one agent is offline, and the quorum rule
//!    decides whether the rest may decide.
//!
//! Both machines are driven the same way, through their `Protocol` shape: a typed message in with
//! `handle(now, from, message)`, the deadline through `handle_timeout`, notices out of the outbox.
//!
//! Run: `cargo run --example auction_and_vote`

use std::collections::BTreeMap;

use foundation_agents::auction::sealed::{Pricing, SealedBidAuction, SealedConfig, SealedMessage};
use foundation_agents::telemetry::TelemetryEvent;
use foundation_agents::voting::{Ballot, Election, ElectionConfig, Method, VoteMessage};
use foundation_agents::{AgentId, Money, Time};

struct Agent {
    id: AgentId,
    name: &'static str,
    /// What the GPU slot is worth to this agent in credits (it bids this: truthful bidding is
    /// dominant). Money is integer minor units, so prices are exact on every node.
    value: Money,
    budget: Money,
    /// Preferred temperatures, best first, as indices into `TEMPERATURES`.
    ranking: Vec<usize>,
    online: bool,
}

const TEMPERATURES: [&str; 4] = ["0.2", "0.5", "0.7", "1.0"];

fn agents() -> Vec<Agent> {
    let agent = |id, name, value, budget, ranking: &[usize], online| Agent {
        id: AgentId(id),
        name,
        value: Money(value),
        budget: Money(budget),
        ranking: ranking.to_vec(),
        online,
    };
    vec![
        agent(1, "planner", 42, 50, &[1, 2, 0, 3], true),
        agent(2, "coder", 55, 60, &[0, 1, 2, 3], true),
        agent(3, "critic", 38, 40, &[2, 1, 3, 0], true),
        agent(4, "writer", 61, 50, &[3, 1, 2, 0], true),
        agent(5, "researcher", 47, 80, &[1, 0, 2, 3], false),
    ]
}

fn run_auction(agents: &[Agent]) {
    println!("== auction for gpu-slot (Vickrey, reserve 20, deadline t=100ms)");
    let mut config = SealedConfig::new("gpu-slot", Pricing::SecondPrice)
        .reserve(Money(20))
        .deadline(Time(100));
    for a in agents {
        config = config.budget(a.id, a.budget);
    }
    let Ok(mut auction) = SealedBidAuction::new(config, Time(0)) else {
        println!("invalid auction configuration");
        return;
    };
    for (t, a) in agents.iter().enumerate().filter(|(_, a)| a.online) {
        let at = Time(10 * (t as u64 + 1));
        match auction.handle(at, a.id, SealedMessage::Bid { amount: a.value }) {
            Ok(()) => println!("  {:<10} bids {:>5}", a.name, a.value),
            Err(reason) => {
                println!("  {:<10} bid {:>5} rejected: {reason}", a.name, a.value);
                // A rejection changes nothing, so the agent may bid again, capped at its budget.
                let capped = a.value.min(a.budget);
                let retry =
                    auction.handle(at.plus_ms(1), a.id, SealedMessage::Bid { amount: capped });
                println!(
                    "  {:<10} bids {capped:>5} instead: {}",
                    a.name,
                    if retry.is_ok() {
                        "accepted"
                    } else {
                        "rejected"
                    }
                );
            }
        }
    }
    let glitch = auction.handle(
        Time(60),
        AgentId(2),
        SealedMessage::Bid { amount: Money(1) },
    );
    println!(
        "  coder      sends a second bid: {}",
        glitch.err().map_or("accepted?!".into(), |e| e.to_string())
    );
    let outcome = auction
        .handle_timeout(Time(100))
        .unwrap_or_else(|| auction.close(Time(100)));
    println!("  outcome: {}", outcome.summary());
    for notice in auction.drain_outbox() {
        println!("  -> {} {:?}", notice.to, notice.msg);
    }
    print_telemetry(auction.drain_telemetry());
}

fn run_vote(agents: &[Agent]) {
    println!("\n== vote on temperature (Schulze, quorum 60% of weight, deadline t=200ms)");
    let voters: BTreeMap<AgentId, f64> = agents.iter().map(|a| (a.id, 1.0)).collect();
    let config = ElectionConfig {
        question: "temperature".into(),
        candidates: TEMPERATURES.iter().map(|t| t.to_string()).collect(),
        voters,
        method: Method::Schulze,
        quorum: 0.6,
        deadline: Time(200),
    };
    let Ok(mut election) = Election::new(config, Time(100)) else {
        println!("invalid election configuration");
        return;
    };
    for (t, a) in agents.iter().enumerate().filter(|(_, a)| a.online) {
        let ranking: Vec<&str> = a.ranking.iter().map(|&c| TEMPERATURES[c]).collect();
        let ballot = Ballot::Ranking(a.ranking.clone());
        let result = election.handle(Time(110 + t as u64), a.id, VoteMessage::Cast { ballot });
        println!(
            "  {:<10} ranks {:?} {}",
            a.name,
            ranking,
            result.err().map(|e| e.to_string()).unwrap_or_default()
        );
    }
    // The driver wakes the machine at the deadline it asked for; the offline agent never voted.
    let deadline = election.poll_timeout().unwrap_or(Time(200));
    let decided = election
        .handle_timeout(deadline)
        .unwrap_or_else(|| election.close(deadline));
    match decided {
        Ok(outcome) => {
            println!(
                "  temperature = {} (Schulze scores {:?}, tie: {})",
                outcome.label, outcome.scores, outcome.tied
            );
            let absent: Vec<String> = outcome.absent.iter().map(|a| a.to_string()).collect();
            println!(
                "  decided by weight {} of {}; absent: {}",
                outcome.voted_weight,
                agents.len(),
                absent.join(", ")
            );
        }
        Err(e) => println!("  no decision: {e}"),
    }
    for notice in election.drain_outbox() {
        println!("  -> {} {:?}", notice.to, notice.msg);
    }
    print_telemetry(election.drain_telemetry());
}

fn print_telemetry(events: Vec<TelemetryEvent>) {
    let decided = events.iter().find_map(|e| match e {
        TelemetryEvent::Decided { duration_ms, .. } => Some(duration_ms.to_string()),
        _ => None,
    });
    let rejected = events
        .iter()
        .filter(|e| matches!(e, TelemetryEvent::Rejected { .. }))
        .count();
    println!(
        "  telemetry: {} events, {rejected} rejected inputs, decided after {} ms",
        events.len(),
        decided.unwrap_or_else(|| "-".into())
    );
}

fn main() {
    let agents = agents();
    run_auction(&agents);
    run_vote(&agents);
}
