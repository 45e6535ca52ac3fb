//! `foundation_agents{state}` and `foundation_agent_*` metrics of one node.

use foundation_transport::Declared;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::time::Instant as TokioInstant;

use super::{AgentState, DeliveryError};
use crate::runtime::services::latency_histogram;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct State {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    kind: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Kind {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SessionLabels {
    mechanism: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MechanismLabel {
    mechanism: &'static str,
}

/// The agents' metrics; cheap to clone (every field is a shared handle).
#[derive(Clone, Debug)]
pub(super) struct AgentsMetrics {
    /// This node's agents, by lifecycle state.
    agents: Family<State, Gauge>,
    /// Instances started again by a supervisor.
    pub restarts: Counter,
    /// Supervisors that gave up after too many restarts.
    pub gave_up: Counter,
    /// Messages, by kind (send, request, multicast, received) and outcome.
    messages: Family<Outcome, Counter>,
    /// Time from sending to delivery (sends) or to the answer (requests), by kind.
    seconds: Family<Kind, Histogram, fn() -> Histogram>,
    /// Coordination sessions this node coordinated, by mechanism and how they ended.
    sessions: Family<SessionLabels, Counter>,
    /// Time from opening a session to its outcome committed (or not), by mechanism.
    session_seconds: Family<MechanismLabel, Histogram, fn() -> Histogram>,
    /// Rounds of asks of the sessions this node coordinated, by mechanism.
    session_rounds: Family<MechanismLabel, Counter>,
}

impl AgentsMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            agents: Family::default(),
            restarts: Counter::default(),
            gave_up: Counter::default(),
            messages: Family::default(),
            seconds: Family::new_with_constructor(latency_histogram),
            sessions: Family::default(),
            session_seconds: Family::new_with_constructor(latency_histogram),
            session_rounds: Family::default(),
        };
        registry.register(
            "foundation_agents",
            "This node's agents, by lifecycle state",
            Declared(metrics.agents.clone()),
        );
        let agent = registry.sub_registry_with_prefix("foundation_agent");
        agent.register(
            "restarts",
            "Agent instances started again by their supervisor",
            metrics.restarts.clone(),
        );
        agent.register(
            "supervisor_gave_up",
            "Agent supervisors that gave up after too many restarts",
            metrics.gave_up.clone(),
        );
        agent.register(
            "messages",
            "Agent messages, by kind and outcome",
            Declared(metrics.messages.clone()),
        );
        agent.register(
            "message_duration_seconds",
            "Time to deliver a message, or to answer a request, by kind",
            Declared(metrics.seconds.clone()),
        );
        agent.register(
            "sessions",
            "Coordination sessions this node coordinated, by mechanism and outcome",
            metrics.sessions.clone(),
        );
        agent.register(
            "session_duration_seconds",
            "Time from opening a coordination session to its commit, by mechanism",
            metrics.session_seconds.clone(),
        );
        agent.register(
            "session_rounds",
            "Rounds of asks (a clock auction's rounds or ticks) of coordination sessions, by mechanism",
            metrics.session_rounds.clone(),
        );
        metrics
    }

    /// Counts one ended session of `mechanism` and its `rounds`, and times it from `opened`.
    pub fn session(
        &self,
        (mechanism, outcome): (&'static str, &'static str),
        rounds: u64,
        opened: TokioInstant,
    ) {
        let labels = SessionLabels { mechanism, outcome };
        self.sessions.get_or_create(&labels).inc();
        self.session_rounds
            .get_or_create(&MechanismLabel { mechanism })
            .inc_by(rounds);
        self.session_seconds
            .get_or_create(&MechanismLabel { mechanism })
            .observe(opened.elapsed().as_secs_f64());
    }

    pub fn set_agents(&self, state: AgentState, count: usize) {
        let state = state.name();
        let count = i64::try_from(count).unwrap_or(i64::MAX);
        self.agents.get_or_create(&State { state }).set(count);
    }

    /// Counts one message of `kind` and times it from `started`.
    pub fn message<T>(
        &self,
        kind: &'static str,
        started: TokioInstant,
        result: &Result<T, DeliveryError>,
    ) {
        let outcome = result.as_ref().err().map_or("ok", DeliveryError::label);
        self.messages
            .get_or_create(&Outcome { kind, outcome })
            .inc();
        self.seconds
            .get_or_create(&Kind { kind })
            .observe(started.elapsed().as_secs_f64());
    }
}
