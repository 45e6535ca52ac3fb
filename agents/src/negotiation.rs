//! Negotiation: alternating offers with time-dependent concession, and Contract Net.

pub mod alternating;
pub mod contract_net;
pub mod strategy;
