//! Deterministic building blocks of the services layer: topics, balancing, breakers, limits, traces.

pub mod balance;
pub mod breaker;
pub mod rate_limit;
pub mod topic;
pub mod trace;
