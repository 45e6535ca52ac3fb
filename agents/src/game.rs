//! Cooperative game theory: the Nash bargaining solution and the Shapley value.

pub mod nash;
pub mod nash_n;
pub mod shapley;
