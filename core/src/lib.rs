//! Foundation's core: every protocol of one node as a deterministic state machine — membership,
//! replication, ephemeral entries, services and MABEAM variables — and the types they share (node identity,
//! addresses, channels). Nothing here does I/O, reads a clock or spawns a task: time, randomness
//! and bytes come in as arguments, and what a machine wants done comes out as effects.
//!
//! Two drivers run [`Core`]: the engine's tokio runtime over the QUIC transport, and the
//! simulator's `World` with a virtual clock and a faulty network. A protocol bug is therefore
//! found by a seed, and a seed reproduces it.

#![warn(missing_docs)]

/// Whether the test-only fault switch `fault_switch::FaultSwitch::$variant` is on. Always `false`
/// (a constant the compiler removes) unless the core is built with the `fault-injection`
/// feature, which only the simulator's tests turn on. Defined before the modules so every one of
/// them can use it.
macro_rules! fault_on {
    ($variant:ident) => {{
        #[cfg(feature = "fault-injection")]
        let on = $crate::fault_switch::is_on($crate::fault_switch::FaultSwitch::$variant);
        #[cfg(not(feature = "fault-injection"))]
        let on = false;
        on
    }};
}

pub mod agents;
pub mod cache;
pub mod channel;
pub mod effects;
pub mod envelope;
pub mod ephemeral;
#[cfg(feature = "fault-injection")]
pub mod fault_switch;
pub mod federation;
pub mod identity;
pub mod membership;
pub mod node;
pub mod packed_map;
pub mod placement;
pub mod replication;
pub mod services;
pub mod storage;
pub mod time;
pub mod timers;
pub mod vars;

pub use channel::{Channel, ChannelLimits, MEMBERSHIP_DATAGRAM_MAX};
pub use effects::{Effect, Event, Timer};
pub use identity::{ClusterName, NodeAddr, NodeId, ParseNodeIdError};
pub use node::{Command, Core, CoreConfig, CoreMessage, ForceLeft, Input, WriteError};
