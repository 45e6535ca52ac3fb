//! Services: the registry of service instances, pub/sub and RPC routing — the deterministic
//! parts. The engine's runtime handles (`foundation_engine::runtime::services`) drive them with tokio and QUIC.

pub mod admission;
pub mod balance;
pub mod breaker;
pub mod directory;
pub mod outbox;
pub mod rate_limit;
pub mod record;
pub mod registry;
pub mod reliable;
pub mod router;
pub mod topic;
pub mod trace;
pub mod wire;

pub use directory::{Directory, DirectoryChanges, Instance, InstanceId, Interest};
pub use record::{BadServiceName, Health, InstanceRecord, Target};
