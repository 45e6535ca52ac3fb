//! Foundation's node: the deterministic core that runs one node's protocols, and the edges that
//! connect it to the world — discovery, configuration, HTTP — plus the tokio runtime that drives it.

pub mod config;
pub mod core;
pub mod discovery;
pub mod effects;
pub mod ephemeral;
pub mod http;
pub mod membership;
pub mod replication;
pub mod runtime;
pub mod services;
pub mod storage;
pub mod time;

pub use crate::core::{Command, Core, CoreConfig, CoreMessage, Input, WriteError};
pub use effects::{Effect, Event, Timer};
