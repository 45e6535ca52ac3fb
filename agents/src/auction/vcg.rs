//! Combinatorial auction with exact winner determination and VCG payments.
//!
//! Bidders submit XOR bids: a list of (bundle, value) pairs of which at most one may win. Winner
//! determination maximises reported welfare exactly by dynamic programming over item subsets: with
//! `f[i][S]` the best welfare of bidders `0..i` using items inside `S`,
//! `f[i+1][S] = max(f[i][S], max over bids b of bidder i with b ⊆ S of f[i][S \ b] + v(b))`.
//! That costs `O(bidders · 2^items · bids)`; VCG needs the optimum without each bidder, which a
//! suffix table combined with the stored prefix tables gives in one more pass instead of `n` re-solves.
//! Instances beyond [`VCG_CELLS_MAX`] table cells are refused with [`VcgError::TooLarge`] instead of
//! being approximated, because VCG with an approximate allocation is no longer truthful.
//!
//! Values and payments are [`Money`] (integer minor units). Every table entry is a sum of some
//! bidders' values, so it is at most the sum of each bidder's largest value; [`solve`] checks that
//! bound once and refuses instances beyond it with [`VcgError::Overflow`], after which the
//! arithmetic inside is exact and cannot wrap. (With `f64`, bids near `f64::MAX` made welfare
//! infinite and every Clarke payment `inf - inf`.)

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::error::Rejection;
use crate::telemetry::{Telemetry, TelemetryEvent};
use crate::types::{AgentId, Money, Outgoing, Overflow, Time};

/// Most items an instance may have (bundles are bit masks over items).
pub const VCG_ITEMS_MAX: usize = 20;
/// Most dynamic-programming cells, `(bidders + 1) · 2^items`; 2^23 cells of `u64` is 64 MiB.
pub const VCG_CELLS_MAX: usize = 1 << 23;
/// Most alternatives in one XOR bid.
pub const VCG_BIDS_PER_AGENT_MAX: usize = 256;

/// One alternative of an XOR bid: a set of items (bit `k` set means item `k`) and its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleBid {
    /// Bit mask of the items wanted together.
    pub bundle: u32,
    /// Value of the whole bundle to the bidder, in minor units.
    pub value: Money,
}

/// The instance is too large to solve exactly.
#[derive(Debug, Clone, PartialEq, Eq, Error, Serialize, Deserialize)]
pub enum VcgError {
    /// Too many items or too many bidders for exact winner determination.
    #[error("{items} items and {bidders} bidders exceed the exact solver's limit ({VCG_ITEMS_MAX} items, {VCG_CELLS_MAX} cells); split the auction or bundle items")]
    TooLarge {
        /// Items in the instance.
        items: usize,
        /// Bidders in the instance.
        bidders: usize,
    },
    /// The sum of the bidders' largest values does not fit in [`Money`], so welfare could not be
    /// computed exactly.
    #[error("{0}")]
    Overflow(#[from] Overflow),
}

/// What one bidder receives and pays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct VcgAward {
    /// The bidder.
    pub agent: AgentId,
    /// Bundle won (bit mask).
    pub bundle: u32,
    /// The bidder's reported value of that bundle.
    pub value: Money,
    /// VCG payment: the welfare the others lose because this bidder takes part.
    pub payment: Money,
}

/// Welfare-maximising allocation and VCG payments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VcgSolution {
    /// Total reported value of the allocation.
    pub welfare: Money,
    /// Winners, ordered by agent id; bidders not listed receive nothing and pay nothing.
    pub awards: Vec<VcgAward>,
}

/// Validated XOR bids of every bidder, ordered by agent id.
pub type XorBids = BTreeMap<AgentId, Vec<BundleBid>>;

