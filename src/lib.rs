//! Foundation: an embeddable engine for clustered services and multi-agent systems.
//!
//! Today this crate re-exports the transport, the CRDTs and the MABEAM mechanisms, and hosts the `foundation` command; the node,
//! replicated state and services land here as they are built (see the README's status table).

pub use foundation_agents as agents;
pub use foundation_crdt as crdt;
pub use foundation_transport as transport;

pub mod demo;
