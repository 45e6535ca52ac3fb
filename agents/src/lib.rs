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
//! Every input an agent sends is validated first: bids over budget, duplicates, outsiders, late
//! arrivals and amounts whose arithmetic would overflow are refused with a [`Rejection`] that leaves
//! the machine exactly as it was. Ties are broken by arrival order, then by [`AgentId`].
//!
//! Prices and payments of auctions and Contract Net are [`Money`]: integer minor units, so no
//! decision depends on binary floating-point rounding and a NaN or negative amount cannot even be
//! written. Still `f64`: the double auction's limits, tatonnement's relative prices, negotiation
//! offers, votes' weights and the game-theoretic solutions (they are real-valued by nature).
//!
//! Silence is not agreement: a machine never reports consensus or convergence from a round in
//! which participants did not answer; outcomes count who answered (`bids_considered`, `absent`,
//! `answered`).
//!
//! A typical driver loop for a sealed-bid auction:
//!
//! ```
//! use foundation_agents::{AgentId, Money, Time};
//! use foundation_agents::auction::sealed::{SealedBidAuction, SealedConfig, Pricing};
//!
//! let config = SealedConfig::new("gpu-slot", Pricing::SecondPrice)
//!     .reserve(Money(1_000)) // in cents
//!     .deadline(Time(1_000))
//!     .participants([AgentId(1), AgentId(2), AgentId(3)]);
//! let mut auction = SealedBidAuction::new(config, Time(0)).expect("valid config");
//! auction.submit(Time(10), AgentId(1), Money(3_000)).expect("accepted");
//! auction.submit(Time(20), AgentId(2), Money(2_550)).expect("accepted");
//! // A bid from an agent that is not a participant is rejected with a reason and changes nothing.
//! assert!(auction.submit(Time(30), AgentId(9), Money(9_999)).is_err());
//! let outcome = auction.close(Time(1_000));
//! let award = outcome.award.expect("someone won");
//! assert_eq!(award.winner, AgentId(1));
//! assert_eq!(award.price, Money(2_550));
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
pub use types::{AgentId, Money, Outgoing, Overflow, Time};
