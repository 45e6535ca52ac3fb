//! Auctions: sealed-bid (first and second price), English, Dutch and combinatorial (VCG).
//!
//! Every auction is a state machine: bids come in with `now`, deadlines are fired by the driver, the
//! outcome is an [`AuctionOutcome`] record that says who won, at what price and why.

pub mod dutch;
pub mod english;
pub mod sealed;
pub mod vcg;

use serde::{Deserialize, Serialize};

pub use crate::types::Outgoing;
use crate::types::{AgentId, Money, Time};

/// The sale of a single item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Award {
    /// Who receives the item.
    pub winner: AgentId,
    /// What the winner pays, in minor units.
    pub price: Money,
    /// The winner's own bid (its last accepted price in clock auctions).
    pub winning_bid: Money,
}

/// Why an auction ended the way it did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AuctionReason {
    /// The highest bid won and paid its own bid.
    HighestBidPaysOwnBid,
    /// The highest bid won and paid the larger of the second-highest bid and the reserve.
    HighestBidPaysSecondPriceOrReserve,
    /// Several bids tied for the top; the earliest submission (then the lowest id) won.
    TieBrokenByArrivalThenId,
    /// The clock rose until at most one bidder remained active.
    LastActiveBidder,
    /// Every remaining bidder dropped in the same round; the one that confirmed the previous price
    /// earliest won at that price.
    AllDroppedTogether,
    /// The first bidder to accept the falling clock's price won at that price.
    FirstToAcceptFallingPrice,
    /// No bids arrived before the deadline.
    NoBids,
    /// No bid reached the reserve price.
    BelowReserve,
    /// The falling clock reached its floor with no acceptance.
    ClockExhausted,
}

/// The record of a decided single-item auction.
///
/// Prices are [`Money`]: integer minor units, so the price a winner pays is the same on every node
/// and no bid near the top of the range turns into an infinity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuctionOutcome {
    /// Name of the auctioned resource.
    pub item: String,
    /// The sale, if any.
    pub award: Option<Award>,
    /// Why.
    pub reason: AuctionReason,
    /// How many valid bids (or clock responses) were considered.
    pub bids_considered: usize,
    /// When the decision was taken.
    pub decided_at: Time,
}

impl AuctionOutcome {
    /// One line for logs and telemetry.
    pub fn summary(&self) -> String {
        match &self.award {
            Some(a) => format!(
                "{} won {} at {} ({:?})",
                a.winner, self.item, a.price, self.reason
            ),
            None => format!("{} not sold ({:?})", self.item, self.reason),
        }
    }
}

/// Notice sent to bidders when a single-item auction decides.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ResultNotice {
    /// You won and pay this price.
    Won {
        /// The price to pay.
        price: Money,
    },
    /// You did not win.
    Lost,
}

/// Builds the notices for every participant once an award (or none) is known.
pub(crate) fn result_notices(
    participants: impl Iterator<Item = AgentId>,
    award: Option<&Award>,
) -> Vec<Outgoing<ResultNotice>> {
    participants
        .map(|to| {
            let msg = match award {
                Some(a) if a.winner == to => ResultNotice::Won { price: a.price },
                _ => ResultNotice::Lost,
            };
            Outgoing { to, msg }
        })
        .collect()
}
