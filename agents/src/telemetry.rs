//! Telemetry as values: machines record events, drivers drain and export them.
//!
//! There is no global registry here: the simulator runs many nodes in one process, so each machine owns
//! its buffer and the driver decides where events go (metrics, logs, a trace hash).

use serde::{Deserialize, Serialize};

use crate::error::Rejection;
use crate::types::{AgentId, Time};

/// Something that happened inside a protocol instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum TelemetryEvent {
    /// The instance started.
    Started {
        /// Protocol kind, e.g. `"vickrey"`.
        protocol: &'static str,
        /// Name of the instance, e.g. the resource being sold.
        instance: String,
        /// When it started.
        at: Time,
    },
    /// An input (bid, order, ballot, offer) was accepted.
    Accepted {
        /// Who sent it.
        agent: AgentId,
        /// Its amount, when it has one.
        amount: Option<f64>,
        /// When it arrived.
        at: Time,
    },
    /// An input was refused, with the reason.
    Rejected {
        /// Who sent it.
        agent: AgentId,
        /// Why it was refused.
        reason: Rejection,
        /// When it arrived.
        at: Time,
    },
    /// The instance decided.
    Decided {
        /// Protocol kind.
        protocol: &'static str,
        /// One-line description of the decision.
        summary: String,
        /// When it decided.
        at: Time,
        /// Milliseconds from start to decision, on the driver's clock.
        duration_ms: u64,
    },
}

/// A buffer of telemetry events owned by one machine.
#[derive(Debug, Clone, Default)]
pub struct Telemetry {
    events: Vec<TelemetryEvent>,
}

/// Upper bound on buffered events, so a driver that never drains cannot make a machine grow forever.
pub const TELEMETRY_EVENTS_MAX: usize = 1 << 16;

impl Telemetry {
    /// A buffer whose first event is [`Started`](TelemetryEvent::Started) for `protocol`'s
    /// instance `instance` at `at`: how every machine's constructor begins.
    pub fn started(protocol: &'static str, instance: String, at: Time) -> Self {
        let mut telemetry = Telemetry::default();
        telemetry.emit(TelemetryEvent::Started {
            protocol,
            instance,
            at,
        });
        telemetry
    }

    /// Records an event; the oldest half is discarded when the buffer is full.
    pub fn emit(&mut self, event: TelemetryEvent) {
        if self.events.len() >= TELEMETRY_EVENTS_MAX {
            self.events.drain(..TELEMETRY_EVENTS_MAX / 2);
        }
        self.events.push(event);
    }

    /// Records the outcome of an input: accepted with its amount, or rejected with its reason.
    pub fn input(
        &mut self,
        at: Time,
        agent: AgentId,
        amount: Option<f64>,
        result: &Result<(), Rejection>,
    ) {
        let event = match result {
            Ok(()) => TelemetryEvent::Accepted { agent, amount, at },
            Err(reason) => TelemetryEvent::Rejected {
                agent,
                reason: reason.clone(),
                at,
            },
        };
        self.emit(event);
    }

    /// Takes all buffered events, oldest first.
    pub fn drain(&mut self) -> Vec<TelemetryEvent> {
        std::mem::take(&mut self.events)
    }
}
