//! Walrasian tatonnement: an auctioneer announces prices, agents answer with demands, prices of
//! over-demanded goods rise and of over-supplied goods fall, until excess demand vanishes — or the
//! auctioneer gives up after a bounded number of rounds and says so.
//!
//! Prices are normalised to sum to 1 (only relative prices matter). The update is multiplicative,
//! `p_j ← p_j · (1 + step · z_j / supply_j)`, floored at a fraction of the old price so no price
//! reaches zero or goes negative. Tatonnement converges for gross-substitutes economies such as
//! Cobb-Douglas; it does not in general (Scarf 1960), which is why non-convergence is an outcome, not
//! a silent "equilibrium".
//!
//! Silence is not agreement: the market's excess demand is the sum over *every* participant, so a
//! round in which someone did not answer says nothing about whether markets clear. Such a round
//! neither converges nor moves prices (the answers of some agents would steer prices for all); it
//! is repeated at the same prices and counts against the round budget. Outcomes say how many
//! participants answered the last round.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::error::{ConfigError, Rejection};
use crate::telemetry::{Telemetry, TelemetryEvent};
use crate::types::{AgentId, Outgoing, Time};

/// A price can fall by at most this factor in one round, keeping prices strictly positive.
pub const PRICE_FALL_FACTOR_MIN: f64 = 0.5;

/// An agent in an exchange economy: an endowment and a demand function.
pub trait Consumer {
    /// Goods the agent owns before trade.
    fn endowment(&self) -> &[f64];
    /// Bundle the agent wants at `prices`, spending exactly the value of its endowment.
    fn demand(&self, prices: &[f64]) -> Vec<f64>;

    /// Demand minus endowment.
    fn excess_demand(&self, prices: &[f64]) -> Vec<f64> {
        self.demand(prices)
            .iter()
            .zip(self.endowment())
            .map(|(x, e)| x - e)
            .collect()
    }
}

fn wealth(prices: &[f64], endowment: &[f64]) -> f64 {
    prices.iter().zip(endowment).map(|(p, e)| p * e).sum()
}

/// Cobb-Douglas preferences `u(x) = Π x_j^{α_j}` with `Σ α_j = 1`: spend share `α_j` on good `j`.
#[derive(Debug, Clone, PartialEq)]
pub struct CobbDouglas {
    /// Expenditure shares, non-negative, summing to 1.
    pub alpha: Vec<f64>,
    /// Initial holdings.
    pub endowment: Vec<f64>,
}

impl Consumer for CobbDouglas {
    fn endowment(&self) -> &[f64] {
        &self.endowment
    }

    fn demand(&self, prices: &[f64]) -> Vec<f64> {
        let w = wealth(prices, &self.endowment);
        self.alpha
            .iter()
            .zip(prices)
            .map(|(a, p)| a * w / p)
            .collect()
    }
}

/// Leontief preferences `u(x) = min_j x_j / need_j`: buy the goods in fixed proportions.
/// Scarf's example is three of these with endowment `e_i` and needs on goods `i` and `i+1`.
#[derive(Debug, Clone, PartialEq)]
pub struct Leontief {
    /// Units of each good needed per unit of utility (0 for goods not needed).
    pub need: Vec<f64>,
    /// Initial holdings.
    pub endowment: Vec<f64>,
}

impl Consumer for Leontief {
    fn endowment(&self) -> &[f64] {
        &self.endowment
    }

    fn demand(&self, prices: &[f64]) -> Vec<f64> {
        let w = wealth(prices, &self.endowment);
        let cost: f64 = self.need.iter().zip(prices).map(|(n, p)| n * p).sum();
        let level = if cost > 0.0 { w / cost } else { 0.0 };
        self.need.iter().map(|n| n * level).collect()
    }
}

/// Scarf's (1960) three-good economy, whose unique equilibrium `(1/3, 1/3, 1/3)` tatonnement circles
/// around instead of reaching.
pub fn scarf_economy() -> Vec<Leontief> {
    (0..3)
        .map(|i| {
            let mut need = vec![0.0; 3];
            need[i] = 1.0;
            need[(i + 1) % 3] = 1.0;
            let mut endowment = vec![0.0; 3];
            endowment[i] = 1.0;
            Leontief { need, endowment }
        })
        .collect()
}

