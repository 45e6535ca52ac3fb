//! Coordination sessions — the deterministic part: one of the `foundation_agents` mechanisms
//! run between agents of the cluster, and its outcome committed to a ledger once.
//!
//! - [`mechanism`]: what a session decides ([`Mechanism`]), what participants are asked
//!   ([`Ask`]) and answer ([`Answer`]), and what it decided ([`Decision`]).
//! - [`mechanic`]: each mechanism as the `Protocol` machine that decides it ([`open`]).
//! - [`driver`]: the sans-IO driver of that machine ([`SessionDriver`]): rounds of asks,
//!   answers validated (or refused with the reason) and fed to the machine at their arrival
//!   time, deadlines as timeouts, the decision.
//! - [`place`]: which node coordinates a placed session (rendezvous hashing).
//! - [`ledger`]: what a decision writes to a ledger, and the settle rule that gives a session
//!   exactly one outcome there (committed, or aborted by whoever finds its coordinator lost).
//!
//! Time is an input (milliseconds since the session opened, on the carrier's clock), and no
//! I/O happens here. Two carriers run these machines: the engine's runtime
//! (`foundation_engine::runtime::agents::sessions`: agent requests over QUIC, tokio timers,
//! `commit_outcome` through the node's driver) and the simulator (`foundation-sim`'s
//! `sessions` module: simulated agents on simulated nodes, under loss, partitions and crashes).
//!
//! Why here: the core already depends on `foundation-agents` (its variables use the agents'
//! `VarType` and `CasOutcome`, `cargo tree -p foundation-core` shows the edge), and the agents
//! crate knows nothing of the cluster (sessions, ledgers, agent names), so the seam is the
//! mechanisms' own `Protocol` trait: the machines stay in `foundation-agents` as they are, and
//! what drives them between agents of a cluster lives with the rest of the cluster's machines.

pub mod driver;
pub mod ledger;
pub mod mechanic;
pub mod mechanism;
pub mod place;

#[cfg(test)]
mod tests;

pub use driver::{Acked, AskOut, Drove, Heard, SessionDriver, LATE_GRACE_MS};
pub use ledger::{
    abort, ledger_outcome, Attempts, Commit, CommitState, Landing, Proposed, Settled,
    COMMIT_ATTEMPTS,
};
pub use mechanic::open;
pub use mechanism::{Answer, Ask, Decision, Mechanism, SessionAnswer};
