//! Alternating-offers bargaining over a price (Rubinstein's protocol with a round limit).
//!
//! Buyer and seller take turns: the agent to move either offers a price, accepts the opponent's
//! standing offer, or quits. Every turn has a deadline; an agent that misses it is absent and the
//! negotiation ends without agreement. After `rounds_max` offers the last responder may only accept
//! or quit.

use serde::{Deserialize, Serialize};

use super::strategy::{Action, Negotiator, Role};
use crate::error::{ConfigError, Rejection};
use crate::telemetry::{Telemetry, TelemetryEvent};
use crate::types::{validate_amount, AgentId, Outgoing, Time};

/// Configuration of one bilateral negotiation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlternatingConfig {
    /// What is being negotiated, for logs.
    pub subject: String,
    /// The buying agent.
    pub buyer: AgentId,
    /// The selling agent.
    pub seller: AgentId,
    /// Who makes the first offer.
    pub first_mover: Role,
    /// Most offers in total, >= 1.
    pub rounds_max: u32,
    /// Milliseconds each agent has for its move.
    pub turn_ms: u64,
}

/// A move sent by a negotiator.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Move {
    /// Propose `price` as offer number `round`.
    Offer {
        /// Offer number expected next, from 0.
        round: u32,
        /// The proposed price.
        price: f64,
    },
    /// Accept the standing offer, which was offer number `round`.
    Accept {
        /// The offer accepted.
        round: u32,
    },
    /// Leave without agreement.
    Quit,
}

/// Notices the machine sends to the negotiators.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum NegotiationNotice {
    /// Your opponent offered `price` as offer `round`; answer by `respond_by`.
    Offered {
        /// Offer number.
        round: u32,
        /// The price.
        price: f64,
        /// Deadline for your move.
        respond_by: Time,
    },
    /// Agreement on `price`.
    Agreed {
        /// The agreed price.
        price: f64,
    },
    /// The negotiation ended without agreement.
    Failed,
}

/// Why a negotiation ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum NegotiationOutcome {
    /// Both sides agreed.
    Agreement {
        /// The agreed price.
        price: f64,
        /// Offers made before agreement.
        rounds: u32,
        /// Who accepted.
        accepted_by: AgentId,
    },
    /// No agreement.
    Disagreement {
        /// Offers made.
        rounds: u32,
        /// Why.
        reason: DisagreementReason,
    },
}

/// Why no agreement was reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DisagreementReason {
    /// This agent quit.
    Quit(AgentId),
    /// This agent did not move before its turn's deadline.
    Absent(AgentId),
}

/// The alternating-offers protocol as a state machine.
///
/// Driver order: [`new`](Self::new), then per arriving move [`handle`](Self::handle), and
/// [`handle_timeout`](Self::handle_timeout) at [`poll_timeout`](Self::poll_timeout); drain the outbox
/// after each call.
#[derive(Debug)]
pub struct AlternatingOffers {
    config: AlternatingConfig,
    started_at: Time,
    round: u32,
    to_move: Role,
    standing: Option<f64>,
    turn_deadline: Time,
    outcome: Option<NegotiationOutcome>,
    outbox: Vec<Outgoing<NegotiationNotice>>,
    telemetry: Telemetry,
}

impl AlternatingOffers {
    /// Starts the negotiation at `now`; the first mover's turn begins.
    pub fn new(config: AlternatingConfig, now: Time) -> Result<Self, ConfigError> {
        if config.rounds_max == 0 {
            let value = 0.0;
            let why = "must be >= 1";
            return Err(ConfigError::Parameter {
                name: "rounds_max",
                value,
                why,
            });
        }
        if config.buyer == config.seller {
            return Err(ConfigError::Empty {
                what: "counterparty (buyer and seller are the same agent)",
            });
        }
        let telemetry = Telemetry::started("alternating-offers", config.subject.clone(), now);
        Ok(AlternatingOffers {
            to_move: config.first_mover,
            turn_deadline: now.plus_ms(config.turn_ms),
            config,
            started_at: now,
            round: 0,
            standing: None,
            outcome: None,
            outbox: Vec::new(),
            telemetry,
        })
    }

    fn agent(&self, role: Role) -> AgentId {
        match role {
            Role::Buyer => self.config.buyer,
            Role::Seller => self.config.seller,
        }
    }

    /// The agent whose turn it is.
    pub fn to_move(&self) -> AgentId {
        self.agent(self.to_move)
    }

