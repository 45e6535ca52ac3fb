//! Contract Net (Smith 1980): a manager announces a task, invited contractors bid a cost or refuse
//! before a deadline, and the manager awards the task to the cheapest acceptable bid.
//!
//! Ties go to the earliest bid, then the lowest agent id. Contractors that neither bid nor refuse by
//! the deadline are recorded as absent; the award is made with whoever answered.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::error::Rejection;
use crate::telemetry::{Telemetry, TelemetryEvent};
use crate::types::{AgentId, Money, Outgoing, Time};

/// Messages the manager sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ContractNotice {
    /// Call for proposals: bid for `task` before `deadline`.
    Announce {
        /// The task.
        task: String,
        /// Bids at or after this instant are late.
        deadline: Time,
    },
    /// You are awarded the task at your bid.
    Award {
        /// The cost you bid, in minor units.
        cost: Money,
    },
    /// Your bid was not chosen (or you did not answer).
    Reject,
}

/// A contractor's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContractAnswer {
    /// I will do it for this cost, in minor units.
    Bid(Money),
    /// I will not do it.
    Refuse,
}

/// What a contractor sends to the manager; the same type as [`ContractAnswer`].
pub type ContractMessage = ContractAnswer;

/// The manager's decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContractOutcome {
    /// The task.
    pub task: String,
    /// Winner and its cost, if any acceptable bid arrived.
    pub award: Option<(AgentId, Money)>,
    /// Valid bids received.
    pub bids: usize,
    /// Contractors that refused.
    pub refused: Vec<AgentId>,
    /// Invited contractors that did not answer by the deadline.
    pub absent: Vec<AgentId>,
    /// Why, in words.
    pub reason: String,
}

/// A Contract Net round as a state machine.
///
/// Driver order: [`new`](Self::new) (announces to every invitee), [`answer`](Self::answer) per
/// reply, then [`handle_timeout`](Self::handle_timeout) at the deadline — or earlier automatically
/// once every invitee answered; drain the outbox after each call.
#[derive(Debug)]
pub struct ContractNet {
    task: String,
    deadline: Time,
    max_cost: Option<Money>,
    invited: BTreeSet<AgentId>,
    started_at: Time,
    bids: Vec<(AgentId, Money)>,
    answered: BTreeMap<AgentId, ContractAnswer>,
    outcome: Option<ContractOutcome>,
    outbox: Vec<Outgoing<ContractNotice>>,
    telemetry: Telemetry,
}

impl ContractNet {
    /// Announces `task` to `invited` at `now`; bids above `max_cost` (if set) are refused.
    pub fn new(
        task: impl Into<String>,
        invited: BTreeSet<AgentId>,
        deadline: Time,
        max_cost: Option<Money>,
        now: Time,
    ) -> Self {
        let task = task.into();
        let telemetry = Telemetry::started("contract-net", task.clone(), now);
        let outbox = invited
            .iter()
            .map(|&to| Outgoing {
                to,
                msg: ContractNotice::Announce {
                    task: task.clone(),
                    deadline,
                },
            })
            .collect();
        ContractNet {
            task,
            deadline,
            max_cost,
            invited,
            started_at: now,
            bids: Vec::new(),
            answered: BTreeMap::new(),
            outcome: None,
            outbox,
            telemetry,
        }
    }

    /// Applies a message from `from`; the [`Protocol`](crate::Protocol) entry point.
    pub fn handle(
        &mut self,
        now: Time,
        from: AgentId,
        message: ContractAnswer,
    ) -> Result<(), Rejection> {
        self.answer(now, from, message)
    }

    /// Handles a contractor's answer. Rejections change nothing.
    pub fn answer(
        &mut self,
        now: Time,
        agent: AgentId,
        answer: ContractAnswer,
    ) -> Result<(), Rejection> {
        let result = self.check(now, agent, answer);
        let amount = match answer {
            ContractAnswer::Bid(cost) => Some(cost.approx_f64()),
            ContractAnswer::Refuse => None,
        };
        self.telemetry.input(now, agent, amount, &result);
        result?;
        if let ContractAnswer::Bid(cost) = answer {
            self.bids.push((agent, cost));
        }
        self.answered.insert(agent, answer);
        if self.answered.len() == self.invited.len() {
            self.decide(now);
        }
        Ok(())
    }

    fn check(&self, now: Time, agent: AgentId, answer: ContractAnswer) -> Result<(), Rejection> {
        if self.outcome.is_some() {
            return Err(Rejection::Closed);
        }
        if !self.invited.contains(&agent) {
            return Err(Rejection::NotParticipant { agent });
        }
        if now >= self.deadline {
            return Err(Rejection::Late {
                at: now,
                deadline: self.deadline,
            });
        }
        if self.answered.contains_key(&agent) {
            return Err(Rejection::Duplicate { agent });
        }
        if let ContractAnswer::Bid(cost) = answer {
            if let Some(budget) = self.max_cost.filter(|&m| cost > m) {
                return Err(Rejection::OverBudget {
                    amount: cost,
                    budget,
                });
            }
        }
        Ok(())
    }

