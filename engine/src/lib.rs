//! Foundation's node: the tokio runtime that drives the core's protocols (`foundation-core`) over
//! the QUIC transport, and the edges that connect it to the world — discovery, configuration
//! sources, durable storage, HTTP.

#![warn(missing_docs)]

pub mod config;
pub mod discovery;
pub mod http;
pub mod runtime;
pub mod storage;

// The protocols this node drives, under the paths an embedding application already uses.
pub use foundation_core::{
    effects, ephemeral, federation, membership, node, placement, replication, services, time, vars,
    Command, Core, CoreConfig, CoreMessage, Effect, Event, ForceLeft, Input, Timer, WriteError,
};
