//! MABEAM agents on the cluster — the deterministic parts: what the directory stores about an
//! agent ([`record`]), the directory every node builds from the replicated `agents` keyspace
//! ([`directory`]), and what messages between agents look like on the wire ([`wire`]). The
//! engine's runtime (`foundation_engine::runtime::agents`) runs the agents, supervises them
//! with `foundation_agents::supervisor`, and carries their messages.

pub mod directory;
pub mod record;
pub mod wire;

pub use directory::{AgentDirectory, AgentEntry};
pub use record::{AgentRecord, AgentState, BadAgent};
pub use wire::DeliveryError;