    /// Offers made so far.
    pub fn round(&self) -> u32 {
        self.round
    }

    /// The opponent's offer the agent to move may accept.
    pub fn standing_offer(&self) -> Option<f64> {
        self.standing
    }

    /// Fraction of the round budget used, for time-dependent strategies.
    pub fn time_fraction(&self) -> f64 {
        f64::from(self.round) / f64::from(self.config.rounds_max)
    }

    /// Asks the policy of the agent to move (`buyer`'s or `seller`'s) for its action at this turn
    /// and returns that agent with the move to pass to [`handle`](Self::handle): an offer numbered
    /// for this round, or an acceptance of the standing offer.
    pub fn next_move(
        &self,
        buyer: &mut dyn Negotiator,
        seller: &mut dyn Negotiator,
    ) -> (AgentId, Move) {
        let agent = self.to_move();
        let policy: &mut dyn Negotiator = if agent == self.config.buyer {
            &mut *buyer
        } else {
            &mut *seller
        };
        let mv = match policy.act(self.time_fraction(), self.standing_offer()) {
            Action::Offer(price) => Move::Offer {
                round: self.round(),
                price,
            },
            Action::Accept => Move::Accept {
                round: self.round().saturating_sub(1),
            },
            Action::Quit => Move::Quit,
        };
        (agent, mv)
    }

    /// Applies a move from `agent`. Rejected moves change nothing.
    pub fn handle(&mut self, now: Time, agent: AgentId, mv: Move) -> Result<(), Rejection> {
        let result = self.check(now, agent, mv);
        let amount = match mv {
            Move::Offer { price, .. } => Some(price),
            _ => None,
        };
        self.telemetry.input(now, agent, amount, &result);
        result?;
        match mv {
            Move::Offer { price, .. } => self.offer(now, price),
            Move::Accept { .. } => {
                let price = self.standing.unwrap_or_default();
                let rounds = self.round;
                self.finish(
                    now,
                    NegotiationOutcome::Agreement {
                        price,
                        rounds,
                        accepted_by: agent,
                    },
                );
            }
            Move::Quit => {
                let rounds = self.round;
                let reason = DisagreementReason::Quit(agent);
                self.finish(now, NegotiationOutcome::Disagreement { rounds, reason });
            }
        }
        Ok(())
    }

    fn check(&self, now: Time, agent: AgentId, mv: Move) -> Result<(), Rejection> {
        if self.outcome.is_some() {
            return Err(Rejection::Closed);
        }
        if agent != self.config.buyer && agent != self.config.seller {
            return Err(Rejection::NotParticipant { agent });
        }
        if agent != self.to_move() {
            return Err(Rejection::InvalidReference {
                what: "not this agent's turn".into(),
            });
        }
        if now >= self.turn_deadline {
            return Err(Rejection::Late {
                at: now,
                deadline: self.turn_deadline,
            });
        }
        let bad_round = |what: String| Err(Rejection::InvalidReference { what });
        match mv {
            Move::Offer { round, price } => {
                validate_amount(price)?;
                if round != self.round || self.round >= self.config.rounds_max {
                    return bad_round(format!(
                        "offer {round}; next is {}, limit {}",
                        self.round, self.config.rounds_max
                    ));
                }
                Ok(())
            }
            Move::Accept { round } if self.standing.is_none() || round + 1 != self.round => {
                bad_round(format!(
                    "accept of offer {round}, standing offer is {}",
                    self.round.wrapping_sub(1)
                ))
            }
            _ => Ok(()),
        }
    }

    fn offer(&mut self, now: Time, price: f64) {
        let round = self.round;
        self.standing = Some(price);
        self.round += 1;
        self.to_move = match self.to_move {
            Role::Buyer => Role::Seller,
            Role::Seller => Role::Buyer,
        };
        self.turn_deadline = now.plus_ms(self.config.turn_ms);
        let respond_by = self.turn_deadline;
        let msg = NegotiationNotice::Offered {
            round,
            price,
            respond_by,
        };
        self.outbox.push(Outgoing {
            to: self.to_move(),
            msg,
        });
    }