    /// The deadline, while undecided.
    pub fn poll_timeout(&self) -> Option<Time> {
        self.outcome.is_none().then_some(self.deadline)
    }

    /// Decides with the answers received if the deadline passed.
    pub fn handle_timeout(&mut self, now: Time) -> Option<ContractOutcome> {
        if self.outcome.is_none() && now >= self.deadline {
            self.decide(now);
        }
        self.outcome.clone()
    }

    fn decide(&mut self, now: Time) {
        // `bids` is in arrival order, so a strict `<` keeps the earliest of equal costs.
        let award = self
            .bids
            .iter()
            .copied()
            .fold(None, |best: Option<(AgentId, Money)>, bid| match best {
                Some(b) if b.1 <= bid.1 => Some(b),
                _ => Some(bid),
            });
        let refused = self
            .answered
            .iter()
            .filter(|(_, a)| **a == ContractAnswer::Refuse)
            .map(|(id, _)| *id)
            .collect();
        let absent: Vec<AgentId> = self
            .invited
            .iter()
            .filter(|a| !self.answered.contains_key(a))
            .copied()
            .collect();
        let reason = match award {
            Some((agent, cost)) => format!(
                "{agent} bid the lowest cost {cost} of {} bids",
                self.bids.len()
            ),
            None => "no acceptable bid".to_string(),
        };
        for &to in &self.invited {
            let msg = match award {
                Some((winner, cost)) if winner == to => ContractNotice::Award { cost },
                _ => ContractNotice::Reject,
            };
            self.outbox.push(Outgoing { to, msg });
        }
        let outcome = ContractOutcome {
            task: self.task.clone(),
            award,
            bids: self.bids.len(),
            refused,
            absent,
            reason,
        };
        self.telemetry.emit(TelemetryEvent::Decided {
            protocol: "contract-net",
            summary: format!("{}: {}", self.task, outcome.reason),
            at: now,
            duration_ms: now.since(self.started_at),
        });
        self.outcome = Some(outcome);
    }

    /// Checks internal consistency; tests and the simulator call it after every step.
    pub fn invariants(&self) -> Result<(), String> {
        if let Some(agent) = self.answered.keys().find(|a| !self.invited.contains(a)) {
            return Err(format!("accepted an answer from outsider {agent}"));
        }
        let bids_in_answers = self
            .answered
            .values()
            .filter(|a| matches!(a, ContractAnswer::Bid(_)))
            .count();
        if bids_in_answers != self.bids.len() {
            return Err("stored bids and answers disagree".into());
        }
        for &(agent, cost) in &self.bids {
            let within = self.max_cost.is_none_or(|m| cost <= m);
            let answered = self.answered.get(&agent) == Some(&ContractAnswer::Bid(cost));
            if !within || !answered {
                return Err(format!("stored bid ({agent}, {cost}) is invalid"));
            }
        }
        self.outcome_consistent()
    }

    /// The award is a received bid of the lowest cost, and absent plus answered is everyone.
    fn outcome_consistent(&self) -> Result<(), String> {
        let Some(outcome) = &self.outcome else {
            return Ok(());
        };
        let lowest = self.bids.iter().map(|b| b.1).min();
        let award_ok = match outcome.award {
            None => self.bids.is_empty(),
            Some(bid) => self.bids.contains(&bid) && Some(bid.1) == lowest,
        };
        let absent_ok = outcome.absent.len() + self.answered.len() == self.invited.len()
            && outcome
                .absent
                .iter()
                .all(|a| !self.answered.contains_key(a));
        if award_ok && absent_ok && outcome.bids == self.bids.len() {
            Ok(())
        } else {
            Err(format!("outcome {outcome:?} contradicts the answers"))
        }
    }

    /// The outcome, once decided.
    pub fn outcome(&self) -> Option<&ContractOutcome> {
        self.outcome.as_ref()
    }

    /// Takes the messages for contractors.
    pub fn drain_outbox(&mut self) -> Vec<Outgoing<ContractNotice>> {
        std::mem::take(&mut self.outbox)
    }

    /// Takes the buffered telemetry events.
    pub fn drain_telemetry(&mut self) -> Vec<TelemetryEvent> {
        self.telemetry.drain()
    }
}

crate::protocol::delegate_protocol!(
    ContractNet,
    message = ContractAnswer,
    notice = ContractNotice,
    outcome = ContractOutcome
);
