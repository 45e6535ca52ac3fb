//! # foundation-agents: MABEAM coordination mechanisms
//!
//! Agents coordinate shared resources and variables through real mechanisms: auctions, markets,
//! negotiation, voting, bargaining and Shapley values. Every protocol here is a deterministic state
//! machine (see DESIGN.md, "the one rule"):
//!
//! - input: `now` (a [`Time`] chosen by the driver) and one event: a message from an agent, a deadline
//!   the driver observed, or a command;
//! - output: messages to send, an outcome record saying what was decided and why, and
//!   [`telemetry::TelemetryEvent`]s the driver drains;
//! - no clock, sockets, global state or hash-map iteration order inside; randomness comes in as a seeded
//!   RNG.
//!
//! | module | mechanisms |
//! |---|---|
//! | [`auction`] | sealed-bid first-price and Vickrey, English (rising clock, activity rule), Dutch (falling clock), combinatorial with exact VCG |
//! | [`market`] | call market / double auction (uniform price, McAfee trade reduction), Walrasian tatonnement |
//! | [`negotiation`] | alternating offers with Boulware/Conceder and Rubinstein strategies, Contract Net |
//! | [`voting`] | plurality, Borda, approval, Schulze; weights, quorum, deadlines |
//! | [`game`] | Nash bargaining (2 players; n players over outcomes; 3 over lotteries), Shapley value (exact and sampled) |
//! | [`learning`] | epsilon-greedy and multiplicative-weights bidders and negotiators, repeated rounds |
//! | [`variable`] | typed, constrained variable values (ranges, choices, bools, records) and their conflict policies: the check every value passes |
//! | [`cas`] | compare-and-set on a versioned value, one Paxos instance per version among a fixed member set: exactly one of concurrent writers wins |
//!
//! Every machine implements [`Protocol`]: serde messages in through `handle(now, from, message)`,
//! `poll_timeout`/`handle_timeout` for deadlines, notices and telemetry out, and `invariants()`.
//!
//! Every input an agent sends is validated first: NaN, infinite or negative amounts, bids over
//! budget, duplicates, outsiders and late arrivals are refused with a [`Rejection`] that leaves the
//! machine exactly as it was. Ties are broken by arrival order, then by [`AgentId`].
//!
//! A typical driver loop for a sealed-bid auction:
//!
//! ```
//! use foundation_agents::{AgentId, Time};
//! use foundation_agents::auction::sealed::{SealedBidAuction, SealedConfig, Pricing};
//!
//! let config = SealedConfig::new("gpu-slot", Pricing::SecondPrice)
//!     .reserve(10.0)
//!     .deadline(Time(1_000))
//!     .participants([AgentId(1), AgentId(2), AgentId(3)]);
//! let mut auction = SealedBidAuction::new(config, Time(0)).expect("valid config");
//! auction.submit(Time(10), AgentId(1), 30.0).expect("accepted");
//! auction.submit(Time(20), AgentId(2), 25.0).expect("accepted");
//! // A bid with NaN is rejected with a reason and changes nothing.
//! assert!(auction.submit(Time(30), AgentId(3), f64::NAN).is_err());
//! let outcome = auction.close(Time(1_000));
//! let award = outcome.award.expect("someone won");
//! assert_eq!(award.winner, AgentId(1));
//! assert_eq!(award.price, 25.0);
//! let events = auction.drain_telemetry();
//! assert!(!events.is_empty());
//! ```
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod auction;
pub mod cas;
pub mod error;
pub mod game;
pub mod learning;
pub mod market;
pub mod negotiation;
pub mod protocol;
pub mod telemetry;
pub mod types;
pub mod variable;
pub mod voting;

pub use error::Rejection;
pub use protocol::Protocol;
pub use types::{AgentId, Outgoing, Time};
