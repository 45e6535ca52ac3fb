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
use crate::types::{AgentId, Outgoing, Time};
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

/// What a voter sends to an election.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum VoteMessage {
    /// My ballot; one per voter.
    Cast {
        /// The ballot, of the kind the counting method accepts.
        ballot: Ballot,
    },
}

/// What an election tells every voter once it decides.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum VoteNotice {
    /// `winner` (index into the candidates) labelled `label` was elected.
    Decided {
        /// Index of the winning candidate.
        winner: usize,
        /// Its label.
        label: String,
    },
    /// The election failed, e.g. without quorum.
    Failed {
        /// Why, for the voter's log.
        reason: String,
    },
}

/// An election as a state machine.
///
/// Driver order: [`new`](Self::new), [`handle`](Self::handle) per message,
/// [`handle_timeout`](Self::handle_timeout) at [`poll_timeout`](Self::poll_timeout) (or
/// [`close`](Self::close) once [`all_voted`](Self::all_voted)); drain the outbox and telemetry.
#[derive(Debug)]
pub struct Election {
    config: ElectionConfig,
    started_at: Time,
    ballots: BTreeMap<AgentId, Ballot>,
    outcome: Option<Result<VoteOutcome, VoteError>>,
    outbox: Vec<Outgoing<VoteNotice>>,
    telemetry: Telemetry,
}

impl Election {
    /// Opens the election at `now`.
    pub fn new(config: ElectionConfig, now: Time) -> Result<Self, ConfigError> {
        validate(&config)?;
        let telemetry = Telemetry::started("vote", config.question.clone(), now);
        Ok(Election {
            config,
            started_at: now,
            ballots: BTreeMap::new(),
            outcome: None,
            outbox: Vec::new(),
            telemetry,
        })
    }

    /// Applies a message from `from`; the [`Protocol`](crate::Protocol) entry point.
    pub fn handle(
        &mut self,
        now: Time,
        from: AgentId,
        message: VoteMessage,
    ) -> Result<(), Rejection> {
        match message {
            VoteMessage::Cast { ballot } => self.cast(now, from, ballot),
        }
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
        self.notify(&outcome);
        self.outcome = Some(outcome.clone());
        outcome
    }

    fn notify(&mut self, outcome: &Result<VoteOutcome, VoteError>) {
        let msg = match outcome {
            Ok(o) => VoteNotice::Decided {
                winner: o.winner,
                label: o.label.clone(),
            },
            Err(e) => VoteNotice::Failed {
                reason: e.to_string(),
            },
        };
        for &to in self.config.voters.keys() {
            let msg = msg.clone();
            self.outbox.push(Outgoing { to, msg });
        }
    }

    /// The deadline, while undecided.
    pub fn poll_timeout(&self) -> Option<Time> {
        self.outcome.is_none().then_some(self.config.deadline)
    }

    /// Decides with the ballots received once the deadline has passed.
    pub fn handle_timeout(&mut self, now: Time) -> Option<Result<VoteOutcome, VoteError>> {
        match self.outcome {
            None if now >= self.config.deadline => Some(self.close(now)),
            _ => self.outcome.clone(),
        }
    }

    /// Checks internal consistency; tests and the simulator call it after every step.
    pub fn invariants(&self) -> Result<(), String> {
        for (voter, ballot) in &self.ballots {
            if !self.config.voters.contains_key(voter) {
                return Err(format!("accepted a ballot from non-voter {voter}"));
            }
            check_ballot(self.config.method, self.config.candidates.len(), ballot)
                .map_err(|e| format!("stored ballot of {voter} is invalid: {e}"))?;
        }
        match &self.outcome {
            Some(Ok(outcome)) => self.outcome_consistent(outcome),
            Some(Err(VoteError::NoQuorum {
                voted_weight,
                required_weight,
                ..
            })) => {
                let short = voted_weight < required_weight || self.ballots.is_empty();
                short
                    .then_some(())
                    .ok_or_else(|| "reported no quorum although the quorum was met".into())
            }
            None => Ok(()),
        }
    }

    /// The winner has the top score, the label is its own, and absent voters are exactly those
    /// without a ballot.
    fn outcome_consistent(&self, outcome: &VoteOutcome) -> Result<(), String> {
        let top = outcome
            .scores
            .iter()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max);
        let winner_ok = outcome.scores.len() == self.config.candidates.len()
            && outcome.scores.get(outcome.winner) == Some(&top)
            && self.config.candidates.get(outcome.winner) == Some(&outcome.label);
        if winner_ok && self.absent() == outcome.absent {
            Ok(())
        } else {
            Err(format!("outcome {outcome:?} contradicts the ballots"))
        }
    }

    /// The outcome, once decided.
    pub fn outcome(&self) -> Option<&Result<VoteOutcome, VoteError>> {
        self.outcome.as_ref()
    }

    /// Takes the notices for the voters.
    pub fn drain_outbox(&mut self) -> Vec<Outgoing<VoteNotice>> {
        std::mem::take(&mut self.outbox)
    }

    /// The registered voters who have not cast a ballot, in id order.
    fn absent(&self) -> Vec<AgentId> {
        self.config
            .voters
            .keys()
            .filter(|v| !self.ballots.contains_key(v))
            .copied()
            .collect()
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
        let absent = self.absent();
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

crate::protocol::delegate_protocol!(
    Election,
    message = VoteMessage,
    notice = VoteNotice,
    outcome = Result<VoteOutcome, VoteError>
);

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
    // Scores add weights up (Borda's times up to n − 1 points): past f64's range two counts
    // would both be infinite and tie, and the lower index would win.
    let total: f64 = config.voters.values().sum();
    let points = match config.method {
        Method::Borda => config.candidates.len().saturating_sub(1).max(1) as f64,
        _ => 1.0,
    };
    if !(total * points).is_finite() {
        return Err(ConfigError::Parameter {
            name: "weight",
            value: total,
            why: "the weights add up beyond f64's range",
        });
    }
    Ok(())
}
