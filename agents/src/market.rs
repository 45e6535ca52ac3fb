//! Markets: a call market (double auction) and Walrasian tatonnement.

pub mod double;
pub mod tatonnement;