/// Tuning of the auctioneer.
#[derive(Debug, Clone, PartialEq)]
pub struct TatonnementConfig {
    /// Price adjustment speed per round. Default 0.5; larger is faster but can overshoot.
    pub step: f64,
    /// Converged when every |excess demand| / supply is at most this. Default 1e-8.
    pub tolerance: f64,
    /// Rounds before giving up. Default 10,000.
    pub rounds_max: usize,
    /// Milliseconds agents have to answer each round; silent agents then count as absent.
    /// Default 1,000.
    pub round_ms: u64,
}

impl Default for TatonnementConfig {
    fn default() -> Self {
        TatonnementConfig {
            step: 0.5,
            tolerance: 1e-8,
            rounds_max: 10_000,
            round_ms: 1_000,
        }
    }
}

/// How a tatonnement ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum TatonnementOutcome {
    /// Every participant answered and excess demand fell within tolerance: `prices` clear the market.
    Converged {
        /// Equilibrium prices (sum 1).
        prices: Vec<f64>,
        /// Rounds used.
        rounds: usize,
        /// Largest |excess demand| / supply at `prices`.
        residual: f64,
        /// Participants, all of whom answered the deciding round.
        answered: usize,
    },
    /// The round limit was reached without a round in which every participant answered and markets
    /// cleared: no equilibrium is claimed.
    NotConverged {
        /// Last prices tried (sum 1).
        prices: Vec<f64>,
        /// Rounds used.
        rounds: usize,
        /// Largest |excess demand| / supply at `prices`; `None` when someone was silent in the last
        /// round, or its answers added up beyond f64's range, so the market's excess demand is
        /// unknown.
        residual: Option<f64>,
        /// Participants that answered the last round.
        answered: usize,
        /// Participants admitted.
        participants: usize,
    },
}

/// What an agent sends to the auctioneer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum TatonnementMessage {
    /// My excess demand (demand minus endowment, one entry per good) at the prices of `round`.
    Excess {
        /// The round answered; answers to any other round are refused.
        round: usize,
        /// Excess demand per good.
        excess: Vec<f64>,
    },
}

/// What the auctioneer tells the agents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum TatonnementNotice {
    /// Prices of `round`; answer with your excess demand before `respond_by`.
    Prices {
        /// Round number, from 0.
        round: usize,
        /// Announced prices (sum 1).
        prices: Vec<f64>,
        /// Deadline for the answer.
        respond_by: Time,
    },
    /// The process ended; `converged` says whether `prices` clear the market.
    Finished {
        /// True when the prices are an equilibrium within tolerance.
        converged: bool,
        /// The final prices.
        prices: Vec<f64>,
    },
}

/// The price-setting auctioneer as a state machine: one round per announced price vector.
///
/// Driver order per round: deliver the [`TatonnementNotice::Prices`] from
/// [`drain_outbox`](Self::drain_outbox), feed each answer to [`handle`](Self::handle), then call
/// [`end_round`](Self::end_round) when all have answered, or [`handle_timeout`](Self::handle_timeout)
/// at [`poll_timeout`](Self::poll_timeout), the round's deadline. A round with silent agents is
/// repeated at the same prices (see the module docs) and they are counted in
/// [`absent_last_round`](Self::absent_last_round).
#[derive(Debug, Clone)]
pub struct Auctioneer {
    config: TatonnementConfig,
    supply: Vec<f64>,
    participants: BTreeSet<AgentId>,
    prices: Vec<f64>,
    started_at: Time,
    telemetry: Telemetry,
    round: usize,
    round_deadline: Time,
    answers: BTreeMap<AgentId, Vec<f64>>,
    absent_last_round: usize,
    outcome: Option<TatonnementOutcome>,
    outbox: Vec<Outgoing<TatonnementNotice>>,
}

impl Auctioneer {
    /// Starts at equal prices. `supply[j]` is the total endowment of good `j` (must be > 0).
    pub fn new(
        supply: Vec<f64>,
        participants: impl IntoIterator<Item = AgentId>,
        config: TatonnementConfig,
        now: Time,
    ) -> Result<Self, ConfigError> {
        let goods = supply.len();
        let start = vec![1.0 / goods.max(1) as f64; goods];
        Self::with_prices(supply, participants, config, start, now)
    }

