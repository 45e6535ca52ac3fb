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

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::error::Rejection;
use crate::telemetry::{Telemetry, TelemetryEvent};
use crate::types::{validate_amount, AgentId, Time};

/// Most items an instance may have (bundles are bit masks over items).
pub const VCG_ITEMS_MAX: usize = 20;
/// Most dynamic-programming cells, `(bidders + 1) · 2^items`; 2^23 cells of `f64` is 64 MiB.
pub const VCG_CELLS_MAX: usize = 1 << 23;
/// Most alternatives in one XOR bid.
pub const VCG_BIDS_PER_AGENT_MAX: usize = 256;

/// One alternative of an XOR bid: a set of items (bit `k` set means item `k`) and its value.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BundleBid {
    /// Bit mask of the items wanted together.
    pub bundle: u32,
    /// Value of the whole bundle to the bidder.
    pub value: f64,
}

/// The instance is too large to solve exactly.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum VcgError {
    /// Too many items or too many bidders for exact winner determination.
    #[error("{items} items and {bidders} bidders exceed the exact solver's limit ({VCG_ITEMS_MAX} items, {VCG_CELLS_MAX} cells); split the auction or bundle items")]
    TooLarge {
        /// Items in the instance.
        items: usize,
        /// Bidders in the instance.
        bidders: usize,
    },
}

/// What one bidder receives and pays.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct VcgAward {
    /// The bidder.
    pub agent: AgentId,
    /// Bundle won (bit mask).
    pub bundle: u32,
    /// The bidder's reported value of that bundle.
    pub value: f64,
    /// VCG payment: the welfare the others lose because this bidder takes part.
    pub payment: f64,
}

/// Welfare-maximising allocation and VCG payments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VcgSolution {
    /// Total reported value of the allocation.
    pub welfare: f64,
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
    let mut prefix = vec![vec![0.0; masks]];
    for (_, alternatives) in &bidders {
        let next = add_bidder(prefix.last().map_or(&[][..], |v| v), alternatives);
        prefix.push(next);
    }
    let full = masks - 1;
    let welfare = prefix[bidders.len()][full];
    let bundles = reconstruct(&prefix, &bidders, full);
    let without = welfare_without_each(&prefix, &bidders, full);
    let awards = bidders
        .iter()
        .zip(bundles)
        .zip(without)
        .filter_map(|(((agent, _), won), w_without)| {
            let (bundle, value) = won?;
            // Rounding can push the Clarke term a hair outside [0, value]; theory says it cannot.
            let payment = (w_without - (welfare - value)).clamp(0.0, value);
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
fn add_bidder(previous: &[f64], alternatives: &[BundleBid]) -> Vec<f64> {
    let mut next = previous.to_vec();
    for (mask, best) in next.iter_mut().enumerate() {
        let mask = mask as u32;
        for bid in alternatives {
            if bid.bundle & !mask == 0 {
                let candidate = previous[(mask ^ bid.bundle) as usize] + bid.value;
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
    prefix: &[Vec<f64>],
    bidders: &[(&AgentId, &Vec<BundleBid>)],
    full: usize,
) -> Vec<Option<(u32, f64)>> {
    let mut won = vec![None; bidders.len()];
    let mut mask = full as u32;
    for i in (0..bidders.len()).rev() {
        let target = prefix[i + 1][mask as usize];
        if target == prefix[i][mask as usize] {
            continue;
        }
        // Same arithmetic as `add_bidder`, so the winning alternative matches bit for bit.
        let chosen = bidders[i].1.iter().find(|bid| {
            bid.bundle & !mask == 0 && prefix[i][(mask ^ bid.bundle) as usize] + bid.value == target
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
    prefix: &[Vec<f64>],
    bidders: &[(&AgentId, &Vec<BundleBid>)],
    full: usize,
) -> Vec<f64> {
    let mut suffix = vec![0.0; full + 1];
    let mut without = vec![0.0; bidders.len()];
    for i in (0..bidders.len()).rev() {
        without[i] = (0..=full)
            .map(|mask| prefix[i][mask] + suffix[full ^ mask])
            .fold(0.0, f64::max);
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
    let mut seen = std::collections::BTreeSet::new();
    for bid in alternatives {
        validate_amount(bid.value)?;
        if bid.bundle == 0 || bid.bundle & !allowed != 0 || !seen.insert(bid.bundle) {
            let what = format!("bundle {:#b} is empty, unknown or repeated", bid.bundle);
            return Err(Rejection::InvalidReference { what });
        }
    }
    Ok(())
}

/// A sealed combinatorial auction with VCG pricing, as a state machine.
///
/// Driver order: [`new`](Self::new), [`submit`](Self::submit) per XOR bid, then
/// [`close`](Self::close) at the deadline; drain telemetry afterwards.
#[derive(Debug)]
pub struct CombinatorialAuction {
    name: String,
    items: usize,
    deadline: Time,
    participants: Option<std::collections::BTreeSet<AgentId>>,
    started_at: Time,
    bids: XorBids,
    outcome: Option<Result<VcgSolution, VcgError>>,
    telemetry: Telemetry,
}

impl CombinatorialAuction {
    /// Opens an auction of `items` items, closing at `deadline`, open to `participants` (or anyone).
    pub fn new(
        name: impl Into<String>,
        items: usize,
        deadline: Time,
        participants: Option<std::collections::BTreeSet<AgentId>>,
        now: Time,
    ) -> Self {
        let name = name.into();
        let mut telemetry = Telemetry::default();
        telemetry.emit(TelemetryEvent::Started {
            protocol: "vcg",
            instance: name.clone(),
            at: now,
        });
        CombinatorialAuction {
            name,
            items,
            deadline,
            participants,
            started_at: now,
            bids: XorBids::new(),
            outcome: None,
            telemetry,
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
        if self.outcome.is_some() {
            return Err(Rejection::Closed);
        }
        if now >= self.deadline {
            let deadline = self.deadline;
            return Err(Rejection::Late { at: now, deadline });
        }
        if self
            .participants
            .as_ref()
            .is_some_and(|p| !p.contains(&agent))
        {
            return Err(Rejection::NotParticipant { agent });
        }
        if self.bids.contains_key(&agent) {
            return Err(Rejection::Duplicate { agent });
        }
        validate_xor_bid(self.items, alts)
    }

    /// Decides with the bids received (idempotent).
    pub fn close(&mut self, now: Time) -> Result<VcgSolution, VcgError> {
        if let Some(outcome) = &self.outcome {
            return outcome.clone();
        }
        let outcome = solve(self.items, &self.bids);
        let summary = match &outcome {
            Ok(s) => format!(
                "{}: welfare {:.4}, {} winners",
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
        self.outcome = Some(outcome.clone());
        outcome
    }

    /// Takes the buffered telemetry events.
    pub fn drain_telemetry(&mut self) -> Vec<TelemetryEvent> {
        self.telemetry.drain()
    }
}
