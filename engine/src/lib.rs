//! Foundation's node: the deterministic core that runs one node's protocols, and the edges that
//! connect it to the world — discovery, configuration, HTTP — plus the tokio runtime that drives it.

/// Whether the test-only fault switch `fault_switch::FaultSwitch::$variant` is on. Always `false`
/// (a constant the compiler removes) unless the engine is built with the `fault-injection`
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

pub mod config;
pub mod core;
pub mod discovery;
pub mod effects;
pub mod ephemeral;
#[cfg(feature = "fault-injection")]
pub mod fault_switch;
pub mod http;
pub mod membership;
pub mod replication;
pub mod runtime;
pub mod services;
pub mod storage;
pub mod time;

pub use crate::core::{Command, Core, CoreConfig, CoreMessage, Input, WriteError};
pub use effects::{Effect, Event, Timer};