    /// Starts at the given prices (normalised to sum 1).
    pub fn with_prices(
        supply: Vec<f64>,
        participants: impl IntoIterator<Item = AgentId>,
        config: TatonnementConfig,
        start: Vec<f64>,
        now: Time,
    ) -> Result<Self, ConfigError> {
        validate(&config, &supply, &start)?;
        let participants: BTreeSet<AgentId> = participants.into_iter().collect();
        if participants.is_empty() {
            // With nobody to ask, every round would "clear" vacuously.
            return Err(ConfigError::Empty {
                what: "participants",
            });
        }
        let telemetry = Telemetry::started("tatonnement", format!("{} goods", supply.len()), now);
        let mut auctioneer = Auctioneer {
            round_deadline: now.plus_ms(config.round_ms),
            config,
            supply,
            participants,
            prices: normalise(start),
            started_at: now,
            telemetry,
            round: 0,
            answers: BTreeMap::new(),
            absent_last_round: 0,
            outcome: None,
            outbox: Vec::new(),
        };
        auctioneer.announce();
        Ok(auctioneer)
    }

    fn announce(&mut self) {
        for &to in &self.participants {
            let msg = TatonnementNotice::Prices {
                round: self.round,
                prices: self.prices.clone(),
                respond_by: self.round_deadline,
            };
            self.outbox.push(Outgoing { to, msg });
        }
    }

    /// Applies a message from `from`; the [`Protocol`](crate::Protocol) entry point.
    pub fn handle(
        &mut self,
        now: Time,
        from: AgentId,
        message: TatonnementMessage,
    ) -> Result<(), Rejection> {
        match message {
            TatonnementMessage::Excess { round, excess } => self.submit(now, from, round, excess),
        }
    }

    /// Prices announced for the current round.
    pub fn prices(&self) -> &[f64] {
        &self.prices
    }

    /// The current round, from 0.
    pub fn round(&self) -> usize {
        self.round
    }

    /// Agents that did not answer in the last completed round.
    pub fn absent_last_round(&self) -> usize {
        self.absent_last_round
    }

    /// Records an agent's excess demand at the current prices. Rejections change nothing.
    pub fn submit(
        &mut self,
        now: Time,
        agent: AgentId,
        round: usize,
        excess: Vec<f64>,
    ) -> Result<(), Rejection> {
        let result = self.check(now, agent, round, &excess);
        self.telemetry.input(now, agent, None, &result);
        result?;
        self.answers.insert(agent, excess);
        Ok(())
    }

    fn check(
        &self,
        now: Time,
        agent: AgentId,
        round: usize,
        excess: &[f64],
    ) -> Result<(), Rejection> {
        if self.outcome.is_some() {
            return Err(Rejection::Closed);
        }
        if now >= self.round_deadline {
            let deadline = self.round_deadline;
            return Err(Rejection::Late { at: now, deadline });
        }
        if !self.participants.contains(&agent) {
            return Err(Rejection::NotParticipant { agent });
        }
        if round != self.round || excess.len() != self.supply.len() {
            let what = format!("round {round} with {} goods", excess.len());
            return Err(Rejection::InvalidReference { what });
        }
        if excess.iter().any(|z| !z.is_finite()) {
            return Err(Rejection::NotFinite);
        }
        if self.answers.contains_key(&agent) {
            return Err(Rejection::Duplicate { agent });
        }
        Ok(())
    }

    /// Aggregates the round: finishes if converged or out of rounds, else moves prices.
    pub fn end_round(&mut self, now: Time) -> Option<TatonnementOutcome> {
        if self.outcome.is_some() {
            return self.outcome.clone();
        }
        let mut total = vec![0.0; self.supply.len()];
        for excess in self.answers.values() {
            total.iter_mut().zip(excess).for_each(|(t, z)| *t += z);
        }
        let answered = self.answers.len();
        let participants = self.participants.len();
        self.absent_last_round = participants - answered;
        self.answers.clear();
        // Only a round everyone answered measures the market, and only if its answers add up
        // within f64's range: each is finite, their sum need not be.
        let measured = answered == participants && total.iter().all(|t| t.is_finite());
        let residual = measured
            .then(|| residual(&total, &self.supply))
            .filter(|r| r.is_finite());
        let (prices, rounds) = (self.prices.clone(), self.round + 1);
        match residual {
            Some(residual) if residual <= self.config.tolerance => {
                self.outcome = Some(TatonnementOutcome::Converged {
                    prices,
                    rounds,
                    residual,
                    answered,
                });
            }
            _ if rounds >= self.config.rounds_max => {
                self.outcome = Some(TatonnementOutcome::NotConverged {
                    prices,
                    rounds,
                    residual,
                    answered,
                    participants,
                });
            }
            _ => self.next_round(now, residual.is_some(), &total),
        }
        if let Some(outcome) = self.outcome.clone() {
            self.finish(now, &outcome);
        }
        self.outcome.clone()
    }