/// Solves an instance exactly: welfare-maximising allocation, then VCG payments.
pub fn solve(items: usize, bids: &XorBids) -> Result<VcgSolution, VcgError> {
    let bidders: Vec<(&AgentId, &Vec<BundleBid>)> = bids.iter().collect();
    let too_large = VcgError::TooLarge {
        items,
        bidders: bidders.len(),
    };
    if items > VCG_ITEMS_MAX {
        return Err(too_large);
    }
    let masks = 1usize << items;
    if masks.saturating_mul(bidders.len() + 1) > VCG_CELLS_MAX {
        return Err(too_large);
    }
    welfare_bound(bids.values().map(Vec::as_slice))?;
    let mut prefix = vec![vec![0u64; masks]];
    for (_, alternatives) in &bidders {
        let next = add_bidder(prefix.last().map_or(&[][..], |v| v), alternatives);
        prefix.push(next);
    }
    let full = masks - 1;
    let welfare = Money(prefix[bidders.len()][full]);
    let bundles = reconstruct(&prefix, &bidders, full);
    let without = welfare_without_each(&prefix, &bidders, full);
    let awards = bidders
        .iter()
        .zip(bundles)
        .zip(without)
        .filter_map(|(((agent, _), won), w_without)| {
            let (bundle, value) = won?;
            // Exact: the others' best without this bidder is at least what they get with it, and
            // `value` is part of `welfare`, so neither subtraction goes below zero.
            let others_with = welfare.0.saturating_sub(value.0);
            let payment = Money(w_without.saturating_sub(others_with));
            Some(VcgAward {
                agent: **agent,
                bundle,
                value,
                payment,
            })
        })
        .collect();
    Ok(VcgSolution { welfare, awards })
}

/// One DP layer: the best welfare within each mask after adding one bidder's XOR bid.
/// The largest welfare any allocation can reach: the sum of each bidder's largest value.
fn welfare_bound<'a>(bids: impl Iterator<Item = &'a [BundleBid]>) -> Result<Money, Overflow> {
    Money::checked_sum(bids.map(|alts| alts.iter().map(|b| b.value).max().unwrap_or_default()))
}

/// One DP layer: the best welfare within each mask after adding one bidder's XOR bid. Entries
/// stay within [`welfare_bound`], which `solve` checked fits, so `+` cannot wrap.
fn add_bidder(previous: &[u64], alternatives: &[BundleBid]) -> Vec<u64> {
    let mut next = previous.to_vec();
    for (mask, best) in next.iter_mut().enumerate() {
        let mask = mask as u32;
        for bid in alternatives {
            if bid.bundle & !mask == 0 {
                let candidate = previous[(mask ^ bid.bundle) as usize] + bid.value.0;
                if candidate > *best {
                    *best = candidate;
                }
            }
        }
    }
    next
}

/// Walks the prefix tables back from the full set to find which alternative each bidder won.
fn reconstruct(
    prefix: &[Vec<u64>],
    bidders: &[(&AgentId, &Vec<BundleBid>)],
    full: usize,
) -> Vec<Option<(u32, Money)>> {
    let mut won = vec![None; bidders.len()];
    let mut mask = full as u32;
    for i in (0..bidders.len()).rev() {
        let target = prefix[i + 1][mask as usize];
        if target == prefix[i][mask as usize] {
            continue;
        }
        // Same arithmetic as `add_bidder`, so the winning alternative matches bit for bit.
        let chosen = bidders[i].1.iter().find(|bid| {
            bid.bundle & !mask == 0
                && prefix[i][(mask ^ bid.bundle) as usize] + bid.value.0 == target
        });
        debug_assert!(chosen.is_some(), "DP table inconsistent");
        if let Some(bid) = chosen {
            won[i] = Some((bid.bundle, bid.value));
            mask ^= bid.bundle;
        }
    }
    won
}

/// Optimal welfare with each bidder removed: max over S of prefix(<i)[S] + suffix(>i)[complement].
fn welfare_without_each(
    prefix: &[Vec<u64>],
    bidders: &[(&AgentId, &Vec<BundleBid>)],
    full: usize,
) -> Vec<u64> {
    let mut suffix = vec![0u64; full + 1];
    let mut without = vec![0u64; bidders.len()];
    for i in (0..bidders.len()).rev() {
        without[i] = (0..=full)
            .map(|mask| prefix[i][mask] + suffix[full ^ mask])
            .max()
            .unwrap_or(0);
        suffix = add_bidder(&suffix, bidders[i].1);
    }
    without
}

/// Checks one XOR bid against the instance; duplicates of a bundle are refused.
pub fn validate_xor_bid(items: usize, alternatives: &[BundleBid]) -> Result<(), Rejection> {
    if alternatives.is_empty() || alternatives.len() > VCG_BIDS_PER_AGENT_MAX {
        let what = format!(
            "{} alternatives, allowed 1..={VCG_BIDS_PER_AGENT_MAX}",
            alternatives.len()
        );
        return Err(Rejection::InvalidQuantity { what });
    }
    let allowed = if items >= 32 {
        u32::MAX
    } else {
        (1u32 << items) - 1
    };
    let mut seen = BTreeSet::new();
    for bid in alternatives {
        if bid.bundle == 0 || bid.bundle & !allowed != 0 || !seen.insert(bid.bundle) {
            let what = format!("bundle {:#b} is empty, unknown or repeated", bid.bundle);
            return Err(Rejection::InvalidReference { what });
        }
    }
    Ok(())
}