    /// Checks internal consistency; tests and the simulator call it after every step.
    pub fn invariants(&self) -> Result<(), String> {
        if self.round > self.config.rounds_max {
            return Err(format!(
                "{} offers, limit {}",
                self.round, self.config.rounds_max
            ));
        }
        // Offers strictly alternate, so the mover is fixed by the first mover and the parity.
        let expected = match (self.config.first_mover, self.round % 2) {
            (role, 0) => role,
            (Role::Buyer, _) => Role::Seller,
            (Role::Seller, _) => Role::Buyer,
        };
        if self.to_move != expected {
            return Err("the turn does not alternate".into());
        }
        match self.standing {
            None if self.round > 0 => return Err("offers were made but none stands".into()),
            Some(_) if self.round == 0 => return Err("a standing offer before any offer".into()),
            Some(p) if validate_amount(p).is_err() => return Err(format!("standing offer {p}")),
            _ => {}
        }
        if self.turn_deadline < self.started_at {
            return Err("the turn deadline is before the start".into());
        }
        self.outcome_consistent()
    }

    /// An agreement is on the standing offer, accepted by the agent whose turn it was.
    fn outcome_consistent(&self) -> Result<(), String> {
        let ok = match &self.outcome {
            None => true,
            Some(NegotiationOutcome::Agreement {
                price,
                rounds,
                accepted_by,
            }) => {
                Some(*price) == self.standing
                    && *rounds == self.round
                    && *accepted_by == self.to_move()
            }
            Some(NegotiationOutcome::Disagreement { rounds, reason }) => {
                let agent = match reason {
                    DisagreementReason::Quit(a) | DisagreementReason::Absent(a) => *a,
                };
                *rounds == self.round && agent == self.to_move()
            }
        };
        if ok {
            Ok(())
        } else {
            Err(format!("outcome {:?} contradicts the state", self.outcome))
        }
    }

    /// The current turn's deadline, while open.
    pub fn poll_timeout(&self) -> Option<Time> {
        self.outcome.is_none().then_some(self.turn_deadline)
    }

    /// Ends the negotiation if the agent to move missed its deadline.
    pub fn handle_timeout(&mut self, now: Time) -> Option<NegotiationOutcome> {
        if self.outcome.is_none() && now >= self.turn_deadline {
            let reason = DisagreementReason::Absent(self.to_move());
            let rounds = self.round;
            self.finish(now, NegotiationOutcome::Disagreement { rounds, reason });
        }
        self.outcome.clone()
    }

    fn finish(&mut self, now: Time, outcome: NegotiationOutcome) {
        let msg = match outcome {
            NegotiationOutcome::Agreement { price, .. } => NegotiationNotice::Agreed { price },
            NegotiationOutcome::Disagreement { .. } => NegotiationNotice::Failed,
        };
        for to in [self.config.buyer, self.config.seller] {
            self.outbox.push(Outgoing { to, msg });
        }
        self.telemetry.emit(TelemetryEvent::Decided {
            protocol: "alternating-offers",
            summary: format!("{}: {outcome:?}", self.config.subject),
            at: now,
            duration_ms: now.since(self.started_at),
        });
        self.outcome = Some(outcome);
    }

    /// The outcome, once decided.
    pub fn outcome(&self) -> Option<&NegotiationOutcome> {
        self.outcome.as_ref()
    }

    /// Takes the messages for the negotiators.
    pub fn drain_outbox(&mut self) -> Vec<Outgoing<NegotiationNotice>> {
        std::mem::take(&mut self.outbox)
    }

    /// Takes the buffered telemetry events.
    pub fn drain_telemetry(&mut self) -> Vec<TelemetryEvent> {
        self.telemetry.drain()
    }
}

crate::protocol::delegate_protocol!(
    AlternatingOffers,
    message = Move,
    notice = NegotiationNotice,
    outcome = NegotiationOutcome
);

/// Runs a negotiation locally between two policies, one move per millisecond from `start`.
/// A policy move the machine refuses (for example an offer after the last round) ends the
/// negotiation as if that agent had gone silent.
pub fn negotiate(
    config: AlternatingConfig,
    buyer: &mut dyn Negotiator,
    seller: &mut dyn Negotiator,
    start: Time,
) -> Result<NegotiationOutcome, ConfigError> {
    let mut machine = AlternatingOffers::new(config, start)?;
    let mut now = start;
    loop {
        if let Some(outcome) = machine.outcome() {
            return Ok(outcome.clone());
        }
        let (agent, mv) = machine.next_move(buyer, seller);
        now = now.plus_ms(1);
        if machine.handle(now, agent, mv).is_err() {
            now = machine.turn_deadline;
            machine.handle_timeout(now);
        }
    }
}
