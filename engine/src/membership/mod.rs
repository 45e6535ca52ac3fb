//! Membership: SWIM (foca) over the membership channel, plus push-pull state exchange and
//! Lifeguard-style local health.

pub mod config;

pub use config::{MembershipConfig, MembershipConfigError};
