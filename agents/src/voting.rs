//! Voting among agents: plurality, Borda, approval and Schulze (a Condorcet method), with voter
//! weights, a quorum and a deadline.
//!
//! At the deadline the election decides with those who voted if their weight reaches the quorum;
//! otherwise it fails with [`VoteError::NoQuorum`] rather than letting a handful of agents decide
//! for everyone.

pub mod tally;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::error::{ConfigError, Rejection};
use crate::telemetry::{Telemetry, TelemetryEvent};
use crate::types::{AgentId, Time};
pub use tally::Ballot;

/// The counting rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Method {
    /// Most first choices (accepts `Choice` or `Ranking` ballots).
    Plurality,
    /// Positional points (accepts `Ranking` ballots).
    Borda,
    /// Most approvals (accepts `Approval` ballots).
    Approval,
    /// Schulze beatpath method, Condorcet-consistent (accepts `Ranking` ballots).
    Schulze,
}

/// Configuration of an election.
#[derive(Debug, Clone, PartialEq)]
pub struct ElectionConfig {
    /// What is being decided, e.g. `"temperature"`.
    pub question: String,
    /// Labels of the options; ballots refer to them by index.
    pub candidates: Vec<String>,
    /// Voters and their weights (finite, > 0).
    pub voters: BTreeMap<AgentId, f64>,
    /// Counting rule.
    pub method: Method,
    /// Fraction of total voter weight that must vote for the result to count, in [0, 1].
    pub quorum: f64,
    /// Ballots at or after this instant are late; the driver closes here.
    pub deadline: Time,
}

/// The election could not decide.
#[derive(Debug, Clone, PartialEq, Error, Serialize, Deserialize)]
pub enum VoteError {
    /// Too little weight voted; extend the deadline or lower the quorum.
    #[error("no quorum: {voted_weight} of {total_weight} voted, {required_weight} required")]
    NoQuorum {
        /// Weight of the ballots received.
        voted_weight: f64,
        /// Weight of all voters.
        total_weight: f64,
        /// Weight the quorum requires.
        required_weight: f64,
    },
}

/// The decision of an election.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VoteOutcome {
    /// Index of the winning candidate.
    pub winner: usize,
    /// Its label.
    pub label: String,
    /// Score per candidate under the method.
    pub scores: Vec<f64>,
    /// Whether the top score was tied (the lowest index then won).
    pub tied: bool,
    /// Total weight of the ballots counted.
    pub voted_weight: f64,
    /// Voters that did not vote by the deadline.
    pub absent: Vec<AgentId>,
}

/// An election as a state machine.
///
/// Driver order: [`new`](Self::new), [`cast`](Self::cast) per ballot, [`close`](Self::close) at the
/// deadline (or once every voter voted); drain telemetry afterwards.
#[derive(Debug)]
pub struct Election {
    config: ElectionConfig,
    started_at: Time,
    ballots: BTreeMap<AgentId, Ballot>,
    outcome: Option<Result<VoteOutcome, VoteError>>,
    telemetry: Telemetry,
}

impl Election {
    /// Opens the election at `now`.
    pub fn new(config: ElectionConfig, now: Time) -> Result<Self, ConfigError> {
        validate(&config)?;
        let mut telemetry = Telemetry::default();
        let instance = config.question.clone();
        telemetry.emit(TelemetryEvent::Started {
            protocol: "vote",
            instance,
            at: now,
        });
        Ok(Election {
            config,
            started_at: now,
            ballots: BTreeMap::new(),
            outcome: None,
            telemetry,
        })
    }

    /// Records a ballot. Rejections change nothing.
    pub fn cast(&mut self, now: Time, voter: AgentId, ballot: Ballot) -> Result<(), Rejection> {
        let result = self.check(now, voter, &ballot);
        self.telemetry.input(now, voter, None, &result);
        result?;
        self.ballots.insert(voter, ballot);
        Ok(())
    }

    fn check(&self, now: Time, voter: AgentId, ballot: &Ballot) -> Result<(), Rejection> {
        if self.outcome.is_some() {
            return Err(Rejection::Closed);
        }
        if !self.config.voters.contains_key(&voter) {
            return Err(Rejection::NotParticipant { agent: voter });
        }
        if now >= self.config.deadline {
            return Err(Rejection::Late {
                at: now,
                deadline: self.config.deadline,
            });
        }
        if self.ballots.contains_key(&voter) {
            return Err(Rejection::Duplicate { agent: voter });
        }
        check_ballot(self.config.method, self.config.candidates.len(), ballot)
    }