    /// Moves prices on a complete round (an incomplete one repeats its prices) and announces.
    fn next_round(&mut self, now: Time, complete: bool, total: &[f64]) {
        if complete {
            let next = adjust(&self.prices, total, &self.supply, self.config.step);
            // A step past f64's range (a huge excess over a tiny supply) cannot be normalised:
            // the round repeats its prices, as one that did not measure the market does.
            if next.iter().all(|p| p.is_finite() && *p > 0.0) {
                self.prices = next;
            }
        }
        self.round += 1;
        // Never before the previous deadline, even if the driver's clock stepped back.
        self.round_deadline = now.max(self.round_deadline).plus_ms(self.config.round_ms);
        self.announce();
    }

    fn finish(&mut self, now: Time, outcome: &TatonnementOutcome) {
        self.telemetry.emit(TelemetryEvent::Decided {
            protocol: "tatonnement",
            summary: format!("{outcome:?}"),
            at: now,
            duration_ms: now.since(self.started_at),
        });
        let converged = matches!(outcome, TatonnementOutcome::Converged { .. });
        for &to in &self.participants {
            let prices = self.prices.clone();
            let msg = TatonnementNotice::Finished { converged, prices };
            self.outbox.push(Outgoing { to, msg });
        }
    }

    /// The current round's deadline, while running.
    pub fn poll_timeout(&self) -> Option<Time> {
        self.outcome.is_none().then_some(self.round_deadline)
    }

    /// Ends the round if its deadline has passed; agents that did not answer count as absent.
    pub fn handle_timeout(&mut self, now: Time) -> Option<TatonnementOutcome> {
        match self.outcome {
            None if now >= self.round_deadline => self.end_round(now),
            _ => self.outcome.clone(),
        }
    }

    /// Checks internal consistency; tests and the simulator call it after every step.
    pub fn invariants(&self) -> Result<(), String> {
        let sum: f64 = self.prices.iter().sum();
        let positive = self.prices.iter().all(|p| p.is_finite() && *p > 0.0);
        if self.prices.len() != self.supply.len() || !positive || (sum - 1.0).abs() > 1e-9 {
            return Err(format!(
                "prices {:?} are not a normalised positive vector",
                self.prices
            ));
        }
        for (agent, excess) in &self.answers {
            let valid = excess.len() == self.supply.len() && excess.iter().all(|z| z.is_finite());
            if !self.participants.contains(agent) || !valid {
                return Err(format!("stored answer of {agent} is invalid"));
            }
        }
        if self.absent_last_round > self.participants.len() || self.round_deadline < self.started_at
        {
            return Err("absent count or round deadline out of range".into());
        }
        self.outcome_consistent()
    }

    /// A claimed equilibrium is within tolerance, a failure only after the round budget, and both
    /// report the prices the auctioneer holds.
    fn outcome_consistent(&self) -> Result<(), String> {
        let ok = match &self.outcome {
            None => self.round < self.config.rounds_max,
            Some(TatonnementOutcome::Converged {
                prices,
                residual,
                answered,
                ..
            }) => {
                *residual <= self.config.tolerance
                    && *prices == self.prices
                    && *answered == self.participants.len()
            }
            Some(TatonnementOutcome::NotConverged {
                prices,
                rounds,
                residual,
                answered,
                participants,
            }) => {
                *rounds >= self.config.rounds_max
                    && residual.is_none_or(|r| r > self.config.tolerance)
                    && (residual.is_none() || answered == participants)
                    && *participants == self.participants.len()
                    && *prices == self.prices
            }
        };
        if ok {
            Ok(())
        } else {
            Err(format!("outcome {:?} contradicts the state", self.outcome))
        }
    }

