//! The services layer's deterministic building blocks: topics, balancing, breakers, rate limits, tracing.

pub mod balance;
pub mod breaker;
pub mod rate_limit;
pub mod topic;
pub mod trace;