    /// True once every voter has voted, so the driver may close before the deadline.
    pub fn all_voted(&self) -> bool {
        self.ballots.len() == self.config.voters.len()
    }

    /// Decides with the ballots received (idempotent).
    pub fn close(&mut self, now: Time) -> Result<VoteOutcome, VoteError> {
        if let Some(outcome) = &self.outcome {
            return outcome.clone();
        }
        let outcome = self.decide();
        let summary = match &outcome {
            Ok(o) => format!(
                "{}: {} wins, scores {:?}",
                self.config.question, o.label, o.scores
            ),
            Err(e) => format!("{}: {e}", self.config.question),
        };
        let duration_ms = now.since(self.started_at);
        self.telemetry.emit(TelemetryEvent::Decided {
            protocol: "vote",
            summary,
            at: now,
            duration_ms,
        });
        self.outcome = Some(outcome.clone());
        outcome
    }

    fn decide(&self) -> Result<VoteOutcome, VoteError> {
        let total_weight: f64 = self.config.voters.values().sum();
        let weighted: Vec<(f64, &Ballot)> = self
            .ballots
            .iter()
            .map(|(v, b)| (self.config.voters.get(v).copied().unwrap_or(0.0), b))
            .collect();
        let voted_weight: f64 = weighted.iter().map(|(w, _)| w).sum();
        let required_weight = self.config.quorum * total_weight;
        if voted_weight < required_weight || weighted.is_empty() {
            return Err(VoteError::NoQuorum {
                voted_weight,
                total_weight,
                required_weight,
            });
        }
        let n = self.config.candidates.len();
        let scores = match self.config.method {
            Method::Plurality => tally::plurality(n, &weighted),
            Method::Borda => tally::borda(n, &weighted),
            Method::Approval => tally::approval(n, &weighted),
            Method::Schulze => tally::schulze(n, &weighted),
        };
        // `validate` guarantees at least one candidate, so argmax always finds one.
        let winner = tally::argmax(&scores).unwrap_or(0);
        let tied = scores.iter().filter(|&&s| s == scores[winner]).count() > 1;
        let absent = self
            .config
            .voters
            .keys()
            .filter(|v| !self.ballots.contains_key(v))
            .copied()
            .collect();
        let label = self.config.candidates[winner].clone();
        Ok(VoteOutcome {
            winner,
            label,
            scores,
            tied,
            voted_weight,
            absent,
        })
    }

    /// Takes the buffered telemetry events.
    pub fn drain_telemetry(&mut self) -> Vec<TelemetryEvent> {
        self.telemetry.drain()
    }
}

fn check_ballot(method: Method, candidates: usize, ballot: &Ballot) -> Result<(), Rejection> {
    let invalid = |what: &str| {
        Err(Rejection::InvalidReference {
            what: what.to_string(),
        })
    };
    let listed = match (method, ballot) {
        (Method::Plurality, Ballot::Choice(c)) => std::slice::from_ref(c),
        (Method::Plurality | Method::Borda | Method::Schulze, Ballot::Ranking(r)) => &r[..],
        (Method::Approval, Ballot::Approval(a)) => &a[..],
        _ => return invalid("ballot kind does not match the counting method"),
    };
    if matches!(ballot, Ballot::Ranking(r) if r.is_empty()) {
        return invalid("empty ranking");
    }
    let mut seen = vec![false; candidates];
    for &c in listed {
        match seen.get_mut(c) {
            None => return invalid("unknown candidate"),
            Some(true) => return invalid("candidate listed twice"),
            Some(slot) => *slot = true,
        }
    }
    Ok(())
}

fn validate(config: &ElectionConfig) -> Result<(), ConfigError> {
    if config.candidates.is_empty() {
        return Err(ConfigError::Empty { what: "candidates" });
    }
    if config.voters.is_empty() {
        return Err(ConfigError::Empty { what: "voters" });
    }
    if !(0.0..=1.0).contains(&config.quorum) {
        let (value, why) = (config.quorum, "must be in [0, 1]");
        return Err(ConfigError::Parameter {
            name: "quorum",
            value,
            why,
        });
    }
    if let Some(&w) = config
        .voters
        .values()
        .find(|w| !(w.is_finite() && **w > 0.0))
    {
        return Err(ConfigError::Parameter {
            name: "weight",
            value: w,
            why: "must be finite and > 0",
        });
    }
    Ok(())
}