    /// The outcome, once decided.
    pub fn outcome(&self) -> Option<&TatonnementOutcome> {
        self.outcome.as_ref()
    }

    /// Takes the notices for the agents.
    pub fn drain_outbox(&mut self) -> Vec<Outgoing<TatonnementNotice>> {
        std::mem::take(&mut self.outbox)
    }

    /// Takes the buffered telemetry events.
    pub fn drain_telemetry(&mut self) -> Vec<TelemetryEvent> {
        self.telemetry.drain()
    }
}

crate::protocol::delegate_protocol!(
    Auctioneer,
    message = TatonnementMessage,
    notice = TatonnementNotice,
    outcome = TatonnementOutcome
);

/// Largest relative excess demand.
pub fn residual(excess: &[f64], supply: &[f64]) -> f64 {
    excess
        .iter()
        .zip(supply)
        .map(|(z, s)| (z / s).abs())
        .fold(0.0, f64::max)
}

fn adjust(prices: &[f64], excess: &[f64], supply: &[f64], step: f64) -> Vec<f64> {
    let next = prices
        .iter()
        .zip(excess)
        .zip(supply)
        .map(|((p, z), s)| p * (1.0 + step * z / s).max(PRICE_FALL_FACTOR_MIN))
        .collect();
    normalise(next)
}

fn normalise(prices: Vec<f64>) -> Vec<f64> {
    let sum: f64 = prices.iter().sum();
    prices.into_iter().map(|p| p / sum).collect()
}

fn validate(config: &TatonnementConfig, supply: &[f64], start: &[f64]) -> Result<(), ConfigError> {
    let param = |name, value, why| Err(ConfigError::Parameter { name, value, why });
    if supply.is_empty() {
        return Err(ConfigError::Empty { what: "goods" });
    }
    if !(config.step.is_finite() && config.step > 0.0) {
        return param("step", config.step, "must be finite and > 0");
    }
    if config.rounds_max == 0 {
        return param("rounds_max", 0.0, "must be >= 1");
    }
    if !(config.tolerance.is_finite() && config.tolerance > 0.0) {
        return param("tolerance", config.tolerance, "must be finite and > 0");
    }
    if let Some(&s) = supply.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
        return param("supply", s, "every good needs a finite supply > 0");
    }
    if start.len() != supply.len() {
        return param(
            "start prices",
            start.len() as f64,
            "need one price per good",
        );
    }
    if let Some(&p) = start.iter().find(|p| !(p.is_finite() && **p > 0.0)) {
        return param("start price", p, "must be finite and > 0");
    }
    Ok(())
}

/// Total endowment of each good.
pub fn total_supply(consumers: &[&dyn Consumer]) -> Vec<f64> {
    let goods = consumers.first().map_or(0, |c| c.endowment().len());
    let mut supply = vec![0.0; goods];
    for c in consumers {
        supply
            .iter_mut()
            .zip(c.endowment())
            .for_each(|(s, e)| *s += e);
    }
    supply
}

/// Runs a tatonnement locally: consumer `i` plays `AgentId(i)` and answers every round; round `r`
/// happens at virtual time `r` milliseconds.
pub fn run(
    consumers: &[&dyn Consumer],
    config: TatonnementConfig,
    start: Option<Vec<f64>>,
) -> Result<TatonnementOutcome, ConfigError> {
    let supply = total_supply(consumers);
    let ids = (0..consumers.len() as u64).map(AgentId);
    let start = start.unwrap_or_else(|| vec![1.0; supply.len()]);
    let mut auctioneer = Auctioneer::with_prices(supply, ids, config, start, Time(0))?;
    loop {
        let (round, prices) = (auctioneer.round(), auctioneer.prices().to_vec());
        for (i, c) in consumers.iter().enumerate() {
            // Demands that come out non-finite (a zero price) are refused and count as absent.
            let _ = auctioneer.submit(
                Time(round as u64),
                AgentId(i as u64),
                round,
                c.excess_demand(&prices),
            );
        }
        if let Some(outcome) = auctioneer.end_round(Time(round as u64)) {
            return Ok(outcome);
        }
        // The consumers here read prices directly; dropping the notices keeps memory flat.
        auctioneer.drain_outbox();
    }
}