/// What a bidder sends to a combinatorial auction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum VcgMessage {
    /// An XOR bid: at most one of `bundles` may win. One per bidder.
    Bid {
        /// The alternatives, each a bundle and its value.
        bundles: Vec<BundleBid>,
    },
}

/// What a combinatorial auction tells each bidder once it decides.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum VcgNotice {
    /// You receive `bundle` and pay `payment`.
    Won {
        /// Bundle won (bit mask).
        bundle: u32,
        /// VCG payment.
        payment: Money,
    },
    /// You receive nothing and pay nothing.
    Lost,
    /// The auction could not be solved exactly; nothing is allocated.
    Cancelled {
        /// Why, for the bidder's log.
        reason: String,
    },
}

/// A sealed combinatorial auction with VCG pricing, as a state machine.
///
/// Driver order: [`new`](Self::new), [`handle`](Self::handle) per message, then
/// [`handle_timeout`](Self::handle_timeout) at [`poll_timeout`](Self::poll_timeout) (or
/// [`close`](Self::close) when all bids are in); drain the outbox and telemetry afterwards.
#[derive(Debug)]
pub struct CombinatorialAuction {
    name: String,
    items: usize,
    deadline: Time,
    participants: Option<BTreeSet<AgentId>>,
    started_at: Time,
    bids: XorBids,
    outcome: Option<Result<VcgSolution, VcgError>>,
    outbox: Vec<Outgoing<VcgNotice>>,
    telemetry: Telemetry,
}

impl CombinatorialAuction {
    /// Opens an auction of `items` items, closing at `deadline`, open to `participants` (or anyone).
    pub fn new(
        name: impl Into<String>,
        items: usize,
        deadline: Time,
        participants: Option<BTreeSet<AgentId>>,
        now: Time,
    ) -> Self {
        let name = name.into();
        let telemetry = Telemetry::started("vcg", name.clone(), now);
        CombinatorialAuction {
            name,
            items,
            deadline,
            participants,
            started_at: now,
            bids: XorBids::new(),
            outcome: None,
            outbox: Vec::new(),
            telemetry,
        }
    }

    /// Applies a message from `from`; the [`Protocol`](crate::Protocol) entry point.
    pub fn handle(
        &mut self,
        now: Time,
        from: AgentId,
        message: VcgMessage,
    ) -> Result<(), Rejection> {
        match message {
            VcgMessage::Bid { bundles } => self.submit(now, from, bundles),
        }
    }

    /// Offers an XOR bid. A rejected bid leaves the auction unchanged.
    pub fn submit(
        &mut self,
        now: Time,
        agent: AgentId,
        alternatives: Vec<BundleBid>,
    ) -> Result<(), Rejection> {
        let result = self.check(now, agent, &alternatives);
        self.telemetry.input(now, agent, None, &result);
        result?;
        self.bids.insert(agent, alternatives);
        Ok(())
    }

    fn check(&self, now: Time, agent: AgentId, alts: &[BundleBid]) -> Result<(), Rejection> {
        self.check_admission(now, agent)?;
        validate_xor_bid(self.items, alts)?;
        // Refused now rather than at the close, so one bidder cannot void everyone's auction.
        let with_this = self.bids.values().map(Vec::as_slice).chain([alts]);
        welfare_bound(with_this)?;
        Ok(())
    }

    fn check_admission(&self, now: Time, agent: AgentId) -> Result<(), Rejection> {
        if self.outcome.is_some() {
            return Err(Rejection::Closed);
        }
        if now >= self.deadline {
            let deadline = self.deadline;
            return Err(Rejection::Late { at: now, deadline });
        }
        if !self.admits(&agent) {
            return Err(Rejection::NotParticipant { agent });
        }
        if self.bids.contains_key(&agent) {
            return Err(Rejection::Duplicate { agent });
        }
        Ok(())
    }

    fn admits(&self, agent: &AgentId) -> bool {
        self.participants.as_ref().is_none_or(|p| p.contains(agent))
    }

    /// The deadline, while undecided.
    pub fn poll_timeout(&self) -> Option<Time> {
        self.outcome.is_none().then_some(self.deadline)
    }

