//! Foundation's deterministic simulator.
//!
//! Many real [`foundation_engine::Core`]s — the same code that ships — run on one virtual clock
//! over a seeded, faulty network, all on one thread. A scenario says what happens when
//! (partitions, stalls, crashes, restarts, clock skew, a worse network); invariants are checked
//! as the run goes; and the whole run is reproduced, byte for byte, from its seed.
//!
//! - [`world::World`]: the cores, the clock, the event queue and the network.
//! - [`network`]: the network model (datagrams and QUIC-like streams).
//! - [`faults::Fault`]: what a scenario can do, writes to replicated keyspaces included
//!   ([`writes`]).
//! - [`scenario::Scenario`]: the builder, the TOML file format and the standard scenarios.
//! - [`invariants`]: what is checked, and the trait to add a check.
//! - [`services`]: what each node's application registers in the service registry.
//! - [`sweep`]: many seeds on every core.
//! - [`cli`]: the entry point behind `foundation sim`.

pub mod cli;
pub mod clock;
pub mod faults;
pub mod invariants;
pub mod network;
pub mod report;
pub mod scenario;
pub mod services;
pub mod sweep;
pub mod trace;
pub mod world;
pub mod writes;
