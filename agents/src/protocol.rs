//! The one shape every mechanism has, so a driver (the engine, the simulator, a test) can run any of
//! them the same way and a later layer can carry their messages between nodes unchanged.
//!
//! - [`Protocol::handle`]: one inbound [`Protocol::Message`] from one agent at `now`; refused
//!   messages return a [`Rejection`] and change nothing;
//! - [`Protocol::poll_timeout`] / [`Protocol::handle_timeout`]: the next instant the machine wants to
//!   be woken, and the wake-up itself (deadlines, clock ticks, round ends);
//! - [`Protocol::drain_outbox`] and [`Protocol::drain_telemetry`]: what the machine produced;
//! - [`Protocol::invariants`]: internal consistency, checked by tests after every step.
//!
//! Messages and notices are serde types. The sender is never part of a message: `from` is whoever
//! the transport authenticated, so an agent cannot bid in another agent's name by writing its id
//! into the payload.

use std::fmt::Debug;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::Rejection;
use crate::telemetry::TelemetryEvent;
use crate::types::{AgentId, Outgoing, Time};

/// A coordination mechanism as a deterministic state machine.
pub trait Protocol {
    /// What an agent sends to the machine.
    type Message: Serialize + DeserializeOwned + Clone + Debug;
    /// What the machine sends to agents.
    type Notice: Serialize + DeserializeOwned + Clone + Debug;
    /// The decision record.
    type Outcome: Clone + Debug;

    /// Applies one message from `from` at `now`. A rejection leaves the machine unchanged.
    fn handle(&mut self, now: Time, from: AgentId, message: Self::Message)
        -> Result<(), Rejection>;
    /// When the driver should call [`handle_timeout`](Self::handle_timeout) next, if ever.
    fn poll_timeout(&self) -> Option<Time>;
    /// Acts on every deadline that has passed at `now`; returns the outcome once decided.
    fn handle_timeout(&mut self, now: Time) -> Option<Self::Outcome>;
    /// The outcome, once decided.
    fn outcome(&self) -> Option<&Self::Outcome>;
    /// Checks internal consistency; `Err` names the broken invariant.
    fn invariants(&self) -> Result<(), String>;
    /// Takes the notices for agents produced so far.
    fn drain_outbox(&mut self) -> Vec<Outgoing<Self::Notice>>;
    /// Takes the buffered telemetry events.
    fn drain_telemetry(&mut self) -> Vec<TelemetryEvent>;
}

/// Implements [`Protocol`] for a machine whose inherent methods already have the trait's names, so
/// the inherent API (usable without importing the trait) and the trait cannot drift apart.
macro_rules! delegate_protocol {
    ($ty:ty, message = $msg:ty, notice = $notice:ty, outcome = $outcome:ty) => {
        impl $crate::protocol::Protocol for $ty {
            type Message = $msg;
            type Notice = $notice;
            type Outcome = $outcome;

            fn handle(
                &mut self,
                now: $crate::types::Time,
                from: $crate::types::AgentId,
                message: $msg,
            ) -> Result<(), $crate::error::Rejection> {
                <$ty>::handle(self, now, from, message)
            }

            fn poll_timeout(&self) -> Option<$crate::types::Time> {
                <$ty>::poll_timeout(self)
            }

            fn handle_timeout(&mut self, now: $crate::types::Time) -> Option<$outcome> {
                <$ty>::handle_timeout(self, now)
            }

            fn outcome(&self) -> Option<&$outcome> {
                <$ty>::outcome(self)
            }

            fn invariants(&self) -> Result<(), String> {
                <$ty>::invariants(self)
            }

            fn drain_outbox(&mut self) -> Vec<$crate::types::Outgoing<$notice>> {
                <$ty>::drain_outbox(self)
            }

            fn drain_telemetry(&mut self) -> Vec<$crate::telemetry::TelemetryEvent> {
                <$ty>::drain_telemetry(self)
            }
        }
    };
}

pub(crate) use delegate_protocol;