    /// Decides with the bids received once the deadline has passed.
    pub fn handle_timeout(&mut self, now: Time) -> Option<Result<VcgSolution, VcgError>> {
        match self.outcome {
            None if now >= self.deadline => Some(self.close(now)),
            _ => self.outcome.clone(),
        }
    }

    /// Decides with the bids received (idempotent).
    pub fn close(&mut self, now: Time) -> Result<VcgSolution, VcgError> {
        if let Some(outcome) = &self.outcome {
            return outcome.clone();
        }
        let outcome = solve(self.items, &self.bids);
        let summary = match &outcome {
            Ok(s) => format!(
                "{}: welfare {}, {} winners",
                self.name,
                s.welfare,
                s.awards.len()
            ),
            Err(e) => format!("{}: {e}", self.name),
        };
        self.telemetry.emit(TelemetryEvent::Decided {
            protocol: "vcg",
            summary,
            at: now,
            duration_ms: now.since(self.started_at),
        });
        self.notify(&outcome);
        self.outcome = Some(outcome.clone());
        outcome
    }

    /// Tells every participant (or, in an open auction, every bidder) what it won and pays.
    fn notify(&mut self, outcome: &Result<VcgSolution, VcgError>) {
        let recipients: Vec<AgentId> = match &self.participants {
            Some(p) => p.iter().copied().collect(),
            None => self.bids.keys().copied().collect(),
        };
        for to in recipients {
            let msg = match outcome {
                Err(e) => VcgNotice::Cancelled {
                    reason: e.to_string(),
                },
                Ok(s) => match s.awards.iter().find(|a| a.agent == to) {
                    Some(a) => VcgNotice::Won {
                        bundle: a.bundle,
                        payment: a.payment,
                    },
                    None => VcgNotice::Lost,
                },
            };
            self.outbox.push(Outgoing { to, msg });
        }
    }

    /// Checks internal consistency; tests and the simulator call it after every step.
    pub fn invariants(&self) -> Result<(), String> {
        for (agent, alternatives) in &self.bids {
            if !self.admits(agent) {
                return Err(format!("accepted a bid from outsider {agent}"));
            }
            validate_xor_bid(self.items, alternatives)
                .map_err(|e| format!("stored bid of {agent} is invalid: {e}"))?;
        }
        match &self.outcome {
            Some(Ok(solution)) => self.solution_consistent(solution),
            _ => Ok(()),
        }
    }

    /// Winners bid for what they got, bundles are disjoint, payments lie in [0, value] and the
    /// welfare is the sum of the winners' values.
    fn solution_consistent(&self, solution: &VcgSolution) -> Result<(), String> {
        let mut used = 0u32;
        let mut welfare = Money::ZERO;
        for (i, award) in solution.awards.iter().enumerate() {
            if i > 0 && solution.awards[i - 1].agent >= award.agent {
                return Err("awards are not ordered by agent id".into());
            }
            let bid = self.bids.get(&award.agent).into_iter().flatten();
            if !bid.into_iter().any(|b| {
                *b == BundleBid {
                    bundle: award.bundle,
                    value: award.value,
                }
            }) {
                return Err(format!("{} won a bundle it did not bid for", award.agent));
            }
            if used & award.bundle != 0 {
                return Err(format!("bundle {:#b} overlaps another award", award.bundle));
            }
            if award.payment > award.value {
                return Err(format!("payment {} outside [0, value]", award.payment));
            }
            used |= award.bundle;
            welfare = welfare
                .checked_add(award.value)
                .map_err(|e| e.to_string())?;
        }
        if welfare != solution.welfare {
            return Err(format!(
                "welfare {} is not the sum {welfare}",
                solution.welfare
            ));
        }
        Ok(())
    }

    /// The outcome, once decided.
    pub fn outcome(&self) -> Option<&Result<VcgSolution, VcgError>> {
        self.outcome.as_ref()
    }

    /// Takes the notices for bidders.
    pub fn drain_outbox(&mut self) -> Vec<Outgoing<VcgNotice>> {
        std::mem::take(&mut self.outbox)
    }

    /// Takes the buffered telemetry events.
    pub fn drain_telemetry(&mut self) -> Vec<TelemetryEvent> {
        self.telemetry.drain()
    }
}

crate::protocol::delegate_protocol!(
    CombinatorialAuction,
    message = VcgMessage,
    notice = VcgNotice,
    outcome = Result<VcgSolution, VcgError>
);
