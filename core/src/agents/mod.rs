//! MABEAM agents on the cluster — the deterministic parts: what the directory stores about an
//! agent ([`record`]), the directory every node builds from the replicated `agents` keyspace
//! ([`directory`]), the supervisor machine that decides restarts ([`supervisor`]), where a
//! message to an agent goes and whether it is taken ([`route`]), the caller's table of
//! requests awaiting answers ([`requests`]), coordination sessions between agents ([`sessions`]), and what messages between agents look like on the
//! wire ([`wire`]). The engine's runtime (`foundation_engine::runtime::agents`) runs real
//! agents under these machines and carries their messages; the simulator (`foundation-sim`'s
//! `agents` module) runs simulated ones under the same machines.

pub mod directory;
pub mod record;
pub mod requests;
pub mod route;
pub mod sessions;
pub mod supervisor;
pub mod wire;

pub use directory::{AgentDirectory, AgentEntry};
pub use record::{AgentRecord, AgentState, BadAgent, Health};
pub use wire::DeliveryError;
